//! An SMTP sink: the relay behind the test Postfix, keeping every message
//! it is given for the tests to read back.

use super::wait_until;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Delivered {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: String,
}

impl Delivered {
    /// The first line of a header field as delivered, name and colon
    /// included (the spacing an MUA or a filter rule sees).
    pub fn field_line(&self, name: &str) -> Option<&str> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n").find(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
    }

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
