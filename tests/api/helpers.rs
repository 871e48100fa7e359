#![allow(dead_code)] // shared by tests that land over several issues
//! `spawn_app()` and friends.

use std::net::SocketAddr;
use std::time::Duration;

use homeward::auth::{self, OrgKind, Role};
use homeward::config::{BrokerUrl, Secret, Settings};
use homeward::db::test_cluster::TestServer;
use homeward::db::{build_pool, Database};
use homeward::devices::{self, DeviceKind};
use homeward::startup::Application;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub http: SocketAddr,
    pub mqtt: BrokerUrl,
    /// The embedded broker's `mqtts` listener, when TLS is configured.
    pub mqtt_tls: Option<SocketAddr>,
    pub pool: deadpool_postgres::Pool,
    pub db_config: tokio_postgres::Config,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.http.listen = "127.0.0.1:0".parse().unwrap();
    settings.mqtt.embedded_listen = "127.0.0.1:0".parse().unwrap();
    settings.http.shutdown_grace_secs = 1;
    settings.log.filter = "warn".into();
    settings
}

/// Starts the application with the embedded broker on a free port, against a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let server = TestServer::get().await.expect("test PostgreSQL");
    let db_config = server.fresh_database().await.expect("fresh database");
    spawn_app_on(settings, db_config).await
}

/// Starts the application against a database of the caller's choosing.
pub async fn spawn_app_on(settings: Settings, db_config: tokio_postgres::Config) -> TestApp {
    homeward::telemetry::init_logs(&settings.log);
    // With TLS, readiness is asked with curl trusting the (self-signed) certificate.
    let ca = settings.tls.cert_file.clone();
    let pool = build_pool(db_config.clone(), 8, 5);
    // Credential checks on a pool of their own, as in production.
    let auth_pool = build_pool(db_config.clone(), 2, 5);
    // The connect settings too, so that the live stream is relayed as in production.
    let database =
        Database::from_pools(pool.clone(), auth_pool).with_connect_config(db_config.clone());
    let app = Application::build_with_database(settings, database)
        .await
        .expect("application starts");
    let http = app.http_addr();
    let mqtt = app.mqtt_endpoint().clone();
    let mqtt_tls = app.mqtt_tls_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .expect("clean shutdown");
    });
    let app = TestApp {
        http,
        mqtt,
        mqtt_tls,
        pool,
        db_config,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        stop: Some(stop),
        task: Some(task),
    };
    // Ready means the ingest subscriber is connected too.
    let ready = eventually(Duration::from_secs(20), || async {
        if let Some(ca) = &ca {
            let url = format!("https://localhost:{}/readyz", app.http.port());
            return curl_ok(&["--cacert", &ca.to_string_lossy(), &url])
                .await
                .then_some(());
        }
        let r = app.client.get(app.url("/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the application becomes ready");
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    /// A provider organisation with one user of `role`; returns (org, token).
    pub async fn org_with_user(
        &self,
        name: &str,
        kind: OrgKind,
        role: Role,
    ) -> (auth::Organisation, String) {
        let client = self.pool.get().await.unwrap();
        let org = auth::create_organisation(&**client, name, kind)
            .await
            .unwrap();
        let (_, token) = auth::create_user(&**client, &org, &format!("{name} user"), role)
            .await
            .unwrap();
        (org, token)
    }

    pub async fn device(&self, org: &auth::Organisation, uid: &str, kind: &str) -> String {
        let client = self.pool.get().await.unwrap();
        let kind: DeviceKind = kind.parse().unwrap();
        devices::create_device(&**client, org, uid, kind)
            .await
            .unwrap()
            .1
    }

    pub fn service_password(&self) -> String {
        self.mqtt
            .password
            .as_ref()
            .map(|p: &Secret<String>| p.expose().clone())
            .unwrap_or_default()
    }

    /// Stops the application and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("stops in time")
                .unwrap();
        }
    }
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

/// Retries `check` until it returns `Some`, for up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
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

/// A free TCP port on 127.0.0.1 (a small race with other processes is acceptable in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `postgres://` URL for a test database, for child processes.
pub fn url_of(config: &tokio_postgres::Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("unexpected host {other:?}"),
    };
    format!(
        "postgres://{}:{}@{}:{}/{}",
        config.get_user().unwrap(),
        String::from_utf8(config.get_password().unwrap().to_vec()).unwrap(),
        host,
        config.get_ports()[0],
        config.get_dbname().unwrap()
    )
}

/// (rows, distinct seqs) stored for one device.
pub async fn event_counts(pool: &deadpool_postgres::Pool, uid: &str) -> (i64, i64) {
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT e.seq) FROM events e JOIN devices d ON d.id = e.device_id WHERE d.uid = $1",
            &[&uid],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// A Mosquitto broker from Debian's packages on a free port, anonymous, in memory; killed on drop.
/// Its inflight window is the bounded one `docs/operations.md` recommends (with
/// `max_inflight_messages 0`, Mosquitto 2.0.11 reuses packet ids that are still unacknowledged).
pub struct Mosquitto {
    child: std::process::Child,
    pub port: u16,
    /// Its MQTT over TLS listener ([`Mosquitto::start_tls`]).
    pub tls_port: Option<u16>,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Also listens for MQTT over TLS on `tls_port`, with this PEM certificate and key.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Self {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&std::path::Path, &std::path::Path)>) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        let mut config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 10000\nmax_queued_messages 1000000\n"
        );
        let tls_port = tls.map(|(cert, key)| {
            let tls_port = free_port();
            // Run as root, Mosquitto would switch to its own user, who cannot read the key in
            // the test's private folder.
            config.push_str(&format!(
                "user root\nlistener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert.display(),
                key.display()
            ));
            tls_port
        });
        std::fs::write(&conf, config).unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is installed (scripts/install-deps.sh test)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for port in std::iter::once(port).chain(tls_port) {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "mosquitto listens");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self {
            child,
            port,
            tls_port,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every derived row (visits, alarms, alarm history, device health) without surrogate ids, in
/// a stable order: what a rebuild from the raw events and the reference data must reproduce.
/// Alarm history names its alarm by the event that opened it, not by the alarm's id.
#[derive(Debug, PartialEq, Eq)]
pub struct Derived {
    pub visits: Vec<String>,
    pub alarms: Vec<String>,
    pub alarm_events: Vec<String>,
    pub device_health: Vec<String>,
}

pub async fn derived_snapshot(pool: &deadpool_postgres::Pool) -> Derived {
    let client = pool.get().await.unwrap();
    let rows = |sql: &'static str| {
        let client = &client;
        async move {
            let mut rows: Vec<String> = client
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            rows.sort();
            rows
        }
    };
    Derived {
        visits: rows("SELECT (to_jsonb(v) - 'id')::text FROM visits v").await,
        alarms: rows("SELECT (to_jsonb(a) - 'id')::text FROM alarms a").await,
        alarm_events: rows(
            "SELECT (to_jsonb(e) - 'id' - 'alarm_id'
                     || jsonb_build_object('alarm', jsonb_build_array(a.source_device_id, a.source_seq, a.kind)))::text
               FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id",
        )
        .await,
        device_health: rows("SELECT to_jsonb(h)::text FROM device_health h").await,
    }
}

/// The value of one series (`name{labels}` exactly as exposed) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
