//! The one check of a device's own credential (uid and secret), shared by the embedded broker's
//! authenticator and the HTTP API for phones: an active device whose stored hash matches.
//! Failures are remembered for a short while (`auth::FailedCredentials`) and counted in
//! `homeward_auth_failures_total{credential="device"}`.

use deadpool_postgres::Pool;

use super::DeviceRef;
use crate::auth::FailedCredentials;
use crate::secret::{hash_secret, hashes_equal};

/// The credential store could not be asked (pool or query); the caller answers "try again",
/// not "refused".
#[derive(Debug, thiserror::Error)]
#[error("device credential lookup: {0}")]
pub struct VerifyError(String);

/// The device `uid` if `secret` is its current secret and it is not disabled.
pub async fn verify_device(
    pool: &Pool,
    failures: &FailedCredentials,
    uid: &str,
    secret: &str,
) -> Result<Option<DeviceRef>, VerifyError> {
    let key = FailedCredentials::device_key(uid, secret);
    if failures.recently_failed(&key) {
        metrics::counter!("homeward_auth_failures_total", "credential" => "device", "cached" => "true")
            .increment(1);
        return Ok(None);
    }
    let client = pool.get().await.map_err(|e| VerifyError(e.to_string()))?;
    let row = client
        .query_opt(
            "SELECT id, organisation_id, secret_hash FROM devices
              WHERE uid = $1 AND disabled_at IS NULL",
            &[&uid],
        )
        .await
        .map_err(|e| VerifyError(e.to_string()))?;
    let found = row.filter(|r| hashes_equal(&r.get::<_, Vec<u8>>(2), &hash_secret(secret)));
    let Some(row) = found else {
        failures.remember(key);
        metrics::counter!("homeward_auth_failures_total", "credential" => "device", "cached" => "false")
            .increment(1);
        return Ok(None);
    };
    Ok(Some(DeviceRef {
        id: row.get(0),
        organisation_id: row.get(1),
        uid: uid.into(),
    }))
}
