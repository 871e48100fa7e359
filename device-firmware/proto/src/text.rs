//! Fixed-capacity, validated strings: [`DeviceId`], [`Id`] and [`Memo`].
//!
//! They own their bytes (no lifetime, no allocation) so that an [`Event`](crate::Event) can be
//! decoded from a payload with JSON escapes, kept in a device's store-and-forward queue and
//! sent again. Each can only hold a value that passes its rule; the rules are the wire
//! format's, so a value built here always encodes, and decodes back, unchanged.

use core::fmt;
use core::hash::{Hash, Hasher};
use core::ops::Deref;

macro_rules! bounded_text {
    (
        $(#[$doc:meta])*
        $name:ident, capacity = $cap:expr, len = $len:ty, min = $min:expr, valid_char = $valid:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(heapless::String<{ $cap }, $len>);

        impl $name {
            /// The longest value, in bytes.
            pub const MAX_LEN: usize = $cap;

            /// Whether `s` follows this type's rule.
            pub fn is_valid(s: &str) -> bool {
                let valid_char: fn(char) -> bool = $valid;
                (($min)..=$cap).contains(&s.len()) && s.chars().all(valid_char)
            }

            /// `Some` when `s` follows this type's rule.
            pub fn new(s: &str) -> Option<Self> {
                if !Self::is_valid(s) {
                    return None;
                }
                heapless::String::try_from(s).ok().map(Self)
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl core::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        // By hand, so that it agrees with `Borrow<str>`.
        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl<'a> TryFrom<&'a str> for $name {
            type Error = &'a str;
            /// Gives the input back when it does not follow the rule.
            fn try_from(s: &'a str) -> Result<Self, &'a str> {
                Self::new(s).ok_or(s)
            }
        }
    };
}

bounded_text! {
    /// A device's identity: 1 to 64 characters of `[A-Za-z0-9_-]`. It is the device's MQTT
    /// username and client id and the middle of its topics (see [`topic`](crate::topic)).
    DeviceId, capacity = 64, len = u8, min = 1, valid_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

bounded_text! {
    /// A reference carried in an event (`visit`, `person`, `tag`, `caller_id`, `reason`):
    /// 1 to 64 characters of `[A-Za-z0-9._:+-]`.
    Id, capacity = 64, len = u8, min = 1, valid_char = valid_id_char
}

bounded_text! {
    /// Free text (`memo`): at most 500 bytes of UTF-8, any character but U+0000 (JSON escapes
    /// the others as needed). May be empty. NUL is refused because the server keeps events in
    /// PostgreSQL, whose `text` and `jsonb` cannot hold it: an event carrying one could never
    /// be stored, so it is refused where every other bad value is, at decoding.
    Memo, capacity = 500, len = u16, min = 0, valid_char = |c: char| c != '\0'
}

fn valid_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '+' | '-')
}

/// The rule texts quoted in error messages, kept next to the rules.
pub(crate) const ID_RULE: &str = "must be 1 to 64 characters of [A-Za-z0-9._:+-]";
pub(crate) const MEMO_RULE: &str = "must be at most 500 bytes of UTF-8";
pub(crate) const MEMO_NUL_RULE: &str = "must not contain the character U+0000 (NUL)";

/// Writes a float the way the JSON encoder does: the shortest text that reads back as the same
/// value, with an exponent only for very small or very large magnitudes (so that a subnormal
/// does not turn into 300 zeros).
pub(crate) fn write_float<W: fmt::Write>(w: &mut W, x: f64) -> fmt::Result {
    if x != 0.0 && x.is_finite() && !(1e-5..1e16).contains(&x.abs()) {
        write!(w, "{x:e}")
    } else {
        write!(w, "{x}")
    }
}

/// [`write_float`] for an `f32`, whose shortest text differs from its `f64` widening's.
pub(crate) fn write_float32<W: fmt::Write>(w: &mut W, x: f32) -> fmt::Result {
    if x != 0.0 && x.is_finite() && !(1e-5..1e16).contains(&x.abs()) {
        write!(w, "{x:e}")
    } else {
        write!(w, "{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(Id::new("visit-2026-11-01:07:30+1_a.b").is_some());
        assert!(Id::new("").is_none());
        assert!(Id::new("a b").is_none());
        assert!(Id::new(&"x".repeat(64)).is_some());
        assert!(Id::new(&"x".repeat(65)).is_none());
        assert!(DeviceId::new("hub-0001_A").is_some());
        assert!(DeviceId::new("hub.1").is_none());
        assert!(DeviceId::new("a/b").is_none());
        assert!(DeviceId::new("+").is_none());
        assert!(Memo::new("").is_some());
        assert!(Memo::new(&"é".repeat(250)).is_some());
        assert!(Memo::new(&"é".repeat(251)).is_none());
        assert!(Memo::new("\u{1}\u{7f}").is_some());
        assert!(Memo::new("a\0b").is_none());
    }
}
