//! Two instances share one subscription on a clustered-style broker (Mosquitto, `$share`), on one
//! database: the stream is split, one instance stops mid-stream, and every event is still stored
//! once.

use std::time::Duration;

use homeward::auth::{OrgKind, Role};
use homeward::db::test_cluster::TestServer;

use crate::device::run_device;
use crate::helpers::{event_counts, eventually, spawn_app_on, test_settings, Mosquitto};

#[tokio::test]
async fn two_instances_on_a_shared_subscription_store_every_event_once_when_one_stops() {
    let mosquitto = Mosquitto::start();
    let port = mosquitto.port;

    let db = TestServer::get()
        .await
        .unwrap()
        .fresh_database()
        .await
        .unwrap();
    let instance = |n: u32| {
        let mut settings = test_settings();
        settings.mqtt.url = Some(homeward::config::Secret::new(format!(
            "mqtt://127.0.0.1:{port}"
        )));
        settings.mqtt.client_id = format!("homeward-{port}-{n}");
        settings.mqtt.shared_group = Some("homeward".into());
        settings
    };
    let a = spawn_app_on(instance(1), db.clone()).await;
    let b = spawn_app_on(instance(2), db.clone()).await;
    let (org, _) = a
        .org_with_user("Shared Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    a.device(&org, "hub-s1", "hub").await;

    let base = chrono::Utc::now().timestamp_millis() - 60_000;
    let device = tokio::spawn(run_device(
        base,
        "127.0.0.1".into(),
        port,
        "hub-s1".into(),
        None,
        2000,
        500,
        Duration::from_secs(90),
    ));
    // Mid-stream: some events stored, most still to come.
    let stored = eventually(Duration::from_secs(30), || async {
        let (n, _) = event_counts(&b.pool, "hub-s1").await;
        (n > 200).then_some(n)
    })
    .await;
    assert!(stored.is_some(), "events flow before the stop");
    a.stop().await;
    let (at_stop, _) = event_counts(&b.pool, "hub-s1").await;
    assert!(
        at_stop < 2000,
        "stopped mid-stream: {at_stop} of 2000 stored"
    );
    let run = device.await.unwrap();
    assert!(
        run.unacked.is_empty(),
        "{} unacknowledged",
        run.unacked.len()
    );

    let client = b.pool.get().await.unwrap();
    let row = client
        .query_one("SELECT count(*), count(DISTINCT seq) FROM events", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (2000, 2000));
    b.stop().await;
}
