//! PII matching over plain message text (pure code, no host calls).
//!
//! * [`contains_forbidden`]: ASCII case-insensitive substring search.
//! * [`redact`]: e-mail addresses -> `[EMAIL]`, then phone numbers ->
//!   `[PHONE]`; returns the new text and the number of replacements.
//!
//! Patterns (ASCII; other bytes, including non-ASCII UTF-8, never match and
//! are copied verbatim, so the result stays valid UTF-8):
//! * e-mail (same rule as `redactor`): `local@domain`; local =
//!   `[A-Za-z0-9._%+-]+` (leading dots dropped), domain = at least two
//!   non-empty dot-separated labels of `[A-Za-z0-9-]`, the last one
//!   `[A-Za-z]{2,}`; trailing `.`/`-` are not part of the address.
//! * phone: an optional `+`, then a digit, then digits where two digits
//!   may be separated by **one** space or dash; at least 9 digits in
//!   total. The run is maximal (it ends at its last digit; a trailing
//!   separator is kept). Runs are taken whole, so `12345678` (8 digits)
//!   is never matched by a sub-run. There is no word-boundary rule:
//!   `id123456789` becomes `id[PHONE]`, and dates with times such as
//!   `2024-01-15 10:30` (10 digits `2024-01-15 10`) match too.

pub const EMAIL: &str = "[EMAIL]";
pub const PHONE: &str = "[PHONE]";

/// Minimum digit count of a phone number.
pub const PHONE_MIN_DIGITS: usize = 9;

/// `patterns` must already be ASCII lower-case; empty patterns never match.
pub fn contains_forbidden(text: &str, patterns: &[String]) -> bool {
    let lower = text.to_ascii_lowercase();
    patterns.iter().any(|p| !p.is_empty() && lower.contains(p.as_str()))
}

fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.'
}

/// If `s[at] == b'@'` starts a valid domain and there is a local part in
/// `s[floor..at]`, returns (start, end) of the whole address.
fn email_at(s: &[u8], at: usize, floor: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > floor && is_local_char(s[start - 1]) {
        start -= 1;
    }
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

fn redact_emails(s: &[u8], out: &mut Vec<u8>) -> usize {
    let mut count = 0;
    let mut copied = 0;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'@' {
            if let Some((start, end)) = email_at(s, i, copied) {
                out.extend_from_slice(&s[copied..start]);
                out.extend_from_slice(EMAIL.as_bytes());
                count += 1;
                i = end;
                copied = end;
                continue;
            }
        }
        i += 1;
    }
    out.extend_from_slice(&s[copied..]);
    count
}

/// End (exclusive) and digit count of the maximal phone-like run that
/// starts at `i` (`s[i]` is a digit, or `+` followed by a digit).
fn phone_run(s: &[u8], i: usize) -> (usize, usize) {
    let mut j = if s[i] == b'+' { i + 1 } else { i };
    let mut digits = 0;
    loop {
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
            digits += 1;
        }
        if j + 1 < s.len() && matches!(s[j], b' ' | b'-') && s[j + 1].is_ascii_digit() {
            j += 1;
            continue;
        }
        return (j, digits);
    }
}

fn redact_phones(s: &[u8], out: &mut Vec<u8>) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < s.len() {
        let starts = s[i].is_ascii_digit() || (s[i] == b'+' && s.get(i + 1).map_or(false, |c| c.is_ascii_digit()));
        if !starts {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let (end, digits) = phone_run(s, i);
        if digits >= PHONE_MIN_DIGITS {
            out.extend_from_slice(PHONE.as_bytes());
            count += 1;
        } else {
            out.extend_from_slice(&s[i..end]);
        }
        i = end;
    }
    count
}

/// Returns (redacted text, number of replacements).
pub fn redact(text: &str) -> (String, usize) {
    let mut step1 = Vec::with_capacity(text.len());
    let emails = redact_emails(text.as_bytes(), &mut step1);
    let mut step2 = Vec::with_capacity(step1.len());
    let phones = redact_phones(&step1, &mut step2);
    // Only ASCII runs were replaced by ASCII, so this cannot fail.
    let out = String::from_utf8(step2).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (out, emails + phones)
}
