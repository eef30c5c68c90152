//! sra-milter: a Postfix milter for MITRE D3FEND Sender Reputation Analysis
//! (D3-SRA).
//!
//! Data flows one way: milter callbacks ([`milter`], [`session`]) →
//! identities ([`identity`]) → ratings over the store ([`pipeline`],
//! [`rating`], [`store`]) → policy ([`policy`]) → the reply, headers and
//! verdict record ([`verdict`]). The binary (`main.rs`) only parses the
//! command line, loads the config, binds the socket, wires signals and calls
//! [`daemon::serve`]; integration tests call the same function in-process.

pub mod anomaly;
pub mod auth;
pub mod config;
pub mod daemon;
pub mod events;
pub mod explain;
pub mod features;
pub mod http;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod milter;
pub mod overrides;
pub mod pipeline;
pub mod policy;
pub mod rating;
pub mod record;
pub mod replay;
pub mod session;
pub mod socket;
pub mod store;
pub mod verdict;

/// Wall-clock Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
