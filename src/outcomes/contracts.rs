//! Contracts between a commissioner and a provider, and their payment terms held as data
//! (`contracts.terms`, priced by [`super::payment`]). The one writer of `contracts`: the admin
//! command line creates contracts through [`create_contract`], commissioners set terms over HTTP.

use actix_web::{get, put, web, HttpResponse};
use chrono::NaiveDate;
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use super::payment::Terms;
use super::routes::READERS;
use crate::auth::{Caller, OrgKind, Organisation, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};
use utoipa_actix_web::service_config::ServiceConfig;

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(put_terms).service(get_terms);
}

/// Why a contract could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The parties are not a commissioner and a provider.
    #[error("{0}")]
    Invalid(String),
    /// The commissioner already has a contract with this reference.
    #[error("{0} already exists")]
    Exists(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Records a contract in which `commissioner` commissions `provider`, with no terms yet; returns
/// its id. A commissioner's references are unique.
pub async fn create_contract(
    client: &impl GenericClient,
    commissioner: &Organisation,
    provider: &Organisation,
    reference: &str,
    starts_on: NaiveDate,
    ends_on: Option<NaiveDate>,
) -> Result<i32, ContractError> {
    if commissioner.kind != OrgKind::Commissioner || provider.kind != OrgKind::Provider {
        return Err(ContractError::Invalid(
            "a contract is between a commissioner and a provider".into(),
        ));
    }
    let row = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on, ends_on)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &commissioner.id,
                &provider.id,
                &reference,
                &starts_on,
                &ends_on,
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                ContractError::Exists(format!("contract `{reference}`"))
            } else {
                ContractError::Db(e)
            }
        })?;
    Ok(row.get(0))
}

/// Passes if there is no contract, or it is one of the caller's (a provider's) contracts.
pub(super) async fn own_contract(
    c: &impl GenericClient,
    caller: &Caller,
    id: Option<i32>,
) -> Result<(), ApiError> {
    let Some(id) = id else { return Ok(()) };
    let ok = c
        .query_opt(
            "SELECT 1 FROM contracts WHERE id = $1 AND provider_id = $2",
            &[&id, &caller.organisation_id],
        )
        .await?
        .is_some();
    ok.then_some(())
        .ok_or_else(|| ApiError::invalid("contract_id", "no such contract with your organisation"))
}

/// Sets a contract's terms (its commissioner only).
#[utoipa::path(
    operation_id = "put_contract_terms",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The contract's id.")),
    request_body = Terms,
    responses(
        (status = 200, description = "The terms as set.", body = Terms),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[put("/v1/contracts/{id}/terms")]
async fn put_terms(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let id = path.into_inner();
    let mut value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("terms", e.to_string()))?;
    crate::http::json::apply_rules(&mut value)?;
    let terms: Terms =
        serde_json::from_value(value).map_err(|e| ApiError::invalid("terms", e.to_string()))?;
    terms.validate().map_err(|(f, m)| ApiError::invalid(f, m))?;
    let value = serde_json::to_value(&terms).map_err(|e| ApiError::Unexpected(e.into()))?;
    let c = state.pool.get().await?;
    let n = c
        .execute(
            "UPDATE contracts SET terms = $3 WHERE id = $1 AND commissioner_id = $2",
            &[&id, &caller.organisation_id, &value],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::NotFound(format!("contract {id}")));
    }
    Ok(HttpResponse::Ok().json(value))
}

/// A contract's terms, for its commissioner or provider.
#[utoipa::path(
    operation_id = "get_contract_terms",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The contract's id.")),
    responses(
        (status = 200, description = "The terms.", body = Terms),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/contracts/{id}/terms")]
async fn get_terms(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let id = path.into_inner();
    let c = state.pool.get().await?;
    let row = c
        .query_opt(
            "SELECT terms FROM contracts WHERE id = $1 AND (commissioner_id = $2 OR provider_id = $2)",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("contract {id}")))?;
    Ok(HttpResponse::Ok().json(row.get::<_, serde_json::Value>(0)))
}
