//! The application under test: [`spawn_app`] starts it in-process with HTTP and the embedded
//! broker on free ports, against a fresh database cloned from the migrated template, and
//! returns once it is ready (its ingest subscriber connected). [`TestApp`] holds what a test
//! needs to talk to it (addresses, a pool on its database, an HTTP client) and its HTTP
//! helpers.
//!
//! The HTTP helpers take their arguments in one order, `(path, token, body)`, and come in three
//! kinds: `request`/`get` return the raw response (for headers and streams), `*_json` return
//! `(status, JSON body)` with `Value::Null` for a body that is not JSON, and `*_ok` assert the
//! success status and return the body.

use std::net::SocketAddr;
use std::time::Duration;

use homeward::auth::{self, OrgKind, Role};
use homeward::config::BrokerUrl;
use homeward::config::{Secret, Settings};
use homeward::db::{build_pool, Database};
use homeward::startup::Application;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cluster::TestServer;
use crate::sse::SseReader;
use crate::{curl_ok, eventually};

pub struct TestApp {
    pub http: SocketAddr,
    pub mqtt: BrokerUrl,
    /// The embedded broker's `mqtts` listener, when TLS is configured.
    pub mqtt_tls: Option<SocketAddr>,
    /// A pool on the application's database as its owner (a superuser, so row-level security
    /// does not apply), for tests to set up and check rows.
    pub pool: deadpool_postgres::Pool,
    /// The application's own request-path pool (role `homeward_app`, under row-level
    /// security); take connections from it as handlers do, with
    /// `homeward::db::tenancy::checkout`.
    pub app_pool: deadpool_postgres::Pool,
    /// The application's service pool (role `homeward_service`: ingest, derivations).
    pub service_pool: deadpool_postgres::Pool,
    /// The owner's connection settings (see [`crate::cluster::connections`] for the roles').
    pub db_config: tokio_postgres::Config,
    pub client: reqwest::Client,
    /// The in-process ingest consumer (nothing to abort on the MQTT client path).
    pub ingest_consumer: homeward::ingest::local::ConsumerHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Settings for a test: HTTP and the embedded broker on free ports, a short shutdown grace,
/// quiet logs.
pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.http.listen = "127.0.0.1:0".parse().expect("an address");
    settings.mqtt.embedded_listen = "127.0.0.1:0".parse().expect("an address");
    settings.http.shutdown_grace_secs = 1;
    settings.log.filter = "warn".into();
    settings
}

/// Starts the application with the embedded broker on a free port, against a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

/// [`spawn_app`] with settings of the caller's choosing.
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
    // As in production: the request path, the service work and credential checks on pools of
    // their own, each as its role, and migrations as the owner.
    let database = Database::connect(crate::cluster::connections(&db_config), 8, 2, 5);
    let app_pool = database.pool.clone();
    let service_pool = database.service_pool.clone();
    let app = Application::build_with_database(settings, database)
        .await
        .expect("application starts");
    let http = app.http_addr();
    let mqtt = app.mqtt_endpoint().clone();
    let mqtt_tls = app.mqtt_tls_addr();
    let ingest_consumer = app.ingest_consumer();
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
        app_pool,
        service_pool,
        db_config,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client"),
        ingest_consumer,
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

    /// Any request: a bearer token and a JSON body where given. The raw response.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e})"))
    }

    /// `GET path`, with a bearer token where given. The raw response.
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.request(Method::GET, path, token, None).await
    }

    /// (status, body as text) of any request.
    pub async fn request_text(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String) {
        let r = self.request(method, path, token, body).await;
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// (status, JSON body or `Null`) of a request with a bearer token.
    pub async fn request_json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, text) = self.request_text(method, path, Some(token), body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// (status, JSON body or `Null`) of `GET path`.
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        self.request_json(Method::GET, path, token, None).await
    }

    /// (status, JSON body or `Null`) of `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.request_json(Method::POST, path, token, Some(body))
            .await
    }

    /// The JSON body of a request that must succeed (any 2xx; `Null` for an empty body).
    pub async fn request_ok(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Value {
        let (status, text) = self
            .request_text(method.clone(), path, Some(token), body)
            .await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The JSON body of `GET path`, which must answer 200.
    pub async fn get_ok(&self, path: &str, token: &str) -> Value {
        let (status, text) = self
            .request_text(Method::GET, path, Some(token), None)
            .await;
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    /// `POST path` with a JSON body as a device (phones check in this way): HTTP Basic with
    /// the device's uid and secret. The raw response.
    pub async fn post_as_device(
        &self,
        path: &str,
        uid: &str,
        secret: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .basic_auth(uid, Some(secret))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} as {uid}: no answer ({e})"))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics", None).await;
        r.text().await.expect("the metrics text")
    }

    /// The live stream (`GET /v1/live`) as this token's holder sees it, once it has answered
    /// 200 with its first comment.
    pub async fn live(&self, token: &str) -> SseReader {
        SseReader::open(self, token).await
    }

    /// An organisation of `kind`, without users.
    pub async fn organisation(&self, name: &str, kind: OrgKind) -> auth::Organisation {
        let client = self.pool.get().await.expect("a connection");
        auth::create_organisation(&**client, name, kind)
            .await
            .expect("the organisation is created")
    }

    /// An organisation of `kind` with one user of `role`; returns (org, token).
    pub async fn org_with_user(
        &self,
        name: &str,
        kind: OrgKind,
        role: Role,
    ) -> (auth::Organisation, String) {
        let org = self.organisation(name, kind).await;
        let token = self.user(&org, &format!("{name} user"), role).await;
        (org, token)
    }

    /// A user of `role` in `org`; returns their token.
    pub async fn user(&self, org: &auth::Organisation, name: &str, role: Role) -> String {
        let client = self.pool.get().await.expect("a connection");
        auth::create_user(&**client, org, name, role)
            .await
            .expect("the user is created")
            .1
    }

    /// Registers a device of `kind` in `org`; returns its secret.
    pub async fn device(&self, org: &auth::Organisation, uid: &str, kind: &str) -> String {
        let client = self.pool.get().await.expect("a connection");
        let kind: homeward::devices::DeviceKind = kind.parse().expect("a known device kind");
        homeward::devices::create_device(&**client, org, uid, kind)
            .await
            .expect("the device is created")
            .1
    }

    /// The password of Homeward's own MQTT clients (the service user) on the embedded broker.
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
                .expect("the application task ends without a panic");
        }
    }
}
