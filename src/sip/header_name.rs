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
                // Lower-case into a stack buffer: every known name is shorter than 32 bytes.
                let mut low = [0u8; 32];
                if name.is_empty() || name.len() > low.len() {
                    return HeaderName::Other;
                }
                for (d, s) in low.iter_mut().zip(name) {
                    *d = s.to_ascii_lowercase();
                }
                let low = &low[..name.len()];
                $(
                    if low.len() == $canon.len() && low == const { lower_const::<{ $canon.len() }>($canon) }.as_slice() {
                        return HeaderName::$variant;
                    }
                    $( if low == $compact.as_bytes() { return HeaderName::$variant; } )?
                )*
                HeaderName::Other
            }
        }
    };
}

/// Lower-cases an ASCII literal at compile time.
const fn lower_const<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = b[i].to_ascii_lowercase();
        i += 1;
    }
    out
}

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
