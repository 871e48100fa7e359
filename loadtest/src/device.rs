//! A simulated store-and-forward device: one MQTT connection (rumqttc) per device.
//!
//! It numbers its events (seq 1, 2, ...), publishes them with QoS 1, keeps each one until
//! Homeward's end-to-end ack on its downlink topic covers it, and resends byte-identical copies
//! after a timeout (doubling, at most 8x) and at once after a reconnect. At most `window`
//! events are published and unacknowledged at a time; newer ones wait in its queue (the backlog).
//!
//! The rumqttc event loop is polled by a task of its own that never awaits anything slow
//! (DESIGN.md, pitfalls); publishing uses `try_publish` only.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use homeward_proto::{Downlink, Encoding, Event, EventBody};
use rumqttc::mqttbytes::v4::LastWill;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, PublishOptions, QoS};
use tokio::sync::mpsc;

use crate::mix::raises_alarm;
use crate::stats::{record, Shared};

pub struct DeviceConfig {
    pub uid: Arc<str>,
    pub secret: String,
    pub host: String,
    pub port: u16,
    pub window: usize,
    pub resend_after: Duration,
    pub encoding: String,
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
    payload: Vec<u8>,
    first: Instant,
    last: Instant,
    attempts: u32,
}

enum Incoming {
    Connected,
    Disconnected,
    Ack(Vec<std::ops::RangeInclusive<u64>>),
}

pub async fn run(
    mut cfg: DeviceConfig,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<EventBody>,
) -> DeviceResult {
    let uid = cfg.uid.clone();
    let events_topic = format!("homeward/v1/{uid}/events");
    let mut queue: VecDeque<(u64, Vec<u8>, bool)> = VecDeque::new();
    let mut inflight: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut next_seq = 1u64;
    let mut resends = 0u64;
    let encode = |seq: u64, t: i64, body: EventBody| -> (Vec<u8>, bool) {
        let alarm = raises_alarm(&body);
        let encoding = match cfg.encoding.as_str() {
            "json" => Encoding::Json,
            "cbor" => Encoding::Cbor,
            _ if seq.is_multiple_of(2) => Encoding::Cbor,
            _ => Encoding::Json,
        };
        let event = Event::new(seq, t, body).expect("valid seq and time");
        (homeward_proto::encode_event_vec(&event, encoding), alarm)
    };
    let backlog = std::mem::take(&mut cfg.backlog);
    for (body, t) in backlog {
        let (payload, alarm) = encode(next_seq, t, body);
        queue.push_back((next_seq, payload, alarm));
        next_seq += 1;
    }

    // Offline until it is time to connect (a reconnect storm starts with every device offline).
    let connect_at = shared.start + cfg.connect_at;
    while Instant::now() < connect_at && !shared.stopped() {
        tokio::time::sleep(Duration::from_millis(50).min(connect_at - Instant::now())).await;
    }
    shared
        .offered
        .fetch_add(queue.len() as u64, Ordering::Relaxed);

    let mut options = MqttOptions::new(uid.to_string(), (cfg.host.clone(), cfg.port));
    options
        .set_credentials(uid.to_string(), cfg.secret.clone())
        .set_keep_alive(30)
        .set_clean_session(true)
        .set_inflight(100)
        .set_last_will(LastWill::new(
            format!("homeward/v1/{uid}/status"),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    let (client, mut eventloop) = AsyncClient::builder(options)
        .capacity(cfg.window * 2 + 64)
        .build();
    let (in_tx, mut incoming) = mpsc::unbounded_channel::<Incoming>();
    let poll_client = client.clone();
    let poll_shared = shared.clone();
    let downlink = format!("homeward/v1/{uid}/downlink");
    let status = format!("homeward/v1/{uid}/status");
    let poller = tokio::spawn(async move {
        let mut up = false;
        while !poll_shared.stopped() {
            match tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await {
                Err(_) => {}
                Ok(Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) => {
                    let _ = poll_client.try_subscribe(downlink.clone(), QoS::AtLeastOnce);
                    let _ = poll_client.try_publish(
                        status.clone(),
                        "online",
                        PublishOptions::new(QoS::AtLeastOnce).retained(),
                    );
                    if !up {
                        poll_shared.connected.fetch_add(1, Ordering::Relaxed);
                        up = true;
                    }
                    let _ = in_tx.send(Incoming::Connected);
                }
                Ok(Ok(MqttEvent::Incoming(Packet::Publish(p)))) => {
                    if let Ok(Downlink::Ack(ranges)) = homeward_proto::decode_downlink(&p.payload) {
                        let _ = in_tx.send(Incoming::Ack(ranges.iter().collect()));
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    if up {
                        poll_shared.connected.fetch_sub(1, Ordering::Relaxed);
                        up = false;
                    }
                    let _ = in_tx.send(Incoming::Disconnected);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        if up {
            poll_shared.connected.fetch_sub(1, Ordering::Relaxed);
        }
    });

    let mut connected = false;
    let mut commands_open = true;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut latencies: Vec<Duration> = Vec::with_capacity(256);
    loop {
        tokio::select! {
            cmd = commands.recv(), if commands_open => match cmd {
                Some(body) => {
                    let t = chrono::Utc::now().timestamp_millis();
                    let (payload, alarm) = encode(next_seq, t, body);
                    queue.push_back((next_seq, payload, alarm));
                    next_seq += 1;
                    shared.offered.fetch_add(1, Ordering::Relaxed);
                }
                None => commands_open = false,
            },
            msg = incoming.recv() => match msg {
                Some(Incoming::Connected) => {
                    connected = true;
                    // Store and forward: after a reconnect, resend everything unacknowledged.
                    let now = Instant::now();
                    for p in inflight.values_mut() {
                        p.last = now - cfg.resend_after * 16;
                        p.attempts = 0;
                    }
                }
                Some(Incoming::Disconnected) => connected = false,
                Some(Incoming::Ack(ranges)) => {
                    let now = Instant::now();
                    for range in ranges {
                        let covered: Vec<u64> = inflight.range(range).map(|(s, _)| *s).collect();
                        for seq in covered {
                            if let Some(p) = inflight.remove(&seq) {
                                latencies.push(now - p.first);
                            }
                        }
                    }
                    if !latencies.is_empty() {
                        shared.acked.fetch_add(latencies.len() as u64, Ordering::Relaxed);
                        let mut h = shared.hists.lock().expect("not poisoned");
                        for d in latencies.drain(..) {
                            record(&mut h.mqtt, d);
                            record(&mut h.interval, d);
                        }
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if connected {
                    resends += resend_due(&client, &events_topic, &mut inflight, cfg.resend_after);
                }
            }
        }
        if connected {
            publish_queued(
                &client,
                &events_topic,
                &mut queue,
                &mut inflight,
                cfg.window,
                &uid,
                &shared,
            );
        }
        if shared.stopped() || (!commands_open && queue.is_empty() && inflight.is_empty()) {
            break;
        }
    }
    shared.resends.fetch_add(resends, Ordering::Relaxed);
    let _ = client.try_disconnect();
    // Let the poller send the DISCONNECT, then stop it.
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        while !poller.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    poller.abort();
    DeviceResult {
        uid: uid.to_string(),
        offered: next_seq - 1,
        unacked: (queue.len() + inflight.len()) as u64,
    }
}

fn publish_queued(
    client: &AsyncClient,
    topic: &str,
    queue: &mut VecDeque<(u64, Vec<u8>, bool)>,
    inflight: &mut BTreeMap<u64, Pending>,
    window: usize,
    uid: &Arc<str>,
    shared: &Shared,
) {
    while inflight.len() < window {
        let Some((seq, payload, alarm)) = queue.pop_front() else {
            break;
        };
        if client
            .try_publish(
                topic.to_string(),
                payload.as_slice(),
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .is_err()
        {
            queue.push_front((seq, payload, alarm));
            break;
        }
        let now = Instant::now();
        if alarm {
            shared
                .alarm_published
                .lock()
                .expect("not poisoned")
                .insert((uid.clone(), seq), now);
            shared.alarms_sent.fetch_add(1, Ordering::Relaxed);
        }
        inflight.insert(
            seq,
            Pending {
                payload,
                first: now,
                last: now,
                attempts: 1,
            },
        );
    }
}

/// Resends (byte-identical) what no ack has covered in time; returns how many.
fn resend_due(
    client: &AsyncClient,
    topic: &str,
    inflight: &mut BTreeMap<u64, Pending>,
    resend_after: Duration,
) -> u64 {
    let now = Instant::now();
    let mut n = 0;
    for p in inflight.values_mut() {
        let wait = resend_after * (1u32 << p.attempts.saturating_sub(1).min(3));
        if now.duration_since(p.last) < wait {
            continue;
        }
        if client
            .try_publish(
                topic.to_string(),
                p.payload.as_slice(),
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .is_err()
        {
            break;
        }
        p.last = now;
        p.attempts += 1;
        n += 1;
        if n >= 256 {
            break;
        }
    }
    n
}
