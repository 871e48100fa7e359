//! `/v1/devices`: list, read and register a provider's devices.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;

use super::Device;
use crate::auth::{self, AdminError, Caller, Role};
use crate::http::{ApiError, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(read).service(create);
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
    let devices: Vec<Device> = rows.iter().map(Device::from_row).collect();
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
    Ok(HttpResponse::Ok().json(Device::from_row(&row)))
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
    if let Some(reserved) = auth::reserved_device_id(&body.uid, &state.settings.mqtt.client_id) {
        return Err(admin_error(reserved));
    }
    let org = auth::find_organisation(&**client, &caller.organisation_id.to_string())
        .await
        .map_err(admin_error)?;
    let (_, secret) = auth::create_device(&**client, &org, &body.uid, &body.kind)
        .await
        .map_err(admin_error)?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "uid": body.uid,
        "kind": body.kind,
        "secret": secret,
        "note": "the secret is shown only now; the device uses its uid as MQTT user name and client id and the secret as password",
    })))
}

pub(crate) fn admin_error(e: AdminError) -> ApiError {
    match e {
        AdminError::NotFound(what) => ApiError::NotFound(what),
        AdminError::Invalid(msg) => ApiError::BadRequest(msg),
        AdminError::Exists(what) => ApiError::Conflict(format!("{what} already exists")),
        AdminError::Reserved(why) => ApiError::Conflict(why),
        AdminError::Db(e) => e.into(),
    }
}
