//! The Homeward wire format, version 1: what devices and the server say to each other over
//! MQTT. One crate, `no_std` and allocation-free, used by the device firmware (encodes events,
//! decodes downlinks), the fleet simulator, and the server (decodes events, encodes downlinks),
//! so there is exactly one definition of every byte. `docs/wire-format.md` is the
//! specification in prose; the tests in `tests/wire/` pin it byte for byte.
//!
//! # Layout
//! - [`topic`]: topic names, filters, device ids; [`status`]: the `online`/`offline` payloads.
//! - `event`: [`Event`] (envelope), [`EventBody`] (kind and typed fields), [`EventKind`] (names,
//!   CBOR codes, priority, SCAIP mapping), value types ([`Percent`], [`SignalDbm`], [`GeoFix`],
//!   [`VisitCheck`], [`Id`], [`Memo`]).
//! - `downlink`: [`Downlink`], [`AckRanges`], [`Notice`].
//! - [`batch`]: several events of one device in one message ([`Batch`]).
//! - Two encodings of every message: JSON (a flat object) and CBOR (a map with small integer
//!   keys). [`decode_event`] and [`decode_downlink`] tell them apart by the first byte.
//! - The server keeps an event as columns (the envelope) and the kind's own fields as one JSON
//!   object: [`encode_fields_json`] writes that object, [`decode_fields_json`] reads it back.
//! - [`DecodeError`]: says which field is wrong and how, with a stable
//!   [`reason_code`](DecodeError::reason_code) for the server's dead-letter table.
//!
//! # Invariants
//! - A value of any type here is valid on the wire: constructors check ranges and text rules,
//!   so encoding never fails for a valid value, only for a short buffer, and decoding an
//!   encoding gives back an equal value.
//! - Encoding is canonical: the same value always gives the same bytes (fields in a fixed
//!   order, shortest integers, one float width per field). A device that resends an event must
//!   resend the same bytes; in particular the same `seq` and `t`, since the server's uniqueness
//!   key is (device, `seq`, `t`).
//! - Decoding is strict: unknown fields, duplicate fields, fields that do not belong to the
//!   kind, and trailing bytes are errors, never ignored. Payloads over [`MAX_EVENT_BYTES`]
//!   (events) or [`MAX_DOWNLINK_BYTES`] (downlinks) are refused before parsing (not the
//!   server's stored fields: see [`decode_fields_json`]).
//! - Every valid [`Event`] encodes in at most [`MAX_EVENT_BYTES`] in both encodings, and every
//!   [`Downlink`] in at most [`MAX_DOWNLINK_BYTES`].
//! - No decoder panics or recurses, whatever the input (property-tested).
//!
//! # Features
//! `std` (off by default) adds `std::error::Error` impls and `Vec`/`String`-returning helpers.
//! Everything else works without it.
//!
//! ```
//! use homeward_proto::{decode_event, encode_event_json, Event, EventBody, Percent, SignalDbm};
//!
//! let body = EventBody::Heartbeat {
//!     battery: Percent::new(87).unwrap(),
//!     signal: SignalDbm::new(-67).unwrap(),
//!     interval_s: None,
//! };
//! let event = Event::new(42, 1_795_000_000_000, body).unwrap();
//! let mut buf = [0u8; homeward_proto::MAX_EVENT_BYTES];
//! let n = encode_event_json(&event, &mut buf).unwrap();
//! assert_eq!(
//!     &buf[..n],
//!     br#"{"seq":42,"t":1795000000000,"kind":"heartbeat","battery":87,"signal":-67}"#
//! );
//! assert_eq!(decode_event(&buf[..n]).unwrap(), event);
//! ```

#![no_std]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod batch;
mod cbor;
mod downlink;
mod error;
mod event;
mod json;
mod source;
pub mod status;
mod text;
pub mod topic;

pub use batch::{Batch, MAX_BATCH_BYTES, MAX_BATCH_EVENTS};
pub use downlink::{AckRanges, Downlink, Notice, NoticeKind, ACK_CAPACITY};
pub use error::{DecodeError, EncodeError, REASON_CODES};
pub use event::{
    CheckMethod, Event, EventBody, EventKind, GeoFix, Percent, ScaipMessageType, SignalDbm,
    VisitCheck, MAX_SEQ, MAX_TIME_MS, MIN_SEQ, MIN_TIME_MS,
};
pub use status::{decode_status, encode_status, Status};
pub use text::{DeviceId, Id, Memo};

/// The wire format version, as in the topics' `v1`.
pub const WIRE_VERSION: u8 = 1;

/// The largest event payload accepted, in bytes; larger ones are refused before parsing.
pub const MAX_EVENT_BYTES: usize = 4096;

/// The largest downlink payload accepted, in bytes (a full ack takes under 700 in JSON).
pub const MAX_DOWNLINK_BYTES: usize = 1024;

/// The two encodings of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// A flat JSON object (RFC 8259), UTF-8.
    Json,
    /// A CBOR (RFC 8949) map with small unsigned integer keys.
    Cbor,
}

impl Encoding {
    /// Tells the encodings apart: a first byte in 0xa0..=0xbf (CBOR map) is CBOR, a first
    /// non-whitespace byte `{` is JSON; anything else is an `unknown_encoding` error.
    pub fn detect(payload: &[u8]) -> Result<Encoding, DecodeError> {
        match payload.first() {
            None => Err(DecodeError::unknown_encoding(None)),
            Some(0xa0..=0xbf) => Ok(Encoding::Cbor),
            Some(&first) => {
                match payload
                    .iter()
                    .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                {
                    Some(b'{') => Ok(Encoding::Json),
                    Some(&b) => Err(DecodeError::unknown_encoding(Some(b))),
                    None => Err(DecodeError::unknown_encoding(Some(first))),
                }
            }
        }
    }
}

fn check_size(payload: &[u8], max: usize) -> Result<(), DecodeError> {
    if payload.len() > max {
        return Err(DecodeError::oversize(payload.len(), max));
    }
    Ok(())
}

/// Decodes an event in either encoding (see [`Encoding::detect`]).
pub fn decode_event(payload: &[u8]) -> Result<Event, DecodeError> {
    check_size(payload, MAX_EVENT_BYTES)?;
    match Encoding::detect(payload)? {
        Encoding::Json => event::json::decode(payload),
        Encoding::Cbor => event::cbor::decode(payload),
    }
}

/// Decodes an event that must be JSON.
pub fn decode_event_json(payload: &[u8]) -> Result<Event, DecodeError> {
    check_size(payload, MAX_EVENT_BYTES)?;
    event::json::decode(payload)
}

/// Decodes an event that must be CBOR.
pub fn decode_event_cbor(payload: &[u8]) -> Result<Event, DecodeError> {
    check_size(payload, MAX_EVENT_BYTES)?;
    event::cbor::decode(payload)
}

/// Writes `event` as JSON into `buf`, returning the length. Fields come in canonical order:
/// `seq`, `t`, `kind`, `sensor`, then the kind's fields in the order of `docs/wire-format.md`.
pub fn encode_event_json(event: &Event, buf: &mut [u8]) -> Result<usize, EncodeError> {
    event::json::encode(event, buf)
}

/// Writes `event` as CBOR into `buf`, returning the length. Keys ascend.
pub fn encode_event_cbor(event: &Event, buf: &mut [u8]) -> Result<usize, EncodeError> {
    event::cbor::encode(event, buf)
}

/// Writes `event` in `encoding` into `buf`, returning the length.
pub fn encode_event(
    event: &Event,
    encoding: Encoding,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    match encoding {
        Encoding::Json => encode_event_json(event, buf),
        Encoding::Cbor => encode_event_cbor(event, buf),
    }
}

/// Writes only the kind's own fields of `body` as a JSON object (`{}` when it has none), in
/// canonical order: what the server stores in its `jsonb` column beside the envelope columns.
pub fn encode_fields_json(body: &EventBody, buf: &mut [u8]) -> Result<usize, EncodeError> {
    event::json::encode_fields(body, buf)
}

/// Decodes the kind's own fields as [`encode_fields_json`] wrote them, for an event of `kind`
/// (which the server stores beside them): the inverse of [`encode_fields_json`], as strict as
/// [`decode_event_json`], with errors that name the field. An envelope field (`seq`, `t`,
/// `kind`, `sensor`) among them is an error too; a kind without fields takes `{}`.
///
/// The text may come back from a database in another form than the encoder's, and still
/// decodes to the same body: fields in another order, whitespace between them (PostgreSQL's
/// `jsonb` does both), numbers written out in full (`jsonb` writes `1e-7` as `0.0000001`).
/// For that last reason no size limit applies: the input is the server's own, not a device's.
pub fn decode_fields_json(kind: EventKind, payload: &[u8]) -> Result<EventBody, DecodeError> {
    event::json::decode_fields(kind, payload)
}

/// Decodes a downlink in either encoding (see [`Encoding::detect`]).
pub fn decode_downlink(payload: &[u8]) -> Result<Downlink, DecodeError> {
    check_size(payload, MAX_DOWNLINK_BYTES)?;
    match Encoding::detect(payload)? {
        Encoding::Json => downlink::json::decode(payload),
        Encoding::Cbor => downlink::cbor::decode(payload),
    }
}

/// Writes `downlink` as JSON into `buf`, returning the length.
pub fn encode_downlink_json(downlink: &Downlink, buf: &mut [u8]) -> Result<usize, EncodeError> {
    downlink::json::encode(downlink, buf)
}

/// Writes `downlink` as CBOR into `buf`, returning the length.
pub fn encode_downlink_cbor(downlink: &Downlink, buf: &mut [u8]) -> Result<usize, EncodeError> {
    downlink::cbor::encode(downlink, buf)
}

/// Writes `downlink` in `encoding` into `buf`, returning the length.
pub fn encode_downlink(
    downlink: &Downlink,
    encoding: Encoding,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    match encoding {
        Encoding::Json => encode_downlink_json(downlink, buf),
        Encoding::Cbor => encode_downlink_cbor(downlink, buf),
    }
}

#[cfg(feature = "std")]
mod with_std {
    use std::string::String;
    use std::vec::Vec;

    use super::*;

    /// Encodes into a buffer of `max` bytes and keeps what was written. Every valid value fits
    /// its limit (pinned by the tests), so running out of room is a bug in this crate.
    ///
    /// Most messages are a few dozen bytes, so a small buffer on the stack is tried first: a
    /// zeroed `max`-byte vector for every event was a measurable share of ingest's CPU.
    fn to_vec(max: usize, encode: impl Fn(&mut [u8]) -> Result<usize, EncodeError>) -> Vec<u8> {
        let mut small = [0u8; 256];
        if let Ok(n) = encode(&mut small[..max.min(256)]) {
            return small[..n].to_vec();
        }
        let mut buf = std::vec![0; max];
        match encode(&mut buf) {
            Ok(n) => buf.truncate(n),
            Err(e) => unreachable!("a valid value always fits its size limit: {e}"),
        }
        buf
    }

    fn utf8(bytes: Vec<u8>) -> String {
        // The JSON encoder writes only UTF-8.
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// [`encode_event`] into a new `Vec`.
    pub fn encode_event_vec(event: &Event, encoding: Encoding) -> Vec<u8> {
        to_vec(MAX_EVENT_BYTES, |buf| encode_event(event, encoding, buf))
    }

    /// [`encode_event_json`] into a new `String`.
    pub fn encode_event_json_string(event: &Event) -> String {
        utf8(encode_event_vec(event, Encoding::Json))
    }

    /// [`encode_fields_json`] into a new `String`, for a `jsonb` column.
    pub fn encode_fields_json_string(body: &EventBody) -> String {
        utf8(to_vec(MAX_EVENT_BYTES, |buf| encode_fields_json(body, buf)))
    }

    /// [`batch::encode_batch`] into a new `Vec`: already-encoded events of one encoding,
    /// framed as one message.
    pub fn encode_batch_vec(events: &[&[u8]], encoding: Encoding) -> Vec<u8> {
        let len = events.iter().map(|e| e.len() + 1).sum::<usize>() + 3;
        to_vec(len, |buf| batch::encode_batch(events, encoding, buf))
    }

    /// [`encode_downlink`] into a new `Vec`.
    pub fn encode_downlink_vec(downlink: &Downlink, encoding: Encoding) -> Vec<u8> {
        to_vec(MAX_DOWNLINK_BYTES, |buf| {
            encode_downlink(downlink, encoding, buf)
        })
    }
}

#[cfg(feature = "std")]
pub use with_std::{
    encode_batch_vec, encode_downlink_vec, encode_event_json_string, encode_event_vec,
    encode_fields_json_string,
};
