//! The embedded broker's authentication and topic ACL, through a real MQTT client.

use std::time::Duration;

use homeward::auth::{OrgKind, Role};
use homeward_testkit::mqtt::{connect, options};
use homeward_testkit::{spawn_app, TestApp};
use rumqttc::{ConnectionError, Event, EventLoop, Packet, PublishOptions, QoS};

/// Drives an event loop in the background, forwarding received publishes.
fn drive(
    mut eventloop: EventLoop,
) -> tokio::sync::mpsc::UnboundedReceiver<Result<rumqttc::Publish, String>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    rx
}

/// Polls until the broker acknowledges a subscription, which must succeed.
async fn until_suback(eventloop: &mut EventLoop) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("SUBACK in time")
            .expect("connection stays up");
        if let Event::Incoming(Packet::SubAck(ack)) = event {
            assert!(
                ack.return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
                "{ack:?}"
            );
            return;
        }
    }
}

async fn app_with_devices() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let (org, _) = app
        .org_with_user("Broker Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let a = app.device(&org, "hub-a", "hub").await;
    let b = app.device(&org, "hub-b", "hub").await;
    (app, a, b)
}

#[tokio::test]
async fn a_device_with_a_wrong_secret_cannot_connect() {
    let (app, secret_a, secret_b) = app_with_devices().await;
    // Wrong secret, another device's secret, unknown device, client id not its own.
    for (client_id, user, password) in [
        ("hub-a", "hub-a", "0".repeat(64)),
        ("hub-a", "hub-a", secret_b.clone()),
        ("ghost", "ghost", secret_a.clone()),
        ("hub-b", "hub-a", secret_a.clone()),
    ] {
        let result = connect(options(&app, client_id, user, &password)).await;
        assert!(
            matches!(result, Err(ConnectionError::ConnectionRefused(_))),
            "{client_id}/{user} must be refused, got {:?}",
            result.map(|_| ())
        );
    }
    assert!(connect(options(&app, "hub-a", "hub-a", &secret_a))
        .await
        .is_ok());
    app.stop().await;
}

#[tokio::test]
async fn a_device_cannot_publish_on_another_devices_topic() {
    let (app, secret_a, _) = app_with_devices().await;
    let (service, service_loop) = connect(options(
        &app,
        "test-service",
        homeward::devices::SERVICE_USER,
        &app.service_password(),
    ))
    .await
    .unwrap();
    service
        .subscribe("homeward/v1/+/events", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Listening before the forgery: the SUBACK has come back.
    let mut service_loop = service_loop;
    until_suback(&mut service_loop).await;
    let mut received = drive(service_loop);

    // hub-a pretends to be hub-b: the broker drops the connection and delivers nothing.
    let (device, device_loop) = connect(options(&app, "hub-a", "hub-a", &secret_a))
        .await
        .unwrap();
    let mut device_events = drive(device_loop);
    device
        .publish(
            "homeward/v1/hub-b/events",
            b"{\"forged\":true}".to_vec(),
            PublishOptions::new(QoS::AtLeastOnce),
        )
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), device_events.recv())
        .await
        .expect("disconnected");
    assert!(
        matches!(outcome, Some(Err(_))),
        "the forging device is disconnected: {outcome:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), received.recv())
            .await
            .is_err(),
        "the forged message must not be delivered"
    );

    // On its own topic it is delivered.
    let (device, device_loop) = connect(options(&app, "hub-a", "hub-a", &secret_a))
        .await
        .unwrap();
    let _device_events = drive(device_loop);
    device
        .publish(
            "homeward/v1/hub-a/events",
            b"{}".to_vec(),
            PublishOptions::new(QoS::AtLeastOnce),
        )
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("delivered")
        .unwrap()
        .unwrap();
    assert_eq!(&msg.topic[..], b"homeward/v1/hub-a/events");
    app.stop().await;
}

#[tokio::test]
async fn a_device_cannot_subscribe_to_another_devices_downlink() {
    let (app, secret_a, _) = app_with_devices().await;
    let (device, mut eventloop) = connect(options(&app, "hub-a", "hub-a", &secret_a))
        .await
        .unwrap();
    device
        .subscribe("homeward/v1/hub-b/downlink", QoS::AtLeastOnce)
        .await
        .unwrap();
    device
        .subscribe("homeward/v1/hub-a/downlink", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        if let Event::Incoming(Packet::SubAck(ack)) =
            tokio::time::timeout(Duration::from_secs(5), eventloop.poll())
                .await
                .expect("suback")
                .unwrap()
        {
            codes.push(ack.return_codes[0]);
        }
    }
    assert_eq!(codes[0], rumqttc::SubscribeReasonCode::Failure);
    assert_eq!(
        codes[1],
        rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    app.stop().await;
}
