//! `sra-milter replay`: warm start from mail archives, and evaluation.
//!
//! Inputs are .eml files, directories of them, Maildir folders (`cur/`,
//! `new/`) and mbox files (recognised by their first `From ` line). Replay
//! runs in two passes: the first reads only each message's header block to
//! find its time, the second parses each message once, in time order, and
//! runs it through [`Engine::process`], the very code the milter runs at
//! end of message, with the clock taken from the mail.
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

use crate::config::Config;
use crate::identity::{self, Direction};
use crate::pipeline::{AuthState, Engine, Message};
use crate::policy::Action;
use crate::record::Record;
use crate::store::{
    Deltas, IndexEntry, Kind, NameEntry, ReputationStore, RocksStore, StoreError, Update,
};
use crate::verdict::VerdictRecord;
use ipnet::IpNet;
use mail_parser::{HeaderValue, MessageParser};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    pub events: Vec<crate::events::Event>,
}

/// Where one message is.
#[derive(Clone, Debug)]
enum Loc {
    File(PathBuf),
    Mbox {
        path: PathBuf,
        start: u64,
        len: usize,
    },
}

impl Loc {
    fn name(&self) -> String {
        match self {
            Loc::File(p) => p.display().to_string(),
            Loc::Mbox { path, start, .. } => format!("{}@{start}", path.display()),
        }
    }
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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Io {
        path: path.to_owned(),
        source,
    }
}

fn starts_like_mbox(path: &Path) -> bool {
    let mut head = [0u8; 5];
    File::open(path)
        .and_then(|f| f.read_at(&mut head, 0))
        .map(|n| n == 5 && &head == b"From ")
        .unwrap_or(false)
}

/// Byte ranges of the messages of an mbox file (mboxo/mboxrd: a message
/// starts at a `From ` line after a blank line or at the start).
fn mbox_ranges(data: &[u8]) -> Vec<(u64, usize)> {
    let mut starts = Vec::new();
    let mut pos = 0usize;
    let mut prev_blank = true;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..end];
        if prev_blank && line.starts_with(b"From ") {
            starts.push(pos);
        }
        prev_blank = line == b"\n" || line == b"\r\n";
        pos = end;
    }
    let mut out = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(data.len());
        // Skip the "From " separator line itself.
        let body = data[s..e]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(e, |i| s + i + 1);
        if body < e {
            out.push((body as u64, e - body));
        }
    }
    out
}

fn collect(path: &Path, out: &mut Vec<Loc>) -> Result<(), ReplayError> {
    let md = std::fs::metadata(path).map_err(io_err(path))?;
    if md.is_dir() {
        let cur = path.join("cur");
        let new = path.join("new");
        if cur.is_dir() || new.is_dir() {
            for d in [cur, new] {
                if d.is_dir() {
                    let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
                        .map_err(io_err(&d))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file())
                        .collect();
                    files.sort();
                    out.extend(files.into_iter().map(Loc::File));
                }
            }
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io_err(path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
        return Ok(());
    }
    if starts_like_mbox(path) {
        let data = std::fs::read(path).map_err(io_err(path))?;
        for (start, len) in mbox_ranges(&data) {
            out.push(Loc::Mbox {
                path: path.to_owned(),
                start,
                len,
            });
        }
    } else {
        out.push(Loc::File(path.to_owned()));
    }
    Ok(())
}

/// Reads a message's bytes; mboxrd `>From ` quoting is undone.
fn read(loc: &Loc, files: &mut HashMap<PathBuf, File>) -> io::Result<Vec<u8>> {
    match loc {
        Loc::File(p) => std::fs::read(p),
        Loc::Mbox { path, start, len } => {
            if !files.contains_key(path) {
                if files.len() > 64 {
                    files.clear();
                }
                files.insert(path.clone(), File::open(path)?);
            }
            let f = &files[path];
            let mut buf = vec![0u8; *len];
            f.read_exact_at(&mut buf, *start)?;
            if buf.windows(6).any(|w| w == b"\n>From") {
                let text = buf;
                let mut out = Vec::with_capacity(text.len());
                let mut at_line_start = true;
                let mut i = 0;
                while i < text.len() {
                    if at_line_start && text[i] == b'>' {
                        let q = text[i..].iter().take_while(|b| **b == b'>').count();
                        if text[i + q..].starts_with(b"From ") {
                            i += 1;
                        }
                    }
                    at_line_start = text[i] == b'\n';
                    out.push(text[i]);
                    i += 1;
                }
                buf = out;
            }
            Ok(buf)
        }
    }
}

/// The header block of a message (up to the first empty line).
fn header_block(raw: &[u8]) -> &[u8] {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => &raw[..a.min(b)],
        (Some(a), None) | (None, Some(a)) => &raw[..a],
        (None, None) => raw,
    }
}

/// `with` protocols of authenticated submission (RFC 3848).
const AUTH_PROTOCOLS: [mail_parser::Protocol; 8] = {
    use mail_parser::Protocol::*;
    [
        ESMTPA, ESMTPSA, LMTPA, LMTPSA, UTF8SMTPA, UTF8SMTPSA, UTF8LMTPA, UTF8LMTPSA,
    ]
};

/// The SMTP context of an archived message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    pub client_ip: Option<IpAddr>,
    pub helo: String,
    pub time: Option<u64>,
    pub authenticated_submission: bool,
}

/// Rebuilds the client, HELO and time from `Received:` headers.
pub fn smtp_context(msg: &mail_parser::Message<'_>, relays: &[IpNet]) -> Context {
    let raw_received: Vec<&str> = msg
        .headers_raw()
        .filter(|(n, _)| n.eq_ignore_ascii_case("received"))
        .map(|(_, v)| v)
        .collect();
    let mut ctx = Context::default();
    for (i, r) in msg.received_all().enumerate() {
        let ip = r.from_ip.or(match &r.from {
            Some(mail_parser::Host::IpAddr(ip)) => Some(*ip),
            _ => None,
        });
        let Some(ip) = ip.map(identity::canonical_ip) else {
            continue;
        };
        if relays.iter().any(|n| n.contains(&ip)) {
            continue;
        }
        ctx.client_ip = Some(ip);
        ctx.helo = match r.helo.as_ref().or(r.from.as_ref()) {
            Some(mail_parser::Host::Name(n)) => n.to_string(),
            Some(mail_parser::Host::IpAddr(ip)) => format!("[{ip}]"),
            None => String::new(),
        };
        ctx.time = r
            .date
            .as_ref()
            .map(|d| d.to_timestamp())
            .filter(|t| *t > 0)
            .map(|t| t as u64);
        ctx.authenticated_submission = r.with.as_ref().is_some_and(|w| AUTH_PROTOCOLS.contains(w))
            || raw_received
                .get(i)
                .is_some_and(|v| v.contains("Authenticated sender:"));
        break;
    }
    if ctx.time.is_none() {
        ctx.time = msg
            .date()
            .map(|d| d.to_timestamp())
            .filter(|t| *t > 0)
            .map(|t| t as u64);
    }
    ctx
}

fn addresses(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Address(a) => a
            .iter()
            .filter_map(|x| x.address())
            .filter_map(identity::clean_address)
            .collect(),
        HeaderValue::Text(t) => identity::clean_address(t).into_iter().collect(),
        HeaderValue::TextList(l) => l
            .iter()
            .filter_map(|t| identity::clean_address(t))
            .collect(),
        _ => Vec::new(),
    }
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => identity::message_ids_in(&format!("<{t}>")),
        HeaderValue::TextList(l) => l
            .iter()
            .filter_map(|t| identity::normalize_message_id(t))
            .collect(),
        _ => Vec::new(),
    }
}

/// Describes an archived message as the milter would have seen it.
pub fn message_from_archive(
    cfg: &Config,
    opts: &ReplayOptions,
    relays: &[IpNet],
    msg: &mail_parser::Message<'_>,
) -> Result<Message, String> {
    let ctx = smtp_context(msg, relays);
    let time = ctx.time.ok_or("no date in Received: or Date:")?;
    let (header_from, display_name) = match msg.from().and_then(|a| a.first()) {
        Some(a) => (
            a.address().and_then(identity::clean_address),
            a.name()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty()),
        ),
        None => (None, None),
    };
    let envelope_from = match msg.return_path() {
        HeaderValue::Address(a) => a.first().and_then(|x| x.address()).map(str::to_string),
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
        _ => None,
    }
    .and_then(|a| identity::normalize_envelope(&a, &cfg.recipient_delimiter));
    let mut recipients: Vec<String> = Vec::new();
    for name in ["Delivered-To", "X-Original-To"] {
        for (_, v) in msg
            .headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            if let Some(a) = identity::normalize_envelope(v.trim(), &cfg.recipient_delimiter) {
                if !recipients.contains(&a) {
                    recipients.push(a);
                }
            }
        }
    }
    if recipients.is_empty() {
        for h in [mail_parser::HeaderName::To, mail_parser::HeaderName::Cc] {
            for v in msg.header_values(h) {
                for a in addresses(v) {
                    if !recipients.contains(&a) {
                        recipients.push(a);
                    }
                }
            }
        }
    }
    let direction = match ctx.client_ip {
        Some(ip) => identity::direction(
            cfg,
            Some(ip),
            ctx.authenticated_submission.then_some("submission"),
        ),
        None if header_from
            .as_deref()
            .is_some_and(|f| cfg.is_enterprise_domain(identity::domain_of(f))) =>
        {
            Direction::Outbound
        }
        None => Direction::Inbound,
    };
    let mut references = ids(msg.in_reply_to());
    for id in ids(msg.references()).into_iter().rev() {
        if !references.contains(&id) {
            references.push(id);
        }
    }
    let (has_attachment, has_url) = crate::features::message_features(msg);
    let mut m = Message {
        time,
        queue_id: String::new(),
        direction: Some(direction),
        client_ip: ctx.client_ip,
        helo: ctx.helo,
        envelope_from,
        header_from,
        display_name,
        reply_to: msg
            .reply_to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .and_then(identity::clean_address),
        recipients,
        message_id: msg.message_id().and_then(identity::normalize_message_id),
        references,
        has_attachment,
        has_url,
        ..Message::default()
    };
    if direction == Direction::Inbound {
        let from_domain = m.header_from.as_deref().map(identity::domain_of);
        let trusted = msg
            .headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(crate::auth::AR_HEADER))
            .map(|(_, v)| v)
            .find(|v| {
                let id = crate::auth::authserv_id_of(v);
                opts.trusted_authserv_ids
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(id))
            });
        if let Some(v) = trusted {
            let s = crate::auth::parse_authentication_results(v, from_domain);
            m.auth_state = AuthState::from_summary(&s);
            m.auth = Some(s);
        }
    }
    Ok(m)
}

/// Pending updates over a store: read-your-writes for the next messages,
/// written in batches.
pub struct BatchingStore {
    inner: Arc<RocksStore>,
    pending: Mutex<Pending>,
    batch: usize,
}

#[derive(Default)]
struct Pending {
    records: Deltas,
    messages: HashMap<String, IndexEntry>,
    names: HashMap<String, NameEntry>,
    engagement_add: Vec<Vec<u8>>,
    engagement_del: Vec<Vec<u8>>,
    engagement_since: Option<u64>,
    updates: usize,
}

impl BatchingStore {
    pub fn new(inner: Arc<RocksStore>, batch: usize) -> BatchingStore {
        BatchingStore {
            inner,
            pending: Mutex::new(Pending::default()),
            batch: batch.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what is pending in one batch.
    pub fn write_pending(&self) -> Result<(), StoreError> {
        let p = std::mem::take(&mut *self.lock());
        let update = Update {
            records: p.records.into_records(),
            messages: p.messages.into_iter().collect(),
            names: p.names.into_iter().collect(),
            engagement_add: p.engagement_add,
            engagement_del: p.engagement_del,
            engagement_since: p.engagement_since,
        };
        self.inner.apply(&update)
    }
}

impl ReputationStore for BatchingStore {
    fn record(&self, kind: Kind, key: &str) -> Result<Record, StoreError> {
        let mut r = self.inner.record(kind, key)?;
        if let Some(delta) = self.lock().records.get(kind, key) {
            r.merge(delta);
        }
        Ok(r)
    }

    fn message(&self, id: &str) -> Result<Option<IndexEntry>, StoreError> {
        if let Some(e) = self.lock().messages.get(id) {
            return Ok(Some(e.clone()));
        }
        self.inner.message(id)
    }

    fn apply(&self, update: &Update) -> Result<(), StoreError> {
        let full = {
            let mut p = self.lock();
            for (kind, key, delta) in &update.records {
                p.records.merge(*kind, key, delta);
            }
            for (id, e) in &update.messages {
                p.messages.insert(id.clone(), e.clone());
            }
            for (n, e) in &update.names {
                p.names.insert(n.clone(), e.clone());
            }
            p.engagement_add
                .extend(update.engagement_add.iter().cloned());
            p.engagement_del
                .extend(update.engagement_del.iter().cloned());
            if p.engagement_since.is_none() {
                p.engagement_since = update.engagement_since;
            }
            self.inner.observe_time(
                update
                    .messages
                    .iter()
                    .map(|(_, e)| e.time)
                    .max()
                    .unwrap_or(0),
            );
            p.updates += 1;
            p.updates >= self.batch
        };
        if full {
            self.write_pending()?;
        }
        Ok(())
    }

    fn overrides(&self) -> Result<Vec<crate::overrides::Override>, StoreError> {
        self.inner.overrides()
    }

    fn set_override(&self, o: &crate::overrides::Override) -> Result<(), StoreError> {
        self.inner.set_override(o)
    }

    fn remove_override(&self, target: &crate::overrides::Target) -> Result<bool, StoreError> {
        self.inner.remove_override(target)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.write_pending()?;
        self.inner.flush()
    }

    fn name(&self, normalized: &str) -> Result<Option<NameEntry>, StoreError> {
        if let Some(e) = self.lock().names.get(normalized) {
            return Ok(Some(e.clone()));
        }
        self.inner.name(normalized)
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &Record)) -> Result<(), StoreError> {
        self.write_pending()?;
        self.inner.scan(kind, f)
    }

    fn engagement_due(
        &self,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64, String)>, StoreError> {
        self.write_pending()?;
        self.inner.engagement_due(until, limit)
    }

    fn engagement_since(&self) -> Result<Option<u64>, StoreError> {
        self.write_pending()?;
        self.inner.engagement_since()
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.inner.stats()
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

    let mut locs = Vec::new();
    for p in &opts.paths {
        collect(p, &mut locs)?;
    }

    // Pass 1: each message's time, from its header block.
    let mut files = HashMap::new();
    let mut summary = Summary::default();
    let mut timed: Vec<(u64, usize)> = Vec::with_capacity(locs.len());
    let parser = MessageParser::new();
    for (i, loc) in locs.iter().enumerate() {
        let raw = match read(loc, &mut files) {
            Ok(r) => r,
            Err(e) => {
                summary.failures.push((loc.name(), e.to_string()));
                continue;
            }
        };
        let time = parser
            .parse_headers(header_block(&raw))
            .and_then(|m| smtp_context(&m, &relays).time);
        match time {
            Some(t) => timed.push((t, i)),
            None => summary
                .failures
                .push((loc.name(), "no date in Received: or Date:".into())),
        }
    }
    timed.sort();
    for (src, why) in &summary.failures {
        write_error(out, src, why)?;
    }

    let exists = cfg.state_dir.join("CURRENT").exists();
    let ttl = cfg.message_index_ttl.0.as_secs();
    let rocks = if opts.dry_run && exists {
        RocksStore::open_read_only(&cfg.state_dir, ttl)?
    } else {
        RocksStore::open(&cfg.state_dir, ttl)?
    };
    let rocks = Arc::new(rocks);
    let store = Arc::new(BatchingStore::new(rocks.clone(), opts.batch.max(1)));
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
        Some(crate::auth::Authenticator::new(&cfg.dns).map_err(ReplayError::Dns)?)
    } else {
        None
    };

    // Pass 2: in time order, parse once, process as live.
    let total = timed.len();
    let mut last_progress = Instant::now();
    let monitor = cfg.mode == crate::config::Mode::Monitor;
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
    for (n, (t, i)) in timed.into_iter().enumerate() {
        let loc = &locs[i];
        catch_up(t, &mut next_event)?;
        if n % 2000 == 0 {
            // Trusted correspondents are re-read every 2000 messages; the
            // store's own clock (the replayed mail's) dates them.
            engine.refresh_protected(cfg, last_time)?;
        }
        let raw = match read(loc, &mut files) {
            Ok(r) => r,
            Err(e) => {
                summary.failures.push((loc.name(), e.to_string()));
                write_error(out, &loc.name(), &e.to_string())?;
                continue;
            }
        };
        let Some(parsed) = parser.parse(&raw) else {
            summary.failures.push((loc.name(), "not a message".into()));
            write_error(out, &loc.name(), "not a message")?;
            continue;
        };
        let mut msg = match message_from_archive(cfg, &opts, &relays, &parsed) {
            Ok(m) => m,
            Err(why) => {
                summary.failures.push((loc.name(), why.clone()));
                write_error(out, &loc.name(), &why)?;
                continue;
            }
        };
        if let (Some(rt), Some(auth), Some(ip), None) = (&runtime, &auth, msg.client_ip, &msg.auth)
        {
            if msg.direction() == Direction::Inbound {
                let from_domain = msg
                    .header_from
                    .as_deref()
                    .map(identity::domain_of)
                    .map(str::to_string);
                let (s, _) = rt.block_on(async {
                    let spf = auth
                        .check_spf(ip, &msg.helo, msg.envelope_from.as_deref(), "replay")
                        .await;
                    auth.verify(
                        &raw,
                        &spf,
                        from_domain.as_deref(),
                        ip,
                        &cfg.auth.authserv_id,
                    )
                    .await
                });
                msg.auth_state = AuthState::from_summary(&s);
                msg.auth = Some(s);
            }
        }
        last_time = t;
        let (a, d) = engine.process(cfg, &msg, Action::Accept, !opts.dry_run)?;
        let mut rec = VerdictRecord::new(&msg, &a, crate::policy::Stage::Eom, &d.outcome, monitor);
        rec.source = Some(loc.name());
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

fn write_error(out: &mut dyn Write, source: &str, why: &str) -> Result<(), ReplayError> {
    let line = serde_json::json!({ "source": source, "error": why }).to_string() + "\n";
    out.write_all(line.as_bytes()).map_err(ReplayError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_is_split_at_from_lines_after_blank_lines() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\nFrom inside the body\n\nFrom c@d Mon Jan  1 00:00:00 2024\nSubject: two\n\n>From quoted\n";
        let r = mbox_ranges(mbox);
        assert_eq!(r.len(), 2);
        let first = &mbox[r[0].0 as usize..r[0].0 as usize + r[0].1];
        assert!(first.starts_with(b"Subject: one"));
        assert!(first.ends_with(b"From inside the body\n\n"));
    }

    #[test]
    fn received_parsing_skips_trusted_relays_v4_and_v6() {
        let raw = b"Received: from relay2.example.com (relay2.example.com [10.1.1.2])\r\n\tby mx.example.com with ESMTP id A; Tue, 10 Apr 2007 10:00:02 +0000\r\nReceived: from mail.partner.example (mail.partner.example [192.0.2.10])\r\n\tby relay2.example.com with ESMTP id B; Tue, 10 Apr 2007 10:00:01 +0000\r\nReceived: from laptop ([198.51.100.1])\r\n\tby mail.partner.example with ESMTPSA id C; Tue, 10 Apr 2007 10:00:00 +0000\r\nFrom: x@partner.example\r\nDate: Mon, 09 Apr 2007 00:00:00 +0000\r\n\r\nbody\r\n";
        let m = MessageParser::new().parse(&raw[..]).unwrap();
        let relays: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let c = smtp_context(&m, &relays);
        assert_eq!(c.client_ip, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(c.helo, "mail.partner.example");
        assert_eq!(c.time, Some(1176199201));
        assert!(!c.authenticated_submission);
        // Without trusted relays, the topmost hop is the client.
        let c = smtp_context(&m, &[]);
        assert_eq!(c.client_ip, Some("10.1.1.2".parse().unwrap()));

        let v6 = b"Received: from mx6.partner.example (mx6.partner.example [IPv6:2001:db8:5::25])\r\n\tby mx.example.com with ESMTPS; Tue, 10 Apr 2007 10:00:02 +0000\r\nFrom: y@partner.example\r\n\r\nb\r\n";
        let m = MessageParser::new().parse(&v6[..]).unwrap();
        assert_eq!(
            smtp_context(&m, &[]).client_ip,
            Some("2001:db8:5::25".parse().unwrap())
        );

        let none = b"From: z@partner.example\r\nDate: Tue, 10 Apr 2007 10:00:00 +0000\r\n\r\nb\r\n";
        let m = MessageParser::new().parse(&none[..]).unwrap();
        let c = smtp_context(&m, &[]);
        assert_eq!((c.client_ip, c.time), (None, Some(1176199200)));
    }
}
