use super::*;
use crate::transaction::{
    Action, Dispatch, Layer, LayerAction, MethodKey, RequestKind, ResponseDispatch, Rfc2543Fields,
    TransactionError, TransactionKey,
};

type L = Layer<Bytes>;
type Out = Vec<LayerAction<Bytes>>;

fn layer() -> L {
    Layer::new(cfg())
}

fn server(branch: &'static str, method: MethodKey<'_>) -> TransactionKey {
    TransactionKey::server(branch.as_bytes(), b"10.0.0.1:5060", method)
}

fn client(branch: &'static str, method: MethodKey<'_>) -> TransactionKey {
    TransactionKey::client(branch.as_bytes(), method)
}

fn actions(out: &mut Out) -> Vec<Action<Bytes>> {
    out.drain(..).map(|a| a.action).collect()
}

fn status(s: u16) -> Bytes {
    Bytes::from(s.to_string())
}

#[test]
fn layer_new_invite_creates_a_server_transaction() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = server("z9hG4bK1", MethodKey::Invite);
    let d = l.on_request(now, key.clone(), RequestKind::Invite, false, &mut out);
    assert_eq!(d, Ok(Dispatch::NewTransaction));
    assert!(out.is_empty() && l.contains(&key) && l.len() == 1);
}

#[test]
fn layer_request_retransmission_resends_the_last_response() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = server("z9hG4bK1", MethodKey::Invite);
    l.on_request(now, key.clone(), RequestKind::Invite, false, &mut out)
        .unwrap();
    l.respond(now, &key, 100, status(100), &mut out).unwrap();
    assert_eq!(
        out,
        vec![LayerAction {
            key: key.clone(),
            action: Action::Transmit(status(100))
        }]
    );
    out.clear();
    let d = l.on_request(now, key.clone(), RequestKind::Invite, false, &mut out);
    assert_eq!(d, Ok(Dispatch::Retransmission));
    assert_eq!(actions(&mut out), vec![Action::Transmit(status(100))]);
}

#[test]
fn layer_ack_for_non_2xx_is_absorbed_by_the_invite_transaction() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = server("z9hG4bK1", MethodKey::Invite);
    l.on_request(now, key.clone(), RequestKind::Invite, false, &mut out)
        .unwrap();
    l.respond(now, &key, 486, status(486), &mut out).unwrap();
    out.clear();
    let ack = server("z9hG4bK1", MethodKey::Ack);
    let d = l.on_request(now, ack, RequestKind::Ack, false, &mut out);
    assert_eq!(d, Ok(Dispatch::AckForInvite { to_user: false }));
    assert_eq!(actions(&mut out), vec![Action::Confirmed]);
}

#[test]
fn layer_ack_matching_an_accepted_invite_goes_to_the_tu() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = server("z9hG4bK1", MethodKey::Invite);
    l.on_request(now, key.clone(), RequestKind::Invite, false, &mut out)
        .unwrap();
    l.respond(now, &key, 200, status(200), &mut out).unwrap();
    out.clear();
    let d = l.on_request(now, key, RequestKind::Ack, false, &mut out);
    assert_eq!(d, Ok(Dispatch::AckForInvite { to_user: true }));
    assert_eq!(actions(&mut out), vec![Action::AckReceived]);
}

#[test]
fn layer_reports_stray_ack_and_creates_nothing() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let ack = server("z9hG4bKnew", MethodKey::Ack);
    assert_eq!(
        l.on_request(now, ack, RequestKind::Ack, false, &mut out),
        Ok(Dispatch::StrayAck)
    );
    assert!(l.is_empty() && out.is_empty());
}

#[test]
fn layer_cancel_matches_a_proceeding_invite() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let invite = server("z9hG4bK1", MethodKey::Invite);
    l.on_request(now, invite.clone(), RequestKind::Invite, false, &mut out)
        .unwrap();
    let cancel = server("z9hG4bK1", MethodKey::Cancel);
    let d = l.on_request(now, cancel.clone(), RequestKind::Cancel, false, &mut out);
    assert_eq!(d, Ok(Dispatch::CancelFor(invite.clone())));
    assert_eq!(l.len(), 2);
    // The TU answers both: 200 to the CANCEL, 487 to the INVITE (9.2).
    l.respond(now, &cancel, 200, status(200), &mut out).unwrap();
    l.respond(now, &invite, 487, status(487), &mut out).unwrap();
    assert_eq!(
        out.iter().map(|a| (&a.key, &a.action)).collect::<Vec<_>>(),
        vec![
            (&cancel, &Action::Transmit(status(200))),
            (&invite, &Action::Transmit(status(487)))
        ]
    );
}

#[test]
fn layer_cancel_after_the_final_response_is_too_late() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let invite = server("z9hG4bK1", MethodKey::Invite);
    l.on_request(now, invite.clone(), RequestKind::Invite, false, &mut out)
        .unwrap();
    l.respond(now, &invite, 200, status(200), &mut out).unwrap();
    let cancel = server("z9hG4bK1", MethodKey::Cancel);
    let d = l.on_request(now, cancel, RequestKind::Cancel, false, &mut out);
    assert_eq!(d, Ok(Dispatch::CancelTooLate(invite)));
}

#[test]
fn layer_cancel_without_invite_is_unmatched() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let cancel = server("z9hG4bK9", MethodKey::Cancel);
    let d = l.on_request(now, cancel.clone(), RequestKind::Cancel, false, &mut out);
    assert_eq!(d, Ok(Dispatch::CancelUnmatched));
    assert!(
        l.contains(&cancel),
        "the CANCEL still gets a transaction for its 481"
    );
}

#[test]
fn layer_cancel_retransmission_is_absorbed() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let cancel = server("z9hG4bK9", MethodKey::Cancel);
    l.on_request(now, cancel.clone(), RequestKind::Cancel, false, &mut out)
        .unwrap();
    l.respond(now, &cancel, 481, status(481), &mut out).unwrap();
    out.clear();
    let d = l.on_request(now, cancel, RequestKind::Cancel, false, &mut out);
    assert_eq!(d, Ok(Dispatch::Retransmission));
    assert_eq!(actions(&mut out), vec![Action::Transmit(status(481))]);
}

#[test]
fn layer_rfc2543_invite_ack_and_cancel_match_without_branch() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let f = |method, to_tag: &'static [u8]| Rfc2543Fields {
        request_uri: b"sip:bob@biloxi.com",
        to_tag,
        from_tag: b"1928301774",
        call_id: b"a84b4c76e66710",
        cseq_number: 1,
        top_via: b"SIP/2.0/UDP 10.0.0.1;branch=old",
        method,
    };
    let invite = TransactionKey::rfc2543(f(MethodKey::Invite, b""));
    l.on_request(now, invite.clone(), RequestKind::Invite, false, &mut out)
        .unwrap();
    let cancel = TransactionKey::rfc2543(f(MethodKey::Cancel, b""));
    let d = l.on_request(now, cancel, RequestKind::Cancel, false, &mut out);
    assert_eq!(d, Ok(Dispatch::CancelFor(invite.clone())));
    l.respond(now, &invite, 487, status(487), &mut out).unwrap();
    let ack = TransactionKey::rfc2543(f(MethodKey::Ack, b"our-tag"));
    let d = l.on_request(now, ack, RequestKind::Ack, false, &mut out);
    assert_eq!(d, Ok(Dispatch::AckForInvite { to_user: false }));
}

#[test]
fn layer_response_matches_its_client_transaction() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = client("z9hG4bKc1", MethodKey::Invite);
    l.start_client_invite(now, key.clone(), b("INVITE"), false, &mut out)
        .unwrap();
    assert_eq!(actions(&mut out), vec![Action::Transmit(b("INVITE"))]);
    let d = l.on_response(now, &key, 486, status(486), &mut out);
    assert_eq!(d, ResponseDispatch::Matched);
    assert_eq!(
        actions(&mut out),
        vec![Action::SendAck(status(486)), Action::ToUser(status(486))]
    );
}

#[test]
fn layer_response_for_cancel_does_not_reach_the_invite() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let invite = client("z9hG4bKc1", MethodKey::Invite);
    let cancel = client("z9hG4bKc1", MethodKey::Cancel);
    l.start_client_invite(now, invite.clone(), b("INVITE"), true, &mut out)
        .unwrap();
    l.start_client_non_invite(now, cancel.clone(), b("CANCEL"), true, &mut out)
        .unwrap();
    out.clear();
    l.on_response(now, &cancel, 200, status(200), &mut out);
    assert!(out.iter().all(|a| a.key == cancel));
    assert!(
        l.contains(&invite) && !l.contains(&cancel),
        "reliable CANCEL ends at once (K = 0)"
    );
}

#[test]
fn layer_returns_stray_2xx_after_timer_m() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = client("z9hG4bKc1", MethodKey::Invite);
    l.start_client_invite(now, key.clone(), b("INVITE"), false, &mut out)
        .unwrap();
    l.on_response(now, &key, 200, status(200), &mut out);
    assert_eq!(
        l.on_response(now + secs(1), &key, 200, status(200), &mut out),
        ResponseDispatch::Matched
    );
    l.handle_timeouts(now + secs(32), &mut out);
    assert!(l.is_empty());
    let d = l.on_response(now + secs(33), &key, 200, status(200), &mut out);
    assert_eq!(d, ResponseDispatch::Stray(status(200)));
}

#[test]
fn layer_response_with_a_server_key_is_stray() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = server("z9hG4bK1", MethodKey::Invite);
    l.on_request(now, key.clone(), RequestKind::Invite, false, &mut out)
        .unwrap();
    assert_eq!(
        l.on_response(now, &key, 200, status(200), &mut out),
        ResponseDispatch::Stray(status(200))
    );
}

#[test]
fn layer_poll_timeout_orders_deadlines_across_transactions() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let inv = client("z9hG4bKa", MethodKey::Invite);
    let opt = client("z9hG4bKb", MethodKey::Other(b"OPTIONS"));
    let srv = server("z9hG4bKc", MethodKey::Other(b"BYE"));
    assert_eq!(l.poll_timeout(), None);
    l.on_request(now, srv.clone(), RequestKind::Other, false, &mut out)
        .unwrap();
    l.respond(now, &srv, 200, status(200), &mut out).unwrap(); // Timer J at +32 s
    l.start_client_non_invite(now + ms(100), opt.clone(), b("OPTIONS"), false, &mut out)
        .unwrap(); // E at +600 ms
    l.start_client_invite(now, inv.clone(), b("INVITE"), false, &mut out)
        .unwrap(); // A at +500 ms
    out.clear();
    assert_eq!(l.poll_timeout(), Some(now + ms(500)));
    l.handle_timeouts(now + ms(500), &mut out);
    assert_eq!(
        out,
        vec![LayerAction {
            key: inv.clone(),
            action: Action::Transmit(b("INVITE"))
        }]
    );
    out.clear();
    assert_eq!(l.poll_timeout(), Some(now + ms(600)));
    l.handle_timeouts(now + ms(600), &mut out);
    assert_eq!(
        out,
        vec![LayerAction {
            key: opt.clone(),
            action: Action::Transmit(b("OPTIONS"))
        }]
    );
    out.clear();
    // INVITE's A is next at 1.5 s, the OPTIONS' E at 1.6 s.
    assert_eq!(l.poll_timeout(), Some(now + ms(1500)));
    // One late wake-up fires everything due, in deadline order.
    l.handle_timeouts(now + ms(1600), &mut out);
    let keys: Vec<_> = out.iter().map(|a| a.key.clone()).collect();
    assert_eq!(keys, vec![inv, opt]);
}

#[test]
fn layer_poll_timeout_skips_stale_deadlines() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let inv = client("z9hG4bKa", MethodKey::Invite);
    let srv = server("z9hG4bKc", MethodKey::Other(b"BYE"));
    l.start_client_invite(now, inv.clone(), b("INVITE"), false, &mut out)
        .unwrap();
    l.on_request(now, srv.clone(), RequestKind::Other, false, &mut out)
        .unwrap();
    l.respond(now + secs(1), &srv, 200, status(200), &mut out)
        .unwrap();
    // A provisional cancels A and B: their queue entries become stale.
    l.on_response(now, &inv, 180, status(180), &mut out);
    assert_eq!(l.poll_timeout(), Some(now + secs(33)), "Timer J of the BYE");
    out.clear();
    l.handle_timeouts(now + secs(5), &mut out);
    assert!(out.is_empty(), "stale entries fire nothing");
}

#[test]
fn layer_removes_terminated_machines() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = server("z9hG4bK1", MethodKey::Other(b"OPTIONS"));
    l.on_request(now, key.clone(), RequestKind::Other, true, &mut out)
        .unwrap();
    l.respond(now, &key, 200, status(200), &mut out).unwrap();
    assert_eq!(
        actions(&mut out),
        vec![Action::Transmit(status(200)), Action::Terminated]
    );
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
    // A late retransmission over TCP would be a new transaction (J = 0 by design, 17.2.2).
    let d = l.on_request(now, key, RequestKind::Other, true, &mut out);
    assert_eq!(d, Ok(Dispatch::NewTransaction));
}

#[test]
fn layer_refuses_duplicate_and_misrouted_keys() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = client("z9hG4bKa", MethodKey::Invite);
    l.start_client_invite(now, key.clone(), b("INVITE"), false, &mut out)
        .unwrap();
    assert_eq!(
        l.start_client_invite(now, key.clone(), b("INVITE"), false, &mut out),
        Err(TransactionError::Exists)
    );
    let skey = server("z9hG4bKa", MethodKey::Invite);
    assert_eq!(
        l.start_client_non_invite(now, skey.clone(), b("X"), false, &mut out),
        Err(TransactionError::WrongRole)
    );
    assert_eq!(
        l.on_request(now, key.clone(), RequestKind::Invite, false, &mut out),
        Err(TransactionError::WrongRole)
    );
    assert_eq!(
        l.respond(now, &key, 200, status(200), &mut out),
        Err(TransactionError::WrongRole)
    );
    assert_eq!(
        l.respond(now, &skey, 200, status(200), &mut out),
        Err(TransactionError::NotFound)
    );
    assert_eq!(
        l.transport_error(now, &skey, &mut out),
        Err(TransactionError::NotFound)
    );
}

#[test]
fn layer_transport_error_informs_tu_and_removes_the_transaction() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = client("z9hG4bKa", MethodKey::Invite);
    l.start_client_invite(now, key.clone(), b("INVITE"), false, &mut out)
        .unwrap();
    out.clear();
    l.transport_error(now, &key, &mut out).unwrap();
    assert_eq!(
        actions(&mut out),
        vec![Action::TransportError, Action::Terminated]
    );
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn layer_timeout_reports_timed_out_with_its_key() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    let key = server("z9hG4bK1", MethodKey::Invite);
    l.on_request(now, key.clone(), RequestKind::Invite, true, &mut out)
        .unwrap();
    l.respond(now, &key, 486, status(486), &mut out).unwrap();
    out.clear();
    while let Some(at) = l.poll_timeout() {
        l.handle_timeouts(at, &mut out);
    }
    assert_eq!(
        out,
        vec![
            LayerAction {
                key: key.clone(),
                action: Action::TimedOut
            },
            LayerAction {
                key,
                action: Action::Terminated
            },
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn layer_deadline_queue_stays_proportional_to_live_transactions() {
    let (now, mut l, mut out) = (t0(), layer(), Out::new());
    for i in 0..5000u32 {
        let branch = format!("z9hG4bK{i}");
        let key = TransactionKey::client(branch.as_bytes(), MethodKey::Invite);
        l.start_client_invite(now, key.clone(), b("INVITE"), false, &mut out)
            .unwrap();
        // A provisional cancels A and B (two stale items); the transport error removes it.
        l.on_response(now, &key, 180, status(180), &mut out);
        l.transport_error(now, &key, &mut out).unwrap();
        out.clear();
    }
    assert!(l.is_empty());
    assert!(
        l.queued_deadlines() <= 2 * l.len() + 257,
        "{}",
        l.queued_deadlines()
    );
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn machines_and_keys_stay_small() {
    use crate::transaction::{InviteClient, InviteServer, NonInviteClient, NonInviteServer};
    use std::mem::size_of;
    let sizes = [
        ("InviteClient", size_of::<InviteClient>()),
        ("NonInviteClient", size_of::<NonInviteClient>()),
        ("InviteServer", size_of::<InviteServer>()),
        ("NonInviteServer", size_of::<NonInviteServer>()),
        ("TransactionKey", size_of::<TransactionKey>()),
    ];
    println!("{sizes:?}");
    for (name, size) in sizes {
        assert!(size <= 256, "{name} is {size} bytes");
    }
}
