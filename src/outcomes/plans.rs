//! "I can" outcome plans: providers write them with the person, the person, the provider and the
//! council agree them, and an outcome is achieved only when the person confirms it. Owns
//! `outcome_plans` and `plan_outcomes`.

use actix_web::{get, post, web, HttpResponse};
use chrono::NaiveDate;
use serde::Deserialize;
use tokio_postgres::GenericClient;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::contracts::own_contract;
use super::routes::{own_person, READERS, STAFF};
use crate::auth::{Caller, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_plan)
        .service(get_plan)
        .service(agree_plan)
        .service(achieve);
}

/// An outcome's kind.
#[derive(ToSchema)]
#[allow(dead_code)]
enum OutcomeKind {
    #[schema(rename = "reablement")]
    Reablement,
    #[schema(rename = "maintenance")]
    Maintenance,
}

/// An outcome of a plan: its target date within the plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    /// "I can ...", in the person's words.
    #[schema(pattern = "^I can ", max_length = 500)]
    statement: String,
    #[schema(value_type = OutcomeKind)]
    kind: String,
    payable: bool,
    target_date: NaiveDate,
}

/// An "I can" plan: at most six months, at least one outcome.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    /// A person of the organisation.
    person_id: i32,
    /// A contract of the organisation.
    contract_id: Option<i32>,
    starts_on: NaiveDate,
    /// On or after `starts_on`, at most 183 days on.
    ends_on: NaiveDate,
    /// Default 0.
    #[serde(default)]
    #[schema(minimum = 0)]
    value_pence: i64,
    #[schema(min_items = 1)]
    outcomes: Vec<OutcomeBody>,
}

/// Writes a plan with the person.
#[utoipa::path(
    operation_id = "create_outcome_plan",
    tag = "outcomes",
    request_body = PlanBody,
    responses(
        (status = 201, description = "The plan, as `GET /v1/outcome-plans/{id}` shows it.",
            body = Object,
            links(
                ("plan" = (operation_id = "get_outcome_plan",
                    parameters(("id" = "$response.body#/id")))),
                ("agree" = (operation_id = "agree_outcome_plan",
                    parameters(("id" = "$response.body#/id")))),
            )),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[post("/v1/outcome-plans")]
async fn create_plan(
    caller: Caller,
    state: web::Data<AppState>,
    b: crate::http::Json<PlanBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    crate::http::dates::check_date("starts_on", Some(b.starts_on))?;
    crate::http::dates::check_date("ends_on", Some(b.ends_on))?;
    if b.ends_on < b.starts_on || b.ends_on > b.starts_on + chrono::Duration::days(183) {
        return Err(ApiError::invalid(
            "ends_on",
            "on or after starts_on, and a plan lasts at most six months",
        ));
    }
    if b.value_pence < 0 {
        return Err(ApiError::invalid("value_pence", "must not be negative"));
    }
    if b.outcomes.is_empty() {
        return Err(ApiError::invalid(
            "outcomes",
            "a plan needs at least one outcome",
        ));
    }
    for (i, o) in b.outcomes.iter().enumerate() {
        if !o.statement.starts_with("I can ") || o.statement.len() > 500 {
            return Err(ApiError::invalid(
                format!("outcomes[{i}].statement"),
                "an \"I can ...\" statement, at most 500 characters",
            ));
        }
        if !["reablement", "maintenance"].contains(&o.kind.as_str()) {
            return Err(ApiError::invalid(
                format!("outcomes[{i}].kind"),
                "reablement or maintenance",
            ));
        }
        if o.target_date < b.starts_on || o.target_date > b.ends_on {
            return Err(ApiError::invalid(
                format!("outcomes[{i}].target_date"),
                "within the plan",
            ));
        }
    }
    let mut c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    own_contract(&**c, &caller, b.contract_id).await?;
    let tx = c.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO outcome_plans (organisation_id, person_id, contract_id, starts_on, ends_on, value_pence, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.contract_id, &b.starts_on, &b.ends_on, &b.value_pence, &caller.user_id],
        )
        .await?
        .get(0);
    for o in &b.outcomes {
        tx.execute(
            "INSERT INTO plan_outcomes (plan_id, statement, kind, payable, target_date) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &o.statement, &o.kind, &o.payable, &o.target_date],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(HttpResponse::Created().json(plan_json(&**c, id).await?))
}

async fn plan_json(c: &impl GenericClient, id: i64) -> Result<serde_json::Value, ApiError> {
    let row = c
        .query_one(
            "SELECT jsonb_build_object(
               'id', p.id, 'person_pseudonym', pe.pseudonym, 'contract_id', p.contract_id,
               'starts_on', p.starts_on, 'ends_on', p.ends_on, 'value_pence', p.value_pence,
               'agreed_by_person_at', p.agreed_by_person_at, 'agreed_by_provider_at', p.agreed_by_provider_at,
               'agreed_by_council_at', p.agreed_by_council_at,
               'agreed', p.agreed_by_person_at IS NOT NULL AND p.agreed_by_provider_at IS NOT NULL AND p.agreed_by_council_at IS NOT NULL,
               'outcomes', coalesce((SELECT jsonb_agg(jsonb_build_object('id', o.id, 'statement', o.statement,
                   'kind', o.kind, 'payable', o.payable, 'target_date', o.target_date,
                   'achieved_on', o.achieved_on, 'confirmed_at', o.confirmed_at) ORDER BY o.id)
                 FROM plan_outcomes o WHERE o.plan_id = p.id), '[]'::jsonb))
             FROM outcome_plans p JOIN people pe ON pe.id = p.person_id WHERE p.id = $1",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

/// The plan if the caller may see it: its provider, or the commissioner of its contract.
async fn visible_plan(c: &impl GenericClient, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let ok = c
        .query_opt(
            "SELECT 1 FROM outcome_plans p LEFT JOIN contracts c ON c.id = p.contract_id
              WHERE p.id = $1 AND (p.organisation_id = $2 OR c.commissioner_id = $2)",
            &[&id, &caller.organisation_id],
        )
        .await?
        .is_some();
    ok.then_some(())
        .ok_or_else(|| ApiError::NotFound(format!("outcome plan {id}")))
}

/// One plan with its outcomes and who has agreed it.
#[utoipa::path(
    operation_id = "get_outcome_plan",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The plan's id.")),
    responses(
        (status = 200, description = "The plan: `id`, `person_pseudonym`, `contract_id`, \
            `starts_on`, `ends_on`, `value_pence`, the three `agreed_by_*_at`, `agreed`, and \
            `outcomes`.", body = Object),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/outcome-plans/{id}")]
async fn get_plan(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let id = path.into_inner();
    let c = state.pool.get().await?;
    visible_plan(&**c, &caller, id).await?;
    Ok(HttpResponse::Ok().json(plan_json(&**c, id).await?))
}

/// Who agrees.
#[derive(ToSchema)]
#[allow(dead_code)]
enum Party {
    #[schema(rename = "person")]
    Person,
    #[schema(rename = "provider")]
    Provider,
    #[schema(rename = "council")]
    Council,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AgreeBody {
    /// `person` or `provider` (provider staff, recording the person's own agreement for the
    /// first), `council` (the commissioner).
    #[schema(value_type = Party)]
    party: String,
}

/// Records one party's agreement (again: no change).
#[utoipa::path(
    operation_id = "agree_outcome_plan",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The plan's id.")),
    request_body = AgreeBody,
    responses(
        (status = 200, description = "The plan, as `GET /v1/outcome-plans/{id}` shows it.",
            body = Object),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[post("/v1/outcome-plans/{id}/agree")]
async fn agree_plan(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    b: crate::http::Json<AgreeBody>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let column = match b.party.as_str() {
        "person" => "agreed_by_person_at",
        "provider" => "agreed_by_provider_at",
        "council" => "agreed_by_council_at",
        _ => return Err(ApiError::invalid("party", "person, provider or council")),
    };
    if column == "agreed_by_council_at" {
        caller.require(&[Role::Commissioner])?;
    } else {
        caller.require(STAFF)?;
    }
    let c = state.pool.get().await?;
    visible_plan(&**c, &caller, id).await?;
    let sql = format!(
        "UPDATE outcome_plans p SET {column} = coalesce({column}, now())
          WHERE p.id = $1 AND (p.organisation_id = $2 OR EXISTS
                (SELECT 1 FROM contracts c WHERE c.id = p.contract_id AND c.commissioner_id = $2))"
    );
    c.execute(&sql, &[&id, &caller.organisation_id]).await?;
    Ok(HttpResponse::Ok().json(plan_json(&**c, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AchieveBody {
    achieved_on: NaiveDate,
    /// The person's confirmation: an outcome is achieved only when they say so.
    confirmed_by_person: bool,
}

/// Records an outcome of an agreed plan as achieved, as the person confirms.
#[utoipa::path(
    operation_id = "achieve_outcome",
    tag = "outcomes",
    params(
        ("id" = i64, Path, description = "The plan's id."),
        ("outcome" = i64, Path, description = "The outcome's id."),
    ),
    request_body = AchieveBody,
    responses(
        (status = 200, description = "The plan, as `GET /v1/outcome-plans/{id}` shows it.",
            body = Object),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcome-plans/{id}/outcomes/{outcome}/achieve")]
async fn achieve(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    b: crate::http::Json<AchieveBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    if !b.confirmed_by_person {
        return Err(ApiError::invalid(
            "confirmed_by_person",
            "an outcome is achieved only when the person confirms it",
        ));
    }
    let (id, outcome) = path.into_inner();
    let c = state.pool.get().await?;
    let row = c
        .query_opt(
            "SELECT p.starts_on, p.agreed_by_person_at IS NOT NULL AND p.agreed_by_provider_at IS NOT NULL
                    AND p.agreed_by_council_at IS NOT NULL, o.achieved_on
               FROM outcome_plans p JOIN plan_outcomes o ON o.plan_id = p.id
              WHERE p.id = $1 AND o.id = $2 AND p.organisation_id = $3",
            &[&id, &outcome, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("outcome {outcome} of plan {id}")))?;
    if !row.get::<_, bool>(1) {
        return Err(ApiError::Conflict(
            "the plan is not yet agreed by the person, the provider and the council".into(),
        ));
    }
    if row.get::<_, Option<NaiveDate>>(2).is_some() {
        return Err(ApiError::Conflict(format!(
            "outcome {outcome} is already achieved"
        )));
    }
    if b.achieved_on < row.get::<_, NaiveDate>(0) {
        return Err(ApiError::invalid(
            "achieved_on",
            "must not be before the plan starts",
        ));
    }
    c.execute(
        "UPDATE plan_outcomes SET achieved_on = $2, confirmed_by = $3, confirmed_at = now() WHERE id = $1",
        &[&outcome, &b.achieved_on, &caller.user_id],
    )
    .await?;
    Ok(HttpResponse::Ok().json(plan_json(&**c, id).await?))
}
