//! In-process clients of the embedded broker: Homeward's own ingest, attached to its session
//! without a socket ([`LocalClient`]), the acknowledgements it gives after a commit and the
//! downlinks it publishes (both through [`LocalBroker`]).
//!
//! To the session a local client is one more connection: it attaches with the same
//! `Shared::open_session` a TCP CONNECT uses (`clean_session = false`, Homeward's service
//! principal), pulls with the same `Session::next_batch` the connection writer uses, inside the
//! same inflight window and queue bounds, and releases messages by packet id. Each attachment
//! has its own connection id, the *epoch*: an acknowledgement names it and is applied only while
//! that attachment lasts. Dropping a local client (its task ended, panicked or was aborted)
//! detaches it as a lost socket would: what it has not acknowledged stays in the session and is
//! resent first, in order, on the next attachment.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::sync::{watch, Notify};

use super::session::{Link, Message, Session};
use super::topic::{self, FilterSpec};
use super::{shutdown_requested, Acl, CloseReason, CloseSignal, Principal, Shared};

/// Most bytes (topic and payload) handed out by one [`LocalClient::next`].
const BATCH_BYTES: usize = 1024 * 1024;

/// Why a local client cannot attach or go on.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("the client id's session belongs to another principal")]
    SessionOwned,
    #[error("detached: another connection took the session over, or the broker is stopping")]
    Closed,
}

/// A cheap, cloneable way in to the embedded broker from inside the process.
#[derive(Clone)]
pub struct LocalBroker {
    shared: Arc<Shared>,
}

impl LocalBroker {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Attach to the persistent session `client_id` as Homeward's service principal, taking it
    /// over from any connection that holds it, as a `clean_session = false` CONNECT would.
    pub fn connect(&self, client_id: &str) -> Result<LocalClient, LocalError> {
        let shared = &self.shared;
        if *shared.shutdown.borrow() {
            return Err(LocalError::Closed);
        }
        let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let close = Arc::new(CloseSignal::new());
        let link = Link {
            conn_id,
            wake: wake.clone(),
            close: close.clone(),
            will: Arc::new(std::sync::Mutex::new(None)),
        };
        let (session, _present, old_will) = shared
            .open_session(
                Arc::from(client_id),
                false,
                &Principal::Service,
                &Acl::all(),
                link,
            )
            .map_err(|_| LocalError::SessionOwned)?;
        if let Some(will) = old_will {
            shared.publish_will(will);
        }
        shared.connected.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("homeward_broker_connections").increment(1.0);
        Ok(LocalClient {
            shared: shared.clone(),
            session,
            conn_id,
            wake,
            close,
            shutdown: shared.shutdown.clone(),
            delivered: metrics::counter!("homeward_broker_messages_delivered_total"),
        })
    }

    /// Release the messages `pkids` that the attachment `epoch` of session `client_id` was
    /// given. Applied only while that attachment lasts; returns how many were released.
    pub fn ack(&self, client_id: &str, epoch: u64, pkids: &[u16]) -> usize {
        let session = self.shared.sessions().get(client_id).cloned();
        session.map_or(0, |s| s.ack_many(epoch, pkids))
    }

    /// Publish as Homeward (downlinks): routed at once into the subscribers' bounded queues,
    /// never waiting. False for an invalid topic.
    pub fn publish(&self, topic: &str, payload: Bytes, qos: QoS) -> bool {
        if !topic::valid_topic(topic) {
            return false;
        }
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            pkid: 0,
            payload,
        };
        self.shared.route(&publish, topic);
        metrics::counter!("homeward_broker_messages_received_total").increment(1);
        true
    }
}

/// One attachment of an in-process client to its session. Not `Clone`: dropping it detaches.
pub struct LocalClient {
    shared: Arc<Shared>,
    session: Arc<Session>,
    conn_id: u64,
    wake: Arc<Notify>,
    close: Arc<CloseSignal>,
    shutdown: watch::Receiver<bool>,
    delivered: metrics::Counter,
}

impl LocalClient {
    /// This attachment's epoch, to name in [`LocalBroker::ack`].
    pub fn epoch(&self) -> u64 {
        self.conn_id
    }

    /// Subscribe at QoS 1 (a `$share/{group}/...` filter joins the group); retained messages
    /// of direct filters are queued as for a network SUBSCRIBE. Returns the filters refused.
    pub fn subscribe(&self, filters: &[String]) -> Vec<String> {
        let mut refused = Vec::new();
        let mut with_retained = Vec::new();
        {
            let mut subs = self.shared.subs_write();
            for f in filters {
                match FilterSpec::parse(f) {
                    Some(spec) if subs.subscribe(&self.session, &spec, QoS::AtLeastOnce) => {
                        if let FilterSpec::Direct(filter) = spec {
                            with_retained.push(filter);
                        }
                    }
                    _ => refused.push(f.clone()),
                }
            }
        }
        for filter in with_retained {
            for publish in self.shared.retained_for(filter, QoS::AtLeastOnce) {
                let msg = Message {
                    publish,
                    share: None,
                };
                self.shared.deliver(&self.session, msg);
            }
        }
        refused
    }

    /// Wait for messages and append up to `max` of them to `out`: first what an earlier
    /// attachment left unacknowledged (DUP set, same packet ids, original order), then queued
    /// ones while the inflight window has room. QoS 1 messages stay in the session until
    /// [`LocalBroker::ack`]; QoS 0 ones (packet id 0) are gone once handed out.
    pub async fn next(&mut self, max: usize, out: &mut Vec<Publish>) -> Result<(), LocalError> {
        let max_inflight = self.shared.max_inflight();
        loop {
            let Some(batch) =
                self.session
                    .next_batch(self.conn_id, max_inflight, max.max(1), BATCH_BYTES)
            else {
                return Err(LocalError::Closed);
            };
            let before = out.len();
            // Control packets (the CONNACK of the attachment) have no reader here.
            out.extend(batch.packets.into_iter().filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            }));
            if out.len() > before {
                self.delivered.increment((out.len() - before) as u64);
                return Ok(());
            }
            // Race-free: a wake between `next_batch` and here leaves a permit.
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.close.closed() => return Err(LocalError::Closed),
                _ = shutdown_requested(&mut self.shutdown) => return Err(LocalError::Closed),
            }
        }
    }
}

impl Drop for LocalClient {
    /// As a lost connection's teardown: detach, keeping the (persistent) session and all it
    /// holds for the next attachment.
    fn drop(&mut self) {
        self.close.close(CloseReason::ReaderDone);
        let detached = self.session.detach(&mut self.session.lock(), self.conn_id);
        self.shared.connected.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("homeward_broker_connections").decrement(1.0);
        tracing::debug!(
            client_id = %self.session.client_id(),
            epoch = self.conn_id,
            detached,
            "local client detached"
        );
    }
}
