//! `sra-milter calibrate` on a replayed month with feedback, from the
//! outside: correspondents the enterprise answers and bulk senders whose
//! mail is reported as junk (engagement events replayed with the mail);
//! the fitted weights must separate the held-out days at least as well as
//! the defaults, and say so.

mod support;

use std::process::Command;
use support::{free_port, write_config};

const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");

fn date(day: u32, hour: u32) -> String {
    format!("{day:02} Apr 2007 {hour:02}:00:00 +0000")
}

fn inbound(from: &str, ip: &str, id: &str, day: u32, hour: u32) -> String {
    let d = date(day, hour);
    format!(
        "Return-Path: <{from}>\r\nDelivered-To: alice@example.com\r\nReceived: from mx.sender.example (mx.sender.example [{ip}])\r\n\tby mx.example.com (Postfix) with ESMTP id 4A{day}{hour}; {d}\r\nFrom: <{from}>\r\nTo: <alice@example.com>\r\nSubject: hello\r\nDate: {d}\r\nMessage-ID: <{id}>\r\n\r\nHello Alice.\r\n"
    )
}

fn reply(to: &str, id: &str, answers: &str, day: u32, hour: u32) -> String {
    let d = date(day, hour);
    format!(
        "Return-Path: <alice@example.com>\r\nReceived: from laptop (unknown [198.51.100.7])\r\n\t(Authenticated sender: alice)\r\n\tby mx.example.com (Postfix) with ESMTPSA id 5B{day}{hour}; {d}\r\nFrom: Alice <alice@example.com>\r\nTo: <{to}>\r\nSubject: Re: hello\r\nDate: {d}\r\nMessage-ID: <{id}>\r\nIn-Reply-To: <{answers}>\r\n\r\nThanks.\r\n"
    )
}

#[test]
fn calibrate_fits_weights_that_separate_held_out_days_at_least_as_well() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    let mut events = String::new();
    let mut n = 0;
    let mut put = |text: String| {
        std::fs::write(mail.join(format!("{n}.eml")), text).unwrap();
        n += 1;
    };
    // 24 correspondents and 24 bulk senders, five messages each, spread
    // over the month so that every week holds both.
    for i in 0..24u32 {
        for k in 0..5u32 {
            let day = 1 + (i + 6 * k) % 30;
            let good = format!("g{i}@good{}.example", i % 6);
            let id = format!("g{i}.{k}@good");
            put(inbound(&good, &format!("192.0.2.{}", 10 + i), &id, day, 9));
            events.push_str(&format!(
                "{{\"event\":\"opened\",\"message_id\":\"<{id}>\",\"mailbox\":\"alice@example.com\",\"time\":\"2007-04-{day:02}T09:30:00Z\"}}\n"
            ));
            if k == 0 {
                put(reply(&good, &format!("r{i}@example.com"), &id, day, 10));
            }
            let bad = format!("b{i}@bulk{}.example", i % 6);
            let id = format!("b{i}.{k}@bulk");
            put(inbound(
                &bad,
                &format!("203.0.113.{}", 10 + i),
                &id,
                day,
                11,
            ));
            events.push_str(&format!(
                "{{\"event\":\"junk\",\"message_id\":\"<{id}>\",\"mailbox\":\"alice@example.com\",\"time\":\"2007-04-{day:02}T11:30:00Z\"}}\n"
            ));
        }
    }
    let events_file = dir.path().join("events.jsonl");
    std::fs::write(&events_file, events).unwrap();
    let config = dir.path().join("sra.toml");
    write_config(
        &config,
        free_port(),
        &dir.path().join("state"),
        "monitor",
        "",
    );
    let records = dir.path().join("records.jsonl");
    let out = Command::new(BIN)
        .args(["replay", "-c"])
        .arg(&config)
        .arg("--jsonl")
        .arg(&records)
        .arg("--events")
        .arg(&events_file)
        .arg(&mail)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = |json: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["calibrate", "-c"])
            .arg(&config)
            .arg("--records")
            .arg(&records);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let c: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    assert!(c["refused"].is_null(), "{c}");
    // Every message is labelled: junk reports, answered correspondents.
    let total = |k: &str| c[k][0].as_u64().unwrap() + c[k][1].as_u64().unwrap();
    assert_eq!(total("train") + total("held_out"), 240, "{c}");
    assert!(
        c["held_out"][0].as_u64().unwrap() > 10 && c["held_out"][1].as_u64().unwrap() > 10,
        "{c}"
    );
    let (current, fitted) = (
        c["auc_current"].as_f64().unwrap(),
        c["auc_fitted"].as_f64().unwrap(),
    );
    assert!(
        fitted >= current,
        "fitted {fitted} < current {current}: {c}"
    );
    assert!(fitted > 0.8, "{c}");
    assert_eq!(c["better"], true);
    assert_eq!(
        c["weights"].as_array().unwrap().len(),
        16,
        "the eleven sender and five MTA factors"
    );
    let text = run(false);
    eprintln!("{text}");
    assert!(
        text.contains("The fitted weights separate at least as well"),
        "{text}"
    );
    assert!(
        text.contains("[scoring.sender.days_known]\nweight = "),
        "{text}"
    );

    // The proposal is a valid configuration, and nothing was applied.
    let proposal: String = text
        .split("(nothing was changed):\n\n")
        .nth(1)
        .unwrap()
        .to_string();
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(
        &candidate,
        format!("{}\n{proposal}", std::fs::read_to_string(&config).unwrap()),
    )
    .unwrap();
    let check = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(&candidate)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!std::fs::read_to_string(&config)
        .unwrap()
        .contains("[scoring"));
}
