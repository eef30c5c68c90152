//! Who may use the console, and the forms' CSRF tokens.
//!
//! - No `admin.token_file` (only allowed on a loopback bind): everyone who
//!   reaches the port is the administrator; forms still carry the daemon's
//!   CSRF token, so a web page elsewhere cannot post to the console through
//!   the administrator's browser.
//! - With a token: scripts send `Authorization: Bearer TOKEN`; browsers log
//!   in at `/login` with it and get a session cookie (`HttpOnly`,
//!   `SameSite=Strict`) whose forms carry that session's CSRF token. The
//!   token never appears in a URL.

use super::super::http::{bearer_matches, constant_time_eq};
use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;

pub const COOKIE: &str = "sra_console";
/// Logins kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// Who is asking, as the gate found out.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// What the forms of this viewer's pages must carry.
    pub csrf: String,
    /// Came with the bearer token (a script): no CSRF check on its posts.
    pub bearer: bool,
    /// A token is configured (the pages offer to log out).
    pub logged_in: bool,
}

struct Session {
    csrf: String,
    expires: u64,
}

pub struct Access {
    token: Option<String>,
    lifetime: u64,
    /// The CSRF token of a console without a token.
    open_csrf: String,
    sessions: Mutex<HashMap<String, Session>>,
}

/// `bytes` random bytes as hex, from the system's generator.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // The kernel's generator does not fail once the system has booted; a
    // failure would leave zeros, which no session would then share.
    if getrandom::getrandom(&mut b).is_err() {
        tracing::error!("console: the system's random generator failed");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Access {
    pub fn new(token: Option<String>, lifetime: u64) -> Access {
        Access {
            token,
            lifetime,
            open_csrf: random_hex(16),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn needs_login(&self) -> bool {
        self.token.is_some()
    }

    /// Who sent these headers at `now`, or `None` when they may not use
    /// the console.
    pub fn viewer(&self, headers: &HeaderMap, now: u64) -> Option<Viewer> {
        let Some(token) = &self.token else {
            return Some(Viewer {
                csrf: self.open_csrf.clone(),
                bearer: false,
                logged_in: false,
            });
        };
        if bearer_matches(headers, Some(token)) {
            return Some(Viewer {
                csrf: String::new(),
                bearer: true,
                logged_in: false,
            });
        }
        let id = cookie(headers, COOKIE)?;
        let mut g = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match g.get(id) {
            Some(s) if s.expires > now => Some(Viewer {
                csrf: s.csrf.clone(),
                bearer: false,
                logged_in: true,
            }),
            Some(_) => {
                g.remove(id);
                None
            }
            None => None,
        }
    }

    /// Checks a login; on success the new session's cookie value.
    pub fn login(&self, given: &str, now: u64) -> Option<String> {
        let token = self.token.as_ref()?;
        if !constant_time_eq(token.as_bytes(), given.trim().as_bytes()) {
            return None;
        }
        let id = random_hex(32);
        let mut g = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|_, s| s.expires > now);
        while g.len() >= MAX_SESSIONS {
            let oldest = g
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => g.remove(&k),
                None => break,
            };
        }
        g.insert(
            id.clone(),
            Session {
                csrf: random_hex(16),
                expires: now + self.lifetime,
            },
        );
        Some(id)
    }

    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            let mut g = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            g.remove(id);
        }
    }

    /// The `Set-Cookie` value of a session.
    pub fn set_cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            self.lifetime
        )
    }
}

impl Viewer {
    /// Whether a form's CSRF field is this viewer's.
    pub fn csrf_ok(&self, given: &str) -> bool {
        self.bearer || constant_time_eq(self.csrf.as_bytes(), given.as_bytes())
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn without_a_token_everyone_is_let_in_with_the_daemon_csrf() {
        let a = Access::new(None, 3600);
        let v = a.viewer(&HeaderMap::new(), 0).unwrap();
        assert_eq!(v.csrf.len(), 32);
        assert!(v.csrf_ok(&v.csrf.clone()));
        assert!(!v.csrf_ok(""));
        assert!(a.login("anything-at-all-long", 0).is_none());
    }

    #[test]
    fn a_token_needs_the_bearer_or_a_live_session() {
        let a = Access::new(Some("console-token-0123456789".into()), 100);
        assert!(a.viewer(&HeaderMap::new(), 0).is_none());
        let bearer = with(header::AUTHORIZATION, "Bearer console-token-0123456789");
        assert!(a.viewer(&bearer, 0).unwrap().csrf_ok(""));
        assert!(a.login("wrong-token-0123456789xx", 0).is_none());
        let id = a.login("console-token-0123456789\n", 0).unwrap();
        let c = with(header::COOKIE, &format!("x=1; {COOKIE}={id}"));
        let v = a.viewer(&c, 50).unwrap();
        assert!(v.logged_in && !v.csrf_ok("") && v.csrf_ok(&v.csrf.clone()));
        assert!(a.viewer(&c, 100).is_none(), "expired");
        let id = a.login("console-token-0123456789", 0).unwrap();
        let c = with(header::COOKIE, &format!("{COOKIE}={id}"));
        a.logout(&c);
        assert!(a.viewer(&c, 1).is_none(), "logged out");
        let forged = with(header::COOKIE, &format!("{COOKIE}=00"));
        assert!(a.viewer(&forged, 1).is_none());
    }
}
