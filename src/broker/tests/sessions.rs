//! Sessions: last wills, takeover, keep-alive, persistent sessions and their offline queues.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_on_abrupt_disconnect_not_on_disconnect() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;

    let mut o = options(&broker, "dev1", "dev1");
    o.set_last_will(LastWill::new(
        "devices/dev1/status",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let (dev1, _) = TestClient::connect(o).await;
    dev1.kill().await;
    let p = svc.next_publish(WAIT).await.expect("will published");
    assert_eq!(&p.topic[..], b"devices/dev1/status");
    assert_eq!(&p.payload[..], b"offline");

    let mut o = options(&broker, "dev2", "dev2");
    o.set_last_will(LastWill::new(
        "devices/dev2/status",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let (dev2, _) = TestClient::connect(o).await;
    dev2.disconnect().await;
    wait_stats(&broker, |s| s.connected_clients == 1).await;
    assert!(
        svc.next_publish(QUIET).await.is_none(),
        "no will after DISCONNECT"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_closes_old_connection_and_publishes_its_will() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;

    let mut o = options(&broker, "hub-1", "dev1");
    o.set_last_will(LastWill::new(
        "devices/dev1/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (mut first, _) = TestClient::connect(o.clone()).await;
    // The hub reconnects (same client id) and at once says it is online.
    let (second, _) = TestClient::connect(o).await;
    second
        .client
        .publish(
            "devices/dev1/status",
            "online",
            PublishOptions::new(QoS::AtLeastOnce).retained(),
        )
        .await
        .expect("queue publish");
    assert!(first.closed(WAIT).await, "old connection closed");

    // The old connection's will goes out before anything from the new one, so the retained
    // status ends up "online".
    let p = svc.next_publish(WAIT).await.expect("old will published");
    assert_eq!(&p.payload[..], b"offline");
    let p = svc.next_publish(WAIT).await.expect("new status");
    assert_eq!(&p.payload[..], b"online");
    let (mut late, _) = TestClient::connect(options(&broker, "late", "svc")).await;
    late.subscribe("devices/dev1/status", QoS::AtLeastOnce)
        .await;
    let p = late.next_publish(WAIT).await.expect("retained");
    assert_eq!(&p.payload[..], b"online");
    wait_stats(&broker, |s| s.connected_clients == 3 && s.sessions == 3).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_timeout_closes_and_publishes_will() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;

    let mut raw = Raw::open(&broker).await;
    let mut connect = Connect::new("silent-hub");
    connect.set_credentials("dev1", "dev1-secret");
    connect.keep_alive = 1;
    connect.last_will = Some(LastWill::new(
        "devices/dev1/status",
        "lost",
        QoS::AtLeastOnce,
        false,
    ));
    raw.send(Packet::Connect(connect)).await;
    assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    // A PINGREQ is answered and resets the timer...
    tokio::time::sleep(Duration::from_millis(800)).await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
    // ...then silence: closed after 1.5 s.
    let started = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(4)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    let p = svc.next_publish(WAIT).await.expect("will published");
    assert_eq!(&p.payload[..], b"lost");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_redelivers_unacked_and_queued_messages() {
    let broker = start_broker(test_config()).await;
    let subscriber = |b: &BrokerHandle| {
        let mut o = options(b, "ingest", "svc");
        o.set_clean_session(false).set_ack_mode(AckMode::Manual);
        o
    };
    let (mut sub, ack) = TestClient::connect(subscriber(&broker)).await;
    assert!(!ack.session_present);
    sub.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    for i in 0u32..20 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }
    // Receive all 20, acknowledge only the first 10.
    for i in 0u32..20 {
        let p = sub.next_publish(WAIT).await.expect("delivered");
        assert_eq!(payload_u32(&p), i);
        if i < 10 {
            sub.client.ack(&p).await.expect("queue ack");
        }
    }
    wait_stats(&broker, |s| s.inflight_messages == 10).await;

    // Crash the subscriber; publish 10 more while it is away.
    sub.kill().await;
    wait_stats(&broker, |s| s.connected_clients == 1).await;
    for i in 20u32..30 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }
    wait_stats(&broker, |s| {
        s.queued_messages == 10 && s.inflight_messages == 10
    })
    .await;

    // Reconnect without subscribing again: the 10 unacknowledged come first (DUP), in order,
    // then the 10 queued. None lost, none extra.
    let (mut sub, ack) = TestClient::connect(subscriber(&broker)).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    for _ in 0..20 {
        let p = sub.next_publish(WAIT).await.expect("redelivered");
        let n = payload_u32(&p);
        assert_eq!(p.dup, n < 20, "DUP only on resent message {n}");
        got.push(n);
        sub.client.ack(&p).await.expect("queue ack");
    }
    assert_eq!(got, (10u32..30).collect::<Vec<_>>());
    assert!(sub.next_publish(QUIET).await.is_none());
    wait_stats(&broker, |s| {
        s.inflight_messages == 0 && s.queued_messages == 0
    })
    .await;

    // clean_session = true discards the session.
    sub.kill().await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(true);
    let (_sub, ack) = TestClient::connect(o).await;
    assert!(!ack.session_present);
    publish(
        &dev,
        "devices/dev1/up/e",
        QoS::AtLeastOnce,
        99u32.to_be_bytes(),
    )
    .await;
    wait_stats(&broker, |s| s.sessions == 2 && s.queued_messages == 0).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_is_bounded() {
    let broker = start_broker(BrokerConfig {
        max_queued: 5,
        ..test_config()
    })
    .await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(false);
    let (mut sub, _) = TestClient::connect(o.clone()).await;
    sub.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    for i in 0u32..10 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }
    publish(
        &dev,
        "devices/dev1/up/e",
        QoS::AtMostOnce,
        100u32.to_be_bytes(),
    )
    .await;
    wait_stats(&broker, |s| s.queued_messages == 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Full with QoS 1 messages: the newer ones were dropped, the first five kept.
    let (mut sub, _) = TestClient::connect(o).await;
    let mut got = Vec::new();
    while let Some(p) = sub.next_publish(QUIET).await {
        got.push(payload_u32(&p));
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    broker.shutdown().await;
}
