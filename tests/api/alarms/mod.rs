//! Telecare alarms end to end: devices publish over MQTT to the embedded broker, staff act over
//! HTTP, dashboards listen on `GET /v1/live`, hubs hear notices on their downlink topic.

use std::time::Duration;

use homeward::auth::{self, OrgKind, Role};
use homeward_testkit::{eventually, test_settings, TestApp};
use serde_json::Value;

mod derivation;
mod lifecycle;
mod outcomes;
mod paging;
mod plans;
mod technical;

const WAIT: Duration = Duration::from_secs(10);

struct Provider {
    org: auth::Organisation,
    staff: String,
    responder: String,
}

async fn provider(app: &TestApp, name: &str) -> Provider {
    let (org, staff) = app
        .org_with_user(name, OrgKind::Provider, Role::ProviderStaff)
        .await;
    let client = app.pool.get().await.unwrap();
    let (_, responder) = auth::create_user(
        &**client,
        &org,
        &format!("{name} responder"),
        Role::Responder,
    )
    .await
    .unwrap();
    Provider {
        org,
        staff,
        responder,
    }
}

/// A person with the given devices (created), returns (person id, device secrets).
async fn person_with(
    app: &TestApp,
    org: &auth::Organisation,
    reference: &str,
    devices: &[(&str, &str)],
) -> (i32, Vec<String>) {
    let mut secrets = Vec::new();
    for (uid, kind) in devices {
        secrets.push(app.device(org, uid, kind).await);
    }
    let client = app.pool.get().await.unwrap();
    let person: i32 = client
        .query_one(
            "INSERT INTO people (organisation_id, external_ref) VALUES ($1, $2) RETURNING id",
            &[&org.id, &reference],
        )
        .await
        .unwrap()
        .get(0);
    let uids: Vec<&str> = devices.iter().map(|(u, _)| *u).collect();
    client
        .execute(
            "UPDATE devices SET person_id = $1 WHERE uid = ANY($2)",
            &[&person, &uids],
        )
        .await
        .unwrap();
    (person, secrets)
}

async fn open_alarms(app: &TestApp, token: &str) -> Vec<Value> {
    app.get_ok("/v1/alarms", token).await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the open care alarms satisfy `pred`.
async fn alarms_until(app: &TestApp, token: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(WAIT, || async {
        let alarms = open_alarms(app, token).await;
        pred(&alarms).then_some(alarms)
    })
    .await
    .expect("the alarms reach the expected state")
}

async fn alarm(app: &TestApp, token: &str, id: i64) -> Value {
    app.get_ok(&format!("/v1/alarms/{id}"), token).await
}

fn quiet_settings() -> homeward::config::Settings {
    let mut settings = test_settings();
    // The periodic check stays out of the way; tests run it with their own clock.
    settings.alarms.sweep_interval_secs = 3600;
    settings
}
