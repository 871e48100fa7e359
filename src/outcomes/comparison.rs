//! Comparison cohorts: people not served (referred and waiting, or matched people not enrolled)
//! whose falls, emergency admissions and permanent care-home admissions the commissioner
//! records, so that "avoided" is estimated against what happened to people without the service
//! over the same time (difference-in-differences, docs/outcomes.md "Falls and admissions
//! avoided"). Owns `comparison_cohorts`, `comparison_members`, `comparison_events` (migration
//! 0011). Commissioners only: the provider is the paid party, so it neither records nor reads
//! them. Members carry a pseudonymous reference, never a name.

use actix_web::{get, post, put, web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::measures::ComparisonKind;
use super::routes::created;
use crate::auth::{Caller, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_cohort)
        .service(list_cohorts)
        .service(get_cohort)
        .service(put_member)
        .service(create_event)
        .service(withdraw_event);
}

fn text(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    let n = v.trim().chars().count();
    if n == 0 || v.chars().count() > max {
        return Err(ApiError::invalid(field, format!("1 to {max} characters")));
    }
    Ok(())
}

/// A new comparison cohort.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CohortBody {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// How members were chosen (a waiting list; matching criteria), shown with the estimate.
    #[schema(min_length = 1, max_length = 2000)]
    selection: String,
    /// One of the commissioner's contracts: the cohort is then used only for that contract's
    /// reports and statements. Absent: for every report of the commissioner.
    contract_id: Option<i32>,
}

/// Records a comparison cohort (commissioners).
#[utoipa::path(
    operation_id = "create_comparison_cohort",
    tag = "outcomes",
    request_body = CohortBody,
    responses(
        (status = 201, description = "Recorded.", body = super::routes::Created),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/comparison-cohorts")]
async fn create_cohort(
    caller: Caller,
    state: web::Data<AppState>,
    b: crate::http::Json<CohortBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    text("name", &b.name, 200)?;
    text("selection", &b.selection, 2000)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    if let Some(contract) = b.contract_id {
        let own = tx
            .query_opt(
                "SELECT 1 FROM contracts WHERE id = $1 AND commissioner_id = $2",
                &[&contract, &caller.organisation_id],
            )
            .await?
            .is_some();
        if !own {
            return Err(ApiError::invalid(
                "contract_id",
                "not one of your contracts",
            ));
        }
    }
    let id: i32 = tx
        .query_one(
            "INSERT INTO comparison_cohorts (commissioner_id, contract_id, name, selection, recorded_by)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&caller.organisation_id, &b.contract_id, &b.name, &b.selection, &caller.user_id],
        )
        .await?
        .get(0);
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "comparison_cohort.create",
            "comparison_cohort",
            id,
            serde_json::json!({"name": b.name, "selection": b.selection, "contract_id": b.contract_id}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(created(i64::from(id)))
}

/// A cohort with its size as known now.
#[derive(Serialize, ToSchema)]
struct Cohort {
    id: i32,
    name: String,
    selection: String,
    contract_id: Option<i32>,
    members: i64,
    events: i64,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

const COHORTS: &str = "SELECT c.id, c.name, c.selection, c.contract_id, c.recorded_at,
        (SELECT count(*) FROM (SELECT DISTINCT ON (reference) withdrawn FROM comparison_members m
                                WHERE m.cohort_id = c.id ORDER BY reference, id DESC) x
          WHERE NOT x.withdrawn),
        (SELECT count(*) FROM comparison_events e WHERE e.cohort_id = c.id)
   FROM comparison_cohorts c WHERE c.commissioner_id = $1 AND ($2::int IS NULL OR c.id = $2)
    AND ($3::int IS NULL OR c.id > $3)
  ORDER BY c.id LIMIT $4";

/// The commissioner's cohorts by id: one (`id`), or those after `after`, at most `rows` (all
/// with `None`).
async fn cohorts(
    c: &impl GenericClient,
    commissioner: i32,
    id: Option<i32>,
    after: Option<i32>,
    rows: Option<i64>,
) -> Result<Vec<Cohort>, ApiError> {
    Ok(c.query(COHORTS, &[&commissioner, &id, &after, &rows])
        .await?
        .iter()
        .map(|r| Cohort {
            id: r.get(0),
            name: r.get(1),
            selection: r.get(2),
            contract_id: r.get(3),
            recorded_at: r.get(4),
            members: r.get(5),
            events: r.get(6),
        })
        .collect())
}

/// A page of cohorts, by id.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CohortsQuery {
    /// The last id of the previous page.
    after: Option<i32>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct CohortPage {
    /// Oldest (lowest id) first.
    items: Vec<Cohort>,
    /// `after` for the next page; null on the last one.
    next_after: Option<i32>,
}

/// The caller's comparison cohorts (commissioners), a page at a time.
#[utoipa::path(
    operation_id = "list_comparison_cohorts",
    tag = "outcomes",
    params(CohortsQuery),
    responses(
        (status = 200, description = "A page of the cohorts.", body = CohortPage),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/outcomes/comparison-cohorts")]
async fn list_cohorts(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<CohortsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let limit = crate::http::paging::STANDARD.check(q.limit)?;
    let c = state.db(&caller).await?;
    let rows = cohorts(&**c, caller.organisation_id, None, q.after, Some(limit + 1)).await?;
    let page = crate::http::paging::Page::from_rows(rows, limit, |c: &Cohort| c.id);
    Ok(HttpResponse::Ok().json(CohortPage {
        items: page.items,
        next_after: page.next_after,
    }))
}

/// The cohort if it is the caller's.
async fn own_cohort(c: &impl GenericClient, caller: &Caller, id: i32) -> Result<Cohort, ApiError> {
    cohorts(c, caller.organisation_id, Some(id), None, None)
        .await?
        .pop()
        .ok_or_else(|| ApiError::NotFound(format!("comparison cohort {id}")))
}

/// A member as known now.
#[derive(Serialize, ToSchema)]
struct Member {
    reference: String,
    date_of_birth: Option<NaiveDate>,
    index_date: NaiveDate,
    follow_from: NaiveDate,
    ended_on: Option<NaiveDate>,
    /// The version's id and when it was recorded.
    version: i64,
    recorded_at: chrono::DateTime<chrono::Utc>,
    events: Vec<Event>,
}

/// An event of a member.
#[derive(Serialize, ToSchema)]
struct Event {
    id: i64,
    kind: ComparisonKind,
    occurred_on: NaiveDate,
    source: String,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

/// A cohort with its members and their events, as known now (commissioners).
#[utoipa::path(
    operation_id = "get_comparison_cohort",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The cohort's id.")),
    responses(
        (status = 200, description = "`cohort` and its `members` (each with its `events`), \
            by reference.", body = Object),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/outcomes/comparison-cohorts/{id}")]
async fn get_cohort(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let id = path.into_inner();
    let c = state.db(&caller).await?;
    let cohort = own_cohort(&**c, &caller, id).await?;
    let mut members: Vec<Member> = c
        .query(
            "SELECT reference, date_of_birth, index_date, follow_from, ended_on, id, recorded_at
               FROM (SELECT DISTINCT ON (reference) * FROM comparison_members WHERE cohort_id = $1
                      ORDER BY reference, id DESC) m
              WHERE NOT withdrawn ORDER BY reference",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| Member {
            reference: r.get(0),
            date_of_birth: r.get(1),
            index_date: r.get(2),
            follow_from: r.get(3),
            ended_on: r.get(4),
            version: r.get(5),
            recorded_at: r.get(6),
            events: Vec::new(),
        })
        .collect();
    for r in c
        .query(
            "SELECT e.reference, e.id, e.kind, e.occurred_on, e.source, e.recorded_at
               FROM comparison_events e
              WHERE e.cohort_id = $1
                AND NOT EXISTS (SELECT 1 FROM comparison_event_withdrawals w WHERE w.event_id = e.id)
              ORDER BY e.reference, e.occurred_on, e.id",
            &[&id],
        )
        .await?
    {
        let reference: String = r.get(0);
        let kind: String = r.get(2);
        let Some(kind) = parse_kind(&kind) else {
            continue;
        };
        if let Ok(i) = members.binary_search_by(|m| m.reference.as_str().cmp(&reference)) {
            members[i].events.push(Event {
                id: r.get(1),
                kind,
                occurred_on: r.get(3),
                source: r.get(4),
                recorded_at: r.get(5),
            });
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"cohort": cohort, "members": members})))
}

pub(super) fn parse_kind(s: &str) -> Option<ComparisonKind> {
    Some(match s {
        "fall" => ComparisonKind::Fall,
        "emergency_admission" => ComparisonKind::EmergencyAdmission,
        "care_home_admission" => ComparisonKind::CareHomeAdmission,
        _ => return None,
    })
}

fn kind_name(k: ComparisonKind) -> &'static str {
    match k {
        ComparisonKind::Fall => "fall",
        ComparisonKind::EmergencyAdmission => "emergency_admission",
        ComparisonKind::CareHomeAdmission => "care_home_admission",
    }
}

/// A member's details: a new version of the member (the newest is the member).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    date_of_birth: Option<NaiveDate>,
    /// The referral (or matching) date: events on it are the index event, never baseline.
    index_date: NaiveDate,
    /// Follow-up starts here; on or after `index_date`.
    follow_from: NaiveDate,
    /// Follow-up ends (served, moved away, died), inclusive; on or after `follow_from`.
    ended_on: Option<NaiveDate>,
    /// Removes the member (recorded in error).
    #[serde(default)]
    withdrawn: bool,
}

/// Records a member of a cohort, or a new version of one (commissioners). `reference` is the
/// commissioner's pseudonymous reference, never a name.
#[utoipa::path(
    operation_id = "put_comparison_member",
    tag = "outcomes",
    params(
        ("id" = i32, Path, description = "The cohort's id."),
        ("reference" = String, Path, description = "Pseudonymous reference, 1 to 100 characters."),
    ),
    request_body = MemberBody,
    responses(
        (status = 200, description = "Recorded: `version`, the new version's id.", body = Object),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[put("/v1/outcomes/comparison-cohorts/{id}/members/{reference}")]
async fn put_member(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i32, String)>,
    b: crate::http::Json<MemberBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let (id, reference) = path.into_inner();
    text("reference", &reference, 100)?;
    if b.follow_from < b.index_date {
        return Err(ApiError::invalid("follow_from", "on or after index_date"));
    }
    if b.ended_on.is_some_and(|e| e < b.follow_from) {
        return Err(ApiError::invalid("ended_on", "on or after follow_from"));
    }
    if b.date_of_birth.is_some_and(|d| d > b.index_date) {
        return Err(ApiError::invalid("date_of_birth", "before index_date"));
    }
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    own_cohort(&*tx, &caller, id).await?;
    let version: i64 = tx
        .query_one(
            "INSERT INTO comparison_members (cohort_id, reference, date_of_birth, index_date,
                                             follow_from, ended_on, withdrawn, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &id,
                &reference,
                &b.date_of_birth,
                &b.index_date,
                &b.follow_from,
                &b.ended_on,
                &b.withdrawn,
                &caller.user_id,
            ],
        )
        .await?
        .get(0);
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "comparison_member.record",
            "comparison_cohort",
            id,
            serde_json::json!({"reference": reference, "version": version,
                               "date_of_birth": b.date_of_birth, "index_date": b.index_date,
                               "follow_from": b.follow_from, "ended_on": b.ended_on,
                               "withdrawn": b.withdrawn}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"reference": reference, "version": version})))
}

/// An event of a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EventBody {
    /// A member of the cohort.
    #[schema(min_length = 1, max_length = 100)]
    reference: String,
    #[schema(value_type = ComparisonKind)]
    kind: String,
    occurred_on: NaiveDate,
    /// Where it is known from (GP record, hospital episode statistics, council records).
    #[schema(min_length = 1, max_length = 100)]
    source: String,
}

/// Records a fall, emergency admission or permanent care-home admission of a cohort member
/// (commissioners).
#[utoipa::path(
    operation_id = "create_comparison_event",
    tag = "outcomes",
    params(("id" = i32, Path, description = "The cohort's id.")),
    request_body = EventBody,
    responses(
        (status = 201, description = "Recorded.", body = super::routes::Created),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/comparison-cohorts/{id}/events")]
async fn create_event(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    b: crate::http::Json<EventBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let id = path.into_inner();
    text("source", &b.source, 100)?;
    let kind = parse_kind(&b.kind).ok_or_else(|| {
        ApiError::invalid(
            "kind",
            "one of fall, emergency_admission, care_home_admission",
        )
    })?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    own_cohort(&*tx, &caller, id).await?;
    let member = tx
        .query_opt(
            "SELECT withdrawn FROM comparison_members WHERE cohort_id = $1 AND reference = $2
              ORDER BY id DESC LIMIT 1",
            &[&id, &b.reference],
        )
        .await?;
    // No such member, or withdrawn.
    if member.is_none_or(|r| r.get::<_, bool>(0)) {
        return Err(ApiError::invalid(
            "reference",
            "no such member of the cohort",
        ));
    }
    let event: i64 = tx
        .query_one(
            "INSERT INTO comparison_events (cohort_id, reference, kind, occurred_on, source, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&id, &b.reference, &kind_name(kind), &b.occurred_on, &b.source, &caller.user_id],
        )
        .await?
        .get(0);
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "comparison_event.record",
            "comparison_cohort",
            id,
            serde_json::json!({"event_id": event, "reference": b.reference, "kind": kind_name(kind),
                               "occurred_on": b.occurred_on, "source": b.source}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(created(event))
}

/// Why an event is withdrawn.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawEventBody {
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// An event withdrawn.
#[derive(Serialize, ToSchema)]
struct EventWithdrawn {
    id: i64,
    withdrawn_at: chrono::DateTime<chrono::Utc>,
}

/// Withdraws an event recorded in error (commissioners): it stays stored, and reports as
/// known from now on leave it out; reports as known before keep it. Once per event.
#[utoipa::path(
    operation_id = "withdraw_comparison_event",
    tag = "outcomes",
    params(
        ("id" = i32, Path, description = "The cohort's id."),
        ("event" = i64, Path, description = "The event's id."),
    ),
    request_body = WithdrawEventBody,
    responses(
        (status = 201, description = "Withdrawn.", body = EventWithdrawn),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/comparison-cohorts/{id}/events/{event}/withdraw")]
async fn withdraw_event(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i32, i64)>,
    b: crate::http::Json<WithdrawEventBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let (id, event) = path.into_inner();
    text("reason", &b.reason, 500)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    own_cohort(&*tx, &caller, id).await?;
    let found = tx
        .query_opt(
            "SELECT reference, kind, occurred_on FROM comparison_events WHERE id = $1 AND cohort_id = $2",
            &[&event, &id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {event} of cohort {id}")))?;
    let at: chrono::DateTime<chrono::Utc> = match tx
        .query_one(
            "INSERT INTO comparison_event_withdrawals (event_id, reason, recorded_by)
             VALUES ($1, $2, $3) RETURNING recorded_at",
            &[&event, &b.reason.trim(), &caller.user_id],
        )
        .await
    {
        Ok(r) => r.get(0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            return Err(ApiError::Conflict(format!(
                "event {event} is already withdrawn"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "comparison_event.withdraw",
            "comparison_cohort",
            id,
            serde_json::json!({"event_id": event, "reference": found.get::<_, String>(0),
                               "kind": found.get::<_, String>(1),
                               "occurred_on": found.get::<_, NaiveDate>(2), "reason": b.reason.trim()}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(EventWithdrawn {
        id: event,
        withdrawn_at: at,
    }))
}
