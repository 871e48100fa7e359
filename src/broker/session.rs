//! One client's session: what is waiting for it, what it has not acknowledged yet, and which
//! network connection (if any) currently serves it.
//!
//! All of it sits behind one `std::sync::Mutex`, held only for a few pushes and pops, never
//! across an await. Publishers push into [`SessionState::queue`] and wake the connection's
//! writer task; the writer pulls control packets, resends and queued messages in batches, moving
//! QoS 1 messages into the inflight window as it sends them. A PUBACK frees a window slot.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rumqttc::mqttbytes::v4::{LastWill, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::sync::Notify;

use super::trie::ShareKey;
use super::{CloseSignal, Principal};

/// A message waiting for a subscriber, with the share group it was routed through (if any).
#[derive(Clone)]
pub(super) struct Message {
    /// Ready to send apart from the packet id (and DUP on resend).
    pub(super) publish: Publish,
    pub(super) share: Option<Arc<ShareKey>>,
}

struct Inflight {
    msg: Message,
    /// False after a reconnect until it has been resent on the new connection.
    sent: bool,
}

/// The connection currently attached to a session.
pub(super) struct Link {
    pub(super) conn_id: u64,
    /// Wakes that connection's writer task.
    pub(super) wake: Arc<Notify>,
    /// Closes that connection (used on takeover).
    pub(super) close: Arc<CloseSignal>,
    /// That connection's last will, until it is published or discarded. Whoever takes it out
    /// decides: on takeover the new connection publishes it before its own CONNACK, so an old
    /// "offline" can never overwrite the "online" the device sends after reconnecting.
    pub(super) will: Arc<Mutex<Option<LastWill>>>,
}

impl Link {
    /// Close the connection and take its will.
    fn close_taken_over(self) -> Option<LastWill> {
        self.close.close(super::CloseReason::TakenOver);
        let will = self.will.lock().unwrap_or_else(|e| e.into_inner()).take();
        will
    }
}

/// Which bound of a session queue was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueLimit {
    Messages,
    Bytes,
}

impl QueueLimit {
    pub(super) fn label(self) -> &'static str {
        match self {
            QueueLimit::Messages => "queue_messages",
            QueueLimit::Bytes => "queue_bytes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enqueued {
    Yes,
    /// Queue full of QoS 1 messages: the new message was dropped.
    DroppedNew(QueueLimit),
    /// Older QoS 0 messages were dropped to make room: this many messages in all, the new one
    /// included if even that did not make enough room.
    DroppedOld(QueueLimit, usize),
    /// The session no longer exists.
    Gone,
}

/// What a queued message counts against [`Session`]'s byte bound: topic, payload and a
/// little for the packet header.
pub(super) fn message_bytes(publish: &Publish) -> usize {
    publish.topic.len() + publish.payload.len() + 8
}

pub(super) struct SessionState {
    pub(super) link: Option<Link>,
    /// Packets that answer the client (CONNACK, PUBACK, SUBACK, ...), written before messages.
    control: Vec<Packet>,
    queue: VecDeque<Message>,
    /// [`message_bytes`] of everything in `queue`.
    queued_bytes: usize,
    qos0_queued: usize,
    inflight: VecDeque<Inflight>,
    unsent_inflight: usize,
    pkids_in_use: HashSet<u16>,
    next_pkid: u16,
    /// Inbound QoS 2 packet ids routed but not yet released by PUBREL.
    pub(super) awaiting_rel: HashSet<u16>,
    pub(super) disconnected_at: Option<Instant>,
}

pub(super) struct Session {
    id: u64,
    client_id: Arc<str>,
    /// The principal that created the session. Only it may attach to, take over or discard
    /// the session: a client id is a name anyone can type, the principal is what was proven.
    owner: Principal,
    /// Created by a clean_session=false CONNECT: outlives its connections.
    persistent: bool,
    max_queued: usize,
    max_queued_bytes: usize,
    // Lock-free mirrors of the state, read by shared-subscription routing.
    connected: AtomicBool,
    load: AtomicUsize,
    discarded: AtomicBool,
    state: Mutex<SessionState>,
}

/// What the writer should send next.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) packets: Vec<Packet>,
    /// Number of PUBLISH packets in `packets` (for the delivered counter).
    pub(super) publishes: u64,
}

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

impl Session {
    pub(super) fn new(
        client_id: Arc<str>,
        owner: Principal,
        persistent: bool,
        max_queued: usize,
        max_queued_bytes: usize,
    ) -> Self {
        Self {
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            client_id,
            owner,
            persistent,
            max_queued: max_queued.max(1),
            max_queued_bytes: max_queued_bytes.max(1),
            connected: AtomicBool::new(false),
            load: AtomicUsize::new(0),
            discarded: AtomicBool::new(false),
            state: Mutex::new(SessionState {
                link: None,
                control: Vec::new(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                qos0_queued: 0,
                inflight: VecDeque::new(),
                unsent_inflight: 0,
                pkids_in_use: HashSet::new(),
                next_pkid: 0,
                awaiting_rel: HashSet::new(),
                disconnected_at: Some(Instant::now()),
            }),
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    pub(super) fn owner(&self) -> &Principal {
        &self.owner
    }

    pub(super) fn is_persistent(&self) -> bool {
        self.persistent
    }

    pub(super) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Messages queued plus inflight (approximate, for load balancing).
    pub(super) fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    pub(super) fn is_discarded(&self) -> bool {
        self.discarded.load(Ordering::Acquire)
    }

    /// Lock the state. A poisoned lock means a panic elsewhere while it was held; the state is
    /// still structurally sound (every mutation is a push or pop), so carry on.
    pub(super) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_load(&self, st: &SessionState) {
        self.load
            .store(st.queue.len() + st.inflight.len(), Ordering::Relaxed);
    }

    /// Attach a new connection, closing the previous one (takeover) and returning its will.
    /// The first packet the new connection will write is `connack`; inflight messages are then
    /// resent with DUP set.
    pub(super) fn attach(
        &self,
        st: &mut SessionState,
        link: Link,
        connack: Packet,
    ) -> Option<LastWill> {
        let old_will = st.link.take().and_then(Link::close_taken_over);
        st.control.clear();
        st.control.push(connack);
        for m in st.inflight.iter_mut() {
            m.sent = false;
        }
        st.unsent_inflight = st.inflight.len();
        st.disconnected_at = None;
        link.wake.notify_one();
        st.link = Some(link);
        self.connected.store(true, Ordering::Relaxed);
        old_will
    }

    /// Detach connection `conn_id` if it is still the attached one. Returns whether it was.
    pub(super) fn detach(&self, st: &mut SessionState, conn_id: u64) -> bool {
        if st.link.as_ref().map(|l| l.conn_id) != Some(conn_id) {
            return false;
        }
        st.link = None;
        st.control.clear();
        st.disconnected_at = Some(Instant::now());
        self.connected.store(false, Ordering::Relaxed);
        true
    }

    /// Mark the session as gone and hand back the messages it held, so shared ones can be
    /// routed to another member of their group. Closes its connection if one is attached and
    /// returns that connection's will.
    pub(super) fn discard(&self, st: &mut SessionState) -> (Vec<Message>, Option<LastWill>) {
        self.discarded.store(true, Ordering::Release);
        let old_will = st.link.take().and_then(Link::close_taken_over);
        self.connected.store(false, Ordering::Relaxed);
        st.control.clear();
        st.pkids_in_use.clear();
        st.awaiting_rel.clear();
        st.unsent_inflight = 0;
        st.qos0_queued = 0;
        st.queued_bytes = 0;
        let mut out: Vec<Message> = st.inflight.drain(..).map(|m| m.msg).collect();
        out.extend(st.queue.drain(..));
        self.update_load(st);
        (out, old_will)
    }

    /// Queue a control packet for connection `conn_id`; dropped if that connection is no
    /// longer attached (its answers must not reach a successor). Returns the control backlog.
    pub(super) fn push_control(&self, conn_id: u64, packets: &mut Vec<Packet>) -> Option<usize> {
        let mut st = self.lock();
        let link = st.link.as_ref()?;
        if link.conn_id != conn_id {
            packets.clear();
            return None;
        }
        link.wake.notify_one();
        st.control.append(packets);
        Some(st.control.len())
    }

    pub(super) fn control_backlog(&self) -> usize {
        self.lock().control.len()
    }

    /// Queue a message, applying the bounds (messages and bytes): while the new message does
    /// not fit, drop the oldest QoS 0 message; if there is none, drop the new one. A message
    /// always fits into an empty queue, so the byte bound may be passed by one message.
    pub(super) fn enqueue(&self, msg: Message) -> Enqueued {
        let mut st = self.lock();
        if self.is_discarded() {
            return Enqueued::Gone;
        }
        let size = message_bytes(&msg.publish);
        let mut dropped = 0;
        let mut limit = QueueLimit::Messages;
        loop {
            if st.queue.is_empty() {
                break;
            }
            if st.queue.len() >= self.max_queued {
                limit = QueueLimit::Messages;
            } else if st.queued_bytes + size > self.max_queued_bytes {
                limit = QueueLimit::Bytes;
            } else {
                break;
            }
            let victim = if st.qos0_queued > 0 {
                st.queue
                    .iter()
                    .position(|m| m.publish.qos == QoS::AtMostOnce)
            } else {
                None
            };
            let Some(old) = victim.and_then(|pos| st.queue.remove(pos)) else {
                return if dropped == 0 {
                    Enqueued::DroppedNew(limit)
                } else {
                    // Room was made but not enough: the new message goes too.
                    self.update_load(&st);
                    Enqueued::DroppedOld(limit, dropped + 1)
                };
            };
            st.qos0_queued -= 1;
            st.queued_bytes -= message_bytes(&old.publish);
            dropped += 1;
        }
        if msg.publish.qos == QoS::AtMostOnce {
            st.qos0_queued += 1;
        }
        st.queued_bytes += size;
        st.queue.push_back(msg);
        let result = if dropped == 0 {
            Enqueued::Yes
        } else {
            Enqueued::DroppedOld(limit, dropped)
        };
        self.update_load(&st);
        if let Some(link) = &st.link {
            link.wake.notify_one();
        }
        result
    }

    /// A PUBACK from the client. Unknown packet ids are ignored (a late ack after a resend).
    pub(super) fn ack(&self, pkid: u16) -> bool {
        let mut st = self.lock();
        let Some(pos) = st.inflight.iter().position(|m| m.msg.publish.pkid == pkid) else {
            return false;
        };
        if let Some(m) = st.inflight.remove(pos) {
            if !m.sent {
                st.unsent_inflight -= 1;
            }
        }
        st.pkids_in_use.remove(&pkid);
        self.update_load(&st);
        if !st.queue.is_empty() {
            if let Some(link) = &st.link {
                link.wake.notify_one();
            }
        }
        true
    }

    /// Acknowledgements of many messages at once, from connection `conn_id` (an in-process
    /// client acking what one transaction stored): one lock, one wake. Nothing happens unless
    /// `conn_id` is still the attached connection, so an ack of an earlier attachment can never
    /// release a message resent since, whose packet id it may share. Unknown packet ids are
    /// ignored. Returns how many messages were released.
    pub(super) fn ack_many(&self, conn_id: u64, pkids: &[u16]) -> usize {
        let mut st = self.lock();
        if st.link.as_ref().map(|l| l.conn_id) != Some(conn_id) {
            return 0;
        }
        let mut released = 0;
        for &pkid in pkids {
            // Acks come in delivery order, so this finds the front at once.
            let Some(pos) = st.inflight.iter().position(|m| m.msg.publish.pkid == pkid) else {
                continue;
            };
            if let Some(m) = st.inflight.remove(pos) {
                if !m.sent {
                    st.unsent_inflight -= 1;
                }
            }
            st.pkids_in_use.remove(&pkid);
            released += 1;
        }
        if released > 0 {
            self.update_load(&st);
            if !st.queue.is_empty() {
                if let Some(link) = &st.link {
                    link.wake.notify_one();
                }
            }
        }
        released
    }

    /// Take the next batch for connection `conn_id`: control packets, then inflight messages to
    /// resend, then queued messages while the inflight window allows. `None` means this
    /// connection is no longer attached and its writer should stop.
    pub(super) fn next_batch(
        &self,
        conn_id: u64,
        max_inflight: usize,
        max_packets: usize,
        max_bytes: usize,
    ) -> Option<Batch> {
        let mut st = self.lock();
        if st.link.as_ref().map(|l| l.conn_id) != Some(conn_id) {
            return None;
        }
        let mut batch = Batch {
            packets: std::mem::take(&mut st.control),
            ..Batch::default()
        };
        let mut bytes = 0;
        let full = |packets: usize, bytes: usize| packets >= max_packets || bytes >= max_bytes;
        if st.unsent_inflight > 0 {
            // Resend what the previous connection left unacknowledged, in the original order
            // and before anything new.
            let mut resent = 0;
            for m in st.inflight.iter_mut().filter(|m| !m.sent) {
                if full(batch.packets.len(), bytes) {
                    break;
                }
                m.sent = true;
                let mut p = m.msg.publish.clone();
                p.dup = true;
                bytes += p.topic.len() + p.payload.len() + 8;
                batch.packets.push(Packet::Publish(p));
                resent += 1;
            }
            st.unsent_inflight -= resent;
            batch.publishes += resent as u64;
        }
        while st.unsent_inflight == 0 && !full(batch.packets.len(), bytes) {
            let Some(front) = st.queue.front() else { break };
            let qos = front.publish.qos;
            if qos != QoS::AtMostOnce && st.inflight.len() >= max_inflight {
                break;
            }
            let Some(mut msg) = st.queue.pop_front() else {
                break;
            };
            let size = message_bytes(&msg.publish);
            st.queued_bytes -= size;
            bytes += size;
            if qos == QoS::AtMostOnce {
                st.qos0_queued -= 1;
                batch.packets.push(Packet::Publish(msg.publish));
            } else {
                let pkid = st.alloc_pkid();
                msg.publish.pkid = pkid;
                batch.packets.push(Packet::Publish(msg.publish.clone()));
                st.inflight.push_back(Inflight { msg, sent: true });
            }
            batch.publishes += 1;
        }
        self.update_load(&st);
        Some(batch)
    }
}

impl SessionState {
    fn alloc_pkid(&mut self) -> u16 {
        // The window is far smaller than the id space, so this finds a free id quickly.
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && self.pkids_in_use.insert(self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    pub(super) fn inflight(&self) -> usize {
        self.inflight.len()
    }
}
