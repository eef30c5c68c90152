//! The console's pictures, drawn on the server as inline SVG: they need no
//! script and no external asset, and they print.

use super::layout::{points, subject_href};
use crate::activity::Hour;
use maud::{html, Markup};

/// Classes in stacking order (bottom first).
pub const CLASSES: [&str; 7] = [
    "trusted",
    "neutral",
    "unrated",
    "suspicious",
    "malicious",
    "outbound",
    "none",
];

fn text_width(s: &str) -> f64 {
    s.chars().count() as f64 * 6.4
}

/// Contributions as horizontal bars either side of zero, largest first:
/// what pushed the score up and what pulled it down.
pub fn contributions(items: &[(String, f64)]) -> Markup {
    let label_w = items
        .iter()
        .map(|(n, _)| text_width(n))
        .fold(80.0, f64::max)
        .min(260.0);
    let half = 180.0;
    let max = items.iter().map(|(_, p)| p.abs()).fold(1.0, f64::max);
    let row = 20.0;
    let width = label_w + 2.0 * half + 60.0;
    let height = row * items.len() as f64 + 10.0;
    let zero = label_w + half;
    html! {
        svg.contributions role="img" width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) }
            aria-label="Contributions to the score" {
            line x1=(zero) x2=(zero) y1="0" y2=(height) stroke="#999" {}
            @for (i, (name, p)) in items.iter().enumerate() {
                @let y = 5.0 + row * i as f64;
                @let w = half * p.abs() / max;
                @let x = if *p >= 0.0 { zero } else { zero - w };
                text x=(label_w - 6.0) y=(y + 13.0) text-anchor="end" { (name) }
                rect class={ "bar " (if *p >= 0.0 { "trusted" } else { "malicious" }) }
                    x=(x) y=(y + 2.0) width=(w.max(1.0)) height=(row - 6.0) {
                    title { (name) " " (points(*p)) }
                }
                text x=(if *p >= 0.0 { zero + w + 4.0 } else { zero + 4.0 }) y=(y + 13.0) { (points(*p)) }
            }
        }
    }
}

/// Actions in stacking order (bottom first), each with the colour of the
/// class that usually leads to it; held back by monitor mode (`would_`)
/// drawn in the same colour, lighter.
pub const ACTIONS: [(&str, &str); 12] = [
    ("accept", "trusted"),
    ("tag", "neutral"),
    ("would_tag", "neutral would"),
    ("quarantine", "suspicious"),
    ("would_quarantine", "suspicious would"),
    ("tempfail", "unrated"),
    ("would_tempfail", "unrated would"),
    ("reject", "malicious"),
    ("would_reject", "malicious would"),
    ("discard", "none"),
    ("would_discard", "none would"),
    ("would_accept", "trusted would"),
];

/// What an hourly chart stacks: the hour's counts by class or by action.
#[derive(Clone, Copy)]
pub enum By {
    Class,
    Action,
}

impl By {
    /// (series, its CSS classes) in stacking order.
    pub fn series(self) -> Vec<(&'static str, &'static str)> {
        match self {
            By::Class => CLASSES.iter().map(|c| (*c, *c)).collect(),
            By::Action => ACTIONS.to_vec(),
        }
    }

    fn counts(self, h: &Hour) -> &std::collections::BTreeMap<String, u64> {
        match self {
            By::Class => &h.by_class,
            By::Action => &h.by_action,
        }
    }
}

/// Verdicts per hour, stacked by class or by action.
pub fn hourly(hours: &[Hour], by: By) -> Markup {
    let max = hours.iter().map(Hour::total).max().unwrap_or(0).max(1) as f64;
    let (w, h, left, bottom) = (760.0, 180.0, 40.0, 20.0);
    let bw = (w - left) / hours.len().max(1) as f64;
    let label = match by {
        By::Class => "Verdicts per hour by class",
        By::Action => "Verdicts per hour by action",
    };
    html! {
        svg.hourly role="img" width=(w) height=(h + bottom) viewBox={ "0 0 " (w) " " (h + bottom) }
            aria-label=(label) {
            text x="0" y="10" { (max as u64) }
            text x="0" y=(h) { "0" }
            line x1=(left) x2=(w) y1=(h) y2=(h) stroke="#999" {}
            @for (i, hour) in hours.iter().enumerate() {
                @let x = left + bw * i as f64;
                @let stack = stack(hour, by, h, max);
                @for (name, css, y, height, n) in stack {
                    rect class={ "bar " (css) } x=(x + 1.0) y=(y) width=((bw - 2.0).max(1.0)) height=(height) {
                        title { (crate::vocab::rfc3339(hour.start).get(..13).unwrap_or("")) "h: " (n) " " (name) }
                    }
                }
                @if i % 6 == 0 {
                    text x=(x) y=(h + 14.0) { (crate::vocab::rfc3339(hour.start).get(11..13).unwrap_or("")) "h" }
                }
            }
        }
    }
}

/// (series, CSS classes, y, height, count) of one hour's stacked bars.
fn stack(
    hour: &Hour,
    by: By,
    h: f64,
    max: f64,
) -> Vec<(&'static str, &'static str, f64, f64, u64)> {
    let mut y = h;
    let mut out = Vec::new();
    let counts = by.counts(hour);
    for (name, css) in by.series() {
        let n = counts.get(name).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let height = (h - 12.0) * n as f64 / max;
        y -= height;
        out.push((name, css, y, height, n));
    }
    out
}

/// A score over time (0–100), one dot per verdict in its class's colour.
pub fn score_history(series: &[(u64, f64, String)]) -> Markup {
    let (w, h, pad) = (560.0, 120.0, 8.0);
    let (t0, t1) = match (series.first(), series.last()) {
        (Some(a), Some(b)) => (a.0, b.0.max(a.0 + 1)),
        _ => (0, 1),
    };
    let x = |t: u64| pad + (w - 2.0 * pad) * (t - t0) as f64 / (t1 - t0) as f64;
    let y = |s: f64| pad + (h - 2.0 * pad) * (100.0 - s.clamp(0.0, 100.0)) / 100.0;
    let path: Vec<String> = series
        .iter()
        .map(|(t, s, _)| format!("{:.1},{:.1}", x(*t), y(*s)))
        .collect();
    html! {
        svg.history role="img" width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) }
            aria-label="Score over time" {
            line x1=(pad) x2=(w - pad) y1=(y(50.0)) y2=(y(50.0)) stroke="#ddd" {}
            polyline points=(path.join(" ")) fill="none" stroke="#888" {}
            @for (t, s, class) in series {
                circle class={ "bar " (class) } cx=(x(*t)) cy=(y(*s)) r="3.5" {
                    title { (crate::vocab::rfc3339(*t)) ": " (s) " " (class) }
                }
            }
        }
    }
}

/// A correspondent in a relationship picture: its key and the messages
/// each way (`to`: towards the subject, `from`: from the subject).
pub struct Tie {
    pub key: String,
    pub to_subject: u64,
    pub from_subject: u64,
}

/// The subject in the middle, the enterprise's people on the left (arrows
/// for mail each way, with counts) and the MTAs on the right.
pub fn relationships(subject: &str, people: &[Tie], mtas: &[Tie]) -> Markup {
    let rows = people.len().max(mtas.len()).max(1) as f64;
    let (w, row) = (820.0, 34.0);
    let h = rows * row + 20.0;
    let (lx, cx, rx) = (190.0, 410.0, 630.0);
    // The subject's box: wide enough for its name, within the columns.
    let half = (text_width(subject) / 2.0 + 12.0).clamp(50.0, 150.0);
    let cy = h / 2.0;
    let y = |i: usize, n: usize| {
        let n = n.max(1) as f64;
        h / 2.0 - (n - 1.0) * row / 2.0 + row * i as f64
    };
    html! {
        svg.relationships role="img" width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) }
            aria-label="Who the sender writes to, who writes back, and its MTAs" {
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse" {
                    path d="M0,0 L10,5 L0,10 z" fill="#666" {}
                }
            }
            @for (i, p) in people.iter().enumerate() {
                @let py = y(i, people.len());
                @if p.from_subject > 0 {
                    line x1=(cx - half) y1=(cy - 5.0) x2=(lx + 8.0) y2=(py - 5.0) stroke="#c62828" marker-end="url(#arrow)" {}
                }
                @if p.to_subject > 0 {
                    line x1=(lx + 8.0) y1=(py + 5.0) x2=(cx - half) y2=(cy + 5.0) stroke="#2e7d32" marker-end="url(#arrow)" {}
                }
                circle cx=(lx) cy=(py) r="6" class="bar outbound" {}
                a href=(subject_href(&p.key)) {
                    text x=(lx - 10.0) y=(py + 4.0) text-anchor="end" { (p.key) }
                }
                text x=((lx + cx - half) / 2.0) y=(py + (cy - py) / 2.0 - 4.0) text-anchor="middle" class="muted" {
                    (p.from_subject) " in · " (p.to_subject) " out"
                }
            }
            @for (i, m) in mtas.iter().enumerate() {
                @let my = y(i, mtas.len());
                line x1=(rx - 8.0) y1=(my) x2=(cx + half) y2=(cy) stroke="#1565c0" marker-end="url(#arrow)" {}
                circle cx=(rx) cy=(my) r="6" class="bar neutral" {}
                a href=(subject_href(&m.key)) {
                    text x=(rx + 10.0) y=(my + 4.0) { (m.key) " (" (m.to_subject) ")" }
                }
            }
            rect x=(cx - half) y=(cy - 14.0) width=(2.0 * half) height="28" rx="6" fill="#1d2433" {}
            text x=(cx) y=(cy + 4.0) text-anchor="middle" fill="#fff" class="center" { (subject) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contribution_bars_point_the_right_way() {
        let svg = contributions(&[("replies_sent".into(), 12.0), ("not_opened".into(), -6.0)])
            .into_string();
        assert!(svg.contains("replies_sent") && svg.contains("+12.0") && svg.contains("-6.0"));
        assert!(svg.contains("bar trusted") && svg.contains("bar malicious"));
    }

    #[test]
    fn hours_stack_in_class_order() {
        let mut h = Hour::default();
        h.by_class.insert("malicious".into(), 1);
        h.by_class.insert("trusted".into(), 3);
        let s = stack(&h, By::Class, 100.0, 4.0);
        assert_eq!(s[0].0, "trusted");
        assert_eq!(s[1].0, "malicious");
        assert!(s[1].2 < s[0].2, "malicious sits on top");
        h.by_action.insert("would_reject".into(), 1);
        let s = stack(&h, By::Action, 100.0, 4.0);
        assert_eq!((s[0].0, s[0].1), ("would_reject", "malicious would"));
    }
}
