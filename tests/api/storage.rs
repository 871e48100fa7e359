//! Migrations and both storage paths. Each test checks the mode its database is in: native
//! partitioning on plain PostgreSQL (this machine), hypertables and policies when
//! `HOMEWARD_TEST_DATABASE_URL` points at a TimescaleDB server (or the embedded test cluster
//! found TimescaleDB installed and preloaded it).

use chrono::{Duration, TimeZone, Utc};
use homeward::config::StorageSettings;
use homeward::db::{build_pool, maintenance, migrate, roles, StorageMode};
use homeward_testkit::cluster::{role_config, TestServer};
use tokio_postgres::NoTls;

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// The mode a migrated database is in.
async fn mode_of(client: &tokio_postgres::Client) -> StorageMode {
    migrate::recorded_mode(client)
        .await
        .unwrap()
        .expect("a migrated database records its mode")
}

/// The mode the migrations must choose on this server, from its catalogues.
async fn expected_mode(client: &tokio_postgres::Client) -> StorageMode {
    let probe = migrate::probe_timescale(client).await.unwrap();
    match migrate::decide_mode(probe) {
        migrate::ModeDecision::TryTimescale => StorageMode::TimescaleDb,
        migrate::ModeDecision::Native(_) => StorageMode::Native,
    }
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

    let expected = expected_mode(&client).await;
    let first = migrate::run(&mut client).await.unwrap();
    assert_eq!(first.mode, expected);
    // The reason is given exactly when TimescaleDB is not used.
    assert_eq!(
        first.native_reason.is_some(),
        first.mode == StorageMode::Native,
        "{:?}",
        first.native_reason
    );
    // Deciding never costs the migration its connection (a failed CREATE EXTENSION of an
    // installed but not preloaded TimescaleDB would).
    let alive: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(alive, 1);
    assert_eq!(mode_of(&client).await, first.mode);
    assert_eq!(
        first.applied.len(),
        migrate::all()
            .unwrap()
            .iter()
            .filter(|m| m.only_for.is_none_or(|only| only == first.mode))
            .count()
    );
    let before = schema_snapshot(&client).await;
    match first.mode {
        StorageMode::Native => assert!(
            before.iter().any(|l| l == "rel events p"),
            "events is partitioned"
        ),
        StorageMode::TimescaleDb => {
            let hypertable: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                                     WHERE hypertable_name = 'events')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert!(hypertable, "events is a hypertable");
        }
    }

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
async fn time_series_tables_have_the_layout_of_their_mode() {
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
    if mode_of(&client).await == StorageMode::TimescaleDb {
        return timescale_layout(&client).await;
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
    // No TimescaleDB objects in native mode.
    let extension: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!extension);
}

/// TimescaleDB: every time-series table is a hypertable on its time column with one-day
/// chunks, compressed after 7 days by a policy.
async fn timescale_layout(client: &tokio_postgres::Client) {
    let tables: Vec<(String, String)> = client
        .query(
            "SELECT table_name, time_column FROM homeward_timeseries_tables ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(tables.iter().any(|(t, _)| t == "events"), "{tables:?}");
    for (table, column) in &tables {
        let row = client
            .query_one(
                "SELECT h.compression_enabled, d.column_name::text, d.time_interval::text
                   FROM timescaledb_information.hypertables h
                   JOIN timescaledb_information.dimensions d
                     ON d.hypertable_schema = h.hypertable_schema
                    AND d.hypertable_name = h.hypertable_name
                  WHERE h.hypertable_name = $1",
                &[table],
            )
            .await
            .unwrap_or_else(|e| panic!("{table} is a hypertable: {e}"));
        let compressed: bool = row.get(0);
        let dimension: String = row.get(1);
        let interval: Option<String> = row.get(2);
        assert!(compressed, "{table} is compressed");
        assert_eq!(&dimension, column);
        assert_eq!(interval.as_deref(), Some("1 day"), "{table}");
        let compress_after: Option<String> = client
            .query_opt(
                "SELECT (config->>'compress_after')::interval::text
                   FROM timescaledb_information.jobs
                  WHERE proc_name = 'policy_compression' AND hypertable_name = $1",
                &[table],
            )
            .await
            .unwrap()
            .and_then(|r| r.get(0));
        assert_eq!(compress_after.as_deref(), Some("7 days"), "{table}");
    }
}

/// TimescaleDB: maintenance sets the retention policy from the configuration and replaces it
/// when the setting changes. (Native retention is tested below.)
#[tokio::test]
async fn timescale_retention_policy_follows_the_setting() {
    let server = TestServer::get().await.unwrap();
    let config = server.fresh_database().await.unwrap();
    let client = connect(&config).await;
    if mode_of(&client).await != StorageMode::TimescaleDb {
        eprintln!("native mode: TimescaleDB retention is not in play (see retention_drops_expired_partitions_and_default_rows)");
        return;
    }
    // As in production: maintenance runs as the service role, through the owner's functions.
    let pool = build_pool(role_config(&config, roles::SERVICE_ROLE), 2, 5);
    let drop_after = || {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT (config->>'drop_after')::interval::text
                       FROM timescaledb_information.jobs
                      WHERE proc_name = 'policy_retention' AND hypertable_name = 'events'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    for days in [30, 10, 10] {
        let settings = StorageSettings {
            retention_days: days,
            partitions_ahead_days: 2,
            maintenance_interval_minutes: 60,
        };
        let report = maintenance::run_once(&pool, StorageMode::TimescaleDb, &settings, Utc::now())
            .await
            .unwrap();
        assert!(report.created.is_empty() && report.dropped.is_empty());
        assert_eq!(
            drop_after().await,
            [format!("{days} days")],
            "one policy, replaced"
        );
    }
}

#[tokio::test]
async fn rows_outside_every_partition_are_stored_and_moved_when_their_partition_appears() {
    let server = TestServer::get().await.unwrap();
    let config = server.fresh_database().await.unwrap();
    // As in production: maintenance runs as the service role, through the owner's functions.
    let pool = build_pool(role_config(&config, roles::SERVICE_ROLE), 2, 5);
    let client = connect(&config).await;
    if mode_of(&client).await != StorageMode::Native {
        eprintln!("TimescaleDB mode: no native partitions (see timescale_retention_policy_follows_the_setting)");
        return;
    }
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
    // As in production: maintenance runs as the service role, through the owner's functions.
    let pool = build_pool(role_config(&config, roles::SERVICE_ROLE), 2, 5);
    let client = connect(&config).await;
    if mode_of(&client).await != StorageMode::Native {
        eprintln!("TimescaleDB mode: no native partitions (see timescale_retention_policy_follows_the_setting)");
        return;
    }
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

/// The template every test database is cloned from is sealed: a template nobody can connect
/// to, so no session (TimescaleDB's scheduler keeps one in every database with the extension)
/// can make a clone fail with "source database is being accessed by other users".
#[tokio::test]
async fn the_test_template_is_sealed_against_connections() {
    let server = TestServer::get().await.unwrap();
    let config = server.fresh_database().await.unwrap();
    let client = connect(&config).await;
    let row = client
        .query_one(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1",
            &[&server.template()],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1)),
        (true, false)
    );
    // A clone is an ordinary database: connectable, not a template.
    let row = client
        .query_one(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1)),
        (false, true)
    );
    let sessions: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            &[&server.template()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 0);
}
