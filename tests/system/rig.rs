//! Postfix with sra-milter on TCP and the sink behind it: the usual
//! system-test setup.

use super::{Milter, Msg, Postfix, Sink};
use crate::support::free_port;
use std::net::TcpStream;

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
