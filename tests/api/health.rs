use std::time::Duration;

use homeward::auth::{OrgKind, Role};
use homeward_testkit::metrics::metric_value;
use homeward_testkit::mqtt::publish_json;
use homeward_testkit::{eventually, spawn_app, spawn_app_with, test_settings};

#[tokio::test]
async fn healthz_and_readyz_answer_without_authentication() {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), 200);
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], "up");
    assert_eq!(body["broker"], "up");
    app.stop().await;
}

/// After real traffic (a device's events, one of them sent twice), `/metrics` shows the
/// application's own counters with the values that traffic implies.
#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = spawn_app().await;
    let (org, _) = app
        .org_with_user("Metrics Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let secret = app.device(&org, "hub-metrics", "hub").await;
    let now = chrono::Utc::now().timestamp_millis();
    let event = |seq: i64| serde_json::json!({"seq": seq, "t": now - 1000 + seq, "kind": "smoke"});
    publish_json(&app, "hub-metrics", &secret, vec![event(1), event(2)]).await;
    publish_json(&app, "hub-metrics", &secret, vec![event(2)]).await;
    let stored = "homeward_ingest_events_total{outcome=\"stored\"}";
    let duplicate = "homeward_ingest_events_total{outcome=\"duplicate\"}";
    let text = eventually(Duration::from_secs(10), || async {
        let r = app.get("/metrics", None).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = r.text().await.unwrap();
        (metric_value(&text, duplicate).is_some()).then_some(text)
    })
    .await
    .expect("the duplicate is counted");
    assert!(
        text.contains("# TYPE homeward_ingest_events_total counter"),
        "{text}"
    );
    assert_eq!(metric_value(&text, stored), Some(2.0), "{text}");
    assert_eq!(metric_value(&text, duplicate), Some(1.0), "{text}");
    // The device's three publishes, and the acknowledgements Homeward sent back through it.
    let through_broker = metric_value(&text, "homeward_broker_messages_received_total");
    assert!(through_broker.unwrap_or(0.0) >= 3.0, "{text}");
    // The alarm path of the two smoke events (priority kinds), stage by stage: stored once each
    // (the resend is a duplicate), then derived and published.
    let stage = |name: &str| format!("homeward_alarm_path_seconds_count{{stage=\"{name}\"}}");
    let text = eventually(Duration::from_secs(10), || async {
        let text = app.get("/metrics", None).await.text().await.unwrap();
        (metric_value(&text, &stage("published")) == Some(2.0)).then_some(text)
    })
    .await
    .expect("both smoke alarms are published");
    assert_eq!(metric_value(&text, &stage("stored")), Some(2.0), "{text}");
    assert_eq!(
        metric_value(&text, &stage("derivation_started")),
        Some(2.0),
        "{text}"
    );
    let stages =
        homeward_testkit::metrics::histograms_by(&text, "homeward_alarm_path_seconds", "stage");
    let published = &stages.iter().find(|(s, _)| s == "published").unwrap().1;
    // Within the finite buckets (10 s at most).
    assert!(published.quantile(1.0).unwrap() <= 10.0, "{text}");
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_get_a_problem_document() {
    let app = spawn_app().await;
    let r = app.get("/v1/no-such-thing", None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["type"], "/problems/not-found");
    app.stop().await;
}

/// Every path in the generated description exists: asked without credentials, each answers something
/// other than "no such route". (The EMQX hooks exist only with their secret configured.)
#[tokio::test]
async fn the_openapi_description_lists_only_real_routes() {
    let spec: serde_json::Value = homeward::http::openapi::document().clone();
    assert_eq!(spec["openapi"], "3.1.0");
    let mut settings = test_settings();
    settings.mqtt.emqx_hook_secret = Some(homeward::config::Secret::new("x".repeat(16)));
    let app = spawn_app_with(settings).await;
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    for (path, ops) in paths {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.request(method.clone(), &concrete, None, None).await;
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            assert!(
                !(status == 404 && body.contains("route not found")),
                "{method} {path} is in the spec but not served"
            );
        }
    }
    app.stop().await;
}
