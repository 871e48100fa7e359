//! A small JSON writer and reader, just enough for this wire format: one flat object whose
//! values are numbers, strings and booleans, plus the ack's array of `[first, last]` pairs.
//!
//! Hand-written rather than serde-based because the decoder must accept fields in any order
//! (the event kind may come last), refuse unknown and duplicate fields by name, unescape strings
//! into fixed buffers, and say at which byte the text stopped being JSON, all without
//! allocating. It never recurses, so no payload can exhaust the stack.

use core::fmt;

use crate::error::{DecodeError, EncodeError, Num, Snippet};
use crate::source::{in_range, Enumerated, Source, Text};
use crate::text::{write_float, write_float32};

/// Writes into a caller's buffer and remembers how much was written.
pub(crate) struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Out<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.len + bytes.len();
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(EncodeError::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Writes a formatted value. `core::fmt` only fails here when the buffer is full.
    fn fmt(&mut self, args: fmt::Arguments<'_>) -> Result<(), EncodeError> {
        fmt::Write::write_fmt(self, args).map_err(|_| EncodeError::BufferTooSmall)
    }
}

impl fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// Writes one JSON object, a key at a time.
pub(crate) struct ObjectWriter<'o, 'a> {
    out: &'o mut Out<'a>,
    empty: bool,
}

impl<'o, 'a> ObjectWriter<'o, 'a> {
    pub(crate) fn begin(out: &'o mut Out<'a>) -> Result<Self, EncodeError> {
        out.put(b"{")?;
        Ok(Self { out, empty: true })
    }

    /// Writes `"name":` (after a comma when needed) and returns the output for the value.
    pub(crate) fn key(&mut self, name: &str) -> Result<&mut Out<'a>, EncodeError> {
        if !self.empty {
            self.out.put(b",")?;
        }
        self.empty = false;
        write_string(self.out, name)?;
        self.out.put(b":")?;
        Ok(self.out)
    }

    pub(crate) fn end(self) -> Result<(), EncodeError> {
        self.out.put(b"}")
    }
}

pub(crate) fn write_u64(out: &mut Out<'_>, v: u64) -> Result<(), EncodeError> {
    out.fmt(format_args!("{v}"))
}

pub(crate) fn write_i64(out: &mut Out<'_>, v: i64) -> Result<(), EncodeError> {
    out.fmt(format_args!("{v}"))
}

pub(crate) fn write_bool(out: &mut Out<'_>, v: bool) -> Result<(), EncodeError> {
    out.put(if v { b"true" } else { b"false" })
}

/// Callers only pass finite values (the value types refuse NaN and infinities).
pub(crate) fn write_f64(out: &mut Out<'_>, v: f64) -> Result<(), EncodeError> {
    write_float(out, v).map_err(|_| EncodeError::BufferTooSmall)
}

pub(crate) fn write_f32(out: &mut Out<'_>, v: f32) -> Result<(), EncodeError> {
    write_float32(out, v).map_err(|_| EncodeError::BufferTooSmall)
}

/// Writes a JSON string with the fewest escapes: `"` and `\`, and control characters (as
/// `\n`, `\r`, `\t`, `\b`, `\f`, or `\u00XX`). Everything else, non-ASCII included, is written
/// as UTF-8.
pub(crate) fn write_string(out: &mut Out<'_>, s: &str) -> Result<(), EncodeError> {
    out.put(b"\"")?;
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.put(&bytes[run..i])?;
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ])?;
        } else {
            out.put(short)?;
        }
        run = i + 1;
    }
    out.put(&bytes[run..])?;
    out.put(b"\"")
}

/// Reads one JSON text. Positions in errors are byte offsets into the payload.
pub(crate) struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let text = core::str::from_utf8(payload)
            .map_err(|e| DecodeError::json(e.valid_up_to(), "UTF-8 text"))?;
        Ok(Self { text, pos: 0 })
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn error(&self, expected: &'static str) -> DecodeError {
        DecodeError::json(self.pos, expected)
    }

    pub(crate) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then consumes `byte` or fails expecting `what`.
    pub(crate) fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.peek() != Some(byte) {
            return Err(self.error(what));
        }
        self.pos += 1;
        Ok(())
    }

    /// Skips whitespace and consumes `byte` if it is next.
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    pub(crate) fn begin_object(&mut self) -> Result<(), DecodeError> {
        self.expect(b'{', "`{`")
    }

    /// The next key of the object begun with [`begin_object`](Self::begin_object), with the
    /// reader left at its value, or `None` after the closing `}`. `first` tracks whether a
    /// comma is due.
    pub(crate) fn next_key(&mut self, first: &mut bool) -> Result<Option<Snippet>, DecodeError> {
        self.skip_ws();
        if self.eat(b'}') {
            // `{"a":1,}` is not JSON: after a comma a key must follow.
            return Ok(None);
        }
        if !*first {
            self.expect(b',', "`,` or `}`")?;
            self.skip_ws();
        }
        *first = false;
        if self.peek() != Some(b'"') {
            return Err(self.error("a field name in double quotes"));
        }
        let key = self.snippet()?;
        self.expect(b':', "`:`")?;
        self.skip_ws();
        Ok(Some(key))
    }

    /// Only whitespace may follow the value.
    pub(crate) fn finish(&mut self) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.pos != self.text.len() {
            return Err(self.error("the end of the payload"));
        }
        Ok(())
    }

    /// The error for a value that is not of the expected type: a type error when a JSON
    /// value starts here, a syntax error otherwise.
    fn mismatch(&self, field: &'static str, expected: &'static str) -> DecodeError {
        match self.peek() {
            Some(b'"' | b'{' | b'[' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                DecodeError::invalid_type(field, expected)
            }
            _ => self.error("a value"),
        }
    }

    fn literal(&mut self, word: &str) -> bool {
        let found = self
            .bytes()
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word.as_bytes()));
        if found {
            self.pos += word.len();
        }
        found
    }

    /// A number token and whether it is an integer (no fraction, no exponent).
    fn number(&mut self) -> Result<(&'a str, bool), DecodeError> {
        let start = self.pos;
        let digits = |r: &mut Self| {
            let from = r.pos;
            while matches!(r.peek(), Some(b'0'..=b'9')) {
                r.pos += 1;
            }
            if r.pos == from {
                Err(r.error("a digit"))
            } else {
                Ok(())
            }
        };
        let mut integer = true;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else {
            digits(self)?;
        }
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            digits(self)?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            digits(self)?;
        }
        Ok((self.text.get(start..self.pos).unwrap_or(""), integer))
    }

    fn number_token(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<(&'a str, bool), DecodeError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.mismatch(field, expected)),
        }
    }

    /// Reads a string, handing its unescaped text to `push` piece by piece.
    fn string_with(&mut self, mut push: impl FnMut(&str)) -> Result<(), DecodeError> {
        self.pos += 1; // the opening quote, checked by the caller
        let mut run = self.pos;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("a closing `\"`"));
            };
            match b {
                b'"' | b'\\' => {
                    // Both are ASCII, so `run..pos` falls on character boundaries.
                    push(self.text.get(run..self.pos).unwrap_or(""));
                    self.pos += 1;
                    if b == b'"' {
                        return Ok(());
                    }
                    let c = self.escape()?;
                    push(c.encode_utf8(&mut [0; 4]));
                    run = self.pos;
                }
                0x00..=0x1f => return Err(self.error("an escape instead of a control character")),
                _ => self.pos += 1,
            }
        }
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> Result<char, DecodeError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let at = self.pos;
                let unit = self.hex4()?;
                let code = match unit {
                    0xd800..=0xdbff => {
                        if !self.literal("\\u") {
                            return Err(self.error("`\\u` and a low surrogate"));
                        }
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(DecodeError::json(self.pos - 4, "a low surrogate"));
                        }
                        0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                    }
                    0xdc00..=0xdfff => return Err(DecodeError::json(at, "a high surrogate first")),
                    _ => unit,
                };
                return char::from_u32(code).ok_or(DecodeError::json(at, "a Unicode scalar value"));
            }
            _ => return Err(self.error("an escape: one of \" \\ / b f n r t u")),
        };
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, DecodeError> {
        let mut v = 0;
        for _ in 0..4 {
            let d = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.error("four hex digits"))?;
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }

    /// A string kept as a [`Snippet`] (field names, enumerated values).
    fn snippet(&mut self) -> Result<Snippet, DecodeError> {
        let mut s = Snippet::empty();
        self.string_with(|piece| s.push_str(piece))?;
        Ok(s)
    }

    /// Starts an array value: consumes `[` or fails with a type error for `field`.
    pub(crate) fn begin_array(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<(), DecodeError> {
        if self.peek() != Some(b'[') {
            return Err(self.mismatch(field, expected));
        }
        self.pos += 1;
        Ok(())
    }

    /// Between array elements: `true` if another element follows (after its comma), `false`
    /// after the closing `]`.
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Result<bool, DecodeError> {
        if self.eat(b']') {
            return Ok(false);
        }
        if !*first {
            self.expect(b',', "`,` or `]`")?;
        }
        *first = false;
        self.skip_ws();
        Ok(true)
    }
}

impl Source for Reader<'_> {
    fn integer(&mut self, field: &'static str, min: i128, max: i128) -> Result<i128, DecodeError> {
        let (token, integer) = self.number_token(field, "an integer")?;
        if !integer {
            return Err(DecodeError::invalid_type(field, "an integer"));
        }
        match token.parse::<i128>() {
            Ok(v) => in_range(field, v, min, max),
            // More digits than an i128 holds.
            Err(_) => Err(DecodeError::out_of_range(
                field,
                Num::big(token),
                Num::int(min),
                Num::int(max),
            )),
        }
    }

    fn float(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        let at = self.pos;
        let (token, _) = self.number_token(field, "a number")?;
        token.parse().map_err(|_| DecodeError::json(at, "a number"))
    }

    fn float32(&mut self, field: &'static str) -> Result<f32, DecodeError> {
        // Parsed straight to f32: going through f64 could round twice.
        let at = self.pos;
        let (token, _) = self.number_token(field, "a number")?;
        token.parse().map_err(|_| DecodeError::json(at, "a number"))
    }

    fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        if self.literal("true") {
            Ok(true)
        } else if self.literal("false") {
            Ok(false)
        } else {
            Err(self.mismatch(field, "true or false"))
        }
    }

    fn text<const N: usize>(&mut self, field: &'static str) -> Result<Text<N>, DecodeError> {
        if self.peek() != Some(b'"') {
            return Err(self.mismatch(field, "a string"));
        }
        let mut s = heapless::String::<N, u16>::new();
        let mut fits = true;
        self.string_with(|piece| fits = fits && s.push_str(piece).is_ok())?;
        Ok(if fits { Text::Fits(s) } else { Text::TooLong })
    }

    fn enumerated<E: Enumerated>(&mut self, field: &'static str) -> Result<E, DecodeError> {
        if self.peek() != Some(b'"') {
            return Err(self.mismatch(field, "a string"));
        }
        let name = self.snippet()?;
        match E::from_name(name.as_str()) {
            Some(v) if !name.is_cut() => Ok(v),
            _ => Err(E::unknown_name(field, name)),
        }
    }
}
