//! The worked examples of `docs/wire-format.md`, pinned byte for byte in both encodings. If one
//! of these changes, the wire format changed: that needs a new version, not a new expectation.

use homeward_proto::*;

use crate::{hex, unhex};

fn json_of(event: &Event) -> String {
    let mut buf = [0u8; MAX_EVENT_BYTES];
    let n = encode_event_json(event, &mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn cbor_of(event: &Event) -> String {
    let mut buf = [0u8; MAX_EVENT_BYTES];
    let n = encode_event_cbor(event, &mut buf).unwrap();
    hex(&buf[..n])
}

/// The specification: its examples must be these, so it cannot drift from the code.
const SPEC: &str = include_str!("../../../../docs/wire-format.md");

/// A hex example as the spec writes it (grouped by map entry), checked to be in the spec.
fn spec_hex(grouped: &str) -> String {
    assert!(
        SPEC.contains(grouped),
        "docs/wire-format.md lacks {grouped}"
    );
    grouped.replace(' ', "")
}

fn pin_event(event: Event, json: &str, cbor: &str) {
    assert!(SPEC.contains(json), "docs/wire-format.md lacks {json}");
    assert_eq!(json_of(&event), json);
    assert_eq!(cbor_of(&event), cbor);
    assert_eq!(decode_event(json.as_bytes()).unwrap(), event);
    assert_eq!(decode_event(&unhex(cbor)).unwrap(), event);
}

pub fn heartbeat() -> Event {
    let body = EventBody::Heartbeat {
        battery: Percent::new(87).unwrap(),
        signal: SignalDbm::new(-67).unwrap(),
        interval_s: None,
    };
    Event::new(42, 1_795_000_000_000, body).unwrap()
}

#[test]
fn heartbeat_pinned() {
    pin_event(
        heartbeat(),
        r#"{"seq":42,"t":1795000000000,"kind":"heartbeat","battery":87,"signal":-67}"#,
        "a5 00182a 011b000001a1ee565e00 0210 0d1857 0e3842"
            .replace(' ', "")
            .as_str(),
    );
}

#[test]
fn fall_detected_pinned() {
    let event = Event::new(
        43,
        1_795_000_060_000,
        EventBody::FallDetected {
            confidence: Percent::new(92).unwrap(),
        },
    )
    .unwrap()
    .with_sensor(2);
    pin_event(
        event,
        r#"{"seq":43,"t":1795000060000,"kind":"fall_detected","sensor":2,"confidence":92}"#,
        spec_hex("a5 00182b 011b000001a1ee574860 0202 0302 0a185c").as_str(),
    );
}

pub const MEMO: &str = "Door code \"1234\" \\ back\nKey in the safe; café ✓\t\u{1}";

pub fn check_in() -> Event {
    let fix = GeoFix::new(51.5007, -0.1246)
        .unwrap()
        .with_accuracy_m(12.5)
        .unwrap()
        .with_fix_age_s(3);
    let check = VisitCheck::by_gps(fix)
        .with_visit(Id::new("V-2026-11-01-0007").unwrap())
        .with_person(Id::new("P:1234").unwrap())
        .with_memo(Memo::new(MEMO).unwrap());
    Event::new(7, 1_795_003_200_000, EventBody::CheckIn(check)).unwrap()
}

#[test]
fn check_in_gps_with_memo_pinned() {
    pin_event(
        check_in(),
        concat!(
            r#"{"seq":7,"t":1795003200000,"kind":"check_in","method":"gps","#,
            r#""visit":"V-2026-11-01-0007","person":"P:1234","lat":51.5007,"lon":-0.1246,"#,
            r#""accuracy_m":12.5,"fix_age_s":3,"#,
            r#""memo":"Door code \"1234\" \\ back\nKey in the safe; café ✓\t\u0001"}"#
        ),
        concat!(
            "ab 0007 011b000001a1ee873200 0216 1001",
            " 1171562d323032362d31312d30312d30303037",
            " 1266503a31323334",
            " 13fb4049c016f0068db9 14fbbfbfe5c91d14e3bd",
            " 15fa41480000 1603",
            " 181a7834446f6f7220636f646520223132333422205c206261636b0a4b657920696e2074686520",
            "736166653b20636166c3a920e29c930901"
        )
        .replace(' ', "")
        .as_str(),
    );
}

#[test]
fn fields_json_pinned() {
    let mut buf = [0u8; MAX_EVENT_BYTES];
    let n = encode_fields_json(heartbeat().body(), &mut buf).unwrap();
    assert_eq!(&buf[..n], br#"{"battery":87,"signal":-67}"#);
    let n = encode_fields_json(&EventBody::PendantAlarm, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"{}");
}

fn pin_downlink(downlink: Downlink, json: &str, cbor: &str) {
    assert!(SPEC.contains(json), "docs/wire-format.md lacks {json}");
    let mut buf = [0u8; MAX_DOWNLINK_BYTES];
    let n = encode_downlink_json(&downlink, &mut buf).unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), json);
    let n = encode_downlink_cbor(&downlink, &mut buf).unwrap();
    assert_eq!(hex(&buf[..n]), cbor);
    assert_eq!(decode_downlink(json.as_bytes()).unwrap(), downlink);
    assert_eq!(decode_downlink(&unhex(cbor)).unwrap(), downlink);
}

#[test]
fn ack_with_two_ranges_pinned() {
    let mut stored = AckRanges::new();
    stored.insert_range(1, 40);
    stored.insert(42);
    pin_downlink(
        Downlink::Ack(stored),
        r#"{"type":"ack","stored":[[1,40],[42,42]]}"#,
        spec_hex("a2 0001 01 82 82011828 82182a182a").as_str(),
    );
}

#[test]
fn notice_pinned() {
    pin_downlink(
        Downlink::Notice(Notice {
            kind: NoticeKind::HelpOnTheWay,
            alarm: Some(123),
        }),
        r#"{"type":"notice","notice":"help_on_the_way","alarm":123}"#,
        spec_hex("a3 0002 0201 03187b").as_str(),
    );
}

#[test]
fn status_payloads_are_exact_ascii() {
    assert_eq!(encode_status(Status::Online), b"online");
    assert_eq!(encode_status(Status::Offline), b"offline");
    assert_eq!(decode_status(b"online").unwrap(), Status::Online);
    assert_eq!(decode_status(b"offline").unwrap(), Status::Offline);
    for bad in [&b"Online"[..], b"online\n", b"\"online\"", b"", b"\xff"] {
        let e = decode_status(bad).unwrap_err();
        assert_eq!(e.reason_code(), "invalid_value");
        assert_eq!(e.field(), Some("status"));
    }
}

#[test]
fn kind_table() {
    let names: Vec<_> = EventKind::ALL
        .iter()
        .map(|k| (k.code(), k.as_str()))
        .collect();
    assert_eq!(names.len(), 23);
    for (i, kind) in EventKind::ALL.iter().enumerate() {
        assert_eq!(usize::from(kind.code()), i + 1);
        assert_eq!(EventKind::from_code(kind.code()), Some(*kind));
        assert_eq!(EventKind::from_name(kind.as_str()), Some(*kind));
        assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), *kind);
    }
    assert_eq!(EventKind::from_code(0), None);
    assert_eq!(EventKind::from_code(24), None);
    let priority: Vec<_> = EventKind::ALL
        .iter()
        .filter(|k| k.is_priority())
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        priority,
        [
            "pendant_alarm",
            "fall_detected",
            "inactivity",
            "door_open_too_long",
            "smoke",
            "heat",
            "co",
            "flood"
        ]
    );
}

#[test]
fn scaip_table() {
    use ScaipMessageType::*;
    let expected: [(&str, Option<u16>, Option<u16>, ScaipMessageType); 23] = [
        ("pendant_alarm", Some(3), Some(10), Alarm),
        ("fall_detected", Some(5), Some(9), Alarm),
        ("fall_cancelled", Some(5), Some(93), Reset),
        ("alarm_reset", Some(4), Some(93), Reset),
        ("responder_present", Some(48), Some(88), Information),
        ("inactivity", Some(10), Some(9), Alarm),
        ("door_opened", Some(14), Some(76), Information),
        ("door_open_too_long", Some(14), Some(77), Alarm),
        ("smoke", Some(23), Some(9), Alarm),
        ("heat", Some(25), Some(9), Alarm),
        ("co", Some(26), Some(9), Alarm),
        ("flood", Some(33), Some(9), Alarm),
        ("bed_occupancy", Some(12), Some(117), Information),
        ("chair_occupancy", Some(44), Some(120), Information),
        ("pill_missed", None, Some(81), Alarm),
        ("heartbeat", Some(48), None, Heartbeat),
        ("battery_low", None, Some(16), Information),
        ("power_failure", Some(48), Some(85), Information),
        ("power_restored", Some(48), Some(86), Information),
        ("link_failure", Some(48), Some(23), Information),
        ("link_restored", Some(48), Some(112), Information),
        ("check_in", None, None, Information),
        ("check_out", None, None, Information),
    ];
    for (kind, (name, dty, stc, mt)) in EventKind::ALL.iter().zip(expected) {
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.scaip(), (dty, stc, mt), "{name}");
    }
    assert_eq!(Alarm.as_str(), "ME");
    assert_eq!(Reset.as_str(), "RE");
    assert_eq!(Information.as_str(), "IN");
    assert_eq!(Heartbeat.as_str(), "PI");
}

#[test]
fn topics() {
    assert_eq!(topic::EVENTS_FILTER, "homeward/v1/+/events");
    assert_eq!(topic::STATUS_FILTER, "homeward/v1/+/status");
    let d = DeviceId::new("pendant-7").unwrap();
    let mut s = String::new();
    topic::write_downlink(&mut s, &d).unwrap();
    assert_eq!(s, "homeward/v1/pendant-7/downlink");
    assert_eq!(
        topic::parse(&s),
        Some(("pendant-7", topic::TopicKind::Downlink))
    );
    assert!(topic::valid_device_id("A-z_09"));
    assert!(!topic::valid_device_id(""));
}
