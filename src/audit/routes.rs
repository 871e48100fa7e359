//! `GET /v1/audit`: the audit log for the organisation's auditors and admins, as JSON pages or
//! CSV, with the hashes so that a reader can check the chain without Homeward.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::verify::{AuditRow, COLUMNS};
use crate::auth::{Caller, OrgKind, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list);
}

/// The formats of the log.
#[derive(ToSchema)]
#[allow(dead_code)]
enum AuditFormat {
    #[schema(rename = "json")]
    Json,
    #[schema(rename = "csv")]
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Rows from this time on (inclusive). In the years 1900 to 2199.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    from: Option<DateTime<Utc>>,
    /// Rows before this time (exclusive). In the years 1900 to 2199.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    to: Option<DateTime<Utc>>,
    /// Only rows by this actor: a user's id, a device's uid, or a component (`cli:ann`).
    #[param(max_length = 200)]
    actor: Option<String>,
    /// Only rows about this kind of object (`alarm`, `person`, `contract`, ...).
    #[param(max_length = 100)]
    object_type: Option<String>,
    /// Only rows about this object (best with `object_type`: ids of different kinds of
    /// object can coincide).
    #[param(max_length = 200)]
    object_id: Option<String>,
    /// Only rows with an id above this (the previous page's `next_after`).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Page size (JSON or CSV).
    #[param(minimum = 1, maximum = 10000, default = 200)]
    limit: Option<i64>,
    /// `json` (default) or `csv`.
    #[param(inline, value_type = Option<AuditFormat>)]
    format: Option<String>,
}

/// One audit row. `hash` is the SHA-256 of the row's canonical bytes (docs/audit.md), which
/// include `prev_hash`, the hash of the row before it in the same chain.
#[derive(Debug, Serialize, ToSchema)]
struct AuditEntry {
    id: i64,
    /// The organisation whose chain holds the row (0: rows of no organisation).
    chain: i32,
    /// The row's place in its chain, from 1.
    seq: i64,
    at: DateTime<Utc>,
    /// `user`, `device` or `system`.
    actor_kind: String,
    /// A user's id, a device's uid, or a component (`cli`, `cli:<operating-system user>`).
    actor: String,
    /// The API token the user acted with; null for a console session.
    token_id: Option<i32>,
    /// The actor's organisation.
    actor_org: Option<i32>,
    /// The organisation the object belongs to.
    organisation_id: Option<i32>,
    /// `object.verb`, for example `alarm.acknowledge`.
    action: String,
    object_type: String,
    object_id: String,
    /// The change: the fields before and after, or the request of a creation. Exactly the
    /// text that was hashed.
    change: String,
    /// The request's `X-Request-Id`.
    request_id: Option<String>,
    /// Hex.
    prev_hash: String,
    /// Hex.
    hash: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            chain: r.chain,
            seq: r.seq,
            at: r.at,
            actor_kind: r.actor_kind,
            actor: r.actor,
            token_id: r.token_id,
            actor_org: r.actor_org,
            organisation_id: r.organisation_id,
            action: r.action,
            object_type: r.object_type,
            object_id: r.object_id,
            change: r.change,
            request_id: r.request_id,
            prev_hash: hex::encode(r.prev_hash),
            hash: hex::encode(r.hash),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct AuditPage {
    /// Oldest first.
    items: Vec<AuditEntry>,
    /// `after` for the next page; null on the last one.
    next_after: Option<i64>,
}

/// The audit log of the caller's organisation (provider admins and auditors; commissioners and
/// their auditors see their own organisation's rows and the rows of what they did to their
/// providers' records), oldest first.
#[utoipa::path(
    operation_id = "list_audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the log, as JSON, or as CSV with `format=csv` \
          (the same columns; cells a spreadsheet would read as a formula are made text, so \
          verify from the JSON).",
            content(
                (AuditPage = "application/json"),
                (String = "text/csv"),
            ),
            headers(("X-Next-After" = i64, description = "CSV only: `after` for the next page, when there is one."))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/audit")]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let allowed: &[Role] = match caller.organisation_kind {
        OrgKind::Provider => &[Role::ProviderAdmin, Role::Auditor],
        OrgKind::Commissioner => &[Role::Commissioner, Role::Auditor],
    };
    caller.require(allowed)?;
    let format = query.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv") {
        return Err(ApiError::invalid("format", "must be csv or json"));
    }
    let limit = query.limit.unwrap_or(200);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 10000"));
    }
    if query.after.is_some_and(|a| a < 0) {
        return Err(ApiError::invalid("after", "must not be negative"));
    }
    for (field, value, max) in [
        ("actor", &query.actor, 200),
        ("object_type", &query.object_type, 100),
        ("object_id", &query.object_id, 200),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(ApiError::invalid(
                field,
                format!("at most {max} characters"),
            ));
        }
    }
    crate::http::dates::check_time("from", query.from)?;
    crate::http::dates::check_time("to", query.to)?;
    let client = state.db(&caller).await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM audit_log
                  WHERE (organisation_id = $1 OR ($2 AND actor_org = $1))
                    AND ($3::timestamptz IS NULL OR at >= $3)
                    AND ($4::timestamptz IS NULL OR at < $4)
                    AND ($5::text IS NULL OR actor = $5)
                    AND ($6::text IS NULL OR object_type = $6)
                    AND ($7::text IS NULL OR object_id = $7)
                    AND ($8::bigint IS NULL OR id > $8)
                  ORDER BY id LIMIT $9"
            ),
            &[
                &caller.organisation_id,
                &(caller.organisation_kind == OrgKind::Commissioner),
                &query.from,
                &query.to,
                &query.actor,
                &query.object_type,
                &query.object_id,
                &query.after,
                &limit,
            ],
        )
        .await?;
    let items: Vec<AuditEntry> = rows.iter().map(|r| AuditRow::from_row(r).into()).collect();
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.id))
        .flatten();
    if format == "json" {
        return Ok(HttpResponse::Ok().json(AuditPage { items, next_after }));
    }
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let header = COLUMNS.split(", ").map(str::trim).collect::<Vec<_>>();
    writer
        .write_record(&header)
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    for item in &items {
        writer
            .serialize(item)
            .map_err(|e| ApiError::Unexpected(e.into()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    let body = crate::http::csv_safe::defuse(&bytes).map_err(|e| ApiError::Unexpected(e.into()))?;
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"audit.csv\""));
    if let Some(next) = next_after {
        response.insert_header(("X-Next-After", next.to_string()));
    }
    Ok(response.body(body))
}
