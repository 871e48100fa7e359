//! Visits derived from check events: MQTT check-ins, rebuilding from raw events and catching
//! up after a restart.

use homeward::auth::{OrgKind, Role};
use homeward::evv::EvvSettings;
use homeward_testkit::mqtt::publish_json;
use homeward_testkit::{spawn_app, test_settings};
use serde_json::json;

use super::{ms, now_s, phone_sends, schedule, setup, visits_when, FAR, HOME};

#[tokio::test]
async fn mqtt_check_ins_make_visits_and_commissioners_see_pseudonyms() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Mqtt", json!({})).await;
    let start = now_s() - chrono::Duration::minutes(20);
    schedule(&app, &s, "V-M", start, 30).await;
    publish_json(
        &app,
        &s.phone,
        &s.secret,
        vec![
            json!({"seq": 1, "t": ms(start), "kind": "check_in", "method": "gps", "visit": "V-M", "lat": HOME.0, "lon": HOME.1}),
            json!({"seq": 2, "t": ms(start + chrono::Duration::minutes(10)), "kind": "check_out", "method": "gps", "visit": "V-M", "lat": HOME.0, "lon": HOME.1}),
        ],
    )
    .await;
    visits_when(&app, &s.p.token, |v| {
        v.len() == 1 && v[0]["completed"] == true
    })
    .await;

    let (council, token) = app
        .org_with_user("EVV Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let none = app.get_ok("/v1/visits", &token).await;
    assert!(
        none["items"].as_array().unwrap().is_empty(),
        "no contract, nothing seen"
    );
    let client = app.pool.get().await.unwrap();
    let contract: i32 = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on) VALUES ($1, $2, 'C-1', current_date - 1) RETURNING id",
            &[&council.id, &s.p.org.id],
        )
        .await
        .unwrap()
        .get(0);
    let still_none = app.get_ok("/v1/visits", &token).await;
    assert!(
        still_none["items"].as_array().unwrap().is_empty(),
        "a contract alone shows nobody: only people funded under it"
    );
    client
        .execute(
            "INSERT INTO service_periods (organisation_id, person_id, contract_id, started_on) VALUES ($1, $2, $3, current_date - 1)",
            &[&s.p.org.id, &(s.person as i32), &contract],
        )
        .await
        .unwrap();
    let pseudonym: String = client
        .query_one(
            "SELECT pseudonym FROM people WHERE id = $1",
            &[&(s.person as i32)],
        )
        .await
        .unwrap()
        .get(0);
    let seen = app.get_ok("/v1/visits", &token).await;
    let v = &seen["items"][0];
    assert_eq!(v["person"], pseudonym, "{v}");
    assert!(v.get("person_name").is_none() && v.get("person_id").is_none());
    assert!(
        v["check_in"].get("lat").is_none(),
        "no home location for commissioners"
    );
    let text = seen.to_string();
    assert!(
        !text.contains("Ada") && !text.contains("P-1") && !text.contains("Bea"),
        "{text}"
    );
    let csv = app
        .get("/v1/visits/export?format=csv", Some(&token))
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.contains(&pseudonym) && !csv.contains("P-1"), "{csv}");
    // Commissioners read, never write.
    let (st, _) = app
        .post_json("/v1/people", &token, &json!({"external_ref": "X"}))
        .await;
    assert_eq!(st, 403);
    app.stop().await;
}

/// Every column of every visit except the surrogate id, in key order.
async fn snapshot(pool: &deadpool_postgres::Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    client
        .query(
            "SELECT (to_jsonb(v) - 'id')::text FROM visits v ORDER BY visit_key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Live derivation and a rebuild from corrupted rows must agree (a rebuild that derives
/// nothing turns this red).
#[tokio::test]
async fn rebuilding_from_raw_events_gives_the_same_visits() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Rebuild", json!({"home_tag": "TAG-R"})).await;
    let now = now_s();
    let t = |min: i64| ms(now - chrono::Duration::minutes(min));
    let sv = schedule(&app, &s, "V-1", now - chrono::Duration::minutes(200), 30).await;
    schedule(&app, &s, "V-2", now - chrono::Duration::minutes(100), 30).await;
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!([
            {"seq": 1, "t": t(200), "kind": "check_in", "method": "gps", "visit": "V-1", "lat": FAR.0, "lon": FAR.1, "accuracy_m": 30.0, "fix_age_s": 2},
            {"seq": 2, "t": t(170), "kind": "check_out", "method": "tag", "tag": "TAG-R"},
            {"seq": 3, "t": t(100), "kind": "check_in", "method": "tag", "tag": "TAG-R"},
            {"seq": 4, "t": t(50), "kind": "check_in", "method": "manual", "reason": "no_signal", "memo": "no fix"},
            {"seq": 5, "t": t(5), "kind": "check_out", "method": "gps", "lat": HOME.0, "lon": HOME.1},
        ]),
    )
    .await;
    let visits = visits_when(&app, &s.p.token, |v| v.len() == 3).await;
    let first = visits
        .iter()
        .find(|v| v["scheduled_visit_id"] == sv)
        .unwrap();
    let (st, _) = app.post_json(&format!("/v1/visits/{}/adjustments", first["id"]), &s.p.token, &json!({"start": now - chrono::Duration::minutes(201), "reason_code": "wrong_location_pin", "resolution_code": "pin_moved"}))
    .await;
    assert_eq!(st, 201);
    let third = schedule(&app, &s, "V-3", now - chrono::Duration::minutes(400), 30).await;
    let (st, _) = app.post_json("/v1/visits/manual", &s.p.token, &json!({"scheduled_visit_id": third, "start": now - chrono::Duration::minutes(400), "end": now - chrono::Duration::minutes(380), "reason_code": "office_entry", "memo": "paper timesheet"}))
    .await;
    assert_eq!(st, 201);

    let live = snapshot(&app.pool).await;
    assert_eq!(live.len(), 4, "{live:?}");
    // The derived rows go wrong: one lost, one altered, one that no event supports.
    let corrupt = || async {
        let client = app.pool.get().await.unwrap();
        client
            .batch_execute(
                "DELETE FROM visits WHERE id = (SELECT min(id) FROM visits);
                 UPDATE visits SET started_at = started_at - interval '1 hour', adjustments = adjustments + 1
                  WHERE id = (SELECT max(id) FROM visits);
                 INSERT INTO visits (organisation_id, visit_key, match_method, check_in)
                 SELECT organisation_id, 'stray', 'unmatched', '{}'::jsonb FROM visits LIMIT 1;",
            )
            .await
            .unwrap();
        assert_ne!(snapshot(&app.pool).await, live);
    };
    corrupt().await;
    let report = homeward::evv::rebuild_with(&app.pool, &EvvSettings::default())
        .await
        .unwrap();
    assert_eq!(report.visits, 4);
    assert_eq!(snapshot(&app.pool).await, live);
    // And a second time, from an emptied table.
    {
        let client = app.pool.get().await.unwrap();
        client.execute("DELETE FROM visits", &[]).await.unwrap();
    }
    homeward::evv::rebuild(&app.pool).await.unwrap();
    assert_eq!(snapshot(&app.pool).await, live);
    app.stop().await;
}

#[tokio::test]
async fn a_restart_catches_up_on_check_events_stored_while_down() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Restart", json!({})).await;
    let start = now_s() - chrono::Duration::minutes(30);
    schedule(&app, &s, "V-1", start, 30).await;
    let db = app.db_config.clone();
    app.stop().await;
    // Stored while no derivation ran (as if written just before a crash).
    let pool = homeward::db::build_pool(db.clone(), 2, 5);
    let client = pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO events (device_id, seq, occurred_at, received_at, kind, data)
             SELECT id, 1, $2, now(), 22, $3::text::jsonb FROM devices WHERE uid = $1",
            &[
                &s.phone,
                &start,
                &json!({"method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1}).to_string(),
            ],
        )
        .await
        .unwrap();
    drop(client);
    let app = homeward_testkit::spawn_app_on(test_settings(), db).await;
    let visits = visits_when(&app, &s.p.token, |v| v.len() == 1).await;
    assert_eq!(visits[0]["check_in"]["verdict"], "verified", "{visits:?}");
    app.stop().await;
}
