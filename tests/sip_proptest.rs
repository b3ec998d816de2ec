//! Property tests: generated messages survive parse -> serialize -> parse unchanged, and no
//! input (random or a mutated valid message) makes the parser or the framer panic.

use bytes::Bytes;
use callgate::sip::{fuzzing, parse_datagram, Editor, Method};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,12}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){1,2}",
        (1u8..=254, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        "\\[2001:db8::[0-9a-f]{1,4}\\]",
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("INVITE".to_owned()),
        Just("BYE".to_owned()),
        Just("OPTIONS".to_owned()),
        Just("REGISTER".to_owned()),
        "[A-Z]{3,10}",
    ]
}

/// Randomises the case of a header name (names are case-insensitive).
fn cased(name: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), name.len()).prop_map(move |up| {
        name.chars()
            .zip(up)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
struct Generated {
    raw: String,
    body: Vec<u8>,
    method: String,
    call_id: String,
    seq: u32,
    from_tag: String,
    branch: String,
}

prop_compose! {
    fn message()(
        method in method(),
        user in "[A-Za-z0-9._~!*'()-]{1,12}",
        host in host(),
        port in proptest::option::of(1024u16..65535),
        via_name in prop_oneof![cased("via"), Just("v".to_owned())],
        branch in "z9hG4bK[a-zA-Z0-9]{1,16}",
        call_name in prop_oneof![cased("call-id"), Just("i".to_owned())],
        call_id in "[a-zA-Z0-9.@-]{1,30}",
        from_tag in token(),
        seq in 0u32..(1 << 31),
        space_before_colon in any::<bool>(),
        fold in any::<bool>(),
        extra in prop::collection::vec((token(), "[ -~]{0,40}"), 0..6),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) -> Generated {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let colon = if space_before_colon { " :" } else { ":" };
        let fold = if fold { "\r\n " } else { " " };
        let mut raw = format!(
            "{method} sip:{user}@{host}{port} SIP/2.0\r\n\
{via_name}{colon} SIP/2.0/UDP {host}{port};branch={branch};rport\r\n\
From{colon}{fold}<sip:a@example.com>;tag={from_tag}\r\n\
To: <sip:{user}@{host}>\r\n\
{call_name}{colon} {call_id}\r\n\
CSeq: {seq}{fold}{method}\r\n\
Max-Forwards: 70\r\n"
        );
        for (name, value) in &extra {
            // X- prefix keeps generated names from colliding with checked known headers.
            raw.push_str(&format!("X-{name}: {}\r\n", value.trim()));
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        Generated { raw, body, method, call_id, seq, from_tag, branch }
    }
}

fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, kind, byte) in edits {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let i = pos % v.len();
        match kind % 4 {
            0 => v[i] = byte,
            1 => v.insert(i, byte),
            2 => {
                v.remove(i);
            }
            _ => v.insert(
                i,
                [b'\r', b'\n', b' ', b':', b';', b',', b'"', b'<'][byte as usize % 8],
            ),
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_messages_round_trip(g in message()) {
        let mut bytes = g.raw.clone().into_bytes();
        bytes.extend_from_slice(&g.body);
        let input = Bytes::from(bytes);
        let msg = parse_datagram(input.clone()).expect("generated message parses");
        let req = msg.as_request().expect("request");
        prop_assert_eq!(req.method().as_str(), g.method.as_str());
        prop_assert_eq!(msg.call_id(), g.call_id.as_str());
        prop_assert_eq!(msg.cseq().seq, g.seq);
        prop_assert_eq!(msg.from_tag().map(|t| t.as_str()), Some(g.from_tag.as_str()));
        prop_assert_eq!(msg.branch().map(|b| b.as_str()), Some(g.branch.as_str()));
        prop_assert_eq!(msg.body(), &g.body[..]);
        let out = Editor::new(&msg).finish();
        prop_assert_eq!(&out, &input);
        let again = parse_datagram(out.clone()).expect("re-parse");
        prop_assert_eq!(Editor::new(&again).finish(), out);
        prop_assert_eq!(Method::parse(&g.method), Some(req.method().clone()));
    }

    #[test]
    fn edited_messages_reparse(g in message()) {
        let mut bytes = g.raw.clone().into_bytes();
        bytes.extend_from_slice(&g.body);
        fuzzing::roundtrip(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::parse(&data);
        fuzzing::roundtrip(&data);
    }

    #[test]
    fn mutated_messages_never_panic(
        g in message(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = g.raw.into_bytes();
        bytes.extend_from_slice(&g.body);
        let m = mutate(&bytes, &edits);
        fuzzing::parse(&m);
        fuzzing::roundtrip(&m);
    }
}
