//! `sra-milter run`: the daemon, in the foreground — logging, the store,
//! the socket, signals, then `daemon::serve`.

use super::{load, Common};
use sra_milter::config::{Config, Overrides, SocketSpec, EX_CONFIG};
use sra_milter::daemon::{self, Shared};
use sra_milter::logging;
use sra_milter::milter::MilterListener;
use sra_milter::pipeline::Engine;
use sra_milter::store::{run_blocking, StoreError};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

pub fn main(common: &Common, socket: Option<SocketSpec>, monitor_only: bool) -> ExitCode {
    let ov = Overrides {
        socket,
        state_dir: common.state_dir.clone(),
        monitor_only,
    };
    let cfg = match load(common, ov.clone()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    run(cfg, common.config.clone(), ov)
}

fn run(cfg: Config, path: Option<PathBuf>, ov: Overrides) -> ExitCode {
    if let Err(e) = logging::init(&cfg) {
        eprintln!("sra-milter: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.worker_threads)
        .thread_name("sra-milter")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let store = match sra_milter::store::open(&cfg) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot open the store {}: {e}", cfg.store_location());
                // Restarting cannot mend a directory that is not a store, a
                // schema this version does not know, a store the daemon may
                // not write or a damaged one: EX_CONFIG, which the unit does
                // not restart on. Other errors (a full disk, a store still
                // locked) may pass: exit 1, and systemd tries again.
                return match e {
                    StoreError::NotAStore { .. }
                    | StoreError::Schema { .. }
                    | StoreError::Unwritable { .. }
                    | StoreError::Damaged { .. } => ExitCode::from(EX_CONFIG as u8),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        let engine = match Engine::new(store.clone(), &cfg) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                tracing::error!("cannot read overrides: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mode = cfg.socket_mode_bits().unwrap_or(0o660);
        let listener = match MilterListener::bind(&cfg.socket, mode).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot listen on {}: {e}", cfg.socket);
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            "sra-milter {} listening on {} (mode {}, store {})",
            env!("CARGO_PKG_VERSION"),
            cfg.socket,
            cfg.mode,
            cfg.state_dir.display()
        );
        let shared = match Shared::new(cfg, engine) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot set up the DNS resolver: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = signals(shared.clone(), path, ov);
        let result = daemon::serve(listener, shared, shutdown).await;
        let flushed = run_blocking(move || store.flush()).await;
        match (result, flushed) {
            (Ok(()), Ok(())) => {
                tracing::info!("stopped; store flushed");
                ExitCode::SUCCESS
            }
            (Err(e), _) => {
                tracing::error!("milter failed: {e}");
                ExitCode::FAILURE
            }
            (_, Err(e)) => {
                tracing::error!("flushing the store: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Completes on SIGTERM or SIGINT; reloads the config on SIGHUP.
fn signals(
    shared: Arc<Shared>,
    path: Option<PathBuf>,
    ov: Overrides,
) -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return; }
                _ = hup.recv() => {
                    let shared = shared.clone();
                    let path = path.clone();
                    let ov = ov.clone();
                    let res = tokio::task::spawn_blocking(move || shared.reload(path.as_deref(), &ov)).await;
                    match res {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!("config reload failed, keeping the running config: {e}"),
                        Err(e) => tracing::error!("config reload failed: {e}"),
                    }
                }
            }
        }
    }
}
