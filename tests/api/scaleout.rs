//! Two instances, each its own `homeward serve` process, on one database and one shared
//! subscription on a clustered-style broker (Mosquitto, `$share`): each stores a share of the
//! stream (read from each one's own `/metrics`), a dashboard on either sees the alarms the
//! other raised (relayed through the database) and another organisation's dashboard sees none
//! of them, and when one instance is killed mid-stream every event is still stored once.

use std::time::Duration;

use homeward::auth::{self, OrgKind, Role};
use homeward::db::build_pool;
use homeward_proto::EventBody;
use homeward_testkit::cluster::TestServer;
use homeward_testkit::db::{event_counts, serve_database_envs};
use homeward_testkit::metrics::metric_value;
use homeward_testkit::mqtt::{run_device, DeviceRunSpec, TestDevice};
use homeward_testkit::process::ServeProcess;
use homeward_testkit::sse::{Arrived, SseReader};
use homeward_testkit::{eventually, free_port, Mosquitto};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::helpers::serve;

const WAIT: Duration = Duration::from_secs(10);

/// How soon a dashboard on one instance must show an alarm another instance stored.
const RELAY_BOUND: Duration = Duration::from_secs(1);

const RAISED: &str = r#"homeward_alarm_transitions_total{category="care",transition="raised"}"#;
const STORED: &str = r#"homeward_ingest_events_total{outcome="stored"}"#;

/// One series of an instance's own `/metrics` (0 while absent).
async fn metric(http: &reqwest::Client, server: &ServeProcess, series: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", server.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_value(&text, series).unwrap_or(0.0)
}

/// One frame of a live stream, its data read as JSON, and when it arrived.
#[derive(Debug)]
struct Frame {
    event: String,
    data: Value,
    at: Instant,
}

/// Opens `GET /v1/live` and reads it in the background, timing each frame as it arrives.
async fn live_stream(
    http: &reqwest::Client,
    server: &ServeProcess,
    token: &str,
) -> mpsc::UnboundedReceiver<Arrived> {
    SseReader::open_at(http, &server.http, token)
        .await
        .in_background()
}

/// The next frame whose data is JSON (`None` once the stream has ended).
async fn recv(rx: &mut mpsc::UnboundedReceiver<Arrived>) -> Option<Frame> {
    while let Some(Arrived { frame, at }) = rx.recv().await {
        if let Ok(data) = serde_json::from_str(&frame.data) {
            return Some(Frame {
                event: frame.event,
                data,
                at,
            });
        }
    }
    None
}

/// The `raised` frame of `uid`'s alarm on this stream (other frames are skipped).
async fn raised_frame(rx: &mut mpsc::UnboundedReceiver<Arrived>, uid: &str) -> Frame {
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = recv(rx).await.expect("stream open");
            let data = &frame.data["data"];
            if frame.event == "alarm" && data["device_uid"] == uid && data["transition"] == "raised"
            {
                return frame;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the alarm of {uid} on the stream in time"))
}

/// A pendant presses its button once; returns when Homeward's end-to-end acknowledgement,
/// sent once the event is stored, reached it.
async fn press_pendant(port: u16, uid: &str) -> Instant {
    let mut pendant = TestDevice::connect_anonymously("127.0.0.1", port, uid).await;
    let seq = pendant.send(EventBody::PendantAlarm).await;
    pendant.acked(seq, WAIT).await
}

#[tokio::test]
async fn two_instances_split_the_stream_share_their_live_changes_and_store_every_event_once_when_one_is_killed(
) {
    let mosquitto = Mosquitto::start();
    let port = mosquitto.port;
    let db = TestServer::get()
        .await
        .unwrap()
        .fresh_database()
        .await
        .unwrap();
    let pool = build_pool(db.clone(), 2, 5);
    let pendants: Vec<String> = (1..=8).map(|n| format!("pendant-s{n}")).collect();
    let (staff, other_staff) = {
        let client = pool.get().await.unwrap();
        let org = auth::create_organisation(&**client, "Shared Org", OrgKind::Provider)
            .await
            .unwrap();
        let (_, staff) = auth::create_user(&**client, &org, "Shared staff", Role::ProviderStaff)
            .await
            .unwrap();
        homeward::devices::create_device(&**client, &org, "hub-s1", "hub".parse().unwrap())
            .await
            .unwrap();
        for uid in &pendants {
            homeward::devices::create_device(&**client, &org, uid, "pendant".parse().unwrap())
                .await
                .unwrap();
        }
        let other = auth::create_organisation(&**client, "Other Org", OrgKind::Provider)
            .await
            .unwrap();
        let (_, other_staff) =
            auth::create_user(&**client, &other, "Other staff", Role::ProviderStaff)
                .await
                .unwrap();
        homeward::devices::create_device(
            &**client,
            &other,
            "pendant-y",
            "pendant".parse().unwrap(),
        )
        .await
        .unwrap();
        (staff, other_staff)
    };
    let instance = |n: u32| {
        let mut envs = serve_database_envs(&db);
        envs.extend([
            ("HOMEWARD__MQTT__URL", format!("mqtt://127.0.0.1:{port}")),
            ("HOMEWARD__MQTT__CLIENT_ID", format!("homeward-{port}-{n}")),
            ("HOMEWARD__MQTT__SHARED_GROUP", "homeward".into()),
        ]);
        envs
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(&instance(1), free_port().unwrap(), dir_a.path()).await;
    let b = serve(&instance(2), free_port().unwrap(), dir_b.path()).await;
    let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();

    // Live changes: dashboards of the organisation on both instances, and one of another
    // organisation on B. Pendants press one after another until each instance has raised an
    // alarm (the broker hands the shared subscription's messages out in turn); which instance
    // raised it is read from the instances' own counters.
    // (Without the request timeout, which would cut the streams.)
    let streams = reqwest::Client::new();
    let mut on_a = live_stream(&streams, &a, &staff).await;
    let mut on_b = live_stream(&streams, &b, &staff).await;
    let mut other_on_b = live_stream(&streams, &b, &other_staff).await;
    let (mut a_to_b, mut b_to_a) = (None, None);
    let mut raised_by_a = 0.0;
    for (n, uid) in pendants.iter().enumerate() {
        let acked = press_pendant(port, uid).await;
        let (by_a, _) = eventually(WAIT, || async {
            let counts = (
                metric(&http, &a, RAISED).await,
                metric(&http, &b, RAISED).await,
            );
            (counts.0 + counts.1 == (n + 1) as f64).then_some(counts)
        })
        .await
        .expect("one instance raised the alarm");
        // Both streams show it, wherever it was raised.
        let (seen_a, seen_b) = (
            raised_frame(&mut on_a, uid).await,
            raised_frame(&mut on_b, uid).await,
        );
        if by_a > raised_by_a {
            a_to_b.get_or_insert(seen_b.at.saturating_duration_since(acked));
        } else {
            b_to_a.get_or_insert(seen_a.at.saturating_duration_since(acked));
        }
        raised_by_a = by_a;
        if a_to_b.is_some() && b_to_a.is_some() {
            break;
        }
    }
    eprintln!("relayed alarm latency: A to B {a_to_b:?}, B to A {b_to_a:?}");
    let a_to_b = a_to_b.expect("an alarm raised through A");
    let b_to_a = b_to_a.expect("an alarm raised through B");
    assert!(
        a_to_b < RELAY_BOUND,
        "B's dashboard showed A's alarm {a_to_b:?} after A acknowledged it"
    );
    assert!(
        b_to_a < RELAY_BOUND,
        "A's dashboard showed B's alarm {b_to_a:?} after B acknowledged it"
    );
    // The other organisation's dashboard: its first frame is its own alarm, raised after all
    // of the first organisation's had reached B; none of those came before it.
    press_pendant(port, "pendant-y").await;
    let first = tokio::time::timeout(WAIT, recv(&mut other_on_b))
        .await
        .expect("the other organisation's alarm in time")
        .unwrap();
    assert_eq!(
        (first.event.as_str(), &first.data["data"]["device_uid"]),
        ("alarm", &Value::from("pendant-y")),
        "another organisation's dashboard got {first:?}"
    );
    drop((on_a, on_b, other_on_b));

    // The split: one device streams through the shared subscription; both instances store a
    // share, by their own counts.
    let (stored_a, stored_b) = (
        metric(&http, &a, STORED).await,
        metric(&http, &b, STORED).await,
    );
    let count = 2000;
    let base = chrono::Utc::now().timestamp_millis() - 60_000;
    let device = tokio::spawn(run_device(DeviceRunSpec {
        host: "127.0.0.1".into(),
        port,
        uid: "hub-s1".into(),
        auth: None,
        base_ms: base,
        count,
        rate: 500,
        deadline: Duration::from_secs(120),
    }));
    let mid = eventually(Duration::from_secs(30), || async {
        let (n, _) = event_counts(&pool, "hub-s1").await;
        (n > 400).then_some(n)
    })
    .await;
    assert!(mid.is_some(), "events flow before the kill");
    let share_a = metric(&http, &a, STORED).await - stored_a;
    let share_b = metric(&http, &b, STORED).await - stored_b;
    let (in_db, _) = event_counts(&pool, "hub-s1").await;
    eprintln!("stored so far: {share_a} by A, {share_b} by B, {in_db} in the database");
    assert!(
        share_a > 0.0 && share_b > 0.0,
        "each instance stored a share: A {share_a}, B {share_b}"
    );
    assert!(
        share_a + share_b <= in_db as f64,
        "the instances stored no more than the database holds"
    );

    // One instance is killed outright: no shutdown, no acknowledgement of what it held.
    a.kill_hard().await;
    let (at_kill, _) = event_counts(&pool, "hub-s1").await;
    assert!(
        at_kill < count as i64,
        "killed mid-stream: {at_kill} of {count} stored"
    );
    let run = device.await.unwrap();
    eprintln!(
        "{at_kill} stored at the kill; the device resent {} events",
        run.resends
    );
    assert!(
        run.unacked.is_empty(),
        "{} unacknowledged",
        run.unacked.len()
    );
    assert_eq!(
        event_counts(&pool, "hub-s1").await,
        (count as i64, count as i64),
        "every (device, seq) exactly once"
    );
    b.stop(Duration::from_secs(60)).await;
}
