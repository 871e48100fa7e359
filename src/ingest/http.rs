//! `POST /v1/check-ins` (care workers' phones, authenticated as devices) and
//! `GET /v1/dead-letters` (provider staff).

use actix_web::{get, post, web, HttpResponse};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::mqtt::{decode, event_item};
use super::{Item, Job, Outcome, Source, WriteError};
use crate::auth::{Caller, Role};
use crate::devices::DeviceCaller;
use crate::http::openapi as doc;
use crate::http::paging;
use crate::http::{ApiError, AppState, FieldError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(check_ins).service(dead_letters);
}

/// How a check-in or check-out was proved.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Only described: the wire format's decoder reads the events.
enum CheckMethod {
    /// Needs `lat` and `lon`.
    Gps,
    /// Needs `tag`.
    Tag,
    /// Needs `caller_id`.
    Phone,
    /// Needs `reason`.
    Manual,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum CheckKind {
    CheckIn,
    CheckOut,
}

/// A check-in or check-out in the wire format's JSON (`docs/wire-format.md` is the reference:
/// it also says which fields each `method` needs). `t` may not be further ahead of the
/// server's clock than `ingest.max_future_secs` (422).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CheckEvent {
    /// The device's sequence number.
    #[schema(minimum = 1)]
    seq: i64,
    /// Device time of the event, milliseconds since the Unix epoch.
    #[schema(minimum = 0, maximum = 253_402_300_799_999_i64)]
    t: i64,
    kind: CheckKind,
    /// Sub-device number behind a hub.
    #[schema(nullable = false, minimum = 0, maximum = 65535)]
    sensor: Option<u16>,
    method: CheckMethod,
    /// The scheduled visit's reference.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9._:+-]{1,64}$")]
    visit: Option<String>,
    /// The person served.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9._:+-]{1,64}$")]
    person: Option<String>,
    /// Degrees WGS 84; with `lon`.
    #[schema(nullable = false, minimum = -90, maximum = 90)]
    lat: Option<f64>,
    /// Degrees WGS 84; with `lat`.
    #[schema(nullable = false, minimum = -180, maximum = 180)]
    lon: Option<f64>,
    /// Metres; needs `lat` and `lon`.
    #[schema(nullable = false, minimum = 0, maximum = 10000)]
    accuracy_m: Option<f32>,
    /// Seconds between the fix and `t`; needs `lat` and `lon`.
    #[schema(nullable = false, minimum = 0, maximum = 4_294_967_295_i64)]
    fix_age_s: Option<u32>,
    /// The tag read (NFC, QR).
    #[schema(nullable = false, pattern = "^[A-Za-z0-9._:+-]{1,64}$")]
    tag: Option<String>,
    /// The calling line.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9._:+-]{1,64}$")]
    caller_id: Option<String>,
    /// Reason code for a manual record.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9._:+-]{1,64}$")]
    reason: Option<String>,
    /// Free text, at most 500 bytes of UTF-8.
    #[schema(nullable = false, max_length = 500)]
    memo: Option<String>,
}

/// One event or a batch.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum CheckIns {
    One(CheckEvent),
    /// At least one and up to `ingest.max_http_batch` (default 500) events; more is 413.
    Batch(Vec<CheckEvent>),
}

/// What became of one event.
#[derive(Serialize, ToSchema)]
struct CheckInItem {
    seq: Option<i64>,
    status: Outcome,
}

#[derive(Serialize, ToSchema)]
struct CheckInResult {
    /// How many were stored now (not duplicates).
    stored: usize,
    /// In the order sent.
    items: Vec<CheckInItem>,
}

/// One event or an array of events in the wire format's JSON (`docs/wire-format.md`), of kind
/// `check_in` or `check_out`, from a care worker's phone (device credentials). Answers after
/// the transaction that stores them has committed: 200 with each item's outcome (`stored`, or
/// `duplicate` for a resend), 422 naming every invalid field (nothing is stored then), 503
/// with `Retry-After` while the database is down.
#[utoipa::path(
    operation_id = "check_in",
    tag = "ingest",
    security(("device" = [])),
    request_body = CheckIns,
    responses(
        (status = 200, description = "Stored (or already stored).", body = CheckInResult),
        doc::PayloadTooLarge,
        doc::Invalid,
    ),
)]
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
    let items: Vec<CheckInItem> = values
        .iter()
        .zip(outcomes)
        .map(|(v, status)| CheckInItem {
            seq: v.get("seq").and_then(serde_json::Value::as_i64),
            status,
        })
        .collect();
    let stored = items.iter().filter(|i| i.status == Outcome::Stored).count();
    Ok(HttpResponse::Ok().json(CheckInResult { stored, items }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeadLetterQuery {
    /// The last id of the previous page (its `next_after`): the page goes on with older
    /// dead letters, those of a smaller id.
    after: Option<i64>,
    /// Deprecated: the earlier name of `after`, still accepted (not both).
    before: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<i64>,
}

/// Input that could not be stored.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub device_uid: Option<String>,
    /// `mqtt` or `http`.
    pub source: String,
    /// The MQTT topic it came on.
    pub topic: Option<String>,
    /// Why, as a code (`docs/wire-format.md` lists them).
    pub reason_code: String,
    pub reason: String,
    /// The bytes as received.
    pub payload_base64: String,
    /// The bytes as text, when they are UTF-8.
    pub payload_text: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Newest first.
    pub items: Vec<DeadLetter>,
    /// `after` for the next page; null on the last one.
    pub next_after: Option<i64>,
    /// Deprecated: the same as `next_after`, under its earlier name.
    pub next_before: Option<i64>,
}

/// The caller's organisation's dead letters, newest first.
#[utoipa::path(
    operation_id = "list_dead_letters",
    tag = "ingest",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "A page of dead letters.", body = DeadLetterPage),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/dead-letters")]
async fn dead_letters(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = paging::Limits {
        default: 100,
        max: 500,
    }
    .check(query.limit)?;
    if query.after.is_some() && query.before.is_some() {
        return Err(ApiError::invalid(
            "before",
            "deprecated name of `after`: give `after` only",
        ));
    }
    let client = state.db(&caller).await?;
    let page = dead_letter_page(&client, &caller, query.after.or(query.before), limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Who reads dead letters.
pub const DEAD_LETTER_READERS: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff, Role::Auditor];

/// A page of the caller's organisation's dead letters, newest first, `limit` of them with ids
/// below `after`, as `GET /v1/dead-letters` answers.
pub async fn dead_letter_page(
    client: &crate::db::Client,
    caller: &Caller,
    after: Option<i64>,
    limit: i64,
) -> Result<DeadLetterPage, ApiError> {
    caller.require(DEAD_LETTER_READERS)?;
    let rows = client
        .query(
            "SELECT id, received_at, device_uid, source, topic, payload, reason_code, reason
               FROM dead_letters
              WHERE organisation_id = $1 AND ($2::bigint IS NULL OR id < $2)
              ORDER BY id DESC LIMIT $3",
            &[&caller.organisation_id, &after, &(limit + 1)],
        )
        .await?;
    let items: Vec<DeadLetter> = rows
        .iter()
        .map(|r| {
            let payload: Vec<u8> = r.get("payload");
            DeadLetter {
                id: r.get("id"),
                received_at: r.get("received_at"),
                device_uid: r.get("device_uid"),
                source: r.get("source"),
                topic: r.get("topic"),
                reason_code: r.get("reason_code"),
                reason: r.get("reason"),
                payload_base64: base64::engine::general_purpose::STANDARD.encode(&payload),
                payload_text: std::str::from_utf8(&payload).ok().map(str::to_owned),
            }
        })
        .collect();
    let page = paging::Page::from_rows(items, limit, |d: &DeadLetter| d.id);
    Ok(DeadLetterPage {
        items: page.items,
        next_after: page.next_after,
        next_before: page.next_after,
    })
}
