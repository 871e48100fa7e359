//! The missed-visit alerts, as `missed` raised and cleared them.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Caller, Role};
use crate::http::openapi as doc;
use crate::http::paging;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_missed);
}

/// Which alerts a list shows.
#[derive(ToSchema)]
#[allow(dead_code)]
enum MissedStatus {
    /// Raised and not cleared.
    #[schema(rename = "open")]
    Open,
    /// Every alert.
    #[schema(rename = "all")]
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MissedQuery {
    /// `open` (default) or `all`: the same filter, by the same name, as on alarms.
    #[param(inline, value_type = Option<MissedStatus>)]
    status: Option<String>,
    /// Deprecated: the earlier name of `status`, still accepted (not both).
    #[param(inline, value_type = Option<MissedStatus>)]
    state: Option<String>,
    /// The last `scheduled_visit_id` of the previous page: the page goes on after that alert
    /// in the list's order (latest due first).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

impl MissedQuery {
    /// Whether every alert is asked for, from `status` or its deprecated alias `state`.
    fn all(&self) -> Result<bool, ApiError> {
        let (field, value) = match (&self.status, &self.state) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "state",
                    "deprecated name of `status`: give `status` only",
                ))
            }
            (Some(v), None) => ("status", Some(v)),
            (None, v) => ("state", v.as_ref()),
        };
        match value.map(String::as_str) {
            None | Some("open") => Ok(false),
            Some("all") => Ok(true),
            Some(_) => Err(ApiError::invalid(field, "must be open or all")),
        }
    }
}

/// Whether an alert still stands.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Raised,
    Cleared,
}

/// A missed-visit alert.
#[derive(Serialize, ToSchema)]
pub struct MissedAlert {
    pub scheduled_visit_id: i64,
    pub reference: String,
    pub person_id: i32,
    pub person_ref: String,
    pub worker_id: Option<i32>,
    pub window_start: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub cleared_at: Option<DateTime<Utc>>,
    pub cleared_reason: Option<String>,
    #[schema(inline)]
    pub state: AlertState,
}

#[derive(Serialize, ToSchema)]
struct MissedList {
    /// Latest due first (then highest `scheduled_visit_id`).
    items: Vec<MissedAlert>,
    /// `after` for the next page (a `scheduled_visit_id`); null on the last one.
    next_after: Option<i64>,
}

/// Missed-visit alerts, latest due first, a page at a time.
#[utoipa::path(
    operation_id = "list_missed_visits",
    tag = "visits",
    params(MissedQuery),
    responses(
        (status = 200, description = "A page of the alerts.", body = MissedList),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/missed-visits")]
async fn list_missed(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<MissedQuery>,
) -> Result<HttpResponse, ApiError> {
    let all = query.all()?;
    let limit = paging::STANDARD.check(query.limit)?;
    let client = state.db(&caller).await?;
    let page = missed_alerts(&client, &caller, all, query.after, limit).await?;
    Ok(HttpResponse::Ok().json(MissedList {
        items: page.items,
        next_after: page.next_after,
    }))
}

/// A page of the caller's missed-visit alerts (open ones unless `all`), latest due first,
/// after the alert of scheduled visit `after`, as `GET /v1/missed-visits` lists them.
pub async fn missed_alerts(
    client: &deadpool_postgres::Client,
    caller: &Caller,
    all: bool,
    after: Option<i64>,
    limit: i64,
) -> Result<paging::Page<MissedAlert, i64>, ApiError> {
    caller.require(&[Role::ProviderAdmin, Role::ProviderStaff, Role::Responder])?;
    let organisation = crate::auth::visibility(caller, &***client)
        .await?
        .own_provider()?;
    let cursor: Option<DateTime<Utc>> = match after {
        None => None,
        Some(after) => Some(
            client
                .query_opt(
                    "SELECT due_at FROM missed_visit_alerts
                      WHERE scheduled_visit_id = $1 AND organisation_id = $2",
                    &[&after, &organisation],
                )
                .await?
                .ok_or_else(paging::unknown_after)?
                .get(0),
        ),
    };
    let rows = client
        .query(
            "SELECT s.id, s.reference, s.person_id, s.worker_id, s.window_start, a.due_at,
                    a.raised_at, a.cleared_at, a.cleared_reason, p.external_ref
               FROM missed_visit_alerts a
               JOIN scheduled_visits s ON s.id = a.scheduled_visit_id
               JOIN people p ON p.id = s.person_id
              WHERE a.organisation_id = $1 AND ($2 OR a.cleared_at IS NULL)
                AND ($3::timestamptz IS NULL OR (a.due_at, s.id) < ($3, $4))
              ORDER BY a.due_at DESC, s.id DESC LIMIT $5",
            &[&organisation, &all, &cursor, &after, &(limit + 1)],
        )
        .await?;
    let items: Vec<MissedAlert> = rows
        .iter()
        .map(|r| {
            let cleared_at: Option<DateTime<Utc>> = r.get(7);
            MissedAlert {
                scheduled_visit_id: r.get(0),
                reference: r.get(1),
                person_id: r.get(2),
                person_ref: r.get(9),
                worker_id: r.get(3),
                window_start: r.get(4),
                due_at: r.get(5),
                raised_at: r.get(6),
                cleared_at,
                cleared_reason: r.get(8),
                state: if cleared_at.is_some() {
                    AlertState::Cleared
                } else {
                    AlertState::Raised
                },
            }
        })
        .collect();
    Ok(paging::Page::from_rows(items, limit, |a: &MissedAlert| {
        a.scheduled_visit_id
    }))
}
