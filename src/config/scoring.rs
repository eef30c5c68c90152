//! `[scoring]`: the base score, the class thresholds, and the weight and cap
//! of every factor (canonical names). How they combine is `reputation`'s.

use serde::{Deserialize, Serialize};

/// One factor's weight and the count at which it stops growing.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Weight {
    pub weight: f64,
    pub cap: f64,
}

const fn w(weight: f64, cap: f64) -> Weight {
    Weight { weight, cap }
}

impl Weight {
    /// `weight * min(1, ln(1+x)/ln(1+cap))`.
    pub fn points(&self, x: f64) -> f64 {
        self.weight * log_fraction(x, self.cap)
    }
}

pub fn log_fraction(x: f64, cap: f64) -> f64 {
    if x <= 0.0 || cap <= 0.0 {
        return 0.0;
    }
    ((1.0 + x).ln() / (1.0 + cap).ln()).min(1.0)
}

/// Weights of the eleven sender factors (canonical names).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SenderWeights {
    pub days_known: Weight,
    pub enterprise_recipients: Weight,
    /// `cap` is the conversation size (sent + received) at which a balanced
    /// ratio earns the full weight.
    pub sender_enterprise_ratio: Weight,
    /// `cap` is the number of measured messages at which the ratio counts
    /// fully; the contribution runs from `-weight` (none opened) to
    /// `+weight` (all opened).
    pub open_ratio: Weight,
    pub messages_received: Weight,
    pub replies_sent: Weight,
    pub not_opened: Weight,
    pub not_opened_with_attachment: Weight,
    pub not_opened_with_url: Weight,
    pub messages_sent: Weight,
    pub replies_received: Weight,
}

impl Default for SenderWeights {
    fn default() -> Self {
        SenderWeights {
            days_known: w(10.0, 365.0),
            enterprise_recipients: w(5.0, 20.0),
            sender_enterprise_ratio: w(5.0, 20.0),
            open_ratio: w(8.0, 20.0),
            messages_received: w(5.0, 100.0),
            replies_sent: w(12.0, 10.0),
            not_opened: w(-4.0, 50.0),
            not_opened_with_attachment: w(-8.0, 20.0),
            not_opened_with_url: w(-8.0, 20.0),
            messages_sent: w(10.0, 20.0),
            replies_received: w(10.0, 10.0),
        }
    }
}

/// Weights of the five MTA factors (canonical names).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MtaWeights {
    pub days_known: Weight,
    pub sender_domains: Weight,
    pub enterprise_recipients: Weight,
    pub messages_received: Weight,
    pub replies_received: Weight,
}

impl Default for MtaWeights {
    fn default() -> Self {
        MtaWeights {
            days_known: w(8.0, 365.0),
            sender_domains: w(3.0, 50.0),
            enterprise_recipients: w(5.0, 50.0),
            messages_received: w(7.0, 1000.0),
            replies_received: w(15.0, 20.0),
        }
    }
}

/// The default public mailbox providers (`freemail_domains`).
pub const FREEMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "ymail.com",
    "rocketmail.com",
    "outlook.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "live.com",
    "msn.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "protonmail.com",
    "proton.me",
    "pm.me",
    "zoho.com",
    "yandex.com",
    "yandex.ru",
    "mail.ru",
    "qq.com",
    "163.com",
    "126.com",
    "fastmail.com",
    "tutanota.com",
    "tuta.io",
    "hey.com",
    "comcast.net",
    "att.net",
    "verizon.net",
    "orange.fr",
    "free.fr",
    "laposte.net",
    "libero.it",
    "t-online.de",
    "seznam.cz",
    "wp.pl",
    "rediffmail.com",
    "naver.com",
    "rambler.ru",
];

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Score of an identity with no history.
    pub base: f64,
    /// Messages (either direction) before an identity leaves `unrated`.
    pub min_history: u64,
    pub trusted: f64,
    pub suspicious: f64,
    pub malicious: f64,
    /// Share of a domain's score difference that backs a new address.
    pub domain_backing: f64,
    /// Days after which volume (messages received, distinct recipients,
    /// sender domains) earns its full credit; before, in proportion to the
    /// days known. 0: at once.
    pub volume_maturity_days: f64,
    /// Public mailbox providers: anyone can open an address there, so an
    /// address is rated on its own history only (no domain backing), and
    /// they are not protected against lookalikes.
    pub freemail_domains: Vec<String>,
    /// Junk reports from recipients (net of `not_junk`), for senders and
    /// MTAs alike: the `junk` contribution.
    pub junk: Weight,
    pub sender: SenderWeights,
    pub mta: MtaWeights,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            base: 50.0,
            min_history: 2,
            trusted: 75.0,
            suspicious: 35.0,
            malicious: 15.0,
            domain_backing: 0.5,
            volume_maturity_days: 3.0,
            freemail_domains: FREEMAIL.iter().map(|s| s.to_string()).collect(),
            junk: w(-25.0, 5.0),
            sender: SenderWeights::default(),
            mta: MtaWeights::default(),
        }
    }
}

impl ScoringConfig {
    /// Is `domain` (or its parent) a public mailbox provider?
    pub fn is_freemail(&self, domain: &str) -> bool {
        self.freemail_domains.iter().any(|f| {
            domain == f
                || domain
                    .strip_suffix(f.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.malicious < self.suspicious
            && self.suspicious < self.base
            && self.base < self.trusted)
        {
            return Err(format!(
                "scoring: thresholds must satisfy malicious < suspicious < base < trusted (got {} < {} < {} < {})",
                self.malicious, self.suspicious, self.base, self.trusted
            ));
        }
        if !(0.0..=1.0).contains(&self.domain_backing) {
            return Err("scoring.domain_backing must be within 0..1".into());
        }
        if !(self.volume_maturity_days.is_finite()
            && (0.0..=3650.0).contains(&self.volume_maturity_days))
        {
            return Err("scoring.volume_maturity_days must be within 0..3650".into());
        }
        let s = &self.sender;
        let m = &self.mta;
        let all = [
            ("sender.days_known", s.days_known),
            ("sender.enterprise_recipients", s.enterprise_recipients),
            ("sender.sender_enterprise_ratio", s.sender_enterprise_ratio),
            ("sender.open_ratio", s.open_ratio),
            ("sender.messages_received", s.messages_received),
            ("sender.replies_sent", s.replies_sent),
            ("sender.not_opened", s.not_opened),
            (
                "sender.not_opened_with_attachment",
                s.not_opened_with_attachment,
            ),
            ("sender.not_opened_with_url", s.not_opened_with_url),
            ("sender.messages_sent", s.messages_sent),
            ("sender.replies_received", s.replies_received),
            ("mta.days_known", m.days_known),
            ("mta.sender_domains", m.sender_domains),
            ("mta.enterprise_recipients", m.enterprise_recipients),
            ("mta.messages_received", m.messages_received),
            ("mta.replies_received", m.replies_received),
            ("junk", self.junk),
        ];
        for (name, wt) in all {
            if !(wt.weight.is_finite() && wt.cap.is_finite() && wt.cap > 0.0) {
                return Err(format!("scoring.{name}: weight must be finite and cap > 0"));
            }
        }
        Ok(())
    }
}
