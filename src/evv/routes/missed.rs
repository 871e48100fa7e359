//! The missed-visit alerts, as `missed` raised and cleared them.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Caller, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_missed);
}

/// Which alerts a list shows.
#[derive(ToSchema)]
#[allow(dead_code)]
enum MissedState {
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
    /// `open` (default) or `all`.
    #[param(inline, value_type = Option<MissedState>)]
    state: Option<String>,
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
    items: Vec<MissedAlert>,
}

/// Missed-visit alerts, latest due first, at most 1,000.
#[utoipa::path(
    operation_id = "list_missed_visits",
    tag = "visits",
    params(MissedQuery),
    responses(
        (status = 200, description = "The alerts.", body = MissedList),
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
    let all = match query.state.as_deref() {
        None | Some("open") => false,
        Some("all") => true,
        Some(_) => return Err(ApiError::invalid("state", "must be open or all")),
    };
    let client = state.db(&caller).await?;
    let items = missed_alerts(&client, &caller, all).await?;
    Ok(HttpResponse::Ok().json(MissedList { items }))
}

/// The caller's missed-visit alerts (open ones unless `all`), latest due first, at most
/// 1,000, as `GET /v1/missed-visits` lists them.
pub async fn missed_alerts(
    client: &deadpool_postgres::Client,
    caller: &Caller,
    all: bool,
) -> Result<Vec<MissedAlert>, ApiError> {
    caller.require(&[Role::ProviderAdmin, Role::ProviderStaff, Role::Responder])?;
    let organisation = crate::auth::visibility(caller, &***client)
        .await?
        .own_provider()?;
    let rows = client
        .query(
            "SELECT s.id, s.reference, s.person_id, s.worker_id, s.window_start, a.due_at,
                    a.raised_at, a.cleared_at, a.cleared_reason, p.external_ref
               FROM missed_visit_alerts a
               JOIN scheduled_visits s ON s.id = a.scheduled_visit_id
               JOIN people p ON p.id = s.person_id
              WHERE a.organisation_id = $1 AND ($2 OR a.cleared_at IS NULL)
              ORDER BY a.due_at DESC, s.id LIMIT 1000",
            &[&organisation, &all],
        )
        .await?;
    let items = rows
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
    Ok(items)
}
