//! Database work of the harness: fixtures (organisation, staff user, devices), the COPY
//! baseline, and the verification pass that counts every (device, seq).

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures_util::SinkExt;
use homeward::auth::{self, OrgKind, Role};
use homeward::devices::{create_device, DeviceKind};
use homeward::ingest::copy::{self, EventRow};
use serde::Serialize;
use tokio_postgres::{Client, Config, NoTls};

pub async fn connect(config: &Config) -> anyhow::Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .context("connecting to the load test's database")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

pub struct Fixtures {
    pub token: String,
    pub devices: Vec<(String, String)>,
    pub phones: Vec<(String, String)>,
    pub baseline_device_ids: Vec<i32>,
}

/// One provider organisation with a provider_staff user, `devices` hubs (`lt-d<i>`), `phones`
/// phones (`lt-p<i>`) and the baseline's devices (`lt-copy<i>`, never connected).
pub async fn create_fixtures(
    client: &Client,
    run_tag: &str,
    devices: usize,
    phones: usize,
    baseline: usize,
) -> anyhow::Result<Fixtures> {
    let org = auth::create_organisation(client, &format!("Load test {run_tag}"), OrgKind::Provider)
        .await
        .context("creating the organisation")?;
    let (_, token) = auth::create_user(client, &org, "load test staff", Role::ProviderStaff)
        .await
        .context("creating the staff user")?;
    let mut out = Fixtures {
        token,
        devices: Vec::with_capacity(devices),
        phones: Vec::with_capacity(phones),
        baseline_device_ids: Vec::new(),
    };
    client.batch_execute("BEGIN").await?;
    for i in 0..devices {
        let uid = format!("lt-d{i}");
        let (_, secret) = create_device(client, &org, &uid, DeviceKind::Hub).await?;
        out.devices.push((uid, secret));
    }
    for i in 0..phones {
        let uid = format!("lt-p{i}");
        let (_, secret) = create_device(client, &org, &uid, DeviceKind::Phone).await?;
        out.phones.push((uid, secret));
    }
    for i in 0..baseline {
        let (id, _) = create_device(client, &org, &format!("lt-copy{i}"), DeviceKind::Hub).await?;
        out.baseline_device_ids.push(id);
    }
    client.batch_execute("COMMIT").await?;
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineResult {
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    pub batch_rows: usize,
    pub connections: usize,
    pub method: &'static str,
}

/// PostgreSQL alone: binary COPY of heartbeat rows into a temporary staging table, then one
/// `INSERT ... ON CONFLICT DO NOTHING RETURNING` into `events`, one transaction per batch, as
/// the server's writer does (src/ingest/writer.rs), for `duration`, on `connections`
/// connections at once (each with its own share of the devices; 1 is one COPY stream).
/// Sequence numbers start after `after_seq`, so a second baseline on the same devices inserts
/// new rows rather than meeting the first one's. Rows are stamped as received
/// [`BASELINE_RECEIVED_AGE`] ago.
pub async fn copy_baseline(
    config: &Config,
    device_ids: &[i32],
    batch_rows: usize,
    connections: usize,
    duration: Duration,
    after_seq: i64,
) -> anyhow::Result<BaselineResult> {
    let connections = connections.clamp(1, device_ids.len().max(1));
    let started = Instant::now();
    let mut streams = Vec::with_capacity(connections);
    for k in 0..connections {
        let devices: Vec<i32> = device_ids
            .iter()
            .skip(k)
            .step_by(connections)
            .copied()
            .collect();
        let config = config.clone();
        streams.push(tokio::spawn(async move {
            copy_stream(&config, &devices, batch_rows, started, duration, after_seq).await
        }));
    }
    let mut rows_done = 0u64;
    for stream in streams {
        rows_done += stream.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(BaselineResult {
        rows: rows_done,
        seconds: (seconds * 100.0).round() / 100.0,
        rows_per_s: (rows_done as f64 / seconds).round(),
        batch_rows,
        connections,
        method: "binary COPY into a temporary staging table, INSERT ... ON CONFLICT DO NOTHING RETURNING into events, one transaction per batch",
    })
}

/// How long ago the baseline's rows say they were received: a day, past the start-up
/// catch-up of a Homeward that restarts in a scenario (it derives again what was received in
/// the two minutes before its cursor), so that rows Homeward never received do not become
/// work of the run measured. Where rows go (by `occurred_at`, now) and what they cost to
/// store are unchanged.
pub const BASELINE_RECEIVED_AGE: chrono::Duration = chrono::Duration::days(1);

/// One connection's share of the baseline; returns the rows it inserted.
async fn copy_stream(
    config: &Config,
    device_ids: &[i32],
    batch_rows: usize,
    started: Instant,
    duration: Duration,
    after_seq: i64,
) -> anyhow::Result<u64> {
    let client = connect(config).await?;
    client
        .batch_execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS events_staging
               (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .await?;
    let copy_sql = format!(
        "COPY events_staging ({}) FROM STDIN (FORMAT binary)",
        copy::COLUMNS
    );
    let insert_sql = format!(
        "INSERT INTO events ({c}) SELECT {c} FROM events_staging ON CONFLICT DO NOTHING RETURNING device_id, seq",
        c = copy::COLUMNS
    );
    let mut rows_done = 0u64;
    let mut seq = after_seq;
    let max_batches = 100_000;
    for _ in 0..max_batches {
        if started.elapsed() >= duration {
            break;
        }
        let now = Utc::now();
        let rows: Vec<EventRow> = (0..batch_rows)
            .map(|i| {
                if i % device_ids.len().max(1) == 0 {
                    seq += 1;
                }
                EventRow {
                    device_id: device_ids[i % device_ids.len()],
                    seq,
                    occurred_at: now,
                    received_at: now - BASELINE_RECEIVED_AGE,
                    kind: 16,
                    sensor: None,
                    late: false,
                    data: Some(format!(
                        r#"{{"battery":{},"signal":-67,"interval_s":900}}"#,
                        20 + (i % 80)
                    )),
                }
            })
            .collect();
        client.batch_execute("BEGIN").await?;
        let sink = client.copy_in(&copy_sql).await?;
        let mut sink = Box::pin(sink);
        sink.send(copy::encode(&rows)).await?;
        sink.as_mut().finish().await?;
        let inserted = client.query(&insert_sql, &[]).await?;
        client.batch_execute("COMMIT").await?;
        rows_done += inserted.len() as u64;
    }
    Ok(rows_done)
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Verification {
    pub devices: usize,
    /// (device, seq) pairs the devices and phones created.
    pub offered_pairs: u64,
    /// Distinct (device, seq) pairs in `events` for those devices.
    pub stored_pairs: u64,
    /// Offered and not in the database.
    pub lost: u64,
    /// Rows beyond the first for one (device, seq).
    pub duplicated: u64,
    /// Stored pairs no device offered (should be 0).
    pub unexpected: u64,
    /// Up to 20 lost pairs, for a look.
    pub lost_sample: Vec<(String, i64)>,
    /// Events still unacknowledged on the devices when the run ended.
    pub unacked_at_end: u64,
    /// Dead letters recorded for the run's devices.
    pub dead_letters: i64,
}

/// Reads the database and compares it with what each device says it offered (seqs 1..=n).
pub async fn verify(client: &Client, offered: &[(String, u64)]) -> anyhow::Result<Verification> {
    let uids: Vec<&str> = offered.iter().map(|(u, _)| u.as_str()).collect();
    let rows = client
        .query(
            "SELECT d.uid, count(e.seq), count(DISTINCT e.seq), coalesce(max(e.seq), 0)
               FROM devices d LEFT JOIN events e ON e.device_id = d.id
              WHERE d.uid = ANY($1) GROUP BY d.uid",
            &[&uids],
        )
        .await
        .context("verification query")?;
    let by_uid: std::collections::HashMap<String, (i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let mut v = Verification {
        devices: offered.len(),
        ..Default::default()
    };
    for (uid, n) in offered {
        let (count, distinct, max) = by_uid.get(uid).copied().unwrap_or((0, 0, 0));
        v.offered_pairs += n;
        v.stored_pairs += distinct as u64;
        v.duplicated += (count - distinct) as u64;
        if distinct as u64 == *n && max as u64 == *n {
            continue;
        }
        // Something is off for this device: look at its seqs one by one.
        let seqs: Vec<i64> = client
            .query(
                "SELECT DISTINCT e.seq FROM events e JOIN devices d ON d.id = e.device_id
                  WHERE d.uid = $1 ORDER BY 1",
                &[uid],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let present: std::collections::HashSet<i64> = seqs.iter().copied().collect();
        for s in 1..=(*n as i64) {
            if !present.contains(&s) {
                v.lost += 1;
                if v.lost_sample.len() < 20 {
                    v.lost_sample.push((uid.clone(), s));
                }
            }
        }
        v.unexpected += seqs.iter().filter(|s| **s < 1 || **s > *n as i64).count() as u64;
    }
    let dead: i64 = client
        .query_one(
            "SELECT count(*) FROM dead_letters WHERE device_uid = ANY($1)",
            &[&uids],
        )
        .await?
        .get(0);
    v.dead_letters = dead;
    Ok(v)
}
