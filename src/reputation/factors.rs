//! The factors: the eleven D3-SRA sender factors and the five MTA factors,
//! each a value (or no data) and the points it contributes:
//! `weight * min(1, ln(1 + x) / ln(1 + cap))`.
//!
//! Volume that anyone can produce by sending (messages received, distinct
//! enterprise recipients, for an MTA also the sender domains it carried)
//! counts in proportion to how long the identity has been known, up to
//! `volume_maturity_days`: history is evidence once it has had time to be
//! contradicted (junk reports, mail left unopened, an administrator's
//! override). A campaign that reaches hundreds of recipients in its first
//! hour earns nothing by it. What the enterprise did (mail sent, replies) is
//! not scaled: a sender cannot make it up.

use super::rating::{round1, Factor};
use crate::config::{log_fraction, MtaWeights, SenderWeights};
use crate::store::{Counter, Record, SetKind};

/// Days since the record's first interaction; `None` for no record.
pub fn days_known(r: &Record, now: u64) -> Option<f64> {
    (r.first_seen != 0).then(|| now.saturating_sub(r.first_seen) as f64 / 86400.0)
}

/// The share of its volume credit an identity known `days` has earned.
fn maturity(days: Option<f64>, maturity_days: f64) -> f64 {
    match days {
        Some(d) if maturity_days > 0.0 => (d / maturity_days).clamp(0.0, 1.0),
        _ => 1.0,
    }
}

fn factor(name: &'static str, value: Option<f64>, contribution: f64) -> Factor {
    Factor {
        name,
        value: value.map(|v| (v * 1000.0).round() / 1000.0),
        contribution: round1(contribution),
    }
}

/// The eleven D3-SRA sender factors of a sender (or sender-domain) record.
pub fn sender_factors(r: &Record, now: u64, wt: &SenderWeights, maturity_days: f64) -> Vec<Factor> {
    let c = |k| r.count(k) as f64;
    let received = c(Counter::MessagesReceived);
    let sent = c(Counter::MessagesSent);
    let opened = c(Counter::Opened);
    let not_opened = r.net(Counter::NotOpened, Counter::LateOpened) as f64;
    let days = days_known(r, now);
    let recipients = r.distinct(SetKind::EnterpriseRecipients) as f64;
    let mature = maturity(days, maturity_days);

    let conversation = received + sent;
    let (ratio, ratio_points) = if conversation > 0.0 {
        let share = received / conversation;
        let balance = 1.0 - (share - 0.5).abs() * 2.0;
        (
            Some(share),
            wt.sender_enterprise_ratio.weight
                * balance
                * log_fraction(conversation, wt.sender_enterprise_ratio.cap),
        )
    } else {
        (None, 0.0)
    };
    let measured = opened + not_opened;
    let (open_ratio, open_points) = if measured > 0.0 {
        let ratio = opened / measured;
        (
            Some(ratio),
            wt.open_ratio.weight * (2.0 * ratio - 1.0) * log_fraction(measured, wt.open_ratio.cap),
        )
    } else {
        (None, 0.0)
    };
    // "No data is not not-opened": the not-opened counts only exist once an
    // engagement source has measured something for this sender.
    let engaged = |x: f64| (measured > 0.0).then_some(x);
    let n_att = r.net(
        Counter::NotOpenedWithAttachment,
        Counter::LateOpenedWithAttachment,
    ) as f64;
    let n_url = r.net(Counter::NotOpenedWithUrl, Counter::LateOpenedWithUrl) as f64;
    vec![
        factor(
            "days_known",
            days,
            days.map_or(0.0, |d| wt.days_known.points(d)),
        ),
        factor(
            "enterprise_recipients",
            Some(recipients),
            mature * wt.enterprise_recipients.points(recipients),
        ),
        factor("sender_enterprise_ratio", ratio, ratio_points),
        factor("open_ratio", open_ratio, open_points),
        factor(
            "messages_received",
            Some(received),
            mature * wt.messages_received.points(received),
        ),
        factor(
            "replies_sent",
            Some(c(Counter::RepliesSent)),
            wt.replies_sent.points(c(Counter::RepliesSent)),
        ),
        factor(
            "not_opened",
            engaged(not_opened),
            wt.not_opened.points(not_opened),
        ),
        factor(
            "not_opened_with_attachment",
            engaged(n_att),
            wt.not_opened_with_attachment.points(n_att),
        ),
        factor(
            "not_opened_with_url",
            engaged(n_url),
            wt.not_opened_with_url.points(n_url),
        ),
        factor("messages_sent", Some(sent), wt.messages_sent.points(sent)),
        factor(
            "replies_received",
            Some(c(Counter::RepliesReceived)),
            wt.replies_received.points(c(Counter::RepliesReceived)),
        ),
    ]
}

/// The five D3-SRA MTA factors.
pub fn mta_factors(r: &Record, now: u64, wt: &MtaWeights, maturity_days: f64) -> Vec<Factor> {
    let days = days_known(r, now);
    let mature = maturity(days, maturity_days);
    let domains = r.distinct(SetKind::SenderDomains) as f64;
    let recipients = r.distinct(SetKind::EnterpriseRecipients) as f64;
    let received = r.count(Counter::MessagesReceived) as f64;
    let replies = r.count(Counter::RepliesReceived) as f64;
    vec![
        factor(
            "days_known",
            days,
            days.map_or(0.0, |d| wt.days_known.points(d)),
        ),
        factor(
            "sender_domains",
            Some(domains),
            mature * wt.sender_domains.points(domains),
        ),
        factor(
            "enterprise_recipients",
            Some(recipients),
            mature * wt.enterprise_recipients.points(recipients),
        ),
        factor(
            "messages_received",
            Some(received),
            mature * wt.messages_received.points(received),
        ),
        factor(
            "replies_received",
            Some(replies),
            wt.replies_received.points(replies),
        ),
    ]
}
