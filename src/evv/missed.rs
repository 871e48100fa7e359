//! Missed-visit alerts: a scheduled visit with no check-in by its window's start plus the grace
//! period raises an alert for the provider; it clears when the visit starts or is cancelled.
//!
//! - Time comes in as a parameter (`now`), so tests drive the clock and never sleep.
//! - Several instances may run the check: a transaction-scoped advisory lock lets one do the
//!   work at a time, and the primary key on `missed_visit_alerts.scheduled_visit_id` with
//!   `INSERT ... ON CONFLICT DO NOTHING` makes raising the same alert twice impossible anyway.
//! - Each change is pushed on the live stream (topic `missed_visit`) after its commit.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;

use super::derive::{LOCK_CLASS, LOCK_MISSED};
use super::{EvvError, EvvSettings};
use crate::live::{LiveEvent, LiveHub};

/// One alert's change, as pushed and listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertChange {
    #[serde(skip)]
    pub organisation_id: i32,
    pub scheduled_visit_id: i64,
    pub reference: String,
    pub person_id: i32,
    pub worker_id: Option<i32>,
    pub window_start: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// `raised` or `cleared`.
    pub state: &'static str,
    /// For a cleared alert: `visit_started` or `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleared_reason: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct MissedReport {
    pub raised: Vec<AlertChange>,
    pub cleared: Vec<AlertChange>,
}

/// How far back a window may lie and still raise an alert: older schedules (entered after the
/// fact) show as missing check-ins among the exceptions, but do not page anyone.
const LOOKBACK: Duration = Duration::hours(24);

/// Raises the alerts that are due at `now` and clears those whose visit started or was
/// cancelled; publishes each change. Returns what changed (empty when another instance holds
/// the lock).
pub async fn check_missed_visits(
    pool: &deadpool_postgres::Pool,
    live: &LiveHub,
    settings: &EvvSettings,
    now: DateTime<Utc>,
) -> Result<MissedReport, EvvError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_MISSED],
        )
        .await?
        .get(0);
    if !locked {
        return Ok(MissedReport::default());
    }
    let grace = Duration::minutes(i64::from(settings.missed_visit_grace_minutes));
    let rows = tx
        .query(
            "WITH due AS (
                 SELECT s.id, s.organisation_id, s.window_start + ($2::float8 * interval '1 second') AS due_at
                   FROM scheduled_visits s
                  WHERE s.cancelled_at IS NULL
                    AND s.window_start + ($2::float8 * interval '1 second') <= $1
                    AND s.window_start + ($2::float8 * interval '1 second') > $1 - ($3::float8 * interval '1 second')
                    AND NOT EXISTS (SELECT 1 FROM visits v
                                     WHERE v.scheduled_visit_id = s.id
                                       AND (v.started_at IS NOT NULL OR v.adjusted_start IS NOT NULL)))
             INSERT INTO missed_visit_alerts (scheduled_visit_id, organisation_id, due_at, raised_at)
             SELECT id, organisation_id, due_at, $1 FROM due
             ON CONFLICT (scheduled_visit_id) DO NOTHING
             RETURNING scheduled_visit_id",
            &[&now, &to_interval(grace), &to_interval(LOOKBACK)],
        )
        .await?;
    let raised_ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let raised = describe(&tx, &raised_ids, "raised").await?;
    let cleared = clear_in(&tx, now, None).await?;
    tx.commit().await?;
    publish(live, now, &raised);
    publish(live, now, &cleared);
    Ok(MissedReport { raised, cleared })
}

/// Clears open alerts whose visit has started or was cancelled (of one organisation, or all).
/// Call inside the transaction that made the change; publish what it returns after commit.
pub async fn clear_in(
    tx: &impl GenericClient,
    now: DateTime<Utc>,
    organisation: Option<i32>,
) -> Result<Vec<AlertChange>, EvvError> {
    let rows = tx
        .query(
            "UPDATE missed_visit_alerts a
                SET cleared_at = $1,
                    cleared_reason = CASE WHEN s.cancelled_at IS NOT NULL THEN 'cancelled'
                                          ELSE 'visit_started' END
               FROM scheduled_visits s
              WHERE s.id = a.scheduled_visit_id AND a.cleared_at IS NULL
                AND ($2::integer IS NULL OR a.organisation_id = $2)
                AND (s.cancelled_at IS NOT NULL
                     OR EXISTS (SELECT 1 FROM visits v
                                 WHERE v.scheduled_visit_id = s.id
                                   AND (v.started_at IS NOT NULL OR v.adjusted_start IS NOT NULL)))
              RETURNING a.scheduled_visit_id",
            &[&now, &organisation],
        )
        .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    describe(tx, &ids, "cleared").await
}

/// Withdraws the open alert of a scheduled visit whose window moved: it was due at the old
/// time. Returned as cleared with the reason `rescheduled` (the row goes; the next check raises
/// it again if the new window passes with no check-in). Call inside the transaction that moved
/// the window; publish what it returns after commit.
pub async fn withdraw_in(
    tx: &impl GenericClient,
    scheduled_visit_id: i64,
) -> Result<Vec<AlertChange>, EvvError> {
    let open: Vec<i64> = tx
        .query(
            "SELECT scheduled_visit_id FROM missed_visit_alerts
              WHERE scheduled_visit_id = $1 AND cleared_at IS NULL",
            &[&scheduled_visit_id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut changes = describe(tx, &open, "cleared").await?;
    for change in &mut changes {
        change.cleared_reason = Some("rescheduled".into());
    }
    tx.execute(
        "DELETE FROM missed_visit_alerts WHERE scheduled_visit_id = ANY($1)",
        &[&open],
    )
    .await?;
    Ok(changes)
}

async fn describe(
    tx: &impl GenericClient,
    ids: &[i64],
    state: &'static str,
) -> Result<Vec<AlertChange>, EvvError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "SELECT s.id, s.organisation_id, s.reference, s.person_id, s.worker_id,
                    s.window_start, a.due_at, a.cleared_reason
               FROM missed_visit_alerts a JOIN scheduled_visits s ON s.id = a.scheduled_visit_id
              WHERE a.scheduled_visit_id = ANY($1) ORDER BY s.id",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AlertChange {
            scheduled_visit_id: r.get(0),
            organisation_id: r.get(1),
            reference: r.get(2),
            person_id: r.get(3),
            worker_id: r.get(4),
            window_start: r.get(5),
            due_at: r.get(6),
            state,
            cleared_reason: r.get(7),
        })
        .collect())
}

pub fn publish(live: &LiveHub, now: DateTime<Utc>, changes: &[AlertChange]) {
    for change in changes {
        live.publish(LiveEvent {
            organisation_id: change.organisation_id,
            topic: "missed_visit",
            at: now,
            data: serde_json::to_value(change).unwrap_or_default(),
        });
    }
    if !changes.is_empty() {
        let state = changes[0].state;
        metrics::counter!("homeward_evv_missed_visit_alerts_total", "state" => state)
            .increment(changes.len() as u64);
    }
}

/// Seconds, for `$n::float8 * interval '1 second'` (no interval type in tokio-postgres).
fn to_interval(d: Duration) -> f64 {
    d.num_seconds() as f64
}
