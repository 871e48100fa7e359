//! Downlinks, server to device: the end-to-end [`Ack`](Downlink::Ack) of stored events and
//! [`Notice`]s about an alarm. Both encodings share the field table below.
//!
//! | field    | JSON                         | CBOR key | CBOR value                     |
//! |----------|------------------------------|----------|--------------------------------|
//! | `type`   | `"ack"` / `"notice"`         | 0        | 1 ack, 2 notice                |
//! | `stored` | `[[first,last],...]`         | 1        | array of 2-element arrays      |
//! | `notice` | name of a [`NoticeKind`]     | 2        | [`NoticeKind::code`]           |
//! | `alarm`  | integer                      | 3        | unsigned integer               |

pub(crate) mod cbor;
pub(crate) mod json;

use core::fmt;
use core::ops::RangeInclusive;

use crate::error::{Because, DecodeError, Owner};
use crate::source::{int_field, Enumerated, Source};

/// How many ranges an [`AckRanges`] holds.
pub const ACK_CAPACITY: usize = 16;

/// The set of sequence numbers the server has stored, as at most [`ACK_CAPACITY`] inclusive
/// ranges, sorted, disjoint and never adjacent (inserting merges neighbours).
///
/// When an insert would need a 17th range, the range with the lowest seqs is dropped: a
/// device resends whatever no range covers, and the server stores a resend only once, so
/// forgetting low seqs costs a resend, while the high ones cover the events the device is
/// most likely still holding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AckRanges {
    ranges: heapless::Vec<(u64, u64), ACK_CAPACITY, u8>,
}

impl AckRanges {
    /// No seqs.
    pub const fn new() -> Self {
        Self {
            ranges: heapless::Vec::new(),
        }
    }

    /// Adds one seq; see [`insert_range`](Self::insert_range).
    pub fn insert(&mut self, seq: u64) -> bool {
        self.insert_range(seq, seq)
    }

    /// Adds `first..=last`, merging with overlapping and adjacent ranges. Returns `false` when
    /// a range with lower seqs had to be dropped to stay within [`ACK_CAPACITY`] (possibly the
    /// new one itself, if it is the lowest). An empty range (`first > last`) changes nothing.
    pub fn insert_range(&mut self, first: u64, last: u64) -> bool {
        if first > last {
            return true;
        }
        let (mut lo, mut hi) = (first, last);
        let mut merged: heapless::Vec<(u64, u64), { ACK_CAPACITY + 1 }, u8> = heapless::Vec::new();
        let mut placed = false;
        for &(a, b) in &self.ranges {
            if b.saturating_add(1) < lo {
                // Wholly below, not touching.
                let _ = merged.push((a, b));
            } else if hi.saturating_add(1) < a {
                // Wholly above: the new range goes first.
                if !placed {
                    let _ = merged.push((lo, hi));
                    placed = true;
                }
                let _ = merged.push((a, b));
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        if !placed {
            let _ = merged.push((lo, hi));
        }
        // `merged` holds at most one more range than `self.ranges` did: room for 17.
        let dropped = merged.len() > ACK_CAPACITY;
        let keep = &merged[merged.len().saturating_sub(ACK_CAPACITY)..];
        self.ranges.clear();
        for &r in keep {
            let _ = self.ranges.push(r);
        }
        !dropped
    }

    /// Whether `seq` is covered.
    pub fn contains(&self, seq: u64) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= seq && seq <= b)
    }

    /// The ranges, lowest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RangeInclusive<u64>> + '_ {
        self.ranges.iter().map(|&(a, b)| a..=b)
    }

    /// The number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no seq is covered.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The highest seq covered.
    pub fn highest(&self) -> Option<u64> {
        self.ranges.last().map(|&(_, b)| b)
    }

    /// Forgets every range.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

impl<'a> IntoIterator for &'a AckRanges {
    type Item = RangeInclusive<u64>;
    type IntoIter =
        core::iter::Map<core::slice::Iter<'a, (u64, u64)>, fn(&(u64, u64)) -> RangeInclusive<u64>>;
    fn into_iter(self) -> Self::IntoIter {
        self.ranges.iter().map(|&(a, b)| a..=b)
    }
}

/// What a [`Notice`] tells the device (and so the person) about their alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Someone is coming. JSON `help_on_the_way`, CBOR 1.
    HelpOnTheWay = 1,
    /// The monitoring centre has taken the alarm. JSON `alarm_acknowledged`, CBOR 2.
    AlarmAcknowledged = 2,
    /// A responder is recorded as on site. JSON `responder_on_site`, CBOR 3.
    ResponderOnSite = 3,
    /// The alarm is resolved. JSON `alarm_resolved`, CBOR 4.
    AlarmResolved = 4,
}

impl NoticeKind {
    /// Every notice kind, in code order.
    pub const ALL: [NoticeKind; 4] = [
        NoticeKind::HelpOnTheWay,
        NoticeKind::AlarmAcknowledged,
        NoticeKind::ResponderOnSite,
        NoticeKind::AlarmResolved,
    ];

    /// The JSON name.
    pub const fn as_str(self) -> &'static str {
        match self {
            NoticeKind::HelpOnTheWay => "help_on_the_way",
            NoticeKind::AlarmAcknowledged => "alarm_acknowledged",
            NoticeKind::ResponderOnSite => "responder_on_site",
            NoticeKind::AlarmResolved => "alarm_resolved",
        }
    }

    /// The CBOR code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The notice kind for a JSON name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The notice kind for a CBOR code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// News about an alarm, for the device to show or say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Notice {
    /// What happened.
    pub kind: NoticeKind,
    /// The server's id of the alarm it is about, when it has one.
    pub alarm: Option<u64>,
}

/// A message on a device's downlink topic.
// An ack is 16 ranges inline: there is no allocator to box it on the device, and a downlink
// is decoded, handled and dropped, never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Downlink {
    /// The seqs the server has stored (committed). The device drops every event a range
    /// covers and resends the others after a timeout.
    Ack(AckRanges),
    /// News about an alarm.
    Notice(Notice),
}

/// The `type` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DownlinkType {
    Ack = 1,
    Notice = 2,
}

impl DownlinkType {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            DownlinkType::Ack => "ack",
            DownlinkType::Notice => "notice",
        }
    }
}

impl Enumerated for DownlinkType {
    const EXPECTED: &'static str = "ack or notice (CBOR 1 or 2)";
    fn from_name(name: &str) -> Option<Self> {
        [DownlinkType::Ack, DownlinkType::Notice]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
    fn from_code(code: i128) -> Option<Self> {
        match code {
            1 => Some(DownlinkType::Ack),
            2 => Some(DownlinkType::Notice),
            _ => None,
        }
    }
}

impl Enumerated for NoticeKind {
    const EXPECTED: &'static str =
        "one of help_on_the_way, alarm_acknowledged, responder_on_site, alarm_resolved (CBOR 1 to 4)";
    fn from_name(name: &str) -> Option<Self> {
        NoticeKind::from_name(name)
    }
    fn from_code(code: i128) -> Option<Self> {
        u8::try_from(code).ok().and_then(NoticeKind::from_code)
    }
}

/// Downlink fields; the discriminant is the CBOR key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DField {
    Type = 0,
    Stored = 1,
    Notice = 2,
    Alarm = 3,
}

impl DField {
    const ALL: [DField; 4] = [DField::Type, DField::Stored, DField::Notice, DField::Alarm];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            DField::Type => "type",
            DField::Stored => "stored",
            DField::Notice => "notice",
            DField::Alarm => "alarm",
        }
    }

    pub(crate) const fn key(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub(crate) fn from_key(key: i128) -> Option<Self> {
        Self::ALL.into_iter().find(|f| i128::from(f.key()) == key)
    }
}

/// Checks a `[first, last]` pair whose seqs were read in range.
pub(crate) fn pair(first: u64, last: u64) -> Result<(u64, u64), DecodeError> {
    if first > last {
        return Err(DecodeError::invalid(
            DField::Stored.name(),
            "a range's first seq is above its last",
        ));
    }
    Ok((first, last))
}

pub(crate) const TOO_MANY_RANGES: &str = "holds more than 16 ranges";
pub(crate) const NOT_A_PAIR: &str = "each range must be a [first, last] pair";

/// The downlink fields as they are decoded, in whatever order they come.
#[derive(Default)]
pub(crate) struct RawDownlink {
    seen: u8,
    ty: Option<DownlinkType>,
    stored: Option<AckRanges>,
    notice: Option<NoticeKind>,
    alarm: Option<u64>,
}

impl RawDownlink {
    /// Records that `field` is present; fails on a duplicate.
    pub(crate) fn mark(&mut self, field: DField) -> Result<(), DecodeError> {
        let bit = 1 << field.key();
        if self.seen & bit != 0 {
            return Err(DecodeError::duplicate(field.name()));
        }
        self.seen |= bit;
        Ok(())
    }

    /// Reads a scalar field (everything but `stored`).
    pub(crate) fn set<S: Source>(&mut self, field: DField, src: &mut S) -> Result<(), DecodeError> {
        let name = field.name();
        match field {
            DField::Type => self.ty = Some(src.enumerated(name)?),
            DField::Notice => self.notice = Some(src.enumerated(name)?),
            DField::Alarm => self.alarm = Some(int_field(src, name, u64::MIN, u64::MAX)?),
            // Read by the encoding's own array code, then handed to `set_stored`.
            DField::Stored => {}
        }
        Ok(())
    }

    pub(crate) fn set_stored(&mut self, ranges: AckRanges) {
        self.stored = Some(ranges);
    }

    pub(crate) fn finish(self) -> Result<Downlink, DecodeError> {
        let ty = self
            .ty
            .ok_or(DecodeError::missing("type", Because::Always))?;
        let owner = Owner::DownlinkType(ty.as_str());
        let allowed: &[DField] = match ty {
            DownlinkType::Ack => &[DField::Type, DField::Stored],
            DownlinkType::Notice => &[DField::Type, DField::Notice, DField::Alarm],
        };
        if let Some(f) = DField::ALL
            .into_iter()
            .find(|f| self.seen & (1 << f.key()) != 0 && !allowed.contains(f))
        {
            return Err(DecodeError::not_allowed(f.name(), owner));
        }
        let missing =
            |f: DField| DecodeError::missing(f.name(), Because::DownlinkType(ty.as_str()));
        Ok(match ty {
            DownlinkType::Ack => Downlink::Ack(self.stored.ok_or_else(|| missing(DField::Stored))?),
            DownlinkType::Notice => Downlink::Notice(Notice {
                kind: self.notice.ok_or_else(|| missing(DField::Notice))?,
                alarm: self.alarm,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(a: &AckRanges) -> heapless::Vec<(u64, u64), 16> {
        a.iter().map(|r| (*r.start(), *r.end())).collect()
    }

    #[test]
    fn merges_adjacent_and_overlapping() {
        let mut a = AckRanges::new();
        assert!(a.insert(5));
        assert!(a.insert(7));
        assert_eq!(ranges(&a), [(5, 5), (7, 7)]);
        assert!(a.insert(6));
        assert_eq!(ranges(&a), [(5, 7)]);
        assert!(a.insert_range(1, 4));
        assert_eq!(ranges(&a), [(1, 7)]);
        assert!(a.insert_range(10, 20));
        assert!(a.insert_range(3, 12));
        assert_eq!(ranges(&a), [(1, 20)]);
        assert!(a.insert_range(9, 2)); // empty
        assert_eq!(ranges(&a), [(1, 20)]);
        assert!(a.contains(1) && a.contains(20) && !a.contains(21) && !a.contains(0));
        assert!(a.insert(u64::MAX));
        assert!(a.insert(u64::MAX - 1));
        assert_eq!(ranges(&a), [(1, 20), (u64::MAX - 1, u64::MAX)]);
    }

    #[test]
    fn overflow_drops_the_lowest() {
        let mut a = AckRanges::new();
        for i in 0..16 {
            assert!(a.insert(10 + 2 * i));
        }
        assert_eq!(a.len(), 16);
        assert!(!a.insert(100));
        assert_eq!(a.len(), 16);
        assert!(!a.contains(10) && a.contains(12) && a.contains(100));
        // The new range is itself the lowest: it is the one dropped.
        assert!(!a.insert(1));
        assert!(!a.contains(1));
        // Filling a gap needs no more room.
        assert!(a.insert(13));
        assert_eq!(a.len(), 15);
    }
}
