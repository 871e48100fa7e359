//! `/v1/people` and `/v1/workers` (documented in docs/visits.md): provider roles manage their
//! own organisation's people and workers; nobody else reads them here. Creating a worker and
//! linking a phone are answered by visit verification (the `evv` module), which derives the phone's
//! visits again after [`store`] writes the link.

use actix_web::{get, patch, post, web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::store::{self, Person, Worker};
use super::{valid_reference, GeofencePolicy};
use crate::auth::{Caller, Role};
use crate::http::openapi as doc;
use crate::http::paging::{self, Page};
use crate::http::{ApiError, AppState, FieldError};

/// The roles that manage people and workers.
pub(crate) const EDITORS: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff];

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_person)
        .service(list_people)
        .service(read_person)
        .service(update_person)
        .service(list_workers)
        .service(read_worker);
}

/// A person receiving care. `home_lat` and `home_lon` come together or not at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPerson {
    /// The provider's own reference, unique in the organisation (surrounding spaces are
    /// dropped).
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    external_ref: String,
    display_name: Option<String>,
    #[schema(pattern = "^(19|2[01])[0-9]{2}-")]
    date_of_birth: Option<NaiveDate>,
    #[schema(minimum = -90.0, maximum = 90.0)]
    home_lat: Option<f64>,
    #[schema(minimum = -180.0, maximum = 180.0)]
    home_lon: Option<f64>,
    /// The person's own geofence radius in metres; without it the configured default applies.
    #[schema(minimum = 10.0, maximum = 2000.0)]
    geofence_radius_m: Option<f32>,
    /// The area whose geofence policy applies when the person has none of their own.
    #[schema(min_length = 1, max_length = 100)]
    area: Option<String>,
    /// The NFC tag at the person's home.
    #[schema(pattern = "^[A-Za-z0-9._:+-]{1,64}$")]
    home_tag: Option<String>,
    /// The calling line of the person's home phone (telephony check-ins).
    #[schema(pattern = "^[A-Za-z0-9._:+-]{1,64}$")]
    home_phone: Option<String>,
    #[schema(inline)]
    geofence_policy: Option<GeofencePolicy>,
    /// The postal address of the person's home.
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    address: Option<String>,
    /// How to get in: which door, pets, a neighbour with a key.
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S")]
    access_notes: Option<String>,
    /// The key-safe code. Never written to the audit log in clear.
    #[schema(min_length = 1, max_length = 50, pattern = "\\S")]
    key_safe_code: Option<String>,
}

/// A person as the API shows it: with the radius that applies (their own, else the default).
#[derive(Debug, Serialize, ToSchema)]
struct PersonView {
    id: i32,
    external_ref: String,
    /// What commissioners see instead of the name and reference.
    pseudonym: String,
    display_name: Option<String>,
    date_of_birth: Option<NaiveDate>,
    home_lat: Option<f64>,
    home_lon: Option<f64>,
    /// The person's own radius; `null` takes the configured default.
    geofence_radius_m: Option<f32>,
    /// The radius that applies, in metres.
    effective_geofence_radius_m: f64,
    area: Option<String>,
    home_tag: Option<String>,
    home_phone: Option<String>,
    /// `null` takes the area's policy, else the configured one.
    #[schema(value_type = Option<GeofencePolicy>)]
    geofence_policy: Option<String>,
    address: Option<String>,
    access_notes: Option<String>,
    /// Shown to the provider's own staff and administrators, as the rest of the person.
    key_safe_code: Option<String>,
}

/// `view` as the audit log keeps it: the key-safe code replaced by whether there is one.
fn audited(view: &PersonView) -> serde_json::Value {
    let mut value = serde_json::to_value(view).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("key_safe_code");
        fields.insert(
            "key_safe_code_set".into(),
            view.key_safe_code.is_some().into(),
        );
    }
    value
}

fn person_view(p: Person, default_radius_m: u32) -> PersonView {
    PersonView {
        id: p.id,
        effective_geofence_radius_m: p
            .geofence_radius_m
            .map(f64::from)
            .unwrap_or(f64::from(default_radius_m)),
        external_ref: p.external_ref,
        pseudonym: p.pseudonym,
        display_name: p.display_name,
        date_of_birth: p.date_of_birth,
        home_lat: p.home_lat,
        home_lon: p.home_lon,
        geofence_radius_m: p.geofence_radius_m,
        area: p.area,
        home_tag: p.home_tag,
        home_phone: p.home_phone,
        geofence_policy: p.geofence_policy,
        address: p.address,
        access_notes: p.access_notes,
        key_safe_code: p.key_safe_code,
    }
}

#[derive(Serialize, ToSchema)]
struct PersonList {
    /// By id.
    items: Vec<PersonView>,
    /// `after` for the next page (the last id of this one); null on the last page.
    next_after: Option<i32>,
}

#[derive(Serialize, ToSchema)]
struct WorkerList {
    /// By id.
    items: Vec<Worker>,
    /// `after` for the next page (the last id of this one); null on the last page.
    next_after: Option<i32>,
}

/// A page of people or workers, by id.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// The last id of the previous page.
    after: Option<i32>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// A page of the caller's organisation's people by id after `after`, as `GET /v1/people`
/// lists them (provider admins and staff).
pub async fn people_of(
    client: &crate::db::Client,
    caller: &Caller,
    after: Option<i32>,
    limit: i64,
) -> Result<Page<Person, i32>, ApiError> {
    caller.require(EDITORS)?;
    let rows = store::people(client, caller.organisation_id, after, Some(limit + 1)).await?;
    Ok(Page::from_rows(rows, limit, |p: &Person| p.id))
}

/// A page of the caller's organisation's care workers by id after `after`, as
/// `GET /v1/workers` lists them (provider admins and staff).
pub async fn workers_of(
    client: &crate::db::Client,
    caller: &Caller,
    after: Option<i32>,
    limit: i64,
) -> Result<Page<Worker, i32>, ApiError> {
    caller.require(EDITORS)?;
    let rows = store::workers(client, caller.organisation_id, after, Some(limit + 1)).await?;
    Ok(Page::from_rows(rows, limit, |w: &Worker| w.id))
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
    check_home_access(
        p.address.as_deref(),
        p.access_notes.as_deref(),
        p.key_safe_code.as_deref(),
        &mut errors,
    );
    errors
}

/// Longest address, access notes and key-safe code, in characters (as the table's checks).
const ADDRESS_CHARS: usize = 500;
const ACCESS_NOTES_CHARS: usize = 1000;
const KEY_SAFE_CHARS: usize = 50;

fn check_home_access(
    address: Option<&str>,
    access_notes: Option<&str>,
    key_safe_code: Option<&str>,
    errors: &mut Vec<FieldError>,
) {
    for (field, value, max) in [
        ("address", address, ADDRESS_CHARS),
        ("access_notes", access_notes, ACCESS_NOTES_CHARS),
        ("key_safe_code", key_safe_code, KEY_SAFE_CHARS),
    ] {
        if value.is_some_and(|v| v.trim().is_empty() || v.chars().count() > max) {
            errors.push(FieldError::new(
                field,
                format!("must be 1 to {max} characters, not only spaces"),
            ));
        }
    }
}

/// Records a person receiving care.
#[utoipa::path(
    operation_id = "create_person",
    tag = "people",
    request_body = NewPerson,
    responses(
        (status = 201, description = "Recorded.", body = PersonView,
            links(
                ("person" = (operation_id = "get_person",
                    parameters(("id" = "$response.body#/id")))),
                ("schedule_visit" = (operation_id = "create_scheduled_visit",
                    request_body = json!({ "person_id": "$response.body#/id" }))),
            )),
        doc::Forbidden,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/people")]
async fn create_person(
    caller: Caller,
    state: web::Data<AppState>,
    body: crate::http::Json<NewPerson>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let p = body.into_inner();
    crate::http::dates::check_date("date_of_birth", p.date_of_birth)?;
    let errors = check_person(&p);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
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
        address: p.address.as_deref(),
        access_notes: p.access_notes.as_deref(),
        key_safe_code: p.key_safe_code.as_deref(),
    };
    let person = store::insert_person(&tx, caller.organisation_id, &new)
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
    let view = person_view(person, state.settings.evv.default_geofence_radius_m);
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "person.create",
            "person",
            view.id,
            serde_json::json!({"after": audited(&view)}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(view))
}

/// The organisation's people.
#[utoipa::path(
    operation_id = "list_people",
    tag = "people",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of the organisation's people, by id.", body = PersonList,
            links(("person" = (operation_id = "get_person",
                parameters(("id" = "$response.body#/items/0/id")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/people")]
async fn list_people(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let limit = paging::STANDARD.check(q.limit)?;
    let client = state.db(&caller).await?;
    let page = people_of(&client, &caller, q.after, limit).await?;
    let radius = state.settings.evv.default_geofence_radius_m;
    Ok(HttpResponse::Ok().json(PersonList {
        items: page
            .items
            .into_iter()
            .map(|p| person_view(p, radius))
            .collect(),
        next_after: page.next_after,
    }))
}

/// One person.
#[utoipa::path(
    operation_id = "get_person",
    tag = "people",
    params(("id" = i32, Path, description = "The person's id.")),
    responses(
        (status = 200, description = "The person.", body = PersonView),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/people/{id}")]
async fn read_person(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let client = state.db(&caller).await?;
    let person = store::find_person(&client, caller.organisation_id, path.into_inner())
        .await?
        .ok_or_else(|| ApiError::NotFound("person".into()))?;
    Ok(HttpResponse::Ok().json(person_view(
        person,
        state.settings.evv.default_geofence_radius_m,
    )))
}

/// `Some(value)` for a field that is present, `null` included, so that `null` clears it and
/// an absent field is left as it is.
fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to a person: only the fields given change; `null` clears one. The home's
/// verification details (location, tag, calling line, radius, policy, area) are not changed
/// here: visits already verified against them would disagree with them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonUpdate {
    /// Not only spaces, at most 200 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200, pattern = "\\S")]
    pub display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>, pattern = "^(19|2[01])[0-9]{2}-")]
    pub date_of_birth: Option<Option<NaiveDate>>,
    /// The postal address of the person's home.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500, pattern = "\\S")]
    pub address: Option<Option<String>>,
    /// How to get in: which door, pets, a neighbour with a key.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1000, pattern = "\\S")]
    pub access_notes: Option<Option<String>>,
    /// The key-safe code. The audit log records that it changed, never the code.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 50, pattern = "\\S")]
    pub key_safe_code: Option<Option<String>>,
}

/// A present-or-absent text field as borrowed text.
fn text(v: &Option<Option<String>>) -> Option<Option<&str>> {
    v.as_ref().map(|v| v.as_deref())
}

/// Changes a person's name, date of birth, address, access notes or key-safe code.
#[utoipa::path(
    operation_id = "update_person",
    tag = "people",
    params(("id" = i32, Path, description = "The person's id.")),
    request_body = PersonUpdate,
    responses(
        (status = 200, description = "The person as now recorded.", body = PersonView),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[patch("/v1/people/{id}")]
async fn update_person(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    body: crate::http::Json<PersonUpdate>,
) -> Result<HttpResponse, ApiError> {
    let view = update(&state, &caller, path.into_inner(), &body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Checks and applies `u` to the caller's person `id` with its audit row (`person.update`:
/// the fields before and after, the key-safe code only as whether it is set and whether it
/// changed). The function behind `PATCH /v1/people/{id}`, which the console's person page
/// calls too.
pub async fn apply_update(
    state: &AppState,
    caller: &Caller,
    id: i32,
    u: &PersonUpdate,
) -> Result<(), ApiError> {
    update(state, caller, id, u).await.map(|_| ())
}

async fn update(
    state: &AppState,
    caller: &Caller,
    id: i32,
    u: &PersonUpdate,
) -> Result<PersonView, ApiError> {
    caller.require(EDITORS)?;
    crate::http::dates::check_date("date_of_birth", u.date_of_birth.flatten())?;
    let mut errors = Vec::new();
    check_home_access(
        text(&u.address).flatten(),
        text(&u.access_notes).flatten(),
        text(&u.key_safe_code).flatten(),
        &mut errors,
    );
    if text(&u.display_name)
        .flatten()
        .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200)
    {
        errors.push(FieldError::new(
            "display_name",
            "must be 1 to 200 characters",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let change = store::PersonChange {
        display_name: text(&u.display_name),
        date_of_birth: u.date_of_birth,
        address: text(&u.address),
        access_notes: text(&u.access_notes),
        key_safe_code: text(&u.key_safe_code),
    };
    let mut client = state.db(caller).await?;
    let tx = client.transaction().await?;
    let (before, after) = store::update_person(&tx, caller.organisation_id, id, &change)
        .await?
        .ok_or_else(|| ApiError::NotFound("person".into()))?;
    let radius = state.settings.evv.default_geofence_radius_m;
    let key_safe_changed = before.key_safe_code != after.key_safe_code;
    let (before, after) = (person_view(before, radius), person_view(after, radius));
    crate::audit::by(
        &*tx,
        caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "person.update",
            "person",
            id,
            serde_json::json!({"before": audited(&before), "after": audited(&after),
                               "key_safe_code_changed": key_safe_changed}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// The organisation's care workers with their phones.
#[utoipa::path(
    operation_id = "list_workers",
    tag = "people",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of the organisation's workers, by id.", body = WorkerList,
            links(("worker" = (operation_id = "get_worker",
                parameters(("id" = "$response.body#/items/0/id")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/workers")]
async fn list_workers(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let limit = paging::STANDARD.check(q.limit)?;
    let client = state.db(&caller).await?;
    let page = workers_of(&client, &caller, q.after, limit).await?;
    Ok(HttpResponse::Ok().json(WorkerList {
        items: page.items,
        next_after: page.next_after,
    }))
}

/// One care worker with their phones.
#[utoipa::path(
    operation_id = "get_worker",
    tag = "people",
    params(("id" = i32, Path, description = "The worker's id.")),
    responses(
        (status = 200, description = "The worker.", body = Worker),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/workers/{id}")]
async fn read_worker(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EDITORS)?;
    let client = state.db(&caller).await?;
    let worker = store::find_worker(&client, caller.organisation_id, path.into_inner())
        .await?
        .ok_or_else(|| ApiError::NotFound("worker".into()))?;
    Ok(HttpResponse::Ok().json(worker))
}
