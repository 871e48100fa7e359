//! Each way a payload can be wrong gives its reason code and a message naming the field: what
//! a person reading the dead-letter table sees.

use homeward_proto::*;

use crate::unhex;

#[track_caller]
fn rejects(payload: &[u8], code: &str, message: &str) {
    let e = decode_event(payload).expect_err("must be refused");
    assert_eq!(
        e.to_string(),
        message,
        "{}",
        String::from_utf8_lossy(payload)
    );
    assert_eq!(e.reason_code(), code, "{e}");
    assert!(REASON_CODES.contains(&e.reason_code()));
}

#[track_caller]
fn rejects_downlink(payload: &[u8], code: &str, message: &str) {
    let e = decode_downlink(payload).expect_err("must be refused");
    assert_eq!(
        e.to_string(),
        message,
        "{}",
        String::from_utf8_lossy(payload)
    );
    assert_eq!(e.reason_code(), code, "{e}");
}

const HB: &str = r#""seq":42,"t":1795000000000,"kind":"heartbeat","battery":87,"signal":-67"#;

#[test]
fn out_of_range() {
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"gps","lat":123.5,"lon":0}"#,
        "out_of_range",
        "field `lat`: 123.5 is outside -90..=90",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"gps","lat":0,"lon":-180.25}"#,
        "out_of_range",
        "field `lon`: -180.25 is outside -180..=180",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"gps","lat":0,"lon":0,"accuracy_m":1e6}"#,
        "out_of_range",
        "field `accuracy_m`: 1000000 is outside 0..=10000",
    );
    rejects(
        br#"{"seq":0,"t":0,"kind":"smoke"}"#,
        "out_of_range",
        "field `seq`: 0 is outside 1..=9223372036854775807",
    );
    rejects(
        br#"{"seq":9223372036854775808,"t":0,"kind":"smoke"}"#,
        "out_of_range",
        "field `seq`: 9223372036854775808 is outside 1..=9223372036854775807",
    );
    rejects(
        br#"{"seq":1,"t":-1,"kind":"smoke"}"#,
        "out_of_range",
        "field `t`: -1 is outside 0..=253402300799999",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"heartbeat","battery":101,"signal":-67}"#,
        "out_of_range",
        "field `battery`: 101 is outside 0..=100",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"heartbeat","battery":1,"signal":-151}"#,
        "out_of_range",
        "field `signal`: -151 is outside -150..=0",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"fall_detected","confidence":255}"#,
        "out_of_range",
        "field `confidence`: 255 is outside 0..=100",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"smoke","sensor":65536}"#,
        "out_of_range",
        "field `sensor`: 65536 is outside 0..=65535",
    );
    rejects(
        br#"{"seq":123456789012345678901234567890123456789012,"t":0,"kind":"smoke"}"#,
        "out_of_range",
        "field `seq`: a 42-digit integer is outside 1..=9223372036854775807",
    );
    // CBOR: {0:1, 1:0, 2:22, 16:1, 19: 123.5 (f32), 20: 0}
    rejects(
        &unhex("a6 0001 0100 0216 1001 13fa42f70000 1400"),
        "out_of_range",
        "field `lat`: 123.5 is outside -90..=90",
    );
    // CBOR NaN latitude (f16 0x7e00).
    rejects(
        &unhex("a6 0001 0100 0216 1001 13f97e00 1400"),
        "out_of_range",
        "field `lat`: NaN is outside -90..=90",
    );
    // CBOR negative seq.
    rejects(
        &unhex("a3 0020 0100 0209"),
        "out_of_range",
        "field `seq`: -1 is outside 1..=9223372036854775807",
    );
}

#[test]
fn missing_fields() {
    rejects(
        br#"{"seq":1,"t":0,"kind":"fall_detected"}"#,
        "missing_field",
        "missing field `confidence` for kind `fall_detected`",
    );
    rejects(
        br#"{"t":0,"kind":"smoke"}"#,
        "missing_field",
        "missing field `seq`",
    );
    rejects(
        br#"{"seq":1,"kind":"smoke"}"#,
        "missing_field",
        "missing field `t`",
    );
    rejects(
        br#"{"seq":1,"t":0}"#,
        "missing_field",
        "missing field `kind`",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"heartbeat","battery":50}"#,
        "missing_field",
        "missing field `signal` for kind `heartbeat`",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in"}"#,
        "missing_field",
        "missing field `method` for kind `check_in`",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"gps"}"#,
        "missing_field",
        "missing field `lat` for method `gps`",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_out","method":"gps","lat":1}"#,
        "missing_field",
        "missing field `lon`, which `lat` needs",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"tag","accuracy_m":5}"#,
        "missing_field",
        "missing field `lat`, which `accuracy_m` needs",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"tag"}"#,
        "missing_field",
        "missing field `tag` for method `tag`",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"phone"}"#,
        "missing_field",
        "missing field `caller_id` for method `phone`",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"manual"}"#,
        "missing_field",
        "missing field `reason` for method `manual`",
    );
    // CBOR fall_detected without key 10.
    rejects(
        &unhex("a3 0001 0100 0202"),
        "missing_field",
        "missing field `confidence` for kind `fall_detected`",
    );
}

#[test]
fn unknown_kinds_and_fields() {
    rejects(
        br#"{"seq":1,"t":0,"kind":"fal_detected"}"#,
        "unknown_kind",
        "unknown kind `fal_detected`",
    );
    rejects(
        &unhex("a3 0001 0100 0218 63"),
        "unknown_kind",
        "unknown kind code 99",
    );
    rejects(
        format!(r#"{{{HB},"foo":1}}"#).as_bytes(),
        "unknown_field",
        "unknown field `foo`",
    );
    rejects(
        format!(r#"{{"foo":{{"nested":[1]}},{HB}}}"#).as_bytes(),
        "unknown_field",
        "unknown field `foo`",
    );
    rejects(
        format!(r#"{{{HB},"confidence":50}}"#).as_bytes(),
        "unknown_field",
        "field `confidence` does not belong to kind `heartbeat`",
    );
    rejects(
        &unhex("a4 0001 0100 0209 1863 00"),
        "unknown_field",
        "unknown field key 99",
    );
    rejects(
        &unhex("a4 0001 0100 0209 0c f5"),
        "unknown_field",
        "field `occupied` does not belong to kind `smoke`",
    );
    // A hostile name is cut and escaped, not echoed whole.
    let long = "x".repeat(100);
    let e = decode_event(format!(r#"{{"{long}\n":1}}"#).as_bytes()).unwrap_err();
    assert_eq!(e.reason_code(), "unknown_field");
    assert_eq!(
        e.to_string(),
        format!("unknown field `{}…`", "x".repeat(48))
    );
    let e = decode_event(br#"{"a\nb`c":1}"#).unwrap_err();
    assert_eq!(e.to_string(), r"unknown field `a\nb\`c`");
}

#[test]
fn duplicates() {
    rejects(
        format!(r#"{{{HB},"seq":43}}"#).as_bytes(),
        "duplicate_field",
        "duplicate field `seq`",
    );
    rejects(
        &unhex("a4 0001 0100 0209 0002"),
        "duplicate_field",
        "duplicate field `seq`",
    );
}

#[test]
fn wrong_types_and_values() {
    rejects(
        br#"{"seq":"1","t":0,"kind":"smoke"}"#,
        "invalid_type",
        "field `seq`: expected an integer",
    );
    rejects(
        br#"{"seq":1.0,"t":0,"kind":"smoke"}"#,
        "invalid_type",
        "field `seq`: expected an integer",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"smoke","sensor":null}"#,
        "invalid_type",
        "field `sensor`: expected an integer",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":7}"#,
        "invalid_type",
        "field `kind`: expected a string",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"bed_occupancy","occupied":1}"#,
        "invalid_type",
        "field `occupied`: expected true or false",
    );
    rejects(
        &unhex("a3 0001 0100 02 69 6865617274626561 74"),
        "invalid_type",
        "field `kind`: expected an integer code",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"nfc"}"#,
        "invalid_value",
        "field `method`: unknown value `nfc`, expected one of gps, tag, phone, manual (CBOR 1 to 4)",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"tag","tag":"has space"}"#,
        "invalid_value",
        "field `tag`: must be 1 to 64 characters of [A-Za-z0-9._:+-]",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"manual","reason":""}"#,
        "invalid_value",
        "field `reason`: must be 1 to 64 characters of [A-Za-z0-9._:+-]",
    );
    let memo = "é".repeat(251);
    rejects(
        format!(
            r#"{{"seq":1,"t":0,"kind":"check_in","method":"manual","reason":"r","memo":"{memo}"}}"#
        )
        .as_bytes(),
        "invalid_value",
        "field `memo`: must be at most 500 bytes of UTF-8",
    );
    // 500 bytes after unescaping is fine, even if the JSON text is longer.
    let memo = "\\n".repeat(500);
    let json = format!(
        r#"{{"seq":1,"t":0,"kind":"check_in","method":"manual","reason":"r","memo":"{memo}"}}"#
    );
    let event = decode_event(json.as_bytes()).unwrap();
    let EventBody::CheckIn(v) = event.body() else {
        panic!()
    };
    assert_eq!(v.memo().unwrap().as_str(), "\n".repeat(500));
}

/// U+0000 is the one character a memo may not hold (PostgreSQL's `text` and `jsonb` cannot
/// store it), in either encoding; the other control characters are fine.
#[test]
fn nul_in_a_memo_is_refused_in_both_encodings() {
    const NUL: &str = "field `memo`: must not contain the character U+0000 (NUL)";
    rejects(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"manual","reason":"r","memo":"a\u0000b"}"#,
        "invalid_value",
        NUL,
    );
    // The check comes before the length's: a long memo with a NUL is refused for the NUL.
    let json = format!(
        r#"{{"seq":1,"t":0,"kind":"check_in","method":"manual","reason":"r","memo":"{}\u0000"}}"#,
        "x".repeat(499)
    );
    rejects(json.as_bytes(), "invalid_value", NUL);
    assert!(decode_event(
        br#"{"seq":1,"t":0,"kind":"check_in","method":"manual","reason":"r","memo":"a\u0001\u001fb"}"#
    )
    .is_ok());

    // CBOR: a valid check-in whose memo's `?` becomes a NUL byte (a text string of the same
    // length, still valid UTF-8).
    let check =
        VisitCheck::by_manual(Id::new("r").unwrap()).with_memo(Memo::new("NUL?here").unwrap());
    let event = Event::new(1, 0, EventBody::CheckIn(check)).unwrap();
    let mut cbor = encode_event_vec(&event, Encoding::Cbor);
    let at = cbor
        .windows(8)
        .position(|w| w == b"NUL?here")
        .expect("the memo's bytes");
    cbor[at + 3] = 0;
    rejects(&cbor, "invalid_value", NUL);

    // The validating constructor follows the same rule, so a device cannot build one.
    assert!(Memo::new("a\0b").is_none());
}

#[test]
fn syntax() {
    rejects(
        br#"{"seq":1,"t":0,,"kind":"smoke"}"#,
        "invalid_json",
        "invalid JSON at byte 15: expected a field name in double quotes",
    );
    rejects(
        br#"{"seq":1,"t":0 "kind":"smoke"}"#,
        "invalid_json",
        "invalid JSON at byte 15: expected `,` or `}`",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"smoke"} x"#,
        "invalid_json",
        "invalid JSON at byte 31: expected the end of the payload",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"smoke""#,
        "invalid_json",
        "invalid JSON at byte 29: expected `,` or `}`",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"smoke",}"#,
        "invalid_json",
        "invalid JSON at byte 30: expected a field name in double quotes",
    );
    rejects(
        br#"{"seq":1,"t":01,"kind":"smoke"}"#,
        "invalid_json",
        "invalid JSON at byte 14: expected `,` or `}`",
    );
    rejects(
        br#"{"seq":-,"t":0,"kind":"smoke"}"#,
        "invalid_json",
        "invalid JSON at byte 8: expected a digit",
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"sm\oke"}"#,
        "invalid_json",
        r#"invalid JSON at byte 26: expected an escape: one of " \ / b f n r t u"#,
    );
    rejects(
        br#"{"seq":1,"t":0,"kind":"\ud800"}"#,
        "invalid_json",
        r"invalid JSON at byte 29: expected `\u` and a low surrogate",
    );
    rejects(
        b"{\"seq\":1,\"t\":0,\"kind\":\"a\x01\"}",
        "invalid_json",
        "invalid JSON at byte 24: expected an escape instead of a control character",
    );
    rejects(
        b"{\"seq\":1,\"t\":0,\"kind\":\"\xff\"}",
        "invalid_json",
        "invalid JSON at byte 23: expected UTF-8 text",
    );
    rejects(
        br#"{"seq":}"#,
        "invalid_json",
        "invalid JSON at byte 7: expected a value",
    );
    rejects(
        b"  {",
        "invalid_json",
        "invalid JSON at byte 3: expected a field name in double quotes",
    );
}

#[test]
fn cbor_structure() {
    rejects(
        &unhex("bf 0001 ff"),
        "invalid_cbor",
        "invalid CBOR at byte 0: indefinite-length map",
    );
    rejects(
        &unhex("a3 0001 0100 0209 00"),
        "invalid_cbor",
        "invalid CBOR at byte 7: trailing bytes after the map",
    );
    rejects(
        &unhex("a3 0001 0100"),
        "invalid_cbor",
        "invalid CBOR at byte 5: unexpected end of input",
    );
    rejects(
        &unhex("a3 0001 0100 02"),
        "invalid_cbor",
        "invalid CBOR at byte 6: unexpected end of input",
    );
    rejects(
        &unhex("a1 6173 01"),
        "invalid_cbor",
        "invalid CBOR at byte 1: map keys must be integers",
    );
    rejects(
        &unhex("a1 001b0000"),
        "invalid_cbor",
        "invalid CBOR at byte 3: unexpected end of input",
    );
    // Text that is not UTF-8: {0:1,1:0,2:22,16:2,23: "\xff"}
    rejects(
        &unhex("a5 0001 0100 0216 1002 17 61ff"),
        "invalid_cbor",
        "invalid CBOR at byte 10: text is not valid UTF-8",
    );
    // A tagged value where an integer belongs.
    rejects(
        &unhex("a3 00c101 0100 0209"),
        "invalid_type",
        "field `seq`: expected an integer",
    );
}

#[test]
fn encodings_and_sizes() {
    rejects(
        b"",
        "unknown_encoding",
        "empty payload: expected a JSON object or a CBOR map",
    );
    rejects(
        b"[1]",
        "unknown_encoding",
        "unknown encoding: payload starts with byte 0x5b, expected a JSON object (`{`) or a CBOR map (0xa0..=0xbf)",
    );
    rejects(&unhex("83010203"), "unknown_encoding", "unknown encoding: payload starts with byte 0x83, expected a JSON object (`{`) or a CBOR map (0xa0..=0xbf)");
    rejects(b"   ", "unknown_encoding", "unknown encoding: payload starts with byte 0x20, expected a JSON object (`{`) or a CBOR map (0xa0..=0xbf)");
    let big = vec![b' '; 5000];
    rejects(
        &big,
        "oversize",
        "payload is 5000 bytes, over the 4096-byte limit",
    );
    let e = decode_event_cbor(&big).unwrap_err();
    assert_eq!(e.reason_code(), "oversize");
    let e = decode_event_json(&unhex("a0")).unwrap_err();
    assert_eq!(e.reason_code(), "invalid_json");
}

#[test]
fn downlink_errors() {
    rejects_downlink(
        br#"{"type":"ack"}"#,
        "missing_field",
        "missing field `stored` for type `ack`",
    );
    rejects_downlink(br#"{"stored":[]}"#, "missing_field", "missing field `type`");
    rejects_downlink(
        br#"{"type":"nack","stored":[]}"#,
        "invalid_value",
        "field `type`: unknown value `nack`, expected ack or notice (CBOR 1 or 2)",
    );
    rejects_downlink(
        br#"{"type":"ack","stored":[[0,3]]}"#,
        "out_of_range",
        "field `stored`: 0 is outside 1..=9223372036854775807",
    );
    rejects_downlink(
        br#"{"type":"ack","stored":[[5,3]]}"#,
        "invalid_value",
        "field `stored`: a range's first seq is above its last",
    );
    rejects_downlink(
        br#"{"type":"ack","stored":[[5]]}"#,
        "invalid_value",
        "field `stored`: each range must be a [first, last] pair",
    );
    rejects_downlink(
        br#"{"type":"ack","stored":[[5,6,7]]}"#,
        "invalid_value",
        "field `stored`: each range must be a [first, last] pair",
    );
    rejects_downlink(
        br#"{"type":"ack","stored":[5]}"#,
        "invalid_type",
        "field `stored`: expected a [first, last] pair",
    );
    rejects_downlink(
        br#"{"type":"ack","stored":5}"#,
        "invalid_type",
        "field `stored`: expected an array of [first, last] pairs",
    );
    let many = (1..=17)
        .map(|i| format!("[{0},{0}]", i * 2))
        .collect::<Vec<_>>()
        .join(",");
    rejects_downlink(
        format!(r#"{{"type":"ack","stored":[{many}]}}"#).as_bytes(),
        "invalid_value",
        "field `stored`: holds more than 16 ranges",
    );
    rejects_downlink(
        br#"{"type":"ack","stored":[],"alarm":1}"#,
        "unknown_field",
        "field `alarm` does not belong to type `ack`",
    );
    rejects_downlink(
        br#"{"type":"notice"}"#,
        "missing_field",
        "missing field `notice` for type `notice`",
    );
    rejects_downlink(br#"{"type":"notice","notice":"help"}"#, "invalid_value", "field `notice`: unknown value `help`, expected one of help_on_the_way, alarm_acknowledged, responder_on_site, alarm_resolved (CBOR 1 to 4)");
    rejects_downlink(
        br#"{"type":"notice","notice":"alarm_resolved","alarm":-1}"#,
        "out_of_range",
        "field `alarm`: -1 is outside 0..=18446744073709551615",
    );
    rejects_downlink(
        br#"{"type":"ack","stored":[],"x":1}"#,
        "unknown_field",
        "unknown field `x`",
    );
    rejects_downlink(
        &unhex("a2 0001 0001"),
        "duplicate_field",
        "duplicate field `type`",
    );
    rejects_downlink(
        &unhex("a2 0001 01 81 83010203"),
        "invalid_value",
        "field `stored`: each range must be a [first, last] pair",
    );
    rejects_downlink(
        &unhex("a1 0005"),
        "invalid_value",
        "field `type`: unknown code 5, expected ack or notice (CBOR 1 or 2)",
    );
    rejects_downlink(
        &vec![b' '; 1025],
        "oversize",
        "payload is 1025 bytes, over the 1024-byte limit",
    );
    // Unsorted and overlapping ranges are merged, not refused.
    let d = decode_downlink(br#"{"type":"ack","stored":[[42,42],[1,40],[41,41]]}"#).unwrap();
    let Downlink::Ack(a) = d else { panic!() };
    assert_eq!(a.iter().collect::<Vec<_>>(), [1..=42]);
}
