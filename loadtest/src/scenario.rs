//! Scenarios as data: `loadtest/scenarios/<name>.toml` with a fixed seed, the load shape and the target metric.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Every random choice (device, kind, field values) comes from this seed.
    pub seed: u64,
    /// How long events are offered, in seconds. A ramp may stop earlier (when flat).
    pub duration_s: f64,
    /// After the last event is offered, how long devices may take to get everything acked.
    #[serde(default = "d_drain")]
    pub drain_timeout_s: f64,
    pub devices: Devices,
    /// Relative weights of the MQTT event kinds (wire-format names).
    pub mix: BTreeMap<String, u32>,
    pub rate: Rate,
    #[serde(default)]
    pub phones: Option<Phones>,
    #[serde(default)]
    pub alarms: Option<Alarms>,
    #[serde(default)]
    pub storm: Option<Storm>,
    #[serde(default)]
    pub db_outage: Option<Outage>,
    #[serde(default)]
    pub crash: Option<Outage>,
    /// A backlog drained from an external broker (the `drain` scenario, `crate::drain`).
    #[serde(default)]
    pub drain: Option<Drain>,
    #[serde(default)]
    pub baseline: Baseline,
    #[serde(default)]
    pub postgres: Postgres,
    pub target: Target,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Devices {
    pub count: usize,
    /// Most published events a device keeps unacknowledged before it holds new ones back.
    #[serde(default = "d_window")]
    pub window: usize,
    /// Resend an event no end-to-end ack covered after this long (doubling, at most 8x).
    #[serde(default = "d_resend")]
    pub resend_after_s: f64,
    /// `mixed` (half the devices JSON, half CBOR), `json` or `cbor`.
    #[serde(default = "d_encoding")]
    pub encoding: String,
    /// Most events a device puts in one message (the wire format's batches); 1 sends every
    /// event on its own.
    #[serde(default = "d_batch_max")]
    pub batch_max: usize,
    /// How long a device gathers events before it sends what it holds (alarms and falls go at
    /// once, with whatever is waiting); 0 sends at once.
    #[serde(default)]
    pub batch_linger_ms: u64,
}

fn d_batch_max() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "shape", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rate {
    /// A constant offered rate (MQTT events per second, all devices together).
    Fixed { events_per_s: f64 },
    /// Steps of `step` events/s every `step_s` seconds from `start` (at most `max`), until
    /// the server has not kept up with `behind_steps` steps in a row (its backlog grew by 5 %
    /// of a step's events or more: [`crate::report::RampStep::kept_up`]). One step behind and
    /// the next caught up (a checkpoint, say) does not end the ramp.
    ///
    /// With `relative_to_copy`, `start`, `step` and `max` are fractions of the COPY baseline
    /// measured before the load, so the ramp reaches the server's limit on a fast machine as on
    /// a slow one (a ramp in events/s sized for one machine can end, on a faster one, before
    /// the server falls behind, and then measures the ramp, not the server).
    Ramp {
        start: f64,
        step: f64,
        step_s: f64,
        max: f64,
        #[serde(default = "d_behind_steps")]
        behind_steps: u32,
        #[serde(default)]
        relative_to_copy: bool,
    },
    /// `fraction` of the saturation rate (from `--saturation-rate` or the latest
    /// `reports/saturation-*.json`).
    FractionOfSaturation { fraction: f64 },
}

/// Care workers' phones posting check-ins and check-outs over HTTP, with a morning and an
/// evening peak. The run is a compressed day of `day_s` seconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Phones {
    pub count: usize,
    pub base_per_s: f64,
    pub peak_per_s: f64,
    pub day_s: f64,
    #[serde(default = "d_batch")]
    pub batch_max: usize,
    #[serde(default = "d_post_ms")]
    pub post_interval_ms: u64,
}

/// Pendant alarms sent on top of the mix, timed to the dashboard's live stream.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    pub per_s: f64,
}

/// Every device starts offline with a backlog and all connect at `connect_at_s`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Storm {
    pub backlog_per_device: u64,
    pub backlog_hours: f64,
    pub connect_at_s: f64,
}

/// A backlog queued in Mosquitto while Homeward is stopped, then drained (`crate::drain`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Drain {
    /// One-event messages in the backlog, spread evenly over `[devices] count`.
    pub messages: u64,
    /// Connections that publish the backlog into Mosquitto.
    pub publishers: usize,
    /// Each publisher's in-flight window.
    pub inflight: u16,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            messages: 300_000,
            publishers: 4,
            inflight: 1_000,
        }
    }
}

/// An outage: from `at_s` for `duration_s` seconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    pub at_s: f64,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baseline {
    pub duration_s: f64,
    /// Rows per COPY transaction (the server's `ingest.batch_size` default).
    pub batch_rows: usize,
    pub devices: usize,
    /// Connections copying at once, each with its own share of the devices (default 1: one
    /// COPY stream).
    pub connections: usize,
    /// Run the baseline a second time after the load (and the verification), and judge the
    /// ratio against the mean of the two rates. The machine's speed drifts over minutes and
    /// the `events` table is empty before the load and full after it; one measurement on each
    /// side of the load brackets both. Default false (one baseline, before the load).
    pub after_load: bool,
}

impl Default for Baseline {
    fn default() -> Self {
        Self {
            duration_s: 8.0,
            batch_rows: 2000,
            devices: 100,
            connections: 1,
            after_load: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Postgres {
    pub fsync: bool,
    pub settings: BTreeMap<String, String>,
}

impl Default for Postgres {
    fn default() -> Self {
        Self {
            fsync: true,
            settings: BTreeMap::new(),
        }
    }
}

/// The figure this scenario is judged by (`metric`: see README), with a bound.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub metric: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

pub const METRICS: &[&str] = &[
    "ratio_to_copy",
    "latency_p99_ms",
    "alarm_p99_ms",
    "lost_plus_duplicated",
    "drain_rate_ratio",
    "rss_growth_mb_per_min",
];

fn d_drain() -> f64 {
    120.0
}
fn d_window() -> usize {
    256
}
fn d_resend() -> f64 {
    5.0
}
fn d_encoding() -> String {
    "mixed".into()
}
fn d_behind_steps() -> u32 {
    2
}
fn d_batch() -> usize {
    50
}
fn d_post_ms() -> u64 {
    250
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let s: Scenario =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> anyhow::Result<()> {
        let bounded = |what: &str, v: f64, max: f64| -> anyhow::Result<()> {
            if !(v.is_finite() && v >= 0.0 && v <= max) {
                bail!("{what} = {v} must be between 0 and {max}");
            }
            Ok(())
        };
        bounded("duration_s", self.duration_s, 3600.0)?;
        bounded("drain_timeout_s", self.drain_timeout_s, 3600.0)?;
        if self.devices.count == 0 || self.devices.count > 20_000 {
            bail!("devices.count must be 1 to 20000");
        }
        if self.devices.window == 0 || self.devices.window > 10_000 {
            bail!("devices.window must be 1 to 10000");
        }
        if !["mixed", "json", "cbor"].contains(&self.devices.encoding.as_str()) {
            bail!("devices.encoding must be mixed, json or cbor");
        }
        if self.devices.batch_max == 0 || self.devices.batch_max > homeward_proto::MAX_BATCH_EVENTS
        {
            bail!(
                "devices.batch_max must be 1 to {} (the wire format's batch limit)",
                homeward_proto::MAX_BATCH_EVENTS
            );
        }
        if self.devices.batch_linger_ms > 10_000 {
            bail!("devices.batch_linger_ms must be at most 10000");
        }
        if self.mix.values().all(|w| *w == 0) {
            bail!("mix needs at least one kind with a weight");
        }
        for kind in self.mix.keys() {
            if crate::mix::body_for(kind, &mut crate::mix::Rng::new(1)).is_none() {
                bail!("mix: `{kind}` is not an MQTT event kind the harness can send");
            }
        }
        match &self.rate {
            Rate::Fixed { events_per_s } => bounded("rate.events_per_s", *events_per_s, 1e6)?,
            Rate::Ramp {
                start,
                step,
                step_s,
                max,
                behind_steps,
                relative_to_copy,
            } => {
                // As fractions of the COPY rate, at most three times it.
                let top = if *relative_to_copy { 3.0 } else { 1e6 };
                bounded("rate.start", *start, top)?;
                bounded("rate.step", *step, top)?;
                bounded("rate.max", *max, top)?;
                if *relative_to_copy && self.baseline.duration_s <= 0.0 {
                    bail!("rate.relative_to_copy needs a COPY baseline before the load ([baseline] duration_s > 0)");
                }
                if *step_s < 1.0 {
                    bail!("rate.step_s must be at least 1");
                }
                if *behind_steps == 0 {
                    bail!("rate.behind_steps must be at least 1 (steps behind in a row that end the ramp)");
                }
            }
            Rate::FractionOfSaturation { fraction } => bounded("rate.fraction", *fraction, 1.0)?,
        }
        if let Some(p) = &self.phones {
            if p.count == 0 || p.day_s <= 0.0 || p.batch_max == 0 || p.batch_max > 500 {
                bail!("phones: count >= 1, day_s > 0, batch_max 1..=500");
            }
        }
        if let Some(d) = &self.drain {
            if d.messages == 0 || d.messages > 10_000_000 || d.publishers == 0 || d.publishers > 64
            {
                bail!("drain: messages 1 to 10000000, publishers 1 to 64");
            }
            if d.inflight == 0 {
                bail!("drain.inflight must be at least 1");
            }
            if self.storm.is_some()
                || self.db_outage.is_some()
                || self.crash.is_some()
                || self.phones.is_some()
                || self.alarms.is_some()
            {
                bail!("a drain scenario has no storm, outages, phones or alarm listener");
            }
        }
        if !METRICS.contains(&self.target.metric.as_str()) {
            bail!("target.metric must be one of {}", METRICS.join(", "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled(name: &str) -> Scenario {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        Scenario::load(&dir.join(format!("{name}.toml"))).unwrap()
    }

    #[test]
    fn the_saturation_scenarios_ramp_until_behind_with_a_baseline_on_each_side() {
        for name in ["saturation", "saturation-single"] {
            let s = bundled(name);
            assert!(
                matches!(
                    s.rate,
                    Rate::Ramp {
                        behind_steps: 2,
                        ..
                    }
                ),
                "{name}"
            );
            assert!(s.baseline.after_load, "{name}");
        }
    }

    #[test]
    fn the_saturation_ramps_are_sized_by_the_copy_baseline_and_reach_past_it() {
        for name in ["saturation", "saturation-single"] {
            let s = bundled(name);
            let Rate::Ramp {
                start,
                step,
                step_s,
                max,
                relative_to_copy,
                ..
            } = s.rate
            else {
                panic!("{name} ramps");
            };
            assert!(relative_to_copy, "{name}");
            // The ramp passes the COPY rate itself within the scenario's duration.
            let steps = (s.duration_s / step_s).floor();
            assert!(max >= 1.0 && start + step * (steps - 1.0) >= 1.0, "{name}");
        }
        let mut s = bundled("saturation");
        s.baseline.duration_s = 0.0;
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("rate.relative_to_copy"), "{e}");
    }

    #[test]
    fn a_ramp_that_would_end_before_its_first_step_is_refused() {
        let mut s = bundled("saturation");
        if let Rate::Ramp { behind_steps, .. } = &mut s.rate {
            *behind_steps = 0;
        }
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("rate.behind_steps"), "{e}");
    }
}
