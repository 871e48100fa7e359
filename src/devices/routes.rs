//! `/v1/devices`: list, read, register, disable, enable, rotate the secret of and link a
//! provider's devices. Each is a public function too, which the console's device pages call
//! (the rows of a link are [`crate::people::store`]'s to write).

use actix_web::{get, post, put, web, HttpResponse};
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
        .service(rotate_secret)
        .service(link);
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
    let limit = paging::STANDARD.check(q.limit)?;
    let client = state.db(&caller).await?;
    let page = devices_of(&client, &caller, q.after.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(DeviceList {
        items: page.items,
        next_after: page.next_after,
    }))
}

/// A uid cursor (`after`) is at most 64 characters, as a uid is.
pub fn check_uid_cursor(after: Option<&str>) -> Result<(), ApiError> {
    match after {
        Some(a) if a.chars().count() > 64 => Err(ApiError::invalid(
            "after",
            "at most 64 characters (a device's uid)",
        )),
        _ => Ok(()),
    }
}

/// A page of the caller's organisation's devices by uid after `after`, as `GET /v1/devices`
/// lists them.
pub async fn devices_of(
    client: &crate::db::Client,
    caller: &Caller,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<Device, String>, ApiError> {
    caller.require(READERS)?;
    check_uid_cursor(after)?;
    // `COLLATE "C"`: byte order, the same whatever the database's locale, so that `uid > $2`
    // agrees with the order.
    let rows = client
        .query(
            "SELECT uid, kind, person_id, worker_id, created_at, disabled_at
               FROM devices WHERE organisation_id = $1
                AND ($2::text IS NULL OR uid COLLATE \"C\" > $2 COLLATE \"C\")
              ORDER BY uid COLLATE \"C\" LIMIT $3",
            &[&caller.organisation_id, &after, &(limit + 1)],
        )
        .await?;
    let items = rows
        .iter()
        .map(Device::from_row)
        .collect::<Result<Vec<Device>, _>>()
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(Page::from_rows(items, limit, |d: &Device| d.uid.clone()))
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
    let client = state.db(&caller).await?;
    let device = device_of(&client, &caller, &uid).await?;
    Ok(HttpResponse::Ok().json(device))
}

/// The caller's organisation's device `uid`, as `GET /v1/devices/{uid}` shows it; another
/// organisation's device is indistinguishable from a missing one.
pub async fn device_of(
    client: &crate::db::Client,
    caller: &Caller,
    uid: &str,
) -> Result<Device, ApiError> {
    caller.require(READERS)?;
    let row = client
        .query_opt(
            "SELECT uid, kind, person_id, worker_id, created_at, disabled_at
               FROM devices WHERE organisation_id = $1 AND uid = $2",
            &[&caller.organisation_id, &uid],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("device `{uid}`")))?;
    Device::from_row(&row).map_err(|e| ApiError::Unexpected(e.into()))
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
    let body = body.into_inner();
    let (kind, secret) = register_device(&state, &caller, &body.uid, &body.kind).await?;
    Ok(HttpResponse::Created().json(RegisteredDevice {
        kind,
        uid: body.uid,
        secret,
        note: "the secret is shown only now; the device uses its uid as MQTT user name and client id and the secret as password",
    }))
}

/// Registers a device of `kind` (a [`DeviceKind`] name) in the caller's organisation, with its
/// audit row (`device.create`), and returns its kind and secret: the function behind `POST /v1/devices`,
/// which the console's device pages call too. Provider admins.
pub async fn register_device(
    state: &AppState,
    caller: &Caller,
    uid: &str,
    kind: &str,
) -> Result<(DeviceKind, String), ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let kind = kind
        .parse::<DeviceKind>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut client = state.db(caller).await?;
    let tx = client.transaction().await?;
    let org = auth::find_organisation(&*tx, &caller.organisation_id.to_string())
        .await
        .map_err(ApiError::from)?;
    let (id, secret) = registry::create_device(&*tx, &org, uid, kind).await?;
    crate::audit::by(
        &*tx,
        caller,
        crate::audit::Entry::new(
            org.id,
            "device.create",
            "device",
            uid,
            serde_json::json!({"id": id, "uid": uid, "kind": kind.as_str()}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok((kind, secret))
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
    let changed = set_device_disabled(&state, &caller, &uid, disabled).await?;
    Ok(HttpResponse::Ok().json(DeviceDisabled {
        uid,
        disabled,
        changed,
    }))
}

/// Disables or enables one of the caller's organisation's devices, with its audit row
/// (`device.disable` or `device.enable`); false when it already was so. The function behind
/// `POST /v1/devices/{uid}/disable` and `/enable`, which the console's device page calls too.
/// Provider admins.
pub async fn set_device_disabled(
    state: &AppState,
    caller: &Caller,
    uid: &str,
    disabled: bool,
) -> Result<bool, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let mut client = state.db(caller).await?;
    let tx = client.transaction().await?;
    let scope = Scope::Organisation(caller.organisation_id);
    let changed = registry::set_device_disabled(&*tx, scope, uid, disabled).await?;
    crate::audit::by(
        &*tx,
        caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            if disabled {
                "device.disable"
            } else {
                "device.enable"
            },
            "device",
            uid,
            serde_json::json!({"after": {"disabled": disabled}, "changed": changed}),
        ),
    )
    .await?;
    tx.commit().await?;
    if !disabled {
        state.auth_failures.forget_all();
    }
    Ok(changed)
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
    let secret = rotate_device_secret(&state, &caller, &uid).await?;
    Ok(HttpResponse::Ok().json(RotatedSecret {
        uid: uid.into_inner(),
        secret,
        note: "the secret is shown only now; the old one no longer works",
    }))
}

/// Gives one of the caller's organisation's devices a new secret, with its audit row
/// (`device.rotate_secret`, without the secret), and returns it: the function behind
/// `POST /v1/devices/{uid}/rotate-secret`, which the console's device page calls too.
/// Provider admins.
pub async fn rotate_device_secret(
    state: &AppState,
    caller: &Caller,
    uid: &str,
) -> Result<String, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let mut client = state.db(caller).await?;
    let tx = client.transaction().await?;
    let scope = Scope::Organisation(caller.organisation_id);
    let secret = registry::rotate_device_secret(&*tx, scope, uid).await?;
    crate::audit::by(
        &*tx,
        caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "device.rotate_secret",
            "device",
            uid,
            serde_json::json!({"secret": "(new, not logged)"}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(secret)
}

/// Whom to link a device to: `{"person_id": n}` (a telecare device worn or installed at that
/// person's home), `{"worker_id": n}` (a phone that care worker carries), or `{}` to unlink it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// A person of the organisation; not for phones.
    pub person_id: Option<i32>,
    /// A care worker of the organisation; phones only.
    pub worker_id: Option<i32>,
}

/// A device's link as it now is.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceLinked {
    pub uid: String,
    pub person_id: Option<i32>,
    pub worker_id: Option<i32>,
    /// False when it was linked so already.
    pub changed: bool,
}

/// Links a device to a person or a care worker, or unlinks it (provider admins). Alarms the
/// device raises from now on are the person's; a phone's checks become the worker's visits
/// (its visits are derived again before the answer).
#[utoipa::path(
    operation_id = "link_device",
    tag = "devices",
    params(("uid" = String, Path, description = "The device's uid.")),
    request_body = LinkBody,
    responses(
        (status = 200, description = "Linked (or unlinked).", body = DeviceLinked),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[put("/v1/devices/{uid}/link")]
async fn link(
    caller: Caller,
    state: web::Data<AppState>,
    uid: web::Path<String>,
    body: crate::http::Json<LinkBody>,
) -> Result<HttpResponse, ApiError> {
    let linked = link_device(&state, &caller, &uid, &body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(linked))
}

/// Checks and applies a link with its audit row (`device.link`, before and after), then
/// derives a phone's visits again: the function behind `PUT /v1/devices/{uid}/link`, which
/// the console's device page calls too.
pub async fn link_device(
    state: &AppState,
    caller: &Caller,
    uid: &str,
    body: &LinkBody,
) -> Result<DeviceLinked, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let org = caller.organisation_id;
    let mut client = state.db(caller).await?;
    let tx = client.transaction().await?;
    let linked = relink(&tx, org, uid, body).await?;
    crate::audit::by(&*tx, caller, linked.audit_entry(org, uid)).await?;
    tx.commit().await?;
    if let Some(phone) = linked.phone_to_derive() {
        crate::evv::rederive(state, caller, &[phone], org).await?;
    }
    Ok(linked.view(uid))
}

/// A link changed (or not) by [`relink`].
pub struct Relinked {
    pub before: crate::people::store::DeviceLink,
    pub after: crate::people::store::DeviceLink,
}

impl Relinked {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }

    /// The audit row of the change.
    pub fn audit_entry(&self, org: i32, uid: &str) -> crate::audit::Entry {
        crate::audit::Entry::new(
            org,
            "device.link",
            "device",
            uid,
            serde_json::json!({"before": &self.before, "after": &self.after,
                               "changed": self.changed()}),
        )
    }

    /// The phone whose visits must be derived again (its worker changed), if any.
    pub fn phone_to_derive(&self) -> Option<i32> {
        (self.before.kind == DeviceKind::Phone.as_str() && self.changed())
            .then_some(self.before.device_id)
    }

    pub fn view(&self, uid: &str) -> DeviceLinked {
        DeviceLinked {
            uid: uid.to_owned(),
            person_id: self.after.person_id,
            worker_id: self.after.worker_id,
            changed: self.changed(),
        }
    }
}

/// Links organisation `org`'s device `uid` as `body` says, in the caller's transaction:
/// a person for a telecare device, a worker for a phone, at most one of them, each of `org`.
/// Shared by the API and `homeward admin link-device`.
pub async fn relink(
    tx: &impl deadpool_postgres::GenericClient,
    org: i32,
    uid: &str,
    body: &LinkBody,
) -> Result<Relinked, ApiError> {
    use crate::people::store;
    if body.person_id.is_some() && body.worker_id.is_some() {
        return Err(ApiError::invalid(
            "worker_id",
            "link a device to a person or a worker, not both",
        ));
    }
    let before = store::device_link(tx, org, uid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("device `{uid}`")))?;
    let phone = before.kind == DeviceKind::Phone.as_str();
    if let Some(person) = body.person_id {
        if phone {
            return Err(ApiError::invalid(
                "person_id",
                "a phone is carried by a care worker: link it with worker_id",
            ));
        }
        if !store::person_exists(tx, org, person).await? {
            return Err(ApiError::invalid(
                "person_id",
                "no person of your organisation has this id",
            ));
        }
    }
    if let Some(worker) = body.worker_id {
        if !phone {
            return Err(ApiError::invalid(
                "worker_id",
                "only phones are linked to care workers",
            ));
        }
        if !store::worker_exists(tx, org, worker).await? {
            return Err(ApiError::invalid(
                "worker_id",
                "no worker of your organisation has this id",
            ));
        }
    }
    store::set_device_link(tx, org, before.device_id, body.person_id, body.worker_id).await?;
    let after = store::DeviceLink {
        person_id: body.person_id,
        worker_id: body.worker_id,
        ..before.clone()
    };
    Ok(Relinked { before, after })
}
