//! Rights: ACLs on PUBLISH and SUBSCRIBE, session ownership, revocation.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_outside_acl_disconnects_and_is_not_delivered() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "ingest", "svc")).await;
    svc.subscribe("devices/#", QoS::AtLeastOnce).await;

    let (mut dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(&dev1, "devices/dev2/up/events", QoS::AtLeastOnce, "forged").await;
    assert!(dev1.closed(WAIT).await, "dev1 is disconnected");

    // The service is unaffected and the forged message never arrives: the next message it
    // sees is a legitimate one published afterwards.
    let (dev2, _) = TestClient::connect(options(&broker, "dev2", "dev2")).await;
    publish(&dev2, "devices/dev2/up/events", QoS::AtLeastOnce, "genuine").await;
    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(&p.payload[..], b"genuine");
    assert!(svc.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_outside_acl_gets_failure_code() {
    let broker = start_broker(test_config()).await;
    let (mut dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    dev.client
        .subscribe_many([
            SubscribeFilter::new("devices/dev2/down/#".to_owned(), QoS::AtLeastOnce),
            SubscribeFilter::new("devices/dev1/down/#".to_owned(), QoS::ExactlyOnce),
            SubscribeFilter::new("#".to_owned(), QoS::AtMostOnce),
            SubscribeFilter::new("devices/+/down/#".to_owned(), QoS::AtMostOnce),
            SubscribeFilter::new("$share/g/devices/dev1/down/+".to_owned(), QoS::AtLeastOnce),
        ])
        .await
        .expect("queue subscribe");
    let ack = dev.suback().await;
    assert_eq!(
        ack.return_codes,
        [
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce), // QoS 2 granted as 1
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
        ]
    );

    // The allowed subscription works; the refused ones receive nothing.
    let (svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    publish(
        &svc,
        "devices/dev2/down/cmd",
        QoS::AtLeastOnce,
        "not for dev1",
    )
    .await;
    publish(&svc, "devices/dev1/down/cmd", QoS::AtLeastOnce, "for dev1").await;
    let p = dev.next_publish(WAIT).await.expect("delivered");
    assert_eq!(&p.payload[..], b"for dev1");
    // Delivered once, although it also matches the shared subscription's group of one: the
    // plain subscription and the group each get one copy.
    let p = dev.next_publish(WAIT).await.expect("group copy");
    assert_eq!(&p.payload[..], b"for dev1");
    assert!(dev.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

/// The takeover that once let a tenant's device read and acknowledge Homeward's own ingest
/// stream: a device connecting with the service's client id. It must be refused without
/// touching the service's session, online or offline, with or without clean_session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_belongs_to_the_principal_that_created_it() {
    let broker = start_broker(test_config()).await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(false);
    let (mut svc, _) = TestClient::connect(o.clone()).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;

    for clean in [false, true] {
        let mut intruder = options(&broker, "ingest", "dev2");
        intruder.set_clean_session(clean);
        let mut c = TestClient::start(intruder);
        let err = c.connack().await.expect_err("another principal is refused");
        assert!(
            err.contains("NotAuthorized"),
            "clean_session={clean}: {err}"
        );
    }
    for n in 0u32..10 {
        publish(
            &dev1,
            "devices/dev1/up/x",
            QoS::AtLeastOnce,
            n.to_be_bytes(),
        )
        .await;
    }
    for n in 0u32..10 {
        let p = svc
            .next_publish(WAIT)
            .await
            .expect("the owner keeps receiving");
        assert_eq!(payload_u32(&p), n);
    }

    // Offline, the session still belongs to the service: an intruder neither resumes nor
    // discards it, and the service gets what was queued meanwhile.
    wait_stats(&broker, |s| s.inflight_messages == 0).await;
    svc.kill().await;
    wait_stats(&broker, |s| s.connected_clients == 1).await;
    for n in 10u32..15 {
        publish(
            &dev1,
            "devices/dev1/up/x",
            QoS::AtLeastOnce,
            n.to_be_bytes(),
        )
        .await;
    }
    wait_stats(&broker, |s| s.queued_messages == 5).await;
    for clean in [false, true] {
        let mut intruder = options(&broker, "ingest", "dev2");
        intruder.set_clean_session(clean);
        let mut c = TestClient::start(intruder);
        let err = c.connack().await.expect_err("refused while offline too");
        assert!(
            err.contains("NotAuthorized"),
            "clean_session={clean}: {err}"
        );
    }
    assert_eq!(
        broker.stats().queued_messages,
        5,
        "the refused CONNECT changed nothing"
    );
    let (mut svc, ack) = TestClient::connect(o).await;
    assert!(ack.session_present, "the service's session survived");
    for n in 10u32..15 {
        let p = svc
            .next_publish(WAIT)
            .await
            .expect("queued message delivered");
        assert_eq!(payload_u32(&p), n);
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_keeps_only_the_subscriptions_its_acl_allows_now() {
    let broker = start_broker(test_config()).await;
    let mut o = options(&broker, "narrowing", "svc");
    o.set_clean_session(false);
    let (mut svc, _) = TestClient::connect(o).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;
    svc.disconnect().await;

    let mut o = options(&broker, "narrowing", "svc-narrow");
    o.set_clean_session(false);
    let (mut narrow, ack) = TestClient::connect(o).await;
    assert!(ack.session_present);
    let (dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(
        &dev1,
        "devices/dev1/up/x",
        QoS::AtLeastOnce,
        1u32.to_be_bytes(),
    )
    .await;
    publish(
        &dev1,
        "devices/dev1/status",
        QoS::AtLeastOnce,
        2u32.to_be_bytes(),
    )
    .await;
    let p = narrow.next_publish(WAIT).await.expect("status delivered");
    assert_eq!(&p.topic[..], b"devices/dev1/status");
    assert!(
        narrow.next_publish(QUIET).await.is_none(),
        "the withdrawn subscription delivers nothing"
    );
    broker.shutdown().await;
}

/// Revocation closes the connections it concerns and no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_principals_lose_their_connections_and_only_they() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (mut dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let (mut dev2, _) = TestClient::connect(options(&broker, "dev2", "dev2")).await;
    let control = broker.control();

    let dev1_id = Principal::Device {
        id: "dev1".to_owned(),
    };
    assert_eq!(control.close_principal(&dev1_id), 1);
    assert!(dev1.closed(WAIT).await, "dev1 is closed");
    publish(
        &dev2,
        "devices/dev2/up/x",
        QoS::AtLeastOnce,
        1u32.to_be_bytes(),
    )
    .await;
    let p = svc
        .next_publish(WAIT)
        .await
        .expect("dev2 and the service carry on");
    assert_eq!(payload_u32(&p), 1);

    // Every device, never the service.
    assert_eq!(control.close_all_devices(), 1);
    assert!(dev2.closed(WAIT).await, "dev2 is closed");
    let (dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(
        &dev1,
        "devices/dev1/up/x",
        QoS::AtLeastOnce,
        2u32.to_be_bytes(),
    )
    .await;
    let p = svc
        .next_publish(WAIT)
        .await
        .expect("the service stays connected");
    assert_eq!(payload_u32(&p), 2);
    broker.shutdown().await;
}
