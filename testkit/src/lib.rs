//! What Homeward's tests have in common, kept once: the API tests (`tests/api`), the
//! simulator's end-to-end tests and the load-test harness all use this kit.
//!
//! - [`cluster`]: the private PostgreSQL cluster that every test process shares, and a fresh
//!   database per test cloned from a migrated template. Its binary, `homeward-test-db stop`,
//!   stops the cluster. It lives here, not in the server crate, so the production binary
//!   carries no test code.
//! - [`app`]: [`spawn_app`] starts the real application in-process on free ports, against a
//!   fresh database; [`TestApp`] talks to it over HTTP as clients do, with one argument order
//!   everywhere: `(path, token, body)`.
//! - [`mqtt`]: MQTT clients as devices are: [`mqtt::TestDevice`] (a telecare device that
//!   publishes events and hears its downlink), [`mqtt::connect`] (a bare client, until CONNACK
//!   or refusal), [`mqtt::publish_and_wait`] (until the broker's PUBACKs) and
//!   [`mqtt::run_device`] (store and forward: resends until Homeward's end-to-end ack).
//! - [`sse`]: the live stream (`GET /v1/live`): a frame parser and [`sse::SseReader`].
//! - [`mosquitto`]: a Mosquitto broker on a free port.
//! - [`process`]: the `homeward` binary as a child process: commands with a clean environment,
//!   and `homeward serve` ([`process::ServeProcess`]).
//! - [`db`]: stored rows as tests compare them: event counts, snapshots of the derived tables.
//! - [`metrics`]: values from the Prometheus text of `/metrics`.
//! - `browser` (feature `browser`): a real headless Chromium driven over WebDriver, for the
//!   console's tests; `axe` (same feature): the automated accessibility check (axe-core, vendored
//!   in `vendor/axe-core/`) run in that browser.
//!
//! A test helper fails loudly: most of these panic with a message naming what went wrong.
//! What the load-test harness uses returns errors instead, as a harness must carry on.

pub mod app;
#[cfg(feature = "browser")]
pub mod axe;
#[cfg(feature = "browser")]
pub mod browser;
pub mod cluster;
pub mod db;
pub mod metrics;
pub mod mosquitto;
pub mod mqtt;
pub mod process;
pub mod sse;

use std::future::Future;
use std::time::Duration;

pub use app::{spawn_app, spawn_app_on, spawn_app_with, test_settings, TestApp};
pub use mosquitto::Mosquitto;

/// Retries `check` until it returns `Some`, for up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1 (a small race with other processes is acceptable in tests and
/// in the harness, which binds it at once).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `curl -sSf <args>` without blocking the runtime; true if it succeeded.
pub async fn curl_ok(args: &[&str]) -> bool {
    tokio::process::Command::new("curl")
        .args(["-sSf", "-o", "/dev/null", "--max-time", "10"])
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("curl is installed (scripts/install-deps.sh test)")
        .success()
}
