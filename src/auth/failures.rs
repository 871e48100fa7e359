//! Credentials that just failed, remembered for a short while so that repeating them costs no
//! database query: a client retrying a revoked token in a loop, or a device with a wrong secret
//! reconnecting as fast as it can, is answered from memory.
//!
//! Keys are SHA-256 digests of what was presented, never the credential itself. A credential
//! that starts working within [`REMEMBER`] of failing (a user or device enabled again) is
//! refused until then; a new token or a rotated secret is a different key and is never
//! affected. The map is bounded: when full, expired entries go, and if none had expired, all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failure is remembered.
pub const REMEMBER: Duration = Duration::from_secs(10);
/// Most failures remembered at once.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct FailedCredentials {
    failed: Mutex<HashMap<[u8; 32], Instant>>,
}

impl FailedCredentials {
    /// Did `digest` fail within the last [`REMEMBER`]?
    pub fn recently_failed(&self, digest: &[u8; 32]) -> bool {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get(digest).is_some_and(|at| at.elapsed() < REMEMBER)
    }

    /// Forgets every failure: after a user or device is enabled again through this process, so
    /// that it works at once rather than after [`REMEMBER`].
    pub fn forget_all(&self) {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The digest a device's credential is remembered under.
    pub fn device_key(uid: &str, secret: &str) -> [u8; 32] {
        crate::secret::hash_secret(&format!("{uid}\0{secret}"))
    }

    pub fn remember(&self, digest: [u8; 32]) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.len() >= CAPACITY {
            failed.retain(|_, at| at.elapsed() < REMEMBER);
            if failed.len() >= CAPACITY {
                failed.clear();
            }
        }
        failed.insert(digest, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_remembered_and_bounded() {
        let cache = FailedCredentials::default();
        assert!(!cache.recently_failed(&[1; 32]));
        cache.remember([1; 32]);
        assert!(cache.recently_failed(&[1; 32]));
        assert!(!cache.recently_failed(&[2; 32]));
        for i in 0..CAPACITY + 5 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            key[31] = 9;
            cache.remember(key);
        }
        assert!(cache.failed.lock().unwrap().len() <= CAPACITY);
    }
}
