//! Electronic visit verification: schedules, geofenced check-in and check-out, exceptions,
//! adjustments, missed-visit alerts and the six-element export. Visit times are context only:
//! nothing here turns minutes into money.
//!
//! - [`geofence`]: the maths (distance, radius, capped accuracy allowance, stale fixes).
//! - [`derive`]: visits assembled from raw check events (`events`, kinds 22 and 23), the
//!   reference data and the office's adjustments; one per-device path serves live derivation,
//!   the start-up catch-up and [`rebuild`].
//! - [`missed`]: missed-visit alerts, raised once across instances, pushed on the live stream.
//! - [`view`]: what a visit shows (exceptions, lateness, completeness, pseudonyms), pure.
//! - [`figures`]: visit figures over a period (punctuality, duration, verification), the one
//!   source of them for reports.
//! - `routes`: the schedule, visits, exceptions, adjustments, export, missed-visit alerts.
//!   People, workers and their phones are [`crate::people`]'s.
//!
//! Raw check events are never edited: an adjustment is a new row naming the visit's first raw
//! event, and a visit shows its raw and adjusted times side by side.

pub mod derive;
pub mod figures;
pub mod geofence;
pub mod missed;
mod routes;
pub mod view;

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::web;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::ingest::CommittedBatch;
use crate::live::LiveHub;

pub use derive::{rebuild, rebuild_with, RebuildReport};
pub use geofence::GeofencePolicy;
pub use missed::check_missed_visits;
pub use routes::{
    apply_adjustment, exceptions_between, missed_alerts, rederive, unvisited_of, visit_detail,
    visits_between, AdjustmentRecorded, AlertState, ExceptionItem, MissedAlert, NewAdjustment,
    Scheduled,
};

crate::sql_enum! {
    /// What an adjustment is (`visit_adjustments.kind`).
    AdjustmentKind {
        /// Corrects the times of a derived visit, or matches it to a scheduled visit.
        Correction = "correction",
        /// A visit entered by the office where no usable check exists.
        ManualEntry = "manual_entry",
    }
}

crate::sql_enum! {
    /// Why the office adjusted a visit (`visit_adjustments.reason_code`): a closed set, so
    /// reports can count them.
    AdjustmentReason {
        ForgotCheckIn = "forgot_check_in",
        ForgotCheckOut = "forgot_check_out",
        DeviceFailure = "device_failure",
        NoSignal = "no_signal",
        WrongLocationPin = "wrong_location_pin",
        WrongVisit = "wrong_visit",
        WrongTime = "wrong_time",
        OfficeEntry = "office_entry",
        /// Needs a memo.
        Other = "other",
    }
}

/// Settings under `[evv]`. Figures from EVV practice: radii of 75 m to 500 m are used in
/// practice; vendors alert on no-shows after 5 to 60 minutes, commonly 30.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvvSettings {
    /// Geofence radius for a person with none of their own, metres. Default 150.
    pub default_geofence_radius_m: u32,
    /// Most a fix's reported accuracy may widen the geofence, metres. Default 100.
    pub accuracy_allowance_cap_m: u32,
    /// Fixes older than this (at the check) are flagged stale, seconds. Default 120.
    pub max_fix_age_secs: u32,
    /// Outside the geofence: `reject` or `warn`, unless the person or their area says
    /// otherwise. Default `reject`.
    pub geofence_policy: GeofencePolicy,
    /// A scheduled visit with no check-in this long after its window starts raises a
    /// missed-visit alert, minutes. Default 30.
    pub missed_visit_grace_minutes: u32,
    /// How often the missed-visit check runs, seconds. Default 60.
    pub missed_visit_check_secs: u64,
    /// A check-in this long after the window's start is shown as late (context, never a
    /// fault), minutes. Default 15.
    pub late_after_minutes: u32,
    /// A check matches a scheduled visit whose window lies within this many minutes of it.
    /// Default 120.
    pub match_tolerance_minutes: u32,
    /// An unscheduled visit with no check-out is missing its check-out after this long,
    /// minutes (a scheduled one after its window ends plus the grace period). Default 240.
    pub open_visit_limit_minutes: u32,
}

impl Default for EvvSettings {
    fn default() -> Self {
        Self {
            default_geofence_radius_m: 150,
            accuracy_allowance_cap_m: 100,
            max_fix_age_secs: 120,
            geofence_policy: GeofencePolicy::Reject,
            missed_visit_grace_minutes: 30,
            missed_visit_check_secs: 60,
            late_after_minutes: 15,
            match_tolerance_minutes: 120,
            open_visit_limit_minutes: 240,
        }
    }
}

impl EvvSettings {
    /// One line naming what is wrong, or `Ok`. Run when the configuration is loaded.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            (
                "default_geofence_radius_m",
                u64::from(self.default_geofence_radius_m),
            ),
            ("missed_visit_check_secs", self.missed_visit_check_secs),
            (
                "open_visit_limit_minutes",
                u64::from(self.open_visit_limit_minutes),
            ),
        ] {
            if value == 0 {
                return Err(format!("evv.{key} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Errors of this module's background work and derivation.
#[derive(Debug, thiserror::Error)]
pub enum EvvError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("encoding a check record: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<EvvError> for crate::http::ApiError {
    fn from(e: EvvError) -> Self {
        match e {
            EvvError::Db(e) => e.into(),
            EvvError::Pool(e) => e.into(),
            EvvError::Json(e) => Self::Unexpected(e.into()),
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::routes(cfg);
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub use routes::api;

/// How far before the checkpoint the start-up catch-up looks again: a batch can commit after
/// a later one whose `received_at` is newer, and deriving twice is harmless.
const CATCH_UP_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// Starts the background work: visits derived from `committed` (every newly stored event) and
/// the missed-visit check, both until `shutdown` fires; alerts go to `live`.
pub fn start(
    pool: deadpool_postgres::Pool,
    live: LiveHub,
    settings: EvvSettings,
    mut committed: mpsc::Receiver<CommittedBatch>,
    mut shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    vec![tokio::spawn(async move {
        // Devices still to derive (new events, or a failed attempt to retry).
        let mut pending: BTreeSet<i32> = BTreeSet::new();
        let mut newest: Option<chrono::DateTime<chrono::Utc>> = None;
        let mut caught_up = false;
        let mut tick = tokio::time::interval(Duration::from_secs(settings.missed_visit_check_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !caught_up {
                match catch_up(&pool).await {
                    Ok((devices, at)) => {
                        pending.extend(devices);
                        newest = newest.max(at);
                        caught_up = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "visits: catch-up failed; will retry"),
                }
            }
            if !pending.is_empty() {
                let devices: Vec<i32> = pending.iter().copied().collect();
                match derive_and_clear(&pool, &live, &settings, &devices, newest).await {
                    Ok(()) => pending.clear(),
                    Err(e) => tracing::warn!(error = %e, "visits: derivation failed; will retry"),
                }
            }
            tokio::select! {
                batch = committed.recv() => match batch {
                    Some(batch) => {
                        for e in batch.iter().filter(|e| is_check(&e.event)) {
                            pending.insert(e.device_id);
                            newest = newest.max(Some(e.received_at));
                        }
                        // Take whatever else is already queued before deriving.
                        while let Ok(batch) = committed.try_recv() {
                            for e in batch.iter().filter(|e| is_check(&e.event)) {
                                pending.insert(e.device_id);
                                newest = newest.max(Some(e.received_at));
                            }
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if let Err(e) = check_missed_visits(&pool, &live, &settings, chrono::Utc::now()).await {
                        tracing::warn!(error = %e, "visits: missed-visit check failed");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    })]
}

fn is_check(event: &homeward_proto::Event) -> bool {
    matches!(
        event.kind(),
        homeward_proto::EventKind::CheckIn | homeward_proto::EventKind::CheckOut
    )
}

/// The devices with check events stored since the checkpoint (less a margin).
async fn catch_up(
    pool: &deadpool_postgres::Pool,
) -> Result<(Vec<i32>, Option<chrono::DateTime<chrono::Utc>>), EvvError> {
    let client = pool.get().await?;
    let since = derive::load_checkpoint(&client)
        .await?
        .map(|c| c - CATCH_UP_MARGIN);
    derive::devices_with_checks_since(&client, since).await
}

/// Derives the devices, clears the alerts their visits answer, moves the checkpoint.
async fn derive_and_clear(
    pool: &deadpool_postgres::Pool,
    live: &LiveHub,
    settings: &EvvSettings,
    devices: &[i32],
    newest: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), EvvError> {
    let mut client = pool.get().await?;
    derive::derive_devices(&mut client, settings, devices).await?;
    let now = chrono::Utc::now();
    let tx = client.transaction().await?;
    let cleared = missed::clear_in(&tx, now, None).await?;
    if let Some(at) = newest {
        derive::save_checkpoint(&tx, at).await?;
    }
    tx.commit().await?;
    missed::publish(live, now, &cleared);
    metrics::counter!("homeward_evv_devices_derived_total").increment(devices.len() as u64);
    Ok(())
}
