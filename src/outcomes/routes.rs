//! The outcomes API: episodes and plans (providers record; the council agrees plans), populations
//! and contract terms (commissioners), reports and payment statements (both, tenant-filtered).

use actix_web::{get, post, put, web, HttpResponse};
use chrono::NaiveDate;
use serde::Deserialize;
use tokio_postgres::GenericClient;

use super::measures::Period;
use super::payment::{self, StatementInputs, Terms};
use super::report::{self, Scope};
use super::METHOD_VERSION;
use crate::auth::{Caller, Role};
use crate::http::{ApiError, AppState};

const STAFF: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff];
const READERS: &[Role] = &[
    Role::ProviderAdmin,
    Role::ProviderStaff,
    Role::Commissioner,
    Role::Auditor,
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(service_period)
        .service(hospital_stay)
        .service(discharge)
        .service(reablement_episode)
        .service(end_episode)
        .service(care_home_admission)
        .service(death)
        .service(recorded_fall)
        .service(person_episodes)
        .service(create_plan)
        .service(get_plan)
        .service(agree_plan)
        .service(achieve)
        .service(population)
        .service(put_terms)
        .service(get_terms)
        .service(report_endpoint)
        .service(statements)
        .service(stored_report);
}

async fn own_person(c: &impl GenericClient, caller: &Caller, id: i32) -> Result<(), ApiError> {
    let ok = c
        .query_opt(
            "SELECT 1 FROM people WHERE id = $1 AND organisation_id = $2",
            &[&id, &caller.organisation_id],
        )
        .await?
        .is_some();
    ok.then_some(())
        .ok_or_else(|| ApiError::invalid("person_id", "no such person in your organisation"))
}

async fn own_contract(
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

fn created(id: i64) -> HttpResponse {
    HttpResponse::Created().json(serde_json::json!({ "id": id }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicePeriodBody {
    person_id: i32,
    contract_id: Option<i32>,
    started_on: NaiveDate,
    ended_on: Option<NaiveDate>,
    history_from: Option<NaiveDate>,
}

#[post("/v1/outcomes/service-periods")]
async fn service_period(
    caller: Caller,
    state: web::Data<AppState>,
    b: web::Json<ServicePeriodBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    if b.ended_on.is_some_and(|e| e < b.started_on) {
        return Err(ApiError::invalid(
            "ended_on",
            "must not be before started_on",
        ));
    }
    if b.history_from.is_some_and(|h| h > b.started_on) {
        return Err(ApiError::invalid(
            "history_from",
            "must not be after started_on",
        ));
    }
    let c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    own_contract(&**c, &caller, b.contract_id).await?;
    let id: i64 = c
        .query_one(
            "INSERT INTO service_periods (organisation_id, person_id, contract_id, started_on, ended_on, history_from)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.contract_id, &b.started_on, &b.ended_on, &b.history_from],
        )
        .await?
        .get(0);
    Ok(created(id))
}

const DESTINATIONS: &[&str] = &["home", "home_with_reablement", "care_home", "died", "other"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StayBody {
    person_id: i32,
    admitted_on: NaiveDate,
    #[serde(default = "yes")]
    emergency: bool,
    discharged_on: Option<NaiveDate>,
    discharge_destination: Option<String>,
}

fn yes() -> bool {
    true
}

fn check_discharge(
    admitted: NaiveDate,
    on: Option<NaiveDate>,
    dest: &Option<String>,
) -> Result<(), ApiError> {
    if on.is_some_and(|d| d < admitted) {
        return Err(ApiError::invalid(
            "discharged_on",
            "must not be before admitted_on",
        ));
    }
    if on.is_some() != dest.is_some() {
        return Err(ApiError::invalid(
            "discharge_destination",
            "give discharged_on and discharge_destination together",
        ));
    }
    if let Some(d) = dest {
        if !DESTINATIONS.contains(&d.as_str()) {
            return Err(ApiError::invalid(
                "discharge_destination",
                DESTINATIONS.join(", "),
            ));
        }
    }
    Ok(())
}

#[post("/v1/outcomes/hospital-stays")]
async fn hospital_stay(
    caller: Caller,
    state: web::Data<AppState>,
    b: web::Json<StayBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    check_discharge(b.admitted_on, b.discharged_on, &b.discharge_destination)?;
    let c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    let id: i64 = c
        .query_one(
            "INSERT INTO hospital_stays (organisation_id, person_id, admitted_on, emergency, discharged_on, discharge_destination, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.admitted_on, &b.emergency, &b.discharged_on, &b.discharge_destination, &caller.user_id],
        )
        .await?
        .get(0);
    Ok(created(id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DischargeBody {
    discharged_on: NaiveDate,
    discharge_destination: String,
}

#[post("/v1/outcomes/hospital-stays/{id}/discharge")]
async fn discharge(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    b: web::Json<DischargeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    let id = path.into_inner();
    let c = state.pool.get().await?;
    let row = c
        .query_opt(
            "SELECT admitted_on, discharged_on FROM hospital_stays WHERE id = $1 AND organisation_id = $2",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("hospital stay {id}")))?;
    if row.get::<_, Option<NaiveDate>>(1).is_some() {
        return Err(ApiError::Conflict(format!(
            "hospital stay {id} is already discharged"
        )));
    }
    let dest = Some(b.discharge_destination.clone());
    check_discharge(row.get(0), Some(b.discharged_on), &dest)?;
    c.execute(
        "UPDATE hospital_stays SET discharged_on = $2, discharge_destination = $3 WHERE id = $1",
        &[&id, &b.discharged_on, &dest],
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id })))
}

const RESULTS: &[&str] = &[
    "no_further_support",
    "less_support",
    "same_support",
    "more_support",
    "residential_care",
    "nursing_care",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EpisodeBody {
    person_id: i32,
    contract_id: Option<i32>,
    hospital_stay_id: Option<i64>,
    #[serde(default = "yes")]
    aim_home: bool,
    started_on: NaiveDate,
}

#[post("/v1/outcomes/reablement-episodes")]
async fn reablement_episode(
    caller: Caller,
    state: web::Data<AppState>,
    b: web::Json<EpisodeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    let c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    own_contract(&**c, &caller, b.contract_id).await?;
    if let Some(stay) = b.hospital_stay_id {
        let ok = c
            .query_opt(
                "SELECT 1 FROM hospital_stays WHERE id = $1 AND person_id = $2 AND organisation_id = $3",
                &[&stay, &b.person_id, &caller.organisation_id],
            )
            .await?
            .is_some();
        if !ok {
            return Err(ApiError::invalid(
                "hospital_stay_id",
                "no such stay of this person",
            ));
        }
    }
    let id: i64 = c
        .query_one(
            "INSERT INTO reablement_episodes (organisation_id, person_id, contract_id, hospital_stay_id, aim_home, started_on, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.contract_id, &b.hospital_stay_id, &b.aim_home, &b.started_on, &caller.user_id],
        )
        .await?
        .get(0);
    Ok(created(id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    ended_on: NaiveDate,
    result: String,
}

#[post("/v1/outcomes/reablement-episodes/{id}/end")]
async fn end_episode(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    b: web::Json<EndBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    if !RESULTS.contains(&b.result.as_str()) {
        return Err(ApiError::invalid("result", RESULTS.join(", ")));
    }
    let id = path.into_inner();
    let c = state.pool.get().await?;
    let row = c
        .query_opt(
            "SELECT started_on, ended_on FROM reablement_episodes WHERE id = $1 AND organisation_id = $2",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("reablement episode {id}")))?;
    if row.get::<_, Option<NaiveDate>>(1).is_some() {
        return Err(ApiError::Conflict(format!(
            "episode {id} has already ended"
        )));
    }
    if b.ended_on < row.get::<_, NaiveDate>(0) {
        return Err(ApiError::invalid(
            "ended_on",
            "must not be before started_on",
        ));
    }
    c.execute(
        "UPDATE reablement_episodes SET ended_on = $2, result = $3 WHERE id = $1",
        &[&id, &b.ended_on, &b.result],
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CareHomeBody {
    person_id: i32,
    admitted_on: NaiveDate,
    setting: String,
    permanent: bool,
}

#[post("/v1/outcomes/care-home-admissions")]
async fn care_home_admission(
    caller: Caller,
    state: web::Data<AppState>,
    b: web::Json<CareHomeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    if !["residential", "nursing"].contains(&b.setting.as_str()) {
        return Err(ApiError::invalid("setting", "residential or nursing"));
    }
    let c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    let id: i64 = c
        .query_one(
            "INSERT INTO care_home_admissions (organisation_id, person_id, admitted_on, setting, permanent, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.admitted_on, &b.setting, &b.permanent, &caller.user_id],
        )
        .await?
        .get(0);
    Ok(created(id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeathBody {
    person_id: i32,
    died_on: NaiveDate,
}

#[post("/v1/outcomes/deaths")]
async fn death(
    caller: Caller,
    state: web::Data<AppState>,
    b: web::Json<DeathBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    let c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    let n = c
        .execute(
            "INSERT INTO deaths (person_id, organisation_id, died_on, recorded_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (person_id) DO NOTHING",
            &[&b.person_id, &caller.organisation_id, &b.died_on, &caller.user_id],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::Conflict(format!(
            "the death of person {} is already recorded",
            b.person_id
        )));
    }
    Ok(created(i64::from(b.person_id)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FallBody {
    person_id: i32,
    occurred_on: NaiveDate,
    source: String,
}

#[post("/v1/outcomes/recorded-falls")]
async fn recorded_fall(
    caller: Caller,
    state: web::Data<AppState>,
    b: web::Json<FallBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    if b.source.is_empty() || b.source.len() > 100 {
        return Err(ApiError::invalid(
            "source",
            "1 to 100 characters (GP, hospital, self-report ...)",
        ));
    }
    let c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    let id: i64 = c
        .query_one(
            "INSERT INTO recorded_falls (organisation_id, person_id, occurred_on, source, recorded_by)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.occurred_on, &b.source, &caller.user_id],
        )
        .await?
        .get(0);
    Ok(created(id))
}

/// A person's episodes (provider staff only: they carry dates of clinical events).
#[get("/v1/outcomes/people/{id}/episodes")]
async fn person_episodes(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    let id = path.into_inner();
    let c = state.pool.get().await?;
    own_person(&**c, &caller, id)
        .await
        .map_err(|_| ApiError::NotFound(format!("person {id}")))?;
    let q = |sql: &'static str| {
        let c = &c;
        async move {
            let rows = c.query(sql, &[&id]).await?;
            Ok::<_, ApiError>(
                rows.iter()
                    .map(|r| r.get::<_, serde_json::Value>(0))
                    .collect::<Vec<_>>(),
            )
        }
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "person_id": id,
        "service_periods": q("SELECT to_jsonb(x) - 'organisation_id' FROM service_periods x WHERE person_id = $1 ORDER BY started_on, id").await?,
        "hospital_stays": q("SELECT to_jsonb(x) - 'organisation_id' FROM hospital_stays x WHERE person_id = $1 ORDER BY admitted_on, id").await?,
        "reablement_episodes": q("SELECT to_jsonb(x) - 'organisation_id' FROM reablement_episodes x WHERE person_id = $1 ORDER BY started_on, id").await?,
        "care_home_admissions": q("SELECT to_jsonb(x) - 'organisation_id' FROM care_home_admissions x WHERE person_id = $1 ORDER BY admitted_on, id").await?,
        "deaths": q("SELECT to_jsonb(x) - 'organisation_id' FROM deaths x WHERE person_id = $1").await?,
        "recorded_falls": q("SELECT to_jsonb(x) - 'organisation_id' FROM recorded_falls x WHERE person_id = $1 ORDER BY occurred_on, id").await?,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    statement: String,
    kind: String,
    payable: bool,
    target_date: NaiveDate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    person_id: i32,
    contract_id: Option<i32>,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
    #[serde(default)]
    value_pence: i64,
    outcomes: Vec<OutcomeBody>,
}

#[post("/v1/outcome-plans")]
async fn create_plan(
    caller: Caller,
    state: web::Data<AppState>,
    b: web::Json<PlanBody>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgreeBody {
    /// `person` or `provider` (provider staff, recording the person's own agreement for the
    /// first), `council` (the commissioner).
    party: String,
}

#[post("/v1/outcome-plans/{id}/agree")]
async fn agree_plan(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    b: web::Json<AgreeBody>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AchieveBody {
    achieved_on: NaiveDate,
    /// The person's confirmation: an outcome is achieved only when they say so.
    confirmed_by_person: bool,
}

#[post("/v1/outcome-plans/{id}/outcomes/{outcome}/achieve")]
async fn achieve(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    b: web::Json<AchieveBody>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PopulationBody {
    population: i32,
}

/// The population of an age group (`18-64` or `65+`) in the commissioner's area.
#[put("/v1/outcomes/populations/{age_group}")]
async fn population(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    b: web::Json<PopulationBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let group = path.into_inner();
    if group != "18-64" && group != "65+" {
        return Err(ApiError::invalid("age_group", "18-64 or 65+"));
    }
    if b.population <= 0 {
        return Err(ApiError::invalid("population", "must be positive"));
    }
    let c = state.pool.get().await?;
    c.execute(
        "INSERT INTO commissioner_populations (commissioner_id, age_group, population) VALUES ($1, $2, $3)
         ON CONFLICT (commissioner_id, age_group) DO UPDATE SET population = EXCLUDED.population",
        &[&caller.organisation_id, &group, &b.population],
    )
    .await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "age_group": group, "population": b.population })))
}

#[put("/v1/contracts/{id}/terms")]
async fn put_terms(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let id = path.into_inner();
    let terms: Terms =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("terms", e.to_string()))?;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    scope: Option<String>,
    id: Option<i32>,
    provider_id: Option<i32>,
    from: NaiveDate,
    to: NaiveDate,
    as_of: Option<NaiveDate>,
    format: Option<String>,
}

fn period(q: &ReportQuery) -> Result<Period, ApiError> {
    crate::http::dates::check_date("from", Some(q.from))?;
    crate::http::dates::check_date("to", Some(q.to))?;
    crate::http::dates::check_date("as_of", q.as_of)?;
    if q.from >= q.to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    if q.to - q.from > chrono::Duration::days(3 * 366) {
        return Err(ApiError::invalid("to", "a period is at most three years"));
    }
    // Judged by default 91 days after the period (the longest look-ahead), but never later
    // than today: the date is recorded, so the figures stay reproducible.
    let today = chrono::Utc::now().date_naive();
    let as_of = q
        .as_of
        .unwrap_or_else(|| (q.to + chrono::Duration::days(91)).min(today).max(q.to));
    if as_of < q.to {
        return Err(ApiError::invalid("as_of", "must not be before `to`"));
    }
    Ok(Period {
        from: q.from,
        to: q.to,
        as_of,
    })
}

fn wants_csv(f: &Option<String>) -> Result<bool, ApiError> {
    match f.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        _ => Err(ApiError::invalid("format", "json or csv")),
    }
}

/// `what`: (kind, scope, scope id).
async fn store(
    c: &impl GenericClient,
    caller: &Caller,
    (kind, scope, scope_id): (&str, &str, Option<i32>),
    p: &Period,
    hash: &str,
    figures: &serde_json::Value,
) -> Result<i64, ApiError> {
    Ok(c.query_one(
        "INSERT INTO outcome_reports (organisation_id, kind, scope, scope_id, period_from, period_to, as_of, method_version, input_hash, figures, generated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        &[&caller.organisation_id, &kind, &scope, &scope_id, &p.from, &p.to, &p.as_of, &METHOD_VERSION, &hash, figures, &caller.user_id],
    )
    .await?
    .get(0))
}

/// Indicators for a person, a provider, a contract or a commissioner's population.
#[get("/v1/outcomes/report")]
async fn report_endpoint(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    state
        .settings
        .outcomes
        .check()
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!(e)))?;
    let scope = Scope::parse(
        q.scope.as_deref().unwrap_or("provider"),
        // A provider's own figures by default; a commissioner's organisation (auditors
        // included) must name the provider.
        q.id.or(q.provider_id)
            .or((caller.organisation_kind == crate::auth::OrgKind::Provider
                && q.scope.as_deref().unwrap_or("provider") == "provider")
                .then_some(caller.organisation_id)),
    )?;
    let p = period(&q)?;
    let csv = wants_csv(&q.format)?;
    let c = state.pool.get().await?;
    let settings = report::Settings {
        outcomes: &state.settings.outcomes,
        visits: &state.settings.evv,
        alarms: &state.settings.alarms,
    };
    let r = report::build(&**c, &caller, scope, p, settings).await?;
    let figures = serde_json::to_value(&r).map_err(|e| ApiError::Unexpected(e.into()))?;
    let id = store(
        &**c,
        &caller,
        ("indicators", scope.name(), scope.id()),
        &p,
        &r.inputs.hash,
        &figures,
    )
    .await?;
    if csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(("X-Report-Id", id.to_string()))
            .body(safe_csv(report::to_csv(&r)?.as_bytes())?));
    }
    let mut body = figures;
    body["report_id"] = id.into();
    Ok(HttpResponse::Ok().json(body))
}

/// Payment statements for one provider and period, one per contract the caller can see.
#[get("/v1/outcomes/statements")]
async fn statements(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let p = period(&q)?;
    let csv = wants_csv(&q.format)?;
    let s = &state.settings.outcomes;
    let provider = if caller.role == Role::Commissioner {
        q.provider_id
            .ok_or_else(|| ApiError::invalid("provider_id", "required for commissioners"))?
    } else {
        q.provider_id.unwrap_or(caller.organisation_id)
    };
    let c = state.pool.get().await?;
    let contracts = c
        .query(
            "SELECT id, reference, terms FROM contracts
              WHERE provider_id = $1 AND (commissioner_id = $2 OR provider_id = $2)
                AND starts_on < $3 AND (ends_on IS NULL OR ends_on >= $4)
              ORDER BY id",
            &[&provider, &caller.organisation_id, &p.to, &p.from],
        )
        .await?;
    if contracts.is_empty()
        && provider != caller.organisation_id
        && !crate::auth::commissions(&**c, caller.organisation_id, provider).await?
    {
        return Err(ApiError::NotFound(format!("provider {provider}")));
    }
    let mut out = Vec::new();
    let mut hasher = sha2::Sha256::new();
    use sha2::Digest;
    for row in contracts {
        let id: i32 = row.get(0);
        let reference: String = row.get(1);
        let terms: Terms = serde_json::from_value(row.get(2)).map_err(|e| {
            ApiError::Unexpected(anyhow::anyhow!(
                "contract {id} has terms this version cannot read: {e}"
            ))
        })?;
        let loaded = report::load_scope(&**c, &caller, Scope::Contract(id), &p, s).await?;
        let results: Vec<String> = c
            .query(
                "SELECT result FROM reablement_episodes WHERE contract_id = $1 AND ended_on >= $2 AND ended_on < $3
                   AND ended_on <= $4 ORDER BY id",
                &[&id, &p.from, &p.to, &p.as_of],
            )
            .await?
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect();
        let (_, fa, aa, _) = super::measures::falls_and_avoided(&loaded.inputs, &p, s);
        let inputs = StatementInputs {
            plans: &loaded.inputs.plans,
            episode_results: &results,
            falls_avoided: &fa,
            admissions_avoided: &aa,
        };
        let lines = payment::statement(&terms, &inputs, &p, s);
        let total: i64 = lines.iter().map(|l| l.amount_pence).sum();
        hasher.update(serde_json::to_vec(&(&loaded.inputs, &results, &terms)).unwrap_or_default());
        out.push(serde_json::json!({
            "contract_id": id, "reference": reference, "terms": terms,
            "lines": lines, "total_pence": total,
        }));
    }
    hasher.update(serde_json::to_vec(&(s, &p)).unwrap_or_default());
    let hash = hex::encode(hasher.finalize());
    let mut body = serde_json::json!({
        "method_version": METHOD_VERSION,
        "provider_id": provider,
        "period": p,
        "input_hash": hash,
        "currency": "GBP (pence)",
        "statements": out,
    });
    let id = store(
        &**c,
        &caller,
        ("statement", "provider", Some(provider)),
        &p,
        &hash,
        &body,
    )
    .await?;
    body["report_id"] = id.into();
    if csv {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut write = || -> Result<(), csv::Error> {
            w.write_record([
                "contract_id",
                "reference",
                "code",
                "description",
                "quantity",
                "amount_pence",
            ])?;
            for st in body["statements"].as_array().into_iter().flatten() {
                for l in st["lines"].as_array().into_iter().flatten() {
                    w.write_record([
                        st["contract_id"].to_string(),
                        st["reference"].as_str().unwrap_or_default().to_string(),
                        l["code"].as_str().unwrap_or_default().to_string(),
                        l["description"].as_str().unwrap_or_default().to_string(),
                        l["quantity"].to_string(),
                        l["amount_pence"].to_string(),
                    ])?;
                }
            }
            Ok(())
        };
        write().map_err(|e| ApiError::Unexpected(e.into()))?;
        let bytes = w
            .into_inner()
            .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(("X-Report-Id", id.to_string()))
            .insert_header(("X-Input-Hash", hash))
            .body(safe_csv(&bytes)?));
    }
    Ok(HttpResponse::Ok().json(body))
}

/// A stored report, as produced (for auditors reproducing a figure).
#[get("/v1/outcomes/reports/{id}")]
async fn stored_report(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let id = path.into_inner();
    let c = state.pool.get().await?;
    let row = c
        .query_opt(
            "SELECT jsonb_build_object('id', id, 'kind', kind, 'scope', scope, 'scope_id', scope_id,
                    'period_from', period_from, 'period_to', period_to, 'as_of', as_of,
                    'method_version', method_version, 'input_hash', input_hash,
                    'generated_at', generated_at, 'figures', figures)
               FROM outcome_reports WHERE id = $1 AND organisation_id = $2",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("report {id}")))?;
    Ok(HttpResponse::Ok().json(row.get::<_, serde_json::Value>(0)))
}

/// The CSV with formula-like cells made text (see `http::csv_safe`).
fn safe_csv(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    crate::http::csv_safe::defuse(bytes).map_err(|e| ApiError::Unexpected(e.into()))
}
