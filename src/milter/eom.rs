//! End of message: the message's text is read, authenticated (a trusted
//! upstream's results, else SPF/DKIM/ARC/DMARC here), rated and learned by
//! the engine, and answered: headers added or removed, quarantine, or a
//! refusal.

use super::on_error;
use super::session::{early_status, macro_str, stage_work, unwound, Connection, MessageState};
use crate::auth::{authserv_id_of, AuthResult, AuthSummary, SpfState, AR_HEADER};
use crate::config::Config;
use crate::message::{Content, DnsFacts, Message};
use crate::policy::class_reason;
use crate::store::run_blocking;
use crate::verdict::{self, VerdictRecord, VERDICT_HEADER};
use crate::vocab::{domain_of, org_domain, Action, Direction, Mode, Stage};
use indymilter::{ContextActions, EomActions, Macros, SmtpReply, Status};
use std::ffi::CString;

/// Messages up to this size are parsed on the runtime's worker.
const INLINE_PARSE_BYTES: usize = 32 * 1024;

impl Connection {
    /// The message's authentication: a trusted upstream's results, else
    /// verification here; `None` when neither applies. Also the
    /// Authentication-Results value to add.
    async fn authenticate(
        &self,
        cfg: &Config,
        content: &Content,
        spf: Option<&SpfState>,
        truncated: bool,
        raw: &[u8],
        facts: &Message,
    ) -> (Option<AuthSummary>, Option<String>) {
        let from_domain = facts.header_from.as_deref().map(domain_of);
        let upstream = content.upstream_auth(&cfg.auth.trusted_authserv_ids);
        if upstream.is_some() {
            return (upstream, None);
        }
        let (true, Some(spf), Some(ip)) = (cfg.auth.verify, spf, facts.client_ip) else {
            return (None, None);
        };
        if truncated {
            // DKIM cannot be verified on a cut message: undecided.
            let s = AuthSummary {
                source: "verified".into(),
                spf: spf.mail_from.result().into(),
                spf_domain: spf.domain.clone(),
                dmarc: AuthResult::TempError,
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
            .verify(raw, spf, from_domain, ip, &cfg.auth.authserv_id)
            .await;
        (Some(s), h)
    }

    /// The optional DNS checks of `[anomalies]`; `reputation::anomaly`
    /// weighs their answers.
    async fn dns_facts(&self, cfg: &Config, facts: &Message) -> DnsFacts {
        let ac = &cfg.anomalies;
        let mut out = DnsFacts::default();
        if ac.check_sender_domain {
            if let Some(d) = facts.sender_key().map(domain_of) {
                out.sender_domain_accepts_mail = self.shared.auth.domain_accepts_mail(d).await;
            }
        }
        if let (false, Some(d)) = (ac.rdap_url.is_empty(), facts.sender_key().map(domain_of)) {
            out.domain_registered = self
                .shared
                .auth
                .rdap
                .registered(&ac.rdap_url, &org_domain(d), ac.rdap_timeout.0)
                .await;
        }
        if let Some(ip) = facts.client_ip {
            for zone in &ac.dnsbl_zones {
                if self.shared.auth.dnsbl_listed(ip, zone).await == Some(true) {
                    out.dnsbl_listed = Some(zone.clone());
                    break;
                }
            }
        }
        out
    }

    pub async fn eom(
        &mut self,
        macros: &Macros,
        reply: &mut SmtpReply,
        actions: &mut EomActions,
    ) -> Status {
        let cfg = self.cfg.clone();
        let mut env = self.envelope();
        if env.queue_id.is_empty() {
            env.queue_id = macro_str(macros, "i").unwrap_or_default();
        }
        let Some(state) = self.msg.take() else {
            return Status::Continue;
        };
        self.mail_rating = None;
        self.mail_record = None;
        let qid = if env.queue_id.is_empty() {
            "NOQUEUE".to_string()
        } else {
            env.queue_id.clone()
        };
        let MessageState {
            spf,
            truncated,
            carried,
            verdict_headers,
            raw,
            ..
        } = state;
        // A small message is parsed where it is (tens of microseconds: a hop
        // to the blocking pool and back costs more, ~6 % of the milter's
        // throughput); a large one on the blocking pool, so that it holds
        // no runtime worker.
        let read = if raw.len() <= INLINE_PARSE_BYTES {
            unwound("the message parser", || Ok(Content::parse(&raw))).map(|c| (c, raw))
        } else {
            run_blocking(move || Ok((Content::parse(&raw), raw))).await
        };
        let (content, raw) = match read {
            Ok(x) => x,
            Err(e) => return on_error(&self.shared, &qid, &e, reply),
        };
        let mut facts = Message::new(env, &content);
        let mut ar_header = None;
        if facts.direction() == Direction::Inbound {
            let (summary, header) = self
                .authenticate(&cfg, &content, spf.as_ref(), truncated, &raw, &facts)
                .await;
            facts.set_auth(summary);
            ar_header = header;
            facts.dns = self.dns_facts(&cfg, &facts).await;
        }
        let job = stage_work(&self.shared, |e| e.process(&cfg, &facts, carried, true)).await;
        let (a, d) = match job {
            Ok(x) => x,
            Err(e) => return on_error(&self.shared, &qid, &e, reply),
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
        self.shared.verdict(&cfg, rec, &facts);

        if facts.direction() == Direction::Inbound {
            // The space after the colon, where the MTA leaves it to us.
            let lead = if self.leading_space() { " " } else { "" };
            // Authentication-Results claiming our authserv-id arrived with
            // the message: forged (RFC 8601 §5); remove them.
            let ours: Vec<i32> = content
                .auth_results
                .iter()
                .enumerate()
                .filter(|(_, v)| authserv_id_of(v).eq_ignore_ascii_case(&cfg.auth.authserv_id))
                .map(|(i, _)| i as i32 + 1)
                .collect();
            for i in ours.into_iter().rev() {
                if let Err(e) = actions.change_header(AR_HEADER, i, None::<CString>).await {
                    tracing::warn!("{qid}: cannot remove a forged {}: {e}", AR_HEADER);
                }
            }
            if let (Some(h), true) = (&ar_header, cfg.auth.add_header) {
                if let Err(e) = actions
                    .insert_header(0, AR_HEADER, format!("{lead}{h}"))
                    .await
                {
                    tracing::error!("{qid}: cannot add {}: {e}", AR_HEADER);
                }
            }
            // Headers claiming our verdict that arrived with the message are
            // forged or stale: remove them (last first, indexes shift).
            for i in (1..=verdict_headers).rev() {
                if let Err(e) = actions
                    .change_header(VERDICT_HEADER, i, None::<CString>)
                    .await
                {
                    tracing::warn!("{qid}: cannot remove existing {VERDICT_HEADER}: {e}");
                }
            }
            let value = format!("{lead}{}", verdict::header_value(&a, &o, monitor));
            if let Err(e) = actions.insert_header(0, VERDICT_HEADER, value).await {
                tracing::error!("{qid}: cannot add {VERDICT_HEADER}: {e}");
            }
            if o.applied == Action::Tag {
                if let Err(e) = actions
                    .insert_header(0, cfg.tag_header.as_str(), format!("{lead}YES"))
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
                    class_reason("sender", a.sender.as_ref()),
                    class_reason("mta", a.mta.as_ref())
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
