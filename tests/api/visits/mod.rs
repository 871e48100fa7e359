//! Visit verification against the real application: reference data over the API, check-ins
//! over HTTP and MQTT, geofence verdicts, exceptions, adjustments, the export, missed-visit
//! alerts (driven by an injected clock) and rebuilding visits from raw events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use homeward::auth::{OrgKind, Role};
use homeward_testkit::{eventually, TestApp};
use serde_json::{json, Value};

mod alerts;
mod checks;
mod derivation;
mod export;
mod updates;

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
