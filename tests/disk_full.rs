//! A full disk under the store: mail keeps flowing per `on_error`, nothing
//! panics, and no stored history is lost. Runs as root (it mounts a small
//! tmpfs), as the test command does.

mod common;

use common::{send, Mail};
use indymilter_test::Status;
use sra_milter::store::Counter;
use sra_milter::store::Kind;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn received(m: &common::Milter) -> u64 {
    m.store
        .record(Kind::Sender, "carol@partner.example")
        .unwrap()
        .count(Counter::MessagesReceived)
}

#[tokio::test]
async fn a_full_disk_answers_per_on_error_and_loses_no_history() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "mounting a tmpfs needs root (the test command runs as root)"
    );
    let _mount = Mount(mnt.clone());

    let mut cfg = common::config(dir.path());
    cfg.state_dir = mnt.join("store");
    let m = common::start_with(tempfile::tempdir().unwrap(), cfg.clone()).await;
    for i in 0..5 {
        let t = send(
            m.addr,
            &Mail::inbound("carol@partner.example", &format!("before{i}@p")),
        )
        .await;
        assert_eq!(t.eom_status(), Some(&Status::Continue));
    }
    assert_eq!(received(&m), 5);

    // Fill the disk.
    let filler = mnt.join("filler");
    let mut size = 0usize;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {
            size += block.len();
        }
        let _ = f.flush();
    }
    assert!(size > 0);

    // Mail goes on: every message is accepted (on_error = accept), with or
    // without a verdict, and the daemon keeps answering.
    for i in 0..30 {
        let mut mail = Mail::inbound("carol@partner.example", &format!("full{i}@p"));
        mail.body = "x".repeat(4000);
        let t = send(m.addr, &mail).await;
        assert_eq!(t.connect, Status::Continue, "message {i}");
        assert_eq!(
            t.eom_status(),
            Some(&Status::Continue),
            "message {i}: {t:?}"
        );
    }
    let during = received(&m);
    assert!(during >= 5, "history is still readable: {during}");
    assert!(
        during < 35,
        "the disk really was full: some messages could not be learned ({during})"
    );
    let errors = m.shared.metrics.render(0, &[]);
    assert!(
        errors.contains("sra_milter_errors_total{kind=\"store\"}"),
        "{errors}"
    );
    // Space again: the daemon reopens the store by itself, and learning
    // resumes without a restart.
    std::fs::remove_file(&filler).unwrap();
    let mut resumed = false;
    for i in 0..40 {
        let t = send(
            m.addr,
            &Mail::inbound("carol@partner.example", &format!("back{i}@p")),
        )
        .await;
        assert_eq!(t.eom_status(), Some(&Status::Continue));
        if received(&m) > during {
            resumed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(resumed, "learning did not resume once space was back");
    let during = received(&m);
    m.stop().await;

    // Restart: the history is all there and learning goes on.
    let m = common::start_with(tempfile::tempdir().unwrap(), cfg).await;
    let after_restart = received(&m);
    assert!(
        after_restart >= during,
        "nothing lost: {after_restart} < {during}"
    );
    let t = send(m.addr, &Mail::inbound("carol@partner.example", "after@p")).await;
    assert!(t.header("X-SRA-Verdict").is_some());
    assert_eq!(received(&m), after_restart + 1);
    m.stop().await;
}
