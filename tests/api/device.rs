//! A store-and-forward test device, as devices work: it numbers its events,
//! keeps each until Homeward's end-to-end acknowledgement covers it, and resends after a
//! timeout, across broker and server restarts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use homeward_proto::{Downlink, Encoding, Event, EventBody, Percent, SignalDbm};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, PublishOptions, QoS};
use tokio::sync::mpsc;

/// A heartbeat event, byte-identical for the same (seq, time).
pub fn heartbeat(seq: u64, time_ms: i64, encoding: Encoding) -> Vec<u8> {
    let body = EventBody::Heartbeat {
        battery: Percent::new((seq % 100) as u8).unwrap(),
        signal: SignalDbm::new(-70).unwrap(),
        interval_s: Some(900),
    };
    homeward_proto::encode_event_vec(&Event::new(seq, time_ms, body).unwrap(), encoding)
}

/// How long the device waits for an end-to-end acknowledgement before it resends an event.
pub const RESEND_AFTER: Duration = Duration::from_secs(3);

pub struct DeviceRun {
    pub sent: u64,
    pub resends: u64,
    pub unacked: Vec<u64>,
}

/// Publishes `count` events (seq 1..=count) at about `rate` per second and keeps resending
/// until every one is acknowledged end to end or `deadline` passes. `auth` is (user, password);
/// `None` for an anonymous broker.
#[allow(clippy::too_many_arguments)]
pub async fn run_device(
    base_ms: i64,
    host: String,
    port: u16,
    uid: String,
    auth: Option<(String, String)>,
    count: u64,
    rate: u64,
    deadline: Duration,
) -> DeviceRun {
    let mut options = MqttOptions::new(uid.clone(), (host, port));
    if let Some((user, password)) = auth {
        options.set_credentials(user, password);
    }
    options.set_keep_alive(5).set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(10_000).build();
    let downlink = format!("homeward/v1/{uid}/downlink");
    let events_topic = format!("homeward/v1/{uid}/events");
    let (acks_tx, mut acks) = mpsc::unbounded_channel::<Vec<std::ops::RangeInclusive<u64>>>();
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
                    let _ = client.try_publish(events_topic.clone(), payload.clone(), PublishOptions::new(QoS::AtLeastOnce));
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
                    let entry = pending.get_mut(&seq).unwrap();
                    let _ = client.try_publish(events_topic.clone(), entry.0.clone(), PublishOptions::new(QoS::AtLeastOnce));
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
