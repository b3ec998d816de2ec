//! Typed views of the headers a B2BUA reads, parsed on demand from the raw value.
//!
//! Every view borrows the message. Values are `&str` slices of the received buffer, so a
//! caller that must keep one turns it into a shared `Bytes` with `Parts::slice_ref`.

pub mod auth;
pub mod cseq;
pub mod name_addr;
pub(crate) mod token_list;
pub mod via;

use std::fmt;

pub use super::scan::Params;
pub use auth::{Challenge, Credentials};
pub use cseq::CSeq;
pub use name_addr::{Contact, NameAddr};
pub use via::{Rport, Via};

use super::scan::{find_byte, find_top, is_token_str, parse_digits, quoted_end, trim_lws};

macro_rules! checked_str {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name<'a>(&'a str);

        impl<'a> $name<'a> {
            /// Checks that `s` is a non-empty SIP token.
            pub fn parse(s: &'a str) -> Option<Self> {
                is_token_str(s).then_some($name(s))
            }

            pub(crate) fn new_unchecked(s: &'a str) -> Self {
                $name(s)
            }

            /// The value as written.
            pub fn as_str(&self) -> &'a str {
                self.0
            }
        }

        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

checked_str!(
    /// A From/To `tag` parameter value (a token).
    Tag
);
checked_str!(
    /// A Via `branch` parameter value (a token).
    Branch
);

/// RFC 3261 8.1.1.7 magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Branch<'_> {
    /// Whether the branch carries the RFC 3261 magic cookie *and* something after it; a bare
    /// `z9hG4bK` (RFC 4475 badbranch) is treated as RFC 2543-style.
    pub fn is_rfc3261(&self) -> bool {
        self.0.len() > MAGIC_COOKIE.len() && self.0.starts_with(MAGIC_COOKIE)
    }
}

/// `delta-seconds` (1*DIGIT) that fits in a `u32`.
pub(crate) fn parse_delta_seconds(s: &str) -> Result<u32, ()> {
    parse_digits(trim_lws(s))
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(())
}

/// `delta-seconds *(SEMI generic-param)` (Min-SE).
pub(crate) fn parse_delta_seconds_with_params(s: &str) -> Result<u32, ()> {
    let (n, params) = split_params(s);
    Params::parse(params).ok_or(())?;
    parse_delta_seconds(n)
}

/// Splits `value;params` at the first top-level `;`.
fn split_params(s: &str) -> (&str, &str) {
    match find_top(s, b';') {
        Some(i) => (trim_lws(&s[..i]), &s[i..]),
        None => (trim_lws(s), ""),
    }
}

/// A media type (`Content-Type`, `Accept` item).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// Top-level type (`application`).
    pub kind: &'a str,
    /// Subtype (`sdp`).
    pub subtype: &'a str,
    /// Parameters (`;boundary=...`).
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<MediaType<'a>, ()> {
        let (t, params) = split_params(s);
        let slash = find_byte(t, b'/').ok_or(())?;
        let kind = trim_lws(&t[..slash]);
        let subtype = trim_lws(&t[slash + 1..]);
        if !is_token_str(kind) || !is_token_str(subtype) {
            return Err(());
        }
        Ok(MediaType {
            kind,
            subtype,
            params: Params::parse(params).ok_or(())?,
        })
    }

    /// Whether this is `type/subtype`, case-insensitively.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

/// A Reason value (RFC 3326): `SIP ;cause=487 ;text="..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reason<'a> {
    /// `SIP`, `Q.850`, ...
    pub protocol: &'a str,
    /// Parameters (`cause`, `text`).
    pub params: Params<'a>,
}

impl<'a> Reason<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<Reason<'a>, ()> {
        let (protocol, params) = split_params(s);
        if !is_token_str(protocol) {
            return Err(());
        }
        Ok(Reason {
            protocol,
            params: Params::parse(params).ok_or(())?,
        })
    }

    /// The `cause` parameter, when numeric.
    pub fn cause(&self) -> Option<u16> {
        self.params.get("cause").flatten()?.parse().ok()
    }

    /// The `text` parameter without quotes (escapes kept).
    pub fn text(&self) -> Option<&'a str> {
        self.params.get_unquoted("text")
    }
}

/// Who refreshes a session timer (RFC 4028).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresher {
    /// `refresher=uac`.
    Uac,
    /// `refresher=uas`.
    Uas,
}

/// Session-Expires (RFC 4028 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionExpires {
    /// Interval in seconds.
    pub secs: u32,
    /// The refresher, when given.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub(crate) fn parse(s: &str) -> Result<SessionExpires, ()> {
        let (n, params) = split_params(s);
        let params = Params::parse(params).ok_or(())?;
        let refresher = match params.get("refresher") {
            None => None,
            Some(Some(v)) if v.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(Some(v)) if v.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            Some(_) => return Err(()),
        };
        Ok(SessionExpires {
            secs: parse_delta_seconds(n)?,
            refresher,
        })
    }
}

/// Retry-After: seconds, optional comment, parameters (RFC 3261 20.33).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter<'a> {
    /// Seconds (must fit a `u32`; RFC 4475 scalarlg).
    pub secs: u32,
    /// The `(comment)` without parentheses.
    pub comment: Option<&'a str>,
    /// Parameters (`;duration=`).
    pub params: Params<'a>,
}

impl<'a> RetryAfter<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<RetryAfter<'a>, ()> {
        let s = trim_lws(s);
        let digits_end = s
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(s.len());
        let secs = parse_delta_seconds(&s[..digits_end])?;
        let mut rest = trim_lws(&s[digits_end..]);
        let mut comment = None;
        if let Some(r) = rest.strip_prefix('(') {
            let close = find_byte(r, b')').ok_or(())?;
            comment = Some(&r[..close]);
            rest = trim_lws(&r[close + 1..]);
        }
        Ok(RetryAfter {
            secs,
            comment,
            params: Params::parse(rest).ok_or(())?,
        })
    }
}

/// One Warning value: `code agent "text"` (RFC 3261 20.43).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warning<'a> {
    /// Three-digit warn-code.
    pub code: u16,
    /// warn-agent (host[:port] or pseudonym).
    pub agent: &'a str,
    /// warn-text without quotes (escapes kept).
    pub text: &'a str,
}

impl<'a> Warning<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<Warning<'a>, ()> {
        let s = trim_lws(s);
        let sp = find_byte(s, b' ').ok_or(())?;
        let code = &s[..sp];
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let rest = trim_lws(&s[sp..]);
        let sp = find_byte(rest, b' ').ok_or(())?;
        let agent = &rest[..sp];
        let text = trim_lws(&rest[sp..]);
        if agent.is_empty() || quoted_end(text.as_bytes()) != Some(text.len()) {
            return Err(());
        }
        Ok(Warning {
            code: code.parse().map_err(|_| ())?,
            agent,
            text: &text[1..text.len() - 1],
        })
    }
}
