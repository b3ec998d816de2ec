//! Sans-IO tests of calls with several callee legs: ring rules (spec 4, E3), the first answer
//! winning, losers cancelled with a `Reason`, the best final response, and outbound failover
//! (spec 7). Every ending checks that the limiter is back at zero.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::tests::{fixture_with, request, response, statuses, Fixture};
use super::*;
use crate::sip::{self, Message};
use crate::transaction::sip_keys::{client_key, server_key};

/// E3's tenancy: a user with `public = P, internal = I`, its extensions 002 and 011 (PBXs), and
/// 002's ring rule to 002, 011 and the public number 0804993222.
fn e3(public: u32, internal: u32) -> String {
    format!(
        r#"
[server]
name = "t"
[license]
sip_trunking_channels = 10
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[[service_provider]]
name = "sp"
[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"
[[user]]
name = "u"
organization = "acme"
limits = {{ public = {public}, internal = {internal} }}
[[extension]]
number = "002"
user = "u"
pbx = {{ address = "127.0.0.21:5060", transport = "udp", authenticate = false }}
[[extension]]
number = "011"
user = "u"
pbx = {{ address = "127.0.0.22:5060", transport = "udp", authenticate = false }}
[[trunk]]
name = "carrier"
kind = "ip"
address = "127.0.0.1:5080"
[[trunk]]
name = "backup"
kind = "ip"
address = "127.0.0.2:5080"
[[did_pool]]
trunk = "carrier"
organization = "acme"
dids = ["2125550100-2125550199"]
[[inbound_rule]]
organization = "acme"
trunk = "carrier"
dids = "2125550100"
destination = {{ extension = "002" }}
[[outbound_rule]]
organization = "acme"
pattern = "^0[0-9]+$"
trunks = ["carrier", "backup"]
[[ring_rule]]
name = "e3"
organization = "acme"
extension = "002"
targets = ["002", "011", "0804993222"]
ring_time = "20s"
"#
    )
}

const TRUNK: &str = "127.0.0.1:5080";
const EXT_002: &str = "127.0.0.21:5060";
const EXT_011: &str = "127.0.0.22:5060";

fn from_trunk() -> Dest {
    Dest {
        transport: crate::config::model::Transport::Udp,
        addr: TRUNK.parse::<SocketAddr>().expect("addr"),
    }
}

fn inbound_invite(call_id: &str) -> sip::Request {
    request(&format!(
        "INVITE sip:2125550100@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK{call_id}\nFrom: <sip:3125559999@{TRUNK}>;tag=p1\nTo: <sip:2125550100@127.0.0.1>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:gw@{TRUNK}>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: 4\n\nv=0\n"
    ))
}

/// The callee legs' INVITEs started in `out`: (destination, bytes), in order.
fn legs(out: &[Out]) -> Vec<(String, Bytes)> {
    out.iter()
        .filter_map(|o| match o {
            Out::StartInvite { dest, request, .. } => {
                Some((dest.addr.to_string(), request.parts().as_bytes().clone()))
            }
            _ => None,
        })
        .collect()
}

/// CANCELs sent in `out`: (destination, bytes).
fn cancels(out: &[Out]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|o| match o {
            Out::StartNonInvite { dest, bytes, .. } if bytes.starts_with(b"CANCEL ") => Some((
                dest.addr.to_string(),
                String::from_utf8_lossy(bytes).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// A response from the callee of the leg whose INVITE is `inv`, with its own To tag.
fn leg_says(f: &mut Fixture, inv: &Bytes, status: u16, reason: &str, tag: &str) {
    let req = match sip::parse_datagram(inv.clone()) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    };
    let extra = [("Contact", "<sip:uas@127.0.0.9:5060>")];
    let resp = response(&sip::response_to(&req, status, reason, Some(tag), &extra));
    let key = client_key(&resp).expect("our branch");
    f.b2bua.on_response(f.now, &key, resp, &mut f.out);
}

/// A 183 with SDP (early media) from the callee of the leg whose INVITE is `inv`.
fn early_media(f: &mut Fixture, inv: &Bytes, tag: &str) {
    let req = match sip::parse_datagram(inv.clone()) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    };
    let resp = response(&sip::response_with_body(
        &req,
        183,
        "Session Progress",
        Some(tag),
        &[("Contact", "<sip:uas@127.0.0.9>")],
        Some(("application/sdp", b"v=0\r\n")),
    ));
    let key = client_key(&resp).expect("branch");
    f.b2bua.on_response(f.now, &key, resp, &mut f.out);
}

fn start_inbound(f: &mut Fixture, call_id: &str) -> Vec<(String, Bytes)> {
    let inv = inbound_invite(call_id);
    let key = server_key(&inv);
    f.b2bua
        .on_new_invite(f.now, inv, key, from_trunk(), &mut f.out);
    let started = legs(&f.out);
    f.out.clear();
    started
}

/// Every leg rings (a CANCEL may only follow a provisional, RFC 3261 9.1).
fn ring_all(f: &mut Fixture, started: &[(String, Bytes)]) {
    for (i, (_, inv)) in started.iter().enumerate() {
        leg_says(f, inv, 180, "Ringing", &format!("r{i}"));
    }
    f.out.clear();
}

fn hang_up_from_caller(f: &mut Fixture, call_id: &str) {
    let tag = f.a_tag(call_id);
    let bye = request(&format!("BYE sip:callgate@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bKbye{call_id}\nFrom: <sip:3125559999@{TRUNK}>;tag=p1\nTo: <sip:2125550100@127.0.0.1>;tag={tag}\nCall-ID: {call_id}\nCSeq: 2 BYE\nContent-Length: 0\n\n"));
    let key = server_key(&bye);
    f.b2bua.on_in_dialog(f.now, bye, key, &mut f.out);
}

#[test]
fn e3_one_unit_each_rings_only_002() {
    let mut f = fixture_with(&e3(1, 1));
    let started = start_inbound(&mut f, "e3a");
    let dests: Vec<&str> = started.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(
        dests,
        vec![EXT_002],
        "011 has no internal unit, the public leg no public one"
    );
    // The incoming call (trunk 2, public chain 4, 002's max_calls) and 002's leg (5).
    assert_eq!(f.limiter.in_use(), 12);
    leg_says(&mut f, &started[0].1, 200, "OK", "x1");
    assert_eq!(statuses(&f.out), vec![200]);
    f.out.clear();
    hang_up_from_caller(&mut f, "e3a");
    assert_eq!(f.limiter.in_use(), 0);
    assert!(f.b2bua.is_empty());
}

#[test]
fn e3_two_units_each_rings_all_three_and_any_answer_releases_everything() {
    for winner in 0..3 {
        let mut f = fixture_with(&e3(2, 2));
        let started = start_inbound(&mut f, "e3b");
        ring_all(&mut f, &started);
        let dests: Vec<&str> = started.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(dests, vec![EXT_002, EXT_011, TRUNK], "in the rule's order");
        let public_leg = String::from_utf8_lossy(&started[2].1).into_owned();
        assert!(
            public_leg.starts_with("INVITE sip:0804993222@"),
            "{public_leg}"
        );
        assert!(
            public_leg.contains("From: <sip:3125559999@"),
            "the caller's number"
        );
        // Incoming 7, two local legs 5 each, the public leg 6.
        assert_eq!(f.limiter.in_use(), 23);
        leg_says(&mut f, &started[winner].1, 200, "OK", "w");
        assert_eq!(statuses(&f.out), vec![200]);
        let cancelled = cancels(&f.out);
        assert_eq!(cancelled.len(), 2, "the two losers");
        for (_, text) in &cancelled {
            assert!(
                text.contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\""),
                "{text}"
            );
        }
        f.out.clear();
        for (i, (_, inv)) in started.iter().enumerate() {
            if i != winner {
                leg_says(&mut f, inv, 487, "Request Terminated", "l");
            }
        }
        assert!(f.limiter.in_use() > 0, "the answered call holds its units");
        hang_up_from_caller(&mut f, "e3b");
        assert_eq!(f.limiter.in_use(), 0, "winner {winner}");
        assert!(f.b2bua.is_empty());
        assert_eq!(f.b2bua.index_sizes().by_call_id, 0);
    }
}

#[test]
fn a_losers_late_answer_gets_ack_then_bye() {
    let mut f = fixture_with(&e3(2, 2));
    let started = start_inbound(&mut f, "e3c");
    leg_says(&mut f, &started[0].1, 200, "OK", "w");
    f.out.clear();
    leg_says(&mut f, &started[1].1, 200, "OK", "late");
    let sent: Vec<&[u8]> = f
        .out
        .iter()
        .filter_map(|o| match o {
            Out::Send { bytes, .. } | Out::StartNonInvite { bytes, .. } => Some(&bytes[..]),
            _ => None,
        })
        .collect();
    assert!(sent.len() >= 2, "{sent:?}");
    assert!(sent[0].starts_with(b"ACK "), "ACK first");
    assert!(sent[1].starts_with(b"BYE "), "then BYE");
    f.out.clear();
    leg_says(&mut f, &started[2].1, 487, "Request Terminated", "l");
    hang_up_from_caller(&mut f, "e3c");
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn no_answer_within_ring_time_gives_480_and_cancels_without_reason() {
    let mut f = fixture_with(&e3(2, 2));
    let inv = inbound_invite("e3d");
    let key = server_key(&inv);
    f.b2bua
        .on_new_invite(f.now, inv, key, from_trunk(), &mut f.out);
    let ring = super::tests::armed(&f.out, CallTimer::RingTimeout).expect("armed");
    assert_eq!(
        ring,
        f.now + Duration::from_secs(20),
        "the rule's ring_time"
    );
    let started = legs(&f.out);
    f.out.clear();
    for (_, inv) in &started {
        leg_says(&mut f, inv, 180, "Ringing", "r");
    }
    f.out.clear();
    let id = f.b2bua.calls().next().map(|c| c.id).expect("call");
    f.b2bua
        .on_timer(ring, id, CallTimer::RingTimeout, &mut f.out);
    assert_eq!(statuses(&f.out), vec![480]);
    let cancelled = cancels(&f.out);
    assert_eq!(cancelled.len(), 3);
    assert!(cancelled.iter().all(|(_, t)| !t.contains("Reason:")));
    f.out.clear();
    for (_, inv) in &started {
        leg_says(&mut f, inv, 487, "Request Terminated", "r");
    }
    assert_eq!(super::tests::ended(&f.out), Some(Outcome::Failed));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn with_no_answer_the_caller_gets_the_best_response() {
    let mut f = fixture_with(&e3(2, 2));
    let started = start_inbound(&mut f, "e3e");
    leg_says(&mut f, &started[0].1, 503, "Service Unavailable", "a");
    leg_says(&mut f, &started[1].1, 486, "Busy Here", "b");
    assert!(statuses(&f.out).is_empty(), "a leg still rings");
    assert!(legs(&f.out).is_empty(), "a local target has no next way");
    // The public leg's 503 fails over to the backup trunk, which then says 480.
    leg_says(&mut f, &started[2].1, 503, "Service Unavailable", "c");
    let backup = legs(&f.out);
    assert_eq!(backup.len(), 1, "failover to the next trunk");
    assert_eq!(backup[0].0, "127.0.0.2:5080");
    assert!(statuses(&f.out).is_empty(), "the backup trunk still rings");
    f.out.clear();
    leg_says(&mut f, &backup[0].1, 480, "Temporarily Unavailable", "d");
    assert_eq!(statuses(&f.out), vec![486], "the first of the lowest class");
    assert_eq!(f.limiter.in_use(), 0);
    assert!(f.b2bua.is_empty());
}

#[test]
fn a_6xx_ends_the_search_at_once() {
    let mut f = fixture_with(&e3(2, 2));
    let started = start_inbound(&mut f, "e3f");
    ring_all(&mut f, &started);
    leg_says(&mut f, &started[1].1, 603, "Decline", "a");
    assert_eq!(statuses(&f.out), vec![603]);
    let cancelled = cancels(&f.out);
    assert_eq!(cancelled.len(), 2);
    assert!(cancelled[0].1.contains("Reason: SIP;cause=603"));
    f.out.clear();
    leg_says(&mut f, &started[0].1, 487, "Request Terminated", "b");
    leg_says(&mut f, &started[2].1, 487, "Request Terminated", "c");
    assert_eq!(super::tests::ended(&f.out), Some(Outcome::Failed));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn the_callers_cancel_reason_is_passed_on() {
    let mut f = fixture_with(&e3(2, 2));
    let started = start_inbound(&mut f, "e3g");
    ring_all(&mut f, &started);
    let key = server_key(&inbound_invite("e3g"));
    let reason = "Q.850;cause=16;text=\"Normal call clearing\"";
    f.b2bua
        .on_cancel_with(f.now, &key, Some(reason), &mut f.out);
    assert_eq!(statuses(&f.out), vec![487]);
    let cancelled = cancels(&f.out);
    assert_eq!(cancelled.len(), 3);
    assert!(cancelled
        .iter()
        .all(|(_, t)| t.contains(&format!("Reason: {reason}"))));
    f.out.clear();
    for (_, inv) in &started {
        leg_says(&mut f, inv, 487, "Request Terminated", "x");
    }
    assert_eq!(super::tests::ended(&f.out), Some(Outcome::Cancelled));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn early_media_comes_from_one_leg_only() {
    let mut f = fixture_with(&e3(2, 2));
    let started = start_inbound(&mut f, "e3h");
    early_media(&mut f, &started[1].1, "m1");
    assert_eq!(statuses(&f.out), vec![183]);
    f.out.clear();
    early_media(&mut f, &started[0].1, "m2");
    leg_says(&mut f, &started[2].1, 180, "Ringing", "m3");
    assert!(
        statuses(&f.out).is_empty(),
        "only 011's early media reaches the caller"
    );
    let key = server_key(&inbound_invite("e3h"));
    f.b2bua.on_cancel(f.now, &key, &mut f.out);
    for (_, inv) in &started {
        leg_says(&mut f, inv, 487, "Request Terminated", "x");
    }
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn outbound_fails_over_on_5xx_but_not_on_busy() {
    let mut f = fixture_with(&e3(2, 2));
    let inv = request(&format!(
        "INVITE sip:0804993222@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP {EXT_002};branch=z9hG4bKob1\nFrom: <sip:002@127.0.0.21>;tag=a1\nTo: <sip:0804993222@127.0.0.1>\nCall-ID: ob1\nCSeq: 1 INVITE\nContact: <sip:002@{EXT_002}>\nMax-Forwards: 70\nContent-Length: 0\n\n"
    ));
    let key = server_key(&inv);
    let pbx = Dest {
        transport: crate::config::model::Transport::Udp,
        addr: EXT_002.parse().expect("addr"),
    };
    f.b2bua.on_new_invite(f.now, inv, key, pbx, &mut f.out);
    let first = legs(&f.out);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, TRUNK);
    let held = f.limiter.in_use();
    f.out.clear();
    leg_says(&mut f, &first[0].1, 500, "Server Internal Error", "t1");
    let second = legs(&f.out);
    assert_eq!(second.len(), 1, "the next trunk");
    assert_eq!(second[0].0, "127.0.0.2:5080");
    assert!(statuses(&f.out).is_empty(), "the caller waits");
    assert_eq!(
        f.limiter.in_use(),
        held,
        "the first trunk's units went back"
    );
    f.out.clear();
    leg_says(&mut f, &second[0].1, 486, "Busy Here", "t2");
    assert_eq!(statuses(&f.out), vec![486], "a busy callee is final");
    assert_eq!(f.limiter.in_use(), 0);
    assert!(f.b2bua.is_empty());
}

#[test]
fn the_record_of_a_forked_call_holds_the_call_and_the_answering_legs_counters() {
    let mut f = fixture_with(&e3(2, 2));
    f.b2bua = f.b2bua.with_records(true);
    let started = start_inbound(&mut f, "e3r");
    leg_says(&mut f, &started[1].1, 200, "OK", "w");
    for i in [0, 2] {
        leg_says(&mut f, &started[i].1, 487, "Request Terminated", "l");
    }
    f.out.clear();
    hang_up_from_caller(&mut f, "e3r");
    let record = f
        .out
        .iter()
        .find_map(|o| match o {
            Out::Record(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a record");
    assert_eq!(record.outcome, "answered");
    assert_eq!(record.ended_by, crate::cdr::Ender::Caller);
    assert_eq!(record.reason, "bye");
    assert_eq!(record.status, Some(200));
    assert_eq!(
        record.path.len(),
        7 + 5,
        "the incoming call's and 011's leg's"
    );
    assert!(record
        .path
        .iter()
        .any(|c| c.level == "extension" && c.name.starts_with("011")));
    assert!(record.b_call_id.is_some());
}

#[test]
fn when_the_early_media_leg_fails_another_legs_media_reaches_the_caller() {
    let mut f = fixture_with(&e3(2, 2));
    let started = start_inbound(&mut f, "e3m");
    early_media(&mut f, &started[0].1, "m1");
    leg_says(&mut f, &started[0].1, 486, "Busy Here", "m1");
    f.out.clear();
    early_media(&mut f, &started[1].1, "m2");
    assert_eq!(statuses(&f.out), vec![183], "011's early media now");
    leg_says(&mut f, &started[1].1, 200, "OK", "m2");
    leg_says(&mut f, &started[2].1, 487, "Request Terminated", "x");
    hang_up_from_caller(&mut f, "e3m");
    assert_eq!(f.limiter.in_use(), 0);
    assert_eq!(f.b2bua.index_sizes().by_call_id, 0);
}

#[test]
fn a_cancel_waits_for_the_legs_first_provisional_rfc3261_9_1() {
    let mut f = fixture_with(&e3(2, 2));
    let started = start_inbound(&mut f, "e3p");
    leg_says(&mut f, &started[0].1, 180, "Ringing", "r0");
    f.out.clear();
    leg_says(&mut f, &started[0].1, 200, "OK", "r0");
    assert!(
        cancels(&f.out).is_empty(),
        "the silent legs get no CANCEL yet"
    );
    f.out.clear();
    leg_says(&mut f, &started[1].1, 100, "Trying", "x");
    let sent = cancels(&f.out);
    assert_eq!(sent.len(), 1, "011's CANCEL on its 100");
    assert!(
        sent[0].1.contains("Call completed elsewhere"),
        "{}",
        sent[0].1
    );
    f.out.clear();
    leg_says(&mut f, &started[2].1, 180, "Ringing", "y");
    assert_eq!(cancels(&f.out).len(), 1, "the public leg's on its 180");
    assert!(
        statuses(&f.out).is_empty(),
        "no provisional reaches the caller now"
    );
    leg_says(&mut f, &started[1].1, 487, "Request Terminated", "x");
    leg_says(&mut f, &started[2].1, 487, "Request Terminated", "y");
    hang_up_from_caller(&mut f, "e3p");
    assert_eq!(f.limiter.in_use(), 0);
}
