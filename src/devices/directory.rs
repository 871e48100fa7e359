//! Device uid -> (device id, organisation), cached: how ingest learns which device a topic
//! names. Devices are never renamed, so a cached entry stays true until the device is disabled:
//! the revocation watcher then calls [`DeviceDirectory::forget`], and a miss asks the database.
//! Disabled devices are not cached.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use deadpool_postgres::Pool;

use super::DeviceRef;

/// What the directory knows of a uid.
#[derive(Debug, Clone)]
pub enum Lookup {
    Active(DeviceRef),
    /// Registered, but disabled: its events are not stored.
    Disabled(DeviceRef),
    Unknown,
}

pub struct DeviceDirectory {
    pool: Pool,
    cache: RwLock<HashMap<String, DeviceRef>>,
}

#[derive(Debug, thiserror::Error)]
#[error("device lookup: {0}")]
pub struct LookupError(pub String);

impl DeviceDirectory {
    pub fn new(pool: Pool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Drops a cached device (it was disabled), so the next lookup asks the database.
    pub fn forget(&self, uid: &str) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    /// Drops every cached device.
    pub fn forget_all(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// `Err`: the database could not be asked.
    pub async fn lookup(&self, uid: &str) -> Result<Lookup, LookupError> {
        if let Some(found) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
        {
            return Ok(Lookup::Active(found.clone()));
        }
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| LookupError(e.to_string()))?;
        let row = client
            .query_opt(
                "SELECT id, organisation_id, disabled_at IS NOT NULL FROM devices WHERE uid = $1",
                &[&uid],
            )
            .await
            .map_err(|e| LookupError(e.to_string()))?;
        let Some(row) = row else {
            return Ok(Lookup::Unknown);
        };
        let device = DeviceRef {
            id: row.get(0),
            organisation_id: row.get(1),
            uid: Arc::from(uid),
        };
        if row.get::<_, bool>(2) {
            return Ok(Lookup::Disabled(device));
        }
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_string(), device.clone());
        Ok(Lookup::Active(device))
    }
}
