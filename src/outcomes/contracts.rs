//! Contracts between a commissioner and a provider, and their payment terms held as data
//! (priced by [`super::payment`]). The one writer of `contracts` and `contract_terms`: the
//! admin command line creates contracts through [`create_contract`], and so does a provider
//! accepting a council's proposal ([`super::proposals`]); commissioners set terms over HTTP.
//!
//! Terms are versioned: every `PUT` adds a version valid from a day (`valid_from`), with who
//! set it; versions are never changed. A statement prices a period with the version valid on
//! its first day ([`terms_for_period`]) and refuses a period over which the terms change.

use actix_web::{get, put, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};

use super::payment::Terms;
use super::routes::READERS;
use crate::auth::{Caller, OrgKind, Organisation, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};
use utoipa_actix_web::service_config::ServiceConfig;

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_contracts)
        .service(put_terms)
        .service(get_terms);
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

/// One version of a contract's terms.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TermsVersion {
    pub contract_id: i32,
    /// 1, 2, ... in the order set; `null` when the contract has no terms valid today.
    pub version: Option<i32>,
    /// The first day the version prices.
    pub valid_from: Option<NaiveDate>,
    /// The user who set it (`null` for terms from before versions were kept).
    pub set_by_user_id: Option<i32>,
    pub set_by_organisation_id: Option<i32>,
    pub set_at: Option<DateTime<Utc>>,
    pub terms: Terms,
}

/// Every version of a contract's terms, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TermsHistory {
    pub contract_id: i32,
    /// The version valid today, if any.
    pub current: Option<i32>,
    pub versions: Vec<TermsVersion>,
}

const VERSION_COLUMNS: &str = "version, valid_from, set_by, set_by_organisation_id, set_at, terms";

fn version_of(contract_id: i32, r: &tokio_postgres::Row) -> Result<TermsVersion, ApiError> {
    let version: i32 = r.get(0);
    let terms: Terms = serde_json::from_value(r.get(5)).map_err(|e| {
        ApiError::Unexpected(anyhow::anyhow!(
            "contract {contract_id} has terms (version {version}) this version cannot read: {e}"
        ))
    })?;
    Ok(TermsVersion {
        contract_id,
        version: Some(version),
        valid_from: Some(r.get(1)),
        set_by_user_id: r.get(2),
        set_by_organisation_id: Some(r.get(3)),
        set_at: Some(r.get(4)),
        terms,
    })
}

/// No terms: nothing is priced.
fn no_terms(contract_id: i32) -> TermsVersion {
    TermsVersion {
        contract_id,
        version: None,
        valid_from: None,
        set_by_user_id: None,
        set_by_organisation_id: None,
        set_at: None,
        terms: Terms::default(),
    }
}

/// Every version of a contract's terms, oldest first (no tenant check: the caller's).
pub(super) async fn versions(
    c: &impl GenericClient,
    contract_id: i32,
) -> Result<Vec<TermsVersion>, ApiError> {
    let rows = c
        .query(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM contract_terms WHERE contract_id = $1 ORDER BY version"
            ),
            &[&contract_id],
        )
        .await?;
    rows.iter().map(|r| version_of(contract_id, r)).collect()
}

/// The version valid on `day`: the highest version whose `valid_from` is on or before it.
fn valid_on(versions: &[TermsVersion], day: NaiveDate) -> Option<&TermsVersion> {
    versions
        .iter()
        .filter(|v| v.valid_from.is_some_and(|f| f <= day))
        .max_by_key(|v| v.version)
}

/// The terms that price `[from, to)` for a contract: the version valid on `from` (no terms:
/// [`TermsVersion::version`] is `None`). A period over which a later version starts is
/// refused (422 naming `to` and the day), so no statement mixes two versions.
pub(super) async fn terms_for_period(
    c: &impl GenericClient,
    contract_id: i32,
    reference: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<TermsVersion, ApiError> {
    let all = versions(c, contract_id).await?;
    let current = valid_on(&all, from);
    if let Some(later) = all.iter().find(|v| {
        v.valid_from.is_some_and(|f| f > from && f < to)
            && v.version > current.and_then(|c| c.version)
    }) {
        return Err(ApiError::invalid(
            "to",
            format!(
                "the terms of contract {reference} change on {} (version {}): a statement's period must end by that day or start on it",
                later.valid_from.unwrap_or(from),
                later.version.unwrap_or(0)
            ),
        ));
    }
    Ok(current.cloned().unwrap_or_else(|| no_terms(contract_id)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PutTermsQuery {
    /// The first day the new version prices: not before the newest version's, nor before
    /// the end of a period already issued. Default: today; for a contract's first terms,
    /// the contract's start.
    valid_from: Option<NaiveDate>,
}

/// Sets a contract's terms (its commissioner only): a new version, never an overwrite.
#[utoipa::path(
    operation_id = "put_contract_terms",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The contract's id."), PutTermsQuery),
    request_body = Terms,
    responses(
        (status = 200, description = "The version as set.", body = TermsVersion),
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
    q: web::Query<PutTermsQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let id = path.into_inner();
    crate::http::dates::check_date("valid_from", q.valid_from)?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("terms", e.to_string()))?;
    crate::http::json::apply_rules(&mut value)?;
    let terms: Terms =
        serde_json::from_value(value).map_err(|e| ApiError::invalid("terms", e.to_string()))?;
    terms.validate().map_err(|(f, m)| ApiError::invalid(f, m))?;
    let value = serde_json::to_value(&terms).map_err(|e| ApiError::Unexpected(e.into()))?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    // The lock orders versions and issued statements of one contract.
    let starts_on: NaiveDate = tx
        .query_opt(
            "SELECT starts_on FROM contracts WHERE id = $1 AND commissioner_id = $2 FOR UPDATE",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("contract {id}")))?
        .get(0);
    let newest = tx
        .query_opt(
            "SELECT version, valid_from FROM contract_terms WHERE contract_id = $1
              ORDER BY version DESC LIMIT 1",
            &[&id],
        )
        .await?
        .map(|r| (r.get::<_, i32>(0), r.get::<_, NaiveDate>(1)));
    let today = Utc::now().date_naive();
    let valid_from = q
        .valid_from
        .unwrap_or(if newest.is_some() { today } else { starts_on });
    if let Some((_, newest_from)) = newest {
        if valid_from < newest_from {
            return Err(ApiError::invalid(
                "valid_from",
                format!("not before the newest version's ({newest_from})"),
            ));
        }
    }
    if let Some(issued_to) = super::statements::issued_until(&*tx, id).await? {
        if valid_from < issued_to {
            return Err(ApiError::invalid(
                "valid_from",
                format!("a statement was issued for days up to {issued_to}: not before that"),
            ));
        }
    }
    let version = newest.map_or(1, |(v, _)| v + 1);
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO contract_terms (contract_id, version, valid_from, terms, set_by, set_by_organisation_id)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {VERSION_COLUMNS}"
            ),
            &[&id, &version, &valid_from, &value, &caller.user_id, &caller.organisation_id],
        )
        .await?;
    let v = version_of(id, &row)?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "contract.set_terms",
            "contract",
            id,
            serde_json::json!({"version": version, "valid_from": valid_from, "terms": value}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct GetTermsQuery {
    /// `true`: every version, oldest first.
    history: Option<bool>,
}

/// A contract's terms, for its commissioner or provider: the version valid today, or with
/// `history=true` every version.
#[utoipa::path(
    operation_id = "get_contract_terms",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The contract's id."), GetTermsQuery),
    responses(
        (status = 200, description = "The version valid today (`version` null and empty \
            terms when none is), or with `history=true` every version.",
            content(
                (TermsVersion = "application/json"),
                (TermsHistory = "application/json"),
            )),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[get("/v1/contracts/{id}/terms")]
async fn get_terms(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    q: web::Query<GetTermsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let id = path.into_inner();
    let c = state.db(&caller).await?;
    c.query_opt(
        "SELECT 1 FROM contracts WHERE id = $1 AND (commissioner_id = $2 OR provider_id = $2)",
        &[&id, &caller.organisation_id],
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("contract {id}")))?;
    let all = versions(&**c, id).await?;
    let current = valid_on(&all, Utc::now().date_naive()).cloned();
    if q.history == Some(true) {
        return Ok(HttpResponse::Ok().json(TermsHistory {
            contract_id: id,
            current: current.and_then(|v| v.version),
            versions: all,
        }));
    }
    Ok(HttpResponse::Ok().json(current.unwrap_or_else(|| no_terms(id))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: i32, from: &str) -> TermsVersion {
        TermsVersion {
            version: Some(version),
            valid_from: Some(from.parse().unwrap()),
            ..no_terms(1)
        }
    }

    #[test]
    fn the_version_valid_on_a_day_is_the_highest_started_by_then() {
        let all = [v(1, "2025-01-01"), v(2, "2026-04-01"), v(3, "2026-04-01")];
        let on = |d: &str| valid_on(&all, d.parse().unwrap()).and_then(|v| v.version);
        assert_eq!(on("2024-12-31"), None);
        assert_eq!(on("2025-01-01"), Some(1));
        assert_eq!(on("2026-03-31"), Some(1));
        // Two versions from the same day: the later one set holds.
        assert_eq!(on("2026-04-01"), Some(3));
    }
}

/// A contract as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContractSummary {
    pub id: i32,
    /// The commissioner's reference.
    pub reference: String,
    pub commissioner_id: i32,
    pub commissioner_name: String,
    pub provider_id: i32,
    pub provider_name: String,
    pub starts_on: NaiveDate,
    /// The last day; `null`: open-ended.
    pub ends_on: Option<NaiveDate>,
    /// The terms version valid today; `null`: none.
    pub terms_version: Option<i32>,
    /// The day after the last period a statement was issued for; `null`: none issued.
    pub issued_until: Option<NaiveDate>,
}

/// A page of contracts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractPage {
    /// By id.
    pub items: Vec<ContractSummary>,
    /// `after` for the next page; null on the last one.
    pub next_after: Option<i32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContractsQuery {
    /// Only contracts with this provider.
    pub provider_id: Option<i32>,
    /// Only contracts in force on this day.
    pub on: Option<NaiveDate>,
    /// The last id of the previous page.
    pub after: Option<i32>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

/// The caller's organisation's contracts (as commissioner or as provider), by id.
pub async fn list(
    c: &impl GenericClient,
    caller: &Caller,
    q: &ContractsQuery,
) -> Result<ContractPage, ApiError> {
    caller.require(READERS)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    crate::http::dates::check_date("on", q.on)?;
    let rows = c
        .query(
            "SELECT k.id, k.reference, k.commissioner_id, co.name, k.provider_id, po.name,
                    k.starts_on, k.ends_on,
                    (SELECT max(t.version) FROM contract_terms t
                      WHERE t.contract_id = k.id AND t.valid_from <= current_date),
                    (SELECT max(s.period_to) FROM payment_statements s WHERE s.contract_id = k.id)
               FROM contracts k
               JOIN organisations co ON co.id = k.commissioner_id
               JOIN organisations po ON po.id = k.provider_id
              WHERE (k.commissioner_id = $1 OR k.provider_id = $1)
                AND ($2::int IS NULL OR k.provider_id = $2)
                AND ($3::date IS NULL OR (k.starts_on <= $3 AND (k.ends_on IS NULL OR k.ends_on >= $3)))
                AND ($4::int IS NULL OR k.id > $4)
              ORDER BY k.id LIMIT $5",
            &[&caller.organisation_id, &q.provider_id, &q.on, &q.after, &limit],
        )
        .await?;
    let items: Vec<ContractSummary> = rows
        .iter()
        .map(|r| ContractSummary {
            id: r.get(0),
            reference: r.get(1),
            commissioner_id: r.get(2),
            commissioner_name: r.get(3),
            provider_id: r.get(4),
            provider_name: r.get(5),
            starts_on: r.get(6),
            ends_on: r.get(7),
            terms_version: r.get(8),
            issued_until: r.get(9),
        })
        .collect();
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.id))
        .flatten();
    Ok(ContractPage { items, next_after })
}

/// The caller's organisation's contracts: a commissioner's with its providers, a provider's
/// with its commissioners; by id, a page at a time.
#[utoipa::path(
    operation_id = "list_contracts",
    tag = "outcomes",
    params(ContractsQuery),
    responses(
        (status = 200, description = "A page of contracts.", body = ContractPage),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/contracts")]
async fn list_contracts(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ContractsQuery>,
) -> Result<HttpResponse, ApiError> {
    let c = state.db(&caller).await?;
    Ok(HttpResponse::Ok().json(list(&**c, &caller, &q).await?))
}
