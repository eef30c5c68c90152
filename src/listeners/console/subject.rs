//! The pages of one sender, domain or MTA (its rating, factors,
//! relationships and history), the search that leads there, and the
//! overrides, set and removed with the same rules as `sra-milter override`.

use super::super::control::{execute, ControlRequest};
use super::access::Viewer;
use super::chart::{self, Tie};
use super::layout::{badge, enc, page, points, problem, respond, see_other, subject_href, when};
use super::pages::verdict_table;
use super::Console;
use crate::activity::Seen;
use crate::pipeline::explain::{explain_with, Explained, Subject};
use crate::store::run_blocking;
use crate::vocab::{clean_address, domain_of, now, Class, Target};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// People and MTAs drawn in a relationship picture, most mail first.
const TIES: usize = 12;

#[derive(Debug, Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
}

/// `/search?q=`: an address, an IP address or a domain, to its page.
pub async fn search(Extension(v): Extension<Viewer>, Query(s): Query<Search>) -> Response {
    let q = s.q.trim();
    if q.is_empty() {
        return see_other("/");
    }
    let ip = q.split('/').next().unwrap_or(q);
    if ip.parse::<std::net::IpAddr>().is_ok() {
        return see_other(&format!("/mta?key={}", enc(ip)));
    }
    if q.contains('@') {
        return match clean_address(q) {
            Some(a) => see_other(&format!("/sender?key={}", enc(&a))),
            None => problem(
                StatusCode::BAD_REQUEST,
                Some(&v),
                &format!("{q:?} is not an email address"),
            ),
        };
    }
    match Target::domain(q) {
        Ok(_) => see_other(&format!("/domain?key={}", enc(&q.to_ascii_lowercase()))),
        Err(e) => problem(StatusCode::BAD_REQUEST, Some(&v), &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct Key {
    key: String,
}

pub async fn sender(
    c: State<Arc<Console>>,
    v: Extension<Viewer>,
    Query(k): Query<Key>,
) -> Response {
    show(c, v, Subject::Sender(k.key)).await
}

pub async fn domain(
    c: State<Arc<Console>>,
    v: Extension<Viewer>,
    Query(k): Query<Key>,
) -> Response {
    show(c, v, Subject::Domain(k.key)).await
}

pub async fn mta(
    c: State<Arc<Console>>,
    Extension(v): Extension<Viewer>,
    Query(k): Query<Key>,
) -> Response {
    match k.key.trim().parse() {
        Ok(ip) => show(State(c.0), Extension(v), Subject::Mta(ip)).await,
        Err(_) => problem(
            StatusCode::BAD_REQUEST,
            Some(&v),
            &format!("{:?} is not an IP address", k.key),
        ),
    }
}

async fn show(
    State(c): State<Arc<Console>>,
    Extension(v): Extension<Viewer>,
    subject: Subject,
) -> Response {
    let cfg = c.shared.config();
    let engine = c.shared.engine.clone();
    let (cfg2, t) = (cfg.clone(), now());
    let target = match &subject {
        Subject::Sender(a) => Target::sender(a),
        Subject::Domain(d) => Target::domain(d),
        Subject::Mta(ip) => Target::mta(&ip.to_string()),
    };
    let explained = run_blocking(move || Ok(explain_with(&engine, &cfg2, &subject, t))).await;
    let e = match explained {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return problem(StatusCode::BAD_REQUEST, Some(&v), &e.to_string()),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, Some(&v), &e.to_string()),
    };
    let key = e.rating.key.clone();
    let mine = |s: &Seen| match e.rating.subject {
        crate::reputation::Subject::Sender => s.sender() == Some(key.as_str()),
        crate::reputation::Subject::Domain => s.sender().is_some_and(|a| domain_of(a) == key),
        crate::reputation::Subject::Mta => s.mta() == Some(key.as_str()),
    };
    let seen = c.shared.activity.recent(usize::MAX, |s| {
        mine(s) || (s.direction == "outbound" && s.recipients().iter().any(|r| r == &key))
    });
    let inbound: Vec<Arc<Seen>> = seen.iter().filter(|s| mine(s)).cloned().collect();
    let title = format!("{:?} {key}", e.rating.subject).to_lowercase();
    let body = html! {
        h1 { (title) " " (badge(&e.rating.class.to_string())) " " (format!("{:.1}", e.rating.score)) }
        (facts(&e))
        h2 { "What the score is made of" }
        div.panel {
            (chart::contributions(&e.rating.contributions()))
            (factor_table(&e))
        }
        @if e.rating.subject == crate::reputation::Subject::Sender {
            h2 { "Relationships" }
            div.panel {
                (chart::relationships(&key, &people(&seen, &key, &c.shared.config().enterprise_domains), &mta_ties(&e)))
                p.muted { "People: the enterprise's mail with this sender among the verdicts kept since the daemon started (green: to it, red: from it). MTAs: every message the store counted." }
            }
        }
        h2 { "Score over time" }
        div.panel {
            @let mut series: Vec<(u64, f64, String)> = inbound.iter().filter_map(|s| Some((s.time, s.score()?, s.class.clone()))).collect();
            @if e.rating.subject == crate::reputation::Subject::Sender && series.len() > 1 {
                ({ series.reverse(); chart::score_history(&series) })
            } @else {
                p.muted { "Fewer than two of its verdicts are kept here." }
            }
        }
        h2 { "Override" }
        div.panel { (override_box(&v, target.ok(), &e)) }
        h2 { "Recent verdicts" }
        div.panel { (verdict_table(&inbound.iter().take(50).cloned().collect::<Vec<_>>())) }
    };
    respond(StatusCode::OK, page(&title, "", Some(&v), body))
}

fn facts(e: &Explained) -> Markup {
    let r = &e.rating;
    html! {
        div.panel { dl.facts {
            dt { "first seen" } dd { (when(e.first_seen)) }
            dt { "last seen" } dd { (when(e.last_seen)) }
            dt { "messages of history" } dd { (r.history) }
            dt { "the enterprise took part" } dd { (if r.bidirectional { "yes (it wrote or replied)" } else { "no" }) }
            @if !e.label.is_empty() { dt { "HELO" } dd { (e.label) } }
            @if let Some(b) = &r.backed_by { dt { "backed by" } dd { a href=(subject_href(b)) { (b) } } }
            @if let Some(d) = &e.domain {
                dt { "domain" } dd { a href=(subject_href(&d.key)) { (d.key) } " " (badge(&d.class.to_string())) " " (format!("{:.1}", d.score)) }
            }
            @if let Some(why) = &r.untrusted_because { dt { "not trusted because" } dd { (why) } }
        } }
    }
}

fn factor_table(e: &Explained) -> Markup {
    html! {
        table {
            thead { tr { th { "factor" } th.num { "value" } th.num { "points" } } }
            tbody {
                @for f in &e.rating.factors {
                    tr {
                        td { (f.name) }
                        td.num { (f.value.map_or("no data".into(), |x| format!("{x:.2}"))) }
                        td.num { (points(f.contribution)) }
                    }
                }
                @for x in &e.rating.extra {
                    tr { td { (x.name) } td.num {} td.num { (points(x.points)) } }
                }
            }
        }
    }
}

/// The enterprise's people in the kept verdicts with `key`: (person,
/// messages to `key`, messages from `key`).
fn people(seen: &[Arc<Seen>], key: &str, enterprise: &[String]) -> Vec<Tie> {
    let ours = |a: &str| {
        enterprise
            .iter()
            .any(|d| domain_of(a).eq_ignore_ascii_case(d))
    };
    let mut m: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in seen {
        if s.direction == "outbound" {
            if let Some(from) = s.record.envelope_from.as_deref() {
                m.entry(from.to_string()).or_default().0 += 1;
            }
        } else if s.sender() == Some(key) {
            for r in s.recipients().iter().filter(|r| ours(r)) {
                m.entry(r.clone()).or_default().1 += 1;
            }
        }
    }
    let mut v: Vec<Tie> = m
        .into_iter()
        .map(|(k, (to, from))| Tie {
            key: k,
            to_subject: to,
            from_subject: from,
        })
        .collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.to_subject + b.from_subject));
    v.truncate(TIES);
    v
}

fn mta_ties(e: &Explained) -> Vec<Tie> {
    e.mtas
        .iter()
        .filter(|(k, _, _)| !k.starts_with("net:"))
        .take(TIES)
        .map(|(k, n, _)| Tie {
            key: k.clone(),
            to_subject: *n,
            from_subject: 0,
        })
        .collect()
}

/// The target's value as the override form takes it.
fn target_value(t: &Target) -> String {
    match t {
        Target::Sender(a) => a.clone(),
        Target::Domain(d) => d.clone(),
        Target::Mta(n) => n.to_string(),
    }
}

fn class_select() -> Markup {
    html! {
        label { "class"
            select name="class" {
                @for c in [Class::Trusted, Class::Neutral, Class::Suspicious, Class::Malicious] {
                    option value=(c.to_string()) { (c.to_string()) }
                }
            }
        }
    }
}

fn override_box(v: &Viewer, target: Option<Target>, e: &Explained) -> Markup {
    html! {
        @match &e.rating.override_ {
            Some(o) => {
                p { "Fixed to " (badge(&o.class.to_string())) " by " (o.source) " since " (when(o.time)) ": " (o.reason) }
                @if o.source == "store" {
                    form.inline method="post" action="/overrides/remove" {
                        input type="hidden" name="csrf" value=(v.csrf);
                        input type="hidden" name="target" value=(target_value(&o.target));
                        button.danger type="submit" { "Remove the override" }
                    }
                } @else {
                    p.muted { "Set in the configuration ([lists]); change it there." }
                }
            }
            None => @if let Some(t) = target {
                form.filters method="post" action="/overrides" {
                    input type="hidden" name="csrf" value=(v.csrf);
                    input type="hidden" name="target" value=(target_value(&t));
                    (class_select())
                    label { "reason" input type="text" name="reason" required; }
                    button type="submit" { "Set override" }
                }
            },
        }
    }
}

pub async fn overrides(State(c): State<Arc<Console>>, Extension(v): Extension<Viewer>) -> Response {
    let table = c.shared.engine.overrides();
    let body = html! {
        h1 { "Overrides" }
        p.muted { "An override fixes a class whatever the history says. These are the same as "
            code { "sra-milter override" } " and " code { "[lists]" } "." }
        div.panel {
            form.filters method="post" action="/overrides" {
                input type="hidden" name="csrf" value=(v.csrf);
                label { "address, domain, IP or network" input type="text" name="target" required; }
                (class_select())
                label { "reason" input type="text" name="reason" required; }
                button type="submit" { "Set override" }
            }
        }
        div.panel {
            @if table.entries().is_empty() { p.muted { "No overrides." } } @else {
                table {
                    thead { tr { th { "target" } th { "class" } th { "reason" } th { "set" } th { "by" } th {} } }
                    tbody { @for o in table.entries() { tr {
                        td { a href=(subject_href(&target_value(&o.target))) { (o.target) } }
                        td { (badge(&o.class.to_string())) }
                        td { (o.reason) }
                        td { (when(o.time)) }
                        td { (o.source) }
                        td { @if o.source == "store" {
                            form.inline method="post" action="/overrides/remove" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                input type="hidden" name="target" value=(target_value(&o.target));
                                button.danger type="submit" { "Remove" }
                            }
                        } }
                    } } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page("Overrides", "/overrides", Some(&v), body),
    )
}

#[derive(Debug, Deserialize)]
pub struct OverrideForm {
    #[serde(default)]
    csrf: String,
    target: String,
    #[serde(default)]
    class: Option<Class>,
    #[serde(default)]
    reason: String,
}

/// `POST /overrides` (set) and `POST /overrides/remove`.
async fn change(c: Arc<Console>, v: Viewer, f: OverrideForm, remove: bool) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&v),
            "The form is stale or came from another site; reload the page and try again.",
        );
    }
    let target = match Target::parse_list_entry(f.target.trim()) {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::BAD_REQUEST, Some(&v), &e),
    };
    let req = match (remove, f.class) {
        (true, _) => ControlRequest::RemoveOverride {
            target: target.clone(),
        },
        (false, Some(class)) => ControlRequest::SetOverride {
            target: target.clone(),
            class,
            reason: if f.reason.trim().is_empty() {
                "console".into()
            } else {
                f.reason.trim().to_string()
            },
        },
        (false, None) => return problem(StatusCode::BAD_REQUEST, Some(&v), "choose a class"),
    };
    let shared = c.shared.clone();
    let resp = run_blocking(move || Ok(execute(&shared.config(), &shared.engine, req))).await;
    match resp {
        Ok(r) if r.ok => {
            tracing::info!("console: {}", r.message);
            see_other(&subject_href(&target_value(&target)))
        }
        Ok(r) => problem(StatusCode::BAD_REQUEST, Some(&v), &r.message),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, Some(&v), &e.to_string()),
    }
}

pub async fn set_override(
    State(c): State<Arc<Console>>,
    Extension(v): Extension<Viewer>,
    Form(f): Form<OverrideForm>,
) -> Response {
    change(c, v, f, false).await
}

pub async fn remove_override(
    State(c): State<Arc<Console>>,
    Extension(v): Extension<Viewer>,
    Form(f): Form<OverrideForm>,
) -> Response {
    change(c, v, f, true).await
}
