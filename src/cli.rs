//! The command line: global flags and subcommands. `--help` lists every setting.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::{OrgKind, Role};
use crate::config::Overrides;
use crate::devices::DeviceKind;

/// Every configuration key, its environment variable and default. Kept in step with
/// `config.rs` and `docs/configuration.md`.
pub const SETTINGS_HELP: &str = "\
SETTINGS (file keys; environment HOMEWARD__SECTION__KEY, e.g. HOMEWARD__HTTP__LISTEN):
  data_dir                             state folder; default /var/lib/homeward as root,
                                       else $XDG_DATA_HOME/homeward (~/.local/share/homeward)
  http.listen                          HTTP API, /healthz, /readyz, /metrics [127.0.0.1:8080]
  http.shutdown_grace_secs             seconds for in-flight requests at shutdown [10]
  auth.token_ttl_days                  days a user's API token is valid; service tokens
                                       never expire [90]
  console.public_url                   address people reach Homeward at, for one-time
                                       links [unset: from http.listen]
  console.session_hours                hours a console session lasts after sign-in [12]
  console.session_idle_minutes         idle minutes that end a console session [30]
  console.password_link_hours          hours a one-time set-password link works [72]
  database.url                         PostgreSQL/TimescaleDB URL of the schema's owner, for
                                       migrations and admin commands (secret) [unset: embedded]
  database.app_url                     with url: the API's role homeward_app, under row-level
                                       security (secret) [unset: as url, without it]
  database.service_url                 with url: the role homeward_service of ingest and
                                       derivations (secret) [unset: as url]
  database.pool_size                   connections of each of the two main pools [16]
  database.auth_pool_size              connections for credential checks, apart [4]
  database.acquire_timeout_secs        wait for a connection before 503 [5]
  database.embedded.port               embedded PostgreSQL port on 127.0.0.1 [0 = any free]
  database.embedded.bin_dir            folder with initdb/pg_ctl
                                       [unset: newest /usr/lib/postgresql/*/bin]
  mqtt.url                             external broker mqtt://user:pw@host:1883, or
                                       mqtts://...:8883 for TLS (secret) [unset: embedded broker]
  mqtt.embedded_listen                 embedded broker address [127.0.0.1:1883]
  mqtt.embedded_ingest                 in_process or loopback: how ingest takes messages
                                       from the embedded broker [in_process]
  mqtt.client_id                       subscriber's fixed client id, begins with homeward
                                       [homeward-ingest]
  mqtt.shared_group                    $share group for several instances [unset]
  mqtt.device_max_messages_per_sec     embedded broker: messages/s per device, excess
                                       delayed; 0 = unlimited [1000]
  mqtt.device_max_bytes_per_sec        bytes/s per device, excess delayed [1048576]
  mqtt.device_burst_secs               allowance a device saves up, seconds of its rates [10]
  mqtt.max_connections                 connected devices; more are refused [20000]
  mqtt.max_subscriptions_per_client    subscriptions per device, $share included [64]
  mqtt.max_queued_messages             messages waiting per broker session [100000]
  mqtt.max_queued_bytes                bytes waiting per broker session [67108864]
  mqtt.idle_timeout_secs               idle limit of a connection with keep_alive 0 [1800]
  storage.retention_days               raw event retention [2922]
  storage.partitions_ahead_days        native partitions created ahead [7]
  storage.maintenance_interval_minutes partition maintenance period [60]
  ingest.batch_size                    events per transaction [2000]
  ingest.linger_ms                     batch wait after its first event [5]
  ingest.queue_capacity                jobs queued for the writer [10000]
  ingest.late_after_secs               older device time marks an event late [300]
  ingest.max_future_secs               device time further ahead is dead-lettered [300]
  ingest.max_http_batch                events per POST /v1/check-ins [500]
  evv.default_geofence_radius_m        geofence radius without a person's own, metres [150]
  evv.accuracy_allowance_cap_m         most GPS accuracy widens the fence, metres [100]
  evv.max_fix_age_secs                 older GPS fixes are flagged stale [120]
  evv.geofence_policy                  outside the fence: reject | warn [reject]
  evv.missed_visit_grace_minutes       no check-in this long after the window: alert [30]
  evv.missed_visit_check_secs          missed-visit check period [60]
  evv.late_after_minutes               check-in shown as late after (context only) [15]
  evv.match_tolerance_minutes          a check matches windows this near [120]
  evv.open_visit_limit_minutes         unscheduled visit missing its check-out after [240]
  alarms.heartbeat_interval_secs       heartbeat interval when a heartbeat has none [900]
  alarms.heartbeat_missing_factor      missing after this many intervals of silence [2.5]
  alarms.sweep_interval_secs           missing-heartbeat check period [30]
  alarms.battery_low_percent           battery_low clears on a heartbeat above this [20]
  alarms.long_lie_minutes              fall reached this late or later: long lie [60]
  alarms.answer_target_secs            calls answered within this many seconds [60]
  alarms.answer_target_share           ... this share of them [0.975]
  alarms.answer_limit_secs             calls answered within this many seconds [180]
  alarms.answer_limit_share            ... this share of them [0.99]
  alarms.on_site_target_minutes        responder on site within this many minutes [45]
  alarms.on_site_target_share          ... this share of visits [0.9]
  alarms.on_site_limit_minutes         responder on site within this many minutes [60]
  alarms.on_site_limit_share           ... this share of visits [1.0]
  alarms.night_start_hour              door open too long alarms only at night, from [22]
  alarms.night_end_hour                ... until this local hour [7]
  alarms.timezone                      time zone of the night window [Europe/London]
  outcomes.confidence_level            interval level in outcome reports [0.95]
  outcomes.history_days                baseline window starts this many days before the
                                       service [365]
  outcomes.washout_days                ... and ends this many days before it [90]
  outcomes.min_history_days            days of known history needed for a baseline [180]
  outcomes.still_at_home_min_age       91-day measure counts this age and over [65]
  outcomes.early_margin_days           outcome achieved this early counts as early [14]
  outcomes.confirmation_link_days      a person's confirmation link works this long [14]
  live.share_between_instances         relay live-stream changes between the instances
                                       on one database (LISTEN/NOTIFY) [true]
  log.format                           pretty | json [pretty]
  log.filter                           tracing filter; RUST_LOG overrides
                                       [info,tokio_postgres=warn]
  mqtt.embedded_tls_listen             embedded broker's mqtts listener, only with
                                       tls.cert_file [127.0.0.1:8883]
  mqtt.ca_file                         PEM roots for an mqtts:// mqtt.url [unset: system roots]
  mqtt.emqx_hook_secret                secret EMQX sends to /v1/emqx/authenticate and
                                       /v1/emqx/authorize (secret) [unset: no such routes]
  tls.cert_file                        PEM certificate chain for HTTPS and mqtts [unset: plain]
  tls.key_file                         PEM private key of tls.cert_file [unset]

A file is read from --config, else ./homeward.toml if present. Unknown keys are errors.
See docs/configuration.md.";

#[derive(Debug, Parser)]
#[command(name = "homeward", version, about = "Homeward: outcomes for home care and telecare", after_long_help = SETTINGS_HELP)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "HOMEWARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder for Homeward's state, the embedded PostgreSQL in <DIR>/postgres (overrides
    /// data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for the HTTP API, health checks and metrics (overrides http.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Address for the embedded MQTT broker (overrides mqtt.embedded_listen).
    #[arg(long, global = true, value_name = "ADDR")]
    pub mqtt_listen: Option<SocketAddr>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            http_listen: self.http_listen,
            mqtt_listen: self.mqtt_listen,
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP API, MQTT ingest, and (unless configured otherwise) an embedded
    /// PostgreSQL and MQTT broker. Stops cleanly on Ctrl-C or SIGTERM.
    Serve,
    /// Apply pending database migrations (as `database.url`'s role, the schema's owner), grant
    /// the roles homeward_app and homeward_service their privileges, and exit.
    Migrate {
        /// Print the SQL that creates the two roles and grants their privileges (for an
        /// external database; see docs/operations.md), and exit without connecting.
        #[arg(long)]
        print_grants: bool,
    },
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Recompute derived tables (visits, alarms) from the raw events, the reference data and
    /// the staff's recorded actions, each in one transaction. Safe while `serve` runs.
    Rebuild {
        /// Only this derivation.
        #[arg(long, value_enum)]
        only: Option<Derivation>,
    },
    /// Create organisations, users, tokens, contracts and device credentials.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit log (docs/audit.md).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chains: every row's hash against its content, its link to
    /// the row before, positions without gaps, and each chain's end against its head. Prints
    /// how many rows and which period were checked and each chain's head; exits 1 naming the
    /// first row that does not check.
    Verify {
        /// Only the chain of this organisation id (0: rows of no organisation).
        #[arg(long)]
        chain: Option<i32>,
    },
}

/// A derived part of the database that `rebuild` can recompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Derivation {
    Visits,
    Alarms,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a provider or commissioner organisation.
    CreateOrganisation {
        /// Its name (unique).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        kind: OrgKind,
    },
    /// Create a user and print their first API token (shown once; it expires after
    /// auth.token_ttl_days unless --service); with --email, also a one-time link with which
    /// the person sets their console password (valid console.password_link_hours, once).
    CreateUser {
        /// Organisation id or name.
        #[arg(long)]
        org: String,
        /// The user's name (unique within the organisation).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// The email address the person signs in to the console with (unique).
        #[arg(long)]
        email: Option<String>,
        /// Make the first token a service token, which never expires (for machines).
        #[arg(long)]
        service: bool,
    },
    /// Print a new API token for an existing user (shown once; it expires after
    /// auth.token_ttl_days unless --service).
    CreateToken {
        /// The user's numeric id.
        #[arg(long)]
        user: i32,
        /// A note to recognise the token by.
        #[arg(long)]
        label: Option<String>,
        /// A service token, which never expires (it can still be revoked).
        #[arg(long)]
        service: bool,
    },
    /// Print a one-time link with which a user sets a new console password (valid
    /// console.password_link_hours, once; an earlier unused link stops working).
    PasswordLink {
        /// The user's numeric id.
        #[arg(long)]
        user: i32,
        /// Give the user this sign-in email address first (for users made without one).
        #[arg(long)]
        email: Option<String>,
    },
    /// List a user's API tokens: id, prefix, label, expiry, last use (never the token).
    ListTokens {
        /// The user's numeric id.
        #[arg(long)]
        user: i32,
    },
    /// Revoke an API token: refused at once, its open event streams end within a second.
    RevokeToken {
        /// The token's numeric id (from list-tokens).
        #[arg(long)]
        id: i32,
    },
    /// Disable a user: all their tokens stop working, their event streams end.
    DisableUser {
        /// The user's numeric id.
        #[arg(long)]
        user: i32,
    },
    /// Enable a disabled user again (tokens that have not expired or been revoked work again).
    EnableUser {
        /// The user's numeric id.
        #[arg(long)]
        user: i32,
    },
    /// Disable a device: its MQTT connection is closed and refused, its HTTP calls refused.
    DisableDevice {
        /// The device's uid.
        #[arg(long)]
        uid: String,
    },
    /// Enable a disabled device again.
    EnableDevice {
        /// The device's uid.
        #[arg(long)]
        uid: String,
    },
    /// Give a device a new secret (printed once); the old one stops working and its live
    /// connection is closed.
    RotateDeviceSecret {
        /// The device's uid.
        #[arg(long)]
        uid: String,
    },
    /// Link a device to a person (telecare devices) or a care worker (phones), or with
    /// neither, unlink it; a phone's visits are derived again. As `PUT /v1/devices/{uid}/link`.
    LinkDevice {
        /// The device's uid.
        #[arg(long)]
        uid: String,
        /// The person's numeric id (of the device's organisation).
        #[arg(long, conflicts_with = "worker")]
        person: Option<i32>,
        /// The care worker's numeric id (of the device's organisation).
        #[arg(long)]
        worker: Option<i32>,
    },
    /// Record a contract between a commissioner and a provider.
    CreateContract {
        /// Commissioner organisation id or name.
        #[arg(long)]
        commissioner: String,
        /// Provider organisation id or name.
        #[arg(long)]
        provider: String,
        /// The contract's reference (unique per commissioner).
        #[arg(long)]
        reference: String,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        starts_on: chrono::NaiveDate,
        /// Last day, YYYY-MM-DD (open-ended if absent).
        #[arg(long)]
        ends_on: Option<chrono::NaiveDate>,
    },
    /// Write a self-signed certificate and key (cert.pem, key.pem) for trying TLS; set
    /// tls.cert_file and tls.key_file to them. Needs no database.
    MakeSelfSigned {
        /// Folder to write cert.pem and key.pem to (created if missing; files are not replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Host name clients will connect to (repeatable); 127.0.0.1 is always included.
        #[arg(long = "host", value_name = "NAME", default_value = "localhost")]
        hosts: Vec<String>,
    },
    /// Write a Mosquitto password file and ACL file, so that a Mosquitto broker checks devices
    /// as the embedded broker does: every active device (its secret's Mosquitto hash) and
    /// Homeward's own user from mqtt.url; each device may publish only on its own events and
    /// status topics and subscribe only to its own downlink. Disabled devices are left out, and
    /// so are devices whose secret predates Mosquitto hashes (rotate them; they are listed).
    /// Files are replaced atomically, mode 0600, keeping their owner. Reload Mosquitto after.
    ExportMosquitto {
        /// The password file to write (Mosquitto's password_file).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// The ACL file to write (Mosquitto's acl_file).
        #[arg(long, value_name = "FILE")]
        acl_file: PathBuf,
    },
    /// Register a device and print its MQTT secret (shown once).
    CreateDevice {
        /// Provider organisation id or name.
        #[arg(long)]
        org: String,
        /// Device id: the MQTT user name and client id (A-Z a-z 0-9 _ -, up to 64).
        #[arg(long)]
        uid: String,
        /// hub, pendant, fall_detector, sensor or phone.
        #[arg(long)]
        kind: DeviceKind,
    },
}
