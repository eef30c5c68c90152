//! `sra-milter whatif` on a replayed timeline, from the outside: the real
//! binary replays an archive under the current config (`replay --jsonl`),
//! then re-rates those records under candidates whose effect is computed
//! here by hand.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{free_port, write_config};

const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");

fn inbound(from: &str, ip: &str, id: &str, day: u32) -> String {
    let date = format!("Tue, {day:02} Apr 2007 10:00:00 +0000");
    format!(
        "Return-Path: <{from}>\r\nDelivered-To: alice@example.com\r\nReceived: from mx.sender.example (mx.sender.example [{ip}])\r\n\tby mx.example.com (Postfix) with ESMTP id 4ABC{day}; {date}\r\nFrom: <{from}>\r\nTo: <alice@example.com>\r\nSubject: hello\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n\r\nHello Alice.\r\n"
    )
}

fn outbound(to: &str, id: &str, day: u32) -> String {
    let date = format!("Tue, {day:02} Apr 2007 12:00:00 +0000");
    format!(
        "Return-Path: <alice@example.com>\r\nReceived: from laptop (unknown [198.51.100.7])\r\n\t(Authenticated sender: alice)\r\n\tby mx.example.com (Postfix) with ESMTPSA id 5DEF{day}; {date}\r\nFrom: Alice <alice@example.com>\r\nTo: <{to}>\r\nSubject: question\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n\r\nHi.\r\n"
    )
}

fn whatif(current: &Path, candidate: &Path, records: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["whatif", "-c"])
        .arg(candidate)
        .arg("--current")
        .arg(current)
        .arg("--records")
        .arg(records)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn whatif_changes_exactly_the_verdicts_computed_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    // The timeline: Carol writes four times, Dave three, Alice writes to
    // Erin twice. With min_history 2, each sender's first two messages are
    // rated unrated and the rest neutral: 3 neutral inbound verdicts.
    let mut mails = Vec::new();
    for (i, day) in [2, 4, 6, 8].iter().enumerate() {
        mails.push(inbound(
            "carol@partner.example",
            "192.0.2.10",
            &format!("c{i}@p"),
            *day,
        ));
    }
    for (i, day) in [3, 5, 7].iter().enumerate() {
        mails.push(inbound(
            "dave@other.example",
            "203.0.113.20",
            &format!("d{i}@o"),
            *day,
        ));
    }
    mails.push(outbound("erin@third.example", "o1@example.com", 9));
    mails.push(outbound("erin@third.example", "o2@example.com", 10));
    let mut paths: Vec<PathBuf> = Vec::new();
    for (i, m) in mails.iter().enumerate() {
        let p = dir.path().join(format!("{i}.eml"));
        std::fs::write(&p, m).unwrap();
        paths.push(p);
    }
    let current = dir.path().join("current.toml");
    write_config(
        &current,
        free_port(),
        &dir.path().join("state"),
        "enforce",
        "",
    );
    let records = dir.path().join("records.jsonl");
    let out = Command::new(BIN)
        .args(["replay", "-c"])
        .arg(&current)
        .arg("--jsonl")
        .arg(&records)
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let classes: Vec<&str> = recs
        .iter()
        .filter(|r| r["direction"] == "inbound")
        .map(|r| r["sender"]["class"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        ["unrated", "unrated", "unrated", "unrated", "neutral", "neutral", "neutral"],
        "the timeline rates as computed (in time order: c0 d0 c1 d1 c2 d2 c3)"
    );

    // A stricter policy: neutral senders quarantined at end of message.
    let stricter = dir.path().join("stricter.toml");
    write_config(
        &stricter,
        free_port(),
        &dir.path().join("state"),
        "enforce",
        "[policy.eom.sender]\nneutral = \"quarantine\"\n",
    );
    let r = whatif(&current, &stricter, &records);
    assert_eq!(r["records"], 9);
    assert_eq!(
        r["reproduced"], 9,
        "the current config gives the recorded verdicts"
    );
    assert_eq!(r["inexact"], 0);
    assert_eq!(r["changed"], 3);
    assert_eq!(r["actions"], serde_json::json!({"accept → quarantine": 3}));
    assert_eq!(r["stages"], serde_json::json!({"eom": 3}));
    assert_eq!(r["sender_classes"], serde_json::json!({}));
    assert_eq!(r["totals"]["accept"], serde_json::json!([9, 6]));
    let ids: Vec<&str> = r["examples"]["accept → quarantine"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c2@p", "d2@o", "c3@p"]);

    // A longer apprenticeship: min_history 4 leaves them all unrated, and
    // with the current policy no action changes.
    let patient = dir.path().join("patient.toml");
    write_config(
        &patient,
        free_port(),
        &dir.path().join("state"),
        "enforce",
        "[scoring]\nmin_history = 4\n",
    );
    let r = whatif(&current, &patient, &records);
    assert_eq!(r["changed"], 0);
    assert_eq!(
        r["sender_classes"],
        serde_json::json!({"neutral → unrated": 3})
    );

    // The same stricter policy read from the text report.
    let out = Command::new(BIN)
        .args(["whatif", "-c"])
        .arg(&stricter)
        .arg("--current")
        .arg(&current)
        .arg("--records")
        .arg(&records)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("9 verdict records; the current config reproduces 9 of them; 3 would change"),
        "{text}"
    );
}
