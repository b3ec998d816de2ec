//! CSeq (RFC 3261 20.16): a sequence number below 2**31 and a method.

use bytes::Bytes;

use crate::sip::scan::{is_lws, is_token};
use crate::sip::Method;

/// A checked CSeq value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, < 2**31 (RFC 3261 8.1.1.5).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

/// Largest legal CSeq number.
pub const MAX_SEQ: u32 = (1 << 31) - 1;

/// Parses the raw value `v`, which lies inside `buf` (an extension method shares `buf`).
pub(crate) fn parse(buf: &Bytes, v: &[u8]) -> Result<CSeq, ()> {
    let digits = v
        .iter()
        .position(|&b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    if digits == 0 || digits > 10 {
        return Err(());
    }
    let mut seq: u64 = 0;
    for &d in &v[..digits] {
        seq = seq * 10 + u64::from(d - b'0');
    }
    if seq > u64::from(MAX_SEQ) {
        return Err(());
    }
    let rest = &v[digits..];
    let ws = rest.iter().position(|&b| !is_lws(b)).ok_or(())?;
    if ws == 0 {
        return Err(());
    }
    let method = &rest[ws..];
    if !method.iter().all(|&b| is_token(b)) {
        return Err(());
    }
    let method = Method::from_slice_of(buf, method).ok_or(())?;
    Ok(CSeq {
        seq: seq as u32,
        method,
    })
}
