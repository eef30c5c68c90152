//! A real Postfix for system tests, as Debian runs it: Debian's own
//! `master.cf` (smtpd and cleanup chrooted), a private config and queue
//! directory per test, bound to 127.0.0.1 on free ports, logging to a file
//! (`maillog_file`), relaying everything to an in-test SMTP sink whose
//! messages the tests read back. XCLIENT lets one loopback client present
//! any client address, HELO and login.
//!
//! Postfix must be installed (`scripts/test.sh` installs it); a test that
//! cannot start it fails, it is never skipped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");

/// One Postfix instance at a time: they are cheap, but serial logs are
/// easier to read when one fails.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

// ---------------------------------------------------------------- sink

#[derive(Clone, Debug)]
pub struct Delivered {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: String,
}

impl Delivered {
    /// The first value of a header (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut out: Option<String> = None;
        let mut in_it = false;
        for line in head.split("\r\n") {
            if line.starts_with(' ') || line.starts_with('\t') {
                if in_it {
                    if let Some(o) = out.as_mut() {
                        o.push(' ');
                        o.push_str(line.trim());
                    }
                }
                continue;
            }
            if out.is_some() {
                break;
            }
            in_it = false;
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    out = Some(v.trim().to_string());
                    in_it = true;
                }
            }
        }
        out
    }

    pub fn message_id(&self) -> String {
        self.header("Message-ID").unwrap_or_default()
    }
}

/// A minimal SMTP server that keeps every message it is given.
pub struct Sink {
    pub port: u16,
    pub messages: Arc<Mutex<Vec<Delivered>>>,
}

impl Sink {
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let m = m.clone();
                std::thread::spawn(move || {
                    let _ = serve_sink(stream, &m);
                });
            }
        });
        Sink { port, messages }
    }

    pub fn all(&self) -> Vec<Delivered> {
        self.messages.lock().unwrap().clone()
    }

    pub fn find(&self, message_id: &str) -> Option<Delivered> {
        self.all()
            .into_iter()
            .find(|d| d.message_id().contains(message_id))
    }

    pub fn wait_for(&self, message_id: &str) -> Delivered {
        let mut found = None;
        wait_until(
            &format!("delivery of {message_id}"),
            Duration::from_secs(30),
            || {
                found = self.find(message_id);
                found.is_some()
            },
        );
        found.unwrap()
    }
}

fn serve_sink(stream: TcpStream, store: &Mutex<Vec<Delivered>>) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_string();
            rcpts.clear();
            w.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            rcpts.push(cmd[8..].trim().to_string());
            w.write_all(b"250 2.1.5 ok\r\n")?;
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let l = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(l);
            }
            store.lock().unwrap().push(Delivered {
                from: from.clone(),
                rcpts: rcpts.clone(),
                data,
            });
            w.write_all(b"250 2.0.0 queued\r\n")?;
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 2.0.0 ok\r\n")?;
        }
    }
}

// ---------------------------------------------------------------- postfix

pub struct Postfix {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Postfix {
    pub fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Starts a private instance relaying to `sink`, with `milter_lines`
    /// (the README's main.cf lines) appended to main.cf.
    pub fn start(sink: &Sink, milter_lines: &str) -> Postfix {
        Postfix::start_with(sink, milter_lines, "")
    }

    /// With `extra` main.cf lines last (they override what came before).
    pub fn start_with(sink: &Sink, milter_lines: &str, extra: &str) -> Postfix {
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "postfix is not installed: run ./scripts/test.sh, which installs it"
        );
        let dir = tempfile::Builder::new()
            .prefix("sra-postfix-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        let port = free_port();
        for d in ["etc", "spool/etc", "data"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // Postfix's unprivileged processes must reach the queue directory.
        run(Command::new("chmod").arg("0755").arg(root));
        run(Command::new("chown").arg("postfix").arg(root.join("data")));
        // Debian's master.cf as it ships, with smtpd on our private port.
        let master = std::fs::read_to_string("/etc/postfix/master.cf").unwrap();
        let mut out = String::new();
        for line in master.lines() {
            if line.starts_with("smtp ") && line.contains(" inet ") {
                let rest = line.split_once("inet").unwrap().1;
                out.push_str(&format!("127.0.0.1:{port} inet{rest}\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(root.join("etc/master.cf"), out).unwrap();
        // The files Debian copies into the chroot.
        for f in [
            "localtime",
            "services",
            "resolv.conf",
            "hosts",
            "nsswitch.conf",
            "host.conf",
        ] {
            let _ = std::fs::copy(Path::new("/etc").join(f), root.join("spool/etc").join(f));
        }
        let main = format!(
            "compatibility_level = 3.6
queue_directory = {q}
data_directory = {d}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.com
mydomain = example.com
myorigin = example.com
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8 10.0.0.0/8
relay_domains = example.com
relayhost = [127.0.0.1]:{sink}
default_transport = smtp
relay_transport = smtp
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
# SASL on, so that XCLIENT LOGIN makes an authenticated client (no
# mechanism is offered to real clients: nothing here verifies passwords).
smtpd_sasl_auth_enable = yes
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = {log}
disable_dns_lookups = yes
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
# The milter lines of the README:
{milter_lines}
{extra}
",
            q = root.join("spool").display(),
            d = root.join("data").display(),
            sink = sink.port,
            log = root.join("maillog").display(),
        );
        std::fs::write(root.join("etc/main.cf"), main).unwrap();
        let pf = Postfix { dir, port };
        run(Command::new("postfix").arg("-c").arg(pf.etc()).arg("start"));
        wait_until("postfix to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        pf
    }

    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    pub fn wait_for_log(&self, needle: &str) -> String {
        let mut log = String::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            log = self.maillog();
            if log.contains(needle) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postfix log never said {needle:?}:\n{log}");
    }

    /// `postqueue -j`: one JSON object per queued message.
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let out = run(Command::new("postqueue")
            .arg("-c")
            .arg(self.etc())
            .arg("-j"));
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn client(&self) -> Smtp {
        Smtp::connect(self.port)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.etc())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------- client

/// A small SMTP client that keeps its transcript.
pub struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
    pub transcript: Vec<String>,
}

/// A message to send through Postfix.
pub struct Msg {
    pub from: String,
    pub to: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Msg {
    pub fn new(from: &str, to: &str, message_id: &str) -> Msg {
        Msg {
            from: from.into(),
            to: vec![to.into()],
            headers: vec![
                ("From".into(), format!("<{from}>")),
                ("To".into(), format!("<{to}>")),
                ("Subject".into(), "test".into()),
                ("Date".into(), "Tue, 24 Nov 2026 10:00:00 +0000".into()),
                ("Message-ID".into(), format!("<{message_id}>")),
            ],
            body: "Hello.\r\n".into(),
        }
    }

    pub fn header(mut self, n: &str, v: &str) -> Msg {
        self.headers.push((n.into(), v.into()));
        self
    }
}

impl Smtp {
    pub fn connect(port: u16) -> Smtp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut c = Smtp {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            transcript: Vec::new(),
        };
        c.reply();
        c
    }

    /// Reads one (multi-line) reply; returns its code and last line.
    pub fn reply(&mut self) -> (u16, String) {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                self.transcript.push("S: <connection closed>".into());
                return (0, String::new());
            }
            let line = line.trim_end().to_string();
            self.transcript.push(format!("S: {line}"));
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return (code, line);
            }
        }
    }

    pub fn cmd(&mut self, c: &str) -> (u16, String) {
        self.transcript.push(format!("C: {c}"));
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// EHLO, then XCLIENT to present another client; Postfix greets again.
    pub fn xclient(
        &mut self,
        addr: &str,
        name: &str,
        helo: &str,
        login: Option<&str>,
    ) -> (u16, String) {
        self.cmd("EHLO client.test");
        let mut x = format!("XCLIENT ADDR={addr} NAME={name} HELO={helo}");
        if let Some(l) = login {
            x.push_str(&format!(" LOGIN={l}"));
        }
        let r = self.cmd(&x);
        self.cmd(&format!("EHLO {helo}"));
        r
    }

    /// One transaction. Ok(queue id) or Err(the refusing reply).
    pub fn send(&mut self, m: &Msg) -> Result<String, String> {
        let r = self.cmd(&format!("MAIL FROM:<{}>", m.from));
        if r.0 != 250 {
            return Err(r.1);
        }
        let mut any = false;
        for t in &m.to {
            let r = self.cmd(&format!("RCPT TO:<{t}>"));
            if r.0 == 250 {
                any = true;
            } else if m.to.len() == 1 {
                self.cmd("RSET");
                return Err(r.1);
            }
        }
        if !any {
            self.cmd("RSET");
            return Err("no recipient accepted".into());
        }
        let r = self.cmd("DATA");
        if r.0 != 354 {
            return Err(r.1);
        }
        let mut data = String::new();
        for (n, v) in &m.headers {
            data.push_str(&format!("{n}: {v}\r\n"));
        }
        data.push_str("\r\n");
        for l in m.body.split_inclusive("\r\n") {
            if l.starts_with('.') {
                data.push('.');
            }
            data.push_str(l);
        }
        data.push_str(".\r\n");
        self.transcript
            .push(format!("C: <{} bytes of message>", data.len()));
        self.w.write_all(data.as_bytes()).unwrap();
        let r = self.reply();
        if r.0 == 250 {
            Ok(r.1.rsplit(' ').next().unwrap_or("").to_string())
        } else {
            Err(r.1)
        }
    }

    pub fn quit(mut self) -> Vec<String> {
        self.cmd("QUIT");
        self.transcript
    }
}

// ---------------------------------------------------------------- milter

/// The real `sra-milter run`, with a config written for the test.
pub struct Milter {
    pub child: Option<Child>,
    pub config: PathBuf,
    pub log: PathBuf,
    pub state: PathBuf,
}

impl Milter {
    pub fn write_config(dir: &Path, socket: &str, mode: &str, extra: &str) -> PathBuf {
        let cfg = dir.join("sra-milter.toml");
        std::fs::write(
            &cfg,
            format!(
                "socket = \"{socket}\"
socket_mode = \"0666\"
state_dir = \"{}\"
mode = \"{mode}\"
enterprise_domains = [\"example.com\"]
internal_networks = [\"127.0.0.0/8\", \"10.0.0.0/8\"]
shutdown_timeout = \"10s\"
{extra}
{auth}",
                dir.join("state").display(),
                // No DNS here: only the tests that bring their own DNS
                // server verify authentication.
                auth = if extra.contains("[auth]") {
                    ""
                } else {
                    "[auth]\nverify = false\n"
                },
            ),
        )
        .unwrap();
        cfg
    }

    pub fn start(config: PathBuf, ready: impl Fn() -> bool) -> Milter {
        let dir = config.parent().unwrap().to_path_buf();
        let mut m = Milter {
            child: None,
            log: dir.join("milter.log"),
            state: dir.join("state"),
            config,
        };
        m.spawn(ready);
        m
    }

    pub fn spawn(&mut self, ready: impl Fn() -> bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(BIN)
                .arg("run")
                .arg("-c")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let log = self.log.clone();
        let start = Instant::now();
        while !ready() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "sra-milter did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("milter running");
        run(Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string()));
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sra-milter ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn explain(&self, args: &[&str]) -> serde_json::Value {
        let mut cmd = Command::new(BIN);
        cmd.arg("explain")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .arg("--json");
        serde_json::from_str(&run(&mut cmd)).unwrap()
    }

    pub fn cli(&self, sub: &str, args: &[&str]) -> String {
        let mut cmd = Command::new(BIN);
        cmd.arg(sub).arg("-c").arg(&self.config).args(args);
        run(&mut cmd)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Milter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The README's main.cf lines, with the test milter's socket.
pub fn readme_milter_lines(socket: &str) -> String {
    let snippet = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/postfix/main.cf"
    ))
    .unwrap();
    snippet.replace("inet:127.0.0.1:8894", socket)
}

/// A Postfix with sra-milter on TCP, and the sink behind it.
pub struct Rig {
    pub sink: Sink,
    pub milter: Milter,
    pub postfix: Postfix,
    pub milter_port: u16,
    pub dir: tempfile::TempDir,
}

impl Rig {
    pub fn tcp(mode: &str, extra: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let milter_port = free_port();
        let config = Milter::write_config(
            dir.path(),
            &format!("inet:127.0.0.1:{milter_port}"),
            mode,
            extra,
        );
        let milter = Milter::start(config, move || {
            TcpStream::connect(("127.0.0.1", milter_port)).is_ok()
        });
        let sink = Sink::start();
        let postfix = Postfix::start(
            &sink,
            &readme_milter_lines(&format!("inet:127.0.0.1:{milter_port}")),
        );
        Rig {
            sink,
            milter,
            postfix,
            milter_port,
            dir,
        }
    }

    /// An outside MTA (192.0.2.10 unless given) sends `m`.
    pub fn inbound(&self, ip: &str, m: &Msg) -> (Result<String, String>, Vec<String>) {
        let mut c = self.postfix.client();
        c.xclient(ip, "mx.partner.example", "mx.partner.example", None);
        let r = c.send(m);
        (r, c.quit())
    }

    /// An internal host (10.0.0.5) sends `m`.
    pub fn outbound(&self, m: &Msg) -> Result<String, String> {
        let mut c = self.postfix.client();
        c.xclient("10.0.0.5", "ws5.example.com", "ws5.example.com", None);
        let r = c.send(m);
        c.quit();
        r
    }

    pub fn restart_milter(&mut self) {
        let port = self.milter_port;
        self.milter
            .spawn(move || TcpStream::connect(("127.0.0.1", port)).is_ok());
    }
}

// ---------------------------------------------------------------- dns

/// A real DNS server on loopback (dnsmasq) serving the test domains' TXT
/// records; every other name under `.example` is NXDOMAIN.
pub struct Dns {
    child: Child,
    pub port: u16,
}

impl Dns {
    pub fn start(txt: &[(&str, String)]) -> Dns {
        assert!(
            Path::new("/usr/sbin/dnsmasq").exists(),
            "dnsmasq is not installed: run ./scripts/test.sh, which installs it"
        );
        let port = free_udp_port();
        let mut cmd = Command::new("/usr/sbin/dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local=/example/",
            "--pid-file=",
            "--user=root",
            "--log-queries",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"));
        for (name, value) in txt {
            cmd.arg(format!("--txt-record={name},{value}"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dns = Dns { child, port };
        // Ready when it answers.
        wait_until("dnsmasq to answer", Duration::from_secs(10), || {
            dns.answers()
        });
        dns
    }

    fn answers(&self) -> bool {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // A query for example. TXT.
        let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x00\x00\x10\x00\x01";
        s.send_to(q, ("127.0.0.1", self.port)).is_ok() && s.recv(&mut [0u8; 512]).is_ok()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- dovecot

/// A private Dovecot (Debian's packages): LMTP and IMAP on loopback ports,
/// static users with password `secret` and Maildirs under the test
/// directory, and sra-milter's push-notification script.
pub struct Dovecot {
    child: Child,
    pub dir: tempfile::TempDir,
    pub lmtp_port: u16,
    pub imap_port: u16,
}

impl Dovecot {
    pub fn start(events_url: &str, token_file: &Path) -> Dovecot {
        assert!(
            Path::new("/usr/sbin/dovecot").exists(),
            "dovecot is not installed: run ./scripts/test.sh, which installs it"
        );
        let dir = tempfile::Builder::new()
            .prefix("sra-dovecot-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        run(Command::new("chmod").arg("0755").arg(d));
        run(Command::new("chown").arg("mail:mail").arg(d.join("home")));
        let token = d.join("token");
        std::fs::copy(token_file, &token).unwrap();
        run(Command::new("chmod").arg("0644").arg(&token));
        let (lmtp_port, imap_port) = (free_port(), free_port());
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/dovecot/sra-milter-events.lua"
        );
        let snippet = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/dovecot/90-sra-milter.conf"
        ))
        .unwrap()
        .replace(
            "/usr/share/sra-milter/dovecot/sra-milter-events.lua",
            script,
        )
        .replace("http://127.0.0.1:8895/v1/events", events_url)
        .replace(
            "/etc/dovecot/sra-milter.token",
            &token.display().to_string(),
        );
        let conf = format!(
            "base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = 8
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = static
  args = password=secret
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={d}/home/%u
}}
mail_location = maildir:~/Maildir
imap_metadata = yes
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0
  }}
}}
# The shipped snippet, as installed:
{snippet}
",
            d = d.display()
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let dv = Dovecot {
            child,
            dir,
            lmtp_port,
            imap_port,
        };
        wait_until("dovecot to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", imap_port)).is_ok()
                && TcpStream::connect(("127.0.0.1", lmtp_port)).is_ok()
        });
        dv
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Messages in a user's INBOX (new and cur).
    pub fn inbox_count(&self, user: &str) -> usize {
        let md = self.dir.path().join("home").join(user).join("Maildir");
        ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(md.join(s))
                    .map(|r| r.count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.dir.path().join("dovecot.conf"))
            .status();
    }
}

/// A few lines of IMAP.
pub struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

impl Imap {
    pub fn login(port: u16, user: &str, password: &str) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Imap {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            tag: 0,
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).unwrap();
        let r = c.cmd(&format!("LOGIN {user} {password}"));
        assert!(r.last().unwrap().contains("OK"), "{r:?}");
        c
    }

    /// Sends a command; returns every line up to its tagged completion.
    pub fn cmd(&mut self, command: &str) -> Vec<String> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.w
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .unwrap();
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap() == 0 {
                panic!("imap connection closed after {lines:?}");
            }
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l.trim_end().to_string());
            if done {
                return lines;
            }
        }
    }

    /// The UID of the message with this Message-ID in the selected mailbox.
    pub fn uid_of(&mut self, message_id: &str) -> String {
        let r = self.cmd(&format!("UID SEARCH HEADER Message-ID \"{message_id}\""));
        let line = r
            .iter()
            .find(|l| l.starts_with("* SEARCH"))
            .cloned()
            .unwrap_or_default();
        line.split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("{message_id} not found: {r:?}"))
            .to_string()
    }
}
