//! The system under test: a private PostgreSQL (Homeward's own `EmbeddedPostgres`, so the
//! harness can stop and start it and run the COPY baseline against the same cluster) and
//! `homeward serve` as a child process (so it can be killed with SIGKILL and restarted).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use homeward::db::embedded::{EmbeddedPostgres, StartOptions};
use homeward_testkit::process::{homeward_command, ServeProcess};

use crate::scenario::Postgres;

/// Finds the `homeward` binary: the option, else next to this executable (and its parent
/// folder, for test executables in `target/<profile>/deps`).
pub fn find_homeward(option: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = option {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--homeward-bin {} is not a file", p.display());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("homeward");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no `homeward` binary next to {}; build it (`cargo build --release -p homeward`) or pass --homeward-bin",
        exe.display()
    )
}

/// Refuses anything but loopback: the harness only ever sends traffic to this machine.
pub fn ensure_loopback(host: &str) -> anyhow::Result<()> {
    let ok = host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if !ok {
        bail!("`{host}` is not a loopback address; the load test only targets 127.0.0.1");
    }
    Ok(())
}

pub async fn start_postgres(dir: &Path, pg: &Postgres) -> anyhow::Result<EmbeddedPostgres> {
    let mut settings: Vec<(String, String)> =
        vec![("fsync".into(), if pg.fsync { "on" } else { "off" }.into())];
    if !pg.fsync {
        settings.push(("synchronous_commit".into(), "off".into()));
        settings.push(("full_page_writes".into(), "off".into()));
    }
    settings.extend(pg.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
    let options = StartOptions {
        server_settings: settings,
        ..Default::default()
    };
    EmbeddedPostgres::start(dir, &options)
        .await
        .context("starting PostgreSQL for the load test")
}

/// The postmaster's pid (first line of postmaster.pid), for CPU sampling.
pub fn postmaster_pid(pg_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(pg_dir.join("postgres").join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// `homeward serve` as a child process.
pub struct ServerProcess {
    serve: ServeProcess,
    pub http: String,
    pub pid: u32,
}

pub struct ServerSpec {
    pub bin: PathBuf,
    /// The owner's URL (migrations).
    pub database_url: String,
    /// The runtime roles' URLs (`database.app_url`, `database.service_url`), so that the
    /// server under test runs as in production.
    pub role_urls: Option<(String, String)>,
    pub mqtt_port: u16,
    /// An external broker (`mqtt.url`); none: the embedded one on `mqtt_port`.
    pub mqtt_url: Option<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl ServerProcess {
    pub async fn start(spec: &ServerSpec) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("opening {}", spec.log.display()))?;
        let mut cmd = homeward_command(&spec.bin);
        if let Some((app, service)) = &spec.role_urls {
            cmd.env("HOMEWARD__DATABASE__APP_URL", app)
                .env("HOMEWARD__DATABASE__SERVICE_URL", service);
        }
        if let Some(url) = &spec.mqtt_url {
            cmd.env("HOMEWARD__MQTT__URL", url);
        }
        cmd.env("HOMEWARD__DATABASE__URL", &spec.database_url)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                &format!("127.0.0.1:{}", spec.mqtt_port),
                "serve",
            ])
            .stderr(Stdio::from(log));
        let serve = ServeProcess::start(cmd, Duration::from_secs(90))
            .await
            .with_context(|| {
                format!("`homeward serve` did not start; see {}", spec.log.display())
            })?;
        serve.wait_ready(Duration::from_secs(90)).await?;
        Ok(Self {
            http: serve.http.clone(),
            pid: serve.pid(),
            serve,
        })
    }

    /// SIGKILL: no shutdown, no flush, no acks.
    pub async fn kill_hard(self) {
        self.serve.kill_hard().await;
    }

    /// SIGTERM and wait (then SIGKILL after 30 s).
    pub async fn stop(self) {
        self.serve.stop(Duration::from_secs(30)).await;
    }
}
