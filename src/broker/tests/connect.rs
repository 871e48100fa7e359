//! Connecting: authentication, malformed CONNECTs and garbage, shutdown.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    let broker = start_broker(test_config()).await;

    let mut o = options(&broker, "dev1", "dev1");
    o.set_credentials("dev1", "not-the-password");
    let mut c = TestClient::start(o);
    let err = c.connack().await.expect_err("refused");
    assert!(err.contains("BadUserNamePassword"), "{err}");

    let mut o = options(&broker, "x", "db-down");
    o.set_credentials("db-down", "whatever");
    let mut c = TestClient::start(o);
    let err = c.connack().await.expect_err("refused");
    assert!(err.contains("ServiceUnavailable"), "{err}");

    // An authenticator that does not answer within connect_timeout: "server unavailable".
    let mut c = TestClient::start(options(&broker, "y", "slow"));
    let err = c.connack().await.expect_err("refused");
    assert!(err.contains("ServiceUnavailable"), "{err}");

    // A correct password still works.
    let (_c, ack) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_edge_cases() {
    let broker = start_broker(test_config()).await;

    // MQTT 5 (protocol level 5): "unacceptable protocol version".
    let mut raw = Raw::open(&broker).await;
    let mut out = BytesMut::new();
    Packet::Connect(Connect::new("v5"))
        .write(&mut out, usize::MAX)
        .expect("encode");
    out[8] = 5; // protocol level byte
    raw.send_bytes(&out).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.code, ConnectReturnCode::RefusedProtocolVersion)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(raw.closed_within(WAIT).await);

    // Empty client id without clean session: "identifier rejected".
    // Empty client id without clean session: "identifier rejected". Built by hand, as
    // rumqttc refuses to encode it.
    let mut raw = Raw::open(&broker).await;
    let mut bytes = [
        &[0x10u8, 0][..],
        &[0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0000, 0, 30, 0, 0],
        &[0, 3, b's', b'v', b'c', 0, 10],
        b"svc-secret",
    ]
    .concat();
    bytes[1] = u8::try_from(bytes.len() - 2).expect("short");
    raw.send_bytes(&bytes).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ConnectReturnCode::BadClientId),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // Empty client id with clean session: accepted, an id is assigned.
    let mut raw = Raw::open(&broker).await;
    let mut connect = Connect::new("");
    connect.set_credentials("svc", "svc-secret");
    raw.send(Packet::Connect(connect)).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // A device whose will topic is outside its ACL: "not authorized".
    let mut o = options(&broker, "dev1", "dev1");
    o.set_last_will(LastWill::new(
        "devices/dev2/status",
        "x",
        QoS::AtLeastOnce,
        false,
    ));
    let mut c = TestClient::start(o);
    let err = c.connack().await.expect_err("refused");
    assert!(err.contains("NotAuthorized"), "{err}");

    // No CONNECT at all: closed after connect_timeout.
    let mut raw = Raw::open(&broker).await;
    assert!(raw.closed_within(Duration::from_secs(5)).await);

    // A PINGREQ before CONNECT: closed at once.
    let mut raw = Raw::open(&broker).await;
    raw.send(Packet::PingReq).await;
    assert!(raw.closed_within(Duration::from_secs(1)).await);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_connection_is_closed_without_affecting_others() {
    let broker = start_broker(test_config()).await;
    let (mut svc, _) = TestClient::connect(options(&broker, "svc", "svc")).await;
    svc.subscribe("devices/#", QoS::AtLeastOnce).await;
    let (dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;

    // Garbage instead of CONNECT.
    let mut junk = Raw::open(&broker).await;
    junk.send_bytes(&[0xFF; 64]).await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // Garbage after a valid CONNECT: an invalid packet type.
    let mut junk = Raw::connect(&broker, "junk-1", "svc").await;
    junk.send_bytes(&[0xF0, 0x00]).await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // A PUBLISH with a wildcard in its topic.
    let mut junk = Raw::connect(&broker, "junk-2", "svc").await;
    junk.send_bytes(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'])
        .await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // A packet larger than max_packet_bytes.
    let mut junk = Raw::connect(&broker, "junk-3", "svc").await;
    let big = Publish::new("devices/x", QoS::AtMostOnce, vec![0u8; 70 * 1024]);
    junk.send(Packet::Publish(big)).await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // A second CONNECT.
    let mut junk = Raw::connect(&broker, "junk-4", "svc").await;
    junk.send(Packet::Connect(Connect::new("again"))).await;
    assert!(junk.closed_within(Duration::from_secs(1)).await);

    // Everyone else carries on.
    publish(&dev, "devices/dev1/up/e", QoS::AtLeastOnce, "still fine").await;
    let p = svc.next_publish(WAIT).await.expect("delivered");
    assert_eq!(&p.payload[..], b"still fine");
    wait_stats(&broker, |s| s.connected_clients == 2).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_clients_without_wills() {
    let broker = start_broker(test_config()).await;
    assert!(broker.is_running());
    let mut o = options(&broker, "dev1", "dev1");
    o.set_last_will(LastWill::new(
        "devices/dev1/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (mut dev, _) = TestClient::connect(o).await;
    let raw = Raw::connect(&broker, "raw", "svc").await;
    let addr = broker.local_addr();
    tokio::time::timeout(WAIT, broker.shutdown())
        .await
        .expect("shutdown completes");
    assert!(dev.closed(WAIT).await);
    drop(raw);
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}
