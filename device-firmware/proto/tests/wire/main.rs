//! The wire format's tests: byte-for-byte pins of the documented examples, round trips of
//! every kind in both encodings and through the server's stored fields, error messages and
//! reason codes, size limits, and decoders fed arbitrary bytes. One binary, one module per
//! concern.

mod batch;
mod errors;
mod limits;
mod pins;
mod roundtrip;
mod stored;
mod strategies;

/// Hex without separators, lowercase, as the docs write CBOR.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
