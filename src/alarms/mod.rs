//! Telecare alarms: lifecycle, live stream, response times, falls and long lies, device health.
//!
//! - [`model`]: the closed sets (kinds, severities, states, outcome codes) mapped to SQL.
//! - [`derive`](mod@derive): the only code that changes `alarms`, `alarm_events` and
//!   `device_health`, from events (live feed, catch-up, rebuild) and staff actions (API,
//!   rebuild).
//! - [`routes`](mod@routes): the HTTP API for provider staff and responders; [`figures`]: response
//!   times against the TSA targets; [`rebuild`](mod@rebuild): recomputing the derived tables.
//! - `runtime`: the background work ([`start`]): the live feed, the start-up catch-up
//!   ([`catch_up`]), retries, the missing-heartbeat check ([`run_sweep`]); `pass`: one pass of
//!   derivation in one transaction ([`process`]).
//!
//! Sources of truth are the raw `events` and `alarm_actions` (what staff did, who and when);
//! everything else here is derived and [`rebuild()`] recomputes it with the same alarm ids.
//! A change is published to the live stream (`alarm` / `technical_alarm`) right after the
//! transaction that made it has committed. See `docs/alarms.md`.

pub mod derive;
pub mod figures;
pub mod model;
mod pass;
pub mod rebuild;
pub mod routes;
mod runtime;

use actix_web::web;
use serde::{Deserialize, Serialize};

use crate::http::ApiError;
use crate::live::LiveHub;
use derive::Change;
pub use pass::process;
pub use rebuild::{rebuild, rebuild_with, RebuildReport};
use runtime::set_cursor;
pub use runtime::{catch_up, run_sweep, start};

/// Settings under `[alarms]`. Targets and thresholds follow the TSA code of practice for telecare.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmSettings {
    /// Heartbeat interval assumed when a heartbeat carries no `interval_s`. Default 900 (15 min).
    pub heartbeat_interval_secs: u32,
    /// A device is missing after this many intervals without a heartbeat. Default 2.5.
    pub heartbeat_missing_factor: f64,
    /// How often the missing-heartbeat check runs. Default 30.
    pub sweep_interval_secs: u64,
    /// `battery_low` clears on a heartbeat with the battery above this percentage. Default 20.
    pub battery_low_percent: u8,
    /// A fall whose responder arrived this long after it or later is a long lie. Default 60.
    pub long_lie_minutes: u32,
    /// Answer targets (TSA code of practice): 97.5% within 60 s, 99% within 180 s.
    pub answer_target_secs: u32,
    pub answer_target_share: f64,
    pub answer_limit_secs: u32,
    pub answer_limit_share: f64,
    /// Mobile responders on site: 90% within 45 minutes, all within 60 minutes.
    pub on_site_target_minutes: u32,
    pub on_site_target_share: f64,
    pub on_site_limit_minutes: u32,
    pub on_site_limit_share: f64,
    /// `door_open_too_long` raises an alarm only at night, local hours `[start, end)`.
    /// Defaults 22 and 7.
    pub night_start_hour: u32,
    pub night_end_hour: u32,
    /// Time zone for the night window (IANA name known to PostgreSQL). Default `Europe/London`.
    pub timezone: String,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: 900,
            heartbeat_missing_factor: 2.5,
            sweep_interval_secs: 30,
            battery_low_percent: 20,
            long_lie_minutes: 60,
            answer_target_secs: 60,
            answer_target_share: 0.975,
            answer_limit_secs: 180,
            answer_limit_share: 0.99,
            on_site_target_minutes: 45,
            on_site_target_share: 0.90,
            on_site_limit_minutes: 60,
            on_site_limit_share: 1.0,
            night_start_hour: 22,
            night_end_hour: 7,
            timezone: "Europe/London".into(),
        }
    }
}

impl AlarmSettings {
    /// One line naming what is wrong, or `Ok`. Run when the configuration is loaded.
    pub fn validate(&self) -> Result<(), String> {
        let shares = [
            ("answer_target_share", self.answer_target_share),
            ("answer_limit_share", self.answer_limit_share),
            ("on_site_target_share", self.on_site_target_share),
            ("on_site_limit_share", self.on_site_limit_share),
        ];
        for (name, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("alarms.{name} must be between 0 and 1"));
            }
        }
        if self.heartbeat_missing_factor.is_nan() || self.heartbeat_missing_factor < 1.0 {
            return Err("alarms.heartbeat_missing_factor must be at least 1".into());
        }
        if self.heartbeat_interval_secs == 0 || self.sweep_interval_secs == 0 {
            return Err(
                "alarms.heartbeat_interval_secs and alarms.sweep_interval_secs must be at least 1"
                    .into(),
            );
        }
        if self.night_start_hour > 23 || self.night_end_hour > 23 {
            return Err("alarms.night_start_hour and alarms.night_end_hour must be 0 to 23".into());
        }
        if self.battery_low_percent > 100 {
            return Err("alarms.battery_low_percent must be 0 to 100".into());
        }
        Ok(())
    }
}

/// Errors of the alarm domain's storage work.
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("database error: {}", db_detail(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Corrupt(#[from] model::UnknownValue),
}

/// tokio-postgres says only "db error"; the server's message is in the source.
fn db_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl AlarmError {
    /// Worth retrying: the database is away, not the query wrong.
    fn is_transient(&self) -> bool {
        match self {
            // Also a deadlock or serialization failure between instances: the retry succeeds.
            AlarmError::Db(e) => crate::db::is_transient(e),
            AlarmError::Pool(_) => true,
            AlarmError::Corrupt(_) => false,
        }
    }
}

impl From<AlarmError> for ApiError {
    fn from(e: AlarmError) -> Self {
        match e {
            AlarmError::Db(e) => ApiError::from(e),
            AlarmError::Pool(e) => ApiError::from(e),
            AlarmError::Corrupt(e) => ApiError::Unexpected(e.into()),
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::routes(cfg);
}

/// Publishes committed changes to the live stream.
pub(crate) fn publish(live: &LiveHub, changes: &[Change]) {
    for change in changes {
        live.publish(change.view.live_event(change.transition));
        metrics::counter!("homeward_alarm_transitions_total",
            "category" => change.view.category.as_str(),
            "transition" => change.transition.as_str())
        .increment(1);
    }
}
