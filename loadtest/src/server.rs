//! The system under test: a private PostgreSQL (Homeward's own `EmbeddedPostgres`, so the
//! harness can stop and start it and run the COPY baseline against the same cluster) and
//! `homeward serve` as a child process (so it can be killed with SIGKILL and restarted).

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use homeward::db::embedded::{EmbeddedPostgres, StartOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
    child: Child,
    pub http: String,
    pub pid: u32,
}

pub struct ServerSpec {
    pub bin: PathBuf,
    pub database_url: String,
    pub mqtt_port: u16,
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
        let mut cmd = Command::new(&spec.bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("HOMEWARD") {
                cmd.env_remove(key);
            }
        }
        cmd.env("RUST_LOG", "warn")
            .env("HOMEWARD__DATABASE__URL", &spec.database_url)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                &format!("127.0.0.1:{}", spec.mqtt_port),
                "serve",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", spec.bin.display()))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let http = tokio::time::timeout(Duration::from_secs(90), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.trim().strip_prefix("HTTP API:") {
                    return Some(
                        rest.trim()
                            .trim_end_matches('/')
                            .trim_end_matches("/v1")
                            .to_string(),
                    );
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(http) = http else {
            let _ = child.start_kill();
            bail!(
                "`homeward serve` did not print its HTTP address; see {}",
                spec.log.display()
            );
        };
        // Keep reading stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let this = Self { child, http, pid };
        this.wait_ready(Duration::from_secs(90)).await?;
        Ok(this)
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.http);
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(r) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the server was not ready within {within:?}")
    }

    /// SIGKILL: no shutdown, no flush, no acks.
    pub async fn kill_hard(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait (then SIGKILL after 30 s).
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}
