//! PostgreSQL's binary COPY format for the `events` columns, written by hand.
//!
//! tokio-postgres's `BinaryCopyInWriter` encodes row by row through `ToSql` and is slow for big
//! batches (it encodes row by row through `ToSql`); this writes the whole batch into one buffer, with the exact
//! layout PostgreSQL documents for `COPY ... (FORMAT binary)`: a signature, flags and header
//! extension length, then per row a field count and length-prefixed fields, then -1.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One `events` row as the COPY writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub device_id: i32,
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub kind: i16,
    pub sensor: Option<i32>,
    pub late: bool,
    /// The kind's own fields as JSON text, or `None` when it has none.
    pub data: Option<String>,
}

/// The column list matching [`encode`]'s field order.
pub const COLUMNS: &str = "device_id, seq, occurred_at, received_at, kind, sensor, late, data";

pub fn encode<'a>(rows: impl IntoIterator<Item = &'a EventRow>) -> Bytes {
    let rows = rows.into_iter();
    let mut buf = BytesMut::with_capacity(19 + 2 + rows.size_hint().0 * 96);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags: no OIDs
    buf.put_i32(0); // header extension length
    for row in rows {
        buf.put_i16(8);
        buf.put_i32(4);
        buf.put_i32(row.device_id);
        buf.put_i32(8);
        buf.put_i64(row.seq);
        buf.put_i32(8);
        buf.put_i64(pg_timestamp(row.occurred_at));
        buf.put_i32(8);
        buf.put_i64(pg_timestamp(row.received_at));
        buf.put_i32(2);
        buf.put_i16(row.kind);
        match row.sensor {
            Some(s) => {
                buf.put_i32(4);
                buf.put_i32(s);
            }
            None => buf.put_i32(-1),
        }
        buf.put_i32(1);
        buf.put_u8(u8::from(row.late));
        match &row.data {
            Some(json) => {
                // jsonb's binary form: a version byte (1) and the JSON text.
                buf.put_i32(json.len() as i32 + 1);
                buf.put_u8(1);
                buf.put_slice(json.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    buf.put_i16(-1);
    buf.freeze()
}

fn pg_timestamp(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros() - PG_EPOCH_OFFSET_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn layout_is_pinned() {
        let t = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).unwrap();
        let row = EventRow {
            device_id: 7,
            seq: 42,
            occurred_at: t,
            received_at: t,
            kind: 16,
            sensor: None,
            late: true,
            data: Some("{}".into()),
        };
        let bytes = encode(&[row]);
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 8]);
        expected.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 42]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]); // 1 s
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 16]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 1, 1]);
        expected.extend_from_slice(&[0, 0, 0, 3, 1, b'{', b'}']);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(&bytes[..], &expected[..]);
    }
}
