//! The traffic pages: the overview, the recent verdicts (filterable, each
//! with its explanation) and the movers.

use super::access::Viewer;
use super::chart::{self, By, CLASSES};
use super::layout::{badge, enc, page, points, problem, respond, subject_href, when};
use super::Console;
use crate::activity::{Hour, Seen};
use crate::store::run_blocking;
use crate::verdict::decided_json;
use crate::vocab::now;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

/// Rows on the verdicts page.
const LIST_LIMIT: usize = 200;

fn sum(hours: &[Hour], f: impl Fn(&Hour) -> u64) -> u64 {
    hours.iter().map(f).sum()
}

fn legend(by: By, hours: &[Hour]) -> Markup {
    // Only the series these hours hold, so the key stays short.
    let present = |name: &str| {
        hours.iter().any(|h| match by {
            By::Class => h.by_class.contains_key(name),
            By::Action => h.by_action.contains_key(name),
        })
    };
    html! {
        p.legend {
            @for (name, css) in by.series() {
                @if present(name) { span { span class={ "swatch " (css) } {} (name) } }
            }
        }
    }
}

pub async fn overview(State(c): State<Arc<Console>>, Extension(v): Extension<Viewer>) -> Response {
    let t = now();
    let week = c
        .shared
        .activity
        .hours(t.saturating_sub(7 * 86400 - 3600), t);
    let day = &week[week.len().saturating_sub(24)..];
    let two_days = &week[week.len().saturating_sub(48)..];
    let s = c.shared.clone();
    let stats = run_blocking(move || Ok(s.engine.store().stats())).await;
    let cfg = c.shared.config();
    let (kept, oldest) = c.shared.activity.window();
    let held: Vec<Arc<Seen>> = c.shared.activity.recent(10, Seen::held_back);
    let moves = c.shared.activity.moves(t.saturating_sub(86400));
    // Action → (last 24 h, 7 days), most frequent over the week first.
    let mut by_action: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for h in &week {
        for (a, n) in &h.by_action {
            let row = by_action.entry(a.as_str()).or_default();
            row.1 += n;
            if h.start + 86400 > t {
                row.0 += n;
            }
        }
    }
    let mut actions: Vec<(&str, u64, u64)> =
        by_action.into_iter().map(|(a, (d, w))| (a, d, w)).collect();
    actions.sort_by_key(|a| std::cmp::Reverse(a.2));
    let body = html! {
        h1 { "Overview" }
        @if cfg.mode == crate::vocab::Mode::Monitor {
            p.notice { "Monitor-only mode: sra-milter decides and logs, but only accepts. "
                "The held-back actions below are what enforcing would have done." }
        }
        div.cards {
            div.card { div.n { (sum(day, Hour::total)) } div.l { "verdicts, last 24 h" } }
            div.card { div.n { (sum(day, |h| h.held_back)) } div.l { "held back by monitor mode, 24 h" } }
            div.card { div.n { (sum(day, |h| h.auth_failed)) } div.l { "authentication failures, 24 h" } }
            div.card { div.n { (moves.len()) } div.l { "class changes, 24 h" } }
            div.card { div.n { (c.shared.active_sessions()) } div.l { "open milter connections" } }
            div.card { div.n { (cfg.mode.to_string()) } div.l { "mode" } }
        }
        h2 { "Verdicts per hour by class, last 48 hours" }
        div.panel { (chart::hourly(two_days, By::Class)) (legend(By::Class, two_days)) }
        h2 { "Verdicts per hour by action, last 48 hours" }
        div.panel { (chart::hourly(two_days, By::Action)) (legend(By::Action, two_days)) }
        h2 { "Actions" }
        div.panel {
            table {
                thead { tr { th { "action" } th.num { "24 h" } th.num { "7 days" } } }
                tbody {
                    @for (a, d, w) in &actions {
                        tr {
                            td { a href={ "/verdicts?action=" (enc(a)) } { (a) } }
                            td.num { (d) } td.num { (w) }
                        }
                    }
                }
            }
            @if actions.is_empty() { p.muted { "No verdicts yet." } }
        }
        h2 { "What monitor mode held back" }
        div.panel { (verdict_table(&held)) }
        h2 { "Daemon and store" }
        div.panel {
            dl.facts {
                dt { "running since" } dd { (when(c.shared.activity.started())) " UTC" }
                dt { "verdicts kept here" } dd { (kept) " (since " (oldest.map_or("-".into(), when)) ")" }
                dt { "store backend" } dd { (format!("{:?}", cfg.store.backend).to_lowercase()) }
                @match &stats {
                    Ok(stats) => {
                        dt { "store" } dd.ok { "answering" }
                        @for (name, value) in stats {
                            dt { (name) } dd { (value) }
                        }
                    }
                    Err(e) => { dt { "store" } dd.bad { (e.to_string()) } }
                }
            }
        }
    };
    respond(StatusCode::OK, page("Overview", "/", Some(&v), body))
}

/// A table of verdicts, each linking to its explanation.
pub fn verdict_table(list: &[Arc<Seen>]) -> Markup {
    html! {
        @if list.is_empty() {
            p.muted { "None." }
        } @else {
            table {
                thead { tr {
                    th { "time (UTC)" } th { "sender" } th { "class" } th.num { "score" }
                    th { "MTA" } th { "action" } th { "anomalies" } th {}
                } }
                tbody {
                    @for s in list {
                        tr {
                            td { (when(s.time)) }
                            td {
                                @match s.sender() {
                                    Some(k) => a href=(subject_href(k)) { (k) },
                                    None => span.muted { "<>" },
                                }
                            }
                            td { (badge(&s.class)) }
                            td.num { (s.score().map_or(String::new(), |x| format!("{x:.1}"))) }
                            td { @if let Some(m) = s.mta() { a href=(subject_href(m)) { (m) } } }
                            td { (s.action()) }
                            td { (s.anomalies.join(", ")) }
                            td { a href={ "/verdict?n=" (s.n) } { "why" } }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    class: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    anomaly: String,
}

impl Filter {
    fn keeps(&self, s: &Seen) -> bool {
        (self.class.is_empty() || s.has_class(&self.class))
            && (self.action.is_empty() || s.action() == self.action)
            && (self.anomaly.is_empty() || s.anomalies.iter().any(|a| *a == self.anomaly))
    }
}

pub async fn verdicts(
    State(c): State<Arc<Console>>,
    Extension(v): Extension<Viewer>,
    Query(f): Query<Filter>,
) -> Response {
    let all = c.shared.activity.recent(usize::MAX, |_| true);
    let mut actions: Vec<&str> = all.iter().map(|s| s.action()).collect();
    actions.sort_unstable();
    actions.dedup();
    let mut anomalies: Vec<&str> = all
        .iter()
        .flat_map(|s| s.anomalies.iter().copied())
        .collect();
    anomalies.sort_unstable();
    anomalies.dedup();
    let shown: Vec<Arc<Seen>> = all
        .iter()
        .filter(|s| f.keeps(s))
        .take(LIST_LIMIT)
        .cloned()
        .collect();
    let select = |name: &str, options: &[&str], chosen: &str| {
        html! {
            label { (name)
                select name=(name) {
                    option value="" { "any" }
                    @for o in options { option value=(o) selected[*o == chosen] { (o) } }
                }
            }
        }
    };
    let body = html! {
        h1 { "Recent verdicts" }
        form.filters method="get" action="/verdicts" {
            (select("class", &CLASSES, &f.class))
            (select("action", &actions, &f.action))
            (select("anomaly", &anomalies, &f.anomaly))
            button type="submit" { "Filter" }
        }
        p.muted { "Newest first; at most " (LIST_LIMIT) " of the " (all.len()) " verdicts kept in memory." }
        div.panel { (verdict_table(&shown)) }
    };
    respond(
        StatusCode::OK,
        page("Verdicts", "/verdicts", Some(&v), body),
    )
}

#[derive(Debug, Deserialize)]
pub struct Number {
    n: u64,
}

pub async fn verdict(
    State(c): State<Arc<Console>>,
    Extension(v): Extension<Viewer>,
    Query(q): Query<Number>,
) -> Response {
    let Some(s) = c.shared.activity.get(q.n) else {
        return problem(
            StatusCode::NOT_FOUND,
            Some(&v),
            "That verdict is no longer kept (admin.recent bounds how many are).",
        );
    };
    let r = s.record_json();
    let text = |k: &str| r[k].as_str().unwrap_or("-").to_string();
    let contributions = |rating: &serde_json::Value| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = rating["contributions"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, p)| Some((k.clone(), p.as_f64()?)))
                    .filter(|(_, p)| *p != 0.0)
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        v
    };
    let auth = &r["auth"];
    let result = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let dkim: Vec<String> = auth["dkim"]
        .as_array()
        .map(|l| l.iter().map(|d| result(&d["result"])).collect())
        .unwrap_or_default();
    let body = html! {
        h1 { "Verdict " (s.n) ": " (s.action()) " " (badge(&s.class)) }
        div.panel {
            dl.facts {
                dt { "time" } dd { (text("time")) }
                dt { "queue id" } dd { (text("queue_id")) }
                dt { "message id" } dd { (text("message_id")) }
                dt { "direction" } dd { (s.direction) }
                dt { "stage" } dd { (text("stage")) }
                dt { "envelope sender" } dd { @if let Some(k) = s.sender() { a href=(subject_href(k)) { (k) } } }
                dt { "From" } dd { (text("header_from")) }
                dt { "recipients" } dd { (s.recipients().join(", ")) }
                dt { "client" } dd { (text("client_ip")) " (HELO " (text("helo")) ")" }
                dt { "authenticated" } dd { (r["authenticated"].as_bool().map_or("not decided".into(), |a| a.to_string())) }
                @if auth.is_object() {
                    dt { "SPF / DKIM / DMARC / ARC" }
                    dd { (result(&auth["spf"])) " / " (dkim.join(",")) " / " (result(&auth["dmarc"])) " (p=" (result(&auth["dmarc_policy"])) ") / " (result(&auth["arc"])) }
                }
                dt { "decided by" } dd { (decided_json(&r)) }
                dt { "monitor only" } dd { (if r["monitor"] == true { "yes" } else { "no" }) }
            }
        }
        @if let Some(list) = r["anomalies"].as_array().filter(|l| !l.is_empty()) {
            h2 { "Anomalies" }
            div.panel { table {
                thead { tr { th { "anomaly" } th.num { "points" } th { "detail" } } }
                tbody { @for a in list { tr {
                    td { (result(&a["name"])) }
                    td.num { (points(a["points"].as_f64().unwrap_or(0.0))) }
                    td { (result(&a["detail"])) }
                } } }
            } }
        }
        @for (who, rating) in [("Sender", &r["sender"]), ("MTA", &r["mta"])] {
            @if rating.is_object() {
                h2 { (who) " " a href=(subject_href(rating["key"].as_str().unwrap_or(""))) { (rating["key"].as_str().unwrap_or("")) }
                     " " (badge(rating["class"].as_str().unwrap_or("none"))) " " (rating["score"].as_f64().unwrap_or(0.0)) }
                div.panel { (chart::contributions(&contributions(rating))) }
            }
        }
    };
    respond(StatusCode::OK, page("Verdict", "/verdicts", Some(&v), body))
}

pub async fn movers(State(c): State<Arc<Console>>, Extension(v): Extension<Viewer>) -> Response {
    let t = now();
    let week = c.shared.activity.moves(t.saturating_sub(7 * 86400));
    let day_start = t.saturating_sub(86400);
    let table = |list: &[&crate::activity::Move]| {
        html! {
            @if list.is_empty() { p.muted { "No class changes." } } @else {
                table {
                    thead { tr { th { "time (UTC)" } th { "sender" } th { "from" } th { "to" } th {} } }
                    tbody { @for m in list { tr {
                        td { (when(m.time)) }
                        td { a href=(subject_href(&m.sender)) { (m.sender) } }
                        td { (badge(&m.from.to_string())) }
                        td { (badge(&m.to.to_string())) }
                        td { a href={ "/verdict?n=" (m.n) } { "why" } }
                    } } }
                }
            }
        }
    };
    let day: Vec<&crate::activity::Move> = week.iter().filter(|m| m.time >= day_start).collect();
    let older: Vec<&crate::activity::Move> = week.iter().filter(|m| m.time < day_start).collect();
    let body = html! {
        h1 { "Top movers" }
        p.muted { "Senders whose class changed between two of their messages, since the daemon started." }
        h2 { "Last day" }
        div.panel { (table(&day)) }
        h2 { "Earlier this week" }
        div.panel { (table(&older)) }
    };
    respond(StatusCode::OK, page("Movers", "/movers", Some(&v), body))
}
