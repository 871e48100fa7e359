//! Updates of reference data over the API: `PATCH /v1/workers/{id}` and
//! `PATCH /v1/scheduled-visits/{id}`, validated, audited with before and after, another
//! organisation's answering 404; a started visit's schedule cannot be moved, and moving a
//! window withdraws the missed-visit alert raised for the old one.

use chrono::Duration;
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use super::{now_s, schedule, setup};

const LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    app.request_json(Method::PATCH, path, token, Some(&body))
        .await
}

/// The newest audit row about `object_type` `object_id`: its action and its change.
async fn last_audit(
    app: &TestApp,
    token: &str,
    object_type: &str,
    object_id: i64,
) -> (String, Value) {
    let log = app
        .get_ok(
            &format!("/v1/audit?object_type={object_type}&object_id={object_id}&limit=1000"),
            token,
        )
        .await;
    let row = log["items"].as_array().unwrap().last().cloned().unwrap();
    let change: Value = serde_json::from_str(row["change"].as_str().unwrap()).unwrap();
    (row["action"].as_str().unwrap().to_owned(), change)
}

#[tokio::test]
async fn a_worker_is_updated_validated_audited_and_hidden_from_others() {
    let app = spawn_app().await;
    let s = setup(&app, "Worker updates", json!({})).await;
    let other = setup(&app, "Worker updates other", json!({})).await;
    let path = format!("/v1/workers/{}", s.worker);

    let (st, w) = patch(
        &app,
        &path,
        &s.p.token,
        json!({"external_ref": " W-2 ", "display_name": null}),
    )
    .await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["external_ref"], "W-2");
    assert!(w["display_name"].is_null(), "{w}");
    assert_eq!(w["phones"], json!([s.phone]), "the phone stays linked");
    assert_eq!(app.get_ok(&path, &s.p.token).await, w);
    let (action, change) = last_audit(&app, &s.p.token, "worker", s.worker).await;
    assert_eq!(action, "worker.update");
    assert_eq!(change["before"]["external_ref"], "W-1");
    assert_eq!(change["before"]["display_name"], "Bea");
    assert_eq!(change["after"]["external_ref"], "W-2");

    // Left out: unchanged.
    let (st, w) = patch(&app, &path, &s.p.token, json!({"display_name": "Bea B"})).await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(
        (w["external_ref"].as_str(), w["display_name"].as_str()),
        (Some("W-2"), Some("Bea B"))
    );

    for (body, field) in [
        (json!({"external_ref": "  "}), "external_ref"),
        (json!({"external_ref": "x".repeat(101)}), "external_ref"),
        (json!({"display_name": "x".repeat(201)}), "display_name"),
    ] {
        let (st, b) = patch(&app, &path, &s.p.token, body).await;
        assert_eq!(st, 422, "{b}");
        assert_eq!(b["errors"][0]["field"], field, "{b}");
    }
    let (st, b) = patch(&app, &path, &s.p.token, json!({"phones": []})).await;
    assert_eq!(st, 400, "unknown fields are refused: {b}");

    // Another worker's reference: 409.
    let (_, second) = app
        .post_json("/v1/workers", &s.p.token, &json!({"external_ref": "W-3"}))
        .await;
    let (st, b) = patch(
        &app,
        &format!("/v1/workers/{}", second["id"]),
        &s.p.token,
        json!({"external_ref": "W-2"}),
    )
    .await;
    assert_eq!(st, 409, "{b}");

    // Another organisation's worker is not found, and stays as it was.
    let (st, b) = patch(
        &app,
        &path,
        &other.p.token,
        json!({"display_name": "Mallory"}),
    )
    .await;
    assert_eq!(st, 404, "{b}");
    assert_eq!(app.get_ok(&path, &s.p.token).await["display_name"], "Bea B");
}

#[tokio::test]
async fn a_scheduled_visit_is_updated_validated_audited_and_hidden_from_others() {
    let app = spawn_app().await;
    let s = setup(&app, "Schedule updates", json!({})).await;
    let other = setup(&app, "Schedule updates other", json!({})).await;
    let start = now_s() + Duration::hours(5);
    let id = schedule(&app, &s, "V-U1", start, 30).await;
    let path = format!("/v1/scheduled-visits/{id}");

    let new_start = start + Duration::hours(1);
    let (st, v) = patch(
        &app,
        &path,
        &s.p.token,
        json!({"window_start": new_start, "window_end": new_start + Duration::minutes(45),
               "worker_id": null, "service_type": " meals ", "outcomes": ["I can eat well"]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["window_start"], json!(new_start));
    assert!(v["worker_id"].is_null(), "{v}");
    assert_eq!(v["service_type"], "meals");
    assert_eq!(v["reference"], "V-U1", "the reference stays");
    let (action, change) = last_audit(&app, &s.p.token, "scheduled_visit", id).await;
    assert_eq!(action, "scheduled_visit.update");
    assert_eq!(change["before"]["window_start"], json!(start));
    assert_eq!(change["before"]["worker_id"], s.worker);
    assert_eq!(change["after"]["window_start"], json!(new_start));

    let (st, v) = patch(&app, &path, &s.p.token, json!({"worker_id": s.worker})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["worker_id"], s.worker);
    assert_eq!(v["window_start"], json!(new_start), "left out: unchanged");

    for (body, field) in [
        (
            json!({"window_end": new_start - Duration::minutes(1)}),
            "window_end",
        ),
        (
            json!({"window_start": new_start + Duration::hours(2)}),
            "window_start",
        ),
        (json!({"service_type": " "}), "service_type"),
        (json!({"outcomes": [""]}), "outcomes[0]"),
        (json!({"worker_id": other.worker}), "worker_id"),
        (
            json!({"window_start": "2300-01-01T00:00:00Z"}),
            "window_start",
        ),
    ] {
        let (st, b) = patch(&app, &path, &s.p.token, body.clone()).await;
        assert_eq!(st, 422, "{body}: {b}");
        assert_eq!(b["errors"][0]["field"], field, "{body}: {b}");
    }
    let (st, b) = patch(&app, &path, &s.p.token, json!({"person_id": s.person})).await;
    assert_eq!(st, 400, "the person is not changed: {b}");

    let (st, b) = patch(&app, &path, &other.p.token, json!({"service_type": "x"})).await;
    assert_eq!(st, 404, "{b}");

    let (st, b) = app
        .post_json(
            &format!("{path}/cancel"),
            &s.p.token,
            &json!({"reason": "in hospital"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = patch(&app, &path, &s.p.token, json!({"service_type": "x"})).await;
    assert_eq!(st, 409, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("cancelled"), "{b}");
}

#[tokio::test]
async fn a_started_visit_keeps_its_window_and_a_move_withdraws_a_missed_alert() {
    let app = spawn_app().await;
    let s = setup(&app, "Schedule moves", json!({})).await;
    let start = now_s() - Duration::hours(2);
    let done = schedule(&app, &s, "V-DONE", start, 30).await;
    let (st, b) = app
        .post_json(
            "/v1/visits/manual",
            &s.p.token,
            &json!({"scheduled_visit_id": done, "start": start, "end": start + Duration::minutes(30),
                    "reason_code": "office_entry", "memo": "paper timesheet"}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let path = format!("/v1/scheduled-visits/{done}");
    let (st, b) = patch(
        &app,
        &path,
        &s.p.token,
        json!({"window_start": start - Duration::hours(1)}),
    )
    .await;
    assert_eq!(st, 409, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("started"), "{b}");
    // What does not move the window may still change.
    let (st, b) = patch(&app, &path, &s.p.token, json!({"service_type": "meals"})).await;
    assert_eq!(st, 200, "{b}");

    // A visit that nobody attended raises an alert; moving it later withdraws the alert, live.
    let late_start = now_s() + Duration::hours(3);
    let late = schedule(&app, &s, "V-LATE", late_start, 30).await;
    let hub = homeward::live::LiveHub::default();
    let settings = homeward::evv::EvvSettings::default();
    let report = homeward::evv::check_missed_visits(
        &app.pool,
        &hub,
        &settings,
        late_start + Duration::hours(1),
    )
    .await
    .unwrap();
    assert_eq!(report.raised.len(), 1);
    let mut live = app.live(&s.p.token).await;
    let moved = late_start + Duration::hours(4);
    let (st, b) = patch(
        &app,
        &format!("/v1/scheduled-visits/{late}"),
        &s.p.token,
        json!({"window_start": moved, "window_end": moved + Duration::minutes(30)}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let frame = live.text_until("event: missed_visit", LIVE_WAIT).await;
    assert!(
        frame.contains("\"cleared_reason\":\"rescheduled\""),
        "{frame}"
    );
    let open = app.get_ok("/v1/missed-visits?status=all", &s.p.token).await;
    assert!(open["items"].as_array().unwrap().is_empty(), "{open}");
    // Due again at the new time.
    let report =
        homeward::evv::check_missed_visits(&app.pool, &hub, &settings, moved + Duration::hours(1))
            .await
            .unwrap();
    assert_eq!(report.raised.len(), 1);
    assert_eq!(report.raised[0].window_start, moved);
}
