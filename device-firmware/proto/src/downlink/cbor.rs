//! Downlinks as CBOR: a definite-length map with the keys in `DField`, ascending.

use super::{
    pair, AckRanges, DField, Downlink, RawDownlink, ACK_CAPACITY, NOT_A_PAIR, TOO_MANY_RANGES,
};
use crate::cbor::{self, full, Reader};
use crate::error::{DecodeError, EncodeError};
use crate::event::{MAX_SEQ, MIN_SEQ};
use crate::source::int_field;

pub(crate) fn encode(downlink: &Downlink, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = cbor::writer(buf);
    match downlink {
        Downlink::Ack(ranges) => {
            w.map(2).map_err(full)?;
            w.u8(DField::Type.key())
                .map_err(full)?
                .u8(1)
                .map_err(full)?;
            w.u8(DField::Stored.key()).map_err(full)?;
            w.array(ranges.len() as u64).map_err(full)?;
            for r in ranges {
                w.array(2)
                    .map_err(full)?
                    .u64(*r.start())
                    .map_err(full)?
                    .u64(*r.end())
                    .map_err(full)?;
            }
        }
        Downlink::Notice(notice) => {
            w.map(if notice.alarm.is_some() { 3 } else { 2 })
                .map_err(full)?;
            w.u8(DField::Type.key())
                .map_err(full)?
                .u8(2)
                .map_err(full)?;
            w.u8(DField::Notice.key())
                .map_err(full)?
                .u8(notice.kind.code())
                .map_err(full)?;
            if let Some(alarm) = notice.alarm {
                w.u8(DField::Alarm.key())
                    .map_err(full)?
                    .u64(alarm)
                    .map_err(full)?;
            }
        }
    }
    Ok(cbor::written(&w))
}

fn stored(r: &mut Reader<'_>) -> Result<AckRanges, DecodeError> {
    let name = DField::Stored.name();
    let n = r.array(name, "an array of [first, last] pairs")?;
    if n > ACK_CAPACITY as u64 {
        return Err(DecodeError::invalid(name, TOO_MANY_RANGES));
    }
    let mut ranges = AckRanges::new();
    for _ in 0..n {
        if r.array(name, "a [first, last] pair")? != 2 {
            return Err(DecodeError::invalid(name, NOT_A_PAIR));
        }
        let lo = int_field(r, name, MIN_SEQ, MAX_SEQ)?;
        let hi = int_field(r, name, MIN_SEQ, MAX_SEQ)?;
        let (lo, hi) = pair(lo, hi)?;
        ranges.insert_range(lo, hi);
    }
    Ok(ranges)
}

pub(crate) fn decode(payload: &[u8]) -> Result<Downlink, DecodeError> {
    let mut r = Reader::new(payload);
    let entries = r.map()?;
    let mut raw = RawDownlink::default();
    for _ in 0..entries {
        let key = r.key()?;
        let field = DField::from_key(key).ok_or(DecodeError::unknown_key(key))?;
        raw.mark(field)?;
        if field == DField::Stored {
            raw.set_stored(stored(&mut r)?);
        } else {
            raw.set(field, &mut r)?;
        }
    }
    r.finish()?;
    raw.finish()
}
