//! `sra-milter store copy --from SPEC --to SPEC`: a site's history from one
//! store into an empty other, verified by counts. SPEC is `rocksdb:PATH`
//! or `redis://HOST:PORT` (`--to-cluster` / `--from-cluster` for a Redis
//! Cluster seed node); Redis credentials and timeouts come from the
//! configuration's `[store.redis]`, the key prefix from `--prefix` or
//! there.

use super::{load, Common};
use sra_milter::config::{read_identity_secret, Config, Overrides};
use sra_milter::store::{
    copy, ensure_empty, with_identity_key, IdentityKey, RedisStore, ReputationStore, RocksStore,
    StoreError, META_IDENTITY,
};
use std::process::ExitCode;
use std::sync::Arc;

/// Where a copy reads or writes.
pub struct Spec {
    pub text: String,
    pub cluster: bool,
}

fn open(
    spec: &Spec,
    cfg: &Config,
    prefix: Option<&str>,
) -> Result<Arc<dyn ReputationStore>, StoreError> {
    let ttl = cfg.message_index_ttl.0.as_secs();
    if let Some(path) = spec.text.strip_prefix("rocksdb:") {
        return Ok(Arc::new(RocksStore::open(std::path::Path::new(path), ttl)?));
    }
    if spec.text.starts_with("redis://") || spec.text.starts_with("rediss://") {
        let mut r = cfg.store.redis.clone();
        r.nodes = spec.text.split(',').map(str::to_string).collect();
        r.cluster = spec.cluster;
        if let Some(p) = prefix {
            r.prefix = p.to_string();
        }
        r.validate().map_err(StoreError::Io)?;
        return Ok(Arc::new(RedisStore::open(&r, ttl)?));
    }
    Err(StoreError::Io(format!(
        "{:?}: use rocksdb:PATH, redis://HOST:PORT or rediss://HOST:PORT",
        spec.text
    )))
}

/// The destination behind `--identity-key`, refused when the source was
/// hashed under another key.
fn keyed_destination(
    from: &dyn ReputationStore,
    to: Arc<dyn ReputationStore>,
    key_file: &std::path::Path,
) -> Result<Arc<dyn ReputationStore>, String> {
    let key = IdentityKey::new(&read_identity_secret(key_file)?)?;
    match from.meta(META_IDENTITY).map_err(|e| e.to_string())? {
        Some(f) if f != key.fingerprint() => {
            return Err(format!(
                "the source is hashed under another identity key ({f}, not {}): a keyed hash cannot be hashed again under a new key",
                key.fingerprint()
            ))
        }
        _ => {}
    }
    // Before the key marks it: a full destination is named as such.
    ensure_empty(to.as_ref()).map_err(|e| e.to_string())?;
    with_identity_key(to, Some(key), true).map_err(|e| e.to_string())
}

pub fn copy_main(
    common: &Common,
    from: Spec,
    to: Spec,
    prefix: Option<String>,
    identity_key: Option<std::path::PathBuf>,
) -> ExitCode {
    let cfg = match load(common, Overrides::default()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opened = open(&from, &cfg, prefix.as_deref())
        .map_err(|e| format!("source {}: {e}", from.text))
        .and_then(|a| {
            open(&to, &cfg, prefix.as_deref())
                .map(|b| (a, b))
                .map_err(|e| format!("destination {}: {e}", to.text))
        });
    let opened = opened.and_then(|(a, b)| match &identity_key {
        Some(file) => keyed_destination(a.as_ref(), b, file)
            .map(|b| (a, b))
            .map_err(|e| format!("--identity-key {}: {e}", file.display())),
        None => Ok((a, b)),
    });
    let (a, b) = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sra-milter: {e}");
            return ExitCode::FAILURE;
        }
    };
    match copy(a.as_ref(), b.as_ref()) {
        Ok(report) => {
            for (kind, n) in &report.copied {
                let found = report.found.get(kind).copied().unwrap_or(0);
                println!("{kind}: {n} copied, {found} in the destination");
            }
            if report.verified() {
                println!("verified: the destination holds what the source held");
                ExitCode::SUCCESS
            } else {
                eprintln!("sra-milter: the counts differ: the copy is incomplete");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sra-milter: copy failed: {e}");
            ExitCode::FAILURE
        }
    }
}
