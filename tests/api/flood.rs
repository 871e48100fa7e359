//! Flow control in the embedded broker, end to end: one tenant's device floods as fast as it
//! can while another tenant's pendant alarm is stored and acknowledged within the normal
//! latency, and the broker's queues stay within their bounds.

use std::time::{Duration, Instant};

use homeward::auth::{OrgKind, Role};
use homeward_proto::{Encoding, EventBody};
use homeward_testkit::db::event_counts;
use homeward_testkit::metrics::metric_sum;
use homeward_testkit::mqtt::{heartbeat, TestDevice};
use homeward_testkit::{spawn_app_with, test_settings};
use rumqttc::{AsyncClient, MqttOptions, PublishOptions, QoS};

const MAX_QUEUED_MESSAGES: usize = 20_000;
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Resident memory of this process (the application runs in it), in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A hub that publishes as fast as its client lets it, until told to stop; returns how many
/// events it published.
async fn flood(host: String, port: u16, uid: &str, secret: String, stop: Instant) -> u64 {
    let mut options = MqttOptions::new(uid, (host, port));
    options
        .set_credentials(uid, secret)
        .set_keep_alive(30)
        .set_inflight(1000)
        .set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(1000).build();
    let poller = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let topic = format!("homeward/v1/{uid}/events");
    let base = chrono::Utc::now().timestamp_millis() - 60_000;
    let mut seq = 0u64;
    while Instant::now() < stop {
        seq += 1;
        let payload = heartbeat(seq, base + seq as i64, Encoding::Cbor);
        let publish = client.publish(
            topic.clone(),
            payload,
            PublishOptions::new(QoS::AtLeastOnce),
        );
        // The client's queue is full while the broker is not reading: that is the pacing.
        if tokio::time::timeout(Duration::from_millis(500), publish)
            .await
            .is_err()
        {
            seq -= 1;
        }
    }
    poller.abort();
    seq
}

/// A pendant hub's alarm: publishes the hub's next event, a pendant alarm, and returns the
/// time until Homeward's end-to-end ack covers it.
async fn alarm(hub: &mut TestDevice) -> Duration {
    let started = Instant::now();
    let seq = hub.send(EventBody::PendantAlarm).await;
    hub.acked(seq, Duration::from_secs(30)).await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_device_does_not_delay_another_tenants_alarm() {
    let mut settings = test_settings();
    settings.mqtt.device_max_messages_per_sec = 500;
    settings.mqtt.device_max_bytes_per_sec = 256 * 1024;
    settings.mqtt.device_burst_secs = 2;
    settings.mqtt.max_queued_messages = MAX_QUEUED_MESSAGES;
    settings.mqtt.max_queued_bytes = MAX_QUEUED_BYTES;
    let app = spawn_app_with(settings).await;
    let (org_a, _) = app
        .org_with_user("Flooding tenant", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (org_b, _) = app
        .org_with_user("Quiet tenant", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let flood_secret = app.device(&org_a, "flood-hub", "hub").await;
    let alarm_secret = app.device(&org_b, "pendant-hub", "hub").await;
    let mut hub = TestDevice::connect_quietly(&app, "pendant-hub", &alarm_secret).await;
    let rss_before = rss_bytes();

    // Flood for 15 s (loopback only); meanwhile three alarms, two seconds apart, and the
    // broker's queues sampled four times a second.
    let flood_for = Duration::from_secs(15);
    let stop = Instant::now() + flood_for;
    let flooder = tokio::spawn(flood(
        app.mqtt.host.clone(),
        app.mqtt.port,
        "flood-hub",
        flood_secret,
        stop,
    ));
    let sampler = {
        let url = app.url("/metrics");
        let client = app.client.clone();
        tokio::spawn(async move {
            let (mut max_msgs, mut max_bytes, mut max_rss) = (0f64, 0f64, 0u64);
            while Instant::now() < stop {
                if let Ok(r) = client.get(&url).send().await {
                    let text = r.text().await.unwrap_or_default();
                    max_msgs = max_msgs.max(metric_sum(&text, "homeward_broker_queued_messages"));
                    max_bytes = max_bytes.max(metric_sum(&text, "homeward_broker_queued_bytes"));
                }
                max_rss = max_rss.max(rss_bytes().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (max_msgs, max_bytes, max_rss)
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await; // past the flooder's burst
    let mut latencies = Vec::new();
    for _ in 1..=3 {
        latencies.push(alarm(&mut hub).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let flooded = flooder.await.unwrap();
    // What reached the database by the end of the flood went through the broker's pacing.
    let (stored_by_then, _) = event_counts(&app.pool, "flood-hub").await;
    let (max_msgs, max_bytes, max_rss) = sampler.await.unwrap();

    for (i, latency) in latencies.iter().enumerate() {
        assert!(
            *latency < Duration::from_secs(5),
            "alarm {} acknowledged after {latency:?} (all: {latencies:?})",
            i + 1
        );
    }
    assert_eq!(
        event_counts(&app.pool, "pendant-hub").await,
        (3, 3),
        "every alarm stored exactly once"
    );
    let kinds: Vec<i32> = app
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT e.kind::int4 FROM events e JOIN devices d ON d.id = e.device_id WHERE d.uid = 'pendant-hub'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let pendant = homeward_proto::EventKind::PendantAlarm as i32;
    assert!(kinds.iter().all(|k| *k == pendant), "{kinds:?}");

    // The flooder was paced: the broker took no more than its burst plus its rate over the
    // flood (with slack; its client queued more, held back by TCP), and says it throttled it.
    let metrics = app.metrics().await;
    let allowed = 1000.0 + 500.0 * flood_for.as_secs_f64();
    assert!(
        stored_by_then > 0 && (stored_by_then as f64) < allowed * 1.15,
        "{stored_by_then} of the flooder's {flooded} events stored in {flood_for:?}"
    );
    assert!(
        metric_sum(&metrics, "homeward_broker_throttled_total") > 0.0,
        "{metrics}"
    );
    // Queues stayed within their bounds, and memory with them.
    assert!(
        max_msgs <= MAX_QUEUED_MESSAGES as f64,
        "queued messages peaked at {max_msgs}"
    );
    assert!(
        max_bytes <= MAX_QUEUED_BYTES as f64,
        "queued bytes peaked at {max_bytes}"
    );
    if let (Some(before), true) = (rss_before, max_rss > 0) {
        let growth = max_rss.saturating_sub(before);
        assert!(
            growth < 256 * 1024 * 1024,
            "resident memory grew by {} MiB during the flood",
            growth / (1024 * 1024)
        );
    }
    println!(
        "flood: {flooded} events queued by the client, {stored_by_then} stored in {flood_for:?}; alarm acks {latencies:?}; queues peaked at {max_msgs} messages / {max_bytes} bytes; rss before {rss_before:?}, peak {max_rss}"
    );
    drop(hub);
    app.stop().await;
}
