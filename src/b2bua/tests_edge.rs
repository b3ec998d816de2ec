//! Sans-IO tests of the edge hardening: dialog probes, re-INVITE 2xx reliability, requests in
//! flight when a call ends, and TCP closes that do not end answered calls at once.

use std::time::Duration;

use bytes::Bytes;

use super::tests::*;
use super::*;
use crate::config::model::Transport;
use crate::sip;
use crate::transaction::sip_keys::{client_key, server_key};

const T1: Duration = Duration::from_millis(500);

/// The requests of `method` the outputs start (non-INVITE client transactions).
fn started(out: &[Out], method: &str) -> Vec<(Dest, Bytes)> {
    let prefix = format!("{method} ");
    out.iter()
        .filter_map(|o| match o {
            Out::StartNonInvite { dest, bytes, .. } if bytes.starts_with(prefix.as_bytes()) => {
                Some((*dest, bytes.clone()))
            }
            _ => None,
        })
        .collect()
}

fn sends_to(out: &[Out], to: Dest) -> Vec<Bytes> {
    out.iter()
        .filter_map(|o| match o {
            Out::Send { dest, bytes } if *dest == to => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn trunk() -> Dest {
    Dest {
        transport: Transport::Udp,
        addr: ([127, 0, 0, 1], 5080).into(),
    }
}

impl Fixture {
    /// The far end answers one of our requests with `status`.
    fn answer(&mut self, request_bytes: &Bytes, status: u16) {
        let req = request(&String::from_utf8_lossy(request_bytes).replace("\r\n", "\n"));
        let resp = response(&sip::response_to(&req, status, "Whatever", Some("x"), &[]));
        let key = client_key(&resp).expect("our branch");
        self.b2bua.on_response(self.now, &key, resp, &mut self.out);
    }

    /// A confirmed call `call_id` (answered by B, ACKed by A); returns its number.
    fn confirmed(&mut self, call_id: &str) -> u64 {
        let b = self.start_call(call_id);
        self.b_says(&b, 200, "OK");
        self.a_acks(call_id);
        self.out.clear();
        self.b2bua
            .calls()
            .find(|c| c.a.call_id == call_id)
            .map(|c| c.id)
            .expect("call exists")
    }

    fn probe(&mut self, id: u64) -> Vec<(Dest, Bytes)> {
        self.b2bua
            .on_timer(self.now, id, CallTimer::Probe, &mut self.out);
        started(&self.out, "OPTIONS")
    }

    /// A sends a re-INVITE (CSeq 2) inside call `call_id`.
    fn reinvite_from_a(&mut self, call_id: &str) -> TransactionKey {
        let tag = self.a_tag(call_id);
        let re = request(&format!(
            "INVITE sip:gate@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKre{call_id}\nFrom: <sip:200@127.0.0.11>;tag=a1\nTo: <sip:3125559999@127.0.0.1>;tag={tag}\nCall-ID: {call_id}\nCSeq: 2 INVITE\nContact: <sip:200@127.0.0.11:5060>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: 4\n\nv=1\n"
        ));
        let key = server_key(&re);
        self.b2bua
            .on_in_dialog(self.now, re, key.clone(), &mut self.out);
        key
    }
}

#[test]
fn probes_keep_a_live_call_and_end_one_whose_far_end_says_481() {
    let mut f = fixture();
    let b = f.start_call("p1");
    f.b_says(&b, 200, "OK");
    let at = armed(&f.out, CallTimer::Probe).expect("probe armed at the answer");
    assert_eq!(at, f.now + Duration::from_secs(60), "default interval");
    f.a_acks("p1");
    f.out.clear();
    let id = f.b2bua.calls().next().map(|c| c.id).expect("call");
    let probes = f.probe(id);
    assert_eq!(probes.len(), 2, "one in-dialog OPTIONS per leg");
    assert!(armed(&f.out, CallTimer::Probe).is_some(), "probe re-armed");
    f.out.clear();
    for (_, p) in &probes {
        f.answer(p, 200);
    }
    assert_eq!(ended(&f.out), None, "both ends answered: the call goes on");
    assert_eq!(f.limiter.in_use(), 8);
    f.out.clear();
    let probes = f.probe(id);
    f.out.clear();
    for (dest, p) in &probes {
        f.answer(p, if *dest == trunk() { 481 } else { 405 });
    }
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert_eq!(started(&f.out, "BYE").len(), 2, "BYE on both legs");
    assert_eq!(f.limiter.in_use(), 0);
    assert!(f.b2bua.is_empty());
}

#[test]
fn an_unanswered_probe_ends_the_call_and_releases_its_units() {
    let mut f = fixture();
    let id = f.confirmed("p2");
    f.b2bua.on_timer(f.now, id, CallTimer::Probe, &mut f.out);
    let keys: Vec<TransactionKey> = f
        .out
        .iter()
        .filter_map(|o| match o {
            Out::StartNonInvite { key, dest, .. } if *dest == trunk() => Some(key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 1);
    f.out.clear();
    f.b2bua.on_client_failure(f.now, &keys[0], true, &mut f.out);
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert_eq!(f.limiter.in_use(), 0);
    assert_eq!(f.b2bua.index_sizes().by_call_id, 0);
}

#[test]
fn a_probe_is_not_stacked_on_one_in_flight() {
    let mut f = fixture();
    let id = f.confirmed("p3");
    assert_eq!(f.probe(id).len(), 2);
    f.out.clear();
    assert_eq!(f.probe(id).len(), 0, "both probes still in flight");
}

#[test]
fn our_2xx_to_a_relayed_reinvite_is_retransmitted_until_acked() {
    let mut f = fixture();
    let id = f.confirmed("r1");
    f.reinvite_from_a("r1");
    let relayed = b_invite(&f.out);
    f.out.clear();
    f.b_says(&relayed, 200, "OK");
    let acks = sends_to(&f.out, trunk());
    assert_eq!(acks.len(), 1, "B's 2xx ACKed by callgate");
    assert!(acks[0].starts_with(b"ACK "));
    let ok = f.out.iter().find_map(|o| match o {
        Out::Respond {
            status: 200, bytes, ..
        } => Some(bytes.clone()),
        _ => None,
    });
    let ok = ok.expect("the 2xx relayed to A");
    let at = armed(&f.out, CallTimer::RetransmitReinviteOk).expect("retransmission armed");
    assert_eq!(at, f.now + T1);
    f.out.clear();
    // A's ACK was lost: the 2xx goes again, and B's retransmitted 2xx is ACKed again.
    f.b2bua
        .on_timer(at, id, CallTimer::RetransmitReinviteOk, &mut f.out);
    assert_eq!(sends_to(&f.out, pbx()), vec![ok]);
    let next = armed(&f.out, CallTimer::RetransmitReinviteOk).expect("re-armed");
    assert_eq!(next, at + 2 * T1, "T1 doubling");
    f.out.clear();
    f.b_says(&relayed, 200, "OK");
    assert_eq!(sends_to(&f.out, trunk()), acks, "same ACK again");
    assert_eq!(
        statuses(&f.out),
        Vec::<u16>::new(),
        "A is not answered twice"
    );
    f.out.clear();
    // A's ACK (CSeq 2) stops the retransmissions.
    let tag = f.a_tag("r1");
    let ack = request(&format!("ACK sip:gate@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKack2\nFrom: <sip:200@127.0.0.11>;tag=a1\nTo: <sip:3125559999@127.0.0.1>;tag={tag}\nCall-ID: r1\nCSeq: 2 ACK\nContent-Length: 0\n\n"));
    f.b2bua.on_ack(&ack, &mut f.out);
    f.b2bua
        .on_timer(next, id, CallTimer::RetransmitReinviteOk, &mut f.out);
    assert!(sends_to(&f.out, pbx()).is_empty(), "no 2xx after the ACK");
    assert_eq!(f.limiter.in_use(), 8, "the call goes on");
}

#[test]
fn no_ack_for_a_reinvite_2xx_within_64_t1_ends_the_call() {
    let mut f = fixture();
    let id = f.confirmed("r2");
    f.reinvite_from_a("r2");
    let relayed = b_invite(&f.out);
    f.out.clear();
    f.b_says(&relayed, 200, "OK");
    f.out.clear();
    let give_up = f.now + 64 * T1;
    f.b2bua
        .on_timer(give_up, id, CallTimer::RetransmitReinviteOk, &mut f.out);
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn a_call_ending_with_a_relayed_request_in_flight_answers_it_487() {
    let mut f = fixture();
    let id = f.confirmed("i1");
    let key = f.reinvite_from_a("i1");
    assert!(!b_invite(&f.out).is_empty(), "re-INVITE relayed to B");
    f.out.clear();
    assert!(f.b2bua.end_call_by_operator(f.now, id, &mut f.out));
    let answered = f
        .out
        .iter()
        .any(|o| matches!(o, Out::Respond { key: k, status: 487, .. } if *k == key));
    assert!(
        answered,
        "the pending re-INVITE gets 487: {:?}",
        statuses(&f.out)
    );
    let left = f.b2bua.index_sizes();
    assert_eq!((left.by_call_id, left.by_a_invite, left.by_peer), (0, 0, 0));
    assert_eq!(
        left.by_client, 2,
        "only the two BYEs, until their transactions end"
    );
}

/// A fixture whose PBX extension is reached over TCP, and a call from it.
fn tcp_call(call_id: &str) -> (Fixture, Dest) {
    tcp_call_from(call_id, pbx().addr)
}

/// [`tcp_call`] with the PBX's connection from `source`.
fn tcp_call_from(call_id: &str, source: std::net::SocketAddr) -> (Fixture, Dest) {
    let cfg = CFG.replace(
        "transport = \"udp\", authenticate",
        "transport = \"tcp\", authenticate",
    );
    let mut f = fixture_with(&cfg);
    let tcp = Dest {
        transport: Transport::Tcp,
        addr: source,
    };
    let inv = invite(call_id);
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, tcp, &mut f.out);
    assert!(
        f.out
            .iter()
            .any(|o| matches!(o, Out::Flow { peer, held: true } if *peer == tcp.addr)),
        "the call holds its TCP flow"
    );
    let b = b_invite(&f.out);
    f.out.clear();
    f.b_says(&b, 200, "OK");
    f.a_acks(call_id);
    f.out.clear();
    (f, tcp)
}

#[test]
fn a_closed_connection_probes_an_answered_call_instead_of_ending_it() {
    let (mut f, tcp) = tcp_call("t1");
    f.b2bua.on_transport_closed(f.now, tcp.addr, &mut f.out);
    assert_eq!(ended(&f.out), None, "not ended at once");
    let probes = started(&f.out, "OPTIONS");
    assert_eq!(
        probes.len(),
        1,
        "the leg on the closed connection is probed"
    );
    assert_eq!(probes[0].0, tcp);
    f.out.clear();
    // The probe reconnected and the PBX answered: the call goes on.
    f.answer(&probes[0].1, 200);
    assert_eq!(ended(&f.out), None);
    assert_eq!(f.limiter.in_use(), 8);
}

/// The key of the one probe the outputs started.
fn probe_key(out: &[Out]) -> TransactionKey {
    let keys: Vec<TransactionKey> = out
        .iter()
        .filter_map(|o| match o {
            Out::StartNonInvite { key, bytes, .. } if bytes.starts_with(b"OPTIONS ") => {
                Some(key.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 1, "one probe");
    keys[0].clone()
}

#[test]
fn a_closed_connection_whose_probe_cannot_reconnect_ends_the_call() {
    let (mut f, tcp) = tcp_call("t2");
    f.b2bua.on_transport_closed(f.now, tcp.addr, &mut f.out);
    let first = probe_key(&f.out);
    f.out.clear();
    // Another close while the probe is in flight changes nothing: the probe decides.
    f.b2bua.on_transport_closed(f.now, tcp.addr, &mut f.out);
    assert!(f.out.is_empty(), "{:?}", f.out);
    // Its send failed (the engine reports the lost connection): once more, over a new one.
    f.b2bua.on_client_failure(f.now, &first, false, &mut f.out);
    assert_eq!(ended(&f.out), None);
    let second = probe_key(&f.out);
    f.out.clear();
    // That one cannot be sent either: the leg is gone.
    f.b2bua.on_client_failure(f.now, &second, false, &mut f.out);
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert!(
        f.out
            .iter()
            .any(|o| matches!(o, Out::Flow { peer, held: false } if *peer == tcp.addr)),
        "the flow is given back"
    );
    assert_eq!(f.limiter.in_use(), 0);
    assert_eq!(f.b2bua.index_sizes().by_peer, 0);
}

#[test]
fn probes_and_relays_leave_no_index_entries_behind_over_a_long_call() {
    let mut f = fixture();
    let id = f.confirmed("k1");
    for _ in 0..5 {
        for (_, p) in f.probe(id) {
            f.answer(&p, 200);
        }
        f.out.clear();
    }
    let call = f.b2bua.calls.get(&id).expect("call");
    assert_eq!(
        call.client_keys.len(),
        1,
        "only the B INVITE: {:?}",
        call.client_keys
    );
    assert_eq!(f.b2bua.index_sizes().by_client, 1);
}

#[test]
fn a_relay_whose_connection_failed_is_answered_503_and_the_leg_probed() {
    let mut f = fixture();
    let id = f.confirmed("k2");
    let origin = f.reinvite_from_a("k2");
    let relayed = f
        .out
        .iter()
        .find_map(|o| match o {
            Out::StartInvite { key, .. } => Some(key.clone()),
            _ => None,
        })
        .expect("relayed re-INVITE");
    f.out.clear();
    f.b2bua
        .on_client_failure(f.now, &relayed, false, &mut f.out);
    assert!(f
        .out
        .iter()
        .any(|o| matches!(o, Out::Respond { key, status: 503, .. } if *key == origin)));
    assert_eq!(ended(&f.out), None, "not ended: the leg is probed");
    assert_eq!(started(&f.out, "OPTIONS").len(), 1);
    assert!(f.b2bua.calls.contains_key(&id));
}

#[test]
fn a_close_of_a_peer_with_many_calls_probes_them_in_batches() {
    let cfg = CFG
        .replace("limits = { public = 1 }", "limits = { public = 1000 }")
        .replace(
            "transport = \"udp\", authenticate",
            "transport = \"tcp\", authenticate",
        );
    let mut f = fixture_with(&cfg);
    let tcp = Dest {
        transport: Transport::Tcp,
        addr: pbx().addr,
    };
    for n in 0..300 {
        let call_id = format!("m{n}");
        let inv = invite(&call_id);
        let key = server_key(&inv);
        f.b2bua.on_new_invite(f.now, inv, key, tcp, &mut f.out);
        let b = b_invite(&f.out);
        f.out.clear();
        f.b_says(&b, 200, "OK");
        f.a_acks(&call_id);
        f.out.clear();
    }
    f.b2bua.on_transport_closed(f.now, tcp.addr, &mut f.out);
    assert_eq!(
        started(&f.out, "OPTIONS").len(),
        128,
        "the first batch at once"
    );
    let later: Vec<(Instant, u64)> = f
        .out
        .iter()
        .filter_map(|o| match o {
            Out::Arm {
                at,
                call,
                timer: CallTimer::CloseProbe,
            } => Some((*at, *call)),
            _ => None,
        })
        .collect();
    assert_eq!(later.len(), 172);
    let last = later.iter().map(|(at, _)| *at).max().expect("armed");
    assert_eq!(
        last,
        f.now + Duration::from_millis(200),
        "two more batches, 100 ms apart"
    );
    f.out.clear();
    let (at, id) = later[0];
    f.b2bua.on_timer(at, id, CallTimer::CloseProbe, &mut f.out);
    assert_eq!(
        started(&f.out, "OPTIONS").len(),
        1,
        "its probe when its batch is due"
    );
    assert_eq!(f.b2bua.len(), 300, "no call ended");
}

#[test]
fn a_close_of_a_peer_without_calls_touches_nothing() {
    let mut f = fixture();
    let _ = f.confirmed("t3");
    f.b2bua.on_transport_closed(f.now, pbx().addr, &mut f.out);
    assert!(f.out.is_empty(), "UDP legs have no connection to lose");
}

/// A fixture with a DID pool routed to the PBX, the PBX's caller ID, and the trunk trusted or not.
fn identity_fixture(trusted: bool) -> Fixture {
    let cfg = format!(
        "{}\n[[did_pool]]\ntrunk = \"carrier\"\norganization = \"acme\"\ndids = [\"3125550000-3125550099\"]\n[[inbound_rule]]\norganization = \"acme\"\ntrunk = \"carrier\"\ndids = \"3125550000-3125550099\"\ndestination = {{ extension = \"200\" }}\n",
        CFG.replace(
            "number = \"200\"\nuser = \"u\"\n",
            "number = \"200\"\nuser = \"u\"\noutbound_caller_id = \"3125550001\"\n",
        )
        .replace(
            "kind = \"ip\"\naddress = \"127.0.0.1:5080\"",
            &format!("kind = \"ip\"\naddress = \"127.0.0.1:5080\"\ntrusted = {trusted}"),
        )
    );
    fixture_with(&cfg)
}

fn with_identity(inv: &sip::Request) -> sip::Request {
    let text = String::from_utf8_lossy(inv.parts().as_bytes()).replace("\r\n", "\n");
    request(&text.replace(
        "Max-Forwards: 70\n",
        "Max-Forwards: 70\nP-Asserted-Identity: <sip:9999999@forged.example>\nPrivacy: id\n",
    ))
}

/// The B-leg INVITE for `inv` from `source`, as text.
fn b_leg_text(f: &mut Fixture, inv: sip::Request, source: Dest) -> String {
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, source, &mut f.out);
    let text = String::from_utf8_lossy(&b_invite(&f.out)).into_owned();
    f.out.clear();
    text
}

#[test]
fn a_pbx_cannot_assert_an_identity_callgate_asserts_its_caller_id() {
    let mut f = identity_fixture(true);
    let b = b_leg_text(&mut f, with_identity(&invite("id1")), pbx());
    assert!(!b.contains("9999999"), "the PBX's own PAI is dropped:\n{b}");
    assert!(
        b.contains("P-Asserted-Identity: <sip:3125550001@"),
        "callgate asserts the extension's outbound_caller_id:\n{b}"
    );
    assert!(
        b.contains("Privacy: id"),
        "the caller's privacy request crosses"
    );
}

fn inbound_invite(call_id: &str) -> sip::Request {
    request(&format!(
        "INVITE sip:3125550005@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK{call_id}\nFrom: <sip:2125551234@127.0.0.1>;tag=t1\nTo: <sip:3125550005@127.0.0.1>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:carrier@127.0.0.1:5080>\nMax-Forwards: 70\nContent-Length: 0\n\n"
    ))
}

#[test]
fn identity_headers_cross_from_a_trusted_trunk_only() {
    let mut f = identity_fixture(false);
    let b = b_leg_text(&mut f, with_identity(&inbound_invite("id2")), trunk());
    assert!(
        !b.contains("P-Asserted-Identity") && !b.contains("Privacy"),
        "an untrusted trunk's identity headers are dropped:\n{b}"
    );
    let mut f = identity_fixture(false);
    let asserted = without_privacy(&with_identity(&inbound_invite("id5")));
    let b = b_leg_text(&mut f, asserted, trunk());
    assert!(
        b.contains("From: <sip:2125551234@") && !b.contains("9999999"),
        "the callee sees the provider's From user, not anonymous nor an untrusted PAI:\n{b}"
    );
    let mut f = identity_fixture(true);
    let asserted = without_privacy(&with_identity(&inbound_invite("id3")));
    let b = b_leg_text(&mut f, asserted, trunk());
    assert!(
        b.contains("P-Asserted-Identity: <sip:9999999@forged.example>")
            && b.contains("From: <sip:9999999@"),
        "a trusted trunk's identity crosses and is the caller the callee sees:\n{b}"
    );
    // The caller asked for privacy: the callee (outside the trust domain) learns nothing.
    let mut f = identity_fixture(true);
    let b = b_leg_text(&mut f, with_identity(&inbound_invite("id4")), trunk());
    assert!(
        !b.contains("9999999") && !b.contains("2125551234") && b.contains("From: <sip:anonymous@"),
        "Privacy: id withholds the asserted identity and the From user:\n{b}"
    );
}

#[test]
fn an_inbound_caller_presenting_an_internal_extension_number_is_shown_as_anonymous() {
    let mut f = identity_fixture(false);
    let spoofed = String::from_utf8_lossy(inbound_invite("id6").parts().as_bytes())
        .replace("\r\n", "\n")
        .replace("From: <sip:2125551234@", "From: <sip:200@");
    let b = b_leg_text(&mut f, request(&spoofed), trunk());
    assert!(
        b.contains("From: <sip:anonymous@"),
        "a caller from outside must not pass for extension 200:\n{b}"
    );
}

/// `inv` without its Privacy header.
fn without_privacy(inv: &sip::Request) -> sip::Request {
    let text = String::from_utf8_lossy(inv.parts().as_bytes()).replace("\r\n", "\n");
    request(&text.replace("Privacy: id\n", ""))
}

#[test]
fn a_leg_whose_connection_came_from_an_ephemeral_port_reconnects_to_its_contact() {
    let ephemeral: std::net::SocketAddr = ([127, 0, 0, 11], 40000).into();
    let (mut f, tcp) = tcp_call_from("t4", ephemeral);
    f.b2bua.on_transport_closed(f.now, tcp.addr, &mut f.out);
    let probes = started(&f.out, "OPTIONS");
    assert_eq!(probes.len(), 1);
    assert_eq!(
        probes[0].0.addr,
        pbx().addr,
        "the probe goes to the Contact's port"
    );
    let flows: Vec<(std::net::SocketAddr, bool)> = f
        .out
        .iter()
        .filter_map(|o| match o {
            Out::Flow { peer, held } => Some((*peer, *held)),
            _ => None,
        })
        .collect();
    assert_eq!(flows, vec![(ephemeral, false), (pbx().addr, true)]);
    f.out.clear();
    // The old peer's close again finds nothing; the call ends through the operator and gives
    // the new flow back.
    f.b2bua.on_transport_closed(f.now, ephemeral, &mut f.out);
    assert_eq!(ended(&f.out), None);
    let id = f.b2bua.calls().next().map(|c| c.id).expect("call");
    f.b2bua.end_call_by_operator(f.now, id, &mut f.out);
    assert!(f
        .out
        .iter()
        .any(|o| matches!(o, Out::Flow { peer, held: false } if *peer == pbx().addr)));
    assert_eq!(f.b2bua.index_sizes().by_peer, 0);
}

#[test]
fn a_contact_on_another_host_is_not_followed() {
    let ephemeral: std::net::SocketAddr = ([127, 0, 0, 11], 40001).into();
    let (mut f, tcp) = tcp_call_from("t5", ephemeral);
    let id = f.b2bua.calls().next().map(|c| c.id).expect("call");
    if let Some(call) = f.b2bua.calls.get_mut(&id) {
        call.a.remote_target = "sip:200@192.0.2.1:5060".into();
    }
    f.b2bua.on_transport_closed(f.now, tcp.addr, &mut f.out);
    let probes = started(&f.out, "OPTIONS");
    assert_eq!(probes[0].0.addr, ephemeral, "never towards a third host");
}

#[test]
fn a_call_to_a_phone_goes_to_the_flow_of_its_latest_binding_or_gets_480() {
    let cfg = CFG.replace(
        "[[trunk]]",
        "[[extension]]\nnumber = \"101\"\nuser = \"u\"\npassword = \"pw\"\n[[trunk]]",
    );
    let mut f = fixture_with(&cfg);
    let to_phone = |call_id: &str| {
        let text = String::from_utf8_lossy(invite(call_id).parts().as_bytes())
            .replace("3125559999", "101")
            .replace("\r\n", "\n");
        request(&text)
    };
    let inv = to_phone("ph1");
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, pbx(), &mut f.out);
    assert_eq!(statuses(&f.out), vec![480], "not registered");
    f.out.clear();
    let flow = crate::registrar::Flow {
        transport: Transport::Udp,
        source: ([198, 51, 100, 7], 40000).into(),
        local: None,
    };
    let binding = crate::registrar::Binding {
        contact: "sip:101@10.0.0.5:5060".into(),
        flow,
        expires_at: f.now + Duration::from_secs(600),
        registered_at: f.now,
        call_id: "reg".into(),
        cseq: 1,
        q: None,
    };
    let aor = crate::registrar::Aor::new("acme.example", "101");
    f.b2bua
        .location
        .upsert(aor, binding, 5, f.now)
        .expect("bound");
    let inv = to_phone("ph2");
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, pbx(), &mut f.out);
    let (dest, bytes) = f
        .out
        .iter()
        .find_map(|o| match o {
            Out::StartInvite { dest, request, .. } => {
                Some((*dest, request.parts().as_bytes().clone()))
            }
            _ => None,
        })
        .expect("INVITE to the phone");
    assert_eq!(dest.addr, flow.source, "over the flow the REGISTER came on");
    assert!(
        bytes.starts_with(b"INVITE sip:101@10.0.0.5:5060 SIP/2.0"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}
