//! What the message decoders need from an encoding: typed field values, each checked where it
//! is read so that an error can name the field. `json::Reader` and `cbor::Reader` implement
//! [`Source`]; the event and downlink decoders are written once against it.

use crate::error::{DecodeError, Num, Snippet};

/// A closed set of names on the wire: a name in JSON, a small code in CBOR.
pub(crate) trait Enumerated: Sized {
    /// For the message when the value is unknown, e.g. "one of gps, tag, phone, manual".
    const EXPECTED: &'static str;
    fn from_name(name: &str) -> Option<Self>;
    fn from_code(code: i128) -> Option<Self>;
    fn unknown_name(field: &'static str, name: Snippet) -> DecodeError {
        DecodeError::unknown_value(field, name, Self::EXPECTED)
    }
    fn unknown_code(field: &'static str, code: i128) -> DecodeError {
        DecodeError::unknown_code(field, code, Self::EXPECTED)
    }
}

/// Text read from a payload into a fixed buffer, or `TooLong` when it did not fit.
pub(crate) enum Text<const N: usize> {
    Fits(heapless::String<N, u16>),
    TooLong,
}

/// Reads the value of the field whose key was just read.
pub(crate) trait Source {
    /// An integer in `min..=max`.
    fn integer(&mut self, field: &'static str, min: i128, max: i128) -> Result<i128, DecodeError>;
    /// A number (integers are accepted), unchecked.
    fn float(&mut self, field: &'static str) -> Result<f64, DecodeError>;
    /// A number read as the nearest `f32`, unchecked.
    fn float32(&mut self, field: &'static str) -> Result<f32, DecodeError>;
    fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeError>;
    fn text<const N: usize>(&mut self, field: &'static str) -> Result<Text<N>, DecodeError>;
    fn enumerated<E: Enumerated>(&mut self, field: &'static str) -> Result<E, DecodeError>;
}

/// The range check shared by both encodings' `integer`.
pub(crate) fn in_range(
    field: &'static str,
    v: i128,
    min: i128,
    max: i128,
) -> Result<i128, DecodeError> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(DecodeError::out_of_range(
            field,
            Num::int(v),
            Num::int(min),
            Num::int(max),
        ))
    }
}

/// Reads an integer field straight into its Rust type. The range is the type's own unless
/// narrower bounds are given.
pub(crate) fn int_field<T, S>(
    src: &mut S,
    field: &'static str,
    min: T,
    max: T,
) -> Result<T, DecodeError>
where
    S: Source,
    T: Copy + Into<i128> + TryFrom<i128>,
{
    let v = src.integer(field, min.into(), max.into())?;
    // In range, so the conversion holds; the fallback only keeps this panic-free.
    T::try_from(v).map_err(|_| {
        DecodeError::out_of_range(
            field,
            Num::int(v),
            Num::int(min.into()),
            Num::int(max.into()),
        )
    })
}

/// A float field checked against `min..=max` (NaN is never in range).
pub(crate) fn float_field(
    field: &'static str,
    v: f64,
    min: f64,
    max: f64,
) -> Result<f64, DecodeError> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(DecodeError::out_of_range(
            field,
            Num::Float(v),
            Num::Float(min),
            Num::Float(max),
        ))
    }
}
