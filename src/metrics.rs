//! Prometheus metrics (text exposition format 0.0.4, by the
//! `prometheus-client` crate), served at `GET /metrics` on `[admin] listen`.
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

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    stage: String,
    class: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WouldLabels {
    stage: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: String,
}

type Histograms = Family<StageLabels, Histogram, fn() -> Histogram>;

/// The daemon's metrics; every update is a lock-free counter increment
/// once its label set exists.
pub struct Metrics {
    registry: Registry,
    verdicts: Family<VerdictLabels, Counter>,
    would: Family<WouldLabels, Counter>,
    stages: Histograms,
    events: Family<ResultLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    sessions: Gauge,
    store_keys: Family<FamilyLabels, Gauge>,
    store_bytes: Family<KindLabels, Gauge>,
}

fn stage_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for Metrics {
    fn default() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            verdicts: Family::default(),
            would: Family::default(),
            stages: Family::new_with_constructor(stage_histogram),
            events: Family::default(),
            errors: Family::default(),
            sessions: Gauge::default(),
            store_keys: Family::default(),
            store_bytes: Family::default(),
        };
        let mut r = Registry::default();
        r.register(
            "sra_milter_verdicts",
            "Decisions taken, by stage, deciding class and action",
            m.verdicts.clone(),
        );
        r.register(
            "sra_milter_monitor_would",
            "Actions monitor-only mode held back",
            m.would.clone(),
        );
        r.register(
            "sra_milter_stage_seconds",
            "Time spent per milter stage",
            m.stages.clone(),
        );
        r.register(
            "sra_milter_events",
            "Engagement events and requests by result",
            m.events.clone(),
        );
        r.register(
            "sra_milter_errors",
            "Errors answered per on_error, by kind",
            m.errors.clone(),
        );
        r.register(
            "sra_milter_sessions_open",
            "Milter connections open",
            m.sessions.clone(),
        );
        r.register(
            "sra_milter_store_keys",
            "Estimated keys per store column family",
            m.store_keys.clone(),
        );
        r.register(
            "sra_milter_store_bytes",
            "Store size: SST files on disk and memtables",
            m.store_bytes.clone(),
        );
        Metrics { registry: r, ..m }
    }
}

impl Metrics {
    pub fn verdict(&self, stage: &str, class: &str, action: &str, would: Option<&str>) {
        self.verdicts
            .get_or_create(&VerdictLabels {
                stage: stage.into(),
                class: class.into(),
                action: action.into(),
            })
            .inc();
        if let Some(w) = would {
            self.would
                .get_or_create(&WouldLabels {
                    stage: stage.into(),
                    action: w.into(),
                })
                .inc();
        }
    }

    pub fn stage_latency(&self, stage: &str, d: Duration) {
        self.stages
            .get_or_create(&StageLabels {
                stage: stage.into(),
            })
            .observe(d.as_secs_f64());
    }

    pub fn events(&self, result: &str, n: u64) {
        if n > 0 {
            self.events
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .inc_by(n);
        }
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// The exposition text; `store` holds the store's figures as
    /// `keys:FAMILY` and `bytes:KIND` names with their values.
    pub fn render(&self, sessions: usize, store: &[(String, u64)]) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.sessions.set(gauge(sessions as u64));
        for (name, v) in store {
            if let Some(family) = name.strip_prefix("keys:") {
                self.store_keys
                    .get_or_create(&FamilyLabels {
                        family: family.into(),
                    })
                    .set(gauge(*v));
            } else if let Some(kind) = name.strip_prefix("bytes:") {
                self.store_bytes
                    .get_or_create(&KindLabels { kind: kind.into() })
                    .set(gauge(*v));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
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
        assert!(
            t.contains(
                "sra_milter_verdicts_total{stage=\"eom\",class=\"neutral\",action=\"accept\"} 1"
            ),
            "{t}"
        );
        assert!(t.contains("sra_milter_monitor_would_total{stage=\"connect\",action=\"reject\"} 1"));
        assert!(
            t.contains("sra_milter_stage_seconds_bucket{stage=\"eom\",le=\"0.0025\"} 0"),
            "{t}"
        );
        assert!(t.contains("sra_milter_stage_seconds_bucket{stage=\"eom\",le=\"0.005\"} 1"));
        assert!(t.contains("sra_milter_stage_seconds_bucket{stage=\"eom\",le=\"+Inf\"} 1"));
        assert!(t.contains("sra_milter_stage_seconds_count{stage=\"eom\"} 1"));
        assert!(t.contains("sra_milter_events_total{result=\"accepted\"} 2"));
        assert!(t.contains("sra_milter_errors_total{kind=\"store\"} 1"));
        assert!(t.contains("sra_milter_store_keys{family=\"senders\"} 5"));
        assert!(t.contains("sra_milter_store_bytes{kind=\"sst\"} 1024"));
        assert!(t.contains("sra_milter_sessions_open 1"));
        assert!(t.contains("# TYPE sra_milter_stage_seconds histogram"));
    }
}
