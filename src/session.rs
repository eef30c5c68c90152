//! One milter connection (one SMTP session) and the message in progress.
//!
//! The connection keeps a snapshot of the config taken at connect (a reload
//! never changes a session midway), the client, and the MTA rating. The
//! message state is created at MAIL and dropped at end of message or abort.
//! Store work runs on the blocking pool; every failure is logged with the
//! queue id and answered per `on_error`.

use crate::config::{Config, Mode};
use crate::daemon::{ActiveGuard, Shared};
use crate::identity::{self, Direction};
use crate::pipeline::{class_reason, Assessment, Message};
use crate::policy::{self, Action, Outcome, Stage};
use crate::rating::Rating;
use crate::verdict::{self, VerdictRecord, VERDICT_HEADER};
use indymilter::{Context, ContextActions, EomActions, Macros, SetErrorReply, SmtpReply, Status};
use std::ffi::CString;
use std::net::IpAddr;
use std::sync::Arc;

/// Bytes of a single header value kept for identity (From, Message-ID, ...).
const MAX_IDENTITY_HEADER: usize = 8192;

pub struct Connection {
    shared: Arc<Shared>,
    cfg: Arc<Config>,
    hostname: String,
    client_ip: Option<IpAddr>,
    /// The Postfix service is one of `originating_daemon_names`.
    originating: bool,
    pub helo: String,
    mta: Option<Rating>,
    /// The envelope sender's rating, from MAIL to end of message.
    mail_rating: Option<Rating>,
    /// A `tag`/`quarantine` decided at connect, applied at end of message.
    carried: Action,
    msg: Option<MessageState>,
    _active: ActiveGuard,
}

#[derive(Default)]
struct MessageState {
    spf: Option<crate::auth::SpfState>,
    reply_to: Option<String>,
    /// Authentication-Results values in order (index + 1 is the header's
    /// occurrence number for removal).
    auth_results: Vec<String>,
    truncated: bool,
    queue_id: String,
    direction: Option<Direction>,
    envelope_from: Option<String>,
    recipients: Vec<String>,
    carried: Action,
    from: Option<String>,
    message_id: Option<String>,
    references: String,
    in_reply_to: String,
    /// Existing `X-SRA-Verdict` headers (forged or stale): removed at eom.
    verdict_headers: i32,
    raw: Vec<u8>,
}

fn macro_str(macros: &Macros, name: &str) -> Option<String> {
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
fn early_status(cfg: &Config, action: Action, reason: &str, reply: &mut SmtpReply) -> Status {
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
    pub async fn connect(
        shared: Arc<Shared>,
        hostname: String,
        ip: Option<IpAddr>,
        cx: &mut Context<Connection>,
    ) -> (Connection, Status) {
        let cfg = shared.config();
        let mut conn = Connection {
            _active: shared.active_guard(),
            shared: shared.clone(),
            cfg: cfg.clone(),
            hostname,
            client_ip: ip.map(identity::canonical_ip),
            originating: macro_str(&cx.macros, "{daemon_name}")
                .is_some_and(|d| cfg.originating_daemon_names.contains(&d)),
            helo: String::new(),
            mta: None,
            mail_rating: None,
            carried: Action::Accept,
            msg: None,
        };
        let Some(ip) = conn.client_ip else {
            return (conn, Status::Continue);
        };
        if conn.originating || cfg.is_internal_ip(ip) {
            return (conn, Status::Continue);
        }
        let engine = shared.engine.clone();
        let c = cfg.clone();
        let now = crate::now();
        let rated = tokio::task::spawn_blocking(move || engine.rate_mta(&c, ip, now)).await;
        let mta = match rated {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return (
                    conn,
                    shared.on_error(&format!("connect from {ip}"), &e.to_string(), &mut cx.reply),
                )
            }
            Err(e) => {
                return (
                    conn,
                    shared.on_error(&format!("connect from {ip}"), &e.to_string(), &mut cx.reply),
                )
            }
        };
        let action = cfg.policy.decide(Stage::Connect, None, Some(mta.class));
        let outcome = policy::outcome(action, cfg.mode);
        conn.mta = Some(mta);
        let who = format!("connect from {}[{ip}]", conn.hostname);
        let reason = class_reason("mta", &conn.mta);
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
        let msg = self.message_facts();
        let a = Assessment {
            mta: self.mta.clone(),
            ..Assessment::default()
        };
        let rec = VerdictRecord::new(&msg, &a, stage, &o, self.cfg.mode == Mode::Monitor);
        crate::logging::emit_verdict(&self.cfg, &rec, &msg);
    }

    fn message_facts(&self) -> Message {
        let m = self.msg.as_ref();
        let from_parts = m
            .and_then(|m| m.from.as_deref())
            .map(crate::features::from_parts)
            .unwrap_or((None, None));
        Message {
            time: crate::now(),
            queue_id: m.map(|m| m.queue_id.clone()).unwrap_or_default(),
            direction: Some(m.and_then(|m| m.direction).unwrap_or(identity::direction(
                &self.cfg,
                self.client_ip,
                None,
            ))),
            client_ip: self.client_ip,
            helo: self.helo.clone(),
            envelope_from: m.and_then(|m| m.envelope_from.clone()),
            header_from: from_parts.0,
            display_name: from_parts.1,
            reply_to: m
                .and_then(|m| m.reply_to.as_deref())
                .and_then(crate::features::from_address),
            recipients: m.map(|m| m.recipients.clone()).unwrap_or_default(),
            message_id: m.and_then(|m| {
                m.message_id
                    .as_deref()
                    .and_then(identity::normalize_message_id)
            }),
            references: m
                .map(|m| {
                    // Nearest first: In-Reply-To, then References newest to oldest.
                    let mut ids = identity::message_ids_in(&m.in_reply_to);
                    for id in identity::message_ids_in(&m.references).into_iter().rev() {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                    ids
                })
                .unwrap_or_default(),
            ..Message::default()
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
            identity::direction(&cfg, self.client_ip, auth.as_deref())
        };
        let envelope_from = identity::normalize_envelope(&raw_from, &cfg.recipient_delimiter);
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
        let engine = self.shared.engine.clone();
        let c = cfg.clone();
        let now = crate::now();
        let s = sender.clone();
        let rated = tokio::task::spawn_blocking(move || engine.rate_sender(&c, &s, now)).await;
        let rating = match rated {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.shared.on_error(&self.qid(), &e.to_string(), reply),
            Err(e) => return self.shared.on_error(&self.qid(), &e.to_string(), reply),
        };
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
        let Some(rcpt) = identity::normalize_envelope(&raw, &cfg.recipient_delimiter) else {
            return Status::Continue;
        };
        if m.direction != Some(Direction::Inbound) {
            m.recipients.push(rcpt);
            return Status::Continue;
        }
        let sender_class = self.mail_rating.as_ref().map(|r| r.class);
        let action = cfg.policy.decide(
            Stage::Rcpt,
            sender_class,
            self.mta.as_ref().map(|r| r.class),
        );
        let o = policy::outcome(action, cfg.mode);
        let who = format!("{}: to=<{rcpt}>", self.qid());
        let reason = class_reason("sender", &self.mail_rating);
        let status = self.early_with_reason(Stage::Rcpt, &who, o, &reason, reply);
        if status == Status::Continue {
            if let Some(m) = self.msg.as_mut() {
                m.recipients.push(rcpt);
            }
        }
        status
    }

    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        let max = self.cfg.max_message_bytes;
        let Some(m) = self.msg.as_mut() else {
            return;
        };
        let name_s = String::from_utf8_lossy(name);
        let keep =
            |v: &[u8]| String::from_utf8_lossy(&v[..v.len().min(MAX_IDENTITY_HEADER)]).into_owned();
        if name_s.eq_ignore_ascii_case("from") && m.from.is_none() {
            m.from = Some(keep(value));
        } else if name_s.eq_ignore_ascii_case("message-id") && m.message_id.is_none() {
            m.message_id = Some(keep(value));
        } else if name_s.eq_ignore_ascii_case("in-reply-to") {
            m.in_reply_to = keep(value);
        } else if name_s.eq_ignore_ascii_case("references") {
            m.references = keep(value);
        } else if name_s.eq_ignore_ascii_case(VERDICT_HEADER) {
            m.verdict_headers += 1;
        } else if name_s.eq_ignore_ascii_case("reply-to") && m.reply_to.is_none() {
            m.reply_to = Some(keep(value));
        } else if name_s.eq_ignore_ascii_case(crate::auth::AR_HEADER) {
            m.auth_results.push(keep(value));
        }
        // The header as it was sent, for DKIM: "Name:" + value, where the
        // value keeps its leading space (negotiated) and folds with CRLF.
        if m.raw.len() + name.len() + value.len() + 4 <= max {
            m.raw.extend_from_slice(name);
            m.raw.push(b':');
            if !value.starts_with(b" ") && !value.starts_with(b"\t") {
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

    pub fn body(&mut self, chunk: &[u8]) -> Status {
        let max = self.cfg.max_message_bytes;
        if let Some(m) = self.msg.as_mut() {
            let room = max.saturating_sub(m.raw.len());
            m.truncated |= chunk.len() > room;
            m.raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Status::Continue
    }

    /// The message's authentication: a trusted upstream's results, else
    /// verification here; `None` when neither applies. Also the
    /// Authentication-Results value to add.
    async fn authenticate(
        &self,
        cfg: &Config,
        state: &MessageState,
        facts: &Message,
    ) -> (Option<crate::auth::AuthSummary>, Option<String>) {
        let from_domain = facts.header_from.as_deref().map(identity::domain_of);
        // The topmost trusted header is the one the nearest upstream added.
        if let Some(v) = state.auth_results.iter().find(|v| {
            let id = crate::auth::authserv_id_of(v);
            cfg.auth
                .trusted_authserv_ids
                .iter()
                .any(|t| t.eq_ignore_ascii_case(id))
        }) {
            return (
                Some(crate::auth::parse_authentication_results(v, from_domain)),
                None,
            );
        }
        let (true, Some(spf), Some(ip)) = (cfg.auth.verify, &state.spf, facts.client_ip) else {
            return (None, None);
        };
        if state.truncated {
            // DKIM cannot be verified on a cut message: undecided.
            let s = crate::auth::AuthSummary {
                source: "verified".into(),
                spf: crate::auth::spf_str(spf.mail_from.result()).into(),
                spf_domain: spf.domain.clone(),
                dmarc: "temperror".into(),
                temperror: true,
                ..Default::default()
            };
            tracing::info!(
                "{}: message larger than max_message_bytes, DKIM/DMARC not verified",
                facts.queue_id
            );
            return (Some(s), None);
        }
        let (s, h) = self
            .shared
            .auth
            .verify(&state.raw, spf, from_domain, ip, &cfg.auth.authserv_id)
            .await;
        (Some(s), h)
    }

    /// The optional DNS checks of `[anomalies]`.
    async fn dns_anomalies(&self, cfg: &Config, facts: &Message) -> Vec<crate::anomaly::Anomaly> {
        let ac = &cfg.anomalies;
        let mut out = Vec::new();
        if ac.check_sender_domain {
            if let Some(d) = facts.sender_key().map(identity::domain_of) {
                if self.shared.auth.domain_accepts_mail(d).await == Some(false) {
                    out.push(crate::anomaly::Anomaly::new(
                        "sender_domain_without_mx",
                        ac.sender_domain_without_mx,
                        format!("{d} has no MX or A record"),
                    ));
                }
            }
        }
        if let Some(ip) = facts.client_ip {
            for zone in &ac.dnsbl_zones {
                if self.shared.auth.dnsbl_listed(ip, zone).await == Some(true) {
                    out.push(crate::anomaly::Anomaly::new(
                        "dnsbl_listed",
                        ac.dnsbl_listed,
                        zone.clone(),
                    ));
                    break;
                }
            }
        }
        out
    }

    pub fn abort(&mut self) {
        self.msg = None;
        self.mail_rating = None;
    }

    pub async fn eom(
        &mut self,
        macros: &Macros,
        reply: &mut SmtpReply,
        actions: &mut EomActions,
    ) -> Status {
        let cfg = self.cfg.clone();
        let mut facts = self.message_facts();
        if facts.queue_id.is_empty() {
            facts.queue_id = macro_str(macros, "i").unwrap_or_default();
        }
        let Some(state) = self.msg.take() else {
            return Status::Continue;
        };
        self.mail_rating = None;
        let qid = if facts.queue_id.is_empty() {
            "NOQUEUE".to_string()
        } else {
            facts.queue_id.clone()
        };
        let carried = state.carried;
        let mut ar_header = None;
        if facts.direction() == Direction::Inbound {
            let (summary, header) = self.authenticate(&cfg, &state, &facts).await;
            if let Some(s) = &summary {
                facts.auth_state = crate::pipeline::AuthState::from_summary(s);
            }
            facts.auth = summary;
            ar_header = header;
            facts.anomalies = self.dns_anomalies(&cfg, &facts).await;
        }
        let raw = state.raw;
        let engine = self.shared.engine.clone();
        let c = cfg.clone();
        let job = tokio::task::spawn_blocking(move || {
            let (att, url) = crate::features::body_features(&raw);
            facts.has_attachment = att;
            facts.has_url = url;
            let (a, d) = engine.process(&c, &facts, carried, true)?;
            Ok::<_, crate::store::StoreError>((facts, a, d))
        })
        .await;
        let (facts, a, d) = match job {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return self.shared.on_error(&qid, &e.to_string(), reply),
            Err(e) => return self.shared.on_error(&qid, &e.to_string(), reply),
        };
        let monitor = cfg.mode == Mode::Monitor;
        let o = d.outcome;
        let class = match (facts.direction(), &a.sender, &a.mta) {
            (Direction::Outbound, _, _) => "outbound".to_string(),
            (_, Some(s), _) => s.class.to_string(),
            (_, None, Some(m)) => m.class.to_string(),
            _ => "none".to_string(),
        };
        self.shared.metrics.verdict(
            "eom",
            &class,
            o.applied.as_str(),
            o.would.map(|w| w.as_str()),
        );
        let rec = VerdictRecord::new(&facts, &a, Stage::Eom, &o, monitor);
        crate::logging::emit_verdict(&cfg, &rec, &facts);

        if facts.direction() == Direction::Inbound {
            // Authentication-Results claiming our authserv-id arrived with
            // the message: forged (RFC 8601 §5); remove them.
            let ours: Vec<i32> = state
                .auth_results
                .iter()
                .enumerate()
                .filter(|(_, v)| {
                    crate::auth::authserv_id_of(v).eq_ignore_ascii_case(&cfg.auth.authserv_id)
                })
                .map(|(i, _)| i as i32 + 1)
                .collect();
            for i in ours.into_iter().rev() {
                if let Err(e) = actions
                    .change_header(crate::auth::AR_HEADER, i, None::<CString>)
                    .await
                {
                    tracing::warn!(
                        "{qid}: cannot remove a forged {}: {e}",
                        crate::auth::AR_HEADER
                    );
                }
            }
            if let (Some(h), true) = (&ar_header, cfg.auth.add_header) {
                if let Err(e) = actions
                    .insert_header(0, crate::auth::AR_HEADER, h.as_str())
                    .await
                {
                    tracing::error!("{qid}: cannot add {}: {e}", crate::auth::AR_HEADER);
                }
            }
            // Headers claiming our verdict that arrived with the message are
            // forged or stale: remove them (last first, indexes shift).
            for i in (1..=state.verdict_headers).rev() {
                if let Err(e) = actions
                    .change_header(VERDICT_HEADER, i, None::<CString>)
                    .await
                {
                    tracing::warn!("{qid}: cannot remove existing {VERDICT_HEADER}: {e}");
                }
            }
            let value = verdict::header_value(&a, &o, monitor);
            if let Err(e) = actions.insert_header(0, VERDICT_HEADER, value).await {
                tracing::error!("{qid}: cannot add {VERDICT_HEADER}: {e}");
            }
            if o.applied == Action::Tag {
                if let Err(e) = actions
                    .insert_header(0, cfg.tag_header.as_str(), "YES")
                    .await
                {
                    tracing::error!("{qid}: cannot add {}: {e}", cfg.tag_header);
                }
            }
        }
        match o.applied {
            Action::Quarantine => {
                let reason = format!(
                    "sra-milter: {}, {}",
                    class_reason("sender", &a.sender),
                    class_reason("mta", &a.mta)
                );
                if let Err(e) = actions.quarantine(reason).await {
                    tracing::error!("{qid}: cannot quarantine: {e}");
                }
                Status::Continue
            }
            Action::Accept | Action::Tag => Status::Continue,
            other => early_status(&cfg, other, &d.reason, reply),
        }
    }
}
