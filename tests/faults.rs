//! The fault suite: a damaged or unusable store under `sra-milter run`, as a
//! careless admin or a failing disk leaves it. For each fault: the exit
//! status, the message, and that no stored byte changed (every file of the
//! store compared before and after; RocksDB's own info log `LOG*` aside).
//! Runs as root, as the test command does (it mounts and changes users).
//!
//! The rest of the suite lives beside the code it exercises: a full disk
//! while mail flows (tests/disk_full.rs), two daemons on one unix socket
//! and a directory of other files (tests/cli.rs), descriptor exhaustion and
//! idle or unauthenticated clients (tests/abuse.rs).

mod common;
mod support;

use common::{send, Mail};
use indymilter_test::Status;
use sra_milter::store::{Counter, Kind, Record, ReputationStore, RocksStore, SetKind, Update};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, spawn_listening};

const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");
/// The daemon's exit status for what restarting cannot mend (EX_CONFIG).
const EX_CONFIG: i32 = 78;

/// Senders in the populated store: enough for several SST data blocks.
const SENDERS: usize = 3000;

fn sender(i: usize) -> String {
    format!("sender{i:05}@partner{}.example", i % 40)
}

/// A real store with history: every sender seen twice, flushed to SST.
fn populate(state: &Path) {
    let s = RocksStore::open(state, 86400).unwrap();
    for round in 0..2 {
        let mut u = Update::default();
        for i in 0..SENDERS {
            let mut d = Record::seen_at(1_700_000_000 + round);
            d.add(Counter::MessagesReceived, 1)
                .insert(SetKind::EnterpriseRecipients, "alice@example.com");
            u.records.push((Kind::Sender, sender(i), d));
        }
        s.apply(&u).unwrap();
    }
    s.flush().unwrap();
}

/// Every file of the store with its bytes, but RocksDB's info log.
fn snapshot(state: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .filter(|(n, _)| !n.starts_with("LOG"))
        .map(|(n, p)| {
            let bytes = std::fs::read(&p).unwrap();
            (n, bytes)
        })
        .collect()
}

fn assert_unchanged(before: &BTreeMap<String, Vec<u8>>, state: &Path) {
    let after = snapshot(state);
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(before), names(&after), "the store's files changed");
    for (n, b) in before {
        assert!(after[n] == *b, "{n} changed");
    }
}

/// The largest SST file of the store.
fn largest_sst(state: &Path) -> PathBuf {
    std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("the populated store has SST files")
}

fn write_config(dir: &Path, state: &Path, port: u16) -> PathBuf {
    let cfg = dir.join("sra-milter.toml");
    std::fs::write(
        &cfg,
        format!(
            "socket = \"inet:127.0.0.1:{port}\"\nstate_dir = \"{}\"\nenterprise_domains = [\"example.com\"]\non_error = \"accept\"\n[admin]\ncontrol_socket = \"{}\"\n[auth]\nverify = false\n",
            state.display(),
            dir.join("control.sock").display(),
        ),
    )
    .unwrap();
    cfg
}

/// `sra-milter run` that is expected to refuse: its output, or a panic if
/// it is still running after 20 s.
fn run_refused(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let start = Instant::now();
    while !waiter.is_finished() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("sra-milter run did not exit on a fault");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    waiter.join().unwrap()
}

fn run_cmd(cfg: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["run", "-c"]).arg(cfg);
    c
}

/// `sra-milter run` in the background, logging to `log`, once its milter
/// socket on `port` answers.
fn start_daemon(cfg: &Path, port: u16, log: &Path) -> Child {
    spawn_listening(&mut run_cmd(cfg), port, log, Duration::from_secs(10))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the daemon twice on the fault (systemd would restart it): both
/// times it exits with `code` and says `says`, and the store is unchanged.
fn refused_twice(cfg: &Path, state: &Path, code: i32, says: &str, cmd: impl Fn() -> Command) {
    let before = snapshot(state);
    assert!(!before.is_empty());
    for _ in 0..2 {
        let out = run_refused(&mut cmd());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(says), "expected {says:?} in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_unchanged(&before, state);
    }
    let _ = cfg;
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], target: &Path) -> Mount {
    let ok = Command::new("mount")
        .args(args)
        .arg(target)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount needs root (the test command runs as root)");
    Mount(target.to_owned())
}

#[test]
fn a_store_that_lost_current_is_refused_and_never_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    populate(&state);
    std::fs::remove_file(state.join("CURRENT")).unwrap();
    let cfg = write_config(dir.path(), &state, free_port());
    refused_twice(
        &cfg,
        &state,
        EX_CONFIG,
        "is not an sra-milter store",
        || run_cmd(&cfg),
    );
}

#[test]
fn a_truncated_sst_file_is_refused_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    populate(&state);
    let sst = largest_sst(&state);
    let len = std::fs::metadata(&sst).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sst)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let cfg = write_config(dir.path(), &state, free_port());
    refused_twice(&cfg, &state, EX_CONFIG, "is damaged", || run_cmd(&cfg));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_sst_block_is_answered_per_on_error_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    populate(&state);
    // Garbage over the middle of the data blocks, the file's size kept:
    // RocksDB opens the store and finds the damage by checksum on read.
    let sst = largest_sst(&state);
    let mut bytes = std::fs::read(&sst).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 8..n / 2] {
        *b ^= 0x5a;
    }
    std::fs::write(&sst, &bytes).unwrap();
    // What can be read before: each sender's count, or the damage.
    let readable = |state: &Path| -> Vec<Option<u64>> {
        let s = RocksStore::open_read_only(state, 86400).unwrap();
        (0..SENDERS)
            .map(|i| {
                s.record(Kind::Sender, &sender(i))
                    .ok()
                    .map(|r| r.count(Counter::MessagesReceived))
            })
            .collect()
    };
    let before = readable(&state);
    let damaged = before.iter().filter(|c| c.is_none()).count();
    assert!(damaged > 0, "the garbage hit some records");
    assert!(damaged < SENDERS, "and spared others");

    let port = free_port();
    let cfg = write_config(dir.path(), &state, port);
    let log = dir.path().join("log");
    let mut child = start_daemon(&cfg, port, &log);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    // Mail from senders across the store: every message is answered (a
    // record in a damaged block per on_error = accept), none hangs.
    for i in (0..SENDERS).step_by(150) {
        let t = tokio::time::timeout(
            Duration::from_secs(5),
            send(addr, &Mail::inbound(&sender(i), &format!("m{i}@p"))),
        )
        .await
        .expect("a verdict in time");
        assert_eq!(t.eom_status(), Some(&Status::Continue), "{t:?}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the daemon ended");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "SIGTERM ends it cleanly: {status:?}\n{log}"
    );
    assert!(log.contains("Corruption"), "the damage is named: {log}");
    assert!(!log.contains("panicked"), "{log}");
    // The damaged file is kept as it was (never compacted away), and what
    // was readable is still there, with what the session learned on top.
    assert_eq!(
        std::fs::read(&sst).unwrap(),
        bytes,
        "the damaged file is kept"
    );
    let after = readable(&state);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let mailed = u64::from(i % 150 == 0);
        match (b, a) {
            (Some(b), Some(a)) => assert!(*a == b + mailed || *a == *b, "sender {i}: {b} -> {a}"),
            (None, _) => {}
            (Some(b), None) => panic!("sender {i} ({b} messages) became unreadable"),
        }
    }
}

#[test]
fn a_read_only_state_dir_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    populate(&state);
    let _bind = mount(&["--bind", state.to_str().unwrap()], &state);
    let ro = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(ro.success());
    let cfg = write_config(dir.path(), &state, free_port());
    refused_twice(&cfg, &state, EX_CONFIG, "Read-only file system", || {
        run_cmd(&cfg)
    });
}

#[test]
fn a_state_dir_of_another_user_is_refused_with_the_reason() {
    // The daemon runs as an unprivileged user (as the package's unit does);
    // the store belongs to root.
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    populate(&state);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The binary where that user may run it.
    let bin = dir.path().join("sra-milter");
    std::fs::copy(BIN, &bin).unwrap();
    let cfg = write_config(dir.path(), &state, free_port());
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused_twice(&cfg, &state, EX_CONFIG, "Permission denied", || {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["run", "-c"])
            .arg(&cfg);
        c
    });
}

#[test]
fn a_full_disk_at_start_exits_for_a_retry_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let _m = mount(&["-t", "tmpfs", "-o", "size=16m", "tmpfs"], &disk);
    let state = disk.join("state");
    populate(&state);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(disk.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0u8; 512]).is_ok() {}
    }
    let cfg = write_config(dir.path(), &state, free_port());
    // Exit 1: systemd starts it again, and once there is room it runs. A
    // failed open may leave an empty log file beside the store (RocksDB
    // removes it at the next open); no stored byte changes.
    let before = snapshot(&state);
    for _ in 0..2 {
        let out = run_refused(&mut run_cmd(&cfg));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        let after = snapshot(&state);
        for (name, b) in &before {
            assert!(after.get(name) == Some(b), "{name} changed or vanished");
        }
        for (name, b) in &after {
            assert!(before.contains_key(name) || b.is_empty(), "{name} written");
        }
    }
    std::fs::remove_file(disk.join("filler")).unwrap();
    let s = RocksStore::open(&state, 86400).unwrap();
    assert_eq!(
        s.record(Kind::Sender, &sender(7))
            .unwrap()
            .count(Counter::MessagesReceived),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_a_running_store_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    populate(&state);
    let port = free_port();
    let cfg = write_config(dir.path(), &state, port);
    let log = dir.path().join("log");
    let mut first = start_daemon(&cfg, port, &log);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    // The second one has its own socket; only the store is shared.
    let dir2 = tempfile::tempdir().unwrap();
    let cfg2 = write_config(dir2.path(), &state, free_port());
    refused_twice(&cfg2, &state, 1, "in use by another process", || {
        run_cmd(&cfg2)
    });
    // The first one serves on, and learns.
    let t = send(addr, &Mail::inbound(&sender(3), "after@p")).await;
    assert!(t.header("X-SRA-Verdict").is_some(), "{t:?}");
    let _ = Command::new("kill").arg(first.id().to_string()).status();
    assert!(first.wait().unwrap().success());
    let s = RocksStore::open(&state, 86400).unwrap();
    assert_eq!(
        s.record(Kind::Sender, &sender(3))
            .unwrap()
            .count(Counter::MessagesReceived),
        3
    );
}
