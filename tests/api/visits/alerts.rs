//! Missed-visit alerts, driven by an injected clock and raised on the live stream.

use std::time::Duration;

use chrono::Utc;
use homeward::evv::EvvSettings;
use homeward_testkit::{spawn_app, spawn_app_with, test_settings};
use serde_json::json;

use super::{ms, now_s, phone_sends, schedule, setup, HOME};

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
