//! A small, dependency-free CBOR (RFC 8949) encoder and decoder.
//!
//! Used by the RouteIQ LLM extension ABI ([`crate::llm`]), but general
//! purpose. This module is self-contained (no `crate::` references).
//!
//! Data model: [`Value`]. Decoding:
//! * definite lengths only; an indefinite-length item (additional info 31)
//!   or a stray "break" byte is `Err` ([`ErrorKind::Indefinite`]);
//! * integers (major types 0 and 1) must fit an `i64`, else
//!   [`ErrorKind::IntegerOverflow`];
//! * floats: half (f16), single (f32) and double (f64) precision, all
//!   returned as `Value::Float(f64)`;
//! * simple values: `false`, `true`, `null`; `undefined` (0xf7) decodes as
//!   `Null`; any other simple value is [`ErrorKind::Unsupported`];
//! * tags (major type 6) are transparent: the tag number is dropped and the
//!   tagged item is returned (a tag counts as one nesting level);
//! * text strings must be valid UTF-8 ([`ErrorKind::InvalidUtf8`]);
//! * map keys may be any value; duplicate keys are kept in order;
//! * the input must hold exactly one item ([`ErrorKind::TrailingBytes`]).
//!
//! Hostile input never panics and never makes the decoder allocate more
//! than a small multiple of the input size: nesting is limited to
//! [`MAX_DEPTH`] levels (checked before every recursive step), a string
//! length must fit the remaining input, and an array/map count must be
//! coverable by the remaining input (every item takes at least one byte)
//! before anything is allocated.
//!
//! Encoding always uses the shortest head for integers and lengths,
//! definite lengths, and 64-bit floats (`0xfb`). Maps keep their pair
//! order (no canonical sorting).

use std::fmt;

/// Maximum nesting depth accepted by [`decode`]. The top-level item is at
/// depth 1; every array, map or tag opens one more level.
pub const MAX_DEPTH: usize = 128;

/// A CBOR data item.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    /// Pairs in wire order (keys need not be text, duplicates are kept).
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// Convenience constructor for `Value::Text`.
    pub fn text<S: Into<String>>(s: S) -> Value {
        Value::Text(s.into())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// `Float` as is, `Int` converted.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(n) => Some(*n as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b.as_slice()),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a.as_slice()),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m.as_slice()),
            _ => None,
        }
    }

    /// For a map: the value of the first pair whose key is the text `key`.
    /// `None` for a missing key or when `self` is not a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Encodes this value (same as [`encode`]).
    pub fn to_cbor(&self) -> Vec<u8> {
        encode(self)
    }
}

/// What went wrong while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside an item.
    UnexpectedEof,
    /// Additional information 28, 29 or 30 (reserved by RFC 8949).
    Reserved,
    /// Indefinite length (additional information 31) or a "break" byte.
    Indefinite,
    /// More than [`MAX_DEPTH`] (or the caller's limit) nesting levels.
    TooDeep,
    /// A text string that is not UTF-8.
    InvalidUtf8,
    /// An integer outside the `i64` range.
    IntegerOverflow,
    /// A string length, or an array/map count, larger than the rest of
    /// the input could hold.
    LengthTooLarge,
    /// A simple value other than false/true/null/undefined.
    Unsupported,
    /// Bytes left after the first complete item.
    TrailingBytes,
}

/// A decoding error: its kind and the input offset where it was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub offset: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::UnexpectedEof => "unexpected end of input",
            ErrorKind::Reserved => "reserved additional information",
            ErrorKind::Indefinite => "indefinite length not supported",
            ErrorKind::TooDeep => "nesting too deep",
            ErrorKind::InvalidUtf8 => "text string is not UTF-8",
            ErrorKind::IntegerOverflow => "integer outside the i64 range",
            ErrorKind::LengthTooLarge => "length exceeds the input",
            ErrorKind::Unsupported => "unsupported simple value",
            ErrorKind::TrailingBytes => "trailing bytes after the item",
        };
        write!(f, "cbor: {} at offset {}", what, self.offset)
    }
}

impl std::error::Error for Error {}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Decodes exactly one item; nesting limited to [`MAX_DEPTH`].
pub fn decode(bytes: &[u8]) -> Result<Value, Error> {
    decode_with_max_depth(bytes, MAX_DEPTH)
}

/// Like [`decode`] with a custom nesting limit (`0` rejects everything).
pub fn decode_with_max_depth(bytes: &[u8], max_depth: usize) -> Result<Value, Error> {
    let mut d = Decoder {
        b: bytes,
        pos: 0,
        max_depth,
    };
    let v = d.item(1)?;
    if d.pos != bytes.len() {
        return Err(d.err(ErrorKind::TrailingBytes));
    }
    Ok(v)
}

/// Decodes the first item of `bytes` and returns it with the number of
/// bytes it took (trailing bytes are allowed).
pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, usize), Error> {
    let mut d = Decoder {
        b: bytes,
        pos: 0,
        max_depth: MAX_DEPTH,
    };
    let v = d.item(1)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    b: &'a [u8],
    pos: usize,
    max_depth: usize,
}

/// Converts IEEE 754 half precision bits to f64.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as f64;
    let mag = if exp == 0 {
        mant * (2.0f64).powi(-24)
    } else if exp == 31 {
        if mant == 0.0 {
            f64::INFINITY
        } else {
            f64::NAN
        }
    } else {
        (1.0 + mant / 1024.0) * (2.0f64).powi(exp - 15)
    };
    sign * mag
}

impl<'a> Decoder<'a> {
    fn err(&self, kind: ErrorKind) -> Error {
        Error { kind, offset: self.pos }
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(self.err(ErrorKind::UnexpectedEof));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Error> {
        let s = self.take(n)?;
        let mut v: u64 = 0;
        for &c in s {
            v = (v << 8) | c as u64;
        }
        Ok(v)
    }

    /// Reads the argument of a head with additional information `ai`.
    fn argument(&mut self, ai: u8) -> Result<u64, Error> {
        match ai {
            0..=23 => Ok(ai as u64),
            24 => self.uint(1),
            25 => self.uint(2),
            26 => self.uint(4),
            27 => self.uint(8),
            28..=30 => Err(self.err(ErrorKind::Reserved)),
            _ => Err(self.err(ErrorKind::Indefinite)),
        }
    }

    /// A length that must fit in the remaining input, `per_item` bytes each.
    fn length(&mut self, ai: u8, per_item: usize) -> Result<usize, Error> {
        let start = self.pos;
        let n = self.argument(ai)?;
        let limit = (self.remaining() / per_item) as u64;
        if n > limit {
            return Err(Error {
                kind: ErrorKind::LengthTooLarge,
                offset: start,
            });
        }
        Ok(n as usize)
    }

    fn item(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > self.max_depth {
            return Err(self.err(ErrorKind::TooDeep));
        }
        let start = self.pos;
        let ib = self.take(1)?[0];
        let major = ib >> 5;
        let ai = ib & 0x1f;
        match major {
            0 => {
                let n = self.argument(ai)?;
                if n > i64::MAX as u64 {
                    return Err(Error {
                        kind: ErrorKind::IntegerOverflow,
                        offset: start,
                    });
                }
                Ok(Value::Int(n as i64))
            }
            1 => {
                let n = self.argument(ai)?;
                if n > i64::MAX as u64 {
                    return Err(Error {
                        kind: ErrorKind::IntegerOverflow,
                        offset: start,
                    });
                }
                Ok(Value::Int(-1 - n as i64))
            }
            2 => {
                let n = self.length(ai, 1)?;
                Ok(Value::Bytes(self.take(n)?.to_vec()))
            }
            3 => {
                let n = self.length(ai, 1)?;
                let s = self.take(n)?;
                match std::str::from_utf8(s) {
                    Ok(t) => Ok(Value::Text(t.to_string())),
                    Err(_) => Err(Error {
                        kind: ErrorKind::InvalidUtf8,
                        offset: start,
                    }),
                }
            }
            4 => {
                let n = self.length(ai, 1)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(out))
            }
            5 => {
                let n = self.length(ai, 2)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    let v = self.item(depth + 1)?;
                    out.push((k, v));
                }
                Ok(Value::Map(out))
            }
            6 => {
                let _tag = self.argument(ai)?;
                self.item(depth + 1)
            }
            _ => match ai {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 | 23 => Ok(Value::Null),
                25 => Ok(Value::Float(f16_to_f64(self.uint(2)? as u16))),
                26 => Ok(Value::Float(f32::from_bits(self.uint(4)? as u32) as f64)),
                27 => Ok(Value::Float(f64::from_bits(self.uint(8)?))),
                28..=30 => Err(Error {
                    kind: ErrorKind::Reserved,
                    offset: start,
                }),
                31 => Err(Error {
                    kind: ErrorKind::Indefinite,
                    offset: start,
                }),
                _ => Err(Error {
                    kind: ErrorKind::Unsupported,
                    offset: start,
                }),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Writes a head (major type + shortest argument).
fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends the encoding of `v` to `out`.
pub fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Int(n) => {
            if *n >= 0 {
                head(out, 0, *n as u64)
            } else {
                // -1 - n without overflow: !n == -1 - n for two's complement.
                head(out, 1, !*n as u64)
            }
        }
        Value::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Text(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for it in items {
                encode_into(it, out);
            }
        }
        Value::Map(pairs) => {
            head(out, 5, pairs.len() as u64);
            for (k, val) in pairs {
                encode_into(k, out);
                encode_into(val, out);
            }
        }
    }
}

/// Encodes `v` (definite lengths, shortest heads, 64-bit floats).
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}
