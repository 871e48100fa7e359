//! The population of each age group in a commissioner's area, which the ASCOF measures are per.
//! Owns `commissioner_populations`; commissioners set it. Each change is a new row (the old
//! one stays), so a report reads the population as it was known when it was computed.

use actix_web::{put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Caller, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(population);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PopulationBody {
    #[schema(minimum = 1)]
    population: i32,
}

/// An age group's population as set.
#[derive(Serialize, ToSchema)]
struct Population {
    #[schema(inline)]
    age_group: AgeGroup,
    population: i32,
}

/// The age groups of the indicators' populations.
#[derive(Serialize, ToSchema)]
enum AgeGroup {
    #[serde(rename = "18-64")]
    Adults,
    #[serde(rename = "65+")]
    Older,
}

/// The population of an age group (`18-64` or `65+`) in the commissioner's area.
/// Sets the commissioner's population in an age group (the indicators' denominator).
#[utoipa::path(
    operation_id = "put_population",
    tag = "outcomes",
    params(("age_group" = inline(AgeGroup), Path, description = "`18-64` or `65+`.")),
    request_body = PopulationBody,
    responses(
        (status = 200, description = "Set.", body = Population),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[put("/v1/outcomes/populations/{age_group}")]
async fn population(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    b: crate::http::Json<PopulationBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let group = path.into_inner();
    if group != "18-64" && group != "65+" {
        return Err(ApiError::invalid("age_group", "18-64 or 65+"));
    }
    if b.population <= 0 {
        return Err(ApiError::invalid("population", "must be positive"));
    }
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    tx.execute(
        "INSERT INTO commissioner_populations (commissioner_id, age_group, population, recorded_by)
         VALUES ($1, $2, $3, $4)",
        &[
            &caller.organisation_id,
            &group,
            &b.population,
            &caller.user_id,
        ],
    )
    .await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "population.set",
            "population",
            &group,
            serde_json::json!({"population": b.population}),
        ),
    )
    .await?;
    tx.commit().await?;
    let age_group = if group == "18-64" {
        AgeGroup::Adults
    } else {
        AgeGroup::Older
    };
    Ok(HttpResponse::Ok().json(Population {
        age_group,
        population: b.population,
    }))
}
