//! Visit verification against the real application: reference data over the API, check-ins
//! over HTTP and MQTT, geofence verdicts, exceptions, adjustments, the export, missed-visit
//! alerts (driven by an injected clock) and rebuilding visits from raw events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use homeward::auth::{OrgKind, Role};
use homeward::evv::EvvSettings;
use homeward_testkit::mqtt::publish_json;
use homeward_testkit::{eventually, spawn_app, spawn_app_with, test_settings, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// Home of the people in these tests (Westminster).
pub(crate) const HOME: (f64, f64) = (51.5007, -0.1246);
/// About 450 m away (the London Eye).
const FAR: (f64, f64) = (51.5033, -0.1196);
/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

pub(crate) struct Provider {
    pub(crate) org: homeward::auth::Organisation,
    pub(crate) token: String,
}

async fn provider(app: &TestApp, name: &str) -> Provider {
    let (org, token) = app
        .org_with_user(name, OrgKind::Provider, Role::ProviderAdmin)
        .await;
    Provider { org, token }
}

/// Sends check events from a phone over HTTP; each must be stored.
pub(crate) async fn phone_sends(app: &TestApp, uid: &str, secret: &str, events: Value) {
    let r = app
        .post_as_device("/v1/check-ins", uid, secret, &events)
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Now, in whole seconds (device times are in milliseconds; comparisons stay exact).
pub(crate) fn now_s() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn north(metres: f64) -> (f64, f64) {
    (HOME.0 + metres / M_PER_DEG, HOME.1)
}

pub(crate) struct Setup {
    pub(crate) p: Provider,
    pub(crate) person: i64,
    pub(crate) worker: i64,
    pub(crate) phone: String,
    pub(crate) secret: String,
}

/// A provider with one person at HOME, one worker with a linked phone.
pub(crate) async fn setup(app: &TestApp, name: &str, person_extra: Value) -> Setup {
    let p = provider(app, name).await;
    let phone = format!("phone-{}", name.to_lowercase().replace(' ', "-"));
    let secret = app.device(&p.org, &phone, "phone").await;
    let mut body = json!({"external_ref": "P-1", "display_name": "Ada", "home_lat": HOME.0, "home_lon": HOME.1});
    if let (Some(b), Some(extra)) = (body.as_object_mut(), person_extra.as_object()) {
        b.extend(extra.clone());
    }
    let (s, person) = app.post_json("/v1/people", &p.token, &body).await;
    assert_eq!(s, 201, "{person}");
    assert_eq!(person["effective_geofence_radius_m"], 150.0);
    let (s, worker) = app
        .post_json(
            "/v1/workers",
            &p.token,
            &json!({"external_ref": "W-1", "display_name": "Bea", "phone_uid": phone}),
        )
        .await;
    assert_eq!(s, 201, "{worker}");
    Setup {
        person: person["id"].as_i64().unwrap(),
        worker: worker["id"].as_i64().unwrap(),
        p,
        phone,
        secret,
    }
}

pub(crate) async fn schedule(
    app: &TestApp,
    s: &Setup,
    reference: &str,
    start: DateTime<Utc>,
    minutes: i64,
) -> i64 {
    let (status, body) = app
        .post_json(
            "/v1/scheduled-visits",
            &s.p.token,
            &json!({
                "reference": reference, "person_id": s.person, "worker_id": s.worker,
                "window_start": start, "window_end": start + chrono::Duration::minutes(minutes),
                "service_type": "personal_care", "outcomes": ["I can wash myself"],
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// Waits until the visits list satisfies `check`.
async fn visits_when(app: &TestApp, token: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let found = eventually(Duration::from_secs(20), || async {
        let body = app.get_ok("/v1/visits", token).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        check(&items).then_some(items)
    })
    .await;
    match found {
        Some(v) => v,
        None => panic!(
            "visits never matched; last: {}",
            app.get_ok("/v1/visits", token).await
        ),
    }
}

fn exception_types(v: &Value) -> Vec<String> {
    v["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

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

#[tokio::test]
async fn missed_visit_alerts_fire_once_and_clear_with_an_injected_clock() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Missed", json!({})).await;
    // Far enough ahead that the application's own periodic check (real time) never fires it.
    let start = now_s() + chrono::Duration::hours(3);
    let sv = schedule(&app, &s, "V-LATE", start, 30).await;
    let cancelled = schedule(&app, &s, "V-CANCEL", start, 30).await;
    let settings = EvvSettings::default();
    let hub = homeward::live::LiveHub::default();
    let mut rx = hub.subscribe();
    let at = |min: i64| start + chrono::Duration::minutes(min);

    let report = homeward::evv::check_missed_visits(&app.pool, &hub, &settings, at(29))
        .await
        .unwrap();
    assert!(
        report.raised.is_empty(),
        "not yet due within the 30-minute grace"
    );
    // Two instances at once: the alert is raised once.
    let (r1, r2) = tokio::join!(
        homeward::evv::check_missed_visits(&app.pool, &hub, &settings, at(31)),
        homeward::evv::check_missed_visits(&app.pool, &hub, &settings, at(31)),
    );
    let raised = r1.unwrap().raised.len() + r2.unwrap().raised.len();
    assert_eq!(raised, 2, "one alert for each of the two visits, once");
    let again = homeward::evv::check_missed_visits(&app.pool, &hub, &settings, at(40))
        .await
        .unwrap();
    assert!(again.raised.is_empty());
    let event = rx.try_recv().unwrap();
    assert_eq!(event.topic, "missed_visit");
    assert_eq!(event.data["state"], "raised");
    let open = app.get_ok("/v1/missed-visits", &s.p.token).await;
    assert_eq!(open["items"].as_array().unwrap().len(), 2, "{open}");

    // The live stream of the application pushes the clearing.
    let mut live = app.live(&s.p.token).await;
    let (st, body) = app
        .post_json(
            &format!("/v1/scheduled-visits/{cancelled}/cancel"),
            &s.p.token,
            &json!({"reason": "in hospital"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let frame = live.text_until("event: missed_visit", LIVE_WAIT).await;
    assert!(frame.contains("\"state\":\"cleared\""), "{frame}");
    assert!(
        frame.contains("\"cleared_reason\":\"cancelled\""),
        "{frame}"
    );

    // The worker arrives (late): the alert clears as the visit starts.
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!({"seq": 1, "t": ms(Utc::now()), "kind": "check_in", "method": "gps", "visit": "V-LATE", "lat": HOME.0, "lon": HOME.1}),
    )
    .await;
    let frame = live.text_until("visit_started", LIVE_WAIT).await;
    assert!(
        frame.contains(&format!("\"scheduled_visit_id\":{sv}")),
        "{frame}"
    );
    let open = app.get_ok("/v1/missed-visits", &s.p.token).await;
    assert!(open["items"].as_array().unwrap().is_empty(), "{open}");
    let all = app.get_ok("/v1/missed-visits?state=all", &s.p.token).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    app.stop().await;
}

/// How long a test reads the live stream for what it expects.
const LIVE_WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_application_raises_a_due_alert_on_the_live_stream() {
    let mut settings = test_settings();
    settings.evv.missed_visit_check_secs = 1;
    let app = spawn_app_with(settings).await;
    let s = setup(&app, "EVV Live", json!({})).await;
    let mut live = app.live(&s.p.token).await;
    let sv = schedule(
        &app,
        &s,
        "V-DUE",
        now_s() - chrono::Duration::minutes(45),
        60,
    )
    .await;
    let frame = live.text_until("\"state\":\"raised\"", LIVE_WAIT).await;
    assert!(
        frame.contains(&format!("\"scheduled_visit_id\":{sv}")),
        "{frame}"
    );
    app.stop().await;
}

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

/// A name typed into Homeward must not run as a formula in the spreadsheet a CSV export is
/// opened in: cells beginning with `=`, `+`, `-` or `@` are exported as text.
#[tokio::test]
async fn csv_exports_defuse_formulas_typed_into_names() {
    let app = spawn_app().await;
    let s = setup(
        &app,
        "EVV Csv",
        json!({"external_ref": "=HYPERLINK(\"http://x\",\"y\")"}),
    )
    .await;
    let start = now_s() - chrono::Duration::minutes(40);
    schedule(&app, &s, "V-1", start, 30).await;
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!([
            {"seq": 1, "t": ms(start + chrono::Duration::minutes(1)), "kind": "check_in", "method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0},
            {"seq": 2, "t": ms(start + chrono::Duration::minutes(30)), "kind": "check_out", "method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0},
        ]),
    )
    .await;
    visits_when(&app, &s.p.token, |v| {
        v.len() == 1 && v[0]["completed"] == true
    })
    .await;
    let csv = app
        .get("/v1/visits/export?format=csv", Some(&s.p.token))
        .await
        .text()
        .await
        .unwrap();
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let person = rows
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "person")
        .unwrap();
    let row = rows.records().next().expect("one visit").unwrap();
    assert_eq!(&row[person], "'=HYPERLINK(\"http://x\",\"y\")", "{csv}");
    for cell in row.iter() {
        assert!(
            !cell.starts_with(['=', '+', '@'])
                && (!cell.starts_with('-') || cell.parse::<f64>().is_ok()),
            "a formula-like cell: {cell}"
        );
    }
    app.stop().await;
}

/// A council sees the visits of the people it funds at a provider, on the days its contract
/// and their service period cover: not another council's people, not self-funded people at
/// the same provider, and nothing after its contract ended.
#[tokio::test]
async fn commissioners_see_only_the_people_they_fund_while_their_contract_runs() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Scope", json!({})).await;
    let mut people = vec![s.person];
    for reference in ["P-2", "P-3"] {
        let (status, body) = app
            .post_json(
                "/v1/people",
                &s.p.token,
                &json!({"external_ref": reference, "home_lat": HOME.0, "home_lon": HOME.1}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        people.push(body["id"].as_i64().unwrap());
    }
    let (funded_by_1, funded_by_2, self_funded) = (people[0], people[1], people[2]);
    let today = Utc::now().date_naive();
    let (council_1, token_1) = app
        .org_with_user("Council One", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let (council_2, token_2) = app
        .org_with_user("Council Two", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let client = app.pool.get().await.unwrap();
    // Council One's contract ended two days ago; Council Two's runs on.
    let contract_1 = homeward::outcomes::contracts::create_contract(
        &**client,
        &council_1,
        &s.p.org,
        "C-1",
        today - chrono::Duration::days(60),
        Some(today - chrono::Duration::days(2)),
    )
    .await
    .unwrap();
    let contract_2 = homeward::outcomes::contracts::create_contract(
        &**client,
        &council_2,
        &s.p.org,
        "C-2",
        today - chrono::Duration::days(60),
        None,
    )
    .await
    .unwrap();
    for (person, contract) in [
        (funded_by_1, Some(contract_1)),
        (funded_by_2, Some(contract_2)),
        (self_funded, None),
    ] {
        let (status, body) = app
            .post_json(
                "/v1/outcomes/service-periods",
                &s.p.token,
                &json!({"person_id": person, "contract_id": contract,
                   "started_on": today - chrono::Duration::days(30)}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Four visits: the first person's five days ago (in Council One's contract) and today
    // (after it), the second's and the self-funded person's today.
    let now = now_s();
    let visits = [
        ("V-OLD", funded_by_1, now - chrono::Duration::days(5)),
        ("V-NEW", funded_by_1, now - chrono::Duration::minutes(150)),
        ("V-TWO", funded_by_2, now - chrono::Duration::minutes(100)),
        ("V-SELF", self_funded, now - chrono::Duration::minutes(50)),
    ];
    let mut seq = 0;
    for (reference, person, start) in visits {
        let (status, body) = app
            .post_json(
                "/v1/scheduled-visits",
                &s.p.token,
                &json!({"reference": reference, "person_id": person, "worker_id": s.worker,
                   "window_start": start, "window_end": start + chrono::Duration::minutes(30),
                   "service_type": "personal_care"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        seq += 2;
        phone_sends(
            &app,
            &s.phone,
            &s.secret,
            json!([
                {"seq": seq - 1, "t": ms(start + chrono::Duration::minutes(1)), "kind": "check_in", "method": "gps", "visit": reference, "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0},
                {"seq": seq, "t": ms(start + chrono::Duration::minutes(20)), "kind": "check_out", "method": "gps", "visit": reference, "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0},
            ]),
        )
        .await;
    }
    let all = visits_when(&app, &s.p.token, |v| {
        v.len() == 4 && v.iter().all(|v| v["completed"] == true)
    })
    .await;
    let id_of = |reference: &str| {
        all.iter()
            .find(|v| v["scheduled_reference"] == reference || v["reference"] == reference)
            .unwrap_or_else(|| panic!("{reference} in {all:?}"))["id"]
            .as_i64()
            .unwrap()
    };
    let ids: Vec<i64> = visits.iter().map(|(r, _, _)| id_of(r)).collect();

    let seen = |token: &str| {
        let token = token.to_owned();
        let app = &app;
        async move {
            let list = app.get_ok("/v1/visits", &token).await;
            let mut listed: Vec<i64> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_i64().unwrap())
                .collect();
            listed.sort();
            let export = app.get_ok("/v1/visits/export?format=json", &token).await;
            let mut exported: Vec<i64> = export["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["visit_id"].as_i64().unwrap())
                .collect();
            exported.sort();
            assert_eq!(listed, exported, "the export shows what the list shows");
            listed
        }
    };
    assert_eq!(
        seen(&token_1).await,
        vec![ids[0]],
        "Council One: its person, in its dates"
    );
    assert_eq!(
        seen(&token_2).await,
        vec![ids[2]],
        "Council Two: its person only"
    );
    for (token, visible) in [(&token_1, ids[0]), (&token_2, ids[2])] {
        for &id in &ids {
            let status = app
                .get(&format!("/v1/visits/{id}"), Some(token))
                .await
                .status();
            assert_eq!(status == 200, id == visible, "visit {id}: {status}");
        }
        let exceptions = app
            .get_ok("/v1/visits/exceptions?include_resolved=true", token)
            .await;
        for e in exceptions["items"].as_array().unwrap() {
            assert_eq!(e["visit_id"].as_i64(), Some(visible), "{e}");
        }
    }
    app.stop().await;
}
