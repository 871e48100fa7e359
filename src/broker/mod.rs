//! The embedded MQTT 3.1.1 broker, run in-process when no external broker is configured, so
//! that one command runs the whole system.
//!
//! Devices and the server's own ingest client connect to it over TCP like to any broker, and
//! devices also over TLS on an optional second listener ([`BrokerConfig::tls`]). It is
//! built to be correct and robust on the data path rather than feature-complete:
//!
//! - MQTT 3.1.1 only (protocol level 4); QoS 0, 1 and 2 inbound, at most QoS 1 outbound.
//! - Authentication and per-principal ACLs come from an [`Authenticator`] (Homeward's device
//!   registry); a publish outside the ACL closes the connection and is delivered to nobody.
//! - Retained messages, last wills, persistent sessions (`clean_session = false`, expiring after
//!   [`BrokerConfig::session_expiry`] offline) and shared subscriptions
//!   (`$share/{group}/{filter}`, one member per message, round robin).
//! - **Not durable**: sessions, queues and retained messages live in memory and are lost when
//!   the process stops. That is by design: devices keep every event until Homeward's own
//!   end-to-end acknowledgement covers it (`docs/wire-format.md`, downlink acknowledgements), so a broker restart
//!   costs a resend, never an event.
//!
//! Layout: `topic` (filter syntax, matching, ACL coverage), `trie` (the subscription index),
//! `session` (per-client queue and inflight window), `conn` (one task pair per network
//! connection: a reader that parses and routes, a writer that batches packets to the socket),
//! `limits` (per-device token buckets).
//!
//! Flow control, so that one device cannot exhaust memory or crowd out other tenants:
//!
//! - **Per-device rates** ([`BrokerConfig::device_max_messages_per_sec`], `..._bytes_per_sec`,
//!   with a burst allowance): excess is *delayed*, never dropped. The device's reader stops
//!   reading its socket until the device's bucket has refilled, TCP pushes back, and the device
//!   keeps what it has not had acknowledged. Homeward's own service principal is never limited.
//! - **Session queues** are bounded in messages and in bytes; past either bound the oldest
//!   QoS 0 message is dropped, else the new one (counted by reason).
//! - **Connections**: at most [`BrokerConfig::max_connections`] device connections (CONNACK
//!   "server unavailable" beyond); Homeward's own clients are always admitted.
//! - **Subscriptions**: at most [`BrokerConfig::max_subscriptions_per_client`] per device
//!   session, `$share` ones included (SUBACK failure beyond).
//! - **Idle connections**: a connection must send CONNECT within
//!   [`BrokerConfig::connect_timeout`]; after it, silence for 1.5 × its keep-alive closes it, or
//!   for [`BrokerConfig::idle_timeout`] if it asked for no keep-alive (`keep_alive = 0`).
//!
//! Concurrency: there is no global lock held across an await. Routing takes the subscription
//! index's read lock for one walk, then each target session's mutex for a push. Lock order,
//! where two are held at once: sessions map, then one session; or sessions map, then the index
//! (a resumed session's subscriptions are re-checked before it is attached). The index lock and
//! the retained store lock are never held together with a session lock. The device limiter map
//! and a device's limiter are each held alone (the reaper holds the map, then one limiter).

mod conn;
mod limits;
mod session;
mod topic;
mod trie;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rumqttc::mqttbytes::v4::{ConnAck, LastWill, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use self::limits::DeviceLimiter;
use self::session::{Enqueued, Link, Message, Session};
use self::trie::{ShareKey, SubscriptionTrie, Target};

/// Broker settings. Defaults suit a single server with thousands of devices.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where to listen. Default `127.0.0.1:1883`; use port 0 in tests.
    pub bind: SocketAddr,
    /// Largest packet accepted (remaining length); a bigger one closes the connection.
    /// Default 64 KiB.
    pub max_packet_bytes: usize,
    /// Per-session window of QoS 1 messages sent and not yet acknowledged. Default 1000.
    pub max_inflight: u16,
    /// Per-session bound on messages waiting behind the window or for an offline session.
    /// When full, the oldest QoS 0 message is dropped, else the new one. Default 100 000.
    pub max_queued: usize,
    /// Time a new connection has to send CONNECT (and the authenticator to answer).
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// How long an offline persistent session (and its queue) is kept. Default 24 h.
    pub session_expiry: Duration,
    /// Per-session bound on the bytes (topic and payload) of the messages waiting, applied as
    /// `max_queued` is. Default 64 MiB.
    pub max_queued_bytes: usize,
    /// Most PUBLISH packets per second a device may send, on average; 0 = unlimited. A device
    /// above it is not read from until its allowance has refilled. Default 1000.
    pub device_max_messages_per_sec: u64,
    /// Most bytes per second a device may send, on average; 0 = unlimited. Default 1 MiB.
    pub device_max_bytes_per_sec: u64,
    /// How much unused allowance a device may save up, in seconds of its rates: a hub coming
    /// back with a backlog sends this much at full speed. Default 10 s.
    pub device_burst: Duration,
    /// Most connected devices; more are refused with CONNACK "server unavailable". Homeward's
    /// own clients are not counted against it. Default 20 000.
    pub max_connections: usize,
    /// Most subscriptions per device session, `$share` ones included; more get a SUBACK
    /// failure. Default 64.
    pub max_subscriptions_per_client: usize,
    /// Idle limit for a connection that asked for no keep-alive (`keep_alive = 0`): it is
    /// closed after this long without a packet. Default 30 min (two default heartbeat
    /// intervals).
    pub idle_timeout: Duration,
    /// A second listener for MQTT over TLS, beside the plain one. Default none.
    pub tls: Option<TlsListener>,
}

/// Where the `mqtts` listener binds and the TLS it speaks. The handshake must finish within
/// [`BrokerConfig::connect_timeout`], after which CONNECT gets its own.
#[derive(Clone)]
pub struct TlsListener {
    pub bind: SocketAddr,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

/// The `mqtts` listener could not be bound (the plain one was); see [`Broker::bind`].
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for MQTT over TLS on {addr}: {source}")]
pub struct TlsBindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 1883)),
            max_packet_bytes: 64 * 1024,
            max_inflight: 1000,
            max_queued: 100_000,
            connect_timeout: Duration::from_secs(10),
            session_expiry: Duration::from_secs(24 * 3600),
            max_queued_bytes: 64 * 1024 * 1024,
            device_max_messages_per_sec: 1000,
            device_max_bytes_per_sec: 1024 * 1024,
            device_burst: Duration::from_secs(10),
            max_connections: 20_000,
            max_subscriptions_per_client: 64,
            idle_timeout: Duration::from_secs(30 * 60),
            tls: None,
        }
    }
}

/// Who connected, as decided by the [`Authenticator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Homeward itself (ingest, downlink publisher).
    Service,
    /// A registered device.
    Device { id: String },
}

/// Topic filters (with `+` and `#`) a principal may publish to and subscribe to.
///
/// A topic may be published if it matches one `publish` filter. A subscription filter is
/// allowed if one `subscribe` filter covers it level by level (`#` covers everything below it,
/// `+` covers one level or a `+`). For a shared subscription the inner filter is checked.
/// Filters starting with a wildcard never cover topics starting with `$`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl Acl {
    /// Everything (`#` both ways): for [`Principal::Service`].
    pub fn all() -> Self {
        Self {
            publish: vec!["#".to_owned()],
            subscribe: vec!["#".to_owned()],
        }
    }

    /// May a client holding this ACL publish on `topic`? False for anything that is not a
    /// valid topic name. The broker's own check of a PUBLISH, for an external broker that asks
    /// Homeward.
    pub fn allows_publish(&self, topic: &str) -> bool {
        topic::valid_topic(topic) && self.may_publish(topic)
    }

    /// May it subscribe to `filter` as a SUBSCRIBE carries it (a `$share/{group}/...` filter
    /// by its inner filter)? False for an invalid filter. The broker's own check of a
    /// SUBSCRIBE, for an external broker that asks Homeward.
    pub fn allows_subscribe(&self, filter: &str) -> bool {
        topic::FilterSpec::parse(filter).is_some_and(|spec| self.may_subscribe(spec.filter()))
    }

    fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| topic::matches(topic, f))
    }

    fn may_subscribe(&self, filter: &str) -> bool {
        self.subscribe.iter().any(|acl| topic::covers(acl, filter))
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Service => f.write_str("service"),
            Principal::Device { id } => write!(f, "device {id}"),
        }
    }
}

/// What a client presented in CONNECT. `Debug` does not print the password.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The client id (for an empty one with clean_session, the id the broker assigned).
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .finish()
    }
}

/// The backing store of an [`Authenticator`] failed (e.g. the database is down). The client is
/// told "server unavailable", not "bad credentials", so it retries rather than giving up.
#[derive(Debug, thiserror::Error)]
#[error("authentication backend failed: {0}")]
pub struct AuthError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl AuthError {
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(cause.into())
    }
}

/// Decides who may connect and what they may do.
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(None)` refuses the connection (CONNACK "bad user name or password", or "not
    /// authorized" when no user name was given); `Err` answers "server unavailable".
    fn authenticate<'a>(
        &'a self,
        creds: Credentials<'a>,
    ) -> BoxFuture<'a, Result<Option<(Principal, Acl)>, AuthError>>;
}

/// A connection asked for a session that another principal owns.
#[derive(Debug)]
struct SessionOwned {
    owner: Principal,
}

/// A snapshot of the broker's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Network connections that completed CONNECT.
    pub connected_clients: usize,
    /// Sessions, online and offline.
    pub sessions: usize,
    pub retained_messages: usize,
    /// Messages waiting in session queues (not yet sent).
    pub queued_messages: usize,
    /// Their bytes (topic and payload), as counted against `max_queued_bytes`.
    pub queued_bytes: usize,
    /// QoS 1 messages sent and awaiting PUBACK.
    pub inflight_messages: usize,
}

/// Entry point: [`Broker::bind`].
pub struct Broker;

impl Broker {
    /// Bind the listener (and the TLS one, if configured) and start the broker. Returns once
    /// the sockets are bound, so [`BrokerHandle::local_addr`] gives the real port. A failure
    /// to bind the TLS listener is an error wrapping a [`TlsBindError`].
    pub async fn bind(
        config: BrokerConfig,
        auth: Arc<dyn Authenticator>,
    ) -> std::io::Result<BrokerHandle> {
        let listener = TcpListener::bind(config.bind).await?;
        let local_addr = listener.local_addr()?;
        let tls = match &config.tls {
            Some(tls) => {
                let l = TcpListener::bind(tls.bind).await.map_err(|source| {
                    let kind = source.kind();
                    std::io::Error::new(
                        kind,
                        TlsBindError {
                            addr: tls.bind,
                            source,
                        },
                    )
                })?;
                let addr = l.local_addr()?;
                Some((l, addr, tls.acceptor.clone()))
            }
            None => None,
        };
        let tls_local_addr = tls.as_ref().map(|(_, addr, _)| *addr);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel::<()>(1);
        let shared = Arc::new(Shared {
            config,
            auth,
            sessions: Mutex::new(HashMap::new()),
            subs: RwLock::new(SubscriptionTrie::default()),
            retained: Mutex::new(HashMap::new()),
            connected: AtomicUsize::new(0),
            device_connections: AtomicUsize::new(0),
            sockets: AtomicUsize::new(0),
            limiters: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
            drop_log: DropLog::new(),
            shutdown: shutdown_rx,
        });
        tokio::spawn(reap_sessions(shared.clone(), done_tx.clone()));
        tokio::spawn(report_stats(shared.clone(), done_tx.clone()));
        let plain = accept_loop(listener, None, shared.clone(), done_tx.clone());
        let tls =
            tls.map(|(l, _, acceptor)| accept_loop(l, Some(acceptor), shared.clone(), done_tx));
        let accept_task = tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    tokio::join!(plain, tls);
                }
                None => plain.await,
            }
        });
        tracing::info!(%local_addr, tls = ?tls_local_addr, "embedded MQTT broker listening");
        Ok(BrokerHandle {
            local_addr,
            tls_local_addr,
            shared,
            shutdown_tx,
            accept_task,
            done_rx,
        })
    }
}

/// A running broker. Dropping it stops the broker without waiting; prefer
/// [`BrokerHandle::shutdown`].
pub struct BrokerHandle {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    /// Every broker task holds a sender; `recv` yields `None` once all have ended.
    done_rx: mpsc::Receiver<()>,
}

impl BrokerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `mqtts` listener's address, if there is one.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    /// True until shutdown is requested or the accept loop has died.
    pub fn is_running(&self) -> bool {
        !*self.shutdown_tx.borrow() && !self.accept_task.is_finished()
    }

    /// Stop accepting, close every connection (wills are not published), and return when all
    /// broker tasks have ended.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        let _ = (&mut self.accept_task).await;
        while self.done_rx.recv().await.is_some() {}
        tracing::info!(local_addr = %self.local_addr, "embedded MQTT broker stopped");
    }

    /// A cheap handle for closing connections from elsewhere in the process.
    pub fn control(&self) -> BrokerControl {
        BrokerControl {
            shared: self.shared.clone(),
        }
    }

    pub fn stats(&self) -> BrokerStats {
        self.shared.stats()
    }
}

/// Acts on a running broker's connections (see [`BrokerHandle::control`]).
#[derive(Clone)]
pub struct BrokerControl {
    shared: Arc<Shared>,
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

/// State shared by all broker tasks.
struct Shared {
    config: BrokerConfig,
    auth: Arc<dyn Authenticator>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    subs: RwLock<SubscriptionTrie>,
    retained: Mutex<HashMap<String, Publish>>,
    /// Connections that completed CONNECT.
    connected: AtomicUsize,
    /// Of those, devices' (counted against `max_connections`).
    device_connections: AtomicUsize,
    /// Open sockets, in the handshake or connected.
    sockets: AtomicUsize,
    /// Per-device rate limiters, by device id (see `limits`).
    limiters: Mutex<HashMap<String, Arc<Mutex<DeviceLimiter>>>>,
    next_conn_id: AtomicU64,
    drop_log: DropLog,
    shutdown: watch::Receiver<bool>,
}

// Poisoned locks: every critical section leaves the data consistent between statements that
// can panic, so recovering the guard is safe and keeps one bug from taking the broker down.
impl Shared {
    fn sessions(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retained(&self) -> MutexGuard<'_, HashMap<String, Publish>> {
        self.retained.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subs_read(&self) -> RwLockReadGuard<'_, SubscriptionTrie> {
        self.subs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn subs_write(&self) -> RwLockWriteGuard<'_, SubscriptionTrie> {
        self.subs.write().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> BrokerStats {
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
    fn limiter_for(&self, principal: &Principal) -> Option<Arc<Mutex<DeviceLimiter>>> {
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

    fn max_inflight(&self) -> usize {
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
    fn open_session(
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
    fn publish_will(&self, will: LastWill) {
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
    fn forget_session(&self, session: &Arc<Session>, msgs: Vec<Message>) {
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
    fn rehome(&self, msgs: Vec<Message>) {
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
    fn route(&self, publish: &Publish, topic: &str) {
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

    fn deliver_shared(
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

    fn deliver(&self, session: &Session, msg: Message) -> Enqueued {
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
    fn retained_for(&self, filter: &str, qos: QoS) -> Vec<Publish> {
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

fn min_qos(a: QoS, b: QoS) -> QoS {
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
enum CloseReason {
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
struct CloseSignal {
    reason: Mutex<Option<CloseReason>>,
    notify: Notify,
}

impl CloseSignal {
    fn new() -> Self {
        Self {
            reason: Mutex::new(None),
            notify: Notify::new(),
        }
    }

    fn close(&self, reason: CloseReason) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.notify.notify_waiters();
    }

    fn reason(&self) -> Option<CloseReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn closed(&self) -> CloseReason {
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
struct DropLog {
    start: Instant,
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl DropLog {
    const INTERVAL_MS: u64 = 10_000;

    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    fn should_log(&self) -> Option<u64> {
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

/// Resolves when shutdown is requested (or the handle was dropped).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

/// Accepts on one listener; with `tls`, each connection does its TLS handshake in its own task.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown_requested(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Sockets still in the handshake count too, with headroom for Homeward's
                    // own clients (admitted past `max_connections`) and for handshakes that
                    // are about to be refused with a CONNACK.
                    let cap = shared.config.max_connections;
                    let hard_cap = cap.saturating_add(cap / 8).saturating_add(64);
                    if shared.sockets.load(Ordering::Relaxed) >= hard_cap {
                        metrics::counter!("homeward_broker_refused_total", "reason" => "connections")
                            .increment(1);
                        if let Some(suppressed) = shared.drop_log.should_log() {
                            tracing::warn!(%peer, hard_cap, suppressed, "too many open connections; closing a new one");
                        }
                        drop(stream);
                        continue;
                    }
                    shared.sockets.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "set_nodelay failed");
                    }
                    let (shared, done) = (shared.clone(), done.clone());
                    match &tls {
                        None => tokio::spawn(conn::run(stream, peer, shared, done)),
                        Some(tls) => tokio::spawn(tls_then_run(tls.accept(stream), peer, shared, done)),
                    };
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Expire offline persistent sessions.
async fn reap_sessions(shared: Arc<Shared>, _done: mpsc::Sender<()>) {
    let expiry = shared.config.session_expiry;
    let period = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown_requested(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut map = shared.sessions();
            map.retain(|_, s| {
                let mut st = s.lock();
                let stale = st.link.is_none()
                    && st
                        .disconnected_at
                        .is_some_and(|t| now.saturating_duration_since(t) >= expiry);
                if stale {
                    let (msgs, _no_will) = s.discard(&mut st);
                    drop(st);
                    expired.push((s.clone(), msgs));
                }
                !stale
            });
        }
        for (session, msgs) in expired {
            tracing::info!(client_id = %session.client_id(), "offline session expired");
            shared.forget_session(&session, msgs);
        }
        // A limiter no connection holds and that has refilled is the same as a new one.
        let now = Instant::now();
        shared
            .limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, l| {
                Arc::strong_count(l) > 1
                    || !l.lock().unwrap_or_else(|e| e.into_inner()).is_rested(now)
            });
    }
}

/// Publish queue sizes as gauges once a second.
async fn report_stats(shared: Arc<Shared>, _done: mpsc::Sender<()>) {
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown_requested(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        let stats = shared.stats();
        metrics::gauge!("homeward_broker_sessions").set(stats.sessions as f64);
        metrics::gauge!("homeward_broker_queued_messages").set(stats.queued_messages as f64);
        metrics::gauge!("homeward_broker_queued_bytes").set(stats.queued_bytes as f64);
        metrics::gauge!("homeward_broker_inflight_messages").set(stats.inflight_messages as f64);
    }
}

/// Finishes the TLS handshake within the CONNECT timeout, then serves the connection.
async fn tls_then_run(
    handshake: tokio_rustls::Accept<tokio::net::TcpStream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    let handshake = tokio::select! {
        r = tokio::time::timeout(shared.config.connect_timeout, handshake) => r,
        _ = shutdown_requested(&mut shutdown) => return,
    };
    match handshake {
        Ok(Ok(stream)) => return conn::run(stream, peer, shared, done).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
    // `conn::run` gives the socket's place back; without it, do so here.
    shared.sockets.fetch_sub(1, Ordering::Relaxed);
}
