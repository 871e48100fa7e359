//! Events as JSON: one flat object, fields in canonical order.

use super::fields::{for_each_body_field, for_each_field, Field, Raw, Val};
use super::{Event, EventBody, EventKind};
use crate::error::{DecodeError, EncodeError};
use crate::json::{self, ObjectWriter, Out, Reader};

fn write_val(out: &mut Out<'_>, val: Val<'_>) -> Result<(), EncodeError> {
    match val {
        Val::Uint(v) => json::write_u64(out, v),
        Val::Int(v) => json::write_i64(out, v),
        Val::Bool(v) => json::write_bool(out, v),
        Val::F64(v) => json::write_f64(out, v),
        Val::F32(v) => json::write_f32(out, v),
        Val::Text(s) => json::write_string(out, s),
        Val::Kind(k) => json::write_string(out, k.as_str()),
        Val::Method(m) => json::write_string(out, m.as_str()),
    }
}

pub(crate) fn encode(event: &Event, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut out = Out::new(buf);
    let mut obj = ObjectWriter::begin(&mut out)?;
    for_each_field(event, &mut |field: Field, val| {
        write_val(obj.key(field.name())?, val)
    })?;
    obj.end()?;
    Ok(out.len())
}

pub(crate) fn encode_fields(body: &EventBody, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut out = Out::new(buf);
    let mut obj = ObjectWriter::begin(&mut out)?;
    for_each_body_field(body, &mut |field: Field, val| {
        write_val(obj.key(field.name())?, val)
    })?;
    obj.end()?;
    Ok(out.len())
}

pub(crate) fn decode(payload: &[u8]) -> Result<Event, DecodeError> {
    read(payload)?.finish()
}

/// Decodes what [`encode_fields`] wrote, given the kind it was written for.
pub(crate) fn decode_fields(kind: EventKind, payload: &[u8]) -> Result<EventBody, DecodeError> {
    read(payload)?.finish_fields(kind)
}

/// Reads one object's fields, each checked on its own.
fn read(payload: &[u8]) -> Result<Raw, DecodeError> {
    let mut r = Reader::new(payload)?;
    r.begin_object()?;
    let mut raw = Raw::default();
    let mut first = true;
    while let Some(key) = r.next_key(&mut first)? {
        let field = Field::from_name(key.as_str())
            .filter(|_| !key.is_cut())
            .ok_or_else(|| DecodeError::unknown_field(key))?;
        raw.set(field, &mut r)?;
    }
    r.finish()?;
    Ok(raw)
}
