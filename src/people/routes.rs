//! `/v1/people` and `/v1/workers` (documented in docs/visits.md): provider roles manage their
//! own organisation's people and workers; nobody else reads them here. Creating a worker and
//! linking a phone are answered by visit verification (the `evv` module), which derives the phone's
//! visits again after [`store`] writes the link.

use actix_web::{get, post, web, HttpResponse};
use chrono::NaiveDate;
use serde::Deserialize;

use super::store::{self, Person};
use super::{valid_reference, GeofencePolicy};
use crate::auth::{Caller, Role};
use crate::http::{ApiError, AppState, FieldError};

/// The roles that manage people and workers.
pub(crate) const EDITORS: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_person)
        .service(list_people)
        .service(read_person)
        .service(list_workers);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPerson {
    external_ref: String,
    display_name: Option<String>,
    date_of_birth: Option<NaiveDate>,
    home_lat: Option<f64>,
    home_lon: Option<f64>,
    geofence_radius_m: Option<f32>,
    area: Option<String>,
    home_tag: Option<String>,
    home_phone: Option<String>,
    geofence_policy: Option<GeofencePolicy>,
}

/// A person as the API shows it: with the radius that applies (their own, else the default).
fn person_json(p: &Person, default_radius_m: u32) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "external_ref": p.external_ref,
        "pseudonym": p.pseudonym,
        "display_name": p.display_name,
        "date_of_birth": p.date_of_birth,
        "home_lat": p.home_lat,
        "home_lon": p.home_lon,
        "geofence_radius_m": p.geofence_radius_m,
        "effective_geofence_radius_m": p.geofence_radius_m.map(f64::from).unwrap_or(f64::from(default_radius_m)),
        "area": p.area,
        "home_tag": p.home_tag,
        "home_phone": p.home_phone,
        "geofence_policy": p.geofence_policy,
    })
}

fn check_person(p: &NewPerson) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if p.external_ref.trim().is_empty() || p.external_ref.len() > 100 {
        errors.push(FieldError::new(
            "external_ref",
            "must be 1 to 100 characters",
        ));
    }
    match (p.home_lat, p.home_lon) {
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) {
                errors.push(FieldError::new("home_lat", "must be between -90 and 90"));
            }
            if !(-180.0..=180.0).contains(&lon) {
                errors.push(FieldError::new("home_lon", "must be between -180 and 180"));
            }
        }
        (None, None) => {}
        (Some(_), None) => errors.push(FieldError::new(
            "home_lon",
            "give home_lat and home_lon together",
        )),
        (None, Some(_)) => errors.push(FieldError::new(
            "home_lat",
            "give home_lat and home_lon together",
        )),
    }
    if let Some(r) = p.geofence_radius_m {
        // EVV systems use radii from about 75 m to 500 m, one aggregator 1 mile.
        if !(10.0..=2000.0).contains(&r) {
            errors.push(FieldError::new(
                "geofence_radius_m",
                "must be between 10 and 2000 metres",
            ));
        }
    }
    for (field, value) in [("home_tag", &p.home_tag), ("home_phone", &p.home_phone)] {
        if value.as_deref().is_some_and(|v| !valid_reference(v)) {
            errors.push(FieldError::new(
                field,
                "must be 1 to 64 of A-Z a-z 0-9 . _ : + -",
            ));
        }
    }
    if p.area
        .as_deref()
        .is_some_and(|a| a.is_empty() || a.len() > 100)
    {
        errors.push(FieldError::new("area", "must be 1 to 100 characters"));
    }
    errors
}

#[post("/v1/people")]
async fn create_person(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<NewPerson>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let p = body.into_inner();
    let errors = check_person(&p);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let client = state.pool.get().await?;
    let new = store::NewPerson {
        external_ref: p.external_ref.trim(),
        display_name: p.display_name.as_deref(),
        date_of_birth: p.date_of_birth,
        home_lat: p.home_lat,
        home_lon: p.home_lon,
        geofence_radius_m: p.geofence_radius_m,
        area: p.area.as_deref(),
        home_tag: p.home_tag.as_deref(),
        home_phone: p.home_phone.as_deref(),
        geofence_policy: p.geofence_policy.map(|g| g.as_str()),
    };
    let person = store::insert_person(&client, caller.organisation_id, &new)
        .await
        .map_err(|e| {
            if store::is_duplicate(&e) {
                ApiError::Conflict(
                    "a person with this external_ref or home_tag already exists".into(),
                )
            } else {
                e.into()
            }
        })?;
    Ok(HttpResponse::Created().json(person_json(
        &person,
        state.settings.evv.default_geofence_radius_m,
    )))
}

#[get("/v1/people")]
async fn list_people(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let client = state.pool.get().await?;
    let radius = state.settings.evv.default_geofence_radius_m;
    let items: Vec<_> = store::people(&client, caller.organisation_id)
        .await?
        .iter()
        .map(|p| person_json(p, radius))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

#[get("/v1/people/{id}")]
async fn read_person(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let client = state.pool.get().await?;
    let person = store::find_person(&client, caller.organisation_id, path.into_inner())
        .await?
        .ok_or_else(|| ApiError::NotFound("person".into()))?;
    Ok(HttpResponse::Ok().json(person_json(
        &person,
        state.settings.evv.default_geofence_radius_m,
    )))
}

#[get("/v1/workers")]
async fn list_workers(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let client = state.pool.get().await?;
    let items = store::workers(&client, caller.organisation_id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}
