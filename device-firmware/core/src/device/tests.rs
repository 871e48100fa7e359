//! Host tests of the device state machine on a scripted board.

extern crate std;

use std::collections::VecDeque;
use std::string::{String, ToString};
use std::vec::Vec;

use homeward_proto::{
    decode_event, encode_downlink_json, AckRanges, Downlink, Event, EventKind, Notice, NoticeKind,
};

use super::*;
use crate::hw::{Accelerometer, Battery, Button, Clock, Indicator, Link, LinkError, RamStorage};
use crate::store::META_RECORDS;

const N: usize = 16;
type Mem = RamStorage<{ META_RECORDS + N }>;
const UNIX0: i64 = 1_795_000_000_000;

#[derive(Default)]
struct TestBoard {
    now: u64,
    samples: VecDeque<[i16; 3]>,
    pressed: bool,
    battery: u8,
    session: Option<u32>,
    published: Vec<(String, Vec<u8>, bool)>,
    shown: Vec<Indication>,
}

impl Clock for TestBoard {
    fn monotonic_ms(&self) -> u64 {
        self.now
    }
    fn unix_ms(&self) -> i64 {
        UNIX0 + self.now as i64
    }
}
impl Accelerometer for TestBoard {
    fn read_sample(&mut self) -> Option<[i16; 3]> {
        self.samples.pop_front()
    }
}
impl Button for TestBoard {
    fn is_pressed(&mut self) -> bool {
        self.pressed
    }
}
impl Indicator for TestBoard {
    fn indicate(&mut self, what: Indication) {
        self.shown.push(what);
    }
}
impl Battery for TestBoard {
    fn battery_percent(&mut self) -> u8 {
        self.battery
    }
}
impl Link for TestBoard {
    fn session(&self) -> Option<u32> {
        self.session
    }
    fn signal_dbm(&mut self) -> Option<i16> {
        self.session.map(|_| -67)
    }
    fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<(), LinkError> {
        if self.session.is_none() {
            return Err(LinkError::Offline);
        }
        self.published
            .push((topic.to_string(), payload.to_vec(), retain));
        Ok(())
    }
}

type Dev<'a> = Device<TestBoard, &'a mut Mem, N>;

fn board() -> TestBoard {
    TestBoard {
        battery: 90,
        session: Some(1),
        ..TestBoard::default()
    }
}

fn boot(mem: &mut Mem, role: Role, board: TestBoard) -> Dev<'_> {
    let config = DeviceConfig::new(role);
    Device::boot(DeviceId::new("pendant-1").unwrap(), config, board, mem)
        .expect("boots")
        .0
}

/// Events published since the last call, decoded, without acknowledging them.
fn take_unacked(d: &mut Dev<'_>) -> Vec<Event> {
    let published = core::mem::take(&mut d.board_mut().published);
    published
        .into_iter()
        .filter(|(topic, _, _)| topic == "homeward/v1/pendant-1/events")
        .map(|(_, bytes, _)| decode_event(&bytes).expect("decodes"))
        .collect()
}

/// Events published since the last call, decoded, each then acknowledged as Homeward would.
fn take_events(d: &mut Dev<'_>) -> Vec<Event> {
    let events = take_unacked(d);
    for e in &events {
        ack(d, e.seq(), e.seq());
    }
    events
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(Event::kind).collect()
}

fn advance(d: &mut Dev<'_>, to: u64) {
    d.board_mut().now = to;
    d.poll();
}

fn ack(d: &mut Dev<'_>, first: u64, last: u64) {
    let mut ranges = AckRanges::new();
    ranges.insert_range(first, last);
    let mut buf = [0u8; 1024];
    let n = encode_downlink_json(&Downlink::Ack(ranges), &mut buf).unwrap();
    d.on_downlink(&buf[..n]).unwrap();
    d.poll();
}

/// 2 s standing (−Y up, 256 counts/g), 0.3 s of free fall, an impact of about 3.5 g,
/// then lying on the back (+Z up) and still for 5 s: 200 Hz like SisFall.
fn fall_samples() -> Vec<[i16; 3]> {
    let mut s = Vec::new();
    for i in 0..400 {
        s.push([(i % 7) as i16 - 3, -256 + (i % 5) as i16, 4]);
    }
    s.extend(core::iter::repeat_n([10, -40, 20], 60));
    s.extend(core::iter::repeat_n([400, -600, 500], 6));
    for i in 0..1000 {
        s.push([3, 5 + (i % 3) as i16, 256]);
    }
    s
}

#[test]
fn connect_publishes_online_retained_and_a_heartbeat() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Pendant, board());
    d.poll();
    let published = &d.board().published;
    assert_eq!(
        published[0],
        (
            "homeward/v1/pendant-1/status".into(),
            b"online".to_vec(),
            true
        )
    );
    let (topic, will) = d.last_will();
    assert_eq!(topic.to_string(), "homeward/v1/pendant-1/status");
    assert_eq!(will, b"offline");
    let events = take_events(&mut d);
    assert_eq!(kinds(&events), [EventKind::Heartbeat]);
    let hb = &events[0];
    assert_eq!((hb.seq(), hb.time_ms()), (1, UNIX0));
    assert_eq!(
        hb.body(),
        &EventBody::Heartbeat {
            battery: Percent::new(90).unwrap(),
            signal: SignalDbm::new(-67).unwrap(),
            interval_s: Some(900),
        }
    );
    // The next one a period later.
    assert_eq!(d.next_deadline(), Some(60_000), "battery check first");
    advance(&mut d, 15 * 60_000);
    assert_eq!(kinds(&take_events(&mut d)), [EventKind::Heartbeat]);
}

#[test]
fn long_press_raises_a_pendant_alarm_at_once() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Pendant, board());
    d.poll();
    take_events(&mut d);
    d.board_mut().pressed = true;
    advance(&mut d, 10_000);
    assert_eq!(d.next_deadline(), Some(12_000));
    advance(&mut d, 12_000);
    let events = take_events(&mut d);
    assert_eq!(kinds(&events), [EventKind::PendantAlarm]);
    assert_eq!(events[0].time_ms(), UNIX0 + 12_000);
    assert!(d.board().shown.contains(&Indication::AlarmQueued));
    // Homeward stores it: the ack erases it and the wearer is told.
    let seq = events[0].seq();
    ack(&mut d, seq, seq);
    assert!(d.queue().iter().all(|e| e.seq != seq));
    assert!(d.board().shown.contains(&Indication::AlarmStored));
}

#[test]
fn a_fall_not_cancelled_is_sent_after_the_window() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Pendant, board());
    d.poll();
    take_events(&mut d);
    // 7.33 s of samples arrive; the detector decides about 3 s after the impact.
    d.board_mut().samples.extend(fall_samples());
    advance(&mut d, 7_330);
    assert!(d.fall_pending(), "the cancel window is open");
    assert_eq!(d.stats().falls_detected, 1);
    assert!(
        take_events(&mut d).is_empty(),
        "nothing sent during the window"
    );
    // The window opened when the detecting sample was taken (3 s after the impact), not at
    // the poll that read it.
    let deadline = d.next_deadline().unwrap();
    assert!((35_300..=35_400).contains(&deadline), "{deadline}");
    advance(&mut d, deadline - 1);
    assert!(take_events(&mut d).is_empty());
    advance(&mut d, deadline);
    let events = take_events(&mut d);
    assert_eq!(kinds(&events), [EventKind::FallDetected]);
    let EventBody::FallDetected { confidence } = events[0].body() else {
        unreachable!()
    };
    assert!(confidence.get() >= 50, "a clear fall: {}", confidence.get());
    // Stamped with the impact (2.33 s into the samples), not with the end of the window.
    let t = events[0].time_ms() - UNIX0;
    assert!((2_300..=2_400).contains(&t), "impact at {t} ms");
}

#[test]
fn a_fall_cancelled_in_time_sends_fall_cancelled() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Pendant, board());
    d.poll();
    take_events(&mut d);
    d.board_mut().samples.extend(fall_samples());
    advance(&mut d, 7_330);
    d.board_mut().pressed = true;
    advance(&mut d, 20_000);
    d.board_mut().pressed = false;
    advance(&mut d, 20_300);
    let events = take_events(&mut d);
    assert_eq!(kinds(&events), [EventKind::FallCancelled]);
    assert!(matches!(
        events[0].body(),
        EventBody::FallCancelled {
            confidence: Some(_)
        }
    ));
    advance(&mut d, 60_000);
    assert!(
        take_events(&mut d).is_empty(),
        "no fall alarm after a cancel"
    );
    assert_eq!(d.stats().falls_cancelled, 1);
}

#[test]
fn a_hub_ignores_the_accelerometer() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Hub, board());
    d.board_mut().samples.extend(fall_samples());
    advance(&mut d, 7_330);
    assert_eq!(kinds(&take_events(&mut d)), [EventKind::Heartbeat]);
    advance(&mut d, 40_000);
    assert!(take_events(&mut d).is_empty());
    assert_eq!(d.stats().falls_detected, 0);
}

#[test]
fn battery_low_once_until_recharged() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Pendant, board());
    d.poll();
    take_events(&mut d);
    d.board_mut().battery = 19;
    advance(&mut d, 60_000);
    let events = take_events(&mut d);
    advance(&mut d, 120_000);
    assert!(take_events(&mut d).is_empty());
    assert_eq!(kinds(&events), [EventKind::BatteryLow]);
    assert_eq!(
        events[0].body(),
        &EventBody::BatteryLow {
            battery: Percent::new(19).unwrap()
        }
    );
    d.board_mut().battery = 100;
    advance(&mut d, 180_000);
    d.board_mut().battery = 15;
    advance(&mut d, 240_000);
    assert_eq!(kinds(&take_events(&mut d)), [EventKind::BatteryLow]);
}

#[test]
fn door_left_open_at_night_raises_door_open_too_long() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Hub, board());
    d.poll();
    take_events(&mut d);
    d.board_mut().now = 1_000;
    d.door_changed(3, true);
    d.door_changed(3, true); // repeated report
    d.poll();
    let opened = take_events(&mut d);
    assert_eq!(kinds(&opened), [EventKind::DoorOpened]);
    assert_eq!(opened[0].sensor(), Some(3));
    assert_eq!(d.next_deadline(), Some(60_000));
    advance(&mut d, 600_999);
    take_events(&mut d); // heartbeats
    advance(&mut d, 601_000);
    let events = take_events(&mut d);
    assert_eq!(kinds(&events), [EventKind::DoorOpenTooLong]);
    assert_eq!(events[0].sensor(), Some(3));
    assert_eq!(
        events[0].body(),
        &EventBody::DoorOpenTooLong { minutes: Some(10) }
    );
    advance(&mut d, 1_300_000);
    assert_eq!(
        kinds(&take_events(&mut d)),
        [EventKind::Heartbeat],
        "once per opening"
    );
    // Closed before the limit: no alarm.
    d.door_changed(3, false);
    d.door_changed(3, true);
    d.board_mut().now = 1_400_000;
    d.door_changed(3, false);
    advance(&mut d, 2_500_000);
    assert_eq!(
        kinds(&take_events(&mut d)),
        [EventKind::DoorOpened, EventKind::Heartbeat]
    );
}

#[test]
fn offline_backlog_is_flushed_in_order_on_reconnect_and_survives_a_reboot() {
    let mut mem = Mem::new();
    let mut b = board();
    b.session = None;
    let mut d = boot(&mut mem, Role::Pendant, b);
    // An hour offline: heartbeats every 15 minutes queue up.
    for minute in 0..=60 {
        advance(&mut d, minute * 60_000);
    }
    assert!(d.board().published.is_empty());
    assert_eq!(d.queue().len(), 5);
    // Power cycle while offline: the backlog is in storage.
    let (mut b, mem) = d.power_off();
    let mut d = Device::<_, _, N>::boot(
        DeviceId::new("pendant-1").unwrap(),
        DeviceConfig::new(Role::Pendant),
        {
            b.published.clear();
            b
        },
        mem,
    )
    .unwrap()
    .0;
    assert_eq!(d.queue().len(), 5);
    d.board_mut().session = Some(7);
    advance(&mut d, 3_700_000);
    let events = take_events(&mut d);
    // The five from before the reboot, then this boot's first heartbeat (seq 17: the
    // first boot had reserved 1..=16).
    let seqs: Vec<u64> = events.iter().map(Event::seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 17]);
    let times: Vec<i64> = events.iter().map(|e| e.time_ms() - UNIX0).collect();
    assert_eq!(
        times,
        [0, 900_000, 1_800_000, 2_700_000, 3_600_000, 3_700_000]
    );
    ack(&mut d, 1, 5);
    ack(&mut d, 17, 17);
    assert!(d.queue().is_empty());
}

#[test]
fn a_new_session_resends_what_is_unacknowledged() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Pendant, board());
    d.poll();
    let first = take_unacked(&mut d);
    advance(&mut d, 1_000);
    assert!(take_unacked(&mut d).is_empty());
    // Reconnected (the link may never have looked down to us).
    d.board_mut().session = Some(2);
    advance(&mut d, 2_000);
    let published = &d.board().published;
    assert_eq!(
        published[0].1, b"online",
        "online again for the new session"
    );
    assert_eq!(take_unacked(&mut d), first);
    // And after the resend timeout, once more.
    advance(&mut d, 32_000);
    assert_eq!(take_unacked(&mut d), first);
}

#[test]
fn notices_are_shown_and_bad_downlinks_counted() {
    let mut mem = Mem::new();
    let mut d = boot(&mut mem, Role::Pendant, board());
    let mut buf = [0u8; 256];
    let notice = Downlink::Notice(Notice {
        kind: NoticeKind::HelpOnTheWay,
        alarm: Some(4),
    });
    let n = encode_downlink_json(&notice, &mut buf).unwrap();
    assert_eq!(d.on_downlink(&buf[..n]).unwrap(), notice);
    assert_eq!(
        d.board().shown,
        [Indication::Notice(NoticeKind::HelpOnTheWay)]
    );
    assert!(d.on_downlink(b"{\"type\":\"nope\"}").is_err());
    assert_eq!(d.stats().bad_downlinks, 1);
}

#[test]
fn an_alarm_with_no_room_waits_for_the_next_ack() {
    let mut mem = Mem::new();
    let mut b = board();
    b.session = None;
    let mut d = boot(&mut mem, Role::Pendant, b);
    for i in 0..N as u64 {
        d.board_mut().now = i;
        d.raise(EventBody::Smoke, Some(1)).unwrap();
    }
    d.board_mut().pressed = true;
    advance(&mut d, 100);
    advance(&mut d, 2_100);
    assert_eq!(d.queue().len(), N);
    assert!(d.board().shown.contains(&Indication::QueueFault));
    assert!(d.stats().refused >= 1);
    d.board_mut().session = Some(1);
    advance(&mut d, 2_200);
    ack(&mut d, 1, 1);
    let kinds_queued: Vec<EventKind> = d.queue().iter().map(|q| q.kind).collect();
    assert!(
        kinds_queued.contains(&EventKind::PendantAlarm),
        "queued once there was room"
    );
}

#[test]
fn a_worn_device_runs_the_preset_of_its_product() {
    use crate::fall::Wearable;
    let pendant = DeviceConfig::worn(Wearable::ChestPendant);
    assert_eq!(pendant.role, Role::Pendant);
    assert_eq!(pendant.fall, FallConfig::CHEST_PENDANT);
    let clip = DeviceConfig::worn(Wearable::WaistClip);
    assert_eq!(clip.role, Role::Pendant);
    assert_eq!(clip.fall, FallConfig::SISFALL_WAIST);
    // Everything else is the pendant's default.
    assert_eq!(
        DeviceConfig {
            fall: FallConfig::SISFALL_WAIST,
            ..pendant
        },
        DeviceConfig::new(Role::Pendant)
    );
    let mut mem = Mem::new();
    let (device, _): (Dev<'_>, _) = Device::boot(
        DeviceId::new("pendant-1").unwrap(),
        pendant,
        board(),
        &mut mem,
    )
    .expect("boots with the pendant preset");
    assert_eq!(device.config().fall.sample_rate_hz, 20);
}
