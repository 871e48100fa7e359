//! `GET /v1/me`: who the token belongs to.

use actix_web::{get, web, HttpResponse};

use super::Caller;
use crate::http::{ApiError, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(me);
}

#[get("/v1/me")]
async fn me(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let org = client
        .query_one(
            "SELECT name FROM organisations WHERE id = $1",
            &[&caller.organisation_id],
        )
        .await?;
    let name: String = org.get(0);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "user": { "id": caller.user_id, "name": caller.user_name, "role": caller.role },
        "organisation": { "id": caller.organisation_id, "name": name, "kind": caller.organisation_kind },
    })))
}
