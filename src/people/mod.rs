//! People receiving care, care workers, and which phone each worker carries.
//!
//! This module is the one writer of the `people` and `workers` tables and of device links
//! (`devices.worker_id`: a device of kind `phone` linked to a worker; `devices.person_id`: a
//! telecare device linked to a person). A person's address, access notes and key-safe code are
//! here too; the key-safe code never goes into the audit log in clear. Visits, alarms and
//! outcomes read these rows in their own queries (names, pseudonyms, homes) and call
//! [`store`] to check a reference or find a worker's phones; none of them writes here.
//!
//! - [`store`]: the SQL, tenant-filtered.
//! - `routes`: `/v1/people` and `/v1/workers` over HTTP (documented in docs/visits.md).
//!
//! A phone's checks become visits of the worker carrying it, so the routes that create a worker
//! or link a phone are visit verification's (it derives that phone's visits again before
//! answering); they write through [`store`]. This module depends on nothing of visits.

mod routes;
pub mod store;

use actix_web::web;

pub(crate) use routes::EDITORS;
pub use store::{Person, Worker};

crate::sql_enum! {
    /// What visit verification does with a fix outside a person's geofence
    /// (`people.geofence_policy`, also set per area): refuse it (the default) or only warn
    /// (rural areas, where fixes are poor and homes far apart).
    #[derive(Default)]
    GeofencePolicy {
        #[default]
        Reject = "reject",
        Warn = "warn",
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::routes(cfg);
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub use routes::{api, apply_update, people_of, workers_of, PersonUpdate};

/// A reference a phone sends or a home carries (a visit reference, a home tag, a calling
/// line): 1 to 64 of `A-Z a-z 0-9 . _ : + -`.
pub fn valid_reference(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:+-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::valid_reference;

    #[test]
    fn references_are_short_and_plain() {
        assert!(valid_reference("V-1"));
        assert!(valid_reference("+441234567890"));
        assert!(valid_reference("tag:0a.b_c"));
        assert!(valid_reference(&"x".repeat(64)));
        assert!(!valid_reference(""));
        assert!(!valid_reference(&"x".repeat(65)));
        assert!(!valid_reference("a b"));
        assert!(!valid_reference("=cmd()"));
    }
}
