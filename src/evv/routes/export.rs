//! The export of completed visits with the six elements of the 21st Century Cures Act, as JSON
//! or CSV.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::visits::load_visits;
use super::{bounds, scope};
use crate::auth::Caller;
use crate::evv::view::visit_view;
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(export);
}

/// One completed visit with the six elements of the 21st Century Cures Act:
/// type of service, person served, date, location, worker, start and end.
#[derive(Debug, Serialize, ToSchema)]
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
    #[schema(value_type = Option<crate::evv::geofence::Verdict>)]
    check_in_verdict: Option<&'static str>,
    check_out_method: Option<String>,
    #[schema(value_type = Option<crate::evv::geofence::Verdict>)]
    check_out_verdict: Option<&'static str>,
    scheduled_reference: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ExportList {
    items: Vec<ExportRow>,
}

/// The export's formats.
#[derive(ToSchema)]
#[allow(dead_code)]
enum ExportFormat {
    #[schema(rename = "json")]
    Json,
    #[schema(rename = "csv")]
    Csv,
}

/// Which visits an export holds: those filed in the range.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// The start of the range (inclusive); default `to` less 8 days.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    from: Option<DateTime<Utc>>,
    /// The end of the range (exclusive), after `from`, at most 93 days on; default tomorrow
    /// at this time.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    to: Option<DateTime<Utc>>,
    /// `json` (default) or `csv`.
    #[param(inline, value_type = Option<ExportFormat>)]
    format: Option<String>,
}

/// Completed visits with the six elements of the 21st Century Cures Act, as JSON or CSV
/// (cells that a spreadsheet would read as a formula are made text).
#[utoipa::path(
    operation_id = "export_visits",
    tag = "visits",
    params(ExportQuery),
    responses(
        (status = 200, description = "The completed visits.",
            content(
                (ExportList = "application/json"),
                (String = "text/csv", example = "visit_id,provider_id,service_type,person,date,location,worker,start,end,raw_start,raw_end,adjusted,check_in_method,check_in_verdict,check_out_method,check_out_verdict,scheduled_reference\n"),
            )),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/visits/export")]
async fn export(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = bounds(query.from, query.to)?;
    let format = query.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv") {
        return Err(ApiError::invalid("format", "must be csv or json"));
    }
    let client = state.db(&caller).await?;
    let scope = scope(&caller, &client).await?;
    let rows = load_visits(&client, &scope, from, to, false, None).await?;
    crate::audit::read_by_commissioner(
        &**client,
        &caller,
        "visits_export",
        serde_json::json!({"from": from, "to": to, "format": format, "rows": rows.len()}),
    )
    .await?;
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
        return Ok(HttpResponse::Ok().json(ExportList { items: out }));
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
