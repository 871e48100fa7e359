//! Configuration: one typed struct, layered.
//!
//! Layers, later ones winning: built-in defaults, an optional TOML file (`--config`, or
//! `homeward.toml` in the working directory if present), `HOMEWARD__SECTION__KEY` environment
//! variables, and the command-line flags for the listen addresses and the data folder.
//! Unknown keys are errors, so a typo never silently falls back to a default. [`Settings::load`]
//! validates everything start-up needs and returns one readable line on failure.
//! Secrets ([`Secret`]) never print.
//!
//! One file on purpose, though it is over the size the code base otherwise keeps to: the code is
//! about 600 lines, and the rest is its tests. A setting's section struct, its default, its
//! environment key and its start-up check are read and changed together, and the layering
//! tests exercise them all at once; split by kind they would scatter one setting over four
//! files.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// A value that must never appear in logs or error messages (database passwords, MQTT
/// passwords). `Debug` and `Display` print `[redacted]`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Every MQTT client id Homeward uses for itself begins with this, and no device id may (see
/// `devices::reserved_device_id`).
pub const SERVICE_CLIENT_ID_PREFIX: &str = "homeward";

/// Everything Homeward can be configured with. Each field documents its default; `--help` and
/// `docs/configuration.md` repeat them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Folder for Homeward's own state: the embedded PostgreSQL cluster (`<data_dir>/postgres`)
    /// and its password. Default: `/var/lib/homeward` when run as root, otherwise
    /// `$XDG_DATA_HOME/homeward` (`~/.local/share/homeward`).
    pub data_dir: PathBuf,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub console: ConsoleSettings,
    pub database: DatabaseSettings,
    pub mqtt: MqttSettings,
    pub storage: StorageSettings,
    pub ingest: IngestSettings,
    pub evv: crate::evv::EvvSettings,
    pub alarms: crate::alarms::AlarmSettings,
    pub outcomes: crate::outcomes::OutcomeSettings,
    pub live: crate::live::LiveSettings,
    pub log: LogSettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address the HTTP API, health checks and `/metrics` listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Seconds in-flight requests get to finish on shutdown. Default 10.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Days a user's API token stays valid after it is created. Service tokens (created with
    /// `--service` or `"service": true`) never expire. Default 90.
    pub token_ttl_days: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self { token_ttl_days: 90 }
    }
}

/// The console: people's sign-in, sessions and one-time password links.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// The address people reach Homeward at, e.g. `https://care.example.org`, used in the
    /// one-time links that `homeward admin` and the API print. Unset (the default): `http://`
    /// (or `https://` with `tls.cert_file`) and `http.listen`, with `localhost` for an
    /// unspecified address. Setting it to an `https://` address also marks the session cookie
    /// Secure, for a server behind a proxy that terminates TLS.
    pub public_url: Option<String>,
    /// Hours a console session lasts after sign-in, however busy. Default 12.
    pub session_hours: u32,
    /// Minutes without a request after which a console session ends. Default 30.
    pub session_idle_minutes: u32,
    /// Hours a one-time link to set a password works. Default 72.
    pub password_link_hours: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            session_hours: 12,
            session_idle_minutes: 30,
            password_link_hours: 72,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// PostgreSQL (or TimescaleDB) URL, e.g. `postgres://homeward:pw@db:5432/homeward`.
    /// Unset (the default): Homeward runs a private PostgreSQL in `<data_dir>/postgres`.
    /// The role of this URL owns the schema: it runs the migrations and the admin commands.
    pub url: Option<Secret<String>>,
    /// With `url`: how the request path (API, console) connects, as the role `homeward_app`,
    /// to which row-level security applies. Unset (the default): as `url`'s role, and a warning
    /// at start-up that row-level security is then not in force. Ignored without `url` (the
    /// embedded cluster creates the role itself).
    pub app_url: Option<Secret<String>>,
    /// With `url`: how ingest, the derivations, the live relay, maintenance and credential
    /// checks connect, as the role `homeward_service`. Unset (the default): as `url`'s role.
    /// Ignored without `url`.
    pub service_url: Option<Secret<String>>,
    /// Maximum connections in each of the two main pools (the request path's and the service
    /// role's). Default 16.
    pub pool_size: usize,
    /// Connections of a separate pool for credential checks (API tokens, device secrets), so
    /// that sign-ins and the rest never starve each other. Default 4.
    pub auth_pool_size: usize,
    /// Seconds to wait for a connection from the pool before answering 503. Default 5.
    pub acquire_timeout_secs: u64,
    /// The embedded PostgreSQL, used only when `url` is unset.
    pub embedded: EmbeddedDatabaseSettings,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedDatabaseSettings {
    /// TCP port on 127.0.0.1. Default 0: pick a free port at each start.
    pub port: u16,
    /// Folder holding `initdb`, `pg_ctl` and `postgres`. Default: the newest
    /// `/usr/lib/postgresql/<version>/bin`, else the folder of `pg_ctl` on `PATH`.
    pub bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// External broker, e.g. `mqtt://homeward:pw@broker:1883`. Unset (the default): Homeward
    /// runs its own broker in-process on `embedded_listen`.
    pub url: Option<Secret<String>>,
    /// Address of the embedded broker. Default `127.0.0.1:1883`.
    pub embedded_listen: SocketAddr,
    /// How ingest takes messages from the embedded broker: in-process, or as an MQTT client
    /// over loopback TCP. Ignored with `url`. Default `in_process`.
    pub embedded_ingest: EmbeddedIngest,
    /// The subscriber's fixed MQTT client id, so that its persistent session survives restarts.
    /// With several instances each needs its own. Default `homeward-ingest`.
    pub client_id: String,
    /// Share group: when set, the subscriber uses `$share/<group>/...` so several instances split
    /// the stream. Default unset.
    pub shared_group: Option<String>,
    // Flow control of the embedded broker (see `broker::BrokerConfig`).
    /// Most MQTT messages per second one device may send, on average (0 = unlimited); a device
    /// above it is delayed, not dropped. Default 1000.
    pub device_max_messages_per_sec: u64,
    /// Most bytes per second one device may send, on average (0 = unlimited). Default 1 MiB.
    pub device_max_bytes_per_sec: u64,
    /// Allowance a device may save up, in seconds of its rates (a backlog after an outage goes
    /// out at full speed up to this). Default 10.
    pub device_burst_secs: u64,
    /// Most connected devices (Homeward's own clients are not counted). Default 20 000.
    pub max_connections: usize,
    /// Most subscriptions per device session, `$share` ones included. Default 64.
    pub max_subscriptions_per_client: usize,
    /// Most messages waiting in one session's queue. Default 100 000.
    pub max_queued_messages: usize,
    /// Most bytes waiting in one session's queue. Default 64 MiB.
    pub max_queued_bytes: usize,
    /// A connection with `keep_alive = 0` is closed after this many seconds without a packet.
    /// Default 1800.
    pub idle_timeout_secs: u64,
    /// Address of the embedded broker's MQTT over TLS (`mqtts`) listener, opened only when
    /// `tls.cert_file` is set; the plain listener on `embedded_listen` stays (Homeward's own
    /// client uses it). Default `127.0.0.1:8883`.
    pub embedded_tls_listen: SocketAddr,
    /// PEM file of the certificates that an external `mqtts://` broker's certificate must chain
    /// to. Unset (the default): the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Shared secret that an EMQX broker sends (`Authorization: Bearer <secret>`) to
    /// `/v1/emqx/authenticate` and `/v1/emqx/authorize`; at least 16 characters. Unset (the
    /// default): those routes do not exist (404).
    pub emqx_hook_secret: Option<Secret<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Raw events older than this many days are dropped (whole partitions or chunks).
    /// Default 2922 (eight years, the usual retention for adult social care records).
    pub retention_days: u32,
    /// Native partitioning only: days of partitions created ahead of today. Default 7.
    pub partitions_ahead_days: u32,
    /// Native partitioning only: minutes between maintenance runs. Default 60.
    pub maintenance_interval_minutes: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Most events in one database transaction. Default 2000.
    pub batch_size: usize,
    /// Milliseconds a batch waits for more events after its first (alarms and falls never
    /// wait). Default 5.
    pub linger_ms: u64,
    /// Jobs queued for the writer before producers wait. Default 10000.
    pub queue_capacity: usize,
    /// An event whose device time is more than this many seconds before its arrival is marked
    /// as arriving late (store and forward). Default 300.
    pub late_after_secs: u64,
    /// An event whose device time is more than this many seconds ahead of the server's clock is
    /// dead-lettered. Default 300.
    pub max_future_secs: u64,
    /// Most events in one `POST /v1/check-ins`. Default 500.
    pub max_http_batch: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            linger_ms: 5,
            queue_capacity: 10_000,
            late_after_secs: 300,
            max_future_secs: 300,
            max_http_batch: 500,
        }
    }
}

/// HTTPS and the embedded broker's `mqtts` listener share one certificate.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first. Unset (the default): HTTP and MQTT are plain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1); set with `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// How ingest takes messages from the embedded broker (`mqtt.embedded_ingest`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddedIngest {
    /// From its session in the broker, in-process: no socket, no encoding, acks in bulk.
    InProcess,
    /// As an MQTT client over loopback TCP, exactly as with an external broker.
    Loopback,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for development.
    Pretty,
    /// One JSON object per line, for production log collectors.
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `pretty` (default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `homeward=debug,actix_web=info`. Default
    /// `info,tokio_postgres=warn`. `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            http: HttpSettings::default(),
            auth: AuthSettings::default(),
            console: ConsoleSettings::default(),
            database: DatabaseSettings::default(),
            mqtt: MqttSettings::default(),
            storage: StorageSettings::default(),
            ingest: IngestSettings::default(),
            evv: crate::evv::EvvSettings::default(),
            alarms: crate::alarms::AlarmSettings::default(),
            outcomes: crate::outcomes::OutcomeSettings::default(),
            live: crate::live::LiveSettings::default(),
            log: LogSettings::default(),
            tls: TlsSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_secs: 10,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            app_url: None,
            service_url: None,
            pool_size: 16,
            auth_pool_size: 4,
            acquire_timeout_secs: 5,
            embedded: EmbeddedDatabaseSettings::default(),
        }
    }
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            url: None,
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            embedded_ingest: EmbeddedIngest::InProcess,
            client_id: "homeward-ingest".into(),
            shared_group: None,
            device_max_messages_per_sec: 1000,
            device_max_bytes_per_sec: 1024 * 1024,
            device_burst_secs: 10,
            max_connections: 20_000,
            max_subscriptions_per_client: 64,
            max_queued_messages: 100_000,
            max_queued_bytes: 64 * 1024 * 1024,
            idle_timeout_secs: 1800,
            embedded_tls_listen: SocketAddr::from(([127, 0, 0, 1], 8883)),
            ca_file: None,
            emqx_hook_secret: None,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            retention_days: 2922,
            partitions_ahead_days: 7,
            maintenance_interval_minutes: 60,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info,tokio_postgres=warn".into(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/homeward");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("homeward");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/homeward"),
        None => PathBuf::from("homeward-data"),
    }
}

/// Command-line values that override every other layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub http_listen: Option<SocketAddr>,
    pub mqtt_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// A configuration problem, phrased as one line that says what to fix.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// A parsed external broker address.
#[derive(Debug, Clone)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// `mqtts://`: TLS, verified against `mqtt.ca_file` or the system's roots.
    pub tls: bool,
}

impl Settings {
    /// Where people reach the console, without a trailing slash: `console.public_url`, or the
    /// HTTP listener's address.
    pub fn console_url(&self) -> String {
        if let Some(url) = &self.console.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let scheme = if self.tls.cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        let listen = self.http.listen;
        let host = if listen.ip().is_unspecified() {
            "localhost".to_owned()
        } else if listen.is_ipv6() {
            format!("[{}]", listen.ip())
        } else {
            listen.ip().to_string()
        };
        format!("{scheme}://{host}:{}", listen.port())
    }

    /// Whether the console's cookies are marked Secure: HTTPS here, or behind a proxy that
    /// `console.public_url` says serves HTTPS.
    pub fn console_cookies_secure(&self) -> bool {
        self.tls.cert_file.is_some()
            || self
                .console
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
    }

    /// Loads and validates the layered configuration.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match &overrides.config_file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist; fix --config or HOMEWARD_CONFIG",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => {
                if Path::new("homeward.toml").is_file() {
                    figment = figment.merge(Toml::file("homeward.toml"));
                }
            }
        }
        figment = figment.merge(Env::prefixed("HOMEWARD__").split("__"));
        let mut settings: Settings = figment.extract().map_err(|e| ConfigError(one_line(&e)))?;
        if let Some(listen) = overrides.http_listen {
            settings.http.listen = listen;
        }
        if let Some(listen) = overrides.mqtt_listen {
            settings.mqtt.embedded_listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            settings.data_dir = dir.clone();
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every section, as far as can be checked without starting anything. The one
    /// validation: what passes here, the rest of Homeward takes as given.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, url) in [
            ("database.url", &self.database.url),
            ("database.app_url", &self.database.app_url),
            ("database.service_url", &self.database.service_url),
        ] {
            if let Some(url) = url {
                tokio_postgres::Config::from_str(url.expose()).map_err(|e| {
                    ConfigError(format!(
                        "{key} is not a valid PostgreSQL URL ({e}); expected postgres://user:password@host:port/dbname"
                    ))
                })?;
            }
        }
        let broker_tls = match &self.mqtt.url {
            Some(url) => parse_broker_url(url.expose())?.tls,
            None => false,
        };
        if self.mqtt.ca_file.is_some() && !broker_tls {
            return Err(ConfigError(
                "mqtt.ca_file is only used with an mqtts:// mqtt.url; unset it or use mqtts://"
                    .into(),
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ConfigError(
                "tls.cert_file and tls.key_file go together: set both (PEM files) or neither"
                    .into(),
            ));
        }
        if self.auth.token_ttl_days == 0 || self.auth.token_ttl_days > 3660 {
            return Err(ConfigError(
                "auth.token_ttl_days must be 1 to 3660; use service tokens for ones that never expire".into(),
            ));
        }
        let c = &self.console;
        if let Some(url) = &c.public_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return Err(ConfigError(format!(
                    "console.public_url must be an http:// or https:// address, e.g. \
                     https://care.example.org, not `{url}`"
                )));
            }
        }
        for (key, value, max) in [
            ("console.session_hours", c.session_hours, 24 * 31),
            (
                "console.session_idle_minutes",
                c.session_idle_minutes,
                24 * 60,
            ),
            (
                "console.password_link_hours",
                c.password_link_hours,
                24 * 31,
            ),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError(format!("{key} must be 1 to {max}")));
            }
        }
        if self.database.pool_size == 0 {
            return Err(ConfigError("database.pool_size must be at least 1".into()));
        }
        if self.database.auth_pool_size == 0 {
            return Err(ConfigError(
                "database.auth_pool_size must be at least 1".into(),
            ));
        }
        let reserved = SERVICE_CLIENT_ID_PREFIX;
        if self.mqtt.client_id.len() > 64
            || !self
                .mqtt
                .client_id
                .get(..reserved.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(reserved))
        {
            return Err(ConfigError(format!(
                "mqtt.client_id must be at most 64 characters and begin with `{reserved}` (the \
                 prefix no device may take), e.g. homeward-ingest-2"
            )));
        }
        if self.mqtt.emqx_hook_secret.as_ref().is_some_and(|s| {
            s.expose().chars().count() < 16 || s.expose().contains(char::is_whitespace)
        }) {
            return Err(ConfigError(
                "mqtt.emqx_hook_secret must be at least 16 characters without spaces (or unset)"
                    .into(),
            ));
        }
        if let Some(group) = &self.mqtt.shared_group {
            if group.is_empty() || group.contains(['/', '+', '#']) {
                return Err(ConfigError(
                    "mqtt.shared_group must be non-empty and contain no '/', '+' or '#'".into(),
                ));
            }
        }
        for (key, value) in [
            ("mqtt.device_burst_secs", self.mqtt.device_burst_secs),
            ("mqtt.max_connections", self.mqtt.max_connections as u64),
            (
                "mqtt.max_queued_messages",
                self.mqtt.max_queued_messages as u64,
            ),
            ("mqtt.max_queued_bytes", self.mqtt.max_queued_bytes as u64),
            ("mqtt.idle_timeout_secs", self.mqtt.idle_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{key} must be at least 1")));
            }
        }
        if self.storage.retention_days == 0 {
            return Err(ConfigError(
                "storage.retention_days must be at least 1".into(),
            ));
        }
        if self.storage.maintenance_interval_minutes == 0 {
            return Err(ConfigError(
                "storage.maintenance_interval_minutes must be at least 1".into(),
            ));
        }
        if self.ingest.batch_size == 0
            || self.ingest.queue_capacity == 0
            || self.ingest.max_http_batch == 0
        {
            return Err(ConfigError(
                "ingest.batch_size, ingest.queue_capacity and ingest.max_http_batch must be at least 1".into(),
            ));
        }
        self.evv.validate().map_err(ConfigError)?;
        self.alarms.validate().map_err(ConfigError)?;
        self.outcomes.validate().map_err(ConfigError)?;
        tracing_subscriber::EnvFilter::try_new(&self.log.filter).map_err(|e| {
            ConfigError(format!(
                "log.filter `{}` is not a valid filter: {e}",
                self.log.filter
            ))
        })?;
        Ok(())
    }

    /// Creates the data folder if needed and proves it is writable; only needed when something
    /// embedded keeps its state there.
    pub fn ensure_data_dir(&self) -> Result<(), ConfigError> {
        let dir = &self.data_dir;
        let fix = "choose another with --data-dir or HOMEWARD__DATA_DIR";
        std::fs::create_dir_all(dir).map_err(|e| {
            ConfigError(format!(
                "data folder {} cannot be created ({e}); {fix}",
                dir.display()
            ))
        })?;
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"ok")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                ConfigError(format!(
                    "data folder {} is not writable ({e}); {fix}",
                    dir.display()
                ))
            })?;
        Ok(())
    }

    pub fn broker_url(&self) -> Option<BrokerUrl> {
        // Validated at load time.
        self.mqtt
            .url
            .as_ref()
            .and_then(|u| parse_broker_url(u.expose()).ok())
    }
}

/// `mqtt://[user[:password]@]host[:port]` (port 1883 by default; `tcp://` is a synonym), or
/// `mqtts://...` for TLS (port 8883 by default; `ssl://` is a synonym).
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, ConfigError> {
    let bad = |why: &str| {
        ConfigError(format!(
            "mqtt.url is not a valid broker URL ({why}); expected mqtt://user:password@host:1883 \
             or mqtts://user:password@host:8883"
        ))
    };
    let (tls, rest) = if let Some(rest) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        (false, rest)
    } else if let Some(rest) = url
        .strip_prefix("mqtts://")
        .or_else(|| url.strip_prefix("ssl://"))
    {
        (true, rest)
    } else {
        return Err(bad("it must start with mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
        ),
        None => (hostport, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad("the host is missing"));
    }
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(Secret::new(p.to_string()))),
            None => (Some(info.to_string()), None),
        },
    };
    Ok(BrokerUrl {
        host: host.to_string(),
        port,
        username,
        password,
        tls,
    })
}

/// figment's errors can span lines and mention internal profile names; keep one line.
fn one_line(e: &figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e.clone() {
        let mut line = err.kind.to_string();
        if !err.path.is_empty() {
            line = format!("{} (at `{}`)", line, err.path.join("."));
        }
        if let Some(source) = &err.metadata {
            line = format!("{line} from {}", source.name);
        }
        parts.push(line);
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homewards_client_id_begins_with_the_reserved_prefix_and_tokens_expire() {
        let mut settings = Settings::default();
        settings.validate().unwrap();
        for ok in ["homeward-ingest-2", "Homeward-eu"] {
            settings.mqtt.client_id = ok.into();
            settings.validate().unwrap();
        }
        for bad in [
            "ingest-a",
            "",
            "home",
            &format!("homeward-{}", "x".repeat(60)),
        ] {
            settings.mqtt.client_id = bad.into();
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains("mqtt.client_id"), "{bad}: {err}");
        }
        let mut settings = Settings::default();
        assert_eq!(settings.auth.token_ttl_days, 90);
        settings.auth.token_ttl_days = 0;
        assert!(settings
            .validate()
            .unwrap_err()
            .to_string()
            .contains("auth.token_ttl_days"));
    }

    #[test]
    fn the_console_url_follows_the_listener_unless_set() {
        let mut settings = Settings::default();
        assert_eq!(settings.console_url(), "http://127.0.0.1:8080");
        assert!(!settings.console_cookies_secure());
        settings.http.listen = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(settings.console_url(), "http://localhost:9000");
        settings.console.public_url = Some("https://care.example.org/".into());
        settings.validate().unwrap();
        assert_eq!(settings.console_url(), "https://care.example.org");
        assert!(settings.console_cookies_secure());
        for bad in ["care.example.org", "https://", "ftp://x"] {
            settings.console.public_url = Some(bad.into());
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains("console.public_url"), "{bad}: {err}");
        }
        let mut settings = Settings::default();
        settings.console.session_idle_minutes = 0;
        assert!(settings
            .validate()
            .unwrap_err()
            .to_string()
            .contains("console.session_idle_minutes"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        let mut settings = Settings::default();
        settings.database.url = Some(Secret::new("postgres://u:hunter2@h/db".into()));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn broker_urls() {
        let u = parse_broker_url("mqtt://svc:pw@broker.local:8883").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.username.as_deref()),
            ("broker.local", 8883, Some("svc"))
        );
        assert_eq!(u.password.unwrap().expose(), "pw");
        assert_eq!(parse_broker_url("mqtt://localhost").unwrap().port, 1883);
        assert!(parse_broker_url("http://localhost").is_err());
        assert!(parse_broker_url("mqtt://host:notaport").is_err());
        assert!(parse_broker_url("mqtt://").is_err());
        assert!(!parse_broker_url("mqtt://localhost").unwrap().tls);
        let u = parse_broker_url("mqtts://broker.example").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 8883);
        assert_eq!(parse_broker_url("ssl://b:9883").unwrap().port, 9883);
    }

    #[test]
    fn tls_settings_go_together() {
        let mut settings = Settings::default();
        settings.tls.cert_file = Some("cert.pem".into());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("tls.cert_file and tls.key_file"), "{err}");
        settings.tls.key_file = Some("key.pem".into());
        settings.validate().unwrap();
        settings.mqtt.ca_file = Some("ca.pem".into());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("mqtt.ca_file"), "{err}");
        settings.mqtt.url = Some(Secret::new("mqtts://broker".into()));
        settings.validate().unwrap();
    }

    #[test]
    fn malformed_database_url_is_one_clear_line() {
        let mut settings = Settings::default();
        settings.database.url = Some(Secret::new("postgres://host:port:x/db".into()));
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("database.url"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn broker_limits_must_be_positive() {
        assert!(Settings::default().validate().is_ok());
        let mut settings = Settings::default();
        settings.mqtt.max_queued_bytes = 0;
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("mqtt.max_queued_bytes"), "{err}");
        // A rate of 0 means unlimited.
        let mut settings = Settings::default();
        settings.mqtt.device_max_messages_per_sec = 0;
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn an_emqx_hook_secret_is_long_enough_or_unset() {
        let mut settings = Settings::default();
        for bad in ["", "short", "sixteen chars ok"] {
            settings.mqtt.emqx_hook_secret = Some(Secret::new(bad.into()));
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains("mqtt.emqx_hook_secret"), "{bad}: {err}");
            assert!(
                !err.contains(bad) || bad.is_empty(),
                "the secret is not printed"
            );
        }
        settings.mqtt.emqx_hook_secret = Some(Secret::new("0123456789abcdef".into()));
        settings.validate().unwrap();
    }

    #[test]
    fn every_section_is_validated_at_load() {
        type Spoil = fn(&mut Settings);
        let cases: [(&str, Spoil); 4] = [
            ("evv.missed_visit_check_secs", |s| {
                s.evv.missed_visit_check_secs = 0
            }),
            ("evv.default_geofence_radius_m", |s| {
                s.evv.default_geofence_radius_m = 0
            }),
            ("alarms.answer_target_share", |s| {
                s.alarms.answer_target_share = 1.5
            }),
            ("outcomes.confidence_level", |s| {
                s.outcomes.confidence_level = 0.3
            }),
        ];
        for (key, spoil) in cases {
            let mut settings = Settings::default();
            spoil(&mut settings);
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    /// Every key of the settings, dotted (`mqtt.client_id`), with its default as the docs
    /// write it; `None` for a value that is unset by default.
    fn flattened_defaults() -> Vec<(String, Option<String>)> {
        fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
            match value {
                serde_json::Value::Object(fields) => {
                    for (name, v) in fields {
                        let key = if prefix.is_empty() {
                            name.clone()
                        } else {
                            format!("{prefix}.{name}")
                        };
                        walk(&key, v, out);
                    }
                }
                serde_json::Value::Null => out.push((prefix.to_owned(), None)),
                serde_json::Value::String(s) => out.push((prefix.to_owned(), Some(s.clone()))),
                other => out.push((prefix.to_owned(), Some(other.to_string()))),
            }
        }
        let mut out = Vec::new();
        walk(
            "",
            &serde_json::to_value(Settings::default()).unwrap(),
            &mut out,
        );
        out
    }

    /// `data_dir`'s default depends on who runs Homeward and where; its text is checked by
    /// hand.
    const COMPUTED: &[&str] = &["data_dir"];

    /// `(key, default cell)` of each row of the table in docs/configuration.md; a row naming
    /// several keys gives each its own backquoted default, in order.
    fn documented() -> Vec<(String, String)> {
        let doc = include_str!("../docs/configuration.md");
        let quoted = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let mut rows = Vec::new();
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (keys, default) = (quoted(cells[1]), cells[2]);
            if keys.len() == 1 {
                rows.push((keys[0].clone(), default.to_owned()));
            } else {
                let defaults = quoted(default);
                assert_eq!(defaults.len(), keys.len(), "{line}");
                for (k, d) in keys.into_iter().zip(defaults) {
                    rows.push((k, format!("`{d}`")));
                }
            }
        }
        rows
    }

    /// `(key, text)` of each entry of `--help`'s settings list, continuation lines included.
    fn in_help() -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in crate::cli::SETTINGS_HELP
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
        {
            if let Some(rest) = line.strip_prefix("  ").filter(|r| !r.starts_with(' ')) {
                let (key, text) = rest.split_once(' ').unwrap_or((rest, ""));
                entries.push((key.to_owned(), text.trim().to_owned()));
            } else {
                let last = entries.last_mut().expect("a continuation follows an entry");
                last.1 = format!("{} {}", last.1, line.trim());
            }
        }
        entries
    }

    #[test]
    fn docs_and_help_list_every_setting_with_its_default() {
        let defaults = flattened_defaults();
        let keys: Vec<&str> = defaults.iter().map(|(k, _)| k.as_str()).collect();
        let doc = documented();
        let help = in_help();
        let mut wrong = Vec::new();
        for (key, default) in &defaults {
            let shown = default.as_deref().unwrap_or("unset");
            match doc.iter().find(|(k, _)| k == key) {
                None => wrong.push(format!("docs/configuration.md lacks `{key}`")),
                Some(_) if COMPUTED.contains(&key.as_str()) => {}
                Some((_, cell)) => {
                    let ok = match default {
                        None => cell.starts_with("unset"),
                        Some(d) => cell.starts_with(&format!("`{d}`")),
                    };
                    if !ok {
                        wrong.push(format!(
                            "docs/configuration.md gives `{key}` the default {cell}, not {shown}"
                        ));
                    }
                }
            }
            match help.iter().find(|(k, _)| k == key) {
                None => wrong.push(format!("--help lacks {key}")),
                Some(_) if COMPUTED.contains(&key.as_str()) => {}
                Some((_, text)) => {
                    let bracket = text
                        .rsplit_once('[')
                        .and_then(|(_, b)| b.strip_suffix(']'))
                        .unwrap_or("");
                    let ok = bracket == shown
                        || bracket.starts_with(&format!("{shown} "))
                        || bracket.starts_with(&format!("{shown}:"));
                    if !ok {
                        wrong.push(format!(
                            "--help gives {key} the default [{bracket}], not {shown}"
                        ));
                    }
                }
            }
        }
        for (key, _) in &doc {
            if !keys.contains(&key.as_str()) {
                wrong.push(format!(
                    "docs/configuration.md documents `{key}`, no setting"
                ));
            }
        }
        for (key, _) in &help {
            if !keys.contains(&key.as_str()) {
                wrong.push(format!("--help documents {key}, no setting"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert_eq!(doc.len(), defaults.len(), "a key documented twice");
        assert_eq!(help.len(), defaults.len(), "a key in --help twice");
    }

    #[test]
    fn command_line_flags_override_settings_that_exist() {
        use clap::CommandFactory;
        let keys: Vec<String> = flattened_defaults().into_iter().map(|(k, _)| k).collect();
        let mut overriding = 0;
        for arg in crate::cli::Cli::command().get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if let Some((_, rest)) = help.split_once("(overrides ") {
                let key = rest.split(')').next().unwrap();
                assert!(keys.iter().any(|k| k == key), "--{}: {key}", arg.get_id());
                overriding += 1;
            }
        }
        // --data-dir, --http-listen and --mqtt-listen.
        assert_eq!(overriding, 3);
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("homeward.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[http]\nlisten = \"127.0.0.1:9001\"\n\
             [mqtt]\nembedded_listen = \"127.0.0.1:9002\"\n[ingest]\nbatch_size = 7\n",
        )
        .unwrap();
        let mut overrides = Overrides {
            config_file: Some(file),
            ..Overrides::default()
        };
        let from_file = Settings::load(&overrides).unwrap();
        assert_eq!(from_file.http.listen.port(), 9001);
        assert_eq!(from_file.mqtt.embedded_listen.port(), 9002);
        assert_eq!(from_file.data_dir, PathBuf::from("/from/file"));
        assert_eq!(from_file.ingest.batch_size, 7);

        overrides.http_listen = Some("127.0.0.1:9101".parse().unwrap());
        overrides.mqtt_listen = Some("127.0.0.1:9102".parse().unwrap());
        overrides.data_dir = Some("/from/flag".into());
        let flagged = Settings::load(&overrides).unwrap();
        assert_eq!(flagged.http.listen.port(), 9101);
        assert_eq!(flagged.mqtt.embedded_listen.port(), 9102);
        assert_eq!(flagged.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(flagged.ingest.batch_size, 7);

        // A bad value in any section stops the load, naming the key.
        std::fs::write(
            overrides.config_file.as_ref().unwrap(),
            "[evv]\nmissed_visit_check_secs = 0\n",
        )
        .unwrap();
        let err = Settings::load(&overrides).unwrap_err().to_string();
        assert!(err.contains("evv.missed_visit_check_secs"), "{err}");
    }
}
