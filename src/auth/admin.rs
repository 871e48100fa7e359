//! Creating organisations, users, tokens, contracts and device credentials. Used by the
//! `homeward admin` subcommands and by the admin API.

use chrono::NaiveDate;
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use super::{hash_secret, new_api_token, random_token, OrgKind, Role};

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
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
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

/// A new user and their first API token (returned once, stored only as a hash).
pub async fn create_user(
    client: &impl GenericClient,
    organisation: &Organisation,
    name: &str,
    role: Role,
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
    let token = create_token(client, user_id, Some("created with the user")).await?;
    Ok((user_id, token))
}

/// Another API token for an existing user.
pub async fn create_token(
    client: &impl GenericClient,
    user_id: i32,
    label: Option<&str>,
) -> Result<String, AdminError> {
    let token = new_api_token();
    let inserted = client
        .execute(
            "INSERT INTO api_tokens (user_id, token_hash, label)
             SELECT id, $2, $3 FROM users WHERE id = $1 AND disabled_at IS NULL",
            &[&user_id, &hash_secret(&token).as_slice(), &label],
        )
        .await?;
    if inserted == 0 {
        return Err(AdminError::NotFound(format!("active user {user_id}")));
    }
    Ok(token)
}

pub async fn create_contract(
    client: &impl GenericClient,
    commissioner: &Organisation,
    provider: &Organisation,
    reference: &str,
    starts_on: NaiveDate,
    ends_on: Option<NaiveDate>,
) -> Result<i32, AdminError> {
    if commissioner.kind != OrgKind::Commissioner || provider.kind != OrgKind::Provider {
        return Err(AdminError::Invalid(
            "a contract is between a commissioner and a provider".into(),
        ));
    }
    let row = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on, ends_on)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &commissioner.id,
                &provider.id,
                &reference,
                &starts_on,
                &ends_on,
            ],
        )
        .await
        .map_err(exists_or(|| format!("contract `{reference}`")))?;
    Ok(row.get(0))
}

/// Device kinds, as stored in `devices.kind`.
pub const DEVICE_KINDS: &[&str] = &["hub", "pendant", "fall_detector", "sensor", "phone"];

/// Every MQTT client id Homeward uses for itself begins with this: the default ingest client
/// `homeward-ingest`, its downlink client `homeward-ingest-downlink`, and the ids the embedded
/// broker assigns to clients that send none (`homeward-auto-N`). A device's uid is its client
/// id, so no device may have an id that begins with it (compared ignoring ASCII case).
pub const RESERVED_CLIENT_ID_PREFIX: &str = "homeward";

/// Why `uid` cannot be a device id, if it cannot: it begins with
/// [`RESERVED_CLIENT_ID_PREFIX`] or with `service_client_id` (the configured `mqtt.client_id`,
/// whose downlink client is `{mqtt.client_id}-downlink`). Ignores ASCII case.
pub fn reserved_device_id(uid: &str, service_client_id: &str) -> Option<AdminError> {
    let starts = |prefix: &str| {
        !prefix.is_empty()
            && uid
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    let prefix = [RESERVED_CLIENT_ID_PREFIX, service_client_id]
        .into_iter()
        .find(|p| starts(p))?;
    Some(AdminError::Reserved(format!(
        "device id `{uid}` is reserved: ids beginning with `{prefix}` are MQTT client ids of \
         Homeward's own clients"
    )))
}

/// A new device credential; returns the device's row id and its secret (shown once).
///
/// Refuses ids beginning with [`RESERVED_CLIENT_ID_PREFIX`]; callers that know the configured
/// `mqtt.client_id` check it too with [`reserved_device_id`].
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
    if let Some(reserved) = reserved_device_id(uid, RESERVED_CLIENT_ID_PREFIX) {
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
            "INSERT INTO devices (organisation_id, uid, kind, secret_hash) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&organisation.id, &uid, &kind, &hash_secret(&secret).as_slice()],
        )
        .await
        .map_err(exists_or(|| format!("device `{uid}`")))?;
    Ok((row.get(0), secret))
}
