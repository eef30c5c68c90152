//! The operator's console at `/` of the `[admin] listen` address: pages
//! served by the daemon, their stylesheet embedded in the binary, no
//! script needed.
//!
//! - `/` overview, `/verdicts` (filters; `/verdict?n=` explains one),
//!   `/movers`, `/sender`, `/domain`, `/mta` (`?key=`), `/search?q=`,
//!   `/overrides` (set and remove with the same rules as
//!   `sra-milter override`), `/whatif` (the journal re-rated under a
//!   candidate, as `sra-milter whatif`).
//! - Access ([`access`]): without `admin.token_file` (loopback only,
//!   enforced at start) the pages are open; with it, a bearer header or a
//!   login session. Every form carries a CSRF token.
//!
//! The pages read the store on the blocking pool like any other reader and
//! the recent verdicts from `activity` under one short lock, so a page
//! costs the mail flow nothing it would notice.

pub mod access;
mod chart;
mod layout;
mod pages;
mod subject;
mod whatif;

use crate::shared::Shared;
use crate::vocab::now;
use access::{Access, Viewer};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use layout::{page, respond, see_other};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Largest form the console reads.
pub const MAX_FORM: usize = 16 * 1024;
/// A wrong login waits this long before its answer.
const LOGIN_PENALTY: Duration = Duration::from_secs(1);

/// What the console's handlers share.
pub struct Console {
    pub shared: Arc<Shared>,
    pub access: Access,
}

/// The console's routes; `protected` are the other admin routes that need
/// the same access (metrics).
pub fn router(shared: Arc<Shared>, protected: Router) -> Router {
    let cfg = shared.config();
    let token = match cfg.admin.token() {
        Ok(t) => t,
        Err(e) => {
            // Validation read it at start; a file gone since locks the
            // console rather than opening it.
            tracing::error!("console: {e}; the console refuses every request");
            Some(access::random_hex(32))
        }
    };
    let console = Arc::new(Console {
        shared,
        access: Access::new(token, cfg.admin.session_lifetime.0.as_secs()),
    });
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/verdicts", get(pages::verdicts))
        .route("/verdict", get(pages::verdict))
        .route("/movers", get(pages::movers))
        .route("/search", get(subject::search))
        .route("/sender", get(subject::sender))
        .route("/domain", get(subject::domain))
        .route("/mta", get(subject::mta))
        .route(
            "/overrides",
            get(subject::overrides).post(subject::set_override),
        )
        .route("/overrides/remove", post(subject::remove_override))
        .route("/whatif", get(whatif::page_get).post(whatif::page_post))
        .route("/logout", post(logout))
        .with_state(console.clone())
        .merge(protected)
        .layer(middleware::from_fn_with_state(console.clone(), gate));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/static/console.css", get(css))
        .with_state(console)
        .merge(pages)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
}

/// Lets a request through with its [`Viewer`], or answers it: a browser is
/// sent to the login page, anything else gets 401.
async fn gate(State(c): State<Arc<Console>>, mut req: Request, next: Next) -> Response {
    match c.access.viewer(req.headers(), now()) {
        Some(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        None if wants_html(req.headers()) && req.method() == Method::GET => see_other("/login"),
        None => super::http::unauthorized(
            "the console needs its token: Authorization: Bearer, or log in at /login",
        ),
    }
}

fn wants_html(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

async fn css() -> Response {
    let mut r = layout::CSS.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

fn login_form(failed: bool) -> maud::Markup {
    page(
        "Log in",
        "/login",
        None,
        html! {
            div.login.panel {
                h1 { "Log in" }
                @if failed { p.error { "That is not the console's token." } }
                form method="post" action="/login" {
                    label { "Token (admin.token_file)"
                        input type="password" name="token" autocomplete="current-password" required autofocus;
                    }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

async fn login_page(State(c): State<Arc<Console>>) -> Response {
    if !c.access.needs_login() {
        return see_other("/");
    }
    respond(StatusCode::OK, login_form(false))
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    token: String,
}

async fn login(State(c): State<Arc<Console>>, Form(f): Form<Login>) -> Response {
    if !c.access.needs_login() {
        return see_other("/");
    }
    match c.access.login(&f.token, now()) {
        Some(id) => {
            tracing::info!("console: login");
            let mut r = see_other("/");
            if let Ok(v) = HeaderValue::from_str(&c.access.set_cookie(&id)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        None => {
            tracing::warn!("console: a login with a wrong token");
            tokio::time::sleep(LOGIN_PENALTY).await;
            respond(StatusCode::UNAUTHORIZED, login_form(true))
        }
    }
}

#[derive(Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(c): State<Arc<Console>>,
    axum::Extension(v): axum::Extension<Viewer>,
    headers: HeaderMap,
    Form(f): Form<Csrf>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return layout::problem(
            StatusCode::FORBIDDEN,
            Some(&v),
            "The form is stale; reload the page.",
        );
    }
    c.access.logout(&headers);
    let mut r = see_other(if c.access.needs_login() {
        "/login"
    } else {
        "/"
    });
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sra_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}
