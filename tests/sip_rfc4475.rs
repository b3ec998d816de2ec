//! RFC 4475 torture messages (reconstructed from the RFC text into tests/data/rfc4475/, CRLF
//! line ends; mpart01's binary part is our own bytes with NULs since the RFC's DER cannot be
//! recovered from its text rendering). Valid ones must parse with the right fields and
//! serialize back byte-exact; invalid ones must be refused with the response code the RFC
//! asks for. Where the RFC lets an element choose, the chosen behaviour is stated.

use bytes::Bytes;
use callgate::sip::headers::{Contact, Rport};
use callgate::sip::uri::Uri;
use callgate::sip::{parse_datagram, Editor, HeaderName, Message, Method, ParseError};

fn load(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/data/rfc4475/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn valid(name: &str) -> Message {
    let raw = load(name);
    let msg = parse_datagram(raw.clone()).unwrap_or_else(|e| panic!("{name} must parse: {e:?}"));
    // Round trip: unedited serialization is the received message (dblreq: minus the noise).
    let out = Editor::new(&msg).finish();
    assert_eq!(
        out,
        msg.to_bytes(),
        "{name}: editor without edits is identity"
    );
    assert!(
        raw.starts_with(&out),
        "{name}: serialized bytes are a prefix of the input"
    );
    let again = parse_datagram(out).expect("re-parse");
    assert_eq!(again.call_id(), msg.call_id());
    msg
}

fn refused(name: &str) -> ParseError {
    match parse_datagram(load(name)) {
        Ok(m) => panic!("{name} must be refused, parsed as {m:?}"),
        Err(e) => e,
    }
}

fn req(msg: &Message) -> &callgate::sip::Request {
    msg.as_request().expect("a request")
}

#[test]
fn wsinv_short_tortuous_invite() {
    let m = valid("wsinv");
    let r = req(&m);
    assert_eq!(*r.method(), Method::Invite);
    let Uri::Sip(u) = r.uri() else { panic!("sip") };
    assert_eq!((u.user, u.host), (Some("vivekg"), "chair-dnrc.example.com"));
    assert!(u.params.contains("unknownparam"));
    assert_eq!(m.to_tag().map(|t| t.as_str()), Some("1918181833n"));
    assert_eq!(m.from_tag().map(|t| t.as_str()), Some("98asjd8"));
    assert_eq!(m.from().display_name, Some("J Rosenberg \\\\\\\""));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.call_id(), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!((m.cseq().seq, &m.cseq().method), (9, &Method::Invite));
    let vias: Vec<_> = m.vias().map(|v| v.expect("via")).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!((vias[0].transport, vias[0].host), ("UDP", "192.0.2.2"));
    assert_eq!(m.branch().map(|b| b.as_str()), Some("390skdjuw"));
    assert!(!m.branch().expect("branch").is_rfc3261());
    assert_eq!(
        (vias[1].transport, vias[1].host),
        ("TCP", "spindle.example.com")
    );
    assert_eq!(vias[1].branch().map(|b| b.as_str()), Some("z9hG4bK9ikj8"));
    assert_eq!(
        (vias[2].host, vias[2].branch().map(|b| b.as_str())),
        ("192.168.255.111", Some("z9hG4bK30239"))
    );
    assert_eq!(
        m.header(HeaderName::Subject).map(|h| h.value),
        Some(&b""[..])
    );
    let nf = m
        .headers_raw("NewFangledHeader")
        .next()
        .expect("unknown header kept");
    assert_eq!(nf.value, b"newfangled value\r\n continued newfangled value");
    let odd = m
        .headers_raw("UnknownHeaderWithUnusualValue")
        .next()
        .expect("kept");
    assert_eq!(odd.value, b";;,,;;,;");
    let c: Vec<_> = m.contacts().map(|c| c.expect("contact")).collect();
    let Contact::Address(a) = c[0] else {
        panic!("address")
    };
    assert_eq!(a.display_name, Some("Quoted string \\\"\\\""));
    assert_eq!(a.params.get("newparam"), Some(Some("newvalue")));
    assert_eq!(a.params.get("secondparam"), Some(None));
    assert_eq!(a.params.get("q"), Some(Some("0.33")));
    let route = m.routes().next().expect("route").expect("valid");
    assert_eq!(
        route.uri,
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value"
    );
    assert_eq!(m.content_length(), Some(150));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn intmeth_wide_range_of_characters() {
    let m = valid("intmeth");
    let r = req(&m);
    let Method::Extension(name) = r.method() else {
        panic!("extension")
    };
    assert_eq!(&name[..], b"!interesting-Method0123456789_*+`.%indeed'~");
    let Uri::Sip(u) = r.uri() else { panic!("sip") };
    assert_eq!(
        u.user,
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password,
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(u.host, "example.com");
    assert_eq!(m.branch().map(|b| b.as_str()), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(m.to().display_name, Some("BEL:\\\x07 NUL:\\\0 DEL:\\\x7f"));
    assert_eq!(
        m.from().display_name,
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(m.from_tag().map(|t| t.as_str()), Some("_token~1'+`*%!-."));
    assert_eq!(
        m.from().params.get_unquoted("fromParam''~+*_!.-%"),
        Some("работающий")
    );
    assert_eq!(m.call_id(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(m.cseq().seq, 139122385);
    assert_eq!(&m.cseq().method, r.method());
    assert_eq!(m.max_forwards(), Some(255));
    let ext = m
        .headers_raw("extensionHeader-!.%*+_`'~")
        .next()
        .expect("kept");
    assert_eq!(ext.value_str(), Some("\u{feff}大停電"));
}

#[test]
fn esc01_escapes_kept_as_written() {
    let m = valid("esc01");
    let Uri::Sip(u) = req(&m).uri() else {
        panic!("sip")
    };
    assert_eq!(
        (u.user, u.host),
        (Some("sips%3Auser%40example.com"), "example.net")
    );
    assert_eq!(m.to().uri, "sip:%75se%72@example.com");
    assert_eq!(m.from_tag().map(|t| t.as_str()), Some("938"));
    assert_eq!(m.call_id(), "esc01.239409asdfakjkn23onasd0-3234");
    assert!(m
        .content_type()
        .expect("c:")
        .expect("valid")
        .is("application", "sdp"));
    let c = m.contacts().next().expect("contact").expect("valid");
    let Uri::Sip(cu) = c.address().expect("addr").parsed_uri() else {
        panic!("sip")
    };
    assert_eq!(cu.user, Some("cal%6Cer"));
    assert_eq!(cu.params.get("n%61me"), Some(Some("v%61lue%25%34%31")));
    assert_eq!(cu.params.get("%6C%72"), Some(None));
}

#[test]
fn escnull_nul_escapes_in_user_parts() {
    let m = valid("escnull");
    assert_eq!(*req(&m).method(), Method::Register);
    let users: Vec<_> = m
        .contacts()
        .map(|c| {
            c.expect("valid")
                .address()
                .expect("addr")
                .parsed_uri()
                .as_sip()
                .and_then(|u| u.user)
        })
        .collect();
    assert_eq!(users, [Some("%00"), Some("%00%00")]);
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn esc02_percent_is_not_an_escape_in_methods_and_names() {
    let m = valid("esc02");
    let Method::Extension(name) = req(&m).method() else {
        panic!("extension")
    };
    assert_eq!(&name[..], b"RE%47IST%45R");
    assert_eq!(m.to().display_name, Some("%Z%45"));
    assert_eq!(m.branch().map(|b| b.as_str()), Some("z9hG4bK209%fzsnel234"));
    assert_eq!(m.contacts().count(), 2, "C%6Fntact is not Contact");
    assert_eq!(m.headers_raw("C%6Fntact").count(), 1);
}

#[test]
fn lwsdisp_no_space_before_angle() {
    let m = valid("lwsdisp");
    assert_eq!(m.from().display_name, Some("caller"));
    assert_eq!(m.from_tag().map(|t| t.as_str()), Some("323"));
}

#[test]
fn longreq_long_values_and_34_vias() {
    let m = valid("longreq");
    assert_eq!(m.vias().count(), 34);
    let hosts: Vec<_> = m.vias().map(|v| v.expect("via").host).collect();
    assert_eq!(hosts[0], "sip33.example.com");
    assert_eq!(hosts[32], "sip1.example.com");
    let last = m.vias().last().expect("last").expect("valid");
    assert_eq!(last.received(), Some("192.0.2.5"));
    assert!(m.branch().is_none(), "top Via has no branch");
    assert_eq!(
        m.to().parsed_uri().as_sip().and_then(|u| u.port),
        Some(6000)
    );
    assert_eq!(m.from_tag().map(|t| t.as_str().len()), Some(155));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn dblreq_noise_after_content_length_dropped() {
    let m = valid("dblreq");
    assert_eq!(*req(&m).method(), Method::Register);
    assert_eq!(m.call_id(), "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert!(m.body().is_empty());
    assert!(!m.to_bytes().windows(6).any(|w| w == b"INVITE"));
}

#[test]
fn semiuri_semicolon_in_user_part() {
    let m = valid("semiuri");
    let Uri::Sip(u) = req(&m).uri() else {
        panic!("sip")
    };
    assert_eq!(
        (u.user, u.host),
        (Some("user;par=u%40example.net"), "example.com")
    );
    assert!(u.params.is_empty());
    assert_eq!(m.values(HeaderName::Accept).count(), 6);
}

#[test]
fn transports_all_transport_tokens() {
    let m = valid("transports");
    let t: Vec<_> = m.vias().map(|v| v.expect("via").transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(m.call_id(), "transports.kijh4akdnaqjkwendsasfdj");
}

#[test]
fn mpart01_binary_multipart_body_byte_exact() {
    let raw = load("mpart01");
    let m = valid("mpart01");
    let body = m.body();
    assert_eq!(body.len(), m.content_length().expect("declared"));
    assert!(body.contains(&0));
    assert_eq!(body, &raw[raw.len() - body.len()..]);
    let ct = m.content_type().expect("ct").expect("valid");
    assert!(ct.is("multipart", "mixed"));
    assert_eq!(ct.params.get("boundary"), Some(Some("7a9cbec02ceef655")));
    assert_eq!(m.top_via().port, Some(5070));
    assert_eq!(m.top_via().rport(), Rport::Requested);
}

#[test]
fn unreason_utf8_reason_phrase() {
    let m = valid("unreason");
    let r = m.as_response().expect("response");
    assert_eq!(r.status().as_u16(), 200);
    let reason = std::str::from_utf8(r.reason_phrase()).expect("utf8");
    assert!(reason.starts_with("= 2**3 * 5**2 но сто"));
    assert_eq!(m.to_tag().map(|t| t.as_str()), Some("2229"));
}

#[test]
fn noreason_empty_reason_phrase() {
    let m = valid("noreason");
    let r = m.as_response().expect("response");
    assert_eq!(r.status().as_u16(), 100);
    assert_eq!(r.reason_phrase(), b"");
}

#[test]
fn semantically_odd_but_parseable_messages_parse() {
    // badbranch: bare magic cookie; we parse and report it as not RFC 3261-style so the
    // transaction layer falls back to RFC 2543 matching.
    let m = valid("badbranch");
    assert_eq!(m.branch().map(|b| b.as_str()), Some("z9hG4bK"));
    assert!(!m.branch().expect("branch").is_rfc3261());
    // bcast: broadcast sent-by is the transport's problem, not the parser's.
    assert_eq!(valid("bcast").vias().count(), 2);
    // bext01: the option tags are readable so the UAS can answer 420.
    let m = valid("bext01");
    let req_tags: Vec<_> = m.require().map(|t| t.expect("token")).collect();
    assert_eq!(
        req_tags,
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    assert_eq!(m.proxy_require().count(), 2);
    // cparam01: without <> the parameter belongs to the Contact header, not the URI.
    let m = valid("cparam01");
    let c = m.contacts().next().expect("c").expect("valid");
    let a = *c.address().expect("addr");
    assert!(a.params.contains("unknownparam"));
    assert_eq!(a.uri, "sip:+19725552222@gw1.example.net");
    // cparam02: with <> it is a URI parameter.
    let m = valid("cparam02");
    let c = m.contacts().next().expect("c").expect("valid");
    let a = *c.address().expect("addr");
    assert!(a.params.is_empty());
    assert!(a
        .parsed_uri()
        .as_sip()
        .expect("sip")
        .params
        .contains("unknownparam"));
    // inv2543: no Max-Forwards, no branch, no tags, no Content-Length (body = rest).
    let m = valid("inv2543");
    assert_eq!(
        (m.max_forwards(), m.branch(), m.from_tag()),
        (None, None, None)
    );
    assert_eq!(m.content_length(), None);
    assert_eq!(m.body().len(), 105);
    // invut: unknown body type; the UAS answers 415, the parser just passes it through.
    assert!(valid("invut")
        .content_type()
        .expect("ct")
        .expect("ok")
        .is("application", "unknownformat"));
    // novelsc / unkscm: unknown Request-URI schemes stay opaque so the caller can send 416.
    for name in ["novelsc", "unkscm"] {
        let m = valid(name);
        assert!(matches!(req(&m).uri(), Uri::Other { .. }), "{name}");
    }
    // unksm2: non-SIP From/To/Contact URIs parse as opaque URIs (a registrar answers 416).
    assert!(matches!(
        valid("unksm2").to().parsed_uri(),
        Uri::Other { scheme: "isbn", .. }
    ));
    // regaut01: unknown auth scheme is readable (the registrar challenges).
    let m = valid("regaut01");
    let cred = m.authorization().expect("present").expect("valid");
    assert_eq!(
        (cred.scheme(), cred.param("opaque-data")),
        ("NoOneKnowsThisScheme", Some("here"))
    );
    // regescrt: escaped Route header inside <> is legal.
    assert!(valid("regescrt").contacts().next().expect("c").is_ok());
    // sdp01: unacceptable Accept is the UAS's concern.
    assert_eq!(valid("sdp01").body().len(), 150);
    // zeromf: Max-Forwards 0 is valid syntax (a proxy answers 483).
    assert_eq!(valid("zeromf").max_forwards(), Some(0));
    // baddate: RFC 4475 says not to reject unless the Date matters; we never validate Date.
    assert!(valid("baddate").header(HeaderName::Date).is_some());
}

#[test]
fn invalid_messages_are_refused_with_400() {
    for name in [
        "badinv01",
        "clerr",
        "ncl",
        "scalar02",
        "quotbal",
        "ltgtruri",
        "lwsruri",
        "lwsstart",
        // trws, escruri: RFC 4475 allows rejecting; we reject (never forward such a R-URI).
        "trws",
        "escruri",
        "regbadct",
        "badaspec",
        "baddn",
        "mismatch01",
        "insuf",
        "mcl01",
        "multi01",
    ] {
        let e = refused(name);
        assert_eq!(e.response_code(), Some(400), "{name}: {e:?}");
    }
}

#[test]
fn invalid_messages_report_the_right_error() {
    assert_eq!(
        refused("clerr"),
        ParseError::ContentLength {
            declared: 9999,
            available: 154
        }
    );
    assert!(matches!(
        refused("ncl"),
        ParseError::Header {
            name: HeaderName::ContentLength,
            ..
        }
    ));
    assert!(matches!(
        refused("scalar02"),
        ParseError::Header {
            name: HeaderName::CSeq,
            ..
        }
    ));
    assert!(matches!(refused("ltgtruri"), ParseError::Uri { .. }));
    assert!(matches!(refused("escruri"), ParseError::Uri { .. }));
    assert!(matches!(refused("lwsruri"), ParseError::StartLine { .. }));
    assert!(matches!(
        refused("quotbal"),
        ParseError::Header {
            name: HeaderName::To,
            ..
        }
    ));
    assert!(matches!(
        refused("regbadct"),
        ParseError::Header {
            name: HeaderName::Contact,
            ..
        }
    ));
    assert!(matches!(refused("insuf"), ParseError::Missing { .. }));
    assert!(matches!(
        refused("mcl01"),
        ParseError::Repeated {
            name: HeaderName::ContentLength
        }
    ));
    assert_eq!(
        refused("mismatch01"),
        ParseError::CSeqMismatch {
            extension_method: false
        }
    );
}

#[test]
fn badvers_gets_505() {
    let e = refused("badvers");
    assert!(matches!(e, ParseError::Version { .. }));
    assert_eq!(e.response_code(), Some(505));
}

#[test]
fn mismatch02_unknown_method_gets_501() {
    let e = refused("mismatch02");
    assert_eq!(
        e,
        ParseError::CSeqMismatch {
            extension_method: true
        }
    );
    assert_eq!(e.response_code(), Some(501));
}

#[test]
fn invalid_responses_are_dropped() {
    // bigcode: status > 699; scalarlg: CSeq > 2**31. A response is never answered; the
    // parser refuses both so the transport drops them.
    assert!(matches!(refused("bigcode"), ParseError::StartLine { .. }));
    assert!(matches!(
        refused("scalarlg"),
        ParseError::Header {
            name: HeaderName::CSeq,
            ..
        }
    ));
}

#[test]
fn every_torture_message_is_covered() {
    let dir = format!("{}/tests/data/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let count = std::fs::read_dir(dir).expect("dir").count();
    assert_eq!(count, 49, "all RFC 4475 section 3 messages are present");
}
