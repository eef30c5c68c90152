//! A real Postfix for system tests, as Debian runs it: a master.cf of its
//! own with Debian's services (smtpd and cleanup chrooted), a private config and queue
//! directory per test, bound to 127.0.0.1 on free ports, logging to a file
//! (`maillog_file`), relaying everything to an in-test SMTP sink whose
//! messages the tests read back. XCLIENT lets one loopback client present
//! any client address, HELO and login.
//!
//! Postfix must be installed (`scripts/test.sh` installs it); a test that
//! cannot start it fails, it is never skipped.
#![allow(dead_code)]

mod dns;
mod dovecot;
mod milter;
mod postfix;
mod rig;
mod sink;
mod smtp;

pub use dns::Dns;
pub use dovecot::{Dovecot, Imap};
pub use milter::Milter;
pub use postfix::Postfix;
pub use rig::{readme_milter_lines, Rig};
pub use sink::Sink;
pub use smtp::{Msg, Smtp};

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");

/// One Postfix instance at a time: they are cheap, but serial logs are
/// easier to read when one fails.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
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
