//! The missed-visit alerts, as `missed` raised and cleared them.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::auth::{Caller, Role};
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_missed);
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
    let organisation = crate::auth::visibility(&caller, &**client)
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
