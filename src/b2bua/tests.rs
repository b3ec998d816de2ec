//! Sans-IO call tests: messages in, `Out` actions out, time passed by hand. Every ending checks
//! that the limiter is back at zero.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::config::model::Transport;
use crate::sip::{self, Message};
use crate::transaction::sip_keys::{client_key, server_key};

pub(super) const CFG: &str = r#"
[server]
name = "t"
reject_code = 486
[license]
sip_trunking_channels = 10
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[[service_provider]]
name = "sp"
limits = { public = 1 }
[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"
[[user]]
name = "u"
organization = "acme"
[[extension]]
number = "200"
user = "u"
pbx = { address = "127.0.0.11:5060", transport = "udp", authenticate = false }
[[trunk]]
name = "carrier"
kind = "ip"
address = "127.0.0.1:5080"
[[outbound_rule]]
organization = "acme"
pattern = "^[0-9]+$"
trunks = ["carrier"]
"#;

pub(super) struct Fixture {
    pub(super) b2bua: B2bua,
    pub(super) limiter: Arc<Limiter>,
    pub(super) now: Instant,
    pub(super) out: Vec<Out>,
}

pub(super) fn fixture() -> Fixture {
    let snapshot = crate::config::load(CFG)
        .map(|l| l.snapshot)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let limiter = Arc::new(Limiter::new(Arc::new(snapshot)));
    let settings = settings();
    let ids = crate::sip::ids::Ids::new(0, rand::SeedableRng::from_rng(&mut rand::rng()));
    let b2bua = B2bua::new(limiter.clone(), settings, ids);
    // The clock is never read by the core: any fixed origin works.
    let now = crate::test_clock::origin();
    Fixture {
        b2bua,
        limiter,
        now,
        out: Vec::new(),
    }
}

/// The call settings every fixture uses.
pub(super) fn settings() -> Settings {
    Settings {
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        local: Local {
            udp: Some("127.0.0.1:5070".into()),
            tcp: None,
            tls: None,
        },
        node: "t".into(),
        ring_timeout: Duration::from_secs(180),
    }
}

/// A fixture running configuration `cfg` instead of [`CFG`].
pub(super) fn fixture_with(cfg: &str) -> Fixture {
    let snapshot = crate::config::load(cfg)
        .map(|l| l.snapshot)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let f = fixture();
    f.limiter.reload(Arc::new(snapshot));
    f
}

pub(super) fn pbx() -> Dest {
    Dest {
        transport: Transport::Udp,
        addr: "127.0.0.11:5060".parse::<SocketAddr>().expect("addr"),
    }
}

pub(super) fn request(text: &str) -> sip::Request {
    match sip::parse_datagram(Bytes::from(text.replace('\n', "\r\n"))) {
        Ok(Message::Request(r)) => r,
        other => panic!("test request did not parse: {other:?}"),
    }
}

pub(super) fn response(bytes: &Bytes) -> sip::Response {
    match sip::parse_datagram(bytes.clone()) {
        Ok(Message::Response(r)) => r,
        other => panic!("test response did not parse: {other:?}"),
    }
}

pub(super) fn invite(call_id: &str) -> sip::Request {
    request(&format!(
        "INVITE sip:3125559999@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bK{call_id}\nFrom: <sip:200@127.0.0.11>;tag=a1\nTo: <sip:3125559999@127.0.0.1>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:200@127.0.0.11:5060>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: 4\n\nv=0\n"
    ))
}

/// The B-leg INVITE the call started (its bytes), from the outputs.
pub(super) fn b_invite(out: &[Out]) -> Bytes {
    out.iter()
        .find_map(|o| match o {
            Out::StartInvite { request, .. } => Some(request.parts().as_bytes().clone()),
            _ => None,
        })
        .expect("a B-leg INVITE was started")
}

/// A response from the callee to our B INVITE.
pub(super) fn b_response(b_inv: &Bytes, status: u16, reason: &str) -> sip::Response {
    let req = match sip::parse_datagram(b_inv.clone()) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    };
    let extra = [("Contact", "<sip:uas@127.0.0.1:5080>")];
    response(&sip::response_to(&req, status, reason, Some("b1"), &extra))
}

pub(super) fn statuses(out: &[Out]) -> Vec<u16> {
    out.iter()
        .filter_map(|o| {
            if let Out::Respond { status, .. } = o {
                Some(*status)
            } else {
                None
            }
        })
        .collect()
}

pub(super) fn ended(out: &[Out]) -> Option<Outcome> {
    out.iter().find_map(|o| {
        if let Out::Ended { outcome, .. } = o {
            Some(*outcome)
        } else {
            None
        }
    })
}

impl Fixture {
    pub(super) fn start_call(&mut self, call_id: &str) -> Bytes {
        let inv = invite(call_id);
        let key = server_key(&inv);
        self.b2bua
            .on_new_invite(self.now, inv, key, pbx(), &mut self.out);
        assert_eq!(statuses(&self.out), vec![100]);
        assert_eq!(self.limiter.in_use(), 8, "local->public holds 8 counters");
        let b = b_invite(&self.out);
        self.out.clear();
        b
    }

    /// A ACKs our 2xx for call `call_id` (confirming leg A).
    pub(super) fn a_acks(&mut self, call_id: &str) {
        let tag = self
            .b2bua
            .calls()
            .find(|c| c.a.call_id == call_id)
            .map(|c| c.a.local_tag.clone())
            .expect("call exists");
        let ack = request(&format!("ACK sip:callgate@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKack{call_id}\nFrom: <sip:200@127.0.0.11>;tag=a1\nTo: <sip:3125559999@127.0.0.1>;tag={tag}\nCall-ID: {call_id}\nCSeq: 1 ACK\nContent-Length: 0\n\n"));
        self.b2bua.on_ack(&ack, &mut self.out);
    }

    /// Our tag towards A on call `call_id` (the To tag of A's in-dialog requests).
    pub(super) fn a_tag(&self, call_id: &str) -> String {
        self.b2bua
            .calls()
            .find(|c| c.a.call_id == call_id)
            .map(|c| c.a.local_tag.clone())
            .expect("call exists")
    }

    /// A BYE from A on call `call_id` with To tag `to_tag`.
    pub(super) fn bye_from_a(&mut self, call_id: &str, to_tag: &str) {
        let bye = request(&format!("BYE sip:callgate@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKbye{call_id}{to_tag}\nFrom: <sip:200@127.0.0.11>;tag=a1\nTo: <sip:3125559999@127.0.0.1>;tag={to_tag}\nCall-ID: {call_id}\nCSeq: 2 BYE\nContent-Length: 0\n\n"));
        let key = server_key(&bye);
        self.b2bua.on_in_dialog(self.now, bye, key, &mut self.out);
    }

    pub(super) fn b_says(&mut self, b_inv: &Bytes, status: u16, reason: &str) {
        let resp = b_response(b_inv, status, reason);
        let key = client_key(&resp).expect("our branch");
        self.b2bua.on_response(self.now, &key, resp, &mut self.out);
    }
}

#[test]
fn answered_call_released_by_bye_from_caller() {
    let mut f = fixture();
    let b = f.start_call("c1");
    let text = String::from_utf8_lossy(&b).into_owned();
    assert!(text.contains("v=0"), "SDP crosses byte-exact");
    assert!(!text.contains("Call-ID: c1"), "leg B has its own Call-ID");
    f.b_says(&b, 200, "OK");
    assert_eq!(statuses(&f.out), vec![200]);
    assert!(
        f.out.iter().any(|o| matches!(o, Out::Send { .. })),
        "B's 2xx is ACKed"
    );
    f.out.clear();
    let tag = f.a_tag("c1");
    f.bye_from_a("c1", &tag);
    assert_eq!(statuses(&f.out), vec![200]);
    assert!(
        f.out
            .iter()
            .any(|o| matches!(o, Out::StartNonInvite { .. })),
        "BYE sent to B"
    );
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert_eq!(f.limiter.in_use(), 0);
    assert!(f.b2bua.is_empty());
}

#[test]
fn a_failure_after_the_answer_neither_ends_the_call_nor_releases_its_units() {
    let mut f = fixture();
    let b = f.start_call("late1");
    f.b_says(&b, 200, "OK");
    f.a_acks("late1");
    f.out.clear();
    // The callee answered, then (past Timer M, when no transaction absorbs it) sends 486 and a
    // 180 for the same INVITE: the call goes on, counted.
    f.b_says(&b, 486, "Busy Here");
    f.b_says(&b, 180, "Ringing");
    assert!(f.out.is_empty(), "nothing relayed or ended: {:?}", f.out);
    assert_eq!(f.limiter.in_use(), 8, "the call still holds its units");
    assert_eq!(f.b2bua.len(), 1);
    // It still ends the normal way, and only then are the units released.
    let tag = f.a_tag("late1");
    f.bye_from_a("late1", &tag);
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn a_bye_whose_tags_match_no_dialog_gets_481_and_ends_nothing() {
    let mut f = fixture();
    let b = f.start_call("t1");
    f.b_says(&b, 200, "OK");
    f.a_acks("t1");
    f.out.clear();
    // The right Call-ID with a made-up To tag, then with no To tag's dialog at all.
    f.bye_from_a("t1", "guessed");
    assert_eq!(statuses(&f.out), vec![481]);
    assert_eq!(ended(&f.out), None);
    assert_eq!(f.limiter.in_use(), 8, "the call still holds its units");
    f.out.clear();
    let tag = f.a_tag("t1");
    f.bye_from_a("t1", &tag);
    assert_eq!(statuses(&f.out), vec![200]);
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn a_new_invite_reusing_a_live_call_id_gets_482_and_is_not_admitted() {
    let mut f = fixture();
    let b = f.start_call("dup1");
    f.b_says(&b, 200, "OK");
    f.a_acks("dup1");
    f.out.clear();
    // Same Call-ID, new branch (not a retransmission): refused before admission.
    let again = request("INVITE sip:3125559999@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKdup1again\nFrom: <sip:200@127.0.0.11>;tag=a2\nTo: <sip:3125559999@127.0.0.1>\nCall-ID: dup1\nCSeq: 1 INVITE\nContact: <sip:200@127.0.0.11:5060>\nMax-Forwards: 70\nContent-Length: 0\n\n");
    let key = server_key(&again);
    f.b2bua.on_new_invite(f.now, again, key, pbx(), &mut f.out);
    assert_eq!(statuses(&f.out), vec![482]);
    assert!(!f.out.iter().any(|o| matches!(o, Out::StartInvite { .. })));
    assert_eq!(f.b2bua.len(), 1);
    assert_eq!(f.limiter.in_use(), 8);
    // The first call is intact and ends normally.
    f.out.clear();
    let tag = f.a_tag("dup1");
    f.bye_from_a("dup1", &tag);
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn busy_callee_is_relayed_and_releases() {
    let mut f = fixture();
    let b = f.start_call("c2");
    f.b_says(&b, 486, "Busy Here");
    assert_eq!(statuses(&f.out), vec![486]);
    assert_eq!(ended(&f.out), Some(Outcome::Failed));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn full_counter_refuses_with_reason_and_no_b_leg() {
    let mut f = fixture();
    let _held = f.start_call("c3");
    let inv = invite("c4");
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, pbx(), &mut f.out);
    let refusal = f.out.iter().find_map(|o| match o {
        Out::Respond {
            status: 486, bytes, ..
        } => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    });
    let text = refusal.expect("486 to the caller");
    assert!(
        text.contains("Reason: SIP;cause=486;text=\"service_provider sp: public 1/1\""),
        "{text}"
    );
    assert!(
        !f.out.iter().any(|o| matches!(o, Out::StartInvite { .. })),
        "nothing towards B"
    );
    assert_eq!(f.limiter.in_use(), 8, "only the first call holds units");
}

#[test]
fn cancel_before_answer_sends_487_and_cancel() {
    let mut f = fixture();
    let b = f.start_call("c5");
    f.b_says(&b, 180, "Ringing");
    assert_eq!(statuses(&f.out), vec![180]);
    f.out.clear();
    let key = server_key(&invite("c5"));
    f.b2bua.on_cancel(f.now, &key, &mut f.out);
    assert_eq!(statuses(&f.out), vec![487]);
    assert!(
        f.out
            .iter()
            .any(|o| matches!(o, Out::StartNonInvite { .. })),
        "CANCEL to B"
    );
    assert!(
        f.limiter.in_use() > 0,
        "the trunk leg's units until its INVITE ends"
    );
    f.out.clear();
    f.b_says(&b, 487, "Request Terminated");
    assert_eq!(ended(&f.out), Some(Outcome::Cancelled));
    assert_eq!(f.limiter.in_use(), 0, "released with the 487");
    assert!(statuses(&f.out).is_empty(), "A already has its 487");
}

#[test]
fn answer_racing_cancel_gets_ack_and_bye() {
    let mut f = fixture();
    let b = f.start_call("c6");
    let key = server_key(&invite("c6"));
    f.b2bua.on_cancel(f.now, &key, &mut f.out);
    f.out.clear();
    f.b_says(&b, 200, "OK");
    assert!(
        f.out.iter().any(|o| matches!(o, Out::Send { .. })),
        "ACK to B"
    );
    assert_eq!(ended(&f.out), Some(Outcome::Cancelled));
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn b_invite_timeout_answers_408() {
    let mut f = fixture();
    let b = f.start_call("c7");
    let req = match sip::parse_datagram(b) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    };
    let key = crate::transaction::sip_keys::client_key_for(
        req.parts().branch().map_or("", |b| b.as_str()),
        &sip::Method::Invite,
    );
    f.b2bua.on_client_failure(f.now, &key, true, &mut f.out);
    assert_eq!(statuses(&f.out), vec![408]);
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn missing_ack_ends_the_call_after_64_t1() {
    let mut f = fixture();
    let b = f.start_call("c8");
    f.b_says(&b, 200, "OK");
    let arms: Vec<(Instant, CallTimer)> = f
        .out
        .iter()
        .filter_map(|o| {
            if let Out::Arm { at, timer, .. } = o {
                Some((*at, *timer))
            } else {
                None
            }
        })
        .collect();
    let (at, _) = *arms
        .iter()
        .find(|(_, t)| *t == CallTimer::NoAck)
        .expect("no-ACK timer armed");
    assert_eq!(at, f.now + Duration::from_millis(500) * 64);
    let id = f.b2bua.calls().next().map(|c| c.id).expect("one call");
    f.out.clear();
    f.b2bua.on_timer(at, id, CallTimer::NoAck, &mut f.out);
    let byes = f
        .out
        .iter()
        .filter(|o| matches!(o, Out::StartNonInvite { .. }))
        .count();
    assert_eq!(byes, 2, "BYE on both legs");
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn drain_refuses_new_calls_and_ends_calls_in_progress() {
    let mut f = fixture();
    let b = f.start_call("c9");
    f.b_says(&b, 200, "OK");
    f.out.clear();
    f.b2bua.drain(f.now, &mut f.out);
    assert_eq!(f.limiter.in_use(), 0);
    f.out.clear();
    let inv = invite("c10");
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, pbx(), &mut f.out);
    assert_eq!(statuses(&f.out), vec![503]);
}

#[test]
fn transport_loss_on_a_leg_hangs_up_the_other() {
    let mut f = fixture();
    let b = f.start_call("c11");
    f.b_says(&b, 200, "OK");
    f.out.clear();
    // Leg A is UDP here; a TCP close of B's peer must not touch it, a close of the UDP peer either.
    f.b2bua.on_transport_closed(f.now, pbx().addr, &mut f.out);
    assert_eq!(f.limiter.in_use(), 8, "UDP legs have no connection to lose");
}

pub(super) fn with_session_timer() -> Fixture {
    let cfg = CFG.replace(
        "reject_code = 486",
        "reject_code = 486\nsession_expires = \"300s\"",
    );
    fixture_with(&cfg)
}

pub(super) fn timer_invite(call_id: &str) -> sip::Request {
    let text = String::from_utf8_lossy(invite(call_id).parts().as_bytes()).into_owned();
    let text = text.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSupported: timer\r\n",
    );
    request(&text.replace("\r\n", "\n"))
}

#[test]
fn unrefreshed_session_ends_the_call_rfc4028() {
    let mut f = with_session_timer();
    let inv = timer_invite("s1");
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, pbx(), &mut f.out);
    let b = b_invite(&f.out);
    assert!(String::from_utf8_lossy(&b).contains("Session-Expires: 300;refresher=uac"));
    f.out.clear();
    f.b_says(&b, 200, "OK");
    let ok = f.out.iter().find_map(|o| match o {
        Out::Respond {
            status: 200, bytes, ..
        } => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    });
    let ok = ok.expect("200 to A");
    assert!(
        ok.contains("Session-Expires: 300;refresher=uac") && ok.contains("Require: timer"),
        "{ok}"
    );
    let at = f.out.iter().find_map(|o| match o {
        Out::Arm {
            at,
            timer: CallTimer::SessionExpiry,
            ..
        } => Some(*at),
        _ => None,
    });
    // The non-refresher hangs up min(32 s, SE/3) before expiry: 300 - 32 = 268 s.
    assert_eq!(at, Some(f.now + Duration::from_secs(268)));
    let id = f.b2bua.calls().next().map(|c| c.id).expect("one call");
    f.a_acks("s1");
    f.out.clear();
    f.b2bua.on_timer(
        f.now + Duration::from_secs(268),
        id,
        CallTimer::SessionExpiry,
        &mut f.out,
    );
    assert_eq!(
        f.out
            .iter()
            .filter(|o| matches!(o, Out::StartNonInvite { .. }))
            .count(),
        2
    );
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn caller_without_timer_support_gets_no_session_timer() {
    let mut f = with_session_timer();
    let b = f.start_call("s2");
    f.b_says(&b, 200, "OK");
    assert!(!f.out.iter().any(|o| matches!(
        o,
        Out::Arm {
            timer: CallTimer::SessionExpiry,
            ..
        }
    )));
}

#[test]
fn caller_s_refresh_is_answered_with_the_session_interval_rfc4028() {
    let mut f = with_session_timer();
    let inv = timer_invite("s3");
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, pbx(), &mut f.out);
    let b = b_invite(&f.out);
    f.out.clear();
    f.b_says(&b, 200, "OK");
    let ok = f.out.iter().find_map(|o| match o {
        Out::Respond {
            status: 200, bytes, ..
        } => Some(response(bytes)),
        _ => None,
    });
    let our_tag = ok
        .expect("200 to A")
        .parts()
        .to_tag()
        .map(|t| t.as_str().to_owned())
        .expect("our To tag");
    f.out.clear();
    // A refreshes with a re-INVITE; B (not asked about timers) answers a plain 200.
    let refresh = request(&format!(
        "INVITE sip:gate@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKs3r\nFrom: <sip:200@127.0.0.11>;tag=a1\nTo: <sip:3125559999@127.0.0.1>;tag={our_tag}\nCall-ID: s3\nCSeq: 2 INVITE\nContact: <sip:200@127.0.0.11:5060>\nSupported: timer\nSession-Expires: 300;refresher=uac\nMax-Forwards: 70\nContent-Length: 0\n\n"
    ));
    let key = server_key(&refresh);
    f.b2bua.on_in_dialog(f.now, refresh, key, &mut f.out);
    let relayed = b_invite(&f.out);
    f.out.clear();
    f.b_says(&relayed, 200, "OK");
    let ok = f.out.iter().find_map(|o| match o {
        Out::Respond {
            status: 200, bytes, ..
        } => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    });
    let ok = ok.expect("the refresh's 200 relayed to A");
    assert!(
        ok.contains("Session-Expires: 300;refresher=uac") && ok.contains("Require: timer"),
        "{ok}"
    );
}

#[test]
fn callee_is_offered_no_session_timer_the_caller_cannot_refresh() {
    let mut f = with_session_timer();
    let b = f.start_call("s4");
    assert!(!String::from_utf8_lossy(&b).contains("Session-Expires"));
}

#[test]
fn callee_bye_before_the_callers_ack_waits_for_that_ack_rfc3261_15() {
    let mut f = fixture();
    let b = f.start_call("w1");
    f.b_says(&b, 200, "OK");
    let tag = f
        .out
        .iter()
        .find_map(|o| match o {
            Out::Respond {
                status: 200, bytes, ..
            } => response(bytes)
                .parts()
                .to_tag()
                .map(|t| t.as_str().to_owned()),
            _ => None,
        })
        .expect("our tag towards A");
    let b_req = match sip::parse_datagram(b.clone()) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    };
    let b_call_id = b_req.parts().call_id().to_owned();
    let b_from_tag = b_req
        .parts()
        .from_tag()
        .map(|t| t.as_str().to_owned())
        .expect("tag");
    f.out.clear();
    let bye = request(&format!("BYE sip:callgate@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKbyeB\nFrom: <sip:3125559999@127.0.0.1:5080>;tag=b1\nTo: <sip:200@127.0.0.1>;tag={b_from_tag}\nCall-ID: {b_call_id}\nCSeq: 2 BYE\nContent-Length: 0\n\n"));
    let key = server_key(&bye);
    f.b2bua.on_in_dialog(f.now, bye, key, &mut f.out);
    assert_eq!(statuses(&f.out), vec![200]);
    assert!(
        !f.out
            .iter()
            .any(|o| matches!(o, Out::StartNonInvite { .. })),
        "no BYE to A before its ACK"
    );
    assert_eq!(f.limiter.in_use(), 0, "units released at once");
    f.out.clear();
    let ack = request(&format!("ACK sip:callgate@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKackw1\nFrom: <sip:200@127.0.0.11>;tag=a1\nTo: <sip:3125559999@127.0.0.1>;tag={tag}\nCall-ID: w1\nCSeq: 1 ACK\nContent-Length: 0\n\n"));
    f.b2bua.on_ack(&ack, &mut f.out);
    assert!(
        f.out
            .iter()
            .any(|o| matches!(o, Out::StartNonInvite { bytes, .. } if bytes.starts_with(b"BYE "))),
        "BYE to A on its ACK"
    );
    assert_eq!(ended(&f.out), Some(Outcome::Answered));
    assert!(f.b2bua.is_empty());
}

pub(super) fn armed(out: &[Out], timer: CallTimer) -> Option<Instant> {
    out.iter().find_map(|o| match o {
        Out::Arm { at, timer: t, .. } if *t == timer => Some(*at),
        _ => None,
    })
}

#[test]
fn ringing_without_answer_times_out_then_cancel_gives_up_rfc3261_9_1() {
    let mut f = fixture();
    let inv = invite("t1");
    let key = server_key(&inv);
    f.b2bua.on_new_invite(f.now, inv, key, pbx(), &mut f.out);
    let ring = armed(&f.out, CallTimer::RingTimeout).expect("ring timeout armed");
    let b = b_invite(&f.out);
    f.out.clear();
    f.b_says(&b, 180, "Ringing");
    let id = f.b2bua.calls().next().map(|c| c.id).expect("one call");
    f.out.clear();
    f.b2bua
        .on_timer(ring, id, CallTimer::RingTimeout, &mut f.out);
    assert_eq!(statuses(&f.out), vec![480]);
    assert!(f
        .out
        .iter()
        .any(|o| matches!(o, Out::StartNonInvite { bytes, .. } if bytes.starts_with(b"CANCEL "))));
    assert!(
        f.limiter.in_use() > 0,
        "the trunk leg's units until its INVITE ends"
    );
    let give_up = armed(&f.out, CallTimer::CancelGiveUp).expect("give-up armed");
    assert_eq!(give_up, ring + Duration::from_millis(500) * 64);
    f.out.clear();
    // B never answers the CANCEL nor the INVITE: the call is dropped after 64*T1.
    f.b2bua
        .on_timer(give_up, id, CallTimer::CancelGiveUp, &mut f.out);
    assert_eq!(
        ended(&f.out),
        Some(Outcome::Failed),
        "a ring timeout is a failure"
    );
    assert!(f.b2bua.is_empty());
    assert_eq!(f.limiter.in_use(), 0);
}

#[test]
fn operator_end_of_a_ringing_call_waits_for_the_callees_487() {
    let mut f = fixture();
    let b = f.start_call("t2");
    f.b_says(&b, 180, "Ringing");
    let id = f.b2bua.calls().next().map(|c| c.id).expect("one call");
    f.out.clear();
    assert!(f.b2bua.end_call_by_operator(f.now, id, &mut f.out));
    assert_eq!(statuses(&f.out), vec![480]);
    assert_eq!(ended(&f.out), None, "kept until B's final response");
    f.out.clear();
    f.b_says(&b, 487, "Request Terminated");
    assert_eq!(
        ended(&f.out),
        Some(Outcome::Failed),
        "not the caller's cancel"
    );
    assert_eq!(f.limiter.in_use(), 0);
}
