//! Lexical helpers shared by the parser and the typed views (RFC 3261 25.1).
//!
//! Header values are kept raw, so a folded value still contains `CRLF SP`; every helper here
//! treats CR and LF as linear white space, which is what folding means (RFC 3261 7.3.1).

/// `token` characters of RFC 3261 25.1: alphanum and `-.!%*_+` `` ` `` `'~`.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// Whether `b` is a `token` character.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

/// Whether `s` is a non-empty `token`.
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Linear white space including the CRLF of a folded line.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims linear white space on both sides.
#[inline]
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut start, mut end) = (0, b.len());
    while start < end && is_lws(b[start]) {
        start += 1;
    }
    while end > start && is_lws(b[end - 1]) {
        end -= 1;
    }
    &s[start..end]
}

/// Position of the first `b` in `s`. Header pieces are short, where a plain loop beats both
/// `str::find` (generic char searcher) and a SIMD `memchr` set-up.
#[inline]
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    s.as_bytes().iter().position(|&c| c == b)
}

/// Index of the first non-LWS byte at or after `i`.
#[inline]
fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_lws(b[i]) {
        i += 1;
    }
    i
}

/// Parses an all-digit string into a `u64`, refusing overflow, signs and empty input.
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits `s` on `sep` where `sep` is outside a quoted string and outside `<...>`.
/// Quoted strings honour backslash escapes. Parts are LWS-trimmed.
pub(crate) fn split_top(s: &str, sep: u8) -> SplitTop<'_> {
    SplitTop { rest: Some(s), sep }
}

/// Iterator returned by [`split_top`].
pub(crate) struct SplitTop<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match find_top(s, self.sep) {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(trim_lws(&s[..i]))
            }
            None => {
                self.rest = None;
                Some(trim_lws(s))
            }
        }
    }
}

/// Bytes that stop a top-level scan: quote, `<`, and the list separators `,` and `;`.
const STOP: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'<' as usize] = true;
    t[b',' as usize] = true;
    t[b';' as usize] = true;
    t
};

/// Position of the first `sep` outside quotes and angle brackets.
pub(crate) fn find_top(s: &str, sep: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Short remainders: a table loop; long ones: memchr3 (its set-up costs more than it
        // saves below a few dozen bytes; measured with callgrind on the parse bench).
        if b.len() - i <= 32 && matches!(sep, b',' | b';') {
            while i < b.len() && !STOP[b[i] as usize] {
                i += 1;
            }
            if i == b.len() {
                return None;
            }
        } else {
            i += memchr::memchr3(sep, b'"', b'<', &b[i..])?;
        }
        match b[i] {
            c if c == sep => return Some(i),
            b'"' => i += quoted_end(&b[i..])?,
            b'<' => i += memchr::memchr(b'>', &b[i..])? + 1,
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive) of a quoted string starting at `s[0] == '"'`, or `None` if unterminated.
pub(crate) fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Removes the quotes of a quoted string (escapes are left as written).
pub(crate) fn unquote(s: &str) -> &str {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// A `;name[=value]` parameter list, checked once, iterated lazily.
///
/// Names are matched case-insensitively; values are returned as written (quoted strings keep
/// their quotes; use [`Params::get_unquoted`] to drop them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// Checks `raw` (empty or starting with `;`) and wraps it.
    pub(crate) fn parse(raw: &'a str) -> Option<Params<'a>> {
        Params::parse_find(raw, "").map(|(p, _)| p)
    }

    /// Checks `raw` and, in the same pass, looks up `name` (the parser wants `tag` or
    /// `branch` and should not walk the list twice).
    pub(crate) fn parse_find(
        raw: &'a str,
        name: &str,
    ) -> Option<(Params<'a>, Option<Option<&'a str>>)> {
        let raw = trim_lws(raw);
        let b = raw.as_bytes();
        let mut found = None;
        // One hand-written pass (this runs for the top Via, From and To of every message).
        let mut i = 0;
        while i < b.len() {
            if b[i] != b';' {
                return None;
            }
            i = skip_lws(b, i + 1);
            let n_start = i;
            while i < b.len() && is_token(b[i]) {
                i += 1;
            }
            if i == n_start {
                return None;
            }
            let n = &raw[n_start..i];
            i = skip_lws(b, i);
            let mut value = None;
            if b.get(i) == Some(&b'=') {
                i = skip_lws(b, i + 1);
                let v_start = i;
                if b.get(i) == Some(&b'"') {
                    i += quoted_end(&b[i..])?;
                } else {
                    while i < b.len() && (is_token(b[i]) || matches!(b[i], b'[' | b']' | b':')) {
                        i += 1;
                    }
                    if i == v_start {
                        return None;
                    }
                }
                value = Some(&raw[v_start..i]);
                i = skip_lws(b, i);
            }
            if found.is_none() && n.len() == name.len() && n.eq_ignore_ascii_case(name) {
                found = Some(value);
            }
        }
        Some((Params { raw }, found))
    }

    /// Wraps text already checked by the caller (URI parameters use their own grammar).
    pub(crate) fn new_unchecked(raw: &'a str) -> Params<'a> {
        Params { raw }
    }

    /// The raw text, starting with `;` unless empty.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Iterates `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        let body = self.raw.strip_prefix(';').unwrap_or("");
        split_top(body, b';')
            .filter(|p| !p.is_empty())
            .map(split_param)
    }

    /// `Some(value)` when present (`Some(None)` for a flag such as `lr`).
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value with surrounding quotes removed, when present with a value.
    pub fn get_unquoted(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten().map(unquote)
    }

    /// Whether the parameter is present (with or without value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

fn split_param(p: &str) -> (&str, Option<&str>) {
    match find_byte(p, b'=') {
        Some(eq) => (trim_lws(&p[..eq]), Some(trim_lws(&p[eq + 1..]))),
        None => (trim_lws(p), None),
    }
}
