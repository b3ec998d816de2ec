//! Header names: the known ones as an enum (with RFC 3261 7.3.3 and extension compact forms),
//! everything else as [`HeaderName::Other`]. Matching is case-insensitive (RFC 3261 7.3.1).

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal $(, $compact:literal)? ; )*) => {
        /// A header field name. Known names are recognised in long and compact form.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// A header this crate has no typed view for; its raw name is kept in the message.
            Other,
        }

        impl HeaderName {
            /// Canonical long-form name (`"Other"` for [`HeaderName::Other`]).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other => "Other",
                }
            }

            /// Recognises a raw name, case-insensitively, in long or compact form.
            pub fn from_bytes(name: &[u8]) -> HeaderName {
                if name.len() == 1 {
                    return COMPACT[name[0].to_ascii_lowercase() as usize];
                }
                if name.len() < 2 || name.len() > 32 {
                    return HeaderName::Other;
                }
                // One table probe picks the only candidate; one comparison confirms it.
                match LONG[slot(name)] {
                    Some(i) if folded_eq(name, LONG_NAMES[i as usize].0.as_bytes()) => {
                        LONG_NAMES[i as usize].1
                    }
                    _ => HeaderName::Other,
                }
            }
        }

        const LONG_NAMES: &[(&str, HeaderName)] = &[ $( ($canon, HeaderName::$variant), )* ];
        const COMPACT_NAMES: &[(&str, HeaderName)] = &[ $( $( ($compact, HeaderName::$variant), )? )* ];
    };
}

/// Case-insensitive equality against a known name made of letters and `-` only: setting
/// bit 0x20 folds ASCII letters and leaves `-` alone; no token character folds onto a letter
/// except the upper-case letters themselves.
#[inline]
fn folded_eq(name: &[u8], known: &[u8]) -> bool {
    if name.len() != known.len() {
        return false;
    }
    // Eight bytes at a time: names are 2..=19 bytes, so this is two or three compares.
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let mut a = name.chunks_exact(8);
    let mut b = known.chunks_exact(8);
    for (x, y) in a.by_ref().zip(b.by_ref()) {
        let x = u64::from_le_bytes(x.try_into().expect("invariant: chunk of 8"));
        let y = u64::from_le_bytes(y.try_into().expect("invariant: chunk of 8"));
        if x | FOLD != y | FOLD {
            return false;
        }
    }
    a.remainder()
        .iter()
        .zip(b.remainder())
        .all(|(x, y)| x | 0x20 == y | 0x20)
}

/// Table slot of a name (at least 2 bytes): length, first, second and last byte, case-folded.
/// The coefficients were searched to be collision-free over the known names.
const fn slot(name: &[u8]) -> usize {
    let first = name[0].to_ascii_lowercase() as usize;
    let second = name[1].to_ascii_lowercase() as usize;
    let last = name[name.len() - 1].to_ascii_lowercase() as usize;
    (name.len() + first + last * 5 + second * 6) % 256
}

const LONG: [Option<u8>; 256] = {
    let mut t = [None; 256];
    let mut i = 0;
    while i < LONG_NAMES.len() {
        let s = slot(LONG_NAMES[i].0.as_bytes());
        // A collision would make a known header unrecognisable: fail the build instead.
        assert!(t[s].is_none(), "header name table collision; change slot()");
        t[s] = Some(i as u8);
        i += 1;
    }
    t
};

const COMPACT: [HeaderName; 256] = {
    let mut t = [HeaderName::Other; 256];
    let mut i = 0;
    while i < COMPACT_NAMES.len() {
        t[COMPACT_NAMES[i].0.as_bytes()[0] as usize] = COMPACT_NAMES[i].1;
        i += 1;
    }
    t
};

header_names! {
    /// `Via` / `v`.
    Via => "Via", "v";
    /// `From` / `f`.
    From => "From", "f";
    /// `To` / `t`.
    To => "To", "t";
    /// `Call-ID` / `i`.
    CallId => "Call-ID", "i";
    /// `CSeq`.
    CSeq => "CSeq";
    /// `Max-Forwards`.
    MaxForwards => "Max-Forwards";
    /// `Contact` / `m`.
    Contact => "Contact", "m";
    /// `Content-Length` / `l`.
    ContentLength => "Content-Length", "l";
    /// `Content-Type` / `c`.
    ContentType => "Content-Type", "c";
    /// `Content-Encoding` / `e`.
    ContentEncoding => "Content-Encoding", "e";
    /// `Content-Disposition`.
    ContentDisposition => "Content-Disposition";
    /// `Route`.
    Route => "Route";
    /// `Record-Route`.
    RecordRoute => "Record-Route";
    /// `Expires`.
    Expires => "Expires";
    /// `Authorization`.
    Authorization => "Authorization";
    /// `Proxy-Authorization`.
    ProxyAuthorization => "Proxy-Authorization";
    /// `WWW-Authenticate`.
    WwwAuthenticate => "WWW-Authenticate";
    /// `Proxy-Authenticate`.
    ProxyAuthenticate => "Proxy-Authenticate";
    /// `Reason` (RFC 3326).
    Reason => "Reason";
    /// `Session-Expires` / `x` (RFC 4028).
    SessionExpires => "Session-Expires", "x";
    /// `Min-SE` (RFC 4028).
    MinSe => "Min-SE";
    /// `Supported` / `k`.
    Supported => "Supported", "k";
    /// `Require`.
    Require => "Require";
    /// `Proxy-Require`.
    ProxyRequire => "Proxy-Require";
    /// `Unsupported`.
    Unsupported => "Unsupported";
    /// `Allow`.
    Allow => "Allow";
    /// `Allow-Events` / `u` (RFC 6665).
    AllowEvents => "Allow-Events", "u";
    /// `Event` / `o` (RFC 6665).
    Event => "Event", "o";
    /// `Accept`.
    Accept => "Accept";
    /// `Retry-After`.
    RetryAfter => "Retry-After";
    /// `Warning`.
    Warning => "Warning";
    /// `Subject` / `s`.
    Subject => "Subject", "s";
    /// `Refer-To` / `r` (RFC 3515).
    ReferTo => "Refer-To", "r";
    /// `Referred-By` / `b` (RFC 3892).
    ReferredBy => "Referred-By", "b";
    /// `User-Agent`.
    UserAgent => "User-Agent";
    /// `Server`.
    Server => "Server";
    /// `Timestamp`.
    Timestamp => "Timestamp";
    /// `Date`.
    Date => "Date";
    /// `RSeq` (RFC 3262).
    RSeq => "RSeq";
    /// `RAck` (RFC 3262).
    RAck => "RAck";
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
