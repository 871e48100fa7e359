//! Creating organisations, users, tokens and device credentials. Used by the `homeward admin`
//! subcommands and by the admin API. (Contracts are created by `outcomes::contracts`, the one
//! writer of that table.)

use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use super::credentials::{create_token, TokenLifetime};
use super::{hash_secret, random_token, OrgKind, Role};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Exists(String),
    /// The name is kept for Homeward's own use (a device id that is one of its MQTT client ids).
    #[error("{0}")]
    Reserved(String),
    /// A per-user limit was reached (active tokens).
    #[error("{0}")]
    Limit(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl From<AdminError> for crate::http::ApiError {
    fn from(e: AdminError) -> Self {
        use crate::http::ApiError;
        match e {
            AdminError::NotFound(what) => ApiError::NotFound(what),
            AdminError::Invalid(msg) => ApiError::BadRequest(msg),
            AdminError::Exists(what) => ApiError::Conflict(format!("{what} already exists")),
            AdminError::Reserved(why) => ApiError::Conflict(why),
            AdminError::Limit(why) => ApiError::Conflict(why),
            AdminError::Db(e) => e.into(),
        }
    }
}

fn exists_or(what: impl FnOnce() -> String) -> impl FnOnce(tokio_postgres::Error) -> AdminError {
    move |e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            AdminError::Exists(what())
        } else {
            AdminError::Db(e)
        }
    }
}

/// An organisation, found by numeric id or by exact name.
#[derive(Debug, Clone)]
pub struct Organisation {
    pub id: i32,
    pub name: String,
    pub kind: OrgKind,
}

pub async fn find_organisation(
    client: &impl GenericClient,
    id_or_name: &str,
) -> Result<Organisation, AdminError> {
    let row = match id_or_name.parse::<i32>() {
        Ok(id) => {
            client
                .query_opt(
                    "SELECT id, name, kind FROM organisations WHERE id = $1",
                    &[&id],
                )
                .await?
        }
        Err(_) => {
            client
                .query_opt(
                    "SELECT id, name, kind FROM organisations WHERE name = $1",
                    &[&id_or_name],
                )
                .await?
        }
    };
    let row = row.ok_or_else(|| AdminError::NotFound(format!("organisation `{id_or_name}`")))?;
    Ok(Organisation {
        id: row.get(0),
        name: row.get(1),
        kind: OrgKind::parse(row.get(2))
            .ok_or_else(|| AdminError::Invalid("bad organisation kind".into()))?,
    })
}

pub async fn create_organisation(
    client: &impl GenericClient,
    name: &str,
    kind: OrgKind,
) -> Result<Organisation, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AdminError::Invalid(
            "an organisation name must be 1 to 200 characters".into(),
        ));
    }
    if name.parse::<i32>().is_ok() {
        return Err(AdminError::Invalid(
            "an organisation name cannot be a number".into(),
        ));
    }
    let row = client
        .query_one(
            "INSERT INTO organisations (name, kind) VALUES ($1, $2) RETURNING id",
            &[&name, &kind.as_str()],
        )
        .await
        .map_err(exists_or(|| format!("organisation `{name}`")))?;
    Ok(Organisation {
        id: row.get(0),
        name: name.to_string(),
        kind,
    })
}

/// A new user and their first API token (returned once, stored only as a hash), valid for
/// [`TokenLifetime::default`].
pub async fn create_user(
    client: &impl GenericClient,
    organisation: &Organisation,
    name: &str,
    role: Role,
) -> Result<(i32, String), AdminError> {
    create_user_with(client, organisation, name, role, TokenLifetime::default()).await
}

/// A new user and their first API token, which lives `lifetime`.
pub async fn create_user_with(
    client: &impl GenericClient,
    organisation: &Organisation,
    name: &str,
    role: Role,
    lifetime: TokenLifetime,
) -> Result<(i32, String), AdminError> {
    if !role.fits(organisation.kind) {
        return Err(AdminError::Invalid(format!(
            "role {} does not belong in a {} organisation",
            role.as_str(),
            organisation.kind.as_str()
        )));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AdminError::Invalid(
            "a user name must be 1 to 200 characters".into(),
        ));
    }
    let row = client
        .query_one(
            "INSERT INTO users (organisation_id, name, role) VALUES ($1, $2, $3) RETURNING id",
            &[&organisation.id, &name, &role.as_str()],
        )
        .await
        .map_err(exists_or(|| {
            format!("user `{name}` in `{}`", organisation.name)
        }))?;
    let user_id: i32 = row.get(0);
    let token = create_token(
        client,
        user_id,
        Some("created with the user"),
        lifetime,
        None,
    )
    .await?;
    Ok((user_id, token))
}

/// Device kinds, as stored in `devices.kind`.
pub const DEVICE_KINDS: &[&str] = &["hub", "pendant", "fall_detector", "sensor", "phone"];

/// Every MQTT client id Homeward uses for itself begins with this: the ingest client
/// (`mqtt.client_id`, which configuration requires to begin with it, so that the ids of every
/// instance of a scaled-out deployment are covered), its downlink client
/// (`<mqtt.client_id>-downlink`) and the ids the embedded broker assigns to clients that send
/// none (`homeward-auto-N`). A device's uid is its client id, so no device may have an id that
/// begins with it (compared ignoring ASCII case).
pub const RESERVED_CLIENT_ID_PREFIX: &str = crate::config::SERVICE_CLIENT_ID_PREFIX;

/// Why `uid` cannot be a device id, if it cannot: it begins with
/// [`RESERVED_CLIENT_ID_PREFIX`], ignoring ASCII case.
pub fn reserved_device_id(uid: &str) -> Option<AdminError> {
    let prefix = RESERVED_CLIENT_ID_PREFIX;
    let reserved = uid
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
    reserved.then(|| {
        AdminError::Reserved(format!(
            "device id `{uid}` is reserved: ids beginning with `{prefix}` are the MQTT client ids \
             of Homeward's own clients"
        ))
    })
}

/// A new device credential; returns the device's row id and its secret (shown once). The
/// secret is stored as SHA-256 and, for external brokers, as a Mosquitto hash.
///
/// Refuses ids beginning with [`RESERVED_CLIENT_ID_PREFIX`].
pub async fn create_device(
    client: &impl GenericClient,
    organisation: &Organisation,
    uid: &str,
    kind: &str,
) -> Result<(i32, String), AdminError> {
    if organisation.kind != OrgKind::Provider {
        return Err(AdminError::Invalid(
            "devices belong to provider organisations".into(),
        ));
    }
    if !homeward_proto::topic::valid_device_id(uid) {
        return Err(AdminError::Invalid(format!(
            "device id `{uid}` must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"
        )));
    }
    if let Some(reserved) = reserved_device_id(uid) {
        return Err(reserved);
    }
    if !DEVICE_KINDS.contains(&kind) {
        return Err(AdminError::Invalid(format!(
            "device kind `{kind}` must be one of {}",
            DEVICE_KINDS.join(", ")
        )));
    }
    let secret = random_token(32);
    let row = client
        .query_one(
            "INSERT INTO devices (organisation_id, uid, kind, secret_hash, secret_mosquitto_hash)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &organisation.id,
                &uid,
                &kind,
                &hash_secret(&secret).as_slice(),
                &crate::devices::mosquitto::hash(&secret),
            ],
        )
        .await
        .map_err(exists_or(|| format!("device `{uid}`")))?;
    Ok((row.get(0), secret))
}
