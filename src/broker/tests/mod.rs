//! Broker tests through real clients: rumqttc for the ordinary paths, a raw socket where a test
//! must send what a well-behaved client never would. Every wait has a timeout.
//!
//! This file holds the kit (the authenticator, the clients, the waits); the tests are grouped by
//! area in the submodules.

mod acl;
mod connect;
mod delivery;
mod flow_control;
mod local;
mod sessions;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::future::BoxFuture;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubRel, Publish, SubAck, Subscribe,
    SubscribeReasonCode,
};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{
    AckMode, AsyncClient, ConnectionError, Event, LastWill, MqttOptions, PublishOptions, QoS,
    SubscribeFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    Acl, AuthError, Authenticator, Broker, BrokerConfig, BrokerHandle, Credentials, Principal,
};

const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(500);

/// `svc` is the service (`svc-narrow` too, with the right to subscribe to statuses only);
/// `dev1`, `dev2` and `dev3` are devices that may publish under
/// `devices/{id}/up/#` and `devices/{id}/status` and subscribe to `devices/{id}/down/#`;
/// `db-down` makes the backing store fail; `slow` never answers in time.
struct TestAuth;

impl Authenticator for TestAuth {
    fn authenticate<'a>(
        &'a self,
        creds: Credentials<'a>,
    ) -> BoxFuture<'a, Result<Option<(Principal, Acl)>, AuthError>> {
        Box::pin(async move {
            let password = creds.password.unwrap_or_default();
            Ok(match creds.username {
                Some("svc") if password == b"svc-secret" => Some((Principal::Service, Acl::all())),
                // The same principal with fewer rights, as after an ACL change.
                Some("svc-narrow") if password == b"svc-narrow-secret" => Some((
                    Principal::Service,
                    Acl {
                        publish: vec![],
                        subscribe: vec!["devices/+/status".to_owned()],
                    },
                )),
                Some(id @ ("dev1" | "dev2" | "dev3"))
                    if password == format!("{id}-secret").as_bytes() =>
                {
                    Some((
                        Principal::Device { id: id.to_owned() },
                        Acl {
                            publish: vec![
                                format!("devices/{id}/up/#"),
                                format!("devices/{id}/status"),
                            ],
                            subscribe: vec![format!("devices/{id}/down/#")],
                        },
                    ))
                }
                Some("db-down") => return Err(AuthError::new("database unavailable")),
                Some("slow") => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    None
                }
                _ => None,
            })
        })
    }
}

fn test_config() -> BrokerConfig {
    BrokerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        connect_timeout: Duration::from_secs(2),
        ..BrokerConfig::default()
    }
}

async fn start_broker(config: BrokerConfig) -> BrokerHandle {
    Broker::bind(config, Arc::new(TestAuth))
        .await
        .expect("broker binds")
}

fn options(broker: &BrokerHandle, client_id: &str, user: &str) -> MqttOptions {
    let addr = broker.local_addr();
    let mut o = MqttOptions::new(client_id, (addr.ip().to_string(), addr.port()));
    o.set_credentials(user, format!("{user}-secret"))
        .set_keep_alive(30)
        .set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// A rumqttc client whose event loop runs in its own task, forwarding events until the first
/// error (so it never reconnects behind the test's back).
struct TestClient {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    task: JoinHandle<()>,
}

impl TestClient {
    fn start(options: MqttOptions) -> Self {
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(1024).build();
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    break;
                }
            }
        });
        Self {
            client,
            events,
            task,
        }
    }

    /// Start and wait for a successful CONNACK.
    async fn connect(options: MqttOptions) -> (Self, ConnAck) {
        let mut c = Self::start(options);
        let ack = c.connack().await.expect("connection accepted");
        (c, ack)
    }

    async fn next_event(&mut self, within: Duration) -> Option<Result<Event, ConnectionError>> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    async fn connack(&mut self) -> Result<ConnAck, String> {
        loop {
            match self.next_event(WAIT).await {
                Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) => return Ok(ack),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("{e:?}")),
                None => return Err("no CONNACK in time".to_owned()),
            }
        }
    }

    async fn suback(&mut self) -> SubAck {
        loop {
            match self.next_event(WAIT).await {
                Some(Ok(Event::Incoming(Packet::SubAck(ack)))) => return ack,
                Some(Ok(_)) => {}
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("queue subscribe");
        self.suback().await
    }

    /// Next incoming PUBLISH, or `None` if nothing arrives within `within` (or the connection
    /// fails).
    async fn next_publish(&mut self, within: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Ok(Event::Incoming(Packet::Publish(p)))) => return Some(p),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Wait until the connection fails (closed by the broker).
    async fn closed(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Ok(_)) => {}
                Some(Err(_)) => return true,
                None => return self.task.is_finished(),
            }
        }
    }

    /// Drop the connection without DISCONNECT, as a crashed device would.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Graceful DISCONNECT.
    async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue disconnect");
        assert!(self.closed(WAIT).await, "event loop ends after DISCONNECT");
    }
}

async fn publish(c: &TestClient, topic: &str, qos: QoS, payload: impl Into<Vec<u8>>) {
    c.client
        .publish(topic, payload.into(), PublishOptions::new(qos))
        .await
        .expect("queue publish");
}

/// Poll broker stats until `cond` holds.
async fn wait_stats(broker: &BrokerHandle, cond: impl Fn(&super::BrokerStats) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = broker.stats();
        if cond(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "stats never matched: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A bare TCP client speaking packets by hand.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn open(broker: &BrokerHandle) -> Self {
        Self {
            stream: TcpStream::connect(broker.local_addr())
                .await
                .expect("tcp connect"),
            buf: BytesMut::new(),
        }
    }

    async fn connect(broker: &BrokerHandle, client_id: &str, user: &str) -> Self {
        let mut raw = Self::open(broker).await;
        let mut connect = Connect::new(client_id);
        connect.set_credentials(user, format!("{user}-secret"));
        connect.keep_alive = 30;
        raw.send(Packet::Connect(connect)).await;
        match raw.recv().await {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).expect("encode");
        self.send_bytes(&out).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may already have closed the socket; tests check that separately.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Next packet, or `None` on close or timeout.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => panic!("broker sent a malformed packet: {e}"),
            }
            match tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// True if the broker closes the connection within `within` (data before that is ignored).
    async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut sink = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

fn payload_u32(p: &Publish) -> u32 {
    let bytes: [u8; 4] = p.payload[..4].try_into().expect("4-byte payload");
    u32::from_be_bytes(bytes)
}
