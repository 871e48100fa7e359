//! Check-ins over HTTP: the verified visit and its export, each exception, warn-only areas
//! and adjustments.

use chrono::{DateTime, Utc};
use homeward_testkit::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};

use super::{
    exception_types, ms, north, now_s, phone_sends, provider, schedule, setup, visits_when, FAR,
    HOME,
};

#[tokio::test]
async fn verified_gps_visit_is_assembled_and_exported_with_the_six_elements() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Gps", json!({})).await;
    let start = now_s() - chrono::Duration::minutes(40);
    schedule(&app, &s, "V-1", start, 30).await;
    let (lat, lon) = north(100.0);
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!([
            {"seq": 1, "t": ms(start + chrono::Duration::minutes(20)), "kind": "check_in", "method": "gps", "visit": "V-1", "lat": lat, "lon": lon, "accuracy_m": 20.0, "fix_age_s": 4},
            {"seq": 2, "t": ms(start + chrono::Duration::minutes(35)), "kind": "check_out", "method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0, "fix_age_s": 2},
        ]),
    )
    .await;
    let visits = visits_when(&app, &s.p.token, |v| {
        v.len() == 1 && v[0]["completed"] == true
    })
    .await;
    let v = &visits[0];
    assert_eq!(v["check_in"]["verdict"], "verified", "{v}");
    assert_eq!(v["check_in"]["reason"], "within_geofence");
    assert!((v["check_in"]["distance_m"].as_f64().unwrap() - 100.0).abs() < 2.0);
    assert_eq!(v["check_out"]["verdict"], "verified");
    assert_eq!(v["match_method"], "visit_reference");
    assert_eq!(v["location"], "home");
    assert_eq!(v["person"], "P-1");
    assert_eq!(v["worker"], "W-1");
    // Late by 20 minutes: context, not an exception.
    assert_eq!(v["context"]["late"], true);
    assert_eq!(v["context"]["late_by_minutes"], 20);
    assert_eq!(v["context"]["short"], true);
    assert!(exception_types(v).is_empty(), "{v}");

    // A second visit, open (no check-out yet): not completed, so not exported.
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!({"seq": 3, "t": ms(Utc::now()), "kind": "check_in", "method": "gps", "lat": HOME.0, "lon": HOME.1}),
    )
    .await;
    visits_when(&app, &s.p.token, |v| v.len() == 2).await;

    let export = app
        .get_ok("/v1/visits/export?format=json", &s.p.token)
        .await;
    let rows = export["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{export}");
    let row = &rows[0];
    let (check_in, check_out) = (
        start + chrono::Duration::minutes(20),
        start + chrono::Duration::minutes(35),
    );
    let time = |element: &str| {
        row[element]
            .as_str()
            .unwrap_or_else(|| panic!("{element} in {row}"))
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    // The six elements, with the values of this visit.
    assert_eq!(row["service_type"], "personal_care", "{row}");
    assert_eq!(row["person"], "P-1");
    assert_eq!(row["worker"], "W-1");
    assert_eq!(row["location"], "home");
    assert_eq!(row["date"], check_in.date_naive().to_string());
    assert_eq!(time("start"), check_in);
    assert_eq!(time("end"), check_out);
    assert_eq!((time("raw_start"), time("raw_end")), (check_in, check_out));
    assert_eq!(row["adjusted"], false);
    assert_eq!(row["scheduled_reference"], "V-1");
    assert_eq!(
        (&row["check_in_method"], &row["check_in_verdict"]),
        (&json!("gps"), &json!("verified"))
    );
    assert_eq!(
        (&row["check_out_method"], &row["check_out_verdict"]),
        (&json!("gps"), &json!("verified"))
    );
    let csv = app
        .get("/v1/visits/export?format=csv", Some(&s.p.token))
        .await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 1, "{text}");
    // The CSV row says what the JSON row says, column for column.
    let fields = row.as_object().unwrap();
    assert_eq!(headers.len(), fields.len(), "{text}");
    for (header, value) in headers.iter().zip(records[0].iter()) {
        let expected = match &fields[header] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        assert_eq!(value, expected, "{header} in {text}");
    }
    assert_eq!(
        app.get("/v1/visits/export?format=xml", Some(&s.p.token))
            .await
            .status(),
        422
    );
    app.stop().await;
}

#[tokio::test]
async fn each_exception_is_reported_and_tags_and_calls_verify() {
    let app = spawn_app().await;
    let s = setup(
        &app,
        "EVV Exceptions",
        json!({"home_tag": "TAG-HOME-1", "home_phone": "+442079460000"}),
    )
    .await;
    let now = now_s();
    let t = |min: i64| ms(now - chrono::Duration::minutes(min));
    let a = schedule(&app, &s, "V-A", now - chrono::Duration::minutes(600), 30).await;
    let b = schedule(&app, &s, "V-B", now - chrono::Duration::minutes(480), 30).await;
    let missed = schedule(
        &app,
        &s,
        "V-MISSED",
        now - chrono::Duration::minutes(360),
        30,
    )
    .await;
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!([
            // V-A: checked in 450 m away (outside the geofence) and never checked out: the next
            // check-in supersedes it.
            {"seq": 1, "t": t(600), "kind": "check_in", "method": "gps", "visit": "V-A", "lat": FAR.0, "lon": FAR.1, "accuracy_m": 500.0},
            // V-B: by the home's tag, out by the home's phone line.
            {"seq": 2, "t": t(480), "kind": "check_in", "method": "tag", "tag": "TAG-HOME-1"},
            {"seq": 3, "t": t(460), "kind": "check_out", "method": "phone", "caller_id": "+442079460000"},
            // A check-out with no check-in, to no scheduled visit and no known person (nothing is
            // scheduled for the worker within the matching tolerance of it).
            {"seq": 4, "t": t(200), "kind": "check_out", "method": "tag", "tag": "TAG-UNKNOWN"},
            // Unscheduled: no visit, no person, the worker has nothing scheduled then.
            {"seq": 5, "t": t(20), "kind": "check_in", "method": "gps", "lat": HOME.0, "lon": HOME.1},
            {"seq": 6, "t": t(10), "kind": "check_out", "method": "gps", "lat": HOME.0, "lon": HOME.1},
        ]),
    )
    .await;
    let visits = visits_when(&app, &s.p.token, |v| v.len() == 4).await;
    let by_scheduled = |id: i64| {
        visits
            .iter()
            .find(|v| v["scheduled_visit_id"] == id)
            .unwrap_or_else(|| panic!("no visit for {id}: {visits:?}"))
            .clone()
    };
    let va = by_scheduled(a);
    assert_eq!(va["check_in"]["verdict"], "rejected", "{va}");
    assert_eq!(va["check_in"]["reason"], "outside_geofence");
    // The allowance for a 500 m accuracy is capped at 100 m: 450 m is still outside 150 + 100.
    assert_eq!(va["check_in"]["allowance_m"], 100.0);
    assert_eq!(va["location"], "community");
    let mut types = exception_types(&va);
    types.sort();
    assert_eq!(types, ["missing_check_out", "outside_geofence"]);
    assert_eq!(va["superseded"], true);

    let vb = by_scheduled(b);
    assert_eq!(vb["match_method"], "tag", "{vb}");
    assert_eq!(vb["check_in"]["verdict"], "verified");
    assert_eq!(vb["check_in"]["reason"], "tag_matched");
    assert_eq!(vb["check_out"]["reason"], "caller_id_matched");
    assert!(exception_types(&vb).is_empty(), "{vb}");

    let orphan = visits
        .iter()
        .find(|v| v["check_in"].is_null())
        .expect("the check-out without a check-in is kept");
    let mut types = exception_types(orphan);
    types.sort();
    assert_eq!(types, ["missing_check_in", "unscheduled"]);
    assert_eq!(orphan["check_out"]["verdict"], "unverified");

    let unscheduled = visits.iter().find(|v| v["check_in"]["seq"] == 5).unwrap();
    assert_eq!(exception_types(unscheduled), ["unscheduled"]);
    assert_eq!(unscheduled["check_in"]["reason"], "person_unknown");
    // Unmatched visits wait in the office's queue.
    let queue = app.get_ok("/v1/visits?unmatched=true", &s.p.token).await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 2, "{queue}");

    // The scheduled visit nobody came to.
    let exceptions = app.get_ok("/v1/visits/exceptions", &s.p.token).await;
    let items = exceptions["items"].as_array().unwrap();
    assert!(
        items.iter().any(|e| e["type"] == "missing_check_in"
            && e["scheduled_visit_id"] == missed
            && e["visit_id"].is_null()),
        "{exceptions}"
    );
    let count = |t: &str| items.iter().filter(|e| e["type"] == t).count();
    assert_eq!(count("outside_geofence"), 1);
    assert_eq!(count("missing_check_out"), 1);
    assert_eq!(count("missing_check_in"), 2);
    assert_eq!(count("unscheduled"), 2);
    assert!(items
        .iter()
        .all(|e| e["type"] != "late" && e["type"] != "short"));

    // The office matches the queued visit to V-MISSED; it leaves the queue.
    let id = unscheduled["id"].as_i64().unwrap();
    let (status, body) = app
        .post_json(
            &format!("/v1/visits/{id}/adjustments"),
            &s.p.token,
            &json!({"scheduled_visit_id": missed, "reason_code": "wrong_visit"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let queue = app.get_ok("/v1/visits?unmatched=true", &s.p.token).await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 1, "{queue}");
    app.stop().await;
}

#[tokio::test]
async fn a_warn_only_area_flags_instead_of_rejecting() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Rural", json!({"area": "rural-north"})).await;
    let r = app
        .request(
            Method::PUT,
            "/v1/geofence-policies/rural-north",
            Some(&s.p.token),
            Some(&json!({"geofence_policy": "warn"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let start = now_s() - chrono::Duration::minutes(30);
    schedule(&app, &s, "V-R", start, 60).await;
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!([
            {"seq": 1, "t": ms(start), "kind": "check_in", "method": "gps", "visit": "V-R", "lat": FAR.0, "lon": FAR.1, "accuracy_m": 10.0},
            {"seq": 2, "t": ms(start + chrono::Duration::minutes(5)), "kind": "check_out", "method": "gps", "visit": "V-R", "lat": HOME.0, "lon": HOME.1, "fix_age_s": 3600},
        ]),
    )
    .await;
    let visits = visits_when(&app, &s.p.token, |v| {
        v.len() == 1 && !v[0]["check_out"].is_null()
    })
    .await;
    assert_eq!(visits[0]["check_in"]["verdict"], "warning");
    assert_eq!(visits[0]["check_in"]["reason"], "outside_geofence");
    // A fix an hour old at the door: stale, flagged.
    assert_eq!(visits[0]["check_out"]["verdict"], "warning");
    assert_eq!(visits[0]["check_out"]["reason"], "stale_fix");
    assert_eq!(visits[0]["check_out"]["stale"], true);
    app.stop().await;
}

#[tokio::test]
async fn adjustments_keep_the_raw_record_and_manual_entries_need_reasons() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Adjust", json!({})).await;
    let start = now_s() - chrono::Duration::minutes(120);
    schedule(&app, &s, "V-1", start, 30).await;
    let other = schedule(&app, &s, "V-2", start + chrono::Duration::minutes(60), 30).await;
    let checked_in = start + chrono::Duration::minutes(2);
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!({"seq": 1, "t": ms(checked_in), "kind": "check_in", "method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1}),
    )
    .await;
    let visits = visits_when(&app, &s.p.token, |v| v.len() == 1).await;
    let id = visits[0]["id"].as_i64().unwrap();
    assert_eq!(exception_types(&visits[0]), ["missing_check_out"]);

    let path = format!("/v1/visits/{id}/adjustments");
    let end = start + chrono::Duration::minutes(31);
    // "other" needs a memo; an unknown reason code is refused; the end cannot precede the start.
    let (st, problem) = app
        .post_json(
            &path,
            &s.p.token,
            &json!({"end": end, "reason_code": "other"}),
        )
        .await;
    assert_eq!(st, 422);
    assert_eq!(problem["errors"][0]["field"], "memo", "{problem}");
    let (st, problem) = app
        .post_json(
            &path,
            &s.p.token,
            &json!({"end": end, "reason_code": "because"}),
        )
        .await;
    assert_eq!(st, 422);
    assert_eq!(problem["errors"][0]["field"], "reason_code");
    let (st, _) = app
        .post_json(
            &path,
            &s.p.token,
            &json!({"end": start, "reason_code": "forgot_check_out"}),
        )
        .await;
    assert_eq!(st, 422);
    let (st, body) = app
        .post_json(
            &path,
            &s.p.token,
            &json!({"end": end, "reason_code": "other", "memo": "phone battery died at the door"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");

    let v = app.get_ok(&format!("/v1/visits/{id}"), &s.p.token).await;
    assert_eq!(v["raw"]["start"].as_str().map(parse), Some(checked_in));
    assert!(
        v["raw"]["end"].is_null(),
        "raw check-out stays missing: {v}"
    );
    assert_eq!(v["adjusted"]["end"].as_str().map(parse), Some(end));
    assert_eq!(v["end"].as_str().map(parse), Some(end));
    assert_eq!(v["completed"], true);
    assert_eq!(v["exceptions"][0]["type"], "missing_check_out");
    assert_eq!(v["exceptions"][0]["resolved"], true);
    let history = v["adjustment_history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["reason_code"], "other");
    assert_eq!(history[0]["memo"], "phone battery died at the door");
    assert_eq!(history[0]["recorded_by"], "EVV Adjust user");
    assert!(history[0]["recorded_at"].is_string());
    // The raw event is untouched.
    let client = app.pool.get().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM events WHERE kind IN (22, 23)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    // Manual entry by the office: reason and memo required.
    let manual = json!({"scheduled_visit_id": other, "start": start + chrono::Duration::minutes(60), "end": start + chrono::Duration::minutes(85), "reason_code": "device_failure"});
    let (st, problem) = app
        .post_json("/v1/visits/manual", &s.p.token, &manual.clone())
        .await;
    assert_eq!(st, 422);
    assert_eq!(problem["errors"][0]["field"], "memo");
    let mut with_memo = manual;
    with_memo["memo"] = json!("worker phoned the office from the home");
    let (st, body) = app
        .post_json("/v1/visits/manual", &s.p.token, &with_memo)
        .await;
    assert_eq!(st, 201, "{body}");
    let mv = app
        .get_ok(&format!("/v1/visits/{}", body["visit_id"]), &s.p.token)
        .await;
    assert!(
        mv["raw"]["start"].is_null() && mv["raw"]["end"].is_null(),
        "{mv}"
    );
    assert_eq!(mv["check_in"]["method"], "manual");
    assert_eq!(mv["check_in"]["reason"], "manual_entry");
    assert_eq!(mv["completed"], true);
    assert_eq!(mv["adjustment_history"].as_array().unwrap().len(), 1);

    // Another organisation sees none of it.
    let stranger = provider(&app, "EVV Stranger").await;
    assert_eq!(
        app.get(&format!("/v1/visits/{id}"), Some(&stranger.token))
            .await
            .status(),
        404
    );
    let (st, _) = app
        .post_json(
            &path,
            &stranger.token,
            &json!({"end": end, "reason_code": "wrong_time"}),
        )
        .await;
    assert_eq!(st, 404);
    app.stop().await;
}

fn parse(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}
