//! Credential lifecycle through real clients: tokens that expire, are listed without being
//! shown and are revoked; users and devices that are disabled; device secrets that are rotated.
//! Each revocation must end the live sessions it concerns (an event stream, an MQTT
//! connection), not only refuse the next request.

use std::time::{Duration, Instant};

use homeward::auth::{self, OrgKind, Role};
use homeward_testkit::mqtt::{connect, device_options};
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use rumqttc::{ConnectionError, EventLoop, MqttOptions};
use serde_json::json;

use crate::helpers::homeward;

/// The revocation watcher polls every 100 ms, so a session ends well within the second the
/// issue allows after its credential is revoked (about 0.1 to 0.25 s measured here).
const ENDS_WITHIN: Duration = Duration::from_secs(1);

async fn me(app: &TestApp, token: &str) -> u16 {
    app.get("/v1/me", Some(token)).await.status().as_u16()
}

async fn user_id(app: &TestApp, token: &str) -> i32 {
    let (_, body) = app.get_json("/v1/me", token).await;
    body["user"]["id"].as_i64().unwrap() as i32
}

#[tokio::test]
async fn tokens_expire_by_default_are_listed_without_the_secret_and_revoke_at_once() {
    let app = spawn_app().await;
    let (org, admin) = app
        .org_with_user("Token Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let admin_id = user_id(&app, &admin).await;
    let (_, other_admin) = app
        .org_with_user("Other Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let client = app.pool.get().await.unwrap();
    let (staff_id, staff) = auth::create_user(&**client, &org, "Sam", Role::ProviderStaff)
        .await
        .unwrap();

    // The user's first token expires after the default 90 days; the list shows its prefix and
    // never the token.
    let (status, list) = app
        .get_json(&format!("/v1/users/{staff_id}/tokens"), &admin)
        .await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["prefix"], staff[..11]);
    assert_eq!(items[0]["service"], false);
    assert_eq!(items[0]["active"], true);
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(items[0]["expires_at"].clone()).unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((89.9..=90.0).contains(&days), "expires in {days} days");
    assert!(
        !list.to_string().contains(&staff[11..]),
        "the token is never shown"
    );
    // Its use was noted.
    assert_eq!(me(&app, &staff).await, 200);
    let (_, list) = app
        .get_json(&format!("/v1/users/{staff_id}/tokens"), &staff)
        .await;
    assert!(list["items"][0]["last_used_at"].is_string(), "{list}");

    // Service tokens never expire and only admins issue them.
    let path = format!("/v1/users/{staff_id}/tokens");
    let (status, _) = app
        .post_json(&path, &staff, &json!({"service": true}))
        .await;
    assert_eq!(status, 403);
    let (status, created) = app
        .post_json(
            &path,
            &admin,
            &json!({"label": "dashboard", "service": true}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let service = created["token"].as_str().unwrap().to_owned();
    let (_, list) = app.get_json(&path, &admin).await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "dashboard")
        .unwrap()
        .clone();
    assert_eq!(listed["service"], true);
    assert!(listed["expires_at"].is_null());
    let service_id = listed["id"].as_i64().unwrap();

    // Other organisations and other users cannot see or touch them.
    for (token, expected) in [(&other_admin, 404), (&staff, 403)] {
        let (status, _) = app
            .get_json(&format!("/v1/users/{admin_id}/tokens"), token)
            .await;
        assert_eq!(status, expected);
    }
    let (status, _) = app
        .request_json(
            Method::DELETE,
            &format!("/v1/tokens/{service_id}"),
            &other_admin,
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Revoking: the next request is refused and an open stream ends.
    let stream = app.live(&service).await;
    let revoked_at = Instant::now();
    let (status, _) = app
        .request_json(
            Method::DELETE,
            &format!("/v1/tokens/{service_id}"),
            &staff,
            None,
        )
        .await;
    assert_eq!(status, 204, "a user revokes their own token");
    assert_eq!(me(&app, &service).await, 401);
    let took = stream.ends(revoked_at).await;
    eprintln!("event stream ended {took:?} after the revocation");
    assert!(took < ENDS_WITHIN, "stream ended after {took:?}");
    assert_eq!(me(&app, &staff).await, 200, "other tokens still work");
    app.stop().await;
}

#[tokio::test]
async fn a_disabled_user_is_refused_and_their_streams_end_until_enabled() {
    let app = spawn_app().await;
    let (org, admin) = app
        .org_with_user("Users Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let admin_id = user_id(&app, &admin).await;
    let client = app.pool.get().await.unwrap();
    let (staff_id, staff) = auth::create_user(&**client, &org, "Pat", Role::ProviderStaff)
        .await
        .unwrap();
    let (_, users) = app.get_json("/v1/users", &admin).await;
    assert_eq!(users["items"].as_array().unwrap().len(), 2, "{users}");

    let stream = app.live(&staff).await;
    let disabled_at = Instant::now();
    let (status, body) = app
        .request_json(
            Method::POST,
            &format!("/v1/users/{staff_id}/disable"),
            &admin,
            None,
        )
        .await;
    assert_eq!((status, &body["changed"]), (200, &json!(true)), "{body}");
    assert_eq!(me(&app, &staff).await, 401);
    let took = stream.ends(disabled_at).await;
    eprintln!("event stream ended {took:?} after the revocation");
    assert!(took < ENDS_WITHIN, "stream ended after {took:?}");

    let (status, _) = app
        .request_json(
            Method::POST,
            &format!("/v1/users/{admin_id}/disable"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 409, "an admin cannot lock themselves out");
    let (status, _) = app
        .request_json(
            Method::POST,
            &format!("/v1/users/{staff_id}/enable"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(me(&app, &staff).await, 200);
    app.stop().await;
}

fn mqtt_options(app: &TestApp, uid: &str, secret: &str) -> MqttOptions {
    let mut options = device_options(app, uid, secret);
    options.set_keep_alive(30);
    options
}

/// Polls until the broker closes the connection; returns how long after `since`.
async fn closed(mut eventloop: EventLoop, since: Instant) -> Duration {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("the connection is closed within 10 s")
        {
            Ok(_) => continue,
            Err(_) => return since.elapsed(),
        }
    }
}

#[tokio::test]
async fn disabling_or_rotating_a_device_closes_its_live_connection() {
    let app = spawn_app().await;
    let (org, admin) = app
        .org_with_user("Device Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (_, other_admin) = app
        .org_with_user("Not Theirs", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let secret = app.device(&org, "hub-live", "hub").await;
    let phone = app.device(&org, "phone-live", "phone").await;

    // Another organisation cannot touch the device.
    for action in ["disable", "enable", "rotate-secret"] {
        let (status, _) = app
            .request_json(
                Method::POST,
                &format!("/v1/devices/hub-live/{action}"),
                &other_admin,
                None,
            )
            .await;
        assert_eq!(status, 404, "{action}");
    }

    // Disabled: the live connection is closed, reconnecting and HTTP are refused.
    let (_device, eventloop) = connect(mqtt_options(&app, "hub-live", &secret))
        .await
        .unwrap();
    let at = Instant::now();
    let (status, body) = app
        .request_json(Method::POST, "/v1/devices/hub-live/disable", &admin, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let took = closed(eventloop, at).await;
    eprintln!("MQTT connection closed {took:?} after the revocation");
    assert!(took < ENDS_WITHIN, "connection closed after {took:?}");
    assert!(matches!(
        connect(mqtt_options(&app, "hub-live", &secret)).await,
        Err(ConnectionError::ConnectionRefused(_))
    ));
    app.request_json(Method::POST, "/v1/devices/phone-live/disable", &admin, None)
        .await;
    let check_in = json!({"seq": 1, "t": chrono::Utc::now().timestamp_millis(), "kind": "check_in",
        "method": "gps", "lat": 51.5, "lon": -0.12, "accuracy_m": 12.0, "visit": "V-1"});
    let r = app
        .post_as_device("/v1/check-ins", "phone-live", &phone, &check_in)
        .await;
    assert_eq!(r.status(), 401, "a disabled phone cannot check in");
    let (_, device) = app.get_json("/v1/devices/hub-live", &admin).await;
    assert_eq!(device["disabled"], true);

    // Enabled again, it connects; rotated, the old secret stops working at once.
    let (status, _) = app
        .request_json(Method::POST, "/v1/devices/hub-live/enable", &admin, None)
        .await;
    assert_eq!(status, 200);
    let (_device, eventloop) = connect(mqtt_options(&app, "hub-live", &secret))
        .await
        .unwrap();
    let at = Instant::now();
    let (status, rotated) = app
        .request_json(
            Method::POST,
            "/v1/devices/hub-live/rotate-secret",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let took = closed(eventloop, at).await;
    eprintln!("MQTT connection closed {took:?} after the revocation");
    assert!(took < ENDS_WITHIN, "connection closed after {took:?}");
    assert!(matches!(
        connect(mqtt_options(&app, "hub-live", &secret)).await,
        Err(ConnectionError::ConnectionRefused(_))
    ));
    let (_device, eventloop) = connect(mqtt_options(&app, "hub-live", new_secret))
        .await
        .expect("the new secret works");
    // And the rotation does not close the new connection again later.
    let mut eventloop = eventloop;
    let quiet = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if eventloop.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the reconnected device stays connected");
    app.stop().await;
}

/// The same lifecycle from the command line, whose output tells an operator what happened.
#[tokio::test]
async fn the_command_line_lists_revokes_disables_and_rotates() {
    use homeward_testkit::cluster::TestServer;
    let server = TestServer::get().await.unwrap();
    let url = homeward_testkit::db::url_of(&server.fresh_database().await.unwrap());
    let admin = |args: &[&str]| {
        let out = homeward()
            .env("HOMEWARD__DATABASE__URL", &url)
            .env("HOMEWARD__AUTH__TOKEN_TTL_DAYS", "7")
            .arg("admin")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        stdout
    };
    admin(&[
        "create-organisation",
        "--name",
        "Cli Care",
        "--kind",
        "provider",
    ]);
    let out = admin(&[
        "create-user",
        "--org",
        "Cli Care",
        "--name",
        "Ann",
        "--role",
        "provider-admin",
    ]);
    assert!(out.contains("expires in 7 days"), "{out}");
    let user_token = out
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_owned();
    let out = admin(&["create-token", "--user", "1", "--label", "ci", "--service"]);
    assert!(out.contains("never expires"), "{out}");
    let listed = admin(&["list-tokens", "--user", "1"]);
    assert!(listed.contains(&user_token[..11]), "{listed}");
    assert!(
        !listed.contains(&user_token[11..]),
        "the token is never printed"
    );
    assert_eq!(
        listed.lines().filter(|l| l.contains("\tactive\t")).count(),
        2,
        "{listed}"
    );
    assert!(admin(&["revoke-token", "--id", "1"]).contains("token 1 revoked"));
    assert!(admin(&["revoke-token", "--id", "1"]).contains("already revoked"));
    let listed = admin(&["list-tokens", "--user", "1"]);
    assert!(listed.contains("\trevoked\t"), "{listed}");

    let pool = homeward::db::build_pool(url.parse().unwrap(), 2, 5);
    let client = pool.get().await.unwrap();
    let stored = |uid: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT disabled_at IS NOT NULL, secret_hash FROM devices WHERE uid = $1",
                    &[&uid],
                )
                .await
                .unwrap()
        }
    };
    admin(&[
        "create-device",
        "--org",
        "Cli Care",
        "--uid",
        "hub-cli",
        "--kind",
        "hub",
    ]);
    assert!(admin(&["disable-device", "--uid", "hub-cli"]).contains("disabled"));
    assert!(stored("hub-cli").await.get::<_, bool>(0));
    assert!(admin(&["enable-device", "--uid", "hub-cli"]).contains("enabled"));
    let before: Vec<u8> = stored("hub-cli").await.get(1);
    let out = admin(&["rotate-device-secret", "--uid", "hub-cli"]);
    let secret = out
        .lines()
        .find_map(|l| l.split("new secret: ").nth(1))
        .unwrap();
    let after: Vec<u8> = stored("hub-cli").await.get(1);
    assert_ne!(before, after);
    assert_eq!(after, homeward::secret::hash_secret(secret).to_vec());
    assert!(admin(&["disable-user", "--user", "1"]).contains("user 1 disabled"));
    let revocations: i64 = client
        .query_one("SELECT count(*) FROM credential_revocations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        revocations, 4,
        "token, device disabled, secret rotated, user"
    );
}

/// A stolen token cannot leave offspring behind: revoking it revokes every token issued with
/// it (and with those); and a user holds a bounded number of active tokens.
#[tokio::test]
async fn revoking_a_token_revokes_what_was_issued_with_it() {
    let app = spawn_app().await;
    let (org, admin) = app
        .org_with_user("Offspring Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let client = app.pool.get().await.unwrap();
    let (staff_id, stolen) = auth::create_user(&**client, &org, "Kim", Role::ProviderStaff)
        .await
        .unwrap();
    let path = format!("/v1/users/{staff_id}/tokens");
    let (status, child) = app.post_json(&path, &stolen, &json!({})).await;
    assert_eq!(status, 201, "{child}");
    let child = child["token"].as_str().unwrap().to_owned();
    let (_, grandchild) = app.post_json(&path, &child, &json!({})).await;
    let grandchild = grandchild["token"].as_str().unwrap().to_owned();
    // Issued by the admin with the admin's own token: not the stolen token's offspring.
    let (_, by_admin) = app.post_json(&path, &admin, &json!({})).await;
    let by_admin = by_admin["token"].as_str().unwrap().to_owned();
    for t in [&stolen, &child, &grandchild, &by_admin] {
        assert_eq!(me(&app, t).await, 200);
    }
    let (_, list) = app.get_json(&path, &admin).await;
    let stolen_id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["prefix"] == stolen[..11])
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _) = app
        .request_json(
            Method::DELETE,
            &format!("/v1/tokens/{stolen_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    for t in [&stolen, &child, &grandchild] {
        assert_eq!(
            me(&app, t).await,
            401,
            "revoked with the token it came from"
        );
    }
    assert_eq!(me(&app, &by_admin).await, 200);

    // At most 20 active tokens: the 21st is refused until one is revoked.
    let active = 1; // by_admin
    for _ in active..auth::MAX_ACTIVE_TOKENS {
        let (status, _) = app.post_json(&path, &admin, &json!({})).await;
        assert_eq!(status, 201);
    }
    let (status, body) = app.post_json(&path, &admin, &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("active tokens"));
    app.stop().await;
}
