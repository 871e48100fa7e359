//! Plans as work to do: `GET /v1/outcome-plans`, the plans a caller may see (a provider's own;
//! a commissioner's under its contracts), a page at a time, optionally only those waiting for
//! someone: an agreement not yet given, or an achievement the person confirmed that the council
//! has not yet verified or rejected. The console's queues are this list.
//!
//! People appear by pseudonym to a commissioner, whose reading is logged as the API's other
//! person-level views are.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::routes::READERS;
use crate::auth::{Caller, OrgKind};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_plans);
}

/// An achievement waiting for the council's verdict.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AwaitingVerification {
    pub outcome_id: i64,
    /// "I can ...", in the person's words.
    pub statement: String,
    pub payable: bool,
    pub target_date: NaiveDate,
    /// The UTC date of the person's "yes".
    pub achieved_on: NaiveDate,
}

/// A plan in a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanSummary {
    pub id: i64,
    pub person_pseudonym: String,
    /// The person's id and name: for the provider only (`null` for a commissioner).
    pub person_id: Option<i32>,
    pub person_name: Option<String>,
    pub contract_id: Option<i32>,
    pub contract_reference: Option<String>,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub agreed_by_person_at: Option<DateTime<Utc>>,
    pub agreed_by_provider_at: Option<DateTime<Utc>>,
    pub agreed_by_council_at: Option<DateTime<Utc>>,
    /// The parties who have not agreed yet: `person`, `provider`, `council`.
    pub awaiting_agreement: Vec<&'static str>,
    /// Achievements the person confirmed and the council has not judged.
    pub awaiting_verification: Vec<AwaitingVerification>,
}

/// A page of plans.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanPage {
    /// By id.
    pub items: Vec<PlanSummary>,
    /// `after` for the next page; null on the last one.
    pub next_after: Option<i64>,
}

/// What a plan may be waiting for.
#[derive(ToSchema)]
#[allow(dead_code)]
enum Awaiting {
    #[schema(rename = "agreement")]
    Agreement,
    #[schema(rename = "verification")]
    Verification,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlansQuery {
    /// Only plans waiting for an agreement, or with an achievement waiting for verification.
    #[param(inline, value_type = Option<Awaiting>)]
    pub awaiting: Option<String>,
    /// Only plans under this contract.
    pub contract_id: Option<i32>,
    /// Only this person's plans.
    pub person_id: Option<i32>,
    /// The last id of the previous page.
    pub after: Option<i64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

/// The plans the caller may see, filtered and paged as `q` says.
pub async fn list(
    c: &impl GenericClient,
    caller: &Caller,
    q: &PlansQuery,
) -> Result<PlanPage, ApiError> {
    caller.require(READERS)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let filter = match q.awaiting.as_deref() {
        None => "true",
        Some("agreement") => {
            "(p.agreed_by_person_at IS NULL OR p.agreed_by_provider_at IS NULL
              OR p.agreed_by_council_at IS NULL)"
        }
        Some("verification") => "jsonb_array_length(w.awaiting) > 0",
        Some(_) => return Err(ApiError::invalid("awaiting", "agreement or verification")),
    };
    let commissioner = caller.organisation_kind == OrgKind::Commissioner;
    let rows = c
        .query(
            &format!(
                "SELECT p.id, pe.pseudonym, pe.id, pe.display_name, p.contract_id, k.reference,
                        p.starts_on, p.ends_on, p.agreed_by_person_at, p.agreed_by_provider_at,
                        p.agreed_by_council_at, w.awaiting
                   FROM outcome_plans p
                   JOIN people pe ON pe.id = p.person_id
                   LEFT JOIN contracts k ON k.id = p.contract_id
                   CROSS JOIN LATERAL (
                       SELECT coalesce(jsonb_agg(jsonb_build_object(
                                  'outcome_id', o.id, 'statement', o.statement, 'payable', o.payable,
                                  'target_date', o.target_date,
                                  'achieved_on', (y.confirmed_at AT TIME ZONE 'UTC')::date) ORDER BY o.id),
                              '[]'::jsonb) AS awaiting
                         FROM plan_outcomes o
                         JOIN LATERAL (SELECT y.confirmed_at FROM plan_outcome_confirmations y
                                        WHERE y.outcome_id = o.id AND y.answer = 'yes'
                                        ORDER BY y.confirmed_at, y.id LIMIT 1) y ON true
                        WHERE o.plan_id = p.id AND p.contract_id IS NOT NULL
                          AND NOT EXISTS (SELECT 1 FROM plan_outcome_verifications v
                                           WHERE v.outcome_id = o.id)) w
                  WHERE (p.organisation_id = $1 OR k.commissioner_id = $1)
                    AND ($2::int IS NULL OR p.contract_id = $2)
                    AND ($3::int IS NULL OR p.person_id = $3)
                    AND ($4::bigint IS NULL OR p.id > $4)
                    AND {filter}
                  ORDER BY p.id LIMIT $5"
            ),
            &[
                &caller.organisation_id,
                &q.contract_id,
                &q.person_id,
                &q.after,
                &limit,
            ],
        )
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let awaiting: Vec<AwaitingVerification> =
            serde_json::from_value::<Vec<serde_json::Value>>(r.get(11))
                .map_err(|e| ApiError::Unexpected(e.into()))?
                .into_iter()
                .map(|v| {
                    Ok(AwaitingVerification {
                        outcome_id: v["outcome_id"].as_i64().unwrap_or_default(),
                        statement: v["statement"].as_str().unwrap_or_default().to_owned(),
                        payable: v["payable"].as_bool().unwrap_or_default(),
                        target_date: serde_json::from_value(v["target_date"].clone())
                            .map_err(|e| ApiError::Unexpected(e.into()))?,
                        achieved_on: serde_json::from_value(v["achieved_on"].clone())
                            .map_err(|e| ApiError::Unexpected(e.into()))?,
                    })
                })
                .collect::<Result<_, ApiError>>()?;
        let agreed: [(Option<DateTime<Utc>>, &'static str); 3] = [
            (r.get(8), "person"),
            (r.get(9), "provider"),
            (r.get(10), "council"),
        ];
        items.push(PlanSummary {
            id: r.get(0),
            person_pseudonym: r.get(1),
            person_id: (!commissioner).then(|| r.get(2)),
            person_name: if commissioner { None } else { r.get(3) },
            contract_id: r.get(4),
            contract_reference: r.get(5),
            starts_on: r.get(6),
            ends_on: r.get(7),
            agreed_by_person_at: agreed[0].0,
            agreed_by_provider_at: agreed[1].0,
            agreed_by_council_at: agreed[2].0,
            awaiting_agreement: agreed
                .iter()
                .filter(|(at, _)| at.is_none())
                .map(|(_, who)| *who)
                .collect(),
            awaiting_verification: awaiting,
        });
    }
    if !items.is_empty() {
        crate::audit::read_by_commissioner(
            c,
            caller,
            "outcome_plans",
            serde_json::json!({"awaiting": q.awaiting, "contract_id": q.contract_id,
                               "person_id": q.person_id, "rows": items.len()}),
        )
        .await?;
    }
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.id))
        .flatten();
    Ok(PlanPage { items, next_after })
}

/// The plans the caller may see (a provider's own; a commissioner's under its contracts, by
/// pseudonym), by id a page at a time; with `awaiting`, only those waiting for an agreement or
/// with an achievement waiting for the council's verdict.
#[utoipa::path(
    operation_id = "list_outcome_plans",
    tag = "outcomes",
    params(PlansQuery),
    responses(
        (status = 200, description = "A page of plans.", body = PlanPage),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/outcome-plans")]
async fn list_plans(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<PlansQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let page = list(&*tx, &caller, &q).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(page))
}
