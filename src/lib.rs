//! sra-milter: a Postfix milter for MITRE D3FEND Sender Reputation Analysis
//! (D3-SRA).
//!
//! Data flows one way, and each module imports only the layers below it
//! (docs/architecture.md is the map):
//!
//! ```text
//! main (cli) ─> daemon ─> milter | listeners ─> shared     replay
//!                                     │                      │
//!                                     v                      v
//!                               verdict ─> pipeline ─> policy ─> reputation
//!                                                                   │
//!                                  message ─> auth ─> store ─> config ─> vocab
//! ```
//!
//! The binary (`main.rs`) only parses the command line and calls [`cli`];
//! integration tests call [`daemon::serve`] in-process, as `run` does.

pub mod activity;
pub mod auth;
pub mod config;
pub mod daemon;
pub mod journal;
pub mod listeners;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod milter;
pub mod pipeline;
pub mod policy;
#[cfg(all(feature = "rocksdb", feature = "redis"))]
pub mod replay;
pub mod reputation;
pub mod shared;
pub mod store;
pub mod verdict;
pub mod vocab;

pub use vocab::now;
