//! Migrations and the native partitioning path.

use chrono::{Duration, TimeZone, Utc};
use homeward::config::StorageSettings;
use homeward::db::test_cluster::TestServer;
use homeward::db::{build_pool, maintenance, migrate, StorageMode};
use tokio_postgres::NoTls;

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Everything a migration could change: relations, columns, indexes, constraints, functions.
async fn schema_snapshot(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = client
        .query(
            "SELECT 'rel ' || c.relname || ' ' || c.relkind::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
             UNION ALL
             SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
               FROM information_schema.columns WHERE table_schema = 'public'
             UNION ALL
             SELECT 'con ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
              WHERE connamespace = 'public'::regnamespace
             UNION ALL
             SELECT 'fn ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
             UNION ALL
             SELECT 'mig ' || name FROM homeward_migrations
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_again_change_nothing() {
    let server = TestServer::get().await.unwrap();
    let config = server.empty_database().await.unwrap();
    let mut client = connect(&config).await;

    let first = migrate::run(&mut client).await.unwrap();
    assert_eq!(
        first.mode,
        StorageMode::Native,
        "no TimescaleDB on this machine"
    );
    assert_eq!(
        first.applied.len(),
        migrate::all()
            .unwrap()
            .iter()
            .filter(|m| m.only_for != Some(StorageMode::TimescaleDb))
            .count()
    );
    let before = schema_snapshot(&client).await;
    assert!(
        before.iter().any(|l| l == "rel events p"),
        "events is partitioned"
    );

    let second = migrate::run(&mut client).await.unwrap();
    assert!(second.applied.is_empty(), "{:?}", second.applied);
    assert_eq!(schema_snapshot(&client).await, before);
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let server = TestServer::get().await.unwrap();
    let config = server.fresh_database().await.unwrap();
    let mut client = connect(&config).await;
    client
        .execute(
            "UPDATE homeward_migrations SET checksum = '\\x00' WHERE name = '0001_core.sql'",
            &[],
        )
        .await
        .unwrap();
    let err = migrate::run(&mut client).await.unwrap_err().to_string();
    assert!(
        err.contains("0001_core.sql") && err.contains("edited"),
        "{err}"
    );
}

#[tokio::test]
async fn native_partitioning_has_the_expected_tables() {
    let server = TestServer::get().await.unwrap();
    let config = server.fresh_database().await.unwrap();
    let client = connect(&config).await;
    for table in [
        "organisations",
        "contracts",
        "users",
        "api_tokens",
        "people",
        "workers",
        "devices",
        "events",
        "dead_letters",
    ] {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .unwrap()
            .get(0);
        assert!(exists, "table {table}");
    }
    // events: partitioned by range on occurred_at, with a DEFAULT partition.
    let strategy: String = client
        .query_one("SELECT pg_get_partkeydef('events'::regclass)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(strategy, "RANGE (occurred_at)");
    let default: String = client
        .query_one(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'events'::regclass AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default, "events_default");
    // Integer keys on the hot table.
    let device_type: String = client
        .query_one(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'device_id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(device_type, "integer");
}

#[tokio::test]
async fn rows_outside_every_partition_are_stored_and_moved_when_their_partition_appears() {
    let server = TestServer::get().await.unwrap();
    let config = server.fresh_database().await.unwrap();
    let pool = build_pool(config.clone(), 2, 5);
    let client = connect(&config).await;
    // Retention long enough to keep the 1999 row.
    let settings = StorageSettings {
        retention_days: 20_000,
        partitions_ahead_days: 2,
        maintenance_interval_minutes: 60,
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
    let report = maintenance::run_once(&pool, StorageMode::Native, &settings, now)
        .await
        .unwrap();
    assert_eq!(
        report.created,
        vec![
            "events_p20261122",
            "events_p20261123",
            "events_p20261124",
            "events_p20261125"
        ]
    );

    // A device with a clock in 1999 and one far ahead: both stored, in DEFAULT.
    let insert = "INSERT INTO events (device_id, seq, occurred_at, kind) VALUES ($1, $2, $3, 16)";
    let old = Utc.with_ymd_and_hms(1999, 1, 1, 0, 0, 0).unwrap();
    let future = now + Duration::days(30);
    client.execute(insert, &[&1i32, &1i64, &old]).await.unwrap();
    client
        .execute(insert, &[&1i32, &2i64, &future])
        .await
        .unwrap();
    client.execute(insert, &[&1i32, &3i64, &now]).await.unwrap();
    let where_is = |seq: i64| {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT tableoid::regclass::text FROM events WHERE device_id = 1 AND seq = $1",
                    &[&seq],
                )
                .await
                .unwrap();
            row.get::<_, String>(0)
        }
    };
    assert_eq!(where_is(1).await, "events_default");
    assert_eq!(where_is(2).await, "events_default");
    assert_eq!(where_is(3).await, "events_p20261123");

    // Thirty days later the future row's day gets its partition; the row moves into it.
    let later = maintenance::run_once(&pool, StorageMode::Native, &settings, future)
        .await
        .unwrap();
    assert!(later.created.contains(&"events_p20261223".to_string()));
    assert_eq!(later.moved_rows, 1);
    assert_eq!(where_is(2).await, "events_p20261223");
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3, "nothing lost, nothing doubled");

    // The same (device, seq, time) again is refused by the key.
    let again = client
        .execute(
            &format!("{insert} ON CONFLICT DO NOTHING"),
            &[&1i32, &3i64, &now],
        )
        .await
        .unwrap();
    assert_eq!(again, 0);
}

/// Expired partitions and DEFAULT rows go; partitions and DEFAULT rows inside the retention
/// window stay, down to the boundary day (a retention that drops everything turns this red).
#[tokio::test]
async fn retention_drops_expired_partitions_and_default_rows() {
    let server = TestServer::get().await.unwrap();
    let config = server.fresh_database().await.unwrap();
    let pool = build_pool(config.clone(), 2, 5);
    let client = connect(&config).await;
    let settings = StorageSettings {
        retention_days: 10,
        partitions_ahead_days: 1,
        maintenance_interval_minutes: 60,
    };
    let at = |d: u32, h: u32, m: u32, s: u32| Utc.with_ymd_and_hms(2026, 1, d, h, m, s).unwrap();
    // Partitions for 31 Dec to 2 Jan and for 22 to 24 Jan (with a retention that drops none).
    let keep_all = StorageSettings {
        retention_days: 3650,
        ..settings.clone()
    };
    for now in [at(1, 12, 0, 0), at(23, 12, 0, 0)] {
        let report = maintenance::run_once(&pool, StorageMode::Native, &keep_all, now)
            .await
            .unwrap();
        assert_eq!(report.created.len(), 3, "{report:?}");
    }
    let insert = "INSERT INTO events (device_id, seq, occurred_at, kind) VALUES (1, $1, $2, 16)";
    let rows = [
        // (seq, time, kept): with `now` on 31 Jan the cutoff is 21 Jan 00:00.
        (1i64, at(1, 12, 0, 0), false), // partition 1 Jan
        (2, Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap(), false), // DEFAULT, long ago
        (3, at(20, 23, 59, 59), false), // DEFAULT, a second early
        (4, at(21, 0, 0, 0), true),     // DEFAULT, on the cutoff
        (5, at(22, 8, 0, 0), true),     // partition 22 Jan
        (6, at(24, 23, 0, 0), true),    // partition 24 Jan
        (7, at(27, 9, 0, 0), true),     // DEFAULT, recent
    ];
    for (seq, t, _) in &rows {
        client.execute(insert, &[seq, t]).await.unwrap();
    }
    let report = maintenance::run_once(&pool, StorageMode::Native, &settings, at(31, 12, 0, 0))
        .await
        .unwrap();
    let mut dropped = report.dropped.clone();
    dropped.sort();
    assert_eq!(
        dropped,
        ["events_p20251231", "events_p20260101", "events_p20260102"],
        "only partitions wholly before the cutoff go"
    );
    let left: Vec<(i64, String)> = client
        .query(
            "SELECT seq, tableoid::regclass::text FROM events ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        left,
        [
            (4, "events_default".to_string()),
            (5, "events_p20260122".to_string()),
            (6, "events_p20260124".to_string()),
            (7, "events_default".to_string()),
        ],
        "kept: {:?}",
        rows.iter().filter(|r| r.2).map(|r| r.0).collect::<Vec<_>>()
    );
}
