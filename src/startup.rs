//! Building and running the application: the database (embedded or external), migrations,
//! storage maintenance, the MQTT broker (embedded or external) and the HTTP server.
//!
//! [`Application::build`] binds every listener before it returns, so callers (and tests, with
//! port 0) can read the real addresses; [`Application::run_until_stopped`] serves until the
//! shutdown future resolves, then stops everything in order: HTTP (in-flight requests finish),
//! background tasks, the broker, the pool, and last the embedded PostgreSQL.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use utoipa_actix_web::AppExt;

use crate::auth::revocations::{Revocations, Revoked};
use crate::broker::{Broker, BrokerConfig, BrokerControl, BrokerHandle, Principal};
use crate::config::{BrokerUrl, EmbeddedIngest, Settings};
use crate::db::{self, maintenance, Database, StorageMode};
use crate::devices::{DeviceAuthenticator, DeviceDirectory, SERVICE_USER};
use crate::http::{self, AppState, BrokerProbe};
use crate::ingest::{mqtt, Writer};
use crate::tls::TlsSetup;

/// Devices registered under an id now reserved for Homeward's own clients (before the
/// reservation existed) are refused at CONNECT; say which, once, so an operator can replace
/// them.
async fn warn_of_reserved_device_ids(client: &deadpool_postgres::Client) {
    let found = client
        .query(
            "SELECT uid FROM devices WHERE lower(left(uid, $1)) = lower($2) ORDER BY uid LIMIT 100",
            &[
                &i32::try_from(crate::devices::RESERVED_CLIENT_ID_PREFIX.len()).unwrap_or(i32::MAX),
                &crate::devices::RESERVED_CLIENT_ID_PREFIX,
            ],
        )
        .await;
    match found {
        Ok(rows) if !rows.is_empty() => {
            let uids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            tracing::warn!(
                devices = %uids.join(", "),
                "these devices have ids reserved for Homeward's own MQTT clients and cannot \
                 connect; register them again under other ids"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not check devices for reserved ids"),
    }
}

/// Closes the MQTT connections of devices whose credential was revoked (embedded broker only:
/// an external broker is told by its own configuration, see `docs/operations.md`) and drops
/// them from the ingest directory. Ends at shutdown.
async fn end_revoked_device_sessions(
    mut revoked: tokio::sync::broadcast::Receiver<Revoked>,
    broker: Option<BrokerControl>,
    directory: Arc<DeviceDirectory>,
    mut shutdown: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let received = tokio::select! {
            r = revoked.recv() => r,
            _ = shutdown.changed() => return,
        };
        match received {
            Ok(Revoked::Device(uid)) => {
                directory.forget(&uid);
                if let Some(broker) = &broker {
                    broker.close_principal(&Principal::Device {
                        id: uid.to_string(),
                    });
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                // Which devices were revoked is lost: make every device sign in again.
                tracing::warn!(missed = n, "revocations missed by the device session task");
                directory.forget_all();
                if let Some(broker) = &broker {
                    broker.close_all_devices();
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Database(#[from] db::DbError),
    #[error("cannot listen for HTTP on {addr}: {source}; choose another with --http-listen")]
    HttpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the embedded MQTT broker on {addr}: {source}; choose another with --mqtt-listen")]
    BrokerBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Wraps a [`crate::broker::TlsBindError`], which names the address.
    #[error("{0}; choose another with mqtt.embedded_tls_listen")]
    BrokerTlsBind(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

pub struct Application {
    settings: Settings,
    http_addr: SocketAddr,
    /// How Homeward's own MQTT client reaches the broker: the embedded one on its plain
    /// loopback listener, or `mqtt.url`.
    mqtt: BrokerUrl,
    server: actix_web::dev::Server,
    db: Database,
    https: bool,
    mqtt_tls_addr: Option<SocketAddr>,
    mode: StorageMode,
    broker: Option<BrokerHandle>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    ingest: IngestTasks,
}

struct IngestTasks {
    subscriber: Vec<JoinHandle<()>>,
    /// The in-process consumer (unset on the MQTT client path).
    consumer: crate::ingest::local::ConsumerHandle,
    mqtt_stop: watch::Sender<bool>,
    writer: JoinHandle<()>,
    writer_stop: watch::Sender<bool>,
}

impl Application {
    /// Starts everything the settings ask for. `settings` are as [`Settings::load`] returns
    /// them, validated.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        if settings.database.url.is_none() {
            settings.ensure_data_dir()?;
        }
        // Bad TLS files stop start-up before the database is started.
        TlsSetup::load(&settings)?;
        let db = Database::open(&settings).await?;
        Self::build_on(settings, db).await
    }

    /// Like [`Self::build`], with a database already opened (tests pass a pool to a fresh clone).
    /// Settings made in code rather than by [`Settings::load`] are validated here, the same
    /// way; past this point nothing checks them again.
    pub async fn build_with_database(
        settings: Settings,
        db: Database,
    ) -> Result<Self, StartupError> {
        if let Err(e) = settings.validate() {
            let _ = db.close().await;
            return Err(e.into());
        }
        Self::build_on(settings, db).await
    }

    async fn build_on(settings: Settings, db: Database) -> Result<Self, StartupError> {
        let result = match TlsSetup::load(&settings) {
            Ok(tls) => Self::start(settings, tls, &db).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(parts) => Ok(parts.finish(db)),
            Err(e) => {
                // Do not leave an embedded PostgreSQL running behind a failed start.
                let _ = db.close().await;
                Err(e)
            }
        }
    }

    async fn start(
        settings: Settings,
        tls: TlsSetup,
        db: &Database,
    ) -> Result<Parts, StartupError> {
        let mode = db.migrate().await?.mode;
        {
            let client = db
                .service_pool
                .get()
                .await
                .map_err(|e| db::DbError::Unavailable(e.to_string()))?;
            warn_of_reserved_device_ids(&client).await;
        }
        let report = maintenance::run_once(
            &db.service_pool,
            mode,
            &settings.storage,
            chrono::Utc::now(),
        )
        .await?;
        if !report.created.is_empty() {
            tracing::info!(partitions = report.created.len(), "created partitions");
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(maintenance::run_periodically(
            db.service_pool.clone(),
            mode,
            settings.storage.clone(),
            shutdown_rx.clone(),
        )));

        let auth_failures = Arc::new(crate::auth::FailedCredentials::default());
        let (broker, mqtt) = match settings.broker_url() {
            None => {
                let (auth, service_password) =
                    DeviceAuthenticator::new(db.auth_pool.clone(), auth_failures.clone());
                let m = &settings.mqtt;
                let config = BrokerConfig {
                    bind: m.embedded_listen,
                    // Throughput is bounded by the unacknowledged window divided by the commit
                    // cycle; a wide window lets the writer fill large batches.
                    max_inflight: 10_000,
                    max_queued: m.max_queued_messages,
                    max_queued_bytes: m.max_queued_bytes,
                    device_max_messages_per_sec: m.device_max_messages_per_sec,
                    device_max_bytes_per_sec: m.device_max_bytes_per_sec,
                    device_burst: Duration::from_secs(m.device_burst_secs),
                    max_connections: m.max_connections,
                    max_subscriptions_per_client: m.max_subscriptions_per_client,
                    idle_timeout: Duration::from_secs(m.idle_timeout_secs),
                    tls: tls.server.clone().map(|server| crate::broker::TlsListener {
                        bind: settings.mqtt.embedded_tls_listen,
                        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
                    }),
                    ..BrokerConfig::default()
                };
                let handle = Broker::bind(config, auth).await.map_err(|source| {
                    let tls_failed = source
                        .get_ref()
                        .is_some_and(|e| e.is::<crate::broker::TlsBindError>());
                    if tls_failed {
                        StartupError::BrokerTlsBind(source)
                    } else {
                        StartupError::BrokerBind {
                            addr: settings.mqtt.embedded_listen,
                            source,
                        }
                    }
                })?;
                let addr = handle.local_addr();
                let endpoint = BrokerUrl {
                    host: addr.ip().to_string(),
                    port: addr.port(),
                    username: Some(SERVICE_USER.to_string()),
                    password: Some(crate::config::Secret::new(service_password)),
                    tls: false,
                };
                (Some(handle), endpoint)
            }
            Some(url) => (None, url),
        };

        // Ingest: the writer, then the subscriber that feeds it.
        let (mqtt_stop_tx, mqtt_stop_rx) = watch::channel(false);
        let (writer_stop_tx, writer_stop_rx) = watch::channel(false);
        let directory = DeviceDirectory::new(db.service_pool.clone());

        // Revoked credentials end their live sessions: the watcher finds them, this task closes
        // a device's MQTT connections and forgets it in the directory; event streams listen
        // themselves.
        let revocations = Revocations::default();
        tasks.push(revocations.watch(db.service_pool.clone(), shutdown_rx.clone()));
        tasks.push(tokio::spawn(end_revoked_device_sessions(
            revocations.subscribe(),
            broker.as_ref().map(BrokerHandle::control),
            directory.clone(),
            shutdown_rx.clone(),
        )));
        let (mut writer, writer_handle) =
            Writer::new(db.service_pool.clone(), settings.ingest.clone());
        // With the embedded broker, in-process unless asked for the loopback client; an
        // external broker is always reached by the MQTT client. Both feed the same writer.
        let in_process = broker
            .as_ref()
            .filter(|_| settings.mqtt.embedded_ingest == EmbeddedIngest::InProcess);
        let (subscriber, consumer) = match in_process {
            Some(broker) => crate::ingest::local::start(
                broker.local(),
                &settings.mqtt,
                crate::ingest::local::Inputs {
                    directory,
                    writer: writer_handle.clone(),
                    settings: settings.ingest.clone(),
                },
                mqtt_stop_rx,
            ),
            None => (
                mqtt::start(
                    &mqtt,
                    // Set exactly when `mqtt.tls` is (an `mqtts://` `mqtt.url`).
                    tls.mqtt_client.clone(),
                    &settings.mqtt,
                    &settings.ingest,
                    directory,
                    writer_handle.clone(),
                    mqtt_stop_rx,
                ),
                Default::default(),
            ),
        };
        writer.set_acker(subscriber.acker.clone());
        let live = crate::live::LiveHub::default();
        // With a database of their own (not the embedded one, which serves one instance),
        // instances show each other's changes on their live streams.
        let relay = match db.connect_config() {
            Some(connect) if settings.live.share_between_instances && db.embedded().is_none() => {
                crate::live::relay::start(
                    &live,
                    db.service_pool.clone(),
                    connect.clone(),
                    shutdown_rx.clone(),
                )
                .await
            }
            _ => Vec::new(),
        };
        let downlinks: Arc<dyn crate::ingest::DownlinkSender> = subscriber.acker.clone();
        // Deep feeds: the writer waits only if a derivation falls far behind (or while it
        // catches up at start-up on a very large backlog), never on an ordinary slow moment.
        // Their tasks stop at `shutdown`, which fires after ingest has drained.
        // The writer hands each batch to its feeds in turn: alarms first, they are waited for.
        let alarms_feed = writer.subscribe_committed(4096);
        let evv_feed = writer.subscribe_committed(4096);
        tasks.extend(crate::evv::start(
            db.service_pool.clone(),
            live.clone(),
            settings.evv.clone(),
            evv_feed,
            shutdown_rx.clone(),
        ));
        tasks.extend(crate::alarms::start(
            db.service_pool.clone(),
            live.clone(),
            &settings.alarms,
            settings.mqtt.client_id.clone(),
            alarms_feed,
            shutdown_rx.clone(),
        ));
        let writer_task = tokio::spawn(writer.run(writer_stop_rx));
        let connected = subscriber.connected.clone();

        let listener =
            TcpListener::bind(settings.http.listen).map_err(|source| StartupError::HttpBind {
                addr: settings.http.listen,
                source,
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| StartupError::HttpBind {
                addr: settings.http.listen,
                source,
            })?;
        let state = web::Data::new(AppState {
            pools: http::Pools::new(db.pool.clone(), db.auth_pool.clone()),
            auth_failures,
            // With the listener's real address, so that links the API prints (set-password
            // links, without `console.public_url`) reach this server when it was given port 0.
            settings: crate::config::Settings {
                http: crate::config::HttpSettings {
                    listen: http_addr,
                    ..settings.http.clone()
                },
                ..settings.clone()
            },
            writer: writer_handle,
            live,
            revocations,
            downlinks,
            broker: Arc::new(ReadyProbe { connected }),
            metrics: crate::telemetry::metrics_handle(),
        });
        let server = HttpServer::new(move || {
            // Every route comes from the one list that the OpenAPI description is built from,
            // so each is described, and a known path with another method answers 405.
            let mut app = App::new()
                .app_data(state.clone())
                .app_data(http::problem::json_config())
                .app_data(http::problem::path_config())
                .app_data(http::problem::query_config())
                .wrap(actix_web::middleware::from_fn(http::nul::refuse_nul))
                .wrap(tracing_actix())
                .wrap(actix_web::middleware::from_fn(http::request_id::assign))
                .into_utoipa_app();
            for part in http::openapi::PARTS {
                app = app.configure(part);
            }
            app.into_app()
                .configure(crate::console::routes)
                .default_service(web::to(http::problem::not_found))
        })
        .workers(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
        )
        .disable_signals()
        .shutdown_timeout(settings.http.shutdown_grace_secs);
        let https = tls.server.is_some();
        let server = match tls.server {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(|source| StartupError::HttpBind {
            addr: settings.http.listen,
            source,
        })?
        .run();
        let mqtt_tls_addr = broker.as_ref().and_then(BrokerHandle::tls_local_addr);

        let metrics = crate::telemetry::metrics_handle();
        let mut upkeep_shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => metrics.run_upkeep(),
                    _ = upkeep_shutdown.changed() => return,
                }
            }
        }));

        // Last, so that at shutdown the relay still carries the derivations' final changes.
        tasks.extend(relay);

        let ingest = IngestTasks {
            subscriber: subscriber.tasks,
            consumer,
            mqtt_stop: mqtt_stop_tx,
            writer: writer_task,
            writer_stop: writer_stop_tx,
        };
        Ok(Parts {
            settings,
            http_addr,
            mqtt,
            server,
            https,
            mqtt_tls_addr,
            mode,
            broker,
            shutdown_tx,
            tasks,
            ingest,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// True when HTTP is served over TLS (`tls.cert_file` is set).
    pub fn https(&self) -> bool {
        self.https
    }

    /// The embedded broker's `mqtts` listener, when it has one.
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.mqtt_tls_addr
    }

    /// Where devices and Homeward's own client reach the broker (with the service client's
    /// credentials on the embedded broker).
    pub fn mqtt_endpoint(&self) -> &BrokerUrl {
        &self.mqtt
    }

    pub fn storage_mode(&self) -> StorageMode {
        self.mode
    }

    /// The service role's pool (ingest, derivations): it sees every organisation.
    pub fn service_pool(&self) -> &deadpool_postgres::Pool {
        &self.db.service_pool
    }

    /// The in-process ingest consumer, for tests that crash it mid-stream.
    #[doc(hidden)]
    pub fn ingest_consumer(&self) -> crate::ingest::local::ConsumerHandle {
        self.ingest.consumer.clone()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Serves until `shutdown` resolves, then stops everything in order.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartupError> {
        let Application {
            server,
            db,
            broker,
            shutdown_tx,
            tasks,
            ingest,
            ..
        } = self;
        let handle = server.handle();
        let mut server_task = tokio::spawn(server);
        tokio::select! {
            _ = shutdown => tracing::info!("shutting down"),
            result = &mut server_task => {
                tracing::error!(?result, "the HTTP server stopped by itself");
            }
        }
        handle.stop(true).await;
        // Stop taking MQTT messages, let the writer commit what it holds, then the rest.
        let _ = ingest.mqtt_stop.send(true);
        for task in ingest.subscriber {
            let _ = task.await;
        }
        let _ = ingest.writer_stop.send(true);
        let _ = ingest.writer.await;
        let _ = shutdown_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        if let Some(broker) = broker {
            broker.shutdown().await;
        }
        db.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

struct Parts {
    settings: Settings,
    http_addr: SocketAddr,
    mqtt: BrokerUrl,
    server: actix_web::dev::Server,
    https: bool,
    mqtt_tls_addr: Option<SocketAddr>,
    mode: StorageMode,
    broker: Option<BrokerHandle>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    ingest: IngestTasks,
}

impl Parts {
    fn finish(self, db: Database) -> Application {
        Application {
            settings: self.settings,
            http_addr: self.http_addr,
            mqtt: self.mqtt,
            server: self.server,
            db,
            https: self.https,
            mqtt_tls_addr: self.mqtt_tls_addr,
            mode: self.mode,
            broker: self.broker,
            shutdown_tx: self.shutdown_tx,
            tasks: self.tasks,
            ingest: self.ingest,
        }
    }
}

/// Ready when Homeward's own subscriber is connected to the broker (embedded or external).
struct ReadyProbe {
    connected: mqtt::Connected,
}

impl BrokerProbe for ReadyProbe {
    fn is_up(&self) -> bool {
        self.connected.get()
    }
}

/// Request logs: one line per request at debug, errors at warn.
fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%r %s %Dms id=%{x-request-id}o")
        .log_target("homeward::http")
}
