//! Tenant isolation through real clients: what one organisation's credentials can reach of
//! another's, and of Homeward's own.

use std::time::Duration;

use homeward::auth::{OrgKind, Role};
use homeward_testkit::db::event_counts;
use homeward_testkit::metrics::metric_sum;
use homeward_testkit::mqtt::{connect, device_options, run_device, DeviceRunSpec};
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use rumqttc::ConnectionError;

/// Connects as the device `client_id` and polls until CONNACK or failure.
async fn try_connect(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    clean: bool,
) -> Result<(), ConnectionError> {
    let mut options = device_options(app, client_id, secret);
    options.set_clean_session(clean);
    connect(options).await.map(|_| ())
}

/// (subscriber reconnects, refused CONNECTs) from `/metrics`.
async fn metric_values(app: &TestApp) -> (f64, f64) {
    let metrics = app.metrics().await;
    (
        metric_sum(&metrics, "homeward_mqtt_reconnects_total"),
        metric_sum(
            &metrics,
            "homeward_broker_auth_failures_total{reason=\"refused\"}",
        ),
    )
}

/// The takeover once seen: a second organisation registered a device named like Homeward's
/// own ingest client, connected with that client id and `clean_session = false`, inherited the
/// ingest session's subscriptions and acknowledged (so lost) another tenant's events.
#[tokio::test]
async fn a_tenant_cannot_take_over_homewards_broker_session() {
    let app = spawn_app().await;
    let (org_a, _) = app
        .org_with_user("Tenant A", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (org_b, token_b) = app
        .org_with_user("Tenant B", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let ingest_id = homeward::config::Settings::default().mqtt.client_id;

    // Homeward's client ids, and anything that begins like them, cannot be registered.
    for uid in [
        ingest_id.clone(),
        format!("{ingest_id}-downlink"),
        "HOMEWARD-Ingest".to_owned(),
        "homeward-auto-7".to_owned(),
    ] {
        let body = serde_json::json!({ "uid": uid, "kind": "hub" });
        let r = app
            .request(Method::POST, "/v1/devices", Some(&token_b), Some(&body))
            .await;
        assert_eq!(r.status(), 409, "{uid} is refused");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = r.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains("reserved"),
            "{uid}: {problem}"
        );
    }

    // A device registered under that id before the reservation existed (written straight to
    // the table) is refused by the broker, however it asks for the session.
    let secret = homeward::secret::random_token(32);
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO devices (organisation_id, uid, kind, secret_hash) VALUES ($1, $2, 'hub', $3)",
            &[&org_b.id, &ingest_id, &homeward::secret::hash_secret(&secret).as_slice()],
        )
        .await
        .unwrap();

    // Meanwhile the first organisation's hub sends 29 heartbeats and waits for Homeward's
    // end-to-end acknowledgement of each.
    let secret_a = app.device(&org_a, "hub-a", "hub").await;
    let hub = tokio::spawn(run_device(
        DeviceRunSpec::on(
            &app,
            "hub-a",
            &secret_a,
            chrono::Utc::now().timestamp_millis(),
        )
        .sending(29, 4, Duration::from_secs(60)),
    ));
    let before = metric_values(&app).await;
    for attempt in 0..6 {
        let result = try_connect(&app, &ingest_id, &secret, attempt % 2 == 0).await;
        assert!(
            matches!(result, Err(ConnectionError::ConnectionRefused(_))),
            "attempt {attempt}: the intruder is refused, got {:?}",
            result
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let run = hub.await.unwrap();
    assert!(run.unacked.is_empty(), "unacknowledged: {:?}", run.unacked);
    assert_eq!(
        event_counts(&app.pool, "hub-a").await,
        (29, 29),
        "every event stored exactly once"
    );
    // Homeward's subscriber was never thrown off, and the broker counted every refusal
    // (differences, so that other tests in the same process do not matter).
    let after = metric_values(&app).await;
    assert_eq!(after.0 - before.0, 0.0, "subscriber reconnects");
    assert_eq!(after.1 - before.1, 6.0, "refused CONNECTs");
    app.stop().await;
}

/// A token may hold a few event streams, not exhaust the server's with many.
#[tokio::test]
async fn a_token_holds_at_most_four_event_streams() {
    let app = spawn_app().await;
    let (_, token) = app
        .org_with_user("Streams Org", OrgKind::Provider, Role::ProviderStaff)
        .await;
    let (_, other) = app
        .org_with_user("Other Streams", OrgKind::Provider, Role::ProviderStaff)
        .await;
    let mut open = Vec::new();
    for _ in 0..homeward::live::MAX_STREAMS_PER_TOKEN {
        let r = app.get("/v1/live", Some(&token)).await;
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let r = app.get("/v1/live", Some(&token)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(app.get("/v1/live", Some(&other)).await.status(), 200);
    drop(open);
    app.stop().await;
}

/// Every date in a query, at the edges of what the server's date type can hold, is refused
/// with a problem document naming it (422), never a panic or a 500 from date arithmetic that
/// overflows.
#[tokio::test]
async fn dates_at_the_edge_of_the_calendar_are_refused_in_every_query() {
    let app = spawn_app().await;
    let (_, admin) = app
        .org_with_user("Dates Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    // Routes a provider admin may not call (the funnel) are asked by a commissioner.
    let (_, commissioner) = app
        .org_with_user("Dates Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let spec: serde_json::Value = homeward::http::openapi::document().clone();
    const DATE_PARAMS: &[&str] = &["from", "to", "as_of"];
    let mut checked = 0;
    let mut wrong = Vec::new();
    for route in crate::routes::ROUTES.iter().filter(|r| r.method == "GET") {
        let token = match route.access {
            crate::routes::Access::Roles(roles) if !roles.contains(&Role::ProviderAdmin) => {
                &commissioner
            }
            _ => &admin,
        };
        let params: Vec<String> = spec["paths"][route.path]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .filter(|n| DATE_PARAMS.contains(n))
            .map(str::to_owned)
            .collect();
        for param in &params {
            // A plain date where the route's own example is one, else a date and time.
            let plain_date = route
                .query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .any(|(k, v)| k == param && !v.contains('T'));
            let edges: &[&str] = if plain_date {
                &["9999-12-31", "-9999-01-01", "1000-01-01"]
            } else {
                &[
                    "9999-12-31T23:59:59Z",
                    "-9999-01-01T00:00:00Z",
                    "1000-01-01T00:00:00Z",
                ]
            };
            for &edge in edges {
                // The route's own valid query, with this one parameter replaced.
                let mut query: Vec<(String, String)> = route
                    .query
                    .split('&')
                    .filter(|kv| !kv.is_empty())
                    .filter_map(|kv| kv.split_once('='))
                    .filter(|(k, _)| k != param)
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                query.push((param.clone(), edge.to_owned()));
                let path = route.concrete_path();
                let path = path.split('?').next().unwrap();
                let r = app
                    .client
                    .get(app.url(path))
                    .query(&query)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{path}?{param}={edge}: no answer ({e})"));
                checked += 1;
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                if status != 422 || !body.contains(param.as_str()) {
                    wrong.push(format!("{path} {param}={edge}: {status} {body}"));
                }
            }
        }
    }
    assert!(
        checked >= 48,
        "only {checked} cases: the route table lost its date parameters"
    );
    // Dates in bodies too, where the handler computes with them.
    for (path, body, field) in [
        (
            "/v1/scheduled-visits",
            serde_json::json!({"reference": "V-EDGE", "person_id": 1, "window_start": "+262142-12-31T00:00:00Z",
                               "window_end": "+262142-12-31T01:00:00Z", "service_type": "personal_care"}),
            "window_start",
        ),
        (
            "/v1/visits/manual",
            serde_json::json!({"scheduled_visit_id": 1, "start": "9999-12-31T23:00:00Z", "end": "9999-12-31T23:59:59Z",
                               "reason_code": "office_entry", "memo": "edge"}),
            "start",
        ),
        (
            "/v1/outcome-plans",
            serde_json::json!({"person_id": 1, "starts_on": "+262142-06-01", "ends_on": "+262142-12-31",
                               "outcomes": [{"statement": "I can cook a meal", "kind": "reablement",
                                             "payable": false, "target_date": "+262142-09-01"}]}),
            "starts_on",
        ),
    ] {
        let (status, text) = app
            .request_text(Method::POST, path, Some(&admin), Some(&body))
            .await;
        if !(status == 422 && text.contains(field)) {
            wrong.push(format!("{path}: {status} {text}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    app.stop().await;
}

/// Credential checks have connections of their own: with every connection of the main pool
/// taken (a stalled writer, a slow report), devices still sign in and bad tokens are still
/// refused; and a bad credential repeated in a loop is refused from memory, not from the
/// database.
#[tokio::test]
async fn credential_checks_cannot_starve_or_be_starved_by_the_rest() {
    let app = spawn_app().await;
    let (org, _) = app
        .org_with_user("Auth Pool Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let secret = app.device(&org, "hub-pool", "hub").await;
    let before = app.metrics().await;

    // Take every connection of the main pool (the test's pool is the application's).
    let mut held = Vec::new();
    while let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(500), app.pool.get()).await {
        held.push(c);
    }
    assert!(!held.is_empty());
    try_connect(&app, "hub-pool", &secret, true)
        .await
        .expect("a device signs in while the main pool is exhausted");
    let bad = format!("hw_{}", "0".repeat(64));
    for _ in 0..300 {
        assert_eq!(app.get("/v1/me", Some(&bad)).await.status(), 401);
    }
    drop(held);

    let after = app.metrics().await;
    let count = |text: &str, cached: &str| -> f64 {
        let series =
            format!("homeward_auth_failures_total{{credential=\"token\",cached=\"{cached}\"}}");
        metric_sum(text, &series)
    };
    assert_eq!(
        count(&after, "false") - count(&before, "false"),
        1.0,
        "{after}"
    );
    assert_eq!(
        count(&after, "true") - count(&before, "true"),
        299.0,
        "{after}"
    );
    app.stop().await;
}
