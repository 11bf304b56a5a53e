//! A small JSON reader for plugin configurations (no dependencies): the
//! top-level string, integer, boolean and string-array members of an object.
//! Any other value is skipped structurally and reported as `Other`; malformed
//! input yields what was parsed before the error (never panics).
//!
//! ```ignore
//! for (key, value) in routeiq_guest::config_json::object_members(&bytes) {
//!     match (key.as_str(), value) {
//!         ("tag", Value::Str(s)) => tag = s,
//!         _ => {}
//!     }
//! }
//! ```

pub enum Value {
    Str(String),
    StrList(Vec<String>),
    Bool(bool),
    /// A JSON number without fraction or exponent that fits an `i64`.
    Int(i64),
    /// Any other JSON number (a fraction or exponent, or too large for `i64`).
    Float(f64),
    Other,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let s = self.b.get(self.i..self.i + 4)?;
        let mut v = 0u32;
        for &c in s {
            v = v * 16 + (c as char).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    /// Parses a string starting at the opening quote.
    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.b.get(self.i..self.i + 2) == Some(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        other => out.push(other), // \" \\ \/
                    }
                }
                _ => out.push(c),
            }
        }
    }

    /// Skips any JSON value; returns None on malformed input.
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > 64 {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                self.i += 1;
                if self.eat(b'}') {
                    return Some(());
                }
                loop {
                    self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    self.skip(depth + 1)?;
                    if self.eat(b',') {
                        continue;
                    }
                    return if self.eat(b'}') { Some(()) } else { None };
                }
            }
            b'[' => {
                self.i += 1;
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    if self.eat(b',') {
                        continue;
                    }
                    return if self.eat(b']') { Some(()) } else { None };
                }
            }
            _ => {
                // number / true / false / null
                let start = self.i;
                while self.i < self.b.len() && !matches!(self.b[self.i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    self.i += 1;
                }
                if self.i > start {
                    Some(())
                } else {
                    None
                }
            }
        }
    }

    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b'[' => {
                let save = self.i;
                self.i += 1;
                let mut list = Vec::new();
                if self.eat(b']') {
                    return Some(Value::StrList(list));
                }
                loop {
                    if self.peek() != Some(b'"') {
                        // Not an array of strings: skip it as a whole.
                        self.i = save;
                        self.skip(0)?;
                        return Some(Value::Other);
                    }
                    list.push(self.string()?);
                    if self.eat(b',') {
                        continue;
                    }
                    return if self.eat(b']') { Some(Value::StrList(list)) } else { None };
                }
            }
            _ => {
                let start = self.i;
                self.skip(0)?;
                let token = &self.b[start..self.i];
                Some(match token {
                    b"true" => Value::Bool(true),
                    b"false" => Value::Bool(false),
                    _ => match std::str::from_utf8(token).ok().and_then(|t| t.parse::<i64>().ok()) {
                        Some(n) => Value::Int(n),
                        None => match std::str::from_utf8(token).ok().filter(|t| t.starts_with(|c: char| c == '-' || c.is_ascii_digit())).and_then(|t| t.parse::<f64>().ok()) {
                            Some(x) if x.is_finite() => Value::Float(x),
                            _ => Value::Other,
                        },
                    },
                })
            }
        }
    }
}

/// Returns the (key, value) members of a top-level JSON object.
pub fn object_members(input: &[u8]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut s = Scanner { b: input, i: 0 };
    if !s.eat(b'{') || s.eat(b'}') {
        return out;
    }
    loop {
        let key = match s.string() {
            Some(k) => k,
            None => return out,
        };
        if !s.eat(b':') {
            return out;
        }
        match s.value() {
            Some(v) => out.push((key, v)),
            None => return out,
        }
        if !s.eat(b',') {
            return out;
        }
    }
}
