//! The provider's pages in a real headless Chromium: from an alarm on the board to the
//! person's page, with the alarm and a visit on their timeline and their address and key-safe
//! code; a device linked to a person from its page, as the JSON API then shows; a visit
//! adjusted with a reason code from its page, as the API then shows. Over plain HTTP: another
//! provider's person, device and visit pages (and their forms) do not exist, a form without its
//! token changes nothing, and the people API's address and key-safe code (kept out of the audit
//! log in clear) and the device link API's rules.

use std::time::Duration;

use homeward::auth::{self, OrgKind, Role};
use homeward_proto::{EventBody, Percent};
use homeward_testkit::browser::Browser;
use homeward_testkit::mqtt::TestDevice;
use homeward_testkit::{eventually, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::console_kit::{screenshot, session, sign_in, user_with_password};
use crate::visits::{ms, now_s, phone_sends, HOME};

const ADDRESS: &str = "12 Orchard Lane, Westminster, SW1A 2AA";
const KEY_SAFE: &str = "4096";

/// A provider with an admin (API token), a person with an address, access notes and a
/// key-safe code, a fall detector not yet linked, and a care worker with a phone who made one
/// verified visit to the person a few minutes ago.
struct Seeded {
    org: auth::Organisation,
    admin: String,
    person: i64,
    detector: String,
    detector_secret: String,
    visit: i64,
}

async fn seed(app: &TestApp, name: &str) -> Seeded {
    let slug = name.to_lowercase().replace(' ', "-");
    let (org, admin) = app
        .org_with_user(name, OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (status, person) = app
        .post_json(
            "/v1/people",
            &admin,
            &json!({
                "external_ref": format!("P-{slug}"), "display_name": format!("Mary {name}"),
                "home_lat": HOME.0, "home_lon": HOME.1, "area": "North",
                "address": ADDRESS, "access_notes": "Side door; the dog is friendly",
                "key_safe_code": KEY_SAFE,
            }),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    let person = person["id"].as_i64().unwrap();
    let detector = format!("{slug}-fall-1");
    let detector_secret = app.device(&org, &detector, "fall_detector").await;
    let phone = format!("{slug}-phone-1");
    let phone_secret = app.device(&org, &phone, "phone").await;
    let (status, worker) = app
        .post_json(
            "/v1/workers",
            &admin,
            &json!({"external_ref": format!("W-{slug}"), "display_name": "Bea Carer",
                    "phone_uid": phone}),
        )
        .await;
    assert_eq!(status, 201, "{worker}");
    let start = now_s() - chrono::Duration::minutes(6);
    let (status, scheduled) = app
        .post_json(
            "/v1/scheduled-visits",
            &admin,
            &json!({
                "reference": format!("V-{slug}"), "person_id": person, "worker_id": worker["id"],
                "window_start": start, "window_end": start + chrono::Duration::minutes(30),
                "service_type": "personal_care",
            }),
        )
        .await;
    assert_eq!(status, 201, "{scheduled}");
    let check = |seq: i64, kind: &str, minutes: i64| {
        json!({"seq": seq, "t": ms(start + chrono::Duration::minutes(minutes)), "kind": kind,
               "method": "gps", "visit": format!("V-{slug}"), "lat": HOME.0, "lon": HOME.1,
               "accuracy_m": 10.0, "fix_age_s": 2})
    };
    phone_sends(
        app,
        &phone,
        &phone_secret,
        json!([check(1, "check_in", 1), check(2, "check_out", 4)]),
    )
    .await;
    let visit = eventually(Duration::from_secs(20), || async {
        let v = app.get_ok("/v1/visits", &admin).await;
        v["items"]
            .as_array()?
            .iter()
            .find(|v| v["completed"] == true)?["id"]
            .as_i64()
    })
    .await
    .expect("the visit is derived");
    Seeded {
        org,
        admin,
        person,
        detector,
        detector_secret,
        visit,
    }
}

/// Runs `script` in the page and returns its value.
async fn js(browser: &Browser, script: &str) -> Value {
    browser.client.execute(script, vec![]).await.unwrap()
}

#[tokio::test]
async fn a_provider_opens_the_person_from_an_alarm_and_sees_their_timeline_and_home() {
    let app = spawn_app().await;
    let s = seed(&app, "Oak Care").await;
    let browser = Browser::start().await;
    user_with_password(
        &app,
        Some(&browser),
        &s.org,
        "Olive Staff",
        "olive@oak.example",
        Role::ProviderStaff,
    )
    .await;
    // The detector is linked to the person through the API, then raises a fall.
    let (status, linked) = app
        .request_json(
            Method::PUT,
            &format!("/v1/devices/{}/link", s.detector),
            &s.admin,
            Some(&json!({"person_id": s.person})),
        )
        .await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(
        (&linked["person_id"], &linked["changed"]),
        (&json!(s.person), &json!(true))
    );
    let mut detector = TestDevice::connect(&app, &s.detector, &s.detector_secret).await;
    detector
        .send(EventBody::FallDetected {
            confidence: Percent::new(92).unwrap(),
        })
        .await;
    let alarm = eventually(Duration::from_secs(10), || async {
        app.get_ok("/v1/alarms", &s.admin).await["items"][0]["id"].as_i64()
    })
    .await
    .expect("the fall is raised");

    // A visit planned this morning that no one came to.
    let missed_start = now_s() - chrono::Duration::hours(3);
    let (status, missed) = app
        .post_json(
            "/v1/scheduled-visits",
            &s.admin,
            &json!({"reference": "V-missed", "person_id": s.person, "service_type": "meal_prep",
                    "window_start": missed_start,
                    "window_end": missed_start + chrono::Duration::minutes(30)}),
        )
        .await;
    assert_eq!(status, 201, "{missed}");
    // An "I can" plan with the person, agreed by them and the provider.
    let today = chrono::Utc::now().date_naive();
    let (status, plan) = app
        .post_json(
            "/v1/outcome-plans",
            &s.admin,
            &json!({"person_id": s.person, "starts_on": today,
                    "ends_on": today + chrono::Duration::days(90),
                    "outcomes": [{"statement": "I can make my own breakfast", "kind": "reablement",
                                  "payable": false,
                                  "target_date": today + chrono::Duration::days(60)}]}),
        )
        .await;
    assert_eq!(status, 201, "{plan}");
    for party in ["person", "provider"] {
        let (status, body) = app
            .post_json(
                &format!("/v1/outcome-plans/{}/agree", plan["id"]),
                &s.admin,
                &json!({"party": party}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    sign_in(&browser, &app, "olive@oak.example").await;
    browser
        .open(&app.url(&format!("/console/alarms/{alarm}")))
        .await;
    let on_alarm = browser.text("#person").await;
    for expected in [ADDRESS, KEY_SAFE, "Side door"] {
        assert!(on_alarm.contains(expected), "{expected:?} in {on_alarm}");
    }
    browser.submit("#person-page").await;
    assert!(
        browser
            .url()
            .await
            .ends_with(&format!("/console/people/{}", s.person)),
        "{}",
        browser.url().await
    );
    assert_eq!(browser.text("h1").await, "Mary Oak Care");
    assert_eq!(browser.text("[data-testid=address]").await, ADDRESS);
    assert_eq!(browser.text("[data-testid=key-safe]").await, KEY_SAFE);
    let timeline = browser.text("#timeline").await;
    for expected in [
        "Fall alarm",
        "Fall detected",
        "Raised: not answered yet",
        "Visit",
        "personal care (V-oak-care)",
        "Check-in verified",
        "Check-out verified",
        "Planned visit",
        "meal prep (V-missed)",
        "No one checked in",
    ] {
        assert!(timeline.contains(expected), "{expected:?} in {timeline}");
    }
    // Newest first: the alarm came after the visit, which came after the missed one.
    assert!(timeline.find("Fall detected") < timeline.find("personal care"));
    assert!(timeline.find("personal care") < timeline.find("meal prep"));
    assert_eq!(
        browser.text("#timeline-count").await,
        "3 things recorded in the last 30 days, newest first."
    );
    // The alarm on the timeline leads back to it.
    let links = js(
        &browser,
        "return Array.from(document.querySelectorAll('#timeline a')).map(a => a.getAttribute('href'))",
    )
    .await;
    assert!(
        links
            .as_array()
            .unwrap()
            .contains(&json!(format!("/console/alarms/{alarm}"))),
        "{links}"
    );
    let plans = browser.text("#plans").await;
    for expected in [
        "I can make my own breakfast",
        "Not yet achieved",
        "Waiting for agreement by the council",
    ] {
        assert!(plans.contains(expected), "{expected:?} in {plans}");
    }
    // Another window is a GET form: the choice shows in the address and the count.
    browser
        .find("#days")
        .await
        .select_by_value("7")
        .await
        .unwrap();
    browser.submit("form.inline-form button").await;
    assert!(browser.url().await.ends_with("?days=7"));
    assert!(browser
        .text("#timeline-count")
        .await
        .contains("last 7 days"));
    // The people list finds them by part of the name, with their device and open alarm.
    browser.open(&app.url("/console/people?q=mary")).await;
    let listed = browser.text("table").await;
    for expected in [
        "Mary Oak Care",
        "P-oak-care",
        "North",
        &s.detector,
        "1 open",
    ] {
        assert!(listed.contains(expected), "{expected:?} in {listed}");
    }
    browser.open(&app.url("/console/people?q=nobody")).await;
    assert_eq!(
        browser.text("#people-count").await,
        "No one matches “nobody”."
    );

    // A responder gets the address and key-safe code on the alarm's page, but has no person
    // pages (the people API is not theirs either).
    let (responder, _) = user_with_password(
        &app,
        None,
        &s.org,
        "Rory Responder",
        "rory@oak.example",
        Role::Responder,
    )
    .await;
    let (cookie, _) = session(&app, responder).await;
    let page = |path: String| {
        let request = app.client.get(app.url(&path)).header("cookie", &cookie);
        async move { request.send().await.unwrap() }
    };
    let r = page(format!("/console/alarms/{alarm}")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains(KEY_SAFE) && text.contains(ADDRESS), "{text}");
    assert!(
        !text.contains("id=\"person-page\""),
        "no link to a page they cannot open"
    );
    let r = page(format!("/console/people/{}", s.person)).await;
    assert_eq!(r.status(), 403);

    // At phone width, nothing is cut off sideways.
    browser.client.set_window_size(390, 2000).await.unwrap();
    browser
        .open(&app.url(&format!("/console/people/{}", s.person)))
        .await;
    assert_eq!(
        js(
            &browser,
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
        .await,
        json!(true),
        "usable at 390 px"
    );
    screenshot(&browser, "person").await;
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn an_admin_links_a_device_and_adjusts_a_visit_from_their_pages() {
    let app = spawn_app().await;
    let s = seed(&app, "Ash Care").await;
    let browser = Browser::start().await;
    let (user_id, _) = user_with_password(
        &app,
        Some(&browser),
        &s.org,
        "Ash Admin",
        "admin@ash.example",
        Role::ProviderAdmin,
    )
    .await;
    sign_in(&browser, &app, "admin@ash.example").await;

    // Devices: never seen, so needing attention, and listed before the phone.
    browser.submit("nav a[href='/console/devices']").await;
    assert!(browser
        .text("#devices-count")
        .await
        .contains("1 needs attention"));
    let first = js(&browser, "return document.querySelector('tbody tr').id").await;
    assert_eq!(first, json!(format!("device-{}", s.detector)));
    let row = browser.text(&format!("#device-{}", s.detector)).await;
    assert!(
        row.contains("Needs attention")
            && row.contains("Never connected")
            && row.contains("Not linked"),
        "{row}"
    );
    browser.submit(&format!("#device-{} a", s.detector)).await;
    browser
        .find("#link-target")
        .await
        .select_by_value(&s.person.to_string())
        .await
        .unwrap();
    browser.submit("#link-form button").await;
    assert!(browser.url().await.contains("?done=link"));
    assert!(browser
        .text(".notice")
        .await
        .contains("person: mary ash care (p-ash-care)"));
    assert!(browser.text("#linked").await.contains("Mary Ash Care"));
    let device = app
        .get_ok(&format!("/v1/devices/{}", s.detector), &s.admin)
        .await;
    assert_eq!(device["person_id"], json!(s.person), "{device}");

    // Visits today: the visit, verified; its page records an adjustment with a reason code.
    browser.submit("nav a[href='/console/visits']").await;
    let row = browser.text(&format!("#visit-{}", s.visit)).await;
    assert!(
        row.contains("Verified") && row.contains("Mary Ash Care"),
        "{row}"
    );
    browser.submit(&format!("#visit-{} a", s.visit)).await;
    browser
        .find("#reason_code")
        .await
        .select_by_value("wrong_location_pin")
        .await
        .unwrap();
    browser.fill("#resolution_code", "worker_confirmed").await;
    browser
        .fill("#memo", "Checked with the worker by phone")
        .await;
    browser.submit("#adjust-form button").await;
    assert!(browser.text(".notice").await.contains("was recorded"));
    let adjustments = browser.text("#adjustments").await;
    assert!(
        adjustments.contains("The home's location is wrong")
            && adjustments.contains("resolved as worker confirmed")
            && adjustments.contains("Ash Admin"),
        "{adjustments}"
    );
    let visit = app
        .get_ok(&format!("/v1/visits/{}", s.visit), &s.admin)
        .await;
    let history = &visit["adjustment_history"];
    assert_eq!(
        (
            &history[0]["reason_code"],
            &history[0]["resolution_code"],
            &history[0]["recorded_by"]
        ),
        (
            &json!("wrong_location_pin"),
            &json!("worker_confirmed"),
            &json!("Ash Admin")
        ),
        "{visit}"
    );
    // Both audited as the API's changes are, by this user, without a token.
    let client = app.pool.get().await.unwrap();
    let audited: Vec<String> = client
        .query(
            "SELECT action FROM audit_log
              WHERE actor = $1 AND token_id IS NULL AND object_type IN ('device', 'visit')
              ORDER BY seq",
            &[&user_id.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(audited, ["device.link", "visit.adjust"]);
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn another_providers_pages_do_not_exist_and_forms_need_their_token() {
    let app = spawn_app().await;
    let elm = seed(&app, "Elm Care").await;
    let fir = app.organisation("Fir Care", OrgKind::Provider).await;
    let (elm_user, _) = user_with_password(
        &app,
        None,
        &elm.org,
        "Elm Admin",
        "a@elm.example",
        Role::ProviderAdmin,
    )
    .await;
    let (fir_user, _) = user_with_password(
        &app,
        None,
        &fir,
        "Fir Admin",
        "a@fir.example",
        Role::ProviderAdmin,
    )
    .await;
    let (elm_cookie, elm_form) = session(&app, elm_user).await;
    let (fir_cookie, fir_form) = session(&app, fir_user).await;
    let get = |path: String, cookie: &str| {
        let request = app.client.get(app.url(&path)).header("cookie", cookie);
        async move { request.send().await.unwrap() }
    };
    let post = |path: String, cookie: &str, body: String| {
        let request = app
            .client
            .post(app.url(&path))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move { request.send().await.unwrap() }
    };
    let person = format!("/console/people/{}", elm.person);
    let device = format!("/console/devices/{}", elm.detector);
    let visit = format!("/console/visits/{}", elm.visit);
    // Elm's own pages open for Elm.
    for path in [&person, &device, &visit] {
        assert_eq!(get(path.clone(), &elm_cookie).await.status(), 200, "{path}");
    }
    // For Fir they do not exist, as missing ones do; nor are Elm's people in Fir's list.
    for path in [
        person.clone(),
        device.clone(),
        visit.clone(),
        "/console/people/999999".into(),
        "/console/devices/nosuch".into(),
        "/console/visits/999999".into(),
        "/console/people/x".into(),
    ] {
        let r = get(path.clone(), &fir_cookie).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("Page not found"));
    }
    let listed = get("/console/people?q=mary".into(), &fir_cookie).await;
    assert!(!listed.text().await.unwrap().contains("Mary Elm Care"));
    // Fir's forms on Elm's things, with Fir's own token: 404, nothing changed.
    let link = format!("{device}/link");
    let adjust = format!("{visit}/adjustments");
    let home = format!("{person}/home");
    let link_body = |token: &str| format!("csrf={token}&person_id={}", elm.person);
    let adjust_body =
        |token: &str| format!("csrf={token}&reason_code=office_entry&resolution_code=checked");
    let home_body =
        |token: &str| format!("csrf={token}&address=3+New+Street&access_notes=&key_safe_code=2468");
    assert_eq!(
        post(link.clone(), &fir_cookie, link_body(&fir_form))
            .await
            .status(),
        404
    );
    assert_eq!(
        post(adjust.clone(), &fir_cookie, adjust_body(&fir_form))
            .await
            .status(),
        404
    );
    assert_eq!(
        post(home.clone(), &fir_cookie, home_body(&fir_form))
            .await
            .status(),
        404
    );
    // Elm's forms without a token, or with Fir's: refused before anything happens.
    for token in ["", fir_form.as_str()] {
        for (path, body) in [
            (link.clone(), link_body(token)),
            (adjust.clone(), adjust_body(token)),
            (home.clone(), home_body(token)),
        ] {
            let body = body.replace("csrf=&", "");
            let r = post(path.clone(), &elm_cookie, body.clone()).await;
            assert_eq!(r.status(), 403, "{path} {body}");
            assert!(r
                .text()
                .await
                .unwrap()
                .contains("This form could not be sent"));
        }
    }
    let links_and_adjustments = || {
        let (app, admin) = (&app, elm.admin.clone());
        let (detector, visit) = (elm.detector.clone(), elm.visit);
        async move {
            let d = app.get_ok(&format!("/v1/devices/{detector}"), &admin).await;
            let v = app.get_ok(&format!("/v1/visits/{visit}"), &admin).await;
            (d["person_id"].clone(), v["adjustment_history"].clone())
        }
    };
    assert_eq!(
        links_and_adjustments().await,
        (Value::Null, json!([])),
        "nothing changed"
    );
    // With Elm's token the same forms are applied.
    let r = post(link.clone(), &elm_cookie, link_body(&elm_form)).await;
    assert_eq!(r.url().path(), device);
    let r = post(adjust.clone(), &elm_cookie, adjust_body(&elm_form)).await;
    assert_eq!(r.url().path(), visit);
    let (linked, history) = links_and_adjustments().await;
    assert_eq!(linked, json!(elm.person));
    assert_eq!(history[0]["reason_code"], "office_entry");
    // The person's "getting in" form: as PATCH /v1/people/{id}; an empty box clears.
    let person_api = format!("/v1/people/{}", elm.person);
    assert_eq!(
        app.get_ok(&person_api, &elm.admin).await["key_safe_code"],
        KEY_SAFE
    );
    let r = post(home.clone(), &elm_cookie, home_body(&elm_form)).await;
    assert_eq!(r.url().path(), person);
    assert!(r.text().await.unwrap().contains("were saved"));
    let changed = app.get_ok(&person_api, &elm.admin).await;
    assert_eq!(
        (
            &changed["address"],
            &changed["access_notes"],
            &changed["key_safe_code"]
        ),
        (&json!("3 New Street"), &Value::Null, &json!("2468"))
    );
    let client = app.pool.get().await.unwrap();
    let change: String = client
        .query_one(
            "SELECT change FROM audit_log WHERE action = 'person.update' AND actor = $1
                AND token_id IS NULL",
            &[&elm_user.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !change.contains("2468") && !change.contains(KEY_SAFE),
        "{change}"
    );
    // A commissioner has no people, devices or visits pages.
    let shire = app.organisation("Shire", OrgKind::Commissioner).await;
    let (cara, _) = user_with_password(
        &app,
        None,
        &shire,
        "Cara Commissioner",
        "c@shire.example",
        Role::Commissioner,
    )
    .await;
    let (shire_cookie, _) = session(&app, cara).await;
    for path in [
        "/console/people",
        "/console/devices",
        "/console/visits",
        &person,
    ] {
        assert_eq!(
            get(path.to_owned(), &shire_cookie).await.status(),
            403,
            "{path}"
        );
    }
    app.stop().await;
}

/// The people API keeps the key-safe code out of the audit log in clear (it records that it
/// was set or changed); `PATCH` changes only the fields given, `null` clears one.
#[tokio::test]
async fn people_carry_an_address_and_a_key_safe_code_that_the_audit_log_never_shows() {
    let app = spawn_app().await;
    let s = seed(&app, "Yew Care").await;
    let path = format!("/v1/people/{}", s.person);
    let person = app.get_ok(&path, &s.admin).await;
    assert_eq!(
        (&person["address"], &person["key_safe_code"]),
        (&json!(ADDRESS), &json!(KEY_SAFE))
    );
    let (status, changed) = app
        .request_json(
            Method::PATCH,
            &path,
            &s.admin,
            Some(&json!({"key_safe_code": "7777", "access_notes": null})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["key_safe_code"], "7777");
    assert_eq!(changed["access_notes"], Value::Null, "null clears");
    assert_eq!(changed["address"], ADDRESS, "absent keeps");
    assert_eq!(changed["display_name"], "Mary Yew Care");
    // A name of spaces, an over-long code and a field that cannot be changed are refused.
    for body in [
        json!({"display_name": "   "}),
        json!({"key_safe_code": "x".repeat(51)}),
        json!({"home_tag": "T-1"}),
    ] {
        let (status, problem) = app
            .request_json(Method::PATCH, &path, &s.admin, Some(&body))
            .await;
        assert!(status == 400 || status == 422, "{body}: {status} {problem}");
    }
    let client = app.pool.get().await.unwrap();
    let rows: Vec<(String, String)> = client
        .query(
            "SELECT action, change FROM audit_log
              WHERE object_type = 'person' AND object_id = $1 ORDER BY seq",
            &[&s.person.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let actions: Vec<&str> = rows.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["person.create", "person.update"]);
    for (_, change) in &rows {
        assert!(
            !change.contains(KEY_SAFE) && !change.contains("7777"),
            "no code in clear: {change}"
        );
    }
    let update: Value = serde_json::from_str(&rows[1].1).unwrap();
    assert_eq!(update["key_safe_code_changed"], true);
    assert_eq!(update["after"]["key_safe_code_set"], true);
    assert_eq!(
        update["before"]["access_notes"],
        "Side door; the dog is friendly"
    );
    assert_eq!(update["after"]["access_notes"], Value::Null);

    // The link API: a phone goes to a worker, other devices to a person, one at a time, each
    // of the caller's organisation; {} unlinks.
    let other = seed(&app, "Box Care").await;
    let link = |uid: &str, body: Value| {
        let (app, admin, uid) = (&app, s.admin.clone(), uid.to_owned());
        async move {
            app.request_json(
                Method::PUT,
                &format!("/v1/devices/{uid}/link"),
                &admin,
                Some(&body),
            )
            .await
        }
    };
    let phone = "yew-care-phone-1";
    for (uid, body, field) in [
        (
            s.detector.as_str(),
            json!({"person_id": other.person}),
            "person_id",
        ),
        (s.detector.as_str(), json!({"worker_id": 1}), "worker_id"),
        (phone, json!({"person_id": s.person}), "person_id"),
        (
            s.detector.as_str(),
            json!({"person_id": s.person, "worker_id": 1}),
            "worker_id",
        ),
    ] {
        let (status, problem) = link(uid, body.clone()).await;
        assert_eq!(status, 422, "{uid} {body}: {problem}");
        assert!(problem.to_string().contains(field), "{problem}");
    }
    let (status, _) = link(&other.detector, json!({})).await;
    assert_eq!(status, 404, "another provider's device");
    let (status, body) = link(&s.detector, json!({"person_id": s.person})).await;
    assert_eq!((status, &body["changed"]), (200, &json!(true)), "{body}");
    let (status, body) = link(&s.detector, json!({"person_id": s.person})).await;
    assert_eq!(
        (status, &body["changed"]),
        (200, &json!(false)),
        "again: {body}"
    );
    let (status, body) = link(&s.detector, json!({})).await;
    assert_eq!(
        (status, &body["person_id"], &body["worker_id"]),
        (200, &Value::Null, &Value::Null),
        "{body}"
    );
    app.stop().await;
}
