//! The export of completed visits with the six elements of the 21st Century Cures Act, as JSON
//! or CSV.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::visits::load_visits;
use super::{scope, Range};
use crate::auth::Caller;
use crate::evv::view::visit_view;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(export);
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
    for r in rows {
        let v = visit_view(r, scope.pseudonymise(), &state.settings.evv, now);
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

/// The CSV with formula-like cells made text (see `http::csv_safe`).
fn safe_csv(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    crate::http::csv_safe::defuse(bytes).map_err(|e| ApiError::Unexpected(e.into()))
}
