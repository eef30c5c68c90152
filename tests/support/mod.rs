//! What every integration test may share: free loopback ports and the DKIM
//! test key (also used by the library's own unit tests).
#![allow(dead_code)]

pub mod dkim;
pub mod redis;

/// A port on 127.0.0.1 that neither TCP nor UDP is bound to right now
/// (a DNS server takes both), for a daemon a test starts next. See
/// [`free_ports_with`].
pub fn free_port() -> u16 {
    free_ports_with(1, &[])[0]
}

/// `count` distinct loopback ports, each free for TCP and UDP, each with
/// `port + offset` free too for every offset in `companions` (a Redis
/// cluster node's bus port).
///
/// - Between this choice and the daemon's bind, the port must stay free.
///   So it is taken below the kernel's ephemeral range (32768–60999):
///   there, no client socket of another test or daemon can take it as its
///   local port.
/// - The tests of one binary run in parallel: a port once handed out is
///   never handed out again by this process, and ports chosen together are
///   distinct (a daemon given the same port twice fails to start).
pub fn free_ports_with(count: usize, companions: &[u16]) -> Vec<u16> {
    use std::collections::BTreeSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Mutex;
    const LOW: u16 = 10_000;
    const HIGH: u16 = 32_767;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let reach = companions.iter().copied().max().unwrap_or(0);
    assert!(reach < HIGH - LOW, "companion ports beyond the range");
    let span = u64::from(HIGH - LOW - reach) + 1;
    let seed = RandomState::new();
    let mut ports = Vec::new();
    for attempt in 0u64.. {
        if ports.len() == count {
            break;
        }
        assert!(attempt < 100_000, "no {count} free loopback ports");
        let port = LOW + (seed.hash_one(attempt) % span) as u16;
        let all: Vec<u16> = std::iter::once(port)
            .chain(companions.iter().map(|c| port + c))
            .collect();
        if all.iter().any(|p| given.contains(p)) {
            continue;
        }
        let free = |p: u16| {
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
        };
        if all.iter().all(|&p| free(p)) {
            given.extend(all);
            ports.push(port);
        }
    }
    ports
}

/// Spawns `cmd` (a daemon; stdout discarded, stderr to `log`) and returns
/// once something listens on 127.0.0.1:`port`. Panics with the log when
/// the process exits first or `within` passes.
pub fn spawn_listening(
    cmd: &mut std::process::Command,
    port: u16,
    log: &std::path::Path,
    within: std::time::Duration,
) -> std::process::Child {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited: {}",
            log_text()
        );
        assert!(start.elapsed() < within, "did not start: {}", log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// A daemon configuration at `path`: the milter on 127.0.0.1:`port`, the
/// store in `state`, enterprise example.com, internal 10.0.0.0/8, no DNS
/// (identities are rated as given), and `extra` TOML at the end.
pub fn write_config(
    path: &std::path::Path,
    port: u16,
    state: &std::path::Path,
    mode: &str,
    extra: &str,
) {
    let extra = format!("{extra}\n[auth]\nverify = false\n");
    std::fs::write(
        path,
        format!(
            "socket = \"inet:{port}@127.0.0.1\"\nstate_dir = \"{}\"\nmode = \"{mode}\"\nenterprise_domains = [\"example.com\"]\ninternal_networks = [\"10.0.0.0/8\"]\n{extra}\n",
            state.display()
        ),
    )
    .unwrap();
}
