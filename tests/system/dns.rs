//! A real DNS server on loopback: dnsmasq.

use super::wait_until;
use crate::support::free_udp_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
