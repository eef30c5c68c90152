//! The running daemon: shared state, the serve loop, graceful shutdown,
//! configuration reload, and the control socket.
//!
//! Shutdown (SIGTERM/SIGINT): the listening socket is closed at once (the
//! MTA applies `milter_default_action` to new connections), open SMTP
//! sessions get up to `shutdown_timeout` to finish, then the milter stops
//! and the caller flushes the store.
//!
//! Reload (SIGHUP): the file is parsed and validated completely before it
//! replaces the running config; a bad file keeps the old config and is
//! logged. Sessions already open keep the snapshot they started with.
//!
//! The control socket (`admin.control_socket`, mode 0600) takes one JSON
//! request per line from `sra-milter override` while the daemon holds the
//! store's single write lock.

use crate::config::{Config, ConfigError, OnError, Overrides};
use crate::overrides::{Override, Target};
use crate::pipeline::Engine;
use crate::rating::Class;
use crate::socket::MilterListener;
use indymilter::{SetErrorReply, SmtpReply, Status};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

pub struct Shared {
    config: RwLock<Arc<Config>>,
    pub engine: Arc<Engine>,
    pub auth: Arc<crate::auth::Authenticator>,
    active: Arc<AtomicUsize>,
}

/// Counts an open milter connection while it lives.
pub struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Shared state; fails when the DNS resolver cannot be set up.
    pub fn new(config: Config, engine: Arc<Engine>) -> Result<Arc<Shared>, String> {
        let auth = Arc::new(crate::auth::Authenticator::new(&config.dns)?);
        Ok(Shared::with_authenticator(config, engine, auth))
    }

    /// Shared state with a given authenticator (tests pre-load its caches).
    pub fn with_authenticator(
        config: Config,
        engine: Arc<Engine>,
        auth: Arc<crate::auth::Authenticator>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            config: RwLock::new(Arc::new(config)),
            engine,
            auth,
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_config(&self, cfg: Config) {
        match self.config.write() {
            Ok(mut g) => *g = Arc::new(cfg),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(cfg),
        }
    }

    pub fn active_guard(&self) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.active.clone())
    }

    pub fn active_sessions(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// The status for an error, per `on_error` (without a reply).
    pub fn error_status(&self) -> Status {
        match self.config().on_error {
            OnError::Accept => Status::Continue,
            OnError::Tempfail => Status::Tempfail,
            OnError::Reject => Status::Reject,
        }
    }

    /// Logs an error with its queue id and answers per `on_error`.
    pub fn on_error(&self, qid: &str, error: &str, reply: &mut SmtpReply) -> Status {
        let policy = self.config().on_error;
        tracing::error!("{qid}: {error}; answering per on_error={policy:?}");
        let (code, xcode, text) = match policy {
            OnError::Accept => return Status::Continue,
            OnError::Tempfail => ("451", "4.3.0", "temporary local problem, try again later"),
            OnError::Reject => ("550", "5.3.0", "local problem, message not accepted"),
        };
        if let Err(e) = reply.set_error_reply(code, Some(xcode), [text]) {
            tracing::error!("cannot set smtp reply: {e}");
        }
        self.error_status()
    }

    /// Re-reads `path` and swaps the config if it is valid. Keys that need a
    /// restart keep their running value, with a warning.
    pub fn reload(&self, path: Option<&Path>, ov: &Overrides) -> Result<(), ConfigError> {
        let old = self.config();
        let mut new = Config::load(path, ov)?;
        for key in old.restart_only_changes(&new) {
            tracing::warn!("config reload: {key} changed; it takes effect at the next restart");
        }
        new.socket = old.socket.clone();
        new.socket_mode = old.socket_mode.clone();
        new.state_dir = old.state_dir.clone();
        new.max_connections = old.max_connections;
        new.admin = old.admin.clone();
        new.log.target = old.log.target;
        new.log.format = old.log.format;
        if new.dns != old.dns {
            tracing::warn!("config reload: [dns] changed; it takes effect at the next restart");
            new.dns = old.dns.clone();
        }
        if let Err(e) = self.engine.reload_overrides(&new) {
            tracing::error!("config reload: cannot reload overrides: {e}");
        }
        crate::logging::set_level(&new.log.level);
        self.set_config(new);
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

/// Serves milter connections until `shutdown` completes, then drains.
pub async fn serve(
    listener: MilterListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cfg = shared.config();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let mut stop_rx2 = stop_rx.clone();
    let listener = listener.stop_accepting_on(async move {
        let _ = stop_rx.wait_for(|v| *v).await;
    });

    let control = match ControlServer::bind(&cfg.control_socket()) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "control socket {}: {e}; `sra-milter override` cannot reach this daemon",
                cfg.control_socket().display()
            );
            None
        }
    };
    let control_task = control.map(|c| {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = c.run(shared) => {}
                _ = stop_rx2.wait_for(|v| *v) => {}
            }
        })
    });

    let drain_shared = shared.clone();
    let timeout = cfg.shutdown_timeout.0;
    let drained = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        let open = drain_shared.active_sessions();
        if open > 0 {
            tracing::info!("shutting down: waiting up to {timeout:?} for {open} open session(s)");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while drain_shared.active_sessions() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = drain_shared.active_sessions();
        if left > 0 {
            tracing::warn!("shutting down with {left} session(s) still open");
        }
    };

    let config = indymilter::Config {
        max_connections: cfg.max_connections,
        actions: crate::milter::NEEDED_ACTIONS,
        ..Default::default()
    };
    let result = indymilter::run(
        listener,
        crate::milter::callbacks(shared.clone()),
        config,
        drained,
    )
    .await;
    if let Some(t) = control_task {
        t.abort();
        let _ = t.await;
    }
    let _ = std::fs::remove_file(cfg.control_socket());
    result
}

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
    Ping,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    #[serde(default)]
    pub message: String,
}

struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    fn bind(path: &Path) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::socket::remove_stale_socket(path)?;
        let listener = UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
        })
    }

    async fn run(self, shared: Arc<Shared>) {
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
    let mut lines = BufReader::new(r.take(64 * 1024)).lines();
    while let Some(line) = lines.next_line().await? {
        let resp = match serde_json::from_str::<ControlRequest>(&line) {
            Err(e) => ControlResponse {
                ok: false,
                message: format!("bad request: {e}"),
            },
            Ok(req) => {
                let shared = shared.clone();
                tokio::task::spawn_blocking(move || execute(&shared.config(), &shared.engine, req))
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
    let result = match req {
        ControlRequest::Ping => Ok("pong".to_string()),
        ControlRequest::SetOverride {
            target,
            class,
            reason,
        } => {
            let o = Override {
                target: target.clone(),
                class,
                reason,
                time: crate::now(),
                source: "store".into(),
            };
            store
                .set_override(&o)
                .map(|_| format!("override set: {target} is {class}"))
        }
        ControlRequest::RemoveOverride { target } => {
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
