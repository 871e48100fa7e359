//! Storage maintenance, run at start-up and then periodically, by one instance at a time
//! (a PostgreSQL advisory lock).
//!
//! - Native partitioning: creates one partition per UTC day from yesterday to
//!   `storage.partitions_ahead_days` ahead, moving any rows that already landed in the DEFAULT
//!   partition for that day into it; drops partitions (and deletes DEFAULT rows) older than
//!   `storage.retention_days`.
//! - TimescaleDB: chunks are created by TimescaleDB itself; this sets the retention policy from
//!   the configuration (`add_retention_policy`), replacing one with a different interval.
//!
//! It runs as the service role, which may not create, drop or delete from tables: the work is
//! done by the owner's SECURITY DEFINER functions of migration 0018 (`homeward_add_partition`,
//! `homeward_drop_partitions_before`, `homeward_set_retention`), which only accept time-series
//! tables and only the service role may call.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::Client;

use super::StorageMode;
use crate::config::StorageSettings;

const MAINTENANCE_LOCK: i64 = 0x686f_6d65_6d61_696e;

#[derive(Debug, Default, Clone)]
pub struct MaintenanceReport {
    pub skipped_locked: bool,
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    pub moved_rows: u64,
}

/// One maintenance pass at time `now`.
pub async fn run_once(
    pool: &Pool,
    mode: StorageMode,
    settings: &StorageSettings,
    now: DateTime<Utc>,
) -> Result<MaintenanceReport, super::DbError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| super::DbError::Unavailable(e.to_string()))?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTENANCE_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(MaintenanceReport {
            skipped_locked: true,
            ..Default::default()
        });
    }
    let result = async {
        let tables: Vec<String> = client
            .query(
                "SELECT table_name FROM homeward_timeseries_tables ORDER BY 1",
                &[],
            )
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let mut report = MaintenanceReport::default();
        for table in tables {
            match mode {
                StorageMode::Native => {
                    native_table(&mut client, &table, settings, now, &mut report).await?
                }
                StorageMode::TimescaleDb => timescale_retention(&client, &table, settings).await?,
            }
        }
        Ok::<_, super::DbError>(report)
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MAINTENANCE_LOCK])
        .await;
    result
}

/// Runs [`run_once`] every `maintenance_interval_minutes` until `shutdown` resolves.
pub async fn run_periodically(
    pool: Pool,
    mode: StorageMode,
    settings: StorageSettings,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let period = std::time::Duration::from_secs(settings.maintenance_interval_minutes * 60);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // start-up already ran a pass
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        match run_once(&pool, mode, &settings, Utc::now()).await {
            Ok(report) if !report.created.is_empty() || !report.dropped.is_empty() => {
                tracing::info!(created = ?report.created, dropped = ?report.dropped, "storage maintenance")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "storage maintenance failed; will retry"),
        }
    }
}

async fn native_table(
    client: &mut Client,
    table: &str,
    settings: &StorageSettings,
    now: DateTime<Utc>,
    report: &mut MaintenanceReport,
) -> Result<(), super::DbError> {
    let today = now.date_naive();
    let first = today - ChronoDuration::days(1);
    let last = today + ChronoDuration::days(i64::from(settings.partitions_ahead_days));
    let mut day = first;
    while day <= last {
        let row = client
            .query_one(
                "SELECT part_name, moved FROM homeward_add_partition($1, $2)",
                &[&table, &day],
            )
            .await?;
        if let Some(name) = row.get::<_, Option<String>>(0) {
            report.moved_rows += u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            report.created.push(name);
        }
        day += ChronoDuration::days(1);
    }
    // Retention: whole days strictly before the cutoff go.
    let cutoff = today - ChronoDuration::days(i64::from(settings.retention_days));
    let dropped: Vec<String> = client
        .query_one(
            "SELECT homeward_drop_partitions_before($1, $2)",
            &[&table, &cutoff],
        )
        .await?
        .get(0);
    report.dropped.extend(dropped);
    Ok(())
}

async fn timescale_retention(
    client: &Client,
    table: &str,
    settings: &StorageSettings,
) -> Result<(), super::DbError> {
    let days = i32::try_from(settings.retention_days).unwrap_or(i32::MAX);
    client
        .execute("SELECT homeward_set_retention($1, $2)", &[&table, &days])
        .await?;
    Ok(())
}
