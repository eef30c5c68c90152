//! The `sra-milter` binary as an administrator runs it: signals, reload,
//! `check-config`, `explain` and `override` beside the running daemon.

mod common;
mod support;

use common::{send, Mail};
use indymilter_test::Status;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use support::{free_port, spawn_listening, write_config};

const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");

struct Daemon {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Daemon {
    fn start(config: &Path, port: u16, log: PathBuf) -> Daemon {
        let child = spawn_listening(
            Command::new(BIN).args(["run", "-c"]).arg(config),
            port,
            &log,
            Duration::from_secs(6),
        );
        Daemon { child, log, port }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn wait_for_log(&self, needle: &str) {
        for _ in 0..300 {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("log never said {needle:?}:\n{}", self.log_text());
    }

    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        self.stop_ref()
    }

    fn stop_ref(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        for _ in 0..500 {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("daemon did not stop on SIGTERM: {}", self.log_text());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn check_config_exits_78_on_a_bad_file_and_prints_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    // `text` in a file is refused with exit 78, and stderr names `says`.
    let refused = |name: &str, text: &str, says: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = cli(&["check-config", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(78), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{out:?}"
        );
    };
    refused(
        "bad.toml",
        "mode = \"enforce\"\nno_such_key = 1\n",
        "no_such_key",
    );
    refused("bad2.toml", "socket = \"tcp:nowhere\"\n", "tcp:nowhere");
    assert_eq!(
        cli(&["check-config", "-c", "/nonexistent/x.toml"])
            .status
            .code(),
        Some(78)
    );
    // An events listener without a readable token is a configuration error.
    refused(
        "no-token.toml",
        "[events]\nlisten = \"127.0.0.1:8895\"\ntoken_file = \"/nonexistent/token\"\n",
        "token_file",
    );
    // The console on the milter's own port would fail at start: said now.
    refused(
        "one-port.toml",
        "socket = \"inet:8894@127.0.0.1\"\n[admin]\nlisten = \"127.0.0.1:8894\"\n",
        "same port",
    );

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sra-milter.toml");
    let out = cli(&["check-config", "-c", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mode = \"monitor\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_a_bad_file_keeps_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sra.toml");
    let state = dir.path().join("state");
    let port = free_port();
    write_config(
        &cfg,
        port,
        &state,
        "enforce",
        "[lists]\nblock = [\"192.0.2.10\"]\n",
    );
    let d = Daemon::start(&cfg, port, dir.path().join("log"));

    let t = send(d.addr(), &Mail::inbound("x@y.example", "1@y")).await;
    assert!(matches!(t.connect, Status::Reject { .. }), "{t:?}");

    // A valid change: monitor mode.
    write_config(
        &cfg,
        port,
        &state,
        "monitor",
        "[lists]\nblock = [\"192.0.2.10\"]\n",
    );
    d.signal("HUP");
    d.wait_for_log("configuration reloaded");
    let t = send(d.addr(), &Mail::inbound("x@y.example", "2@y")).await;
    assert_eq!(t.connect, Status::Continue);
    assert!(t.header("X-SRA-Verdict").unwrap().contains("monitor=yes"));

    // A bad file: the running config (monitor) stays.
    std::fs::write(&cfg, "mode = \"enforce\"\nthis is not toml\n").unwrap();
    d.signal("HUP");
    d.wait_for_log("config reload failed, keeping the running config");
    let t = send(d.addr(), &Mail::inbound("x@y.example", "3@y")).await;
    assert_eq!(t.connect, Status::Continue);
    assert!(t.header("X-SRA-Verdict").unwrap().contains("monitor=yes"));

    let st = d.stop();
    assert!(st.success(), "exit {st:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_and_override_work_while_the_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sra.toml");
    let state = dir.path().join("state");
    let port = free_port();
    write_config(&cfg, port, &state, "enforce", "");
    let c = cfg.to_str().unwrap();
    let d = Daemon::start(&cfg, port, dir.path().join("log"));

    send(
        d.addr(),
        &Mail::outbound("carol@partner.example", "o1@example.com"),
    )
    .await;
    send(
        d.addr(),
        &Mail::inbound("carol@partner.example", "i1@partner.example")
            .header("In-Reply-To", "<o1@example.com>"),
    )
    .await;

    let out = cli(&[
        "explain",
        "-c",
        c,
        "--sender",
        "Carol@Partner.example",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in [
        "days_known",
        "enterprise_recipients",
        "sender_enterprise_ratio",
        "open_ratio",
        "messages_received",
        "replies_sent",
        "not_opened",
        "not_opened_with_attachment",
        "not_opened_with_url",
        "messages_sent",
        "replies_received",
    ] {
        assert!(v["factors"].get(name).is_some(), "factor {name} in {v}");
        assert!(
            v["contributions"].get(name).is_some(),
            "contribution {name}"
        );
    }
    assert_eq!(v["factors"]["messages_sent"], 1.0);
    assert_eq!(v["factors"]["replies_received"], 1.0);
    assert_eq!(v["factors"]["open_ratio"], serde_json::Value::Null);
    // The MTA (and its /24) the sender came through.
    assert_eq!(v["mtas"][0]["messages"], 1);
    let via: Vec<&str> = v["mtas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mta"].as_str().unwrap())
        .collect();
    assert!(
        via.contains(&"192.0.2.10") && via.contains(&"net:192.0.2.0/24"),
        "{via:?}"
    );

    let out = cli(&["explain", "-c", c, "--mta", "192.0.2.10", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["key"], "192.0.2.10");
    assert_eq!(v["factors"]["messages_received"], 1.0);
    assert_eq!(v["factors"]["replies_received"], 1.0);
    assert!(v["factors"].get("sender_domains").is_some());

    let out = cli(&["explain", "-c", c, "--sender", "carol@partner.example"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("replies_received") && text.contains("no data"),
        "{text}"
    );

    // Override through the running daemon: it takes effect at once.
    let out = cli(&[
        "override",
        "-c",
        c,
        "--mta",
        "192.0.2.0/24",
        "malicious",
        "--reason",
        "feed",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = send(
        d.addr(),
        &Mail::inbound("carol@partner.example", "i2@partner.example"),
    )
    .await;
    assert!(matches!(t.connect, Status::Reject { .. }));
    let out = cli(&["explain", "-c", c, "--mta", "192.0.2.10", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["class"], "malicious");
    assert_eq!(v["override"]["reason"], "feed");

    assert!(d.stop().success());

    // With the daemon stopped, override opens the store itself.
    let out = cli(&["override", "-c", c, "--mta", "192.0.2.0/24", "--remove"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["explain", "-c", c, "--mta", "192.0.2.10", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(v["class"], "malicious");
    // History survived the restart cycle.
    assert_eq!(v["factors"]["messages_received"], 1.0);
}

#[test]
fn run_refuses_a_state_dir_that_is_not_a_store_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // What is left of a store whose CURRENT file was lost.
    std::fs::write(state.join("000008.sst"), b"sst bytes").unwrap();
    std::fs::write(state.join("MANIFEST-000005"), b"manifest bytes").unwrap();
    let cfg = dir.path().join("sra-milter.toml");
    write_config(&cfg, free_port(), &state, "monitor", "");
    for _ in 0..2 {
        let out = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not an sra-milter store"), "{err}");
        let mut names: Vec<String> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["000008.sst", "MANIFEST-000005"]);
        assert_eq!(
            std::fs::read(state.join("000008.sst")).unwrap(),
            b"sst bytes"
        );
    }
}

#[test]
fn a_second_daemon_on_the_same_unix_socket_leaves_it_to_the_first_and_logs_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("milter.sock");
    let write = |name: &str| {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "socket = \"unix:{}\"\nstate_dir = \"{}\"\nenterprise_domains = [\"example.com\"]\n[admin]\ncontrol_socket = \"{}\"\n[auth]\nverify = false\n",
                sock.display(),
                dir.path().join(format!("{name}-state")).display(),
                dir.path().join(format!("{name}.ctl")).display(),
            ),
        )
        .unwrap();
        cfg
    };
    let (first_cfg, second_cfg) = (write("first"), write("second"));
    let log = dir.path().join("first.log");
    let mut first = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&first_cfg)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let second_log = dir.path().join("second.log");
    let mut second = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&second_cfg)
        .stderr(std::fs::File::create(&second_log).unwrap())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..250 {
        status = second.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(status) = status else {
        let _ = second.kill();
        panic!("the second daemon took the socket and kept running");
    };
    assert!(!status.success());
    let err = std::fs::read_to_string(&second_log).unwrap();
    assert!(err.contains("in use"), "{err}");
    assert!(
        std::os::unix::net::UnixStream::connect(&sock).is_ok(),
        "the first daemon still answers on its socket"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    assert!(first.wait().unwrap().success());
    // stderr is a file, not a terminal: no colour codes in the log.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("listening on"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file: {text:?}"
    );
}

#[test]
fn bad_command_lines_are_refused() {
    assert!(!cli(&["explain"]).status.success());
    assert!(!cli(&["override", "--sender", "a@b.example", "notaclass"])
        .status
        .success());
    let out = cli(&["run", "--socket", "bogus"]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_mode_writes_one_verdict_record_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sra.toml");
    let port = free_port();
    write_config(
        &cfg,
        port,
        &dir.path().join("state"),
        "monitor",
        "[log]\nformat = \"json\"\n",
    );
    let d = Daemon::start(&cfg, port, dir.path().join("log"));
    let mail = Mail::inbound("carol@partner.example", "json1@partner.example");
    send(d.addr(), &mail).await;
    send(
        d.addr(),
        &Mail::outbound("dave@other.example", "json2@example.com"),
    )
    .await;
    d.wait_for_log("json2@example.com");
    let log = d.log_text();
    let records: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("stage").is_some())
        .collect();
    assert_eq!(records.len(), 2, "{log}");
    let r = &records[0];
    for field in [
        "time",
        "queue_id",
        "message_id",
        "direction",
        "client_ip",
        "helo",
        "envelope_from",
        "header_from",
        "recipients",
        "authenticated",
        "sender",
        "mta",
        "anomalies",
        "stage",
        "action",
        "monitor",
    ] {
        assert!(r.get(field).is_some(), "field {field} in {r}");
    }
    assert_eq!(r["queue_id"], "4XyZ1A2B3C");
    assert_eq!(r["message_id"], "json1@partner.example");
    assert_eq!(r["direction"], "inbound");
    assert_eq!(r["client_ip"], "192.0.2.10");
    assert_eq!(r["sender"]["key"], "carol@partner.example");
    assert_eq!(r["sender"]["factors"]["messages_received"], 0.0);
    assert_eq!(r["mta"]["key"], "192.0.2.10");
    assert_eq!(r["stage"], "eom");
    assert_eq!(r["monitor"], true);
    assert_eq!(records[1]["direction"], "outbound");
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_serves_and_a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("milter.sock");
    // A stale socket file from a crashed run.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let cfg = dir.path().join("sra.toml");
    std::fs::write(
        &cfg,
        format!(
            "socket = \"unix:{}\"\nstate_dir = \"{}\"\nenterprise_domains = [\"example.com\"]\n[auth]\nverify = false\n",
            sock.display(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        log: dir.path().join("log"),
        port: 0,
    };
    let mut conn = None;
    for _ in 0..300 {
        if let Ok(c) = indymilter_test::TestConnection::configure()
            .open_unix(&sock)
            .await
        {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = conn.unwrap_or_else(|| panic!("no unix socket: {}", d.log_text()));
    assert_eq!(
        conn.connect("mx.partner.example", [192, 0, 2, 10])
            .await
            .unwrap(),
        Status::Continue
    );
    conn.close().await.unwrap();

    // A regular file in the socket's place is never deleted.
    let st = d.stop_ref();
    assert!(st.success());
    std::fs::write(&sock, b"not a socket").unwrap();
    let out = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read(&sock).unwrap(), b"not a socket");
    d.port = 0;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_events_applies_a_log_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sra.toml");
    let port = free_port();
    write_config(&cfg, port, &dir.path().join("state"), "monitor", "");
    let c = cfg.to_str().unwrap();
    let d = Daemon::start(&cfg, port, dir.path().join("log"));
    send(
        d.addr(),
        &Mail::inbound("carol@partner.example", "i1@partner.example"),
    )
    .await;
    let ok = dir.path().join("ok.jsonl");
    std::fs::write(
        &ok,
        "{\"event\":\"opened\",\"message_id\":\"<i1@partner.example>\",\"mailbox\":\"alice@example.com\"}\n{\"event\":\"opened\",\"message_id\":\"<nope@x>\",\"mailbox\":\"alice@example.com\"}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"event\":\"junk\",\"message_id\":\"<i1@partner.example>\",\"mailbox\":\"alice@example.com\"}\nnot json\n",
    )
    .unwrap();
    let out = cli(&["import-events", "-c", c, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    let out = cli(&["import-events", "-c", c, ok.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 accepted, 1 unknown"));
    let out = cli(&[
        "explain",
        "-c",
        c,
        "--sender",
        "carol@partner.example",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["factors"]["open_ratio"], 1.0);
    assert!(
        v["contributions"].get("junk").is_none(),
        "the bad file imported nothing"
    );
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_target_sends_facility_mail_datagrams_with_the_queue_id() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cfg = dir.path().join("sra.toml");
    let port = free_port();
    write_config(
        &cfg,
        port,
        &dir.path().join("state"),
        "monitor",
        &format!(
            "[log]\ntarget = \"syslog\"\nsyslog_socket = \"{}\"\n",
            sock_path.display()
        ),
    );
    let d = Daemon::start(&cfg, port, dir.path().join("log"));
    send(
        d.addr(),
        &Mail::inbound("carol@partner.example", "sys1@partner.example"),
    )
    .await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = sock.recv(&mut buf) {
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = line.contains("4XyZ1A2B3C: verdict");
        seen.push(line);
        if done {
            break;
        }
    }
    let verdict = seen
        .iter()
        .find(|l| l.contains("4XyZ1A2B3C: verdict"))
        .unwrap_or_else(|| panic!("{seen:#?}"));
    // <22> = facility mail (2) * 8 + severity info (6).
    assert!(verdict.starts_with("<22>sra-milter["), "{verdict}");
    assert!(d.stop().success());
}

#[test]
fn replay_command_writes_records_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sra.toml");
    write_config(
        &cfg,
        free_port(),
        &dir.path().join("state"),
        "monitor",
        "trusted_relays = [\"10.0.0.0/8\"]\n",
    );
    let mail = dir.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::write(
        mail.join("1.eml"),
        "Received: from mx.partner.example (mx.partner.example [192.0.2.10])\r\n\tby mx.example.com; Tue, 10 Apr 2007 10:00:00 +0000\r\nFrom: carol@partner.example\r\nTo: alice@example.com\r\nMessage-ID: <r1@p>\r\nDate: Tue, 10 Apr 2007 10:00:00 +0000\r\n\r\nhi\r\n",
    )
    .unwrap();
    std::fs::write(mail.join("2.eml"), "garbage without headers or a date").unwrap();
    let out = dir.path().join("out.jsonl");
    let o = cli(&[
        "replay",
        "-c",
        cfg.to_str().unwrap(),
        "--jsonl",
        out.to_str().unwrap(),
        mail.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(
        summary.contains("replay: 1 messages") && summary.contains("1 unreadable"),
        "{summary}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines
        .iter()
        .any(|l| l["message_id"] == "r1@p" && l["client_ip"] == "192.0.2.10"));
    assert!(lines.iter().any(|l| l["error"].is_string()));
    // The store learned it.
    let v: serde_json::Value = serde_json::from_slice(
        &cli(&[
            "explain",
            "-c",
            cfg.to_str().unwrap(),
            "--sender",
            "carol@partner.example",
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(v["factors"]["messages_received"], 1.0);
}
