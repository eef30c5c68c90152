//! The running daemon: the serve loop that wires the milter, the listeners
//! and the periodic sweep over the shared state, and graceful shutdown.
//!
//! Shutdown (SIGTERM/SIGINT): the listening socket is closed at once (the
//! MTA applies `milter_default_action` to new connections), open SMTP
//! sessions get up to `shutdown_timeout` to finish, then the milter stops
//! and the caller flushes the store. Reload (SIGHUP) is
//! [`Shared::reload`].

pub use crate::shared::Shared;

/// Runs `task` on a runtime of its own, on a thread at the lowest CPU
/// priority (nice 19; threads it starts, its blocking pool included,
/// inherit it). The console and metrics run there: a page being loaded
/// takes only CPU the mail does not need.
fn spawn_low_priority<F, Fut>(name: &str, task: F) -> io::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            // SAFETY: setpriority reads no memory of ours; `who` 0 with
            // PRIO_PROCESS is, on Linux, the calling thread.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
                tracing::warn!(
                    "admin listener: cannot lower its priority: {}",
                    io::Error::last_os_error()
                );
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(4)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("admin listener: {e}");
                    return;
                }
            };
            rt.block_on(task());
        })
        .map(|_| ())
}

use crate::config::remove_own_socket;
use crate::listeners::control::ControlServer;
use crate::listeners::{admin, events, http};
use crate::milter::{self, MilterListener};
use crate::store::run_blocking;
use crate::vocab::now;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Serves milter connections until `shutdown` completes, then drains.
pub async fn serve(
    listener: MilterListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cfg = shared.config();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let mut stop_rx2 = stop_rx.clone();
    let listener = listener
        .stop_accepting_on(async move {
            let _ = stop_rx.wait_for(|v| *v).await;
        })
        .close_silent_after(cfg.milter_timeout.0)
        .with_slots(cfg.max_connections);

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
        let router = events::router(shared.clone(), cfg.events.max_body_bytes);
        tokio::spawn(http::serve(l, router, async move {
            let _ = events_stop.wait_for(|v| *v).await;
        }));
    }
    // Metrics and health, when configured.
    let mut admin_stop = stop_tx.subscribe();
    if !cfg.admin.listen.is_empty() {
        let l = tokio::net::TcpListener::bind(cfg.admin.listen.as_str())
            .await
            .map_err(|e| {
                io::Error::new(e.kind(), format!("admin.listen {}: {e}", cfg.admin.listen))
            })?;
        tracing::info!(
            "console on http://{}/, metrics on http://{}/metrics",
            cfg.admin.listen,
            cfg.admin.listen
        );
        let router = admin::router(shared.clone());
        let listener = l.into_std()?;
        spawn_low_priority("sra-admin", move || async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    http::serve(l, router, async move {
                        let _ = admin_stop.wait_for(|v| *v).await;
                    })
                    .await
                }
                Err(e) => tracing::error!("admin listener: {e}"),
            }
        })?;
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
            let res = run_blocking(move || {
                let cfg = s.config();
                let now = now();
                let n = s.engine.sweep_not_opened(&cfg, now)?;
                s.engine.refresh_protected(&cfg, now)?;
                Ok(n)
            })
            .await;
            match res {
                Ok(n) if n > 0 => {
                    tracing::info!("engagement: {n} message(s) counted not opened")
                }
                Ok(_) => {}
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
        connection_timeout: cfg.milter_timeout.0,
        actions: milter::NEEDED_ACTIONS,
    };
    // The accept loop runs on a runtime worker, whoever awaits `serve`:
    // awaited by `block_on` (as `sra-milter run` does), every connection
    // crossed threads twice, the listener's task waking the blocked thread
    // and that thread handing the session back to a worker (~2 futex calls,
    // an eventfd write and two context switches a connection).
    let mut milter = AbortOnDrop(tokio::spawn(indymilter::run(
        listener,
        milter::callbacks(shared.clone()),
        config,
        drained,
    )));
    let result = match (&mut milter.0).await {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(format!("the milter task failed: {e}"))),
    };
    if let Some(t) = control_task {
        t.abort();
        let _ = t.await;
        // Only a socket this daemon bound is its to remove.
        remove_own_socket(&cfg.control_socket());
    }
    // The verdicts of the last sessions reach the journal before exit.
    let s = shared.clone();
    let _ = tokio::task::spawn_blocking(move || s.close_journal()).await;
    result
}

/// A spawned task that ends with its owner: a `serve` future dropped before
/// it completes stops the milter it started, as it did when the milter ran
/// inside it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// At most how often unopened mail past its grace period is counted, and
/// trusted correspondents (lookalike targets) are re-read (more often when
/// `open_grace` is short).
const SWEEP_SECONDS: u64 = 300;
