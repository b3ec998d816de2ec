//! Comma-separated token lists: Supported, Require, Proxy-Require, Allow (RFC 3261 20.5, 20.32, 20.37).

use crate::sip::scan::is_token_str;

/// One list item: a token.
pub(crate) fn parse_token(s: &str) -> Result<&str, ()> {
    if is_token_str(s) {
        Ok(s)
    } else {
        Err(())
    }
}
