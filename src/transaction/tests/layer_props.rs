//! Property test: arbitrary operation sequences into the layer with a fake clock.

use proptest::prelude::*;

use super::*;
use crate::transaction::{Layer, LayerAction, MethodKey, RequestKind, TransactionKey};

#[derive(Clone, Debug)]
enum Op {
    StartInvite(u8, bool),
    StartNonInvite(u8, bool),
    Request(u8, u8, bool),
    Response(u8, bool, u16),
    Respond(u8, bool, u16),
    TransportError(u8, bool, bool),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![
        Just(100u16),
        Just(180),
        Just(200),
        Just(486),
        Just(603),
        0u16..800
    ];
    prop_oneof![
        (0u8..8, any::<bool>()).prop_map(|(i, r)| Op::StartInvite(i, r)),
        (0u8..8, any::<bool>()).prop_map(|(i, r)| Op::StartNonInvite(i, r)),
        (0u8..8, 0u8..4, any::<bool>()).prop_map(|(i, k, r)| Op::Request(i, k, r)),
        (0u8..8, any::<bool>(), status.clone()).prop_map(|(i, inv, s)| Op::Response(i, inv, s)),
        (0u8..8, any::<bool>(), status).prop_map(|(i, inv, s)| Op::Respond(i, inv, s)),
        (0u8..8, any::<bool>(), any::<bool>())
            .prop_map(|(i, c, inv)| Op::TransportError(i, c, inv)),
        (0u16..5000).prop_map(Op::Advance),
    ]
}

fn method(invite: bool) -> MethodKey<'static> {
    if invite {
        MethodKey::Invite
    } else {
        MethodKey::Other(b"OPTIONS")
    }
}

fn client_key(i: u8, invite: bool) -> TransactionKey {
    TransactionKey::client(format!("z9hG4bKc{i}").as_bytes(), method(invite))
}

fn server_key(i: u8, kind: RequestKind) -> TransactionKey {
    let m = match kind {
        RequestKind::Invite => MethodKey::Invite,
        RequestKind::Ack => MethodKey::Ack,
        RequestKind::Cancel => MethodKey::Cancel,
        RequestKind::Other => MethodKey::Other(b"OPTIONS"),
    };
    TransactionKey::server(format!("z9hG4bKs{i}").as_bytes(), b"h", m)
}

fn apply(l: &mut Layer<Bytes>, now: &mut Instant, op: Op, out: &mut Vec<LayerAction<Bytes>>) {
    let kinds = [
        RequestKind::Invite,
        RequestKind::Ack,
        RequestKind::Cancel,
        RequestKind::Other,
    ];
    let body = || Bytes::from_static(b"x");
    match op {
        Op::StartInvite(i, r) => {
            drop(l.start_client_invite(*now, client_key(i, true), body(), r, out))
        }
        Op::StartNonInvite(i, r) => {
            drop(l.start_client_non_invite(*now, client_key(i, false), body(), r, out))
        }
        Op::Request(i, k, r) => {
            let kind = kinds[usize::from(k)];
            l.on_request(*now, server_key(i, kind), kind, r, out)
                .expect("server key");
        }
        Op::Response(i, inv, s) => drop(l.on_response(*now, &client_key(i, inv), s, body(), out)),
        Op::Respond(i, inv, s) => {
            let kind = if inv {
                RequestKind::Invite
            } else {
                RequestKind::Other
            };
            drop(l.respond(*now, &server_key(i, kind), s, body(), out));
        }
        Op::TransportError(i, c, inv) => {
            let key = if c {
                client_key(i, inv)
            } else {
                server_key(
                    i,
                    if inv {
                        RequestKind::Invite
                    } else {
                        RequestKind::Other
                    },
                )
            };
            drop(l.transport_error(*now, &key, out));
        }
        Op::Advance(ms_) => {
            *now += ms(u64::from(ms_));
            l.handle_timeouts(*now, out);
        }
    }
}

proptest! {
    #[test]
    fn layer_survives_any_sequence_and_drains_to_empty(ops in proptest::collection::vec(op(), 1..80)) {
        let (mut now, mut l, mut out) = (t0(), Layer::<Bytes>::new(cfg()), Vec::new());
        for op in ops {
            apply(&mut l, &mut now, op, &mut out);
            if let Some(at) = l.poll_timeout() {
                prop_assert!(at > now, "nothing due is left behind after an input");
            }
        }
        // Every server transaction still waiting for its TU gets a final response ...
        for i in 0..8 {
            for kind in [RequestKind::Invite, RequestKind::Other, RequestKind::Cancel] {
                drop(l.respond(now, &server_key(i, kind), 500, Bytes::from_static(b"500"), &mut out));
            }
        }
        // ... except INVITE clients in Proceeding, which wait for the TU's CANCEL: end them.
        for i in 0..8 {
            drop(l.transport_error(now, &client_key(i, true), &mut out));
        }
        while let Some(at) = l.poll_timeout() {
            prop_assert!(at <= now + secs(100), "every timer is bounded");
            now = now.max(at);
            l.handle_timeouts(now, &mut out);
        }
        prop_assert!(l.is_empty());
        prop_assert_eq!(l.queued_deadlines(), 0);
    }
}
