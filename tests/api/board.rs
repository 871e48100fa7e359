//! The alarm board in a real headless Chromium: a fall published over MQTT appears without a
//! reload, with its cue, and is taken from acknowledged to closed from the board, as the API
//! then shows; an action the alarm's state no longer allows says so on the page; an unattended
//! fall escalates to a long lie on the open board at 60 minutes (the periodic check run with
//! an injected clock). And over plain HTTP: board forms need their token, and another
//! provider's alarm is neither listed nor reachable, nor on its live stream.

use std::time::Duration;

use homeward::auth::{self, OrgKind, Role};
use homeward_proto::{EventBody, Percent};
use homeward_testkit::browser::Browser;
use homeward_testkit::mqtt::TestDevice;
use homeward_testkit::sse::SseReader;
use homeward_testkit::{eventually, spawn_app, TestApp};
use serde_json::{json, Value};

use crate::console_kit::{screenshot, session, sign_in, user_with_password};

/// A person wearing a fall detector `uid`; returns the device's secret.
async fn person_with_detector(
    app: &TestApp,
    org: &auth::Organisation,
    name: &str,
    uid: &str,
) -> String {
    let secret = app.device(org, uid, "fall_detector").await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "WITH p AS (INSERT INTO people (organisation_id, external_ref, display_name, area)
                        VALUES ($1, $2, $3, 'North') RETURNING id)
             UPDATE devices SET person_id = (SELECT id FROM p) WHERE uid = $4",
            &[&org.id, &format!("ref-{uid}"), &name, &uid],
        )
        .await
        .unwrap();
    secret
}

fn fall() -> EventBody {
    EventBody::FallDetected {
        confidence: Percent::new(92).unwrap(),
    }
}

/// Runs `script` in the page and returns its value.
async fn js(browser: &Browser, script: &str) -> Value {
    browser.client.execute(script, vec![]).await.unwrap()
}

/// Waits until the board's live stream is open.
async fn live_board(browser: &Browser) {
    let open = eventually(Duration::from_secs(10), || async {
        (js(
            browser,
            "return document.getElementById('board').dataset.live || ''",
        )
        .await
            == json!("open"))
        .then_some(())
    })
    .await;
    assert!(open.is_some(), "the board's live stream opens");
}

/// The ids of the cards in the list `list` (`care-alarms`, `resolved-alarms`, ...).
async fn card_ids(browser: &Browser, list: &str) -> Vec<i64> {
    let ids = js(
        browser,
        &format!(
            "return Array.from(document.querySelectorAll('#{list} > li'))
                 .map(li => Number(li.id.replace('alarm-', '')))"
        ),
    )
    .await;
    serde_json::from_value(ids).unwrap()
}

#[tokio::test]
async fn a_fall_appears_on_the_board_live_and_is_attended_to_from_it() {
    let app = spawn_app().await;
    let org = app.organisation("Oak Care", OrgKind::Provider).await;
    let browser = Browser::start().await;
    let (user_id, token) = user_with_password(
        &app,
        Some(&browser),
        &org,
        "Olive Staff",
        "olive@oak.example",
        Role::ProviderStaff,
    )
    .await;
    let secret = person_with_detector(&app, &org, "Mary Example", "oak-fall-1").await;
    let mut detector = TestDevice::connect(&app, "oak-fall-1", &secret).await;

    sign_in(&browser, &app, "olive@oak.example").await;
    // The board is in the navigation.
    browser.submit("nav a[href='/console/alarms']").await;
    live_board(&browser).await;
    assert_eq!(browser.text("h1").await, "Alarm board");
    assert!(card_ids(&browser, "care-alarms").await.is_empty());
    assert!(browser
        .text("#care-count")
        .await
        .contains("No open care alarms"));
    // Marks this page, to tell later that it was not reloaded.
    js(&browser, "window.notReloaded = true; return null").await;

    detector.send(fall()).await;
    let published = tokio::time::Instant::now();
    let appeared = eventually(Duration::from_secs(2), || async {
        let ids = card_ids(&browser, "care-alarms").await;
        (ids.len() == 1).then(|| ids[0])
    })
    .await;
    let id = appeared.unwrap_or_else(|| {
        panic!(
            "the fall is on the board within 2 s of being published ({:?})",
            published.elapsed()
        )
    });
    assert_eq!(
        js(&browser, "return window.notReloaded === true").await,
        json!(true),
        "without a reload"
    );
    let card = format!("#alarm-{id}");
    let text = browser.text(&card).await;
    for expected in [
        "New",
        "Critical",
        "Fall detected",
        "Mary Example (ref-oak-fall-1)",
        "Raised: not answered yet",
        "oak-fall-1 (fall_detector)",
        "just now",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    assert_eq!(
        js(
            &browser,
            &format!("return document.querySelector('{card}').classList.contains('fresh')")
        )
        .await,
        json!(true),
        "highlighted"
    );
    assert_eq!(
        js(
            &browser,
            "return document.getElementById('board').dataset.beeps"
        )
        .await,
        json!("1"),
        "one beep"
    );
    assert!(browser
        .text("#announce")
        .await
        .contains("New alarm: Fall detected, Mary Example"));
    assert!(browser
        .text("#care-count")
        .await
        .contains("1 open care alarm"));
    assert!(browser.text("#live-status").await.starts_with("Live"));
    screenshot(&browser, "board").await;

    // Acknowledge, dispatch, on site: each a form, then back to the board, which says so.
    for (action, state) in [
        ("acknowledge", "Acknowledged"),
        ("dispatch", "Responder on the way"),
        ("arrive", "Responder on site"),
    ] {
        browser
            .submit(&format!("{card} form.act-{action} button"))
            .await;
        assert!(
            browser.url().await.contains("/console/alarms?done="),
            "{}",
            browser.url().await
        );
        assert!(
            browser
                .text(".notice")
                .await
                .contains(&format!("Alarm {id} was")),
            "{action}"
        );
        assert_eq!(browser.text(&format!("{card} .state")).await, state);
    }
    // Resolve, with an outcome from the list (a fall detector's alarm is a fall already).
    browser
        .find(&format!("#outcome-{id}"))
        .await
        .select_by_value("responder_attended_no_injury")
        .await
        .unwrap();
    browser
        .submit(&format!("{card} form.act-resolve button"))
        .await;
    assert!(browser.text(".notice").await.contains("resolved"));
    assert!(card_ids(&browser, "care-alarms").await.is_empty());
    assert_eq!(card_ids(&browser, "resolved-alarms").await, [id]);

    // The API shows the same alarm, and who did what.
    let detail = app.get_ok(&format!("/v1/alarms/{id}"), &token).await;
    let alarm = &detail["alarm"];
    assert_eq!(
        (
            &alarm["state"],
            &alarm["outcome"],
            &alarm["is_fall"],
            &alarm["long_lie"]
        ),
        (
            &json!("resolved"),
            &json!("responder_attended_no_injury"),
            &json!(true),
            &json!(false)
        ),
        "{detail}"
    );
    for at in [
        "acknowledged_at",
        "dispatched_at",
        "on_site_at",
        "resolved_at",
    ] {
        assert!(alarm[at].is_string(), "{at}: {detail}");
    }
    let by_user: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["user"] == "Olive Staff")
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(by_user, ["acknowledge", "dispatch", "arrive", "resolve"]);
    // Audited as the API's actions are: one row each, by this user, without a token.
    let client = app.pool.get().await.unwrap();
    let audited: Vec<(String, Option<i32>)> = client
        .query(
            "SELECT action, token_id FROM audit_log
              WHERE object_type = 'alarm' AND object_id = $1 AND actor = $2 ORDER BY seq",
            &[&id.to_string(), &user_id.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        audited,
        [
            ("alarm.acknowledge".to_owned(), None),
            ("alarm.dispatch".to_owned(), None),
            ("alarm.arrive".to_owned(), None),
            ("alarm.resolve".to_owned(), None),
        ]
    );

    // An action the state no longer allows, from a page opened before someone else acted:
    // a message on the page, not an error page, and nothing changed.
    browser
        .open(&app.url(&format!("/console/alarms/{id}")))
        .await;
    assert!(browser.text("#person").await.contains("Mary Example"));
    assert!(browser.text("#person").await.contains("North"));
    screenshot(&browser, "alarm").await;
    let (status, body) = app
        .post_json(&format!("/v1/alarms/{id}/close"), &token, &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    browser
        .submit(&format!("{card} form.act-close button"))
        .await;
    let problem = browser.text(".problem").await;
    assert!(
        problem.contains(&format!("Alarm {id} could not be given")) && problem.contains("Closed"),
        "{problem}"
    );
    assert_eq!(
        browser.text(&format!("{card} .state")).await,
        "Closed",
        "the page shows the alarm as it is now"
    );

    // Usable at phone width: one column, nothing cut off sideways, big buttons.
    detector.send(fall()).await;
    browser.client.set_window_size(360, 800).await.unwrap();
    browser.open(&app.url("/console/alarms")).await;
    let fits = eventually(Duration::from_secs(5), || async {
        let ids = card_ids(&browser, "care-alarms").await;
        if ids.len() != 1 {
            browser.open(&app.url("/console/alarms")).await;
            return None;
        }
        Some(
            js(
                &browser,
                "const b = document.querySelector('#care-alarms form.act-acknowledge button');
                 return document.documentElement.scrollWidth <= document.documentElement.clientWidth
                     && b.getBoundingClientRect().height >= 44",
            )
            .await,
        )
    })
    .await;
    assert_eq!(fits, Some(json!(true)), "usable at 360 px");
    screenshot(&browser, "board-phone").await;
    browser.close().await;
    app.stop().await;
}

/// An unattended fall on an open board: at 60 minutes (the periodic check run with an
/// injected clock) the card escalates to a long lie in words, without a reload, and beeps.
#[tokio::test]
async fn an_unattended_fall_escalates_to_a_long_lie_on_the_open_board() {
    let mut settings = homeward_testkit::test_settings();
    // The application's own check stays out of the way; this test runs it with its clock.
    settings.alarms.sweep_interval_secs = 3600;
    let app = homeward_testkit::spawn_app_with(settings).await;
    let org = app.organisation("Ash Care", OrgKind::Provider).await;
    let browser = Browser::start().await;
    let (_, token) = user_with_password(
        &app,
        Some(&browser),
        &org,
        "Ash Responder",
        "responder@ash.example",
        Role::Responder,
    )
    .await;
    let secret = person_with_detector(&app, &org, "John Example", "ash-fall-1").await;
    let mut detector = TestDevice::connect(&app, "ash-fall-1", &secret).await;
    detector.send(fall()).await;
    let raised = eventually(Duration::from_secs(10), || async {
        let list = app.get_ok("/v1/alarms", &token).await;
        list["items"].as_array().unwrap().first().cloned()
    })
    .await
    .expect("the fall is raised");
    let id = raised["id"].as_i64().unwrap();
    let raised_at: chrono::DateTime<chrono::Utc> =
        raised["raised_at"].as_str().unwrap().parse().unwrap();

    sign_in(&browser, &app, "responder@ash.example").await;
    browser.open(&app.url("/console/alarms")).await;
    live_board(&browser).await;
    let card = format!("#alarm-{id}");
    assert!(!browser.text(&card).await.contains("Long lie"));
    // A responder may mark arrival and resolve, not acknowledge.
    let forms = js(
        &browser,
        &format!(
            "return Array.from(document.querySelectorAll('{card} form.act'))
                 .map(f => f.className)"
        ),
    )
    .await;
    assert_eq!(forms, json!(["act act-arrive"]), "raised: only arrival");
    js(&browser, "window.notReloaded = true; return null").await;

    // The check, as the application runs it, with a clock 60 minutes after the fall; its
    // change reaches the application's stream as another instance's would (the relay).
    let hub = homeward::live::LiveHub::default();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let relay =
        homeward::live::relay::start(&hub, app.pool.clone(), app.db_config.clone(), stop_rx).await;
    assert!(
        !relay.is_empty(),
        "the test database relays between instances"
    );
    let rules = homeward::alarms::derive::Rules::from(&homeward::alarms::AlarmSettings::default());
    let at = |minutes| raised_at + chrono::Duration::minutes(minutes);
    assert_eq!(
        homeward::alarms::run_sweep(&app.pool, &rules, &hub, at(59))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        homeward::alarms::run_sweep(&app.pool, &rules, &hub, at(60))
            .await
            .unwrap(),
        1
    );
    let escalated = eventually(Duration::from_secs(5), || async {
        let text = browser.text(&card).await;
        text.contains("Long lie").then_some(text)
    })
    .await;
    let escalated = match escalated {
        Some(text) => text,
        None => panic!(
            "the card escalates to a long lie: {} / {}",
            browser.text(&card).await,
            browser.text("#live-status").await
        ),
    };
    assert!(
        escalated.contains("no one on site for 60 minutes or more"),
        "{escalated}"
    );
    assert!(
        escalated.contains("Raised: not answered yet"),
        "{escalated}"
    );
    assert_eq!(
        js(&browser, "return window.notReloaded === true").await,
        json!(true)
    );
    assert_eq!(
        js(
            &browser,
            "return document.getElementById('board').dataset.beeps"
        )
        .await,
        json!("2"),
        "a double beep"
    );
    assert!(browser
        .text("#announce")
        .await
        .contains("Long lie: Fall detected, John Example"));
    screenshot(&browser, "board-long-lie").await;
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn board_forms_need_their_token_and_another_providers_alarms_are_out_of_reach() {
    let app = spawn_app().await;
    let elm = app.organisation("Elm Care", OrgKind::Provider).await;
    let fir = app.organisation("Fir Care", OrgKind::Provider).await;
    let (elm_user, elm_token) = user_with_password(
        &app,
        None,
        &elm,
        "Elm Staff",
        "s@elm.example",
        Role::ProviderStaff,
    )
    .await;
    let (fir_user, _) = user_with_password(
        &app,
        None,
        &fir,
        "Fir Staff",
        "s@fir.example",
        Role::ProviderStaff,
    )
    .await;
    let (elm_cookie, elm_form) = session(&app, elm_user).await;
    let (fir_cookie, fir_form) = session(&app, fir_user).await;

    // Fir's board listens before Elm's fall is raised.
    let fir_live = app
        .client
        .get(app.url("/console/live"))
        .header("cookie", &fir_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(fir_live.status(), 200);
    assert_eq!(fir_live.headers()["content-type"], "text/event-stream");
    let mut fir_live = SseReader::from_response(fir_live);
    fir_live
        .text_until(": connected", Duration::from_secs(5))
        .await;

    let elm_secret = person_with_detector(&app, &elm, "Elm Person", "elm-fall-1").await;
    let fir_secret = person_with_detector(&app, &fir, "Fir Person", "fir-fall-1").await;
    let mut elm_detector = TestDevice::connect(&app, "elm-fall-1", &elm_secret).await;
    elm_detector.send(fall()).await;
    let elm_alarm = eventually(Duration::from_secs(10), || async {
        let list = app.get_ok("/v1/alarms", &elm_token).await;
        list["items"][0]["id"].as_i64()
    })
    .await
    .expect("Elm's fall is raised");
    // Then Fir's own: the first alarm on Fir's stream is Fir's.
    let mut fir_detector = TestDevice::connect(&app, "fir-fall-1", &fir_secret).await;
    fir_detector.send(fall()).await;
    let first = fir_live.next("alarm", |_| true).await;
    assert_ne!(first["data"]["id"], json!(elm_alarm), "{first}");
    assert_eq!(first["data"]["device_uid"], "fir-fall-1");

    let get = |path: String, cookie: String| {
        let request = app.client.get(app.url(&path)).header("cookie", cookie);
        async move { request.send().await.unwrap() }
    };
    let post = |path: String, cookie: String, body: String| {
        let request = app
            .client
            .post(app.url(&path))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move { request.send().await.unwrap() }
    };
    let acknowledge = format!("/console/alarms/{elm_alarm}/acknowledge");
    // Fir neither sees Elm's alarm on its board nor reaches it: 404, as a missing one.
    let board = get("/console/alarms".into(), fir_cookie.clone()).await;
    assert_eq!(board.status(), 200);
    let csp = board.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let board = board.text().await.unwrap();
    assert!(board.contains("Fir Person") && !board.contains("Elm Person"));
    assert!(!board.contains(&format!("alarm-{elm_alarm}\"")));
    for path in [
        format!("/console/alarms/{elm_alarm}"),
        "/console/alarms/999999".to_owned(),
        "/console/alarms/x".to_owned(),
    ] {
        let r = get(path.clone(), fir_cookie.clone()).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("Page not found"));
    }
    let r = post(
        acknowledge.clone(),
        fir_cookie.clone(),
        format!("csrf={fir_form}&back=board"),
    )
    .await;
    assert_eq!(
        r.status(),
        404,
        "another provider's alarm cannot be acted on"
    );

    // Elm's own form without its token, or with Fir's: refused before anything happens.
    for body in [
        "back=board".to_owned(),
        format!("csrf={fir_form}&back=board"),
    ] {
        let r = post(acknowledge.clone(), elm_cookie.clone(), body.clone()).await;
        assert_eq!(r.status(), 403, "{body}");
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("This form could not be sent"));
    }
    let state = |token: String| {
        let app = &app;
        async move {
            app.get_ok(&format!("/v1/alarms/{elm_alarm}"), &token).await["alarm"]["state"].clone()
        }
    };
    assert_eq!(state(elm_token.clone()).await, "raised", "nothing changed");
    // With its token it is done (the client follows the redirect to the board).
    let r = post(
        acknowledge.clone(),
        elm_cookie.clone(),
        format!("csrf={elm_form}&back=board"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().path(), "/console/alarms");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains(&format!("Alarm {elm_alarm} was acknowledged.")));
    assert_eq!(state(elm_token.clone()).await, "acknowledged");
    // Resolving without an outcome is refused on the page, saying what is missing.
    let r = post(
        format!("/console/alarms/{elm_alarm}/resolve"),
        elm_cookie.clone(),
        format!("csrf={elm_form}&back=alarm&outcome="),
    )
    .await;
    assert_eq!(r.url().path(), format!("/console/alarms/{elm_alarm}"));
    assert!(r.text().await.unwrap().contains("choose the outcome"));
    assert_eq!(state(elm_token).await, "acknowledged");
    app.stop().await;
}
