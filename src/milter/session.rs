//! One milter connection (one SMTP session) and the message in progress.
//!
//! The connection keeps a snapshot of the config taken at connect (a reload
//! never changes a session midway), the client, and the MTA rating. The
//! message state is created at MAIL and dropped at end of message or abort.
//! Store work runs on the blocking pool; every failure is logged with the
//! queue id and answered per `on_error`.

use super::on_error;
use crate::config::Config;
use crate::message::{self, normalize_envelope, Envelope, Message};
use crate::pipeline::{Assessment, Engine};
use crate::policy::{self, class_reason, Outcome};
use crate::reputation::Rating;
use crate::shared::{ActiveGuard, Shared};
use crate::store::{run_loaded, Record, SetKind, StoreError};
use crate::verdict::{VerdictRecord, VERDICT_HEADER};
use crate::vocab::{canonical_ip, Action, Direction, Mode, Stage};
use indymilter::{Context, Macros, ProtoOpts, SetErrorReply, SmtpReply, Status};
use std::ffi::CString;
use std::net::IpAddr;
use std::sync::Arc;

/// Header bytes kept for the message's identity and DKIM even when
/// `max_message_bytes` is smaller (Postfix's own `header_size_limit` is
/// 100 KiB).
const MAX_HEADER_BYTES: usize = 256 * 1024;

/// Recipients kept per message (Postfix's own `smtpd_recipient_limit`
/// default); the rest are rated at RCPT but not remembered.
const MAX_RECIPIENTS: usize = 1000;

/// The longest address kept: a 64-octet local part, `@`, a 255-octet
/// domain (RFC 5321 §4.5.3.1). Longer RCPT arguments cannot be real.
const MAX_ADDRESS: usize = 320;

pub struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: Arc<Config>,
    hostname: String,
    pub(super) client_ip: Option<IpAddr>,
    /// The Postfix service is one of `originating_daemon_names`.
    originating: bool,
    pub helo: String,
    pub(super) mta: Option<Rating>,
    /// The envelope sender's rating, from MAIL to end of message.
    pub(super) mail_rating: Option<Rating>,
    /// Its record: whom it has dealt with (`[policy.rcpt.new_recipient]`).
    pub(super) mail_record: Option<Record>,
    /// A `tag`/`quarantine` decided at connect, applied at end of message.
    carried: Action,
    pub(super) msg: Option<MessageState>,
    /// What was negotiated with the MTA: the stages it agreed not to wait
    /// for an answer to ([`super::SILENT_STAGES`]), and whether header
    /// values come and go with the space after the colon
    /// (`LEADING_SPACE`).
    opts: ProtoOpts,
    _active: ActiveGuard,
}

/// The message in progress: its envelope from MAIL on, then its text as
/// received (headers as sent, for DKIM; the body up to
/// `max_message_bytes`).
#[derive(Default)]
pub(super) struct MessageState {
    pub(super) spf: Option<crate::auth::SpfState>,
    pub(super) truncated: bool,
    pub(super) queue_id: String,
    pub(super) direction: Option<Direction>,
    pub(super) envelope_from: Option<String>,
    pub(super) recipients: Vec<String>,
    pub(super) carried: Action,
    /// Existing `X-SRA-Verdict` headers (forged or stale): removed at eom.
    pub(super) verdict_headers: i32,
    pub(super) raw: Vec<u8>,
}

impl MessageState {
    /// Keeps a recipient, up to [`MAX_RECIPIENTS`] per message.
    fn remember_recipient(&mut self, rcpt: String) {
        if self.recipients.len() < MAX_RECIPIENTS {
            self.recipients.push(rcpt);
        }
    }
}

pub(super) fn macro_str(macros: &Macros, name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    macros
        .get(&name)
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
}

fn set_reply(reply: &mut SmtpReply, code: &str, xcode: &str, text: &str) {
    if let Err(e) = reply.set_error_reply(code, Some(xcode), [text]) {
        tracing::error!("cannot set smtp reply {code} {xcode}: {e}");
    }
}

/// Turns an applied action at connect/MAIL/RCPT into a milter status; `tag`
/// and `quarantine` wait for end of message.
pub(super) fn early_status(
    cfg: &Config,
    action: Action,
    reason: &str,
    reply: &mut SmtpReply,
) -> Status {
    let p = &cfg.policy;
    match action {
        Action::Reject => {
            set_reply(
                reply,
                &p.reject_code,
                &p.reject_xcode,
                &format!("{} ({reason})", p.reject_text),
            );
            Status::Reject
        }
        Action::Tempfail => {
            set_reply(reply, &p.tempfail_code, &p.tempfail_xcode, &p.tempfail_text);
            Status::Tempfail
        }
        Action::Discard => Status::Discard,
        Action::Accept | Action::Tag | Action::Quarantine => Status::Continue,
    }
}

impl Connection {
    /// A session, from option negotiation on: `opts` as negotiated (the
    /// silent stages and `LEADING_SPACE`).
    pub fn new(shared: Arc<Shared>, opts: ProtoOpts) -> Connection {
        let cfg = shared.config();
        Connection {
            _active: shared.active_guard(),
            shared,
            cfg,
            hostname: String::new(),
            client_ip: None,
            originating: false,
            helo: String::new(),
            mta: None,
            mail_rating: None,
            mail_record: None,
            carried: Action::Accept,
            msg: None,
            opts,
        }
    }

    /// Header values come with the space after the colon, and the ones
    /// sra-milter adds must bring theirs: the MTA adds none
    /// (`LEADING_SPACE` negotiated; without it the MTA takes one space off
    /// what it sends and puts one before what it is given, as Sendmail does).
    pub fn leading_space(&self) -> bool {
        self.opts.contains(ProtoOpts::LEADING_SPACE)
    }

    /// The answer to a stage that always goes on: none at all when the MTA
    /// agreed not to wait for one (`stage`: its `NOREPLY_*` option).
    pub fn goes_on(&self, stage: ProtoOpts) -> Status {
        if self.opts.contains(stage) {
            Status::Noreply
        } else {
            Status::Continue
        }
    }

    pub async fn connect(
        self,
        hostname: String,
        ip: Option<IpAddr>,
        cx: &mut Context<Connection>,
    ) -> (Connection, Status) {
        let mut conn = self;
        let shared = conn.shared.clone();
        let cfg = conn.cfg.clone();
        conn.hostname = hostname;
        conn.client_ip = ip.map(canonical_ip);
        conn.originating = macro_str(&cx.macros, "{daemon_name}")
            .is_some_and(|d| cfg.originating_daemon_names.contains(&d));
        let Some(ip) = conn.client_ip else {
            return (conn, Status::Continue);
        };
        if conn.originating || cfg.is_internal_ip(ip) {
            return (conn, Status::Continue);
        }
        let now = crate::vocab::now();
        let mta = match stage_work(&shared, |e| e.rate_mta(&cfg, ip, now)).await {
            Ok(r) => r,
            Err(e) => {
                return (
                    conn,
                    on_error(&shared, &format!("connect from {ip}"), &e, &mut cx.reply),
                )
            }
        };
        let action = cfg.policy.decide(Stage::Connect, None, Some(mta.class));
        let outcome = policy::outcome(action, cfg.mode);
        conn.mta = Some(mta);
        let who = format!("connect from {}[{ip}]", conn.hostname);
        let reason = class_reason("mta", conn.mta.as_ref());
        let status = conn.early_with_reason(Stage::Connect, &who, outcome, &reason, &mut cx.reply);
        (conn, status)
    }

    /// Logs an early-stage decision; answers it, or carries tag/quarantine
    /// to end of message.
    fn early_with_reason(
        &mut self,
        stage: Stage,
        who: &str,
        o: Outcome,
        reason: &str,
        reply: &mut SmtpReply,
    ) -> Status {
        // The reason names what decided: "mta malicious", "sender neutral".
        let class = reason.split_once(' ').map_or("none", |(_, c)| c);
        self.shared.metrics.verdict(
            stage.as_str(),
            class,
            o.applied.as_str(),
            o.would.map(|w| w.as_str()),
        );
        if let Some(would) = o.would {
            tracing::info!("{who}: would_{would} at {stage} ({reason}) [monitor only, not done]");
        } else if o.applied != Action::Accept {
            tracing::info!("{who}: {} at {stage} ({reason})", o.applied);
        }
        let carry = match o.applied {
            Action::Tag | Action::Quarantine => o.applied,
            _ => Action::Accept,
        };
        match (&mut self.msg, stage) {
            (_, Stage::Connect) | (None, _) => self.carried = self.carried.max(carry),
            (Some(m), _) => m.carried = m.carried.max(carry),
        }
        let status = early_status(&self.cfg, o.applied, reason, reply);
        if matches!(status, Status::Reject | Status::Tempfail | Status::Discard) {
            self.emit_early_record(stage, o);
        }
        status
    }

    /// The verdict record of a transaction ended before end of message.
    fn emit_early_record(&self, stage: Stage, o: Outcome) {
        let msg = Message::from_envelope(self.envelope());
        let a = Assessment {
            mta: self.mta.clone(),
            ..Assessment::default()
        };
        let rec = VerdictRecord::new(&msg, &a, stage, &o, self.cfg.mode == Mode::Monitor);
        self.shared.verdict(&self.cfg, rec, &msg);
    }

    /// The envelope as the session knows it now.
    pub(super) fn envelope(&self) -> Envelope {
        let m = self.msg.as_ref();
        Envelope {
            time: crate::vocab::now(),
            queue_id: m.map(|m| m.queue_id.clone()).unwrap_or_default(),
            direction: Some(m.and_then(|m| m.direction).unwrap_or(message::direction(
                &self.cfg.internal_networks,
                self.client_ip,
                None,
            ))),
            client_ip: self.client_ip,
            reverse_dns: message::ReverseDns::reported(&self.hostname),
            helo: self.helo.clone(),
            envelope_from: m.and_then(|m| m.envelope_from.clone()),
            recipients: m.map(|m| m.recipients.clone()).unwrap_or_default(),
        }
    }

    fn qid(&self) -> String {
        self.msg
            .as_ref()
            .map(|m| m.queue_id.clone())
            .filter(|q| !q.is_empty())
            .unwrap_or_else(|| "NOQUEUE".into())
    }

    pub async fn mail(
        &mut self,
        args: &[CString],
        macros: &Macros,
        reply: &mut SmtpReply,
    ) -> Status {
        let cfg = self.cfg.clone();
        let raw_from = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let auth = macro_str(macros, "{auth_authen}");
        let direction = if self.originating {
            Direction::Outbound
        } else {
            message::direction(&cfg.internal_networks, self.client_ip, auth.as_deref())
        };
        let envelope_from = normalize_envelope(&raw_from, &cfg.recipient_delimiter);
        self.msg = Some(MessageState {
            queue_id: macro_str(macros, "i").unwrap_or_default(),
            direction: Some(direction),
            envelope_from: envelope_from.clone(),
            carried: self.carried,
            ..MessageState::default()
        });
        if let (Direction::Inbound, true, Some(ip)) = (direction, cfg.auth.verify, self.client_ip) {
            let host = macro_str(macros, "j").unwrap_or_else(|| cfg.auth.authserv_id.clone());
            let spf = self
                .shared
                .auth
                .check_spf(ip, &self.helo, envelope_from.as_deref(), &host)
                .await;
            if let Some(m) = self.msg.as_mut() {
                m.spf = Some(spf);
            }
        }
        let (Direction::Inbound, Some(sender)) = (direction, envelope_from) else {
            return Status::Continue;
        };
        let now = crate::vocab::now();
        let (rating, record) = match stage_work(&self.shared, |e| {
            e.rate_sender_and_record(&cfg, &sender, now)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => return on_error(&self.shared, &self.qid(), &e, reply),
        };
        self.mail_record = Some(record);
        let action = cfg.policy.decide(
            Stage::Mail,
            Some(rating.class),
            self.mta.as_ref().map(|m| m.class),
        );
        let o = policy::outcome(action, cfg.mode);
        let reason = format!("sender {}", rating.class);
        self.mail_rating = Some(rating);
        let who = format!("{}: from=<{sender}>", self.qid());
        self.early_with_reason(Stage::Mail, &who, o, &reason, reply)
    }

    pub fn rcpt(&mut self, args: &[CString], macros: &Macros, reply: &mut SmtpReply) -> Status {
        let cfg = self.cfg.clone();
        let Some(m) = self.msg.as_mut() else {
            return Status::Continue;
        };
        if m.queue_id.is_empty() {
            m.queue_id = macro_str(macros, "i").unwrap_or_default();
        }
        let raw = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(rcpt) =
            normalize_envelope(&raw, &cfg.recipient_delimiter).filter(|r| r.len() <= MAX_ADDRESS)
        else {
            return Status::Continue;
        };
        if m.direction != Some(Direction::Inbound) {
            m.remember_recipient(rcpt);
            return Status::Continue;
        }
        let sender_class = self.mail_rating.as_ref().map(|r| r.class);
        // A recipient the sender never dealt with (either way); a sketch
        // that cannot tell counts as dealt with.
        let new = self
            .mail_record
            .as_ref()
            .is_some_and(|r| r.contains(SetKind::EnterpriseRecipients, &rcpt) == Some(false));
        let (action, for_new) =
            cfg.policy
                .decide_rcpt(sender_class, self.mta.as_ref().map(|r| r.class), new);
        let o = policy::outcome(action, cfg.mode);
        let who = format!("{}: to=<{rcpt}>", self.qid());
        let mut reason = class_reason("sender", self.mail_rating.as_ref());
        if for_new {
            reason.push_str(", a new recipient for it");
        }
        let status = self.early_with_reason(Stage::Rcpt, &who, o, &reason, reply);
        if status == Status::Continue {
            if let Some(m) = self.msg.as_mut() {
                m.remember_recipient(rcpt);
            }
        }
        status
    }

    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        let max = self.cfg.max_message_bytes.max(MAX_HEADER_BYTES);
        let leading_space = self.leading_space();
        let Some(m) = self.msg.as_mut() else {
            return;
        };
        if name.eq_ignore_ascii_case(VERDICT_HEADER.as_bytes()) {
            m.verdict_headers += 1;
        }
        // The header as it was sent, for DKIM: "Name:" + value, where the
        // value keeps its leading space when that was negotiated (a header
        // sent as "Name:value" stays so, for simple canonicalisation), and
        // else had one space (never a tab) taken off; it folds with CRLF.
        if m.raw.len() + name.len() + value.len() + 4 <= max {
            m.raw.extend_from_slice(name);
            m.raw.push(b':');
            if !leading_space && !value.starts_with(b"\t") {
                m.raw.push(b' ');
            }
            let mut prev = 0u8;
            for &b in value {
                if b == b'\n' && prev != b'\r' {
                    m.raw.push(b'\r');
                }
                m.raw.push(b);
                prev = b;
            }
            m.raw.extend_from_slice(b"\r\n");
        } else {
            m.truncated = true;
        }
    }

    pub fn end_of_headers(&mut self) {
        if let Some(m) = self.msg.as_mut() {
            m.raw.extend_from_slice(b"\r\n");
        }
    }

    pub fn body(&mut self, chunk: &[u8]) {
        let max = self.cfg.max_message_bytes;
        if let Some(m) = self.msg.as_mut() {
            let room = max.saturating_sub(m.raw.len());
            m.truncated |= chunk.len() > room;
            m.raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }

    pub fn abort(&mut self) {
        self.msg = None;
        self.mail_rating = None;
        self.mail_record = None;
    }
}

/// A stage's store work (the MTA's rating at connect, the envelope
/// sender's at MAIL, the rating and the learning at end of message), on the
/// runtime's worker. On the embedded store `f` reads and writes it
/// directly (RocksDB point reads and writes take microseconds; a hop to
/// the blocking pool and back costs more, ~8 % of the milter's
/// throughput). On a store that waits on a network `f` runs against a
/// snapshot, again until it has read only what was loaded
/// (`store::run_loaded`): the network is awaited, no thread waits on it.
pub(super) async fn stage_work<T>(
    shared: &Shared,
    f: impl Fn(&Engine) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    const WHAT: &str = "the stage's store work";
    let engine = &shared.engine;
    if engine.store().is_embedded() {
        unwound(WHAT, || f(engine))
    } else {
        run_loaded(engine.store(), |snapshot| {
            unwound(WHAT, || f(&engine.view(snapshot)))
        })
        .await
    }
}

/// Runs `f` where it is; a panic in it is an error answered per
/// `on_error`, as a panicked task of the blocking pool is, not a lost
/// session.
pub(super) fn unwound<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(StoreError::Task(format!("{what} panicked"))))
}
