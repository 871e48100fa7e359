//! A NUL character (U+0000) in an event's text: valid JSON and CBOR, but PostgreSQL's `text`
//! and `jsonb` cannot hold it. The wire format refuses it at decoding, so over MQTT the event
//! is a dead letter naming the field while the good events around it (the same message's
//! included) are stored once and acknowledged, and nothing waits on the database; over HTTP the
//! check-in is a 422 naming the field.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use homeward::auth::{OrgKind, Role};
use homeward_proto::{Encoding, Event, EventBody, Id, Memo, VisitCheck};
use homeward_testkit::db::event_counts;
use homeward_testkit::metrics::metric_value;
use homeward_testkit::mqtt::{heartbeat, TestDevice};
use homeward_testkit::{eventually, spawn_app};

const NUL_REASON: &str = "field `memo`: must not contain the character U+0000 (NUL)";

/// A manual check-in whose memo has a NUL in the middle, as JSON (`\u0000`).
fn nul_check_in_json(seq: u64, t: i64) -> Vec<u8> {
    format!(
        r#"{{"seq":{seq},"t":{t},"kind":"check_in","method":"manual","reason":"r","memo":"door\u0000code"}}"#
    )
    .into_bytes()
}

/// The same as CBOR: a valid check-in whose memo's `?` is then made a 0x00 byte.
fn nul_check_in_cbor(seq: u64, t: i64) -> Vec<u8> {
    let check =
        VisitCheck::by_manual(Id::new("r").unwrap()).with_memo(Memo::new("door?code").unwrap());
    let event = Event::new(seq, t, EventBody::CheckIn(check)).unwrap();
    let mut cbor = homeward_proto::encode_event_vec(&event, Encoding::Cbor);
    let at = cbor
        .windows(9)
        .position(|w| w == b"door?code")
        .expect("the memo's bytes");
    cbor[at + 4] = 0;
    cbor
}

#[tokio::test]
async fn nul_in_a_memo_over_mqtt_is_dead_lettered_and_the_good_events_flow() {
    let app = spawn_app().await;
    let (org, token) = app
        .org_with_user("NUL Org", OrgKind::Provider, Role::ProviderStaff)
        .await;
    let secret = app.device(&org, "hub-nul", "hub").await;
    let now = chrono::Utc::now().timestamp_millis();
    let json_bad = nul_check_in_json(2, now);
    let cbor_bad = nul_check_in_cbor(4, now);
    let batch_bad = nul_check_in_json(6, now);
    let parts = [
        heartbeat(5, now, Encoding::Json),
        batch_bad.clone(),
        heartbeat(7, now, Encoding::Json),
    ];
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let batch = homeward_proto::encode_batch_vec(&refs, Encoding::Json);

    let mut device = TestDevice::connect_quietly(&app, "hub-nul", &secret).await;
    for payload in [
        heartbeat(1, now, Encoding::Json),
        json_bad.clone(),
        heartbeat(3, now, Encoding::Cbor),
        cbor_bad.clone(),
        batch,
        heartbeat(8, now, Encoding::Json),
    ] {
        device.publish_raw(payload).await;
    }

    // Every good event is acknowledged end to end, none of the bad ones.
    let good = BTreeSet::from([1, 3, 5, 7, 8]);
    let mut acked = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !good.is_subset(&acked) && Instant::now() < deadline {
        if let Some(ranges) = device.next_ack(Duration::from_secs(5)).await {
            acked.extend(ranges.into_iter().flatten());
        }
    }
    assert_eq!(acked, good, "the stored seqs acked end to end, no others");
    assert_eq!(
        event_counts(&app.pool, "hub-nul").await,
        (5, 5),
        "the good events stored once each"
    );

    let dead = eventually(Duration::from_secs(10), || async {
        let client = app.pool.get().await.unwrap();
        let rows = client
            .query(
                "SELECT reason_code, reason, payload, organisation_id FROM dead_letters ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        (rows.len() == 3).then_some(rows)
    })
    .await
    .expect("three dead letters: JSON, CBOR, and the bad event of the batch");
    let expected = [
        (NUL_REASON.to_string(), json_bad),
        (NUL_REASON.to_string(), cbor_bad),
        (
            format!("event 2 of 3 in the batch: {NUL_REASON}"),
            batch_bad,
        ),
    ];
    for (row, (reason, payload)) in dead.iter().zip(expected) {
        assert_eq!(row.get::<_, String>(0), "invalid_value");
        assert_eq!(row.get::<_, String>(1), reason);
        assert_eq!(row.get::<_, Vec<u8>>(2), payload, "the raw bytes are kept");
        assert_eq!(
            row.get::<_, Option<i32>>(3),
            Some(org.id),
            "the device's organisation"
        );
    }
    // Listed for the organisation, JSON payloads as text.
    let list = app.get_ok("/v1/dead-letters", &token).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{list}");
    assert_eq!(items[0]["reason_code"], "invalid_value");

    // Refused at decoding: the database never refused a batch, so nothing was held or retried.
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, "homeward_ingest_retries_total").unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
    let client = app.pool.get().await.unwrap();
    let refused: i64 = client
        .query_one(
            "SELECT count(*) FROM dead_letters WHERE reason_code = 'storage_refused'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(refused, 0);

    // And the stream goes on.
    device.publish_raw(heartbeat(9, now, Encoding::Cbor)).await;
    device.acked(9, Duration::from_secs(10)).await;
    assert_eq!(event_counts(&app.pool, "hub-nul").await, (6, 6));
    app.stop().await;
}

#[tokio::test]
async fn nul_in_a_memo_over_http_is_a_422_naming_the_field() {
    let app = spawn_app().await;
    let (org, _) = app
        .org_with_user("NUL Phone Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let secret = app.device(&org, "phone-nul", "phone").await;
    let now = chrono::Utc::now().timestamp_millis();
    let good = serde_json::json!({
        "seq": 1, "t": now, "kind": "check_in", "method": "manual", "reason": "r", "memo": "a\u{1}b"
    });
    let bad = serde_json::json!({
        "seq": 2, "t": now, "kind": "check_out", "method": "manual", "reason": "r", "memo": "a\u{0}b"
    });

    let r = app
        .post_as_device(
            "/v1/check-ins",
            "phone-nul",
            &secret,
            &serde_json::json!([good, bad]),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["errors"].as_array().unwrap().len(), 1, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "[1].memo", "{problem}");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("U+0000")),
        "{problem}"
    );
    let r = app
        .post_as_device("/v1/check-ins", "phone-nul", &secret, &bad)
        .await;
    assert_eq!(r.status(), 422);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "memo", "{problem}");
    assert_eq!(
        event_counts(&app.pool, "phone-nul").await,
        (0, 0),
        "nothing stored from rejected requests"
    );

    // The good one alone is stored; a memo's other control characters are fine.
    let r = app
        .post_as_device("/v1/check-ins", "phone-nul", &secret, &good)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(event_counts(&app.pool, "phone-nul").await, (1, 1));
    app.stop().await;
}

/// A NUL in a path id or a query value would reach PostgreSQL, which cannot store it, and fail
/// there as an internal error: every route refuses it with 400 first, and the same requests
/// without it are answered as usual.
#[tokio::test]
async fn nul_in_a_path_or_query_is_a_400_on_every_route() {
    let app = spawn_app().await;
    let (org, token) = app
        .org_with_user("NUL Path Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    app.device(&org, "hub-nul", "hub").await;
    let policy = serde_json::json!({ "geofence_policy": "warn" });
    let cases: [(reqwest::Method, &str, &str, Option<&serde_json::Value>); 3] = [
        (
            reqwest::Method::GET,
            "/v1/devices/hub-nul%00",
            "/v1/devices/hub-nul",
            None,
        ),
        (
            reqwest::Method::PUT,
            "/v1/geofence-policies/north%00",
            "/v1/geofence-policies/north",
            Some(&policy),
        ),
        (
            reqwest::Method::GET,
            "/v1/alarms?status=all%00",
            "/v1/alarms?status=all",
            None,
        ),
    ];
    for (method, with_nul, without, body) in cases {
        let r = app
            .request(method.clone(), with_nul, Some(&token), body)
            .await;
        assert_eq!(r.status(), 400, "{method} {with_nul}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = r.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap_or("").contains("NUL"),
            "{method} {with_nul}: {problem}"
        );
        let r = app
            .request(method.clone(), without, Some(&token), body)
            .await;
        assert!(
            r.status().is_success(),
            "{method} {without}: {}",
            r.status()
        );
    }
}
