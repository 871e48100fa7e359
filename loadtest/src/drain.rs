//! The `drain` scenario: a backlog queued in a real Mosquitto for Homeward's persistent session
//! while Homeward is stopped, then drained by Homeward against that broker.
//!
//! 1. PostgreSQL and Mosquitto (Debian's); Homeward started against it (`mqtt.url`), which
//!    migrates the database; the fixtures and the COPY baseline, as every scenario.
//! 2. One probe event through Mosquitto, stored, proves Homeward's persistent session and
//!    subscriptions exist; then Homeward is stopped (SIGTERM, so it leaves the session behind).
//! 3. `messages` one-event messages, seq-major across the devices (every device's seq 1, then
//!    every device's seq 2, ...), published with QoS 1 over `publishers` connections; every
//!    PUBACK awaited, so the whole backlog is in Mosquitto's keeping.
//! 4. Homeward started again; every 100 ms the harness reads the server's count of stored
//!    events (its `/metrics`, not a query, which would load PostgreSQL) and the CPU ticks of the
//!    server and of PostgreSQL (the postmaster, its backends and those that exited), until
//!    every event is stored.
//! 5. Every (device, seq) checked stored exactly once; the COPY baseline again.
//!
//! The drain rate is the backlog over the time from the first stored event to the last; its
//! ratio to COPY is against the mean of the two baselines. Only for a Homeward the harness starts.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use homeward_proto::{Encoding, Event};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, PublishOptions, QoS};
use serde::Serialize;

use crate::db;
use crate::mix::{Mix, Rng};
use crate::report::{AlarmPath, Latency, Machine, Rates, Report, ServerFigures, TargetResult};
use crate::run::Options;
use crate::scenario::{Drain, Scenario};
use crate::server::{self, ServerProcess, ServerSpec};
use crate::stats::{self, histogram, percentiles, Sample};

/// The drain's own figures (`drain` in the report).
#[derive(Debug, Clone, Serialize)]
pub struct DrainFigures {
    pub messages: u64,
    pub devices: usize,
    /// Seconds to publish the backlog into Mosquitto (every PUBACK received).
    pub published_s: f64,
    /// From the first stored event to the last.
    pub drain_s: f64,
    /// From Homeward's start (the process spawned) to the last stored event.
    pub start_to_done_s: f64,
    pub drain_rate_per_s: f64,
    /// `drain_rate_per_s` over the mean of the COPY baselines before and after.
    pub ratio_to_copy: Option<f64>,
    /// CPU seconds (user + system) of the server per 100,000 events, from its start (the
    /// process spawned, start-up included) to the last event stored.
    pub server_cpu_s_per_100k: f64,
    /// The same for PostgreSQL over the same span: the postmaster and its backends, those
    /// that exited included.
    pub postgres_cpu_s_per_100k: f64,
    /// The server's peak resident memory (VmHWM), MiB.
    pub server_rss_peak_mb: Option<f64>,
    /// CPU seconds of Mosquitto over the same span.
    pub mosquitto_cpu_s: f64,
    /// The server's own count of events stored (`homeward_ingest_events_total{outcome="stored"}`)
    /// when the drain ended. Below `messages` when the database held every event before the
    /// counter said so (the drain then ends on the database's count, at the counter's last move).
    pub counted_by_server: u64,
    /// Where PostgreSQL spent its time during the drain: the statements with the most
    /// execution time, when the scenario loads `pg_stat_statements`
    /// (`[postgres.settings] shared_preload_libraries`); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_statements: Vec<StatementCost>,
}

/// One statement's share of PostgreSQL's time during the drain.
#[derive(Debug, Clone, Serialize)]
pub struct StatementCost {
    pub calls: i64,
    pub total_ms: f64,
    pub rows: i64,
    pub query: String,
}

/// Whether the scenario's PostgreSQL loads `pg_stat_statements`.
fn profiles_statements(scn: &Scenario) -> bool {
    scn.postgres
        .settings
        .get("shared_preload_libraries")
        .is_some_and(|v| v.contains("pg_stat_statements"))
}

/// Forgets what was counted so far (the extension made first, once).
async fn reset_statements(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset();",
        )
        .await
        .context("pg_stat_statements")?;
    Ok(())
}

/// The statements of every database with the most execution time since the reset.
async fn top_statements(client: &tokio_postgres::Client) -> anyhow::Result<Vec<StatementCost>> {
    let rows = client
        .query(
            "SELECT calls, total_exec_time + total_plan_time, rows, left(query, 300)
             FROM pg_stat_statements ORDER BY 2 DESC LIMIT 15",
            &[],
        )
        .await
        .context("pg_stat_statements")?;
    Ok(rows
        .iter()
        .map(|r| StatementCost {
            calls: r.get(0),
            total_ms: (r.get::<_, f64>(1) * 10.0).round() / 10.0,
            rows: r.get(2),
            query: r.get(3),
        })
        .collect())
}

/// The ticks the kernel counts CPU time in.
const TICKS_PER_S: f64 = 100.0;

/// CPU ticks of PostgreSQL: the postmaster and its live backends, plus what exited backends
/// left in the postmaster's `cutime` and `cstime` (fields 16 and 17 of its stat).
fn postgres_ticks(postmaster: u32) -> u64 {
    let exited = std::fs::read_to_string(format!("/proc/{postmaster}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat[stat.rfind(')')? + 2..].to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    stats::tree_ticks(postmaster).unwrap_or(0) + exited
}

/// Peak resident memory (VmHWM) of a process, MiB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Events of the run's devices stored so far.
async fn stored(client: &tokio_postgres::Client, uids: &[String]) -> anyhow::Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM events e JOIN devices d ON d.id = e.device_id WHERE d.uid = ANY($1)",
            &[&uids],
        )
        .await?
        .get(0))
}

/// Events the server has stored since it started, from its own counter on `/metrics`
/// (`homeward_ingest_events_total{outcome="stored"}`): counting rows in the database every
/// 100 ms would cost PostgreSQL more, the larger the table grows, and be measured as the
/// drain's. The database is counted once, at the end ([`db::verify`]).
async fn stored_by_server(http: &reqwest::Client, base: &str) -> i64 {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0,
    };
    homeward_testkit::metrics::metric_value(
        &text,
        "homeward_ingest_events_total{outcome=\"stored\"}",
    )
    .unwrap_or(0.0) as i64
}

/// Waits until `n` events of `uids` are stored, or fails after `timeout`.
async fn wait_stored(
    client: &tokio_postgres::Client,
    uids: &[String],
    n: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if stored(client, uids).await? >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} events were not stored within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `messages[i]` on `topics[i]` over `publishers` connections (QoS 1) and waits for
/// every PUBACK.
async fn publish_all(
    port: u16,
    messages: Vec<(Arc<str>, Bytes)>,
    publishers: usize,
    inflight: u16,
) -> anyhow::Result<()> {
    let publishers = publishers.max(1);
    let mut shares: Vec<Vec<(Arc<str>, Bytes)>> = vec![Vec::new(); publishers];
    for (i, m) in messages.into_iter().enumerate() {
        shares[i % publishers].push(m);
    }
    let mut tasks = Vec::new();
    for (p, share) in shares.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut options =
                MqttOptions::new(format!("lt-drain-publisher-{p}"), ("127.0.0.1", port));
            options.set_inflight(inflight).set_keep_alive(30);
            let (client, mut eventloop) = AsyncClient::builder(options).capacity(1_000).build();
            let total = share.len();
            let publisher = tokio::spawn(async move {
                for (topic, payload) in share {
                    client
                        .publish(
                            topic.to_string(),
                            payload,
                            PublishOptions::new(QoS::AtLeastOnce),
                        )
                        .await?;
                }
                anyhow::Ok(client)
            });
            let mut acked = 0;
            while acked < total {
                match tokio::time::timeout(Duration::from_secs(30), eventloop.poll()).await {
                    Ok(Ok(MqttEvent::Incoming(Packet::PubAck(_)))) => acked += 1,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => bail!("publisher {p} lost its connection at {acked}: {e}"),
                    Err(_) => bail!("Mosquitto stopped acknowledging publisher {p} at {acked}"),
                }
            }
            let client = publisher.await??;
            let _ = client.try_disconnect();
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The backlog: `d.messages` events from the scenario's mix, seq-major across `uids`, each
/// encoded alone (JSON for half the devices, CBOR for the other half, as `mixed` devices do).
fn backlog(scn: &Scenario, d: &Drain, uids: &[String]) -> Vec<(Arc<str>, Bytes)> {
    let mix = Mix::new(&scn.mix);
    let mut rng = Rng::new(scn.seed);
    let topics: Vec<Arc<str>> = uids
        .iter()
        .map(|u| Arc::from(format!("homeward/v1/{u}/events")))
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let per_device = d.messages.div_ceil(uids.len() as u64);
    let mut out = Vec::with_capacity(d.messages as usize);
    'all: for seq in 1..=per_device {
        for (i, topic) in topics.iter().enumerate() {
            if out.len() as u64 == d.messages {
                break 'all;
            }
            let encoding = if i % 2 == 0 {
                Encoding::Json
            } else {
                Encoding::Cbor
            };
            // Device times within the last hour, in seq order.
            let t = now - 3_600_000 + (seq as i64 * 3_600_000 / per_device as i64);
            let event = Event::new(seq, t, mix.pick(&mut rng)).expect("valid seq and time");
            out.push((
                topic.clone(),
                Bytes::from(homeward_proto::encode_event_vec(&event, encoding)),
            ));
        }
    }
    out
}

/// How many events each device was given in [`backlog`].
fn offered_per_device(messages: u64, uids: &[String]) -> Vec<(String, u64)> {
    let n = uids.len() as u64;
    uids.iter()
        .enumerate()
        .map(|(i, u)| {
            (
                u.clone(),
                messages / n + u64::from((i as u64) < messages % n),
            )
        })
        .collect()
}

pub async fn run(
    scn: &Scenario,
    d: &Drain,
    opts: &Options,
    work: &Path,
    machine: Machine,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Report> {
    let crate::run::Target::Own { homeward_bin } = &opts.target else {
        bail!("scenario `{}` starts and stops Homeward against its own Mosquitto; run it without --mqtt/--http/--database-url", scn.name);
    };
    let pg_dir = work.join("pg");
    eprintln!("starting PostgreSQL in {}", pg_dir.display());
    let mut pg = server::start_postgres(&pg_dir, &scn.postgres).await?;
    let mosquitto = homeward_testkit::Mosquitto::start();
    let spec = ServerSpec {
        bin: homeward_bin.clone(),
        database_url: pg.url("homeward"),
        role_urls: Some((
            pg.url_as("homeward", homeward::db::roles::APP_ROLE),
            pg.url_as("homeward", homeward::db::roles::SERVICE_ROLE),
        )),
        mqtt_port: homeward_testkit::free_port()?,
        mqtt_url: Some(format!("mqtt://127.0.0.1:{}", mosquitto.port)),
        data_dir: work.join("homeward"),
        log: work.join("server.log"),
    };
    let result = drive(scn, d, &spec, &pg_dir, &pg, &mosquitto, machine, started_at).await;
    let _ = pg.stop().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    scn: &Scenario,
    d: &Drain,
    spec: &ServerSpec,
    pg_dir: &Path,
    pg: &homeward::db::embedded::EmbeddedPostgres,
    mosquitto: &homeward_testkit::Mosquitto,
    machine: Machine,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Report> {
    // Homeward migrates the database and makes its persistent session in Mosquitto.
    eprintln!("starting Homeward against Mosquitto to make its session");
    let srv = ServerProcess::start(spec).await?;
    let database = pg.pg_config("homeward");
    let client = db::connect(&database).await?;
    let tag = started_at.format("%Y%m%d%H%M%S%3f").to_string();
    // One more device than the backlog's: the probe.
    let fx = db::create_fixtures(
        &client,
        &tag,
        scn.devices.count + 1,
        0,
        scn.baseline.devices,
    )
    .await?;
    let mut uids: Vec<String> = fx.devices.iter().map(|(u, _)| u.clone()).collect();
    let probe = uids.pop().expect("the probe device");
    let baseline = |after_seq: i64| {
        db::copy_baseline(
            &database,
            &fx.baseline_device_ids,
            scn.baseline.batch_rows,
            scn.baseline.connections,
            Duration::from_secs_f64(scn.baseline.duration_s),
            after_seq,
        )
    };
    eprintln!("COPY baseline: {:.0} s", scn.baseline.duration_s);
    let before = baseline(0).await.context("COPY baseline")?;
    eprintln!("COPY baseline: {:.0} rows/s", before.rows_per_s);

    // One event through it proves the session and its subscriptions exist; then it stops.
    let probe_body = crate::mix::body_for("heartbeat", &mut Rng::new(1)).expect("a heartbeat");
    let probe_event =
        Event::new(1, chrono::Utc::now().timestamp_millis(), probe_body).expect("valid");
    publish_all(
        mosquitto.port,
        vec![(
            Arc::from(format!("homeward/v1/{probe}/events")),
            Bytes::from(homeward_proto::encode_event_vec(
                &probe_event,
                Encoding::Json,
            )),
        )],
        1,
        10,
    )
    .await?;
    wait_stored(
        &client,
        std::slice::from_ref(&probe),
        1,
        Duration::from_secs(30),
    )
    .await
    .context("the probe event")?;
    srv.stop().await;

    // The backlog, in Mosquitto's keeping.
    let messages = backlog(scn, d, &uids);
    let n = messages.len() as u64;
    eprintln!(
        "publishing {n} one-event messages from {} devices into Mosquitto",
        uids.len()
    );
    let t0 = Instant::now();
    publish_all(mosquitto.port, messages, d.publishers, d.inflight).await?;
    let published_s = t0.elapsed().as_secs_f64();
    eprintln!("published in {published_s:.1} s");

    // The drain.
    let profile = profiles_statements(scn);
    if profile {
        reset_statements(&client).await?;
    }
    let postmaster = server::postmaster_pid(pg_dir).unwrap_or(0);
    let mosquitto_pid = mosquitto.pid();
    let (pg0, mq0) = (
        postgres_ticks(postmaster),
        stats::cpu_ticks(mosquitto_pid).unwrap_or(0),
    );
    eprintln!("starting Homeward to drain it");
    let spawned = Instant::now();
    let srv = ServerProcess::start(spec).await?;
    let pid = srv.pid;
    let mut timeline: Vec<Sample> = Vec::new();
    let mut first: Option<Instant> = None;
    let mut last_count = 0i64;
    let mut last_t = spawned;
    let mut next_second = spawned + Duration::from_secs(1);
    let mut server_ticks = 0u64;
    let mut peak = None;
    let deadline = spawned + Duration::from_secs_f64(scn.drain_timeout_s);
    let http = reqwest::Client::new();
    // When the server's counter has not moved for STALLED, the database is asked (once per
    // stall, cheap then): a counter that ends short of rows the database holds must not turn a
    // complete drain into a failed run. The verification below counts the database either way.
    const STALLED: Duration = Duration::from_secs(2);
    let mut moved_at = spawned;
    let mut counted_by_server = 0i64;
    let done = loop {
        let count = stored_by_server(&http, &srv.http).await;
        let now = Instant::now();
        if count > 0 && first.is_none() {
            first = Some(now);
        }
        if count != counted_by_server {
            counted_by_server = count;
            moved_at = now;
        } else if now.duration_since(moved_at) >= STALLED {
            let last_move = moved_at;
            moved_at = now;
            if stored(&client, &uids).await? as u64 >= n {
                eprintln!(
                    "the server's stored counter stopped at {count} of {n}, but the database holds all {n}: the drain is done"
                );
                // A counter that never moved gives no first event: time it from the start.
                first.get_or_insert(spawned);
                break last_move;
            }
        }
        server_ticks = stats::cpu_ticks(pid).unwrap_or(server_ticks);
        peak = peak_rss_mb(pid).or(peak);
        if now >= next_second || count as u64 >= n {
            let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
            timeline.push(Sample {
                t_s: now.duration_since(spawned).as_secs_f64(),
                target_per_s: 0.0,
                offered_per_s: 0.0,
                acked_per_s: ((count - last_count) as f64 / dt).round(),
                p50_ms: 0.0,
                p99_ms: 0.0,
                backlog: n.saturating_sub(count as u64),
                connected_devices: 0,
                server_rss_mb: stats::rss_mb(pid),
                server_cpu_pct: None,
                postgres_cpu_pct: None,
                harness_cpu_pct: None,
            });
            last_count = count;
            last_t = now;
            next_second = now + Duration::from_secs(1);
        }
        if count as u64 >= n {
            break now;
        }
        if now > deadline {
            srv.stop().await;
            bail!(
                "{count} of {n} events stored after {:.0} s",
                scn.drain_timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (pg1, mq1) = (
        postgres_ticks(postmaster),
        stats::cpu_ticks(mosquitto_pid).unwrap_or(0),
    );
    srv.stop().await;
    let statements = if profile {
        top_statements(&client).await?
    } else {
        Vec::new()
    };
    for st in &statements {
        eprintln!(
            "{:>10.1} ms {:>8} calls {:>9} rows  {}",
            st.total_ms,
            st.calls,
            st.rows,
            st.query.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    let first = first.unwrap_or(done);
    let drain_s = done.duration_since(first).as_secs_f64().max(1e-3);
    let per_100k =
        |ticks: u64| (ticks as f64 / TICKS_PER_S * 100_000.0 / n as f64 * 100.0).round() / 100.0;

    // Verification and the baseline again.
    eprintln!("verifying every (device, seq) in the database");
    let offered = offered_per_device(n, &uids);
    let verification = db::verify(&client, &offered).await?;
    eprintln!("COPY baseline after the drain");
    let after = baseline(before.rows as i64)
        .await
        .context("COPY baseline after")?;
    eprintln!("COPY baseline after: {:.0} rows/s", after.rows_per_s);
    let copy = ((before.rows_per_s + after.rows_per_s) / 2.0).round();
    let rate = (n as f64 / drain_s).round();
    let ratio = (copy > 0.0).then(|| (rate / copy * 1000.0).round() / 1000.0);
    let figures = DrainFigures {
        messages: n,
        devices: uids.len(),
        published_s: (published_s * 10.0).round() / 10.0,
        drain_s: (drain_s * 100.0).round() / 100.0,
        start_to_done_s: (done.duration_since(spawned).as_secs_f64() * 100.0).round() / 100.0,
        drain_rate_per_s: rate,
        ratio_to_copy: ratio,
        server_cpu_s_per_100k: per_100k(server_ticks),
        postgres_cpu_s_per_100k: per_100k(pg1.saturating_sub(pg0)),
        server_rss_peak_mb: peak.map(|m: f64| (m * 10.0).round() / 10.0),
        mosquitto_cpu_s: (mq1.saturating_sub(mq0) as f64 / TICKS_PER_S * 100.0).round() / 100.0,
        counted_by_server: counted_by_server.max(0) as u64,
        top_statements: statements,
    };
    let lost_dup = verification.lost + verification.duplicated + verification.unexpected;
    let zero_loss = lost_dup == 0;
    let value = match scn.target.metric.as_str() {
        "ratio_to_copy" => ratio,
        "lost_plus_duplicated" => Some(lost_dup as f64),
        _ => None,
    };
    let met = value.is_some_and(|v| {
        scn.target.min.is_none_or(|m| v >= m) && scn.target.max.is_none_or(|m| v <= m)
    });
    let rss: Vec<f64> = timeline.iter().filter_map(|s| s.server_rss_mb).collect();
    let empty = percentiles(&histogram());
    Ok(Report {
        scenario: scn.name.clone(),
        description: scn.description.clone(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        conditions: format!(
            "{} cores shared with other work (load average at start {}); PostgreSQL fsync {}; Mosquitto {} on loopback; debug or release: {}",
            machine.nproc,
            machine.load_avg_at_start,
            if scn.postgres.fsync { "on" } else { "off" },
            "2 (Debian)",
            if cfg!(debug_assertions) { "debug harness" } else { "release harness" },
        ),
        machine,
        seconds: (spawned.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        load_seconds: figures.published_s,
        offered: Rates {
            events: n,
            mqtt_events: n,
            http_events: 0,
            per_s: (n as f64 / published_s.max(1e-3)).round(),
        },
        acknowledged: Rates {
            events: verification.stored_pairs,
            mqtt_events: verification.stored_pairs,
            http_events: 0,
            per_s: rate,
        },
        sustained_rate_per_s: rate,
        baseline_copy: Some(before),
        baseline_copy_after: Some(after),
        baseline_rows_per_s: Some(copy),
        ratio_to_copy: ratio,
        latency_ms: Latency {
            mqtt: empty.clone(),
            http: empty.clone(),
        },
        alarm_path: AlarmPath {
            alarm_events_published: 0,
            alarm_frames_seen: 0,
            matched: 0,
            lagged_frames: 0,
            latency: empty,
            note: "not measured by the drain".into(),
            stages: Vec::new(),
        },
        resends: 0,
        http_retries: 0,
        http_rejected: 0,
        drain_seconds: figures.drain_s,
        server: ServerFigures {
            restarts: 1,
            cpu_avg_pct: Some((server_ticks as f64 / TICKS_PER_S / drain_s * 1000.0).round() / 10.0),
            cpu_max_pct: None,
            rss_first_mb: rss.first().copied(),
            rss_max_mb: rss.iter().copied().reduce(f64::max),
            rss_last_mb: rss.last().copied(),
            rss_growth_mb_per_min: None,
            postgres_cpu_avg_pct: Some(
                (pg1.saturating_sub(pg0) as f64 / TICKS_PER_S / drain_s * 1000.0).round() / 10.0,
            ),
            harness_cpu_avg_pct: None,
        },
        verification,
        zero_loss,
        ramp_steps: Vec::new(),
        ramp_end: None,
        outages: Vec::new(),
        recovery: Vec::new(),
        target: TargetResult {
            metric: scn.target.metric.clone(),
            min: scn.target.min,
            max: scn.target.max,
            value,
            met,
        },
        drain: Some(figures),
        scenario_config: scn.clone(),
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_spread_evenly_and_counted_per_device() {
        let uids: Vec<String> = (0..3).map(|i| format!("d{i}")).collect();
        let offered = offered_per_device(10, &uids);
        assert_eq!(
            offered,
            [("d0".into(), 4), ("d1".into(), 3), ("d2".into(), 3)]
        );
        let toml = r#"
            name = "t"
            seed = 1
            duration_s = 0
            [devices]
            count = 3
            [mix]
            heartbeat = 1
            [rate]
            shape = "fixed"
            events_per_s = 0
            [drain]
            messages = 10
            [target]
            metric = "ratio_to_copy"
        "#;
        let scn: Scenario = toml::from_str(toml).unwrap();
        let d = scn.drain.clone().unwrap();
        let b = backlog(&scn, &d, &uids);
        assert_eq!(b.len(), 10);
        // Seq-major: every device's first event before any second one.
        assert_eq!(&*b[0].0, "homeward/v1/d0/events");
        assert_eq!(&*b[3].0, "homeward/v1/d0/events");
        let per: Vec<usize> = uids
            .iter()
            .map(|u| {
                b.iter()
                    .filter(|(t, _)| t.contains(&format!("/{u}/")))
                    .count()
            })
            .collect();
        assert_eq!(per, [4, 3, 3]);
    }
}
