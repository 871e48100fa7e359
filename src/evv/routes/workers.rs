//! `POST /v1/workers` and `PUT /v1/workers/{id}/phones/{uid}`: a worker and the phone they
//! carry. The rows are [`crate::people`]'s to write ([`store`]); these handlers live here
//! because a phone's checks become that worker's visits, so the response waits until the
//! phone's visits are derived again ([`super::rederive`]). Visits depend on people, never the
//! reverse.

use actix_web::{post, put, web, HttpResponse};
use serde::Deserialize;

use crate::auth::Caller;
use crate::http::{ApiError, AppState};
use crate::people::{store, EDITORS};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_worker).service(link_phone);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWorker {
    external_ref: String,
    display_name: Option<String>,
    /// A phone device (kind `phone`) of this organisation to link to the worker.
    phone_uid: Option<String>,
}

#[post("/v1/workers")]
async fn create_worker(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<NewWorker>,
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
    let mut client = state.pool.get().await?;
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
    tx.commit().await?;
    super::rederive(&state, &devices, org).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": id, "external_ref": external_ref, "display_name": w.display_name, "phones": phones,
    })))
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
#[put("/v1/workers/{id}/phones/{uid}")]
async fn link_phone(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i32, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let (worker, uid) = path.into_inner();
    let org = caller.organisation_id;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if !store::worker_exists(&tx, org, worker).await? {
        return Err(ApiError::NotFound("worker".into()));
    }
    link(&tx, org, worker, &uid, "uid").await?;
    let devices = store::phones_of(&tx, worker).await?;
    tx.commit().await?;
    super::rederive(&state, &devices, org).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "worker_id": worker, "phone_uid": uid })))
}
