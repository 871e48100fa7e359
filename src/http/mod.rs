//! HTTP plumbing shared by every domain: the application state, errors as RFC 9457 problem
//! documents, health checks and the Prometheus endpoint. Authentication lives in
//! [`crate::auth`]; each domain module exports its own `routes`.

pub mod csv_safe;
pub mod dates;
pub mod problem;

use std::sync::Arc;

use actix_web::{get, web, HttpResponse};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;

pub use problem::{ApiError, FieldError};

/// What reports whether the MQTT side is up (the embedded broker, or the connection to an
/// external one).
pub trait BrokerProbe: Send + Sync {
    fn is_up(&self) -> bool;
}

/// Shared by every handler through `web::Data<AppState>`.
pub struct AppState {
    pub pool: Pool,
    /// For credential checks only (see `db::Database::auth_pool`).
    pub auth_pool: Pool,
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

/// `/healthz`, `/readyz` and `/metrics`: the only routes without authentication.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// Alive: the process answers HTTP.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready: the database answers a query and the broker is reachable.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = crate::db::ping(&state.pool).await;
    let broker = state.broker.is_up();
    let body = serde_json::json!({
        "status": if database && broker { "ready" } else { "not ready" },
        "database": if database { "up" } else { "down" },
        "broker": if broker { "up" } else { "down" },
    });
    if database && broker {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
