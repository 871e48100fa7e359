//! What is recorded of a person's care and its events: service periods, hospital stays and
//! their discharge, reablement episodes and how they ended, care-home admissions, deaths and
//! falls known from records. Owns those tables; the indicators read them.
//!
//! Every record is versioned and append-only (migrations 0010, 0013): a discharge, an
//! episode's end, a correction or a withdrawal is a new version naming the one it replaces,
//! validated exactly as the record's creation is. Each version says who wrote it (`recorder`:
//! the provider or the commissioner, and `recorded_by`), because the provider is the party
//! paid on these records: the commissioner funding the person may record hospital stays,
//! deaths, care-home admissions and episode results itself, and verify or dispute any version
//! (`outcome_record_verifications`).

use actix_web::{get, post, web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::contracts::own_contract;
use super::routes::{created, own_person, Created, STAFF};
use super::{DischargeDestination, FollowUp, ReablementResult};
use crate::auth::{Caller, Role};
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
        .service(correct)
        .service(withdraw)
        .service(verify)
        .service(person_episodes);
}

/// Provider staff, and the commissioner funding the person: who may record hospital stays,
/// deaths, care-home admissions and episode results.
pub(super) const RECORDERS: &[Role] =
    &[Role::ProviderAdmin, Role::ProviderStaff, Role::Commissioner];

/// The six kinds of outcome record, named in paths as in their creation route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    ServicePeriods,
    HospitalStays,
    ReablementEpisodes,
    CareHomeAdmissions,
    Deaths,
    RecordedFalls,
}

impl Source {
    const ALL: [Source; 6] = [
        Source::ServicePeriods,
        Source::HospitalStays,
        Source::ReablementEpisodes,
        Source::CareHomeAdmissions,
        Source::Deaths,
        Source::RecordedFalls,
    ];

    fn parse(segment: &str) -> Result<Self, ApiError> {
        Self::ALL
            .into_iter()
            .find(|s| s.segment() == segment)
            .ok_or_else(|| ApiError::NotFound(format!("kind of outcome record `{segment}`")))
    }

    fn segment(self) -> &'static str {
        match self {
            Self::ServicePeriods => "service-periods",
            Self::HospitalStays => "hospital-stays",
            Self::ReablementEpisodes => "reablement-episodes",
            Self::CareHomeAdmissions => "care-home-admissions",
            Self::Deaths => "deaths",
            Self::RecordedFalls => "recorded-falls",
        }
    }

    pub(super) fn table(self) -> &'static str {
        match self {
            Self::ServicePeriods => "service_periods",
            Self::HospitalStays => "hospital_stays",
            Self::ReablementEpisodes => "reablement_episodes",
            Self::CareHomeAdmissions => "care_home_admissions",
            Self::Deaths => "deaths",
            Self::RecordedFalls => "recorded_falls",
        }
    }

    /// The audit log's name for a record of `table`.
    fn object_type(table: &str) -> &'static str {
        match table {
            "service_periods" => "service_period",
            "hospital_stays" => "hospital_stay",
            "reablement_episodes" => "reablement_episode",
            "care_home_admissions" => "care_home_admission",
            "deaths" => "death",
            _ => "recorded_fall",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::ServicePeriods => "service period",
            Self::HospitalStays => "hospital stay",
            Self::ReablementEpisodes => "reablement episode",
            Self::CareHomeAdmissions => "care-home admission",
            Self::Deaths => "death",
            Self::RecordedFalls => "recorded fall",
        }
    }

    /// The day that places a record in time, for the commissioner's funding check.
    fn day_column(self) -> &'static str {
        match self {
            Self::ServicePeriods | Self::ReablementEpisodes => "started_on",
            Self::HospitalStays | Self::CareHomeAdmissions => "admitted_on",
            Self::Deaths => "died_on",
            Self::RecordedFalls => "occurred_on",
        }
    }

    /// The columns a withdrawal copies from the version it replaces.
    fn columns(self) -> &'static str {
        match self {
            Self::ServicePeriods => "contract_id, started_on, ended_on, history_from",
            Self::HospitalStays => "admitted_on, emergency, discharged_on, discharge_destination",
            Self::ReablementEpisodes => {
                "contract_id, hospital_stay_id, aim_home, started_on, ended_on, result, existing_client, \
                 follow_up_on, follow_up"
            }
            Self::CareHomeAdmissions => {
                "admitted_on, setting, permanent, discharged_on, returned_home"
            }
            Self::Deaths => "died_on",
            Self::RecordedFalls => "occurred_on, source",
        }
    }

    /// Whether the commissioner may record (and correct) this kind itself. Service periods
    /// are the provider's statement of whom it serves, and falls from records its baseline;
    /// the commissioner verifies those.
    fn commissioner_records(self) -> bool {
        matches!(
            self,
            Self::HospitalStays
                | Self::ReablementEpisodes
                | Self::CareHomeAdmissions
                | Self::Deaths
        )
    }
}

/// How many days before a record's day the person may have been funded for its commissioner
/// to record or see it: the longest look-ahead of the indicators (still at home 91 days after
/// discharge), so that a death or admission after the service ended is still the council's to
/// record.
const FUNDED_LOOKBACK_DAYS: i32 = 91;

/// SQL: the commissioner `$comm` funded person `person` of provider `org` on `day` or in the
/// [`FUNDED_LOOKBACK_DAYS`] before it.
fn funded_near(comm: &str, org: &str, person: &str, day: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM generate_series(0, {FUNDED_LOOKBACK_DAYS}) k
                  WHERE homeward_funded({comm}, {org}, {person}, ({day})::date - k))"
    )
}

/// Who writes a version: the user, which side, and the provider whose record it is.
struct Author {
    user: i32,
    recorder: &'static str,
    organisation: i32,
}

/// The author of a record of `person` dated `day`: provider staff for their own people; the
/// commissioner for people funded under its contracts (and only the kinds it records).
async fn author(
    c: &impl GenericClient,
    caller: &Caller,
    source: Source,
    person: i32,
    day: NaiveDate,
) -> Result<Author, ApiError> {
    if caller.role != Role::Commissioner {
        own_person(c, caller, person).await?;
        return Ok(Author {
            user: caller.user_id,
            recorder: "provider",
            organisation: caller.organisation_id,
        });
    }
    if !source.commissioner_records() {
        return Err(ApiError::Forbidden(format!(
            "the provider records {}s; a commissioner verifies them",
            source.label()
        )));
    }
    let org: i32 = c
        .query_opt(
            &format!(
                "SELECT pe.organisation_id FROM people pe WHERE pe.id = $2 AND {}",
                funded_near("$1", "pe.organisation_id", "pe.id", "$3::date")
            ),
            &[&caller.organisation_id, &person, &day],
        )
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "person_id",
                "no such person funded under your contracts around that date",
            )
        })?
        .get(0);
    Ok(Author {
        user: caller.user_id,
        recorder: "commissioner",
        organisation: org,
    })
}

/// The newest version of record `record` (its API id) of `source` that the caller may see:
/// its provider's, or its commissioner's (funded around the record's day). Columns: `id`,
/// `organisation_id`, `person_id`, `recorder`, `withdrawn`, then `columns` from index 5.
/// Deaths are named by the person's id, as their creation answers.
async fn current(
    c: &impl GenericClient,
    caller: &Caller,
    source: Source,
    record: i64,
    columns: &str,
) -> Result<tokio_postgres::Row, ApiError> {
    let table = source.table();
    let key = if source == Source::Deaths {
        "x.record_id = (SELECT f.record_id FROM deaths f WHERE f.person_id::bigint = $1
                          AND f.corrects IS NULL)"
    } else {
        "x.record_id = $1"
    };
    let commissioner = caller.role == Role::Commissioner;
    let sql = format!(
        "SELECT x.id, x.organisation_id, x.person_id, x.recorder, x.withdrawn, {columns}
           FROM {table} x
          WHERE {key} AND (x.organisation_id = $2 OR ($3 AND {}))
          ORDER BY x.id DESC LIMIT 1",
        funded_near(
            "$2",
            "x.organisation_id",
            "x.person_id",
            &format!("x.{}", source.day_column())
        )
    );
    c.query_opt(&sql, &[&record, &caller.organisation_id, &commissioner])
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{} {record}", source.label())))
}

/// Whether a record of this kind was first written by the commissioner: then only the
/// commissioner corrects or withdraws it.
async fn check_may_change(
    c: &impl GenericClient,
    caller: &Caller,
    source: Source,
    row: &tokio_postgres::Row,
) -> Result<(), ApiError> {
    if caller.role == Role::Commissioner {
        if !source.commissioner_records() {
            return Err(ApiError::Forbidden(format!(
                "the provider corrects {}s; a commissioner verifies or disputes them",
                source.label()
            )));
        }
        return Ok(());
    }
    let first_by_commissioner: bool = c
        .query_one(
            &format!(
                "SELECT recorder = 'commissioner' FROM {} WHERE id = (SELECT record_id FROM {0} WHERE id = $1)",
                source.table()
            ),
            &[&row.get::<_, i64>("id")],
        )
        .await?
        .get(0);
    if first_by_commissioner {
        return Err(ApiError::Forbidden(format!(
            "this {} was recorded by the commissioner: only the commissioner corrects it",
            source.label()
        )));
    }
    Ok(())
}

/// A new version's link to the one it replaces.
struct Replaces<'a> {
    version: i64,
    reason: &'a str,
}

/// Runs an INSERT of a new version; two writers replacing the same version: the second gets
/// 409 (each version has at most one successor, `<table>_corrects_once`).
async fn insert_version(
    c: &impl GenericClient,
    caller: &Caller,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: &str,
) -> Result<i64, ApiError> {
    let id = match c.query_one(sql, params).await {
        Ok(r) => r.get(0),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(ApiError::Conflict(format!(
                "{what} was changed meanwhile: read it again and retry"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let table = sql
        .trim_start()
        .strip_prefix("INSERT INTO ")
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("not an INSERT: {sql}")))?;
    audit_version(c, caller, table, id).await?;
    Ok(id)
}

/// The audit row of a new version of an outcome record (`table` is one of [`Source`]'s
/// tables): the whole version as stored, under the record's id.
async fn audit_version(
    c: &impl GenericClient,
    caller: &Caller,
    table: &str,
    id: i64,
) -> Result<(), ApiError> {
    let row = c
        .query_one(
            &format!(
                "SELECT organisation_id, record_id, corrects IS NULL, withdrawn, to_jsonb(x)
                   FROM {table} x WHERE id = $1"
            ),
            &[&id],
        )
        .await?;
    let action = match (row.get::<_, bool>(2), row.get::<_, bool>(3)) {
        (true, _) => "record",
        (false, true) => "withdraw",
        (false, false) => "correct",
    };
    crate::audit::by(
        c,
        caller,
        crate::audit::Entry::new(
            row.get::<_, i32>(0),
            format!("{}.{action}", Source::object_type(table)),
            Source::object_type(table),
            row.get::<_, i64>(1),
            serde_json::json!({"after": row.get::<_, serde_json::Value>(4)}),
        ),
    )
    .await?;
    Ok(())
}

/// A contract of the provider whose record it is (none: fine).
async fn provider_contract(
    c: &impl GenericClient,
    caller: &Caller,
    provider: i32,
    id: Option<i32>,
) -> Result<(), ApiError> {
    if caller.role != Role::Commissioner {
        return own_contract(c, caller, id).await;
    }
    let Some(id) = id else { return Ok(()) };
    let ok = c
        .query_opt(
            "SELECT 1 FROM contracts WHERE id = $1 AND provider_id = $2 AND commissioner_id = $3",
            &[&id, &provider, &caller.organisation_id],
        )
        .await?
        .is_some();
    ok.then_some(()).ok_or_else(|| {
        ApiError::invalid(
            "contract_id",
            "no such contract of yours with this provider",
        )
    })
}

// ---------------------------------------------------------------------------- service periods

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

impl ServicePeriodBody {
    fn check(&self) -> Result<(), ApiError> {
        if self.ended_on.is_some_and(|e| e < self.started_on) {
            return Err(ApiError::invalid(
                "ended_on",
                "must not be before started_on",
            ));
        }
        if self.history_from.is_some_and(|h| h > self.started_on) {
            return Err(ApiError::invalid(
                "history_from",
                "must not be after started_on",
            ));
        }
        Ok(())
    }

    async fn insert(
        &self,
        c: &impl GenericClient,
        caller: &Caller,
        replaces: Option<Replaces<'_>>,
    ) -> Result<i64, ApiError> {
        self.check()?;
        let a = author(
            c,
            caller,
            Source::ServicePeriods,
            self.person_id,
            self.started_on,
        )
        .await?;
        provider_contract(c, caller, a.organisation, self.contract_id).await?;
        let (corrects, reason) = split(&replaces);
        insert_version(
            c,
            caller,
            "INSERT INTO service_periods (organisation_id, person_id, contract_id, started_on, ended_on, history_from,
                                          recorded_by, recorder, corrects, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            &[&a.organisation, &self.person_id, &self.contract_id, &self.started_on, &self.ended_on,
              &self.history_from, &a.user, &a.recorder, &corrects, &reason],
            "the service period",
        )
        .await
    }
}

fn split<'a>(r: &'a Option<Replaces<'a>>) -> (Option<i64>, Option<&'a str>) {
    match r {
        Some(r) => (Some(r.version), Some(r.reason)),
        None => (None, None),
    }
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
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let id = b.insert(&*tx, &caller, None).await?;
    tx.commit().await?;
    Ok(created(id))
}

// ----------------------------------------------------------------------------- hospital stays

/// A stay in hospital; `discharged_on` and `discharge_destination` come together, the
/// discharge not before the admission. A commissioner may record it for a person funded
/// under its contracts around `admitted_on`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StayBody {
    /// A person of the organisation (for a commissioner: funded under its contracts).
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

impl StayBody {
    async fn insert(
        &self,
        c: &impl GenericClient,
        caller: &Caller,
        replaces: Option<Replaces<'_>>,
    ) -> Result<i64, ApiError> {
        check_discharge(
            self.admitted_on,
            self.discharged_on,
            &self.discharge_destination,
        )?;
        let a = author(
            c,
            caller,
            Source::HospitalStays,
            self.person_id,
            self.admitted_on,
        )
        .await?;
        let (corrects, reason) = split(&replaces);
        insert_version(
            c,
            caller,
            "INSERT INTO hospital_stays (organisation_id, person_id, admitted_on, emergency, discharged_on,
                                         discharge_destination, recorded_by, recorder, corrects, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            &[&a.organisation, &self.person_id, &self.admitted_on, &self.emergency, &self.discharged_on,
              &self.discharge_destination, &a.user, &a.recorder, &corrects, &reason],
            "the hospital stay",
        )
        .await
    }
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
    caller.require(RECORDERS)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let id = b.insert(&*tx, &caller, None).await?;
    tx.commit().await?;
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

/// Records the discharge of a stay not yet discharged (a new version of the stay).
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
    caller.require(RECORDERS)?;
    let id = path.into_inner();
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let row = current(
        &*tx,
        &caller,
        Source::HospitalStays,
        id,
        "x.admitted_on, x.discharged_on",
    )
    .await?;
    if row.get::<_, bool>("withdrawn") {
        return Err(ApiError::NotFound(format!("hospital stay {id}")));
    }
    if row.get::<_, Option<NaiveDate>>(6).is_some() {
        return Err(ApiError::Conflict(format!(
            "hospital stay {id} is already discharged"
        )));
    }
    let dest = Some(b.discharge_destination.clone());
    check_discharge(row.get(5), Some(b.discharged_on), &dest)?;
    let recorder = if caller.role == Role::Commissioner {
        "commissioner"
    } else {
        "provider"
    };
    // A new version of the stay; the one it replaces stays as it was known.
    insert_version(
        &*tx,
        &caller,
        "INSERT INTO hospital_stays (organisation_id, person_id, admitted_on, emergency, discharged_on,
                                     discharge_destination, recorded_by, recorder, corrects, reason)
         SELECT organisation_id, person_id, admitted_on, emergency, $2, $3, $4, $5, id, 'discharged'
           FROM hospital_stays WHERE id = $1 RETURNING id",
        &[&row.get::<_, i64>(0), &b.discharged_on, &dest, &caller.user_id, &recorder],
        "the hospital stay",
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(Created { id }))
}

// ------------------------------------------------------------------------ reablement episodes

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

/// A whole reablement episode, for a correction: its start as [`EpisodeBody`], and its end as
/// the end of an episode is recorded (both or neither).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EpisodeRecord {
    person_id: i32,
    contract_id: Option<i32>,
    hospital_stay_id: Option<i64>,
    #[serde(default = "yes")]
    aim_home: bool,
    #[serde(default)]
    existing_client: bool,
    started_on: NaiveDate,
    /// Not before `started_on`; with `result`.
    ended_on: Option<NaiveDate>,
    #[schema(value_type = Option<ReablementResult>)]
    result: Option<String>,
    /// Not before `started_on`; with `follow_up`.
    follow_up_on: Option<NaiveDate>,
    #[schema(value_type = Option<FollowUp>)]
    follow_up: Option<String>,
}

fn check_follow_up(
    started: NaiveDate,
    on: Option<NaiveDate>,
    found: &Option<String>,
) -> Result<(), ApiError> {
    if let Some(f) = found {
        if FollowUp::parse(f).is_none() {
            return Err(ApiError::invalid("follow_up", FollowUp::texts()));
        }
    }
    if on.is_some() != found.is_some() {
        return Err(ApiError::invalid(
            "follow_up",
            "give follow_up_on and follow_up together",
        ));
    }
    if on.is_some_and(|d| d < started) {
        return Err(ApiError::invalid(
            "follow_up_on",
            "must not be before the episode's started_on",
        ));
    }
    Ok(())
}

fn check_end(
    started: NaiveDate,
    ended: Option<NaiveDate>,
    result: &Option<String>,
) -> Result<(), ApiError> {
    if let Some(r) = result {
        if ReablementResult::parse(r).is_none() {
            return Err(ApiError::invalid("result", ReablementResult::texts()));
        }
    }
    if ended.is_some() != result.is_some() {
        return Err(ApiError::invalid(
            "result",
            "give ended_on and result together",
        ));
    }
    if ended.is_some_and(|e| e < started) {
        return Err(ApiError::invalid(
            "ended_on",
            "must not be before started_on",
        ));
    }
    Ok(())
}

impl EpisodeRecord {
    async fn insert(
        &self,
        c: &impl GenericClient,
        caller: &Caller,
        replaces: Option<Replaces<'_>>,
    ) -> Result<i64, ApiError> {
        check_end(self.started_on, self.ended_on, &self.result)?;
        check_follow_up(self.started_on, self.follow_up_on, &self.follow_up)?;
        let a = author(
            c,
            caller,
            Source::ReablementEpisodes,
            self.person_id,
            self.started_on,
        )
        .await?;
        provider_contract(c, caller, a.organisation, self.contract_id).await?;
        if let Some(stay) = self.hospital_stay_id {
            let ok = c
                .query_opt(
                    "SELECT 1 FROM hospital_stays WHERE id = $1 AND person_id = $2 AND organisation_id = $3",
                    &[&stay, &self.person_id, &a.organisation],
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
        let (corrects, reason) = split(&replaces);
        insert_version(
            c,
            caller,
            "INSERT INTO reablement_episodes (organisation_id, person_id, contract_id, hospital_stay_id, aim_home,
                                              started_on, ended_on, result, recorded_by, recorder, corrects, reason,
                                              existing_client, follow_up_on, follow_up)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
            &[&a.organisation, &self.person_id, &self.contract_id, &self.hospital_stay_id, &self.aim_home,
              &self.started_on, &self.ended_on, &self.result, &a.user, &a.recorder, &corrects, &reason,
              &self.existing_client, &self.follow_up_on, &self.follow_up],
            "the reablement episode",
        )
        .await
    }
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
    let b = b.into_inner();
    let record = EpisodeRecord {
        person_id: b.person_id,
        contract_id: b.contract_id,
        hospital_stay_id: b.hospital_stay_id,
        aim_home: b.aim_home,
        existing_client: b.existing_client,
        started_on: b.started_on,
        ended_on: None,
        result: None,
        follow_up_on: None,
        follow_up: None,
    };
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let id = record.insert(&*tx, &caller, None).await?;
    tx.commit().await?;
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

/// Records how an episode not yet ended ended (a new version of the episode). The
/// commissioner funding the person may record the result too.
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
    caller.require(RECORDERS)?;
    if ReablementResult::parse(&b.result).is_none() {
        return Err(ApiError::invalid("result", ReablementResult::texts()));
    }
    let id = path.into_inner();
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let row = current(
        &*tx,
        &caller,
        Source::ReablementEpisodes,
        id,
        "x.started_on, x.ended_on",
    )
    .await?;
    if row.get::<_, bool>("withdrawn") {
        return Err(ApiError::NotFound(format!("reablement episode {id}")));
    }
    if row.get::<_, Option<NaiveDate>>(6).is_some() {
        return Err(ApiError::Conflict(format!(
            "episode {id} has already ended"
        )));
    }
    if b.ended_on < row.get::<_, NaiveDate>(5) {
        return Err(ApiError::invalid(
            "ended_on",
            "must not be before started_on",
        ));
    }
    let recorder = if caller.role == Role::Commissioner {
        "commissioner"
    } else {
        "provider"
    };
    insert_version(
        &*tx,
        &caller,
        "INSERT INTO reablement_episodes (organisation_id, person_id, contract_id, hospital_stay_id, aim_home,
                                          started_on, ended_on, result, recorded_by, recorder, corrects, reason,
                                          existing_client, follow_up_on, follow_up)
         SELECT organisation_id, person_id, contract_id, hospital_stay_id, aim_home, started_on, $2, $3, $4,
                $5, id, 'ended', existing_client, follow_up_on, follow_up
           FROM reablement_episodes WHERE id = $1 RETURNING id",
        &[&row.get::<_, i64>(0), &b.ended_on, &b.result, &caller.user_id, &recorder],
        "the reablement episode",
    )
    .await?;
    tx.commit().await?;
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
        doc::Conflict,
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
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let row = current(
        &*tx,
        &caller,
        Source::ReablementEpisodes,
        id,
        "x.started_on",
    )
    .await?;
    if row.get::<_, bool>("withdrawn") {
        return Err(ApiError::NotFound(format!("reablement episode {id}")));
    }
    check_follow_up(row.get(5), Some(b.follow_up_on), &Some(b.follow_up.clone()))?;
    insert_version(
        &*tx,
        &caller,
        "INSERT INTO reablement_episodes (organisation_id, person_id, contract_id, hospital_stay_id, aim_home,
                                          started_on, ended_on, result, recorded_by, recorder, corrects, reason,
                                          existing_client, follow_up_on, follow_up)
         SELECT organisation_id, person_id, contract_id, hospital_stay_id, aim_home, started_on, ended_on,
                result, $2, 'provider', id, 'followed up', existing_client, $3, $4
           FROM reablement_episodes WHERE id = $1 RETURNING id",
        &[&row.get::<_, i64>(0), &caller.user_id, &b.follow_up_on, &b.follow_up],
        "the reablement episode",
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(Created { id }))
}

// ----------------------------------------------------------------------- care-home admissions

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
    /// A person of the organisation (for a commissioner: funded under its contracts).
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

impl CareHomeBody {
    async fn insert(
        &self,
        c: &impl GenericClient,
        caller: &Caller,
        replaces: Option<Replaces<'_>>,
    ) -> Result<i64, ApiError> {
        if !["residential", "nursing"].contains(&self.setting.as_str()) {
            return Err(ApiError::invalid("setting", "residential or nursing"));
        }
        check_care_home_discharge(self.admitted_on, self.discharged_on, self.returned_home)?;
        let a = author(
            c,
            caller,
            Source::CareHomeAdmissions,
            self.person_id,
            self.admitted_on,
        )
        .await?;
        let (corrects, reason) = split(&replaces);
        insert_version(
            c,
            caller,
            "INSERT INTO care_home_admissions (organisation_id, person_id, admitted_on, setting, permanent,
                                               recorded_by, recorder, corrects, reason, discharged_on, returned_home)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[&a.organisation, &self.person_id, &self.admitted_on, &self.setting, &self.permanent,
              &a.user, &a.recorder, &corrects, &reason, &self.discharged_on, &self.returned_home],
            "the care-home admission",
        )
        .await
    }
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
    caller.require(RECORDERS)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let id = b.insert(&*tx, &caller, None).await?;
    tx.commit().await?;
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

/// Records that a person left a care home (a new version of the admission). The commissioner
/// funding the person may record it too.
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
    caller.require(RECORDERS)?;
    let id = path.into_inner();
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let row = current(
        &*tx,
        &caller,
        Source::CareHomeAdmissions,
        id,
        "x.admitted_on, x.discharged_on",
    )
    .await?;
    if row.get::<_, bool>("withdrawn") {
        return Err(ApiError::NotFound(format!("care-home admission {id}")));
    }
    if row.get::<_, Option<NaiveDate>>(6).is_some() {
        return Err(ApiError::Conflict(format!(
            "care-home admission {id} has already ended"
        )));
    }
    check_care_home_discharge(row.get(5), Some(b.discharged_on), Some(b.returned_home))?;
    let recorder = if caller.role == Role::Commissioner {
        "commissioner"
    } else {
        "provider"
    };
    insert_version(
        &*tx,
        &caller,
        "INSERT INTO care_home_admissions (organisation_id, person_id, admitted_on, setting, permanent,
                                           recorded_by, recorder, discharged_on, returned_home, corrects, reason)
         SELECT organisation_id, person_id, admitted_on, setting, permanent, $2, $3, $4, $5, id, 'discharged'
           FROM care_home_admissions WHERE id = $1 RETURNING id",
        &[&row.get::<_, i64>(0), &caller.user_id, &recorder, &b.discharged_on, &b.returned_home],
        "the care-home admission",
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(Created { id }))
}

// ------------------------------------------------------------------------------------- deaths

/// A death.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeathBody {
    /// A person of the organisation (for a commissioner: funded under its contracts).
    person_id: i32,
    died_on: NaiveDate,
}

impl DeathBody {
    async fn insert(
        &self,
        c: &impl GenericClient,
        caller: &Caller,
        replaces: Option<Replaces<'_>>,
    ) -> Result<Option<i64>, ApiError> {
        let a = author(c, caller, Source::Deaths, self.person_id, self.died_on).await?;
        let (corrects, reason) = split(&replaces);
        if corrects.is_some() {
            return insert_version(
                c,
                caller,
                "INSERT INTO deaths (person_id, organisation_id, died_on, recorded_by, recorder, corrects, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&self.person_id, &a.organisation, &self.died_on, &a.user, &a.recorder, &corrects, &reason],
                "the death",
            )
            .await
            .map(Some);
        }
        let id: Option<i64> = c
            .query_opt(
                "INSERT INTO deaths (person_id, organisation_id, died_on, recorded_by, recorder) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (person_id) WHERE corrects IS NULL DO NOTHING RETURNING id",
                &[&self.person_id, &a.organisation, &self.died_on, &a.user, &a.recorder],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(id) = id {
            audit_version(c, caller, "deaths", id).await?;
        }
        Ok(id)
    }
}

/// Records a person's death (once: `id` is the person's; a correction is a new version).
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
    caller.require(RECORDERS)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    if b.insert(&*tx, &caller, None).await?.is_none() {
        return Err(ApiError::Conflict(format!(
            "the death of person {} is already recorded; correct it instead",
            b.person_id
        )));
    }
    tx.commit().await?;
    Ok(created(i64::from(b.person_id)))
}

// ----------------------------------------------------------------------------- recorded falls

/// A fall known from records.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FallBody {
    /// A person of the organisation.
    person_id: i32,
    /// Not in the future (UTC date).
    occurred_on: NaiveDate,
    /// Where it is known from: GP, hospital, self-report ...
    #[schema(min_length = 1, max_length = 100)]
    source: String,
}

impl FallBody {
    async fn insert(
        &self,
        c: &impl GenericClient,
        caller: &Caller,
        replaces: Option<Replaces<'_>>,
    ) -> Result<i64, ApiError> {
        if self.source.is_empty() || self.source.len() > 100 {
            return Err(ApiError::invalid(
                "source",
                "1 to 100 characters (GP, hospital, self-report ...)",
            ));
        }
        // A fall is a record of something that happened: a date after today (UTC) is a typing
        // error or a fall not yet known.
        if self.occurred_on > chrono::Utc::now().date_naive() {
            return Err(ApiError::invalid(
                "occurred_on",
                "must not be in the future",
            ));
        }
        let a = author(
            c,
            caller,
            Source::RecordedFalls,
            self.person_id,
            self.occurred_on,
        )
        .await?;
        let (corrects, reason) = split(&replaces);
        insert_version(
            c,
            caller,
            "INSERT INTO recorded_falls (organisation_id, person_id, occurred_on, source, recorded_by, recorder,
                                         corrects, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[&a.organisation, &self.person_id, &self.occurred_on, &self.source, &a.user, &a.recorder,
              &corrects, &reason],
            "the recorded fall",
        )
        .await
    }
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
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let id = b.insert(&*tx, &caller, None).await?;
    tx.commit().await?;
    Ok(created(id))
}

// ------------------------------------------------------------- corrections, withdrawals, verdicts

/// A kind of outcome record, as in its creation route.
#[derive(ToSchema)]
#[allow(dead_code)]
enum RecordKind {
    #[schema(rename = "service-periods")]
    ServicePeriods,
    #[schema(rename = "hospital-stays")]
    HospitalStays,
    #[schema(rename = "reablement-episodes")]
    ReablementEpisodes,
    #[schema(rename = "care-home-admissions")]
    CareHomeAdmissions,
    #[schema(rename = "deaths")]
    Deaths,
    #[schema(rename = "recorded-falls")]
    RecordedFalls,
}

/// A correction: the record's full new values, checked as its creation checks them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CorrectionBody {
    /// Why, for whoever reads the history: 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
    /// The version being corrected, as last read; if it is no longer the newest: 409.
    version: Option<i64>,
    /// Every field of the record as its creation takes them (a reablement episode also takes
    /// `ended_on` and `result`); `person_id` must stay the record's (to move a record to
    /// another person, withdraw it and record it anew).
    #[schema(value_type = Object)]
    record: serde_json::Value,
}

/// A withdrawal: the record was entered in error.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawBody {
    /// 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
    /// As for a correction.
    version: Option<i64>,
}

/// A record and its new version.
#[derive(Serialize, ToSchema)]
struct NewVersion {
    /// The record's id (as its creation answered).
    id: i64,
    /// The new version's id.
    version: i64,
}

fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::invalid("reason", "1 to 500 characters: why"));
    }
    Ok(())
}

fn check_version(asked: Option<i64>, row: &tokio_postgres::Row) -> Result<i64, ApiError> {
    let newest: i64 = row.get("id");
    match asked {
        Some(v) if v != newest => Err(ApiError::Conflict(format!(
            "version {v} is not the newest (that is {newest}): read the record again"
        ))),
        _ => Ok(newest),
    }
}

/// Field errors of a record named inside `record`.
fn in_record(e: ApiError) -> ApiError {
    match e {
        ApiError::Validation(mut v) => {
            for f in &mut v {
                f.field = format!("record.{}", f.field);
            }
            ApiError::Validation(v)
        }
        e => e,
    }
}

fn parse_record<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::invalid("record", e.to_string()))
}

/// Records a correction of an outcome record: a new version with the full new values and the
/// reason, checked as the record's creation is. The version it replaces stays as it was
/// known, so reports as known before the correction do not change. A record withdrawn in
/// error is reinstated by a correction. Two corrections of the same version: the second gets
/// 409.
#[utoipa::path(
    operation_id = "correct_outcome_record",
    tag = "outcomes",
    params(
        ("kind" = inline(RecordKind), Path, description = "The kind of record."),
        ("id" = i64, Path, description = "The record's id (for a death: the person's)."),
    ),
    request_body = CorrectionBody,
    responses(
        (status = 201, description = "The new version.", body = NewVersion),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/{kind}/{id}/corrections")]
async fn correct(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    b: crate::http::Json<CorrectionBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(RECORDERS)?;
    let (kind, id) = path.into_inner();
    let source = Source::parse(&kind)?;
    let b = b.into_inner();
    check_reason(&b.reason)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let row = current(&*tx, &caller, source, id, "1").await?;
    check_may_change(&*tx, &caller, source, &row).await?;
    let newest = check_version(b.version, &row)?;
    let person: i32 = row.get("person_id");
    if b.record.get("person_id").and_then(|p| p.as_i64()) != Some(i64::from(person)) {
        return Err(ApiError::invalid(
            "record.person_id",
            format!("must stay {person}: to move a record to another person, withdraw it and record it anew"),
        ));
    }
    let replaces = Some(Replaces {
        version: newest,
        reason: &b.reason,
    });
    let c = &*tx;
    let version = match source {
        Source::ServicePeriods => {
            parse_record::<ServicePeriodBody>(b.record)?
                .insert(c, &caller, replaces)
                .await
        }
        Source::HospitalStays => {
            parse_record::<StayBody>(b.record)?
                .insert(c, &caller, replaces)
                .await
        }
        Source::ReablementEpisodes => {
            parse_record::<EpisodeRecord>(b.record)?
                .insert(c, &caller, replaces)
                .await
        }
        Source::CareHomeAdmissions => {
            parse_record::<CareHomeBody>(b.record)?
                .insert(c, &caller, replaces)
                .await
        }
        Source::Deaths => parse_record::<DeathBody>(b.record)?
            .insert(c, &caller, replaces)
            .await
            .map(|v| v.unwrap_or_default()),
        Source::RecordedFalls => {
            parse_record::<FallBody>(b.record)?
                .insert(c, &caller, replaces)
                .await
        }
    }
    .map_err(in_record)?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(NewVersion { id, version }))
}

/// Withdraws an outcome record entered in error: a new version marked withdrawn, with the
/// reason. Reports as known from then on leave the record out; reports as known before keep it.
#[utoipa::path(
    operation_id = "withdraw_outcome_record",
    tag = "outcomes",
    params(
        ("kind" = inline(RecordKind), Path, description = "The kind of record."),
        ("id" = i64, Path, description = "The record's id (for a death: the person's)."),
    ),
    request_body = WithdrawBody,
    responses(
        (status = 201, description = "The withdrawing version.", body = NewVersion),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/{kind}/{id}/withdraw")]
async fn withdraw(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    b: crate::http::Json<WithdrawBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(RECORDERS)?;
    let (kind, id) = path.into_inner();
    let source = Source::parse(&kind)?;
    check_reason(&b.reason)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let row = current(&*tx, &caller, source, id, "1").await?;
    check_may_change(&*tx, &caller, source, &row).await?;
    let newest = check_version(b.version, &row)?;
    if row.get::<_, bool>("withdrawn") {
        return Err(ApiError::Conflict(format!(
            "{} {id} is already withdrawn",
            source.label()
        )));
    }
    let recorder = if caller.role == Role::Commissioner {
        "commissioner"
    } else {
        "provider"
    };
    let (table, cols) = (source.table(), source.columns());
    let version = insert_version(
        &*tx,
        &caller,
        &format!(
            "INSERT INTO {table} (organisation_id, person_id, {cols}, recorded_by, recorder, corrects, withdrawn, reason)
             SELECT organisation_id, person_id, {cols}, $2, $3, id, true, $4 FROM {table} WHERE id = $1
             RETURNING id"
        ),
        &[&newest, &caller.user_id, &recorder, &b.reason],
        &format!("the {}", source.label()),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(NewVersion { id, version }))
}

/// A commissioner's verdict.
#[derive(ToSchema)]
#[allow(dead_code)]
enum RecordVerdict {
    #[schema(rename = "verified")]
    Verified,
    #[schema(rename = "disputed")]
    Disputed,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    #[schema(value_type = RecordVerdict)]
    verdict: String,
    /// 1 to 1000 characters.
    #[schema(min_length = 1, max_length = 1000)]
    note: Option<String>,
    /// The version checked, as read; if it is no longer the newest: 409.
    version: Option<i64>,
}

/// A verdict as stored.
#[derive(Serialize, ToSchema)]
struct RecordVerification {
    /// The record's id.
    id: i64,
    /// The version the verdict is on: a later correction is not covered by it.
    version: i64,
    #[schema(value_type = RecordVerdict)]
    verdict: String,
    verified_at: chrono::DateTime<chrono::Utc>,
}

/// The commissioner verifies or disputes the newest version of an outcome record of a person
/// funded under its contracts (from its own checks: hospital, registrar, care-home records).
/// Verdicts are kept, never changed; a later verdict on the same version replaces the earlier
/// from then on, and a correction needs verifying again.
#[utoipa::path(
    operation_id = "verify_outcome_record",
    tag = "outcomes",
    params(
        ("kind" = inline(RecordKind), Path, description = "The kind of record."),
        ("id" = i64, Path, description = "The record's id (for a death: the person's)."),
    ),
    request_body = VerifyBody,
    responses(
        (status = 201, description = "Recorded.", body = RecordVerification),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/{kind}/{id}/verify")]
async fn verify(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    b: crate::http::Json<VerifyBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let (kind, id) = path.into_inner();
    let source = Source::parse(&kind)?;
    if !["verified", "disputed"].contains(&b.verdict.as_str()) {
        return Err(ApiError::invalid("verdict", "verified or disputed"));
    }
    if b.note
        .as_ref()
        .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 1000)
    {
        return Err(ApiError::invalid("note", "1 to 1000 characters"));
    }
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let row = current(&*tx, &caller, source, id, "x.record_id").await?;
    if row.get::<_, bool>("withdrawn") {
        return Err(ApiError::NotFound(format!("{} {id}", source.label())));
    }
    let version = check_version(b.version, &row)?;
    let at: chrono::DateTime<chrono::Utc> = tx
        .query_one(
            "INSERT INTO outcome_record_verifications (source, record_id, version_id, verdict, note,
                                                       verified_by, verified_by_organisation)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING verified_at",
            &[&source.table(), &row.get::<_, i64>(5), &version, &b.verdict, &b.note,
              &caller.user_id, &caller.organisation_id],
        )
        .await?
        .get(0);
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            row.get::<_, i32>(1),
            format!("{}.verify", Source::object_type(source.table())),
            Source::object_type(source.table()),
            row.get::<_, i64>(5),
            serde_json::json!({"version_id": version, "verdict": b.verdict, "note": b.note}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(RecordVerification {
        id,
        version,
        verdict: b.verdict.clone(),
        verified_at: at,
    }))
}

// ------------------------------------------------------------------------------ reading them

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EpisodesQuery {
    /// Every version of every record, withdrawn ones too, oldest first (default: the newest
    /// version of each record not withdrawn).
    history: Option<bool>,
}

/// A person's outcome records (provider staff only: they carry dates of clinical events).
#[utoipa::path(
    operation_id = "get_person_episodes",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The person's id."), EpisodesQuery),
    responses(
        (status = 200, description = "`person_id` and, each oldest first, its \
            `service_periods`, `hospital_stays`, `reablement_episodes`, \
            `care_home_admissions`, `deaths` and `recorded_falls`: the newest version of each \
            record, or with `history=true` every version. Each version has its `id`, \
            `record_id`, `corrects`, `withdrawn`, `reason`, `recorded_at`, `recorded_by`, \
            `recorder` (`provider` or `commissioner`) and `verification` (the newest verdict \
            on it: `verdict`, `note`, `verified_at`, or null).", body = Object),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/outcomes/people/{id}/episodes")]
async fn person_episodes(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    q: web::Query<EpisodesQuery>,
) -> Result<HttpResponse, ApiError> {
    let c = state.db(&caller).await?;
    let out = person_records(&c, &caller, path.into_inner(), q.history.unwrap_or(false)).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// The outcome records of the caller's person `id`, as `GET /v1/outcomes/people/{id}/episodes`
/// answers them: `person_id` and one array per table (`service_periods`, `hospital_stays`,
/// `reablement_episodes`, `care_home_admissions`, `deaths`, `recorded_falls`), each row with
/// its newest verification; the current versions only unless `history`. Provider staff only;
/// another organisation's person is `NotFound`.
pub async fn person_records(
    c: &deadpool_postgres::Client,
    caller: &Caller,
    id: i32,
    history: bool,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    caller.require(STAFF)?;
    own_person(&***c, caller, id)
        .await
        .map_err(|_| ApiError::NotFound(format!("person {id}")))?;
    let mut out = serde_json::Map::new();
    out.insert("person_id".into(), id.into());
    for source in Source::ALL {
        let table = source.table();
        let which = if history {
            "true".to_string()
        } else {
            format!(
                "NOT x.withdrawn AND NOT EXISTS (SELECT 1 FROM {table} n WHERE n.corrects = x.id)"
            )
        };
        let order = if history {
            "x.record_id, x.id".to_string()
        } else {
            format!("x.{}, x.id", source.day_column())
        };
        let rows = c
            .query(
                &format!(
                    "SELECT (to_jsonb(x) - 'organisation_id') || jsonb_build_object('verification',
                              (SELECT jsonb_build_object('verdict', v.verdict, 'note', v.note, 'verified_at', v.verified_at)
                                 FROM outcome_record_verifications v
                                WHERE v.source = $2 AND v.version_id = x.id
                                ORDER BY v.verified_at DESC, v.id DESC LIMIT 1))
                       FROM {table} x
                      WHERE x.person_id = $1 AND x.organisation_id = $3 AND {which}
                      ORDER BY {order}"
                ),
                &[&id, &table, &caller.organisation_id],
            )
            .await?;
        out.insert(
            table.into(),
            rows.iter()
                .map(|r| r.get::<_, serde_json::Value>(0))
                .collect::<Vec<_>>()
                .into(),
        );
    }
    Ok(out)
}
