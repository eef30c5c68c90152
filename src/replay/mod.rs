//! `sra-milter replay`: warm start from mail archives, and evaluation.
//!
//! Inputs are .eml files, directories of them, Maildir folders (`cur/`,
//! `new/`) and mbox files (recognised by their first `From ` line). Replay
//! runs in two passes: the first reads each file once and each message's
//! header block to find its time (keeping the messages, up to
//! `KEEP_BYTES`), the second parses each message once, in time order, and
//! runs it through [`Engine::process`], the very code the milter runs at
//! end of message, with the clock taken from the mail. In the second pass
//! a thread reads and parses messages ahead (`PREPARED_AHEAD`) while the
//! rating takes them in order: the store sees the same sequence.
//!
//! The SMTP context is rebuilt from the headers (DESIGN.md):
//! - client IP and HELO: the topmost `Received:` whose client is not one of
//!   `trusted_relays` (so the hops inside the organisation are skipped);
//! - time: that header's date, else `Date:`;
//! - envelope sender: `Return-Path:`; recipients: `Delivered-To:` /
//!   `X-Original-To:`, else `To:` and `Cc:`;
//! - direction: as live (an internal client IP, or an authenticated
//!   submission `with ESMTPA/ESMTPSA` → outbound). A message without any
//!   usable `Received:` is outbound when its `From:` is an enterprise
//!   address, else inbound.
//!
//! Authentication comes from the `Authentication-Results` of
//! `trusted_authserv_ids` (the DNS records of years-old mail have changed);
//! `--verify-dns` re-verifies instead. Without either, identities are taken
//! as given (`unverified`).
//!
//! Writes are batched: a [`BatchingStore`] keeps the updates of the last
//! `batch` messages in memory, visible to the next messages' ratings
//! (prequential), and writes them in one `WriteBatch`.
//!
//! Replay adds only the reading of archives ([`archive`]) and the
//! reconstruction of the envelope ([`context`]); the message is built by
//! [`Message::new`] and authenticated by the same calls as live mail.

mod archive;
pub mod context;

/// The bytes of messages pass 1 keeps for pass 2: a corpus of this size is
/// read from disk once; beyond it, messages are read again in time order.
const KEEP_BYTES: usize = 512 << 20;

use crate::auth::Authenticator;
use crate::config::Backend;
use crate::config::Config;
use crate::message::{Content, Message};
use crate::pipeline::engagement::Event;
use crate::pipeline::Engine;
use crate::store::StoreError;
use crate::verdict::VerdictRecord;
use crate::vocab::{domain_of, Action, Direction, Mode, Stage};
use archive::{header_block, read, Loc};
use context::smtp_context;
use ipnet::IpNet;
use mail_parser::MessageParser;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("writing the JSON records: {0}")]
    Output(io::Error),
    #[error("{0}")]
    Dns(String),
}

#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    pub paths: Vec<PathBuf>,
    pub dry_run: bool,
    pub trusted_relays: Vec<IpNet>,
    pub trusted_authserv_ids: Vec<String>,
    pub verify_dns: bool,
    /// Messages whose updates are written in one batch.
    pub batch: usize,
    /// Progress lines on stderr.
    pub progress: bool,
    /// Engagement events, applied in time order with the mail.
    pub events: Vec<Event>,
}

/// Counts for the summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub messages: u64,
    pub by_direction: BTreeMap<String, u64>,
    pub by_class: BTreeMap<String, u64>,
    pub by_action: BTreeMap<String, u64>,
    pub failures: Vec<(String, String)>,
    pub seconds: f64,
}

impl Summary {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.messages as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "replay: {} messages in {:.1}s ({:.0} msg/s), {} unreadable\n",
            self.messages,
            self.seconds,
            self.rate(),
            self.failures.len()
        );
        let line = |label: &str, m: &BTreeMap<String, u64>| {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("  {label}: {}\n", parts.join(" "))
        };
        s.push_str(&line("direction", &self.by_direction));
        s.push_str(&line("sender class (inbound)", &self.by_class));
        s.push_str(&line("action", &self.by_action));
        for (src, why) in self.failures.iter().take(20) {
            s.push_str(&format!("  unreadable: {src}: {why}\n"));
        }
        if self.failures.len() > 20 {
            s.push_str(&format!(
                "  ... and {} more unreadable\n",
                self.failures.len() - 20
            ));
        }
        s
    }
}

/// Replays `opts.paths` into the store of `cfg`, writing one JSON verdict
/// record per message to `out`.
pub fn replay(
    cfg: &Config,
    opts: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    let mut relays = cfg.trusted_relays.clone();
    relays.extend(opts.trusted_relays.iter().cloned());
    let mut opts = opts.clone();
    opts.trusted_authserv_ids
        .extend(cfg.auth.trusted_authserv_ids.iter().cloned());

    let mut paths = Vec::new();
    for p in &opts.paths {
        archive::files(p, &mut paths)?;
    }

    // Pass 1: each file read once; each message's time, from its header
    // block. Messages are kept for pass 2 up to `KEEP_BYTES` in all (a
    // corpus is read once), the rest read again there.
    let mut summary = Summary::default();
    let mut locs: Vec<(Loc, Option<Vec<u8>>)> = Vec::new();
    let mut timed: Vec<(u64, usize)> = Vec::new();
    let mut kept_bytes = 0usize;
    let parser = MessageParser::new();
    for path in &paths {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                summary
                    .failures
                    .push((path.display().to_string(), e.to_string()));
                continue;
            }
        };
        archive::for_each_message(path, data, |loc, raw| {
            let time = parser
                .parse_headers(header_block(&raw))
                .and_then(|m| smtp_context(&m, &relays).time);
            let Some(t) = time else {
                summary
                    .failures
                    .push((loc.name(), "no date in Received: or Date:".into()));
                return;
            };
            timed.push((t, locs.len()));
            let keep = kept_bytes + raw.len() <= KEEP_BYTES;
            if keep {
                kept_bytes += raw.len();
            }
            locs.push((loc, keep.then_some(raw)));
        });
    }
    timed.sort();
    for (src, why) in &summary.failures {
        write_error(out, src, why)?;
    }

    // The store `[store]` names: RocksDB under state_dir (read-only for a
    // dry run of an existing store), or the shared Redis store (a dry run
    // only reads it: nothing is learned).
    let store = crate::store::open_with(
        cfg,
        opts.dry_run
            && (cfg.store.backend == Backend::Redis || cfg.state_dir.join("CURRENT").exists()),
        Some(opts.batch.max(1)),
    )?;
    let engine = Engine::new(store.clone(), cfg)?;
    let runtime = if opts.verify_dns {
        Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ReplayError::Dns(e.to_string()))?,
        )
    } else {
        None
    };
    let auth = if opts.verify_dns {
        Some(Authenticator::new(&cfg.dns).map_err(ReplayError::Dns)?)
    } else {
        None
    };

    // Pass 2: in time order, parse once, process as live.
    let total = timed.len();
    let mut last_progress = Instant::now();
    let monitor = cfg.mode == Mode::Monitor;
    let mut last_time = timed.first().map_or(0, |(t, _)| *t);
    let mut events = opts.events.clone();
    events.sort_by_key(|e| e.time.unwrap_or(0));
    let mut next_event = 0;
    // Events up to `t`, then the not-opened count as of `t`.
    let catch_up = |t: u64, next_event: &mut usize| -> Result<(), ReplayError> {
        if opts.dry_run {
            return Ok(());
        }
        let end = events[*next_event..]
            .iter()
            .position(|e| e.time.unwrap_or(0) > t)
            .map_or(events.len(), |p| *next_event + p);
        if end > *next_event {
            engine.apply_events(&events[*next_event..end], t)?;
            *next_event = end;
        }
        if !events.is_empty() {
            engine.sweep_not_opened(cfg, t)?;
        }
        Ok(())
    };
    let mut refreshed = 0u64;
    // Reading and parsing run on their own thread, a bounded queue ahead of
    // the rating, which takes the messages in time order as before: the
    // store sees the same sequence of messages, on two cores.
    let verify = runtime.as_ref().zip(auth.as_ref());
    let prep = Prep {
        cfg,
        relays: &relays,
        trusted_authserv_ids: &opts.trusted_authserv_ids,
        verify,
        parser: &parser,
    };
    std::thread::scope(|scope| -> Result<(), ReplayError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Prepared>(PREPARED_AHEAD);
        let locs = &mut locs;
        let prep = &prep;
        scope.spawn(move || {
            // Open mbox files, for messages read again.
            let mut files = HashMap::new();
            for (n, (t, i)) in timed.into_iter().enumerate() {
                let (loc, kept) = &mut locs[i];
                // A parser that panics on a hostile message costs that
                // message, not the run (as in the milter).
                let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    prep.prepare(loc, kept.take(), &mut files)
                }))
                .unwrap_or_else(|_| Err("the message could not be parsed (parser panic)".into()));
                if tx.send((n, t, loc.name(), msg)).is_err() {
                    // The rating stopped on an error.
                    return;
                }
            }
        });
        for (n, t, name, prepared) in rx {
            catch_up(t, &mut next_event)?;
            if n % 2000 == 0 || t >= refreshed + 86_400 {
                // The correspondents lookalikes are checked against are re-read
                // every mail day (as the daemon does periodically) and every
                // 2000 messages, dated by the replayed mail's clock.
                engine.refresh_protected(cfg, last_time)?;
                refreshed = t;
            }
            let msg = match prepared {
                Ok(m) => m,
                Err(why) => {
                    write_error(out, &name, &why)?;
                    summary.failures.push((name, why));
                    continue;
                }
            };
            last_time = t;
            let (a, d) = engine.process(cfg, &msg, Action::Accept, !opts.dry_run)?;
            let mut rec = VerdictRecord::new(&msg, &a, Stage::Eom, &d.outcome, monitor);
            rec.source = Some(name);
            let mut line = rec.to_json_line();
            line.push('\n');
            out.write_all(line.as_bytes())
                .map_err(ReplayError::Output)?;
            summary.messages += 1;
            *summary
                .by_direction
                .entry(msg.direction().as_str().into())
                .or_default() += 1;
            if msg.direction() == Direction::Inbound {
                let class = a
                    .sender
                    .as_ref()
                    .map_or("none".to_string(), |r| r.class.to_string());
                *summary.by_class.entry(class).or_default() += 1;
            }
            *summary.by_action.entry(rec.action.clone()).or_default() += 1;
            if opts.progress && last_progress.elapsed().as_secs_f64() >= 2.0 {
                last_progress = Instant::now();
                let el = started.elapsed().as_secs_f64();
                let rate = (n + 1) as f64 / el.max(1e-9);
                let eta = (total - n - 1) as f64 / rate.max(1e-9);
                eprintln!(
                    "replay: {}/{} messages, {:.0} msg/s, eta {:.0}s",
                    n + 1,
                    total,
                    rate,
                    eta
                );
            }
        }
        Ok(())
    })?;
    if let Some(t) = events.last().and_then(|e| e.time) {
        catch_up(t.max(last_time), &mut next_event)?;
    }
    if !opts.dry_run {
        store.flush()?;
    }
    out.flush().map_err(ReplayError::Output)?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Messages read and parsed ahead of the rating.
const PREPARED_AHEAD: usize = 64;

/// A message ready to be rated, in time order: its index, time, source
/// name, and the message or why it cannot be read.
type Prepared = (usize, u64, String, Result<Message, String>);

/// What reading a message into a [`Message`] needs.
struct Prep<'a> {
    cfg: &'a Config,
    relays: &'a [IpNet],
    trusted_authserv_ids: &'a [String],
    verify: Option<(&'a tokio::runtime::Runtime, &'a Authenticator)>,
    parser: &'a MessageParser,
}

impl Prep<'_> {
    /// Reads (or takes the bytes kept by pass 1), parses, rebuilds the
    /// envelope and authenticates one message, as live mail is.
    fn prepare(
        &self,
        loc: &Loc,
        kept: Option<Vec<u8>>,
        files: &mut HashMap<PathBuf, std::fs::File>,
    ) -> Result<Message, String> {
        let raw = kept
            .map_or_else(|| read(loc, files), Ok)
            .map_err(|e| e.to_string())?;
        let parsed = self
            .parser
            .parse(&raw)
            .ok_or_else(|| "not a message".to_string())?;
        let content = Content::read(&parsed);
        let env = context::envelope(self.cfg, self.relays, &parsed, &content)?;
        let mut msg = Message::new(env, &content);
        if msg.direction() == Direction::Inbound {
            let upstream = content.upstream_auth(self.trusted_authserv_ids);
            if upstream.is_some() {
                msg.set_auth(upstream);
            }
        }
        if let (Some((rt, auth)), Some(ip), None) = (self.verify, msg.client_ip, &msg.auth) {
            if msg.direction() == Direction::Inbound {
                let from_domain = msg.header_from.as_deref().map(domain_of);
                let authserv_id = &self.cfg.auth.authserv_id;
                let (s, _) = rt.block_on(async {
                    let spf = auth
                        .check_spf(ip, &msg.helo, msg.envelope_from.as_deref(), "replay")
                        .await;
                    auth.verify(&raw, &spf, from_domain, ip, authserv_id).await
                });
                msg.set_auth(Some(s));
            }
        }
        Ok(msg)
    }
}

fn write_error(out: &mut dyn Write, source: &str, why: &str) -> Result<(), ReplayError> {
    let line = serde_json::json!({ "source": source, "error": why }).to_string() + "\n";
    out.write_all(line.as_bytes()).map_err(ReplayError::Output)
}
