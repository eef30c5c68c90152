//! Abuse from outside, bounded and on loopback only: a daemon with few file
//! descriptors (`ulimit -n`), idle milter and HTTP connections past every
//! limit, and unauthenticated clients sending large bodies. Throughout, the
//! daemon stays up and a normal milter session still gets its verdict.

mod common;
mod support;

use common::Mail;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::{free_port, spawn_listening};

const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");
const TOKEN: &str = "abuse-test-token-0123456789";

struct Daemon {
    child: Child,
    log: std::path::PathBuf,
    milter: u16,
    events: u16,
}

impl Daemon {
    /// `sra-milter run` under `ulimit -n FDS`, with an events listener.
    fn start(dir: &std::path::Path, fds: u32) -> Daemon {
        let (milter, events) = (free_port(), free_port());
        let token = dir.join("token");
        std::fs::write(&token, TOKEN).unwrap();
        let cfg = dir.join("sra.toml");
        std::fs::write(
            &cfg,
            format!(
                "socket = \"inet:127.0.0.1:{milter}\"\nstate_dir = \"{}\"\nenterprise_domains = [\"example.com\"]\n[events]\nlisten = \"127.0.0.1:{events}\"\ntoken_file = \"{}\"\n[admin]\ncontrol_socket = \"{}\"\n[auth]\nverify = false\n",
                dir.join("state").display(),
                token.display(),
                dir.join("control.sock").display(),
            ),
        )
        .unwrap();
        let log = dir.join("log");
        let child = spawn_listening(
            Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit -n {fds} && exec \"$0\" run -c \"$1\""))
                .arg(BIN)
                .arg(&cfg),
            events,
            &log,
            Duration::from_secs(10),
        );
        Daemon {
            child,
            log,
            milter,
            events,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A normal milter session gets its verdict within `limit`.
    /// A verdict within `limit`. A connection the daemon accepted while it
    /// was still out of descriptors may be reset (Postfix then applies its
    /// milter_default_action to that one message); it is tried again.
    async fn verdict_within(&self, limit: Duration, id: &str) {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let t = tokio::time::timeout_at(
                end,
                common::try_send(
                    ([127, 0, 0, 1], self.milter).into(),
                    &Mail::inbound("carol@partner.example", id),
                ),
            )
            .await
            .unwrap_or_else(|_| panic!("no verdict within {limit:?}: {}", self.log_text()));
            match t {
                Ok(t) => {
                    assert!(t.header("X-SRA-Verdict").is_some(), "{t:?}");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection to a loopback port, or none within 200 ms (a listener
/// that does not accept leaves connects hanging once its queue is full).
fn connect(port: u16) -> Option<TcpStream> {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_file_descriptors_pauses_accepting_and_never_ends_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), 128);
    d.verdict_within(Duration::from_secs(5), "before@x").await;

    // More idle milter connections than the daemon has descriptors for.
    let milter: Vec<TcpStream> = (0..200).filter_map(|_| connect(d.milter)).collect();
    // And idle HTTP connections on top.
    let http: Vec<TcpStream> = (0..200).filter_map(|_| connect(d.events)).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.alive(), "the daemon ended: {}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("cannot accept"), "{log}");
    assert!(
        log.matches("milter socket: cannot accept").count() <= 2,
        "logged once per episode, not per attempt: {log}"
    );

    // Once the idle clients are gone, mail is served again.
    drop(milter);
    drop(http);
    d.verdict_within(Duration::from_secs(5), "after@x").await;
    assert!(d.alive());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_unauthenticated_http_clients_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), 1024);
    let rss = rss_kib;
    let before = rss(d.child.id());

    // 60 clients without the token each announce a 4 MiB body and send
    // 1 MiB of it: each is refused on its head, no body is buffered.
    let mut refused = 0;
    let chunk = vec![b'x'; 1024 * 1024];
    let mut clients = Vec::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(("127.0.0.1", d.events)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ =
            s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n");
        let _ = s.write_all(&chunk);
        clients.push(s);
    }
    for mut s in clients {
        let mut resp = String::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = std::io::Read::read_to_string(&mut s, &mut resp);
        if resp.starts_with("HTTP/1.1 401") {
            refused += 1;
        }
    }
    assert_eq!(refused, 60);
    let after = rss(d.child.id());
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );

    // Idle connections far past the cap: the daemon keeps at most its cap
    // open, and mail is still served.
    let idle: Vec<TcpStream> = (0..500).filter_map(|_| connect(d.events)).collect();
    std::thread::sleep(Duration::from_millis(300));
    d.verdict_within(Duration::from_secs(1), "busy@x").await;
    assert!(
        open_fds(d.child.id()) < 200,
        "{} descriptors open",
        open_fds(d.child.id())
    );
    assert!(d.alive());
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_idle_milter_clients_and_ten_thousand_idle_http_clients_lock_nobody_out() {
    // This test's own side of 11,000 connections.
    rlimit::increase_nofile_limit(24_000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), 4096);
    let pid = d.child.id();
    d.verdict_within(Duration::from_secs(5), "first@x").await;
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid));

    // 1,000 milter connections that never speak: five times the session
    // limit (max_connections = 200), all accepted and held by the daemon.
    let milter: Vec<TcpStream> = (0..1000).filter_map(|_| connect(d.milter)).collect();
    assert!(milter.len() > 990, "{} milter connections", milter.len());
    std::thread::sleep(Duration::from_millis(200));
    let held = open_fds(pid) - fds_before;
    assert!(
        held >= milter.len() - 10,
        "the daemon took them off the socket: {held}"
    );
    let start = Instant::now();
    d.verdict_within(Duration::from_secs(1), "among-idle-milter@x")
        .await;
    let milter_latency = start.elapsed();

    // 10,000 idle HTTP connections on the events listener on top: past its
    // cap of 64 they are closed at accept.
    let mut http = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        if let Some(s) = connect(d.events) {
            http.push(s);
        }
    }
    let start = Instant::now();
    d.verdict_within(Duration::from_secs(1), "among-idle-http@x")
        .await;
    let http_latency = start.elapsed();
    let (fds, rss) = (open_fds(pid), rss_kib(pid));
    eprintln!(
        "idle clients: verdict in {milter_latency:?} among 1,000 idle milter connections, {http_latency:?} with 10,000 idle HTTP connections on top; daemon fds {fds_before} -> {fds}, RSS {rss_before} -> {rss} KiB"
    );
    assert!(d.alive(), "{}", d.log_text());
    // Bounded: the silent milter connections (at most 1,024) and the HTTP
    // cap (64), nothing per HTTP client beyond it.
    assert!(fds < fds_before + held + 64 + 50, "{fds} descriptors open");
    assert!(
        rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss} KiB"
    );
    drop(http);
    drop(milter);
    d.verdict_within(Duration::from_secs(1), "after@x").await;
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
