//! Request-URI and name-addr URIs: `sip:`/`sips:` (RFC 3261 19.1) and `tel:` (RFC 3966)
//! parsed into borrowed views; any other scheme kept opaque so the caller can answer 416.
//!
//! Escapes (`%HH`) are validated but never decoded here: comparisons that need decoding are
//! the caller's (RFC 4475 esc01, escnull).

use super::scan::{find_byte, is_lws, Params};

/// A parsed URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Any other scheme, unparsed.
    Other {
        /// The scheme as written.
        scheme: &'a str,
        /// The whole URI as written.
        raw: &'a str,
    },
}

/// A `sip:`/`sips:` URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// User part, still escaped.
    pub user: Option<&'a str>,
    /// Password part, still escaped.
    pub password: Option<&'a str>,
    /// Host; an IPv6 reference keeps its brackets (`[::1]`).
    pub host: &'a str,
    /// Port, when written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params<'a>,
    /// Headers after `?`, raw.
    pub headers: Option<&'a str>,
}

/// A `tel:` URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number as written (global `+...` or local).
    pub number: &'a str,
    /// Parameters (`;phone-context=...`).
    pub params: Params<'a>,
}

impl<'a> Uri<'a> {
    /// Parses a URI; `None` when the scheme is malformed or a `sip`/`sips`/`tel` URI is.
    pub fn parse(s: &'a str) -> Option<Uri<'a>> {
        Uri::parse_inner(s).ok()
    }

    fn parse_inner(s: &'a str) -> Result<Uri<'a>, ()> {
        let colon = find_byte(s, b':').ok_or(())?;
        let scheme = &s[..colon];
        let rest = &s[colon + 1..];
        let b = scheme.as_bytes();
        if b.is_empty()
            || !b[0].is_ascii_alphabetic()
            || !b
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(());
        }
        if scheme.eq_ignore_ascii_case("sip") {
            parse_sip(rest, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            parse_sip(rest, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            parse_tel(rest).map(Uri::Tel)
        } else if rest.is_empty()
            || s.bytes()
                .any(|c| is_lws(c) || matches!(c, b'<' | b'>' | b'"') || c < 0x20)
        {
            // Opaque schemes are only checked for what would break the message around them.
            Err(())
        } else {
            Ok(Uri::Other { scheme, raw: s })
        }
    }

    /// The SIP view, if this is a `sip:`/`sips:` URI.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

/// Character classes of RFC 3261 25.1 as bit sets, one table probe per byte.
const USER: u8 = 1;
const PASSWORD: u8 = 2;
const HEADER: u8 = 4;
/// `paramchar` plus `=` and `;` (a whole `;name=value;...` run is checked at once).
const PARAMS: u8 = 8;
const HOST: u8 = 16;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let unreserved = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        let mut bits = 0;
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            bits |= USER;
        }
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
            bits |= PASSWORD;
        }
        if unreserved
            || matches!(
                c,
                b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
            )
        {
            bits |= HEADER;
        }
        if unreserved
            || matches!(
                c,
                b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'=' | b';'
            )
        {
            bits |= PARAMS;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_') {
            bits |= HOST;
        }
        t[i] = bits;
        i += 1;
    }
    t
};

/// Checks every byte against `class`, accepting `%HH` escapes.
fn escaped_all(s: &str, class: u8) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if CLASS[b[i] as usize] & class != 0 {
            i += 1;
        } else if b[i] == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

fn parse_sip(rest: &str, secure: bool) -> Result<SipUri<'_>, ()> {
    let (mut user, mut password, mut hostpart) = (None, None, rest);
    // One pass over a userinfo candidate: it ends at '@', or is not userinfo at all when a
    // byte that userinfo cannot hold comes first (then the host starts at 0).
    let b = rest.as_bytes();
    let (mut i, mut colon, mut user_ok, mut pass_ok) = (0, None, true, true);
    while i < b.len() {
        let c = b[i];
        if c == b'@' {
            break;
        }
        if c == b':' {
            pass_ok &= colon.is_none();
            colon.get_or_insert(i);
            i += 1;
            continue;
        }
        if c == b'%' {
            // Hosts never hold '%': a bad escape is an error whatever this turns out to be.
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err(());
            }
            i += 3;
            continue;
        }
        let class = CLASS[c as usize];
        if class & (USER | PASSWORD) == 0 {
            break;
        }
        if colon.is_none() {
            user_ok &= class & USER != 0;
        } else {
            pass_ok &= class & PASSWORD != 0;
        }
        i += 1;
    }
    if b.get(i) == Some(&b'@') {
        let user_end = colon.unwrap_or(i);
        if user_end == 0 || !user_ok || !pass_ok {
            return Err(());
        }
        user = Some(&rest[..user_end]);
        password = colon.map(|c| &rest[c + 1..i]);
        hostpart = &rest[i + 1..];
    }
    // One pass over hostport, then parameters, then headers.
    let b = hostpart.as_bytes();
    let mut i = if b.first() == Some(&b'[') {
        let close = find_byte(hostpart, b']').ok_or(())?;
        let inner = &b[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
        {
            return Err(());
        }
        close + 1
    } else {
        b.iter()
            .position(|&c| CLASS[c as usize] & HOST == 0)
            .unwrap_or(b.len())
    };
    if i == 0 {
        return Err(());
    }
    let host = &hostpart[..i];
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 5 {
            return Err(());
        }
        let n = b[i + 1..i + 1 + digits]
            .iter()
            .fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'));
        port = Some(u16::try_from(n).map_err(|_| ())?);
        i += 1 + digits;
    }
    let q = b[i..]
        .iter()
        .position(|&c| c == b'?')
        .map_or(b.len(), |q| i + q);
    let params = &hostpart[i..q];
    if !params.is_empty() {
        // Every parameter needs a name: no empty `;;` and no `;=`.
        let p = params.as_bytes();
        let ok = p[0] == b';'
            && escaped_all(params, PARAMS)
            && !p.ends_with(b";")
            && !p
                .windows(2)
                .any(|w| w[0] == b';' && (w[1] == b';' || w[1] == b'='));
        if !ok {
            return Err(());
        }
    }
    let headers = if q < b.len() {
        let h = &hostpart[q + 1..];
        if h.is_empty() || !escaped_all(h, HEADER) {
            return Err(());
        }
        Some(h)
    } else {
        None
    };
    Ok(SipUri {
        secure,
        user,
        password,
        host,
        port,
        params: Params::new_unchecked(params),
        headers,
    })
}

/// Splits `host[:port]`, checking the host (hostname, IPv4, or `[IPv6]`).
pub(crate) fn split_hostport(s: &str) -> Result<(&str, Option<u16>), ()> {
    let (host, port) = if s.starts_with('[') {
        let close = find_byte(s, b']').ok_or(())?;
        let inner = &s[1..close];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(());
        }
        (&s[..=close], &s[close + 1..])
    } else {
        let end = find_byte(s, b':').unwrap_or(s.len());
        let host = &s[..end];
        if host.is_empty() || !host.bytes().all(|c| CLASS[c as usize] & HOST != 0) {
            return Err(());
        }
        (host, &s[end..])
    };
    if port.is_empty() {
        return Ok((host, None));
    }
    let digits = port.strip_prefix(':').ok_or(())?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(());
    }
    let port: u16 = digits.parse().map_err(|_| ())?;
    Ok((host, Some(port)))
}

fn parse_tel(rest: &str) -> Result<TelUri<'_>, ()> {
    let (number, params) = match find_byte(rest, b';') {
        Some(sc) => (&rest[..sc], &rest[sc..]),
        None => (rest, ""),
    };
    let ok = |c: u8| {
        c.is_ascii_hexdigit() || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
    };
    if number.is_empty() || !number.bytes().all(ok) {
        return Err(());
    }
    let params = Params::parse(params).ok_or(())?;
    Ok(TelUri { number, params })
}
