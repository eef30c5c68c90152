//! Prometheus metrics (text exposition format 0.0.4), served at
//! `GET /metrics` on `[admin] listen`.
//!
//! - `sra_milter_verdicts_total{stage, class, action}`: decisions taken
//!   (`class` is the class that decided: the MTA's at connect, the
//!   sender's after);
//! - `sra_milter_monitor_would_total{stage, action}`: what monitor-only
//!   mode held back;
//! - `sra_milter_stage_seconds{stage}`: latency histogram per milter stage;
//! - `sra_milter_events_total{result}`: engagement events accepted,
//!   unknown, duplicate, and requests rejected (bad_request, unauthorized);
//! - `sra_milter_errors_total{kind}`: errors answered per `on_error`;
//! - `sra_milter_store_keys{family}`, `sra_milter_store_bytes{kind}`:
//!   RocksDB's estimates;
//! - `sra_milter_sessions_open`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

#[derive(Default)]
struct Inner {
    verdicts: BTreeMap<(String, String, String), u64>,
    would: BTreeMap<(String, String), u64>,
    stages: BTreeMap<String, Histogram>,
    events: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn verdict(&self, stage: &str, class: &str, action: &str, would: Option<&str>) {
        self.with(|m| {
            *m.verdicts
                .entry((stage.into(), class.into(), action.into()))
                .or_default() += 1;
            if let Some(w) = would {
                *m.would.entry((stage.into(), w.into())).or_default() += 1;
            }
        });
    }

    pub fn stage_latency(&self, stage: &str, d: Duration) {
        let s = d.as_secs_f64();
        self.with(|m| {
            let h = m.stages.entry(stage.into()).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += s;
            h.total += 1;
        });
    }

    pub fn events(&self, result: &str, n: u64) {
        if n > 0 {
            self.with(|m| *m.events.entry(result.into()).or_default() += n);
        }
    }

    pub fn error(&self, kind: &str) {
        self.with(|m| *m.errors.entry(kind.into()).or_default() += 1);
    }

    /// The exposition text; `store` holds (metric line suffix, value) pairs.
    pub fn render(&self, sessions: usize, store: &[(String, u64)]) -> String {
        let mut o = String::new();
        self.with(|m| {
            let _ = writeln!(o, "# HELP sra_milter_verdicts_total Decisions taken, by stage, deciding class and action.");
            let _ = writeln!(o, "# TYPE sra_milter_verdicts_total counter");
            for ((s, c, a), v) in &m.verdicts {
                let _ = writeln!(
                    o,
                    "sra_milter_verdicts_total{{stage=\"{}\",class=\"{}\",action=\"{}\"}} {v}",
                    esc(s),
                    esc(c),
                    esc(a)
                );
            }
            let _ = writeln!(o, "# HELP sra_milter_monitor_would_total Actions monitor-only mode held back.");
            let _ = writeln!(o, "# TYPE sra_milter_monitor_would_total counter");
            for ((s, a), v) in &m.would {
                let _ = writeln!(o, "sra_milter_monitor_would_total{{stage=\"{}\",action=\"{}\"}} {v}", esc(s), esc(a));
            }
            let _ = writeln!(o, "# HELP sra_milter_stage_seconds Time spent per milter stage.");
            let _ = writeln!(o, "# TYPE sra_milter_stage_seconds histogram");
            for (s, h) in &m.stages {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(o, "sra_milter_stage_seconds_bucket{{stage=\"{}\",le=\"{b}\"}} {}", esc(s), h.counts[i]);
                }
                let _ = writeln!(o, "sra_milter_stage_seconds_bucket{{stage=\"{}\",le=\"+Inf\"}} {}", esc(s), h.total);
                let _ = writeln!(o, "sra_milter_stage_seconds_sum{{stage=\"{}\"}} {}", esc(s), h.sum);
                let _ = writeln!(o, "sra_milter_stage_seconds_count{{stage=\"{}\"}} {}", esc(s), h.total);
            }
            let _ = writeln!(o, "# HELP sra_milter_events_total Engagement events and requests by result.");
            let _ = writeln!(o, "# TYPE sra_milter_events_total counter");
            for (r, v) in &m.events {
                let _ = writeln!(o, "sra_milter_events_total{{result=\"{}\"}} {v}", esc(r));
            }
            let _ = writeln!(o, "# HELP sra_milter_errors_total Errors answered per on_error, by kind.");
            let _ = writeln!(o, "# TYPE sra_milter_errors_total counter");
            for (k, v) in &m.errors {
                let _ = writeln!(o, "sra_milter_errors_total{{kind=\"{}\"}} {v}", esc(k));
            }
        });
        let _ = writeln!(
            o,
            "# HELP sra_milter_sessions_open Milter connections open."
        );
        let _ = writeln!(o, "# TYPE sra_milter_sessions_open gauge");
        let _ = writeln!(o, "sra_milter_sessions_open {sessions}");
        let _ = writeln!(
            o,
            "# HELP sra_milter_store_keys Estimated keys per store column family."
        );
        let _ = writeln!(o, "# TYPE sra_milter_store_keys gauge");
        for (name, v) in store.iter().filter(|(n, _)| n.starts_with("keys:")) {
            let _ = writeln!(
                o,
                "sra_milter_store_keys{{family=\"{}\"}} {v}",
                esc(&name[5..])
            );
        }
        let _ = writeln!(
            o,
            "# HELP sra_milter_store_bytes Store size: SST files on disk and memtables."
        );
        let _ = writeln!(o, "# TYPE sra_milter_store_bytes gauge");
        for (name, v) in store.iter().filter(|(n, _)| n.starts_with("bytes:")) {
            let _ = writeln!(
                o,
                "sra_milter_store_bytes{{kind=\"{}\"}} {v}",
                esc(&name[6..])
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.verdict("eom", "neutral", "accept", None);
        m.verdict("connect", "malicious", "accept", Some("reject"));
        m.stage_latency("eom", Duration::from_millis(3));
        m.events("accepted", 2);
        m.error("store");
        let t = m.render(1, &[("keys:senders".into(), 5), ("bytes:sst".into(), 1024)]);
        assert!(t.contains(
            "sra_milter_verdicts_total{stage=\"eom\",class=\"neutral\",action=\"accept\"} 1"
        ));
        assert!(t.contains("sra_milter_monitor_would_total{stage=\"connect\",action=\"reject\"} 1"));
        assert!(t.contains("sra_milter_stage_seconds_bucket{stage=\"eom\",le=\"0.0025\"} 0"));
        assert!(t.contains("sra_milter_stage_seconds_bucket{stage=\"eom\",le=\"0.005\"} 1"));
        assert!(t.contains("sra_milter_stage_seconds_count{stage=\"eom\"} 1"));
        assert!(t.contains("sra_milter_events_total{result=\"accepted\"} 2"));
        assert!(t.contains("sra_milter_errors_total{kind=\"store\"} 1"));
        assert!(t.contains("sra_milter_store_keys{family=\"senders\"} 5"));
        assert!(t.contains("sra_milter_store_bytes{kind=\"sst\"} 1024"));
        assert!(t.contains("sra_milter_sessions_open 1"));
    }
}
