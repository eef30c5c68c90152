//! The real `sra-milter run` as a child process, with a config written for
//! the test.

use super::{run, BIN};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
