//! A simulated store-and-forward device: one MQTT 3.1.1 connection per device.
//!
//! It numbers its events (seq 1, 2, ...), publishes them with QoS 1, keeps each one until
//! Homeward's end-to-end ack on its downlink topic covers it, and resends byte-identical copies
//! after a timeout (doubling, at most 8x) and at once after a reconnect. At most `window`
//! events are published and unacknowledged at a time; newer ones wait in its queue (the backlog).
//!
//! The client is written on the packet codec (`rumqttc::mqttbytes`) rather than on rumqttc's
//! client, so that a few hundred devices cost the harness little CPU: a device writes every
//! publish it has ready in one socket write, and a reader task of its own parses what the broker
//! sends (PUBACKs, the downlink), so the writer never stops the reader. The broker's PUBACK is
//! not what a device trusts, only Homeward's end-to-end ack, so PUBACKs are read and dropped.
//! A device's own PUBACKs for downlinks go out with its next publishes, or after at most
//! [`ANSWER_WAIT`] when it has none to send: a write of its own for each would add a socket
//! write per downlink to a streaming device (and cost the harness CPU, which the machine under
//! test shares); the embedded broker batches its answers on its side for the same reason.
//!
//! With `batch_max` above 1 a device sends what it holds as batches (wire format, "Batches"):
//! it gathers new events for `batch_linger`, or until it holds `batch_max`, and an alarm or a
//! fall goes at once with whatever is waiting. Each event keeps its own bytes, so a resend may
//! batch events differently and still resends every event byte for byte.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use homeward_proto::{Downlink, Encoding, Event, EventBody};
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, LastWill, Packet, PubAck, Publish, Subscribe,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::mix::raises_alarm;
use crate::stats::{record, Shared};

const MAX_PACKET: usize = 1024 * 1024;
const KEEP_ALIVE_S: u16 = 30;
/// Longest a PUBACK for a downlink waits for publishes to go out with.
const ANSWER_WAIT: Duration = Duration::from_millis(5);

pub struct DeviceConfig {
    pub uid: Arc<str>,
    pub secret: String,
    pub host: String,
    pub port: u16,
    pub window: usize,
    pub resend_after: Duration,
    pub encoding: String,
    /// Most events in one message (1: no batches).
    pub batch_max: usize,
    /// How long events gather before they are sent (alarms go at once).
    pub batch_linger: Duration,
    /// Events already waiting when the device starts (reconnect storm), with their device times.
    pub backlog: Vec<(EventBody, i64)>,
    /// When to connect (after the run's start).
    pub connect_at: Duration,
}

/// What a device reports at the end.
#[derive(Debug, Default)]
pub struct DeviceResult {
    pub uid: String,
    /// Seqs 1..=offered were created.
    pub offered: u64,
    pub unacked: u64,
}

struct Pending {
    payload: Bytes,
    first: Instant,
    last: Instant,
    attempts: u32,
}

/// What the reader task tells the device.
enum Incoming {
    /// Homeward's end-to-end ack, and the downlink's packet id to PUBACK (0: none).
    Ack(Vec<std::ops::RangeInclusive<u64>>, u16),
    /// Another QoS 1 downlink (a notice) to PUBACK.
    PubAck(u16),
    /// The connection is gone.
    Closed,
}

/// A device's state across connections.
struct Device {
    uid: Arc<str>,
    topic: Bytes,
    queue: VecDeque<(u64, Bytes, bool)>,
    inflight: BTreeMap<u64, Pending>,
    window: usize,
    resend_after: Duration,
    encoding: Encoding,
    batch_max: usize,
    batch_linger: Duration,
    /// When the oldest event waiting to be sent was queued, and whether an alarm waits.
    gathering_since: Option<Instant>,
    urgent: bool,
    next_pkid: u16,
    resends: u64,
    /// No event in flight is due for a resend before this (so most ticks scan nothing).
    next_resend: Instant,
    out: BytesMut,
    /// PUBACKs for downlinks not yet written, and since when the oldest has waited.
    answers: BytesMut,
    answers_since: Option<Instant>,
}

impl Device {
    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    fn queue(&mut self, seq: u64, payload: Bytes, alarm: bool) {
        self.queue.push_back((seq, payload, alarm));
        self.urgent |= alarm;
        self.gathering_since.get_or_insert_with(Instant::now);
    }

    /// When the events gathered so far must go, even if no more come.
    fn send_deadline(&self) -> Option<Instant> {
        self.gathering_since.map(|t| t + self.batch_linger)
    }

    /// One message with these events: the event itself, or a batch.
    fn publish_events(&mut self, events: &[Bytes]) {
        match events {
            [] => {}
            [one] => self.publish(one.clone()),
            many => {
                let parts: Vec<&[u8]> = many.iter().map(|b| b.as_ref()).collect();
                let batch = homeward_proto::encode_batch_vec(&parts, self.encoding);
                self.publish(Bytes::from(batch));
            }
        }
    }

    /// A new QoS 1 message. A resend of an event is a new message too (new packet id, DUP not
    /// set): DUP is for the MQTT layer's own redelivery of one packet, which this device
    /// leaves to the end-to-end ack.
    fn publish(&mut self, payload: Bytes) {
        let mut p = Publish::from_bytes("", QoS::AtLeastOnce, payload);
        p.topic = self.topic.clone();
        p.pkid = self.pkid();
        p.write(&mut self.out).expect("a publish encodes");
    }

    /// Moves queued events into flight, up to the window, once they are due: a full batch, the
    /// linger over, or an alarm waiting.
    fn publish_queued(&mut self, shared: &Shared) {
        let due = self.urgent
            || self.queue.len() >= self.batch_max
            || self.send_deadline().is_some_and(|d| Instant::now() >= d);
        if !due {
            return;
        }
        let mut message: Vec<Bytes> = Vec::with_capacity(self.batch_max);
        while self.inflight.len() < self.window {
            let Some((seq, payload, alarm)) = self.queue.pop_front() else {
                break;
            };
            message.push(payload.clone());
            if message.len() == self.batch_max {
                self.publish_events(&message);
                message.clear();
            }
            let now = Instant::now();
            if alarm {
                shared
                    .alarm_published
                    .lock()
                    .expect("not poisoned")
                    .insert((self.uid.clone(), seq), now);
                shared.alarms_sent.fetch_add(1, Ordering::Relaxed);
            }
            self.inflight.insert(
                seq,
                Pending {
                    payload,
                    first: now,
                    last: now,
                    attempts: 1,
                },
            );
        }
        self.publish_events(&message);
        self.urgent = self.queue.iter().any(|(_, _, alarm)| *alarm);
        self.gathering_since = (!self.queue.is_empty()).then(Instant::now);
    }

    /// Resends (byte-identical payloads) what no ack has covered in time, at most 256 a call.
    fn resend_due(&mut self) {
        let now = Instant::now();
        if now < self.next_resend {
            return;
        }
        let mut due = Vec::new();
        let mut next = now + self.resend_after;
        for p in self.inflight.values_mut() {
            let wait = self.resend_after * (1u32 << p.attempts.saturating_sub(1).min(3));
            if due.len() >= 256 || now.duration_since(p.last) < wait {
                next = next.min(p.last + wait);
                continue;
            }
            p.last = now;
            p.attempts += 1;
            due.push(p.payload.clone());
        }
        // After 256 resends, the rest wait for the next tick.
        self.next_resend = if due.len() >= 256 { now } else { next };
        self.resends += due.len() as u64;
        for chunk in due.chunks(self.batch_max) {
            self.publish_events(chunk);
        }
    }

    /// A PUBACK for a downlink, written with the next publishes or after [`ANSWER_WAIT`].
    fn answer(&mut self, pkid: u16) {
        let _ = PubAck::new(pkid).write(&mut self.answers);
        self.answers_since.get_or_insert_with(Instant::now);
    }

    /// Moves waiting PUBACKs into `out` when publishes are going anyway or they are due.
    fn take_answers(&mut self) {
        let due = self
            .answers_since
            .is_some_and(|t| t.elapsed() >= ANSWER_WAIT);
        if self.answers.is_empty() || (self.out.is_empty() && !due) {
            return;
        }
        self.out.extend_from_slice(&self.answers);
        self.answers.clear();
        self.answers_since = None;
    }

    fn acked(&mut self, ranges: Vec<std::ops::RangeInclusive<u64>>, shared: &Shared) {
        let now = Instant::now();
        let mut latencies = Vec::new();
        for range in ranges {
            let covered: Vec<u64> = self.inflight.range(range).map(|(s, _)| *s).collect();
            for seq in covered {
                if let Some(p) = self.inflight.remove(&seq) {
                    latencies.push(now - p.first);
                }
            }
        }
        if latencies.is_empty() {
            return;
        }
        shared
            .acked
            .fetch_add(latencies.len() as u64, Ordering::Relaxed);
        let mut h = shared.hists.lock().expect("not poisoned");
        for d in latencies {
            record(&mut h.mqtt, d);
            record(&mut h.interval, d);
        }
    }
}

pub async fn run(
    mut cfg: DeviceConfig,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Vec<EventBody>>,
) -> DeviceResult {
    let uid = cfg.uid.clone();
    let mut next_seq = 1u64;
    // One encoding per device (a batch has one): half the fleet each way when mixed.
    let encoding = match cfg.encoding.as_str() {
        "json" => Encoding::Json,
        "cbor" => Encoding::Cbor,
        _ if uid.bytes().map(u32::from).sum::<u32>() % 2 == 0 => Encoding::Cbor,
        _ => Encoding::Json,
    };
    let encode = move |seq: u64, t: i64, body: EventBody| -> (Bytes, bool) {
        let alarm = raises_alarm(&body);
        let event = Event::new(seq, t, body).expect("valid seq and time");
        (
            Bytes::from(homeward_proto::encode_event_vec(&event, encoding)),
            alarm,
        )
    };
    let mut dev = Device {
        uid: uid.clone(),
        topic: Bytes::from(format!("homeward/v1/{uid}/events")),
        queue: VecDeque::new(),
        inflight: BTreeMap::new(),
        window: cfg.window,
        resend_after: cfg.resend_after,
        encoding,
        batch_max: cfg.batch_max.max(1),
        batch_linger: cfg.batch_linger,
        gathering_since: None,
        urgent: false,
        next_pkid: 0,
        resends: 0,
        next_resend: Instant::now(),
        out: BytesMut::with_capacity(64 * 1024),
        answers: BytesMut::with_capacity(1024),
        answers_since: None,
    };
    for (body, t) in std::mem::take(&mut cfg.backlog) {
        let (payload, alarm) = encode(next_seq, t, body);
        dev.queue(next_seq, payload, alarm);
        next_seq += 1;
    }

    // Offline until it is time to connect (a reconnect storm starts with every device offline).
    let connect_at = shared.start + cfg.connect_at;
    while Instant::now() < connect_at && !shared.stopped() {
        tokio::time::sleep(Duration::from_millis(50).min(connect_at - Instant::now())).await;
    }
    shared
        .offered
        .fetch_add(dev.queue.len() as u64, Ordering::Relaxed);

    let mut commands_open = true;
    'connection: while !shared.stopped() {
        let Some((mut writer, mut incoming, reader)) = connect(&cfg, &uid).await else {
            // Refused or unreachable (a server restart): take new events meanwhile, retry.
            let retry = tokio::time::sleep(Duration::from_millis(250));
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    _ = &mut retry => break,
                    cmd = commands.recv(), if commands_open => match cmd {
                        Some(bodies) => {
                            let t = chrono::Utc::now().timestamp_millis();
                            shared.offered.fetch_add(bodies.len() as u64, Ordering::Relaxed);
                            for body in bodies {
                                let (payload, alarm) = encode(next_seq, t, body);
                                dev.queue(next_seq, payload, alarm);
                                next_seq += 1;
                            }
                        }
                        None => commands_open = false,
                    },
                }
            }
            if !commands_open && dev.queue.is_empty() && dev.inflight.is_empty() {
                break;
            }
            continue;
        };
        shared.connected.fetch_add(1, Ordering::Relaxed);
        // Store and forward: after a reconnect, resend everything unacknowledged at once.
        let now = Instant::now();
        for p in dev.inflight.values_mut() {
            p.last = now - dev.resend_after * 16;
            p.attempts = 0;
        }
        dev.next_resend = now;
        dev.resend_due();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_ping = Instant::now();
        let finished = loop {
            tokio::select! {
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(bodies) => {
                        // Take everything already waiting, then publish it in one write.
                        let t = chrono::Utc::now().timestamp_millis();
                        let mut next = Some(bodies);
                        while let Some(bodies) = next.take() {
                            shared.offered.fetch_add(bodies.len() as u64, Ordering::Relaxed);
                            for body in bodies {
                                let (payload, alarm) = encode(next_seq, t, body);
                                dev.queue(next_seq, payload, alarm);
                                next_seq += 1;
                            }
                            next = commands.try_recv().ok();
                        }
                    }
                    None => commands_open = false,
                },
                msg = incoming.recv() => match msg {
                    Some(Incoming::Ack(ranges, pkid)) => {
                        if pkid != 0 {
                            dev.answer(pkid);
                        }
                        dev.acked(ranges, &shared);
                    }
                    Some(Incoming::PubAck(pkid)) => dev.answer(pkid),
                    Some(Incoming::Closed) | None => break false,
                },
                _ = sleep_until_or_never(dev.send_deadline()) => {}
                _ = sleep_until_or_never(dev.answers_since.map(|t| t + ANSWER_WAIT)) => {}
                _ = tick.tick() => {
                    dev.resend_due();
                    if last_ping.elapsed() >= Duration::from_secs(u64::from(KEEP_ALIVE_S) / 3) {
                        let _ = Packet::PingReq.write(&mut dev.out, MAX_PACKET);
                        last_ping = Instant::now();
                    }
                }
            }
            dev.publish_queued(&shared);
            dev.take_answers();
            if !dev.out.is_empty() {
                let out = dev.out.split();
                if writer.write_all(&out).await.is_err() {
                    break false;
                }
            }
            if shared.stopped()
                || (!commands_open && dev.queue.is_empty() && dev.inflight.is_empty())
            {
                break true;
            }
        };
        shared.connected.fetch_sub(1, Ordering::Relaxed);
        dev.out.clear();
        // The next connection is a clean session: its downlinks are new.
        dev.answers.clear();
        dev.answers_since = None;
        if finished {
            let _ = Packet::Disconnect.write(&mut dev.out, MAX_PACKET);
            let _ = writer.write_all(&dev.out).await;
            let _ = writer.shutdown().await;
            reader.abort();
            break 'connection;
        }
        reader.abort();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    shared.resends.fetch_add(dev.resends, Ordering::Relaxed);
    DeviceResult {
        uid: uid.to_string(),
        offered: next_seq - 1,
        unacked: (dev.queue.len() + dev.inflight.len()) as u64,
    }
}

/// CONNECT (clean session, last will "offline" retained), CONNACK, then SUBSCRIBE to the
/// downlink and the retained "online" status. Returns the write half, the reader's messages
/// and the reader task.
async fn connect(
    cfg: &DeviceConfig,
    uid: &str,
) -> Option<(
    OwnedWriteHalf,
    mpsc::UnboundedReceiver<Incoming>,
    tokio::task::JoinHandle<()>,
)> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .ok()?
    .ok()?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut connect = Connect::new(uid);
    connect.keep_alive = KEEP_ALIVE_S;
    connect.clean_session = true;
    connect.set_credentials(uid, cfg.secret.clone().into_bytes());
    connect.last_will = Some(LastWill::new(
        format!("homeward/v1/{uid}/status"),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let mut out = BytesMut::new();
    Packet::Connect(connect).write(&mut out, MAX_PACKET).ok()?;
    wr.write_all(&out).await.ok()?;

    let mut buf = BytesMut::with_capacity(16 * 1024);
    let connack = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match Packet::read(&mut buf, MAX_PACKET) {
                Ok(Packet::ConnAck(ack)) => return Some(ack),
                Ok(_) => return None,
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(_) => return None,
            }
            if rd.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
    })
    .await
    .ok()??;
    if connack.code != ConnectReturnCode::Success {
        return None;
    }
    out.clear();
    let mut subscribe = Subscribe::new(format!("homeward/v1/{uid}/downlink"), QoS::AtLeastOnce);
    subscribe.pkid = 1;
    Packet::Subscribe(subscribe)
        .write(&mut out, MAX_PACKET)
        .ok()?;
    let mut online = Publish::new(
        format!("homeward/v1/{uid}/status"),
        QoS::AtLeastOnce,
        "online",
    );
    online.retain = true;
    online.pkid = 2;
    Packet::Publish(online).write(&mut out, MAX_PACKET).ok()?;
    wr.write_all(&out).await.ok()?;

    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            loop {
                match Packet::read(&mut buf, MAX_PACKET) {
                    Ok(Packet::Publish(p)) => {
                        let pkid = if p.qos == QoS::AtMostOnce { 0 } else { p.pkid };
                        let msg = match homeward_proto::decode_downlink(&p.payload) {
                            Ok(Downlink::Ack(ranges)) => {
                                Incoming::Ack(ranges.iter().collect(), pkid)
                            }
                            _ if pkid != 0 => Incoming::PubAck(pkid),
                            _ => continue,
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(CodecError::InsufficientBytes(_)) => break,
                    Err(_) => {
                        let _ = tx.send(Incoming::Closed);
                        return;
                    }
                }
            }
            match rd.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => {
                    let _ = tx.send(Incoming::Closed);
                    return;
                }
            }
        }
    });
    Some((wr, rx, reader))
}

async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
