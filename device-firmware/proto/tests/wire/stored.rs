//! The stored fields: the object the server keeps beside an event's envelope columns decodes
//! back to the same body, for every kind, both as the encoder wrote it and as PostgreSQL's
//! `jsonb` gives it back; and a stored object that is wrong says which field is.

use homeward_proto::*;
use proptest::prelude::*;

use crate::strategies;

fn fields_text(body: &EventBody) -> String {
    let mut buf = [0u8; MAX_EVENT_BYTES];
    let n = encode_fields_json(body, &mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// `compact` (a flat object as the encoder writes it) as PostgreSQL prints it back from a
/// `jsonb` column: keys shorter first, then in byte order; a space after each `:` and `,`;
/// numbers written out without an exponent, and no negative zero. (Checked against
/// PostgreSQL 16: `'{"lat":5e-324,"lon":-0,"memo":"a\u0001"}'::jsonb::text` is
/// `{"lat": 0.000…005, "lon": 0, "memo": "a\u0001"}`.) Strings come back escaped as the
/// encoder escapes them, so they are kept as they are.
fn as_jsonb_prints(compact: &str) -> String {
    let inner = &compact[1..compact.len() - 1];
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let bytes = inner.as_bytes();
    let mut i = 0;
    // Splits on the commas outside strings.
    while i < bytes.len() {
        let start = i;
        let mut in_string = false;
        while i < bytes.len() && (in_string || bytes[i] != b',') {
            match bytes[i] {
                b'\\' if in_string => i += 1,
                b'"' => in_string = !in_string,
                _ => {}
            }
            i += 1;
        }
        let pair = &inner[start..i];
        i += 1;
        // Keys are field names: no escapes, no colons.
        let colon = pair.find(':').unwrap();
        let (key, value) = (&pair[..colon], &pair[colon + 1..]);
        let value = if value.starts_with('"') || value == "true" || value == "false" {
            value.to_string()
        } else {
            let number: f64 = value.parse().unwrap();
            if number == 0.0 {
                "0".to_string()
            } else if value.contains(['e', 'E']) {
                // Display never uses an exponent and gives the shortest digits that read back
                // as the same double: for the decimals the encoder writes, the same digits.
                format!("{number}")
            } else {
                value.to_string()
            }
        };
        pairs.push((key, value));
    }
    pairs.sort_by(|(a, _), (b, _)| (a.len(), a).cmp(&(b.len(), b)));
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", joined.join(", "))
}

#[track_caller]
fn round_trip(body: &EventBody) {
    let kind = body.kind();
    let text = fields_text(body);
    let back = decode_fields_json(kind, text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(&back, body, "{text}");
    // Canonical: what comes back encodes to the very same text.
    assert_eq!(fields_text(&back), text);
    let printed = as_jsonb_prints(&text);
    let back =
        decode_fields_json(kind, printed.as_bytes()).unwrap_or_else(|e| panic!("{printed}: {e}"));
    assert_eq!(&back, body, "{printed}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_body_round_trips_through_its_stored_fields(event in strategies::event()) {
        round_trip(event.body());
    }
}

/// Each kind at least once, deterministically, in case the random choice above misses one.
#[test]
fn each_kind_round_trips_through_its_stored_fields() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    for kind in EventKind::ALL {
        for _ in 0..64 {
            let body = strategies::body_of(kind)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            assert_eq!(body.kind(), kind);
            round_trip(&body);
        }
    }
}

/// The very text a `jsonb` column gives back for the extremes of the float fields.
#[test]
fn reads_what_postgres_prints() {
    let fix = GeoFix::new(5e-324, -0.0)
        .unwrap()
        .with_accuracy_m(1e-45)
        .unwrap()
        .with_fix_age_s(3);
    let body =
        EventBody::CheckIn(VisitCheck::by_gps(fix).with_memo(Memo::new("a\u{1}\n\\\"é").unwrap()));
    assert_eq!(
        fields_text(&body),
        r#"{"method":"gps","lat":5e-324,"lon":-0,"accuracy_m":1e-45,"fix_age_s":3,"memo":"a\u0001\n\\\"é"}"#
    );
    let printed = format!(
        r#"{{"lat": 0.{}5, "lon": 0, "memo": "a\u0001\n\\\"é", "method": "gps", "fix_age_s": 3, "accuracy_m": 0.{}1}}"#,
        "0".repeat(323),
        "0".repeat(44),
    );
    assert_eq!(as_jsonb_prints(&fields_text(&body)), printed);
    assert_eq!(
        decode_fields_json(EventKind::CheckIn, printed.as_bytes()).unwrap(),
        body
    );
    let heartbeat = EventBody::Heartbeat {
        battery: Percent::new(87).unwrap(),
        signal: SignalDbm::new(-67).unwrap(),
        interval_s: None,
    };
    assert_eq!(
        decode_fields_json(EventKind::Heartbeat, br#"{"signal": -67, "battery": 87}"#).unwrap(),
        heartbeat
    );
}

#[test]
fn a_kind_without_fields_takes_an_empty_object() {
    assert_eq!(fields_text(&EventBody::Smoke), "{}");
    assert_eq!(
        decode_fields_json(EventKind::Smoke, b"{}").unwrap(),
        EventBody::Smoke
    );
    assert_eq!(
        decode_fields_json(EventKind::PowerFailure, b" { } ").unwrap(),
        EventBody::PowerFailure
    );
}

#[track_caller]
fn rejects(kind: EventKind, stored: &str, code: &str, field: Option<&str>, message: &str) {
    let e = decode_fields_json(kind, stored.as_bytes()).expect_err("must be refused");
    assert_eq!(e.to_string(), message, "{stored}");
    assert_eq!(e.reason_code(), code, "{e}");
    assert_eq!(e.field(), field, "{e}");
}

#[test]
fn a_wrong_stored_object_names_its_field() {
    use EventKind as K;
    rejects(
        K::Heartbeat,
        r#"{"battery": 87}"#,
        "missing_field",
        Some("signal"),
        "missing field `signal` for kind `heartbeat`",
    );
    rejects(
        K::Heartbeat,
        r#"{"battery": 101, "signal": -67}"#,
        "out_of_range",
        Some("battery"),
        "field `battery`: 101 is outside 0..=100",
    );
    rejects(
        K::Heartbeat,
        r#"{"battery": "87", "signal": -67}"#,
        "invalid_type",
        Some("battery"),
        "field `battery`: expected an integer",
    );
    rejects(
        K::Heartbeat,
        r#"{"battery": 87, "signal": -67, "battery": 88}"#,
        "duplicate_field",
        Some("battery"),
        "duplicate field `battery`",
    );
    // The envelope is stored in its own columns, never among the kind's fields.
    rejects(
        K::Heartbeat,
        r#"{"seq": 1, "battery": 87, "signal": -67}"#,
        "unknown_field",
        Some("seq"),
        "field `seq` does not belong to kind `heartbeat`",
    );
    rejects(
        K::Smoke,
        r#"{"confidence": 80}"#,
        "unknown_field",
        Some("confidence"),
        "field `confidence` does not belong to kind `smoke`",
    );
    rejects(
        K::CheckIn,
        "{}",
        "missing_field",
        Some("method"),
        "missing field `method` for kind `check_in`",
    );
    rejects(
        K::CheckOut,
        r#"{"method": "gps"}"#,
        "missing_field",
        Some("lat"),
        "missing field `lat` for method `gps`",
    );
    rejects(
        K::CheckIn,
        r#"{"method": "tag", "lat": 51.5}"#,
        "missing_field",
        Some("lon"),
        "missing field `lon`, which `lat` needs",
    );
    rejects(
        K::CheckIn,
        r#"{"method": "walk"}"#,
        "invalid_value",
        Some("method"),
        "field `method`: unknown value `walk`, expected one of gps, tag, phone, manual (CBOR 1 to 4)",
    );
    rejects(
        K::Smoke,
        r#"{"smoke": true}"#,
        "unknown_field",
        Some("smoke"),
        "unknown field `smoke`",
    );
    rejects(
        K::Smoke,
        "{} {}",
        "invalid_json",
        None,
        "invalid JSON at byte 3: expected the end of the payload",
    );
}
