//! A private Dovecot with LMTP, IMAP and sra-milter's push script, and a
//! few lines of IMAP.

use super::{run, wait_until};
use crate::support::free_port;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
