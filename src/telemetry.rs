//! Logs and metrics.
//!
//! Logs go through `tracing`: readable lines by default, JSON with `log.format = "json"`,
//! filtered by `log.filter` or `RUST_LOG`. Metrics use the `metrics` crate; one Prometheus
//! recorder per process renders them at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global log subscriber; later calls do nothing (tests build many apps).
pub fn init_logs(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Seconds from an alarm's or fall's arrival (its `received_at`) to each stage of its way to the
/// live stream, by `stage`: `stored` (the writer's transaction committed), `derivation_started`
/// (the care pass that takes it began) and `published` (that pass committed and its changes went
/// to the live stream). Events of the priority kinds only; the start-up catch-up is not counted.
pub const ALARM_PATH_SECONDS: &str = "homeward_alarm_path_seconds";

/// Records `stage` of the alarm path for an event received at `received_at`.
pub fn record_alarm_path(
    stage: &'static str,
    received_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) {
    let seconds = (now - received_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    metrics::histogram!(ALARM_PATH_SECONDS, "stage" => stage).record(seconds.max(0.0));
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static bucket list is not empty")
                // Rows, not seconds.
                .set_buckets_for_metric(
                    Matcher::Full("homeward_ingest_batch_size".into()),
                    &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0],
                )
                .expect("static bucket list is not empty")
                // Finer where the alarm path's target (100 ms) lies.
                .set_buckets_for_metric(
                    Matcher::Full(ALARM_PATH_SECONDS.into()),
                    &[
                        0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15,
                        0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .expect("static bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); ours still renders
            // whatever is recorded through it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
