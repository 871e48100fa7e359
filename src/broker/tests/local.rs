//! The in-process client: the same session rules as a network connection (redelivery in order
//! after a crash, acks only for the current attachment, the inflight window and queue bounds),
//! and takeover either way.

use super::*;
use crate::broker::{LocalBroker, LocalClient, LocalError};

const UP: &str = "devices/+/up/#";

fn numbers(publishes: &[Publish]) -> Vec<u32> {
    publishes.iter().map(payload_u32).collect()
}

async fn publish_n(local: &LocalBroker, range: std::ops::Range<u32>) {
    for i in range {
        let payload = bytes::Bytes::copy_from_slice(&i.to_be_bytes());
        assert!(local.publish("devices/dev1/up/e", payload, QoS::AtLeastOnce));
    }
}

/// Pull until `n` messages have arrived (or fail after [`WAIT`]).
async fn pull(client: &mut LocalClient, n: usize) -> Vec<Publish> {
    let mut out = Vec::new();
    while out.len() < n {
        tokio::time::timeout(WAIT, client.next(n - out.len(), &mut out))
            .await
            .expect("messages within the wait")
            .expect("still attached");
    }
    out
}

fn pkids(publishes: &[Publish]) -> Vec<u16> {
    publishes.iter().map(|p| p.pkid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_are_redelivered_in_order_after_a_crash() {
    let broker = start_broker(test_config()).await;
    let local = broker.local();
    let mut client = local.connect("ingest").expect("attached");
    assert!(client.subscribe(&[UP.to_owned()]).is_empty());
    publish_n(&local, 0..20).await;
    let got = pull(&mut client, 20).await;
    assert_eq!(numbers(&got), (0..20).collect::<Vec<_>>());
    assert!(got.iter().all(|p| !p.dup));
    assert_eq!(local.ack("ingest", client.epoch(), &pkids(&got[..10])), 10);
    wait_stats(&broker, |s| {
        s.inflight_messages == 10 && s.connected_clients == 1
    })
    .await;

    // The consumer task dies (aborted mid-await), taking the client with it.
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = client.next(1, &mut out).await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    task.abort();
    let _ = task.await;
    wait_stats(&broker, |s| s.connected_clients == 0).await;
    publish_n(&local, 20..30).await;
    wait_stats(&broker, |s| {
        s.inflight_messages == 10 && s.queued_messages == 10
    })
    .await;

    // Re-attached: the ten unacknowledged first (DUP, same packet ids), then the queued ones.
    let mut client = local.connect("ingest").expect("attached again");
    let again = pull(&mut client, 20).await;
    assert_eq!(numbers(&again), (10..30).collect::<Vec<_>>());
    for p in &again {
        assert_eq!(
            p.dup,
            payload_u32(p) < 20,
            "DUP only on the resent {}",
            payload_u32(p)
        );
    }
    assert_eq!(pkids(&again[..10]), pkids(&got[10..]));
    assert_eq!(local.ack("ingest", client.epoch(), &pkids(&again)), 20);
    wait_stats(&broker, |s| {
        s.inflight_messages == 0 && s.queued_messages == 0
    })
    .await;
    drop(client);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_from_an_earlier_attachment_releases_nothing() {
    let broker = start_broker(test_config()).await;
    let local = broker.local();
    let mut first = local.connect("ingest").expect("attached");
    first.subscribe(&[UP.to_owned()]);
    publish_n(&local, 0..5).await;
    let got = pull(&mut first, 5).await;
    let old_epoch = first.epoch();
    drop(first);

    let mut second = local.connect("ingest").expect("attached again");
    assert_ne!(second.epoch(), old_epoch);
    // The same packet ids mean the resent messages now: the old epoch's ack must not count.
    assert_eq!(local.ack("ingest", old_epoch, &pkids(&got)), 0);
    let again = pull(&mut second, 5).await;
    assert_eq!(numbers(&again), (0..5).collect::<Vec<_>>());
    assert_eq!(broker.stats().inflight_messages, 5);
    assert_eq!(local.ack("ingest", second.epoch(), &pkids(&again)), 5);
    assert_eq!(broker.stats().inflight_messages, 0);
    // Nor after the session is gone from this client.
    assert_eq!(local.ack("nobody", second.epoch(), &[1]), 0);
    drop(second);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_and_the_queue_bounds_still_apply() {
    let broker = start_broker(BrokerConfig {
        max_inflight: 4,
        max_queued: 6,
        ..test_config()
    })
    .await;
    let local = broker.local();
    let mut client = local.connect("ingest").expect("attached");
    client.subscribe(&[UP.to_owned()]);
    publish_n(&local, 0..20).await;
    // Six queued, the other fourteen dropped (all QoS 1: the newest go).
    assert_eq!(broker.stats().queued_messages, 6);
    // Four of them fill the window.
    let got = pull(&mut client, 4).await;
    assert_eq!(numbers(&got), [0, 1, 2, 3]);
    let mut more = Vec::new();
    let waited = tokio::time::timeout(QUIET, client.next(10, &mut more)).await;
    assert!(
        waited.is_err(),
        "nothing past the window: {:?}",
        numbers(&more)
    );
    assert_eq!(broker.stats().queued_messages, 2);

    // Each ack makes room for as many more, in order.
    local.ack("ingest", client.epoch(), &pkids(&got[..2]));
    let next = pull(&mut client, 2).await;
    assert_eq!(numbers(&next), [4, 5]);
    assert_eq!(broker.stats().queued_messages, 0);
    drop(client);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_takeover_ends_the_local_client_and_it_can_take_the_session_back() {
    let broker = start_broker(test_config()).await;
    let local = broker.local();
    let mut client = local.connect("ingest").expect("attached");
    client.subscribe(&[UP.to_owned()]);
    publish_n(&local, 0..3).await;
    let got = pull(&mut client, 3).await;

    let mut o = options(&broker, "ingest", "svc");
    o.set_clean_session(false).set_ack_mode(AckMode::Manual);
    let (mut tcp, ack) = TestClient::connect(o).await;
    assert!(ack.session_present, "the same session, over TCP");
    let mut out = Vec::new();
    let ended = tokio::time::timeout(WAIT, client.next(10, &mut out)).await;
    assert!(matches!(ended, Ok(Err(LocalError::Closed))));
    assert_eq!(local.ack("ingest", client.epoch(), &pkids(&got)), 0);
    for i in 0u32..3 {
        let p = tcp.next_publish(WAIT).await.expect("resent over TCP");
        assert_eq!(payload_u32(&p), i);
        assert!(p.dup);
    }
    drop(client);

    // Taken back: the TCP connection is closed, the messages come again.
    let mut back = local.connect("ingest").expect("attached again");
    assert_eq!(numbers(&pull(&mut back, 3).await), [0, 1, 2]);
    assert!(tcp.next_publish(QUIET).await.is_none());
    drop(back);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_principals_session_is_refused() {
    let broker = start_broker(test_config()).await;
    let (_dev, _) = TestClient::connect(options(&broker, "dev1", "dev1")).await;
    assert!(matches!(
        broker.local().connect("dev1"),
        Err(LocalError::SessionOwned)
    ));
    broker.shutdown().await;
}
