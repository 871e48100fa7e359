//! Batches: several events of one device in one message on its events topic.
//!
//! A device that holds more than one event (a backlog after an outage, a burst of sensor
//! readings) may send up to [`MAX_BATCH_EVENTS`] of them in one message, saving a broker round
//! trip and an MQTT packet per event:
//!
//! - JSON: an array of event objects, `[{...},{...}]`;
//! - CBOR: a definite-length array of event maps.
//!
//! A message that is one event (a JSON object, a CBOR map) is a batch of one, so a device that
//! never batches sends exactly what it sent before. Every element is an event as the single-event
//! encoding defines it, and is decoded, validated, stored, deduplicated and dead-lettered on
//! its own: one bad event never costs its neighbours. The framing itself (the array) must be
//! well formed, non-empty, at most [`MAX_BATCH_EVENTS`] long and at most [`MAX_BATCH_BYTES`] in
//! all; otherwise the whole message is refused with one error.
//!
//! [`Batch::parse`] checks the framing in one pass without allocating; [`Batch::events`] then
//! yields each element's bytes.

use crate::error::DecodeError;
use crate::Encoding;

/// The most events one message may carry.
pub const MAX_BATCH_EVENTS: usize = 64;

/// The largest message on an events topic, in bytes (each event within it is still limited to
/// [`MAX_EVENT_BYTES`](crate::MAX_EVENT_BYTES)).
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// The events of one message, framing already checked.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    payload: &'a [u8],
    encoding: Encoding,
    /// Where the first element starts (past `[` or the CBOR array head); 0 for a single event.
    start: usize,
    len: usize,
    single: bool,
}

impl<'a> Batch<'a> {
    /// Checks the framing of an events-topic message: one event, or an array of events.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        if payload.len() > MAX_BATCH_BYTES {
            return Err(DecodeError::oversize(payload.len(), MAX_BATCH_BYTES));
        }
        match payload.first() {
            Some(0x80..=0x9f) => cbor_batch(payload),
            Some(0xa0..=0xbf) => single(payload, Encoding::Cbor),
            _ => match payload.iter().position(|b| !is_ws(*b)) {
                Some(i) if payload[i] == b'[' => json_batch(payload, i + 1),
                // One event (or an error the event decoder will name).
                _ => single(payload, Encoding::detect(payload)?),
            },
        }
    }

    /// The encoding of every event in the message.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// How many events the message carries (at least 1).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: an empty batch does not parse. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the message was a bare event rather than an array.
    pub fn is_single(&self) -> bool {
        self.single
    }

    /// Each event's bytes, in order; decode each with [`decode_event_json`](crate::decode_event_json)
    /// or [`decode_event_cbor`](crate::decode_event_cbor) as [`encoding`](Self::encoding) says.
    pub fn events(&self) -> Events<'a> {
        Events {
            batch: *self,
            pos: self.start,
            left: self.len,
        }
    }
}

/// The iterator of [`Batch::events`].
#[derive(Clone, Debug)]
pub struct Events<'a> {
    batch: Batch<'a>,
    pos: usize,
    left: usize,
}

impl<'a> Iterator for Events<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let b = &self.batch;
        if b.single {
            return Some(b.payload);
        }
        // The framing was checked by `parse`, so these scans cannot fail.
        let (start, end) = match b.encoding {
            Encoding::Json => {
                let start = skip_ws_and(b.payload, self.pos, b',');
                let end = json_object_end(b.payload, start).unwrap_or(b.payload.len());
                (start, end)
            }
            Encoding::Cbor => {
                let mut d = minicbor::Decoder::new(b.payload);
                d.set_position(self.pos);
                let _ = d.skip();
                (self.pos, d.position())
            }
        };
        self.pos = end;
        Some(&b.payload[start..end])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Events<'_> {}

fn single(payload: &[u8], encoding: Encoding) -> Result<Batch<'_>, DecodeError> {
    Ok(Batch {
        payload,
        encoding,
        start: 0,
        len: 1,
        single: true,
    })
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(p: &[u8], mut i: usize) -> usize {
    while i < p.len() && is_ws(p[i]) {
        i += 1;
    }
    i
}

/// Past whitespace, one optional `sep`, and whitespace again.
fn skip_ws_and(p: &[u8], i: usize, sep: u8) -> usize {
    let i = skip_ws(p, i);
    if p.get(i) == Some(&sep) {
        skip_ws(p, i + 1)
    } else {
        i
    }
}

/// The end (one past the closing brace) of the JSON object starting at `start`, tracking
/// strings and nesting; the element itself is checked later by the event decoder.
fn json_object_end(p: &[u8], start: usize) -> Result<usize, DecodeError> {
    if p.get(start) != Some(&b'{') {
        return Err(DecodeError::json(start, "an event object"));
    }
    // Open brackets as bits, innermost lowest: 1 for `{`, 0 for `[`.
    let mut stack = 0u64;
    let mut depth = 0u32;
    let mut in_string = false;
    let mut i = start;
    while i < p.len() {
        let c = p[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    if depth == 64 {
                        return Err(DecodeError::json(i, "at most 64 levels of nesting"));
                    }
                    stack = (stack << 1) | u64::from(c == b'{');
                    depth += 1;
                }
                b'}' | b']' => {
                    if (stack & 1 == 1) != (c == b'}') {
                        return Err(DecodeError::json(
                            i,
                            if depth == 1 {
                                "`}` to close the event object"
                            } else {
                                "a matching bracket"
                            },
                        ));
                    }
                    stack >>= 1;
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    Err(DecodeError::json(p.len(), "the end of the event object"))
}

fn json_batch(p: &[u8], first: usize) -> Result<Batch<'_>, DecodeError> {
    let start = first;
    let mut i = skip_ws(p, first);
    if p.get(i) == Some(&b']') {
        return Err(DecodeError::json(i, "at least one event in the batch"));
    }
    let mut len = 0usize;
    loop {
        let end = json_object_end(p, i)?;
        len += 1;
        if len > MAX_BATCH_EVENTS {
            return Err(DecodeError::json(i, "at most 64 events in a batch"));
        }
        i = skip_ws(p, end);
        match p.get(i) {
            Some(b',') => i = skip_ws(p, i + 1),
            Some(b']') => {
                let rest = skip_ws(p, i + 1);
                if rest != p.len() {
                    return Err(DecodeError::json(rest, "nothing after the batch"));
                }
                return Ok(Batch {
                    payload: p,
                    encoding: Encoding::Json,
                    start,
                    len,
                    single: false,
                });
            }
            _ => return Err(DecodeError::json(i, "`,` or `]` after an event")),
        }
    }
}

fn cbor_batch(p: &[u8]) -> Result<Batch<'_>, DecodeError> {
    let mut d = minicbor::Decoder::new(p);
    let len = match d.array() {
        Ok(Some(n)) => n,
        Ok(None) => return Err(DecodeError::cbor(0, "indefinite-length array")),
        Err(_) => return Err(DecodeError::cbor(0, "malformed array head")),
    };
    let start = d.position();
    if len == 0 {
        return Err(DecodeError::cbor(0, "an empty batch"));
    }
    if len > MAX_BATCH_EVENTS as u64 {
        return Err(DecodeError::cbor(0, "more than 64 events in a batch"));
    }
    for _ in 0..len {
        let at = d.position();
        match d.datatype() {
            Ok(minicbor::data::Type::Map) => {}
            Ok(_) => return Err(DecodeError::cbor(at, "expected an event map")),
            Err(_) => return Err(DecodeError::cbor(at, "unexpected end of input")),
        }
        if let Err(e) = d.skip() {
            let at = e.position().unwrap_or(at);
            return Err(if e.is_end_of_input() {
                DecodeError::cbor(at, "unexpected end of input")
            } else {
                DecodeError::cbor(at, "malformed data item")
            });
        }
    }
    if d.position() != p.len() {
        return Err(DecodeError::cbor(
            d.position(),
            "trailing bytes after the batch",
        ));
    }
    Ok(Batch {
        payload: p,
        encoding: Encoding::Cbor,
        start,
        len: len as usize,
        single: false,
    })
}

/// Writes the framing around already-encoded events of one encoding: `[e1,e2]` or a CBOR array
/// head followed by the maps. Returns the length, or `BufferTooSmall`.
pub fn encode_batch(
    events: &[&[u8]],
    encoding: Encoding,
    buf: &mut [u8],
) -> Result<usize, crate::EncodeError> {
    let mut n = 0usize;
    let mut put = |bytes: &[u8]| -> Result<(), crate::EncodeError> {
        let end = n + bytes.len();
        buf.get_mut(n..end)
            .ok_or(crate::EncodeError::BufferTooSmall)?
            .copy_from_slice(bytes);
        n = end;
        Ok(())
    };
    match encoding {
        Encoding::Json => {
            put(b"[")?;
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    put(b",")?;
                }
                put(e)?;
            }
            put(b"]")?;
        }
        Encoding::Cbor => {
            let len = events.len();
            if len < 24 {
                put(&[0x80 | len as u8])?;
            } else if len < 256 {
                put(&[0x98, len as u8])?;
            } else {
                put(&[0x99, (len >> 8) as u8, len as u8])?;
            }
            for e in events {
                put(e)?;
            }
        }
    }
    Ok(n)
}
