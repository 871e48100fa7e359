//! External brokers that check devices themselves: Debian's Mosquitto running on the files
//! `homeward admin export-mosquitto` writes, and the HTTP hooks EMQX calls, asked exactly as
//! EMQX asks.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use homeward::auth::{self, OrgKind, Role, Scope};
use homeward::config::Secret;
use homeward::db::build_pool;
use homeward_proto::{Downlink, Encoding};
use homeward_testkit::cluster::TestServer;
use homeward_testkit::db::{event_counts, url_of};
use homeward_testkit::mqtt::{connect, heartbeat, options, options_at};
use homeward_testkit::{
    eventually, spawn_app, spawn_app_on, spawn_app_with, test_settings, Mosquitto, TestApp,
};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Packet, PublishOptions, QoS};
use serde_json::{json, Value};

use crate::helpers::homeward;

const SERVICE_USER: &str = "homeward";
const SERVICE_PASSWORD: &str = "service-password-for-tests";

/// Runs `homeward admin export-mosquitto` against `db`, with Homeward's user in `mqtt_url`;
/// returns its standard output.
async fn export(db: &tokio_postgres::Config, mqtt_url: &str, passwd: &Path, acl: &Path) -> String {
    let out = run_export(db, mqtt_url, passwd, acl).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "export fails: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn run_export(
    db: &tokio_postgres::Config,
    mqtt_url: &str,
    passwd: &Path,
    acl: &Path,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::from(homeward());
    cmd.env("HOMEWARD__DATABASE__URL", url_of(db))
        .env("HOMEWARD__MQTT__URL", mqtt_url)
        .args(["admin", "export-mosquitto", "--password-file"])
        .arg(passwd)
        .arg("--acl-file")
        .arg(acl)
        .output()
        .await
        .expect("homeward runs")
}

/// Mosquitto as `docs/operations.md` configures it for Homeward: the exported password and ACL
/// files, no anonymous clients, a device listener that makes each client id its user name
/// (`listeners[0]`), and a listener of Homeward's own (`listeners[1]`). Killed on drop.
fn exported_mosquitto(passwd: &Path, acl: &Path) -> Mosquitto {
    Mosquitto::start_configured(2, |ports| {
        // As root Mosquitto would switch to its own user, who cannot read the 0600 files.
        format!(
            "user root\npersistence false\nmax_inflight_messages 10000\n\
             password_file {}\nacl_file {}\nallow_anonymous false\n\
             listener {} 127.0.0.1\nuse_username_as_clientid true\n\
             listener {} 127.0.0.1\n",
            passwd.display(),
            acl.display(),
            ports[0],
            ports[1]
        )
    })
}

/// Connects a device to the device listener; the error if it is refused.
async fn connect_device(
    port: u16,
    uid: &str,
    secret: &str,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    connect(options_at("127.0.0.1", port, uid, uid, secret)).await
}

/// What a driven connection reports.
#[derive(Debug)]
enum Seen {
    /// A message: its topic, and the sequence numbers it acknowledges if it is an ack.
    Message(String, Vec<std::ops::RangeInclusive<u64>>),
    SubAck(Vec<rumqttc::SubscribeReasonCode>),
    Closed,
}

/// Drives an event loop in the background until the connection ends.
fn drive(mut eventloop: EventLoop) -> tokio::sync::mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let seen = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let acks = match homeward_proto::decode_downlink(&p.payload) {
                        Ok(Downlink::Ack(ranges)) => ranges.iter().collect(),
                        _ => Vec::new(),
                    };
                    Seen::Message(String::from_utf8_lossy(&p.topic).into_owned(), acks)
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => Seen::SubAck(ack.return_codes),
                Ok(_) => continue,
                Err(_) => Seen::Closed,
            };
            let closed = matches!(seen, Seen::Closed);
            if tx.send(seen).is_err() || closed {
                return;
            }
        }
    });
    rx
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    within: Duration,
) -> Option<Seen> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

async fn publish_heartbeat(device: &AsyncClient, topic: &str, seq: u64) {
    let now = chrono::Utc::now().timestamp_millis();
    device
        .publish(
            topic,
            heartbeat(seq, now, Encoding::Json),
            PublishOptions::new(QoS::AtLeastOnce),
        )
        .await
        .unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

#[tokio::test]
async fn mosquitto_checks_devices_with_the_exported_files_as_the_embedded_broker_would() {
    let server = TestServer::get().await.unwrap();
    let db = server.fresh_database().await.unwrap();
    let pool = build_pool(db.clone(), 2, 5);
    let (secret_a, secret_b, secret_off) = {
        let client = pool.get().await.unwrap();
        let org = auth::create_organisation(&**client, "Mosquitto Org", OrgKind::Provider)
            .await
            .unwrap();
        let mut secrets = Vec::new();
        for uid in ["hub-a", "hub-b", "hub-off"] {
            secrets.push(
                homeward::devices::create_device(&**client, &org, uid, "hub".parse().unwrap())
                    .await
                    .unwrap()
                    .1,
            );
        }
        homeward::devices::set_device_disabled(&**client, Scope::Any, "hub-off", true)
            .await
            .unwrap();
        // A device registered before Mosquitto hashes were kept: SHA-256 only.
        client
            .execute(
                "INSERT INTO devices (organisation_id, uid, kind, secret_hash)
                 VALUES ($1, 'hub-old', 'hub', decode(repeat('00', 32), 'hex'))",
                &[&org.id],
            )
            .await
            .unwrap();
        (secrets[0].clone(), secrets[1].clone(), secrets[2].clone())
    };

    let dir = tempfile::tempdir().unwrap();
    let (passwd, acl): (PathBuf, PathBuf) = (dir.path().join("passwd"), dir.path().join("acl"));
    // Mosquitto's ports are needed for Homeward's mqtt.url before Mosquitto can start on the
    // files, so the first export names a placeholder port: only the user and password count.
    let report = export(
        &db,
        &format!("mqtt://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:1"),
        &passwd,
        &acl,
    )
    .await;
    assert!(report.contains("2 device(s)"), "{report}");
    assert!(report.contains("left out 1 disabled device"), "{report}");
    assert!(
        report.contains("hub-old") && report.contains("rotate"),
        "the device that cannot be exported is named, with what to do: {report}"
    );
    assert_eq!((mode_of(&passwd), mode_of(&acl)), (0o600, 0o600));
    let users: Vec<String> = std::fs::read_to_string(&passwd)
        .unwrap()
        .lines()
        .map(|l| l.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(users, ["homeward", "hub-a", "hub-b"]);

    let mosquitto = exported_mosquitto(&passwd, &acl);
    let mqtt_url = format!(
        "mqtt://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:{}",
        mosquitto.listeners[1]
    );
    let mut settings = test_settings();
    settings.mqtt.url = Some(Secret::new(mqtt_url.clone()));
    settings.mqtt.client_id = "homeward-mosquitto".into();
    let app = spawn_app_on(settings, db.clone()).await;
    let port = mosquitto.listeners[0];

    // Devices with other secrets, and those left out, are refused.
    for (uid, secret) in [
        ("hub-a", secret_b.as_str()),
        ("hub-off", secret_off.as_str()),
        ("hub-old", &"0".repeat(64)),
    ] {
        assert!(
            matches!(
                connect_device(port, uid, secret).await,
                Err(ConnectionError::ConnectionRefused(_))
            ),
            "{uid} is refused"
        );
    }

    // hub-a listens on its own downlink and on hub-b's.
    let (a, a_loop) = connect_device(port, "hub-a", &secret_a).await.unwrap();
    let mut a_seen = drive(a_loop);
    a.subscribe("homeward/v1/hub-a/downlink", QoS::AtLeastOnce)
        .await
        .unwrap();
    a.subscribe("homeward/v1/hub-b/downlink", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (b, b_loop) = connect_device(port, "hub-b", &secret_b).await.unwrap();
    let mut b_seen = drive(b_loop);
    b.subscribe("homeward/v1/hub-b/downlink", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut a_subacks = Vec::new();
    while a_subacks.len() < 2 {
        match next(&mut a_seen, Duration::from_secs(5)).await {
            Some(Seen::SubAck(codes)) => a_subacks.extend(codes),
            other => panic!("hub-a's SUBACKs: {other:?}"),
        }
    }
    assert!(matches!(
        a_subacks[0],
        rumqttc::SubscribeReasonCode::Success(_)
    ));
    assert!(matches!(
        next(&mut b_seen, Duration::from_secs(5)).await,
        Some(Seen::SubAck(_))
    ));

    // hub-a forges an event of hub-b's, then sends one of its own: its own is stored, and by
    // then the forged one, sent before it on the same connection, would have been too.
    publish_heartbeat(&a, "homeward/v1/hub-b/events", 1).await;
    publish_heartbeat(&a, "homeward/v1/hub-a/events", 1).await;
    let stored = eventually(Duration::from_secs(20), || async {
        (event_counts(&app.pool, "hub-a").await == (1, 1)).then_some(())
    })
    .await;
    assert!(stored.is_some(), "hub-a's own event is stored");
    assert!(
        matches!(
            next(&mut a_seen, Duration::from_secs(10)).await,
            Some(Seen::Message(t, _)) if t == "homeward/v1/hub-a/downlink"
        ),
        "hub-a gets Homeward's acknowledgement on its downlink"
    );
    assert_eq!(
        event_counts(&app.pool, "hub-b").await,
        (0, 0),
        "nothing forged is stored"
    );

    // hub-b's own event is acknowledged on hub-b's downlink; hub-a, subscribed to it (Mosquitto
    // 2.0 grants the SUBACK and checks each message against the ACL), gets none of it.
    publish_heartbeat(&b, "homeward/v1/hub-b/events", 1).await;
    assert!(
        matches!(
            next(&mut b_seen, Duration::from_secs(20)).await,
            Some(Seen::Message(t, _)) if t == "homeward/v1/hub-b/downlink"
        ),
        "hub-b gets its acknowledgement"
    );
    assert_eq!(event_counts(&app.pool, "hub-b").await, (1, 1));
    // Mosquitto sends a session's messages in order: whatever it sent hub-a of hub-b's
    // downlink comes before the acknowledgement of hub-a's next event.
    publish_heartbeat(&a, "homeward/v1/hub-a/events", 2).await;
    let mut seen_by_a = Vec::new();
    loop {
        let seen = next(&mut a_seen, Duration::from_secs(20)).await;
        let done = matches!(&seen, Some(Seen::Message(t, acks))
            if t == "homeward/v1/hub-a/downlink" && acks.iter().any(|r| r.contains(&2)));
        match seen {
            Some(seen) if !done => seen_by_a.push(seen),
            Some(_) => break,
            None => panic!("hub-a's second event is acknowledged: {seen_by_a:?}"),
        }
    }
    assert!(
        !seen_by_a
            .iter()
            .any(|s| matches!(s, Seen::Message(t, _) if t.contains("hub-b"))),
        "hub-a must not get hub-b's downlink: {seen_by_a:?}"
    );

    // hub-a is disabled and hub-old rotated; after a new export and a reload, hub-a's live
    // connection ends and it cannot come back, hub-old can with its new secret, and hub-b is
    // untouched.
    let new_old = {
        let client = pool.get().await.unwrap();
        homeward::devices::set_device_disabled(&**client, Scope::Any, "hub-a", true)
            .await
            .unwrap();
        homeward::devices::rotate_device_secret(&**client, Scope::Any, "hub-old")
            .await
            .unwrap()
    };
    let report = export(&db, &mqtt_url, &passwd, &acl).await;
    assert!(report.contains("left out 2 disabled device"), "{report}");
    assert!(!report.contains("NOT EXPORTED"), "{report}");
    mosquitto.reload();
    let ended = loop {
        match next(&mut a_seen, Duration::from_secs(10)).await {
            Some(Seen::Message(..)) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(ended, Some(Seen::Closed)),
        "hub-a's connection ends at the reload: {ended:?}"
    );
    let refused = eventually(Duration::from_secs(10), || async {
        matches!(
            connect_device(port, "hub-a", &secret_a).await,
            Err(ConnectionError::ConnectionRefused(_))
        )
        .then_some(())
    })
    .await;
    assert!(refused.is_some(), "the disabled device is refused");
    assert!(connect_device(port, "hub-old", &new_old).await.is_ok());
    publish_heartbeat(&b, "homeward/v1/hub-b/events", 2).await;
    let stored = eventually(Duration::from_secs(20), || async {
        (event_counts(&app.pool, "hub-b").await == (2, 2)).then_some(())
    })
    .await;
    assert!(stored.is_some(), "hub-b goes on as before");
    app.stop().await;
}

#[tokio::test]
async fn an_export_needs_homewards_user_and_never_carries_a_stale_hash() {
    let server = TestServer::get().await.unwrap();
    let db = server.fresh_database().await.unwrap();
    let pool = build_pool(db.clone(), 2, 5);
    let client = pool.get().await.unwrap();
    let org = auth::create_organisation(&**client, "Stale Org", OrgKind::Provider)
        .await
        .unwrap();
    homeward::devices::create_device(&**client, &org, "hub-x", "hub".parse().unwrap())
        .await
        .unwrap();
    homeward::devices::create_device(&**client, &org, "hub-y", "hub".parse().unwrap())
        .await
        .unwrap();
    // A writer that knows only the SHA-256 changes hub-x's secret: the Mosquitto hash, which
    // now belongs to no secret, goes.
    client
        .execute(
            "UPDATE devices SET secret_hash = decode(repeat('11', 32), 'hex') WHERE uid = 'hub-x'",
            &[],
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (passwd, acl) = (dir.path().join("passwd"), dir.path().join("acl"));

    let out = run_export(&db, "mqtt://127.0.0.1:1883", &passwd, &acl).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mqtt.url"), "{stderr}");
    assert!(!passwd.exists() && !acl.exists(), "nothing written");

    let report = export(&db, "mqtt://homeward:pw@127.0.0.1:1883", &passwd, &acl).await;
    assert!(
        report.contains("NOT EXPORTED: 1 device(s)") && report.contains("hub-x"),
        "{report}"
    );
    let users: Vec<String> = std::fs::read_to_string(&passwd)
        .unwrap()
        .lines()
        .map(|l| l.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(users, ["homeward", "hub-y"]);
}

/// POSTs `body` to an EMQX hook as EMQX does (JSON, the configured headers); (status, body).
async fn hook(app: &TestApp, path: &str, secret: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("cache-control", "no-cache")
        .header("keep-alive", "timeout=30, max=1000");
    if let Some(secret) = secret {
        req = req.header("authorization", format!("Bearer {secret}"));
    }
    let r = req.body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The authenticator's body as EMQX renders the documented template (every value a string),
/// with the fields EMQX adds when a template names them.
fn authn(client: &str, user: &str, password: &str) -> Value {
    json!({"clientid": client, "username": user, "password": password, "peerhost": "127.0.0.1"})
}

fn authz(client: &str, user: &str, action: &str, topic: &str) -> Value {
    json!({"clientid": client, "username": user, "topic": topic, "action": action, "qos": "1", "retain": "false"})
}

#[tokio::test]
async fn emqx_hooks_decide_as_the_embedded_broker_does() {
    const HOOK: &str = "emqx-hook-secret-for-tests";
    // An anonymous Mosquitto stands in for EMQX as Homeward's broker: Homeward's own user is
    // the one in mqtt.url.
    let broker = Mosquitto::start();
    let mut settings = test_settings();
    settings.mqtt.url = Some(Secret::new(format!(
        "mqtt://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:{}",
        broker.port
    )));
    settings.mqtt.client_id = "homeward-emqx".into();
    settings.mqtt.emqx_hook_secret = Some(Secret::new(HOOK.into()));
    let app = spawn_app_with(settings).await;
    let (org, _) = app
        .org_with_user("EMQX Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let a = app.device(&org, "hub-a", "hub").await;
    let b = app.device(&org, "hub-b", "hub").await;
    let off = app.device(&org, "hub-off", "hub").await;
    {
        let client = app.pool.get().await.unwrap();
        homeward::devices::set_device_disabled(&**client, Scope::Any, "hub-off", true)
            .await
            .unwrap();
    }
    let authenticate = "/v1/emqx/authenticate";
    let authorize = "/v1/emqx/authorize";

    let cases = [
        (authn("hub-a", "hub-a", &a), "allow", false),
        (authn("hub-a", "hub-a", &b), "deny", false),
        (authn("hub-b", "hub-a", &a), "deny", false),
        (authn("hub-off", "hub-off", &off), "deny", false),
        (authn("ghost", "ghost", &a), "deny", false),
        (authn("hub-a", "hub-a", ""), "deny", false),
        (
            authn("homeward-ingest", SERVICE_USER, SERVICE_PASSWORD),
            "allow",
            true,
        ),
        (
            authn("homeward-ingest", SERVICE_USER, "guess"),
            "deny",
            false,
        ),
    ];
    for (body, result, superuser) in cases {
        let (status, answer) = hook(&app, authenticate, Some(HOOK), body.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            answer,
            json!({"result": result, "is_superuser": superuser}),
            "{body}"
        );
    }
    // A rotated secret: the old one is refused at once, the new one works.
    let rotated = {
        let client = app.pool.get().await.unwrap();
        homeward::devices::rotate_device_secret(&**client, Scope::Any, "hub-b")
            .await
            .unwrap()
    };
    let (_, old) = hook(&app, authenticate, Some(HOOK), authn("hub-b", "hub-b", &b)).await;
    let (_, new) = hook(
        &app,
        authenticate,
        Some(HOOK),
        authn("hub-b", "hub-b", &rotated),
    )
    .await;
    assert_eq!(
        (&old["result"], &new["result"]),
        (&json!("deny"), &json!("allow"))
    );

    let cases = [
        (
            authz("hub-a", "hub-a", "publish", "homeward/v1/hub-a/events"),
            "allow",
        ),
        (
            authz("hub-a", "hub-a", "publish", "homeward/v1/hub-a/status"),
            "allow",
        ),
        (
            authz("hub-a", "hub-a", "subscribe", "homeward/v1/hub-a/downlink"),
            "allow",
        ),
        (
            authz("hub-a", "hub-a", "publish", "homeward/v1/hub-b/events"),
            "deny",
        ),
        (
            authz("hub-a", "hub-a", "publish", "homeward/v1/hub-a/downlink"),
            "deny",
        ),
        (
            authz("hub-a", "hub-a", "subscribe", "homeward/v1/hub-b/downlink"),
            "deny",
        ),
        (
            authz("hub-a", "hub-a", "subscribe", "homeward/v1/+/downlink"),
            "deny",
        ),
        (authz("hub-a", "hub-a", "subscribe", "#"), "deny"),
        (
            authz("hub-b", "hub-a", "publish", "homeward/v1/hub-a/events"),
            "deny",
        ),
        (
            authz(
                "homeward-ingest",
                SERVICE_USER,
                "subscribe",
                "$share/homeward/homeward/v1/+/events",
            ),
            "allow",
        ),
        (
            authz(
                "homeward-ingest-downlink",
                SERVICE_USER,
                "publish",
                "homeward/v1/hub-a/downlink",
            ),
            "allow",
        ),
    ];
    for (body, result) in cases {
        let (status, answer) = hook(&app, authorize, Some(HOOK), body.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(answer["result"], result, "{body}");
    }

    // Without the hook secret, or with another, EMQX gets 401 (and treats it as `ignore`).
    for secret in [None, Some("wrong-secret-of-enough-length"), Some(&a[..])] {
        for path in [authenticate, authorize] {
            let (status, _) = hook(&app, path, secret, authn("hub-a", "hub-a", &a)).await;
            assert_eq!(status, 401, "{path} with {secret:?}");
        }
    }
    let (status, _) = hook(
        &app,
        authenticate,
        Some(HOOK),
        json!(["not", "an", "object"]),
    )
    .await;
    assert_eq!(status, 400);
    app.stop().await;

    // Without a hook secret configured the routes do not exist.
    let app = spawn_app().await;
    for path in [authenticate, authorize] {
        let (status, _) = hook(&app, path, Some(HOOK), authn("hub-a", "hub-a", &a)).await;
        assert_eq!(status, 404, "{path}");
    }
    app.stop().await;
}

/// How the embedded broker treats one client: connects or not, and for a connected device one
/// PUBLISH (acknowledged, or the connection closed) or one SUBSCRIBE (its SUBACK code).
async fn embedded_allows(
    app: &TestApp,
    client_id: &str,
    user: &str,
    password: &str,
    act: Option<(&str, &str)>,
) -> bool {
    let Ok((client, mut eventloop)) = connect(options(app, client_id, user, password)).await else {
        return false;
    };
    let Some((action, topic)) = act else {
        return true;
    };
    match action {
        "publish" => {
            client
                .publish(topic, b"{}".to_vec(), PublishOptions::new(QoS::AtLeastOnce))
                .await
                .unwrap();
        }
        _ => client.subscribe(topic, QoS::AtLeastOnce).await.unwrap(),
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("the broker answers")
        {
            Ok(Event::Incoming(Packet::PubAck(_))) => return true,
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                return matches!(
                    ack.return_codes[..],
                    [rumqttc::SubscribeReasonCode::Success(_)]
                )
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// The embedded broker and the EMQX hooks, asked the same questions about the same devices,
/// give the same answers.
#[tokio::test]
async fn the_emqx_hooks_and_the_embedded_broker_agree() {
    const HOOK: &str = "emqx-hook-secret-for-tests";
    let mut settings = test_settings();
    settings.mqtt.emqx_hook_secret = Some(Secret::new(HOOK.into()));
    let app = spawn_app_with(settings).await;
    let (org, _) = app
        .org_with_user("Agree Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let a = app.device(&org, "hub-a", "hub").await;
    let b = app.device(&org, "hub-b", "hub").await;
    let off = app.device(&org, "hub-off", "hub").await;
    {
        let client = app.pool.get().await.unwrap();
        homeward::devices::set_device_disabled(&**client, Scope::Any, "hub-off", true)
            .await
            .unwrap();
    }
    let mut answers = Vec::new();
    for (client_id, user, password) in [
        ("hub-a", "hub-a", a.as_str()),
        ("hub-a", "hub-a", b.as_str()),
        ("hub-b", "hub-a", a.as_str()),
        ("hub-off", "hub-off", off.as_str()),
        ("ghost", "ghost", a.as_str()),
    ] {
        let embedded = embedded_allows(&app, client_id, user, password, None).await;
        let (_, hook) = hook(
            &app,
            "/v1/emqx/authenticate",
            Some(HOOK),
            authn(client_id, user, password),
        )
        .await;
        answers.push((
            format!("connect {client_id}/{user}"),
            embedded,
            hook["result"] == "allow",
        ));
    }
    for (action, topic) in [
        ("publish", "homeward/v1/hub-a/events"),
        ("publish", "homeward/v1/hub-a/status"),
        ("publish", "homeward/v1/hub-a/downlink"),
        ("publish", "homeward/v1/hub-b/events"),
        ("publish", "homeward/v1/hub-a/events/x"),
        ("publish", "other/topic"),
        ("subscribe", "homeward/v1/hub-a/downlink"),
        ("subscribe", "$share/g/homeward/v1/hub-a/downlink"),
        ("subscribe", "homeward/v1/hub-b/downlink"),
        ("subscribe", "homeward/v1/+/downlink"),
        ("subscribe", "homeward/v1/hub-a/#"),
        ("subscribe", "homeward/v1/hub-a/events"),
        ("subscribe", "#"),
        ("subscribe", "$SYS/#"),
    ] {
        let embedded = embedded_allows(&app, "hub-a", "hub-a", &a, Some((action, topic))).await;
        let (_, hook) = hook(
            &app,
            "/v1/emqx/authorize",
            Some(HOOK),
            authz("hub-a", "hub-a", action, topic),
        )
        .await;
        answers.push((
            format!("{action} {topic}"),
            embedded,
            hook["result"] == "allow",
        ));
    }
    let disagree: Vec<_> = answers.iter().filter(|(_, e, h)| e != h).collect();
    assert!(
        disagree.is_empty(),
        "(question, embedded, hook): {disagree:?}"
    );
    // Neither path says yes (or no) to everything.
    assert!(answers.iter().any(|(_, e, _)| *e) && answers.iter().any(|(_, e, _)| !*e));
    app.stop().await;
}
