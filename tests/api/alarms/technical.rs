//! Technical alarms: devices gone quiet, cleared by their restore events, and the order of
//! technical events within one derivation pass.

use homeward::alarms::derive::Rules;
use homeward::alarms::AlarmSettings;
use homeward::live::LiveHub;
use homeward_proto::{EventBody, Percent};
use homeward_testkit::mqtt::{heartbeat_body, TestDevice};
use homeward_testkit::{eventually, spawn_app_with};
use serde_json::Value;

use super::{open_alarms, provider, quiet_settings, WAIT};

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
        (h["items"][0]["last_heartbeat_at"].is_string() && h["items"][0]["online"] == true)
            .then_some(h)
    })
    .await
    .unwrap();
    assert_eq!(health["items"][0]["interval_s"], 60);
    assert_eq!(health["items"][0]["overdue"], false);
    assert_eq!(
        health["items"][0]["online"], true,
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
    assert_eq!(technical["items"].as_array().unwrap().len(), 1);
    assert_eq!(technical["items"][0]["state"], "raised");
    assert!(
        open_alarms(&app, &p.staff).await.is_empty(),
        "kept apart from care alarms"
    );
    let id = technical["items"][0]["id"].as_i64().unwrap();
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
        let mut kinds: Vec<String> = technical["items"]
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
        technical["items"].as_array().unwrap().is_empty(),
        "{technical}"
    );
    let all = app
        .get_ok("/v1/technical-alarms?status=all", &p.staff)
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
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
