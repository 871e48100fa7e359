//! Broker tests through real clients: rumqttc for the ordinary paths, a raw socket where a test
//! must send what a well-behaved client never would. Every wait has a timeout.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    let broker = start_broker(test_config()).await;

    let mut o = options(&broker, "dev1", "dev1");
    o.set_credentials("dev1", "not-the-password");
    let mut c = TestClient::start(o);
    let err = c.connack().await.expect_err("refused");
    assert!(err.contains("BadUserNamePassword"), "{err}");

    let mut o = options(&broker, "x", "db-down");
    o.set_credentials("db-down", "whatever");
    let mut c = TestClient::start(o);
    let err = c.connack().await.expect_err("refused");
    assert!(err.contains("ServiceUnavailable"), "{err}");

    // An authenticator that does not answer within connect_timeout: "server unavailable".
    let mut c = TestClient::start(options(&broker, "y", "slow"));
    let err = c.connack().await.expect_err("refused");
    assert!(err.contains("ServiceUnavailable"), "{err}");

    // A correct password still works.
    let (_c, ack) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_edge_cases() {
    let broker = start_broker(test_config()).await;

    // MQTT 5 (protocol level 5): "unacceptable protocol version".
    let mut raw = Raw::open(&broker).await;
    let mut out = BytesMut::new();
    Packet::Connect(Connect::new("v5"))
        .write(&mut out, usize::MAX)
        .expect("encode");
    out[8] = 5; // protocol level byte
    raw.send_bytes(&out).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.code, ConnectReturnCode::RefusedProtocolVersion)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(raw.closed_within(WAIT).await);

    // Empty client id without clean session: "identifier rejected".
    // Empty client id without clean session: "identifier rejected". Built by hand, as
    // rumqttc refuses to encode it.
    let mut raw = Raw::open(&broker).await;
    let mut bytes = [
        &[0x10u8, 0][..],
        &[0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0000, 0, 30, 0, 0],
        &[0, 3, b's', b'v', b'c', 0, 10],
        b"svc-secret",
    ]
    .concat();
    bytes[1] = u8::try_from(bytes.len() - 2).expect("short");
    raw.send_bytes(&bytes).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ConnectReturnCode::BadClientId),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // Empty client id with clean session: accepted, an id is assigned.
    let mut raw = Raw::open(&broker).await;
    let mut connect = Connect::new("");
    connect.set_credentials("svc", "svc-secret");
    raw.send(Packet::Connect(connect)).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // A device whose will topic is outside its ACL: "not authorized".
    let mut o = options(&broker, "dev1", "dev1");
    o.set_last_will(LastWill::new(
        "devices/dev2/status",
        "x",
        QoS::AtLeastOnce,
        false,
    ));
    let mut c = TestClient::start(o);
    let err = c.connack().await.expect_err("refused");
    assert!(err.contains("NotAuthorized"), "{err}");

    // No CONNECT at all: closed after connect_timeout.
    let mut raw = Raw::open(&broker).await;
    assert!(raw.closed_within(Duration::from_secs(5)).await);

    // A PINGREQ before CONNECT: closed at once.
    let mut raw = Raw::open(&broker).await;
    raw.send(Packet::PingReq).await;
    assert!(raw.closed_within(Duration::from_secs(1)).await);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_publish_reaches_service_subscriber() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "ingest", "svc")).await;
    let ack = svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(&dev, "devices/dev1/up/events", QoS::AtLeastOnce, "fall").await;

    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(&p.topic[..], b"devices/dev1/up/events");
    assert_eq!(&p.payload[..], b"fall");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(!p.retain);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_outside_acl_disconnects_and_is_not_delivered() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "ingest", "svc")).await;
    svc.subscribe("devices/#", QoS::AtLeastOnce).await;

    let (mut dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(&dev1, "devices/dev2/up/events", QoS::AtLeastOnce, "forged").await;
    assert!(dev1.closed(WAIT).await, "dev1 is disconnected");

    // The service is unaffected and the forged message never arrives: the next message it
    // sees is a legitimate one published afterwards.
    let (dev2, _) = TestClient::connect(options(&broker, "dev2", "dev2")).await;
    publish(&dev2, "devices/dev2/up/events", QoS::AtLeastOnce, "genuine").await;
    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(&p.payload[..], b"genuine");
    assert!(svc.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_outside_acl_gets_failure_code() {
    let broker = start_broker(test_config()).await;
    let (mut dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    dev.client
        .subscribe_many([
            SubscribeFilter::new("devices/dev2/down/#".to_owned(), QoS::AtLeastOnce),
            SubscribeFilter::new("devices/dev1/down/#".to_owned(), QoS::ExactlyOnce),
            SubscribeFilter::new("#".to_owned(), QoS::AtMostOnce),
            SubscribeFilter::new("devices/+/down/#".to_owned(), QoS::AtMostOnce),
            SubscribeFilter::new("$share/g/devices/dev1/down/+".to_owned(), QoS::AtLeastOnce),
        ])
        .await
        .expect("queue subscribe");
    let ack = dev.suback().await;
    assert_eq!(
        ack.return_codes,
        [
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce), // QoS 2 granted as 1
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
        ]
    );

    // The allowed subscription works; the refused ones receive nothing.
    let (svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    publish(
        &svc,
        "devices/dev2/down/cmd",
        QoS::AtLeastOnce,
        "not for dev1",
    )
    .await;
    publish(&svc, "devices/dev1/down/cmd", QoS::AtLeastOnce, "for dev1").await;
    let p = dev.next_publish(WAIT).await.expect("delivered");
    assert_eq!(&p.payload[..], b"for dev1");
    // Delivered once, although it also matches the shared subscription's group of one: the
    // plain subscription and the group each get one copy.
    let p = dev.next_publish(WAIT).await.expect("group copy");
    assert_eq!(&p.payload[..], b"for dev1");
    assert!(dev.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_status_reaches_later_subscriber() {
    let broker = start_broker(test_config()).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    dev.client
        .publish(
            "devices/dev1/status",
            "online",
            PublishOptions::new(QoS::AtLeastOnce).retained(),
        )
        .await
        .expect("queue publish");
    wait_stats(&broker, |s| s.retained_messages == 1).await;

    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;
    let p = svc.next_publish(WAIT).await.expect("retained delivered");
    assert_eq!(&p.payload[..], b"online");
    assert!(
        p.retain,
        "retained flag set for a message sent because of a new subscription"
    );

    // A live publish on the same topic reaches the existing subscriber with retain = 0.
    dev.client
        .publish(
            "devices/dev1/status",
            "still online",
            PublishOptions::new(QoS::AtLeastOnce).retained(),
        )
        .await
        .expect("queue publish");
    let p = svc.next_publish(WAIT).await.expect("live delivered");
    assert_eq!(&p.payload[..], b"still online");
    assert!(!p.retain);

    // An empty retained payload deletes it.
    dev.client
        .publish(
            "devices/dev1/status",
            Vec::new(),
            PublishOptions::new(QoS::AtLeastOnce).retained(),
        )
        .await
        .expect("queue publish");
    wait_stats(&broker, |s| s.retained_messages == 0).await;
    let (mut late, _) = TestClient::connect(options(&broker, "svc2", "svc")).await;
    late.subscribe("devices/+/status", QoS::AtLeastOnce).await;
    assert!(late.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_on_abrupt_disconnect_not_on_disconnect() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;

    let mut o = options(&broker, "dev1", "dev1");
    o.set_last_will(LastWill::new(
        "devices/dev1/status",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let (dev1, _) = TestClient::connect(o).await;
    dev1.kill().await;
    let p = svc.next_publish(WAIT).await.expect("will published");
    assert_eq!(&p.topic[..], b"devices/dev1/status");
    assert_eq!(&p.payload[..], b"offline");

    let mut o = options(&broker, "dev2", "dev2");
    o.set_last_will(LastWill::new(
        "devices/dev2/status",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let (dev2, _) = TestClient::connect(o).await;
    dev2.disconnect().await;
    wait_stats(&broker, |s| s.connected_clients == 1).await;
    assert!(
        svc.next_publish(QUIET).await.is_none(),
        "no will after DISCONNECT"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_closes_old_connection_and_publishes_its_will() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;

    let mut o = options(&broker, "hub-1", "dev1");
    o.set_last_will(LastWill::new(
        "devices/dev1/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (mut first, _) = TestClient::connect(o.clone()).await;
    // The hub reconnects (same client id) and at once says it is online.
    let (second, _) = TestClient::connect(o).await;
    second
        .client
        .publish(
            "devices/dev1/status",
            "online",
            PublishOptions::new(QoS::AtLeastOnce).retained(),
        )
        .await
        .expect("queue publish");
    assert!(first.closed(WAIT).await, "old connection closed");

    // The old connection's will goes out before anything from the new one, so the retained
    // status ends up "online".
    let p = svc.next_publish(WAIT).await.expect("old will published");
    assert_eq!(&p.payload[..], b"offline");
    let p = svc.next_publish(WAIT).await.expect("new status");
    assert_eq!(&p.payload[..], b"online");
    let (mut late, _) = TestClient::connect(options(&broker, "late", "svc")).await;
    late.subscribe("devices/dev1/status", QoS::AtLeastOnce)
        .await;
    let p = late.next_publish(WAIT).await.expect("retained");
    assert_eq!(&p.payload[..], b"online");
    wait_stats(&broker, |s| s.connected_clients == 3 && s.sessions == 3).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_timeout_closes_and_publishes_will() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;

    let mut raw = Raw::open(&broker).await;
    let mut connect = Connect::new("silent-hub");
    connect.set_credentials("dev1", "dev1-secret");
    connect.keep_alive = 1;
    connect.last_will = Some(LastWill::new(
        "devices/dev1/status",
        "lost",
        QoS::AtLeastOnce,
        false,
    ));
    raw.send(Packet::Connect(connect)).await;
    assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    // A PINGREQ is answered and resets the timer...
    tokio::time::sleep(Duration::from_millis(800)).await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
    // ...then silence: closed after 1.5 s.
    let started = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(4)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    let p = svc.next_publish(WAIT).await.expect("will published");
    assert_eq!(&p.payload[..], b"lost");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_redelivers_unacked_and_queued_messages() {
    let broker = start_broker(test_config()).await;
    let subscriber = |b: &BrokerHandle| {
        let mut o = options(b, "ingest", "svc");
        o.set_clean_session(false).set_ack_mode(AckMode::Manual);
        o
    };
    let (mut sub, ack) = TestClient::connect(subscriber(&broker)).await;
    assert!(!ack.session_present);
    sub.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    for i in 0u32..20 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }
    // Receive all 20, acknowledge only the first 10.
    for i in 0u32..20 {
        let p = sub.next_publish(WAIT).await.expect("delivered");
        assert_eq!(payload_u32(&p), i);
        if i < 10 {
            sub.client.ack(&p).await.expect("queue ack");
        }
    }
    wait_stats(&broker, |s| s.inflight_messages == 10).await;

    // Crash the subscriber; publish 10 more while it is away.
    sub.kill().await;
    wait_stats(&broker, |s| s.connected_clients == 1).await;
    for i in 20u32..30 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }
    wait_stats(&broker, |s| {
        s.queued_messages == 10 && s.inflight_messages == 10
    })
    .await;

    // Reconnect without subscribing again: the 10 unacknowledged come first (DUP), in order,
    // then the 10 queued. None lost, none extra.
    let (mut sub, ack) = TestClient::connect(subscriber(&broker)).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    for _ in 0..20 {
        let p = sub.next_publish(WAIT).await.expect("redelivered");
        let n = payload_u32(&p);
        assert_eq!(p.dup, n < 20, "DUP only on resent message {n}");
        got.push(n);
        sub.client.ack(&p).await.expect("queue ack");
    }
    assert_eq!(got, (10u32..30).collect::<Vec<_>>());
    assert!(sub.next_publish(QUIET).await.is_none());
    wait_stats(&broker, |s| {
        s.inflight_messages == 0 && s.queued_messages == 0
    })
    .await;

    // clean_session = true discards the session.
    sub.kill().await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(true);
    let (_sub, ack) = TestClient::connect(o).await;
    assert!(!ack.session_present);
    publish(
        &dev,
        "devices/dev1/up/e",
        QoS::AtLeastOnce,
        99u32.to_be_bytes(),
    )
    .await;
    wait_stats(&broker, |s| s.sessions == 2 && s.queued_messages == 0).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_is_bounded() {
    let broker = start_broker(BrokerConfig {
        max_queued: 5,
        ..test_config()
    })
    .await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(false);
    let (mut sub, _) = TestClient::connect(o.clone()).await;
    sub.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    for i in 0u32..10 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }
    publish(
        &dev,
        "devices/dev1/up/e",
        QoS::AtMostOnce,
        100u32.to_be_bytes(),
    )
    .await;
    wait_stats(&broker, |s| s.queued_messages == 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Full with QoS 1 messages: the newer ones were dropped, the first five kept.
    let (mut sub, _) = TestClient::connect(o).await;
    let mut got = Vec::new();
    while let Some(p) = sub.next_publish(QUIET).await {
        got.push(payload_u32(&p));
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_hold_up_others() {
    let broker = start_broker(BrokerConfig {
        max_inflight: 100,
        max_queued: 500,
        ..test_config()
    })
    .await;
    // Subscribes, then never reads its socket again nor acknowledges anything.
    let mut stalled = Raw::connect(&broker, "stalled", "svc").await;
    let mut sub = Subscribe::new("devices/#", QoS::AtLeastOnce);
    sub.pkid = 1;
    stalled.send(Packet::Subscribe(sub)).await;
    assert!(matches!(stalled.recv().await, Some(Packet::SubAck(_))));

    let (mut healthy, _) = TestClient::connect(options(&broker, "healthy", "svc")).await;
    healthy.subscribe("devices/#", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let payload = vec![7u8; 1024];
    for round in 0u32..10 {
        for i in 0u32..200 {
            let mut p = (round * 200 + i).to_be_bytes().to_vec();
            p.extend_from_slice(&payload);
            publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, p).await;
        }
        for i in 0u32..200 {
            let p = healthy
                .next_publish(WAIT)
                .await
                .expect("healthy subscriber served");
            assert_eq!(payload_u32(&p), round * 200 + i);
        }
    }
    // The stalled session holds its window plus a bounded queue; the rest was dropped. (The
    // healthy subscriber's acknowledgements may still be on their way.)
    wait_stats(&broker, |s| {
        s.inflight_messages == 100 && s.queued_messages == 500
    })
    .await;
    drop(stalled);
    wait_stats(&broker, |s| {
        s.connected_clients == 2 && s.queued_messages == 0
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_splits_messages_exactly_once() {
    let broker = start_broker(test_config()).await;
    let (mut a, _) = TestClient::connect(options(&broker, "ingest-a", "svc")).await;
    let (mut b, _) = TestClient::connect(options(&broker, "ingest-b", "svc")).await;
    for c in [&mut a, &mut b] {
        let ack = c
            .subscribe("$share/ingest/devices/+/up/#", QoS::AtLeastOnce)
            .await;
        assert_eq!(
            ack.return_codes,
            [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        );
    }

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    const N: u32 = 200;
    for i in 0..N {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }

    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + WAIT;
    while from_a.len() + from_b.len() < N as usize && Instant::now() < deadline {
        tokio::select! {
            Some(p) = a.next_publish(WAIT) => from_a.push(payload_u32(&p)),
            Some(p) = b.next_publish(WAIT) => from_b.push(payload_u32(&p)),
            else => break,
        }
    }
    // Nothing more arrives later either.
    assert!(a.next_publish(QUIET).await.is_none());
    assert!(b.next_publish(Duration::from_millis(50)).await.is_none());

    let all: BTreeSet<u32> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(
        from_a.len() + from_b.len(),
        N as usize,
        "each message delivered once"
    );
    assert_eq!(all, (0..N).collect::<BTreeSet<_>>(), "no message lost");
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "a: {}, b: {}",
        from_a.len(),
        from_b.len()
    );
    // Each member sees its share in publish order.
    assert!(from_a.windows(2).all(|w| w[0] < w[1]));
    assert!(from_b.windows(2).all(|w| w[0] < w[1]));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_messages_of_a_departed_member_go_to_another() {
    let broker = start_broker(test_config()).await;
    let member = |b: &BrokerHandle, id: &str| {
        let mut o = options(b, id, "svc");
        o.set_ack_mode(AckMode::Manual);
        o
    };
    let (mut a, _) = TestClient::connect(member(&broker, "ingest-a")).await;
    a.subscribe("$share/ingest/devices/#", QoS::AtLeastOnce)
        .await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    for i in 0u32..5 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }
    for _ in 0..5 {
        a.next_publish(WAIT).await.expect("delivered to a");
    }
    // b joins; a crashes without acknowledging anything (clean session): its five go to b.
    let (mut b, _) = TestClient::connect(member(&broker, "ingest-b")).await;
    b.subscribe("$share/ingest/devices/#", QoS::AtLeastOnce)
        .await;
    a.kill().await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = b.next_publish(WAIT).await.expect("re-routed to b");
        got.push(payload_u32(&p));
        b.client.ack(&p).await.expect("queue ack");
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publish_is_delivered_exactly_once() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/#", QoS::ExactlyOnce).await;

    // Through rumqttc.
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    for i in 0u32..20 {
        publish(&dev, "devices/dev1/up/e", QoS::ExactlyOnce, i.to_be_bytes()).await;
    }
    for i in 0u32..20 {
        let p = svc.next_publish(WAIT).await.expect("delivered");
        assert_eq!(payload_u32(&p), i);
        assert_eq!(p.qos, QoS::AtLeastOnce, "granted QoS is at most 1");
    }

    // By hand, with a resend (DUP) before PUBREL: routed once.
    let mut raw = Raw::connect(&broker, "dev2", "dev2").await;
    let mut p = Publish::new("devices/dev2/up/e", QoS::ExactlyOnce, 1000u32.to_be_bytes());
    p.pkid = 7;
    raw.send(Packet::Publish(p.clone())).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    p.dup = true;
    raw.send(Packet::Publish(p)).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    raw.send(Packet::PubRel(PubRel::new(7))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubComp(c)) if c.pkid == 7));

    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(payload_u32(&p), 1000);
    assert!(
        svc.next_publish(QUIET).await.is_none(),
        "not delivered twice"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_qos1_messages_arrive_in_order() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;

    const N: u32 = 10_000;
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
        }
        dev
    });
    for i in 0..N {
        let p = svc
            .next_publish(WAIT)
            .await
            .unwrap_or_else(|| panic!("message {i} missing"));
        assert_eq!(payload_u32(&p), i, "out of order");
    }
    let _dev = publisher.await.expect("publisher task");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_connection_is_closed_without_affecting_others() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/#", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;

    // Garbage instead of CONNECT.
    let mut junk = Raw::open(&broker).await;
    junk.send_bytes(&[0xFF; 64]).await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // Garbage after a valid CONNECT: an invalid packet type.
    let mut junk = Raw::connect(&broker, "junk-1", "svc").await;
    junk.send_bytes(&[0xF0, 0x00]).await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // A PUBLISH with a wildcard in its topic.
    let mut junk = Raw::connect(&broker, "junk-2", "svc").await;
    junk.send_bytes(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'])
        .await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // A packet larger than max_packet_bytes.
    let mut junk = Raw::connect(&broker, "junk-3", "svc").await;
    let big = Publish::new("devices/x", QoS::AtMostOnce, vec![0u8; 70 * 1024]);
    junk.send(Packet::Publish(big)).await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // A second CONNECT.
    let mut junk = Raw::connect(&broker, "junk-4", "svc").await;
    junk.send(Packet::Connect(Connect::new("again"))).await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // Everyone else carries on.
    publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, "still fine").await;
    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(&p.payload[..], b"still fine");
    wait_stats(&broker, |s| s.connected_clients == 2).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    svc.client
        .unsubscribe("devices/+/up/#")
        .await
        .expect("queue");
    loop {
        match svc.next_event(WAIT).await {
            Some(Ok(Event::Incoming(Packet::UnsubAck(_)))) => break,
            Some(Ok(_)) => {}
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, "x").await;
    assert!(svc.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_once_with_max_qos() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/#", QoS::AtMostOnce).await;
    svc.subscribe("devices/+/up/e", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, "once").await;
    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(svc.next_publish(QUIET).await.is_none(), "delivered once");

    // `$` topics are not matched by a leading wildcard.
    let (mut all, _) = TestClient::connect(options(&broker, "all", "svc")).await;
    all.subscribe("#", QoS::AtLeastOnce).await;
    publish(&svc, "$internal/x", QoS::AtLeastOnce, "hidden").await;
    assert!(
        svc.closed(WAIT).await,
        "publishing to a $ topic is outside even a # ACL"
    );
    assert!(all.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_clients_without_wills() {
    let broker = start_broker(test_config()).await;
    assert!(broker.is_running());
    let mut o = options(&broker, "dev1", "dev1");
    o.set_last_will(LastWill::new(
        "devices/dev1/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (mut dev, _) = TestClient::connect(o).await;
    let raw = Raw::connect(&broker, "raw", "svc").await;
    let addr = broker.local_addr();
    tokio::time::timeout(WAIT, broker.shutdown())
        .await
        .expect("shutdown completes");
    assert!(dev.closed(WAIT).await);
    drop(raw);
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_sanity() {
    const PUBLISHERS: u32 = 20;
    const PER_PUBLISHER: u32 = 2_500;
    let total = (PUBLISHERS * PER_PUBLISHER) as usize;

    let broker = start_broker(test_config()).await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_inflight(1000);
    let (mut sub, _) = TestClient::connect(o).await;
    sub.subscribe("$share/ingest/load/#", QoS::AtLeastOnce)
        .await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..PUBLISHERS {
        let mut o = options(&broker, &format!("load-{n}"), "svc");
        o.set_inflight(200);
        tasks.push(tokio::spawn(async move {
            let (c, _) = TestClient::connect(o).await;
            let topic = format!("load/{n}/up");
            for _ in 0..PER_PUBLISHER {
                publish(&c, &topic, QoS::AtLeastOnce, vec![0u8; 100]).await;
            }
            c
        }));
    }
    let mut received = 0;
    while received < total {
        sub.next_publish(WAIT).await.expect("message arrives");
        received += 1;
    }
    let elapsed = started.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "throughput: {total} QoS 1 messages from {PUBLISHERS} publishers in {elapsed:?} = {:.0} msg/s",
        total as f64 / elapsed.as_secs_f64()
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribe_filters_and_stats() {
    let broker = start_broker(test_config()).await;
    let mut raw = Raw::connect(&broker, "svc-raw", "svc").await;
    let mut sub = Subscribe::new("a/+/c", QoS::AtLeastOnce);
    sub.pkid = 1;
    sub.add("a/#/c".to_owned(), QoS::AtLeastOnce); // invalid
    sub.add("$share//x".to_owned(), QoS::AtLeastOnce); // invalid
    raw.send(Packet::Subscribe(sub)).await;
    match raw.recv().await {
        Some(Packet::SubAck(ack)) => assert_eq!(
            ack.return_codes,
            [
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure,
                SubscribeReasonCode::Failure
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    let stats = broker.stats();
    assert_eq!(stats.connected_clients, 1);
    assert_eq!(stats.sessions, 1);
    broker.shutdown().await;
}

/// The takeover that once let a tenant's device read and acknowledge Homeward's own ingest
/// stream: a device connecting with the service's client id. It must be refused without
/// touching the service's session, online or offline, with or without clean_session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_belongs_to_the_principal_that_created_it() {
    let broker = start_broker(test_config()).await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(false);
    let (mut svc, _) = TestClient::connect(o.clone()).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;

    for clean in [false, true] {
        let mut intruder = options(&broker, "ingest", "dev2");
        intruder.set_clean_session(clean);
        let mut c = TestClient::start(intruder);
        let err = c.connack().await.expect_err("another principal is refused");
        assert!(
            err.contains("NotAuthorized"),
            "clean_session={clean}: {err}"
        );
    }
    for n in 0u32..10 {
        publish(
            &dev1,
            "devices/dev1/up/x",
            QoS::AtLeastOnce,
            n.to_be_bytes(),
        )
        .await;
    }
    for n in 0u32..10 {
        let p = svc
            .next_publish(WAIT)
            .await
            .expect("the owner keeps receiving");
        assert_eq!(payload_u32(&p), n);
    }

    // Offline, the session still belongs to the service: an intruder neither resumes nor
    // discards it, and the service gets what was queued meanwhile.
    wait_stats(&broker, |s| s.inflight_messages == 0).await;
    svc.kill().await;
    wait_stats(&broker, |s| s.connected_clients == 1).await;
    for n in 10u32..15 {
        publish(
            &dev1,
            "devices/dev1/up/x",
            QoS::AtLeastOnce,
            n.to_be_bytes(),
        )
        .await;
    }
    wait_stats(&broker, |s| s.queued_messages == 5).await;
    for clean in [false, true] {
        let mut intruder = options(&broker, "ingest", "dev2");
        intruder.set_clean_session(clean);
        let mut c = TestClient::start(intruder);
        let err = c.connack().await.expect_err("refused while offline too");
        assert!(
            err.contains("NotAuthorized"),
            "clean_session={clean}: {err}"
        );
    }
    assert_eq!(
        broker.stats().queued_messages,
        5,
        "the refused CONNECT changed nothing"
    );
    let (mut svc, ack) = TestClient::connect(o).await;
    assert!(ack.session_present, "the service's session survived");
    for n in 10u32..15 {
        let p = svc
            .next_publish(WAIT)
            .await
            .expect("queued message delivered");
        assert_eq!(payload_u32(&p), n);
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_keeps_only_the_subscriptions_its_acl_allows_now() {
    let broker = start_broker(test_config()).await;
    let mut o = options(&broker, "narrowing", "svc");
    o.set_clean_session(false);
    let (mut svc, _) = TestClient::connect(o).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;
    svc.disconnect().await;

    let mut o = options(&broker, "narrowing", "svc-narrow");
    o.set_clean_session(false);
    let (mut narrow, ack) = TestClient::connect(o).await;
    assert!(ack.session_present);
    let (dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(
        &dev1,
        "devices/dev1/up/x",
        QoS::AtLeastOnce,
        1u32.to_be_bytes(),
    )
    .await;
    publish(
        &dev1,
        "devices/dev1/status",
        QoS::AtLeastOnce,
        2u32.to_be_bytes(),
    )
    .await;
    let p = narrow.next_publish(WAIT).await.expect("status delivered");
    assert_eq!(&p.topic[..], b"devices/dev1/status");
    assert!(
        narrow.next_publish(QUIET).await.is_none(),
        "the withdrawn subscription delivers nothing"
    );
    broker.shutdown().await;
}

// Flow control: one device must not exhaust memory or crowd out the others.

/// A device flooding as fast as it can is paced at its rate (delayed, nothing lost), while
/// another device's messages go through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_delays_a_flooding_device_while_another_flows() {
    const FLOOD: u32 = 2100;
    let broker = start_broker(BrokerConfig {
        device_max_messages_per_sec: 500,
        device_max_bytes_per_sec: 0,
        device_burst: Duration::from_millis(200), // 100 messages
        ..test_config()
    })
    .await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (flooder, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let (other, _) = TestClient::connect(options(&broker, "dev2", "dev2")).await;

    let started = Instant::now();
    let flood = tokio::spawn(async move {
        for i in 0..FLOOD {
            publish(
                &flooder,
                "devices/dev1/up/e",
                QoS::AtLeastOnce,
                i.to_be_bytes(),
            )
            .await;
        }
        flooder
    });
    let steady = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0u32..10 {
            publish(
                &other,
                "devices/dev2/up/e",
                QoS::AtLeastOnce,
                i.to_be_bytes(),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        other
    });

    let (mut flooded, mut flood_done, mut other_done) = (0u32, None, None);
    let mut other_got = Vec::new();
    while flood_done.is_none() || other_done.is_none() {
        let p = svc
            .next_publish(WAIT)
            .await
            .expect("messages keep arriving");
        if p.topic.starts_with(b"devices/dev1/") {
            assert_eq!(
                payload_u32(&p),
                flooded,
                "the flood arrives in order, complete"
            );
            flooded += 1;
            if flooded == FLOOD {
                flood_done = Some(started.elapsed());
            }
        } else {
            other_got.push(payload_u32(&p));
            if other_got.len() == 10 {
                other_done = Some(started.elapsed());
            }
        }
    }
    let (flood_done, other_done) = (flood_done.unwrap(), other_done.unwrap());
    assert_eq!(other_got, (0u32..10).collect::<Vec<_>>());
    // 2000 messages beyond the burst at 500/s: about 4 s.
    assert!(
        flood_done >= Duration::from_secs(3),
        "flood not paced: {flood_done:?}"
    );
    // The other device's ten messages went out over 1.3 s and were not held up.
    assert!(
        other_done < Duration::from_millis(2500),
        "the other device waited: {other_done:?} (flood {flood_done:?})"
    );
    let _ = flood.await;
    let _ = steady.await;
    broker.shutdown().await;
}

/// The byte rate paces a device sending few, large messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_rate_paces_large_messages() {
    let broker = start_broker(BrokerConfig {
        device_max_messages_per_sec: 0,
        device_max_bytes_per_sec: 100 * 1024,
        device_burst: Duration::from_millis(100), // 10 KiB
        ..test_config()
    })
    .await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let started = Instant::now();
    for i in 0u32..20 {
        let mut p = i.to_be_bytes().to_vec();
        p.resize(10 * 1024, 0);
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, p).await;
    }
    for i in 0u32..20 {
        let p = svc.next_publish(WAIT).await.expect("delivered, late");
        assert_eq!(payload_u32(&p), i);
    }
    // 200 KiB beyond a 10 KiB burst at 100 KiB/s: about 1.9 s.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    broker.shutdown().await;
}

/// Homeward's own service principal is never rate limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_principal_is_not_rate_limited() {
    let broker = start_broker(BrokerConfig {
        device_max_messages_per_sec: 10,
        device_max_bytes_per_sec: 100,
        device_burst: Duration::from_secs(1),
        ..test_config()
    })
    .await;
    let (mut sub, _) = TestClient::connect(options(&broker, "ingest", "svc")).await;
    sub.subscribe("devices/+/down/#", QoS::AtLeastOnce).await;
    let (publisher, _) = TestClient::connect(options(&broker, "downlink", "svc")).await;
    let started = Instant::now();
    for i in 0u32..1000 {
        publish(
            &publisher,
            "devices/dev1/down/ack",
            QoS::AtLeastOnce,
            i.to_be_bytes(),
        )
        .await;
    }
    for i in 0u32..1000 {
        let p = sub.next_publish(WAIT).await.expect("delivered");
        assert_eq!(payload_u32(&p), i);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    broker.shutdown().await;
}

/// Session queues are bounded in bytes as well as in messages: old QoS 0 messages make room
/// first, then new messages are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_queue_is_bounded_in_bytes() {
    // Each message below counts 17 (topic) + 1024 (payload) + 8 = 1049 bytes: nine fit.
    let broker = start_broker(BrokerConfig {
        max_queued_bytes: 10_000,
        ..test_config()
    })
    .await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(false);
    let (mut sub, _) = TestClient::connect(o.clone()).await;
    sub.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let payload = |n: u32| {
        let mut p = n.to_be_bytes().to_vec();
        p.resize(1024, 0);
        p
    };
    for n in 100u32..105 {
        publish(&dev, "devices/dev1/up/e", QoS::AtMostOnce, payload(n)).await;
    }
    for n in 0u32..12 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, payload(n)).await;
    }
    wait_stats(&broker, |s| {
        s.queued_messages == 9 && s.queued_bytes == 9 * 1049
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = broker.stats();
    assert_eq!((stats.queued_messages, stats.queued_bytes), (9, 9 * 1049));

    // The five QoS 0 messages made room for QoS 1 ones; then the newest were dropped.
    let (mut sub, _) = TestClient::connect(o).await;
    let mut got = Vec::new();
    while let Some(p) = sub.next_publish(QUIET).await {
        got.push(payload_u32(&p));
    }
    assert_eq!(got, (0u32..9).collect::<Vec<_>>());
    wait_stats(&broker, |s| s.queued_bytes == 0).await;
    broker.shutdown().await;
}

/// Past `max_connections` devices are refused with "server unavailable"; Homeward's own
/// clients are still let in; a freed place can be taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_devices_with_server_unavailable() {
    let broker = start_broker(BrokerConfig {
        max_connections: 2,
        ..test_config()
    })
    .await;
    let (_svc, _) = TestClient::connect(options(&broker, "ingest", "svc")).await;
    let (dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let (_dev2, _) = TestClient::connect(options(&broker, "dev2", "dev2")).await;

    let mut dev3 = TestClient::start(options(&broker, "dev3", "dev3"));
    let err = dev3.connack().await.expect_err("refused");
    assert!(err.contains("ServiceUnavailable"), "{err}");
    let (_svc2, _) = TestClient::connect(options(&broker, "downlink", "svc")).await;
    wait_stats(&broker, |s| s.connected_clients == 4).await;

    dev1.kill().await;
    wait_stats(&broker, |s| s.connected_clients == 3).await;
    let (_dev3, ack) = TestClient::connect(options(&broker, "dev3", "dev3")).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    broker.shutdown().await;
}

/// Sockets that have not sent CONNECT count too: past the cap plus its headroom (64 here) a
/// new one is closed at once, long before the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_past_the_hard_cap_are_closed_at_once() {
    let broker = start_broker(BrokerConfig {
        max_connections: 0,
        connect_timeout: Duration::from_secs(5),
        ..test_config()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(Raw::open(&broker).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = Raw::open(&broker).await;
    assert!(extra.closed_within(Duration::from_secs(1)).await);
    // One of the 64 going away makes room again.
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Raw::open(&broker).await;
    assert!(!again.closed_within(Duration::from_millis(500)).await);
    broker.shutdown().await;
}

/// A device may hold at most `max_subscriptions_per_client` subscriptions, shared ones
/// included; renewing one it holds is not a new one. The service is not capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_cap_gives_suback_failure() {
    let broker = start_broker(BrokerConfig {
        max_subscriptions_per_client: 2,
        ..test_config()
    })
    .await;
    let (mut dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
    assert_eq!(
        dev.subscribe("devices/dev1/down/a", QoS::AtLeastOnce)
            .await
            .return_codes,
        [ok]
    );
    assert_eq!(
        dev.subscribe("$share/g/devices/dev1/down/b", QoS::AtLeastOnce)
            .await
            .return_codes,
        [ok]
    );
    assert_eq!(
        dev.subscribe("devices/dev1/down/c", QoS::AtLeastOnce)
            .await
            .return_codes,
        [SubscribeReasonCode::Failure]
    );
    assert_eq!(
        dev.subscribe("$share/h/devices/dev1/down/b", QoS::AtLeastOnce)
            .await
            .return_codes,
        [SubscribeReasonCode::Failure]
    );
    // Renewing a held subscription is allowed.
    assert_eq!(
        dev.subscribe("devices/dev1/down/a", QoS::AtMostOnce)
            .await
            .return_codes,
        [SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    // Giving one up frees its place.
    dev.client
        .unsubscribe("devices/dev1/down/a")
        .await
        .expect("queue unsubscribe");
    assert_eq!(
        dev.subscribe("devices/dev1/down/c", QoS::AtLeastOnce)
            .await
            .return_codes,
        [ok]
    );

    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    for f in ["a/1", "a/2", "a/3", "$share/g/a/4"] {
        assert_eq!(svc.subscribe(f, QoS::AtLeastOnce).await.return_codes, [ok]);
    }
    broker.shutdown().await;
}

/// `keep_alive = 0` does not mean "never idle out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_zero_still_gets_the_idle_timeout() {
    let broker = start_broker(BrokerConfig {
        idle_timeout: Duration::from_secs(1),
        ..test_config()
    })
    .await;
    let mut raw = Raw::open(&broker).await;
    let mut connect = Connect::new("quiet-hub");
    connect.set_credentials("dev1", "dev1-secret");
    connect.keep_alive = 0;
    raw.send(Packet::Connect(connect)).await;
    assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    // A packet resets the timer...
    tokio::time::sleep(Duration::from_millis(700)).await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
    // ...then silence: closed after the idle timeout.
    let started = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(4)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    broker.shutdown().await;
}

/// A connection that never completes CONNECT (here: half a CONNECT, then nothing) is closed
/// after `connect_timeout`, which defaults to 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_connect_is_closed_after_the_connect_timeout() {
    assert_eq!(
        BrokerConfig::default().connect_timeout,
        Duration::from_secs(10)
    );
    let broker = start_broker(BrokerConfig {
        connect_timeout: Duration::from_secs(1),
        ..test_config()
    })
    .await;
    let mut out = BytesMut::new();
    let mut connect = Connect::new("slowloris");
    connect.set_credentials("dev1", "dev1-secret");
    Packet::Connect(connect)
        .write(&mut out, usize::MAX)
        .expect("encode");
    let mut raw = Raw::open(&broker).await;
    let started = Instant::now();
    raw.send_bytes(&out[..out.len() / 2]).await;
    assert!(raw.closed_within(Duration::from_secs(4)).await);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    // Nothing was left behind.
    wait_stats(&broker, |s| s.connected_clients == 0 && s.sessions == 0).await;
    broker.shutdown().await;
}

/// Revocation closes the connections it concerns and no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_principals_lose_their_connections_and_only_they() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (mut dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let (mut dev2, _) = TestClient::connect(options(&broker, "dev2", "dev2")).await;
    let control = broker.control();

    let dev1_id = Principal::Device {
        id: "dev1".to_owned(),
    };
    assert_eq!(control.close_principal(&dev1_id), 1);
    assert!(dev1.closed(WAIT).await, "dev1 is closed");
    publish(
        &dev2,
        "devices/dev2/up/x",
        QoS::AtLeastOnce,
        1u32.to_be_bytes(),
    )
    .await;
    let p = svc
        .next_publish(WAIT)
        .await
        .expect("dev2 and the service carry on");
    assert_eq!(payload_u32(&p), 1);

    // Every device, never the service.
    assert_eq!(control.close_all_devices(), 1);
    assert!(dev2.closed(WAIT).await, "dev2 is closed");
    let (dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(
        &dev1,
        "devices/dev1/up/x",
        QoS::AtLeastOnce,
        2u32.to_be_bytes(),
    )
    .await;
    let p = svc
        .next_publish(WAIT)
        .await
        .expect("the service stays connected");
    assert_eq!(payload_u32(&p), 2);
    broker.shutdown().await;
}
