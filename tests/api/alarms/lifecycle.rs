//! An alarm from the device to closed: the live stream, notices to hubs, repeats folding
//! into the open alarm, long lies and the night-only door rule.

use homeward_proto::{EventBody, Notice, NoticeKind, Percent};
use homeward_testkit::mqtt::TestDevice;
use homeward_testkit::spawn_app;
use serde_json::{json, Value};

use super::{alarm, alarms_until, open_alarms, person_with, provider};

#[tokio::test]
async fn alarm_lifecycle_from_pendant_to_closed_with_live_stream_and_notices() {
    let app = spawn_app().await;
    let p = provider(&app, "Lifecycle Care").await;
    let (person, secrets) = person_with(
        &app,
        &p.org,
        "P-1",
        &[("pendant-l1", "pendant"), ("hub-l1", "hub")],
    )
    .await;
    let mut pendant = TestDevice::connect(&app, "pendant-l1", &secrets[0]).await;
    let mut hub = TestDevice::connect(&app, "hub-l1", &secrets[1]).await;
    let mut live = app.live(&p.staff).await;

    let seq = pendant.send(EventBody::PendantAlarm).await;
    let raised = live.next("alarm", |d| d["transition"] == "raised").await;
    let data = &raised["data"];
    // The load-test contract: id, state, kind, device_uid and seq in every alarm event.
    assert_eq!(data["state"], "raised");
    assert_eq!(data["kind"], "pendant_alarm");
    assert_eq!(data["severity"], "critical");
    assert_eq!(data["device_uid"], "pendant-l1");
    assert_eq!(data["seq"], seq);
    assert_eq!(data["person_id"], person);
    assert_eq!(raised["topic"], "alarm");
    let id = data["id"].as_i64().unwrap();

    // Resolving before anyone answered is refused, naming the state.
    let (status, problem) = app
        .post_json(
            &format!("/v1/alarms/{id}/resolve"),
            &p.staff,
            &serde_json::json!({"outcome": "resolved_by_talking"}),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(problem["type"], "/problems/conflict");
    assert!(
        problem["detail"].as_str().unwrap().contains("raised"),
        "{problem}"
    );
    // A responder may not acknowledge.
    let (status, _) = app
        .post_json(
            &format!("/v1/alarms/{id}/acknowledge"),
            &p.responder,
            &Value::Null,
        )
        .await;
    assert_eq!(status, 403);
    // A note with a NUL (which PostgreSQL cannot store) is refused naming the field, and the
    // alarm stays raised (the acknowledgement below still finds it so).
    let (status, problem) = app
        .post_json(
            &format!("/v1/alarms/{id}/acknowledge"),
            &p.staff,
            &serde_json::json!({"note": "at the door\u{0}"}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "note", "{problem}");

    let (status, body) = app
        .post_json(
            &format!("/v1/alarms/{id}/acknowledge"),
            &p.staff,
            &Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "acknowledged");
    assert!(body["acknowledged_at"].is_string());
    let acked = live
        .next("alarm", |d| d["transition"] == "acknowledged")
        .await;
    assert_eq!(acked["data"]["id"], id);
    assert_eq!(acked["data"]["device_uid"], "pendant-l1");
    assert_eq!(acked["data"]["seq"], seq);
    // The person's hub hears it (not only the pendant that raised it).
    assert_eq!(
        hub.notice().await,
        Notice {
            kind: NoticeKind::AlarmAcknowledged,
            alarm: Some(id as u64)
        }
    );
    // Acknowledging twice: 409 naming the state.
    let (status, problem) = app
        .post_json(
            &format!("/v1/alarms/{id}/acknowledge"),
            &p.staff,
            &Value::Null,
        )
        .await;
    assert_eq!(status, 409);
    assert!(problem["detail"].as_str().unwrap().contains("acknowledged"));

    let (status, _) = app
        .post_json(
            &format!("/v1/alarms/{id}/dispatch"),
            &p.staff,
            &serde_json::json!({"note": "Sam on the way"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(hub.notice().await.kind, NoticeKind::HelpOnTheWay);

    // The responder presses "present" at the hub (SCAIP 0088).
    hub.send(EventBody::ResponderPresent).await;
    live.next("alarm", |d| d["transition"] == "on_site" && d["id"] == id)
        .await;

    let (status, body) = app
        .post_json(
            &format!("/v1/alarms/{id}/resolve"),
            &p.responder,
            &serde_json::json!({"outcome": "responder_attended_no_injury"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "responder_attended_no_injury");
    assert_eq!(hub.notice().await.kind, NoticeKind::AlarmResolved);
    let (status, body) = app
        .post_json(&format!("/v1/alarms/{id}/close"), &p.staff, &Value::Null)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "closed");

    // Every step has its time, and the history says who and what caused it.
    let full = alarm(&app, &p.staff, id).await;
    let a = &full["alarm"];
    for field in [
        "raised_at",
        "received_at",
        "acknowledged_at",
        "dispatched_at",
        "on_site_at",
        "resolved_at",
        "closed_at",
    ] {
        assert!(a[field].is_string(), "{field} is set: {a}");
    }
    let steps: Vec<&str> = full["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["transition"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "raised",
            "acknowledged",
            "dispatched",
            "on_site",
            "resolved",
            "closed"
        ]
    );
    assert_eq!(full["history"][1]["user"], "Lifecycle Care user");
    assert_eq!(full["history"][2]["note"], "Sam on the way");
    assert_eq!(full["history"][3]["device_uid"], "hub-l1");
    assert!(open_alarms(&app, &p.staff).await.is_empty());

    // Another organisation sees none of it and cannot act on it.
    let other = provider(&app, "Other Care").await;
    assert_eq!(
        app.get(&format!("/v1/alarms/{id}"), Some(&other.staff))
            .await
            .status(),
        404
    );
    let (status, problem) = app
        .post_json(
            &format!("/v1/alarms/{id}/acknowledge"),
            &other.staff,
            &Value::Null,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(problem["type"], "/problems/not-found");
    // Outcome codes are checked.
    let (status, problem) = app
        .post_json(
            "/v1/alarms/1/resolve",
            &p.staff,
            &serde_json::json!({"outcome": "fine"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "outcome");
    app.stop().await;
}

#[tokio::test]
async fn repeats_fold_into_the_open_alarm_by_person_or_by_device() {
    let app = spawn_app().await;
    let p = provider(&app, "Fold Care").await;
    let (_, secrets) = person_with(
        &app,
        &p.org,
        "P-2",
        &[("pendant-f1", "pendant"), ("hub-f1", "hub")],
    )
    .await;
    let lone_secret = app.device(&p.org, "sensor-f2", "sensor").await;
    let mut pendant = TestDevice::connect(&app, "pendant-f1", &secrets[0]).await;
    let mut hub = TestDevice::connect(&app, "hub-f1", &secrets[1]).await;
    let mut lone = TestDevice::connect(&app, "sensor-f2", &lone_secret).await;
    let mut live = app.live(&p.staff).await;

    pendant.send(EventBody::PendantAlarm).await;
    let first = live.next("alarm", |d| d["transition"] == "raised").await;
    let id = first["data"]["id"].as_i64().unwrap();
    // The same kind from another device of the same person, while the first is open.
    let seq = hub.send(EventBody::PendantAlarm).await;
    let repeat = live.next("alarm", |d| d["transition"] == "repeated").await;
    assert_eq!(repeat["data"]["id"], id);
    assert_eq!(repeat["data"]["count"], 2);
    assert_eq!(repeat["data"]["device_uid"], "hub-f1");
    assert_eq!(repeat["data"]["seq"], seq);
    // Another kind opens its own alarm.
    hub.send(EventBody::Smoke).await;
    // A device with no person folds by device.
    lone.send(EventBody::Flood).await;
    lone.send(EventBody::Flood).await;
    let alarms = alarms_until(&app, &p.staff, |a| {
        a.len() == 3 && a.iter().any(|x| x["kind"] == "flood" && x["count"] == 2)
    })
    .await;
    let pendant_alarm = alarms
        .iter()
        .find(|a| a["kind"] == "pendant_alarm")
        .unwrap();
    assert_eq!(pendant_alarm["count"], 2);
    assert!(
        pendant_alarm["last_seen_at"].as_str().unwrap()
            >= pendant_alarm["raised_at"].as_str().unwrap()
    );
    let flood = alarms.iter().find(|a| a["kind"] == "flood").unwrap();
    assert_eq!(flood["person_id"], Value::Null);
    // Sorted most severe first: smoke and pendant (critical) before flood (high).
    assert_eq!(alarms[2]["kind"], "flood");

    // Once resolved, the same kind opens a new alarm.
    app.post_json(
        &format!("/v1/alarms/{id}/acknowledge"),
        &p.staff,
        &Value::Null,
    )
    .await;
    let (status, _) = app
        .post_json(
            &format!("/v1/alarms/{id}/resolve"),
            &p.staff,
            &serde_json::json!({"outcome": "false_or_accidental"}),
        )
        .await;
    assert_eq!(status, 200);
    pendant.send(EventBody::PendantAlarm).await;
    let again = live
        .next("alarm", |d| {
            d["transition"] == "raised" && d["kind"] == "pendant_alarm"
        })
        .await;
    assert_ne!(again["data"]["id"], id);
    assert_eq!(again["data"]["count"], 1);

    // A fall cancelled by the wearer after it was sent resolves it as false or accidental.
    pendant
        .send(EventBody::FallDetected {
            confidence: Percent::new(90).unwrap(),
        })
        .await;
    let fall = live.next("alarm", |d| d["kind"] == "fall_detected").await;
    assert_eq!(fall["data"]["is_fall"], true);
    pendant
        .send(EventBody::FallCancelled { confidence: None })
        .await;
    let cancelled = live
        .next("alarm", |d| {
            d["kind"] == "fall_detected" && d["state"] == "resolved"
        })
        .await;
    assert_eq!(cancelled["data"]["outcome"], "false_or_accidental");
    app.stop().await;
}

#[tokio::test]
async fn a_fall_reached_an_hour_or_more_later_is_a_long_lie() {
    let app = spawn_app().await;
    let p = provider(&app, "Falls Care").await;
    let (_, secrets) = person_with(&app, &p.org, "P-3", &[("pendant-ll", "fall_detector")]).await;
    let (_, secrets2) = person_with(&app, &p.org, "P-4", &[("pendant-ok", "fall_detector")]).await;
    let mut late = TestDevice::connect(&app, "pendant-ll", &secrets[0]).await;
    let mut quick = TestDevice::connect(&app, "pendant-ok", &secrets2[0]).await;
    // The fall happened 70 minutes ago (the pendant was out of reach: store and forward).
    late.send_at(
        EventBody::FallDetected {
            confidence: Percent::new(95).unwrap(),
        },
        70 * 60 * 1000,
    )
    .await;
    quick
        .send(EventBody::FallDetected {
            confidence: Percent::new(95).unwrap(),
        })
        .await;
    let alarms = alarms_until(&app, &p.staff, |a| a.len() == 2).await;
    let id_of = |uid: &str| {
        alarms.iter().find(|a| a["device_uid"] == uid).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (late_id, quick_id) = (id_of("pendant-ll"), id_of("pendant-ok"));
    for id in [late_id, quick_id] {
        app.post_json(
            &format!("/v1/alarms/{id}/acknowledge"),
            &p.staff,
            &Value::Null,
        )
        .await;
        app.post_json(&format!("/v1/alarms/{id}/dispatch"), &p.staff, &Value::Null)
            .await;
        let (status, body) = app
            .post_json(
                &format!("/v1/alarms/{id}/arrive"),
                &p.responder,
                &Value::Null,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let late_alarm = &alarm(&app, &p.staff, late_id).await["alarm"];
    assert_eq!(late_alarm["is_fall"], true);
    assert_eq!(late_alarm["long_lie"], true, "{late_alarm}");
    let quick_alarm = &alarm(&app, &p.staff, quick_id).await["alarm"];
    assert_eq!(quick_alarm["is_fall"], true);
    assert_eq!(quick_alarm["long_lie"], false);

    // A pendant press that turns out to be a fall is marked at resolution; with a late arrival
    // it is a long lie too.
    late.send_at(EventBody::PendantAlarm, 65 * 60 * 1000).await;
    let alarms = alarms_until(&app, &p.staff, |a| {
        a.iter().any(|x| x["kind"] == "pendant_alarm")
    })
    .await;
    let id = alarms
        .iter()
        .find(|a| a["kind"] == "pendant_alarm")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    app.post_json(
        &format!("/v1/alarms/{id}/acknowledge"),
        &p.staff,
        &Value::Null,
    )
    .await;
    app.post_json(
        &format!("/v1/alarms/{id}/arrive"),
        &p.responder,
        &Value::Null,
    )
    .await;
    let (_, body) = app
        .post_json(
            &format!("/v1/alarms/{id}/resolve"),
            &p.responder,
            &serde_json::json!({"outcome": "minor_injury_treated_at_home", "fall": true}),
        )
        .await;
    assert_eq!(body["is_fall"], true);
    assert_eq!(body["long_lie"], true);

    let figures = app.get_ok("/v1/alarms/response-times", &p.staff).await;
    assert_eq!(figures["falls"], 3);
    assert_eq!(figures["long_lies"], 2);
    app.stop().await;
}

/// An unattended fall becomes a long lie at the moment it reaches `long_lie_minutes`, on the
/// live stream, not only when someone finally arrives (the check with an injected clock).
#[tokio::test]
async fn an_unattended_fall_escalates_to_a_long_lie_at_sixty_minutes() {
    let app = homeward_testkit::spawn_app_with(super::quiet_settings()).await;
    let p = provider(&app, "Escalation Care").await;
    let (_, secrets) = person_with(&app, &p.org, "P-5", &[("fall-esc", "fall_detector")]).await;
    let mut detector = TestDevice::connect(&app, "fall-esc", &secrets[0]).await;
    detector
        .send(EventBody::FallDetected {
            confidence: Percent::new(91).unwrap(),
        })
        .await;
    let alarms = alarms_until(&app, &p.staff, |a| a.len() == 1).await;
    let id = alarms[0]["id"].as_i64().unwrap();
    let raised_at: chrono::DateTime<chrono::Utc> =
        alarms[0]["raised_at"].as_str().unwrap().parse().unwrap();
    app.post_json(
        &format!("/v1/alarms/{id}/acknowledge"),
        &p.staff,
        &Value::Null,
    )
    .await;
    let rules = homeward::alarms::derive::Rules::from(&homeward::alarms::AlarmSettings::default());
    let live = homeward::live::LiveHub::default();
    let mut rx = live.subscribe();
    let sweep = |minutes: i64| {
        let (pool, rules, live) = (&app.pool, &rules, &live);
        async move {
            homeward::alarms::run_sweep(
                pool,
                rules,
                live,
                raised_at + chrono::Duration::minutes(minutes),
            )
            .await
            .unwrap()
        }
    };
    // At 59 minutes it is not yet a long lie.
    assert_eq!(sweep(59).await, 0);
    assert_eq!(alarm(&app, &p.staff, id).await["alarm"]["long_lie"], false);
    // At 60 it is, at once: the stream says so, the alarm stays acknowledged.
    assert_eq!(sweep(60).await, 1);
    let event = rx.try_recv().expect("the escalation is published");
    assert_eq!(event.topic, "alarm");
    assert_eq!(
        (
            &event.data["id"],
            &event.data["transition"],
            &event.data["long_lie"]
        ),
        (&json!(id), &json!("long_lie"), &json!(true)),
        "{:?}",
        event.data
    );
    let now = &alarm(&app, &p.staff, id).await["alarm"];
    assert_eq!(
        (&now["long_lie"], &now["state"]),
        (&json!(true), &json!("acknowledged")),
        "{now}"
    );
    // Once.
    assert_eq!(sweep(61).await, 0);
    // Arriving later keeps it a long lie; a rebuild reaches the same answer from the times.
    let (status, body) = app
        .post_json(
            &format!("/v1/alarms/{id}/arrive"),
            &p.responder,
            &Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["long_lie"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_door_open_too_long_raises_an_alarm_only_at_night() {
    let app = spawn_app().await;
    let p = provider(&app, "Door Care").await;
    let secret = app.device(&p.org, "door-d1", "sensor").await;
    let mut door = TestDevice::connect(&app, "door-d1", &secret).await;
    // Yesterday at 03:00 and at 13:00 in London (the default night window is 22 to 7 there).
    let london = |hour: u32| {
        let client = app.pool.clone();
        async move {
            let c = client.get().await.unwrap();
            c.query_one(
                "SELECT ((current_date - 1 + make_time($1, 0, 0)) AT TIME ZONE 'Europe/London')",
                &[&(hour as i32)],
            )
            .await
            .unwrap()
            .get::<_, chrono::DateTime<chrono::Utc>>(0)
        }
    };
    let now = chrono::Utc::now();
    let day = london(13).await;
    let night = london(3).await;
    door.send_at(
        EventBody::DoorOpenTooLong { minutes: Some(20) },
        (now - day).num_milliseconds(),
    )
    .await;
    let seq = door
        .send_at(
            EventBody::DoorOpenTooLong { minutes: Some(20) },
            (now - night).num_milliseconds(),
        )
        .await;
    let alarms = alarms_until(&app, &p.staff, |a| !a.is_empty()).await;
    // The daytime one was stored before the night one and raised nothing.
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0]["kind"], "door_open_too_long");
    assert_eq!(alarms[0]["seq"], seq);
    assert_eq!(alarms[0]["count"], 1);
    app.stop().await;
}
