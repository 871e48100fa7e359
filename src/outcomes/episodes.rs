//! What providers record of a person's care and its events: service periods, hospital stays and
//! their discharge, reablement episodes and how they ended, care-home admissions, deaths and
//! falls known from records. Owns those tables; the indicators read them.

use actix_web::{get, post, web, HttpResponse};
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::contracts::own_contract;
use super::routes::{created, own_person, Created, STAFF};
use super::{DischargeDestination, FollowUp, ReablementResult};
use crate::auth::Caller;
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(service_period)
        .service(hospital_stay)
        .service(discharge)
        .service(reablement_episode)
        .service(end_episode)
        .service(follow_up)
        .service(care_home_admission)
        .service(care_home_discharge)
        .service(death)
        .service(recorded_fall)
        .service(person_episodes);
}

/// A period in which the provider serves a person, under a contract if given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ServicePeriodBody {
    /// A person of the organisation.
    person_id: i32,
    /// A contract of the organisation.
    contract_id: Option<i32>,
    started_on: NaiveDate,
    /// Not before `started_on`.
    ended_on: Option<NaiveDate>,
    /// Since when the provider's records of the person are complete; not after `started_on`.
    history_from: Option<NaiveDate>,
}

/// Records a service period.
#[utoipa::path(
    operation_id = "create_service_period",
    tag = "outcomes",
    request_body = ServicePeriodBody,
    responses(
        (status = 201, description = "Recorded.", body = Created),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/service-periods")]
async fn service_period(
    caller: Caller,
    state: web::Data<AppState>,
    b: crate::http::Json<ServicePeriodBody>,
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
            "INSERT INTO service_periods (organisation_id, person_id, contract_id, started_on, ended_on, history_from, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.contract_id, &b.started_on, &b.ended_on, &b.history_from, &caller.user_id],
        )
        .await?
        .get(0);
    Ok(created(id))
}

/// A stay in hospital; `discharged_on` and `discharge_destination` come together, the
/// discharge not before the admission.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StayBody {
    /// A person of the organisation.
    person_id: i32,
    admitted_on: NaiveDate,
    /// Default `true`.
    #[serde(default = "yes")]
    emergency: bool,
    discharged_on: Option<NaiveDate>,
    #[schema(value_type = Option<DischargeDestination>)]
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
        if DischargeDestination::parse(d).is_none() {
            return Err(ApiError::invalid(
                "discharge_destination",
                DischargeDestination::texts(),
            ));
        }
    }
    Ok(())
}

/// Records a hospital stay.
#[utoipa::path(
    operation_id = "create_hospital_stay",
    tag = "outcomes",
    request_body = StayBody,
    responses(
        (status = 201, description = "Recorded.", body = Created,
            links(("discharge" = (operation_id = "discharge_hospital_stay",
                parameters(("id" = "$response.body#/id")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/hospital-stays")]
async fn hospital_stay(
    caller: Caller,
    state: web::Data<AppState>,
    b: crate::http::Json<StayBody>,
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

/// The end of a stay: not before its admission.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DischargeBody {
    discharged_on: NaiveDate,
    #[schema(value_type = DischargeDestination)]
    discharge_destination: String,
}

/// Records the discharge of a stay not yet discharged.
#[utoipa::path(
    operation_id = "discharge_hospital_stay",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The stay's id.")),
    request_body = DischargeBody,
    responses(
        (status = 200, description = "Recorded.", body = Created),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/hospital-stays/{id}/discharge")]
async fn discharge(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    b: crate::http::Json<DischargeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    let id = path.into_inner();
    let c = state.pool.get().await?;
    let row = current_version(
        &**c,
        "hospital_stays",
        "admitted_on, discharged_on",
        id,
        &caller,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("hospital stay {id}")))?;
    if row.get::<_, Option<NaiveDate>>(2).is_some() {
        return Err(ApiError::Conflict(format!(
            "hospital stay {id} is already discharged"
        )));
    }
    let dest = Some(b.discharge_destination.clone());
    check_discharge(row.get(1), Some(b.discharged_on), &dest)?;
    // A new version of the stay; the one it replaces stays as it was known.
    c.execute(
        "INSERT INTO hospital_stays (organisation_id, person_id, admitted_on, emergency, discharged_on,
                                     discharge_destination, recorded_by, corrects, reason)
         SELECT organisation_id, person_id, admitted_on, emergency, $2, $3, $4, id, 'discharged'
           FROM hospital_stays WHERE id = $1",
        &[&row.get::<_, i64>(0), &b.discharged_on, &dest, &caller.user_id],
    )
    .await?;
    Ok(HttpResponse::Ok().json(Created { id }))
}

/// The newest version of record `record` of a versioned table (migration 0010) in the caller's
/// organisation: its id, then `columns`. `None` when there is none or it was withdrawn.
async fn current_version(
    c: &impl tokio_postgres::GenericClient,
    table: &'static str,
    columns: &'static str,
    record: i64,
    caller: &Caller,
) -> Result<Option<tokio_postgres::Row>, ApiError> {
    let row = c
        .query_opt(
            &format!(
                "SELECT id, {columns}, withdrawn FROM {table}
                  WHERE record_id = $1 AND organisation_id = $2 ORDER BY id DESC LIMIT 1"
            ),
            &[&record, &caller.organisation_id],
        )
        .await?;
    Ok(row.filter(|r| !r.get::<_, bool>("withdrawn")))
}

/// A reablement episode, after a hospital stay of the same person if given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EpisodeBody {
    /// A person of the organisation.
    person_id: i32,
    /// A contract of the organisation.
    contract_id: Option<i32>,
    /// A stay of this person.
    hospital_stay_id: Option<i64>,
    /// Whether the aim is to stay at home (default `true`).
    #[serde(default = "yes")]
    aim_home: bool,
    /// Whether the person was already in long-term support when the episode began (default
    /// `false`): ASCOF 2A counts new clients only.
    #[serde(default)]
    existing_client: bool,
    started_on: NaiveDate,
}

/// Records the start of a reablement episode.
#[utoipa::path(
    operation_id = "create_reablement_episode",
    tag = "outcomes",
    request_body = EpisodeBody,
    responses(
        (status = 201, description = "Recorded.", body = Created,
            links(("end" = (operation_id = "end_reablement_episode",
                parameters(("id" = "$response.body#/id")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/reablement-episodes")]
async fn reablement_episode(
    caller: Caller,
    state: web::Data<AppState>,
    b: crate::http::Json<EpisodeBody>,
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
            "INSERT INTO reablement_episodes (organisation_id, person_id, contract_id, hospital_stay_id, aim_home, started_on, recorded_by, existing_client)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.contract_id, &b.hospital_stay_id, &b.aim_home, &b.started_on, &caller.user_id, &b.existing_client],
        )
        .await?
        .get(0);
    Ok(created(id))
}

/// The end of an episode: not before its start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EndBody {
    ended_on: NaiveDate,
    #[schema(value_type = ReablementResult)]
    result: String,
}

/// Records how an episode not yet ended ended.
#[utoipa::path(
    operation_id = "end_reablement_episode",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The episode's id.")),
    request_body = EndBody,
    responses(
        (status = 200, description = "Recorded.", body = Created),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/reablement-episodes/{id}/end")]
async fn end_episode(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    b: crate::http::Json<EndBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    if ReablementResult::parse(&b.result).is_none() {
        return Err(ApiError::invalid("result", ReablementResult::texts()));
    }
    let id = path.into_inner();
    let c = state.pool.get().await?;
    let row = current_version(
        &**c,
        "reablement_episodes",
        "started_on, ended_on",
        id,
        &caller,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("reablement episode {id}")))?;
    if row.get::<_, Option<NaiveDate>>(2).is_some() {
        return Err(ApiError::Conflict(format!(
            "episode {id} has already ended"
        )));
    }
    if b.ended_on < row.get::<_, NaiveDate>(1) {
        return Err(ApiError::invalid(
            "ended_on",
            "must not be before started_on",
        ));
    }
    c.execute(
        "INSERT INTO reablement_episodes (organisation_id, person_id, contract_id, hospital_stay_id, aim_home,
                                          started_on, ended_on, result, recorded_by, corrects, reason,
                                          existing_client, follow_up_on, follow_up)
         SELECT organisation_id, person_id, contract_id, hospital_stay_id, aim_home, started_on, $2, $3, $4,
                id, 'ended', existing_client, follow_up_on, follow_up
           FROM reablement_episodes WHERE id = $1",
        &[&row.get::<_, i64>(0), &b.ended_on, &b.result, &caller.user_id],
    )
    .await?;
    Ok(HttpResponse::Ok().json(Created { id }))
}

/// What a follow-up found, and when.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FollowUpBody {
    /// The day the person's status was checked: not before the episode's start. The 91-day
    /// measure (ASCOF 2D) reads a follow-up dated on or after day 91 after discharge,
    /// independence regained one on or after day 91 after the episode's end.
    follow_up_on: NaiveDate,
    #[schema(value_type = FollowUp)]
    follow_up: String,
}

/// Records what a follow-up of an episode found (a new version; a later follow-up replaces an
/// earlier one).
#[utoipa::path(
    operation_id = "follow_up_reablement_episode",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The episode's id.")),
    request_body = FollowUpBody,
    responses(
        (status = 200, description = "Recorded.", body = Created),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/reablement-episodes/{id}/follow-up")]
async fn follow_up(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    b: crate::http::Json<FollowUpBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    if FollowUp::parse(&b.follow_up).is_none() {
        return Err(ApiError::invalid("follow_up", FollowUp::texts()));
    }
    let id = path.into_inner();
    let c = state.pool.get().await?;
    let row = current_version(&**c, "reablement_episodes", "started_on", id, &caller)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("reablement episode {id}")))?;
    if b.follow_up_on < row.get::<_, NaiveDate>(1) {
        return Err(ApiError::invalid(
            "follow_up_on",
            "must not be before the episode's started_on",
        ));
    }
    c.execute(
        "INSERT INTO reablement_episodes (organisation_id, person_id, contract_id, hospital_stay_id, aim_home,
                                          started_on, ended_on, result, recorded_by, corrects, reason,
                                          existing_client, follow_up_on, follow_up)
         SELECT organisation_id, person_id, contract_id, hospital_stay_id, aim_home, started_on, ended_on,
                result, $2, id, 'followed up', existing_client, $3, $4
           FROM reablement_episodes WHERE id = $1",
        &[&row.get::<_, i64>(0), &caller.user_id, &b.follow_up_on, &b.follow_up],
    )
    .await?;
    Ok(HttpResponse::Ok().json(Created { id }))
}

/// A care home's setting.
#[derive(ToSchema)]
#[allow(dead_code)]
enum Setting {
    #[schema(rename = "residential")]
    Residential,
    #[schema(rename = "nursing")]
    Nursing,
}

/// An admission to a care home.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CareHomeBody {
    /// A person of the organisation.
    person_id: i32,
    admitted_on: NaiveDate,
    #[schema(value_type = Setting)]
    setting: String,
    /// Permanent (the home becomes the person's residence) or not (respite, a trial).
    permanent: bool,
    /// The day the person left: not before `admitted_on`; with `returned_home`.
    discharged_on: Option<NaiveDate>,
    /// Whether the person went home when they left; with `discharged_on`.
    returned_home: Option<bool>,
}

fn check_care_home_discharge(
    admitted: NaiveDate,
    on: Option<NaiveDate>,
    home: Option<bool>,
) -> Result<(), ApiError> {
    if on.is_some_and(|d| d < admitted) {
        return Err(ApiError::invalid(
            "discharged_on",
            "must not be before admitted_on",
        ));
    }
    if on.is_some() != home.is_some() {
        return Err(ApiError::invalid(
            "returned_home",
            "give discharged_on and returned_home together",
        ));
    }
    Ok(())
}

/// Records an admission to a care home.
#[utoipa::path(
    operation_id = "create_care_home_admission",
    tag = "outcomes",
    request_body = CareHomeBody,
    responses(
        (status = 201, description = "Recorded.", body = Created),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/care-home-admissions")]
async fn care_home_admission(
    caller: Caller,
    state: web::Data<AppState>,
    b: crate::http::Json<CareHomeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    if !["residential", "nursing"].contains(&b.setting.as_str()) {
        return Err(ApiError::invalid("setting", "residential or nursing"));
    }
    check_care_home_discharge(b.admitted_on, b.discharged_on, b.returned_home)?;
    let c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    let id: i64 = c
        .query_one(
            "INSERT INTO care_home_admissions (organisation_id, person_id, admitted_on, setting, permanent, recorded_by,
                                               discharged_on, returned_home)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[&caller.organisation_id, &b.person_id, &b.admitted_on, &b.setting, &b.permanent, &caller.user_id,
              &b.discharged_on, &b.returned_home],
        )
        .await?
        .get(0);
    Ok(created(id))
}

/// The end of a care-home stay: not before its admission.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CareHomeDischargeBody {
    discharged_on: NaiveDate,
    /// Whether the person went home. A non-permanent stay the person returned home from does
    /// not count against the 91-day measure.
    returned_home: bool,
}

/// Records that a person left a care home (a new version of the admission).
#[utoipa::path(
    operation_id = "discharge_care_home_admission",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The admission's id.")),
    request_body = CareHomeDischargeBody,
    responses(
        (status = 200, description = "Recorded.", body = Created),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/care-home-admissions/{id}/discharge")]
async fn care_home_discharge(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    b: crate::http::Json<CareHomeDischargeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    let id = path.into_inner();
    let c = state.pool.get().await?;
    let row = current_version(
        &**c,
        "care_home_admissions",
        "admitted_on, discharged_on",
        id,
        &caller,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("care-home admission {id}")))?;
    if row.get::<_, Option<NaiveDate>>(2).is_some() {
        return Err(ApiError::Conflict(format!(
            "care-home admission {id} has already ended"
        )));
    }
    check_care_home_discharge(row.get(1), Some(b.discharged_on), Some(b.returned_home))?;
    c.execute(
        "INSERT INTO care_home_admissions (organisation_id, person_id, admitted_on, setting, permanent,
                                           recorded_by, discharged_on, returned_home, corrects, reason)
         SELECT organisation_id, person_id, admitted_on, setting, permanent, $2, $3, $4, id, 'discharged'
           FROM care_home_admissions WHERE id = $1",
        &[&row.get::<_, i64>(0), &caller.user_id, &b.discharged_on, &b.returned_home],
    )
    .await?;
    Ok(HttpResponse::Ok().json(Created { id }))
}

/// A death.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeathBody {
    /// A person of the organisation.
    person_id: i32,
    died_on: NaiveDate,
}

/// Records a person's death (once: `id` is the person's).
#[utoipa::path(
    operation_id = "create_death",
    tag = "outcomes",
    request_body = DeathBody,
    responses(
        (status = 201, description = "Recorded.", body = Created),
        doc::Forbidden,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/deaths")]
async fn death(
    caller: Caller,
    state: web::Data<AppState>,
    b: crate::http::Json<DeathBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    let c = state.pool.get().await?;
    own_person(&**c, &caller, b.person_id).await?;
    let n = c
        .execute(
            "INSERT INTO deaths (person_id, organisation_id, died_on, recorded_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (person_id) WHERE corrects IS NULL DO NOTHING",
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

/// A fall known from records.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FallBody {
    /// A person of the organisation.
    person_id: i32,
    occurred_on: NaiveDate,
    /// Where it is known from: GP, hospital, self-report ...
    #[schema(min_length = 1, max_length = 100)]
    source: String,
}

/// Records a fall known from records.
#[utoipa::path(
    operation_id = "create_recorded_fall",
    tag = "outcomes",
    request_body = FallBody,
    responses(
        (status = 201, description = "Recorded.", body = Created),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/recorded-falls")]
async fn recorded_fall(
    caller: Caller,
    state: web::Data<AppState>,
    b: crate::http::Json<FallBody>,
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
#[utoipa::path(
    operation_id = "get_person_episodes",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The person's id.")),
    responses(
        (status = 200, description = "`person_id` and, each oldest first, its \
            `service_periods`, `hospital_stays`, `reablement_episodes`, \
            `care_home_admissions`, `deaths` and `recorded_falls` as stored.", body = Object),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
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
        "service_periods": q("SELECT to_jsonb(x) - 'organisation_id' FROM service_periods x WHERE person_id = $1 AND NOT withdrawn AND NOT EXISTS (SELECT 1 FROM service_periods n WHERE n.corrects = x.id) ORDER BY started_on, id").await?,
        "hospital_stays": q("SELECT to_jsonb(x) - 'organisation_id' FROM hospital_stays x WHERE person_id = $1 AND NOT withdrawn AND NOT EXISTS (SELECT 1 FROM hospital_stays n WHERE n.corrects = x.id) ORDER BY admitted_on, id").await?,
        "reablement_episodes": q("SELECT to_jsonb(x) - 'organisation_id' FROM reablement_episodes x WHERE person_id = $1 AND NOT withdrawn AND NOT EXISTS (SELECT 1 FROM reablement_episodes n WHERE n.corrects = x.id) ORDER BY started_on, id").await?,
        "care_home_admissions": q("SELECT to_jsonb(x) - 'organisation_id' FROM care_home_admissions x WHERE person_id = $1 AND NOT withdrawn AND NOT EXISTS (SELECT 1 FROM care_home_admissions n WHERE n.corrects = x.id) ORDER BY admitted_on, id").await?,
        "deaths": q("SELECT to_jsonb(x) - 'organisation_id' FROM deaths x WHERE person_id = $1 AND NOT withdrawn AND NOT EXISTS (SELECT 1 FROM deaths n WHERE n.corrects = x.id)").await?,
        "recorded_falls": q("SELECT to_jsonb(x) - 'organisation_id' FROM recorded_falls x WHERE person_id = $1 AND NOT withdrawn AND NOT EXISTS (SELECT 1 FROM recorded_falls n WHERE n.corrects = x.id) ORDER BY occurred_on, id").await?,
    })))
}
