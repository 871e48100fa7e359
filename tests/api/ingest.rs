//! Durable ingest against real parts: the embedded broker, Mosquitto with mosquitto_pub, the
//! server killed hard, PostgreSQL restarted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use homeward::auth::{OrgKind, Role};
use homeward::config::EmbeddedIngest;
use homeward_proto::Encoding;
use homeward_testkit::db::event_counts;
use homeward_testkit::metrics::metric_value;
use homeward_testkit::mqtt::{heartbeat, publish_and_wait, run_device, DeviceRunSpec, TestDevice};
use homeward_testkit::{eventually, spawn_app, spawn_app_with, test_settings, Mosquitto};

async fn dead_letter_reasons(pool: &deadpool_postgres::Pool) -> Vec<(String, String)> {
    let client = pool.get().await.unwrap();
    client
        .query(
            "SELECT reason_code, reason FROM dead_letters ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn mqtt_events_are_stored_once_and_acknowledged_end_to_end() {
    stored_once_and_acknowledged(EmbeddedIngest::InProcess).await;
}

#[tokio::test]
async fn mqtt_events_are_stored_once_and_acknowledged_end_to_end_over_loopback() {
    stored_once_and_acknowledged(EmbeddedIngest::Loopback).await;
}

async fn stored_once_and_acknowledged(path: EmbeddedIngest) {
    let mut settings = test_settings();
    settings.mqtt.embedded_ingest = path;
    let app = spawn_app_with(settings).await;
    let (org, _) = app
        .org_with_user("Ingest Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let secret = app.device(&org, "hub-e2e", "hub").await;
    let base = chrono::Utc::now().timestamp_millis() - 60_000;
    let device = DeviceRunSpec::on(&app, "hub-e2e", &secret, base).sending(
        500,
        2000,
        Duration::from_secs(60),
    );
    let run = run_device(device.clone()).await;
    assert_eq!(run.sent, 500);
    assert!(
        run.unacked.is_empty(),
        "every event acknowledged end to end: {:?}",
        run.unacked
    );
    assert_eq!(event_counts(&app.pool, "hub-e2e").await, (500, 500));
    let metrics = app.metrics().await;
    let series = |outcome: &str| format!("homeward_ingest_events_total{{outcome=\"{outcome}\"}}");
    let counted = |text: &str, outcome: &str| metric_value(text, &series(outcome)).unwrap_or(0.0);
    // Every message is counted once: stored the first time, a duplicate when resent.
    assert_eq!(counted(&metrics, "stored"), 500.0, "{metrics}");
    assert_eq!(
        counted(&metrics, "duplicate"),
        run.resends as f64,
        "{metrics}"
    );

    // The same events again (a device that lost its acks): acknowledged, stored once.
    let again = run_device(device).await;
    assert!(again.unacked.is_empty());
    assert_eq!(event_counts(&app.pool, "hub-e2e").await, (500, 500));
    let metrics = app.metrics().await;
    assert_eq!(counted(&metrics, "stored"), 500.0, "{metrics}");
    assert_eq!(
        counted(&metrics, "duplicate"),
        (run.resends + 500 + again.resends) as f64,
        "each of the 500 counted as a duplicate: {metrics}"
    );

    // Both encodings (odd seqs JSON, even CBOR) decoded into the same columns, each with the
    // values the device put in.
    let client = app.pool.get().await.unwrap();
    let base_time = chrono::DateTime::from_timestamp_millis(base).unwrap();
    let rows = client
        .query(
            "SELECT seq, kind, occurred_at = $1::timestamptz + seq * interval '1 millisecond',
                    data, late
               FROM events WHERE seq IN (41, 42) ORDER BY seq",
            &[&base_time],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let seq: i64 = row.get(0);
        assert_eq!(row.get::<_, i16>(1), 16, "heartbeat, seq {seq}");
        assert!(row.get::<_, bool>(2), "device time, seq {seq}");
        assert_eq!(
            row.get::<_, serde_json::Value>(3),
            serde_json::json!({"battery": seq % 100, "signal": -70, "interval_s": 900}),
            "seq {seq}"
        );
        assert!(!row.get::<_, bool>(4));
    }
    // And every other event of either encoding the same way.
    let matching: i64 = client
        .query_one(
            "SELECT count(*) FROM events
              WHERE kind = 16 AND NOT late
                AND occurred_at = $1::timestamptz + seq * interval '1 millisecond'
                AND data = jsonb_build_object('battery', seq % 100, 'signal', -70, 'interval_s', 900)",
            &[&base_time],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(matching, 500);
    app.stop().await;
}

#[tokio::test]
async fn bad_payloads_become_dead_letters_and_the_stream_goes_on() {
    let app = spawn_app().await;
    let (org, token) = app
        .org_with_user("DL Org", OrgKind::Provider, Role::ProviderStaff)
        .await;
    let secret = app.device(&org, "hub-dl", "hub").await;
    let now = chrono::Utc::now().timestamp_millis();
    let future = now + 24 * 3600 * 1000;
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("invalid_json", b"{\"seq\":1,".to_vec()),
        ("invalid_cbor", vec![0xa3, 0x00, 0x01, 0xff]),
        ("unknown_kind", format!("{{\"seq\":2,\"t\":{now},\"kind\":\"fal_detected\"}}").into_bytes()),
        ("missing_field", format!("{{\"seq\":3,\"t\":{now},\"kind\":\"fall_detected\"}}").into_bytes()),
        ("out_of_range", format!("{{\"seq\":4,\"t\":{now},\"kind\":\"check_in\",\"method\":\"gps\",\"lat\":123.5,\"lon\":0}}").into_bytes()),
        ("time_in_future", format!("{{\"seq\":5,\"t\":{future},\"kind\":\"pendant_alarm\"}}").into_bytes()),
        ("oversize", format!("{{\"seq\":6,\"t\":{now},\"kind\":\"check_in\",\"method\":\"manual\",\"reason\":\"x\",\"memo\":\"{}\"}}", "a".repeat(5000)).into_bytes()),
    ];
    let mut payloads: Vec<Vec<u8>> = bad.iter().map(|(_, p)| p.clone()).collect();
    payloads.push(heartbeat(7, now, Encoding::Json));
    publish_and_wait(&app, "hub-dl", &secret, payloads).await;

    let stored = eventually(Duration::from_secs(10), || async {
        let (n, _) = event_counts(&app.pool, "hub-dl").await;
        (n == 1).then_some(())
    })
    .await;
    assert!(
        stored.is_some(),
        "the good event after the bad ones is stored"
    );
    let reasons = dead_letter_reasons(&app.pool).await;
    let codes: Vec<&str> = reasons.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        codes,
        bad.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        "{reasons:#?}"
    );
    assert!(
        reasons[4].1.contains("lat"),
        "the reason names the field: {}",
        reasons[4].1
    );
    assert!(reasons[3].1.contains("confidence"), "{}", reasons[3].1);

    // Listed for the organisation, with the raw bytes.
    let list: serde_json::Value = app
        .get("/v1/dead-letters?limit=3", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert_eq!(list["items"][0]["reason_code"], "oversize");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(list["items"][2]["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, bad[4].1);
    let next = list["next_before"].as_i64().unwrap();
    let rest: serde_json::Value = app
        .get(&format!("/v1/dead-letters?before={next}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 4);
    // Another organisation sees none of them.
    let (_, other) = app
        .org_with_user("Other Org", OrgKind::Provider, Role::ProviderStaff)
        .await;
    let list: serde_json::Value = app
        .get("/v1/dead-letters", Some(&other))
        .await
        .json()
        .await
        .unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("homeward_ingest_dead_letters_total"),
        "counted in metrics"
    );
    app.stop().await;
}

/// A device sends several events per message (wire format, "Batches"): each event is stored,
/// acknowledged end to end and, if bad, dead-lettered on its own; a malformed batch is one dead
/// letter; a resend of a batch doubles nothing.
#[tokio::test]
async fn batches_are_judged_event_by_event() {
    let app = spawn_app().await;
    let (org, _) = app
        .org_with_user("Batch Org", OrgKind::Provider, Role::ProviderStaff)
        .await;
    let secret = app.device(&org, "hub-batch", "hub").await;
    let now = chrono::Utc::now().timestamp_millis();
    let bad = format!("{{\"seq\":2,\"t\":{now},\"kind\":\"teleport\"}}").into_bytes();
    let json_parts = [
        heartbeat(1, now, Encoding::Json),
        bad.clone(),
        heartbeat(3, now, Encoding::Json),
    ];
    let refs: Vec<&[u8]> = json_parts.iter().map(Vec::as_slice).collect();
    let json_batch = homeward_proto::encode_batch_vec(&refs, Encoding::Json);
    let cbor_parts = [
        heartbeat(4, now, Encoding::Cbor),
        heartbeat(5, now, Encoding::Cbor),
    ];
    let refs: Vec<&[u8]> = cbor_parts.iter().map(Vec::as_slice).collect();
    let cbor_batch = homeward_proto::encode_batch_vec(&refs, Encoding::Cbor);
    let malformed = format!(
        "[{},",
        String::from_utf8(heartbeat(6, now, Encoding::Json)).unwrap()
    )
    .into_bytes();

    // Subscribed to its downlink (the SUBACK is in) so that no end-to-end ack is missed.
    let mut device = TestDevice::connect_quietly(&app, "hub-batch", &secret).await;
    for p in [&json_batch, &cbor_batch, &malformed, &json_batch] {
        device.publish_raw(p.clone()).await;
    }
    let mut acked = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < 4 && Instant::now() < deadline {
        if let Some(ranges) = device.next_ack(Duration::from_secs(5)).await {
            acked.extend(ranges.into_iter().flatten());
        }
    }
    assert_eq!(
        acked.into_iter().collect::<Vec<_>>(),
        vec![1, 3, 4, 5],
        "the stored seqs acked end to end"
    );
    let stored = eventually(Duration::from_secs(10), || async {
        let client = app.pool.get().await.unwrap();
        let n: i64 = client
            .query_one("SELECT count(*) FROM dead_letters", &[])
            .await
            .unwrap()
            .get(0);
        (n == 3).then_some(())
    })
    .await;
    assert!(
        stored.is_some(),
        "three dead letters: the bad event twice, the malformed batch once"
    );
    assert_eq!(
        event_counts(&app.pool, "hub-batch").await,
        (4, 4),
        "stored once, resend included"
    );

    let client = app.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT reason_code, reason, payload FROM dead_letters ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let first: (String, String, Vec<u8>) = (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(first.0, "unknown_kind");
    assert!(
        first.1.starts_with("event 2 of 3 in the batch: "),
        "{}",
        first.1
    );
    assert_eq!(
        first.2, bad,
        "the dead letter keeps the bad event's own bytes"
    );
    let second: (String, Vec<u8>) = (rows[1].get(0), rows[1].get(2));
    assert_eq!(
        second,
        ("invalid_json".to_string(), malformed),
        "a malformed batch is one dead letter"
    );
    app.stop().await;
}

#[tokio::test]
async fn phones_check_in_over_http_idempotently() {
    let app = spawn_app().await;
    let (org, _) = app
        .org_with_user("Phone Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let secret = app.device(&org, "phone-1", "phone").await;
    let now = chrono::Utc::now().timestamp_millis();
    let day_ago = now - 24 * 3600 * 1000;
    let post = |body: serde_json::Value, secret: &str| {
        let (app, secret) = (&app, secret.to_owned());
        async move {
            app.post_as_device("/v1/check-ins", "phone-1", &secret, &body)
                .await
        }
    };
    let check_in = serde_json::json!({"seq": 1, "t": now, "kind": "check_in", "method": "gps", "lat": 51.5, "lon": -0.12, "accuracy_m": 12.0, "visit": "V-1"});
    let r = post(check_in.clone(), &secret).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["items"][0]["status"], "stored");

    // A replay from store and forward: a batch with the first again and an old check-out.
    let batch = serde_json::json!([
        check_in,
        {"seq": 2, "t": day_ago, "kind": "check_out", "method": "tag", "tag": "HOME-42"},
    ]);
    let r = post(batch.clone(), &secret).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["items"][0]["status"], "duplicate");
    assert_eq!(body["items"][1]["status"], "stored");
    let client = app.pool.get().await.unwrap();
    let late: bool = client
        .query_one("SELECT late FROM events WHERE seq = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert!(late, "an old device time is marked as arriving late");
    assert_eq!(event_counts(&app.pool, "phone-1").await, (2, 2));

    // Wrong credentials, bad fields, telecare kinds.
    let r = post(batch.clone(), "wrong").await;
    assert_eq!(r.status(), 401);
    let r = post(serde_json::json!([{"seq": 3, "t": now, "kind": "check_in", "method": "gps", "lat": 91.0, "lon": 0.0}]), &secret).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "[0].lat", "{problem}");
    let r = post(
        serde_json::json!({"seq": 4, "t": now, "kind": "pendant_alarm"}),
        &secret,
    )
    .await;
    assert_eq!(r.status(), 422);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "kind");
    assert_eq!(
        event_counts(&app.pool, "phone-1").await,
        (2, 2),
        "nothing stored from rejected requests"
    );
    app.stop().await;
}

/// Runs mosquitto_pub without blocking the test's runtime (the server under test shares it).
async fn mosquitto_pub(port: u16, topic: &str, message: &str, auth: Option<(&str, &str)>) -> bool {
    let mut cmd = tokio::process::Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
        "-m",
        message,
    ]);
    if let Some((user, password)) = auth {
        cmd.args(["-i", user, "-u", user, "-P", password]);
    }
    cmd.stderr(Stdio::null());
    cmd.status()
        .await
        .expect("mosquitto_pub is installed")
        .success()
}

/// Waits for one message on `topic` with mosquitto_sub, in the background. Returns once
/// mosquitto_sub has its SUBACK (its debug output says so), with the thread that yields the
/// message.
async fn mosquitto_sub_one(
    port: u16,
    topic: &str,
    auth: Option<(&str, &str)>,
) -> std::thread::JoinHandle<String> {
    // Line-buffered, or the debug lines wait in a pipe buffer until mosquitto_sub exits.
    let mut cmd = Command::new("stdbuf");
    cmd.args([
        "-oL",
        "mosquitto_sub",
        "-d",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
        "-C",
        "1",
        "-W",
        "20",
    ])
    .stdout(Stdio::piped());
    if let Some((user, password)) = auth {
        cmd.args(["-i", user, "-u", user, "-P", password]);
    }
    let mut child = cmd.spawn().expect("mosquitto_sub runs");
    let stdout = child.stdout.take().unwrap();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut subscribed_tx = Some(subscribed_tx);
        let mut message = String::new();
        // Debug lines start with "Client "; the message is the line that does not.
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            if line.starts_with("Client ") {
                if line.contains("received SUBACK") {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
            } else if !line.starts_with("Subscribed") {
                message.push_str(&line);
                message.push('\n');
            }
        }
        let _ = child.wait();
        message
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("mosquitto_sub subscribes in time")
        .expect("mosquitto_sub got its SUBACK");
    reader
}

#[tokio::test]
async fn interoperates_with_mosquitto_and_its_clients() {
    let broker = Mosquitto::start();
    let mut settings = test_settings();
    settings.mqtt.url = Some(homeward::config::Secret::new(format!(
        "mqtt://127.0.0.1:{}",
        broker.port
    )));
    settings.mqtt.client_id = format!("homeward-test-{}", broker.port);
    let app = spawn_app_with(settings).await;
    let (org, _) = app
        .org_with_user("Mosq Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    app.device(&org, "hub-m1", "hub").await;
    let now = chrono::Utc::now().timestamp_millis();
    let ack = mosquitto_sub_one(broker.port, "homeward/v1/hub-m1/downlink", None).await;
    assert!(
        mosquitto_pub(
            broker.port,
            "homeward/v1/hub-m1/events",
            &format!("{{\"seq\":1,\"t\":{now},\"kind\":\"fall_detected\",\"confidence\":91}}"),
            None
        )
        .await
    );
    let ack = tokio::task::spawn_blocking(move || ack.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        ack.trim(),
        "{\"type\":\"ack\",\"stored\":[[1,1]]}",
        "end-to-end ack through Mosquitto"
    );
    assert_eq!(event_counts(&app.pool, "hub-m1").await, (1, 1));
    // The device's retained status reaches presence.
    assert!(mosquitto_pub(broker.port, "homeward/v1/hub-m1/status", "online", None).await);
    let online = eventually(Duration::from_secs(10), || async {
        let client = app.pool.get().await.ok()?;
        let row = client
            .query_opt("SELECT online FROM device_presence", &[])
            .await
            .ok()??;
        row.get::<_, bool>(0).then_some(())
    })
    .await;
    assert!(online.is_some());
    app.stop().await;
}

#[tokio::test]
async fn mosquitto_clients_work_with_the_embedded_broker() {
    let app = spawn_app().await;
    let (org, _) = app
        .org_with_user("Emb Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let secret = app.device(&org, "hub-x1", "hub").await;
    let now = chrono::Utc::now().timestamp_millis();
    let port = app.mqtt.port;
    let message = format!("{{\"seq\":1,\"t\":{now},\"kind\":\"smoke\"}}");
    assert!(
        mosquitto_pub(
            port,
            "homeward/v1/hub-x1/events",
            &message,
            Some(("hub-x1", &secret))
        )
        .await
    );
    let stored = eventually(Duration::from_secs(10), || async {
        (event_counts(&app.pool, "hub-x1").await == (1, 1)).then_some(())
    })
    .await;
    assert!(stored.is_some(), "mosquitto_pub's event is stored");
    // The wrong secret is refused: mosquitto_pub exits with an error.
    assert!(
        !mosquitto_pub(
            port,
            "homeward/v1/hub-x1/events",
            &message,
            Some(("hub-x1", "wrong"))
        )
        .await
    );
    app.stop().await;
}
