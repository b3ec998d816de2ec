use crate::transaction::key::{is_rfc3261_branch, MethodKey, Rfc2543Fields, Role, TransactionKey};

const BR: &[u8] = b"z9hG4bK776asdhds";

fn fields(method: MethodKey<'static>) -> Rfc2543Fields<'static> {
    Rfc2543Fields {
        request_uri: b"sip:bob@biloxi.com",
        to_tag: b"",
        from_tag: b"1928301774",
        call_id: b"a84b4c76e66710",
        cseq_number: 314159,
        top_via: b"SIP/2.0/UDP pc33.atlanta.com",
        method,
    }
}

#[test]
fn client_key_matches_same_branch_and_cseq_method() {
    let a = TransactionKey::client(BR, MethodKey::Invite);
    assert_eq!(
        a,
        TransactionKey::client(BR, MethodKey::from_bytes(b"INVITE"))
    );
    assert_ne!(
        a,
        TransactionKey::client(b"z9hG4bKother", MethodKey::Invite)
    );
    assert_eq!(a.role(), Role::Client);
    assert_eq!(a.branch(), Some(BR));
}

#[test]
fn client_key_tells_cancel_from_invite_with_the_same_branch() {
    let invite = TransactionKey::client(BR, MethodKey::Invite);
    let cancel = TransactionKey::client(BR, MethodKey::Cancel);
    assert_ne!(invite, cancel);
    assert!(cancel.is_cancel() && invite.is_invite());
}

#[test]
fn client_key_tells_extension_methods_apart() {
    let bye = TransactionKey::client(BR, MethodKey::Other(b"BYE"));
    let info = TransactionKey::client(BR, MethodKey::Other(b"INFO"));
    assert_ne!(bye, info);
}

#[test]
fn server_key_ack_matches_the_invite_transaction() {
    let invite = TransactionKey::server(BR, b"pc33.atlanta.com:5060", MethodKey::Invite);
    let ack = TransactionKey::server(BR, b"pc33.atlanta.com:5060", MethodKey::from_bytes(b"ACK"));
    assert_eq!(invite, ack);
}

#[test]
fn server_key_cancel_has_its_own_key_and_targets_the_invite() {
    let invite = TransactionKey::server(BR, b"pc33.atlanta.com", MethodKey::Invite);
    let cancel = TransactionKey::server(BR, b"pc33.atlanta.com", MethodKey::Cancel);
    assert_ne!(invite, cancel);
    assert_eq!(cancel.cancel_target(), Some(invite.clone()));
    assert_eq!(invite.cancel_target(), None);
    assert_eq!(
        TransactionKey::client(BR, MethodKey::Cancel).cancel_target(),
        None
    );
}

#[test]
fn server_key_depends_on_sent_by_with_case_insensitive_host() {
    let a = TransactionKey::server(BR, b"PC33.Atlanta.com:5060", MethodKey::Invite);
    let b = TransactionKey::server(BR, b"pc33.atlanta.com:5060", MethodKey::Invite);
    let c = TransactionKey::server(BR, b"pc34.atlanta.com:5060", MethodKey::Invite);
    assert_eq!(a, b);
    assert_ne!(b, c);
    assert_eq!(a.branch(), Some(BR), "the branch keeps its case");
}

#[test]
fn server_key_field_boundaries_are_part_of_the_key() {
    let a = TransactionKey::server(b"z9hG4bKab", b"c", MethodKey::Invite);
    let b = TransactionKey::server(b"z9hG4bKa", b"bc", MethodKey::Invite);
    assert_ne!(a, b);
}

#[test]
fn client_and_server_keys_never_collide() {
    // A request looped back to ourselves carries our own branch.
    let client = TransactionKey::client(BR, MethodKey::Invite);
    let server = TransactionKey::server(BR, b"", MethodKey::Invite);
    assert_ne!(client, server);
    assert_eq!(server.role(), Role::Server);
}

#[test]
fn magic_cookie_selects_rfc_3261_matching() {
    assert!(is_rfc3261_branch(BR));
    assert!(!is_rfc3261_branch(b"776asdhds"));
    assert!(!is_rfc3261_branch(b""));
}

#[test]
fn methods_are_case_sensitive() {
    assert_eq!(MethodKey::from_bytes(b"INVITE"), MethodKey::Invite);
    assert_eq!(
        MethodKey::from_bytes(b"invite"),
        MethodKey::Other(b"invite")
    );
    assert_eq!(MethodKey::from_bytes(b"CANCEL"), MethodKey::Cancel);
}

#[test]
fn rfc2543_ack_matches_invite_despite_the_to_tag_of_our_response() {
    let invite = TransactionKey::rfc2543(fields(MethodKey::Invite));
    let ack = TransactionKey::rfc2543(Rfc2543Fields {
        to_tag: b"a6c85cf",
        ..fields(MethodKey::Ack)
    });
    assert_eq!(invite, ack);
    assert_eq!(invite.branch(), None);
}

#[test]
fn rfc2543_keys_differ_on_each_matching_field() {
    let base = TransactionKey::rfc2543(fields(MethodKey::Invite));
    let variants = [
        Rfc2543Fields {
            request_uri: b"sip:carol@chicago.com",
            ..fields(MethodKey::Invite)
        },
        Rfc2543Fields {
            from_tag: b"x",
            ..fields(MethodKey::Invite)
        },
        Rfc2543Fields {
            call_id: b"other",
            ..fields(MethodKey::Invite)
        },
        Rfc2543Fields {
            cseq_number: 314160,
            ..fields(MethodKey::Invite)
        },
        Rfc2543Fields {
            top_via: b"SIP/2.0/UDP pc34.atlanta.com",
            ..fields(MethodKey::Invite)
        },
    ];
    for v in variants {
        assert_ne!(base, TransactionKey::rfc2543(v));
    }
}

#[test]
fn rfc2543_non_invite_keys_include_the_to_tag() {
    let bye = |tag: &'static [u8]| {
        TransactionKey::rfc2543(Rfc2543Fields {
            to_tag: tag,
            ..fields(MethodKey::Other(b"BYE"))
        })
    };
    assert_eq!(bye(b"t1"), bye(b"t1"));
    assert_ne!(bye(b"t1"), bye(b"t2"));
}

#[test]
fn rfc2543_cancel_targets_the_invite() {
    let invite = TransactionKey::rfc2543(fields(MethodKey::Invite));
    let cancel = TransactionKey::rfc2543(fields(MethodKey::Cancel));
    assert_ne!(invite, cancel);
    assert_eq!(cancel.cancel_target(), Some(invite));
}

#[test]
fn rfc2543_and_branch_keys_never_collide() {
    let k2543 = TransactionKey::rfc2543(Rfc2543Fields {
        request_uri: b"",
        to_tag: b"",
        from_tag: b"",
        call_id: b"",
        cseq_number: 0,
        top_via: b"",
        method: MethodKey::Invite,
    });
    assert_ne!(k2543, TransactionKey::server(b"", b"", MethodKey::Invite));
}
