//! `POST /v1/workers`, `PATCH /v1/workers/{id}` and `PUT /v1/workers/{id}/phones/{uid}`: a
//! worker and the phone they carry. The rows are [`crate::people`]'s to write ([`store`]); these handlers live here
//! because a phone's checks become that worker's visits, so the response waits until the
//! phone's visits are derived again ([`super::rederive`]). Visits depend on people, never the
//! reverse.

use actix_web::{patch, post, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::Caller;
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};
use crate::people::{store, Worker, EDITORS};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_worker)
        .service(update_worker)
        .service(link_phone);
}

/// A care worker.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewWorker {
    /// The provider's own reference, unique in the organisation (surrounding spaces are
    /// dropped).
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    external_ref: String,
    display_name: Option<String>,
    /// A phone device (kind `phone`) of this organisation to link to the worker.
    phone_uid: Option<String>,
}

/// A phone linked to a worker.
#[derive(Serialize, ToSchema)]
struct PhoneLink {
    worker_id: i32,
    phone_uid: String,
}

/// Records a care worker, with the phone they carry if given.
#[utoipa::path(
    operation_id = "create_worker",
    tag = "people",
    request_body = NewWorker,
    responses(
        (status = 201, description = "Recorded.", body = Worker,
            links(("worker" = (operation_id = "get_worker",
                parameters(("id" = "$response.body#/id")))))),
        doc::Forbidden,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/workers")]
async fn create_worker(
    caller: Caller,
    state: web::Data<AppState>,
    body: crate::http::Json<NewWorker>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let w = body.into_inner();
    let external_ref = w.external_ref.trim();
    if external_ref.is_empty() || w.external_ref.len() > 100 {
        return Err(ApiError::invalid(
            "external_ref",
            "must be 1 to 100 characters",
        ));
    }
    let org = caller.organisation_id;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let id = store::insert_worker(&tx, org, external_ref, w.display_name.as_deref())
        .await
        .map_err(|e| {
            if store::is_duplicate(&e) {
                ApiError::Conflict("a worker with this external_ref already exists".into())
            } else {
                e.into()
            }
        })?;
    let mut phones = Vec::new();
    if let Some(uid) = &w.phone_uid {
        link(&tx, org, id, uid, "phone_uid").await?;
        phones.push(uid.clone());
    }
    let devices = store::phones_of(&tx, id).await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org,
            "worker.create",
            "worker",
            id,
            serde_json::json!({"external_ref": external_ref, "display_name": w.display_name,
                               "phone_uid": w.phone_uid}),
        ),
    )
    .await?;
    tx.commit().await?;
    super::rederive(&state, &caller, &devices, org).await?;
    Ok(HttpResponse::Created().json(Worker {
        id,
        external_ref: external_ref.to_owned(),
        display_name: w.display_name,
        phones,
    }))
}

/// The fields of a worker that may change; those left out stay. Phones are linked with
/// `PUT /v1/workers/{id}/phones/{uid}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WorkerChange {
    /// The provider's own reference, unique in the organisation (surrounding spaces are
    /// dropped).
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    external_ref: Option<String>,
    /// The name shown to the office, or null for none (at most 200 characters).
    #[serde(default, deserialize_with = "crate::http::json::present")]
    #[schema(value_type = Option<String>, max_length = 200)]
    display_name: Option<Option<String>>,
}

/// Changes a worker's reference or name (provider admins and staff). Their visits keep them:
/// visits name the worker by id.
#[utoipa::path(
    operation_id = "update_worker",
    tag = "people",
    params(("id" = i32, Path, description = "The worker's id.")),
    request_body = WorkerChange,
    responses(
        (status = 200, description = "The worker as changed.", body = Worker),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[patch("/v1/workers/{id}")]
async fn update_worker(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    body: crate::http::Json<WorkerChange>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let id = path.into_inner();
    let change = body.into_inner();
    if let Some(r) = &change.external_ref {
        if r.trim().is_empty() || r.len() > 100 {
            return Err(ApiError::invalid(
                "external_ref",
                "must be 1 to 100 characters",
            ));
        }
    }
    if let Some(Some(n)) = &change.display_name {
        if n.chars().count() > 200 {
            return Err(ApiError::invalid("display_name", "at most 200 characters"));
        }
    }
    let org = caller.organisation_id;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let before = store::find_worker(&tx, org, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("worker".into()))?;
    let external_ref = change
        .external_ref
        .as_deref()
        .map_or(before.external_ref.as_str(), str::trim);
    let display_name = change
        .display_name
        .clone()
        .unwrap_or(before.display_name.clone());
    store::update_worker(&tx, org, id, external_ref, display_name.as_deref())
        .await
        .map_err(|e| {
            if store::is_duplicate(&e) {
                ApiError::Conflict("a worker with this external_ref already exists".into())
            } else {
                e.into()
            }
        })?;
    let after = Worker {
        external_ref: external_ref.to_owned(),
        display_name,
        ..before.clone()
    };
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org,
            "worker.update",
            "worker",
            id,
            serde_json::json!({"before": before, "after": after}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(after))
}

/// Links a phone, or names `field` when the organisation has no phone with this uid.
async fn link(
    tx: &impl deadpool_postgres::GenericClient,
    org: i32,
    worker: i32,
    uid: &str,
    field: &str,
) -> Result<(), ApiError> {
    if store::link_phone(tx, org, worker, uid).await? {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "no phone device of your organisation has this uid",
        ))
    }
}

/// Links a phone to a worker (a care worker's phone is a device of kind `phone`).
#[utoipa::path(
    operation_id = "link_phone",
    tag = "people",
    params(
        ("id" = i32, Path, description = "The worker's id."),
        ("uid" = String, Path, description = "A phone device's uid."),
    ),
    responses(
        (status = 200, description = "Linked.", body = PhoneLink),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[put("/v1/workers/{id}/phones/{uid}")]
async fn link_phone(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i32, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let (worker, uid) = path.into_inner();
    let org = caller.organisation_id;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    if !store::worker_exists(&tx, org, worker).await? {
        return Err(ApiError::NotFound("worker".into()));
    }
    link(&tx, org, worker, &uid, "uid").await?;
    let devices = store::phones_of(&tx, worker).await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org,
            "worker.link_phone",
            "worker",
            worker,
            serde_json::json!({"phone_uid": uid}),
        ),
    )
    .await?;
    tx.commit().await?;
    super::rederive(&state, &caller, &devices, org).await?;
    Ok(HttpResponse::Ok().json(PhoneLink {
        worker_id: worker,
        phone_uid: uid,
    }))
}
