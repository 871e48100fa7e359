//! The report of one run: JSON for machines, an SVG chart for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::db::{BaselineResult, Verification};
use crate::stats::{Percentiles, Sample};

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_mb: u64,
    pub cpu_model: String,
    pub load_avg_at_start: String,
    pub git_commit: String,
}

impl Machine {
    pub fn here() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let mem_total_mb = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        // The commit the server under test was built from: LOADTEST_GIT_COMMIT when the binary
        // comes from elsewhere, else the source tree's HEAD at run time.
        let git_commit = std::env::var("LOADTEST_GIT_COMMIT")
            .ok()
            .filter(|c| !c.is_empty())
            .or_else(|| {
                std::process::Command::new("git")
                    .args(["rev-parse", "--short", "HEAD"])
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            mem_total_mb,
            cpu_model,
            load_avg_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            git_commit,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    pub kind: String,
    pub start_s: f64,
    pub end_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    pub events: u64,
    pub mqtt_events: u64,
    pub http_events: u64,
    pub per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Device publish to end-to-end ack (sent by Homeward after commit).
    pub mqtt: Percentiles,
    /// Phone POST to 200 (sent after commit).
    pub http: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlarmPath {
    pub alarm_events_published: u64,
    pub alarm_frames_seen: u64,
    pub matched: u64,
    pub lagged_frames: u64,
    /// Device publish to `event: alarm` on `GET /v1/live`.
    pub latency: Percentiles,
    pub note: String,
    /// The server's own account of the same path (`homeward_alarm_path_seconds`), from its
    /// arrival at Homeward to each stage; empty when not scraped.
    pub stages: Vec<AlarmStage>,
}

/// One stage of the alarm path as the server's histogram has it, since the server last started.
/// Quantiles are interpolated within the histogram's buckets (up to 10 ms wide below 100 ms).
#[derive(Debug, Clone, Serialize)]
pub struct AlarmStage {
    pub stage: String,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The alarm path's stages from a server's `/metrics` text, in the order an alarm passes them.
pub fn alarm_stages(metrics: &str) -> Vec<AlarmStage> {
    const ORDER: [&str; 3] = ["stored", "derivation_started", "published"];
    let mut stages: Vec<AlarmStage> =
        homeward_testkit::metrics::histograms_by(metrics, "homeward_alarm_path_seconds", "stage")
            .into_iter()
            .filter(|(_, h)| h.count() > 0.0)
            .map(|(stage, h)| {
                let ms = |q: f64| (h.quantile(q).unwrap_or(0.0) * 10_000.0).round() / 10.0;
                AlarmStage {
                    count: h.count() as u64,
                    p50_ms: ms(0.5),
                    p99_ms: ms(0.99),
                    stage,
                }
            })
            .collect();
    stages.sort_by_key(|s| {
        ORDER
            .iter()
            .position(|o| *o == s.stage)
            .unwrap_or(ORDER.len())
    });
    stages
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerFigures {
    pub restarts: u32,
    pub cpu_avg_pct: Option<f64>,
    pub cpu_max_pct: Option<f64>,
    pub rss_first_mb: Option<f64>,
    pub rss_max_mb: Option<f64>,
    pub rss_last_mb: Option<f64>,
    /// Least-squares slope of RSS over the second half of the load phase.
    pub rss_growth_mb_per_min: Option<f64>,
    pub postgres_cpu_avg_pct: Option<f64>,
    pub harness_cpu_avg_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    /// The step's target rate.
    pub offered_per_s: f64,
    /// Events the devices actually took on during the step, per second.
    pub created_per_s: f64,
    pub acked_per_s: f64,
    /// Events created but not yet acknowledged, when the step began and when it ended.
    pub backlog_start: u64,
    pub backlog_end: u64,
    pub seconds: f64,
}

impl RampStep {
    /// The server kept up: the backlog grew by less than 5 % of the step's events (it always
    /// holds what is in flight, and more of it at a higher rate).
    pub fn kept_up(&self) -> bool {
        self.backlog_end as f64
            <= self.backlog_start as f64 + 0.05 * self.created_per_s * self.seconds
    }
}

/// How many of the last steps in a row the server did not keep up with (a ramp ends when this
/// reaches its `behind_steps`).
pub fn behind_at_end(steps: &[RampStep]) -> usize {
    steps.iter().rev().take_while(|s| !s.kept_up()).count()
}

/// The rate a ramp sustained: the best step that kept up and was followed by another that
/// kept up (ten seconds, so a backlog draining in a burst does not count), at its acknowledged
/// rate capped at its created rate (acks above that were the backlog draining).
pub fn sustained_of(steps: &[RampStep]) -> f64 {
    steps
        .windows(2)
        .filter(|w| w[0].kept_up() && w[1].kept_up())
        .map(|w| w[0].acked_per_s.min(w[0].created_per_s))
        .fold(0.0, f64::max)
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub kind: String,
    pub backlog_at_end_of_outage: u64,
    /// From the end of the outage until the backlog is back to its level before it.
    pub seconds_to_drain: Option<f64>,
    pub drain_rate_per_s: Option<f64>,
    /// drain rate / sustained rate before the outage.
    pub drain_rate_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub value: Option<f64>,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub started_at: String,
    pub machine: Machine,
    pub conditions: String,
    pub seconds: f64,
    pub load_seconds: f64,
    pub offered: Rates,
    pub acknowledged: Rates,
    /// The ingest rate this run sustained: for a ramp, [`sustained_of`] its steps; else the
    /// best 5 s of acknowledged rate.
    pub sustained_rate_per_s: f64,
    /// The COPY baseline before the load.
    pub baseline_copy: Option<BaselineResult>,
    /// The same after the load, with `[baseline] after_load`.
    pub baseline_copy_after: Option<BaselineResult>,
    /// The baseline the ratio is judged against: the mean of the two rates when both ran,
    /// else the one before the load.
    pub baseline_rows_per_s: Option<f64>,
    /// `sustained_rate_per_s / baseline_rows_per_s`.
    pub ratio_to_copy: Option<f64>,
    pub latency_ms: Latency,
    pub alarm_path: AlarmPath,
    pub resends: u64,
    pub http_retries: u64,
    pub http_rejected: u64,
    pub drain_seconds: f64,
    pub server: ServerFigures,
    pub verification: Verification,
    pub zero_loss: bool,
    pub ramp_steps: Vec<RampStep>,
    /// How a ramp ended: `fell behind` (what measures the server), `reached its top` or `ran
    /// out of time` (then `sustained_rate_per_s` is only a lower bound: the server kept up
    /// with everything offered). `None` without a ramp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp_end: Option<String>,
    pub outages: Vec<Marker>,
    pub recovery: Vec<Recovery>,
    pub target: TargetResult,
    /// The `drain` scenario's own figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<crate::drain::DrainFigures>,
    pub scenario_config: crate::scenario::Scenario,
    pub timeline: Vec<Sample>,
}

/// Acknowledged rate (and offered, dashed) on top, p99 latency below, outages shaded.
pub fn svg(r: &Report) -> String {
    let (w, h) = (960.0, 560.0);
    let (left, right) = (70.0, 20.0);
    let plot_w = w - left - right;
    let top1 = (60.0, 220.0); // y of top panel: from, height
    let top2 = (330.0, 170.0);
    let t_max = r.timeline.last().map(|s| s.t_s).unwrap_or(1.0).max(1.0);
    let rate_max = nice(
        r.timeline
            .iter()
            .map(|s| s.acked_per_s.max(s.offered_per_s))
            .fold(1.0, f64::max),
    );
    let p99_max = nice(r.timeline.iter().map(|s| s.p99_ms).fold(1.0, f64::max));
    let x = |t: f64| left + t / t_max * plot_w;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/>
<text x="{left}" y="24" font-size="16" font-weight="bold">{}</text>
<text x="{left}" y="44" fill="#444">sustained {:.0} ev/s; COPY baseline {}; ratio {}; p99 {:.1} ms; lost {} duplicated {}</text>
"##,
        esc(&format!(
            "Homeward load test: {} ({})",
            r.scenario, r.started_at
        )),
        r.sustained_rate_per_s,
        r.baseline_rows_per_s
            .map(|b| format!("{b:.0} rows/s"))
            .unwrap_or_else(|| "-".into()),
        r.ratio_to_copy
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "-".into()),
        r.latency_ms.mqtt.p99_ms,
        r.verification.lost,
        r.verification.duplicated,
    );
    for (y0, ph) in [top1, top2] {
        for o in &r.outages {
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{y0}" width="{:.1}" height="{ph}" fill="#f4c7c3" opacity="0.6"/><text x="{:.1}" y="{:.1}" fill="#a33">{}</text>"##,
                x(o.start_s),
                (x(o.end_s) - x(o.start_s)).max(1.0),
                x(o.start_s) + 3.0,
                y0 + 14.0,
                esc(&o.kind)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{y0}" width="{plot_w}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        for i in 0..=5 {
            let t = t_max * i as f64 / 5.0;
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{t:.0}s</text>"##,
                x(t),
                y0 + ph + 15.0
            );
        }
    }
    let axis = |s: &mut String, (y0, ph): (f64, f64), max: f64, unit: &str| {
        for i in 0..=4 {
            let v = max * i as f64 / 4.0;
            let y = y0 + ph - ph * i as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}{unit}</text>"##,
                left + plot_w,
                left - 6.0,
                y + 4.0,
                fmt_num(v)
            );
        }
    };
    axis(&mut s, top1, rate_max, "");
    axis(&mut s, top2, p99_max, " ms");
    let line =
        |s: &mut String, pts: Vec<(f64, f64)>, (y0, ph): (f64, f64), max: f64, style: &str| {
            let d: Vec<String> = pts
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y0 + ph - (v / max).min(1.0) * ph))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" {style} points="{}"/>"#,
                d.join(" ")
            );
        };
    line(
        &mut s,
        r.timeline
            .iter()
            .map(|p| (p.t_s, p.offered_per_s))
            .collect(),
        top1,
        rate_max,
        r##"stroke="#999" stroke-dasharray="4 3" stroke-width="1.5""##,
    );
    line(
        &mut s,
        r.timeline.iter().map(|p| (p.t_s, p.acked_per_s)).collect(),
        top1,
        rate_max,
        r##"stroke="#1f6fb2" stroke-width="2""##,
    );
    line(
        &mut s,
        r.timeline.iter().map(|p| (p.t_s, p.p99_ms)).collect(),
        top2,
        p99_max,
        r##"stroke="#c0392b" stroke-width="2""##,
    );
    let _ = write!(
        s,
        r##"<text x="{left}" y="{:.1}" font-weight="bold">events/s: <tspan fill="#1f6fb2">acknowledged (end-to-end, after commit)</tspan> <tspan fill="#999">offered (dashed)</tspan></text>
<text x="{left}" y="{:.1}" font-weight="bold" fill="#c0392b">p99 publish-to-ack latency per second (ms)</text>
<text x="{left}" y="{:.1}" fill="#444">shaded: outages (database stopped, server killed) and reconnect storms; server RSS {} to {} MB (max {} MB)</text>
</svg>
"##,
        top1.0 - 6.0,
        top2.0 - 6.0,
        h - 14.0,
        opt(r.server.rss_first_mb),
        opt(r.server.rss_last_mb),
        opt(r.server.rss_max_mb),
    );
    s
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into())
}

fn fmt_num(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A round upper bound for an axis.
fn nice(v: f64) -> f64 {
    let mag = 10f64.powf(v.max(1e-9).log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Least-squares slope (per minute) of (t_s, value) points.
pub fn slope_per_min(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| (sxy / sxx * 60.0 * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_bounds_and_slopes() {
        assert_eq!(nice(730.0), 1000.0);
        assert_eq!(nice(180.0), 200.0);
        assert_eq!(nice(2.2), 2.5);
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 100.0 + i as f64)).collect();
        assert_eq!(slope_per_min(&pts), Some(60.0));
    }
}

#[cfg(test)]
mod sustained_tests {
    use super::*;

    fn step(created: f64, acked: f64, backlog: (u64, u64)) -> RampStep {
        RampStep {
            offered_per_s: created,
            created_per_s: created,
            acked_per_s: acked,
            backlog_start: backlog.0,
            backlog_end: backlog.1,
            seconds: 5.0,
        }
    }

    #[test]
    fn sustained_counts_only_steps_kept_up_for_ten_seconds_and_never_a_drain() {
        let steps = [
            step(30_000.0, 30_000.0, (1_000, 1_500)),
            step(33_000.0, 32_900.0, (1_500, 2_000)),
            // Fell behind (backlog +20,000, over 5 % of 180,000).
            step(36_000.0, 32_000.0, (2_000, 22_000)),
            // A burst drains the backlog: acks above the created rate.
            step(39_000.0, 43_000.0, (22_000, 2_000)),
            step(42_000.0, 35_000.0, (2_000, 37_000)),
        ];
        // 33,000 kept up but the step after it fell behind; 39,000 kept up (draining) but the
        // step after it fell behind.
        assert_eq!(sustained_of(&steps), 30_000.0);
        assert!(!steps[2].kept_up());
        assert!(steps[3].kept_up());
        assert_eq!(
            sustained_of(&steps[..1]),
            0.0,
            "one step is not ten seconds"
        );
    }

    #[test]
    fn a_ramp_is_behind_only_for_the_steps_in_a_row_at_its_end() {
        let kept = step(30_000.0, 30_000.0, (1_000, 1_500));
        let behind = step(36_000.0, 32_000.0, (2_000, 22_000));
        assert_eq!(behind_at_end(&[]), 0);
        assert_eq!(behind_at_end(&[kept.clone(), behind.clone()]), 1);
        // One step behind that the next caught up does not count.
        assert_eq!(
            behind_at_end(&[behind.clone(), kept.clone(), behind.clone()]),
            1
        );
        assert_eq!(behind_at_end(&[kept, behind.clone(), behind]), 2);
    }
}
