//! `/v1/devices`: list, read and register a provider's devices.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;

use super::{registry, Device, DeviceKind};
use crate::auth::{self, Caller, Role, Scope};
use crate::http::{ApiError, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(read)
        .service(create)
        .service(disable)
        .service(enable)
        .service(rotate_secret);
}

const READERS: &[Role] = &[
    Role::ProviderAdmin,
    Role::ProviderStaff,
    Role::Responder,
    Role::Auditor,
];

#[get("/v1/devices")]
async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT uid, kind, person_id, worker_id, created_at, disabled_at
               FROM devices WHERE organisation_id = $1 ORDER BY uid LIMIT 10000",
            &[&caller.organisation_id],
        )
        .await?;
    let devices = rows
        .iter()
        .map(Device::from_row)
        .collect::<Result<Vec<Device>, _>>()
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": devices })))
}

#[get("/v1/devices/{uid}")]
async fn read(
    caller: Caller,
    state: web::Data<AppState>,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let client = state.pool.get().await?;
    // Another organisation's device is indistinguishable from a missing one.
    let row = client
        .query_opt(
            "SELECT uid, kind, person_id, worker_id, created_at, disabled_at
               FROM devices WHERE organisation_id = $1 AND uid = $2",
            &[&caller.organisation_id, &uid.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("device `{uid}`")))?;
    let device = Device::from_row(&row).map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(HttpResponse::Ok().json(device))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    uid: String,
    kind: String,
}

/// Registers a device and returns its secret, once.
#[post("/v1/devices")]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<NewDevice>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let client = state.pool.get().await?;
    let org = auth::find_organisation(&**client, &caller.organisation_id.to_string())
        .await
        .map_err(ApiError::from)?;
    let kind = body
        .kind
        .parse::<DeviceKind>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let (_, secret) = registry::create_device(&**client, &org, &body.uid, kind).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "uid": body.uid,
        "kind": kind,
        "secret": secret,
        "note": "the secret is shown only now; the device uses its uid as MQTT user name and client id and the secret as password",
    })))
}

/// Disables a device: its MQTT connection is closed within a second and refused afterwards, its
/// HTTP calls are refused, and events that still arrive are dead-lettered, not stored.
#[post("/v1/devices/{uid}/disable")]
async fn disable(
    caller: Caller,
    state: web::Data<AppState>,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(caller, state, uid.into_inner(), true).await
}

#[post("/v1/devices/{uid}/enable")]
async fn enable(
    caller: Caller,
    state: web::Data<AppState>,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(caller, state, uid.into_inner(), false).await
}

async fn set_disabled(
    caller: Caller,
    state: web::Data<AppState>,
    uid: String,
    disabled: bool,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let client = state.pool.get().await?;
    let scope = Scope::Organisation(caller.organisation_id);
    let changed = auth::set_device_disabled(&**client, scope, &uid, disabled).await?;
    if !disabled {
        state.auth_failures.forget_all();
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "uid": uid,
        "disabled": disabled,
        "changed": changed,
    })))
}

/// Gives a device a new secret, returned once; the old one stops working and the device's live
/// connection is closed, so it reconnects with the new one.
#[post("/v1/devices/{uid}/rotate-secret")]
async fn rotate_secret(
    caller: Caller,
    state: web::Data<AppState>,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let client = state.pool.get().await?;
    let scope = Scope::Organisation(caller.organisation_id);
    let secret = auth::rotate_device_secret(&**client, scope, &uid).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "uid": uid.as_str(),
        "secret": secret,
        "note": "the secret is shown only now; the old one no longer works",
    })))
}
