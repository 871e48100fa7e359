//! Homeward: the backend that home-care providers, telecare services and the councils that
//! commission them use to see whether care is working.
//!
//! # Layout
//! Split by domain, each owning its tables, figures, SQL and routes; data flows one way, from
//! device to view (`docs/architecture.md` has the picture and the owner of every table):
//! - [`ingest`]: MQTT subscriber, HTTP check-ins, the batch writer, dead letters.
//! - [`people`]: people receiving care, care workers and the phones they carry.
//! - [`evv`]: visits: schedules, verification, exceptions, missed-visit alerts.
//! - [`alarms`]: telecare alarms, their lifecycle, falls and long lies, device health.
//! - [`outcomes`]: episodes, outcome plans, indicators and payment statements.
//! - [`devices`]: device registry and identity (the uid directory ingest resolves topics
//!   with), credentials, the embedded broker's authenticator.
//! - [`auth`]: organisations, users, roles, API tokens, people's passwords and console
//!   sessions, the [`auth::Caller`] extractor.
//! - [`console`]: the web pages for people under `/console/` (server-rendered, no JavaScript
//!   needed), on the same role and tenant rules as the API.
//!
//! Shared plumbing beside them: [`config`], [`db`] (pools, migrations, the embedded PostgreSQL,
//! the database roles and row-level security, partition maintenance), [`broker`] (the embedded MQTT broker), [`http`] (state, problem
//! documents, health), [`live`] (the server-sent event stream), [`telemetry`], [`tls`]
//! (certificates for HTTPS and MQTT over TLS), [`secret`] (random secrets and their hashes),
//! `sql_enum!` (closed sets stored as SQL text), [`startup`] (building and running the
//! application) and [`cli`].
//!
//! Data flows one way: [`startup`] assembles the application and hands each domain module
//! what its background work needs (pool, live stream, its own settings, the shutdown signal);
//! no module imports the code that assembles it. [`db`] imports no domain module; ingest uses
//! [`devices`], never the reverse.
//!
//! # Invariants
//! - Raw events are append-only and never edited; corrections are new rows referring to old.
//!   The database enforces it: Homeward's runtime roles may only insert and read them
//!   ([`db::roles`]).
//! - The request path reaches the database only through `AppState::db(&caller)`, as a role
//!   under row-level security limited to the caller's organisations ([`db::tenancy`]).
//! - A message is acknowledged (MQTT PUBACK, HTTP 2xx) only after the transaction storing it
//!   has committed. An event, keyed by (device, seq, time), is stored once.
//! - Every endpoint except `/healthz`, `/readyz`, `/metrics`, `/v1/openapi.json` and `/docs` is
//!   authenticated (the EMQX hooks by a shared secret), and the tenant always comes from the
//!   credential, never from the request. Console pages are the same, with a session cookie for
//!   a credential; only the sign-in, set-password and error pages and the stylesheet are open.
//! - Bad input gets a problem document (HTTP) or a dead-letter row (MQTT); it never crashes the
//!   server and is never silently dropped.

pub mod alarms;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod console;
pub mod db;
pub mod devices;
pub mod evv;
pub mod http;
pub mod ingest;
pub mod live;
pub mod outcomes;
pub mod people;
pub mod secret;
mod sql_enum;
pub mod startup;
pub mod telemetry;
pub mod tls;

pub(crate) use sql_enum::sql_enum;
