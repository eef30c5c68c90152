//! A real Redis for the tests, on loopback: one server, or a Redis Cluster
//! of three masters and three replicas made by `redis-cli --cluster
//! create`. Started by the test that needs it (Debian's `redis-server` and
//! `redis-tools`, installed by scripts/test.sh), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    killed: Vec<bool>,
    /// TLS only: the CA's certificate, which `redis-cli` needs too.
    tls: Option<PathBuf>,
    pub dir: tempfile::TempDir,
}

/// `count` loopback ports for cluster nodes, each with its cluster bus
/// port (`port + 10000`) free too.
fn free_cluster_ports(count: usize) -> Vec<u16> {
    super::free_ports_with(count, &[10_000])
}

fn free_ports(count: usize) -> Vec<u16> {
    super::free_ports_with(count, &[])
}

/// Where [`start_server_with`] in `dir` on `port` writes its log.
fn log_of(dir: &Path, port: u16) -> PathBuf {
    dir.join(port.to_string()).join("redis.log")
}

fn start_server(dir: &Path, port: u16, cluster: bool) -> Child {
    start_server_with(dir, port, cluster, &[])
}

fn start_server_with(dir: &Path, port: u16, cluster: bool, extra: &[&str]) -> Child {
    let node = dir.join(port.to_string());
    std::fs::create_dir_all(&node).unwrap();
    let mut args: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--dir".into(),
        node.display().to_string(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "yes".into(),
        "--appendfsync".into(),
        "everysec".into(),
        "--daemonize".into(),
        "no".into(),
        // Replicas sync at once (a failover needs a synced replica).
        "--repl-diskless-sync-delay".into(),
        "0".into(),
        "--logfile".into(),
        log_of(dir, port).display().to_string(),
    ];
    if cluster {
        args.extend([
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            node.join("nodes.conf").display().to_string(),
            "--cluster-node-timeout".into(),
            "2000".into(),
        ]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    Command::new("redis-server")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/test.sh installs it)")
}

fn cli(port: u16, args: &[&str]) -> String {
    cli_tls(None, port, args)
}

/// `redis-cli` on `port`, over TLS with the CA `tls` when given.
fn cli_tls(tls: Option<&Path>, port: u16, args: &[&str]) -> String {
    let mut c = Command::new("redis-cli");
    c.args(["-p", &port.to_string()]);
    if let Some(ca) = tls {
        c.arg("--tls").arg("--cacert").arg(ca);
    }
    let out = c.args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Until the server on `port` answers; its `log` says why when it does not.
fn wait_ping(tls: Option<&Path>, port: u16, log: &Path) {
    wait_for(port, log, || cli_tls(tls, port, &["ping"]));
}

/// Until `ping` (a `redis-cli ... ping` of the server on `port`) says
/// PONG; the server's `log` says why when it does not.
fn wait_for(port: u16, log: &Path, ping: impl Fn() -> String) {
    let start = Instant::now();
    while !ping().contains("PONG") {
        if start.elapsed() > Duration::from_secs(10) {
            let log = std::fs::read_to_string(log).unwrap_or_else(|e| format!("(no log: {e})"));
            panic!("redis on {port} did not start; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server's TLS settings: TLS only on `port`, the certificates of
/// [`make_certificates`] in `d`, no client certificates.
fn tls_args(d: &Path, port: u16) -> Vec<String> {
    let p = |f: &str| d.join(f).display().to_string();
    vec![
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        p("srv.crt"),
        "--tls-key-file".into(),
        p("srv.key"),
        "--tls-ca-cert-file".into(),
        p("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `d` (`ca.crt`,
/// `srv.crt`, `srv.key`), made with `openssl`.
fn make_certificates(d: &Path) {
    let ssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=sra-milter test CA",
    ]);
    ssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(d.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    ssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

impl Redis {
    /// One server.
    pub fn single() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(1);
        let children = vec![start_server(dir.path(), ports[0], false)];
        let log = log_of(dir.path(), ports[0]);
        let r = Redis {
            killed: vec![false; ports.len()],
            tls: None,
            ports,
            children,
            dir,
        };
        wait_ping(None, r.ports[0], &log);
        r
    }

    /// One server that knows only the ACL user `user` with `password`
    /// (the default user is off).
    pub fn single_with_user(user: &str, password: &str) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(1);
        let pass = format!(">{password}");
        let children = vec![start_server_with(
            dir.path(),
            ports[0],
            false,
            &[
                "--user", user, "on", &pass, "~*", "&*", "+@all", "--user", "default", "off",
            ],
        )];
        let log = log_of(dir.path(), ports[0]);
        let r = Redis {
            killed: vec![false],
            tls: None,
            ports,
            children,
            dir,
        };
        let port = r.ports[0];
        wait_for(port, &log, || {
            cli(port, &["--user", user, "--pass", password, "ping"])
        });
        r
    }

    /// One server that speaks only TLS, with a certificate for 127.0.0.1
    /// signed by a CA made here (`openssl`); the CA is at `ca()`.
    pub fn single_tls() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_certificates(d);
        let ports = free_ports(1);
        let args = tls_args(d, ports[0]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let children = vec![start_server_with(d, 0, false, &args)];
        let (ca, log) = (d.join("ca.crt"), log_of(d, 0));
        let r = Redis {
            killed: vec![false],
            tls: Some(ca),
            ports,
            children,
            dir,
        };
        wait_ping(r.tls.as_deref(), r.ports[0], &log);
        r
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Three masters, three replicas.
    pub fn cluster() -> Redis {
        Redis::cluster_with(false)
    }

    /// Three masters, three replicas, speaking only TLS (clients, the
    /// cluster bus and replication), with the certificates of
    /// `make_certificates`.
    pub fn cluster_tls() -> Redis {
        Redis::cluster_with(true)
    }

    fn cluster_with(tls: bool) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ports = free_cluster_ports(6);
        let ca = d.join("ca.crt");
        if tls {
            make_certificates(d);
        }
        // Each node's directory and the port it is started with (a TLS
        // node gets its port as `--tls-port` and none in plain text).
        let homes: Vec<(PathBuf, u16)> = ports
            .iter()
            .map(|port| match tls {
                true => (d.join(format!("n{port}")), 0),
                false => (d.to_owned(), *port),
            })
            .collect();
        let children = ports
            .iter()
            .zip(&homes)
            .map(|(port, (home, plain))| {
                let mut args = Vec::new();
                if tls {
                    args = tls_args(d, *port);
                    for a in ["--tls-cluster", "yes", "--tls-replication", "yes"] {
                        args.push(a.into());
                    }
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                start_server_with(home, *plain, true, &args)
            })
            .collect();
        let logs: Vec<PathBuf> = homes.iter().map(|(h, p)| log_of(h, *p)).collect();
        // Owned from here on: a node that fails to start stops the others
        // (dropped with the test's panic), so no server outlives its test.
        let r = Redis {
            killed: vec![false; ports.len()],
            tls: tls.then_some(ca),
            ports,
            children,
            dir,
        };
        for (port, log) in r.ports.iter().zip(&logs) {
            wait_ping(r.tls.as_deref(), *port, log);
        }
        let nodes: Vec<String> = r.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = Command::new("redis-cli");
        if let Some(ca) = &r.tls {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = create
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        r.wait_cluster_ok();
        r
    }

    /// Until every live node says `cluster_state:ok`, knows all slots, and
    /// every replica has synced with its master.
    pub fn wait_cluster_ok(&self) {
        let start = Instant::now();
        loop {
            let ok = self.live_ports().iter().all(|p| {
                let info = cli_tls(self.tls.as_deref(), *p, &["cluster", "info"]);
                let repl = cli_tls(self.tls.as_deref(), *p, &["info", "replication"]);
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the cluster did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The ports of the nodes not killed.
    pub fn live_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .zip(&self.killed)
            .filter(|(_, k)| !**k)
            .map(|(p, _)| *p)
            .collect()
    }

    /// `redis://127.0.0.1:PORT` for each node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| {
                let scheme = if self.tls.is_some() {
                    "rediss"
                } else {
                    "redis"
                };
                format!("{scheme}://127.0.0.1:{p}")
            })
            .collect()
    }

    /// The port of the master that holds `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        let slot = cli_tls(self.tls.as_deref(), port, &["cluster", "keyslot", key]);
        let slot: u16 = slot.trim().parse().unwrap();
        let nodes = cli_tls(self.tls.as_deref(), port, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            for range in &f[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    if (a..=b).contains(&slot) {
                        let port = f[1].split(['@', ':']).nth(1).unwrap();
                        return port.parse().unwrap();
                    }
                }
            }
        }
        panic!("no master for slot {slot}");
    }

    /// Runs one command with `redis-cli` on the master that holds `key`
    /// (the command's first key); its output.
    pub fn on_master_of(&self, key: &str, args: &[&str]) -> String {
        cli_tls(self.tls.as_deref(), self.master_of(key), args)
    }

    /// The masters' ports (of the nodes not killed).
    pub fn masters(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|p| {
                cli_tls(self.tls.as_deref(), *p, &["info", "replication"]).contains("role:master")
            })
            .collect()
    }

    /// Moves `key`'s slot, with its keys, to the master on `to`, as
    /// `redis-cli --cluster reshard` does: the slot is marked importing
    /// and migrating, its keys are moved with `MIGRATE` (clients meanwhile
    /// get `ASK` or `TRYAGAIN`), then every master is told its new owner
    /// (clients get `MOVED`). `pause` is slept between the steps.
    pub fn move_slot(&self, key: &str, to: u16, pause: Duration) {
        let tls = self.tls.as_deref();
        let from = self.master_of(key);
        let slot = cli_tls(tls, from, &["cluster", "keyslot", key]);
        let slot = slot.trim();
        let id = |p: u16| cli_tls(tls, p, &["cluster", "myid"]).trim().to_string();
        let (from_id, to_id) = (id(from), id(to));
        let ok = |out: String| assert!(out.trim() == "OK", "{out}");
        let setslot = |port: u16, state: &str, node: &str| {
            ok(cli_tls(
                tls,
                port,
                &["cluster", "setslot", slot, state, node],
            ))
        };
        setslot(to, "importing", &from_id);
        setslot(from, "migrating", &to_id);
        std::thread::sleep(pause);
        loop {
            let keys = cli_tls(tls, from, &["cluster", "getkeysinslot", slot, "1000"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut args = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000", "keys"];
            args.extend(keys);
            ok(cli_tls(tls, from, &args));
            std::thread::sleep(pause);
        }
        // The new owner first, then the old, then the other masters.
        let others = self
            .masters()
            .into_iter()
            .filter(|m| *m != to && *m != from);
        for m in [to, from].into_iter().chain(others) {
            setslot(m, "node", &to_id);
        }
        assert_eq!(self.master_of(key), to, "the slot moved");
    }

    /// Stops the server on `port` (SIGKILL: a crash).
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
        self.killed[i] = true;
    }

    /// Freezes the server on `port` (SIGSTOP): it still accepts
    /// connections (the kernel completes them) but answers nothing, as a
    /// hung or overloaded server; [`Redis::resume`] thaws it.
    pub fn pause(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    pub fn resume(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    fn signal(&self, port: u16, sig: &str) {
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        let ok = std::process::Command::new("kill")
            .arg(sig)
            .arg(self.children[i].id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} the server on {port}");
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
