//! The state every broker task shares: the session registry, the subscription index, the
//! retained store and the counters, and routing a message through them to the sessions that
//! should get it. Also the small signals a connection is closed or a drop is logged with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use rumqttc::mqttbytes::v4::{ConnAck, LastWill, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::sync::{watch, Notify};

use super::limits::DeviceLimiter;
use super::session::{Enqueued, Link, Message, Session};
use super::trie::{ShareKey, SubscriptionTrie, Target};
use super::{topic, Acl, Authenticator, BrokerConfig, BrokerStats, Principal};

/// A connection asked for a session that another principal owns.
#[derive(Debug)]
pub(super) struct SessionOwned {
    pub(super) owner: Principal,
}

/// State shared by all broker tasks.
pub(super) struct Shared {
    pub(super) config: BrokerConfig,
    pub(super) auth: Arc<dyn Authenticator>,
    pub(super) sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    pub(super) subs: RwLock<SubscriptionTrie>,
    pub(super) retained: Mutex<HashMap<String, Publish>>,
    /// Connections that completed CONNECT.
    pub(super) connected: AtomicUsize,
    /// Of those, devices' (counted against `max_connections`).
    pub(super) device_connections: AtomicUsize,
    /// Open sockets, in the handshake or connected.
    pub(super) sockets: AtomicUsize,
    /// Per-device rate limiters, by device id (see `limits`).
    pub(super) limiters: Mutex<HashMap<String, Arc<Mutex<DeviceLimiter>>>>,
    pub(super) next_conn_id: AtomicU64,
    pub(super) drop_log: DropLog,
    pub(super) shutdown: watch::Receiver<bool>,
}

// Poisoned locks: every critical section leaves the data consistent between statements that
// can panic, so recovering the guard is safe and keeps one bug from taking the broker down.
impl Shared {
    pub(super) fn sessions(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn retained(&self) -> MutexGuard<'_, HashMap<String, Publish>> {
        self.retained.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn subs_read(&self) -> RwLockReadGuard<'_, SubscriptionTrie> {
        self.subs.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn subs_write(&self) -> RwLockWriteGuard<'_, SubscriptionTrie> {
        self.subs.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn stats(&self) -> BrokerStats {
        let sessions: Vec<Arc<Session>> = self.sessions().values().cloned().collect();
        let (mut queued, mut queued_bytes, mut inflight) = (0, 0, 0);
        for s in &sessions {
            let st = s.lock();
            queued += st.queued();
            queued_bytes += st.queued_bytes();
            inflight += st.inflight();
        }
        BrokerStats {
            connected_clients: self.connected.load(Ordering::Relaxed),
            sessions: sessions.len(),
            retained_messages: self.retained().len(),
            queued_messages: queued,
            queued_bytes,
            inflight_messages: inflight,
        }
    }

    /// The rate limiter for a principal's connection: `None` for Homeward's own service
    /// principal, or when no rate is configured.
    pub(super) fn limiter_for(&self, principal: &Principal) -> Option<Arc<Mutex<DeviceLimiter>>> {
        let Principal::Device { id } = principal else {
            return None;
        };
        let c = &self.config;
        let mut map = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = map.get(id) {
            return Some(l.clone());
        }
        let limiter = DeviceLimiter::new(
            c.device_max_messages_per_sec,
            c.device_max_bytes_per_sec,
            c.device_burst,
            Instant::now(),
        )?;
        let limiter = Arc::new(Mutex::new(limiter));
        map.insert(id.clone(), limiter.clone());
        Some(limiter)
    }

    pub(super) fn max_inflight(&self) -> usize {
        usize::from(self.config.max_inflight.clamp(1, 65_000))
    }

    /// Attach a connection to the session for `client_id`, creating or replacing it as
    /// `clean_session` requires. Returns the session, whether it was resumed, and the will of
    /// a connection it took over (for the caller to publish before anything else happens).
    ///
    /// A session belongs to the principal that created it. A connection by anyone else with
    /// the same client id is refused and changes nothing: it neither attaches to the session
    /// (and so inherits none of its subscriptions or queued messages) nor discards it, nor
    /// closes the owner's connection. A resumed session's subscriptions are checked again
    /// against the principal's current ACL, so rights that were withdrawn while the session
    /// was offline are not kept by it.
    pub(super) fn open_session(
        &self,
        client_id: Arc<str>,
        clean_session: bool,
        owner: &Principal,
        acl: &Acl,
        link: Link,
    ) -> Result<(Arc<Session>, bool, Option<LastWill>), SessionOwned> {
        let mut forget = None;
        let mut old_will = None;
        let (session, present) = {
            let mut map = self.sessions();
            // A persistent session is only discarded with the map locked, so this check holds
            // until we attach.
            let existing = map.get(&client_id).filter(|s| !s.is_discarded()).cloned();
            if let Some(other) = existing.as_ref().filter(|s| s.owner() != owner) {
                return Err(SessionOwned {
                    owner: other.owner().clone(),
                });
            }
            match existing {
                Some(old) if !clean_session && old.is_persistent() => {
                    // Before attaching, and with the map locked, so that nothing reaches the
                    // new connection through a subscription it may no longer hold.
                    let dropped = self
                        .subs_write()
                        .retain_session(old.id(), |filter| acl.may_subscribe(filter));
                    for filter in dropped {
                        tracing::warn!(
                            client_id = %client_id,
                            %filter,
                            "resumed session's subscription is outside the current ACL; removed"
                        );
                    }
                    old_will = old.attach(&mut old.lock(), link, connack(true));
                    (old, true)
                }
                existing => {
                    if let Some(old) = existing {
                        let (msgs, will) = old.discard(&mut old.lock());
                        old_will = will;
                        forget = Some((old, msgs));
                    }
                    let s = Arc::new(Session::new(
                        client_id.clone(),
                        owner.clone(),
                        !clean_session,
                        self.config.max_queued,
                        self.config.max_queued_bytes,
                    ));
                    // A fresh session has no previous connection, hence no will to return.
                    let _ = s.attach(&mut s.lock(), link, connack(false));
                    map.insert(client_id, s.clone());
                    (s, false)
                }
            }
        };
        if let Some((old, msgs)) = forget {
            self.subs_write().remove_session(old.id());
            self.rehome(msgs);
        }
        Ok((session, present, old_will))
    }

    /// Publish a last will (the ACL was checked at CONNECT).
    pub(super) fn publish_will(&self, will: LastWill) {
        let publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: bytes::Bytes::from(will.topic.clone().into_bytes()),
            pkid: 0,
            payload: will.message,
        };
        tracing::debug!(topic = %will.topic, "publishing last will");
        self.route(&publish, &will.topic);
        metrics::counter!("homeward_broker_messages_received_total").increment(1);
    }

    /// Remove a discarded session from the map and the index; re-route its shared messages.
    pub(super) fn forget_session(&self, session: &Arc<Session>, msgs: Vec<Message>) {
        {
            let mut map = self.sessions();
            if map
                .get(session.client_id())
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                map.remove(session.client_id());
            }
        }
        self.subs_write().remove_session(session.id());
        self.rehome(msgs);
    }

    /// Hand messages that a departed session held for a share group to another member, so a
    /// crashed consumer's unacknowledged messages are not lost. Other messages are dropped
    /// with the session.
    pub(super) fn rehome(&self, msgs: Vec<Message>) {
        let max_inflight = self.max_inflight();
        for msg in msgs {
            let Some(key) = msg.share.clone() else {
                continue;
            };
            let candidates = self.subs_read().shared_candidates(&key, max_inflight);
            let mut publish = msg.publish;
            publish.dup = false;
            publish.pkid = 0;
            self.deliver_shared(&publish, &key, candidates.unwrap_or_default());
        }
    }

    /// Route a publish to every matching subscription and update the retained store.
    /// `publish.topic` must already be validated.
    pub(super) fn route(&self, publish: &Publish, topic: &str) {
        if publish.retain {
            let mut retained = self.retained();
            if publish.payload.is_empty() {
                retained.remove(topic);
            } else {
                let mut stored = publish.clone();
                stored.dup = false;
                stored.pkid = 0;
                retained.insert(topic.to_owned(), stored);
            }
        }
        let targets = self.subs_read().matches(topic, self.max_inflight());
        for target in targets {
            match target {
                Target::Direct { session, qos } => {
                    let msg = Message {
                        publish: outgoing(publish, qos, false),
                        share: None,
                    };
                    self.deliver(&session, msg);
                }
                Target::Shared { key, candidates } => {
                    self.deliver_shared(publish, &key, candidates);
                }
            }
        }
    }

    pub(super) fn deliver_shared(
        &self,
        publish: &Publish,
        key: &Arc<ShareKey>,
        candidates: Vec<(Arc<Session>, QoS)>,
    ) {
        for (session, qos) in candidates {
            let msg = Message {
                publish: outgoing(publish, qos, false),
                share: Some(key.clone()),
            };
            if self.deliver(&session, msg) != Enqueued::Gone {
                return;
            }
        }
    }

    pub(super) fn deliver(&self, session: &Session, msg: Message) -> Enqueued {
        let result = session.enqueue(msg);
        let (limit, dropped) = match result {
            Enqueued::DroppedNew(limit) => (limit, 1),
            Enqueued::DroppedOld(limit, n) => (limit, n),
            Enqueued::Yes | Enqueued::Gone => return result,
        };
        metrics::counter!("homeward_broker_dropped_total", "reason" => limit.label())
            .increment(dropped as u64);
        if let Some(suppressed) = self.drop_log.should_log() {
            tracing::warn!(
                client_id = %session.client_id(),
                max_queued = self.config.max_queued,
                max_queued_bytes = self.config.max_queued_bytes,
                bound = limit.label(),
                suppressed,
                "session queue full: message dropped"
            );
        }
        result
    }

    /// Retained messages matching `filter`, flagged retain and downgraded to `qos`.
    pub(super) fn retained_for(&self, filter: &str, qos: QoS) -> Vec<Publish> {
        let retained = self.retained();
        let mut out: Vec<Publish> = if filter.contains(['+', '#']) {
            retained
                .iter()
                .filter(|(t, _)| topic::matches(t, filter))
                .map(|(_, p)| outgoing(p, qos, true))
                .collect()
        } else {
            retained
                .get(filter)
                .map(|p| outgoing(p, qos, true))
                .into_iter()
                .collect()
        };
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }
}

/// A copy of `publish` for a subscriber granted `granted`.
fn outgoing(publish: &Publish, granted: QoS, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos: min_qos(publish.qos, granted),
        retain,
        topic: publish.topic.clone(),
        pkid: 0,
        payload: publish.payload.clone(),
    }
}

pub(super) fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}

fn connack(session_present: bool) -> Packet {
    Packet::ConnAck(ConnAck::new(
        rumqttc::mqttbytes::v4::ConnectReturnCode::Success,
        session_present,
    ))
}

/// Why a connection is being closed from outside its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseReason {
    /// Another connection took over the session (or the session was discarded).
    TakenOver,
    /// The principal's credential was revoked.
    Revoked,
    /// Writing to the socket failed.
    WriteFailed,
    /// The reader ended; the writer should stop.
    ReaderDone,
}

/// A one-shot, many-waiter close signal for one connection.
pub(super) struct CloseSignal {
    reason: Mutex<Option<CloseReason>>,
    notify: Notify,
}

impl CloseSignal {
    pub(super) fn new() -> Self {
        Self {
            reason: Mutex::new(None),
            notify: Notify::new(),
        }
    }

    pub(super) fn close(&self, reason: CloseReason) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.notify.notify_waiters();
    }

    pub(super) fn reason(&self) -> Option<CloseReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn closed(&self) -> CloseReason {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }
}

/// Rate limit for the "message dropped" warning: at most one per interval, reporting how many
/// were suppressed in between.
pub(super) struct DropLog {
    start: Instant,
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl DropLog {
    const INTERVAL_MS: u64 = 10_000;

    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    pub(super) fn should_log(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= Self::INTERVAL_MS)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}
