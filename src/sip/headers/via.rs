//! Via (RFC 3261 20.42, 18.2.1; `rport` RFC 3581).

use super::{Branch, Params};
use crate::sip::scan::{find_byte, find_top, is_lws, is_token, trim_lws};
use crate::sip::uri::split_hostport;

/// One Via value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name (`SIP`).
    pub protocol: &'a str,
    /// Protocol version (`2.0`).
    pub version: &'a str,
    /// Transport (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or an extension).
    pub transport: &'a str,
    /// sent-by host; IPv6 keeps its brackets.
    pub host: &'a str,
    /// sent-by port, when written.
    pub port: Option<u16>,
    /// All parameters.
    pub params: Params<'a>,
}

/// The `rport` parameter (RFC 3581).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rport {
    /// Not present.
    Absent,
    /// Present without a value: the client asks for it.
    Requested,
    /// Filled in by a server.
    Value(u16),
}

impl<'a> Via<'a> {
    /// The branch parameter, when present and a token.
    pub fn branch(&self) -> Option<Branch<'a>> {
        self.params.get("branch").flatten().and_then(Branch::parse)
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// The `rport` parameter.
    pub fn rport(&self) -> Rport {
        match self.params.get("rport") {
            None => Rport::Absent,
            Some(None) => Rport::Requested,
            Some(Some(v)) => v.parse().map(Rport::Value).unwrap_or(Rport::Requested),
        }
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// Whether the transport is a reliable one (TCP, TLS, SCTP, WS, WSS).
    pub fn is_reliable(&self) -> bool {
        !self.transport.eq_ignore_ascii_case("UDP")
    }
}

fn token_at(s: &str) -> (&str, &str) {
    let end = s.bytes().position(|b| !is_token(b)).unwrap_or(s.len());
    (&s[..end], trim_lws(&s[end..]))
}

fn expect_slash(s: &str) -> Result<&str, ()> {
    s.strip_prefix('/').map(trim_lws).ok_or(())
}

/// Parses one Via value (no top-level commas).
pub(crate) fn parse(s: &str) -> Result<Via<'_>, ()> {
    parse_with_branch(s).map(|(v, _)| v)
}

/// Parses and finds the `branch` parameter in the same pass.
pub(crate) fn parse_with_branch(s: &str) -> Result<(Via<'_>, Option<Option<&str>>), ()> {
    let s = trim_lws(s);
    let (protocol, rest) = token_at(s);
    let (version, rest) = token_at(expect_slash(rest)?);
    let rest = expect_slash(rest)?;
    let end = rest
        .bytes()
        .position(|b| !is_token(b))
        .unwrap_or(rest.len());
    let (transport, rest) = (&rest[..end], &rest[end..]);
    if protocol.is_empty() || version.is_empty() || transport.is_empty() {
        return Err(());
    }
    // sent-protocol LWS sent-by
    if !rest.bytes().next().is_some_and(is_lws) {
        return Err(());
    }
    let rest = trim_lws(rest);
    let (sent_by, params) = match find_top(rest, b';') {
        Some(i) => (trim_lws(&rest[..i]), &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = sent_by_parts(sent_by)?;
    let (params, branch) = Params::parse_find(params, "branch").ok_or(())?;
    Ok((
        Via {
            protocol,
            version,
            transport,
            host,
            port,
            params,
        },
        branch,
    ))
}

/// `host [ SWS ":" SWS port ]`.
fn sent_by_parts(s: &str) -> Result<(&str, Option<u16>), ()> {
    let host_end = if s.starts_with('[') {
        find_byte(s, b']').ok_or(())? + 1
    } else {
        s.bytes()
            .position(|b| b == b':' || is_lws(b))
            .unwrap_or(s.len())
    };
    let (host, _) = split_hostport(&s[..host_end])?;
    let rest = trim_lws(&s[host_end..]);
    if rest.is_empty() {
        return Ok((host, None));
    }
    let digits = trim_lws(rest.strip_prefix(':').ok_or(())?);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok((host, Some(digits.parse().map_err(|_| ())?)))
}
