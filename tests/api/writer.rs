//! The batch writer on its own, against the real database: two batches in flight at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homeward::config::IngestSettings;
use homeward::db::build_pool;
use homeward::ingest::copy::EventRow;
use homeward::ingest::writer::{Acker, PIPELINE};
use homeward::ingest::{BrokerAck, EventItem, Item, Job, Source, Writer};
use homeward_proto::{AckRanges, Encoding, Event, EventBody, EventKind};
use homeward_testkit::cluster::TestServer;

/// Records the order of MQTT acks and what the end-to-end acks covered.
#[derive(Default)]
struct Recorder {
    acks: Mutex<Vec<u16>>,
    stored: Mutex<HashSet<(String, u64)>>,
}

impl Acker for Recorder {
    fn ack(&self, acks: &[BrokerAck]) {
        let mut recorded = self.acks.lock().unwrap();
        for ack in acks {
            if let BrokerAck::Local { pkid, .. } = ack {
                recorded.push(*pkid);
            }
        }
    }
    fn stored(&self, device_uid: &str, ranges: &AckRanges, _encoding: Encoding) {
        let mut stored = self.stored.lock().unwrap();
        for seq in ranges.iter().flatten() {
            stored.insert((device_uid.to_owned(), seq));
        }
    }
}

/// An event as its device sends it, again and again: its device time is part of it.
fn item(device_id: i32, seq: i64, priority: bool) -> Item {
    let now = chrono::Utc::now();
    let t = 1_790_000_000_000 + seq * 1000;
    let occurred_at = chrono::DateTime::from_timestamp_millis(t).unwrap();
    let event = Event::new(seq as u64, t, EventBody::PowerRestored).expect("a valid event");
    Item::Event(EventItem {
        row: EventRow {
            device_id,
            seq,
            occurred_at,
            received_at: now,
            kind: i16::from(EventKind::PowerRestored.code()),
            sensor: None,
            late: false,
            data: None,
        },
        organisation_id: 1,
        device_uid: format!("writer-{device_id}").into(),
        event: Box::new(event),
        encoding: Encoding::Json,
        priority,
    })
}

/// Every message carries ten events, the last five of which the next message sends again (a
/// device resending what it was not yet told is stored), in the opposite order. With small
/// batches and no linger, consecutive messages are written in different batches at the same
/// time, contending for the same keys: each key must be stored once, nothing may deadlock, and
/// the acks must come back in the order the messages were submitted. Every seventh message is
/// urgent (what an alarm's is), so a third batch is written beside the two while it waits.
#[tokio::test]
async fn batches_in_flight_together_store_each_event_once_and_complete_in_order() {
    const { assert!(PIPELINE >= 2, "the test is about batches written at once") };
    let server = TestServer::get().await.expect("test PostgreSQL");
    let db = server.fresh_database().await.expect("fresh database");
    let pool = build_pool(db, 4, 5);
    let settings = IngestSettings {
        batch_size: 20,
        linger_ms: 0,
        ..IngestSettings::default()
    };
    let (mut writer, handle) = Writer::new(pool.clone(), settings);
    let recorder = Arc::new(Recorder::default());
    writer.set_acker(recorder.clone());
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(writer.run(shutdown));

    let messages: u16 = 400;
    let devices = 3;
    for m in 0..messages {
        let device_id = 900_000 + i32::from(m % devices);
        let base = i64::from(m / devices) * 5;
        let urgent = m % 7 == 3;
        let mut items: Vec<Item> = (1..=10)
            .map(|k| item(device_id, base + k, urgent))
            .collect();
        if m % 2 == 1 {
            items.reverse();
        }
        let ack = BrokerAck::Local {
            epoch: 1,
            pkid: m + 1,
        };
        handle
            .submit(Job {
                items,
                source: Source::Mqtt { ack },
            })
            .await
            .expect("the writer takes jobs");
    }
    drop(handle);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the writer finishes")
        .expect("the writer does not panic");

    let acks = recorder.acks.lock().unwrap().clone();
    assert_eq!(
        acks,
        (1..=messages).collect::<Vec<_>>(),
        "every message acknowledged once, in order"
    );
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT (device_id, seq)) FROM events WHERE device_id >= 900000",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    // Device d's messages cover seqs 1 ..= 5 * (its messages) + 5.
    let expected: i64 = (0..devices)
        .map(|d| {
            let sent = i64::from((messages - d).div_ceil(devices));
            5 * sent + 5
        })
        .sum();
    assert_eq!(distinct, expected, "every event stored");
    assert_eq!(rows, distinct, "no event stored twice");
    let covered = recorder.stored.lock().unwrap().len() as i64;
    assert_eq!(covered, expected, "the end-to-end acks cover every event");
}
