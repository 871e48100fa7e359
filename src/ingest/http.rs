//! `POST /v1/check-ins` (care workers' phones, authenticated as devices) and
//! `GET /v1/dead-letters` (provider staff).

use actix_web::{get, post, web, HttpResponse};
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::mqtt::{decode, event_item};
use super::{Item, Job, Outcome, Source, WriteError};
use crate::auth::{Caller, Role};
use crate::devices::DeviceCaller;
use crate::http::{ApiError, AppState, FieldError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(check_ins).service(dead_letters);
}

/// One event or an array of events in the wire format's JSON (`docs/wire-format.md`), of kind
/// `check_in` or `check_out`. Answers after the transaction that stores them has committed:
/// 200 with each item's outcome (`stored`, or `duplicate` for a resend), 422 naming every
/// invalid field (nothing is stored then), 503 with `Retry-After` while the database is down.
#[post("/v1/check-ins")]
async fn check_ins(
    device: DeviceCaller,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.settings.ingest;
    let (values, single) = match body.into_inner() {
        serde_json::Value::Array(items) => (items, false),
        other => (vec![other], true),
    };
    if values.is_empty() {
        return Err(ApiError::invalid("", "send at least one event"));
    }
    if values.len() > settings.max_http_batch {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} events in one request; the limit is {}",
            values.len(),
            settings.max_http_batch
        )));
    }
    let received_at = Utc::now();
    let mut items = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let path = |field: Option<&str>| match (single, field) {
            (true, Some(f)) => f.to_string(),
            (true, None) => String::new(),
            (false, Some(f)) => format!("[{i}].{f}"),
            (false, None) => format!("[{i}]"),
        };
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        match decode(&bytes, received_at, settings) {
            Ok(event) => {
                let kind = event.kind();
                if !matches!(
                    kind,
                    homeward_proto::EventKind::CheckIn | homeward_proto::EventKind::CheckOut
                ) {
                    errors.push(FieldError::new(
                        path(Some("kind")),
                        format!(
                            "`{}` is not a check-in or check-out; telecare events go over MQTT",
                            kind.as_str()
                        ),
                    ));
                    continue;
                }
                items.push(Item::Event(event_item(
                    &device.device,
                    event,
                    &bytes,
                    received_at,
                    settings,
                )));
            }
            Err(e) => errors.push(FieldError::new(path(e.field()), e.to_string())),
        }
    }
    if !errors.is_empty() {
        metrics::counter!("homeward_ingest_http_rejected_total").increment(values.len() as u64);
        return Err(ApiError::Validation(errors));
    }
    let (reply, outcome) = oneshot::channel();
    let job = Job {
        items,
        source: Source::Http(reply),
    };
    let submitted =
        tokio::time::timeout(std::time::Duration::from_secs(10), state.writer.submit(job)).await;
    if !matches!(submitted, Ok(Ok(()))) {
        return Err(ApiError::Unavailable);
    }
    let outcomes = match tokio::time::timeout(std::time::Duration::from_secs(30), outcome).await {
        Ok(Ok(Ok(outcomes))) => outcomes,
        Ok(Ok(Err(WriteError::Unavailable | WriteError::ShuttingDown))) | Ok(Err(_)) | Err(_) => {
            return Err(ApiError::Unavailable)
        }
    };
    let results: Vec<serde_json::Value> = values
        .iter()
        .zip(outcomes)
        .map(|(v, o)| serde_json::json!({ "seq": v.get("seq"), "status": o }))
        .collect();
    let stored = results
        .iter()
        .filter(|r| r["status"] == serde_json::json!(Outcome::Stored))
        .count();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "stored": stored, "items": results })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterQuery {
    /// Only dead letters with a smaller id (the previous page's `next_before`).
    before: Option<i64>,
    /// Page size, 1..=500, default 100.
    limit: Option<i64>,
}

/// The caller's organisation's dead letters, newest first.
#[get("/v1/dead-letters")]
async fn dead_letters(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin, Role::ProviderStaff, Role::Auditor])?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 500"));
    }
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT id, received_at, device_uid, source, topic, payload, reason_code, reason
               FROM dead_letters
              WHERE organisation_id = $1 AND ($2::bigint IS NULL OR id < $2)
              ORDER BY id DESC LIMIT $3",
            &[&caller.organisation_id, &query.before, &limit],
        )
        .await?;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let payload: Vec<u8> = r.get("payload");
            serde_json::json!({
                "id": r.get::<_, i64>("id"),
                "received_at": r.get::<_, chrono::DateTime<Utc>>("received_at"),
                "device_uid": r.get::<_, Option<String>>("device_uid"),
                "source": r.get::<_, String>("source"),
                "topic": r.get::<_, Option<String>>("topic"),
                "reason_code": r.get::<_, String>("reason_code"),
                "reason": r.get::<_, String>("reason"),
                "payload_base64": base64::engine::general_purpose::STANDARD.encode(&payload),
                "payload_text": std::str::from_utf8(&payload).ok(),
            })
        })
        .collect();
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i["id"].clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next_before": next_before })))
}
