//! Events as CBOR: a definite-length map, integer keys ascending (see `fields::Field::key`).

use super::fields::{count_fields, for_each_field, Field, Raw, Val};
use super::Event;
use crate::cbor::{self, full, Reader, Writer};
use crate::error::{DecodeError, EncodeError};

fn write_val(w: &mut Writer<'_>, val: Val<'_>) -> Result<(), EncodeError> {
    match val {
        Val::Uint(v) => w.u64(v),
        Val::Int(v) => w.i64(v),
        Val::Bool(v) => w.bool(v),
        Val::F64(v) => w.f64(v),
        Val::F32(v) => w.f32(v),
        Val::Text(s) => w.str(s),
        Val::Kind(k) => w.u8(k.code()),
        Val::Method(m) => w.u8(m.code()),
    }
    .map_err(full)?;
    Ok(())
}

pub(crate) fn encode(event: &Event, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = cbor::writer(buf);
    w.map(count_fields(event)).map_err(full)?;
    for_each_field(event, &mut |field: Field, val| {
        w.u8(field.key()).map_err(full)?;
        write_val(&mut w, val)
    })?;
    Ok(cbor::written(&w))
}

pub(crate) fn decode(payload: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader::new(payload);
    let entries = r.map()?;
    let mut raw = Raw::default();
    for _ in 0..entries {
        let key = r.key()?;
        let field = Field::from_key(key).ok_or(DecodeError::unknown_key(key))?;
        raw.set(field, &mut r)?;
    }
    r.finish()?;
    raw.finish()
}
