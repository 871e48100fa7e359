//! HTTP plumbing shared by every domain: the application state, errors as RFC 9457 problem
//! documents, health checks, the Prometheus endpoint and the API's OpenAPI description.
//! Authentication lives in [`crate::auth`]; each domain module exports its own `routes`.

pub mod csv_safe;
pub mod dates;
pub mod docs_page;
pub mod json;
pub mod nul;
pub mod openapi;
pub mod paging;
pub mod problem;
pub mod request_id;

use std::sync::Arc;

use actix_web::{get, web, HttpResponse};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub use json::Json;
pub use problem::{ApiError, FieldError};

/// What reports whether the MQTT side is up (the embedded broker, or the connection to an
/// external one).
pub trait BrokerProbe: Send + Sync {
    fn is_up(&self) -> bool;
}

/// The request path's database connections. The pools are private to this module so that every
/// handler takes its connection through [`AppState::db`] (or, with no caller,
/// [`AppState::auth_db`]).
pub struct Pools {
    /// The request path's role, under row-level security (`db::tenancy`).
    app: Pool,
    /// For credential checks and the few pages without a caller (see `db::Database::auth_pool`).
    auth: Pool,
}

impl Pools {
    pub fn new(app: Pool, auth: Pool) -> Self {
        Self { app, auth }
    }
}

/// Shared by every handler through `web::Data<AppState>`.
pub struct AppState {
    pub pools: Pools,
    /// Credentials that failed a moment ago, refused without a query.
    pub auth_failures: Arc<crate::auth::FailedCredentials>,
    pub settings: crate::config::Settings,
    pub writer: crate::ingest::WriterHandle,
    pub live: crate::live::LiveHub,
    /// Revoked credentials, for live streams to end themselves.
    pub revocations: crate::auth::revocations::Revocations,
    pub downlinks: Arc<dyn crate::ingest::DownlinkSender>,
    pub broker: Arc<dyn BrokerProbe>,
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// A connection for `caller`'s request: row-level security limits it to the organisations
    /// the caller may see (its own and, for a commissioner, the providers it contracts), so a
    /// query that forgets its organisation filter still returns no other tenant's rows.
    pub async fn db(&self, caller: &crate::auth::Caller) -> Result<crate::db::Client, ApiError> {
        use crate::db::tenancy::{checkout, CheckoutError};
        match checkout(&self.pools.app, caller.organisation_id).await {
            Ok(client) => Ok(client),
            Err(CheckoutError::Pool(e)) => Err(e.into()),
            Err(CheckoutError::Postgres(e)) => Err(e.into()),
        }
    }

    /// A connection for work without a caller: credential checks (API tokens, sessions,
    /// sign-in, device secrets) and the pages reached by a one-time link (setting a password,
    /// a person confirming their plan). It runs as the service role, outside row-level
    /// security: these paths find their organisation from the credential or link itself.
    pub async fn auth_db(&self) -> Result<crate::db::Client, ApiError> {
        Ok(self.pools.auth.get().await?)
    }

    /// What an outcome report reads from the configuration.
    pub fn report_settings(&self) -> crate::outcomes::report::Settings<'_> {
        crate::outcomes::report::Settings {
            outcomes: &self.settings.outcomes,
            visits: &self.settings.evv,
            alarms: &self.settings.alarms,
        }
    }

    /// The credential checks' pool, for functions that take one.
    pub fn auth_pool(&self) -> &Pool {
        &self.pools.auth
    }
}

/// `/healthz`, `/readyz`, `/metrics`, the OpenAPI description and its page: the only routes
/// without authentication.
pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(healthz)
        .service(readyz)
        .service(metrics)
        .configure(openapi::api);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Alive {
    Ok,
}

/// `GET /healthz`'s answer.
#[derive(Serialize, ToSchema)]
struct Liveness {
    status: Alive,
}

/// Alive: the process answers HTTP.
#[utoipa::path(
    operation_id = "healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process serves HTTP.", body = Liveness)),
)]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: Alive::Ok })
}

#[derive(Serialize, ToSchema, PartialEq, Eq)]
enum Ready {
    #[serde(rename = "ready")]
    Ready,
    #[serde(rename = "not ready")]
    NotReady,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum UpOrDown {
    Up,
    Down,
}

impl From<bool> for UpOrDown {
    fn from(up: bool) -> Self {
        if up {
            Self::Up
        } else {
            Self::Down
        }
    }
}

/// `GET /readyz`'s answer: whether each dependency is reachable.
#[derive(Serialize, ToSchema)]
struct Readiness {
    status: Ready,
    database: UpOrDown,
    /// Homeward's own MQTT subscriber is connected (to the embedded or an external broker).
    broker: UpOrDown,
}

/// Ready: the database answers a query and the broker is reachable.
#[utoipa::path(
    operation_id = "readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "The database and the broker are reachable.", body = Readiness),
        (status = 503, description = "The database or the broker is not reachable.", body = Readiness,
            headers(("Retry-After" = String, description = "Seconds to wait before asking again."))),
    ),
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = crate::db::ping(&state.pools.app).await;
    let broker = state.broker.is_up();
    let body = Readiness {
        status: if database && broker {
            Ready::Ready
        } else {
            Ready::NotReady
        },
        database: database.into(),
        broker: broker.into(),
    };
    if body.status == Ready::Ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

/// Prometheus metrics, in its text format.
#[utoipa::path(
    operation_id = "metrics",
    tag = "health",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4.",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
