//! `/v1/devices`: list, read and register a provider's devices.

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{registry, Device, DeviceKind};
use crate::auth::{self, Caller, Role, Scope};
use crate::http::openapi as doc;
use crate::http::paging::{self, Page};
use crate::http::{ApiError, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
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

#[derive(Serialize, ToSchema)]
struct DeviceList {
    /// By uid.
    items: Vec<Device>,
    /// `after` for the next page (the last uid of this one); null on the last page.
    next_after: Option<String>,
}

/// A page of devices, by uid.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DevicesQuery {
    /// The last uid of the previous page.
    #[param(max_length = 64)]
    after: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// The organisation's devices.
#[utoipa::path(
    operation_id = "list_devices",
    tag = "devices",
    params(DevicesQuery),
    responses(
        (status = 200, description = "A page of the organisation's devices, by uid.", body = DeviceList,
            links(("device" = (operation_id = "get_device",
                parameters(("uid" = "$response.body#/items/0/uid")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/devices")]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<DevicesQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let limit = paging::STANDARD.check(q.limit)?;
    let client = state.db(&caller).await?;
    // `COLLATE "C"`: byte order, the same whatever the database's locale, so that `uid > $2`
    // agrees with the order.
    let rows = client
        .query(
            "SELECT uid, kind, person_id, worker_id, created_at, disabled_at
               FROM devices WHERE organisation_id = $1
                AND ($2::text IS NULL OR uid COLLATE \"C\" > $2 COLLATE \"C\")
              ORDER BY uid COLLATE \"C\" LIMIT $3",
            &[&caller.organisation_id, &q.after, &(limit + 1)],
        )
        .await?;
    let items = rows
        .iter()
        .map(Device::from_row)
        .collect::<Result<Vec<Device>, _>>()
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let page = Page::from_rows(items, limit, |d: &Device| d.uid.clone());
    Ok(HttpResponse::Ok().json(DeviceList {
        items: page.items,
        next_after: page.next_after,
    }))
}

/// One device.
#[utoipa::path(
    operation_id = "get_device",
    tag = "devices",
    params(("uid" = String, Path, description = "The device's uid.")),
    responses(
        (status = 200, description = "The device.", body = Device),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/devices/{uid}")]
async fn read(
    caller: Caller,
    state: web::Data<AppState>,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let client = state.db(&caller).await?;
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    /// Its MQTT user name and client id. Ids beginning with `homeward` (any case) are
    /// Homeward's own client ids: 409.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    uid: String,
    #[schema(value_type = DeviceKind)]
    kind: String,
}

/// A registered device and its secret, shown once.
#[derive(Serialize, ToSchema)]
struct RegisteredDevice {
    uid: String,
    kind: DeviceKind,
    secret: String,
    note: &'static str,
}

/// Registers a device (provider admins) and returns its secret, once.
#[utoipa::path(
    operation_id = "create_device",
    tag = "devices",
    request_body = NewDevice,
    responses(
        (status = 201, description = "Registered; the secret is shown only now.",
            body = RegisteredDevice,
            links(
                ("device" = (operation_id = "get_device",
                    parameters(("uid" = "$response.body#/uid")))),
                ("disable" = (operation_id = "disable_device",
                    parameters(("uid" = "$response.body#/uid")))),
                ("rotate_secret" = (operation_id = "rotate_device_secret",
                    parameters(("uid" = "$response.body#/uid")))),
            )),
        doc::Forbidden,
        doc::Conflict,
        doc::PayloadTooLarge,
    ),
)]
#[post("/v1/devices")]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: crate::http::Json<NewDevice>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let org = auth::find_organisation(&*tx, &caller.organisation_id.to_string())
        .await
        .map_err(ApiError::from)?;
    let kind = body
        .kind
        .parse::<DeviceKind>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let body = body.into_inner();
    let (id, secret) = registry::create_device(&*tx, &org, &body.uid, kind).await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org.id,
            "device.create",
            "device",
            &body.uid,
            serde_json::json!({"id": id, "uid": body.uid, "kind": kind.as_str()}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(RegisteredDevice {
        uid: body.uid,
        kind,
        secret,
        note: "the secret is shown only now; the device uses its uid as MQTT user name and client id and the secret as password",
    }))
}

/// A device disabled or enabled.
#[derive(Serialize, ToSchema)]
struct DeviceDisabled {
    uid: String,
    disabled: bool,
    /// False when the device already was in that state.
    changed: bool,
}

/// Disables a device (provider admins): its MQTT connection is closed within a second and
/// refused afterwards, its HTTP calls are refused, and events that still arrive are
/// dead-lettered, not stored.
#[utoipa::path(
    operation_id = "disable_device",
    tag = "devices",
    params(("uid" = String, Path, description = "The device's uid.")),
    responses(
        (status = 200, description = "Disabled.", body = DeviceDisabled,
            links(("enable" = (operation_id = "enable_device",
                parameters(("uid" = "$response.body#/uid")))))),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[post("/v1/devices/{uid}/disable")]
async fn disable(
    caller: Caller,
    state: web::Data<AppState>,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(caller, state, uid.into_inner(), true).await
}

/// Enables a disabled device again (provider admins).
#[utoipa::path(
    operation_id = "enable_device",
    tag = "devices",
    params(("uid" = String, Path, description = "The device's uid.")),
    responses(
        (status = 200, description = "Enabled.", body = DeviceDisabled),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
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
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let scope = Scope::Organisation(caller.organisation_id);
    let changed = registry::set_device_disabled(&*tx, scope, &uid, disabled).await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            if disabled {
                "device.disable"
            } else {
                "device.enable"
            },
            "device",
            &uid,
            serde_json::json!({"after": {"disabled": disabled}, "changed": changed}),
        ),
    )
    .await?;
    tx.commit().await?;
    if !disabled {
        state.auth_failures.forget_all();
    }
    Ok(HttpResponse::Ok().json(DeviceDisabled {
        uid,
        disabled,
        changed,
    }))
}

/// A device's new secret, shown once.
#[derive(Serialize, ToSchema)]
struct RotatedSecret {
    uid: String,
    secret: String,
    note: &'static str,
}

/// Gives a device a new secret (provider admins), returned once; the old one stops working and
/// the device's live connection is closed, so it reconnects with the new one.
#[utoipa::path(
    operation_id = "rotate_device_secret",
    tag = "devices",
    params(("uid" = String, Path, description = "The device's uid.")),
    responses(
        (status = 200, description = "The new secret, shown only now.", body = RotatedSecret),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[post("/v1/devices/{uid}/rotate-secret")]
async fn rotate_secret(
    caller: Caller,
    state: web::Data<AppState>,
    uid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let scope = Scope::Organisation(caller.organisation_id);
    let secret = registry::rotate_device_secret(&*tx, scope, &uid).await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "device.rotate_secret",
            "device",
            uid.as_str(),
            serde_json::json!({"secret": "(new, not logged)"}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(RotatedSecret {
        uid: uid.into_inner(),
        secret,
        note: "the secret is shown only now; the old one no longer works",
    }))
}
