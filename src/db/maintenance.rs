//! Storage maintenance, run at start-up and then periodically, by one instance at a time
//! (a PostgreSQL advisory lock).
//!
//! - Native partitioning: creates one partition per UTC day from yesterday to
//!   `storage.partitions_ahead_days` ahead, moving any rows that already landed in the DEFAULT
//!   partition for that day into it; drops partitions (and deletes DEFAULT rows) older than
//!   `storage.retention_days`.
//! - TimescaleDB: chunks are created by TimescaleDB itself; this sets the retention policy from
//!   the configuration (`add_retention_policy`), replacing one with a different interval.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
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
        let tables: Vec<(String, String)> = client
            .query(
                "SELECT table_name, time_column FROM homeward_timeseries_tables ORDER BY 1",
                &[],
            )
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut report = MaintenanceReport::default();
        for (table, column) in tables {
            match mode {
                StorageMode::Native => {
                    native_table(&mut client, &table, &column, settings, now, &mut report).await?
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

fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

fn day_start(day: NaiveDate) -> String {
    format!("{} 00:00:00+00", day.format("%Y-%m-%d"))
}

async fn native_table(
    client: &mut Client,
    table: &str,
    column: &str,
    settings: &StorageSettings,
    now: DateTime<Utc>,
    report: &mut MaintenanceReport,
) -> Result<(), super::DbError> {
    let existing: Vec<String> = client
        .query(
            "SELECT c.relname FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = $1::text::regclass",
            &[&table],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let today = now.date_naive();
    let first = today - ChronoDuration::days(1);
    let last = today + ChronoDuration::days(i64::from(settings.partitions_ahead_days));
    let mut day = first;
    while day <= last {
        let name = partition_name(table, day);
        if !existing.contains(&name) {
            report.moved_rows += create_partition(client, table, column, &name, day).await?;
            report.created.push(name);
        }
        day += ChronoDuration::days(1);
    }
    // Retention: whole days strictly before the cutoff go.
    let cutoff = today - ChronoDuration::days(i64::from(settings.retention_days));
    for name in &existing {
        let Some(date) = name
            .strip_prefix(&format!("{table}_p"))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        else {
            continue;
        };
        if date < cutoff {
            client
                .batch_execute(&format!("DROP TABLE {}", quote_ident(name)))
                .await?;
            report.dropped.push(name.clone());
        }
    }
    client
        .execute(
            &format!(
                "DELETE FROM {} WHERE {} < $1::text::timestamptz",
                quote_ident(&format!("{table}_default")),
                quote_ident(column)
            ),
            &[&day_start(cutoff)],
        )
        .await?;
    Ok(())
}

async fn create_partition(
    client: &mut Client,
    table: &str,
    column: &str,
    name: &str,
    day: NaiveDate,
) -> Result<u64, super::DbError> {
    let (from, to) = (day_start(day), day_start(day + ChronoDuration::days(1)));
    let (t, p, d, c) = (
        quote_ident(table),
        quote_ident(name),
        quote_ident(&format!("{table}_default")),
        quote_ident(column),
    );
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "CREATE TABLE {p} (LIKE {t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ))
    .await?;
    // Rows that arrived for this day before its partition existed sit in DEFAULT; PostgreSQL
    // refuses to attach a partition whose range DEFAULT still holds rows of.
    let moved = tx
        .execute(
            &format!(
                "WITH moved AS (DELETE FROM {d} WHERE {c} >= $1::text::timestamptz AND {c} < $2::text::timestamptz RETURNING *)
                 INSERT INTO {p} SELECT * FROM moved"
            ),
            &[&from, &to],
        )
        .await?;
    tx.batch_execute(&format!(
        "ALTER TABLE {t} ATTACH PARTITION {p} FOR VALUES FROM ('{from}') TO ('{to}')"
    ))
    .await?;
    tx.commit().await?;
    Ok(moved)
}

async fn timescale_retention(
    client: &Client,
    table: &str,
    settings: &StorageSettings,
) -> Result<(), super::DbError> {
    let wanted = format!("{} days", settings.retention_days);
    let current: Option<String> = client
        .query_opt(
            "SELECT config->>'drop_after' FROM timescaledb_information.jobs
              WHERE proc_name = 'policy_retention' AND hypertable_name = $1",
            &[&table],
        )
        .await?
        .and_then(|r| r.get(0));
    if current.as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    if current.is_some() {
        client
            .execute(
                "SELECT remove_retention_policy($1::text::regclass, if_exists => true)",
                &[&table],
            )
            .await?;
    }
    client
        .execute(
            "SELECT add_retention_policy($1::text::regclass, drop_after => $2::text::interval)",
            &[&table, &wanted],
        )
        .await?;
    Ok(())
}

/// Quotes an identifier we built ourselves (table names from our own catalogue).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
