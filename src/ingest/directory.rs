//! Device uid -> (device id, organisation), cached. Devices are never renamed, so a cached
//! entry stays true; a miss asks the database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use deadpool_postgres::Pool;

#[derive(Debug, Clone)]
pub struct DeviceRef {
    pub id: i32,
    pub organisation_id: i32,
    pub uid: Arc<str>,
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

    /// `Ok(None)`: no such device. `Err`: the database could not be asked.
    pub async fn lookup(&self, uid: &str) -> Result<Option<DeviceRef>, LookupError> {
        if let Some(found) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
        {
            return Ok(Some(found.clone()));
        }
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| LookupError(e.to_string()))?;
        let row = client
            .query_opt(
                "SELECT id, organisation_id FROM devices WHERE uid = $1",
                &[&uid],
            )
            .await
            .map_err(|e| LookupError(e.to_string()))?;
        let Some(row) = row else { return Ok(None) };
        let device = DeviceRef {
            id: row.get(0),
            organisation_id: row.get(1),
            uid: Arc::from(uid),
        };
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_string(), device.clone());
        Ok(Some(device))
    }
}
