//! What every integration test may share: free loopback ports and the DKIM
//! test key (also used by the library's own unit tests).
#![allow(dead_code)]

pub mod dkim;
pub mod redis;

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port on 127.0.0.1 that nothing is bound to right now.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
