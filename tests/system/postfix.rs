//! A private Postfix instance: its own main.cf and master.cf, queue and
//! log under a temp dir, smtpd on a free loopback port.

use super::{run, wait_until, Sink, Smtp};
use crate::support::free_port;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
        // A complete master.cf of its own (Debian's services, smtpd and
        // cleanup chrooted as Debian ships them), so that the host's
        // /etc/postfix/master.cf, however it is configured, plays no part.
        std::fs::write(root.join("etc/master.cf"), master_cf(port)).unwrap();
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
    /// Stops the instance; a stop that does not finish in 30 s (seen once
    /// after a test had failed on a starved machine) is killed, so a failed
    /// test fails instead of hanging the suite.
    fn drop(&mut self) {
        let Ok(mut stop) = Command::new("postfix")
            .arg("-c")
            .arg(self.etc())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = stop.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = stop.kill();
        let _ = stop.wait();
        eprintln!("postfix stop did not finish in 30 s; killed it");
    }
}

/// The services a Postfix relay needs, as Debian's master.cf declares them,
/// with smtpd on `127.0.0.1:PORT`.
fn master_cf(port: u16) -> String {
    format!(
        "# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       y       1000?   1       tlsmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
bounce    unix  -       -       y       -       0       bounce
defer     unix  -       -       y       -       0       bounce
trace     unix  -       -       y       -       0       bounce
verify    unix  -       -       y       -       1       verify
flush     unix  n       -       y       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
showq     unix  n       -       y       -       -       showq
error     unix  -       -       y       -       -       error
retry     unix  -       -       y       -       -       error
discard   unix  -       -       y       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       y       -       -       lmtp
anvil     unix  -       -       y       -       1       anvil
scache    unix  -       -       y       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
    )
}
