//! Downlinks as JSON: `{"type":"ack","stored":[[1,40],[42,42]]}`,
//! `{"type":"notice","notice":"help_on_the_way","alarm":123}`.

use super::{
    pair, AckRanges, DField, Downlink, RawDownlink, ACK_CAPACITY, NOT_A_PAIR, TOO_MANY_RANGES,
};
use crate::error::{DecodeError, EncodeError};
use crate::event::{MAX_SEQ, MIN_SEQ};
use crate::json::{self, ObjectWriter, Out, Reader};
use crate::source::int_field;

pub(crate) fn encode(downlink: &Downlink, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut out = Out::new(buf);
    let mut obj = ObjectWriter::begin(&mut out)?;
    match downlink {
        Downlink::Ack(ranges) => {
            json::write_string(obj.key(DField::Type.name())?, "ack")?;
            let out = obj.key(DField::Stored.name())?;
            out.put(b"[")?;
            for (i, r) in ranges.iter().enumerate() {
                out.put(if i == 0 { b"[" } else { b",[" })?;
                json::write_u64(out, *r.start())?;
                out.put(b",")?;
                json::write_u64(out, *r.end())?;
                out.put(b"]")?;
            }
            out.put(b"]")?;
        }
        Downlink::Notice(notice) => {
            json::write_string(obj.key(DField::Type.name())?, "notice")?;
            json::write_string(obj.key(DField::Notice.name())?, notice.kind.as_str())?;
            if let Some(alarm) = notice.alarm {
                json::write_u64(obj.key(DField::Alarm.name())?, alarm)?;
            }
        }
    }
    obj.end()?;
    Ok(out.len())
}

fn stored(r: &mut Reader<'_>) -> Result<AckRanges, DecodeError> {
    let name = DField::Stored.name();
    let seq = |r: &mut Reader<'_>| int_field(r, name, MIN_SEQ, MAX_SEQ);
    let not_a_pair = || DecodeError::invalid(name, NOT_A_PAIR);
    r.begin_array(name, "an array of [first, last] pairs")?;
    let mut ranges = AckRanges::new();
    let (mut first, mut count) = (true, 0);
    while r.next_element(&mut first)? {
        count += 1;
        if count > ACK_CAPACITY {
            return Err(DecodeError::invalid(name, TOO_MANY_RANGES));
        }
        r.begin_array(name, "a [first, last] pair")?;
        if r.eat(b']') {
            return Err(not_a_pair());
        }
        let lo = seq(r)?;
        if r.eat(b']') {
            return Err(not_a_pair());
        }
        r.expect(b',', "`,`")?;
        r.skip_ws();
        let hi = seq(r)?;
        if r.eat(b',') {
            return Err(not_a_pair());
        }
        r.expect(b']', "`]`")?;
        let (lo, hi) = pair(lo, hi)?;
        ranges.insert_range(lo, hi);
    }
    Ok(ranges)
}

pub(crate) fn decode(payload: &[u8]) -> Result<Downlink, DecodeError> {
    let mut r = Reader::new(payload)?;
    r.begin_object()?;
    let mut raw = RawDownlink::default();
    let mut first = true;
    while let Some(key) = r.next_key(&mut first)? {
        let field = DField::from_name(key.as_str())
            .filter(|_| !key.is_cut())
            .ok_or_else(|| DecodeError::unknown_field(key))?;
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
