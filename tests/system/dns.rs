//! A real DNS server on loopback: dnsmasq.

use crate::support::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A real DNS server on loopback (dnsmasq) serving the test domains' TXT
/// records; every other name under `.example` is NXDOMAIN.
pub struct Dns {
    child: Child,
    pub port: u16,
    /// Its log (every query it answered).
    log: std::fs::File,
}

impl Dns {
    pub fn start(txt: &[(&str, String)]) -> Dns {
        assert!(
            Path::new("/usr/sbin/dnsmasq").exists(),
            "dnsmasq is not installed: run ./scripts/test.sh, which installs it"
        );
        // The free port may be taken by someone else before dnsmasq binds
        // it (it then exits): a few tries, each on a new port.
        let mut why = String::new();
        for _ in 0..3 {
            match Dns::try_start(txt) {
                Ok(dns) => return dns,
                Err(e) => why = e,
            }
        }
        panic!("dnsmasq did not start: {why}");
    }

    fn try_start(txt: &[(&str, String)]) -> Result<Dns, String> {
        let port = free_port();
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
        // Its log goes to a file (a pipe nobody reads would fill up).
        let log = tempfile::tempfile().unwrap();
        let mut log_read = log.try_clone().unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut dns = Dns {
            child,
            port,
            log: log_read.try_clone().unwrap(),
        };
        // Ready when it answers; gone when it exited (port taken).
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if dns.answers() {
                return Ok(dns);
            }
            if let Ok(Some(status)) = dns.child.try_wait() {
                let mut err = String::new();
                use std::io::{Read, Seek};
                let _ = log_read.seek(std::io::SeekFrom::Start(0));
                let _ = log_read.read_to_string(&mut err);
                return Err(format!("port {port}: exited {status}: {err}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("port {port}: no answer within 10 s"))
    }

    /// How many queries for `name` (any type) it has answered.
    pub fn queries(&self, name: &str) -> usize {
        use std::io::{Read, Seek};
        let mut log = String::new();
        let mut f = &self.log;
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.read_to_string(&mut log);
        let needle = format!(" {name} from ");
        log.lines()
            .filter(|l| l.contains("query[") && l.contains(&needle))
            .count()
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
