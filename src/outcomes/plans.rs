//! "I can" outcome plans: providers write them with the person, the person, the provider and the
//! council agree them (each agreement records who and when), and an outcome is achieved only
//! when the person confirms it through their own channel: provider staff or the council issue a
//! one-time link or code ([`super::confirm`]), the person answers it, and the achievement is
//! dated by that answer. The council then verifies it; only verified achievements are
//! payable. Owns `outcome_plans`, `plan_outcomes` and `plan_outcome_verifications`.
//!
//! `plan_outcomes.achieved_on` (a date provider staff typed, with a box they ticked for the
//! person, before migration 0013) is no longer read or written: such achievements are not
//! payable.

use actix_web::{get, post, web, HttpResponse};
use chrono::NaiveDate;
use serde::Deserialize;
use tokio_postgres::GenericClient;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::contracts::own_contract;
use super::episodes::RECORDERS;
use super::routes::{own_person, READERS, STAFF};
use crate::auth::{Caller, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_plan)
        .service(get_plan)
        .service(agree_plan)
        .service(issue_confirmation_link)
        .service(verify_outcome);
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
    let mut c = state.db(&caller).await?;
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
    let plan = plan_json(&*tx, id).await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "plan.create",
            "plan",
            id,
            serde_json::json!({"after": &plan}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(plan))
}

/// The plan `id` as `GET /v1/outcome-plans/{id}` shows it; the caller has checked that it may
/// see it.
pub async fn plan_json(c: &impl GenericClient, id: i64) -> Result<serde_json::Value, ApiError> {
    let row = c
        .query_one(
            "SELECT jsonb_build_object(
               'id', p.id, 'person_pseudonym', pe.pseudonym, 'contract_id', p.contract_id,
               'starts_on', p.starts_on, 'ends_on', p.ends_on, 'value_pence', p.value_pence,
               'agreed_by_person_at', p.agreed_by_person_at, 'agreed_by_provider_at', p.agreed_by_provider_at,
               'agreed_by_council_at', p.agreed_by_council_at,
               'agreed', p.agreed_by_person_at IS NOT NULL AND p.agreed_by_provider_at IS NOT NULL AND p.agreed_by_council_at IS NOT NULL,
               'agreements', jsonb_build_object(
                   'person', jsonb_build_object('at', p.agreed_by_person_at, 'user_id', p.agreed_by_person_user,
                                                'organisation_id', p.agreed_by_person_organisation),
                   'provider', jsonb_build_object('at', p.agreed_by_provider_at, 'user_id', p.agreed_by_provider_user,
                                                  'organisation_id', p.agreed_by_provider_organisation),
                   'council', jsonb_build_object('at', p.agreed_by_council_at, 'user_id', p.agreed_by_council_user,
                                                 'organisation_id', p.agreed_by_council_organisation)),
               'outcomes', coalesce((SELECT jsonb_agg(jsonb_build_object('id', o.id, 'statement', o.statement,
                   'kind', o.kind, 'payable', o.payable, 'target_date', o.target_date,
                   'achieved_on', (y.confirmed_at AT TIME ZONE 'UTC')::date, 'confirmed_at', y.confirmed_at,
                   'confirmations', coalesce((SELECT jsonb_agg(jsonb_build_object('answer', k.answer,
                         'feedback', k.feedback, 'at', k.confirmed_at) ORDER BY k.confirmed_at, k.id)
                       FROM plan_outcome_confirmations k WHERE k.outcome_id = o.id), '[]'::jsonb),
                   'verification', (SELECT jsonb_build_object('verdict', v.verdict, 'note', v.note,
                         'verified_at', v.verified_at, 'verified_by_organisation', v.verified_by_organisation)
                       FROM plan_outcome_verifications v WHERE v.outcome_id = o.id
                       ORDER BY v.verified_at DESC, v.id DESC LIMIT 1),
                   'verified', coalesce((SELECT v.verdict = 'verified' FROM plan_outcome_verifications v
                       WHERE v.outcome_id = o.id ORDER BY v.verified_at DESC, v.id DESC LIMIT 1), false)
                   ) ORDER BY o.id)
                 FROM plan_outcomes o
                 LEFT JOIN LATERAL (SELECT k.confirmed_at FROM plan_outcome_confirmations k
                                     WHERE k.outcome_id = o.id AND k.answer = 'yes'
                                     ORDER BY k.confirmed_at, k.id LIMIT 1) y ON true
                WHERE o.plan_id = p.id), '[]'::jsonb))
             FROM outcome_plans p JOIN people pe ON pe.id = p.person_id WHERE p.id = $1",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

/// The plans of the caller's own person `person`, oldest first, each as
/// `GET /v1/outcome-plans/{id}` shows it (for the person's page).
pub async fn person_plans(
    c: &impl GenericClient,
    caller: &Caller,
    person: i32,
) -> Result<Vec<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    let ids = c
        .query(
            "SELECT id FROM outcome_plans WHERE person_id = $1 AND organisation_id = $2
              ORDER BY starts_on, id",
            &[&person, &caller.organisation_id],
        )
        .await?;
    let mut plans = Vec::with_capacity(ids.len());
    for row in ids {
        plans.push(plan_json(c, row.get(0)).await?);
    }
    Ok(plans)
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
            `starts_on`, `ends_on`, `value_pence`, the three `agreed_by_*_at`, `agreed`, \
            `agreements` (per party: `at`, `user_id`, `organisation_id`), and `outcomes`, each \
            with `achieved_on` (the UTC date of the person's first \"yes\", else null), \
            `confirmed_at`, `confirmations` (every answer with its feedback), `verification` \
            (the council's newest verdict) and `verified`.", body = Object),
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
    let c = state.db(&caller).await?;
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
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let plan = agree(&*tx, &caller, path.into_inner(), &b.party).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(plan))
}

/// Records `party`'s agreement to plan `id` (`person` or `provider`: provider staff;
/// `council`: the commissioner of its contract), audited; the plan as
/// `GET /v1/outcome-plans/{id}` shows it. Run it in a transaction.
pub async fn agree(
    tx: &impl GenericClient,
    caller: &Caller,
    id: i64,
    party: &str,
) -> Result<serde_json::Value, ApiError> {
    let column = match party {
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
    visible_plan(tx, caller, id).await?;
    // Who, beside when: set once, with the first agreement of that party.
    let who = column.trim_end_matches("_at");
    let sql = format!(
        "UPDATE outcome_plans p SET {column} = coalesce({column}, now()),
                {who}_user = CASE WHEN {column} IS NULL THEN $3 ELSE {who}_user END,
                {who}_organisation = CASE WHEN {column} IS NULL THEN $2 ELSE {who}_organisation END
          WHERE p.id = $1 AND (p.organisation_id = $2 OR EXISTS
                (SELECT 1 FROM contracts c WHERE c.id = p.contract_id AND c.commissioner_id = $2))"
    );
    let changed = tx
        .execute(&sql, &[&id, &caller.organisation_id, &caller.user_id])
        .await?;
    let org: i32 = tx
        .query_one(
            "SELECT organisation_id FROM outcome_plans WHERE id = $1",
            &[&id],
        )
        .await?
        .get(0);
    crate::audit::by(
        tx,
        caller,
        crate::audit::Entry::new(
            org,
            "plan.agree",
            "plan",
            id,
            serde_json::json!({"party": who, "changed": changed > 0}),
        ),
    )
    .await?;
    plan_json(tx, id).await
}

/// A new confirmation link.
#[derive(Debug, serde::Serialize, ToSchema)]
struct LinkIssued {
    /// The path of the person's page (`/confirm/{token}`): give it to the person or their
    /// family with this server's address in front. Shown once: only its hash is stored.
    path: String,
    /// The token in the path, for the JSON equivalent (`/v1/confirmations/{token}`).
    token: String,
    /// The same link as a short code to type at `/confirm` (spoken on the phone, written on a
    /// card): ten letters and digits, shown in two groups of five.
    code: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// Issues a one-time link (and short code) for the person or their family to confirm one
/// outcome of an agreed plan in their own words: provider staff of the plan or the
/// commissioner of its contract. The link expires after `outcomes.confirmation_link_days` (14)
/// days and is used by the first answer; an outcome the person has confirmed needs no more
/// links.
#[utoipa::path(
    operation_id = "issue_confirmation_link",
    tag = "outcomes",
    params(
        ("id" = i64, Path, description = "The plan's id."),
        ("outcome" = i64, Path, description = "The outcome's id."),
    ),
    responses(
        (status = 201, description = "The link, shown this once.", body = LinkIssued),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
    ),
)]
#[post("/v1/outcome-plans/{id}/outcomes/{outcome}/confirmation-links")]
async fn issue_confirmation_link(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(RECORDERS)?;
    let (id, outcome) = path.into_inner();
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    visible_plan(&*tx, &caller, id).await?;
    let row = tx
        .query_opt(
            "SELECT p.agreed_by_person_at IS NOT NULL AND p.agreed_by_provider_at IS NOT NULL
                    AND p.agreed_by_council_at IS NOT NULL,
                    EXISTS (SELECT 1 FROM plan_outcome_confirmations k WHERE k.outcome_id = o.id AND k.answer = 'yes')
               FROM outcome_plans p JOIN plan_outcomes o ON o.plan_id = p.id
              WHERE p.id = $1 AND o.id = $2",
            &[&id, &outcome],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("outcome {outcome} of plan {id}")))?;
    if !row.get::<_, bool>(0) {
        return Err(ApiError::Conflict(
            "the plan is not yet agreed by the person, the provider and the council".into(),
        ));
    }
    if row.get::<_, bool>(1) {
        return Err(ApiError::Conflict(format!(
            "the person has already confirmed outcome {outcome}"
        )));
    }
    let days = state.settings.outcomes.confirmation_link_days;
    let link = super::confirm::issue(&*tx, &caller, id, outcome, days).await?;
    let org: i32 = tx
        .query_one(
            "SELECT organisation_id FROM outcome_plans WHERE id = $1",
            &[&id],
        )
        .await?
        .get(0);
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org,
            "plan.confirmation_link",
            "plan",
            id,
            serde_json::json!({"outcome_id": outcome, "expires_at": link.expires_at}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(LinkIssued {
        path: format!("/confirm/{}", link.token),
        token: link.token,
        code: link.code,
        expires_at: link.expires_at,
    }))
}

/// The council's verdict on a confirmed achievement.
#[derive(ToSchema)]
#[allow(dead_code)]
enum PlanVerdict {
    #[schema(rename = "verified")]
    Verified,
    #[schema(rename = "rejected")]
    Rejected,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyOutcomeBody {
    #[schema(value_type = PlanVerdict)]
    verdict: String,
    /// 1 to 1000 characters: what was checked.
    #[schema(min_length = 1, max_length = 1000)]
    note: Option<String>,
}

/// The commissioner of the plan's contract verifies (or rejects) an achievement the person
/// confirmed, after the fact. Only a verified achievement is payable; a later verdict replaces
/// an earlier one from when it is recorded.
#[utoipa::path(
    operation_id = "verify_plan_outcome",
    tag = "outcomes",
    params(
        ("id" = i64, Path, description = "The plan's id."),
        ("outcome" = i64, Path, description = "The outcome's id."),
    ),
    request_body = VerifyOutcomeBody,
    responses(
        (status = 201, description = "The plan, as `GET /v1/outcome-plans/{id}` shows it.",
            body = Object),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcome-plans/{id}/outcomes/{outcome}/verify")]
async fn verify_outcome(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    b: crate::http::Json<VerifyOutcomeBody>,
) -> Result<HttpResponse, ApiError> {
    let (id, outcome) = path.into_inner();
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let plan = verify(&*tx, &caller, (id, outcome), &b.verdict, b.note.as_deref()).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(plan))
}

/// Records the council's `verdict` (`verified` or `rejected`, with an optional `note`) on
/// outcome `outcome` of plan `id`, which the person must have confirmed: the commissioner of
/// the plan's contract only, audited; the plan as `GET /v1/outcome-plans/{id}` shows it. Run
/// it in a transaction.
pub async fn verify(
    tx: &impl GenericClient,
    caller: &Caller,
    (id, outcome): (i64, i64),
    verdict: &str,
    note: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    caller.require(&[Role::Commissioner])?;
    if !["verified", "rejected"].contains(&verdict) {
        return Err(ApiError::invalid("verdict", "verified or rejected"));
    }
    if note.is_some_and(|n| n.trim().is_empty() || n.chars().count() > 1000) {
        return Err(ApiError::invalid("note", "1 to 1000 characters"));
    }
    let confirmation: Option<i64> = tx
        .query_opt(
            "SELECT (SELECT k.id FROM plan_outcome_confirmations k WHERE k.outcome_id = o.id AND k.answer = 'yes'
                      ORDER BY k.confirmed_at, k.id LIMIT 1)
               FROM outcome_plans p JOIN plan_outcomes o ON o.plan_id = p.id
               JOIN contracts ct ON ct.id = p.contract_id
              WHERE p.id = $1 AND o.id = $2 AND ct.commissioner_id = $3",
            &[&id, &outcome, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("outcome {outcome} of plan {id}")))?
        .get(0);
    let Some(confirmation) = confirmation else {
        return Err(ApiError::Conflict(format!(
            "the person has not confirmed outcome {outcome}: nothing to verify yet"
        )));
    };
    tx.execute(
        "INSERT INTO plan_outcome_verifications (outcome_id, confirmation_id, verdict, note, verified_by,
                                                 verified_by_organisation)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&outcome, &confirmation, &verdict, &note, &caller.user_id, &caller.organisation_id],
    )
    .await?;
    let org: i32 = tx
        .query_one(
            "SELECT organisation_id FROM outcome_plans WHERE id = $1",
            &[&id],
        )
        .await?
        .get(0);
    crate::audit::by(
        tx,
        caller,
        crate::audit::Entry::new(
            org,
            "plan.verify",
            "plan",
            id,
            serde_json::json!({"outcome_id": outcome, "confirmation_id": confirmation,
                               "verdict": verdict, "note": note}),
        ),
    )
    .await?;
    plan_json(tx, id).await
}
