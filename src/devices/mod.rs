//! Devices: telecare hubs, pendants and sensors, and care workers' phones, with their
//! credentials and identity. Owns the device API, the register of devices ([`registry`]), the
//! uid-to-device directory ingest resolves topics with ([`DeviceDirectory`]), the embedded
//! broker's authenticator, and what external brokers need to check devices the same way: the
//! Mosquitto export (`export`, with the secrets' Mosquitto hashes in `mosquitto`) and the EMQX
//! hooks (`emqx`). Ingest uses this module; this module never uses ingest.
//!
//! A device's identity always comes from its credential (the MQTT user name, which must equal
//! its client id) and the topic it may use, never from what its payload claims.

mod broker_auth;
mod directory;
pub mod emqx;
pub mod export;
mod http_auth;
pub mod mosquitto;
pub mod registry;
pub mod routes;
mod verify;

use std::sync::Arc;

pub use broker_auth::{DeviceAuthenticator, SERVICE_USER};
pub use directory::{DeviceDirectory, Lookup, LookupError};
pub use http_auth::DeviceCaller;
pub use registry::{
    create_device, reserved_device_id, rotate_device_secret, set_device_disabled, DeviceKind,
    RegistryError, UnknownDeviceKind, RESERVED_CLIENT_ID_PREFIX,
};

/// A registered device, as its credential or its topic identifies it.
#[derive(Debug, Clone)]
pub struct DeviceRef {
    /// `devices.id`.
    pub id: i32,
    pub organisation_id: i32,
    /// Its MQTT user name and client id; shared, as every event of the device carries it.
    pub uid: Arc<str>,
}

/// A device as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Device {
    /// Its MQTT user name and client id.
    pub uid: String,
    pub kind: DeviceKind,
    pub person_id: Option<i32>,
    pub worker_id: Option<i32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub disabled: bool,
}

impl Device {
    /// `Err` names a kind the table should not hold (its CHECK constraint allows only
    /// [`DeviceKind`]'s).
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, UnknownDeviceKind> {
        Ok(Self {
            uid: row.get("uid"),
            kind: row.get::<_, &str>("kind").parse()?,
            person_id: row.get("person_id"),
            worker_id: row.get("worker_id"),
            created_at: row.get("created_at"),
            disabled: row
                .get::<_, Option<chrono::DateTime<chrono::Utc>>>("disabled_at")
                .is_some(),
        })
    }
}
