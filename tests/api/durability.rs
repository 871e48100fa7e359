//! Nothing acknowledged is lost, nothing is stored twice: the server killed hard mid-stream
//! (with the embedded broker, ingest in-process and over loopback, and with Mosquitto),
//! PostgreSQL stopped mid-stream (ingest in-process and over loopback), and the in-process
//! ingest task crashed mid-stream (the broker's session redelivers).

use std::time::Duration;

use homeward::auth::{self, OrgKind};
use homeward::db::build_pool;
use homeward::db::embedded::{EmbeddedPostgres, StartOptions};
use homeward_testkit::cluster::TestServer;
use homeward_testkit::db::{event_counts, serve_database_envs};
use homeward_testkit::mqtt::{run_device, DeviceRunSpec, RESEND_AFTER};
use homeward_testkit::{eventually, free_port, spawn_app_on, test_settings, Mosquitto};

use crate::helpers::serve;

/// How ingest takes its messages in a test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum IngestPath {
    /// From the embedded broker, in-process.
    InProcess,
    /// From the embedded broker, as an MQTT client over loopback TCP.
    Loopback,
    /// From a Mosquitto of the test's own, as an MQTT client.
    Mosquitto(u16),
}

impl IngestPath {
    /// `mqtt.embedded_ingest` for an embedded broker.
    fn embedded_ingest(self) -> homeward::config::EmbeddedIngest {
        match self {
            IngestPath::Loopback => homeward::config::EmbeddedIngest::Loopback,
            _ => homeward::config::EmbeddedIngest::InProcess,
        }
    }

    fn env_value(self) -> &'static str {
        match self.embedded_ingest() {
            homeward::config::EmbeddedIngest::Loopback => "loopback",
            homeward::config::EmbeddedIngest::InProcess => "in_process",
        }
    }
}

/// Streams `count` events from one device while the server is killed and restarted.
async fn kill_mid_stream(path: IngestPath) {
    let server = TestServer::get().await.unwrap();
    let db = server.fresh_database().await.unwrap();
    let pool = build_pool(db.clone(), 2, 5);
    let uid = "hub-kill";
    let secret = {
        let client = pool.get().await.unwrap();
        let org = auth::create_organisation(&**client, "Kill Org", OrgKind::Provider)
            .await
            .unwrap();
        homeward::devices::create_device(&**client, &org, uid, "hub".parse().unwrap())
            .await
            .unwrap()
            .1
    };
    let data_dir = tempfile::tempdir().unwrap();
    let mqtt_port = free_port().unwrap();
    let mut envs = serve_database_envs(&db);
    envs.push(("HOMEWARD__MQTT__EMBEDDED_INGEST", path.env_value().into()));
    let (device_port, device_auth) = match path {
        IngestPath::Mosquitto(port) => {
            envs.push(("HOMEWARD__MQTT__URL", format!("mqtt://127.0.0.1:{port}")));
            envs.push(("HOMEWARD__MQTT__CLIENT_ID", format!("homeward-kill-{port}")));
            (port, None)
        }
        _ => (mqtt_port, Some((uid.to_string(), secret))),
    };

    let first = serve(&envs, mqtt_port, data_dir.path()).await;
    let count = 3000;
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let device = tokio::spawn(run_device(DeviceRunSpec {
        host: "127.0.0.1".into(),
        port: device_port,
        uid: uid.into(),
        auth: device_auth,
        base_ms: base,
        count,
        rate: 600,
        deadline: Duration::from_secs(150),
    }));
    // Mid-stream: some stored, most still to come.
    let mid = eventually(Duration::from_secs(30), || async {
        let (n, _) = event_counts(&pool, uid).await;
        (n > 300).then_some(n)
    })
    .await;
    assert!(mid.is_some(), "events flow before the kill");
    first.kill_hard().await;
    let (at_kill, _) = event_counts(&pool, uid).await;
    // (Killing only once every event is stored fails here.)
    assert!(
        at_kill < count as i64,
        "killed mid-stream: {at_kill} of {count} stored"
    );
    // Down for longer than the device waits for an acknowledgement, so it resends.
    tokio::time::sleep(RESEND_AFTER + Duration::from_secs(1)).await;
    let second = serve(&envs, mqtt_port, data_dir.path()).await;
    let run = device.await.unwrap();
    second.stop(Duration::from_secs(60)).await;
    eprintln!(
        "{at_kill} stored at the kill; device resent {} events across it",
        run.resends
    );
    assert!(run.resends > 0, "the device resent across the kill");
    assert_eq!(run.sent, count);
    assert!(
        run.unacked.is_empty(),
        "all acknowledged end to end in the end: {} left",
        run.unacked.len()
    );
    assert_eq!(
        event_counts(&pool, uid).await,
        (count as i64, count as i64),
        "every (device, seq) exactly once"
    );
}

#[tokio::test]
async fn server_killed_mid_stream_loses_and_doubles_nothing_with_the_embedded_broker() {
    kill_mid_stream(IngestPath::InProcess).await;
}

#[tokio::test]
async fn server_killed_mid_stream_loses_and_doubles_nothing_with_the_embedded_broker_over_loopback()
{
    kill_mid_stream(IngestPath::Loopback).await;
}

#[tokio::test]
async fn server_killed_mid_stream_loses_and_doubles_nothing_with_mosquitto() {
    let mosquitto = Mosquitto::start();
    kill_mid_stream(IngestPath::Mosquitto(mosquitto.port)).await;
}

#[tokio::test]
async fn a_database_outage_mid_stream_loses_and_doubles_nothing_and_recovers_by_itself() {
    database_down_mid_stream(Stop::Fast, IngestPath::InProcess).await;
}

#[tokio::test]
async fn a_database_outage_mid_stream_loses_and_doubles_nothing_over_loopback() {
    database_down_mid_stream(Stop::Fast, IngestPath::Loopback).await;
}

#[tokio::test]
async fn a_database_crash_mid_stream_loses_and_doubles_nothing_and_recovers_by_itself() {
    database_down_mid_stream(Stop::Crash, IngestPath::InProcess).await;
}

#[tokio::test]
async fn a_database_crash_mid_stream_loses_and_doubles_nothing_over_loopback() {
    database_down_mid_stream(Stop::Crash, IngestPath::Loopback).await;
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    /// `pg_ctl stop -m fast` with `fsync=off`: a clean outage.
    Fast,
    /// `pg_ctl stop -m immediate` with `fsync` on: a crash, recovered from the WAL at restart.
    Crash,
}

/// Streams events while PostgreSQL goes away and comes back; the server is not restarted. With
/// `synchronous_commit=off` (commits acknowledged before their WAL is written) the crash loses
/// acknowledged events and fails this test; the fast stop does not notice.
async fn database_down_mid_stream(stop: Stop, path: IngestPath) {
    // A PostgreSQL of this test's own, since it is stopped and started.
    let dir = tempfile::Builder::new()
        .prefix("homeward-outage-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let options = StartOptions {
        server_settings: match stop {
            Stop::Fast => vec![("fsync".into(), "off".into())],
            Stop::Crash => vec![("fsync".into(), "on".into())],
        },
        ..Default::default()
    };
    let mut pg = EmbeddedPostgres::start(dir.path(), &options).await.unwrap();
    let db = pg.pg_config("homeward");
    let mut settings = test_settings();
    settings.mqtt.embedded_ingest = path.embedded_ingest();
    let app = spawn_app_on(settings, db.clone()).await;
    let (org, _) = app
        .org_with_user(
            "Outage Org",
            OrgKind::Provider,
            homeward::auth::Role::ProviderAdmin,
        )
        .await;
    let secret = app.device(&org, "hub-out", "hub").await;
    let phone = app.device(&org, "phone-out", "phone").await;
    let count = 3000;
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let device = tokio::spawn(run_device(
        DeviceRunSpec::on(&app, "hub-out", &secret, base).sending(
            count,
            600,
            Duration::from_secs(150),
        ),
    ));
    let mid = eventually(Duration::from_secs(30), || async {
        let (n, _) = event_counts(&app.pool, "hub-out").await;
        (n > 300).then_some(())
    })
    .await;
    assert!(mid.is_some());

    // Counted just before the stop: at 600 events a second the rest cannot arrive meanwhile.
    let (before_stop, _) = event_counts(&app.pool, "hub-out").await;
    assert!(
        before_stop < count as i64,
        "stopped mid-stream: {before_stop} of {count} stored"
    );
    match stop {
        Stop::Fast => pg.halt().await.unwrap(),
        Stop::Crash => pg.crash().await.unwrap(),
    }
    // While it is down: HTTP answers 503 with Retry-After, and /readyz says so.
    let now = chrono::Utc::now().timestamp_millis();
    let check_in =
        serde_json::json!({"seq": 1, "t": now, "kind": "check_in", "method": "tag", "tag": "T-1"});
    let r = app
        .post_as_device("/v1/check-ins", "phone-out", &phone, &check_in)
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(app.get("/readyz", None).await.status(), 503);
    // Down for longer than the device waits for an acknowledgement, so it resends.
    tokio::time::sleep(RESEND_AFTER + Duration::from_secs(1)).await;
    pg.resume().await.unwrap();

    // Both recover without a restart.
    let accepted = eventually(Duration::from_secs(30), || async {
        let r = app
            .client
            .post(app.url("/v1/check-ins"))
            .basic_auth("phone-out", Some(&phone))
            .json(&check_in)
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(
        accepted.is_some(),
        "HTTP accepts again once the database is back"
    );
    let run = device.await.unwrap();
    assert!(
        run.unacked.is_empty(),
        "{} unacknowledged",
        run.unacked.len()
    );
    eprintln!(
        "{before_stop} stored before the stop; device resent {} events across it",
        run.resends
    );
    assert!(run.resends > 0, "the device resent across the outage");
    assert_eq!(
        event_counts(&app.pool, "hub-out").await,
        (count as i64, count as i64)
    );
    app.stop().await;
    pg.stop().await.unwrap();
}

/// The in-process consumer dies three times mid-stream (aborted, as a panic would end it): the
/// broker's session keeps what was not acknowledged and redelivers it, in order, when the
/// supervisor attaches again, soon enough that the device never has to resend.
#[tokio::test]
async fn an_ingest_crash_mid_stream_is_redelivered_by_the_broker_session() {
    let mut settings = test_settings();
    settings.mqtt.embedded_ingest = homeward::config::EmbeddedIngest::InProcess;
    let app = homeward_testkit::spawn_app_with(settings).await;
    let (org, _) = app
        .org_with_user(
            "Crash Org",
            OrgKind::Provider,
            homeward::auth::Role::ProviderAdmin,
        )
        .await;
    let uid = "hub-crash";
    let secret = app.device(&org, uid, "hub").await;
    let count = 3000;
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let device = tokio::spawn(run_device(
        DeviceRunSpec::on(&app, uid, &secret, base).sending(count, 600, Duration::from_secs(60)),
    ));
    for (i, at_least) in [300, 1200, 2100].into_iter().enumerate() {
        let reached = eventually(Duration::from_secs(30), || async {
            let (n, _) = event_counts(&app.pool, uid).await;
            (n >= at_least).then_some(n)
        })
        .await;
        assert!(reached.is_some(), "crash {i}: events flow before it");
        assert!(
            app.ingest_consumer.abort(),
            "crash {i}: a consumer to abort"
        );
    }
    let run = device.await.unwrap();
    assert_eq!(run.sent, count);
    assert!(
        run.unacked.is_empty(),
        "all acknowledged end to end: {} left",
        run.unacked.len()
    );
    assert_eq!(
        event_counts(&app.pool, uid).await,
        (count as i64, count as i64),
        "every (device, seq) exactly once"
    );
    assert_eq!(
        run.resends, 0,
        "the broker's session redelivered; the device never had to resend"
    );
    let metrics = app.metrics().await;
    let restarts =
        homeward_testkit::metrics::metric_value(&metrics, "homeward_ingest_restarts_total");
    assert_eq!(restarts, Some(3.0), "{metrics}");
    app.stop().await;
}
