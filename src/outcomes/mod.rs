//! Outcome indicators and payment by results, with time only as context.
//!
//! (Being built: see the open issue. The module already has its place in start-up, its
//! settings section and its routes.)

use actix_web::web;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::startup::Services;

/// Settings under `[outcomes]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutcomeSettings {}

pub fn routes(_cfg: &mut web::ServiceConfig) {}

/// Starts background work (rollup refreshes).
pub fn start(_services: &Services) -> Vec<JoinHandle<()>> {
    Vec::new()
}
