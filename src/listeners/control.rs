//! The control socket (`admin.control_socket`, mode 0600): one JSON request
//! per line from `sra-milter override` and `import-events` while the daemon
//! holds the store's single write lock.

use crate::config::{remove_stale_socket, Config};
use crate::pipeline::engagement::parse_batch;
use crate::pipeline::Engine;
use crate::shared::Shared;
use crate::store::{run_blocking, Override};
use crate::vocab::{now, Class, Target};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// A request on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    SetOverride {
        target: Target,
        class: Class,
        reason: String,
    },
    RemoveOverride {
        target: Target,
    },
    /// JSON lines of engagement events (`sra-milter import-events`).
    Events {
        body: String,
    },
    Ping,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    #[serde(default)]
    pub message: String,
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        remove_stale_socket(path)?;
        let listener = UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
        })
    }

    pub async fn run(self, shared: Arc<Shared>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle_control(stream, shared).await {
                            tracing::warn!("control socket: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::error!("control socket {}: {e}", self.path.display());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

async fn handle_control(stream: UnixStream, shared: Arc<Shared>) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    // Requests are small, but `import-events` sends batches of lines.
    let mut lines = BufReader::new(r.take(16 * 1024 * 1024)).lines();
    while let Some(line) = lines.next_line().await? {
        let resp = match serde_json::from_str::<ControlRequest>(&line) {
            Err(e) => ControlResponse {
                ok: false,
                message: format!("bad request: {e}"),
            },
            Ok(req) => {
                let shared = shared.clone();
                run_blocking(move || Ok(execute(&shared.config(), &shared.engine, req)))
                    .await
                    .unwrap_or_else(|e| ControlResponse {
                        ok: false,
                        message: e.to_string(),
                    })
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        w.write_all(&out).await?;
    }
    Ok(())
}

/// Applies a control request to a store (the daemon's, or one the CLI
/// opened itself).
pub fn execute(cfg: &Config, engine: &Engine, req: ControlRequest) -> ControlResponse {
    let store = engine.store();
    let refuse = |message: String| ControlResponse { ok: false, message };
    let result = match req {
        ControlRequest::Ping => Ok("pong".to_string()),
        ControlRequest::Events { body } => match parse_batch(&body) {
            Err(bad) => return refuse(format!("no event imported: {bad}")),
            Ok(events) => engine.apply_events(&events, now()).map(|r| {
                format!(
                    "{} events: {} accepted, {} unknown, {} duplicate",
                    events.len(),
                    r.accepted,
                    r.unknown,
                    r.duplicate
                )
            }),
        },
        ControlRequest::SetOverride {
            target,
            class,
            reason,
        } => {
            let target = match target.normalized() {
                Ok(t) => t,
                Err(e) => return refuse(format!("no override set: {e}")),
            };
            let o = Override {
                target: target.clone(),
                class,
                reason,
                time: now(),
                source: "store".into(),
            };
            store
                .set_override(&o)
                .map(|_| format!("override set: {target} is {class}"))
        }
        ControlRequest::RemoveOverride { target } => {
            let target = match target.normalized() {
                Ok(t) => t,
                Err(e) => return refuse(format!("no override removed: {e}")),
            };
            store.remove_override(&target).map(|existed| {
                if existed {
                    format!("override removed: {target}")
                } else {
                    format!("no override for {target}")
                }
            })
        }
    };
    let result = result.and_then(|m| engine.reload_overrides(cfg).map(|_| m));
    match result {
        Ok(message) => {
            tracing::info!("control: {message}");
            ControlResponse { ok: true, message }
        }
        Err(e) => ControlResponse {
            ok: false,
            message: e.to_string(),
        },
    }
}

/// Sends one request to a running daemon's control socket.
pub async fn send_control(path: &Path, req: &ControlRequest) -> io::Result<ControlResponse> {
    let stream = UnixStream::connect(path).await?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.shutdown().await?;
    let mut lines = BufReader::new(r).lines();
    let resp = lines
        .next_line()
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no answer from the daemon"))?;
    serde_json::from_str(&resp).map_err(io::Error::other)
}
