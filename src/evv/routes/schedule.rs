//! Scheduled visits: what should happen, when, for whom. No minutes to bill.

use actix_web::{get, patch, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{bounds, rederive, writer};
use crate::auth::Caller;
use crate::evv::{derive, missed};
use crate::http::openapi as doc;
use crate::http::paging::{self, Page};
use crate::http::{ApiError, AppState, FieldError};
use crate::people::{self, store as people_store};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_scheduled)
        .service(list_scheduled)
        .service(update_scheduled)
        .service(cancel_scheduled);
}

/// A visit to be made: when, for whom, by whom if known.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewScheduled {
    /// The provider's reference of the visit, unique in the organisation; phones send it.
    #[schema(pattern = "^[A-Za-z0-9._:+-]{1,64}$")]
    reference: String,
    /// A person of the organisation.
    person_id: i32,
    /// A worker of the organisation.
    worker_id: Option<i32>,
    window_start: DateTime<Utc>,
    /// After `window_start`.
    window_end: DateTime<Utc>,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    service_type: String,
    /// The outcomes the visit serves, each 1 to 100 characters.
    #[serde(default)]
    #[schema(inline, value_type = Vec<OutcomeName>)]
    outcomes: Vec<String>,
}

/// An outcome's name.
#[derive(ToSchema)]
#[schema(min_length = 1, max_length = 100)]
#[allow(dead_code)]
struct OutcomeName(String);

/// A scheduled visit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Scheduled {
    pub id: i64,
    pub reference: String,
    pub person_id: i32,
    pub worker_id: Option<i32>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub service_type: String,
    pub outcomes: Vec<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ScheduledList {
    /// By window start, then id.
    items: Vec<Scheduled>,
    /// `after` for the next page; null on the last one.
    next_after: Option<i64>,
}

/// Which scheduled visits a list shows: those whose window starts in the range.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ScheduledQuery {
    /// The start of the range (inclusive); default `to` less 8 days.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    from: Option<DateTime<Utc>>,
    /// The end of the range (exclusive), after `from`, at most 93 days on; default tomorrow
    /// at this time.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    to: Option<DateTime<Utc>>,
    /// The last id of the previous page: the page goes on after that scheduled visit in the
    /// list's order (its window start as it is now, then id).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (1 to 1000, default 200).
    #[param(minimum = 1, maximum = 1000, default = 200)]
    limit: Option<i64>,
}

const SCHEDULED_COLUMNS: &str = "id, reference, person_id, worker_id, window_start, window_end,
     service_type, outcomes, cancelled_at, cancel_reason";

fn scheduled_json(r: &tokio_postgres::Row) -> Scheduled {
    Scheduled {
        id: r.get("id"),
        reference: r.get("reference"),
        person_id: r.get("person_id"),
        worker_id: r.get("worker_id"),
        window_start: r.get("window_start"),
        window_end: r.get("window_end"),
        service_type: r.get("service_type"),
        outcomes: r.get("outcomes"),
        cancelled_at: r.get("cancelled_at"),
        cancel_reason: r.get("cancel_reason"),
    }
}

/// The caller's scheduled visits for `person` whose window opened in `[from, to)` and that no
/// visit matches (no one checked in, or cancelled), oldest first, at most 1,000: for the
/// person's timeline, beside the visits that happened. Provider admins and staff.
pub async fn unvisited_of(
    client: &deadpool_postgres::Client,
    caller: &Caller,
    person: i32,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Vec<Scheduled>, ApiError> {
    writer(caller)?;
    let rows = client
        .query(
            &format!(
                "SELECT {SCHEDULED_COLUMNS} FROM scheduled_visits s
                  WHERE organisation_id = $1 AND person_id = $2
                    AND window_start >= $3 AND window_start < $4
                    AND NOT EXISTS (SELECT 1 FROM visits v WHERE v.scheduled_visit_id = s.id)
                  ORDER BY window_start, id LIMIT 1000"
            ),
            &[&caller.organisation_id, &person, &from, &to],
        )
        .await?;
    Ok(rows.iter().map(scheduled_json).collect())
}

/// Schedules a visit. Check-ins already received that it matches become its visit.
#[utoipa::path(
    operation_id = "create_scheduled_visit",
    tag = "visits",
    request_body = NewScheduled,
    responses(
        (status = 201, description = "Scheduled.", body = Scheduled,
            links(
                ("cancel" = (operation_id = "cancel_scheduled_visit",
                    parameters(("id" = "$response.body#/id")))),
                ("manual_entry" = (operation_id = "create_manual_visit",
                    request_body = json!({ "scheduled_visit_id": "$response.body#/id" }))),
            )),
        doc::Forbidden,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/scheduled-visits")]
async fn create_scheduled(
    caller: Caller,
    state: web::Data<AppState>,
    body: crate::http::Json<NewScheduled>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let s = body.into_inner();
    crate::http::dates::check_time("window_start", Some(s.window_start))?;
    crate::http::dates::check_time("window_end", Some(s.window_end))?;
    let mut errors = Vec::new();
    if !people::valid_reference(&s.reference) {
        errors.push(FieldError::new(
            "reference",
            "must be 1 to 64 of A-Z a-z 0-9 . _ : + -",
        ));
    }
    if s.window_end <= s.window_start {
        errors.push(FieldError::new("window_end", "must be after window_start"));
    }
    if s.service_type.trim().is_empty() || s.service_type.len() > 100 {
        errors.push(FieldError::new(
            "service_type",
            "must be 1 to 100 characters",
        ));
    }
    for (i, o) in s.outcomes.iter().enumerate() {
        if o.is_empty() || o.len() > 100 {
            errors.push(FieldError::new(
                format!("outcomes[{i}]"),
                "must be 1 to 100 characters",
            ));
        }
    }
    let org = caller.organisation_id;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    if !people_store::person_exists(&tx, org, s.person_id).await? {
        errors.push(FieldError::new(
            "person_id",
            "no such person in your organisation",
        ));
    }
    if let Some(w) = s.worker_id {
        if !people_store::worker_exists(&tx, org, w).await? {
            errors.push(FieldError::new(
                "worker_id",
                "no such worker in your organisation",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO scheduled_visits (organisation_id, reference, person_id, worker_id,
                                               window_start, window_end, service_type, outcomes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {SCHEDULED_COLUMNS}"
            ),
            &[
                &org,
                &s.reference,
                &s.person_id,
                &s.worker_id,
                &s.window_start,
                &s.window_end,
                &s.service_type.trim(),
                &s.outcomes,
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                ApiError::Conflict(format!("scheduled visit {} already exists", s.reference))
            } else {
                e.into()
            }
        })?;
    let devices =
        derive::devices_near_window(&tx, &state.settings.evv, org, s.window_start, s.window_end)
            .await?;
    let id: i64 = row.get("id");
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org,
            "scheduled_visit.create",
            "scheduled_visit",
            id,
            serde_json::json!({"after": scheduled_json(&row)}),
        ),
    )
    .await?;
    tx.commit().await?;
    // Check-ins that arrived before the schedule (store and forward) now find their match.
    rederive(&state, &caller, &devices, org).await?;
    Ok(HttpResponse::Created().json(scheduled_json(&row)))
}

/// The organisation's scheduled visits whose window starts in the range, in that order, a
/// page at a time.
#[utoipa::path(
    operation_id = "list_scheduled_visits",
    tag = "visits",
    params(ScheduledQuery),
    responses(
        (status = 200, description = "A page of the scheduled visits.", body = ScheduledList),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/scheduled-visits")]
async fn list_scheduled(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ScheduledQuery>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let (from, to) = bounds(query.from, query.to)?;
    let limit = paging::Limits {
        default: 200,
        max: 1000,
    }
    .check(query.limit)?;
    let org = caller.organisation_id;
    let client = state.db(&caller).await?;
    let cursor: Option<DateTime<Utc>> = match query.after {
        None => None,
        Some(after) => Some(
            client
                .query_opt(
                    "SELECT window_start FROM scheduled_visits WHERE organisation_id = $1 AND id = $2",
                    &[&org, &after],
                )
                .await?
                .ok_or_else(paging::unknown_after)?
                .get(0),
        ),
    };
    let rows = client
        .query(
            &format!(
                "SELECT {SCHEDULED_COLUMNS} FROM scheduled_visits
                  WHERE organisation_id = $1 AND window_start >= $2 AND window_start < $3
                    AND ($4::timestamptz IS NULL OR (window_start, id) > ($4, $5))
                  ORDER BY window_start, id LIMIT $6"
            ),
            &[&org, &from, &to, &cursor, &query.after, &(limit + 1)],
        )
        .await?;
    let items = rows.iter().map(scheduled_json).collect();
    let page = Page::from_rows(items, limit, |s: &Scheduled| s.id);
    Ok(HttpResponse::Ok().json(ScheduledList {
        items: page.items,
        next_after: page.next_after,
    }))
}

/// The fields of a scheduled visit that may change; those left out stay. Its person and
/// reference never change (cancel it and schedule another).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduledChange {
    /// A worker of the organisation, or null for none.
    #[serde(default, deserialize_with = "crate::http::json::present")]
    #[schema(value_type = Option<i32>)]
    worker_id: Option<Option<i32>>,
    /// Moves the window: refused (409) once its visit has started.
    window_start: Option<DateTime<Utc>>,
    /// After `window_start` (as changed).
    window_end: Option<DateTime<Utc>>,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    service_type: Option<String>,
    /// The outcomes the visit serves, each 1 to 100 characters.
    #[schema(inline, value_type = Option<Vec<OutcomeName>>)]
    outcomes: Option<Vec<String>>,
}

impl ScheduledChange {
    /// The scheduled visit as changed, or 422 naming each bad field. `before` is as stored.
    fn apply(&self, before: &Scheduled) -> Result<Scheduled, ApiError> {
        crate::http::dates::check_time("window_start", self.window_start)?;
        crate::http::dates::check_time("window_end", self.window_end)?;
        let after = Scheduled {
            worker_id: self.worker_id.unwrap_or(before.worker_id),
            window_start: self.window_start.unwrap_or(before.window_start),
            window_end: self.window_end.unwrap_or(before.window_end),
            service_type: self
                .service_type
                .as_deref()
                .map_or(before.service_type.clone(), |t| t.trim().to_owned()),
            outcomes: self.outcomes.clone().unwrap_or(before.outcomes.clone()),
            ..before.clone()
        };
        let mut errors = Vec::new();
        if after.window_end <= after.window_start {
            let field = if self.window_end.is_some() {
                "window_end"
            } else {
                "window_start"
            };
            errors.push(FieldError::new(
                field,
                "the window must end after it starts",
            ));
        }
        if after.service_type.is_empty() || after.service_type.len() > 100 {
            errors.push(FieldError::new(
                "service_type",
                "must be 1 to 100 characters",
            ));
        }
        for (i, o) in after.outcomes.iter().enumerate() {
            if o.is_empty() || o.len() > 100 {
                errors.push(FieldError::new(
                    format!("outcomes[{i}]"),
                    "must be 1 to 100 characters",
                ));
            }
        }
        if errors.is_empty() {
            Ok(after)
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// Changes a scheduled visit: its worker, window, service type or outcomes. A cancelled one,
/// or a move of the window once its visit has started, is refused (409). Moving the window
/// withdraws a missed-visit alert raised for the old one (pushed on the live stream as
/// `missed_visit`, cleared with the reason `rescheduled`); check-ins are matched again.
#[utoipa::path(
    operation_id = "update_scheduled_visit",
    tag = "visits",
    params(("id" = i64, Path, description = "The scheduled visit's id.")),
    request_body = ScheduledChange,
    responses(
        (status = 200, description = "Changed (or unchanged: nothing differed).", body = Scheduled),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[patch("/v1/scheduled-visits/{id}")]
async fn update_scheduled(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: crate::http::Json<ScheduledChange>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let id = path.into_inner();
    let org = caller.organisation_id;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let before = tx
        .query_opt(
            &format!(
                "SELECT {SCHEDULED_COLUMNS} FROM scheduled_visits
                  WHERE organisation_id = $1 AND id = $2 FOR UPDATE"
            ),
            &[&org, &id],
        )
        .await?
        .map(|r| scheduled_json(&r))
        .ok_or_else(|| ApiError::NotFound("scheduled visit".into()))?;
    let after = body.apply(&before)?;
    if let Some(Some(w)) = body.worker_id {
        if !people_store::worker_exists(&tx, org, w).await? {
            return Err(ApiError::invalid(
                "worker_id",
                "no such worker in your organisation",
            ));
        }
    }
    if before.cancelled_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "scheduled visit {id} is cancelled; schedule another visit instead"
        )));
    }
    let moved = after.window_start != before.window_start || after.window_end != before.window_end;
    if moved {
        refuse_if_started(&tx, id).await?;
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE scheduled_visits
                    SET worker_id = $3, window_start = $4, window_end = $5, service_type = $6,
                        outcomes = $7
                  WHERE organisation_id = $1 AND id = $2 RETURNING {SCHEDULED_COLUMNS}"
            ),
            &[
                &org,
                &id,
                &after.worker_id,
                &after.window_start,
                &after.window_end,
                &after.service_type,
                &after.outcomes,
            ],
        )
        .await?;
    let after = scheduled_json(&row);
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org,
            "scheduled_visit.update",
            "scheduled_visit",
            id,
            serde_json::json!({"before": before, "after": after}),
        ),
    )
    .await?;
    let withdrawn = if moved {
        missed::withdraw_in(&tx, id).await?
    } else {
        Vec::new()
    };
    let settings = &state.settings.evv;
    let mut devices = Vec::new();
    for (start, end) in [
        (before.window_start, before.window_end),
        (after.window_start, after.window_end),
    ] {
        devices.extend(derive::devices_near_window(&tx, settings, org, start, end).await?);
    }
    devices.sort_unstable();
    devices.dedup();
    tx.commit().await?;
    missed::publish(&state.live, Utc::now(), &withdrawn);
    rederive(&state, &caller, &devices, org).await?;
    Ok(HttpResponse::Ok().json(after))
}

/// 409 when a visit of this scheduled visit has started or finished: its window is history.
async fn refuse_if_started(
    tx: &impl deadpool_postgres::GenericClient,
    id: i64,
) -> Result<(), ApiError> {
    let started: Option<DateTime<Utc>> = tx
        .query_opt(
            "SELECT coalesce(v.adjusted_start, v.started_at, v.adjusted_end, v.ended_at)
               FROM visits v
              WHERE v.scheduled_visit_id = $1 AND NOT v.superseded
                AND coalesce(v.adjusted_start, v.started_at, v.adjusted_end, v.ended_at) IS NOT NULL
              ORDER BY 1 LIMIT 1",
            &[&id],
        )
        .await?
        .map(|r| r.get(0));
    match started {
        Some(at) => Err(ApiError::Conflict(format!(
            "scheduled visit {id} cannot be moved: its visit started at {}",
            at.format("%Y-%m-%d %H:%M UTC")
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Cancel {
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    reason: String,
}

/// Cancels a scheduled visit (again: no change, the first reason stays).
#[utoipa::path(
    operation_id = "cancel_scheduled_visit",
    tag = "visits",
    params(("id" = i64, Path, description = "The scheduled visit's id.")),
    request_body = Cancel,
    responses(
        (status = 200, description = "Cancelled.", body = Scheduled),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[post("/v1/scheduled-visits/{id}/cancel")]
async fn cancel_scheduled(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: crate::http::Json<Cancel>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    if body.reason.trim().is_empty() || body.reason.len() > 500 {
        return Err(ApiError::invalid("reason", "must be 1 to 500 characters"));
    }
    let org = caller.organisation_id;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE scheduled_visits
                    SET cancelled_at = coalesce(cancelled_at, now()), cancelled_by = coalesce(cancelled_by, $3),
                        cancel_reason = coalesce(cancel_reason, $4)
                  WHERE organisation_id = $1 AND id = $2 RETURNING {SCHEDULED_COLUMNS}"
            ),
            &[&org, &path.into_inner(), &caller.user_id, &body.reason.trim()],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("scheduled visit".into()))?;
    let id: i64 = row.get("id");
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            org,
            "scheduled_visit.cancel",
            "scheduled_visit",
            id,
            serde_json::json!({"reason": body.reason.trim(), "after": scheduled_json(&row)}),
        ),
    )
    .await?;
    let now = Utc::now();
    let cleared = missed::clear_in(&tx, now, Some(org)).await?;
    let devices = derive::devices_near_window(
        &tx,
        &state.settings.evv,
        org,
        row.get("window_start"),
        row.get("window_end"),
    )
    .await?;
    tx.commit().await?;
    missed::publish(&state.live, now, &cleared);
    rederive(&state, &caller, &devices, org).await?;
    Ok(HttpResponse::Ok().json(scheduled_json(&row)))
}
