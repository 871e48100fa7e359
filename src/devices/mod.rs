//! Devices: telecare hubs, pendants and sensors, and care workers' phones, with their
//! credentials. Owns the device API, the embedded broker's authenticator, and what external
//! brokers need to check devices the same way: the Mosquitto export (`export`, with the
//! secrets' Mosquitto hashes in `mosquitto`) and the EMQX hooks (`emqx`).
//!
//! A device's identity always comes from its credential (the MQTT user name, which must equal
//! its client id) and the topic it may use, never from what its payload claims.

mod broker_auth;
pub mod emqx;
pub mod export;
mod http_auth;
pub mod mosquitto;
pub mod routes;
mod verify;

pub use broker_auth::{DeviceAuthenticator, SERVICE_USER};
pub use http_auth::DeviceCaller;

/// A device as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub uid: String,
    pub kind: String,
    pub person_id: Option<i32>,
    pub worker_id: Option<i32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub disabled: bool,
}

impl Device {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            uid: row.get("uid"),
            kind: row.get("kind"),
            person_id: row.get("person_id"),
            worker_id: row.get("worker_id"),
            created_at: row.get("created_at"),
            disabled: row
                .get::<_, Option<chrono::DateTime<chrono::Utc>>>("disabled_at")
                .is_some(),
        }
    }
}
