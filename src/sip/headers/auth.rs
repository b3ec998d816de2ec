//! Authorization / Proxy-Authorization credentials and WWW-/Proxy-Authenticate challenges
//! (RFC 3261 20.7, 20.27, 20.28, 20.44; RFC 2617).
//!
//! `Debug` never prints parameter values other than a short allow-list, so a digest
//! `response` cannot reach a log through `{:?}` (style guide 5).

use std::fmt;

use crate::sip::scan::{
    find_byte, is_token, is_token_str, quoted_end, split_top, trim_lws, unquote,
};

/// `scheme auth-param *(COMMA auth-param)`, shared by credentials and challenges.
#[derive(Clone, Copy, PartialEq, Eq)]
struct AuthValue<'a> {
    scheme: &'a str,
    params: &'a str,
}

impl<'a> AuthValue<'a> {
    fn parse(s: &'a str) -> Result<AuthValue<'a>, ()> {
        let s = trim_lws(s);
        let end = s.bytes().position(|b| !is_token(b)).unwrap_or(s.len());
        let scheme = &s[..end];
        let params = trim_lws(&s[end..]);
        if !is_token_str(scheme) {
            return Err(());
        }
        for p in split_top(params, b',').filter(|p| !p.is_empty()) {
            let eq = find_byte(p, b'=').ok_or(())?;
            let (n, v) = (trim_lws(&p[..eq]), trim_lws(&p[eq + 1..]));
            let v_ok = if v.starts_with('"') {
                quoted_end(v.as_bytes()) == Some(v.len())
            } else {
                is_token_str(v) || v.bytes().all(|b| is_token(b) || b == b'/' || b == b'=')
            };
            if !is_token_str(n) || !v_ok {
                return Err(());
            }
        }
        Ok(AuthValue { scheme, params })
    }

    fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        split_top(self.params, b',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let eq = find_byte(p, b'=').unwrap_or(p.len());
                (
                    trim_lws(&p[..eq]),
                    unquote(trim_lws(p.get(eq + 1..).unwrap_or(""))),
                )
            })
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn redacted(&self, kind: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: [&str; 5] = ["username", "realm", "uri", "algorithm", "qop"];
        let mut d = f.debug_struct(kind);
        d.field("scheme", &self.scheme);
        for (n, v) in self.iter() {
            let shown = SHOWN.iter().any(|s| s.eq_ignore_ascii_case(n));
            d.field(n, if shown { &v } else { &"<redacted>" });
        }
        d.finish()
    }
}

macro_rules! auth_view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name<'a>(AuthValue<'a>);

        impl<'a> $name<'a> {
            pub(crate) fn parse(s: &'a str) -> Result<Self, ()> {
                AuthValue::parse(s).map($name)
            }

            /// The scheme (`Digest`).
            pub fn scheme(&self) -> &'a str {
                self.0.scheme
            }

            /// A parameter value, unquoted (escapes kept); names are case-insensitive.
            pub fn param(&self, name: &str) -> Option<&'a str> {
                self.0.get(name)
            }

            /// All `(name, value)` pairs, values unquoted.
            pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
                self.0.iter()
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.redacted(stringify!($name), f)
            }
        }
    };
}

auth_view!(
    /// Authorization / Proxy-Authorization credentials.
    Credentials
);
auth_view!(
    /// WWW-Authenticate / Proxy-Authenticate challenge.
    Challenge
);
