//! `[store] identity_key_file`: the store keeps addresses and IP addresses
//! as keyed hashes (HMAC-SHA-256 under a site's secret), on either backend,
//! so that a shared Redis holds no correspondent's address in clear.
//!
//! [`KeyedStore`] sits in front of a backend and rewrites what crosses it:
//!
//! - an address becomes `~HEX@DOMAIN` (128 bits of the HMAC of the whole
//!   address; the domain stays readable, so every rule that looks at a
//!   sender's domain works unchanged, and the domain's own record is kept
//!   in clear as before);
//! - an MTA key (an address or an IPv6 /64) becomes `~HEX`, a network key
//!   `net:~HEX`;
//! - the keys of sender and sender×MTA records, the message index's
//!   author, MTA, network and recipients, display-name owners, and sender
//!   overrides.
//!
//! Look-ups hash the query, so `explain` and `override` take addresses as
//! ever. Hashing is idempotent (a value already in the hashed form passes
//! unchanged), so what the pipeline reads back from the store and writes
//! again (a replied-to message's author) stays one key. An outside sender
//! that writes from an address of that form only keeps its own address
//! unhashed: reaching another's record would take guessing a 128-bit HMAC.
//!
//! What stays in clear: domains, display names, Message-IDs, network
//! overrides (a network cannot be matched by its hash), and the 64-bit
//! unkeyed hashes inside the distinct-count sketches (they can confirm a
//! guessed member, never name one). docs/design.md says the same.
//!
//! The store remembers which key wrote it (`identity_key` in its meta, a
//! fingerprint, not the key): a store is never opened with another key, or
//! with none, or with one while it holds addresses in clear, since either
//! would split every history in two. `sra-milter store copy
//! --identity-key FILE` converts a store.

use super::{
    IndexEntry, Item, Kind, Loaded, NameEntry, Override, Record, ReputationStore, StoreError,
    StoreFuture, Update, Want,
};
use crate::vocab::Target;
use ring::hmac;
use std::borrow::Cow;
use std::sync::Arc;

/// The meta key of the fingerprint of the identity key that wrote a store.
pub const META_IDENTITY: &str = "identity_key";

use crate::config::MIN_IDENTITY_KEY as MIN_KEY;

/// A site's identity key.
#[derive(Clone)]
pub struct IdentityKey {
    key: hmac::Key,
    fingerprint: String,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityKey({})", self.fingerprint)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `~` and 32 lower-case hex digits: the hashed form of one identity.
fn is_tag(s: &str) -> bool {
    s.len() == 33
        && s.starts_with('~')
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl IdentityKey {
    /// The key of `[store] identity_key_file`, when one is set.
    pub fn from_config(cfg: &crate::config::StoreConfig) -> Result<Option<IdentityKey>, String> {
        cfg.identity_secret()?
            .map(|s| IdentityKey::new(&s))
            .transpose()
    }

    pub fn new(secret: &[u8]) -> Result<IdentityKey, String> {
        if secret.len() < MIN_KEY {
            return Err(format!(
                "the identity key is {} bytes; it needs at least {MIN_KEY} (e.g. `head -c 32 /dev/urandom | base64`)",
                secret.len()
            ));
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let fingerprint =
            hex(&hmac::sign(&key, b"sra-milter identity key fingerprint").as_ref()[..8]);
        Ok(IdentityKey { key, fingerprint })
    }

    /// A short public name of the key (not the key): what the store
    /// remembers, and what an error shows.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn tag(&self, s: &str) -> String {
        format!(
            "~{}",
            hex(&hmac::sign(&self.key, s.as_bytes()).as_ref()[..16])
        )
    }

    /// The stored form of an address: `~HEX@DOMAIN`.
    pub fn address<'a>(&self, a: &'a str) -> Cow<'a, str> {
        match a.rsplit_once('@') {
            Some((local, _)) if is_tag(local) => Cow::Borrowed(a),
            Some((_, domain)) => Cow::Owned(format!("{}@{domain}", self.tag(a))),
            None if a.is_empty() || is_tag(a) => Cow::Borrowed(a),
            None => Cow::Owned(self.tag(a)),
        }
    }

    /// The stored form of an MTA key (`~HEX`) or a network key
    /// (`net:~HEX`).
    pub fn mta<'a>(&self, m: &'a str) -> Cow<'a, str> {
        match m.strip_prefix("net:") {
            Some(n) if is_tag(n) => Cow::Borrowed(m),
            Some(n) => Cow::Owned(format!("net:{}", self.tag(n))),
            None if m.is_empty() || is_tag(m) => Cow::Borrowed(m),
            None => Cow::Owned(self.tag(m)),
        }
    }

    /// The stored form of a record key of `kind`.
    pub fn record_key<'a>(&self, kind: Kind, key: &'a str) -> Cow<'a, str> {
        match kind {
            Kind::Sender => self.address(key),
            Kind::Mta => self.mta(key),
            Kind::Domain => Cow::Borrowed(key),
            Kind::Pair => match key.split_once('\0') {
                Some((s, m)) => Cow::Owned(super::pair_key(&self.address(s), &self.mta(m))),
                None => self.address(key),
            },
        }
    }

    /// The stored form of a read.
    fn want(&self, w: Want) -> Want {
        match w {
            Want::Record(kind, key) => {
                let key = self.record_key(kind, &key).into_owned();
                Want::Record(kind, key)
            }
            other => other,
        }
    }

    fn entry(&self, e: &IndexEntry) -> IndexEntry {
        IndexEntry {
            sender: self.address(&e.sender).into_owned(),
            mta: e.mta.as_deref().map(|m| self.mta(m).into_owned()),
            net: e.net.as_deref().map(|n| self.mta(n).into_owned()),
            recipients: e
                .recipients
                .iter()
                .map(|r| self.address(r).into_owned())
                .collect(),
            ..e.clone()
        }
    }

    fn target(&self, t: &Target) -> Target {
        match t {
            Target::Sender(a) => Target::Sender(self.address(a).into_owned()),
            other => other.clone(),
        }
    }

    fn update(&self, u: &Update) -> Update {
        Update {
            records: u
                .records
                .iter()
                .map(|(k, key, r)| (*k, self.record_key(*k, key).into_owned(), r.clone()))
                .collect(),
            messages: u
                .messages
                .iter()
                .map(|(id, e)| (id.clone(), self.entry(e)))
                .collect(),
            names: u
                .names
                .iter()
                .map(|(n, e)| {
                    let address = self.address(&e.address).into_owned();
                    (
                        n.clone(),
                        NameEntry {
                            address,
                            ..e.clone()
                        },
                    )
                })
                .collect(),
            ..u.clone()
        }
    }
}

/// A backend whose addresses and IP addresses are kept as keyed hashes.
pub struct KeyedStore {
    inner: Arc<dyn ReputationStore>,
    key: IdentityKey,
}

impl KeyedStore {
    pub fn new(inner: Arc<dyn ReputationStore>, key: IdentityKey) -> KeyedStore {
        KeyedStore { inner, key }
    }
}

/// Whether a store holds nothing at all.
pub fn is_empty(store: &dyn ReputationStore) -> Result<bool, StoreError> {
    let mut empty = true;
    let probe = store.export(&mut |_| {
        empty = false;
        Err(StoreError::Io("stop".into()))
    });
    if empty {
        probe?;
    }
    Ok(empty)
}

/// The store as `[store] identity_key_file` asks: `inner` itself when no
/// key is set, else behind a [`KeyedStore`]. Refuses a store written with
/// another key, a hashed store without its key, and a clear store that
/// already holds history when a key is set. A writable empty store is
/// marked with the key's fingerprint.
pub fn with_identity_key(
    inner: Arc<dyn ReputationStore>,
    key: Option<IdentityKey>,
    writable: bool,
) -> Result<Arc<dyn ReputationStore>, StoreError> {
    let found = inner.meta(META_IDENTITY)?;
    let Some(key) = key else {
        return match found {
            Some(f) => Err(StoreError::Identity(format!(
                "this store keeps addresses and IP addresses as keyed hashes (key {f}): set [store] identity_key_file to the file of that key"
            ))),
            None => Ok(inner),
        };
    };
    match found {
        Some(f) if f == key.fingerprint() => {}
        Some(f) => {
            return Err(StoreError::Identity(format!(
                "this store was written with another identity key (key {f}; [store] identity_key_file holds key {}): use the file of key {f}",
                key.fingerprint()
            )))
        }
        None if !is_empty(inner.as_ref())? => {
            return Err(StoreError::Identity(
                "this store keeps addresses and IP addresses in clear; hashing them from now on would split every history: convert it with `sra-milter store copy --identity-key FILE` into an empty store, or unset [store] identity_key_file".into(),
            ))
        }
        None if writable => inner.set_meta(META_IDENTITY, key.fingerprint())?,
        None => {}
    }
    Ok(Arc::new(KeyedStore::new(inner, key)))
}

impl ReputationStore for KeyedStore {
    fn record(&self, kind: Kind, key: &str) -> Result<Record, StoreError> {
        self.inner.record(kind, &self.key.record_key(kind, key))
    }

    fn message(&self, id: &str) -> Result<Option<IndexEntry>, StoreError> {
        self.inner.message(id)
    }

    fn apply(&self, update: &Update) -> Result<(), StoreError> {
        self.inner.apply(&self.key.update(update))
    }

    fn load(&self, wants: Vec<Want>) -> StoreFuture<'_, Vec<Loaded>> {
        let wants = wants.into_iter().map(|w| self.key.want(w)).collect();
        self.inner.load(wants)
    }

    fn peek(&self, want: &Want) -> Option<Loaded> {
        self.inner.peek(&self.key.want(want.clone()))
    }

    fn apply_async(&self, update: Update) -> StoreFuture<'_, ()> {
        self.inner.apply_async(self.key.update(&update))
    }

    fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        self.inner.overrides()
    }

    fn set_override(&self, o: &Override) -> Result<(), StoreError> {
        self.inner.set_override(&Override {
            target: self.key.target(&o.target),
            ..o.clone()
        })
    }

    fn remove_override(&self, target: &Target) -> Result<bool, StoreError> {
        self.inner.remove_override(&self.key.target(target))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    fn name(&self, normalized: &str) -> Result<Option<NameEntry>, StoreError> {
        self.inner.name(normalized)
    }

    fn engagement_due(
        &self,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64, String)>, StoreError> {
        self.inner.engagement_due(until, limit)
    }

    fn engagement_since(&self) -> Result<Option<u64>, StoreError> {
        self.inner.engagement_since()
    }

    fn pairs_of(&self, sender: &str, limit: usize) -> Result<Vec<(String, Record)>, StoreError> {
        self.inner.pairs_of(&self.key.address(sender), limit)
    }

    fn observe_time(&self, time: u64) {
        self.inner.observe_time(time)
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.inner.stats()
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &Record)) -> Result<(), StoreError> {
        self.inner.scan(kind, f)
    }

    fn is_embedded(&self) -> bool {
        self.inner.is_embedded()
    }

    fn export(&self, f: &mut dyn FnMut(Item) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.inner.export(f)
    }

    fn address_key<'a>(&self, addr: &'a str) -> Cow<'a, str> {
        self.key.address(addr)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.meta(key)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.set_meta(key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IdentityKey {
        IdentityKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn addresses_keep_their_domain_and_hash_once() {
        let k = key();
        let h = k.address("carol@partner.example").into_owned();
        assert!(h.starts_with('~') && h.ends_with("@partner.example"), "{h}");
        assert_eq!(h.len(), 33 + "@partner.example".len());
        assert_eq!(k.address(&h), h, "idempotent");
        assert_ne!(k.address("dave@partner.example"), h);
        let other = IdentityKey::new(b"another key, long enough").unwrap();
        assert_ne!(other.address("carol@partner.example"), h, "keyed");
        assert_ne!(other.fingerprint(), k.fingerprint());
    }

    #[test]
    fn mta_and_pair_keys_hash_each_part() {
        let k = key();
        let m = k.mta("192.0.2.1").into_owned();
        assert!(is_tag(&m), "{m}");
        let n = k.mta("net:192.0.2.0/24").into_owned();
        assert!(n.starts_with("net:~") && is_tag(&n[4..]), "{n}");
        assert_eq!(k.mta(&n), n);
        let p = k
            .record_key(Kind::Pair, "carol@partner.example\0net:192.0.2.0/24")
            .into_owned();
        assert_eq!(p, format!("{}\0{n}", k.address("carol@partner.example")));
        assert_eq!(k.record_key(Kind::Pair, &p), p);
        assert_eq!(
            k.record_key(Kind::Domain, "partner.example"),
            "partner.example"
        );
    }

    #[test]
    fn short_and_world_readable_keys_are_refused() {
        assert!(IdentityKey::new(b"short")
            .unwrap_err()
            .contains("at least 16"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "0123456789abcdef0123456789abcdef\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = crate::config::StoreConfig {
            identity_key_file: p.clone(),
            ..Default::default()
        };
        let e = IdentityKey::from_config(&cfg).unwrap_err();
        assert!(e.contains("every user may read it"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        // The trailing newline is not part of the key.
        let k = IdentityKey::from_config(&cfg).unwrap().unwrap();
        assert_eq!(k.fingerprint(), key().fingerprint());
        std::fs::write(&p, "0123456789\n").unwrap();
        let e = IdentityKey::from_config(&cfg).unwrap_err();
        assert!(e.contains("10 bytes"), "{e}");
        assert!(IdentityKey::from_config(&Default::default())
            .unwrap()
            .is_none());
    }
}
