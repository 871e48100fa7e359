//! The embedded MQTT 3.1.1 broker, run in-process when no external broker is configured, so
//! that one command runs the whole system.
//!
//! Devices connect to it over TCP like to any broker, and also over TLS on an optional second
//! listener ([`BrokerConfig::tls`]). The server's own ingest attaches to its session in-process
//! ([`LocalClient`], `local`) by default, or over TCP on loopback like any client. It is
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
//! Layout: `auth` (principals, ACLs, the authenticator), `server` (listeners, accept loops,
//! background tasks, the handle), `control` (closing connections from outside), `state` (the
//! session registry, subscription index and retained store, and routing through them),
//! `topic` (filter syntax, matching, ACL coverage), `trie` (the subscription index),
//! `session` (per-client queue and inflight window), `conn` (one task pair per network
//! connection: a reader that parses and routes, a writer that batches packets to the socket),
//! `limits` (per-device token buckets), `local` (in-process clients: attach, pull, ack in
//! bulk, publish).
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

mod auth;
mod conn;
mod control;
mod limits;
mod local;
mod server;
mod session;
mod state;
mod topic;
mod trie;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use self::auth::{Acl, AuthError, Authenticator, Credentials, Principal};
pub use self::control::BrokerControl;
pub use self::local::{LocalBroker, LocalClient, LocalError};
use self::server::shutdown_requested;
pub use self::server::{Broker, BrokerHandle};
use self::state::{min_qos, CloseReason, CloseSignal, DropLog, Shared};

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

/// A snapshot of the broker's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Connections that completed CONNECT, and attached in-process clients.
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
