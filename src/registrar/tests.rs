use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::*;
use crate::config::model::Transport;

fn flow(transport: Transport, source: &str) -> Flow {
    Flow {
        transport,
        source: source.parse().expect("test address parses"),
        local: None,
    }
}

/// A binding of `contact` registered at `at` for `secs` seconds over UDP from 192.0.2.1:5060.
fn binding(contact: &str, at: Instant, secs: u64, call_id: &str, cseq: u32) -> Binding {
    Binding {
        contact: contact.to_owned(),
        flow: flow(Transport::Udp, "192.0.2.1:5060"),
        expires_at: at + Duration::from_secs(secs),
        registered_at: at,
        call_id: call_id.to_owned(),
        cseq,
        q: None,
    }
}

fn alice() -> Aor {
    Aor::new("Example.COM", "1001")
}

fn contacts(bindings: &[Binding]) -> Vec<&str> {
    bindings.iter().map(|b| b.contact.as_str()).collect()
}

#[test]
fn aor_lower_cases_domain_not_user() {
    assert_eq!(Aor::new("Acme.Example", "Bob").as_str(), "Bob@acme.example");
    assert_eq!(
        Aor::new("ACME.example", "1001"),
        Aor::new("acme.EXAMPLE", "1001")
    );
    assert_eq!(
        Aor::new("acme.example", "1001").to_string(),
        "1001@acme.example"
    );
}

#[test]
fn new_contact_is_added_and_looked_up() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let b = binding("sip:1001@192.0.2.1", t0, 60, "c1", 1);
    let outcome = store.upsert(alice(), b.clone(), 3, t0);
    assert_eq!(outcome, Ok(UpsertOutcome::Added { evicted: vec![] }));
    assert_eq!(store.lookup(&alice(), t0), vec![b]);
    assert_eq!(store.len(), 1);
    assert!(store
        .lookup(&Aor::new("example.com", "1002"), t0)
        .is_empty());
}

#[test]
fn same_contact_refresh_replaces_binding() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let first = binding("sip:1001@192.0.2.1", t0, 60, "c1", 1);
    store.upsert(alice(), first.clone(), 3, t0).unwrap();
    let t1 = t0 + Duration::from_secs(30);
    let refresh = binding("sip:1001@192.0.2.1", t1, 60, "c1", 2);
    let outcome = store.upsert(alice(), refresh.clone(), 3, t1);
    assert_eq!(outcome, Ok(UpsertOutcome::Replaced { previous: first }));
    assert_eq!(store.lookup(&alice(), t1), vec![refresh]);
    assert_eq!(store.len(), 1);
}

#[test]
fn same_call_id_with_stale_cseq_is_out_of_order() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let stored = binding("sip:1001@192.0.2.1", t0, 60, "c1", 5);
    store.upsert(alice(), stored.clone(), 3, t0).unwrap();
    for cseq in [5, 4] {
        let stale = binding("sip:1001@192.0.2.1", t0, 3600, "c1", cseq);
        assert_eq!(
            store.upsert(alice(), stale, 3, t0),
            Err(BindingError::OutOfOrder {
                stored_cseq: 5,
                cseq
            })
        );
    }
    assert_eq!(store.lookup(&alice(), t0), vec![stored]);
}

#[test]
fn new_call_id_replaces_whatever_its_cseq() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let old = binding("sip:1001@192.0.2.1", t0, 60, "before-reboot", 90);
    store.upsert(alice(), old.clone(), 3, t0).unwrap();
    let rebooted = binding("sip:1001@192.0.2.1", t0, 60, "after-reboot", 1);
    let outcome = store.upsert(alice(), rebooted.clone(), 3, t0);
    assert_eq!(outcome, Ok(UpsertOutcome::Replaced { previous: old }));
    assert_eq!(store.lookup(&alice(), t0), vec![rebooted]);
}

#[test]
fn expires_zero_removes_binding_and_empty_aor() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let stored = binding("sip:1001@192.0.2.1", t0, 60, "c1", 1);
    store.upsert(alice(), stored.clone(), 3, t0).unwrap();
    let unregister = binding("sip:1001@192.0.2.1", t0, 0, "c1", 2);
    let outcome = store.upsert(alice(), unregister.clone(), 3, t0);
    assert_eq!(
        outcome,
        Ok(UpsertOutcome::Removed {
            previous: Some(stored)
        })
    );
    assert!(store.is_empty());
    let again = store.upsert(alice(), unregister, 3, t0);
    assert_eq!(again, Ok(UpsertOutcome::Removed { previous: None }));
    assert!(store.is_empty());
}

#[test]
fn expires_zero_with_stale_cseq_keeps_binding() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let stored = binding("sip:1001@192.0.2.1", t0, 60, "c1", 7);
    store.upsert(alice(), stored.clone(), 3, t0).unwrap();
    let late = binding("sip:1001@192.0.2.1", t0, 0, "c1", 6);
    assert!(matches!(
        store.upsert(alice(), late, 3, t0),
        Err(BindingError::OutOfOrder { .. })
    ));
    assert_eq!(store.lookup(&alice(), t0), vec![stored]);
}

#[test]
fn full_aor_evicts_soonest_expiring() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let long = binding("sip:a@192.0.2.1", t0, 3600, "a", 1);
    let short = binding("sip:b@192.0.2.2", t0, 60, "b", 1);
    store.upsert(alice(), long, 2, t0).unwrap();
    store.upsert(alice(), short.clone(), 2, t0).unwrap();
    let t1 = t0 + Duration::from_secs(10);
    let moved = binding("sip:c@198.51.100.7", t1, 600, "c", 1);
    let outcome = store.upsert(alice(), moved, 2, t1);
    assert_eq!(
        outcome,
        Ok(UpsertOutcome::Added {
            evicted: vec![short]
        })
    );
    let left = store.lookup(&alice(), t1);
    assert_eq!(contacts(&left), ["sip:c@198.51.100.7", "sip:a@192.0.2.1"]);
}

#[test]
fn lowered_max_contacts_evicts_down_to_limit() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    for (i, secs) in [(1, 300), (2, 100), (3, 200)] {
        let b = binding(&format!("sip:{i}@192.0.2.1"), t0, secs, "c", i);
        store.upsert(alice(), b, 5, t0).unwrap();
    }
    let new = binding("sip:4@192.0.2.1", t0, 400, "c4", 1);
    let Ok(UpsertOutcome::Added { evicted }) = store.upsert(alice(), new, 2, t0) else {
        panic!("expected an addition");
    };
    assert_eq!(contacts(&evicted), ["sip:2@192.0.2.1", "sip:3@192.0.2.1"]);
    assert_eq!(store.len(), 2);
}

#[test]
fn zero_max_contacts_refuses_new_contact() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let b = binding("sip:1001@192.0.2.1", t0, 60, "c1", 1);
    assert_eq!(
        store.upsert(alice(), b, 0, t0),
        Err(BindingError::NoContactsAllowed)
    );
    assert!(store.is_empty());
}

#[test]
fn expired_bindings_neither_count_nor_order_cseq() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    store
        .upsert(alice(), binding("sip:a@192.0.2.1", t0, 60, "c1", 9), 1, t0)
        .unwrap();
    let t1 = t0 + Duration::from_secs(61);
    // Same Call-ID with a lower CSeq, but the stored binding has lapsed: a plain addition.
    let b = binding("sip:a@192.0.2.1", t1, 60, "c1", 1);
    let outcome = store.upsert(alice(), b, 1, t1);
    assert_eq!(outcome, Ok(UpsertOutcome::Added { evicted: vec![] }));
    assert_eq!(store.len(), 1);
}

#[test]
fn lookup_hides_expired_and_orders_most_recent_first() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let at = |s| t0 + Duration::from_secs(s);
    store
        .upsert(
            alice(),
            binding("sip:old@192.0.2.1", at(0), 100, "o", 1),
            5,
            at(0),
        )
        .unwrap();
    store
        .upsert(
            alice(),
            binding("sip:new@192.0.2.1", at(20), 100, "n", 1),
            5,
            at(20),
        )
        .unwrap();
    store
        .upsert(
            alice(),
            binding("sip:mid@192.0.2.1", at(10), 30, "m", 1),
            5,
            at(20),
        )
        .unwrap();
    let live = store.lookup(&alice(), at(20));
    assert_eq!(
        contacts(&live),
        [
            "sip:new@192.0.2.1",
            "sip:mid@192.0.2.1",
            "sip:old@192.0.2.1"
        ]
    );
    let live = store.lookup(&alice(), at(40));
    assert_eq!(contacts(&live), ["sip:new@192.0.2.1", "sip:old@192.0.2.1"]);
    assert_eq!(store.len(), 3, "lookup does not purge");
}

#[test]
fn expire_drops_expired_bindings_and_empty_aors() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let bob = Aor::new("example.com", "1002");
    store
        .upsert(alice(), binding("sip:a@192.0.2.1", t0, 60, "a", 1), 3, t0)
        .unwrap();
    store
        .upsert(alice(), binding("sip:b@192.0.2.1", t0, 600, "b", 1), 3, t0)
        .unwrap();
    store
        .upsert(
            bob.clone(),
            binding("sip:c@192.0.2.9", t0, 60, "c", 1),
            3,
            t0,
        )
        .unwrap();
    let t1 = t0 + Duration::from_secs(60);
    assert_eq!(store.expire(t1), 2);
    assert_eq!(store.len(), 1);
    assert!(store.lookup(&bob, t1).is_empty());
    assert_eq!(store.snapshot(t1).len(), 1);
    assert_eq!(store.expire(t1), 0);
}

#[test]
fn closed_connection_removes_its_bindings_only() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let peer: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let mut over_tcp = binding("sip:a@192.0.2.1;transport=tcp", t0, 600, "a", 1);
    over_tcp.flow = flow(Transport::Tcp, "192.0.2.1:40000");
    let mut same_port_udp = binding("sip:b@192.0.2.1", t0, 600, "b", 1);
    same_port_udp.flow = flow(Transport::Udp, "192.0.2.1:40000");
    store.upsert(alice(), over_tcp, 3, t0).unwrap();
    store.upsert(alice(), same_port_udp.clone(), 3, t0).unwrap();
    assert_eq!(store.remove_flow(Transport::Tcp, peer, t0), 1);
    assert_eq!(store.lookup(&alice(), t0), vec![same_port_udp]);
    assert_eq!(store.remove_flow(Transport::Udp, peer, t0), 1);
    assert!(store.is_empty());
}

#[test]
fn a_close_handled_late_spares_a_binding_made_over_a_new_connection() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let peer: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    // The old connection closed at t0; the phone reconnected from the same address (a
    // port-preserving NAT) and registered at t1, before the close reached the store.
    let t1 = t0 + Duration::from_millis(5);
    let mut again = binding("sip:a@192.0.2.1;transport=tcp", t1, 600, "a2", 1);
    again.flow = flow(Transport::Tcp, "192.0.2.1:40000");
    store.upsert(alice(), again.clone(), 3, t1).unwrap();
    assert_eq!(store.remove_flow(Transport::Tcp, peer, t0), 0);
    assert_eq!(store.lookup(&alice(), t1), vec![again]);
}

#[test]
fn remove_deletes_contact_and_empty_aor() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let b = binding("sip:a@192.0.2.1", t0, 60, "a", 1);
    store.upsert(alice(), b.clone(), 3, t0).unwrap();
    assert_eq!(store.remove(&alice(), "sip:other@192.0.2.1"), None);
    assert_eq!(store.remove(&alice(), "sip:a@192.0.2.1"), Some(b));
    assert!(store.is_empty());
    assert_eq!(store.remove(&alice(), "sip:a@192.0.2.1"), None);
}

#[test]
fn star_unregister_removes_every_binding() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    store
        .upsert(
            alice(),
            binding("sip:a@192.0.2.1", t0, 60, "desk", 3),
            3,
            t0,
        )
        .unwrap();
    store
        .upsert(
            alice(),
            binding("sip:b@192.0.2.2", t0, 60, "mobile", 40),
            3,
            t0,
        )
        .unwrap();
    assert_eq!(store.remove_all(&alice(), "desk", 4), Ok(2));
    assert!(store.is_empty());
    assert_eq!(store.remove_all(&alice(), "desk", 5), Ok(0));
}

#[test]
fn star_unregister_with_stale_cseq_removes_nothing() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    store
        .upsert(
            alice(),
            binding("sip:a@192.0.2.1", t0, 60, "desk", 3),
            3,
            t0,
        )
        .unwrap();
    store
        .upsert(
            alice(),
            binding("sip:b@192.0.2.2", t0, 60, "mobile", 40),
            3,
            t0,
        )
        .unwrap();
    assert_eq!(
        store.remove_all(&alice(), "desk", 3),
        Err(BindingError::OutOfOrder {
            stored_cseq: 3,
            cseq: 3
        })
    );
    assert_eq!(store.len(), 2);
}

#[test]
fn snapshot_lists_live_bindings_by_aor() {
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let zed = Aor::new("example.com", "2000");
    store
        .upsert(
            zed.clone(),
            binding("sip:z@192.0.2.3", t0, 60, "z", 1),
            3,
            t0,
        )
        .unwrap();
    store
        .upsert(alice(), binding("sip:a@192.0.2.1", t0, 60, "a", 1), 3, t0)
        .unwrap();
    store
        .upsert(alice(), binding("sip:gone@192.0.2.1", t0, 5, "g", 1), 3, t0)
        .unwrap();
    let t1 = t0 + Duration::from_secs(5);
    let rows: Vec<(String, String)> = store
        .snapshot(t1)
        .into_iter()
        .map(|(aor, b)| (aor.to_string(), b.contact))
        .collect();
    assert_eq!(
        rows,
        [
            ("1001@example.com".to_owned(), "sip:a@192.0.2.1".to_owned()),
            ("2000@example.com".to_owned(), "sip:z@192.0.2.3".to_owned()),
        ]
    );
}

#[test]
fn racing_shards_never_exceed_max_contacts() {
    const AORS: u32 = 200;
    const CONTACTS: u32 = 6;
    const MAX: usize = 3;
    let t0 = crate::test_clock::origin();
    let store = LocationStore::new();
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        for shard in 0..2u32 {
            let (store, barrier) = (&store, &barrier);
            s.spawn(move || {
                barrier.wait();
                for aor in 0..AORS {
                    for c in 0..CONTACTS {
                        let contact = format!("sip:{shard}-{c}@192.0.2.1");
                        let b = binding(&contact, t0, 60 + u64::from(c), "c", 1);
                        let aor = Aor::new("example.com", &aor.to_string());
                        store.upsert(aor, b, MAX, t0).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(store.len(), AORS as usize * MAX);
    for aor in 0..AORS {
        let aor = Aor::new("example.com", &aor.to_string());
        assert_eq!(store.lookup(&aor, t0).len(), MAX);
    }
}

#[test]
fn a_trunk_aor_is_told_apart_from_an_extension_aor() {
    let trunk = Aor::trunk("carrier-b");
    assert_eq!(trunk.as_str(), "carrier-b@trunk.invalid");
    assert_eq!(trunk.trunk_name(), Some("carrier-b"));
    assert_eq!(alice().trunk_name(), None);
    assert_eq!(Aor::new("acme.example", "carrier-b").trunk_name(), None);
    // What the state file writes back in (`user@domain`, domain lower-cased) is the same key.
    assert_eq!(Aor::new("TRUNK.invalid", "carrier-b"), trunk);
}

#[test]
fn any_live_and_latest_see_live_bindings_only() {
    let store = LocationStore::new();
    let t0 = crate::test_clock::origin();
    let aor = Aor::trunk("gw");
    store
        .upsert(
            aor.clone(),
            binding("sip:gw@192.0.2.1", t0, 60, "a", 1),
            5,
            t0,
        )
        .expect("bound");
    let later = t0 + Duration::from_secs(1);
    let second = Binding {
        flow: flow(Transport::Tcp, "192.0.2.2:5070"),
        ..binding("sip:gw@192.0.2.2", later, 60, "b", 1)
    };
    store.upsert(aor.clone(), second, 5, later).expect("bound");
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        move |b: &Binding| b.flow.source.ip() == ip
    };
    assert!(store.any_live(&aor, later, from("192.0.2.1")));
    assert!(!store.any_live(&aor, later, from("192.0.2.9")));
    assert!(!store.any_live(&Aor::trunk("other"), later, |_| true));
    let latest = store.latest(&aor, later).expect("a live binding");
    assert_eq!(latest.contact, "sip:gw@192.0.2.2", "most recent first");
    let gone = t0 + Duration::from_secs(60);
    assert!(!store.any_live(&aor, gone, from("192.0.2.1")));
    assert_eq!(
        store.latest(&aor, gone).map(|b| b.contact),
        Some("sip:gw@192.0.2.2".to_owned())
    );
    assert!(store.latest(&aor, gone + Duration::from_secs(1)).is_none());
}
