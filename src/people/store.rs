//! The SQL of people, workers and the phone link. Every function filters by the caller's
//! organisation, except [`phones_of`], whose worker the caller has already checked.

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
use serde::Serialize;

/// A person as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub id: i32,
    pub external_ref: String,
    /// What commissioners see instead of the name and reference.
    pub pseudonym: String,
    pub display_name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub home_lat: Option<f64>,
    pub home_lon: Option<f64>,
    /// The person's own geofence radius; `None` takes the configured default.
    pub geofence_radius_m: Option<f32>,
    pub area: Option<String>,
    pub home_tag: Option<String>,
    pub home_phone: Option<String>,
    /// `reject` or `warn`; `None` takes the area's, else the configured one.
    pub geofence_policy: Option<String>,
    /// The postal address of the person's home.
    pub address: Option<String>,
    /// How to get in: which door, pets, a neighbour with a key.
    pub access_notes: Option<String>,
    /// The key-safe code: for the provider's roles that respond, never logged in clear.
    pub key_safe_code: Option<String>,
}

/// A person to record; the caller has checked the fields.
#[derive(Debug, Clone)]
pub struct NewPerson<'a> {
    pub external_ref: &'a str,
    pub display_name: Option<&'a str>,
    pub date_of_birth: Option<NaiveDate>,
    pub home_lat: Option<f64>,
    pub home_lon: Option<f64>,
    pub geofence_radius_m: Option<f32>,
    pub area: Option<&'a str>,
    pub home_tag: Option<&'a str>,
    pub home_phone: Option<&'a str>,
    pub geofence_policy: Option<&'a str>,
    pub address: Option<&'a str>,
    pub access_notes: Option<&'a str>,
    pub key_safe_code: Option<&'a str>,
}

const PERSON_COLUMNS: &str =
    "id, external_ref, pseudonym, display_name, date_of_birth, home_lat, home_lon,
     geofence_radius_m, area, home_tag, home_phone, geofence_policy, address, access_notes,
     key_safe_code";

fn person(r: &tokio_postgres::Row) -> Person {
    Person {
        id: r.get("id"),
        external_ref: r.get("external_ref"),
        pseudonym: r.get("pseudonym"),
        display_name: r.get("display_name"),
        date_of_birth: r.get("date_of_birth"),
        home_lat: r.get("home_lat"),
        home_lon: r.get("home_lon"),
        geofence_radius_m: r.get("geofence_radius_m"),
        area: r.get("area"),
        home_tag: r.get("home_tag"),
        home_phone: r.get("home_phone"),
        geofence_policy: r.get("geofence_policy"),
        address: r.get("address"),
        access_notes: r.get("access_notes"),
        key_safe_code: r.get("key_safe_code"),
    }
}

/// Records a person. A second person with the same `external_ref` or `home_tag` in the
/// organisation is a unique violation ([`is_duplicate`]).
pub async fn insert_person(
    c: &impl GenericClient,
    org: i32,
    p: &NewPerson<'_>,
) -> Result<Person, tokio_postgres::Error> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO people (organisation_id, external_ref, display_name, date_of_birth,
                                     home_lat, home_lon, geofence_radius_m, area, home_tag,
                                     home_phone, geofence_policy, address, access_notes,
                                     key_safe_code)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 RETURNING {PERSON_COLUMNS}"
            ),
            &[
                &org,
                &p.external_ref,
                &p.display_name,
                &p.date_of_birth,
                &p.home_lat,
                &p.home_lon,
                &p.geofence_radius_m,
                &p.area,
                &p.home_tag,
                &p.home_phone,
                &p.geofence_policy,
                &p.address,
                &p.access_notes,
                &p.key_safe_code,
            ],
        )
        .await?;
    Ok(person(&row))
}

/// The organisation's people by id, after `after`, at most `limit` of them (all without one).
pub async fn people(
    c: &impl GenericClient,
    org: i32,
    after: Option<i32>,
    limit: Option<i64>,
) -> Result<Vec<Person>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!(
                "SELECT {PERSON_COLUMNS} FROM people
                  WHERE organisation_id = $1 AND ($2::int IS NULL OR id > $2)
                  ORDER BY id LIMIT $3"
            ),
            &[&org, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(person).collect())
}

pub async fn find_person(
    c: &impl GenericClient,
    org: i32,
    id: i32,
) -> Result<Option<Person>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            &format!("SELECT {PERSON_COLUMNS} FROM people WHERE organisation_id = $1 AND id = $2"),
            &[&org, &id],
        )
        .await?;
    Ok(row.as_ref().map(person))
}

/// What an update of a person changes: `Some(None)` clears a field, `None` leaves it. The
/// caller has checked the values.
#[derive(Debug, Clone, Default)]
pub struct PersonChange<'a> {
    pub display_name: Option<Option<&'a str>>,
    pub date_of_birth: Option<Option<NaiveDate>>,
    pub address: Option<Option<&'a str>>,
    pub access_notes: Option<Option<&'a str>>,
    pub key_safe_code: Option<Option<&'a str>>,
}

/// Applies `change` to the organisation's person `id` and returns the person as they were
/// and as they are now; `None` when the organisation has no such person.
pub async fn update_person(
    c: &impl GenericClient,
    org: i32,
    id: i32,
    change: &PersonChange<'_>,
) -> Result<Option<(Person, Person)>, tokio_postgres::Error> {
    let Some(before) = c
        .query_opt(
            &format!(
                "SELECT {PERSON_COLUMNS} FROM people WHERE organisation_id = $1 AND id = $2 \
                 FOR UPDATE"
            ),
            &[&org, &id],
        )
        .await?
    else {
        return Ok(None);
    };
    // Each field: ($n::bool) says whether to set it, the next parameter is its new value.
    let row = c
        .query_one(
            &format!(
                "UPDATE people SET
                     display_name  = CASE WHEN $3  THEN $4  ELSE display_name END,
                     date_of_birth = CASE WHEN $5  THEN $6  ELSE date_of_birth END,
                     address       = CASE WHEN $7  THEN $8  ELSE address END,
                     access_notes  = CASE WHEN $9  THEN $10 ELSE access_notes END,
                     key_safe_code = CASE WHEN $11 THEN $12 ELSE key_safe_code END
                  WHERE organisation_id = $1 AND id = $2
              RETURNING {PERSON_COLUMNS}"
            ),
            &[
                &org,
                &id,
                &change.display_name.is_some(),
                &change.display_name.flatten(),
                &change.date_of_birth.is_some(),
                &change.date_of_birth.flatten(),
                &change.address.is_some(),
                &change.address.flatten(),
                &change.access_notes.is_some(),
                &change.access_notes.flatten(),
                &change.key_safe_code.is_some(),
                &change.key_safe_code.flatten(),
            ],
        )
        .await?;
    Ok(Some((person(&before), person(&row))))
}

/// Whether the organisation has this person.
pub async fn person_exists(
    c: &impl GenericClient,
    org: i32,
    id: i32,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT 1 FROM people WHERE organisation_id = $1 AND id = $2",
        &[&org, &id],
    )
    .await?
    .is_some())
}

/// A worker with the uids of the phones they carry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Worker {
    pub id: i32,
    pub external_ref: String,
    pub display_name: Option<String>,
    pub phones: Vec<String>,
}

/// Records a worker (no phones yet); a second `external_ref` in the organisation is a unique
/// violation ([`is_duplicate`]). Returns the id.
pub async fn insert_worker(
    c: &impl GenericClient,
    org: i32,
    external_ref: &str,
    display_name: Option<&str>,
) -> Result<i32, tokio_postgres::Error> {
    Ok(c
        .query_one(
            "INSERT INTO workers (organisation_id, external_ref, display_name) VALUES ($1, $2, $3) RETURNING id",
            &[&org, &external_ref, &display_name],
        )
        .await?
        .get(0))
}

/// The organisation's workers by id, after `after`, at most `limit` of them (all without one).
pub async fn workers(
    c: &impl GenericClient,
    org: i32,
    after: Option<i32>,
    limit: Option<i64>,
) -> Result<Vec<Worker>, tokio_postgres::Error> {
    select_workers(c, org, None, after, limit).await
}

/// The organisation's worker with this id.
pub async fn find_worker(
    c: &impl GenericClient,
    org: i32,
    id: i32,
) -> Result<Option<Worker>, tokio_postgres::Error> {
    Ok(select_workers(c, org, Some(id), None, None).await?.pop())
}

/// Sets a worker's reference and name; a second `external_ref` in the organisation is a unique
/// violation ([`is_duplicate`]). False when the organisation has no such worker.
pub async fn update_worker(
    c: &impl GenericClient,
    org: i32,
    id: i32,
    external_ref: &str,
    display_name: Option<&str>,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE workers SET external_ref = $3, display_name = $4
              WHERE organisation_id = $1 AND id = $2",
            &[&org, &id, &external_ref, &display_name],
        )
        .await?;
    Ok(n > 0)
}

async fn select_workers(
    c: &impl GenericClient,
    org: i32,
    id: Option<i32>,
    after: Option<i32>,
    limit: Option<i64>,
) -> Result<Vec<Worker>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT w.id, w.external_ref, w.display_name,
                    coalesce(array_agg(d.uid ORDER BY d.uid) FILTER (WHERE d.uid IS NOT NULL), '{}')
               FROM workers w LEFT JOIN devices d ON d.worker_id = w.id
              WHERE w.organisation_id = $1 AND ($2::int IS NULL OR w.id = $2)
                AND ($3::int IS NULL OR w.id > $3)
              GROUP BY w.id ORDER BY w.id LIMIT $4",
            &[&org, &id, &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Worker {
            id: r.get(0),
            external_ref: r.get(1),
            display_name: r.get(2),
            phones: r.get(3),
        })
        .collect())
}

/// Whether the organisation has this worker.
pub async fn worker_exists(
    c: &impl GenericClient,
    org: i32,
    id: i32,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT 1 FROM workers WHERE organisation_id = $1 AND id = $2",
        &[&org, &id],
    )
    .await?
    .is_some())
}

/// Links the organisation's phone `uid` to `worker` (a phone is carried by one worker; linking
/// it again moves it). False when the organisation has no phone with this uid.
pub async fn link_phone(
    c: &impl GenericClient,
    org: i32,
    worker: i32,
    uid: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE devices SET worker_id = $3 WHERE organisation_id = $1 AND uid = $2 AND kind = 'phone'",
            &[&org, &uid, &worker],
        )
        .await?;
    Ok(n > 0)
}

/// Whom a device is linked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceLink {
    #[serde(skip)]
    pub device_id: i32,
    #[serde(skip)]
    pub kind: String,
    pub person_id: Option<i32>,
    pub worker_id: Option<i32>,
}

/// The organisation's device `uid` and whom it is linked to, locked for a change of link.
pub async fn device_link(
    c: &impl GenericClient,
    org: i32,
    uid: &str,
) -> Result<Option<DeviceLink>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT id, kind, person_id, worker_id FROM devices
              WHERE organisation_id = $1 AND uid = $2 FOR UPDATE",
        &[&org, &uid],
    )
    .await?
    .map(|r| DeviceLink {
        device_id: r.get(0),
        kind: r.get(1),
        person_id: r.get(2),
        worker_id: r.get(3),
    }))
}

/// Links the organisation's device `id` to `person` or `worker` (at most one; neither
/// unlinks it). The caller has checked both are the organisation's.
pub async fn set_device_link(
    c: &impl GenericClient,
    org: i32,
    id: i32,
    person: Option<i32>,
    worker: Option<i32>,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE devices SET person_id = $3, worker_id = $4 WHERE organisation_id = $1 AND id = $2",
        &[&org, &id, &person, &worker],
    )
    .await?;
    Ok(())
}

/// The device ids of the phones a worker carries.
pub async fn phones_of(
    c: &impl GenericClient,
    worker: i32,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    Ok(
        c.query("SELECT id FROM devices WHERE worker_id = $1", &[&worker])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    )
}

/// Whether an insert failed on a unique constraint (a duplicate reference).
pub fn is_duplicate(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}
