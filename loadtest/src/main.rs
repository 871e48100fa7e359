//! `homeward-loadtest`: drives simulated devices (MQTT) and phones (HTTP) against Homeward at a
//! fixed rate or ramping to saturation, through database outages and server crashes, and
//! proves that nothing was lost or stored twice. See loadtest/README.md.

mod db;
mod device;
mod drain;
mod live;
mod mix;
mod phone;
mod report;
mod run;
mod scenario;
mod server;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// The harness shares the machine with the server it measures: every cycle it spends is one
/// the server does not get, so it uses the faster allocator too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::run::{Options, Target};
use crate::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load-test harness for Homeward: saturation, outages and proof of zero loss"
)]
struct Cli {
    /// Scenario files (`loadtest/scenarios/<name>.toml`) or names of the bundled scenarios.
    #[arg(required = true)]
    scenarios: Vec<String>,
    /// The `homeward` binary to run (default: next to this executable).
    #[arg(long)]
    homeward_bin: Option<PathBuf>,
    /// Where reports go (default: loadtest/reports in the source tree).
    #[arg(long)]
    reports_dir: Option<PathBuf>,
    /// Saturation rate (events/s) for scenarios run at a fraction of it (default: the newest
    /// saturation report).
    #[arg(long)]
    saturation_rate: Option<f64>,
    /// Multiply every duration in the scenario (0.5: twice as quick).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Use a running Homeward instead of starting one: its MQTT address (127.0.0.1:PORT).
    #[arg(long, requires_all = ["http", "database_url"])]
    mqtt: Option<String>,
    /// The running Homeward's HTTP base URL (http://127.0.0.1:PORT).
    #[arg(long)]
    http: Option<String>,
    /// The running Homeward's database, for fixtures, the COPY baseline and verification.
    #[arg(long, env = "LOADTEST_DATABASE_URL")]
    database_url: Option<String>,
    /// The running Homeward's process id, for CPU and memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("homeward-loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("homeward-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false) when a run lost or doubled an event.
async fn main_async(cli: Cli) -> anyhow::Result<bool> {
    let reports_dir = cli
        .reports_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reports"));
    std::fs::create_dir_all(&reports_dir)
        .with_context(|| format!("creating {}", reports_dir.display()))?;
    let mut all_zero_loss = true;
    let mut failed = false;
    for name in &cli.scenarios {
        let path = scenario_path(name);
        let scn = Scenario::load(&path)?;
        let target = match &cli.mqtt {
            Some(mqtt) => {
                let (host, port) = mqtt.rsplit_once(':').context("--mqtt is HOST:PORT")?;
                server::ensure_loopback(host)?;
                let http = cli.http.clone().expect("clap requires it");
                let url = reqwest::Url::parse(&http).context("--http is a URL")?;
                server::ensure_loopback(url.host_str().unwrap_or(""))?;
                let database: tokio_postgres::Config = cli
                    .database_url
                    .as_deref()
                    .expect("clap requires it")
                    .parse()
                    .context("--database-url")?;
                for host in database.get_hosts() {
                    if let tokio_postgres::config::Host::Tcp(h) = host {
                        server::ensure_loopback(h)?;
                    }
                }
                Target::External {
                    mqtt: (host.to_string(), port.parse().context("--mqtt port")?),
                    http,
                    database,
                    server_pid: cli.server_pid,
                }
            }
            None => Target::Own {
                homeward_bin: server::find_homeward(cli.homeward_bin.as_deref())?,
            },
        };
        eprintln!("=== scenario {} ({}) ===", scn.name, path.display());
        let report = run::run(
            scn,
            Options {
                target,
                reports_dir: reports_dir.clone(),
                saturation_rate: cli.saturation_rate,
                time_scale: cli.time_scale,
            },
        )
        .await;
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                eprintln!("homeward-loadtest: scenario {name}: {e:#}");
                failed = true;
                continue;
            }
        };
        let stem = format!(
            "{}-{}",
            report.scenario,
            report.started_at.replace([':', '-'], "")
        );
        let json_path = reports_dir.join(format!("{stem}.json"));
        let svg_path = reports_dir.join(format!("{stem}.svg"));
        std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
        std::fs::write(&svg_path, report::svg(&report))?;
        print_summary(&report);
        println!(
            "report: {}\nchart:  {}",
            json_path.display(),
            svg_path.display()
        );
        all_zero_loss &= report.zero_loss;
    }
    if failed {
        anyhow::bail!("at least one scenario could not run");
    }
    Ok(all_zero_loss)
}

fn scenario_path(name: &str) -> PathBuf {
    let p = PathBuf::from(name);
    if p.is_file() {
        return p;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
}

fn print_summary(r: &report::Report) {
    if let Some(d) = &r.drain {
        println!(
            "drain        {} messages from {} devices published in {:.1}s; drained in {:.2}s at {:.0}/s (ratio to COPY {}); CPU per 100,000: server {:.2}s, PostgreSQL {:.2}s; server peak RSS {} MiB; Mosquitto {:.2} CPU-s",
            d.messages,
            d.devices,
            d.published_s,
            d.drain_s,
            d.drain_rate_per_s,
            d.ratio_to_copy.map_or("-".into(), |v| v.to_string()),
            d.server_cpu_s_per_100k,
            d.postgres_cpu_s_per_100k,
            d.server_rss_peak_mb.map_or("-".into(), |v| v.to_string()),
            d.mosquitto_cpu_s,
        );
    }
    let lat = &r.latency_ms.mqtt;
    let opt = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_else(|| "-".into());
    println!("\n--- {} ---", r.scenario);
    println!(
        "offered      {} events ({} MQTT, {} HTTP), {:.0}/s over {:.1}s",
        r.offered.events,
        r.offered.mqtt_events,
        r.offered.http_events,
        r.offered.per_s,
        r.load_seconds
    );
    println!(
        "acknowledged {} events; sustained {:.0}/s; drained in {:.1}s after the load",
        r.acknowledged.events, r.sustained_rate_per_s, r.drain_seconds
    );
    match (&r.baseline_copy, &r.baseline_copy_after) {
        (Some(b), Some(a)) => println!(
            "COPY baseline {:.0} rows/s before the load, {:.0} after, mean {:.0}; ratio {}",
            b.rows_per_s,
            a.rows_per_s,
            r.baseline_rows_per_s.unwrap_or_default(),
            opt(r.ratio_to_copy)
        ),
        (Some(b), None) => println!(
            "COPY baseline {:.0} rows/s; ratio {}",
            b.rows_per_s,
            opt(r.ratio_to_copy)
        ),
        _ => {}
    }
    println!(
        "MQTT publish->ack ms: p50 {} p95 {} p99 {} max {} (n={})",
        lat.p50_ms, lat.p95_ms, lat.p99_ms, lat.max_ms, lat.count
    );
    let h = &r.latency_ms.http;
    if h.count > 0 {
        println!(
            "HTTP check-in ms:     p50 {} p95 {} p99 {} max {} (n={})",
            h.p50_ms, h.p95_ms, h.p99_ms, h.max_ms, h.count
        );
    }
    let a = &r.alarm_path;
    println!(
        "alarm path ms:        p50 {} p99 {} (matched {}); {}",
        a.latency.p50_ms, a.latency.p99_ms, a.matched, a.note
    );
    for s in &a.stages {
        println!(
            "  in the server, arrival to {}: p50 {} p99 {} ms (n={})",
            s.stage, s.p50_ms, s.p99_ms, s.count
        );
    }
    println!(
        "server: cpu avg {}% max {}%, rss first {} max {} last {} MB, growth {} MB/min, restarts {}; postgres cpu avg {}%, harness cpu avg {}%",
        opt(r.server.cpu_avg_pct),
        opt(r.server.cpu_max_pct),
        opt(r.server.rss_first_mb),
        opt(r.server.rss_max_mb),
        opt(r.server.rss_last_mb),
        opt(r.server.rss_growth_mb_per_min),
        r.server.restarts,
        opt(r.server.postgres_cpu_avg_pct),
        opt(r.server.harness_cpu_avg_pct),
    );
    for rec in &r.recovery {
        println!(
            "after {}: backlog {} drained in {}s at {}/s ({}x the rate before)",
            rec.kind,
            rec.backlog_at_end_of_outage,
            opt(rec.seconds_to_drain),
            opt(rec.drain_rate_per_s),
            opt(rec.drain_rate_ratio)
        );
    }
    let v = &r.verification;
    println!(
        "verification: {} devices, {} pairs offered, {} stored, lost {}, duplicated {}, unexpected {}, unacked at end {}, resends {}, dead letters {}",
        v.devices, v.offered_pairs, v.stored_pairs, v.lost, v.duplicated, v.unexpected, v.unacked_at_end, r.resends, v.dead_letters
    );
    if let Some(end) = &r.ramp_end {
        let note = if end == "fell behind" {
            ""
        } else {
            " (the server kept up with all of it: the sustained rate is a lower bound)"
        };
        println!("ramp         {end}{note}");
    }
    println!(
        "target {} (min {}, max {}): {} -> {}",
        r.target.metric,
        opt(r.target.min),
        opt(r.target.max),
        opt(r.target.value),
        if r.target.met { "MET" } else { "NOT MET" }
    );
    println!("ZERO LOSS: {}", if r.zero_loss { "yes" } else { "NO" });
}
