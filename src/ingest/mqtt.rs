//! The MQTT subscriber: a persistent session (fixed client id, `clean_session = false`), QoS 1,
//! manual acknowledgements sent only after the batch holding a message has committed.
//!
//! Three pieces, so the event loop is never blocked:
//! - the poll task only polls rumqttc's event loop and forwards publishes over a bounded
//!   channel (subscribes with `try_subscribe`); on an error it waits with back-off and polls
//!   again, which reconnects. QoS 1 messages are bounded by the broker's inflight window (the
//!   embedded broker's is smaller than the channel); past the channel's capacity (a broker with
//!   an unlimited window) the poll task waits for room, so the broker keeps the rest and
//!   nothing is lost. QoS 0 messages may take at most [`QOS0_CAPACITY`] places; one that finds
//!   them taken is dropped and counted (`homeward_mqtt_qos0_dropped_total`): it carries no
//!   promise, and must not crowd out QoS 1;
//! - the processor decodes, validates and resolves the device, and hands jobs to the writer;
//! - [`MqttAcker`] acks from the writer, once per commit, with `try_manual_ack` (never waiting
//!   on rumqttc's channel, which blocks forever once full while the broker is gone) and
//!   publishes the end-to-end acks. The in-process front end (`super::local`) shares
//!   [`message_job`] and this acker, whose acks and downlinks then go to the embedded broker
//!   directly.
//!
//! Every (re)connection starts a new epoch. An ack for a message received in an earlier epoch
//! is never sent: the broker redelivers that message and the database stores it once. Checking
//! the epoch when an ack is queued is not enough, because rumqttc sends queued requests later,
//! possibly on the next connection (whose packet ids mean other messages; rumqttc itself then
//! drops the connection with "Unsolicited puback request"). So the check and the queueing
//! happen under an [`AckGate`] that the poll task closes as soon as `poll()` reports the
//! connection lost, and after closing it the poll task has rumqttc discard every ack still
//! queued (`EventLoop::clean`, which drops queued PUBACKs). An ack of epoch N therefore either
//! leaves on connection N or not at all.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use homeward_proto::topic::{self, TopicKind};
use homeward_proto::{AckRanges, Batch, DeviceId, Downlink, Encoding, Event};
use rumqttc::{
    AckMode, AsyncClient, Event as MqttEvent, ManualAck, MqttOptions, Packet, PublishOptions, QoS,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::copy::EventRow;
use super::writer::{Acker, WriterHandle};
use super::{BrokerAck, DeadLetter, EventItem, Item, Job, Source, StatusItem};
use crate::broker::LocalBroker;
use crate::config::{BrokerUrl, IngestSettings, MqttSettings};
use crate::devices::{DeviceDirectory, DeviceRef, Lookup};

/// Whether the subscriber is connected; `/readyz` reads it.
#[derive(Clone, Default)]
pub struct Connected(Arc<AtomicBool>);

impl Connected {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(super) fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::SeqCst);
    }
}

/// TLS to an `mqtts://` broker, verified against the roots in `tls` and the host name of the
/// URL.
fn set_tls(options: &mut MqttOptions, tls: Option<&Arc<rustls::ClientConfig>>) {
    if let Some(config) = tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config.clone()),
        ));
    }
}

pub struct Subscriber {
    pub connected: Connected,
    pub acker: Arc<MqttAcker>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts the subscriber, connecting to `endpoint`, over TLS with `tls` when given (an
/// `mqtts://` broker). `shutdown` stops it (after the writer has drained).
pub fn start(
    endpoint: &BrokerUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    mqtt: &MqttSettings,
    ingest: &IngestSettings,
    directory: Arc<DeviceDirectory>,
    writer: WriterHandle,
    shutdown: watch::Receiver<bool>,
) -> Subscriber {
    let mut options = MqttOptions::new(
        mqtt.client_id.clone(),
        (endpoint.host.clone(), endpoint.port),
    );
    if let Some(user) = &endpoint.username {
        let password = endpoint
            .password
            .as_ref()
            .map(|p| p.expose().clone())
            .unwrap_or_default();
        options.set_credentials(user.clone(), password);
    }
    set_tls(&mut options, tls.as_ref());
    options
        .set_keep_alive(30)
        .set_clean_session(false)
        .set_ack_mode(AckMode::Manual)
        .set_inflight(INFLIGHT)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_request_channel_capacity(REQUEST_CAPACITY)
        .set_max_request_batch(REQUEST_BATCH);
    let (client, eventloop) = AsyncClient::builder(options)
        .capacity(REQUEST_CAPACITY)
        .build();
    let gate = Arc::new(AckGate::default());
    let connected = Connected::default();
    let filters: Vec<String> = [topic::EVENTS_FILTER, topic::STATUS_FILTER]
        .iter()
        .map(|f| match &mqtt.shared_group {
            Some(group) => format!("$share/{group}/{f}"),
            None => f.to_string(),
        })
        .collect();
    let (tx, rx) = mpsc::channel(PROCESS_CAPACITY);
    let depth = Arc::new(AtomicUsize::new(0));
    let qos0_depth = Arc::new(AtomicUsize::new(0));
    let shutdown_down = shutdown.clone();
    let poll = tokio::spawn(poll_loop(
        eventloop,
        client.clone(),
        filters,
        gate.clone(),
        connected.clone(),
        tx,
        depth.clone(),
        qos0_depth.clone(),
        shutdown,
    ));
    let processor = tokio::spawn(process_loop(
        rx,
        depth,
        qos0_depth,
        directory,
        writer,
        ingest.clone(),
    ));

    // Downlinks (end-to-end acks, notices) go out on a connection of their own, so that a
    // burst of them, or a slow broker on that side, never queues in front of the PUBACKs the
    // ingest connection owes the broker.
    let mut down_options = MqttOptions::new(
        format!("{}-downlink", mqtt.client_id),
        (endpoint.host.clone(), endpoint.port),
    );
    if let Some(user) = &endpoint.username {
        let password = endpoint
            .password
            .as_ref()
            .map(|p| p.expose().clone())
            .unwrap_or_default();
        down_options.set_credentials(user.clone(), password);
    }
    set_tls(&mut down_options, tls.as_ref());
    down_options
        .set_keep_alive(30)
        .set_clean_session(true)
        .set_inflight(1000)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_request_channel_capacity(REQUEST_CAPACITY)
        .set_max_request_batch(REQUEST_BATCH);
    let (downlink, down_loop) = AsyncClient::builder(down_options)
        .capacity(REQUEST_CAPACITY)
        .build();
    let down_task = tokio::spawn(downlink_loop(down_loop, downlink.clone(), shutdown_down));
    let acker = Arc::new(MqttAcker {
        acks: AckPath::Client { client, gate },
        downlink: DownlinkPath::Client(downlink),
    });
    Subscriber {
        connected,
        acker,
        tasks: vec![poll, processor, down_task],
    }
}

/// Polls the downlink connection; it only publishes, so there is nothing to forward.
async fn downlink_loop(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = shutdown.changed() => break,
        };
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => backoff = Duration::from_millis(100),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "downlink connection lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }
}

/// rumqttc's request channel: acks and downlinks for at least a full inflight window.
const REQUEST_CAPACITY: usize = 50_000;
/// Requests (acks, downlinks) the client's event loop takes from its channel before it writes to
/// the socket: a commit's acks go out in a few writes, not in a write each (rumqttc's default
/// is one request per write, a system call per PUBACK).
const REQUEST_BATCH: usize = 1024;
/// QoS 1 messages the subscriber may have published and not had acknowledged (downlinks go on
/// their own connection; this is the ingest connection's own window).
const INFLIGHT: u16 = 1000;
/// Messages between the poll task and the processor: more than the embedded broker's inflight
/// window (10,000), so that with it the poll task never waits.
const PROCESS_CAPACITY: usize = 16 * 1024;
/// Of those, at most this many QoS 0 messages.
const QOS0_CAPACITY: usize = 1024;

#[allow(clippy::too_many_arguments)]
async fn poll_loop(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    gate: Arc<AckGate>,
    connected: Connected,
    tx: mpsc::Sender<(rumqttc::Publish, u64)>,
    depth: Arc<AtomicUsize>,
    qos0_depth: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = shutdown.changed() => break,
        };
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                let now = gate.open();
                connected.0.store(true, Ordering::SeqCst);
                backoff = Duration::from_millis(100);
                tracing::info!(
                    epoch = now,
                    session_present = ack.session_present,
                    "MQTT subscriber connected"
                );
                for filter in &filters {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, filter, "cannot queue the subscription");
                    }
                }
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    tracing::error!(?ack, "the broker refused a subscription");
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                let current = gate.epoch();
                if publish.qos == QoS::AtMostOnce {
                    if qos0_depth.load(Ordering::Relaxed) >= QOS0_CAPACITY {
                        metrics::counter!("homeward_mqtt_qos0_dropped_total").increment(1);
                        continue;
                    }
                    qos0_depth.fetch_add(1, Ordering::Relaxed);
                }
                depth.fetch_add(1, Ordering::Relaxed);
                match tx.try_send((publish, current)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                    Err(mpsc::error::TrySendError::Full(item)) => {
                        // Backpressure: stop polling (so stop reading from the broker) until
                        // the processor has room.
                        let sent = tokio::select! {
                            r = tx.send(item) => r.is_ok(),
                            _ = shutdown.changed() => false,
                        };
                        if !sent {
                            break;
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                // No ack of this connection may be queued from now on, and those queued
                // before are dropped, so none can go out on the next connection.
                gate.close();
                eventloop.clean();
                if connected.0.swap(false, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "MQTT subscriber disconnected; reconnecting");
                } else {
                    tracing::debug!(error = %e, "MQTT connection attempt failed");
                }
                metrics::counter!("homeward_mqtt_reconnects_total").increment(1);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    // Leave politely; whatever was not acked is redelivered (or resent by the device).
    connected.0.store(false, Ordering::SeqCst);
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }
}

async fn process_loop(
    mut rx: mpsc::Receiver<(rumqttc::Publish, u64)>,
    depth: Arc<AtomicUsize>,
    qos0_depth: Arc<AtomicUsize>,
    directory: Arc<DeviceDirectory>,
    writer: WriterHandle,
    settings: IngestSettings,
) {
    let queue_depth = metrics::gauge!("homeward_ingest_queue_depth", "stage" => "mqtt");
    while let Some((publish, epoch)) = rx.recv().await {
        let left = depth.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if publish.qos == QoS::AtMostOnce {
            qos0_depth.fetch_sub(1, Ordering::Relaxed);
        }
        queue_depth.set(left as f64);
        let ack = client_ack(&publish, epoch);
        let job = message_job(&publish.topic, &publish.payload, ack, &directory, &settings).await;
        if writer.submit(job).await.is_err() {
            return;
        }
    }
}

/// The PUBACK (or PUBREC) owed for a message the client received on connection `epoch`.
fn client_ack(publish: &rumqttc::Publish, epoch: u64) -> BrokerAck {
    let ack = match publish.qos {
        QoS::AtMostOnce => return BrokerAck::None,
        QoS::AtLeastOnce => ManualAck::PubAck(rumqttc::PubAck::new(publish.pkid)),
        QoS::ExactlyOnce => ManualAck::PubRec(rumqttc::PubRec::new(publish.pkid)),
    };
    BrokerAck::Client { ack, epoch }
}

/// The job for one MQTT message, whichever front end took it: its items (see [`to_items`])
/// and how to release it at the broker after commit.
///
/// A panic while decoding (a defect of ours) makes the message a dead letter with its bytes
/// (`internal_error`), stored and acknowledged like any other: left to kill the task, the broker
/// session would give the same message first to every new attachment and ingest would stop
/// for good behind it.
pub(super) async fn message_job(
    topic_bytes: &[u8],
    payload: &Bytes,
    ack: BrokerAck,
    directory: &DeviceDirectory,
    settings: &IngestSettings,
) -> Job {
    use futures_util::FutureExt;
    let decoded = std::panic::AssertUnwindSafe(to_items(topic_bytes, payload, directory, settings))
        .catch_unwind()
        .await;
    let items = decoded.unwrap_or_else(|_| {
        let topic_text = String::from_utf8_lossy(topic_bytes).into_owned();
        tracing::error!(topic = %topic_text, "decoding a message panicked; kept as a dead letter");
        metrics::counter!("homeward_ingest_dead_letters_total", "reason" => INTERNAL_ERROR)
            .increment(1);
        vec![Item::DeadLetter(DeadLetter {
            organisation_id: None,
            device_id: None,
            device_uid: topic::parse(&topic_text).map(|(uid, _)| uid.to_string()),
            source: "mqtt",
            topic: Some(topic_text),
            payload: payload.clone(),
            reason_code: INTERNAL_ERROR.to_string(),
            reason: "the server failed while decoding this message (a defect in Homeward); \
                     kept with its bytes"
                .to_string(),
        })]
    });
    Job {
        items,
        source: Source::Mqtt { ack },
    }
}

/// The dead-letter reason of a message whose decoding panicked.
const INTERNAL_ERROR: &str = "internal_error";

/// Decodes one message into what the writer stores: an event, each event of a batch
/// (`homeward_proto::batch`), a status change, or dead letters. Waits (with back-off) while the
/// device directory cannot reach the database, since nothing may be acked before it is stored.
async fn to_items(
    topic_bytes: &[u8],
    payload: &Bytes,
    directory: &DeviceDirectory,
    settings: &IngestSettings,
) -> Vec<Item> {
    #[cfg(test)]
    if payload.as_ref() == tests::PANICS {
        panic!("a decoding defect, injected by a test");
    }
    let received_at = Utc::now();
    let topic_text = String::from_utf8_lossy(topic_bytes).into_owned();
    let dead_bytes = |device: Option<&DeviceRef>, code: &str, reason: String, payload: Bytes| {
        metrics::counter!("homeward_ingest_dead_letters_total", "reason" => code.to_string())
            .increment(1);
        Item::DeadLetter(DeadLetter {
            organisation_id: device.map(|d| d.organisation_id),
            device_id: device.map(|d| d.id),
            device_uid: topic::parse(&topic_text).map(|(uid, _)| uid.to_string()),
            source: "mqtt",
            topic: Some(topic_text.clone()),
            payload,
            reason_code: code.to_string(),
            reason,
        })
    };
    let dead = |device: Option<&DeviceRef>, code: &str, reason: String| {
        dead_bytes(device, code, reason, payload.clone())
    };
    let Some((uid, kind)) = topic::parse(&topic_text) else {
        return vec![dead(
            None,
            "unknown_topic",
            format!("topic `{topic_text}` is not a Homeward v1 device topic"),
        )];
    };
    let device = match lookup_until_answered(directory, uid).await {
        Lookup::Active(device) => device,
        Lookup::Disabled(device) => {
            return vec![dead(
                Some(&device),
                "device_disabled",
                format!("device `{uid}` is disabled"),
            )]
        }
        Lookup::Unknown => {
            return vec![dead(
                None,
                "unknown_device",
                format!("no device `{uid}` is registered"),
            )]
        }
    };
    match kind {
        TopicKind::Events => match Batch::parse(payload) {
            Err(e) => vec![dead(Some(&device), e.reason_code(), e.to_string())],
            Ok(batch) => {
                let n = batch.len();
                batch
                    .events()
                    .enumerate()
                    .map(|(i, bytes)| {
                        match decode_as(bytes, batch.encoding(), received_at, settings) {
                            Ok(event) => Item::Event(event_item(
                                &device,
                                event,
                                bytes,
                                received_at,
                                settings,
                            )),
                            Err(e) if batch.is_single() => {
                                dead(Some(&device), e.reason_code(), e.to_string())
                            }
                            // The dead letter keeps this event's bytes; its neighbours are stored.
                            Err(e) => dead_bytes(
                                Some(&device),
                                e.reason_code(),
                                format!("event {} of {n} in the batch: {e}", i + 1),
                                payload.slice_ref(bytes),
                            ),
                        }
                    })
                    .collect()
            }
        },
        TopicKind::Status => vec![match homeward_proto::decode_status(payload) {
            Ok(status) => Item::Status(StatusItem {
                device_id: device.id,
                online: matches!(status, homeward_proto::Status::Online),
                at: received_at,
            }),
            Err(e) => dead(Some(&device), e.reason_code(), e.to_string()),
        }],
        TopicKind::Downlink => vec![dead(
            Some(&device),
            "unknown_topic",
            "downlink topics carry no events".into(),
        )],
    }
}

async fn lookup_until_answered(directory: &DeviceDirectory, uid: &str) -> Lookup {
    let mut backoff = Duration::from_millis(100);
    loop {
        match directory.lookup(uid).await {
            Ok(found) => return found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve a device; waiting for the database");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Decodes and checks the device's clock against ours.
pub fn decode(
    payload: &[u8],
    received_at: DateTime<Utc>,
    settings: &IngestSettings,
) -> Result<Event, homeward_proto::DecodeError> {
    check_time(
        homeward_proto::decode_event(payload)?,
        received_at,
        settings,
    )
}

/// [`decode`] for one event of a batch, whose encoding the batch's framing gave.
fn decode_as(
    payload: &[u8],
    encoding: Encoding,
    received_at: DateTime<Utc>,
    settings: &IngestSettings,
) -> Result<Event, homeward_proto::DecodeError> {
    let event = match encoding {
        Encoding::Json => homeward_proto::decode_event_json(payload)?,
        Encoding::Cbor => homeward_proto::decode_event_cbor(payload)?,
    };
    check_time(event, received_at, settings)
}

fn check_time(
    event: Event,
    received_at: DateTime<Utc>,
    settings: &IngestSettings,
) -> Result<Event, homeward_proto::DecodeError> {
    event.validate_time(
        received_at.timestamp_millis(),
        settings.max_future_secs as i64 * 1000,
    )?;
    Ok(event)
}

/// The row to store for a decoded event.
pub fn event_item(
    device: &DeviceRef,
    event: Event,
    payload: &[u8],
    received_at: DateTime<Utc>,
    settings: &IngestSettings,
) -> EventItem {
    // In range: the decoder bounds `t` to years 1970..=9999.
    let occurred_at = DateTime::from_timestamp_millis(event.time_ms()).unwrap_or(received_at);
    let late = (received_at - occurred_at).num_seconds() > settings.late_after_secs as i64;
    let data = homeward_proto::encode_fields_json_string(event.body());
    let kind = event.kind();
    EventItem {
        organisation_id: device.organisation_id,
        row: EventRow {
            device_id: device.id,
            seq: event.seq() as i64,
            occurred_at,
            received_at,
            kind: i16::from(kind.code()),
            sensor: event.sensor().map(i32::from),
            late,
            data: (data != "{}").then_some(data),
        },
        event: Box::new(event),
        device_uid: device.uid.clone(),
        encoding: Encoding::detect(payload).unwrap_or(Encoding::Json),
        priority: kind.is_priority(),
    }
}

/// Messages from Homeward to a device's hub ("help is on the way"). Never blocks; a message
/// that cannot be queued is logged and dropped (a notice is a courtesy, not data).
pub trait DownlinkSender: Send + Sync {
    fn notice(&self, device_uid: &str, notice: homeward_proto::Notice);
}

impl DownlinkSender for MqttAcker {
    fn notice(&self, device_uid: &str, notice: homeward_proto::Notice) {
        let Some(device) = DeviceId::new(device_uid) else {
            return;
        };
        let payload =
            homeward_proto::encode_downlink_vec(&Downlink::Notice(notice), Encoding::Json);
        if let Err(e) = self.downlink.publish(&device, payload) {
            metrics::counter!("homeward_mqtt_downlinks_dropped_total", "kind" => "notice")
                .increment(1);
            tracing::warn!(error = %e, device = device_uid, "could not queue a notice to the device");
        }
    }
}

/// Acks from the writer, and end-to-end acks to devices.
pub struct MqttAcker {
    acks: AckPath,
    downlink: DownlinkPath,
}

/// Where broker-level acks go.
enum AckPath {
    /// The ingest connection: PUBACKs only, each behind the [`AckGate`].
    Client {
        client: AsyncClient,
        gate: Arc<AckGate>,
    },
    /// The embedded broker's session, in-process.
    Local {
        broker: LocalBroker,
        client_id: String,
    },
}

/// Where end-to-end acks and notices go.
enum DownlinkPath {
    /// A connection of their own (see [`start`]).
    Client(AsyncClient),
    /// Routed in-process by the embedded broker.
    Local(LocalBroker),
}

impl DownlinkPath {
    /// Queue a downlink to `device` at QoS 1, never waiting.
    fn publish(&self, device: &DeviceId, payload: Vec<u8>) -> Result<(), String> {
        let topic = topic::downlink(device);
        match self {
            DownlinkPath::Client(client) => client
                .try_publish(
                    topic,
                    Bytes::from(payload),
                    PublishOptions::new(QoS::AtLeastOnce),
                )
                .map_err(|e| e.to_string()),
            DownlinkPath::Local(broker) => broker
                .publish(&topic, Bytes::from(payload), QoS::AtLeastOnce)
                .then_some(())
                .ok_or_else(|| format!("invalid topic {topic:?}")),
        }
    }
}

impl MqttAcker {
    /// Acks and downlinks through the embedded broker, in-process; `client_id` is the session
    /// the ingest attaches to.
    pub fn local(broker: LocalBroker, client_id: String) -> Self {
        Self {
            acks: AckPath::Local {
                broker: broker.clone(),
                client_id,
            },
            downlink: DownlinkPath::Local(broker),
        }
    }
}

impl Acker for MqttAcker {
    fn ack(&self, acks: &[BrokerAck]) {
        let mut stale = 0;
        // Runs of one epoch: one gate admission, or one session lock, each.
        for run in acks.chunk_by(|a, b| epoch_of(a) == epoch_of(b)) {
            let Some(epoch) = epoch_of(&run[0]) else {
                continue;
            };
            stale += match &self.acks {
                AckPath::Client { client, gate } => client_acks(client, gate, epoch, run),
                AckPath::Local { broker, client_id } => {
                    let pkids: Vec<u16> = run
                        .iter()
                        .filter_map(|a| match a {
                            BrokerAck::Local { pkid, .. } => Some(*pkid),
                            _ => None,
                        })
                        .collect();
                    pkids.len() - broker.ack(client_id, epoch, &pkids)
                }
            };
        }
        if stale > 0 {
            // Received on an earlier connection: the broker will redeliver them.
            metrics::counter!("homeward_mqtt_pubacks_stale_total").increment(stale as u64);
        }
    }

    fn stored(&self, device_uid: &str, ranges: &AckRanges, encoding: Encoding) {
        let Some(device) = DeviceId::new(device_uid) else {
            return;
        };
        let payload = homeward_proto::encode_downlink_vec(&Downlink::Ack(ranges.clone()), encoding);
        if let Err(e) = self.downlink.publish(&device, payload) {
            // The device resends after its timeout and gets its ack then.
            metrics::counter!("homeward_mqtt_downlinks_dropped_total", "kind" => "ack")
                .increment(1);
            tracing::debug!(error = %e, device = device_uid, "could not queue an end-to-end ack");
        }
    }
}

/// The connection (epoch) an ack belongs to; `None` for nothing to send.
fn epoch_of(ack: &BrokerAck) -> Option<u64> {
    match ack {
        BrokerAck::Client { epoch, .. } | BrokerAck::Local { epoch, .. } => Some(*epoch),
        BrokerAck::None => None,
    }
}

/// Queue the PUBACKs of one epoch if it is the open connection's. Returns how many were not.
fn client_acks(client: &AsyncClient, gate: &AckGate, epoch: u64, run: &[BrokerAck]) -> usize {
    let admitted = gate.admit(epoch, || {
        for a in run {
            let BrokerAck::Client { ack, .. } = a else {
                continue;
            };
            if let Err(e) = client.try_manual_ack(ack.clone()) {
                metrics::counter!("homeward_mqtt_pubacks_dropped_total").increment(1);
                tracing::debug!(error = %e, "could not queue an ack; the message will be redelivered");
            }
        }
    });
    if admitted {
        0
    } else {
        run.len()
    }
}

/// Which connection acks may be queued for: the one that is up, identified by its epoch.
#[derive(Debug, Default)]
pub struct AckGate(RwLock<GateState>);

#[derive(Debug, Default, Clone, Copy)]
struct GateState {
    epoch: u64,
    open: bool,
}

impl AckGate {
    fn state(&self) -> GateState {
        *self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection is up (CONNACK): a new epoch, open for acks. Returns the epoch.
    pub fn open(&self) -> u64 {
        let mut state = self.0.write().unwrap_or_else(|e| e.into_inner());
        state.epoch += 1;
        state.open = true;
        state.epoch
    }

    /// The connection is lost. When this returns, no [`Self::admit`] of its epoch is running
    /// and none will run again.
    pub fn close(&self) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).open = false;
    }

    /// The epoch that messages received now belong to.
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Runs `queue` (which must not block) if `epoch` is the open connection's, keeping the
    /// gate from closing until it returns. Returns whether it ran.
    pub fn admit(&self, epoch: u64, queue: impl FnOnce()) -> bool {
        let state = self.0.read().unwrap_or_else(|e| e.into_inner());
        if !(state.open && state.epoch == epoch) {
            return false;
        }
        queue();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload on which decoding panics (test builds only).
    pub(super) const PANICS: &[u8] = b"\xffpanic-for-a-test";

    #[tokio::test]
    async fn a_message_whose_decoding_panics_becomes_a_dead_letter_and_keeps_its_ack() {
        // Never connected: decoding panics before it looks the device up.
        let pool = crate::db::build_pool("host=127.0.0.1 port=1".parse().unwrap(), 1, 1);
        let directory = DeviceDirectory::new(pool);
        let payload = Bytes::from_static(PANICS);
        let job = message_job(
            b"homeward/v1/hub-1/events",
            &payload,
            BrokerAck::Local { epoch: 7, pkid: 42 },
            &directory,
            &IngestSettings::default(),
        )
        .await;
        let [Item::DeadLetter(dead)] = job.items.as_slice() else {
            panic!("expected one dead letter, got {:?}", job.items.len());
        };
        assert_eq!(dead.reason_code, INTERNAL_ERROR);
        assert_eq!(dead.payload, payload);
        assert_eq!(dead.device_uid.as_deref(), Some("hub-1"));
        assert_eq!(dead.topic.as_deref(), Some("homeward/v1/hub-1/events"));
        assert!(matches!(
            job.source,
            Source::Mqtt {
                ack: BrokerAck::Local { epoch: 7, pkid: 42 }
            }
        ));
    }

    #[test]
    fn an_ack_is_admitted_only_for_the_open_connection() {
        let gate = AckGate::default();
        assert!(
            !gate.admit(0, || {}),
            "nothing is open before the first CONNACK"
        );
        let first = gate.open();
        assert!(gate.admit(first, || {}));
        gate.close();
        assert!(!gate.admit(first, || panic!("queued after the loss")));
        // Reconnected: acks of the first connection stay out for good.
        let second = gate.open();
        assert_ne!(first, second);
        assert!(!gate.admit(first, || panic!("queued on the next connection")));
        assert!(gate.admit(second, || {}));
        assert_eq!(gate.epoch(), second);
    }

    #[test]
    fn close_waits_for_an_ack_being_queued() {
        let gate = Arc::new(AckGate::default());
        let epoch = gate.open();
        let (inside_tx, inside_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let g = gate.clone();
        let acker = std::thread::spawn(move || {
            g.admit(epoch, || {
                inside_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            })
        });
        inside_rx.recv().unwrap();
        let g = gate.clone();
        let closer = std::thread::spawn(move || g.close());
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !closer.is_finished(),
            "close waits while an ack is being queued"
        );
        go_tx.send(()).unwrap();
        assert!(acker.join().unwrap());
        closer.join().unwrap();
        assert!(!gate.admit(epoch, || {}));
    }

    /// What the poll task relies on after closing the gate: rumqttc's `clean()` discards the
    /// PUBACKs still queued for the lost connection (and keeps other requests).
    #[test]
    fn rumqttc_clean_drops_queued_acks() {
        let mut options = MqttOptions::new("homeward-test", ("127.0.0.1", 1));
        options.set_ack_mode(AckMode::Manual);
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(16).build();
        let mut publish = rumqttc::Publish::new("t", QoS::AtLeastOnce, "x");
        publish.pkid = 7;
        client.try_ack(&publish).unwrap();
        client
            .try_subscribe("homeward/v1/+/events", QoS::AtLeastOnce)
            .unwrap();
        eventloop.clean();
        assert_eq!(
            eventloop.pending_len(),
            1,
            "the subscription is kept, the ack is not"
        );
    }
}
