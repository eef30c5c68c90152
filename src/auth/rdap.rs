//! Optional domain age (`[anomalies] rdap_url`, off by default): when a
//! From domain's organisational domain was registered, from its RDAP
//! record (RFC 9083: the `registration` event), fetched over HTTP or HTTPS
//! with hyper and rustls (the system's roots) and cached.
//!
//! A lookup runs under `rdap_timeout`; a slow, failing or unparsable
//! answer is "unknown" (no anomaly), cached for an hour so that a dead
//! server costs one timeout per domain per hour; an answer is cached for a
//! week. The cache holds at most `MAX_CACHED` domains.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const MAX_CACHED: usize = 10_000;
const HIT_TTL: Duration = Duration::from_secs(7 * 86_400);
const MISS_TTL: Duration = Duration::from_secs(3_600);
/// An RDAP answer larger than this is not one.
const MAX_BODY: usize = 256 * 1024;

/// Registration dates by domain, fetched on demand.
#[derive(Default)]
pub struct Rdap {
    cache: Mutex<HashMap<String, (Instant, Option<u64>)>>,
    /// The TLS client, built at the first https lookup (the system's roots
    /// are read then, not at every start with RDAP off).
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

/// A TLS client with the ring provider and the system's roots.
fn tls_client() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Rdap {
    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<u64>)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When `domain` was registered (Unix seconds), from `base` + domain;
    /// `None` when the server does not say within `timeout`.
    pub async fn registered(&self, base: &str, domain: &str, timeout: Duration) -> Option<u64> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        // The domain comes from a From header: only a host name (letters,
        // digits, hyphens, dots; IDNs in their A-label form) goes into the
        // URL's path.
        if !is_ldh(&domain) {
            return None;
        }
        if let Some((at, v)) = self.cache().get(&domain) {
            let ttl = if v.is_some() { HIT_TTL } else { MISS_TTL };
            if at.elapsed() < ttl {
                return *v;
            }
        }
        let url = format!("{base}{domain}");
        let tls = || self.tls.get_or_init(tls_client).clone();
        let found = match tokio::time::timeout(timeout, fetch(&url, tls)).await {
            Ok(Ok(body)) => registration(&body),
            Ok(Err(e)) => {
                tracing::debug!("rdap {url}: {e}");
                None
            }
            Err(_) => {
                tracing::debug!("rdap {url}: no answer within {timeout:?}");
                None
            }
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(domain, (Instant::now(), found));
        found
    }
}

/// A host name of letters, digits and hyphens in dot-separated labels.
fn is_ldh(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The `registration` event's date of an RDAP domain object.
pub fn registration(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["events"]
        .as_array()?
        .iter()
        .find(|e| e["eventAction"].as_str() == Some("registration"))
        .and_then(|e| e["eventDate"].as_str())
        .and_then(crate::vocab::parse_rfc3339)
}

/// GET `url` (http or https), the body of a 200 answer.
async fn fetch(
    url: &str,
    tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
) -> Result<Bytes, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("rdap_url must be http:// or https://".into()),
    };
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, host.as_str())
        .header(hyper::header::ACCEPT, "application/rdap+json")
        .header(hyper::header::USER_AGENT, "sra-milter")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if https {
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls()?)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<T>(io: T, req: hyper::Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    let out = match resp {
        Ok(r) if r.status() == hyper::StatusCode::OK => Limited::new(r.into_body(), MAX_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e),
    };
    driver.abort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_names_go_into_the_url() {
        assert!(is_ldh("young.example"));
        assert!(is_ldh("xn--exmple-4nf.com"));
        for bad in [
            "",
            "a..b",
            "x.com/../admin",
            "x.com?q=1",
            "exämple.com",
            "a b.com",
        ] {
            assert!(!is_ldh(bad), "{bad}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Refused before any lookup: a lookup's answer, even a failure,
        // would be cached.
        let r = Rdap::default();
        let got = rt.block_on(r.registered(
            "http://127.0.0.1:9/domain/",
            "x.com/../admin",
            Duration::from_secs(5),
        ));
        assert_eq!(got, None);
        assert!(r.cache().is_empty());
    }

    #[test]
    fn the_registration_event_is_read() {
        let body = br#"{"objectClassName":"domain","ldhName":"example.com","events":[
            {"eventAction":"last changed","eventDate":"2024-08-14T07:01:34Z"},
            {"eventAction":"registration","eventDate":"1995-08-14T04:00:00Z"}]}"#;
        assert_eq!(registration(body), Some(808_372_800));
        assert_eq!(registration(br#"{"events":[]}"#), None);
        assert_eq!(registration(b"not json"), None);
        assert_eq!(
            registration(br#"{"events":[{"eventAction":"registration","eventDate":"soon"}]}"#),
            None
        );
    }
}
