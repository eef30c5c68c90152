//! Authenticated identity: SPF, DKIM, ARC and DMARC with mail-auth, or the
//! `Authentication-Results` of a trusted upstream authserv-id.
//!
//! A message is *authenticated* when its `From:` domain passes DMARC (RFC
//! 7489 §3.1 alignment; mail-auth finds the organisational domain by the
//! DNS tree walk). For a `From:` domain without a DMARC record it is
//! authenticated when SPF or DKIM passes for a domain in the same
//! organisation (relaxed alignment, organisational domain from the public
//! suffix list). DNS trouble (`temperror`) leaves it undecided: such a
//! message builds no trust, but is not held against the sender either.
//!
//! Every DNS step runs under a deadline: SPF at MAIL gets `dns.timeout`,
//! DKIM, ARC and DMARC at end of message share one `dns.timeout`. A
//! resolver that never answers costs at most that, and the result is
//! `temperror`. Answers are cached in bounded caches (`dns.cache_size`
//! entries per record type), which tests pre-load instead of using a
//! network.

use crate::config::Span;
use mail_auth::common::resolver::ToFqdn;
use mail_auth::dmarc::Policy;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    Parameters, RecordSet, ResolverCache, SpfOutput, SpfResult, Txt, MX,
};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const AR_HEADER: &str = "Authentication-Results";

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Resolvers as `IP` or `IP:PORT`; empty: the system's (/etc/resolv.conf).
    pub servers: Vec<String>,
    /// Deadline for the DNS work of one SMTP stage.
    pub timeout: Span,
    /// Cached answers per record type.
    pub cache_size: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Span(Duration::from_secs(5)),
            cache_size: 10_000,
        }
    }
}

impl DnsConfig {
    pub fn server_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.servers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("dns.servers: {s:?} is not IP or IP:PORT"))
            })
            .collect()
    }
}

/// What to do with a DMARC failure whose domain publishes p=reject or
/// p=quarantine.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Verify SPF/DKIM/DMARC/ARC here (unless a trusted upstream did).
    pub verify: bool,
    /// authserv-id of the Authentication-Results header added.
    pub authserv_id: String,
    /// Add an Authentication-Results header to inbound mail.
    pub add_header: bool,
    /// Upstream authserv-ids whose Authentication-Results are believed.
    pub trusted_authserv_ids: Vec<String>,
    pub dmarc_reject_action: crate::policy::Action,
    pub dmarc_quarantine_action: crate::policy::Action,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            verify: true,
            authserv_id: default_hostname(),
            add_header: true,
            trusted_authserv_ids: Vec::new(),
            dmarc_reject_action: crate::policy::Action::Reject,
            dmarc_quarantine_action: crate::policy::Action::Quarantine,
        }
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/etc/mailname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .unwrap_or_else(|| "localhost".into())
}

/// A bounded cache for one record type: when full, expired entries go
/// first, then the entry closest to expiry.
pub struct DnsCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> DnsCache<K, V> {
    pub fn new(cap: usize) -> Self {
        DnsCache {
            map: Mutex::new(HashMap::new()),
            cap: cap.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for DnsCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.map.lock().ok()?;
        map.get(name)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(v, _)| v.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.lock().ok()?.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.cap && !map.contains_key(&key) {
            let now = Instant::now();
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= self.cap {
                if let Some(k) = map
                    .iter()
                    .min_by_key(|(_, (_, e))| *e)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, (value, valid_until));
    }
}

/// One DKIM signature's outcome.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DkimVerdict {
    pub domain: String,
    pub result: String,
}

/// The authentication of one message, as recorded and shown.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct AuthSummary {
    /// `verified` (here) or `authserv:ID` (a trusted upstream).
    pub source: String,
    pub spf: String,
    pub spf_domain: String,
    pub spf_helo: String,
    pub dkim: Vec<DkimVerdict>,
    pub dmarc: String,
    /// Policy of the From domain when DMARC applies: none, quarantine, reject.
    pub dmarc_policy: String,
    pub arc: String,
    /// Aligned with the From domain: true, false, or undecided (DNS trouble).
    pub authenticated: Option<bool>,
    /// A DNS temperror took part in the decision.
    pub temperror: bool,
}

impl AuthSummary {
    pub fn dmarc_failed_with(&self, policy: &str) -> bool {
        self.dmarc == "fail" && self.dmarc_policy == policy
    }
}

/// The organisational (registrable) domain, by the public suffix list.
pub fn org_domain(domain: &str) -> String {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&d).map(str::to_string).unwrap_or(d)
}

pub fn spf_str(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_str(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn dmarc_str(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

/// SPF of the MAIL FROM and HELO identities, taken at MAIL.
#[derive(Clone, Debug)]
pub struct SpfState {
    pub mail_from: SpfOutput,
    pub helo: SpfOutput,
    /// The domain SPF checked: the envelope sender's, or HELO's for `<>`.
    pub domain: String,
}

impl SpfState {
    fn temperror(domain: &str) -> SpfState {
        SpfState {
            mail_from: SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError),
            helo: SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError),
            domain: domain.to_string(),
        }
    }
}

pub struct Authenticator {
    inner: MessageAuthenticator,
    pub txt: DnsCache<Box<str>, Txt>,
    pub mx: DnsCache<Box<str>, RecordSet<MX>>,
    pub ipv4: DnsCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: DnsCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: DnsCache<IpAddr, RecordSet<Box<str>>>,
    timeout: Duration,
}

type Params<'x, P> = Parameters<
    'x,
    P,
    DnsCache<Box<str>, Txt>,
    DnsCache<Box<str>, RecordSet<MX>>,
    DnsCache<Box<str>, RecordSet<Ipv4Addr>>,
    DnsCache<Box<str>, RecordSet<Ipv6Addr>>,
    DnsCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Authenticator {
    pub fn new(cfg: &DnsConfig) -> Result<Authenticator, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = cfg.timeout.0;
        opts.attempts = 1;
        // sra-milter keeps its own bounded caches.
        opts.cache_size = 0;
        let inner = if cfg.servers.is_empty() {
            match MessageAuthenticator::new_system_conf() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(
                        "dns: cannot read the system resolver configuration ({e}); using 127.0.0.1"
                    );
                    let ns = NameServerConfig::udp_and_tcp(IpAddr::from([127, 0, 0, 1]));
                    MessageAuthenticator::new(
                        ResolverConfig::from_name_servers(vec![ns]),
                        opts.clone(),
                    )
                    .map_err(|e| e.to_string())?
                }
            }
        } else {
            let mut servers = Vec::new();
            for addr in cfg.server_addrs()? {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                ns.connections = vec![udp, tcp];
                servers.push(ns);
            }
            MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), opts)
                .map_err(|e| e.to_string())?
        };
        Ok(Authenticator {
            inner,
            txt: DnsCache::new(cfg.cache_size),
            mx: DnsCache::new(cfg.cache_size),
            ipv4: DnsCache::new(cfg.cache_size),
            ipv6: DnsCache::new(cfg.cache_size),
            ptr: DnsCache::new(cfg.cache_size),
            timeout: cfg.timeout.0,
        })
    }

    fn params<P>(&self, p: P) -> Params<'_, P> {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }

    /// Pre-loads a TXT record (tests, and operators pinning records).
    pub fn preload_txt(&self, name: &str, record: impl Into<Txt>) {
        let far = Instant::now() + Duration::from_secs(365 * 86400);
        self.txt.insert(
            name.to_fqdn().into_owned().into_boxed_str(),
            record.into(),
            far,
        );
    }

    /// Pre-loads the absence of a TXT record (NXDOMAIN).
    pub fn preload_txt_missing(&self, name: &str) {
        let far = Instant::now() + Duration::from_secs(365 * 86400);
        self.txt.insert(
            name.to_fqdn().into_owned().into_boxed_str(),
            Txt::Error(mail_auth::Error::Dns(
                mail_auth::DnsError::InvalidRecordType,
            )),
            far,
        );
    }

    pub fn preload_a(&self, name: &str, addrs: &[Ipv4Addr]) {
        let far = Instant::now() + Duration::from_secs(365 * 86400);
        self.ipv4.insert(
            name.to_fqdn().into_owned().into_boxed_str(),
            RecordSet {
                rrset: addrs.to_vec().into(),
                dnssec_status: mail_auth::DnssecStatus::Indeterminate,
            },
            far,
        );
    }

    /// Does `domain` have an MX or an A record? `None` on DNS trouble.
    pub async fn domain_accepts_mail(&self, domain: &str) -> Option<bool> {
        use mail_auth::{DnsError, Error};
        let deadline = tokio::time::Instant::now() + self.timeout;
        let not_found = |e: &Error| {
            matches!(
                e,
                Error::Dns(DnsError::RecordNotFound(_)) | Error::Dns(DnsError::InvalidRecordType)
            )
        };
        match tokio::time::timeout_at(deadline, self.inner.mx_lookup(domain, Some(&self.mx))).await
        {
            Ok(Ok(mx)) if !mx.rrset.is_empty() => return Some(true),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if not_found(&e) => {}
            _ => return None,
        }
        match tokio::time::timeout_at(deadline, self.inner.ipv4_lookup(domain, Some(&self.ipv4)))
            .await
        {
            Ok(Ok(a)) => Some(!a.rrset.is_empty()),
            Ok(Err(e)) if not_found(&e) => Some(false),
            _ => None,
        }
    }

    /// Is `ip` listed in the DNSBL `zone`? `None` on DNS trouble.
    pub async fn dnsbl_listed(&self, ip: IpAddr, zone: &str) -> Option<bool> {
        use mail_auth::{DnsError, Error};
        let name = match crate::identity::canonical_ip(ip) {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
            }
            IpAddr::V6(v6) => {
                let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
                let nibbles: Vec<String> = hex.chars().rev().map(|c| c.to_string()).collect();
                format!("{}.{zone}", nibbles.join("."))
            }
        };
        let fut = self.inner.ipv4_lookup(name.as_str(), Some(&self.ipv4));
        match tokio::time::timeout(self.timeout, fut).await {
            // RFC 5782 §2.1: listed entries answer 127.0.0.0/8.
            Ok(Ok(a)) => Some(a.rrset.iter().any(|ip| ip.octets()[0] == 127)),
            Ok(Err(Error::Dns(DnsError::RecordNotFound(_))))
            | Ok(Err(Error::Dns(DnsError::InvalidRecordType))) => Some(false),
            _ => None,
        }
    }

    /// SPF for MAIL FROM (or HELO for the null sender) and HELO.
    pub async fn check_spf(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
        host: &str,
    ) -> SpfState {
        let helo_domain = if helo.is_empty() { "unknown" } else { helo };
        let sender_domain = mail_from
            .map(|m| crate::identity::domain_of(m).to_string())
            .unwrap_or_else(|| helo_domain.to_string());
        let deadline = tokio::time::Instant::now() + self.timeout;
        let helo_fut = self
            .inner
            .verify_spf(self.params(SpfParameters::verify_ehlo(ip, helo_domain, host)));
        let helo_out = match tokio::time::timeout_at(deadline, helo_fut).await {
            Ok(o) => o,
            Err(_) => return SpfState::temperror(&sender_domain),
        };
        let mail_out = match mail_from {
            None => helo_out.clone(),
            Some(m) => {
                let fut = self
                    .inner
                    .verify_spf(self.params(SpfParameters::verify_mail_from(
                        ip,
                        helo_domain,
                        host,
                        m,
                    )));
                match tokio::time::timeout_at(deadline, fut).await {
                    Ok(o) => o,
                    Err(_) => {
                        SpfOutput::new(sender_domain.clone()).with_result(SpfResult::TempError)
                    }
                }
            }
        };
        SpfState {
            mail_from: mail_out,
            helo: helo_out,
            domain: sender_domain,
        }
    }

    /// DKIM, ARC and DMARC of a complete message, under one deadline, and
    /// the Authentication-Results header value.
    pub async fn verify(
        &self,
        raw: &[u8],
        spf: &SpfState,
        from_domain: Option<&str>,
        ip: IpAddr,
        authserv_id: &str,
    ) -> (AuthSummary, Option<String>) {
        let mut s = AuthSummary {
            source: "verified".into(),
            spf: spf_str(spf.mail_from.result()).into(),
            spf_domain: spf.domain.clone(),
            spf_helo: spf_str(spf.helo.result()).into(),
            ..AuthSummary::default()
        };
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            s.dmarc = "none".into();
            s.arc = "none".into();
            s.authenticated = Some(false);
            return (s, None);
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let dkim = match tokio::time::timeout_at(
            deadline,
            self.inner.verify_dkim(self.params(&msg)),
        )
        .await
        {
            Ok(d) => d,
            Err(_) => {
                s.temperror = true;
                Vec::new()
            }
        };
        for d in &dkim {
            s.dkim.push(DkimVerdict {
                domain: d
                    .signature()
                    .map(|sig| sig.d.to_ascii_lowercase())
                    .unwrap_or_default(),
                result: dkim_str(d.result()).into(),
            });
            s.temperror |= matches!(d.result(), DkimResult::TempError(_));
        }
        let arc = tokio::time::timeout_at(deadline, self.inner.verify_arc(self.params(&msg))).await;
        s.arc = match &arc {
            Ok(a) => dkim_str(a.result()).into(),
            Err(_) => "temperror".into(),
        };
        let dmarc_params = mail_auth::dmarc::verify::DmarcParameters {
            message: &msg,
            dkim_output: &dkim,
            dkim2_output: None,
            rfc5321_mail_from_domain: &spf.domain,
            spf_output: &spf.mail_from,
        };
        let dmarc =
            tokio::time::timeout_at(deadline, self.inner.verify_dmarc(self.params(dmarc_params)))
                .await;
        let mut ar = AuthenticationResults::new(authserv_id)
            .with_dkim_results(&dkim, from_domain.unwrap_or(""))
            .with_spf_ehlo_result(&spf.helo, ip, "")
            .with_spf_mailfrom_result(&spf.mail_from, ip, &spf.domain, "");
        if let Ok(a) = &arc {
            ar = ar.with_arc_result(a, ip);
        }
        let from_org = from_domain.map(org_domain);
        match &dmarc {
            Err(_) => {
                s.dmarc = "temperror".into();
                s.temperror = true;
            }
            Ok(out) => {
                ar = ar.with_dmarc_result(out);
                let (spf_r, dkim_r) = (out.spf_result(), out.dkim_result());
                let has_record = out.dmarc_record().is_some();
                s.dmarc =
                    if matches!(spf_r, DmarcResult::Pass) || matches!(dkim_r, DmarcResult::Pass) {
                        "pass"
                    } else if matches!(spf_r, DmarcResult::TempError(_))
                        || matches!(dkim_r, DmarcResult::TempError(_))
                    {
                        "temperror"
                    } else if has_record {
                        "fail"
                    } else {
                        dmarc_str(spf_r)
                    }
                    .into();
                if has_record {
                    s.dmarc_policy = match out.policy() {
                        Policy::Reject => "reject",
                        Policy::Quarantine => "quarantine",
                        _ => "none",
                    }
                    .into();
                }
            }
        }
        s.temperror |= s.dmarc == "temperror" || s.spf == "temperror";
        s.authenticated = decide(&s, from_org.as_deref());
        (s, Some(ar.to_string()))
    }
}

/// The authentication decision from a summary (verified here or parsed
/// from a trusted Authentication-Results).
pub fn decide(s: &AuthSummary, from_org: Option<&str>) -> Option<bool> {
    let Some(from_org) = from_org else {
        return Some(false);
    };
    match s.dmarc.as_str() {
        "pass" => return Some(true),
        "fail" => return Some(false),
        _ => {}
    }
    // No DMARC record: aligned SPF or DKIM (relaxed, RFC 7489 §3.1).
    let spf_aligned = s.spf == "pass" && org_domain(&s.spf_domain) == from_org;
    let dkim_aligned = s
        .dkim
        .iter()
        .any(|d| d.result == "pass" && org_domain(&d.domain) == from_org);
    if spf_aligned || dkim_aligned {
        Some(true)
    } else if s.temperror || s.dmarc == "temperror" {
        None
    } else {
        Some(false)
    }
}

/// The authserv-id of an Authentication-Results value (RFC 8601 §2.2).
pub fn authserv_id_of(value: &str) -> &str {
    let first = value.split(';').next().unwrap_or("").trim();
    first.split_whitespace().next().unwrap_or("")
}

/// Reads the results of a trusted upstream Authentication-Results value.
pub fn parse_authentication_results(value: &str, from_domain: Option<&str>) -> AuthSummary {
    let mut s = AuthSummary {
        source: format!("authserv:{}", authserv_id_of(value)),
        spf: "none".into(),
        spf_helo: "none".into(),
        dmarc: "none".into(),
        arc: "none".into(),
        ..AuthSummary::default()
    };
    // Comments in parentheses carry no results.
    let mut clean = String::with_capacity(value.len());
    let mut depth = 0u32;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    for part in clean.split(';').skip(1) {
        let mut words = part.split_whitespace();
        let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else {
            continue;
        };
        let result = result.to_ascii_lowercase();
        let props: Vec<(String, String)> = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.trim_matches('"').to_ascii_lowercase(),
                )
            })
            .collect();
        let prop = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match method.to_ascii_lowercase().as_str() {
            "spf" => {
                s.spf = result;
                if let Some(m) = prop("smtp.mailfrom") {
                    s.spf_domain = crate::identity::domain_of(&m).to_string();
                    if s.spf_domain.is_empty() {
                        s.spf_domain = m;
                    }
                } else if let Some(h) = prop("smtp.helo") {
                    s.spf_domain = h;
                }
            }
            "dkim" => {
                let domain = prop("header.d")
                    .or_else(|| {
                        prop("header.i").map(|i| i.rsplit('@').next().unwrap_or("").to_string())
                    })
                    .unwrap_or_default();
                s.dkim.push(DkimVerdict { domain, result });
            }
            "dmarc" => {
                s.dmarc = result;
                if let Some(p) = prop("policy.dmarc") {
                    s.dmarc_policy = p;
                }
            }
            "arc" => s.arc = result,
            _ => {}
        }
    }
    s.temperror = s.spf == "temperror"
        || s.dmarc == "temperror"
        || s.dkim.iter().any(|d| d.result == "temperror");
    s.authenticated = decide(&s, from_domain.map(org_domain).as_deref());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::dkim::DkimSigner;
    use mail_auth::dmarc::Dmarc;
    use mail_auth::spf::Spf;

    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in bytes.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    const IP: &str = "192.0.2.10";

    /// An authenticator whose resolver is a closed port: every answer must
    /// come from the pre-loaded caches.
    fn offline() -> Authenticator {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        drop(sock);
        let cfg = DnsConfig {
            servers: vec![format!("127.0.0.1:{port}")],
            timeout: Span(Duration::from_millis(500)),
            cache_size: 100,
        };
        Authenticator::new(&cfg).unwrap()
    }

    fn spf(a: &Authenticator, domain: &str, record: &str) {
        a.preload_txt(domain, Spf::parse(record.as_bytes()).unwrap());
    }

    async fn mail_spf(a: &Authenticator, from: &str) -> SpfState {
        a.check_spf(
            IP.parse().unwrap(),
            "mx.partner.example",
            Some(from),
            "mx.example.com",
        )
        .await
    }

    #[tokio::test]
    async fn spf_pass_fail_softfail_none_and_temperror() {
        let a = offline();
        spf(&a, "mx.partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
        spf(&a, "pass.example", "v=spf1 ip4:192.0.2.0/24 -all");
        spf(&a, "fail.example", "v=spf1 ip4:198.51.100.0/24 -all");
        spf(&a, "soft.example", "v=spf1 ip4:198.51.100.0/24 ~all");
        a.preload_txt_missing("none.example");
        let r = |s: SpfState| spf_str(s.mail_from.result());
        assert_eq!(r(mail_spf(&a, "a@pass.example").await), "pass");
        assert_eq!(r(mail_spf(&a, "a@fail.example").await), "fail");
        assert_eq!(r(mail_spf(&a, "a@soft.example").await), "softfail");
        assert_eq!(r(mail_spf(&a, "a@none.example").await), "none");
        // Nothing cached and a resolver that never answers: temperror
        // within the deadline.
        let start = std::time::Instant::now();
        assert_eq!(r(mail_spf(&a, "a@unknown.example").await), "temperror");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            spf_str(mail_spf(&a, "a@pass.example").await.helo.result()),
            "pass"
        );
    }

    #[tokio::test]
    async fn a_resolver_that_never_answers_costs_at_most_the_timeout() {
        // A UDP socket that swallows every query.
        let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let cfg = DnsConfig {
            servers: vec![black_hole.local_addr().unwrap().to_string()],
            timeout: Span(Duration::from_millis(400)),
            cache_size: 10,
        };
        let a = Authenticator::new(&cfg).unwrap();
        let start = std::time::Instant::now();
        let st = a
            .check_spf(IP.parse().unwrap(), "h.example", Some("x@y.example"), "mx")
            .await;
        let spf_time = start.elapsed();
        assert_eq!(spf_str(st.mail_from.result()), "temperror");
        let raw = signed_message("y.example", "sel", "x@y.example", None).0;
        let start = std::time::Instant::now();
        let (s, _) = a
            .verify(
                raw.as_bytes(),
                &st,
                Some("y.example"),
                IP.parse().unwrap(),
                "mx.example.com",
            )
            .await;
        let eom_time = start.elapsed();
        assert_eq!(s.authenticated, None, "{s:?}");
        let limit = Duration::from_millis(400 + 250);
        assert!(
            spf_time < limit && eom_time < limit,
            "spf {spf_time:?} eom {eom_time:?}"
        );
    }

    /// A message signed by a fresh Ed25519 key; returns it and the key's
    /// DNS record.
    fn signed_message(
        domain: &str,
        selector: &str,
        from: &str,
        extra: Option<&str>,
    ) -> (String, String) {
        let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
        let public = key.public_key();
        let body = format!(
            "From: Someone <{from}>\r\nTo: alice@example.com\r\nSubject: signed\r\nMessage-ID: <s1@{domain}>\r\n\r\nHello Alice.\r\n{}",
            extra.unwrap_or("")
        );
        let sig = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(["From", "To", "Subject", "Message-ID"])
            .sign(body.as_bytes())
            .unwrap();
        let record = format!("v=DKIM1; k=ed25519; p={}", base64(&public));
        (format!("{}{body}", sig.to_header()), record)
    }

    #[tokio::test]
    async fn dkim_verifies_and_an_altered_message_fails() {
        let a = offline();
        spf(&a, "mx.partner.example", "v=spf1 -all");
        spf(&a, "partner.example", "v=spf1 -all");
        a.preload_txt_missing("_dmarc.partner.example");
        a.preload_txt_missing("_dmarc.example");
        let (raw, record) = signed_message("partner.example", "s1", "carol@partner.example", None);
        a.preload_txt(
            "s1._domainkey.partner.example",
            DomainKey::parse(record.as_bytes()).unwrap(),
        );
        let st = mail_spf(&a, "carol@partner.example").await;
        let (s, header) = a
            .verify(
                raw.as_bytes(),
                &st,
                Some("partner.example"),
                IP.parse().unwrap(),
                "mx.example.com",
            )
            .await;
        assert_eq!(
            s.dkim,
            vec![DkimVerdict {
                domain: "partner.example".into(),
                result: "pass".into()
            }]
        );
        assert_eq!(s.authenticated, Some(true), "aligned DKIM without DMARC");
        let header = header.unwrap();
        assert!(header.starts_with("mx.example.com;"), "{header}");
        assert!(header.contains("dkim=pass"), "{header}");

        // Altered in transit: a signed header changed fails the signature;
        // a changed body fails the body hash (mail-auth reports that as
        // neutral, RFC 6376 §6.3 leaves it to the verifier).
        for (what, altered, expect) in [
            (
                "header",
                raw.replace("Subject: signed", "Subject: urgent invoice"),
                "fail",
            ),
            (
                "body",
                raw.replace("Hello Alice.", "Hello Alice, wire the money."),
                "neutral",
            ),
        ] {
            let (s, _) = a
                .verify(
                    altered.as_bytes(),
                    &st,
                    Some("partner.example"),
                    IP.parse().unwrap(),
                    "mx",
                )
                .await;
            assert_eq!(s.dkim[0].result, expect, "{what}");
            assert_eq!(s.authenticated, Some(false), "{what}");
        }
    }

    #[tokio::test]
    async fn dmarc_pass_by_spf_alignment_by_dkim_alignment_and_fail() {
        let a = offline();
        spf(&a, "mx.partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
        spf(&a, "partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
        spf(&a, "bounces.esp.example", "v=spf1 ip4:192.0.2.0/24 -all");
        a.preload_txt(
            "_dmarc.partner.example",
            Dmarc::parse(b"v=DMARC1; p=reject").unwrap(),
        );
        a.preload_txt_missing("_dmarc.example");
        a.preload_txt_missing("_dmarc.esp.example");
        a.preload_txt_missing("_dmarc.bounces.esp.example");
        let (raw, record) = signed_message("partner.example", "s1", "carol@partner.example", None);
        a.preload_txt(
            "s1._domainkey.partner.example",
            DomainKey::parse(record.as_bytes()).unwrap(),
        );
        let ip: IpAddr = IP.parse().unwrap();

        // SPF aligned (envelope at partner.example), signature broken.
        let broken = raw.replace("Hello Alice.", "Hello, changed.");
        let st = mail_spf(&a, "carol@partner.example").await;
        let (s, _) = a
            .verify(broken.as_bytes(), &st, Some("partner.example"), ip, "mx")
            .await;
        assert_eq!(
            (s.dmarc.as_str(), s.authenticated),
            ("pass", Some(true)),
            "{s:?}"
        );

        // DKIM aligned, SPF for another organisation (an ESP's bounce domain).
        let st = mail_spf(&a, "bounce-123@bounces.esp.example").await;
        assert_eq!(spf_str(st.mail_from.result()), "pass");
        let (s, _) = a
            .verify(raw.as_bytes(), &st, Some("partner.example"), ip, "mx")
            .await;
        assert_eq!(
            (s.dmarc.as_str(), s.authenticated),
            ("pass", Some(true)),
            "{s:?}"
        );

        // Neither aligned: fail, with the domain's policy.
        let (s, header) = a
            .verify(broken.as_bytes(), &st, Some("partner.example"), ip, "mx")
            .await;
        assert_eq!(s.dmarc, "fail", "{s:?}");
        assert_eq!(s.dmarc_policy, "reject");
        assert_eq!(s.authenticated, Some(false));
        assert!(s.dmarc_failed_with("reject"));
        assert!(header.unwrap().contains("dmarc=fail"));
    }

    #[tokio::test]
    async fn an_arc_sealed_message_verifies_and_a_broken_seal_fails() {
        use mail_auth::arc::ArcSealer;
        let a = offline();
        spf(&a, "mx.partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
        spf(&a, "partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
        a.preload_txt_missing("_dmarc.partner.example");
        a.preload_txt_missing("_dmarc.example");
        let (raw, record) = signed_message("partner.example", "s1", "carol@partner.example", None);
        a.preload_txt(
            "s1._domainkey.partner.example",
            DomainKey::parse(record.as_bytes()).unwrap(),
        );
        // A forwarder (list.example) seals the message with its own key.
        let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
        let arc_record = format!("v=DKIM1; k=ed25519; p={}", base64(&key.public_key()));
        a.preload_txt(
            "arc._domainkey.list.example",
            DomainKey::parse(arc_record.as_bytes()).unwrap(),
        );
        let msg = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
        let arc_out = a.inner.verify_arc(a.params(&msg)).await;
        let dkim_out = a.inner.verify_dkim(a.params(&msg)).await;
        let results = AuthenticationResults::new("mx.list.example")
            .with_dkim_results(&dkim_out, "partner.example");
        let set = ArcSealer::from_key(key)
            .domain("list.example")
            .selector("arc")
            .headers(["From", "To", "Subject", "DKIM-Signature"])
            .seal(&msg, &results, &arc_out)
            .unwrap();
        let sealed = format!("{}{raw}", set.to_header());
        let st = mail_spf(&a, "carol@partner.example").await;
        let (s, header) = a
            .verify(
                sealed.as_bytes(),
                &st,
                Some("partner.example"),
                IP.parse().unwrap(),
                "mx",
            )
            .await;
        assert_eq!(s.arc, "pass", "{s:?}");
        assert!(header.unwrap().contains("arc=pass"));
        // The seal's instance broken (a header it covers changed).
        let broken = sealed.replace("Subject: signed", "Subject: changed");
        let (s, _) = a
            .verify(
                broken.as_bytes(),
                &st,
                Some("partner.example"),
                IP.parse().unwrap(),
                "mx",
            )
            .await;
        assert_eq!(s.arc, "fail", "{s:?}");
    }

    #[tokio::test]
    async fn optional_dns_checks_read_mx_a_and_dnsbl_answers() {
        let a = offline();
        let far = Instant::now() + Duration::from_secs(3600);
        // mail.example has an MX; a.example only an A.
        a.mx.insert(
            "mail.example.".into(),
            RecordSet {
                rrset: vec![MX {
                    exchanges: vec!["mx.mail.example".into()].into_boxed_slice(),
                    preference: 10,
                }]
                .into(),
                dnssec_status: mail_auth::DnssecStatus::Indeterminate,
            },
            far,
        );
        a.mx.insert(
            "a.example.".into(),
            RecordSet {
                rrset: Vec::new().into(),
                dnssec_status: mail_auth::DnssecStatus::Indeterminate,
            },
            far,
        );
        a.preload_a("a.example", &["192.0.2.80".parse().unwrap()]);
        assert_eq!(a.domain_accepts_mail("mail.example").await, Some(true));
        assert_eq!(a.domain_accepts_mail("a.example").await, Some(true));
        // Nothing cached and no resolver: undecided, not "no MX".
        assert_eq!(a.domain_accepts_mail("unknown.example").await, None);
        // DNSBL: 10.2.0.192.zen.test listed (127.0.0.2).
        a.preload_a("10.2.0.192.zen.test", &["127.0.0.2".parse().unwrap()]);
        a.preload_a("11.2.0.192.zen.test", &["192.0.2.1".parse().unwrap()]);
        assert_eq!(
            a.dnsbl_listed("192.0.2.10".parse().unwrap(), "zen.test")
                .await,
            Some(true)
        );
        assert_eq!(
            a.dnsbl_listed("192.0.2.11".parse().unwrap(), "zen.test")
                .await,
            Some(false),
            "answers outside 127/8 are not listings (RFC 5782)"
        );
        assert_eq!(
            a.dnsbl_listed("192.0.2.12".parse().unwrap(), "zen.test")
                .await,
            None
        );
    }

    #[test]
    fn trusted_authentication_results_are_read() {
        let v = "mx.upstream.example; spf=pass (sender ok) smtp.mailfrom=carol@partner.example; dkim=pass header.d=partner.example header.s=s1; dmarc=pass (p=reject) header.from=partner.example";
        assert_eq!(authserv_id_of(v), "mx.upstream.example");
        let s = parse_authentication_results(v, Some("partner.example"));
        assert_eq!(s.source, "authserv:mx.upstream.example");
        assert_eq!(
            (s.spf.as_str(), s.spf_domain.as_str()),
            ("pass", "partner.example")
        );
        assert_eq!(s.dkim[0].domain, "partner.example");
        assert_eq!(s.authenticated, Some(true));
        let f = parse_authentication_results("mx.up; spf=softfail smtp.mailfrom=x@evil.example; dkim=none; dmarc=fail policy.dmarc=reject", Some("partner.example"));
        assert_eq!(f.authenticated, Some(false));
        assert!(f.dmarc_failed_with("reject"));
        let t = parse_authentication_results(
            "mx.up; spf=temperror smtp.mailfrom=x@partner.example",
            Some("partner.example"),
        );
        assert_eq!(t.authenticated, None);
        let aligned = parse_authentication_results(
            "mx.up; spf=pass smtp.mailfrom=b@mail.partner.example",
            Some("partner.example"),
        );
        assert_eq!(
            aligned.authenticated,
            Some(true),
            "relaxed alignment without DMARC"
        );
    }

    #[test]
    fn organisational_domains_use_the_public_suffix_list() {
        assert_eq!(org_domain("mail.partner.example.co.uk"), "example.co.uk");
        assert_eq!(org_domain("a.b.example.com"), "example.com");
        assert_eq!(org_domain("EXAMPLE.COM."), "example.com");
    }

    #[test]
    fn dns_cache_is_bounded() {
        let c: DnsCache<Box<str>, u32> = DnsCache::new(3);
        let t = Instant::now() + Duration::from_secs(60);
        for i in 0..10u32 {
            c.insert(format!("k{i}").into(), i, t + Duration::from_secs(i as u64));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("k9"), Some(9));
        assert_eq!(c.get("k0"), None);
    }
}
