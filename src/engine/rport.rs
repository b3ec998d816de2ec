//! Where a response goes and what the request's top Via records about its sender: RFC 3261
//! 18.2.1 (`received` when the sent-by host is not the packet's source IP), RFC 3581 (`rport`
//! filled with the source port when the client asked for it) and 18.2.2 (responses over UDP to the
//! source IP and the sent-by port, or the source port with rport; over TCP on the same
//! connection).

use std::net::{IpAddr, SocketAddr};

use crate::b2bua::Dest;
use crate::config::model::Transport;
use crate::sip::headers::Rport;
use crate::sip::{self, Editor, Message, Request};

/// Stamps `received`/`rport` on the top Via when RFC 3581/3261 ask for it and returns the
/// request to answer from (its responses copy that Via) with the address responses go to.
pub(crate) fn stamp(req: Request, source: Dest) -> (Request, Dest) {
    let via = req.parts().top_via();
    let rport = via.rport();
    let same_host = via
        .host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .ok()
        == Some(source.addr.ip());
    let reply_to = match (source.transport, rport) {
        (Transport::Tcp | Transport::Tls, _) | (_, Rport::Requested | Rport::Value(_)) => source,
        (Transport::Udp, Rport::Absent) => Dest {
            transport: source.transport,
            addr: SocketAddr::new(source.addr.ip(), via.port.unwrap_or(5060)),
        },
    };
    if same_host && rport == Rport::Absent {
        return (req, reply_to);
    }
    let new_top = stamped_via(&via, source.addr, rport != Rport::Absent);
    let edited = Editor::new(&req)
        .remove_top_via()
        .push_front("Via", &new_top)
        .finish();
    let reparsed = match source.transport {
        Transport::Udp => sip::parse_datagram(edited),
        Transport::Tcp | Transport::Tls => sip::parse_stream_message(edited),
    };
    match reparsed {
        Ok(Message::Request(stamped)) => (stamped, reply_to),
        // Cannot happen for a Via our parser accepted; answer from the original rather than drop.
        _ => (req, reply_to),
    }
}

fn stamped_via(via: &sip::headers::Via<'_>, source: SocketAddr, rport: bool) -> String {
    let mut out = format!(
        "{}/{}/{} {}",
        via.protocol, via.version, via.transport, via.host
    );
    if let Some(port) = via.port {
        out.push_str(&format!(":{port}"));
    }
    for param in via.params.as_str().split(';').filter(|p| !p.is_empty()) {
        let name = param.split('=').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("received") && !name.eq_ignore_ascii_case("rport") {
            out.push(';');
            out.push_str(param);
        }
    }
    out.push_str(&format!(";received={}", source.ip()));
    if rport {
        out.push_str(&format!(";rport={}", source.port()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(via: &str) -> Request {
        let text = format!("OPTIONS sip:x@y SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        match sip::parse_datagram(Bytes::from(text)) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn udp(addr: &str) -> Dest {
        Dest {
            transport: Transport::Udp,
            addr: addr.parse().expect("addr"),
        }
    }

    #[test]
    fn rport_requested_gets_source_port_and_received() {
        let (r, to) = stamp(
            req("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport"),
            udp("203.0.113.7:40000"),
        );
        assert_eq!(to, udp("203.0.113.7:40000"));
        let top = r
            .parts()
            .values(sip::HeaderName::Via)
            .next()
            .unwrap_or("")
            .to_owned();
        assert_eq!(
            top,
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=203.0.113.7;rport=40000"
        );
    }

    #[test]
    fn without_rport_responses_go_to_the_sent_by_port_of_the_source_ip() {
        let (r, to) = stamp(
            req("SIP/2.0/UDP pbx.example:5070;branch=z9hG4bK2"),
            udp("198.51.100.2:33333"),
        );
        assert_eq!(to, udp("198.51.100.2:5070"));
        let top = r
            .parts()
            .values(sip::HeaderName::Via)
            .next()
            .unwrap_or("")
            .to_owned();
        assert!(
            top.ends_with(";branch=z9hG4bK2;received=198.51.100.2"),
            "{top}"
        );
    }

    #[test]
    fn matching_host_without_rport_is_left_untouched() {
        let original = req("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK3");
        let bytes = original.parts().as_bytes().clone();
        let (r, to) = stamp(original, udp("127.0.0.1:5060"));
        assert_eq!(to, udp("127.0.0.1:5060"));
        assert_eq!(r.parts().as_bytes(), &bytes);
    }
}
