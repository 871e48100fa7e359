//! The embedded broker's authenticator: devices by their hashed secret, and Homeward's own
//! service client by a password generated at each start.
//!
//! ACL: a device may publish only on its own `events` and `status` topics and subscribe only to
//! its own `downlink`. Its client id must be its uid, and the broker keeps every session for the
//! principal that created it, so no device can take over another's persistent session or
//! Homeward's own. Ids reserved for Homeward's clients ([`reserved_device_id`]) are refused
//! even for a device registered before the reservation existed: otherwise it could connect
//! first and hold the ingest client's id.

use std::sync::Arc;

use deadpool_postgres::Pool;
use futures_util::future::BoxFuture;
use homeward_proto::{topic, DeviceId};

use super::reserved_device_id;
use crate::auth::FailedCredentials;
use crate::broker::{Acl, AuthError, Authenticator, Credentials, Principal};
use crate::secret::{hash_secret, hashes_equal, random_token};

/// The user name of Homeward's own MQTT client on the embedded broker. It starts with `$`, which
/// no device id can.
pub const SERVICE_USER: &str = "$homeward";

pub struct DeviceAuthenticator {
    /// The pool kept for credential checks.
    pool: Pool,
    service_password: String,
    /// Device credentials that failed a moment ago, refused without a query (a device with a
    /// wrong secret reconnecting in a loop costs nothing).
    failures: Arc<FailedCredentials>,
}

impl DeviceAuthenticator {
    /// Returns the authenticator and the service password for Homeward's own client.
    pub fn new(pool: Pool, failures: Arc<FailedCredentials>) -> (Arc<Self>, String) {
        let service_password = random_token(32);
        (
            Arc::new(Self {
                pool,
                service_password: service_password.clone(),
                failures,
            }),
            service_password,
        )
    }

    async fn check(&self, creds: Credentials<'_>) -> Result<Option<(Principal, Acl)>, AuthError> {
        let (Some(user), Some(password)) = (creds.username, creds.password) else {
            return Ok(None);
        };
        let Ok(password) = std::str::from_utf8(password) else {
            return Ok(None);
        };
        if user == SERVICE_USER {
            let ok = hashes_equal(&hash_secret(password), &hash_secret(&self.service_password));
            return Ok(ok.then(|| (Principal::Service, Acl::all())));
        }
        let Some(device) = device_identity(creds.client_id, user) else {
            return Ok(None);
        };
        let verified = super::verify::verify_device(&self.pool, &self.failures, user, password)
            .await
            .map_err(AuthError::new)?;
        if verified.is_none() {
            return Ok(None);
        }
        Ok(Some((
            Principal::Device {
                id: user.to_string(),
            },
            device_acl(&device),
        )))
    }
}

/// The device a client may be, from its client id and user name: the two must be equal, a
/// valid device id, and not one reserved for Homeward's own clients. The same rule for the
/// embedded broker and for external brokers that ask Homeward (EMQX).
pub(crate) fn device_identity(client_id: &str, user: &str) -> Option<DeviceId> {
    if client_id != user {
        return None;
    }
    if reserved_device_id(user).is_some() {
        tracing::warn!(
            uid = user,
            "device id is reserved for Homeward's own clients; refused"
        );
        return None;
    }
    DeviceId::new(user)
}

/// What a device may do: publish on its own `events` and `status` topics, subscribe to its own
/// `downlink`. The one definition behind the embedded broker, the EMQX hooks and the Mosquitto
/// ACL file.
pub(crate) fn device_acl(device: &DeviceId) -> Acl {
    Acl {
        publish: vec![topic::events(device), topic::status(device)],
        subscribe: vec![topic::downlink(device)],
    }
}

impl Authenticator for DeviceAuthenticator {
    fn authenticate<'a>(
        &'a self,
        creds: Credentials<'a>,
    ) -> BoxFuture<'a, Result<Option<(Principal, Acl)>, AuthError>> {
        Box::pin(self.check(creds))
    }
}
