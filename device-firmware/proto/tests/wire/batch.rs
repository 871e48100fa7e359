//! Batches: several events in one message (`docs/wire-format.md`, "Batches"). The framing is
//! pinned byte for byte, every element decodes as the single event it is, and the framing's
//! errors are refused as a whole.

use homeward_proto::*;
use proptest::prelude::*;

use crate::pins::heartbeat;
use crate::{hex, unhex};

fn second() -> Event {
    let body = EventBody::DoorOpened;
    Event::new(43, 1_795_000_060_000, body).unwrap()
}

fn elements(payload: &[u8]) -> Vec<Event> {
    let batch = Batch::parse(payload).unwrap();
    batch
        .events()
        .map(|bytes| match batch.encoding() {
            Encoding::Json => decode_event_json(bytes).unwrap(),
            Encoding::Cbor => decode_event_cbor(bytes).unwrap(),
        })
        .collect()
}

fn framing_error(payload: &[u8], code: &str, message: &str) {
    let e = Batch::parse(payload).unwrap_err();
    assert_eq!(e.reason_code(), code, "{e}");
    assert_eq!(e.to_string(), message);
}

#[test]
fn json_batch_pinned() {
    let events = [heartbeat(), second()];
    let parts: Vec<Vec<u8>> = events
        .iter()
        .map(|e| encode_event_vec(e, Encoding::Json))
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let batch = encode_batch_vec(&refs, Encoding::Json);
    let expected = r#"[{"seq":42,"t":1795000000000,"kind":"heartbeat","battery":87,"signal":-67},{"seq":43,"t":1795000060000,"kind":"door_opened"}]"#;
    let spec = include_str!("../../../../docs/wire-format.md");
    assert!(
        spec.contains(expected),
        "docs/wire-format.md lacks {expected}"
    );
    assert_eq!(String::from_utf8(batch.clone()).unwrap(), expected);
    assert_eq!(elements(&batch), events);
    let parsed = Batch::parse(&batch).unwrap();
    assert_eq!((parsed.len(), parsed.is_single()), (2, false));
}

#[test]
fn cbor_batch_pinned() {
    let events = [heartbeat(), second()];
    let parts: Vec<Vec<u8>> = events
        .iter()
        .map(|e| encode_event_vec(e, Encoding::Cbor))
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let batch = encode_batch_vec(&refs, Encoding::Cbor);
    // An array of 2 (0x82), then the two maps exactly as sent alone.
    assert_eq!(hex(&batch[..1]), "82");
    assert_eq!(
        &batch[1..],
        [parts[0].as_slice(), parts[1].as_slice()].concat()
    );
    assert_eq!(elements(&batch), events);
    let spec = include_str!("../../../../docs/wire-format.md");
    for line in [
        "a5 00182a 011b000001a1ee565e00 0210 0d1857 0e3842",
        "a3 00182b 011b000001a1ee574860 0207",
    ] {
        assert!(spec.contains(line), "docs/wire-format.md lacks {line}");
    }
    assert_eq!(
        hex(&batch),
        "82a500182a011b000001a1ee565e0002100d18570e3842a300182b011b000001a1ee5748600207"
    );
    // 24 or more elements take a one-byte length.
    let many: Vec<&[u8]> = std::iter::repeat_n(parts[0].as_slice(), 30).collect();
    let batch = encode_batch_vec(&many, Encoding::Cbor);
    assert_eq!(hex(&batch[..2]), "981e");
    assert_eq!(Batch::parse(&batch).unwrap().len(), 30);
}

#[test]
fn a_single_event_is_a_batch_of_one() {
    for encoding in [Encoding::Json, Encoding::Cbor] {
        let one = encode_event_vec(&heartbeat(), encoding);
        let batch = Batch::parse(&one).unwrap();
        assert!(batch.is_single());
        assert_eq!(batch.encoding(), encoding);
        assert_eq!(batch.events().collect::<Vec<_>>(), vec![one.as_slice()]);
    }
    // Pretty-printed JSON is still one event.
    let pretty = b"{\n  \"seq\": 1,\n  \"t\": 1795000000000,\n  \"kind\": \"door_opened\"\n}\n";
    assert_eq!(elements(pretty).len(), 1);
}

#[test]
fn json_framing_tolerates_whitespace_and_quoted_brackets() {
    let payload = br#" [ {"seq":1,"t":1795000000000,"kind":"pill_missed","memo":"a } ] \" {"} ,
        {"seq":2,"t":1795000000000,"kind":"door_opened"} ] "#;
    let batch = Batch::parse(payload).unwrap();
    let parts: Vec<&[u8]> = batch.events().collect();
    assert_eq!(parts.len(), 2);
    assert!(parts[0].starts_with(b"{\"seq\":1") && parts[0].ends_with(b"\"}"));
    assert_eq!(
        parts[1],
        br#"{"seq":2,"t":1795000000000,"kind":"door_opened"}"#
    );
}

#[test]
fn framing_errors() {
    framing_error(
        b"[]",
        "invalid_json",
        "invalid JSON at byte 1: expected at least one event in the batch",
    );
    framing_error(
        br#"[{"seq":1},2]"#,
        "invalid_json",
        "invalid JSON at byte 11: expected an event object",
    );
    framing_error(
        br#"[{"seq":1}"#,
        "invalid_json",
        "invalid JSON at byte 10: expected `,` or `]` after an event",
    );
    framing_error(
        br#"[{"seq":1]"#,
        "invalid_json",
        "invalid JSON at byte 9: expected `}` to close the event object",
    );
    framing_error(
        br#"[{"seq":1"#,
        "invalid_json",
        "invalid JSON at byte 9: expected the end of the event object",
    );
    framing_error(
        br#"[{"seq":1}] x"#,
        "invalid_json",
        "invalid JSON at byte 12: expected nothing after the batch",
    );
    let many = format!("[{}]", vec![r#"{"seq":1}"#; 65].join(","));
    framing_error(
        many.as_bytes(),
        "invalid_json",
        "invalid JSON at byte 641: expected at most 64 events in a batch",
    );
    framing_error(
        &unhex("80"),
        "invalid_cbor",
        "invalid CBOR at byte 0: an empty batch",
    );
    framing_error(
        &unhex("9f a0 ff"),
        "invalid_cbor",
        "invalid CBOR at byte 0: indefinite-length array",
    );
    framing_error(
        &unhex("82 a0 01"),
        "invalid_cbor",
        "invalid CBOR at byte 2: expected an event map",
    );
    framing_error(
        &unhex("82 a0"),
        "invalid_cbor",
        "invalid CBOR at byte 2: unexpected end of input",
    );
    framing_error(
        &unhex("81 a0 00"),
        "invalid_cbor",
        "invalid CBOR at byte 2: trailing bytes after the batch",
    );
    framing_error(
        &unhex("98 41"),
        "invalid_cbor",
        "invalid CBOR at byte 0: more than 64 events in a batch",
    );
    let huge = vec![b' '; MAX_BATCH_BYTES + 1];
    framing_error(
        &huge,
        "oversize",
        &format!(
            "payload is {} bytes, over the {MAX_BATCH_BYTES}-byte limit",
            MAX_BATCH_BYTES + 1
        ),
    );
}

#[test]
fn each_element_is_judged_on_its_own() {
    // The framing is fine; the second element is not a valid event, the first still is.
    let payload =
        br#"[{"seq":1,"t":1795000000000,"kind":"door_opened"},{"seq":2,"kind":"teleport"}]"#;
    let batch = Batch::parse(payload).unwrap();
    let results: Vec<_> = batch.events().map(decode_event_json).collect();
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().reason_code(),
        "unknown_kind"
    );
}

proptest! {
    /// Framing never panics, and every element it yields lies within the payload, in order.
    #[test]
    fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(batch) = Batch::parse(&payload) {
            let mut n = 0;
            for part in batch.events() {
                prop_assert!(!part.is_empty());
                let _ = decode_event(part);
                n += 1;
            }
            prop_assert_eq!(n, batch.len());
        }
    }

    /// Arrays of arbitrary brace-and-quote soup never panic either.
    #[test]
    fn json_soup_never_panics(body in "[\\[\\]{}\",: a\\\\]{0,200}") {
        let payload = format!("[{body}");
        if let Ok(batch) = Batch::parse(payload.as_bytes()) {
            prop_assert_eq!(batch.events().count(), batch.len());
        }
    }
}
