//! CBOR (RFC 8949) on top of `minicbor`'s low-level encoder and decoder.
//!
//! Messages are definite-length maps with small unsigned integer keys. The encoder writes
//! the shortest form of every integer and length, floats at a fixed width per field (`f64`
//! for `lat`/`lon`, `f32` for `accuracy_m`), and keys in ascending order, so the same value
//! always gives the same bytes. The decoder accepts any key order and any integer or float
//! width, and refuses indefinite lengths, tags, unknown and duplicate keys, and trailing bytes.

use minicbor::data::Type;
use minicbor::decode::Decoder;
use minicbor::encode::write::Cursor;
use minicbor::encode::Encoder;

use crate::error::{DecodeError, EncodeError};
use crate::source::{in_range, Enumerated, Source, Text};

pub(crate) type Writer<'a> = Encoder<Cursor<&'a mut [u8]>>;

pub(crate) fn writer(buf: &mut [u8]) -> Writer<'_> {
    Encoder::new(Cursor::new(buf))
}

/// Bytes written so far.
pub(crate) fn written(w: &Writer<'_>) -> usize {
    w.writer().position()
}

/// The only way writing to a slice fails is running out of room.
pub(crate) fn full<E>(_: minicbor::encode::Error<E>) -> EncodeError {
    EncodeError::BufferTooSmall
}

pub(crate) struct Reader<'b> {
    d: Decoder<'b>,
}

impl<'b> Reader<'b> {
    pub(crate) fn new(payload: &'b [u8]) -> Self {
        Self {
            d: Decoder::new(payload),
        }
    }

    fn malformed(&self, e: &minicbor::decode::Error) -> DecodeError {
        let at = e.position().unwrap_or(self.d.position());
        if e.is_end_of_input() {
            DecodeError::cbor(at, "unexpected end of input")
        } else {
            DecodeError::cbor(at, "malformed data item")
        }
    }

    fn datatype(&self) -> Result<Type, DecodeError> {
        self.d.datatype().map_err(|e| self.malformed(&e))
    }

    /// The number of entries of the map that must come next.
    pub(crate) fn map(&mut self) -> Result<u64, DecodeError> {
        let at = self.d.position();
        match self.datatype()? {
            Type::Map => {}
            Type::MapIndef => return Err(DecodeError::cbor(at, "indefinite-length map")),
            _ => return Err(DecodeError::cbor(at, "expected a map")),
        }
        match self.d.map() {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(DecodeError::cbor(at, "indefinite-length map")),
            Err(e) => Err(self.malformed(&e)),
        }
    }

    /// The number of elements of the array that must come next, or a type error for `field`.
    pub(crate) fn array(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<u64, DecodeError> {
        let at = self.d.position();
        match self.datatype()? {
            Type::Array => {}
            Type::ArrayIndef => return Err(DecodeError::cbor(at, "indefinite-length array")),
            _ => return Err(DecodeError::invalid_type(field, expected)),
        }
        match self.d.array() {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(DecodeError::cbor(at, "indefinite-length array")),
            Err(e) => Err(self.malformed(&e)),
        }
    }

    /// A map key: an integer (only small unsigned ones are known, but any integer key is read
    /// so that the "unknown key" message can quote it).
    pub(crate) fn key(&mut self) -> Result<i128, DecodeError> {
        let at = self.d.position();
        if !is_integer(self.datatype()?) {
            return Err(DecodeError::cbor(at, "map keys must be integers"));
        }
        self.d.int().map(i128::from).map_err(|e| self.malformed(&e))
    }

    /// Nothing may follow the message.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        let at = self.d.position();
        if at != self.d.input().len() {
            return Err(DecodeError::cbor(at, "trailing bytes after the map"));
        }
        Ok(())
    }

    /// A half-precision float; `minicbor` only reads these with its `half` feature, and the
    /// conversion is short enough not to need another crate.
    fn f16(&mut self) -> Result<f32, DecodeError> {
        let at = self.d.position();
        let Some(&[hi, lo]) = self.d.input().get(at + 1..at + 3) else {
            return Err(DecodeError::cbor(at, "unexpected end of input"));
        };
        let h = u16::from_be_bytes([hi, lo]);
        self.d.set_position(at + 3);
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = u32::from((h >> 10) & 0x1f);
        let mant = u32::from(h & 0x3ff);
        let magnitude = match exp {
            // Subnormal: mant * 2^-24, exact in f32.
            0 => mant as f32 / 16_777_216.0,
            31 if mant == 0 => f32::INFINITY,
            31 => f32::NAN,
            _ => f32::from_bits(((exp + 127 - 15) << 23) | (mant << 13)),
        };
        Ok(sign * magnitude)
    }

    fn number(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        let ty = self.datatype()?;
        let v = match ty {
            Type::F16 => self.f16().map(f64::from)?,
            Type::F32 | Type::F64 => self.d.f64().map_err(|e| self.malformed(&e))?,
            t if is_integer(t) => self
                .d
                .int()
                .map(|i| i128::from(i) as f64)
                .map_err(|e| self.malformed(&e))?,
            _ => return Err(DecodeError::invalid_type(field, "a number")),
        };
        Ok(v)
    }
}

fn is_integer(t: Type) -> bool {
    matches!(
        t,
        Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int
    )
}

impl Source for Reader<'_> {
    fn integer(&mut self, field: &'static str, min: i128, max: i128) -> Result<i128, DecodeError> {
        if !is_integer(self.datatype()?) {
            return Err(DecodeError::invalid_type(field, "an integer"));
        }
        let v = self
            .d
            .int()
            .map(i128::from)
            .map_err(|e| self.malformed(&e))?;
        in_range(field, v, min, max)
    }

    fn float(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        self.number(field)
    }

    fn float32(&mut self, field: &'static str) -> Result<f32, DecodeError> {
        match self.datatype()? {
            Type::F16 => self.f16(),
            Type::F32 => self.d.f32().map_err(|e| self.malformed(&e)),
            // Nearest f32; the encoder itself always writes f32 for these fields.
            _ => self.number(field).map(|v| v as f32),
        }
    }

    fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        if self.datatype()? != Type::Bool {
            return Err(DecodeError::invalid_type(field, "a boolean"));
        }
        self.d.bool().map_err(|e| self.malformed(&e))
    }

    fn text<const N: usize>(&mut self, field: &'static str) -> Result<Text<N>, DecodeError> {
        let at = self.d.position();
        match self.datatype()? {
            Type::String => {}
            Type::StringIndef => return Err(DecodeError::cbor(at, "indefinite-length text")),
            _ => return Err(DecodeError::invalid_type(field, "a text string")),
        }
        let s = self.d.str().map_err(|e| {
            if e.is_end_of_input() {
                DecodeError::cbor(at, "unexpected end of input")
            } else {
                DecodeError::cbor(at, "text is not valid UTF-8")
            }
        })?;
        Ok(match heapless::String::try_from(s) {
            Ok(s) => Text::Fits(s),
            Err(_) => Text::TooLong,
        })
    }

    fn enumerated<E: Enumerated>(&mut self, field: &'static str) -> Result<E, DecodeError> {
        if !is_integer(self.datatype()?) {
            return Err(DecodeError::invalid_type(field, "an integer code"));
        }
        let code = self
            .d
            .int()
            .map(i128::from)
            .map_err(|e| self.malformed(&e))?;
        E::from_code(code).ok_or_else(|| E::unknown_code(field, code))
    }
}
