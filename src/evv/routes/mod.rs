//! HTTP routes of visit verification (documented in docs/visits.md). People and workers are
//! [`crate::people`]'s.
//!
//! Providers manage their schedule and see their visits with names; commissioners (and their
//! auditors) read the visits of the providers they contract, with people pseudonymised and
//! workers as numbers ([`super::view`] decides what each sees).
//!
//! - [`schedule`]: scheduled visits (create, list, cancel).
//! - [`visits`]: visits, one visit, exceptions, adjustments and manual entries.
//! - [`export`]: the six-element export of completed visits.
//! - [`missed`]: the missed-visit alerts.
//! - [`workers`]: creating a worker and linking their phone (the rows are people's; the
//!   visits derived again are ours).
//! - here: who may read whose visits, the date range, per-area geofence policies and the
//!   re-derivation that follows a change of reference data.

mod export;
mod missed;
mod schedule;
mod visits;
mod workers;

pub use missed::{missed_alerts, AlertState, MissedAlert};
pub use schedule::{unvisited_of, Scheduled};
pub use visits::{
    apply_adjustment, exceptions_between, visit_detail, visits_between, AdjustmentRecorded,
    ExceptionItem, NewAdjustment,
};

use actix_web::{put, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::derive;
use super::geofence::GeofencePolicy;
use crate::auth::{Caller, Role, Visibility};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

const WRITERS: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff];
const READERS: &[Role] = &[
    Role::ProviderAdmin,
    Role::ProviderStaff,
    Role::Commissioner,
    Role::Auditor,
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(put_area_policy);
    schedule::routes(cfg);
    visits::routes(cfg);
    export::routes(cfg);
    missed::routes(cfg);
    workers::routes(cfg);
}

/// Whose visits the caller may read, and whether people are pseudonymised
/// ([`crate::auth::visibility`]), for the roles that read visits.
async fn scope(
    caller: &Caller,
    client: &deadpool_postgres::Client,
) -> Result<Visibility, ApiError> {
    caller.require(READERS)?;
    crate::auth::visibility(caller, &***client).await
}

fn writer(caller: &Caller) -> Result<(), ApiError> {
    caller.require(WRITERS)
}

/// A range of times from two parameters: `from` before `to`, at most 93 days apart; by
/// default the last 7 days up to tomorrow.
fn bounds(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    crate::http::dates::check_time("from", from)?;
    crate::http::dates::check_time("to", to)?;
    let now = Utc::now();
    let to = to.unwrap_or(now + Duration::days(1));
    let from = from.unwrap_or(to - Duration::days(8));
    if to <= from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    if to - from > Duration::days(93) {
        return Err(ApiError::invalid("to", "a range covers at most 93 days"));
    }
    Ok((from, to))
}

/// Re-derives the visits of `devices` after reference data changed (a phone linked to a
/// worker, a visit scheduled or cancelled), then clears the missed-visit alerts this answers.
/// Returns once done, so the response to the change already shows its effect.
pub async fn rederive(
    state: &AppState,
    caller: &Caller,
    devices: &[i32],
    org: i32,
) -> Result<(), ApiError> {
    let mut client = state.db(caller).await?;
    derive::derive_devices(&mut client, &state.settings.evv, devices).await?;
    let now = Utc::now();
    let cleared = super::missed::clear_in(&client, now, Some(org)).await?;
    super::missed::publish(&state.live, now, &cleared);
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AreaPolicy {
    #[schema(inline)]
    geofence_policy: GeofencePolicy,
}

/// An area's geofence policy as set.
#[derive(Debug, Serialize, ToSchema)]
struct AreaPolicyView {
    area: String,
    #[schema(inline)]
    geofence_policy: GeofencePolicy,
}

/// Sets whether a fix outside the geofence is refused or only flagged in one area.
#[utoipa::path(
    operation_id = "put_area_policy",
    tag = "visits",
    params(("area" = String, Path, min_length = 1, max_length = 100,
        description = "The area, as people's `area` names it.")),
    request_body = AreaPolicy,
    responses(
        (status = 200, description = "Set.", body = AreaPolicyView),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[put("/v1/geofence-policies/{area}")]
async fn put_area_policy(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: crate::http::Json<AreaPolicy>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let area = path.into_inner();
    if area.is_empty() || area.len() > 100 {
        return Err(ApiError::invalid("area", "must be 1 to 100 characters"));
    }
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let before: Option<String> = tx
        .query_opt(
            "SELECT geofence_policy FROM evv_area_policies WHERE organisation_id = $1 AND area = $2
               FOR UPDATE",
            &[&caller.organisation_id, &area],
        )
        .await?
        .map(|r| r.get(0));
    tx.execute(
        "INSERT INTO evv_area_policies (organisation_id, area, geofence_policy) VALUES ($1, $2, $3)
         ON CONFLICT (organisation_id, area) DO UPDATE SET geofence_policy = EXCLUDED.geofence_policy",
        &[&caller.organisation_id, &area, &body.geofence_policy.as_str()],
    )
    .await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "geofence_policy.set",
            "geofence_policy",
            &area,
            serde_json::json!({"before": before, "after": body.geofence_policy.as_str()}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(AreaPolicyView {
        area,
        geofence_policy: body.geofence_policy,
    }))
}
