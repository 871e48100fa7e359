//! The `homeward` binary as a child process, as an operator runs it: admin commands, and
//! `homeward serve`, which can be stopped with SIGTERM or killed with SIGKILL mid-stream.

use std::ffi::OsStr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A command for the `homeward` binary at `bin` with nothing of the caller's environment
/// leaking in: every `HOMEWARD*` variable removed, and `RUST_LOG=warn`.
pub fn homeward_command(bin: impl AsRef<OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HOMEWARD") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// `homeward serve` as a child process (killed if dropped).
pub struct ServeProcess {
    child: tokio::process::Child,
    pid: u32,
    /// The HTTP API's base URL, as printed without its `/v1/` (`http://127.0.0.1:<port>`).
    pub http: String,
    /// What `serve` printed at start, up to and including "Press Ctrl-C to stop.".
    pub banner: Vec<String>,
}

impl ServeProcess {
    /// Starts `cmd` (the binary with `serve` and its options; its stderr wherever the caller
    /// pointed it) and reads its start-up banner, for up to `within`. What it prints later is
    /// read and dropped, so it never blocks on a full pipe.
    pub async fn start(cmd: std::process::Command, within: Duration) -> anyhow::Result<Self> {
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting `homeward serve`")?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().context("serve's standard output")?;
        let mut lines = BufReader::new(stdout).lines();
        let banner = tokio::time::timeout(within, async {
            let mut banner = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                let done = line.starts_with("Press Ctrl-C");
                banner.push(line);
                if done {
                    return Some(banner);
                }
            }
            None
        })
        .await;
        let banner = match banner {
            Ok(Some(banner)) => banner,
            Ok(None) => {
                let status = child.wait().await.ok();
                bail!("`homeward serve` ended before printing its addresses ({status:?})")
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!("`homeward serve` did not print its addresses within {within:?}")
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut this = Self {
            child,
            pid,
            http: String::new(),
            banner,
        };
        let Some(api) = this.printed("HTTP API:") else {
            bail!("no `HTTP API:` line in {:?}", this.banner);
        };
        this.http = api
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_string();
        Ok(this)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The address printed after `label` (`HTTP API:`, `MQTT broker:`, `MQTT TLS:`).
    pub fn printed(&self, label: &str) -> Option<&str> {
        self.banner
            .iter()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
    }

    /// Waits until `GET /readyz` answers 200 (plain HTTP), for up to `within`.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/readyz", self.http);
        let ready = crate::eventually(within, || async {
            let r = client.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        match ready {
            Some(()) => Ok(()),
            None => bail!("the server was not ready within {within:?}"),
        }
    }

    /// SIGKILL: no shutdown, no flush, no acks.
    pub async fn kill_hard(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then waits up to `within` for it to exit: its exit status, or `None` if it was
    /// still running (it is then killed).
    pub async fn stop(mut self, within: Duration) -> Option<ExitStatus> {
        // No id once it has exited (and was reaped): nothing to signal.
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        }
    }
}
