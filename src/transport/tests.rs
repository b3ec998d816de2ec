//! Unit tests of the transport's bookkeeping (the socket behaviour is in
//! `tests/transport_tcp.rs`).

use std::net::SocketAddr;

use super::Holds;

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], port))
}

#[test]
fn holds_count_per_peer_and_forget_a_peer_at_zero() {
    let holds = Holds::default();
    holds.hold(peer(5060));
    holds.hold(peer(5060));
    holds.hold(peer(5062));
    assert_eq!((holds.count(peer(5060)), holds.count(peer(5062))), (2, 1));
    holds.release(peer(5060));
    assert_eq!(holds.count(peer(5060)), 1);
    holds.release(peer(5060));
    assert_eq!(holds.count(peer(5060)), 0);
    assert!(!holds.0.contains_key(&peer(5060)), "entry removed at zero");
    assert_eq!(holds.count(peer(5062)), 1);
}

#[test]
fn release_without_hold_is_ignored_and_counts_saturate() {
    let holds = Holds::default();
    holds.release(peer(1));
    holds.release(peer(1));
    assert_eq!(holds.count(peer(1)), 0);
    assert!(holds.0.is_empty());
    holds.0.insert(peer(2), u32::MAX);
    holds.hold(peer(2));
    assert_eq!(holds.count(peer(2)), u32::MAX);
}
