//! Indicator reports over HTTP (JSON or CSV), and every stored report read back as produced.
//! Owns `outcome_reports`: each report and statement is stored with its period, input hash and
//! method version. Loading and building the figures is [`super::report`]'s.

use actix_web::{get, web, HttpResponse};
use chrono::NaiveDate;
use serde::Deserialize;
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::measures::Period;
use super::report::{self, Scope};
use super::routes::READERS;
use super::METHOD_VERSION;
use crate::auth::Caller;
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(report_endpoint)
        .service(stored_report)
        .service(super::restate::reproduction)
        .service(super::restate::restatement);
}

/// The query of a report or a statement; statements read only the period, the provider and
/// the format.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ReportQuery {
    /// Whose figures (default `provider`).
    #[param(inline, value_type = Option<ReportScope>)]
    scope: Option<String>,
    /// The person, provider or contract of the scope; a provider's own figures by default.
    id: Option<i32>,
    /// The provider (for a commissioner: required).
    pub(super) provider_id: Option<i32>,
    /// The first day of the period; before `to`, at most three years before it.
    from: NaiveDate,
    /// The day after the period.
    to: NaiveDate,
    /// The day the figures are judged on, not before `to`; default 91 days after `to`, not
    /// after today.
    as_of: Option<NaiveDate>,
    /// `json` (default) or `csv`.
    #[param(inline, value_type = Option<ReportFormat>)]
    pub(super) format: Option<String>,
}

/// Whose figures a report shows.
#[derive(ToSchema)]
#[allow(dead_code)]
enum ReportScope {
    #[schema(rename = "person")]
    Person,
    #[schema(rename = "provider")]
    Provider,
    #[schema(rename = "contract")]
    Contract,
    #[schema(rename = "population")]
    Population,
}

/// A report's formats.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) enum ReportFormat {
    #[schema(rename = "json")]
    Json,
    #[schema(rename = "csv")]
    Csv,
}

pub(super) fn period(q: &ReportQuery) -> Result<Period, ApiError> {
    period_of(q.from, q.to, q.as_of)
}

/// A report's period from its query's `from`, `to` and `as_of`, each checked and named when
/// wrong.
pub fn period_of(
    from: NaiveDate,
    to: NaiveDate,
    as_of: Option<NaiveDate>,
) -> Result<Period, ApiError> {
    crate::http::dates::check_date("from", Some(from))?;
    crate::http::dates::check_date("to", Some(to))?;
    crate::http::dates::check_date("as_of", as_of)?;
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    if to - from > chrono::Duration::days(3 * 366) {
        return Err(ApiError::invalid("to", "a period is at most three years"));
    }
    // Judged by default 91 days after the period (the longest look-ahead), but never later
    // than today: the date is recorded, so the figures stay reproducible.
    let today = chrono::Utc::now().date_naive();
    let as_of = as_of.unwrap_or_else(|| (to + chrono::Duration::days(91)).min(today).max(to));
    if as_of < to {
        return Err(ApiError::invalid("as_of", "must not be before `to`"));
    }
    // The data as known now; a stored report keeps this moment, so it can be computed again
    // with the same result after more rows arrive.
    Ok(Period {
        from,
        to,
        as_of,
        known_at: now_to_the_microsecond(),
    })
}

/// Now, as PostgreSQL stores it (to the microsecond), so a stored `known_at` reads back equal.
pub(super) fn now_to_the_microsecond() -> chrono::DateTime<chrono::Utc> {
    chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
}

pub(super) fn wants_csv(f: &Option<String>) -> Result<bool, ApiError> {
    match f.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        _ => Err(ApiError::invalid("format", "json or csv")),
    }
}

/// `what`: (kind, scope, scope id). Stores the figures with the moment whose knowledge they
/// read (`p.known_at`).
pub(super) async fn store(
    c: &impl GenericClient,
    caller: &Caller,
    (kind, scope, scope_id): (&str, &str, Option<i32>),
    p: &Period,
    hash: &str,
    figures: &serde_json::Value,
) -> Result<i64, ApiError> {
    store_reproducible(c, caller, (kind, scope, scope_id), p, hash, figures, None).await
}

/// [`store`] without its own audit row, for a report whose audit row is written by its caller
/// (issued statements name their report).
pub(super) async fn store_unaudited(
    c: &impl GenericClient,
    caller: &Caller,
    (kind, scope, scope_id): (&str, &str, Option<i32>),
    p: &Period,
    hash: &str,
    figures: &serde_json::Value,
) -> Result<i64, ApiError> {
    insert_report(c, caller, (kind, scope, scope_id), p, hash, figures, None).await
}

/// What a report needs to be computed again: the settings in force and the exact bytes.
pub(super) struct Reproducible<'a> {
    pub settings: &'a report::StoredSettings,
    pub body: &'a str,
    /// The report this one restates.
    pub restates: Option<i64>,
}

pub(super) async fn store_reproducible(
    c: &impl GenericClient,
    caller: &Caller,
    (kind, scope, scope_id): (&str, &str, Option<i32>),
    p: &Period,
    hash: &str,
    figures: &serde_json::Value,
    again: Option<Reproducible<'_>>,
) -> Result<i64, ApiError> {
    let restates = again.as_ref().and_then(|r| r.restates);
    let id = insert_report(
        c,
        caller,
        (kind, scope, scope_id),
        p,
        hash,
        figures,
        again.as_ref(),
    )
    .await?;
    // Who produced which figures (the figures themselves are in the report row).
    crate::audit::by(
        c,
        caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            if restates.is_some() {
                "report.restate"
            } else {
                "report.issue"
            },
            "report",
            id,
            serde_json::json!({
                "kind": kind, "scope": scope, "scope_id": scope_id,
                "from": p.from, "to": p.to, "as_of": p.as_of, "known_at": p.known_at,
                "input_hash": hash, "restates": restates,
            }),
        ),
    )
    .await?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn insert_report(
    c: &impl GenericClient,
    caller: &Caller,
    (kind, scope, scope_id): (&str, &str, Option<i32>),
    p: &Period,
    hash: &str,
    figures: &serde_json::Value,
    again: Option<&Reproducible<'_>>,
) -> Result<i64, ApiError> {
    let settings = match again {
        Some(r) => {
            Some(serde_json::to_value(r.settings).map_err(|e| ApiError::Unexpected(e.into()))?)
        }
        None => None,
    };
    let body = again.map(|r| r.body);
    let restates = again.and_then(|r| r.restates);
    let id: i64 = c
        .query_one(
            "INSERT INTO outcome_reports (organisation_id, kind, scope, scope_id, period_from, period_to, as_of, method_version,
                                          input_hash, figures, generated_by, known_at, settings, body, restates)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
            &[&caller.organisation_id, &kind, &scope, &scope_id, &p.from, &p.to, &p.as_of, &METHOD_VERSION, &hash, figures,
              &caller.user_id, &p.known_at, &settings, &body, &restates],
        )
        .await?
        .get(0);
    Ok(id)
}

/// Indicators for a person, a provider, a contract or a commissioner's population, stored
/// as produced (`report_id`).
#[utoipa::path(
    operation_id = "get_outcomes_report",
    tag = "outcomes",
    params(ReportQuery),
    responses(
        (status = 200, description = "The indicators with their inputs' hash and `report_id`; \
            as CSV, the id is in `X-Report-Id`.",
            content(
                (Object = "application/json"),
                (String = "text/csv"),
            ),
            headers(("X-Report-Id" = i64, description = "The stored report (CSV only).")),
            links(("stored" = (operation_id = "get_stored_report",
                parameters(("id" = "$response.body#/report_id")))))),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[get("/v1/outcomes/report")]
async fn report_endpoint(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
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
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let settings = state.report_settings();
    let r = report::build(&*tx, &caller, scope, p, settings).await?;
    let body = serde_json::to_string(&r).map_err(|e| ApiError::Unexpected(e.into()))?;
    let figures: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| ApiError::Unexpected(e.into()))?;
    let id = store_reproducible(
        &*tx,
        &caller,
        ("indicators", scope.name(), scope.id()),
        &p,
        &r.inputs.hash,
        &figures,
        Some(Reproducible {
            settings: &settings.stored(),
            body: &body,
            restates: None,
        }),
    )
    .await?;
    tx.commit().await?;
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

/// A stored report, as produced (for auditors reproducing a figure).
#[utoipa::path(
    operation_id = "get_stored_report",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The report's id.")),
    responses(
        (status = 200, description = "`id`, `kind`, `scope`, `scope_id`, `period_from`, \
            `period_to`, `as_of`, `method_version`, `input_hash`, `generated_at`, `known_at` \
            (whose knowledge it read; null for reports from before it was kept), `restates` \
            (the report it restates, if any) and the `figures` as produced.", body = Object),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/outcomes/reports/{id}")]
async fn stored_report(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let id = path.into_inner();
    let c = state.db(&caller).await?;
    let row = c
        .query_opt(
            "SELECT jsonb_build_object('id', id, 'kind', kind, 'scope', scope, 'scope_id', scope_id,
                    'period_from', period_from, 'period_to', period_to, 'as_of', as_of,
                    'method_version', method_version, 'input_hash', input_hash,
                    'generated_at', generated_at, 'known_at', known_at, 'restates', restates,
                    'figures', figures)
               FROM outcome_reports WHERE id = $1 AND organisation_id = $2",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("report {id}")))?;
    Ok(HttpResponse::Ok().json(row.get::<_, serde_json::Value>(0)))
}

/// The CSV with formula-like cells made text (see `http::csv_safe`).
pub(super) fn safe_csv(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    crate::http::csv_safe::defuse(bytes).map_err(|e| ApiError::Unexpected(e.into()))
}
