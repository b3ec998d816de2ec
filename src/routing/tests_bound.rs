//! Callers and destinations from the registrar's bindings: `accept-register` trunks.

use std::time::{Duration, Instant};

use super::*;
use crate::registrar::{Binding, Flow};

/// [`CFG`] with two `accept-register` trunks, `gw-a` and `gw-b`.
fn bound_snapshot() -> Snapshot {
    let extra = r#"
[[trunk]]
name = "gw-a"
kind = "accept-register"
username = "gwa"
password = "p"
[[trunk]]
name = "gw-b"
kind = "accept-register"
username = "gwb"
password = "p"
"#;
    match config::load(&format!("{CFG}{extra}")) {
        Ok(loaded) => loaded.snapshot,
        Err(issues) => panic!("test config invalid: {issues:?}"),
    }
}

fn bind(store: &LocationStore, trunk: &str, transport: Transport, from: &str, at: Instant) {
    let binding = Binding {
        contact: format!("sip:{trunk}@10.0.0.7:5070;transport=tcp"),
        flow: Flow {
            transport,
            source: addr(from),
            local: None,
        },
        expires_at: at + Duration::from_secs(60),
        registered_at: at,
        call_id: format!("reg-{from}"),
        cseq: 1,
        q: None,
    };
    store
        .upsert(Aor::trunk(trunk), binding, 5, at)
        .expect("bound");
}

#[test]
fn a_live_gateway_binding_identifies_its_trunk_by_ip() {
    let s = bound_snapshot();
    let store = LocationStore::new();
    let t0 = crate::test_clock::origin();
    let gw_a = s.index.trunk_by_name["gw-a"];
    let src = addr("198.51.100.20:5060");
    assert_eq!(
        identify_with(&s, &store, src, t0),
        Err(RouteError::UnknownSource(src)),
        "no binding, nobody"
    );
    bind(&store, "gw-a", Transport::Udp, "198.51.100.20:5060", t0);
    assert_eq!(identify_with(&s, &store, src, t0), Ok(Caller::Trunk(gw_a)));
    let other_port = addr("198.51.100.20:40123");
    assert_eq!(
        identify_with(&s, &store, other_port, t0),
        Ok(Caller::Trunk(gw_a)),
        "providers send from several ports"
    );
    let later = t0 + Duration::from_secs(60);
    assert_eq!(
        identify_with(&s, &store, src, later),
        Err(RouteError::UnknownSource(src)),
        "an expired binding identifies nobody"
    );
}

#[test]
fn the_configuration_wins_and_the_exact_address_beats_the_ip() {
    let s = bound_snapshot();
    let store = LocationStore::new();
    let t0 = crate::test_clock::origin();
    // A binding from an ip trunk's or a PBX's address changes nothing.
    bind(&store, "gw-a", Transport::Udp, "127.0.0.2:5060", t0);
    bind(&store, "gw-a", Transport::Udp, "127.0.0.11:5060", t0);
    let carrier = s.index.trunk_by_name["carrier"];
    assert_eq!(
        identify_with(&s, &store, addr("127.0.0.2:5060"), t0),
        Ok(Caller::Trunk(carrier))
    );
    assert!(matches!(
        identify_with(&s, &store, addr("127.0.0.11:5060"), t0),
        Ok(Caller::Extension(_))
    ));
    // Two gateways behind one IP: each is told by its own port, first in file order otherwise.
    bind(&store, "gw-a", Transport::Udp, "198.51.100.30:5060", t0);
    bind(&store, "gw-b", Transport::Udp, "198.51.100.30:5062", t0);
    let gw_a = s.index.trunk_by_name["gw-a"];
    let gw_b = s.index.trunk_by_name["gw-b"];
    let at = |a: &str| identify_with(&s, &store, addr(a), t0);
    assert_eq!(at("198.51.100.30:5062"), Ok(Caller::Trunk(gw_b)));
    assert_eq!(at("198.51.100.30:5060"), Ok(Caller::Trunk(gw_a)));
    assert_eq!(at("198.51.100.30:7000"), Ok(Caller::Trunk(gw_a)));
}

#[test]
fn trunk_dest_is_the_address_or_the_live_binding() {
    let s = bound_snapshot();
    let store = LocationStore::new();
    let t0 = crate::test_clock::origin();
    let carrier = s.index.trunk_by_name["carrier"];
    let gw_a = s.index.trunk_by_name["gw-a"];
    let fixed = trunk_dest(&s, &store, carrier, t0).expect("fixed address");
    assert_eq!(
        (fixed.transport, fixed.addr),
        (Transport::Udp, addr("127.0.0.1:5080"))
    );
    assert_eq!(fixed.request_uri("12125551234"), None);
    assert_eq!(trunk_dest(&s, &store, gw_a, t0), None, "not registered");

    bind(&store, "gw-a", Transport::Tcp, "198.51.100.20:40000", t0);
    let later = t0 + Duration::from_secs(1);
    bind(&store, "gw-a", Transport::Udp, "198.51.100.21:5060", later);
    let d = trunk_dest(&s, &store, gw_a, later).expect("bound");
    assert_eq!(
        (d.transport, d.addr),
        (Transport::Udp, addr("198.51.100.21:5060")),
        "the most recent binding's flow"
    );
    assert_eq!(
        d.request_uri("12125551234").as_deref(),
        Some("sip:12125551234@10.0.0.7:5070;transport=tcp"),
        "the number at the registered contact"
    );
    assert_eq!(
        trunk_dest(&s, &store, gw_a, t0 + Duration::from_secs(61)),
        None
    );
}

#[test]
fn a_request_uri_keeps_the_contact_scheme_and_falls_back_to_the_flow() {
    let d = TrunkDest {
        transport: Transport::Tls,
        addr: addr("198.51.100.21:5061"),
        contact: Some("sips:gw@gw.example".into()),
    };
    assert_eq!(d.request_uri("1").as_deref(), Some("sips:1@gw.example"));
    let d = TrunkDest {
        contact: Some("not a uri".into()),
        ..d
    };
    assert_eq!(
        d.request_uri("1").as_deref(),
        Some("sip:1@198.51.100.21:5061")
    );
}
