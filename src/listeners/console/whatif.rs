//! `/whatif`: the daemon's journal re-rated under a candidate — the
//! running configuration with the TOML typed on the page laid over it —
//! the same report as `sra-milter whatif`.

use super::access::Viewer;
use super::layout::{badge, page, problem, respond, subject_href};
use super::Console;
use crate::journal;
use crate::pipeline::whatif::{Report, WhatIf};
use crate::store::run_blocking;
use crate::vocab::now;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

/// The periods offered: (label, seconds).
const PERIODS: [(&str, u64); 3] = [
    ("1 day", 86400),
    ("7 days", 7 * 86400),
    ("30 days", 30 * 86400),
];

const EXAMPLE: &str = "[policy.eom.sender]\nneutral = \"quarantine\"\n";

fn form(v: &Viewer, candidate: &str, since: u64) -> Markup {
    html! {
        form method="post" action="/whatif" {
            input type="hidden" name="csrf" value=(v.csrf);
            label { "Candidate: TOML laid over the running configuration (only the keys you name change)"
                textarea name="candidate" rows="8" cols="80" spellcheck="false" placeholder=(EXAMPLE) { (candidate) }
            }
            p { label { "Verdicts of the last"
                select name="since" {
                    @for (l, s) in PERIODS { option value=(s) selected[s == since] { (l) } }
                }
            } }
            button type="submit" { "Re-rate" }
        }
    }
}

pub async fn page_get(Extension(v): Extension<Viewer>) -> Response {
    let body = html! {
        h1 { "What if" }
        p.muted { "Re-rates the verdicts in the daemon's journal under a candidate configuration, beside the running one. Nothing changes until you edit the configuration file and reload. "
            "The same report: " code { "sra-milter whatif -c CANDIDATE.toml" } "." }
        div.panel { (form(&v, "", 7 * 86400)) }
    };
    respond(StatusCode::OK, page("What if", "/whatif", Some(&v), body))
}

#[derive(Deserialize)]
pub struct Candidate {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    candidate: String,
    #[serde(default)]
    since: u64,
}

pub async fn page_post(
    State(c): State<Arc<Console>>,
    Extension(v): Extension<Viewer>,
    Form(f): Form<Candidate>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&v),
            "The form is stale or came from another site; reload the page and try again.",
        );
    }
    let current = c.shared.config();
    let candidate = match current.overlay(&f.candidate) {
        Ok(cfg) => cfg,
        Err(e) => {
            let body = html! {
                h1 { "What if" }
                p.error { (e.to_string()) }
                div.panel { (form(&v, &f.candidate, f.since)) }
            };
            return respond(
                StatusCode::BAD_REQUEST,
                page("What if", "/whatif", Some(&v), body),
            );
        }
    };
    let since = now().saturating_sub(f.since.clamp(3600, 366 * 86400));
    let dir = journal::dir(&current.state_dir);
    let cur = current.clone();
    let report = run_blocking(move || {
        let mut w = WhatIf::new(&cur, &candidate);
        let unreadable = match journal::each_since(&dir, since, &mut |v| w.add(&v)) {
            Ok(n) => n,
            // No journal yet (a fresh daemon, or admin.journal_keep = 0).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(crate::store::StoreError::Io(e.to_string())),
        };
        let mut r = w.finish();
        r.unreadable += unreadable;
        Ok(r)
    })
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&v),
                &format!("the journal: {e}"),
            )
        }
    };
    let body = html! {
        h1 { "What if" }
        div.panel { (form(&v, &f.candidate, f.since)) }
        (report_view(&report))
    };
    respond(StatusCode::OK, page("What if", "/whatif", Some(&v), body))
}

fn counts(title: &str, m: &std::collections::BTreeMap<String, u64>) -> Markup {
    html! {
        @if !m.is_empty() {
            h2 { (title) }
            div.panel { table {
                tbody { @for (k, n) in m { tr { td { (k) } td.num { (n) } } } }
            } }
        }
    }
}

fn report_view(r: &Report) -> Markup {
    html! {
        div.cards {
            div.card { div.n #whatif-records { (r.records) } div.l { "verdict records" } }
            div.card { div.n #whatif-reproduced { (r.reproduced) } div.l { "reproduced by the running config" } }
            div.card { div.n #whatif-changed { (r.changed) } div.l { "would change" } }
            div.card { div.n { (r.inexact) } div.l { "not exactly re-rated" } }
        }
        @for w in &r.warnings { p.notice { (w) } }
        @if r.unreadable > 0 { p.notice { (r.unreadable) " journal lines unreadable" } }
        h2 { "Actions" }
        div.panel { table {
            thead { tr { th { "action" } th.num { "running" } th.num { "candidate" } } }
            tbody { @for (a, (n, c)) in &r.totals { tr { td { (a) } td.num { (n) } td.num { (c) } } } }
        } }
        (counts("Changed actions", &r.actions))
        (counts("Decided at (candidate)", &r.stages))
        (counts("Sender classes", &r.sender_classes))
        (counts("MTA classes", &r.mta_classes))
        @for (k, list) in &r.examples {
            h2 { "Examples: " (k) }
            div.panel { table {
                thead { tr { th { "time" } th { "queue id" } th { "sender" } th { "class now" } th { "candidate" } } }
                tbody { @for e in list { tr {
                    td { (e.time) }
                    td { (e.queue_id) }
                    td { @if let Some(s) = &e.sender { a href=(subject_href(s)) { (s) } } }
                    td { (badge(&e.now.sender.map_or("none".into(), |c| c.to_string()))) }
                    td { (badge(&e.candidate.sender.map_or("none".into(), |c| c.to_string()))) }
                } } }
            } }
        }
    }
}
