//! Host tests of the queue: numbering, reboot, priorities when full, acks, resend timing.

extern crate std;

use std::vec::Vec;

use homeward_proto::{decode_event, AckRanges, Encoding, EventBody, EventKind, Percent, SignalDbm};

use super::*;
use crate::hw::{OutOfRange, RamStorage};

const N: usize = 8;
type Mem = RamStorage<{ META_RECORDS + N }>;
type Q<'a> = Queue<&'a mut Mem, N>;

const T0: i64 = 1_795_000_000_000;

fn config() -> QueueConfig {
    QueueConfig {
        resend_after_ms: 30_000,
        window: 4,
        seq_lease: 16,
        encoding: Encoding::Cbor,
    }
}

fn open(mem: &mut Mem, config: QueueConfig) -> (Q<'_>, Restored) {
    Queue::open(mem, config).expect("opens")
}

fn heartbeat(battery: u8) -> EventBody {
    EventBody::Heartbeat {
        battery: Percent::new(battery).unwrap(),
        signal: SignalDbm::new(-70).unwrap(),
        interval_s: Some(900),
    }
}

fn fall() -> EventBody {
    EventBody::FallDetected {
        confidence: Percent::new(90).unwrap(),
    }
}

fn door() -> EventBody {
    EventBody::DoorOpened
}

/// Pumps at `now` and returns what went out, decoded to (seq, t, kind), plus the raw bytes.
fn pump_all<S: Storage>(q: &mut Queue<S, N>, now: u64) -> Vec<(u64, i64, EventKind, Vec<u8>)> {
    let mut out = Vec::new();
    q.pump(now, |bytes| {
        let e = decode_event(bytes).expect("a queued payload decodes");
        out.push((e.seq(), e.time_ms(), e.kind(), bytes.to_vec()));
        Ok(())
    })
    .expect("storage works");
    out
}

fn seqs(sent: &[(u64, i64, EventKind, Vec<u8>)]) -> Vec<u64> {
    sent.iter().map(|s| s.0).collect()
}

fn ranges(list: &[(u64, u64)]) -> AckRanges {
    let mut a = AckRanges::new();
    for &(x, y) in list {
        a.insert_range(x, y);
    }
    a
}

fn queued_seqs<S: Storage>(q: &Queue<S, N>) -> Vec<u64> {
    let mut v: Vec<u64> = q.iter().map(|e| e.seq).collect();
    v.sort_unstable();
    v
}

#[test]
fn numbers_from_one_monotonic() {
    let mut mem = Mem::new();
    let (mut q, restored) = open(&mut mem, config());
    assert_eq!(
        restored,
        Restored {
            events: 0,
            corrupt: 0,
            next_seq: 1
        }
    );
    for i in 0..5 {
        let p = q.push(T0 + i, heartbeat(90), None).unwrap();
        assert_eq!(p.seq, 1 + i as u64);
        assert_eq!(p.evicted, None);
    }
    assert_eq!(q.next_seq(), 6);
    assert_eq!(q.len(), 5);
}

#[test]
fn reboot_restores_queue_and_numbering() {
    let mut mem = Mem::new();
    {
        let (mut q, _) = open(&mut mem, config());
        for i in 0..3 {
            q.push(T0 + i, heartbeat(80), None).unwrap();
        }
        q.ack(&ranges(&[(2, 2)]));
    }
    // Reboot: the RAM state is gone, the storage is not.
    let (mut q, restored) = open(&mut mem, config());
    assert_eq!(restored.events, 2);
    assert_eq!(queued_seqs(&q), [1, 3]);
    // With a lease of 16 the first boot reserved 1..=16: numbering resumes above it.
    assert_eq!(restored.next_seq, 17);
    assert_eq!(q.push(T0 + 10, door(), None).unwrap().seq, 17);
    // Everything restored is sent again, oldest first.
    assert_eq!(seqs(&pump_all(&mut q, 0)), [1, 3, 17]);
}

#[test]
fn lease_of_one_skips_nothing_and_never_reuses_after_all_acked() {
    let cfg = QueueConfig {
        seq_lease: 1,
        ..config()
    };
    let mut mem = Mem::new();
    let mut used = Vec::new();
    for boot in 0..5 {
        let (mut q, restored) = open(&mut mem, cfg);
        assert_eq!(restored.next_seq, 1 + 3 * boot as u64, "resumes exactly");
        for i in 0..3 {
            used.push(q.push(T0 + i, heartbeat(70), None).unwrap().seq);
        }
        // Everything is acked, so the queue is empty at the reboot: only the persisted
        // ceiling remembers how far numbering went.
        q.ack(&ranges(&[(1, 1000)]));
        assert!(q.is_empty());
    }
    let expected: Vec<u64> = (1..=15).collect();
    assert_eq!(used, expected, "monotonic, never reused, no gaps");
}

#[test]
fn numbering_survives_many_reboots_with_lease() {
    let mut mem = Mem::new();
    let mut last = 0;
    for _ in 0..40 {
        let (mut q, _) = open(&mut mem, config());
        let seq = q.push(T0, heartbeat(70), None).unwrap().seq;
        assert!(seq > last, "{seq} after {last}");
        last = seq;
        q.ack(&ranges(&[(seq, seq)]));
    }
}

/// Storage that fails chosen writes, as a power cut during a write would.
struct Faulty<'a> {
    inner: &'a mut Mem,
    fail_writes_to: Option<usize>,
    tear_instead: bool,
}

impl Storage for Faulty<'_> {
    type Error = OutOfRange;
    fn records(&self) -> usize {
        self.inner.records()
    }
    fn read(&mut self, index: usize, out: &mut Record) -> Result<(), OutOfRange> {
        self.inner.read(index, out)
    }
    fn write(&mut self, index: usize, record: &Record) -> Result<(), OutOfRange> {
        if self.fail_writes_to == Some(index) {
            if self.tear_instead {
                // Half the record reaches the flash.
                let mut torn = [0xffu8; RECORD_LEN];
                torn[..RECORD_LEN / 2].copy_from_slice(&record[..RECORD_LEN / 2]);
                self.inner.write(index, &torn)?;
            }
            return Err(OutOfRange(index));
        }
        self.inner.write(index, record)
    }
}

#[test]
fn a_torn_write_loses_only_that_event_and_its_seq_is_not_reused() {
    let cfg = QueueConfig {
        seq_lease: 1,
        ..config()
    };
    let mut mem = Mem::new();
    {
        let (mut q, _) = open(&mut mem, cfg);
        q.push(T0, heartbeat(60), None).unwrap(); // seq 1 in slot 0
    }
    {
        let storage = Faulty {
            inner: &mut mem,
            fail_writes_to: Some(META_RECORDS + 1),
            tear_instead: true,
        };
        let (mut q, _) = Queue::<_, N>::open(storage, cfg).unwrap();
        // Seq 2 is reserved (ceiling persisted), then the slot write tears.
        assert!(matches!(
            q.push(T0 + 1, fall(), None),
            Err(PushError::Storage(_))
        ));
        assert_eq!(q.len(), 1, "not queued, so never sent");
    }
    let (mut q, restored) = open(&mut mem, cfg);
    assert_eq!(restored.events, 1);
    assert_eq!(restored.corrupt, 1, "the torn record is seen and ignored");
    assert_eq!(restored.next_seq, 3, "seq 2 may have been used: skipped");
    assert_eq!(q.push(T0 + 2, fall(), None).unwrap().seq, 3);
}

#[test]
fn a_damaged_record_is_not_sent() {
    let mut mem = Mem::new();
    {
        let (mut q, _) = open(&mut mem, config());
        q.push(T0, heartbeat(60), None).unwrap();
        q.push(T0 + 1, heartbeat(61), None).unwrap();
    }
    let mut rec = [0u8; RECORD_LEN];
    mem.read(META_RECORDS, &mut rec).unwrap();
    rec[HEADER] ^= 0x01; // one bit of the payload
    mem.write(META_RECORDS, &rec).unwrap();
    let (mut q, restored) = open(&mut mem, config());
    assert_eq!((restored.events, restored.corrupt), (1, 1));
    assert_eq!(seqs(&pump_all(&mut q, 0)), [2]);
}

#[test]
fn resend_after_reboot_is_byte_identical() {
    for encoding in [Encoding::Cbor, Encoding::Json] {
        let cfg = QueueConfig {
            encoding,
            ..config()
        };
        let mut mem = Mem::new();
        let first = {
            let (mut q, _) = open(&mut mem, cfg);
            q.push(T0 + 5, fall(), Some(2)).unwrap();
            q.push(T0 + 9, heartbeat(55), None).unwrap();
            pump_all(&mut q, 1_000)
        };
        let (mut q, _) = open(&mut mem, cfg);
        let again = pump_all(&mut q, 0);
        assert_eq!(first, again, "{encoding:?}: same seq, same t, same bytes");
        assert_eq!(first[0].1, T0 + 5);
        let mut buf = [0u8; MAX_PAYLOAD];
        let n = q.payload(1, &mut buf).unwrap();
        assert_eq!(&buf[..n], &first[0].3[..]);
    }
}

#[test]
fn full_queue_drops_the_oldest_heartbeat_first() {
    let mut mem = Mem::new();
    let (mut q, _) = open(&mut mem, config());
    // 1, 3, 5, 7 heartbeats; 2, 4, 6, 8 door events.
    for i in 0..N as i64 {
        let body = if i % 2 == 0 { heartbeat(50) } else { door() };
        q.push(T0 + i, body, None).unwrap();
    }
    let p = q.push(T0 + 100, door(), None).unwrap();
    assert_eq!(
        p,
        Pushed {
            seq: 9,
            evicted: Some((1, EventKind::Heartbeat))
        }
    );
    let p = q.push(T0 + 101, heartbeat(49), None).unwrap();
    assert_eq!(
        p.evicted,
        Some((3, EventKind::Heartbeat)),
        "a heartbeat replaces the oldest"
    );
    let p = q.push(T0 + 102, fall(), None).unwrap();
    assert_eq!(
        p.evicted,
        Some((5, EventKind::Heartbeat)),
        "heartbeats go before door events"
    );
    assert_eq!(queued_seqs(&q), [2, 4, 6, 7, 8, 9, 10, 11]);
    assert_eq!(q.stats().evicted, 3);
}

#[test]
fn alarm_displaces_non_alarm_when_no_heartbeat_is_left() {
    let mut mem = Mem::new();
    let (mut q, _) = open(&mut mem, config());
    for i in 0..N as i64 {
        q.push(T0 + i, door(), None).unwrap();
    }
    // A non-alarm event may not displace another non-heartbeat: refused, seq not used.
    assert_eq!(q.push(T0 + 50, door(), None), Err(PushError::Full));
    assert_eq!(q.push(T0 + 50, heartbeat(40), None), Err(PushError::Full));
    assert_eq!(q.next_seq(), 9);
    let p = q.push(T0 + 51, fall(), None).unwrap();
    assert_eq!(
        p,
        Pushed {
            seq: 9,
            evicted: Some((1, EventKind::DoorOpened))
        }
    );
    assert_eq!(q.stats().refused, 2);
}

#[test]
fn queued_alarms_are_never_dropped() {
    let mut mem = Mem::new();
    let (mut q, _) = open(&mut mem, config());
    for i in 0..N as i64 {
        q.push(T0 + i, fall(), None).unwrap();
    }
    for body in [heartbeat(30), door(), EventBody::PendantAlarm, fall()] {
        assert_eq!(q.push(T0 + 99, body, None), Err(PushError::Full));
    }
    let expected: Vec<u64> = (1..=N as u64).collect();
    assert_eq!(queued_seqs(&q), expected, "every alarm still queued");
    // And still there after a reboot.
    let (q, restored) = open(&mut mem, config());
    assert_eq!(restored.events, N);
    assert!(q.iter().all(|e| e.kind == EventKind::FallDetected));
    // Once one is acknowledged there is room again.
    let mut q = q;
    q.ack(&ranges(&[(1, 1)]));
    assert!(q.push(T0 + 200, door(), None).is_ok());
}

#[test]
fn ack_ranges_cover_fully_and_partially() {
    let mut mem = Mem::new();
    let (mut q, _) = open(&mut mem, config());
    for i in 0..N as i64 {
        let body = if i == 4 { fall() } else { heartbeat(80) };
        q.push(T0 + i, body, None).unwrap();
    }
    pump_all(&mut q, 0);
    // Covers 1..=3 and 5, plus seqs the device never had (100..=200): ignored.
    let acked = q.ack(&ranges(&[(1, 3), (5, 5), (100, 200)]));
    assert_eq!(
        acked,
        Acked {
            removed: 4,
            alarms: 1,
            storage_errors: 0
        }
    );
    assert_eq!(queued_seqs(&q), [4, 6, 7, 8]);
    // The same ack again changes nothing.
    assert_eq!(q.ack(&ranges(&[(1, 3), (5, 5)])).removed, 0);
    // An ack that covers a range only partly (7..=20 of the queued 4, 6, 7, 8).
    assert_eq!(q.ack(&ranges(&[(7, 20)])).removed, 2);
    assert_eq!(queued_seqs(&q), [4, 6]);
    // Erased in storage too: a reboot brings back only what is unacknowledged.
    let (q, restored) = open(&mut mem, config());
    assert_eq!(restored.events, 2);
    assert_eq!(queued_seqs(&q), [4, 6]);
}

#[test]
fn resends_after_the_timeout_and_at_a_new_session() {
    let mut mem = Mem::new();
    let (mut q, _) = open(&mut mem, config());
    q.push(T0, heartbeat(80), None).unwrap();
    assert_eq!(q.next_deadline(), Some(0), "due at once");
    let first = pump_all(&mut q, 1_000);
    assert_eq!(seqs(&first), [1]);
    assert_eq!(q.next_deadline(), Some(31_000));
    assert!(
        pump_all(&mut q, 30_999).is_empty(),
        "not before the timeout"
    );
    let again = pump_all(&mut q, 31_000);
    assert_eq!(again, first, "the same bytes");
    assert_eq!(q.next_deadline(), Some(61_000));
    // A new connection: resend now, without waiting for the timer.
    q.restart_session();
    assert_eq!(seqs(&pump_all(&mut q, 32_000)), [1]);
    assert_eq!(q.stats().sent, 1);
    assert_eq!(q.stats().resent, 2);
    q.ack(&ranges(&[(1, 1)]));
    assert_eq!(q.next_deadline(), None);
    assert!(pump_all(&mut q, 100_000).is_empty());
}

#[test]
fn window_limits_in_flight_but_alarms_go_first_and_always() {
    let mut mem = Mem::new();
    let (mut q, _) = open(&mut mem, config()); // window 4
    for i in 0..6 {
        q.push(T0 + i, heartbeat(80), None).unwrap();
    }
    assert_eq!(seqs(&pump_all(&mut q, 0)), [1, 2, 3, 4]);
    q.push(T0 + 10, fall(), None).unwrap(); // seq 7
    q.push(T0 + 11, EventBody::PendantAlarm, None).unwrap(); // seq 8
    assert_eq!(
        seqs(&pump_all(&mut q, 10)),
        [7, 8],
        "alarms do not wait for the window"
    );
    q.ack(&ranges(&[(1, 2)]));
    assert_eq!(
        seqs(&pump_all(&mut q, 20)),
        [5, 6],
        "acks open the window, in seq order"
    );
    // After a reboot with a backlog, alarms are sent ahead of older events.
    let (mut q, _) = open(&mut mem, config());
    assert_eq!(seqs(&pump_all(&mut q, 0)), [7, 8, 3, 4, 5, 6]);
}

#[test]
fn a_refused_send_leaves_the_event_due() {
    let mut mem = Mem::new();
    let (mut q, _) = open(&mut mem, config());
    q.push(T0, fall(), None).unwrap();
    q.push(T0 + 1, heartbeat(80), None).unwrap();
    let n = q.pump(0, |_| Err(LinkError::Offline)).unwrap();
    assert_eq!(n, 0);
    assert_eq!(q.in_flight(), 0);
    assert_eq!(q.next_deadline(), Some(0));
    let mut calls = 0;
    // Busy after the first: one goes, the other waits.
    let n = q
        .pump(5, |_| {
            calls += 1;
            if calls == 1 {
                Ok(())
            } else {
                Err(LinkError::Busy)
            }
        })
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(seqs(&pump_all(&mut q, 6)), [2]);
}

#[test]
fn too_small_storage_and_oversized_events_are_refused() {
    let mut small = RamStorage::<4>::new();
    assert!(matches!(
        Queue::<_, N>::open(&mut small, config()),
        Err(OpenError::TooSmall {
            needed: 10,
            have: 4
        })
    ));
    let mut mem = Mem::new();
    let (mut q, _) = open(
        &mut mem,
        QueueConfig {
            encoding: Encoding::Json,
            ..config()
        },
    );
    let memo = homeward_proto::Memo::new(&"x".repeat(400)).unwrap();
    let check = homeward_proto::VisitCheck::by_manual(homeward_proto::Id::new("r").unwrap())
        .with_memo(memo);
    assert_eq!(
        q.push(T0, EventBody::CheckIn(check), None),
        Err(PushError::TooLarge)
    );
    assert_eq!(q.push(-1, door(), None), Err(PushError::InvalidTime));
    assert_eq!(q.next_seq(), 1, "no seq used");
}

#[test]
fn crc_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}
