//! Flow control: one device must not exhaust memory or crowd out the others.

use super::*;

/// A device flooding as fast as it can is paced at its rate (delayed, nothing lost), while
/// another device's messages go through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_delays_a_flooding_device_while_another_flows() {
    const FLOOD: u32 = 2100;
    let broker = start_broker(BrokerConfig {
        device_max_messages_per_sec: 500,
        device_max_bytes_per_sec: 0,
        device_burst: Duration::from_millis(200), // 100 messages
        ..test_config()
    })
    .await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (flooder, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let (other, _) = TestClient::connect(options(&broker, "dev2", "dev2")).await;

    let started = Instant::now();
    let flood = tokio::spawn(async move {
        for i in 0..FLOOD {
            publish(
                &flooder,
                "devices/dev1/up/e",
                QoS::AtLeastOnce,
                i.to_be_bytes(),
            )
            .await;
        }
        flooder
    });
    let steady = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0u32..10 {
            publish(
                &other,
                "devices/dev2/up/e",
                QoS::AtLeastOnce,
                i.to_be_bytes(),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        other
    });

    let (mut flooded, mut flood_done, mut other_done) = (0u32, None, None);
    let mut other_got = Vec::new();
    while flood_done.is_none() || other_done.is_none() {
        let p = svc
            .next_publish(WAIT)
            .await
            .expect("messages keep arriving");
        if p.topic.starts_with(b"devices/dev1/") {
            assert_eq!(
                payload_u32(&p),
                flooded,
                "the flood arrives in order, complete"
            );
            flooded += 1;
            if flooded == FLOOD {
                flood_done = Some(started.elapsed());
            }
        } else {
            other_got.push(payload_u32(&p));
            if other_got.len() == 10 {
                other_done = Some(started.elapsed());
            }
        }
    }
    let (flood_done, other_done) = (flood_done.unwrap(), other_done.unwrap());
    assert_eq!(other_got, (0u32..10).collect::<Vec<_>>());
    // 2000 messages beyond the burst at 500/s: about 4 s.
    assert!(
        flood_done >= Duration::from_secs(3),
        "flood not paced: {flood_done:?}"
    );
    // The other device's ten messages went out over 1.3 s and were not held up.
    assert!(
        other_done < Duration::from_millis(2500),
        "the other device waited: {other_done:?} (flood {flood_done:?})"
    );
    let _ = flood.await;
    let _ = steady.await;
    broker.shutdown().await;
}

/// The byte rate paces a device sending few, large messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_rate_paces_large_messages() {
    let broker = start_broker(BrokerConfig {
        device_max_messages_per_sec: 0,
        device_max_bytes_per_sec: 100 * 1024,
        device_burst: Duration::from_millis(100), // 10 KiB
        ..test_config()
    })
    .await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let started = Instant::now();
    for i in 0u32..20 {
        let mut p = i.to_be_bytes().to_vec();
        p.resize(10 * 1024, 0);
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, p).await;
    }
    for i in 0u32..20 {
        let p = svc.next_publish(WAIT).await.expect("delivered, late");
        assert_eq!(payload_u32(&p), i);
    }
    // 200 KiB beyond a 10 KiB burst at 100 KiB/s: about 1.9 s.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    broker.shutdown().await;
}

/// Homeward's own service principal is never rate limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_principal_is_not_rate_limited() {
    let broker = start_broker(BrokerConfig {
        device_max_messages_per_sec: 10,
        device_max_bytes_per_sec: 100,
        device_burst: Duration::from_secs(1),
        ..test_config()
    })
    .await;
    let (mut sub, _) = TestClient::connect(options(&broker, "ingest", "svc")).await;
    sub.subscribe("devices/+/down/#", QoS::AtLeastOnce).await;
    let (publisher, _) = TestClient::connect(options(&broker, "downlink", "svc")).await;
    let started = Instant::now();
    for i in 0u32..1000 {
        publish(
            &publisher,
            "devices/dev1/down/ack",
            QoS::AtLeastOnce,
            i.to_be_bytes(),
        )
        .await;
    }
    for i in 0u32..1000 {
        let p = sub.next_publish(WAIT).await.expect("delivered");
        assert_eq!(payload_u32(&p), i);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    broker.shutdown().await;
}

/// Session queues are bounded in bytes as well as in messages: old QoS 0 messages make room
/// first, then new messages are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_queue_is_bounded_in_bytes() {
    // Each message below counts 17 (topic) + 1024 (payload) + 8 = 1049 bytes: nine fit.
    let broker = start_broker(BrokerConfig {
        max_queued_bytes: 10_000,
        ..test_config()
    })
    .await;
    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(false);
    let (mut sub, _) = TestClient::connect(o.clone()).await;
    sub.subscribe("devices/+/up/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let payload = |n: u32| {
        let mut p = n.to_be_bytes().to_vec();
        p.resize(1024, 0);
        p
    };
    for n in 100u32..105 {
        publish(&dev, "devices/dev1/up/e", QoS::AtMostOnce, payload(n)).await;
    }
    for n in 0u32..12 {
        publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, payload(n)).await;
    }
    wait_stats(&broker, |s| {
        s.queued_messages == 9 && s.queued_bytes == 9 * 1049
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = broker.stats();
    assert_eq!((stats.queued_messages, stats.queued_bytes), (9, 9 * 1049));

    // The five QoS 0 messages made room for QoS 1 ones; then the newest were dropped.
    let (mut sub, _) = TestClient::connect(o).await;
    let mut got = Vec::new();
    while let Some(p) = sub.next_publish(QUIET).await {
        got.push(payload_u32(&p));
    }
    assert_eq!(got, (0u32..9).collect::<Vec<_>>());
    wait_stats(&broker, |s| s.queued_bytes == 0).await;
    broker.shutdown().await;
}

/// Past `max_connections` devices are refused with "server unavailable"; Homeward's own
/// clients are still let in; a freed place can be taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_devices_with_server_unavailable() {
    let broker = start_broker(BrokerConfig {
        max_connections: 2,
        ..test_config()
    })
    .await;
    let (_svc, _) = TestClient::connect(options(&broker, "ingest", "svc")).await;
    let (dev1, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let (_dev2, _) = TestClient::connect(options(&broker, "dev2", "dev2")).await;

    let mut dev3 = TestClient::start(options(&broker, "dev3", "dev3"));
    let err = dev3.connack().await.expect_err("refused");
    assert!(err.contains("ServiceUnavailable"), "{err}");
    let (_svc2, _) = TestClient::connect(options(&broker, "downlink", "svc")).await;
    wait_stats(&broker, |s| s.connected_clients == 4).await;

    dev1.kill().await;
    wait_stats(&broker, |s| s.connected_clients == 3).await;
    let (_dev3, ack) = TestClient::connect(options(&broker, "dev3", "dev3")).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    broker.shutdown().await;
}

/// Sockets that have not sent CONNECT count too: past the cap plus its headroom (64 here) a
/// new one is closed at once, long before the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_past_the_hard_cap_are_closed_at_once() {
    let broker = start_broker(BrokerConfig {
        max_connections: 0,
        connect_timeout: Duration::from_secs(5),
        ..test_config()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(Raw::open(&broker).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = Raw::open(&broker).await;
    assert!(extra.closed_within(Duration::from_secs(1)).await);
    // One of the 64 going away makes room again.
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Raw::open(&broker).await;
    assert!(!again.closed_within(Duration::from_millis(500)).await);
    broker.shutdown().await;
}

/// A device may hold at most `max_subscriptions_per_client` subscriptions, shared ones
/// included; renewing one it holds is not a new one. The service is not capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_cap_gives_suback_failure() {
    let broker = start_broker(BrokerConfig {
        max_subscriptions_per_client: 2,
        ..test_config()
    })
    .await;
    let (mut dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
    assert_eq!(
        dev.subscribe("devices/dev1/down/a", QoS::AtLeastOnce)
            .await
            .return_codes,
        [ok]
    );
    assert_eq!(
        dev.subscribe("$share/g/devices/dev1/down/b", QoS::AtLeastOnce)
            .await
            .return_codes,
        [ok]
    );
    assert_eq!(
        dev.subscribe("devices/dev1/down/c", QoS::AtLeastOnce)
            .await
            .return_codes,
        [SubscribeReasonCode::Failure]
    );
    assert_eq!(
        dev.subscribe("$share/h/devices/dev1/down/b", QoS::AtLeastOnce)
            .await
            .return_codes,
        [SubscribeReasonCode::Failure]
    );
    // Renewing a held subscription is allowed.
    assert_eq!(
        dev.subscribe("devices/dev1/down/a", QoS::AtMostOnce)
            .await
            .return_codes,
        [SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    // Giving one up frees its place.
    dev.client
        .unsubscribe("devices/dev1/down/a")
        .await
        .expect("queue unsubscribe");
    assert_eq!(
        dev.subscribe("devices/dev1/down/c", QoS::AtLeastOnce)
            .await
            .return_codes,
        [ok]
    );

    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    for f in ["a/1", "a/2", "a/3", "$share/g/a/4"] {
        assert_eq!(svc.subscribe(f, QoS::AtLeastOnce).await.return_codes, [ok]);
    }
    broker.shutdown().await;
}

/// `keep_alive = 0` does not mean "never idle out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_zero_still_gets_the_idle_timeout() {
    let broker = start_broker(BrokerConfig {
        idle_timeout: Duration::from_secs(1),
        ..test_config()
    })
    .await;
    let mut raw = Raw::open(&broker).await;
    let mut connect = Connect::new("quiet-hub");
    connect.set_credentials("dev1", "dev1-secret");
    connect.keep_alive = 0;
    raw.send(Packet::Connect(connect)).await;
    assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    // A packet resets the timer...
    tokio::time::sleep(Duration::from_millis(700)).await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
    // ...then silence: closed after the idle timeout.
    let started = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(4)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    broker.shutdown().await;
}

/// A connection that never completes CONNECT (here: half a CONNECT, then nothing) is closed
/// after `connect_timeout`, which defaults to 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_connect_is_closed_after_the_connect_timeout() {
    assert_eq!(
        BrokerConfig::default().connect_timeout,
        Duration::from_secs(10)
    );
    let broker = start_broker(BrokerConfig {
        connect_timeout: Duration::from_secs(1),
        ..test_config()
    })
    .await;
    let mut out = BytesMut::new();
    let mut connect = Connect::new("slowloris");
    connect.set_credentials("dev1", "dev1-secret");
    Packet::Connect(connect)
        .write(&mut out, usize::MAX)
        .expect("encode");
    let mut raw = Raw::open(&broker).await;
    let started = Instant::now();
    raw.send_bytes(&out[..out.len() / 2]).await;
    assert!(raw.closed_within(Duration::from_secs(4)).await);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    // Nothing was left behind.
    wait_stats(&broker, |s| s.connected_clients == 0 && s.sessions == 0).await;
    broker.shutdown().await;
}

/// Answers wait for company only while a client pipelines: once a client is seen waiting for
/// each PUBACK before it publishes again, it is answered at once (`ANSWER_LINGER`). Without
/// that, every one of its round trips would take the linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_waits_for_each_puback_is_answered_at_once() {
    use crate::broker::conn::ANSWER_LINGER;
    use rumqttc::mqttbytes::v4::Publish;

    let broker = start_broker(test_config()).await;
    let mut dev = Raw::connect(&broker, "dev1", "dev1").await;
    let publish = |pkid: u16| {
        let mut p = Publish::new("devices/dev1/up/e", QoS::AtLeastOnce, vec![1u8]);
        p.pkid = pkid;
        Packet::Publish(p)
    };
    let puback = async |dev: &mut Raw, pkid: u16| match dev.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.pkid, pkid),
        other => panic!("expected PUBACK {pkid}, got {other:?}"),
    };
    // Two publishes in one write: two answers in one batch, so the broker sees it pipelining.
    let mut out = BytesMut::new();
    for pkid in [1, 2] {
        publish(pkid).write(&mut out, usize::MAX).expect("encode");
    }
    dev.send_bytes(&out).await;
    puback(&mut dev, 1).await;
    puback(&mut dev, 2).await;
    // Then one at a time, each after the answer to the one before.
    let mut held = 0;
    for pkid in 3..103u16 {
        let sent = Instant::now();
        dev.send(publish(pkid)).await;
        puback(&mut dev, pkid).await;
        if sent.elapsed() >= ANSWER_LINGER - Duration::from_millis(1) {
            held += 1;
        }
    }
    assert!(held < 20, "{held} of 100 PUBACKs were held back");
    broker.shutdown().await;
}
