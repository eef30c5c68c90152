//! A small SMTP client (with XCLIENT) and the messages it sends.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

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
