//! Closing connections from elsewhere in the process, e.g. when a device's credential is
//! revoked.

use std::sync::Arc;

use super::session::Session;
use super::{CloseReason, Principal, Shared};

/// Acts on a running broker's connections (see [`BrokerHandle::control`]).
#[derive(Clone)]
pub struct BrokerControl {
    pub(super) shared: Arc<Shared>,
}

impl BrokerControl {
    /// Closes every connection of `principal` (a device whose credential was revoked), as if
    /// its network had failed: its will is published, its persistent session stays (a device
    /// that reconnects with valid credentials resumes it). Whether it may reconnect is the
    /// authenticator's decision. Returns how many connections were closed.
    pub fn close_principal(&self, principal: &Principal) -> usize {
        let closed = self.close_where(|owner| owner == principal);
        if closed > 0 {
            tracing::info!(%principal, connections = closed, "credential revoked: connections closed");
        }
        closed
    }

    /// Closes every device's connection (not Homeward's own): for when revocations may have
    /// been missed, so that every device signs in again against the current credentials.
    /// Devices keep what was not acknowledged end to end and resend it, so nothing is lost.
    pub fn close_all_devices(&self) -> usize {
        let closed = self.close_where(|owner| matches!(owner, Principal::Device { .. }));
        tracing::warn!(
            connections = closed,
            "closed every device connection to re-check credentials"
        );
        closed
    }

    /// Closes the connections of the sessions whose owner `which` selects; returns how many.
    fn close_where(&self, which: impl Fn(&Principal) -> bool) -> usize {
        let sessions: Vec<Arc<Session>> = self
            .shared
            .sessions()
            .values()
            .filter(|s| which(s.owner()))
            .cloned()
            .collect();
        let mut closed = 0;
        for session in sessions {
            if let Some(link) = session.lock().link.as_ref() {
                link.close.close(CloseReason::Revoked);
                closed += 1;
            }
        }
        closed
    }
}
