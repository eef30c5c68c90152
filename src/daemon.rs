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
    /// The engagement listener's bearer token (re-read on SIGHUP).
    events_token: RwLock<Option<String>>,
    pub engine: Arc<Engine>,
    pub auth: Arc<crate::auth::Authenticator>,
    pub metrics: crate::metrics::Metrics,
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
        let token = if config.events.listen.is_empty() {
            None
        } else {
            config.events.token().ok()
        };
        Arc::new(Shared {
            events_token: RwLock::new(token),
            config: RwLock::new(Arc::new(config)),
            engine,
            auth,
            metrics: crate::metrics::Metrics::default(),
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
        self.metrics.error(if error.starts_with("store task") {
            "internal"
        } else {
            "store"
        });
        let policy = self.config().on_error;
        tracing::error!(
            "{qid}: {error}; answering per on_error={}",
            format!("{policy:?}").to_lowercase()
        );
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
        for key in new.keep_restart_only(&old) {
            tracing::warn!("config reload: {key} changed; it takes effect at the next restart");
        }
        if let Err(e) = self.engine.reload_overrides(&new) {
            tracing::error!("config reload: cannot reload overrides: {e}");
        }
        crate::logging::set_level(&new.log.level);
        if !new.events.listen.is_empty() {
            match new.events.token() {
                Ok(t) => {
                    if let Ok(mut g) = self.events_token.write() {
                        *g = Some(t);
                    }
                }
                Err(e) => tracing::error!("config reload: {e}; keeping the running token"),
            }
        }
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

    // The engagement listener, when configured: its token must be readable.
    let mut events_stop = stop_tx.subscribe();
    if !cfg.events.listen.is_empty() {
        if let Err(e) = cfg.events.token() {
            return Err(io::Error::other(e));
        }
        let l = tokio::net::TcpListener::bind(cfg.events.listen.as_str())
            .await
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("events.listen {}: {e}", cfg.events.listen),
                )
            })?;
        tracing::info!(
            "engagement events on http://{}/v1/events",
            cfg.events.listen
        );
        let handler = Arc::new(events_handler(shared.clone()));
        tokio::spawn(crate::http::serve(
            l,
            cfg.events.max_body_bytes,
            handler,
            async move {
                let _ = events_stop.wait_for(|v| *v).await;
            },
        ));
    }
    // Metrics and health, when configured.
    let mut admin_stop = stop_tx.subscribe();
    if !cfg.admin.listen.is_empty() {
        let l = tokio::net::TcpListener::bind(cfg.admin.listen.as_str())
            .await
            .map_err(|e| {
                io::Error::new(e.kind(), format!("admin.listen {}: {e}", cfg.admin.listen))
            })?;
        tracing::info!("metrics on http://{}/metrics", cfg.admin.listen);
        let handler = Arc::new(admin_handler(shared.clone()));
        tokio::spawn(crate::http::serve(l, 0, handler, async move {
            let _ = admin_stop.wait_for(|v| *v).await;
        }));
    }
    // Not-opened mail is derived from the message index every few minutes.
    let sweep_shared = shared.clone();
    let mut sweep_stop = stop_tx.subscribe();
    tokio::spawn(async move {
        let grace = sweep_shared.config().events.open_grace.0;
        let period = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(SWEEP_SECONDS));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = sweep_stop.wait_for(|v| *v) => return,
            }
            let s = sweep_shared.clone();
            let res = tokio::task::spawn_blocking(move || {
                let cfg = s.config();
                let now = crate::now();
                let n = s.engine.sweep_not_opened(&cfg, now)?;
                s.engine.refresh_protected(&cfg, now)?;
                Ok::<usize, crate::store::StoreError>(n)
            })
            .await;
            match res {
                Ok(Ok(n)) if n > 0 => {
                    tracing::info!("engagement: {n} message(s) counted not opened")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("engagement sweep: {e}"),
                Err(e) => tracing::error!("engagement sweep: {e}"),
            }
        }
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

/// At most how often unopened mail past its grace period is counted, and
/// trusted correspondents (lookalike targets) are re-read (more often when
/// `open_grace` is short).
const SWEEP_SECONDS: u64 = 300;

/// `GET /metrics` and `GET /health`.
fn admin_handler(
    shared: Arc<Shared>,
) -> impl Fn(crate::http::Request) -> crate::http::ResponseFuture + Send + Sync {
    use crate::http::Response;
    move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            if req.method != "GET" {
                return Response::json(405, serde_json::json!({ "error": "use GET" }));
            }
            match req.path.as_str() {
                "/metrics" => {
                    let s = shared.clone();
                    let stats = tokio::task::spawn_blocking(move || s.engine.store().stats())
                        .await
                        .unwrap_or_default();
                    let body = shared.metrics.render(shared.active_sessions(), &stats);
                    Response::text(200, "text/plain; version=0.0.4; charset=utf-8", body)
                }
                "/health" => Response::text(200, "text/plain", "ok\n".into()),
                _ => Response::json(
                    404,
                    serde_json::json!({ "error": "not found; GET /metrics or /health" }),
                ),
            }
        })
    }
}

/// `POST /v1/events`: bearer token, validate the whole batch, apply it.
fn events_handler(
    shared: Arc<Shared>,
) -> impl Fn(crate::http::Request) -> crate::http::ResponseFuture + Send + Sync {
    use crate::http::Response;
    use serde_json::json;
    move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            if req.path != "/v1/events" {
                return Response::json(404, json!({ "error": "not found; POST /v1/events" }));
            }
            if req.method != "POST" {
                return Response::json(405, json!({ "error": "use POST" }));
            }
            let token = shared.events_token.read().ok().and_then(|g| g.clone());
            let given = req
                .header("authorization")
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim);
            let authorized = matches!((&token, given), (Some(t), Some(g)) if crate::http::constant_time_eq(t.as_bytes(), g.as_bytes()));
            if !authorized {
                shared.metrics.events("unauthorized", 1);
                tracing::warn!("events: request without the right bearer token refused");
                return Response::json(401, json!({ "error": "missing or wrong bearer token" }));
            }
            let Ok(body) = String::from_utf8(req.body) else {
                return Response::json(
                    400,
                    json!({ "error": "line 1: body is not UTF-8", "line": 1 }),
                );
            };
            let events = match crate::events::parse_batch(&body) {
                Ok(e) => e,
                Err(bad) => {
                    shared.metrics.events("bad_request", 1);
                    tracing::warn!("events: batch refused, {bad}");
                    return Response::json(
                        400,
                        json!({ "error": bad.to_string(), "line": bad.line }),
                    );
                }
            };
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.engine.apply_events(&events, crate::now()))
                .await
            {
                Ok(Ok(r)) => {
                    shared.metrics.events("accepted", r.accepted as u64);
                    shared.metrics.events("unknown", r.unknown as u64);
                    shared.metrics.events("duplicate", r.duplicate as u64);
                    tracing::info!(
                        "events: {} accepted, {} unknown, {} duplicate",
                        r.accepted,
                        r.unknown,
                        r.duplicate
                    );
                    Response::json(
                        202,
                        json!({ "accepted": r.accepted, "unknown": r.unknown, "duplicate": r.duplicate }),
                    )
                }
                Ok(Err(e)) => {
                    tracing::error!("events: {e}");
                    Response::json(503, json!({ "error": format!("store: {e}") }))
                }
                Err(e) => Response::json(500, json!({ "error": e.to_string() })),
            }
        })
    }
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
        ControlRequest::Events { body } => match crate::events::parse_batch(&body) {
            Err(bad) => {
                return ControlResponse {
                    ok: false,
                    message: format!("no event imported: {bad}"),
                }
            }
            Ok(events) => engine.apply_events(&events, crate::now()).map(|r| {
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
