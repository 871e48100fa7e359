//! Size limits hold for the largest valid values, and decoders survive any input.

use homeward_proto::*;
use proptest::prelude::*;

use crate::strategies;

/// The largest event there is: a check-in with every field at its longest, the memo made of
/// control characters (6 bytes each in JSON), and floats with the longest shortest forms.
fn largest_event() -> Event {
    let id = Id::new(&"x".repeat(64)).unwrap();
    let memo = Memo::new(&"\u{1}".repeat(500)).unwrap();
    let fix = GeoFix::new(-1.2345678901234567e-300, -0.00012345678901234567)
        .unwrap()
        .with_accuracy_m(1.2345678e-38)
        .unwrap()
        .with_fix_age_s(u32::MAX);
    let check = VisitCheck::by_gps(fix)
        .with_visit(id.clone())
        .with_person(id.clone())
        .with_tag(id.clone())
        .with_caller_id(id.clone())
        .with_reason(id)
        .with_memo(memo);
    Event::new(MAX_SEQ, MAX_TIME_MS, EventBody::CheckOut(check))
        .unwrap()
        .with_sensor(u16::MAX)
}

#[test]
fn largest_event_fits() {
    let event = largest_event();
    let mut buf = [0u8; MAX_EVENT_BYTES];
    let n = encode_event_json(&event, &mut buf).unwrap();
    assert!(n < MAX_EVENT_BYTES, "{n}");
    assert_eq!(decode_event(&buf[..n]).unwrap(), event);
    let n = encode_event_cbor(&event, &mut buf).unwrap();
    assert!(n < MAX_EVENT_BYTES, "{n}");
    assert_eq!(decode_event(&buf[..n]).unwrap(), event);
}

#[test]
fn largest_downlink_fits() {
    let mut a = AckRanges::new();
    for i in 0..16 {
        a.insert_range(MAX_SEQ - 100 - 4 * i, MAX_SEQ - 99 - 4 * i);
    }
    assert_eq!(a.len(), 16);
    let d = Downlink::Ack(a);
    let mut buf = [0u8; MAX_DOWNLINK_BYTES];
    for encoding in [Encoding::Json, Encoding::Cbor] {
        let n = encode_downlink(&d, encoding, &mut buf).unwrap();
        assert!(n < 700, "{n}");
        assert_eq!(decode_downlink(&buf[..n]).unwrap(), d);
    }
}

#[test]
fn short_buffers_are_an_error_not_a_panic() {
    let event = crate::pins::check_in();
    let mut buf = [0u8; MAX_EVENT_BYTES];
    let full_json = encode_event_json(&event, &mut buf).unwrap();
    let full_cbor = encode_event_cbor(&event, &mut buf).unwrap();
    for len in 0..full_json {
        assert_eq!(
            encode_event_json(&event, &mut buf[..len]),
            Err(EncodeError::BufferTooSmall)
        );
    }
    for len in 0..full_cbor {
        assert_eq!(
            encode_event_cbor(&event, &mut buf[..len]),
            Err(EncodeError::BufferTooSmall)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_event(&bytes);
        let _ = decode_downlink(&bytes);
        let _ = decode_status(&bytes);
    }

    /// Random bytes rarely get past the first byte; starting from valid encodings and breaking
    /// them reaches the field decoders.
    #[test]
    fn mutated_encodings_never_panic(
        event in strategies::event(),
        cbor in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = [0u8; MAX_EVENT_BYTES];
        let encoding = if cbor { Encoding::Cbor } else { Encoding::Json };
        let n = encode_event(&event, encoding, &mut buf).unwrap();
        let mut bytes = buf[..n].to_vec();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(e) = decode_event(&bytes) {
            // Whatever decodes is valid and re-encodes.
            let mut again = [0u8; MAX_EVENT_BYTES];
            encode_event(&e, encoding, &mut again).unwrap();
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = decode_event(&bytes);
    }

    #[test]
    fn mutated_downlinks_never_panic(
        downlink in strategies::downlink(),
        cbor in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut buf = [0u8; MAX_DOWNLINK_BYTES];
        let encoding = if cbor { Encoding::Cbor } else { Encoding::Json };
        let n = encode_downlink(&downlink, encoding, &mut buf).unwrap();
        let mut bytes = buf[..n].to_vec();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = decode_downlink(&bytes);
    }
}
