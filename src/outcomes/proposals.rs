//! Contracts proposed by a commissioner and accepted by the provider: the one writer of
//! `contract_proposals` (migration 0022), and the API's only way to make a contract.
//!
//! A contract lets the commissioner see the people the provider serves under it, so neither
//! party makes one alone: the council proposes (a provider by name or id, a reference, the
//! days), the provider's administrator accepts it, which creates the contract through
//! [`super::contracts::create_contract`] in the same transaction, or declines it; the council
//! may withdraw it while it is open. Until accepted, a proposal grants nothing. Each step
//! leaves an audit row in the acting organisation's chain. The functions are public: the
//! console's contract pages call them.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::contracts::{create_contract, ContractError};
use super::routes::READERS;
use crate::auth::{Caller, OrgKind, Role};
use crate::http::openapi as doc;
use crate::http::paging::{self, Page};
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(propose_route)
        .service(list_route)
        .service(accept_route)
        .service(decline_route)
        .service(withdraw_route);
}

/// A contract the council proposes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProposal {
    /// The provider: its registered name, or its organisation id.
    #[schema(min_length = 1, max_length = 200)]
    pub provider: String,
    /// The council's reference for the contract, unique among its contracts.
    #[schema(min_length = 1, max_length = 100)]
    pub reference: String,
    pub starts_on: NaiveDate,
    /// The last day; absent: open-ended.
    pub ends_on: Option<NaiveDate>,
}

/// A proposal and what became of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Proposal {
    pub id: i32,
    pub reference: String,
    pub commissioner_id: i32,
    pub commissioner_name: String,
    pub provider_id: i32,
    pub provider_name: String,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    /// `open`, `accepted`, `declined` or `withdrawn`.
    pub status: String,
    pub proposed_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The contract its acceptance created.
    pub contract_id: Option<i32>,
}

const COLUMNS: &str = "p.id, p.reference, p.commissioner_id, co.name, p.provider_id, po.name,
    p.starts_on, p.ends_on, p.status, p.proposed_at, p.decided_at, p.contract_id";
const FROM: &str = "contract_proposals p
    JOIN organisations co ON co.id = p.commissioner_id
    JOIN organisations po ON po.id = p.provider_id";

fn proposal(r: &tokio_postgres::Row) -> Proposal {
    Proposal {
        id: r.get(0),
        reference: r.get(1),
        commissioner_id: r.get(2),
        commissioner_name: r.get(3),
        provider_id: r.get(4),
        provider_name: r.get(5),
        starts_on: r.get(6),
        ends_on: r.get(7),
        status: r.get(8),
        proposed_at: r.get(9),
        decided_at: r.get(10),
        contract_id: r.get(11),
    }
}

async fn read(c: &impl GenericClient, id: i32) -> Result<Proposal, ApiError> {
    let row = c
        .query_one(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE p.id = $1"),
            &[&id],
        )
        .await?;
    Ok(proposal(&row))
}

/// Records the caller's (a commissioner's) proposal, with its audit row.
pub async fn propose(
    tx: &impl GenericClient,
    caller: &Caller,
    body: &NewProposal,
) -> Result<Proposal, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let reference = body.reference.trim();
    if !(1..=100).contains(&reference.chars().count()) {
        return Err(ApiError::invalid("reference", "1 to 100 characters"));
    }
    crate::http::dates::check_date("starts_on", Some(body.starts_on))?;
    crate::http::dates::check_date("ends_on", body.ends_on)?;
    if body.ends_on.is_some_and(|e| e < body.starts_on) {
        return Err(ApiError::invalid("ends_on", "not before starts_on"));
    }
    let provider = crate::auth::find_organisation(tx, body.provider.trim())
        .await
        .ok()
        .filter(|o| o.kind == OrgKind::Provider)
        .ok_or_else(|| {
            ApiError::invalid(
                "provider",
                "no provider organisation has that name or id: ask the provider for its registered name",
            )
        })?;
    let taken = tx
        .query_opt(
            "SELECT 1 FROM contracts WHERE commissioner_id = $1 AND reference = $2",
            &[&caller.organisation_id, &reference],
        )
        .await?
        .is_some();
    if taken {
        return Err(ApiError::Conflict(format!(
            "your organisation already has a contract `{reference}`"
        )));
    }
    let row = tx
        .query_one(
            "INSERT INTO contract_proposals (commissioner_id, provider_id, reference, starts_on, ends_on, proposed_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&caller.organisation_id, &provider.id, &reference, &body.starts_on, &body.ends_on, &caller.user_id],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                ApiError::Conflict(format!("a proposal `{reference}` is already open"))
            } else {
                e.into()
            }
        })?;
    let id: i32 = row.get(0);
    crate::audit::by(
        tx,
        caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "contract_proposal.propose",
            "contract_proposal",
            id,
            serde_json::json!({"provider_id": provider.id, "reference": reference,
                "starts_on": body.starts_on, "ends_on": body.ends_on}),
        ),
    )
    .await?;
    read(tx, id).await
}

/// What a party does with an open proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The provider's administrator: the contract is made.
    Accept,
    /// The provider's administrator: no contract.
    Decline,
    /// The council: no contract.
    Withdraw,
}

impl Decision {
    fn status(self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Decline => "declined",
            Self::Withdraw => "withdrawn",
        }
    }
}

/// Accepts, declines or withdraws open proposal `id`, with its audit row; accepting creates
/// the contract. Another organisation's proposal, or one the caller is not the deciding party
/// of, is 404; one already decided is 409.
pub async fn decide(
    tx: &impl GenericClient,
    caller: &Caller,
    id: i32,
    decision: Decision,
) -> Result<Proposal, ApiError> {
    let party = if decision == Decision::Withdraw {
        caller.require(&[Role::Commissioner])?;
        "commissioner_id"
    } else {
        caller.require(&[Role::ProviderAdmin])?;
        "provider_id"
    };
    let row = tx
        .query_opt(
            &format!(
                "SELECT status, commissioner_id, provider_id, reference, starts_on, ends_on
                   FROM contract_proposals WHERE id = $1 AND {party} = $2 FOR UPDATE"
            ),
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("contract proposal {id}")))?;
    let status: String = row.get(0);
    if status != "open" {
        return Err(ApiError::Conflict(format!(
            "contract proposal {id} is already {status}"
        )));
    }
    let contract_id = if decision == Decision::Accept {
        let (commissioner, provider) = (
            row.get::<_, i32>(1).to_string(),
            row.get::<_, i32>(2).to_string(),
        );
        let commissioner = crate::auth::find_organisation(tx, &commissioner).await?;
        let provider = crate::auth::find_organisation(tx, &provider).await?;
        let reference: String = row.get(3);
        Some(
            create_contract(
                tx,
                &commissioner,
                &provider,
                &reference,
                row.get(4),
                row.get(5),
            )
            .await
            .map_err(|e| match e {
                ContractError::Exists(what) => ApiError::Conflict(format!(
                    "{what}: the council made one with this reference meanwhile"
                )),
                ContractError::Invalid(why) => ApiError::Conflict(why),
                ContractError::Db(e) => e.into(),
            })?,
        )
    } else {
        None
    };
    tx.execute(
        "UPDATE contract_proposals SET status = $2, decided_by = $3, decided_at = now(), contract_id = $4
          WHERE id = $1",
        &[&id, &decision.status(), &caller.user_id, &contract_id],
    )
    .await?;
    let action = match decision {
        Decision::Accept => "contract_proposal.accept",
        Decision::Decline => "contract_proposal.decline",
        Decision::Withdraw => "contract_proposal.withdraw",
    };
    crate::audit::by(
        tx,
        caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            action,
            "contract_proposal",
            id,
            serde_json::json!({"status": decision.status(), "contract_id": contract_id}),
        ),
    )
    .await?;
    read(tx, id).await
}

/// A page of proposals.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProposalsQuery {
    /// Only proposals in this state: `open`, `accepted`, `declined` or `withdrawn`.
    #[param(pattern = "^(open|accepted|declined|withdrawn)$")]
    pub status: Option<String>,
    /// The last id of the previous page.
    pub after: Option<i32>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalPage {
    /// By id.
    pub items: Vec<Proposal>,
    /// `after` for the next page; null on the last one.
    pub next_after: Option<i32>,
}

/// The proposals the caller's organisation made or received, by id.
pub async fn list(
    c: &impl GenericClient,
    caller: &Caller,
    q: &ProposalsQuery,
) -> Result<ProposalPage, ApiError> {
    caller.require(READERS)?;
    let limit = paging::STANDARD.check(q.limit)?;
    if let Some(s) = &q.status {
        if !["open", "accepted", "declined", "withdrawn"].contains(&s.as_str()) {
            return Err(ApiError::invalid(
                "status",
                "one of open, accepted, declined, withdrawn",
            ));
        }
    }
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {FROM}
                  WHERE (p.commissioner_id = $1 OR p.provider_id = $1)
                    AND ($2::text IS NULL OR p.status = $2)
                    AND ($3::int IS NULL OR p.id > $3)
                  ORDER BY p.id LIMIT $4"
            ),
            &[&caller.organisation_id, &q.status, &q.after, &(limit + 1)],
        )
        .await?;
    let page = Page::from_rows(rows.iter().map(proposal).collect(), limit, |p| p.id);
    Ok(ProposalPage {
        items: page.items,
        next_after: page.next_after,
    })
}

/// Proposes a contract to a provider (commissioners). It grants nothing until the provider's
/// administrator accepts it.
#[utoipa::path(
    operation_id = "propose_contract",
    tag = "outcomes",
    request_body = NewProposal,
    responses(
        (status = 201, description = "Proposed; open until the provider decides.", body = Proposal,
            links(("withdraw" = (operation_id = "withdraw_contract_proposal",
                parameters(("id" = "$response.body#/id")))))),
        doc::Forbidden,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/contract-proposals")]
async fn propose_route(
    caller: Caller,
    state: web::Data<AppState>,
    body: crate::http::Json<NewProposal>,
) -> Result<HttpResponse, ApiError> {
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let p = propose(&*tx, &caller, &body).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(p))
}

/// The contract proposals the caller's organisation made (a council) or received (a
/// provider), by id.
#[utoipa::path(
    operation_id = "list_contract_proposals",
    tag = "outcomes",
    params(ProposalsQuery),
    responses(
        (status = 200, description = "A page of proposals.", body = ProposalPage),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/contract-proposals")]
async fn list_route(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ProposalsQuery>,
) -> Result<HttpResponse, ApiError> {
    let c = state.db(&caller).await?;
    Ok(HttpResponse::Ok().json(list(&**c, &caller, &q).await?))
}

async fn decide_route(
    caller: Caller,
    state: web::Data<AppState>,
    id: i32,
    decision: Decision,
) -> Result<HttpResponse, ApiError> {
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let p = decide(&*tx, &caller, id, decision).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(p))
}

/// Accepts an open proposal made to the caller's organisation (provider admins): the contract
/// is created, and the council then sees the people served under it.
#[utoipa::path(
    operation_id = "accept_contract_proposal",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The proposal's id.")),
    responses(
        (status = 200, description = "Accepted; `contract_id` is the new contract.", body = Proposal),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
    ),
)]
#[post("/v1/contract-proposals/{id}/accept")]
async fn accept_route(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    decide_route(caller, state, id.into_inner(), Decision::Accept).await
}

/// Declines an open proposal made to the caller's organisation (provider admins).
#[utoipa::path(
    operation_id = "decline_contract_proposal",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The proposal's id.")),
    responses(
        (status = 200, description = "Declined.", body = Proposal),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
    ),
)]
#[post("/v1/contract-proposals/{id}/decline")]
async fn decline_route(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    decide_route(caller, state, id.into_inner(), Decision::Decline).await
}

/// Withdraws an open proposal the caller's organisation made (commissioners).
#[utoipa::path(
    operation_id = "withdraw_contract_proposal",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The proposal's id.")),
    responses(
        (status = 200, description = "Withdrawn.", body = Proposal),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
    ),
)]
#[post("/v1/contract-proposals/{id}/withdraw")]
async fn withdraw_route(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    decide_route(caller, state, id.into_inner(), Decision::Withdraw).await
}
