//! Secret masking over raw JSON text (pure code, no host calls).
//!
//! The body is scanned as JSON: text outside string literals is copied
//! verbatim; inside string literals, escape sequences (`\n`, `\"`,
//! `\u00e9`, ...) are copied verbatim and act as token separators, and the
//! plain runs between them are searched for secrets. Both object keys and
//! values are scanned. Because matches never include `"`, `\` or any byte of
//! an escape sequence and the replacements are plain ASCII, valid JSON stays
//! valid. If the body does not start (after whitespace) with `{` or `[`, the
//! whole body is scanned as one plain run.
//!
//! Patterns (ASCII only):
//! * e-mail: `local@domain.tld`; local = `[A-Za-z0-9._%+-]+`, domain =
//!   dot-separated non-empty labels of `[A-Za-z0-9-]`, at least two labels,
//!   last label `[A-Za-z]{2,}` -> `[REDACTED_EMAIL]`
//! * `sk-` + at least 16 of `[A-Za-z0-9_-]` (the whole run is replaced)
//!   -> `[REDACTED_KEY]`
//! * `AKIA` + at least 16 of `[A-Z0-9]` (whole run) -> `[REDACTED_KEY]`
//!
//! Keys must start at a token boundary: the preceding byte (if any) is not
//! in `[A-Za-z0-9_-]`, so `task-...` does not match `sk-`.

pub const EMAIL: &[u8] = b"[REDACTED_EMAIL]";
pub const KEY: &[u8] = b"[REDACTED_KEY]";

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.'
}

/// Length of an `sk-`/`AKIA` key starting at `i`, if any.
fn key_at(s: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_key_char(s[i - 1]) {
        return None;
    }
    let rest = &s[i..];
    if rest.starts_with(b"sk-") {
        let run = rest[3..].iter().take_while(|&&c| is_key_char(c)).count();
        if run >= 16 {
            return Some(3 + run);
        }
    } else if rest.starts_with(b"AKIA") {
        let run = rest[4..]
            .iter()
            .take_while(|&&c| c.is_ascii_uppercase() || c.is_ascii_digit())
            .count();
        if run >= 16 {
            return Some(4 + run);
        }
    }
    None
}

/// If `s[at] == b'@'` starts a valid e-mail domain and there is a local part
/// in `s[floor..at]`, returns (start, end) of the whole address.
fn email_at(s: &[u8], at: usize, floor: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > floor && is_local_char(s[start - 1]) {
        start -= 1;
    }
    // Don't begin the address with a dot.
    while start < at && s[start] == b'.' {
        start += 1;
    }
    if start == at {
        return None;
    }
    let mut end = at + 1;
    while end < s.len() && is_domain_char(s[end]) {
        end += 1;
    }
    // Trim trailing dots/hyphens (sentence punctuation).
    while end > at + 1 && matches!(s[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &s[at + 1..end];
    let labels: Vec<&[u8]> = domain.split(|&c| c == b'.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let tld = labels[labels.len() - 1];
    if tld.len() < 2 || !tld.iter().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some((start, end))
}

/// Redacts one plain run (no escapes inside), appending to `out`.
fn redact_run(s: &[u8], out: &mut Vec<u8>, count: &mut usize) {
    let mut copied = 0; // s[..copied] already emitted
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        // First-byte filter: key_at's prefix compare is an out-of-line memcmp on wasm32,
        // too dear to run at every byte of a large body (it ran out of fuel at 256 KiB).
        if c != b's' && c != b'A' && c != b'@' {
            i += 1;
            continue;
        }
        if let Some(len) = key_at(s, i) {
            out.extend_from_slice(&s[copied..i]);
            out.extend_from_slice(KEY);
            *count += 1;
            i += len;
            copied = i;
            continue;
        }
        if s[i] == b'@' {
            if let Some((start, end)) = email_at(s, i, copied) {
                out.extend_from_slice(&s[copied..start]);
                out.extend_from_slice(EMAIL);
                *count += 1;
                i = end;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.extend_from_slice(&s[copied..]);
}

/// Redacts the content of one JSON string literal (between the quotes,
/// escapes still encoded) appending to `out`.
fn redact_string_content(s: &[u8], out: &mut Vec<u8>, count: &mut usize) {
    let mut run_start = 0;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            redact_run(&s[run_start..i], out, count);
            let esc_len = if s.get(i + 1) == Some(&b'u') { 6 } else { 2 };
            let end = (i + esc_len).min(s.len());
            out.extend_from_slice(&s[i..end]);
            i = end;
            run_start = i;
        } else {
            i += 1;
        }
    }
    redact_run(&s[run_start..], out, count);
}

/// Returns (new body, number of replacements).
pub fn redact(body: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(body.len());
    let mut count = 0;
    let first = body.iter().position(|c| !c.is_ascii_whitespace());
    let is_json = match first {
        Some(p) => body[p] == b'{' || body[p] == b'[',
        None => false,
    };
    if !is_json {
        redact_run(body, &mut out, &mut count);
        return (out, count);
    }
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        out.push(c);
        i += 1;
        if c != b'"' {
            continue;
        }
        // Inside a string literal: find the closing unescaped quote.
        let start = i;
        let mut j = i;
        while j < body.len() {
            match body[j] {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        let end = j.min(body.len());
        redact_string_content(&body[start..end], &mut out, &mut count);
        if end < body.len() {
            out.push(b'"');
            i = end + 1;
        } else {
            i = end;
        }
    }
    (out, count)
}
