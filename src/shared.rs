//! What the daemon's parts share — the milter sessions and the listeners:
//! the live configuration, the engine, the authenticator, the metrics, the
//! count of open sessions and the events listener's token. The daemon
//! itself (`daemon`) wires them; nothing here knows the milter protocol or
//! HTTP.
//!
//! Reload (SIGHUP): the file is parsed and validated completely before it
//! replaces the running config; a bad file keeps the old config and is
//! logged. Sessions already open keep the snapshot they started with.

use crate::activity::Activity;
use crate::auth::Authenticator;
use crate::config::{Config, ConfigError, LiveConfig, Overrides};
use crate::journal::Journal;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::pipeline::Engine;
use crate::verdict::{emit_summary, logs_json, VerdictRecord};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

pub struct Shared {
    pub config: LiveConfig,
    pub engine: Arc<Engine>,
    pub auth: Arc<Authenticator>,
    pub metrics: Metrics,
    /// The recent verdicts the console shows.
    pub activity: Activity,
    /// The verdict journal (`admin.journal_keep`), when on.
    journal: Option<Journal>,
    /// The engagement listener's bearer token (re-read on SIGHUP).
    events_token: RwLock<Option<String>>,
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
        let auth = Arc::new(Authenticator::new(&config.dns)?);
        Ok(Shared::with_authenticator(config, engine, auth))
    }

    /// Shared state with a given authenticator (tests pre-load its caches).
    pub fn with_authenticator(
        config: Config,
        engine: Arc<Engine>,
        auth: Arc<Authenticator>,
    ) -> Arc<Shared> {
        let token = if config.events.listen.is_empty() {
            None
        } else {
            config.events.token().ok()
        };
        let activity = Activity::new(config.admin.recent, crate::vocab::now());
        let keep = config.admin.journal_keep.0.as_secs();
        let journal = (keep > 0)
            .then(|| Journal::start(crate::journal::dir(&config.state_dir), keep))
            .and_then(|j| {
                j.map_err(|e| tracing::error!("journal: {e}; verdicts are not journaled"))
                    .ok()
            });
        Arc::new(Shared {
            events_token: RwLock::new(token),
            config: LiveConfig::new(config),
            engine,
            auth,
            activity,
            journal,
            metrics: Metrics::default(),
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The events listener's bearer token, if one is configured.
    pub fn events_token(&self) -> Option<String> {
        self.events_token.read().ok().and_then(|g| g.clone())
    }

    /// A snapshot of the running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    pub fn active_guard(&self) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.active.clone())
    }

    /// Logs a message's verdict (the JSON record in JSON mode, a summary
    /// line otherwise), keeps it for the console and journals it.
    pub fn verdict(&self, cfg: &Config, rec: VerdictRecord, msg: &Message) {
        // The record is serialised once: the kept verdict's JSON line is
        // the log's record in JSON mode and the journal's line.
        let json = logs_json(cfg);
        if !json {
            emit_summary(&rec, msg);
        }
        let seen = self.activity.push(rec, msg.time);
        if json {
            crate::logging::write_record(&seen.json());
        }
        if let Some(j) = &self.journal {
            j.append(seen);
        }
    }

    /// Writes the journal's waiting verdicts and ends its writer (at
    /// shutdown; later verdicts are no longer journaled).
    pub fn close_journal(&self) {
        if let Some(j) = &self.journal {
            j.close();
        }
    }

    pub fn active_sessions(&self) -> usize {
        self.active.load(Ordering::SeqCst)
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
        self.config.set(new);
        tracing::info!("configuration reloaded");
        Ok(())
    }
}
