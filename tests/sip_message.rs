//! Parsing, accessors, framing, editing and building on ordinary SIP traffic.

use bytes::Bytes;
use callgate::sip::headers::{Contact, Rport};
use callgate::sip::uri::Uri;
use callgate::sip::{
    cancel_for, frame_stream, parse_datagram, parse_stream_message, response_to, Editor, Frame,
    HeaderName, Message, Method, ParseError, RequestBuilder,
};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn invite() -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKold;received=192.0.2.99\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Supported: timer, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{}",
        SDP.len(),
        SDP
    )
}

fn parse(s: &str) -> Message {
    parse_datagram(Bytes::from(s.to_owned())).expect("valid message")
}

#[test]
fn invite_accessors_return_checked_fields() {
    let msg = parse(&invite());
    let req = msg.as_request().expect("request");
    assert_eq!(*req.method(), Method::Invite);
    assert_eq!(req.uri_str(), "sip:bob@example.com");
    let Uri::Sip(u) = req.uri() else {
        panic!("sip uri")
    };
    assert_eq!((u.user, u.host, u.port), (Some("bob"), "example.com", None));
    assert_eq!(msg.call_id(), "a84b4c76e66710@pc33.example.com");
    assert_eq!(msg.cseq().seq, 314159);
    assert_eq!(msg.cseq().method, Method::Invite);
    assert_eq!(msg.from_tag().map(|t| t.as_str()), Some("1928301774"));
    assert!(msg.to_tag().is_none());
    assert_eq!(msg.branch().map(|b| b.as_str()), Some("z9hG4bK776asdhds"));
    assert!(msg.branch().is_some_and(|b| b.is_rfc3261()));
    assert_eq!(msg.max_forwards(), Some(70));
    let top = msg.top_via();
    assert_eq!(
        (top.transport, top.host, top.port),
        ("UDP", "192.0.2.10", Some(5060))
    );
    assert_eq!(top.rport(), Rport::Requested);
    let vias: Vec<_> = msg.vias().map(|v| v.expect("via")).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!((vias[1].host, vias[1].port), ("[2001:db8::1]", Some(5070)));
    assert_eq!(vias[1].received(), Some("192.0.2.99"));
    assert_eq!(msg.from().display_name, Some("Alice"));
    assert_eq!(msg.to().display_name, Some("Bob"));
    let contacts: Vec<_> = msg.contacts().map(|c| c.expect("contact")).collect();
    assert_eq!(contacts[0].expires(), Some(3600));
    let rr: Vec<_> = msg.record_routes().map(|r| r.expect("rr").uri).collect();
    assert_eq!(rr, ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
    let sup: Vec<_> = msg.supported().map(|t| t.expect("token")).collect();
    assert_eq!(sup, ["timer", "100rel"]);
    let se = msg.session_expires().expect("present").expect("valid");
    assert_eq!(se.secs, 1800);
    assert_eq!(msg.min_se(), Some(Ok(90)));
    assert!(msg
        .content_type()
        .expect("ct")
        .expect("valid")
        .is("application", "sdp"));
    assert_eq!(msg.body(), SDP.as_bytes());
    assert_eq!(msg.to_bytes(), Bytes::from(invite()));
}

#[test]
fn contact_wildcard_and_compact_forms() {
    let raw =
        "REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/UDP h.example.com;branch=z9hG4bKa\r\n\
f: <sip:a@example.com>;tag=x\r\nt: <sip:a@example.com>\r\ni: reg1\r\nCSeq: 2 REGISTER\r\n\
m: *\r\nExpires: 0\r\nl: 0\r\n\r\n";
    let msg = parse(raw);
    assert_eq!(msg.call_id(), "reg1");
    assert_eq!(msg.contacts().next(), Some(Ok(Contact::Wildcard)));
    assert_eq!(msg.expires(), Some(Ok(0)));
    assert_eq!(msg.content_length(), Some(0));
}

#[test]
fn datagram_body_truncated_to_content_length_and_short_body_refused() {
    let mut raw = invite();
    raw.push_str("garbage after the body");
    let msg = parse(&raw);
    assert_eq!(msg.body(), SDP.as_bytes());
    assert_eq!(msg.to_bytes(), Bytes::from(invite()));
    let short = &invite()[..invite().len() - 10];
    let err = parse_datagram(Bytes::from(short.to_owned())).unwrap_err();
    assert!(matches!(err, ParseError::ContentLength { .. }));
    assert_eq!(err.response_code(), Some(400));
}

#[test]
fn stream_framing_handles_keepalives_partial_and_missing_length() {
    let inv = invite();
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(inv.as_bytes());
    assert_eq!(
        frame_stream(&stream, 65536),
        Ok(Frame::KeepAlive {
            consume: 4,
            pong: true
        })
    );
    let rest = &stream[4..];
    assert_eq!(
        frame_stream(rest, 65536),
        Ok(Frame::Message { len: inv.len() })
    );
    assert_eq!(
        frame_stream(&rest[..100], 65536),
        Err(ParseError::Incomplete)
    );
    assert_eq!(
        frame_stream(&rest[..rest.len() - 1], 65536),
        Err(ParseError::Incomplete)
    );
    assert_eq!(frame_stream(b"\r\n", 65536), Err(ParseError::Incomplete));
    assert!(matches!(
        frame_stream(rest, 100),
        Err(ParseError::TooLarge { .. })
    ));
    let msg = parse_stream_message(Bytes::copy_from_slice(rest)).expect("framed");
    assert_eq!(msg.body(), SDP.as_bytes());
    let no_cl = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
    assert_eq!(
        frame_stream(no_cl.as_bytes(), 65536),
        Err(ParseError::MissingContentLength)
    );
}

#[test]
fn editor_without_edits_is_identity_and_edits_keep_other_bytes() {
    let msg = parse(&invite());
    assert_eq!(Editor::new(&msg).finish(), msg.to_bytes());
    let mut ed = Editor::new(&msg);
    ed.push_front("Via", "SIP/2.0/UDP b2b.example.net;branch=z9hG4bKnew")
        .replace("Max-Forwards", "69")
        .remove(HeaderName::RecordRoute)
        .set_request_uri("sip:bob@192.0.2.20:5060");
    let out = ed.finish();
    let edited = parse_datagram(out.clone()).expect("edited parses");
    assert_eq!(edited.branch().map(|b| b.as_str()), Some("z9hG4bKnew"));
    assert_eq!(edited.vias().count(), 3);
    assert_eq!(edited.max_forwards(), Some(69));
    assert_eq!(edited.record_routes().count(), 0);
    assert_eq!(
        edited.as_request().map(|r| r.uri_str()),
        Some("sip:bob@192.0.2.20:5060")
    );
    assert_eq!(edited.body(), SDP.as_bytes());
    let text = String::from_utf8(out.to_vec()).expect("utf8");
    assert!(text.contains("From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n"));

    let mut ed = Editor::new(&edited);
    ed.remove_top_via().set_body("", Bytes::new());
    let back = parse_datagram(ed.finish()).expect("parses");
    assert_eq!(back.branch().map(|b| b.as_str()), Some("z9hG4bK776asdhds"));
    assert_eq!(back.content_length(), Some(0));
    assert!(back.content_type().is_none());
}

#[test]
fn response_to_copies_dialog_headers_and_adds_to_tag() {
    let msg = parse(&invite());
    let req = msg.as_request().expect("request");
    let out = response_to(
        req,
        486,
        "Busy Here",
        Some("b2b-1"),
        &[("Retry-After", "30")],
    );
    let resp = parse_datagram(out).expect("response parses");
    let r = resp.as_response().expect("response");
    assert_eq!(r.status().as_u16(), 486);
    assert_eq!(r.reason_phrase(), b"Busy Here");
    assert_eq!(resp.vias().count(), 2);
    assert_eq!(resp.branch(), msg.branch());
    assert_eq!(resp.to_tag().map(|t| t.as_str()), Some("b2b-1"));
    assert_eq!(resp.from_tag(), msg.from_tag());
    assert_eq!(resp.cseq(), msg.cseq());
    assert_eq!(resp.retry_after().expect("ra").expect("valid").secs, 30);
}

#[test]
fn cancel_and_builder_produce_parseable_requests() {
    let msg = parse(&invite());
    let req = msg.as_request().expect("request");
    let cancel = parse_datagram(cancel_for(req)).expect("cancel parses");
    assert_eq!(cancel.cseq().method, Method::Cancel);
    assert_eq!(cancel.cseq().seq, 314159);
    assert_eq!(cancel.branch(), msg.branch());
    assert_eq!(cancel.vias().count(), 1);
    assert_eq!(
        cancel.as_request().map(|r| r.uri_str()),
        Some("sip:bob@example.com")
    );

    let built = RequestBuilder::new(Method::Invite, "sip:bob@192.0.2.20")
        .via("UDP", "198.51.100.1:5060", "z9hG4bKb1")
        .from("sip:alice@example.com", Some("bt1"))
        .to("\"Bob\" <sip:bob@example.com>", None)
        .call_id("b-leg-1")
        .cseq(1)
        .contact("sip:callgate@198.51.100.1:5060")
        .body("application/sdp", SDP.as_bytes())
        .build();
    let b = parse_datagram(built).expect("built parses");
    assert_eq!(b.call_id(), "b-leg-1");
    assert_eq!(b.from_tag().map(|t| t.as_str()), Some("bt1"));
    assert_eq!(b.body(), SDP.as_bytes());
    assert_eq!(b.top_via().rport(), Rport::Requested);
}

#[test]
fn every_known_header_name_is_recognised_in_any_case_and_compact_form() {
    let all = [
        (HeaderName::Via, "v"),
        (HeaderName::From, "f"),
        (HeaderName::To, "t"),
        (HeaderName::CallId, "i"),
        (HeaderName::Contact, "m"),
        (HeaderName::ContentLength, "l"),
        (HeaderName::ContentType, "c"),
        (HeaderName::ContentEncoding, "e"),
        (HeaderName::SessionExpires, "x"),
        (HeaderName::Supported, "k"),
        (HeaderName::Subject, "s"),
        (HeaderName::Event, "o"),
        (HeaderName::AllowEvents, "u"),
        (HeaderName::ReferTo, "r"),
        (HeaderName::ReferredBy, "b"),
    ];
    for (name, compact) in all {
        assert_eq!(HeaderName::from_bytes(compact.as_bytes()), name);
        assert_eq!(
            HeaderName::from_bytes(compact.to_uppercase().as_bytes()),
            name
        );
    }
    for name in [
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Expires,
        HeaderName::Authorization,
        HeaderName::ProxyAuthorization,
        HeaderName::WwwAuthenticate,
        HeaderName::ProxyAuthenticate,
        HeaderName::Reason,
        HeaderName::MinSe,
        HeaderName::Require,
        HeaderName::ProxyRequire,
        HeaderName::Unsupported,
        HeaderName::Allow,
        HeaderName::Accept,
        HeaderName::RetryAfter,
        HeaderName::Warning,
        HeaderName::UserAgent,
        HeaderName::Server,
        HeaderName::Timestamp,
        HeaderName::Date,
        HeaderName::RSeq,
        HeaderName::RAck,
        HeaderName::ContentDisposition,
        HeaderName::Via,
        HeaderName::CallId,
        HeaderName::SessionExpires,
        HeaderName::ReferredBy,
    ] {
        let s = name.as_str();
        assert_eq!(HeaderName::from_bytes(s.as_bytes()), name, "{s}");
        assert_eq!(
            HeaderName::from_bytes(s.to_lowercase().as_bytes()),
            name,
            "{s}"
        );
        assert_eq!(
            HeaderName::from_bytes(s.to_uppercase().as_bytes()),
            name,
            "{s}"
        );
    }
    for other in [
        "X-Custom",
        "Vias",
        "Cal-ID",
        "Contact2",
        "",
        "q",
        "Content-Lengthy",
        "C%6Fntact",
    ] {
        assert_eq!(
            HeaderName::from_bytes(other.as_bytes()),
            HeaderName::Other,
            "{other}"
        );
    }
}

#[test]
fn authorization_debug_never_shows_the_response() {
    let raw = "REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:bob@example.org>;tag=1\r\nTo: <sip:bob@example.org>\r\nCall-ID: r1\r\nCSeq: 2 REGISTER\r\n\
Authorization: Digest username=\"bob\", realm=\"example.org\", nonce=\"abc\", uri=\"sip:example.org\", response=\"6629fae49393a05397450978507c4ef1\"\r\n\
Content-Length: 0\r\n\r\n";
    let msg = parse(raw);
    let cred = msg.authorization().expect("present").expect("valid");
    assert_eq!(cred.scheme(), "Digest");
    assert_eq!(cred.param("username"), Some("bob"));
    assert_eq!(
        cred.param("response"),
        Some("6629fae49393a05397450978507c4ef1")
    );
    let dbg = format!("{cred:?} {msg:?}");
    assert!(!dbg.contains("6629fae4"), "{dbg}");
    assert!(!dbg.contains("abc"), "nonce redacted too: {dbg}");
}

#[test]
fn typed_views_of_less_common_headers() {
    let raw = "SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1;rport=5062;received=192.0.2.1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
Retry-After: 120 (maintenance);duration=60\r\nWarning: 399 callgate.example \"limit reached\"\r\n\
Reason: SIP;cause=503;text=\"trunk full\"\r\nAllow: INVITE, ACK, BYE\r\n\
WWW-Authenticate: Digest realm=\"x\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"\r\n\
Content-Length: 0\r\n\r\n";
    let msg = parse(raw);
    assert_eq!(msg.top_via().rport(), Rport::Value(5062));
    let ra = msg.retry_after().expect("ra").expect("valid");
    assert_eq!(
        (ra.secs, ra.comment, ra.params.get("duration")),
        (120, Some("maintenance"), Some(Some("60")))
    );
    let w = msg.warnings().next().expect("w").expect("valid");
    assert_eq!(
        (w.code, w.agent, w.text),
        (399, "callgate.example", "limit reached")
    );
    let r = msg.reasons().next().expect("r").expect("valid");
    assert_eq!(
        (r.protocol, r.cause(), r.text()),
        ("SIP", Some(503), Some("trunk full"))
    );
    let allow: Vec<_> = msg.allow().map(|m| m.expect("token")).collect();
    assert_eq!(allow, ["INVITE", "ACK", "BYE"]);
    let ch = msg.www_authenticate().next().expect("ch").expect("valid");
    assert_eq!(
        (ch.scheme(), ch.param("nonce"), ch.param("qop")),
        ("Digest", Some("n1"), Some("auth"))
    );
}

#[test]
fn ipv6_and_tel_uris() {
    let raw = "INVITE sip:[2001:db8::5]:5080;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP [2001:db8::1];branch=z9hG4bK1\r\n\
From: <tel:+1-201-555-0123;phone-context=example.com>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let msg = parse(raw);
    let Uri::Sip(u) = msg.as_request().expect("req").uri() else {
        panic!("sip")
    };
    assert_eq!(
        (u.host, u.port, u.params.get("transport")),
        ("[2001:db8::5]", Some(5080), Some(Some("tcp")))
    );
    let Uri::Tel(t) = msg.from().parsed_uri() else {
        panic!("tel")
    };
    assert_eq!(t.number, "+1-201-555-0123");
    assert_eq!(t.params.get("phone-context"), Some(Some("example.com")));
    assert_eq!(msg.top_via().host, "[2001:db8::1]");
}
