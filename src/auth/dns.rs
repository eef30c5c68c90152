//! DNS for authentication: the resolver (mail-auth's, over hickory) with
//! sra-milter's own bounded caches, pre-loadable for tests, and the optional
//! MX/A and DNSBL look-ups.

use crate::config::DnsConfig;
use crate::vocab::canonical_ip;
use mail_auth::common::resolver::ToFqdn;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{MessageAuthenticator, Parameters, RecordSet, ResolverCache, Txt, MX};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

pub struct Authenticator {
    pub(super) inner: MessageAuthenticator,
    pub txt: DnsCache<Box<str>, Txt>,
    pub mx: DnsCache<Box<str>, RecordSet<MX>>,
    pub ipv4: DnsCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: DnsCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: DnsCache<IpAddr, RecordSet<Box<str>>>,
    pub(super) timeout: Duration,
    /// Domain age (`[anomalies] rdap_url`).
    pub rdap: super::Rdap,
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

/// Bounds of how long "no such name" or "no such record" is believed.
const NEGATIVE_TTL: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(3600));

impl Authenticator {
    pub fn new(cfg: &DnsConfig) -> Result<Authenticator, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = cfg.timeout.0;
        opts.attempts = 1;
        // Answers are kept in sra-milter's own bounded caches (below); the
        // resolver's cache, of the same size, keeps what those cannot: that
        // a name does not exist or has no record of the type (RFC 2308),
        // for the zone's negative TTL within NEGATIVE_TTL (an answer
        // without SOA: its minimum). Without it, every message of a domain
        // without DMARC, SPF or a reverse name would ask the network again.
        opts.cache_size = cfg.cache_size as u64;
        opts.negative_min_ttl = Some(NEGATIVE_TTL.0);
        opts.negative_max_ttl = Some(NEGATIVE_TTL.1);
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
            rdap: super::Rdap::default(),
        })
    }

    pub(super) fn params<P>(&self, p: P) -> Params<'_, P> {
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
        let name = match canonical_ip(ip) {
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
}
