//! Visits: the list, one visit with its adjustment history, exceptions, the office's
//! corrections and manual entries. What a visit shows is [`crate::evv::view`]'s; this file
//! loads the rows and records the office's changes.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{bounds, scope, writer};
use crate::auth::{Caller, Visibility};
use crate::evv::derive::{self, CheckRecord};
use crate::evv::figures::VISIT_AT;
use crate::evv::missed;
use crate::evv::view::{visit_view, ExceptionKind, Times, VisitRecord, VisitView};
use crate::evv::{AdjustmentKind, AdjustmentReason};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState, FieldError};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_visits)
        .service(list_exceptions)
        .service(manual_entry)
        .service(read_visit)
        .service(adjust);
}

/// The condition that a commissioner (the query parameter `param`, NULL for providers) funds
/// the visit's person on the visit's day (UTC): see `homeward_funded` in migration 0008.
fn visit_funded(param: &str) -> String {
    format!(
        "({param}::int IS NULL OR homeward_funded({param}, v.organisation_id, v.person_id,
            ({VISIT_AT} AT TIME ZONE 'UTC')::date))"
    )
}

const VISIT_SELECT: &str = "SELECT v.id, v.organisation_id, v.visit_key, v.device_id, v.worker_id,
        v.person_id, v.scheduled_visit_id, v.match_method, v.check_in, v.check_out, v.started_at,
        v.ended_at, v.superseded, v.adjusted_start, v.adjusted_end, v.adjustments,
        v.resolution_code, s.reference, s.service_type, s.window_start, s.window_end, s.outcomes,
        p.external_ref AS person_ref, p.pseudonym, p.display_name AS person_name,
        w.external_ref AS worker_ref, w.display_name AS worker_name
   FROM visits v
   LEFT JOIN scheduled_visits s ON s.id = v.scheduled_visit_id
   LEFT JOIN people p ON p.id = v.person_id
   LEFT JOIN workers w ON w.id = v.worker_id";

/// A row of [`VISIT_SELECT`] as the view takes it. A check that no longer reads as a
/// [`CheckRecord`] is shown as absent.
fn record(r: &tokio_postgres::Row) -> VisitRecord {
    let check = |column: &str| {
        r.get::<_, Option<serde_json::Value>>(column)
            .and_then(|v| serde_json::from_value::<CheckRecord>(v).ok())
    };
    VisitRecord {
        id: r.get("id"),
        provider_id: r.get("organisation_id"),
        person_id: r.get("person_id"),
        worker_id: r.get("worker_id"),
        scheduled_visit_id: r.get("scheduled_visit_id"),
        match_method: r.get("match_method"),
        check_in: check("check_in"),
        check_out: check("check_out"),
        raw: Times {
            start: r.get("started_at"),
            end: r.get("ended_at"),
        },
        adjusted: Times {
            start: r.get("adjusted_start"),
            end: r.get("adjusted_end"),
        },
        superseded: r.get("superseded"),
        adjustments: r.get("adjustments"),
        resolution_code: r.get("resolution_code"),
        scheduled_reference: r.get("reference"),
        service_type: r.get("service_type"),
        window_start: r.get("window_start"),
        window_end: r.get("window_end"),
        outcomes: r
            .get::<_, Option<Vec<String>>>("outcomes")
            .unwrap_or_default(),
        person_ref: r.get("person_ref"),
        pseudonym: r.get("pseudonym"),
        person_name: r.get("person_name"),
        worker_ref: r.get("worker_ref"),
        worker_name: r.get("worker_name"),
    }
}

/// Where a page of visits starts and how many it holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct VisitPage {
    /// The last visit of the previous page.
    pub after: Option<i64>,
    /// At most this many rows are loaded (one more than the page, to know there is more).
    pub rows: i64,
}

/// The visits in scope filed in `[from, to)` ([`VISIT_AT`]), in that order (then by id); all of
/// them without a `page` (the range is at most 93 days), else those after `page.after`.
pub(super) async fn load_visits(
    client: &impl GenericClient,
    scope: &Visibility,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    unmatched_only: bool,
    page: Option<VisitPage>,
) -> Result<Vec<VisitRecord>, ApiError> {
    load_visits_of(client, scope, from, to, unmatched_only, None, page).await
}

/// [`load_visits`], of one person only when `person` is given.
async fn load_visits_of(
    client: &impl GenericClient,
    scope: &Visibility,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    unmatched_only: bool,
    person: Option<i32>,
    page: Option<VisitPage>,
) -> Result<Vec<VisitRecord>, ApiError> {
    let after = page.and_then(|p| p.after);
    // The position of the visit named by `after` in the list's order.
    let cursor: Option<DateTime<Utc>> = match after {
        None => None,
        Some(id) => client
            .query_opt(
                &format!(
                    "SELECT {VISIT_AT} FROM visits v
                      WHERE v.id = $1 AND v.organisation_id = ANY($2) AND {}",
                    visit_funded("$3")
                ),
                &[&id, &scope.providers(), &scope.funded_by()],
            )
            .await?
            .and_then(|r| r.get(0))
            .map(Some)
            .ok_or_else(crate::http::paging::unknown_after)?,
    };
    let rows = client
        .query(
            &format!(
                "{VISIT_SELECT}
                  WHERE v.organisation_id = ANY($1)
                    AND {VISIT_AT} >= $2 AND {VISIT_AT} < $3
                    AND (NOT $4 OR v.scheduled_visit_id IS NULL)
                    AND ($6::int IS NULL OR v.person_id = $6)
                    AND {}
                    AND ($7::timestamptz IS NULL OR ({VISIT_AT}, v.id) > ($7, $8))
                  ORDER BY {VISIT_AT}, v.id
                  LIMIT $9",
                visit_funded("$5")
            ),
            &[
                &scope.providers(),
                &from,
                &to,
                &unmatched_only,
                &scope.funded_by(),
                &person,
                &cursor,
                &after,
                &page.map(|p| p.rows),
            ],
        )
        .await?;
    Ok(rows.iter().map(record).collect())
}

/// The visits filed in `[from, to)` that `GET /v1/visits` would list for `caller` (of one
/// person when `person` is given), as it shows them at `now`: the same roles, scope and view.
pub async fn visits_between(
    state: &AppState,
    caller: &Caller,
    client: &deadpool_postgres::Client,
    range: (DateTime<Utc>, DateTime<Utc>),
    person: Option<i32>,
    now: DateTime<Utc>,
) -> Result<Vec<VisitView>, ApiError> {
    let scope = scope(caller, client).await?;
    let rows = load_visits_of(client, &scope, range.0, range.1, false, person, None).await?;
    Ok(rows
        .into_iter()
        .map(|r| visit_view(r, scope.pseudonymise(), &state.settings.evv, now))
        .collect())
}

/// Which visits a list shows: those filed in the range.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct VisitsQuery {
    /// The start of the range (inclusive); default `to` less 8 days.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    from: Option<DateTime<Utc>>,
    /// The end of the range (exclusive), after `from`, at most 93 days on; default tomorrow
    /// at this time.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    to: Option<DateTime<Utc>>,
    /// `true` lists the office's queue (visits matching no scheduled visit).
    unmatched: Option<bool>,
    /// The last id of the previous page: the page goes on after that visit in the list's
    /// order (its time as it is now, then id).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (1 to 1000, default 200).
    #[param(minimum = 1, maximum = 1000, default = 200)]
    limit: Option<i64>,
}

/// A page of visits.
#[derive(Serialize, ToSchema)]
struct VisitList {
    /// Oldest first (then by id); each as `GET /v1/visits/{id}` shows it without
    /// `adjustment_history`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<VisitView>,
    /// `after` for the next page; null on the last one.
    next_after: Option<i64>,
}

const VISIT_LIMITS: crate::http::paging::Limits = crate::http::paging::Limits {
    default: 200,
    max: 1000,
};

/// Visits in the range, oldest first, a page at a time. Commissioners see the visits of the
/// people they fund, pseudonymised.
#[utoipa::path(
    operation_id = "list_visits",
    tag = "visits",
    params(VisitsQuery),
    responses(
        (status = 200, description = "A page of the visits.", body = VisitList,
            links(("visit" = (operation_id = "get_visit",
                parameters(("id" = "$response.body#/items/0/id")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/visits")]
async fn list_visits(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<VisitsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = bounds(query.from, query.to)?;
    let limit = VISIT_LIMITS.check(query.limit)?;
    let client = state.db(&caller).await?;
    let scope = scope(&caller, &client).await?;
    let page = VisitPage {
        after: query.after,
        rows: limit + 1,
    };
    let unmatched = query.unmatched.unwrap_or(false);
    let rows = load_visits(&client, &scope, from, to, unmatched, Some(page)).await?;
    crate::audit::read_by_commissioner(
        &**client,
        &caller,
        "visits",
        serde_json::json!({"from": from, "to": to, "after": query.after,
                           "rows": rows.len().min(limit as usize)}),
    )
    .await?;
    let now = Utc::now();
    let items: Vec<VisitView> = rows
        .into_iter()
        .map(|r| visit_view(r, scope.pseudonymise(), &state.settings.evv, now))
        .collect();
    let page = crate::http::paging::Page::from_rows(items, limit, |v: &VisitView| v.id);
    Ok(HttpResponse::Ok().json(VisitList {
        items: page.items,
        next_after: page.next_after,
    }))
}

/// One visit with the office's adjustments.
#[utoipa::path(
    operation_id = "get_visit",
    tag = "visits",
    params(("id" = i64, Path, description = "The visit's id.")),
    responses(
        (status = 200, description = "The visit: raw and adjusted times, checks with their \
            verdicts, exceptions, context, and `adjustment_history`.", body = Object),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/visits/{id:\\d+}")]
async fn read_visit(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let client = state.db(&caller).await?;
    let (view, history) = visit_detail(&state, &caller, &client, path.into_inner()).await?;
    let mut body = serde_json::to_value(&view).map_err(|e| ApiError::Unexpected(e.into()))?;
    body["adjustment_history"] = serde_json::Value::Array(history);
    Ok(HttpResponse::Ok().json(body))
}

/// One visit as `GET /v1/visits/{id}` shows it, and its `adjustment_history` (oldest
/// first): the same roles, scope and view.
pub async fn visit_detail(
    state: &AppState,
    caller: &Caller,
    client: &deadpool_postgres::Client,
    id: i64,
) -> Result<(VisitView, Vec<serde_json::Value>), ApiError> {
    let scope = scope(caller, client).await?;
    let row = client
        .query_opt(
            &format!(
                "{VISIT_SELECT} WHERE v.organisation_id = ANY($1) AND v.id = $2
                   AND {}",
                visit_funded("$3")
            ),
            &[&scope.providers(), &id, &scope.funded_by()],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("visit".into()))?;
    let key: String = row.get("visit_key");
    crate::audit::read_by_commissioner(
        &***client,
        caller,
        "visit",
        serde_json::json!({"visit_id": row.get::<_, i64>("id")}),
    )
    .await?;
    let view = visit_view(
        record(&row),
        scope.pseudonymise(),
        &state.settings.evv,
        Utc::now(),
    );
    let manual_id = key.strip_prefix("m:").and_then(|id| id.parse::<i64>().ok());
    let history = client
        .query(
            "SELECT a.id, a.kind, a.adjusted_start, a.adjusted_end, a.scheduled_visit_id,
                    a.reason_code, a.memo, a.resolution_code, u.name, a.recorded_at
               FROM visit_adjustments a JOIN users u ON u.id = a.recorded_by
              WHERE a.organisation_id = $1 AND (a.visit_key = $2 OR a.id = $3)
              ORDER BY a.id",
            &[&view.provider_id, &key, &manual_id],
        )
        .await?;
    let history: Vec<_> = history
        .iter()
        .map(|a| {
            serde_json::json!({
                "id": a.get::<_, i64>(0), "kind": a.get::<_, String>(1),
                "start": a.get::<_, Option<DateTime<Utc>>>(2), "end": a.get::<_, Option<DateTime<Utc>>>(3),
                "scheduled_visit_id": a.get::<_, Option<i64>>(4),
                "reason_code": a.get::<_, String>(5),
                "memo": if scope.pseudonymise() { None } else { a.get::<_, Option<String>>(6) },
                "resolution_code": a.get::<_, Option<String>>(7),
                "recorded_by": a.get::<_, String>(8), "recorded_at": a.get::<_, DateTime<Utc>>(9),
            })
        })
        .collect();
    Ok((view, history))
}

/// A correction of a visit: at least one of `start`, `end`, `scheduled_visit_id` and
/// `resolution_code`; `end` not before the start.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdjustment {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// Matches a visit from the office's queue to a scheduled visit.
    pub scheduled_visit_id: Option<i64>,
    #[schema(value_type = AdjustmentReason)]
    pub reason_code: String,
    /// Required with reason `other`.
    #[schema(max_length = 2000)]
    pub memo: Option<String>,
    #[schema(pattern = "^[a-z_]{1,40}$")]
    pub resolution_code: Option<String>,
}

/// An adjustment as recorded.
#[derive(Serialize, ToSchema)]
pub struct AdjustmentRecorded {
    pub id: i64,
    pub visit_key: String,
}

/// A manual entry as recorded, with the visit it made.
#[derive(Serialize, ToSchema)]
struct ManualRecorded {
    id: i64,
    visit_id: i64,
}

#[derive(Serialize, ToSchema)]
struct ExceptionList {
    items: Vec<ExceptionItem>,
}

/// An exception: on a visit, or a scheduled visit nobody checked in to.
#[derive(Serialize, ToSchema)]
pub struct ExceptionItem {
    #[serde(rename = "type")]
    #[schema(inline)]
    pub kind: ExceptionKind,
    /// `fix` (times must be supplied) or `acknowledge`.
    pub needs: &'static str,
    pub resolved: bool,
    pub visit_id: Option<i64>,
    pub scheduled_visit_id: Option<i64>,
    pub provider_id: i32,
    pub person: Option<String>,
    pub worker: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

fn check_reason(reason: &str, memo: &Option<String>, manual: bool, errors: &mut Vec<FieldError>) {
    let reason = AdjustmentReason::parse(reason);
    if reason.is_none() {
        errors.push(FieldError::new(
            "reason_code",
            format!("must be one of {}", AdjustmentReason::texts()),
        ));
    }
    let memo_empty = memo.as_deref().map(str::trim).is_none_or(str::is_empty);
    if memo_empty && (reason == Some(AdjustmentReason::Other) || manual) {
        errors.push(FieldError::new(
            "memo",
            if manual {
                "a manual entry needs a memo"
            } else {
                "reason_code \"other\" needs a memo"
            },
        ));
    }
    if memo.as_ref().is_some_and(|m| m.len() > 2000) {
        errors.push(FieldError::new("memo", "at most 2000 bytes"));
    }
}

async fn scheduled_in_org(
    tx: &impl GenericClient,
    org: i32,
    id: i64,
) -> Result<Option<tokio_postgres::Row>, ApiError> {
    Ok(tx
        .query_opt(
            "SELECT id, window_start, window_end FROM scheduled_visits WHERE organisation_id = $1 AND id = $2",
            &[&org, &id],
        )
        .await?)
}

/// Records a correction. The raw events stay as they are; the visit shows both.
#[utoipa::path(
    operation_id = "adjust_visit",
    tag = "visits",
    params(("id" = i64, Path, description = "The visit's id.")),
    request_body = NewAdjustment,
    responses(
        (status = 201, description = "Recorded; the visit shows it.", body = AdjustmentRecorded),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[post("/v1/visits/{id:\\d+}/adjustments")]
async fn adjust(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: crate::http::Json<NewAdjustment>,
) -> Result<HttpResponse, ApiError> {
    let recorded = apply_adjustment(&state, &caller, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(recorded))
}

/// Checks and records a correction of the caller's visit `id` with its audit row, derives the
/// visit again and clears the missed-visit alerts it answers: the function behind
/// `POST /v1/visits/{id}/adjustments`, which the console's visit page calls too.
pub async fn apply_adjustment(
    state: &AppState,
    caller: &Caller,
    id: i64,
    a: NewAdjustment,
) -> Result<AdjustmentRecorded, ApiError> {
    writer(caller)?;
    crate::http::dates::check_time("start", a.start)?;
    crate::http::dates::check_time("end", a.end)?;
    let org = caller.organisation_id;
    let mut errors = Vec::new();
    check_reason(&a.reason_code, &a.memo, false, &mut errors);
    if a.start.is_none()
        && a.end.is_none()
        && a.scheduled_visit_id.is_none()
        && a.resolution_code.is_none()
    {
        errors.push(FieldError::new(
            "",
            "give start, end, scheduled_visit_id or resolution_code",
        ));
    }
    if a.resolution_code.as_deref().is_some_and(|c| {
        c.is_empty() || c.len() > 40 || !c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    }) {
        errors.push(FieldError::new(
            "resolution_code",
            "must be 1 to 40 of a-z and _",
        ));
    }
    let mut client = state.db(caller).await?;
    let tx = client.transaction().await?;
    let visit = tx
        .query_opt(
            "SELECT visit_key, device_id, coalesce(adjusted_start, started_at), coalesce(adjusted_end, ended_at)
               FROM visits WHERE organisation_id = $1 AND id = $2 FOR UPDATE",
            &[&org, &id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("visit".into()))?;
    let key: String = visit.get(0);
    let device: Option<i32> = visit.get(1);
    let start = a.start.or(visit.get(2));
    let end = a.end.or(visit.get(3));
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            errors.push(FieldError::new("end", "must not be before the start"));
        }
    }
    if let Some(s) = a.scheduled_visit_id {
        if scheduled_in_org(&tx, org, s).await?.is_none() {
            errors.push(FieldError::new(
                "scheduled_visit_id",
                "no such scheduled visit in your organisation",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let manual = key.strip_prefix("m:").and_then(|m| m.parse::<i64>().ok());
    let adjustment_id: i64 = tx
        .query_one(
            "INSERT INTO visit_adjustments (organisation_id, kind, visit_key, scheduled_visit_id,
                 adjusted_start, adjusted_end, reason_code, memo, resolution_code, recorded_by)
             VALUES ($1, $10, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[
                &org,
                &key,
                &a.scheduled_visit_id,
                &a.start,
                &a.end,
                &a.reason_code,
                &a.memo,
                &a.resolution_code,
                &caller.user_id,
                &AdjustmentKind::Correction.as_str(),
            ],
        )
        .await?
        .get(0);
    let before: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (visit.get(2), visit.get(3));
    crate::audit::by(
        &*tx,
        caller,
        crate::audit::Entry::new(
            org,
            "visit.adjust",
            "visit",
            id,
            serde_json::json!({
                "adjustment_id": adjustment_id,
                "before": {"start": before.0, "end": before.1},
                "after": {"start": start, "end": end},
                "scheduled_visit_id": a.scheduled_visit_id,
                "reason_code": a.reason_code,
                "memo": a.memo,
                "resolution_code": a.resolution_code,
            }),
        ),
    )
    .await?;
    match (device, manual) {
        (Some(d), _) => derive::derive_device(&tx, &state.settings.evv, d).await?,
        (None, Some(m)) => derive::derive_manual_entry(&tx, m).await?,
        (None, None) => {}
    }
    let now = Utc::now();
    let cleared = missed::clear_in(&tx, now, Some(org)).await?;
    tx.commit().await?;
    missed::publish(&state.live, now, &cleared);
    Ok(AdjustmentRecorded {
        id: adjustment_id,
        visit_key: key,
    })
}

/// A visit entered by the office; `end` not before `start`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ManualEntry {
    scheduled_visit_id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    #[schema(value_type = AdjustmentReason)]
    reason_code: String,
    /// Required.
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    memo: Option<String>,
    resolution_code: Option<String>,
}

/// A visit entered by the office, for a scheduled visit with no usable check: reason and memo
/// required. It is kept as an adjustment (there is no raw event to refer to).
#[utoipa::path(
    operation_id = "create_manual_visit",
    tag = "visits",
    request_body = ManualEntry,
    responses(
        (status = 201, description = "Recorded.", body = ManualRecorded,
            links(("visit" = (operation_id = "get_visit",
                parameters(("id" = "$response.body#/visit_id")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[post("/v1/visits/manual")]
async fn manual_entry(
    caller: Caller,
    state: web::Data<AppState>,
    body: crate::http::Json<ManualEntry>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let m = body.into_inner();
    crate::http::dates::check_time("start", Some(m.start))?;
    crate::http::dates::check_time("end", Some(m.end))?;
    let org = caller.organisation_id;
    let mut errors = Vec::new();
    check_reason(&m.reason_code, &m.memo, true, &mut errors);
    if m.end < m.start {
        errors.push(FieldError::new("end", "must not be before start"));
    }
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    if scheduled_in_org(&tx, org, m.scheduled_visit_id)
        .await?
        .is_none()
    {
        errors.push(FieldError::new(
            "scheduled_visit_id",
            "no such scheduled visit in your organisation",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let adjustment_id: i64 = tx
        .query_one(
            "INSERT INTO visit_adjustments (organisation_id, kind, scheduled_visit_id,
                 adjusted_start, adjusted_end, reason_code, memo, resolution_code, recorded_by)
             VALUES ($1, $9, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &org,
                &m.scheduled_visit_id,
                &m.start,
                &m.end,
                &m.reason_code,
                &m.memo,
                &m.resolution_code,
                &caller.user_id,
                &AdjustmentKind::ManualEntry.as_str(),
            ],
        )
        .await?
        .get(0);
    derive::derive_manual_entry(&tx, adjustment_id).await?;
    let visit_id: i64 = tx
        .query_one(
            "SELECT id FROM visits WHERE visit_key = $1",
            &[&derive::manual_key(adjustment_id)],
        )
        .await?
        .get(0);
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org,
            "visit.manual_entry",
            "visit",
            visit_id,
            serde_json::json!({
                "adjustment_id": adjustment_id,
                "scheduled_visit_id": m.scheduled_visit_id,
                "start": m.start,
                "end": m.end,
                "reason_code": m.reason_code,
                "memo": m.memo,
                "resolution_code": m.resolution_code,
            }),
        ),
    )
    .await?;
    let now = Utc::now();
    let cleared = missed::clear_in(&tx, now, Some(org)).await?;
    tx.commit().await?;
    missed::publish(&state.live, now, &cleared);
    Ok(HttpResponse::Created().json(ManualRecorded {
        id: adjustment_id,
        visit_id,
    }))
}

/// Which exceptions a list shows.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExceptionsQuery {
    /// The start of the range (inclusive); default `to` less 8 days.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    from: Option<DateTime<Utc>>,
    /// The end of the range (exclusive), after `from`, at most 93 days on; default tomorrow
    /// at this time.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    to: Option<DateTime<Utc>>,
    /// Include those already resolved.
    include_resolved: Option<bool>,
}

/// What needs fixing or acknowledging in the range: exceptions of visits, and scheduled
/// visits past their grace with no check-in.
#[utoipa::path(
    operation_id = "list_visit_exceptions",
    tag = "visits",
    params(ExceptionsQuery),
    responses(
        (status = 200, description = "The exceptions.", body = ExceptionList),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/visits/exceptions")]
async fn list_exceptions(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ExceptionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = bounds(query.from, query.to)?;
    let include_resolved = query.include_resolved.unwrap_or(false);
    let client = state.db(&caller).await?;
    let items = exceptions_between(&state, &caller, &client, (from, to), include_resolved).await?;
    Ok(HttpResponse::Ok().json(ExceptionList { items }))
}

/// What needs fixing or acknowledging among the visits filed in `[from, to)`, as
/// `GET /v1/visits/exceptions` lists it: the same roles, scope and rules.
pub async fn exceptions_between(
    state: &AppState,
    caller: &Caller,
    client: &deadpool_postgres::Client,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    include_resolved: bool,
) -> Result<Vec<ExceptionItem>, ApiError> {
    let scope = scope(caller, client).await?;
    let settings = &state.settings.evv;
    let now = Utc::now();
    let rows = load_visits(client, &scope, from, to, false, None).await?;
    crate::audit::read_by_commissioner(
        &***client,
        caller,
        "visit_exceptions",
        serde_json::json!({"from": from, "to": to, "rows": rows.len()}),
    )
    .await?;
    let mut items = Vec::new();
    for r in rows {
        let v = visit_view(r, scope.pseudonymise(), settings, now);
        for e in &v.exceptions {
            if include_resolved || !e.resolved {
                items.push(ExceptionItem {
                    kind: e.kind,
                    needs: e.needs,
                    resolved: e.resolved,
                    visit_id: Some(v.id),
                    scheduled_visit_id: v.scheduled_visit_id,
                    provider_id: v.provider_id,
                    person: v.person.clone(),
                    worker: v.worker.clone(),
                    at: v.start.or(v.end),
                });
            }
        }
    }
    // Scheduled visits nobody checked in to (and the office has not recorded).
    let grace = Duration::minutes(i64::from(settings.missed_visit_grace_minutes));
    let missing = client
        .query(
            "SELECT s.id, s.organisation_id, s.window_start, p.external_ref, p.pseudonym, s.worker_id, w.external_ref
               FROM scheduled_visits s JOIN people p ON p.id = s.person_id
               LEFT JOIN workers w ON w.id = s.worker_id
              WHERE s.organisation_id = ANY($1) AND s.cancelled_at IS NULL
                AND ($6::int IS NULL OR homeward_funded($6, s.organisation_id, s.person_id,
                                                       (s.window_start AT TIME ZONE 'UTC')::date))
                AND s.window_start >= $2 AND s.window_start < $3
                AND s.window_start + ($4::float8 * interval '1 second') < $5
                AND NOT EXISTS (SELECT 1 FROM visits v WHERE v.scheduled_visit_id = s.id
                                  AND (v.started_at IS NOT NULL OR v.adjusted_start IS NOT NULL))
              ORDER BY s.window_start, s.id",
            &[
                &scope.providers(),
                &from,
                &to,
                &(grace.num_seconds() as f64),
                &now,
                &scope.funded_by(),
            ],
        )
        .await?;
    for s in &missing {
        let worker_id: Option<i32> = s.get(5);
        items.push(ExceptionItem {
            kind: ExceptionKind::MissingCheckIn,
            needs: "fix",
            resolved: false,
            visit_id: None,
            scheduled_visit_id: Some(s.get(0)),
            provider_id: s.get(1),
            person: Some(if scope.pseudonymise() {
                s.get(4)
            } else {
                s.get(3)
            }),
            worker: if scope.pseudonymise() {
                worker_id.map(|w| format!("W{w}"))
            } else {
                s.get(6)
            },
            at: Some(s.get(2)),
        });
    }
    Ok(items)
}
