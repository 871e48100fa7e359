//! HTTP routes of visit verification (documented in docs/visits.md).
//!
//! Providers manage their people, workers and schedule and see their visits with names;
//! commissioners (and their auditors) read the visits of the providers they contract, with
//! people pseudonymised and workers as numbers.

use actix_web::{get, post, put, web, HttpResponse};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};

use super::derive::{self, CheckRecord};
use super::geofence::{GeofencePolicy, Reason};
use super::{missed, EvvSettings};
use crate::auth::{Caller, OrgKind, Role};
use crate::http::{ApiError, AppState, FieldError};

const WRITERS: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff];
const READERS: &[Role] = &[
    Role::ProviderAdmin,
    Role::ProviderStaff,
    Role::Commissioner,
    Role::Auditor,
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_person)
        .service(list_people)
        .service(read_person)
        .service(put_area_policy)
        .service(create_worker)
        .service(list_workers)
        .service(link_phone)
        .service(create_scheduled)
        .service(list_scheduled)
        .service(cancel_scheduled)
        .service(list_visits)
        .service(list_exceptions)
        .service(export)
        .service(manual_entry)
        .service(read_visit)
        .service(adjust)
        .service(list_missed);
}

/// Whose data the caller may read, and whether people must be pseudonymised.
struct Scope {
    orgs: Vec<i32>,
    pseudonymise: bool,
    /// For a commissioner: only people it funds, on days its contract and their service
    /// period cover (`homeward_funded` in the database).
    commissioner: Option<i32>,
}

async fn scope(caller: &Caller, client: &impl GenericClient) -> Result<Scope, ApiError> {
    caller.require(READERS)?;
    match caller.organisation_kind {
        OrgKind::Provider => Ok(Scope {
            orgs: vec![caller.organisation_id],
            pseudonymise: false,
            commissioner: None,
        }),
        OrgKind::Commissioner => {
            let rows = client
                .query(
                    "SELECT DISTINCT provider_id FROM contracts WHERE commissioner_id = $1",
                    &[&caller.organisation_id],
                )
                .await?;
            Ok(Scope {
                orgs: rows.iter().map(|r| r.get(0)).collect(),
                pseudonymise: true,
                commissioner: Some(caller.organisation_id),
            })
        }
    }
}

fn writer(caller: &Caller) -> Result<(), ApiError> {
    caller.require(WRITERS)
}

fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:+-".contains(&b))
}

fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

// ---------------------------------------------------------------- people and workers

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPerson {
    external_ref: String,
    display_name: Option<String>,
    date_of_birth: Option<NaiveDate>,
    home_lat: Option<f64>,
    home_lon: Option<f64>,
    geofence_radius_m: Option<f32>,
    area: Option<String>,
    home_tag: Option<String>,
    home_phone: Option<String>,
    geofence_policy: Option<GeofencePolicy>,
}

const PERSON_COLUMNS: &str =
    "id, external_ref, pseudonym, display_name, date_of_birth, home_lat, home_lon,
     geofence_radius_m, area, home_tag, home_phone, geofence_policy";

fn person_json(r: &tokio_postgres::Row, settings: &EvvSettings) -> serde_json::Value {
    let radius: Option<f32> = r.get("geofence_radius_m");
    serde_json::json!({
        "id": r.get::<_, i32>("id"),
        "external_ref": r.get::<_, String>("external_ref"),
        "pseudonym": r.get::<_, String>("pseudonym"),
        "display_name": r.get::<_, Option<String>>("display_name"),
        "date_of_birth": r.get::<_, Option<NaiveDate>>("date_of_birth"),
        "home_lat": r.get::<_, Option<f64>>("home_lat"),
        "home_lon": r.get::<_, Option<f64>>("home_lon"),
        "geofence_radius_m": radius,
        "effective_geofence_radius_m": radius.map(f64::from).unwrap_or(f64::from(settings.default_geofence_radius_m)),
        "area": r.get::<_, Option<String>>("area"),
        "home_tag": r.get::<_, Option<String>>("home_tag"),
        "home_phone": r.get::<_, Option<String>>("home_phone"),
        "geofence_policy": r.get::<_, Option<String>>("geofence_policy"),
    })
}

#[post("/v1/people")]
async fn create_person(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<NewPerson>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let p = body.into_inner();
    let mut errors = Vec::new();
    if p.external_ref.trim().is_empty() || p.external_ref.len() > 100 {
        errors.push(FieldError::new(
            "external_ref",
            "must be 1 to 100 characters",
        ));
    }
    match (p.home_lat, p.home_lon) {
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) {
                errors.push(FieldError::new("home_lat", "must be between -90 and 90"));
            }
            if !(-180.0..=180.0).contains(&lon) {
                errors.push(FieldError::new("home_lon", "must be between -180 and 180"));
            }
        }
        (None, None) => {}
        (Some(_), None) => errors.push(FieldError::new(
            "home_lon",
            "give home_lat and home_lon together",
        )),
        (None, Some(_)) => errors.push(FieldError::new(
            "home_lat",
            "give home_lat and home_lon together",
        )),
    }
    if let Some(r) = p.geofence_radius_m {
        // EVV systems use radii from about 75 m to 500 m, one aggregator 1 mile.
        if !(10.0..=2000.0).contains(&r) {
            errors.push(FieldError::new(
                "geofence_radius_m",
                "must be between 10 and 2000 metres",
            ));
        }
    }
    for (field, value) in [("home_tag", &p.home_tag), ("home_phone", &p.home_phone)] {
        if value.as_deref().is_some_and(|v| !valid_id(v)) {
            errors.push(FieldError::new(
                field,
                "must be 1 to 64 of A-Z a-z 0-9 . _ : + -",
            ));
        }
    }
    if p.area
        .as_deref()
        .is_some_and(|a| a.is_empty() || a.len() > 100)
    {
        errors.push(FieldError::new("area", "must be 1 to 100 characters"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let client = state.pool.get().await?;
    let policy = p.geofence_policy.map(|g| g.as_str());
    let row = client
        .query_one(
            &format!(
                "INSERT INTO people (organisation_id, external_ref, display_name, date_of_birth,
                                     home_lat, home_lon, geofence_radius_m, area, home_tag,
                                     home_phone, geofence_policy)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 RETURNING {PERSON_COLUMNS}"
            ),
            &[
                &caller.organisation_id,
                &p.external_ref.trim(),
                &p.display_name,
                &p.date_of_birth,
                &p.home_lat,
                &p.home_lon,
                &p.geofence_radius_m,
                &p.area,
                &p.home_tag,
                &p.home_phone,
                &policy,
            ],
        )
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                ApiError::Conflict(
                    "a person with this external_ref or home_tag already exists".into(),
                )
            } else {
                e.into()
            }
        })?;
    Ok(HttpResponse::Created().json(person_json(&row, &state.settings.evv)))
}

#[get("/v1/people")]
async fn list_people(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {PERSON_COLUMNS} FROM people WHERE organisation_id = $1 ORDER BY id"),
            &[&caller.organisation_id],
        )
        .await?;
    let items: Vec<_> = rows
        .iter()
        .map(|r| person_json(r, &state.settings.evv))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

#[get("/v1/people/{id}")]
async fn read_person(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {PERSON_COLUMNS} FROM people WHERE organisation_id = $1 AND id = $2"),
            &[&caller.organisation_id, &path.into_inner()],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("person".into()))?;
    Ok(HttpResponse::Ok().json(person_json(&row, &state.settings.evv)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaPolicy {
    geofence_policy: GeofencePolicy,
}

/// Sets whether a fix outside the geofence is refused or only flagged in one area.
#[put("/v1/geofence-policies/{area}")]
async fn put_area_policy(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<AreaPolicy>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let area = path.into_inner();
    if area.is_empty() || area.len() > 100 {
        return Err(ApiError::invalid("area", "must be 1 to 100 characters"));
    }
    let client = state.pool.get().await?;
    client
        .execute(
            "INSERT INTO evv_area_policies (organisation_id, area, geofence_policy) VALUES ($1, $2, $3)
             ON CONFLICT (organisation_id, area) DO UPDATE SET geofence_policy = EXCLUDED.geofence_policy",
            &[&caller.organisation_id, &area, &body.geofence_policy.as_str()],
        )
        .await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "area": area, "geofence_policy": body.geofence_policy })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWorker {
    external_ref: String,
    display_name: Option<String>,
    /// A phone device (kind `phone`) of this organisation to link to the worker.
    phone_uid: Option<String>,
}

#[post("/v1/workers")]
async fn create_worker(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<NewWorker>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let w = body.into_inner();
    if w.external_ref.trim().is_empty() || w.external_ref.len() > 100 {
        return Err(ApiError::invalid(
            "external_ref",
            "must be 1 to 100 characters",
        ));
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let id: i32 = tx
        .query_one(
            "INSERT INTO workers (organisation_id, external_ref, display_name) VALUES ($1, $2, $3) RETURNING id",
            &[&caller.organisation_id, &w.external_ref.trim(), &w.display_name],
        )
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                ApiError::Conflict("a worker with this external_ref already exists".into())
            } else {
                e.into()
            }
        })?
        .get(0);
    let mut devices = Vec::new();
    if let Some(uid) = &w.phone_uid {
        link(&tx, caller.organisation_id, id, uid, "phone_uid").await?;
        devices.push(uid.clone());
    }
    let derive_ids = phone_ids(&tx, id).await?;
    tx.commit().await?;
    rederive(&state, &derive_ids, caller.organisation_id).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": id, "external_ref": w.external_ref.trim(), "display_name": w.display_name, "phones": devices,
    })))
}

async fn link(
    tx: &impl GenericClient,
    org: i32,
    worker: i32,
    uid: &str,
    field: &str,
) -> Result<(), ApiError> {
    let n = tx
        .execute(
            "UPDATE devices SET worker_id = $3 WHERE organisation_id = $1 AND uid = $2 AND kind = 'phone'",
            &[&org, &uid, &worker],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::invalid(
            field,
            "no phone device of your organisation has this uid",
        ));
    }
    Ok(())
}

async fn phone_ids(tx: &impl GenericClient, worker: i32) -> Result<Vec<i32>, ApiError> {
    Ok(tx
        .query("SELECT id FROM devices WHERE worker_id = $1", &[&worker])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[get("/v1/workers")]
async fn list_workers(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT w.id, w.external_ref, w.display_name,
                    coalesce(array_agg(d.uid ORDER BY d.uid) FILTER (WHERE d.uid IS NOT NULL), '{}')
               FROM workers w LEFT JOIN devices d ON d.worker_id = w.id
              WHERE w.organisation_id = $1 GROUP BY w.id ORDER BY w.id",
            &[&caller.organisation_id],
        )
        .await?;
    let items: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.get::<_, i32>(0), "external_ref": r.get::<_, String>(1),
                "display_name": r.get::<_, Option<String>>(2), "phones": r.get::<_, Vec<String>>(3),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

/// Links a phone to a worker (a care worker's phone is a device of kind `phone`).
#[put("/v1/workers/{id}/phones/{uid}")]
async fn link_phone(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i32, String)>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let (worker, uid) = path.into_inner();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    tx.query_opt(
        "SELECT 1 FROM workers WHERE organisation_id = $1 AND id = $2",
        &[&caller.organisation_id, &worker],
    )
    .await?
    .ok_or_else(|| ApiError::NotFound("worker".into()))?;
    link(&tx, caller.organisation_id, worker, &uid, "uid").await?;
    let ids = phone_ids(&tx, worker).await?;
    tx.commit().await?;
    rederive(&state, &ids, caller.organisation_id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "worker_id": worker, "phone_uid": uid })))
}

/// Re-derives devices after reference data changed, then clears the alerts this answers.
async fn rederive(state: &AppState, devices: &[i32], org: i32) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    derive::derive_devices(&mut client, &state.settings.evv, devices).await?;
    let now = Utc::now();
    let cleared = missed::clear_in(&client, now, Some(org)).await?;
    missed::publish(&state.live, now, &cleared);
    Ok(())
}

// ---------------------------------------------------------------- the schedule

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewScheduled {
    reference: String,
    person_id: i32,
    worker_id: Option<i32>,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    service_type: String,
    #[serde(default)]
    outcomes: Vec<String>,
}

const SCHEDULED_COLUMNS: &str = "id, reference, person_id, worker_id, window_start, window_end,
     service_type, outcomes, cancelled_at, cancel_reason";

fn scheduled_json(r: &tokio_postgres::Row) -> serde_json::Value {
    serde_json::json!({
        "id": r.get::<_, i64>("id"),
        "reference": r.get::<_, String>("reference"),
        "person_id": r.get::<_, i32>("person_id"),
        "worker_id": r.get::<_, Option<i32>>("worker_id"),
        "window_start": r.get::<_, DateTime<Utc>>("window_start"),
        "window_end": r.get::<_, DateTime<Utc>>("window_end"),
        "service_type": r.get::<_, String>("service_type"),
        "outcomes": r.get::<_, Vec<String>>("outcomes"),
        "cancelled_at": r.get::<_, Option<DateTime<Utc>>>("cancelled_at"),
        "cancel_reason": r.get::<_, Option<String>>("cancel_reason"),
    })
}

#[post("/v1/scheduled-visits")]
async fn create_scheduled(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<NewScheduled>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let s = body.into_inner();
    crate::http::dates::check_time("window_start", Some(s.window_start))?;
    crate::http::dates::check_time("window_end", Some(s.window_end))?;
    let mut errors = Vec::new();
    if !valid_id(&s.reference) {
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
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if tx
        .query_opt(
            "SELECT 1 FROM people WHERE organisation_id = $1 AND id = $2",
            &[&org, &s.person_id],
        )
        .await?
        .is_none()
    {
        errors.push(FieldError::new(
            "person_id",
            "no such person in your organisation",
        ));
    }
    if let Some(w) = s.worker_id {
        if tx
            .query_opt(
                "SELECT 1 FROM workers WHERE organisation_id = $1 AND id = $2",
                &[&org, &w],
            )
            .await?
            .is_none()
        {
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
            if unique_violation(&e) {
                ApiError::Conflict(format!("scheduled visit {} already exists", s.reference))
            } else {
                e.into()
            }
        })?;
    let devices =
        derive::devices_near_window(&tx, &state.settings.evv, org, s.window_start, s.window_end)
            .await?;
    tx.commit().await?;
    // Check-ins that arrived before the schedule (store and forward) now find their match.
    rederive(&state, &devices, org).await?;
    Ok(HttpResponse::Created().json(scheduled_json(&row)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// `csv` or `json` (export only).
    format: Option<String>,
    /// Visits only: `true` lists the office's queue (visits matching no scheduled visit).
    unmatched: Option<bool>,
    /// Exceptions only: include those already resolved.
    include_resolved: Option<bool>,
}

impl Range {
    /// Defaults to the last 7 days up to tomorrow; at most 93 days.
    fn bounds(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
        crate::http::dates::check_time("from", self.from)?;
        crate::http::dates::check_time("to", self.to)?;
        let now = Utc::now();
        let to = self.to.unwrap_or(now + Duration::days(1));
        let from = self.from.unwrap_or(to - Duration::days(8));
        if to <= from {
            return Err(ApiError::invalid("to", "must be after from"));
        }
        if to - from > Duration::days(93) {
            return Err(ApiError::invalid("to", "a range covers at most 93 days"));
        }
        Ok((from, to))
    }
}

#[get("/v1/scheduled-visits")]
async fn list_scheduled(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let (from, to) = query.bounds()?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {SCHEDULED_COLUMNS} FROM scheduled_visits
                  WHERE organisation_id = $1 AND window_start >= $2 AND window_start < $3
                  ORDER BY window_start, id"
            ),
            &[&caller.organisation_id, &from, &to],
        )
        .await?;
    let items: Vec<_> = rows.iter().map(scheduled_json).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    reason: String,
}

#[post("/v1/scheduled-visits/{id}/cancel")]
async fn cancel_scheduled(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<Cancel>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    if body.reason.trim().is_empty() || body.reason.len() > 500 {
        return Err(ApiError::invalid("reason", "must be 1 to 500 characters"));
    }
    let org = caller.organisation_id;
    let mut client = state.pool.get().await?;
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
    rederive(&state, &devices, org).await?;
    Ok(HttpResponse::Ok().json(scheduled_json(&row)))
}

// ---------------------------------------------------------------- visits

/// The condition that a commissioner (the query parameter `param`, NULL for providers) funds
/// the visit's person on the visit's day (UTC): see `homeward_funded` in migration 0008.
fn visit_funded(param: &str) -> String {
    format!(
        "({param}::int IS NULL OR homeward_funded({param}, v.organisation_id, v.person_id,
            (coalesce(v.adjusted_start, v.started_at, v.ended_at) AT TIME ZONE 'UTC')::date))"
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

/// Exceptions: what needs fixing or acknowledging. Late and short visits are not among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum ExceptionKind {
    MissingCheckIn,
    MissingCheckOut,
    OutsideGeofence,
    Unscheduled,
}

#[derive(Debug, Clone, Serialize)]
struct VisitException {
    #[serde(rename = "type")]
    kind: ExceptionKind,
    /// `fix` (times must be supplied) or `acknowledge`.
    needs: &'static str,
    resolved: bool,
}

/// A visit as the API shows it.
#[derive(Debug, Clone, Serialize)]
struct VisitView {
    id: i64,
    provider_id: i32,
    person: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    person_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    person_name: Option<String>,
    worker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_name: Option<String>,
    scheduled_visit_id: Option<i64>,
    scheduled_reference: Option<String>,
    service_type: Option<String>,
    outcomes: Vec<String>,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    match_method: String,
    /// The times the phone recorded, never changed.
    raw: Times,
    /// The office's adjusted times, when any.
    adjusted: Times,
    /// What counts: adjusted where given, else raw.
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    date: Option<NaiveDate>,
    /// Coarse location, as the Cures Act asks: "home" or "community".
    location: &'static str,
    check_in: Option<CheckRecord>,
    check_out: Option<CheckRecord>,
    superseded: bool,
    adjustments: i32,
    resolution_code: Option<String>,
    completed: bool,
    exceptions: Vec<VisitException>,
    /// Punctuality and duration, as context only: never a fault, never money.
    context: Context,
}

#[derive(Debug, Clone, Serialize)]
struct Times {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
struct Context {
    late: bool,
    late_by_minutes: Option<i64>,
    duration_minutes: Option<i64>,
    window_minutes: Option<i64>,
    short: bool,
}

fn visit_view(
    r: &tokio_postgres::Row,
    pseudonymise: bool,
    settings: &EvvSettings,
    now: DateTime<Utc>,
) -> VisitView {
    let check_in: Option<CheckRecord> = r
        .get::<_, Option<serde_json::Value>>("check_in")
        .and_then(|v| serde_json::from_value(v).ok());
    let check_out: Option<CheckRecord> = r
        .get::<_, Option<serde_json::Value>>("check_out")
        .and_then(|v| serde_json::from_value(v).ok());
    let raw = Times {
        start: r.get("started_at"),
        end: r.get("ended_at"),
    };
    let adjusted = Times {
        start: r.get("adjusted_start"),
        end: r.get("adjusted_end"),
    };
    let start = adjusted.start.or(raw.start);
    let end = adjusted.end.or(raw.end);
    let window_start: Option<DateTime<Utc>> = r.get("window_start");
    let window_end: Option<DateTime<Utc>> = r.get("window_end");
    let scheduled: Option<i64> = r.get("scheduled_visit_id");
    let resolution: Option<String> = r.get("resolution_code");
    let superseded: bool = r.get("superseded");
    let outside = [&check_in, &check_out].iter().any(|c| {
        c.as_ref()
            .is_some_and(|c| c.reason == Reason::OutsideGeofence)
    });
    let grace = Duration::minutes(i64::from(settings.missed_visit_grace_minutes));
    let mut exceptions = Vec::new();
    if raw.start.is_none() && check_in.is_none() {
        exceptions.push(VisitException {
            kind: ExceptionKind::MissingCheckIn,
            needs: "fix",
            resolved: adjusted.start.is_some(),
        });
    }
    if raw.end.is_none() {
        let deadline = match (window_end, raw.start) {
            (Some(we), _) => Some(we + grace),
            (None, Some(s)) => {
                Some(s + Duration::minutes(i64::from(settings.open_visit_limit_minutes)))
            }
            (None, None) => None,
        };
        if superseded || deadline.is_some_and(|d| now > d) {
            exceptions.push(VisitException {
                kind: ExceptionKind::MissingCheckOut,
                needs: "fix",
                resolved: adjusted.end.is_some(),
            });
        }
    }
    if outside {
        exceptions.push(VisitException {
            kind: ExceptionKind::OutsideGeofence,
            needs: "acknowledge",
            resolved: resolution.is_some(),
        });
    }
    if scheduled.is_none() {
        exceptions.push(VisitException {
            kind: ExceptionKind::Unscheduled,
            needs: "acknowledge",
            resolved: resolution.is_some(),
        });
    }
    let late_by = match (start, window_start) {
        (Some(s), Some(ws)) => Some((s - ws).num_minutes().max(0)),
        _ => None,
    };
    let duration = start.zip(end).map(|(s, e)| (e - s).num_minutes());
    let window = window_start
        .zip(window_end)
        .map(|(s, e)| (e - s).num_minutes());
    let person_id: Option<i32> = r.get("person_id");
    let worker_id: Option<i32> = r.get("worker_id");
    let service_type: Option<String> = r.get("service_type");
    let completed = start.is_some()
        && end.is_some()
        && person_id.is_some()
        && worker_id.is_some()
        && service_type.is_some();
    let (person, worker) = if pseudonymise {
        (
            r.get::<_, Option<String>>("pseudonym"),
            worker_id.map(|w| format!("W{w}")),
        )
    } else {
        (
            r.get::<_, Option<String>>("person_ref"),
            r.get::<_, Option<String>>("worker_ref"),
        )
    };
    VisitView {
        id: r.get("id"),
        provider_id: r.get("organisation_id"),
        person,
        person_id: (!pseudonymise).then_some(person_id).flatten(),
        person_name: if pseudonymise {
            None
        } else {
            r.get("person_name")
        },
        worker,
        worker_id: (!pseudonymise).then_some(worker_id).flatten(),
        worker_name: if pseudonymise {
            None
        } else {
            r.get("worker_name")
        },
        scheduled_visit_id: scheduled,
        scheduled_reference: r.get("reference"),
        service_type,
        outcomes: r
            .get::<_, Option<Vec<String>>>("outcomes")
            .unwrap_or_default(),
        window_start,
        window_end,
        match_method: r.get("match_method"),
        raw,
        adjusted,
        start,
        end,
        date: start.map(|s| s.date_naive()),
        location: if outside { "community" } else { "home" },
        check_in: check_in.map(|c| redact(c, pseudonymise)),
        check_out: check_out.map(|c| redact(c, pseudonymise)),
        superseded,
        adjustments: r.get("adjustments"),
        resolution_code: resolution,
        completed,
        exceptions,
        context: Context {
            late: late_by.is_some_and(|m| m > i64::from(settings.late_after_minutes)),
            late_by_minutes: late_by,
            duration_minutes: duration,
            window_minutes: window,
            short: duration.zip(window).is_some_and(|(d, w)| d < w),
        },
    }
}

/// Commissioners see verdicts and distances, not where a home is.
fn redact(mut c: CheckRecord, pseudonymise: bool) -> CheckRecord {
    if pseudonymise {
        c.lat = None;
        c.lon = None;
        c.tag = None;
        c.caller_id = None;
        c.memo = None;
    }
    c
}

async fn load_visits(
    client: &impl GenericClient,
    scope: &Scope,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    unmatched_only: bool,
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    Ok(client
        .query(
            &format!(
                "{VISIT_SELECT}
                  WHERE v.organisation_id = ANY($1)
                    AND coalesce(v.adjusted_start, v.started_at, v.ended_at) >= $2
                    AND coalesce(v.adjusted_start, v.started_at, v.ended_at) < $3
                    AND (NOT $4 OR v.scheduled_visit_id IS NULL)
                    AND {}
                  ORDER BY coalesce(v.adjusted_start, v.started_at, v.ended_at), v.id
                  LIMIT 10000",
                visit_funded("$5")
            ),
            &[
                &scope.orgs,
                &from,
                &to,
                &unmatched_only,
                &scope.commissioner,
            ],
        )
        .await?)
}

#[get("/v1/visits")]
async fn list_visits(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = query.bounds()?;
    let client = state.pool.get().await?;
    let scope = scope(&caller, &client).await?;
    let rows = load_visits(&client, &scope, from, to, query.unmatched.unwrap_or(false)).await?;
    let now = Utc::now();
    let items: Vec<VisitView> = rows
        .iter()
        .map(|r| visit_view(r, scope.pseudonymise, &state.settings.evv, now))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

#[get("/v1/visits/{id:\\d+}")]
async fn read_visit(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let scope = scope(&caller, &client).await?;
    let row = client
        .query_opt(
            &format!(
                "{VISIT_SELECT} WHERE v.organisation_id = ANY($1) AND v.id = $2
                   AND {}",
                visit_funded("$3")
            ),
            &[&scope.orgs, &path.into_inner(), &scope.commissioner],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("visit".into()))?;
    let key: String = row.get("visit_key");
    let view = visit_view(&row, scope.pseudonymise, &state.settings.evv, Utc::now());
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
                "memo": if scope.pseudonymise { None } else { a.get::<_, Option<String>>(6) },
                "resolution_code": a.get::<_, Option<String>>(7),
                "recorded_by": a.get::<_, String>(8), "recorded_at": a.get::<_, DateTime<Utc>>(9),
            })
        })
        .collect();
    let mut body = serde_json::to_value(&view).map_err(|e| ApiError::Unexpected(e.into()))?;
    body["adjustment_history"] = serde_json::Value::Array(history);
    Ok(HttpResponse::Ok().json(body))
}

/// Reason codes for adjustments (a closed set, so reports can count them).
const REASON_CODES: &[&str] = &[
    "forgot_check_in",
    "forgot_check_out",
    "device_failure",
    "no_signal",
    "wrong_location_pin",
    "wrong_visit",
    "wrong_time",
    "office_entry",
    "other",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAdjustment {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    /// Matches a visit from the office's queue to a scheduled visit.
    scheduled_visit_id: Option<i64>,
    reason_code: String,
    memo: Option<String>,
    resolution_code: Option<String>,
}

fn check_reason(reason: &str, memo: &Option<String>, manual: bool, errors: &mut Vec<FieldError>) {
    if !REASON_CODES.contains(&reason) {
        errors.push(FieldError::new(
            "reason_code",
            format!("must be one of {}", REASON_CODES.join(", ")),
        ));
    }
    let memo_empty = memo.as_deref().map(str::trim).is_none_or(str::is_empty);
    if memo_empty && (reason == "other" || manual) {
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
#[post("/v1/visits/{id:\\d+}/adjustments")]
async fn adjust(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<NewAdjustment>,
) -> Result<HttpResponse, ApiError> {
    writer(&caller)?;
    let a = body.into_inner();
    crate::http::dates::check_time("start", a.start)?;
    crate::http::dates::check_time("end", a.end)?;
    let org = caller.organisation_id;
    let id = path.into_inner();
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
    let mut client = state.pool.get().await?;
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
             VALUES ($1, 'correction', $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
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
            ],
        )
        .await?
        .get(0);
    match (device, manual) {
        (Some(d), _) => derive::derive_device(&tx, &state.settings.evv, d).await?,
        (None, Some(m)) => derive::derive_manual_entry(&tx, m).await?,
        (None, None) => {}
    }
    let now = Utc::now();
    let cleared = missed::clear_in(&tx, now, Some(org)).await?;
    tx.commit().await?;
    missed::publish(&state.live, now, &cleared);
    Ok(HttpResponse::Created().json(serde_json::json!({ "id": adjustment_id, "visit_key": key })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManualEntry {
    scheduled_visit_id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reason_code: String,
    memo: Option<String>,
    resolution_code: Option<String>,
}

/// A visit entered by the office, for a scheduled visit with no usable check: reason and memo
/// required. It is kept as an adjustment (there is no raw event to refer to).
#[post("/v1/visits/manual")]
async fn manual_entry(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<ManualEntry>,
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
    let mut client = state.pool.get().await?;
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
             VALUES ($1, 'manual_entry', $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &org,
                &m.scheduled_visit_id,
                &m.start,
                &m.end,
                &m.reason_code,
                &m.memo,
                &m.resolution_code,
                &caller.user_id,
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
    let now = Utc::now();
    let cleared = missed::clear_in(&tx, now, Some(org)).await?;
    tx.commit().await?;
    missed::publish(&state.live, now, &cleared);
    Ok(HttpResponse::Created()
        .json(serde_json::json!({ "id": adjustment_id, "visit_id": visit_id })))
}

#[get("/v1/visits/exceptions")]
async fn list_exceptions(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = query.bounds()?;
    let include_resolved = query.include_resolved.unwrap_or(false);
    let client = state.pool.get().await?;
    let scope = scope(&caller, &client).await?;
    let settings = &state.settings.evv;
    let now = Utc::now();
    let rows = load_visits(&client, &scope, from, to, false).await?;
    let mut items = Vec::new();
    for r in &rows {
        let v = visit_view(r, scope.pseudonymise, settings, now);
        for e in &v.exceptions {
            if include_resolved || !e.resolved {
                items.push(serde_json::json!({
                    "type": e.kind, "needs": e.needs, "resolved": e.resolved,
                    "visit_id": v.id, "scheduled_visit_id": v.scheduled_visit_id,
                    "provider_id": v.provider_id, "person": v.person, "worker": v.worker,
                    "at": v.start.or(v.end),
                }));
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
                &scope.orgs,
                &from,
                &to,
                &(grace.num_seconds() as f64),
                &now,
                &scope.commissioner,
            ],
        )
        .await?;
    for s in &missing {
        let worker_id: Option<i32> = s.get(5);
        items.push(serde_json::json!({
            "type": ExceptionKind::MissingCheckIn, "needs": "fix", "resolved": false,
            "visit_id": null, "scheduled_visit_id": s.get::<_, i64>(0),
            "provider_id": s.get::<_, i32>(1),
            "person": if scope.pseudonymise { s.get::<_, String>(4) } else { s.get::<_, String>(3) },
            "worker": if scope.pseudonymise { worker_id.map(|w| format!("W{w}")) } else { s.get::<_, Option<String>>(6) },
            "at": s.get::<_, DateTime<Utc>>(2),
        }));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

/// One completed visit with the six elements of the 21st Century Cures Act:
/// type of service, person served, date, location, worker, start and end.
#[derive(Debug, Serialize)]
struct ExportRow {
    visit_id: i64,
    provider_id: i32,
    service_type: String,
    person: String,
    date: NaiveDate,
    location: &'static str,
    worker: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    raw_start: Option<DateTime<Utc>>,
    raw_end: Option<DateTime<Utc>>,
    adjusted: bool,
    check_in_method: Option<String>,
    check_in_verdict: Option<&'static str>,
    check_out_method: Option<String>,
    check_out_verdict: Option<&'static str>,
    scheduled_reference: Option<String>,
}

#[get("/v1/visits/export")]
async fn export(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = query.bounds()?;
    let format = query.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv") {
        return Err(ApiError::invalid("format", "must be csv or json"));
    }
    let client = state.pool.get().await?;
    let scope = scope(&caller, &client).await?;
    let rows = load_visits(&client, &scope, from, to, false).await?;
    let now = Utc::now();
    let mut out = Vec::new();
    for r in &rows {
        let v = visit_view(r, scope.pseudonymise, &state.settings.evv, now);
        // Only completed visits: every one carries all six elements.
        let (Some(service_type), Some(person), Some(worker), Some(start), Some(end), Some(date)) =
            (v.service_type, v.person, v.worker, v.start, v.end, v.date)
        else {
            continue;
        };
        if !v.completed {
            continue;
        }
        out.push(ExportRow {
            visit_id: v.id,
            provider_id: v.provider_id,
            service_type,
            person,
            date,
            location: v.location,
            worker,
            start,
            end,
            raw_start: v.raw.start,
            raw_end: v.raw.end,
            adjusted: v.adjustments > 0,
            check_in_method: v.check_in.as_ref().map(|c| c.method.clone()),
            check_in_verdict: v.check_in.as_ref().map(|c| c.verdict.as_str()),
            check_out_method: v.check_out.as_ref().map(|c| c.method.clone()),
            check_out_verdict: v.check_out.as_ref().map(|c| c.verdict.as_str()),
            scheduled_reference: v.scheduled_reference,
        });
    }
    if format == "json" {
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "items": out })));
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in &out {
        writer
            .serialize(row)
            .map_err(|e| ApiError::Unexpected(e.into()))?;
    }
    if out.is_empty() {
        // Headers even for an empty export.
        writer
            .write_record([
                "visit_id",
                "provider_id",
                "service_type",
                "person",
                "date",
                "location",
                "worker",
                "start",
                "end",
                "raw_start",
                "raw_end",
                "adjusted",
                "check_in_method",
                "check_in_verdict",
                "check_out_method",
                "check_out_verdict",
                "scheduled_reference",
            ])
            .map_err(|e| ApiError::Unexpected(e.into()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"visits.csv\""))
        .body(safe_csv(&bytes)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MissedQuery {
    /// `open` (default) or `all`.
    state: Option<String>,
}

#[get("/v1/missed-visits")]
async fn list_missed(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<MissedQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin, Role::ProviderStaff, Role::Responder])?;
    let all = match query.state.as_deref() {
        None | Some("open") => false,
        Some("all") => true,
        Some(_) => return Err(ApiError::invalid("state", "must be open or all")),
    };
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT s.id, s.reference, s.person_id, s.worker_id, s.window_start, a.due_at,
                    a.raised_at, a.cleared_at, a.cleared_reason, p.external_ref
               FROM missed_visit_alerts a
               JOIN scheduled_visits s ON s.id = a.scheduled_visit_id
               JOIN people p ON p.id = s.person_id
              WHERE a.organisation_id = $1 AND ($2 OR a.cleared_at IS NULL)
              ORDER BY a.due_at DESC, s.id LIMIT 1000",
            &[&caller.organisation_id, &all],
        )
        .await?;
    let items: Vec<_> = rows
        .iter()
        .map(|r| {
            let cleared: Option<DateTime<Utc>> = r.get(7);
            serde_json::json!({
                "scheduled_visit_id": r.get::<_, i64>(0), "reference": r.get::<_, String>(1),
                "person_id": r.get::<_, i32>(2), "person_ref": r.get::<_, String>(9),
                "worker_id": r.get::<_, Option<i32>>(3),
                "window_start": r.get::<_, DateTime<Utc>>(4), "due_at": r.get::<_, DateTime<Utc>>(5),
                "raised_at": r.get::<_, DateTime<Utc>>(6), "cleared_at": cleared,
                "cleared_reason": r.get::<_, Option<String>>(8),
                "state": if cleared.is_some() { "cleared" } else { "raised" },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

/// The CSV with formula-like cells made text (see `http::csv_safe`).
fn safe_csv(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    crate::http::csv_safe::defuse(bytes).map_err(|e| ApiError::Unexpected(e.into()))
}
