//! Errors: why a payload or a value was refused ([`DecodeError`]), and why an encoder stopped
//! ([`EncodeError`]).
//!
//! A [`DecodeError`] ends up in the server's dead-letter table, read by a person who has the
//! raw bytes beside it, so its `Display` names the field and says what is wrong with it, and
//! [`DecodeError::reason_code`] gives a stable machine-readable code for metrics and filters.
//! It carries no allocation: names quoted from a payload are kept in a short fixed buffer.

use core::fmt;

use crate::event::{CheckMethod, EventKind};
use crate::text::write_float;

/// Every value [`DecodeError::reason_code`] can return, for metric labels and documentation.
pub const REASON_CODES: [&str; 12] = [
    "oversize",
    "unknown_encoding",
    "invalid_json",
    "invalid_cbor",
    "unknown_kind",
    "unknown_field",
    "duplicate_field",
    "missing_field",
    "invalid_type",
    "out_of_range",
    "invalid_value",
    "time_in_future",
];

/// The output buffer given to an encoder is too small.
///
/// Every valid [`Event`](crate::Event) encodes in at most
/// [`MAX_EVENT_BYTES`](crate::MAX_EVENT_BYTES) bytes in either encoding, and every
/// [`Downlink`](crate::Downlink) in at most [`MAX_DOWNLINK_BYTES`](crate::MAX_DOWNLINK_BYTES),
/// so a buffer of that size never gives this error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// The encoding did not fit; nothing useful is left in the buffer.
    BufferTooSmall,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Why a payload (or a value given to a validating constructor) was refused.
///
/// `Display` gives one line for a person, naming the field, e.g.
/// ``field `lat`: 123.5 is outside -90..=90``; [`reason_code`](Self::reason_code) gives one of
/// [`REASON_CODES`].
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeError(Problem);

/// Which rule made a field required, for the "missing field" message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Because {
    /// The field is part of every message of this family.
    Always,
    /// The event kind needs it.
    Kind(EventKind),
    /// The check-in method needs it.
    Method(CheckMethod),
    /// Another field that is present needs it (`lat` needs `lon`, `accuracy_m` needs `lat`).
    Partner(&'static str),
    /// The downlink type needs it.
    DownlinkType(&'static str),
}

/// Who a field does not belong to, for the "not allowed" message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Kind(EventKind),
    DownlinkType(&'static str),
}

/// A number quoted in a message, kept small (no `i128`) so that `DecodeError` stays small.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Uint(u64),
    Float(f64),
    /// An integer beyond 64 bits: quoted by its sign and number of digits.
    Big {
        negative: bool,
        digits: u16,
    },
}

impl Num {
    pub(crate) fn int(v: i128) -> Self {
        if let Ok(v) = i64::try_from(v) {
            Num::Int(v)
        } else if let Ok(v) = u64::try_from(v) {
            Num::Uint(v)
        } else {
            let mut digits = 0;
            let mut rest = v.unsigned_abs();
            while rest > 0 {
                digits += 1;
                rest /= 10;
            }
            Num::Big {
                negative: v < 0,
                digits,
            }
        }
    }

    /// For a JSON integer with more digits than an `i128` holds.
    pub(crate) fn big(literal: &str) -> Self {
        let digits = literal.bytes().filter(u8::is_ascii_digit).count();
        Num::Big {
            negative: literal.starts_with('-'),
            digits: u16::try_from(digits).unwrap_or(u16::MAX),
        }
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Int(n) => write!(f, "{n}"),
            Num::Uint(n) => write!(f, "{n}"),
            Num::Float(x) => write_float(f, *x),
            Num::Big {
                negative: false,
                digits,
            } => write!(f, "a {digits}-digit integer"),
            Num::Big {
                negative: true,
                digits,
            } => write!(f, "a {digits}-digit negative integer"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Problem {
    Oversize {
        len: usize,
        max: usize,
    },
    UnknownEncoding {
        first: Option<u8>,
    },
    InvalidJson {
        at: usize,
        expected: &'static str,
    },
    InvalidCbor {
        at: usize,
        problem: &'static str,
    },
    UnknownKind(Snippet),
    UnknownKindCode(Num),
    UnknownField(Snippet),
    UnknownKey(Num),
    NotAllowed {
        field: &'static str,
        owner: Owner,
    },
    Duplicate(&'static str),
    Missing {
        field: &'static str,
        because: Because,
    },
    InvalidType {
        field: &'static str,
        expected: &'static str,
    },
    OutOfRange {
        field: &'static str,
        value: Num,
        min: Num,
        max: Num,
    },
    UnknownValue {
        field: &'static str,
        value: Snippet,
        expected: &'static str,
    },
    UnknownCode {
        field: &'static str,
        code: i128,
        expected: &'static str,
    },
    Invalid {
        field: &'static str,
        rule: &'static str,
    },
    TimeInFuture {
        t: i64,
        now: i64,
        max_future: i64,
    },
}

impl DecodeError {
    /// A stable machine-readable code, one of [`REASON_CODES`].
    pub fn reason_code(&self) -> &'static str {
        match &self.0 {
            Problem::Oversize { .. } => "oversize",
            Problem::UnknownEncoding { .. } => "unknown_encoding",
            Problem::InvalidJson { .. } => "invalid_json",
            Problem::InvalidCbor { .. } => "invalid_cbor",
            Problem::UnknownKind(_) | Problem::UnknownKindCode(_) => "unknown_kind",
            Problem::UnknownField(_) | Problem::UnknownKey(_) | Problem::NotAllowed { .. } => {
                "unknown_field"
            }
            Problem::Duplicate(_) => "duplicate_field",
            Problem::Missing { .. } => "missing_field",
            Problem::InvalidType { .. } => "invalid_type",
            Problem::OutOfRange { .. } => "out_of_range",
            Problem::UnknownValue { .. }
            | Problem::UnknownCode { .. }
            | Problem::Invalid { .. } => "invalid_value",
            Problem::TimeInFuture { .. } => "time_in_future",
        }
    }

    /// The field the problem is about, when there is one (for an unknown JSON field, its name
    /// as far as it was kept).
    pub fn field(&self) -> Option<&str> {
        match &self.0 {
            Problem::Oversize { .. }
            | Problem::UnknownEncoding { .. }
            | Problem::InvalidJson { .. }
            | Problem::InvalidCbor { .. }
            | Problem::UnknownKey(_) => None,
            Problem::UnknownKind(_) | Problem::UnknownKindCode(_) => Some("kind"),
            Problem::UnknownField(name) => Some(name.as_str()),
            Problem::NotAllowed { field, .. }
            | Problem::Duplicate(field)
            | Problem::Missing { field, .. }
            | Problem::InvalidType { field, .. }
            | Problem::OutOfRange { field, .. }
            | Problem::UnknownValue { field, .. }
            | Problem::UnknownCode { field, .. }
            | Problem::Invalid { field, .. } => Some(field),
            Problem::TimeInFuture { .. } => Some("t"),
        }
    }

    /// The byte offset in the payload where a syntax error was found (`invalid_json`,
    /// `invalid_cbor`).
    pub fn byte_offset(&self) -> Option<usize> {
        match &self.0 {
            Problem::InvalidJson { at, .. } | Problem::InvalidCbor { at, .. } => Some(*at),
            _ => None,
        }
    }

    pub(crate) fn oversize(len: usize, max: usize) -> Self {
        Self(Problem::Oversize { len, max })
    }
    pub(crate) fn unknown_encoding(first: Option<u8>) -> Self {
        Self(Problem::UnknownEncoding { first })
    }
    pub(crate) fn json(at: usize, expected: &'static str) -> Self {
        Self(Problem::InvalidJson { at, expected })
    }
    pub(crate) fn cbor(at: usize, problem: &'static str) -> Self {
        Self(Problem::InvalidCbor { at, problem })
    }
    pub(crate) fn unknown_kind(name: Snippet) -> Self {
        Self(Problem::UnknownKind(name))
    }
    pub(crate) fn unknown_kind_code(code: i128) -> Self {
        Self(Problem::UnknownKindCode(Num::int(code)))
    }
    pub(crate) fn unknown_field(name: Snippet) -> Self {
        Self(Problem::UnknownField(name))
    }
    pub(crate) fn unknown_key(key: i128) -> Self {
        Self(Problem::UnknownKey(Num::int(key)))
    }
    pub(crate) fn not_allowed(field: &'static str, owner: Owner) -> Self {
        Self(Problem::NotAllowed { field, owner })
    }
    pub(crate) fn duplicate(field: &'static str) -> Self {
        Self(Problem::Duplicate(field))
    }
    pub(crate) fn missing(field: &'static str, because: Because) -> Self {
        Self(Problem::Missing { field, because })
    }
    pub(crate) fn invalid_type(field: &'static str, expected: &'static str) -> Self {
        Self(Problem::InvalidType { field, expected })
    }
    pub(crate) fn out_of_range(field: &'static str, value: Num, min: Num, max: Num) -> Self {
        Self(Problem::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
    pub(crate) fn unknown_value(
        field: &'static str,
        value: Snippet,
        expected: &'static str,
    ) -> Self {
        Self(Problem::UnknownValue {
            field,
            value,
            expected,
        })
    }
    pub(crate) fn unknown_code(field: &'static str, code: i128, expected: &'static str) -> Self {
        Self(Problem::UnknownCode {
            field,
            code,
            expected,
        })
    }
    pub(crate) fn invalid(field: &'static str, rule: &'static str) -> Self {
        Self(Problem::Invalid { field, rule })
    }
    pub(crate) fn time_in_future(t: i64, now: i64, max_future: i64) -> Self {
        Self(Problem::TimeInFuture { t, now, max_future })
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Problem::Oversize { len, max } => {
                write!(f, "payload is {len} bytes, over the {max}-byte limit")
            }
            Problem::UnknownEncoding { first: None } => {
                f.write_str("empty payload: expected a JSON object or a CBOR map")
            }
            Problem::UnknownEncoding { first: Some(b) } => write!(
                f,
                "unknown encoding: payload starts with byte 0x{b:02x}, \
                 expected a JSON object (`{{`) or a CBOR map (0xa0..=0xbf)"
            ),
            Problem::InvalidJson { at, expected } => {
                write!(f, "invalid JSON at byte {at}: expected {expected}")
            }
            Problem::InvalidCbor { at, problem } => {
                write!(f, "invalid CBOR at byte {at}: {problem}")
            }
            Problem::UnknownKind(name) => write!(f, "unknown kind `{name}`"),
            Problem::UnknownKindCode(code) => write!(f, "unknown kind code {code}"),
            Problem::UnknownField(name) => write!(f, "unknown field `{name}`"),
            Problem::UnknownKey(key) => write!(f, "unknown field key {key}"),
            Problem::NotAllowed {
                field,
                owner: Owner::Kind(kind),
            } => {
                write!(
                    f,
                    "field `{field}` does not belong to kind `{}`",
                    kind.as_str()
                )
            }
            Problem::NotAllowed {
                field,
                owner: Owner::DownlinkType(ty),
            } => {
                write!(f, "field `{field}` does not belong to type `{ty}`")
            }
            Problem::Duplicate(field) => write!(f, "duplicate field `{field}`"),
            Problem::Missing { field, because } => {
                write!(f, "missing field `{field}`")?;
                match because {
                    Because::Always => Ok(()),
                    Because::Kind(kind) => write!(f, " for kind `{}`", kind.as_str()),
                    Because::Method(m) => write!(f, " for method `{}`", m.as_str()),
                    Because::Partner(other) => write!(f, ", which `{other}` needs"),
                    Because::DownlinkType(ty) => write!(f, " for type `{ty}`"),
                }
            }
            Problem::InvalidType { field, expected } => {
                write!(f, "field `{field}`: expected {expected}")
            }
            Problem::OutOfRange {
                field,
                value,
                min,
                max,
            } => {
                write!(f, "field `{field}`: {value} is outside {min}..={max}")
            }
            Problem::UnknownValue {
                field,
                value,
                expected,
            } => {
                write!(
                    f,
                    "field `{field}`: unknown value `{value}`, expected {expected}"
                )
            }
            Problem::UnknownCode {
                field,
                code,
                expected,
            } => {
                write!(
                    f,
                    "field `{field}`: unknown code {code}, expected {expected}"
                )
            }
            Problem::Invalid { field, rule } => write!(f, "field `{field}`: {rule}"),
            Problem::TimeInFuture { t, now, max_future } => write!(
                f,
                "field `t`: {t} is {} ms ahead of the receiver's clock ({now}), \
                 more than the {max_future} ms allowed",
                i128::from(*t) - i128::from(*now)
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// A short piece of text quoted from a payload (an unknown field or kind name), cut to fit a
/// fixed buffer; `Display` escapes control characters and backticks so that a hostile name
/// cannot break the message it is quoted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snippet {
    text: heapless::String<{ Snippet::CAPACITY }, u8>,
    cut: bool,
}

impl Snippet {
    const CAPACITY: usize = 48;

    pub(crate) fn empty() -> Self {
        Self {
            text: heapless::String::new(),
            cut: false,
        }
    }

    pub(crate) fn new(s: &str) -> Self {
        let mut snippet = Self::empty();
        snippet.push_str(s);
        snippet
    }

    /// Appends as much of `s` as fits, whole characters only.
    pub(crate) fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            self.push(c);
        }
    }

    pub(crate) fn push(&mut self, c: char) {
        if self.cut || self.text.push(c).is_err() {
            self.cut = true;
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        self.text.as_str()
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.cut
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.text.chars() {
            if c == '`' {
                f.write_str("\\`")?;
            } else if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if self.cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_small() {
        // Returned by value through every decoder on the device: keep it small.
        assert!(
            core::mem::size_of::<DecodeError>() <= 96,
            "{}",
            core::mem::size_of::<DecodeError>()
        );
    }

    #[test]
    fn big_numbers_are_described() {
        assert_eq!(
            std::format!("{}", Num::int(-(1i128 << 64))),
            "a 20-digit negative integer"
        );
        assert_eq!(
            std::format!("{}", Num::int(u64::MAX.into())),
            "18446744073709551615"
        );
        assert_eq!(
            std::format!(
                "{}",
                Num::big("-123456789012345678901234567890123456789012")
            ),
            "a 42-digit negative integer"
        );
    }
}
