//! Delivery: routing, QoS, retained messages, shared subscriptions, ordering.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_publish_reaches_service_subscriber() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "ingest", "svc")).await;
    let ack = svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(&dev, "devices/dev1/up/events", QoS::AtLeastOnce, "fall").await;

    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(&p.topic[..], b"devices/dev1/up/events");
    assert_eq!(&p.payload[..], b"fall");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(!p.retain);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_status_reaches_later_subscriber() {
    let broker = start_broker(test_config()).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    dev.client
        .publish(
            "devices/dev1/status",
            "online",
            PublishOptions::new(QoS::AtLeastOnce).retained(),
        )
        .await
        .expect("queue publish");
    wait_stats(&broker, |s| s.retained_messages == 1).await;

    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/status", QoS::AtLeastOnce).await;
    let p = svc.next_publish(WAIT).await.expect("retained delivered");
    assert_eq!(&p.payload[..], b"online");
    assert!(
        p.retain,
        "retained flag set for a message sent because of a new subscription"
    );

    // A live publish on the same topic reaches the existing subscriber with retain = 0.
    dev.client
        .publish(
            "devices/dev1/status",
            "still online",
            PublishOptions::new(QoS::AtLeastOnce).retained(),
        )
        .await
        .expect("queue publish");
    let p = svc.next_publish(WAIT).await.expect("live delivered");
    assert_eq!(&p.payload[..], b"still online");
    assert!(!p.retain);

    // An empty retained payload deletes it.
    dev.client
        .publish(
            "devices/dev1/status",
            Vec::new(),
            PublishOptions::new(QoS::AtLeastOnce).retained(),
        )
        .await
        .expect("queue publish");
    wait_stats(&broker, |s| s.retained_messages == 0).await;
    let (mut late, _) = TestClient::connect(options(&broker, "svc2", "svc")).await;
    late.subscribe("devices/+/status", QoS::AtLeastOnce).await;
    assert!(late.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_hold_up_others() {
    let broker = start_broker(BrokerConfig {
        max_inflight: 100,
        max_queued: 500,
        ..test_config()
    })
    .await;
    // Subscribes, then never reads its socket again nor acknowledges anything.
    let mut stalled = Raw::connect(&broker, "stalled", "svc").await;
    let mut sub = Subscribe::new("devices/#", QoS::AtLeastOnce);
    sub.pkid = 1;
    stalled.send(Packet::Subscribe(sub)).await;
    assert!(matches!(stalled.recv().await, Some(Packet::SubAck(_))));

    let (mut healthy, _) = TestClient::connect(options(&broker, "healthy", "svc")).await;
    healthy.subscribe("devices/#", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let payload = vec![7u8; 1024];
    for round in 0u32..10 {
        for i in 0u32..200 {
            let mut p = (round * 200 + i).to_be_bytes().to_vec();
            p.extend_from_slice(&payload);
            publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, p).await;
        }
        for i in 0u32..200 {
            let p = healthy
                .next_publish(WAIT)
                .await
                .expect("healthy subscriber served");
            assert_eq!(payload_u32(&p), round * 200 + i);
        }
    }
    // The stalled session holds its window plus a bounded queue; the rest was dropped. (The
    // healthy subscriber's acknowledgements may still be on their way.)
    wait_stats(&broker, |s| {
        s.inflight_messages == 100 && s.queued_messages == 500
    })
    .await;
    drop(stalled);
    wait_stats(&broker, |s| {
        s.connected_clients == 2 && s.queued_messages == 0
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_splits_messages_exactly_once() {
    let broker = start_broker(test_config()).await;
    let (mut a, _) = TestClient::connect(options(&broker, "ingest-a", "svc")).await;
    let (mut b, _) = TestClient::connect(options(&broker, "ingest-b", "svc")).await;
    for c in [&mut a, &mut b] {
        let ack = c
            .subscribe("$share/ingest/devices/+/up/#", QoS::AtLeastOnce)
            .await;
        assert_eq!(
            ack.return_codes,
            [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        );
    }

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    const N: u32 = 200;
    for i in 0..N {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }

    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + WAIT;
    while from_a.len() + from_b.len() < N as usize && Instant::now() < deadline {
        tokio::select! {
            Some(p) = a.next_publish(WAIT) => from_a.push(payload_u32(&p)),
            Some(p) = b.next_publish(WAIT) => from_b.push(payload_u32(&p)),
            else => break,
        }
    }
    // Nothing more arrives later either.
    assert!(a.next_publish(QUIET).await.is_none());
    assert!(b.next_publish(Duration::from_millis(50)).await.is_none());

    let all: BTreeSet<u32> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(
        from_a.len() + from_b.len(),
        N as usize,
        "each message delivered once"
    );
    assert_eq!(all, (0..N).collect::<BTreeSet<_>>(), "no message lost");
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "a: {}, b: {}",
        from_a.len(),
        from_b.len()
    );
    // Each member sees its share in publish order.
    assert!(from_a.windows(2).all(|w| w[0] < w[1]));
    assert!(from_b.windows(2).all(|w| w[0] < w[1]));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_messages_of_a_departed_member_go_to_another() {
    let broker = start_broker(test_config()).await;
    let member = |b: &BrokerHandle, id: &str| {
        let mut o = options(b, id, "svc");
        o.set_ack_mode(AckMode::Manual);
        o
    };
    let (mut a, _) = TestClient::connect(member(&broker, "ingest-a")).await;
    a.subscribe("$share/ingest/devices/#", QoS::AtLeastOnce)
        .await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    for i in 0u32..5 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
    }
    for _ in 0..5 {
        a.next_publish(WAIT).await.expect("delivered to a");
    }
    // b joins; a crashes without acknowledging anything (clean session): its five go to b.
    let (mut b, _) = TestClient::connect(member(&broker, "ingest-b")).await;
    b.subscribe("$share/ingest/devices/#", QoS::AtLeastOnce)
        .await;
    a.kill().await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = b.next_publish(WAIT).await.expect("re-routed to b");
        got.push(payload_u32(&p));
        b.client.ack(&p).await.expect("queue ack");
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publish_is_delivered_exactly_once() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/#", QoS::ExactlyOnce).await;

    // Through rumqttc.
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    for i in 0u32..20 {
        publish(&dev, "devices/dev1/up/e", QoS::ExactlyOnce, i.to_be_bytes()).await;
    }
    for i in 0u32..20 {
        let p = svc.next_publish(WAIT).await.expect("delivered");
        assert_eq!(payload_u32(&p), i);
        assert_eq!(p.qos, QoS::AtLeastOnce, "granted QoS is at most 1");
    }

    // By hand, with a resend (DUP) before PUBREL: routed once.
    let mut raw = Raw::connect(&broker, "dev2", "dev2").await;
    let mut p = Publish::new("devices/dev2/up/e", QoS::ExactlyOnce, 1000u32.to_be_bytes());
    p.pkid = 7;
    raw.send(Packet::Publish(p.clone())).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    p.dup = true;
    raw.send(Packet::Publish(p)).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    raw.send(Packet::PubRel(PubRel::new(7))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubComp(c)) if c.pkid == 7));

    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(payload_u32(&p), 1000);
    assert!(
        svc.next_publish(QUIET).await.is_none(),
        "not delivered twice"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_qos1_messages_arrive_in_order() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;

    const N: u32 = 10_000;
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, i.to_be_bytes()).await;
        }
        dev
    });
    for i in 0..N {
        let p = svc
            .next_publish(WAIT)
            .await
            .unwrap_or_else(|| panic!("message {i} missing"));
        assert_eq!(payload_u32(&p), i, "out of order");
    }
    let _dev = publisher.await.expect("publisher task");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    svc.client
        .unsubscribe("devices/+/up/#")
        .await
        .expect("queue");
    loop {
        match svc.next_event(WAIT).await {
            Some(Ok(Event::Incoming(Packet::UnsubAck(_)))) => break,
            Some(Ok(_)) => {}
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, "x").await;
    assert!(svc.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_once_with_max_qos() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/#", QoS::AtMostOnce).await;
    svc.subscribe("devices/+/up/e", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, "once").await;
    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(svc.next_publish(QUIET).await.is_none(), "delivered once");

    // `$` topics are not matched by a leading wildcard.
    let (mut all, _) = TestClient::connect(options(&broker, "all", "svc")).await;
    all.subscribe("#", QoS::AtLeastOnce).await;
    publish(&svc, "$internal/x", QoS::AtLeastOnce, "hidden").await;
    assert!(
        svc.closed(WAIT).await,
        "publishing to a $ topic is outside even a # ACL"
    );
    assert!(all.next_publish(QUIET).await.is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_sanity() {
    const PUBLISHERS: u32 = 20;
    const PER_PUBLISHER: u32 = 2_500;
    let total = (PUBLISHERS * PER_PUBLISHER) as usize;

    let broker = start_broker(test_config()).await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_inflight(1000);
    let (mut sub, _) = TestClient::connect(o).await;
    sub.subscribe("$share/ingest/load/#", QoS::AtLeastOnce)
        .await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..PUBLISHERS {
        let mut o = options(&broker, &format!("load-{n}"), "svc");
        o.set_inflight(200);
        tasks.push(tokio::spawn(async move {
            let (c, _) = TestClient::connect(o).await;
            let topic = format!("load/{n}/up");
            for _ in 0..PER_PUBLISHER {
                publish(&c, &topic, QoS::AtLeastOnce, vec![0u8; 100]).await;
            }
            c
        }));
    }
    let mut received = 0;
    while received < total {
        sub.next_publish(WAIT).await.expect("message arrives");
        received += 1;
    }
    let elapsed = started.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "throughput: {total} QoS 1 messages from {PUBLISHERS} publishers in {elapsed:?} = {:.0} msg/s",
        total as f64 / elapsed.as_secs_f64()
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribe_filters_and_stats() {
    let broker = start_broker(test_config()).await;
    let mut raw = Raw::connect(&broker, "svc-raw", "svc").await;
    let mut sub = Subscribe::new("a/+/c", QoS::AtLeastOnce);
    sub.pkid = 1;
    sub.add("a/#/c".to_owned(), QoS::AtLeastOnce); // invalid
    sub.add("$share//x".to_owned(), QoS::AtLeastOnce); // invalid
    raw.send(Packet::Subscribe(sub)).await;
    match raw.recv().await {
        Some(Packet::SubAck(ack)) => assert_eq!(
            ack.return_codes,
            [
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure,
                SubscribeReasonCode::Failure
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    let stats = broker.stats();
    assert_eq!(stats.connected_clients, 1);
    assert_eq!(stats.sessions, 1);
    broker.shutdown().await;
}
