//! MQTT clients as Homeward's devices are, on rumqttc (MQTT 3.1.1), for the embedded broker
//! and for Mosquitto alike. A device's user name and client id are its uid, its password its
//! secret; it publishes to `homeward/v1/<uid>/events` and hears Homeward on
//! `homeward/v1/<uid>/downlink` (end-to-end acks and notices).
//!
//! - [`options`] and [`connect`]: a bare client, for tests about the connection itself.
//! - [`publish_and_wait`]: raw payloads, until the broker's PUBACKs (not Homeward's acks).
//! - [`TestDevice`]: a telecare device that numbers its events and hears its downlink.
//! - [`run_device`]: a store-and-forward device that resends until Homeward's end-to-end
//!   acknowledgement covers each event, across broker and server restarts.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use homeward_proto::topic::TopicKind;
use homeward_proto::{Downlink, Encoding, Event, EventBody, Notice, Percent, SignalDbm};
use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, MqttOptions, Packet,
    PublishOptions, QoS,
};
use tokio::sync::mpsc;

use crate::TestApp;

/// How long a device waits for the broker or for Homeward before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A device's topic of this kind, for any uid (the wire format's own functions take only valid
/// device ids; a test may need another).
pub fn topic(uid: &str, kind: TopicKind) -> String {
    format!("{}{uid}/{}", homeward_proto::topic::PREFIX, kind.as_str())
}

pub fn events_topic(uid: &str) -> String {
    topic(uid, TopicKind::Events)
}

pub fn downlink_topic(uid: &str) -> String {
    topic(uid, TopicKind::Downlink)
}

pub fn status_topic(uid: &str) -> String {
    topic(uid, TopicKind::Status)
}

/// Options for a client of the application's broker: this client id, user and password, a
/// 5 s keep-alive.
pub fn options(app: &TestApp, client_id: &str, user: &str, password: &str) -> MqttOptions {
    options_at(&app.mqtt.host, app.mqtt.port, client_id, user, password)
}

/// [`options`] for the broker at `host:port` (another broker than the application's).
pub fn options_at(
    host: &str,
    port: u16,
    client_id: &str,
    user: &str,
    password: &str,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, (host, port));
    options
        .set_credentials(user, password.to_string())
        .set_keep_alive(5);
    options
}

/// Options for a device: its uid as client id and user, its secret as password.
pub fn device_options(app: &TestApp, uid: &str, secret: &str) -> MqttOptions {
    options(app, uid, uid, secret)
}

/// Connects and polls until CONNACK; returns the error if the connection is refused or drops.
/// Fails the test if the broker does not answer within 10 s.
pub async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(100).build();
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("the broker answers")?
        {
            MqttEvent::Incoming(Packet::ConnAck(_)) => return Ok((client, eventloop)),
            _ => continue,
        }
    }
}

/// Publishes each payload (QoS 1) on the device's events topic and waits until the broker has
/// acknowledged every one (PUBACK; not Homeward's end-to-end ack), for up to 20 s.
pub async fn publish_and_wait(app: &TestApp, uid: &str, secret: &str, payloads: Vec<Vec<u8>>) {
    let mut options = device_options(app, uid, secret);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(100).build();
    let n = payloads.len();
    for p in payloads {
        client
            .publish(events_topic(uid), p, PublishOptions::new(QoS::AtLeastOnce))
            .await
            .expect("the client queues the publish");
    }
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked < n && Instant::now() < deadline {
        if let Ok(Ok(MqttEvent::Incoming(Packet::PubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await
        {
            acked += 1;
        }
    }
    assert_eq!(acked, n, "every message acknowledged by the broker");
}

/// [`publish_and_wait`] for JSON events.
pub async fn publish_json(app: &TestApp, uid: &str, secret: &str, events: Vec<serde_json::Value>) {
    let payloads = events
        .iter()
        .map(|e| serde_json::to_vec(e).expect("JSON"))
        .collect();
    publish_and_wait(app, uid, secret, payloads).await;
}

/// A heartbeat body with this battery level, a -70 dBm signal and this reporting interval.
pub fn heartbeat_body(battery: u8, interval_s: Option<u32>) -> EventBody {
    EventBody::Heartbeat {
        battery: Percent::new(battery).expect("a percentage"),
        signal: SignalDbm::new(-70).expect("a signal level"),
        interval_s,
    }
}

/// A heartbeat event, byte-identical for the same (seq, time): battery `seq % 100`, a 900 s
/// interval.
pub fn heartbeat(seq: u64, time_ms: i64, encoding: Encoding) -> Vec<u8> {
    let body = heartbeat_body((seq % 100) as u8, Some(900));
    homeward_proto::encode_event_vec(
        &Event::new(seq, time_ms, body).expect("a valid event"),
        encoding,
    )
}

/// A device connected to a broker: it numbers its events from 1, publishes them as JSON with
/// QoS 1, and collects what Homeward sends on its downlink, each message stamped with the time
/// it arrived.
pub struct TestDevice {
    uid: String,
    client: AsyncClient,
    downlink: mpsc::UnboundedReceiver<(Downlink, tokio::time::Instant)>,
    poller: tokio::task::JoinHandle<()>,
    seq: u64,
}

impl TestDevice {
    /// Connects to the application's broker as a telecare device does: a retained "offline"
    /// last will, subscribed to its downlink (returns once the SUBACK is in), then a retained
    /// "online" status.
    pub async fn connect(app: &TestApp, uid: &str, secret: &str) -> TestDevice {
        let mut options = device_options(app, uid, secret);
        options.set_last_will(rumqttc::LastWill::new(
            status_topic(uid),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        let device = Self::start(options, uid).await;
        device
            .client
            .publish(
                status_topic(uid),
                "online",
                PublishOptions::new(QoS::AtLeastOnce).retain(true),
            )
            .await
            .expect("the client queues the status");
        device
    }

    /// Connects to the application's broker without presence (no last will, no status): a
    /// device that only publishes events and hears its downlink.
    pub async fn connect_quietly(app: &TestApp, uid: &str, secret: &str) -> TestDevice {
        Self::start(device_options(app, uid, secret), uid).await
    }

    /// Connects without credentials or presence to another broker (an anonymous one, such as
    /// the tests' Mosquitto that Homeward instances share).
    pub async fn connect_anonymously(host: &str, port: u16, uid: &str) -> TestDevice {
        let mut options = MqttOptions::new(uid, (host, port));
        options.set_keep_alive(5);
        Self::start(options, uid).await
    }

    async fn start(options: MqttOptions, uid: &str) -> TestDevice {
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(100).build();
        let (tx, downlink) = mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let sub = client.clone();
        let topic = downlink_topic(uid);
        let poller = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let at = tokio::time::Instant::now();
                        if let Ok(d) = homeward_proto::decode_downlink(&p.payload) {
                            let _ = tx.send((d, at));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, ready)
            .await
            .expect("device subscribed in time")
            .expect("the device's client runs");
        TestDevice {
            uid: uid.to_string(),
            client,
            downlink,
            poller,
            seq: 0,
        }
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Publishes an event that happened `ago_ms` before now, with the next seq; returns it.
    pub async fn send_at(&mut self, body: EventBody, ago_ms: i64) -> u64 {
        self.seq += 1;
        let t = chrono::Utc::now().timestamp_millis() - ago_ms;
        self.publish(&Event::new(self.seq, t, body).expect("a valid event"))
            .await;
        self.seq
    }

    /// Publishes an event that happens now, with the next seq; returns it.
    pub async fn send(&mut self, body: EventBody) -> u64 {
        self.send_at(body, 0).await
    }

    /// Publishes `event` as it is (its own seq and time), as JSON.
    pub async fn publish(&self, event: &Event) {
        self.publish_raw(homeward_proto::encode_event_vec(event, Encoding::Json))
            .await;
    }

    /// Publishes bytes as they are on the device's events topic (QoS 1): a batch, or a payload
    /// Homeward must refuse.
    pub async fn publish_raw(&self, payload: Vec<u8>) {
        self.client
            .publish(
                events_topic(&self.uid),
                payload,
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .expect("the client queues the event");
    }

    /// The next notice on the downlink (acks before it are skipped); fails after 10 s.
    pub async fn notice(&mut self) -> Notice {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.downlink.recv().await {
                    Some((Downlink::Notice(n), _)) => return n,
                    Some(_) => continue,
                    None => panic!("notice channel open"),
                }
            }
        })
        .await
        .expect("a notice in time")
    }

    /// The ranges of the next end-to-end ack, if one comes within `within` (notices before it
    /// are skipped).
    pub async fn next_ack(&mut self, within: Duration) -> Option<Vec<RangeInclusive<u64>>> {
        Some(self.next_ack_at(within).await?.0)
    }

    /// [`Self::next_ack`] with the time the ack arrived.
    async fn next_ack_at(
        &mut self,
        within: Duration,
    ) -> Option<(Vec<RangeInclusive<u64>>, tokio::time::Instant)> {
        let ack = async {
            while let Some((d, at)) = self.downlink.recv().await {
                if let Downlink::Ack(ranges) = d {
                    return Some((ranges.iter().collect(), at));
                }
            }
            None
        };
        tokio::time::timeout(within, ack).await.ok().flatten()
    }

    /// Waits, up to `within`, for an end-to-end ack that covers `seq` (notices and other acks
    /// before it are skipped); returns the time that ack arrived.
    pub async fn acked(&mut self, seq: u64, within: Duration) -> tokio::time::Instant {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_ack_at(left).await {
                Some((ranges, at)) if ranges.iter().any(|r| r.contains(&seq)) => return at,
                Some(_) => continue,
                None => panic!("{} {seq} was never acknowledged", self.uid),
            }
        }
    }
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// How long [`run_device`] waits for an end-to-end acknowledgement before it resends an event.
pub const RESEND_AFTER: Duration = Duration::from_secs(3);

/// What a [`run_device`] run did.
pub struct DeviceRun {
    pub sent: u64,
    pub resends: u64,
    /// Seqs never acknowledged end to end.
    pub unacked: Vec<u64>,
}

/// Where a store-and-forward device connects and what it sends.
#[derive(Clone, Debug)]
pub struct DeviceRunSpec {
    pub host: String,
    pub port: u16,
    pub uid: String,
    /// (user, password); `None` for an anonymous broker.
    pub auth: Option<(String, String)>,
    /// Event `seq` happens at `base_ms + seq`.
    pub base_ms: i64,
    /// Events seq 1..=count, odd seqs JSON, even CBOR.
    pub count: u64,
    /// About this many a second.
    pub rate: u64,
    /// It stops resending after this long.
    pub deadline: Duration,
}

impl DeviceRunSpec {
    /// A device of the application's broker with its own credentials.
    pub fn on(app: &TestApp, uid: &str, secret: &str, base_ms: i64) -> Self {
        DeviceRunSpec {
            host: app.mqtt.host.clone(),
            port: app.mqtt.port,
            uid: uid.to_string(),
            auth: Some((uid.to_string(), secret.to_string())),
            base_ms,
            count: 0,
            rate: 1,
            deadline: Duration::from_secs(60),
        }
    }

    /// `count` events at about `rate` a second, resent until `deadline`.
    pub fn sending(mut self, count: u64, rate: u64, deadline: Duration) -> Self {
        self.count = count;
        self.rate = rate;
        self.deadline = deadline;
        self
    }
}

/// A store-and-forward device, as devices work: it publishes heartbeats seq 1..=count at about
/// `rate` per second, keeps each until Homeward's end-to-end acknowledgement covers it, and
/// resends after [`RESEND_AFTER`], until every one is acknowledged or the deadline passes.
pub async fn run_device(spec: DeviceRunSpec) -> DeviceRun {
    let DeviceRunSpec {
        host,
        port,
        uid,
        auth,
        base_ms,
        count,
        rate,
        deadline,
    } = spec;
    let mut options = MqttOptions::new(uid.clone(), (host, port));
    if let Some((user, password)) = auth {
        options.set_credentials(user, password);
    }
    options.set_keep_alive(5).set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(10_000).build();
    let downlink = downlink_topic(&uid);
    let events = events_topic(&uid);
    let (acks_tx, mut acks) = mpsc::unbounded_channel::<Vec<RangeInclusive<u64>>>();
    let sub_client = client.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    let _ = sub_client.try_subscribe(downlink.clone(), QoS::AtLeastOnce);
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    if let Ok(Downlink::Ack(ranges)) = homeward_proto::decode_downlink(&p.payload) {
                        let _ = acks_tx.send(ranges.iter().collect());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });

    let start = Instant::now();
    // seq -> (payload, last sent)
    let mut pending: BTreeMap<u64, (Vec<u8>, Instant)> = BTreeMap::new();
    let mut next = 1u64;
    let mut resends = 0u64;
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut tick = tokio::time::interval(interval);
    while start.elapsed() < deadline && (next <= count || !pending.is_empty()) {
        tokio::select! {
            _ = tick.tick() => {
                if next <= count {
                    let encoding = if next.is_multiple_of(2) { Encoding::Cbor } else { Encoding::Json };
                    let payload = heartbeat(next, base_ms + next as i64, encoding);
                    // A failed queueing counts as sent: the resend timer covers it.
                    let _ = client.try_publish(events.clone(), payload.clone(), PublishOptions::new(QoS::AtLeastOnce));
                    pending.insert(next, (payload, Instant::now()));
                    next += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let now = Instant::now();
                let due: Vec<u64> = pending
                    .iter()
                    .filter(|(_, (_, sent))| now.duration_since(*sent) > RESEND_AFTER)
                    .map(|(s, _)| *s)
                    .take(200)
                    .collect();
                for seq in due {
                    let Some(entry) = pending.get_mut(&seq) else { continue };
                    let _ = client.try_publish(events.clone(), entry.0.clone(), PublishOptions::new(QoS::AtLeastOnce));
                    entry.1 = now;
                    resends += 1;
                }
            }
            Some(ranges) = acks.recv() => {
                for range in ranges {
                    let covered: Vec<u64> = pending.range(range).map(|(s, _)| *s).collect();
                    for seq in covered {
                        pending.remove(&seq);
                    }
                }
            }
        }
    }
    poller.abort();
    DeviceRun {
        sent: next - 1,
        resends,
        unacked: pending.keys().copied().collect(),
    }
}
