//! Deriving alarms from stored events: rebuilds, catch-up at start, concurrent derivation
//! and actions, and the order of events within one pass.

use homeward::alarms::derive::Rules;
use homeward::alarms::AlarmSettings;
use homeward::live::LiveHub;
use homeward_proto::{EventBody, Percent};
use homeward_testkit::db::derived_snapshot;
use homeward_testkit::mqtt::{heartbeat_body, TestDevice};
use homeward_testkit::{eventually, spawn_app, spawn_app_with, test_settings};
use reqwest::Method;
use serde_json::Value;

use super::{alarm, alarms_until, open_alarms, person_with, provider, quiet_settings, WAIT};

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
        (t["items"].as_array().unwrap().len() == 2).then_some(())
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
        (t["items"].as_array().unwrap().len() == 1).then_some(())
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

/// The start-up catch-up reads its range in chunks from one query: more events than a chunk
/// are all derived, and an event received after the catch-up began is left to the live feed.
#[tokio::test]
async fn the_catch_up_derives_a_range_larger_than_a_chunk_and_stops_at_its_start() {
    let app = spawn_app().await;
    let p = provider(&app, "Long Catch-up Care").await;
    app.device(&p.org, "hub-c2", "hub").await;
    app.device(&p.org, "pendant-c3", "pendant").await;
    let db = app.db_config.clone();
    app.stop().await;
    let pool = homeward::db::build_pool(db, 2, 5);
    let ids: Vec<i32> = {
        let client = pool.get().await.unwrap();
        // 12,000 heartbeats over the last minute, then a pendant alarm; and a pendant alarm
        // stamped an hour ahead, as if received after the catch-up began.
        client
            .batch_execute(
                "INSERT INTO events (device_id, seq, occurred_at, received_at, kind, data)
                 SELECT d.id, g, now(), now() - interval '60 s' + g * interval '4 ms', 16,
                        '{\"battery\": 80, \"signal\": -67, \"interval_s\": 900}'
                   FROM devices d, generate_series(1, 12000) g WHERE d.uid = 'hub-c2';
                 INSERT INTO events (device_id, seq, occurred_at, received_at, kind, data)
                 SELECT id, 12001, now(), now(), 1, '{}' FROM devices WHERE uid = 'hub-c2';
                 INSERT INTO events (device_id, seq, occurred_at, received_at, kind, data)
                 SELECT id, 1, now(), now() + interval '1 hour', 1, '{}'
                   FROM devices WHERE uid = 'pendant-c3';",
            )
            .await
            .unwrap();
        client
            .query(
                "SELECT id FROM devices WHERE uid IN ('hub-c2', 'pendant-c3') ORDER BY uid",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let rules = Rules::from(&AlarmSettings::default());
    let looked = homeward::alarms::catch_up(&pool, &rules, &LiveHub::default(), "test")
        .await
        .unwrap();
    assert_eq!(looked, 12_001);
    let client = pool.get().await.unwrap();
    let last_seq: i64 = client
        .query_one(
            "SELECT last_seq FROM device_health WHERE device_id = $1",
            &[&ids[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(last_seq, 12_000);
    let sources: Vec<(i32, i64)> = client
        .query("SELECT source_device_id, source_seq FROM alarms", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(sources, vec![(ids[0], 12_001)]);
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
