//! One owner per figure: the outcome report's context, `/v1/visits` and
//! `/v1/alarms/response-times` agree on the same visits and alarms, for a provider and for the
//! council that funds the person. The cases planted are those where separate copies of the
//! rules drifted: a check-in 15 min 30 s late (late by the 15-minute rule, though 15 in whole
//! minutes), an alarm the pendant cancelled before anyone answered (not a call, so not in the
//! answer share), and an outcome code that called an ambulance.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use homeward::auth::{OrgKind, Role};
use homeward_proto::{Encoding, Event, EventBody, Percent};
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, TestApp};
use crate::visits::{ms, now_s, phone_sends, schedule, setup, HOME};

const WAIT: Duration = Duration::from_secs(20);

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let r = app.get(path, Some(token)).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {body}");
    body
}

/// Publishes events as a device over MQTT and waits until the broker has acknowledged each.
async fn publish(app: &TestApp, uid: &str, secret: &str, events: &[Event]) {
    use rumqttc::{AsyncClient, Event as Mqtt, MqttOptions, Packet, PublishOptions, QoS};
    let mut options = MqttOptions::new(uid, (app.mqtt.host.clone(), app.mqtt.port));
    options.set_credentials(uid, secret.to_string());
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(10).build();
    for e in events {
        client
            .publish(
                format!("homeward/v1/{uid}/events"),
                homeward_proto::encode_event_vec(e, Encoding::Json),
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
    }
    let mut acked = 0;
    let deadline = Instant::now() + WAIT;
    while acked < events.len() && Instant::now() < deadline {
        if let Ok(Ok(Mqtt::Incoming(Packet::PubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await
        {
            acked += 1;
        }
    }
    assert_eq!(
        acked,
        events.len(),
        "every event acknowledged by the broker"
    );
    let _ = client.disconnect().await;
}

fn event(seq: u64, body: EventBody) -> Event {
    Event::new(seq, Utc::now().timestamp_millis(), body).unwrap()
}

/// The one alarm of `kind` in `state`, once derivation has got there.
async fn alarm_id(app: &TestApp, uid: &str, kind: &str, state: &str) -> i64 {
    eventually(WAIT, || async {
        let client = app.pool.get().await.ok()?;
        client
            .query_opt(
                "SELECT a.id FROM alarms a JOIN devices d ON d.id = a.source_device_id
                  WHERE d.uid = $1 AND a.kind = $2 AND a.state = $3",
                &[&uid, &kind, &state],
            )
            .await
            .ok()?
            .map(|r| r.get(0))
    })
    .await
    .unwrap_or_else(|| panic!("a {state} {kind} alarm of {uid}"))
}

/// Sets how long an alarm took to answer (the figures measure the stamps, not how fast this
/// test ran).
async fn answered_after(app: &TestApp, id: i64, secs: f64) {
    let client = app.pool.get().await.unwrap();
    let n = client
        .execute(
            "UPDATE alarms SET acknowledged_at = received_at + make_interval(secs => $2) WHERE id = $1",
            &[&id, &secs],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

fn at_midnight(d: NaiveDate) -> String {
    d.and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn the_report_the_visits_and_the_response_times_count_alike() {
    let app = spawn_app().await;
    let s = setup(&app, "Figures Care", json!({})).await;
    let provider = &s.p;
    let (council, council_token) = app
        .org_with_user("Figures Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let today = Utc::now().date_naive();
    let (from, to) = (today - chrono::Days::new(1), today + chrono::Days::new(1));
    let since = today - chrono::Days::new(30);
    let contract = {
        let client = app.pool.get().await.unwrap();
        homeward::outcomes::contracts::create_contract(
            &**client,
            &council,
            &provider.org,
            "F-1",
            since,
            None,
        )
        .await
        .unwrap()
    };
    // The person is funded by the council throughout.
    post(
        &app,
        &provider.token,
        "/v1/outcomes/service-periods",
        json!({"person_id": s.person, "contract_id": contract, "started_on": since}),
    )
    .await;

    // Two visits: one checked in 15 min 30 s after its window opened, one 5 minutes after.
    let start = now_s() - chrono::Duration::hours(3);
    let on_time = start + chrono::Duration::hours(1);
    schedule(&app, &s, "V-LATE", start, 30).await;
    schedule(&app, &s, "V-ON", on_time, 30).await;
    let check = |seq: i64, t: DateTime<Utc>, kind: &str, visit: &str| {
        json!({"seq": seq, "t": ms(t), "kind": kind, "method": "gps", "visit": visit,
               "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0, "fix_age_s": 2})
    };
    let minutes = chrono::Duration::minutes;
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!([
            check(
                1,
                start + minutes(15) + chrono::Duration::seconds(30),
                "check_in",
                "V-LATE"
            ),
            check(2, start + minutes(45), "check_out", "V-LATE"),
            check(3, on_time + minutes(5), "check_in", "V-ON"),
            check(4, on_time + minutes(35), "check_out", "V-ON"),
        ]),
    )
    .await;
    let range = format!("from={}&to={}", at_midnight(from), at_midnight(to));
    let visits_path = format!("/v1/visits?{range}");
    eventually(WAIT, || async {
        let v = get(&app, &provider.token, &visits_path).await;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 2 && items.iter().all(|v| v["completed"] == true)).then_some(())
    })
    .await
    .expect("both visits derived");

    // Three care alarms of the person: a call answered in 30 s that ended in hospital; a fall
    // the pendant cancelled before anyone answered; a call answered in 90 s, talked through.
    let pendant = "pendant-figures";
    let secret = app.device(&provider.org, pendant, "pendant").await;
    {
        let client = app.pool.get().await.unwrap();
        client
            .execute(
                "UPDATE devices SET person_id = $1 WHERE uid = $2",
                &[&(s.person as i32), &pendant],
            )
            .await
            .unwrap();
    }
    let resolve = |id: i64, outcome: &'static str| {
        let app = &app;
        let token = provider.token.clone();
        async move {
            post(
                app,
                &token,
                &format!("/v1/alarms/{id}/acknowledge"),
                Value::Null,
            )
            .await;
            post(
                app,
                &token,
                &format!("/v1/alarms/{id}/resolve"),
                json!({"outcome": outcome}),
            )
            .await;
        }
    };
    publish(&app, pendant, &secret, &[event(1, EventBody::PendantAlarm)]).await;
    let hospital = alarm_id(&app, pendant, "pendant_alarm", "raised").await;
    resolve(hospital, "conveyed_to_hospital").await;
    let fall = EventBody::FallDetected {
        confidence: Percent::new(90).unwrap(),
    };
    let cancel = EventBody::FallCancelled { confidence: None };
    publish(&app, pendant, &secret, &[event(2, fall), event(3, cancel)]).await;
    let cancelled = alarm_id(&app, pendant, "fall_detected", "resolved").await;
    publish(&app, pendant, &secret, &[event(4, EventBody::PendantAlarm)]).await;
    let talked = alarm_id(&app, pendant, "pendant_alarm", "raised").await;
    resolve(talked, "resolved_by_talking").await;
    answered_after(&app, hospital, 30.0).await;
    answered_after(&app, talked, 90.0).await;
    {
        let client = app.pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT acknowledged_at IS NULL, outcome FROM alarms WHERE id = $1",
                &[&cancelled],
            )
            .await
            .unwrap();
        let (unanswered, outcome): (bool, String) = (row.get(0), row.get(1));
        assert!(unanswered, "the cancelled fall was never answered");
        assert_eq!(outcome, "false_or_accidental");
    }

    let views = [
        (provider.token.as_str(), String::new()),
        (
            council_token.as_str(),
            format!("&provider_id={}", provider.org.id),
        ),
    ];
    for (token, provider_param) in views {
        let visits = get(&app, token, &visits_path).await;
        let visits = visits["items"].as_array().unwrap();
        let late: Vec<&Value> = visits
            .iter()
            .filter(|v| v["context"]["late"] == true)
            .collect();
        assert_eq!(late.len(), 1, "{visits:?}");
        assert_eq!(late[0]["scheduled_reference"], "V-LATE");
        // Shown as 15 whole minutes, yet late: the rule looks at the exact times.
        assert_eq!(late[0]["context"]["late_by_minutes"], 15);

        let figures = get(
            &app,
            token,
            &format!("/v1/alarms/response-times?{range}{provider_param}"),
        )
        .await;
        let report = get(
            &app,
            token,
            &format!(
                "/v1/outcomes/report?scope=provider&from={from}&to={to}{}",
                provider_param.replace("provider_id", "id")
            ),
        )
        .await;
        let context = &report["context"];

        // Visits: the report counts the visits `/v1/visits` lists, and the same one late.
        assert_eq!(context["visits"], visits.len(), "{context}");
        assert_eq!(context["visits_late"], late.len(), "{context}");
        assert_eq!(context["punctual_share"], 0.5, "{context}");

        // Alarms: three care alarms, two calls (the cancelled fall is none), one of them
        // answered within 60 s.
        assert_eq!(figures["alarms"], 3, "{figures}");
        assert_eq!(context["care_alarms"], figures["alarms"]);
        assert_eq!(figures["answer"]["calls"], 2, "{figures}");
        let share = &figures["answer"]["targets"][0]["share"];
        assert_eq!(*share, 0.5, "{figures}");
        assert_eq!(context["answered_within_target_share"], *share, "{context}");
        assert_eq!(
            context["median_answer_secs"],
            figures["answer"]["median_secs"]
        );
        assert_eq!(context["median_answer_secs"], 60.0);

        // Ambulances: one call conveyed to hospital; the other two resolved without.
        assert_eq!(figures["outcomes"]["conveyed_to_hospital"], 1, "{figures}");
        assert_eq!(figures["resolved_without_ambulance"], 2, "{figures}");
        assert_eq!(
            context["alarm_calls_resolved_without_ambulance"],
            figures["resolved_without_ambulance"]
        );
    }
    app.stop().await;
}
