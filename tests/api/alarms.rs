//! Telecare alarms end to end: devices publish over MQTT to the embedded broker, staff act over
//! HTTP, dashboards listen on `GET /v1/live`, hubs hear notices on their downlink topic.

use std::time::Duration;

use homeward::alarms::derive::Rules;
use homeward::alarms::AlarmSettings;
use homeward::auth::{self, OrgKind, Role};
use homeward::live::LiveHub;
use homeward_proto::{EventBody, Notice, NoticeKind, Percent};
use homeward_testkit::db::derived_snapshot;
use homeward_testkit::mqtt::{heartbeat_body, TestDevice};
use homeward_testkit::{eventually, spawn_app, spawn_app_with, test_settings, TestApp};
use reqwest::Method;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

struct Provider {
    org: auth::Organisation,
    staff: String,
    responder: String,
}

async fn provider(app: &TestApp, name: &str) -> Provider {
    let (org, staff) = app
        .org_with_user(name, OrgKind::Provider, Role::ProviderStaff)
        .await;
    let client = app.pool.get().await.unwrap();
    let (_, responder) = auth::create_user(
        &**client,
        &org,
        &format!("{name} responder"),
        Role::Responder,
    )
    .await
    .unwrap();
    Provider {
        org,
        staff,
        responder,
    }
}

/// A person with the given devices (created), returns (person id, device secrets).
async fn person_with(
    app: &TestApp,
    org: &auth::Organisation,
    reference: &str,
    devices: &[(&str, &str)],
) -> (i32, Vec<String>) {
    let mut secrets = Vec::new();
    for (uid, kind) in devices {
        secrets.push(app.device(org, uid, kind).await);
    }
    let client = app.pool.get().await.unwrap();
    let person: i32 = client
        .query_one(
            "INSERT INTO people (organisation_id, external_ref) VALUES ($1, $2) RETURNING id",
            &[&org.id, &reference],
        )
        .await
        .unwrap()
        .get(0);
    let uids: Vec<&str> = devices.iter().map(|(u, _)| *u).collect();
    client
        .execute(
            "UPDATE devices SET person_id = $1 WHERE uid = ANY($2)",
            &[&person, &uids],
        )
        .await
        .unwrap();
    (person, secrets)
}

async fn open_alarms(app: &TestApp, token: &str) -> Vec<Value> {
    app.get_ok("/v1/alarms", token).await["alarms"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the open care alarms satisfy `pred`.
async fn alarms_until(app: &TestApp, token: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(WAIT, || async {
        let alarms = open_alarms(app, token).await;
        pred(&alarms).then_some(alarms)
    })
    .await
    .expect("the alarms reach the expected state")
}

async fn alarm(app: &TestApp, token: &str, id: i64) -> Value {
    app.get_ok(&format!("/v1/alarms/{id}"), token).await
}

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

#[tokio::test]
async fn every_outcome_code_resolves_and_is_counted_in_the_response_figures() {
    let app = spawn_app().await;
    let p = provider(&app, "Outcome Care").await;
    let codes = [
        "false_or_accidental",
        "resolved_by_talking",
        "family_or_keyholder_attended",
        "responder_attended_no_injury",
        "minor_injury_treated_at_home",
        "ambulance_called_not_conveyed",
        "conveyed_to_hospital",
        "admitted_to_hospital",
    ];
    let mut devices = Vec::new();
    for i in 0..codes.len() {
        let uid = format!("pendant-o{i}");
        let secret = app.device(&p.org, &uid, "pendant").await;
        // Each pendant is a different person's (so no alarm folds into another's), which a
        // commissioner's view below needs: it counts only people funded under its contract.
        let client = app.pool.get().await.unwrap();
        client
            .execute(
                "WITH p AS (INSERT INTO people (organisation_id, external_ref) VALUES ($1, $2)
                            RETURNING id)
                 UPDATE devices SET person_id = (SELECT id FROM p) WHERE uid = $2",
                &[&p.org.id, &uid],
            )
            .await
            .unwrap();
        devices.push(TestDevice::connect(&app, &uid, &secret).await);
    }
    for d in &mut devices {
        d.send(EventBody::PendantAlarm).await;
    }
    let alarms = alarms_until(&app, &p.staff, |a| a.len() == codes.len()).await;
    for (i, code) in codes.iter().enumerate() {
        let uid = format!("pendant-o{i}");
        let id = alarms
            .iter()
            .find(|a| a["device_uid"] == uid.as_str())
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let (status, _) = app
            .post_json(
                &format!("/v1/alarms/{id}/acknowledge"),
                &p.staff,
                &Value::Null,
            )
            .await;
        assert_eq!(status, 200);
        if i >= 3 {
            app.post_json(&format!("/v1/alarms/{id}/dispatch"), &p.staff, &Value::Null)
                .await;
            app.post_json(
                &format!("/v1/alarms/{id}/arrive"),
                &p.responder,
                &Value::Null,
            )
            .await;
        }
        let (status, body) = app
            .post_json(
                &format!("/v1/alarms/{id}/resolve"),
                &p.staff,
                &serde_json::json!({"outcome": code}),
            )
            .await;
        assert_eq!(status, 200, "{code}: {body}");
        assert_eq!(body["outcome"], *code);
        assert_eq!(body["state"], "resolved");
    }
    // The durations the figures measure come from the stamps, not from how fast this test
    // ran: each alarm is given its own answer and arrival times.
    let answer_secs = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 61.0, 170.0];
    let on_site_minutes = [0, 0, 0, 10, 30, 44, 45, 46];
    {
        let client = app.pool.get().await.unwrap();
        for i in 0..codes.len() {
            let updated = client
                .execute(
                    "UPDATE alarms a
                        SET acknowledged_at = a.received_at + make_interval(secs => $2),
                            on_site_at = CASE WHEN a.dispatched_at IS NULL THEN NULL
                                              ELSE a.received_at + make_interval(mins => $3) END
                       FROM devices d WHERE d.id = a.source_device_id AND d.uid = $1",
                    &[
                        &format!("pendant-o{i}"),
                        &answer_secs[i],
                        &on_site_minutes[i],
                    ],
                )
                .await
                .unwrap();
            assert_eq!(updated, 1);
        }
    }
    let figures = app.get_ok("/v1/alarms/response-times", &p.staff).await;
    for code in codes {
        assert_eq!(figures["outcomes"][code], 1, "{code}: {figures}");
    }
    assert_eq!(figures["alarms"], 8);
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    let answer = &figures["answer"];
    assert_eq!(
        (&answer["calls"], &answer["answered"]),
        (&8.into(), &8.into())
    );
    assert!(close(&answer["median_secs"], 45.0), "{answer}");
    // percentile_cont(0.9) of 8 values: 61 + 0.3 x (170 - 61).
    assert!(close(&answer["p90_secs"], 93.7), "{answer}");
    // 6 of 8 within 60 s (60 itself counts): 0.75 < 0.975; all 8 within 180 s: met.
    assert_eq!(answer["targets"][0]["within"], 60);
    assert_eq!(answer["targets"][0]["share"], 0.75);
    assert_eq!(answer["targets"][0]["met"], false);
    assert_eq!(answer["targets"][1]["within"], 180);
    assert_eq!(answer["targets"][1]["share"], 1.0);
    assert_eq!(answer["targets"][1]["met"], true);
    let on_site = &figures["on_site"];
    assert_eq!(
        (&on_site["dispatched"], &on_site["arrived"]),
        (&5.into(), &5.into())
    );
    assert!(close(&on_site["median_minutes"], 44.0), "{on_site}");
    assert!(close(&on_site["p90_minutes"], 45.6), "{on_site}");
    // 4 of 5 within 45 minutes (45 itself counts): 0.8 < 0.9; all within 60: met.
    assert_eq!(on_site["targets"][0]["within"], 45);
    assert_eq!(on_site["targets"][0]["share"], 0.8);
    assert_eq!(on_site["targets"][0]["met"], false);
    assert_eq!(on_site["targets"][1]["within"], 60);
    assert_eq!(on_site["targets"][1]["share"], 1.0);
    assert_eq!(on_site["targets"][1]["met"], true);
    assert_eq!(figures["resolved_without_ambulance"], 5);

    // Commissioners see the figures of providers they contract, and only those.
    let (council, council_token) = app
        .org_with_user("Outcome Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let path = format!("/v1/alarms/response-times?provider_id={}", p.org.id);
    assert_eq!(app.get(&path, Some(&council_token)).await.status(), 404);
    let client = app.pool.get().await.unwrap();
    let contract = homeward::outcomes::contracts::create_contract(
        &**client,
        &council,
        &p.org,
        "C-1",
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        None,
    )
    .await
    .unwrap();
    // A contract alone counts nobody: only the alarms of people funded under it.
    let theirs = app.get_ok(&path, &council_token).await;
    assert_eq!(theirs["alarms"], 0);
    client
        .execute(
            "INSERT INTO service_periods (organisation_id, person_id, contract_id, started_on)
             SELECT DISTINCT organisation_id, person_id, $2::int, date '2026-01-01'
               FROM alarms WHERE organisation_id = $1 AND person_id IS NOT NULL",
            &[&p.org.id, &contract],
        )
        .await
        .unwrap();
    let theirs = app.get_ok(&path, &council_token).await;
    assert_eq!(theirs["alarms"], 8);
    // ... but not the alarms themselves.
    assert_eq!(
        app.get("/v1/alarms", Some(&council_token)).await.status(),
        403
    );
    app.stop().await;
}

fn quiet_settings() -> homeward::config::Settings {
    let mut settings = test_settings();
    // The periodic check stays out of the way; tests run it with their own clock.
    settings.alarms.sweep_interval_secs = 3600;
    settings
}

#[tokio::test]
async fn devices_gone_quiet_raise_technical_alarms_cleared_by_their_restore_events() {
    let app = spawn_app_with(quiet_settings()).await;
    let p = provider(&app, "Health Care").await;
    let secret = app.device(&p.org, "hub-h1", "hub").await;
    let mut hub = TestDevice::connect(&app, "hub-h1", &secret).await;
    let mut live = app.live(&p.staff).await;

    hub.send(heartbeat_body(80, Some(60))).await;
    let health = eventually(WAIT, || async {
        let h = app.get_ok("/v1/device-health", &p.staff).await;
        (h["devices"][0]["last_heartbeat_at"].is_string() && h["devices"][0]["online"] == true)
            .then_some(h)
    })
    .await
    .unwrap();
    assert_eq!(health["devices"][0]["interval_s"], 60);
    assert_eq!(health["devices"][0]["overdue"], false);
    assert_eq!(
        health["devices"][0]["online"], true,
        "presence from the retained status"
    );

    // The check with an injected clock: 2 minutes later is within 2.5 x 60 s; 3 minutes is not.
    let settings = AlarmSettings::default();
    let rules = Rules::from(&settings);
    let hub_live = LiveHub::default();
    let now = chrono::Utc::now();
    let raised = homeward::alarms::run_sweep(
        &app.pool,
        &rules,
        &hub_live,
        now + chrono::Duration::minutes(2),
    )
    .await
    .unwrap();
    assert_eq!(raised, 0);
    let mut rx = hub_live.subscribe();
    let raised = homeward::alarms::run_sweep(
        &app.pool,
        &rules,
        &hub_live,
        now + chrono::Duration::minutes(3),
    )
    .await
    .unwrap();
    assert_eq!(raised, 1);
    let event = rx.try_recv().unwrap();
    assert_eq!(event.topic, "technical_alarm");
    assert_eq!(event.data["kind"], "heartbeat_missing");
    assert_eq!(event.data["device_uid"], "hub-h1");
    // Once only.
    assert_eq!(
        homeward::alarms::run_sweep(
            &app.pool,
            &rules,
            &hub_live,
            now + chrono::Duration::minutes(30)
        )
        .await
        .unwrap(),
        0
    );
    let technical = app.get_ok("/v1/technical-alarms", &p.staff).await;
    assert_eq!(technical["alarms"].as_array().unwrap().len(), 1);
    assert_eq!(technical["alarms"][0]["state"], "raised");
    assert!(
        open_alarms(&app, &p.staff).await.is_empty(),
        "kept apart from care alarms"
    );
    let id = technical["alarms"][0]["id"].as_i64().unwrap();
    let (status, _) = app
        .post_json(
            &format!("/v1/alarms/{id}/acknowledge"),
            &p.staff,
            &Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let (status, problem) = app
        .post_json(&format!("/v1/alarms/{id}/dispatch"), &p.staff, &Value::Null)
        .await;
    assert_eq!(status, 409, "{problem}");

    // The next heartbeat clears it; battery and power alarms clear by their restore events.
    hub.send(EventBody::BatteryLow {
        battery: Percent::new(9).unwrap(),
    })
    .await;
    hub.send(EventBody::PowerFailure).await;
    hub.send(EventBody::LinkFailure).await;
    hub.send(heartbeat_body(15, None)).await;
    live.next("technical_alarm", |d| {
        d["kind"] == "heartbeat_missing" && d["state"] == "cleared"
    })
    .await;
    let kinds = eventually(WAIT, || async {
        let technical = app.get_ok("/v1/technical-alarms", &p.staff).await;
        let mut kinds: Vec<String> = technical["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_string())
            .collect();
        kinds.sort();
        (kinds.len() == 3).then_some(kinds)
    })
    .await;
    assert_eq!(
        kinds.unwrap(),
        ["battery_low", "link_failure", "power_failure"],
        "a heartbeat at 15% leaves battery_low open"
    );
    hub.send(EventBody::PowerRestored).await;
    hub.send(EventBody::LinkRestored).await;
    hub.send(heartbeat_body(90, None)).await;
    live.next("technical_alarm", |d| {
        d["kind"] == "battery_low" && d["state"] == "cleared"
    })
    .await;
    let technical = app.get_ok("/v1/technical-alarms", &p.staff).await;
    assert!(
        technical["alarms"].as_array().unwrap().is_empty(),
        "{technical}"
    );
    let all = app
        .get_ok("/v1/technical-alarms?status=all", &p.staff)
        .await;
    assert_eq!(all["alarms"].as_array().unwrap().len(), 4);
    app.stop().await;
}

/// The alarms staff acted on, by id and by the event that opened them.
async fn alarms_with_actions(pool: &deadpool_postgres::Pool) -> Vec<(i64, i32, i64, String)> {
    let client = pool.get().await.unwrap();
    client
        .query(
            "SELECT id, source_device_id, source_seq, kind FROM alarms
              WHERE id IN (SELECT alarm_id FROM alarm_actions) ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Live derivation, catch-up and a rebuild from corrupted derived rows must agree. Checked
/// against a broken build: a rebuild that replays no events, and a catch-up that derives
/// nothing, each turn this test red.
#[tokio::test]
async fn rebuilding_from_events_and_actions_gives_the_same_rows_and_reprocessing_does_nothing() {
    let app = spawn_app_with(quiet_settings()).await;
    let p = provider(&app, "Rebuild Care").await;
    let (_, secrets) = person_with(
        &app,
        &p.org,
        "P-9",
        &[("pendant-r1", "pendant"), ("hub-r1", "hub")],
    )
    .await;
    let mut pendant = TestDevice::connect(&app, "pendant-r1", &secrets[0]).await;
    let mut hub = TestDevice::connect(&app, "hub-r1", &secrets[1]).await;
    pendant.send(EventBody::PendantAlarm).await;
    hub.send(EventBody::PendantAlarm).await;
    pendant
        .send_at(
            EventBody::FallDetected {
                confidence: Percent::new(80).unwrap(),
            },
            90 * 60 * 1000,
        )
        .await;
    hub.send(heartbeat_body(10, Some(60))).await;
    hub.send(EventBody::BatteryLow {
        battery: Percent::new(10).unwrap(),
    })
    .await;
    hub.send(EventBody::PowerFailure).await;
    let alarms = alarms_until(&app, &p.staff, |a| {
        a.len() == 2 && a.iter().any(|x| x["count"] == 2)
    })
    .await;
    eventually(WAIT, || async {
        let t = app.get_ok("/v1/technical-alarms", &p.staff).await;
        (t["alarms"].as_array().unwrap().len() == 2).then_some(())
    })
    .await
    .unwrap();
    for a in &alarms {
        let id = a["id"].as_i64().unwrap();
        app.post_json(
            &format!("/v1/alarms/{id}/acknowledge"),
            &p.staff,
            &Value::Null,
        )
        .await;
        app.post_json(&format!("/v1/alarms/{id}/dispatch"), &p.staff, &Value::Null)
            .await;
    }
    hub.send(EventBody::ResponderPresent).await;
    hub.send(EventBody::PowerRestored).await;
    eventually(WAIT, || async {
        let t = app.get_ok("/v1/technical-alarms", &p.staff).await;
        (t["alarms"].as_array().unwrap().len() == 1).then_some(())
    })
    .await
    .unwrap();
    let fall = alarms
        .iter()
        .find(|a| a["kind"] == "fall_detected")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _) = app
        .post_json(
            &format!("/v1/alarms/{fall}/resolve"),
            &p.responder,
            &serde_json::json!({"outcome": "conveyed_to_hospital"}),
        )
        .await;
    assert_eq!(status, 200);
    let on_site = alarm(&app, &p.staff, fall).await;
    assert_eq!(on_site["alarm"]["long_lie"], true);
    // A silence, found by the check with an injected clock.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let rules = Rules::from(&AlarmSettings::default());
    homeward::alarms::run_sweep(&app.pool, &rules, &LiveHub::default(), later)
        .await
        .unwrap();

    let before = derived_snapshot(&app.pool).await;
    assert_eq!(before.alarms.len(), 5, "{:#?}", before.alarms);
    assert_eq!(before.device_health.len(), 1, "{:#?}", before.device_health);
    let acted_on = alarms_with_actions(&app.pool).await;
    assert_eq!(acted_on.len(), 2, "{acted_on:?}");

    // Reprocessing every stored event (what start-up catch-up does) changes nothing that was
    // derived, and derives what was not: an event stored while derivation was away.
    let events: i64 = {
        let client = app.pool.get().await.unwrap();
        client
            .batch_execute(
                "DELETE FROM alarm_cursor;
                 INSERT INTO events (device_id, seq, occurred_at, received_at, kind, data)
                 SELECT id, 100, now(), now(), 9, '{}' FROM devices WHERE uid = 'pendant-r1';",
            )
            .await
            .unwrap();
        client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0)
    };
    let looked = homeward::alarms::catch_up(&app.pool, &rules, &LiveHub::default(), "test")
        .await
        .unwrap();
    assert_eq!(looked as i64, events);
    let caught_up = derived_snapshot(&app.pool).await;
    let smoke = |rows: &[String]| -> (Vec<String>, Vec<String>) {
        rows.iter().cloned().partition(|r| r.contains("\"smoke\""))
    };
    let (new_alarms, old_alarms) = smoke(&caught_up.alarms);
    let (new_history, old_history) = smoke(&caught_up.alarm_events);
    assert_eq!(new_alarms.len(), 1, "{new_alarms:?}");
    assert_eq!(new_history.len(), 1, "{new_history:?}");
    assert_eq!(old_alarms, before.alarms);
    assert_eq!(old_history, before.alarm_events);
    assert_eq!(caught_up.device_health, before.device_health);
    let before = caught_up;

    // The derived rows go wrong: alarms no staff action points at are lost, the others are
    // altered, their history and the device health are gone.
    {
        let client = app.pool.get().await.unwrap();
        client
            .batch_execute(
                "DELETE FROM alarms WHERE id NOT IN (SELECT alarm_id FROM alarm_actions);
                 UPDATE alarms SET count = count + 7, long_lie = NOT long_lie,
                                   last_seen_at = last_seen_at + interval '1 day';
                 DELETE FROM alarm_events; DELETE FROM device_health;",
            )
            .await
            .unwrap();
    }
    let report = homeward::alarms::rebuild_with(&app.pool, &AlarmSettings::default(), later)
        .await
        .unwrap();
    assert_eq!(report.skipped_actions, 0, "{report:?}");
    assert_eq!(report.alarms, 6);
    assert_eq!(report.events as i64, events);
    assert_eq!(derived_snapshot(&app.pool).await, before);
    // Staff actions still point at the alarms they were taken on.
    assert_eq!(alarms_with_actions(&app.pool).await, acted_on);
    app.stop().await;
}

#[tokio::test]
async fn events_stored_while_derivation_was_away_are_caught_up_at_start() {
    let app = spawn_app().await;
    let p = provider(&app, "Catch-up Care").await;
    let device = {
        app.device(&p.org, "pendant-c1", "pendant").await;
        let client = app.pool.get().await.unwrap();
        client
            .query_one("SELECT id FROM devices WHERE uid = 'pendant-c1'", &[])
            .await
            .unwrap()
            .get::<_, i32>(0)
    };
    let db = app.db_config.clone();
    app.stop().await;
    // Stored, but no one derived it: as if the server died between commit and derivation.
    {
        let pool = homeward::db::build_pool(db.clone(), 2, 5);
        let client = pool.get().await.unwrap();
        client
            .execute(
                "INSERT INTO events (device_id, seq, occurred_at, received_at, kind, data) \
                 VALUES ($1, 1, now(), now(), 1, '{}')",
                &[&device],
            )
            .await
            .unwrap();
    }
    let app = homeward_testkit::spawn_app_on(test_settings(), db).await;
    let alarms = alarms_until(&app, &p.staff, |a| a.len() == 1).await;
    assert_eq!(alarms[0]["kind"], "pendant_alarm");
    assert_eq!(alarms[0]["seq"], 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_derivation_opens_one_alarm_and_concurrent_actions_apply_once() {
    let app = spawn_app_with(quiet_settings()).await;
    let p = provider(&app, "Race Care").await;
    let uids: Vec<String> = (0..8).map(|i| format!("pendant-x{i}")).collect();
    let devices: Vec<(&str, &str)> = uids.iter().map(|u| (u.as_str(), "pendant")).collect();
    let (person, _) = person_with(&app, &p.org, "P-X", &devices).await;
    let ids: Vec<i32> = {
        let client = app.pool.get().await.unwrap();
        client
            .query(
                "SELECT id FROM devices WHERE person_id = $1 ORDER BY id",
                &[&person],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    // As if eight instances each derived one pendant press of the same person at once.
    let rules = Rules::from(&AlarmSettings::default());
    let now = chrono::Utc::now();
    let tasks: Vec<_> = ids
        .iter()
        .zip(&uids)
        .map(|(id, uid)| {
            let input = homeward::alarms::derive::Input {
                device_id: *id,
                organisation_id: p.org.id,
                device_uid: uid.as_str().into(),
                seq: 1,
                occurred_at: now,
                received_at: now,
                kind: homeward_proto::EventKind::PendantAlarm,
                battery: None,
                signal: None,
                interval_s: None,
            };
            let pool = app.pool.clone();
            let rules = rules.clone();
            tokio::spawn(async move {
                homeward::alarms::process(&pool, &rules, &LiveHub::default(), &[input]).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let alarms = open_alarms(&app, &p.staff).await;
    assert_eq!(alarms.len(), 1, "{alarms:#?}");
    assert_eq!(alarms[0]["count"], 8);
    let id = alarms[0]["id"].as_i64().unwrap();

    // Five coordinators acknowledge at once: one wins, the others hear who got there first.
    let path = format!("/v1/alarms/{id}/acknowledge");
    let requests: Vec<_> = (0..5)
        .map(|_| app.request(Method::POST, &path, Some(&p.staff), None))
        .collect();
    let mut statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409]);
    let history = alarm(&app, &p.staff, id).await["history"].clone();
    let acks = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["transition"] == "acknowledged")
        .count();
    assert_eq!(acks, 1);
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

/// One pass derives its events pipelined on one connection, the raises of different people in
/// one statement: each person's must still apply in order.
#[tokio::test]
async fn a_pass_applies_its_events_in_order() {
    let app = spawn_app_with(quiet_settings()).await;
    let p = provider(&app, "Order Care").await;
    let (a, _) = person_with(&app, &p.org, "P-O1", &[("pendant-o1", "pendant")]).await;
    let (b, _) = person_with(&app, &p.org, "P-O2", &[("pendant-o2", "pendant")]).await;
    let client = app.pool.get().await.unwrap();
    let device_of = |person: i32| {
        let client = &client;
        async move {
            let id: i32 = client
                .query_one("SELECT id FROM devices WHERE person_id = $1", &[&person])
                .await
                .unwrap()
                .get(0);
            id
        }
    };
    let (da, db) = (device_of(a).await, device_of(b).await);
    let rules = Rules::from(&AlarmSettings::default());
    let now = chrono::Utc::now();
    use homeward_proto::EventKind as K;
    let events = [
        (da, K::PendantAlarm),
        (db, K::PendantAlarm),
        (da, K::AlarmReset),
        (db, K::PendantAlarm),
        (da, K::PendantAlarm),
        (da, K::PendantAlarm),
        (db, K::ResponderPresent),
        (da, K::ResponderPresent),
    ];
    let inputs: Vec<_> = events
        .into_iter()
        .enumerate()
        .map(|(i, (device_id, kind))| homeward::alarms::derive::Input {
            device_id,
            organisation_id: p.org.id,
            device_uid: if device_id == da {
                "pendant-o1"
            } else {
                "pendant-o2"
            }
            .into(),
            seq: i as i64 + 1,
            occurred_at: now + chrono::Duration::seconds(i as i64),
            received_at: now + chrono::Duration::seconds(i as i64),
            kind,
            battery: None,
            signal: None,
            interval_s: None,
        })
        .collect();
    homeward::alarms::process(&app.pool, &rules, &LiveHub::default(), &inputs)
        .await
        .unwrap();
    let alarms_of = |person: i32| {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT state, count, outcome FROM alarms WHERE person_id = $1 ORDER BY id",
                    &[&person],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect::<Vec<(String, i32, Option<String>)>>()
        }
    };
    assert_eq!(
        alarms_of(a).await,
        [
            (
                "resolved".to_owned(),
                1,
                Some("false_or_accidental".to_owned())
            ),
            ("on_site".to_owned(), 2, None),
        ]
    );
    assert_eq!(alarms_of(b).await, [("on_site".to_owned(), 2, None)]);
    let history: i64 = client
        .query_one("SELECT count(*) FROM alarm_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, 8, "one history row per transition");
    // Processing the same events again (a retry, catch-up) changes nothing.
    homeward::alarms::process(&app.pool, &rules, &LiveHub::default(), &inputs)
        .await
        .unwrap();
    let again: i64 = client
        .query_one("SELECT count(*) FROM alarm_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, 8);
    drop(client);
    app.stop().await;
}

#[tokio::test]
async fn a_pass_of_technical_events_gives_the_rows_of_their_own_order() {
    // Four hubs with the same story, interleaved as they would reach one pass. Two of them are
    // derived in one pass (which regroups the events between heartbeats), the other two one
    // event at a time, in order: every row must come out the same.
    let app = spawn_app_with(quiet_settings()).await;
    let p = provider(&app, "Technical Care").await;
    let mut devices = Vec::new();
    for n in 0..4 {
        let uid = format!("hub-t{n}");
        app.device(&p.org, &uid, "hub").await;
        let client = app.pool.get().await.unwrap();
        let id: i32 = client
            .query_one("SELECT id FROM devices WHERE uid = $1", &[&uid])
            .await
            .unwrap()
            .get(0);
        devices.push((id, uid));
    }
    use homeward_proto::EventKind as K;
    let story = [
        (K::Heartbeat, Some(50)),
        (K::BatteryLow, Some(15)),
        (K::Heartbeat, Some(15)), // still low: battery_low stays open
        (K::PowerFailure, None),
        (K::Heartbeat, Some(60)), // clears battery_low
        (K::PowerRestored, None), // clears power_failure
        (K::BatteryLow, Some(10)),
        (K::BatteryLow, Some(9)), // folds into the open one
        (K::Heartbeat, Some(12)),
        (K::LinkFailure, None),
    ];
    let now = chrono::Utc::now();
    let input = |(id, uid): &(i32, String), i: usize| {
        let (kind, battery) = story[i];
        homeward::alarms::derive::Input {
            device_id: *id,
            organisation_id: p.org.id,
            device_uid: uid.as_str().into(),
            seq: i as i64 + 1,
            occurred_at: now + chrono::Duration::seconds(i as i64),
            received_at: now + chrono::Duration::seconds(i as i64),
            kind,
            battery,
            signal: (kind == K::Heartbeat).then_some(-70),
            interval_s: (kind == K::Heartbeat).then_some(900),
        }
    };
    let rules = Rules::from(&AlarmSettings::default());
    let live = LiveHub::default();
    let pass: Vec<_> = (0..story.len())
        .flat_map(|i| devices[..2].iter().map(move |d| (d, i)))
        .map(|(d, i)| input(d, i))
        .collect();
    homeward::alarms::process(&app.pool, &rules, &live, &pass)
        .await
        .unwrap();
    for i in 0..story.len() {
        for d in &devices[2..] {
            homeward::alarms::process(&app.pool, &rules, &live, &[input(d, i)])
                .await
                .unwrap();
        }
    }
    let client = app.pool.get().await.unwrap();
    let rows_of = |device: i32| {
        let client = &client;
        async move {
            let alarms: Vec<String> = client
                .query(
                    "SELECT kind, state, count, source_seq, last_seq FROM alarms \
                      WHERE source_device_id = $1 ORDER BY source_seq, kind",
                    &[&device],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let (k, s, c, a, b): (String, String, i32, i64, i64) =
                        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
                    format!("{k} {s} x{c} {a}..{b}")
                })
                .collect();
            let history: Vec<String> = client
                .query(
                    "SELECT a.kind, e.transition, e.to_state, e.seq FROM alarm_events e \
                       JOIN alarms a ON a.id = e.alarm_id \
                      WHERE a.source_device_id = $1 ORDER BY e.seq, a.kind",
                    &[&device],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let (k, t, s, q): (String, String, String, Option<i64>) =
                        (r.get(0), r.get(1), r.get(2), r.get(3));
                    format!("{k} {t} {s} {q:?}")
                })
                .collect();
            let health = client
                .query_one(
                    "SELECT last_seq, battery FROM device_health WHERE device_id = $1",
                    &[&device],
                )
                .await
                .unwrap();
            let health: (i64, Option<i16>) = (health.get(0), health.get(1));
            (alarms, history, health)
        }
    };
    let expected = rows_of(devices[2].0).await;
    assert_eq!(
        expected.0,
        [
            "battery_low cleared x1 2..2",
            "power_failure cleared x1 4..4",
            "battery_low raised x2 7..8",
            "link_failure raised x1 10..10",
        ],
        "the events' own order"
    );
    assert_eq!(expected.2, (9, Some(12)));
    for (id, uid) in &devices {
        assert_eq!(rows_of(*id).await, expected, "{uid}");
    }
    drop(client);
    app.stop().await;
}
