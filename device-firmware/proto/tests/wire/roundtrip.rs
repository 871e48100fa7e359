//! Every valid value survives both encodings unchanged, and encoding is canonical.

use homeward_proto::*;
use proptest::prelude::*;

use crate::strategies;

fn round_trip(event: &Event) {
    for encoding in [Encoding::Json, Encoding::Cbor] {
        let mut buf = [0u8; MAX_EVENT_BYTES];
        let n = encode_event(event, encoding, &mut buf).unwrap();
        let bytes = &buf[..n];
        assert_eq!(Encoding::detect(bytes).unwrap(), encoding);
        let back = decode_event(bytes).unwrap_or_else(|e| panic!("{encoding:?}: {e}"));
        assert_eq!(&back, event, "{encoding:?}");
        // Canonical: the decoded value encodes to the very same bytes (the resend rule).
        let mut again = [0u8; MAX_EVENT_BYTES];
        let m = encode_event(&back, encoding, &mut again).unwrap();
        assert_eq!(&again[..m], bytes, "{encoding:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_event_round_trips(event in strategies::event()) {
        round_trip(&event);
    }

    #[test]
    fn every_downlink_round_trips(downlink in strategies::downlink()) {
        for encoding in [Encoding::Json, Encoding::Cbor] {
            let mut buf = [0u8; MAX_DOWNLINK_BYTES];
            let n = encode_downlink(&downlink, encoding, &mut buf).unwrap();
            prop_assert_eq!(decode_downlink(&buf[..n]).unwrap(), downlink.clone());
        }
    }

    #[test]
    fn fields_json_is_a_json_object(event in strategies::event()) {
        let mut buf = [0u8; MAX_EVENT_BYTES];
        let n = encode_fields_json(event.body(), &mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        prop_assert!(text.starts_with('{') && text.ends_with('}'), "{}", text);
        // The kind's fields plus an envelope make a decodable event.
        let envelope = format!(r#"{{"seq":1,"t":0,"kind":"{}""#, event.kind());
        let joined = if text == "{}" { format!("{envelope}}}") } else { format!("{envelope},{}", &text[1..]) };
        let back = decode_event(joined.as_bytes()).unwrap();
        prop_assert_eq!(back.body(), event.body());
    }
}

/// Each kind at least once, deterministically, in case the random choice above misses one.
#[test]
fn each_kind_round_trips() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    for kind in EventKind::ALL {
        for _ in 0..64 {
            let event = strategies::event_of(kind)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            assert_eq!(event.kind(), kind);
            round_trip(&event);
        }
    }
}

/// The decoder takes fields in any order and with whitespace; the encoder does not care.
#[test]
fn json_any_order_and_whitespace() {
    let json = b" \n{ \"signal\" : -67 ,\"battery\":87,\t\"kind\":\"heartbeat\",\"t\":1795000000000,\"seq\":42 }\r\n";
    assert_eq!(decode_event(json).unwrap(), crate::pins::heartbeat());
    // Escaped names and values are unescaped.
    let json =
        br#"{"se\u0071":42,"t":1795000000000,"kind":"heart\u0062eat","battery":87,"signal":-67}"#;
    assert_eq!(decode_event(json).unwrap(), crate::pins::heartbeat());
}

#[test]
fn cbor_any_order_and_width() {
    // Heartbeat with keys descending and non-shortest integers.
    let cbor =
        crate::unhex("a5 0e3842 0d1a00000057 0210 011b000001a1ee565e00 001b000000000000002a");
    assert_eq!(decode_event(&cbor).unwrap(), crate::pins::heartbeat());
}

#[test]
fn cbor_floats_of_any_width() {
    // check_in gps with lat/lon as f16/f32/ints and accuracy as f64.
    // {0:1, 1:0, 2:22, 16:1, 19: f16 1.5, 20: -2 (int), 21: f64 12.5}
    let cbor = crate::unhex("a7 0001 0100 0216 1001 13f93e00 1421 15fb4029000000000000");
    let event = decode_event(&cbor).unwrap();
    let EventBody::CheckIn(v) = event.body() else {
        panic!()
    };
    let fix = v.fix().unwrap();
    assert_eq!(
        (fix.lat(), fix.lon(), fix.accuracy_m()),
        (1.5, -2.0, Some(12.5))
    );
}

#[test]
fn time_check_needs_the_receivers_clock() {
    let event = crate::pins::heartbeat(); // t = 1795000000000
    assert!(event
        .validate_time(1_795_000_000_000 - 300_000, 300_000)
        .is_ok());
    let e = event
        .validate_time(1_795_000_000_000 - 300_001, 300_000)
        .unwrap_err();
    assert_eq!(e.reason_code(), "time_in_future");
    assert_eq!(e.field(), Some("t"));
    assert_eq!(
        e.to_string(),
        "field `t`: 1795000000000 is 300001 ms ahead of the receiver's clock (1794999699999), more than the 300000 ms allowed"
    );
    // No overflow at the extremes.
    assert!(event.validate_time(i64::MAX, i64::MAX).is_ok());
    assert!(event.validate_time(i64::MIN, i64::MIN).is_err());
}

#[cfg(feature = "std")]
#[test]
fn std_helpers() {
    let event = crate::pins::heartbeat();
    assert_eq!(
        encode_event_json_string(&event),
        r#"{"seq":42,"t":1795000000000,"kind":"heartbeat","battery":87,"signal":-67}"#
    );
    assert_eq!(
        decode_event(&encode_event_vec(&event, Encoding::Cbor)).unwrap(),
        event
    );
    assert_eq!(
        encode_fields_json_string(event.body()),
        r#"{"battery":87,"signal":-67}"#
    );
    let d = DeviceId::new("hub-1").unwrap();
    assert_eq!(topic::events(&d), "homeward/v1/hub-1/events");
    let err: Box<dyn std::error::Error> = Box::new(decode_event(b"{").unwrap_err());
    assert!(err.to_string().starts_with("invalid JSON at byte 1"));
}
