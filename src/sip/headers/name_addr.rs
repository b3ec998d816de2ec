//! name-addr / addr-spec with header parameters: From, To, Contact, Route, Record-Route
//! (RFC 3261 20.10, 20.20, 20.39, 25.1).

use super::{Params, Tag};
use crate::sip::scan::{find_byte, find_top, is_lws, is_token, quoted_end, trim_lws};
use crate::sip::uri::Uri;

/// An address with its header parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name: a quoted string without its quotes (escapes kept) or the token words.
    pub display_name: Option<&'a str>,
    /// The URI as written (without `<>`).
    pub uri: &'a str,
    /// Header parameters after the address (`;tag=...`, `;expires=...`).
    pub params: Params<'a>,
    /// Whether the URI was enclosed in `<>`.
    pub angle: bool,
}

impl<'a> NameAddr<'a> {
    /// The `tag` parameter.
    pub fn tag(&self) -> Option<Tag<'a>> {
        self.params.get("tag").flatten().and_then(Tag::parse)
    }

    /// The URI, typed.
    pub fn parsed_uri(&self) -> Uri<'a> {
        Uri::parse(self.uri).unwrap_or(Uri::Other {
            scheme: "",
            raw: self.uri,
        })
    }
}

/// A Contact value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER removing all bindings).
    Wildcard,
    /// An address.
    Address(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// The `expires` parameter, when present and valid.
    pub fn expires(&self) -> Option<u32> {
        match self {
            Contact::Wildcard => None,
            Contact::Address(a) => a.params.get("expires").flatten()?.parse().ok(),
        }
    }

    /// The address, unless wildcard.
    pub fn address(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Wildcard => None,
            Contact::Address(a) => Some(a),
        }
    }
}

/// Display name of unquoted words: `*(token LWS)`.
fn valid_words(s: &str) -> bool {
    s.bytes().all(|b| is_token(b) || is_lws(b))
}

/// Parses `name-addr / addr-spec` followed by parameters.
pub(crate) fn parse(s: &str) -> Result<NameAddr<'_>, ()> {
    parse_with_tag(s).map(|(na, _)| na)
}

/// Parses and, in the same pass over the parameters, finds `tag` (`Some(None)` when the
/// parameter has no value).
pub(crate) fn parse_with_tag(s: &str) -> Result<(NameAddr<'_>, Option<Option<&str>>), ()> {
    let s = trim_lws(s);
    let (display_name, rest) = if s.starts_with('"') {
        let end = quoted_end(s.as_bytes()).ok_or(())?;
        let rest = trim_lws(&s[end..]);
        if !rest.starts_with('<') {
            return Err(());
        }
        (Some(&s[1..end - 1]), rest)
    } else if let Some(lt) = find_byte(s, b'<') {
        let words = trim_lws(&s[..lt]);
        if !valid_words(words) {
            return Err(());
        }
        ((!words.is_empty()).then_some(words), &s[lt..])
    } else {
        // addr-spec: the URI ends at the first ';' and may not carry '?' headers or ','
        // (RFC 3261 20.10; RFC 4475 regbadct).
        let (uri, params) = match find_byte(s, b';') {
            Some(i) => (trim_lws(&s[..i]), &s[i..]),
            None => (s, ""),
        };
        if uri.contains(['?', ',']) {
            return Err(());
        }
        Uri::parse(uri).ok_or(())?;
        let (params, tag) = Params::parse_find(params, "tag").ok_or(())?;
        let na = NameAddr {
            display_name: None,
            uri,
            params,
            angle: false,
        };
        return Ok((na, tag));
    };
    let inner = &rest[1..];
    let gt = find_byte(inner, b'>').ok_or(())?;
    let uri = &inner[..gt];
    Uri::parse(uri).ok_or(())?;
    let (params, tag) = Params::parse_find(&inner[gt + 1..], "tag").ok_or(())?;
    Ok((
        NameAddr {
            display_name,
            uri,
            params,
            angle: true,
        },
        tag,
    ))
}

/// Route / Record-Route: name-addr only (angle brackets required).
pub(crate) fn parse_strict(s: &str) -> Result<NameAddr<'_>, ()> {
    let na = parse(s)?;
    if na.angle {
        Ok(na)
    } else {
        Err(())
    }
}

/// Contact: `*` or an address.
pub(crate) fn parse_contact(s: &str) -> Result<Contact<'_>, ()> {
    if trim_lws(s) == "*" {
        return Ok(Contact::Wildcard);
    }
    parse(s).map(Contact::Address)
}

/// Checks a whole Contact header value (possibly several comma-separated addresses).
pub(crate) fn check_contact_list(v: &str) -> bool {
    let mut rest = v;
    loop {
        let (item, next) = match find_top(rest, b',') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if parse_contact(item).is_err() {
            return false;
        }
        match next {
            Some(n) => rest = n,
            None => return true,
        }
    }
}
