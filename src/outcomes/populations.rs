//! The population of each age group in a commissioner's area, which the ASCOF measures are per.
//! Owns `commissioner_populations`; commissioners set it.

use actix_web::{put, web, HttpResponse};
use serde::Deserialize;

use crate::auth::{Caller, Role};
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(population);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PopulationBody {
    population: i32,
}

/// The population of an age group (`18-64` or `65+`) in the commissioner's area.
#[put("/v1/outcomes/populations/{age_group}")]
async fn population(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    b: web::Json<PopulationBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let group = path.into_inner();
    if group != "18-64" && group != "65+" {
        return Err(ApiError::invalid("age_group", "18-64 or 65+"));
    }
    if b.population <= 0 {
        return Err(ApiError::invalid("population", "must be positive"));
    }
    let c = state.pool.get().await?;
    c.execute(
        "INSERT INTO commissioner_populations (commissioner_id, age_group, population) VALUES ($1, $2, $3)
         ON CONFLICT (commissioner_id, age_group) DO UPDATE SET population = EXCLUDED.population",
        &[&caller.organisation_id, &group, &b.population],
    )
    .await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "age_group": group, "population": b.population })))
}
