//! One run of one scenario, from start-up to report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use homeward::db::embedded::EmbeddedPostgres;
use homeward_proto::EventBody;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::db::{self, Verification};
use crate::device::{self, DeviceConfig, DeviceResult};
use crate::mix::{visit_check, Mix, Rng};
use crate::phone::{self, PhoneConfig};
use crate::report::{
    self, AlarmPath, Latency, Machine, Marker, RampStep, Rates, Recovery, Report, ServerFigures,
    TargetResult,
};
use crate::scenario::{Rate, Scenario};
use crate::server::{self, ServerProcess, ServerSpec};
use crate::stats::{self, percentiles, Shared};

/// Where the run's traffic goes (one per run, so its size does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// Start PostgreSQL and `homeward serve` here (needed for outages and crashes).
    Own { homeward_bin: PathBuf },
    /// A Homeward already running on this machine.
    External {
        mqtt: (String, u16),
        http: String,
        database: tokio_postgres::Config,
        server_pid: Option<u32>,
    },
}

pub struct Options {
    pub target: Target,
    pub reports_dir: PathBuf,
    pub saturation_rate: Option<f64>,
    /// Scale the scenario's durations (e.g. 0.5 for a quick look); 1.0 normally.
    pub time_scale: f64,
}

/// The system under test while it runs.
struct Sut {
    pg: Option<EmbeddedPostgres>,
    pg_dir: Option<PathBuf>,
    server: Option<ServerProcess>,
    spec: Option<ServerSpec>,
    mqtt: (String, u16),
    database: tokio_postgres::Config,
    restarts: u32,
}

pub async fn run(scn: Scenario, opts: Options) -> anyhow::Result<Report> {
    let machine = Machine::here();
    let started_at = chrono::Utc::now();
    let stamp = started_at.format("%Y%m%dT%H%M%SZ").to_string();
    let work = std::env::temp_dir().join(format!(
        "homeward-loadtest-{}-{}-{}",
        scn.name,
        std::process::id(),
        stamp
    ));
    std::fs::create_dir_all(&work)?;
    let result = run_in(&scn, &opts, &work, machine, started_at).await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("(work folder kept for a look: {})", work.display());
    }
    result
}

async fn run_in(
    scn: &Scenario,
    opts: &Options,
    work: &Path,
    machine: Machine,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Report> {
    if let Some(d) = &scn.drain {
        return crate::drain::run(scn, d, opts, work, machine, started_at).await;
    }
    let ts = opts.time_scale;
    let offered_rate = match &scn.rate {
        Rate::FractionOfSaturation { fraction } => {
            let sat = match opts.saturation_rate {
                Some(r) => r,
                None => latest_saturation(&opts.reports_dir)?,
            };
            eprintln!("saturation rate {sat:.0} ev/s; offering {fraction} of it");
            Some(sat * fraction)
        }
        _ => None,
    };

    // 1. The system under test.
    let mut sut = match &opts.target {
        Target::Own { homeward_bin } => {
            let pg_dir = work.join("pg");
            eprintln!("starting PostgreSQL in {}", pg_dir.display());
            let pg = server::start_postgres(&pg_dir, &scn.postgres).await?;
            let spec = ServerSpec {
                bin: homeward_bin.clone(),
                database_url: pg.url("homeward"),
                role_urls: Some((
                    pg.url_as("homeward", homeward::db::roles::APP_ROLE),
                    pg.url_as("homeward", homeward::db::roles::SERVICE_ROLE),
                )),
                mqtt_port: homeward_testkit::free_port()?,
                mqtt_url: None,
                data_dir: work.join("homeward"),
                log: work.join("server.log"),
            };
            eprintln!("starting {} serve", spec.bin.display());
            let srv = match ServerProcess::start(&spec).await {
                Ok(s) => s,
                Err(e) => {
                    let mut pg = pg;
                    let _ = pg.stop().await;
                    return Err(e);
                }
            };
            Sut {
                database: pg.pg_config("homeward"),
                pg: Some(pg),
                pg_dir: Some(pg_dir),
                server: Some(srv),
                mqtt: ("127.0.0.1".into(), spec.mqtt_port),
                spec: Some(spec),
                restarts: 0,
            }
        }
        Target::External { mqtt, database, .. } => {
            if scn.db_outage.is_some() || scn.crash.is_some() {
                bail!("scenario `{}` stops the database or the server; run it without --mqtt/--http/--database-url so the harness starts its own", scn.name);
            }
            Sut {
                pg: None,
                pg_dir: None,
                server: None,
                spec: None,
                mqtt: mqtt.clone(),
                database: database.clone(),
                restarts: 0,
            }
        }
    };
    let outcome = drive(scn, opts, &mut sut, offered_rate, ts, machine, started_at).await;
    // Always leave nothing running.
    if let Some(s) = sut.server.take() {
        s.stop().await;
    }
    if let Some(mut pg) = sut.pg.take() {
        let _ = pg.stop().await;
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    scn: &Scenario,
    opts: &Options,
    sut: &mut Sut,
    offered_rate: Option<f64>,
    ts: f64,
    machine: Machine,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Report> {
    let http_base = match (&sut.server, &opts.target) {
        (Some(s), _) => s.http.clone(),
        (None, Target::External { http, .. }) => http.trim_end_matches('/').to_string(),
        _ => unreachable!("a server or an external target"),
    };

    // 2. Fixtures and the COPY baseline, on the same database, before the load.
    let client = db::connect(&sut.database).await?;
    let phones = scn.phones.as_ref().map(|p| p.count).unwrap_or(0);
    let tag = started_at.format("%Y%m%d%H%M%S%3f").to_string();
    let fx = db::create_fixtures(
        &client,
        &tag,
        scn.devices.count,
        phones,
        scn.baseline.devices,
    )
    .await?;
    let baseline = if scn.baseline.duration_s > 0.0 {
        eprintln!(
            "COPY baseline: {:.0} s of {}-row batches on {} connection(s)",
            scn.baseline.duration_s * ts,
            scn.baseline.batch_rows,
            scn.baseline.connections.max(1)
        );
        let b = copy_baseline(&sut.database, scn, ts, &fx.baseline_device_ids, 0)
            .await
            .context("COPY baseline")?;
        eprintln!("COPY baseline: {:.0} rows/s", b.rows_per_s);
        Some(b)
    } else {
        None
    };

    // 3. The load.
    let shared = Shared::new(http_base);
    let server_pid = match (&sut.server, &opts.target) {
        (Some(s), _) => Some(s.pid),
        (None, Target::External { server_pid, .. }) => *server_pid,
        _ => None,
    };
    shared
        .server_pid
        .store(server_pid.unwrap_or(0), Ordering::Relaxed);
    if let Some(dir) = &sut.pg_dir {
        shared
            .pg_pid
            .store(server::postmaster_pid(dir).unwrap_or(0), Ordering::Relaxed);
    }
    let load_s = scn.duration_s * ts;
    let drain_s = scn.drain_timeout_s;
    let hard_limit = Duration::from_secs_f64(load_s + drain_s + 60.0);
    let sampler_done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(stats::sampler(
        shared.clone(),
        load_s,
        hard_limit,
        sampler_done.clone(),
    ));
    let http_client = reqwest::Client::builder()
        .timeout(Duration::from_secs(35))
        .build()?;
    let live = tokio::spawn(crate::live::listen(
        shared.clone(),
        reqwest::Client::new(),
        fx.token.clone(),
    ));

    let mut rng = Rng::new(scn.seed);
    let mix = Mix::new(&scn.mix);
    let mut device_tx = Vec::new();
    let mut device_tasks: Vec<JoinHandle<DeviceResult>> = Vec::new();
    for (uid, secret) in &fx.devices {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<EventBody>>();
        let backlog = match &scn.storm {
            Some(storm) => {
                let now = chrono::Utc::now().timestamp_millis();
                let span_ms = (storm.backlog_hours * 3_600_000.0) as i64;
                let n = storm.backlog_per_device.max(1) as i64;
                (0..storm.backlog_per_device as i64)
                    .map(|i| (mix.pick(&mut rng), now - span_ms + span_ms * i / n))
                    .collect()
            }
            None => Vec::new(),
        };
        let cfg = DeviceConfig {
            uid: Arc::from(uid.as_str()),
            secret: secret.clone(),
            host: sut.mqtt.0.clone(),
            port: sut.mqtt.1,
            window: scn.devices.window,
            resend_after: Duration::from_secs_f64(scn.devices.resend_after_s),
            encoding: scn.devices.encoding.clone(),
            batch_max: scn.devices.batch_max,
            batch_linger: Duration::from_millis(scn.devices.batch_linger_ms),
            backlog,
            connect_at: Duration::from_secs_f64(
                scn.storm
                    .as_ref()
                    .map(|s| s.connect_at_s * ts)
                    .unwrap_or(0.0),
            ),
        };
        device_tasks.push(tokio::spawn(device::run(cfg, shared.clone(), rx)));
        device_tx.push(tx);
    }
    let mut phone_tx = Vec::new();
    let mut phone_tasks: Vec<JoinHandle<DeviceResult>> = Vec::new();
    if let Some(p) = &scn.phones {
        for (uid, secret) in &fx.phones {
            let (tx, rx) = mpsc::unbounded_channel::<EventBody>();
            let cfg = PhoneConfig {
                uid: uid.clone(),
                secret: secret.clone(),
                batch_max: p.batch_max,
                post_interval: Duration::from_millis(p.post_interval_ms),
            };
            phone_tasks.push(tokio::spawn(phone::run(
                cfg,
                shared.clone(),
                http_client.clone(),
                rx,
            )));
            phone_tx.push(tx);
        }
    }
    // Let the devices connect before the clock of the shape starts mattering.
    let connect_wait = Instant::now() + Duration::from_secs(20);
    while scn.storm.is_none()
        && shared.connected.load(Ordering::Relaxed) < scn.devices.count as u64
        && Instant::now() < connect_wait
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let gen_done = Arc::new(AtomicBool::new(false));
    // A ramp relative to COPY is in fractions of the baseline just measured.
    let ramp_scale = match (&scn.rate, &baseline) {
        (
            Rate::Ramp {
                relative_to_copy: true,
                ..
            },
            Some(b),
        ) => {
            eprintln!(
                "ramp sized by the COPY baseline: {:.0} rows/s is 1.0",
                b.rows_per_s
            );
            b.rows_per_s
        }
        _ => 1.0,
    };
    let generator = tokio::spawn(generate(
        scn.clone(),
        ts,
        offered_rate,
        ramp_scale,
        shared.clone(),
        rng,
        mix,
        device_tx,
        phone_tx,
        gen_done.clone(),
    ));

    // Outages on schedule while the generator runs.
    let load_started = shared.elapsed_s();
    let mut markers: Vec<Marker> = Vec::new();
    if let Some(storm) = &scn.storm {
        markers.push(Marker {
            kind: "reconnect storm".into(),
            start_s: storm.connect_at_s * ts,
            end_s: storm.connect_at_s * ts + 1.0,
        });
    }
    let outage = scn
        .db_outage
        .as_ref()
        .map(|o| (o.at_s * ts, o.duration_s * ts));
    let crash = scn.crash.as_ref().map(|o| (o.at_s * ts, o.duration_s * ts));
    let (mut outage_state, mut crash_state) = (0u8, 0u8);
    while !gen_done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = shared.elapsed_s() - load_started;
        if let Some((at, dur)) = outage {
            if outage_state == 0 && t >= at {
                eprintln!("\n>>> stopping PostgreSQL at {t:.1}s for {dur:.0}s");
                let start_s = shared.elapsed_s();
                if let Some(pg) = sut.pg.as_mut() {
                    pg.halt().await.context("stopping PostgreSQL")?;
                }
                shared.pg_pid.store(0, Ordering::Relaxed);
                markers.push(Marker {
                    kind: "database stopped".into(),
                    start_s,
                    end_s: start_s,
                });
                outage_state = 1;
            } else if outage_state == 1 && t >= at + dur {
                if let Some(pg) = sut.pg.as_mut() {
                    pg.resume().await.context("starting PostgreSQL again")?;
                }
                if let Some(dir) = &sut.pg_dir {
                    shared
                        .pg_pid
                        .store(server::postmaster_pid(dir).unwrap_or(0), Ordering::Relaxed);
                }
                let now = shared.elapsed_s();
                if let Some(m) = markers
                    .iter_mut()
                    .rev()
                    .find(|m| m.kind == "database stopped")
                {
                    m.end_s = now;
                }
                eprintln!("\n>>> PostgreSQL started again at {t:.1}s");
                outage_state = 2;
            }
        }
        if let Some((at, down)) = crash {
            if crash_state == 0 && t >= at {
                eprintln!("\n>>> killing the server (SIGKILL) at {t:.1}s");
                let start_s = shared.elapsed_s();
                if let Some(s) = sut.server.take() {
                    s.kill_hard().await;
                }
                shared.server_pid.store(0, Ordering::Relaxed);
                markers.push(Marker {
                    kind: "server killed".into(),
                    start_s,
                    end_s: start_s,
                });
                crash_state = 1;
            } else if crash_state == 1 && t >= at + down {
                let spec = sut.spec.as_ref().expect("own server");
                let srv = ServerProcess::start(spec)
                    .await
                    .context("restarting the server")?;
                *shared.http_base.write().expect("not poisoned") = srv.http.clone();
                shared.server_pid.store(srv.pid, Ordering::Relaxed);
                sut.server = Some(srv);
                sut.restarts += 1;
                let now = shared.elapsed_s();
                if let Some(m) = markers.iter_mut().rev().find(|m| m.kind == "server killed") {
                    m.end_s = now;
                }
                eprintln!(
                    "\n>>> server restarted and ready at {:.1}s",
                    now - load_started
                );
                crash_state = 2;
            }
        }
    }
    let (load_seconds, ramp_steps) = generator.await?;
    let ramp_end = match &scn.rate {
        Rate::Ramp {
            max, behind_steps, ..
        } => Some(
            if crate::report::behind_at_end(&ramp_steps) >= *behind_steps as usize {
                "fell behind"
            } else if ramp_steps
                .last()
                .is_some_and(|s| s.offered_per_s >= max * ramp_scale)
            {
                "reached its top"
            } else {
                "ran out of time"
            }
            .to_string(),
        ),
        _ => None,
    };
    let load_end = shared.elapsed_s();

    // 4. Drain: devices finish once everything they offered is acknowledged.
    let drain_deadline = Instant::now() + Duration::from_secs_f64(drain_s);
    while Instant::now() < drain_deadline
        && !(device_tasks.iter().all(|t| t.is_finished())
            && phone_tasks.iter().all(|t| t.is_finished()))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_seconds = shared.elapsed_s() - load_end;
    shared.stop.store(true, Ordering::Relaxed);
    // The server's account of the alarm path (stages since it last started).
    let alarm_stages = match http_client
        .get(format!("{}/metrics", shared.base()))
        .send()
        .await
    {
        Ok(r) => crate::report::alarm_stages(&r.text().await.unwrap_or_default()),
        Err(e) => {
            eprintln!("could not read the server's /metrics: {e}");
            Vec::new()
        }
    };
    let mut results = Vec::new();
    for t in device_tasks.into_iter().chain(phone_tasks) {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(10), t).await {
            results.push(r);
        }
    }
    sampler_done.store(true, Ordering::Relaxed);
    let timeline = sampler.await.unwrap_or_default();
    live.abort();
    let seconds = shared.elapsed_s();

    // 5. Verification: the database must hold exactly what was offered.
    eprintln!("verifying every (device, seq) in the database");
    let offered_pairs: Vec<(String, u64)> =
        results.iter().map(|r| (r.uid.clone(), r.offered)).collect();
    // A fresh connection: the first one does not survive a database outage.
    drop(client);
    let client = db::connect(&sut.database).await?;
    let mut verification: Verification = db::verify(&client, &offered_pairs).await?;
    verification.unacked_at_end = results.iter().map(|r| r.unacked).sum();
    if results.len() < scn.devices.count + phones {
        bail!(
            "{} device tasks did not report",
            scn.devices.count + phones - results.len()
        );
    }

    // The baseline again, on the database the load has filled (`[baseline] after_load`).
    let baseline_after = match &baseline {
        Some(before) if scn.baseline.after_load => {
            eprintln!("COPY baseline after the load");
            let b = copy_baseline(
                &sut.database,
                scn,
                ts,
                &fx.baseline_device_ids,
                before.rows as i64,
            )
            .await
            .context("COPY baseline after the load")?;
            eprintln!("COPY baseline after the load: {:.0} rows/s", b.rows_per_s);
            Some(b)
        }
        _ => None,
    };
    let baseline_rows_per_s = baseline.as_ref().map(|b| match &baseline_after {
        Some(a) => ((b.rows_per_s + a.rows_per_s) / 2.0).round(),
        None => b.rows_per_s,
    });

    // 6. Figures.
    let hists = shared.hists.lock().expect("not poisoned");
    let mqtt_off = shared.offered.load(Ordering::Relaxed);
    let http_off = shared.http_offered.load(Ordering::Relaxed);
    let mqtt_ack = shared.acked.load(Ordering::Relaxed);
    let http_ack = shared.http_acked.load(Ordering::Relaxed);
    let span = load_seconds.max(1e-3);
    let best_window = best_moving_average(&timeline, 5);
    let sustained = if ramp_steps.is_empty() {
        best_window
    } else {
        crate::report::sustained_of(&ramp_steps)
    };
    let ratio_to_copy = baseline_rows_per_s
        .filter(|b| *b > 0.0)
        .map(|b| (sustained / b * 1000.0).round() / 1000.0);
    let alarms = shared.alarms.lock().expect("not poisoned");
    let alarm_sent = shared.alarms_sent.load(Ordering::Relaxed);
    let alarm_note = if alarms.frames == 0 {
        format!("no alarm events seen on /v1/live ({alarm_sent} alarm-raising events published): the alarms module is not emitting `event: alarm` frames yet")
    } else if alarms.matched == 0 {
        format!(
            "{} alarm frames seen, none matched a (device_uid, seq) this run published",
            alarms.frames
        )
    } else {
        format!(
            "{} of {} alarm-raising events seen on /v1/live",
            alarms.matched, alarm_sent
        )
    };
    let load_samples: Vec<&stats::Sample> = timeline
        .iter()
        .filter(|s| s.t_s >= load_started && s.t_s <= load_end)
        .collect();
    let rss: Vec<(f64, f64)> = load_samples
        .iter()
        .filter_map(|s| s.server_rss_mb.map(|m| (s.t_s, m)))
        .collect();
    let avg = |f: &dyn Fn(&stats::Sample) -> Option<f64>| {
        let v: Vec<f64> = load_samples.iter().filter_map(|s| f(s)).collect();
        (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64 * 10.0).round() / 10.0)
    };
    let server = ServerFigures {
        restarts: sut.restarts,
        cpu_avg_pct: avg(&|s| s.server_cpu_pct),
        cpu_max_pct: load_samples
            .iter()
            .filter_map(|s| s.server_cpu_pct)
            .reduce(f64::max),
        rss_first_mb: rss.first().map(|p| p.1),
        rss_max_mb: rss.iter().map(|p| p.1).reduce(f64::max),
        rss_last_mb: rss.last().map(|p| p.1),
        rss_growth_mb_per_min: report::slope_per_min(&rss[rss.len() / 2..]),
        postgres_cpu_avg_pct: avg(&|s| s.postgres_cpu_pct),
        harness_cpu_avg_pct: avg(&|s| s.harness_cpu_pct),
    };
    let recovery: Vec<Recovery> = markers
        .iter()
        .filter(|m| m.kind != "reconnect storm")
        .map(|m| recovery_after(m, &timeline))
        .collect();
    let lost_dup = verification.lost + verification.duplicated + verification.unexpected;
    let zero_loss = lost_dup == 0;
    let latency = Latency {
        mqtt: percentiles(&hists.mqtt),
        http: percentiles(&hists.http),
    };
    let alarm_path = AlarmPath {
        alarm_events_published: alarm_sent,
        alarm_frames_seen: alarms.frames,
        matched: alarms.matched,
        lagged_frames: alarms.lagged,
        latency: percentiles(&alarms.hist),
        note: alarm_note,
        stages: alarm_stages,
    };
    let value = match scn.target.metric.as_str() {
        "ratio_to_copy" => ratio_to_copy,
        "latency_p99_ms" => (latency.mqtt.count > 0).then_some(latency.mqtt.p99_ms),
        "alarm_p99_ms" => (alarm_path.matched > 0).then_some(alarm_path.latency.p99_ms),
        "lost_plus_duplicated" => Some(lost_dup as f64),
        "drain_rate_ratio" => recovery.first().and_then(|r| r.drain_rate_ratio),
        "rss_growth_mb_per_min" => server.rss_growth_mb_per_min,
        _ => None,
    };
    let met = value.is_some_and(|v| {
        scn.target.min.is_none_or(|m| v >= m) && scn.target.max.is_none_or(|m| v <= m)
    });
    let conditions = format!(
        "{} cores shared with other work (load average at start {}); PostgreSQL fsync {}; debug or release: {}",
        machine.nproc,
        machine.load_avg_at_start,
        if scn.postgres.fsync { "on" } else { "off" },
        if cfg!(debug_assertions) { "debug harness" } else { "release harness" },
    );
    let report = Report {
        scenario: scn.name.clone(),
        description: scn.description.clone(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine,
        conditions,
        seconds: (seconds * 10.0).round() / 10.0,
        load_seconds: (load_seconds * 10.0).round() / 10.0,
        offered: Rates {
            events: mqtt_off + http_off,
            mqtt_events: mqtt_off,
            http_events: http_off,
            per_s: ((mqtt_off + http_off) as f64 / span).round(),
        },
        acknowledged: Rates {
            events: mqtt_ack + http_ack,
            mqtt_events: mqtt_ack,
            http_events: http_ack,
            per_s: ((mqtt_ack + http_ack) as f64 / (span + drain_seconds).max(1e-3)).round(),
        },
        sustained_rate_per_s: sustained.round(),
        baseline_copy: baseline,
        baseline_copy_after: baseline_after,
        baseline_rows_per_s,
        ratio_to_copy,
        latency_ms: latency,
        alarm_path,
        resends: shared.resends.load(Ordering::Relaxed),
        http_retries: shared.http_retries.load(Ordering::Relaxed),
        http_rejected: shared.http_rejected.load(Ordering::Relaxed),
        drain_seconds: (drain_seconds * 10.0).round() / 10.0,
        server,
        verification,
        zero_loss,
        ramp_steps,
        ramp_end,
        outages: markers,
        recovery,
        target: TargetResult {
            metric: scn.target.metric.clone(),
            min: scn.target.min,
            max: scn.target.max,
            value,
            met,
        },
        drain: None,
        scenario_config: scn.clone(),
        timeline,
    };
    drop(hists);
    drop(alarms);
    Ok(report)
}

/// The scenario's COPY baseline on its own devices, numbering rows after `after_seq`.
async fn copy_baseline(
    database: &tokio_postgres::Config,
    scn: &Scenario,
    ts: f64,
    devices: &[i32],
    after_seq: i64,
) -> anyhow::Result<db::BaselineResult> {
    db::copy_baseline(
        database,
        devices,
        scn.baseline.batch_rows,
        scn.baseline.connections,
        Duration::from_secs_f64(scn.baseline.duration_s * ts),
        after_seq,
    )
    .await
}

/// The mean of the best `n` consecutive seconds of acknowledged rate.
fn best_moving_average(timeline: &[stats::Sample], n: usize) -> f64 {
    if timeline.is_empty() {
        return 0.0;
    }
    let n = n.min(timeline.len());
    timeline
        .windows(n)
        .map(|w| w.iter().map(|s| s.acked_per_s).sum::<f64>() / n as f64)
        .fold(0.0, f64::max)
}

fn recovery_after(m: &Marker, timeline: &[stats::Sample]) -> Recovery {
    let before: Vec<&stats::Sample> = timeline
        .iter()
        .filter(|s| s.t_s < m.start_s && s.t_s >= m.start_s - 5.0)
        .collect();
    let rate_before = if before.is_empty() {
        0.0
    } else {
        before.iter().map(|s| s.acked_per_s).sum::<f64>() / before.len() as f64
    };
    let backlog_before = before.last().map(|s| s.backlog).unwrap_or(0);
    let threshold = (backlog_before as f64 * 1.5)
        .max(rate_before * 0.5)
        .max(10.0);
    let after: Vec<&stats::Sample> = timeline.iter().filter(|s| s.t_s >= m.end_s).collect();
    let backlog_at_end = after.first().map(|s| s.backlog).unwrap_or(0);
    let drained = after.iter().position(|s| (s.backlog as f64) <= threshold);
    let (seconds, rate) = match drained {
        Some(i) => {
            let window = &after[..=i];
            let rate = window.iter().map(|s| s.acked_per_s).sum::<f64>() / window.len() as f64;
            (
                Some(((after[i].t_s - m.end_s) * 10.0).round() / 10.0),
                Some(rate.round()),
            )
        }
        None => (None, None),
    };
    Recovery {
        kind: m.kind.clone(),
        backlog_at_end_of_outage: backlog_at_end,
        seconds_to_drain: seconds,
        drain_rate_per_s: rate,
        drain_rate_ratio: rate
            .filter(|_| rate_before > 0.0)
            .map(|r| (r / rate_before * 100.0).round() / 100.0),
    }
}

/// Offers events on the scenario's shape; returns the load phase's length and the ramp's steps.
#[allow(clippy::too_many_arguments)]
async fn generate(
    scn: Scenario,
    ts: f64,
    fraction_rate: Option<f64>,
    ramp_scale: f64,
    shared: Arc<Shared>,
    mut rng: Rng,
    mix: Mix,
    devices: Vec<mpsc::UnboundedSender<Vec<EventBody>>>,
    phones: Vec<mpsc::UnboundedSender<EventBody>>,
    done: Arc<AtomicBool>,
) -> (f64, Vec<RampStep>) {
    let start = Instant::now();
    let duration = scn.duration_s * ts;
    let mut due = 0.0f64;
    let mut alarm_due = 0.0f64;
    let mut phone_due = 0.0f64;
    let mut phone_n = vec![0u64; phones.len()];
    let mut last = 0.0f64;
    let mut steps = Vec::new();
    let mut step_index = 0u64;
    let mut step_acked_at = shared.acked.load(Ordering::Relaxed);
    let mut step_created_at = shared.offered.load(Ordering::Relaxed);
    let mut per_device: Vec<Vec<EventBody>> = vec![Vec::new(); devices.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = start.elapsed().as_secs_f64();
        if t >= duration || shared.stopped() {
            break;
        }
        let dt = t - last;
        last = t;
        let rate = match &scn.rate {
            Rate::Fixed { events_per_s } => *events_per_s,
            Rate::FractionOfSaturation { .. } => fraction_rate.unwrap_or(0.0),
            Rate::Ramp {
                start,
                step,
                step_s,
                max,
                behind_steps,
                ..
            } => {
                let (r0, step, max) = (start * ramp_scale, step * ramp_scale, max * ramp_scale);
                let k = (t / step_s) as u64;
                if k > step_index {
                    // A step ended: its acknowledged rate.
                    let acked = shared.acked.load(Ordering::Relaxed);
                    let created = shared.offered.load(Ordering::Relaxed);
                    let offered = (r0 + step * step_index as f64).min(max);
                    let got = (acked - step_acked_at) as f64 / step_s;
                    steps.push(RampStep {
                        offered_per_s: offered,
                        created_per_s: ((created - step_created_at) as f64 / step_s).round(),
                        acked_per_s: got.round(),
                        backlog_start: step_created_at.saturating_sub(step_acked_at),
                        backlog_end: created.saturating_sub(acked),
                        seconds: *step_s,
                    });
                    step_acked_at = acked;
                    step_created_at = created;
                    step_index = k;
                    let behind = crate::report::behind_at_end(&steps);
                    if behind >= *behind_steps as usize {
                        eprintln!(
                            "\nthe server fell behind for {behind} steps in a row, at {offered:.0} ev/s offered"
                        );
                        break;
                    }
                }
                (r0 + step * k as f64).min(max)
            }
        };
        shared.target_rate.store(rate as u64, Ordering::Relaxed);
        due += rate * dt;
        // This tick's events, one message per device that has any (a wake-up per device and
        // tick, not per event, keeps the harness's own cost low).
        let mut n = 0;
        while due >= 1.0 && n < 50_000 {
            let d = rng.below(devices.len() as u64) as usize;
            per_device[d].push(mix.pick(&mut rng));
            due -= 1.0;
            n += 1;
        }
        if let Some(a) = &scn.alarms {
            alarm_due += a.per_s * dt;
            while alarm_due >= 1.0 {
                let d = rng.below(devices.len() as u64) as usize;
                per_device[d].push(EventBody::PendantAlarm);
                alarm_due -= 1.0;
            }
        }
        for (tx, events) in devices.iter().zip(per_device.iter_mut()) {
            if !events.is_empty() {
                let _ = tx.send(std::mem::take(events));
            }
        }
        if let Some(p) = &scn.phones {
            let hour = (6.0 + 24.0 * t / (p.day_s * ts)) % 24.0;
            let bump = |c: f64| (-0.5 * ((hour - c) / 1.5).powi(2)).exp();
            phone_due += (p.base_per_s + p.peak_per_s * (bump(8.0) + bump(18.0))) * dt;
            while phone_due >= 1.0 && !phones.is_empty() {
                let i = rng.below(phones.len() as u64) as usize;
                let _ = phones[i].send(visit_check(i, phone_n[i]));
                phone_n[i] += 1;
                phone_due -= 1.0;
            }
        }
    }
    shared.target_rate.store(0, Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    (start.elapsed().as_secs_f64(), steps)
}

/// `sustained_rate_per_s` of the newest `saturation-*.json` in the reports folder.
fn latest_saturation(dir: &Path) -> anyhow::Result<f64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                // `saturation-<time>.json`, not another scenario's (`saturation-single-...`).
                n.strip_prefix("saturation-")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                    && n.ends_with(".json")
            })
        })
        .collect();
    files.sort();
    let Some(path) = files.pop() else {
        bail!(
            "this scenario runs at a fraction of the saturation rate: run the `saturation` scenario first (reports in {}) or pass --saturation-rate",
            dir.display()
        );
    };
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    v["sustained_rate_per_s"]
        .as_f64()
        .filter(|r| *r > 0.0)
        .with_context(|| format!("{} has no sustained_rate_per_s", path.display()))
}
