//! The register of devices: the only code that writes `devices` (adds rows; disables, enables
//! and rotates secrets, each appending to `credential_revocations` in the same statement so
//! running servers end the device's sessions). A device's kind is a
//! closed set ([`DeviceKind`]), and its uid is its MQTT user name and client id, so ids reserved
//! for Homeward's own clients are refused here ([`reserved_device_id`]). Used by the device API
//! and `homeward admin create-device`.

use std::str::FromStr;

use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use crate::auth::{AdminError, OrgKind, Organisation, Scope};
use crate::secret::{hash_secret, random_token};
use crate::sql_enum;

sql_enum! {
    /// What a device is (`devices.kind`).
    DeviceKind {
        /// A telecare hub (home unit) relaying its sensors' events.
        Hub = "hub",
        Pendant = "pendant",
        FallDetector = "fall_detector",
        Sensor = "sensor",
        /// A care worker's phone, which checks visits in and out.
        Phone = "phone",
    }
}

/// A text that is not a [`DeviceKind`]; the message lists the kinds.
#[derive(Debug, Clone, thiserror::Error)]
#[error("device kind `{0}` must be one of {kinds}", kinds = DeviceKind::texts())]
pub struct UnknownDeviceKind(pub String);

impl FromStr for DeviceKind {
    type Err = UnknownDeviceKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownDeviceKind(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Input the caller must fix, named.
    #[error("{0}")]
    Invalid(String),
    /// The uid begins like one of Homeward's own MQTT client ids.
    #[error("{0}")]
    Reserved(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl From<RegistryError> for crate::http::ApiError {
    fn from(e: RegistryError) -> Self {
        use crate::http::ApiError;
        match e {
            RegistryError::Invalid(msg) => ApiError::BadRequest(msg),
            RegistryError::Reserved(why) => ApiError::Conflict(why),
            RegistryError::Exists(what) => ApiError::Conflict(format!("{what} already exists")),
            RegistryError::Db(e) => e.into(),
        }
    }
}

/// Every MQTT client id Homeward uses for itself begins with this: the ingest client
/// (`mqtt.client_id`, which configuration requires to begin with it, so that the ids of every
/// instance of a scaled-out deployment are covered), its downlink client
/// (`<mqtt.client_id>-downlink`) and the ids the embedded broker assigns to clients that send
/// none (`homeward-auto-N`). A device's uid is its client id, so no device may have an id that
/// begins with it (compared ignoring ASCII case).
pub const RESERVED_CLIENT_ID_PREFIX: &str = crate::config::SERVICE_CLIENT_ID_PREFIX;

/// Why `uid` cannot be a device id, if it cannot: it begins with
/// [`RESERVED_CLIENT_ID_PREFIX`], ignoring ASCII case.
pub fn reserved_device_id(uid: &str) -> Option<RegistryError> {
    let prefix = RESERVED_CLIENT_ID_PREFIX;
    let reserved = uid
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
    reserved.then(|| {
        RegistryError::Reserved(format!(
            "device id `{uid}` is reserved: ids beginning with `{prefix}` are the MQTT client ids \
             of Homeward's own clients"
        ))
    })
}

/// Registers a device of a provider; returns its row id and its secret (shown once). The
/// secret is stored only as hashes: SHA-256 and, for external brokers, a Mosquitto hash.
///
/// Refuses ids that are not valid MQTT device ids and ids beginning with
/// [`RESERVED_CLIENT_ID_PREFIX`].
pub async fn create_device(
    client: &impl GenericClient,
    organisation: &Organisation,
    uid: &str,
    kind: DeviceKind,
) -> Result<(i32, String), RegistryError> {
    if organisation.kind != OrgKind::Provider {
        return Err(RegistryError::Invalid(
            "devices belong to provider organisations".into(),
        ));
    }
    if !homeward_proto::topic::valid_device_id(uid) {
        return Err(RegistryError::Invalid(format!(
            "device id `{uid}` must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"
        )));
    }
    if let Some(reserved) = reserved_device_id(uid) {
        return Err(reserved);
    }
    let secret = random_token(32);
    let row = client
        .query_one(
            "INSERT INTO devices (organisation_id, uid, kind, secret_hash, secret_mosquitto_hash)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &organisation.id,
                &uid,
                &kind.as_str(),
                &hash_secret(&secret).as_slice(),
                &super::mosquitto::hash(&secret),
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                RegistryError::Exists(format!("device `{uid}`"))
            } else {
                RegistryError::Db(e)
            }
        })?;
    Ok((row.get(0), secret))
}

/// A device's row id, if `uid` is in `scope`.
async fn device_in_scope(
    client: &impl GenericClient,
    scope: Scope,
    uid: &str,
) -> Result<i32, AdminError> {
    client
        .query_opt(
            "SELECT id FROM devices WHERE uid = $1 AND ($2::int IS NULL OR organisation_id = $2)",
            &[&uid, &scope.org()],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| AdminError::NotFound(format!("device `{uid}`")))
}

/// Disables a device (its MQTT connection is closed and refused, HTTP calls and ingest refuse
/// it) or enables it again. Returns whether anything changed; `NotFound` outside `scope`.
pub async fn set_device_disabled(
    client: &impl GenericClient,
    scope: Scope,
    uid: &str,
    disabled: bool,
) -> Result<bool, AdminError> {
    let id = device_in_scope(client, scope, uid).await?;
    let changed = if disabled {
        client
            .query(
                "WITH d AS (
                     UPDATE devices SET disabled_at = now()
                      WHERE id = $1 AND disabled_at IS NULL RETURNING id)
                 INSERT INTO credential_revocations (device_id, reason)
                 SELECT id, 'device_disabled' FROM d RETURNING device_id",
                &[&id],
            )
            .await?
            .len()
    } else {
        client
            .query(
                "UPDATE devices SET disabled_at = NULL WHERE id = $1 AND disabled_at IS NOT NULL
                 RETURNING id",
                &[&id],
            )
            .await?
            .len()
    };
    Ok(changed > 0)
}

/// Gives a device a new secret (returned once); the old one stops working at once and the
/// device's live connection is closed, so it must reconnect with the new one. Both stored forms
/// change together (SHA-256 and the Mosquitto hash that an export hands to Mosquitto).
pub async fn rotate_device_secret(
    client: &impl GenericClient,
    scope: Scope,
    uid: &str,
) -> Result<String, AdminError> {
    let id = device_in_scope(client, scope, uid).await?;
    let secret = random_token(32);
    client
        .query_one(
            "WITH d AS (
                 UPDATE devices SET secret_hash = $2, secret_mosquitto_hash = $3,
                                    secret_rotated_at = now()
                  WHERE id = $1 RETURNING id)
             INSERT INTO credential_revocations (device_id, reason)
             SELECT id, 'device_secret_rotated' FROM d RETURNING device_id",
            &[
                &id,
                &hash_secret(&secret).as_slice(),
                &super::mosquitto::hash(&secret),
            ],
        )
        .await?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homewards_client_ids_are_reserved() {
        for uid in [
            "homeward",
            "homeward-ingest",
            "homeward-ingest-downlink",
            "Homeward-auto-3",
            "HOMEWARD-2-downlink",
        ] {
            assert!(
                matches!(reserved_device_id(uid), Some(RegistryError::Reserved(_))),
                "{uid}"
            );
        }
        for uid in ["hub-0001", "home-ward", "my-homeward", "homewar"] {
            assert!(reserved_device_id(uid).is_none(), "{uid}");
        }
    }

    #[test]
    fn device_kinds_are_the_ones_the_table_allows() {
        // The CHECK constraint on `devices.kind`, as the migration creating the table states it.
        let sql = include_str!("../../migrations/0001_core.sql");
        let table = &sql[sql.find("CREATE TABLE devices (").unwrap()..];
        let check = table
            .lines()
            .find(|l| l.trim_start().starts_with("kind "))
            .unwrap();
        let list = &check[check.find("IN (").unwrap() + 4..check.rfind("))").unwrap()];
        let allowed: Vec<&str> = list.split(", ").map(|k| k.trim_matches('\'')).collect();
        let kinds: Vec<&str> = DeviceKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, allowed);

        assert_eq!(
            "fall_detector".parse::<DeviceKind>().unwrap(),
            DeviceKind::FallDetector
        );
        assert_eq!(
            "watch".parse::<DeviceKind>().unwrap_err().to_string(),
            "device kind `watch` must be one of hub, pendant, fall_detector, sensor, phone"
        );
    }
}
