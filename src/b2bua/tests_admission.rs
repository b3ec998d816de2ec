//! Sans-IO tests of two-step admission through a shared counter backend: the call waits for the
//! backend's answer, which starts it, refuses it, or (backend down) applies `on_backend_error`;
//! the caller's CANCEL and a drain while it waits; a failover asked the same way. Every ending
//! checks that the node's counters are back at zero and the backend heard every release.

use std::sync::Arc;

use super::tests::{b_invite, invite, pbx, statuses, Fixture, CFG};
use super::*;
use crate::limits::testing::SharedBackend;
use crate::limits::CallKey;
use crate::transaction::sip_keys::server_key;

/// [`CFG`] (provider `sp` public = 1) with Redis counters, the policy `policy`, and a second
/// trunk `backup` after `carrier` for outbound calls.
fn shared_cfg(policy: &str) -> String {
    let cfg = CFG.replace(
        "trunks = [\"carrier\"]",
        "trunks = [\"carrier\", \"backup\"]",
    );
    format!(
        "{cfg}\n[[trunk]]\nname = \"backup\"\nkind = \"ip\"\naddress = \"127.0.0.2:5080\"\n\n[counters]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\non_backend_error = \"{policy}\"\n"
    )
}

fn shared_fixture(policy: &str) -> (Fixture, Arc<SharedBackend>) {
    let snapshot = crate::config::load(&shared_cfg(policy))
        .map(|l| l.snapshot)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let backend = Arc::new(SharedBackend::default());
    let limiter = Arc::new(Limiter::with_backend(Arc::new(snapshot), backend.clone()));
    let base = super::tests::fixture();
    let settings = super::tests::settings();
    let ids = crate::sip::ids::Ids::new(0, rand::SeedableRng::from_rng(&mut rand::rng()));
    let f = Fixture {
        b2bua: B2bua::new(limiter.clone(), settings, ids),
        limiter,
        now: base.now,
        out: Vec::new(),
    };
    (f, backend)
}

/// The questions for the backend in `out`.
fn asked(out: &[Out]) -> Vec<&AdmitRequest> {
    out.iter()
        .filter_map(|o| match o {
            Out::Admit(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn started(out: &[Out]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Out::StartInvite { .. }))
        .count()
}

fn header(out: &[Out], status: u16, name: &str) -> Option<String> {
    out.iter().find_map(|o| match o {
        Out::Respond {
            status: s, bytes, ..
        } if *s == status => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            text.lines()
                .find(|l| l.starts_with(&format!("{name}:")))
                .map(str::to_owned)
        }
        _ => None,
    })
}

impl Fixture {
    /// An outbound call from the PBX that waits for the backend: 100 Trying, one question with
    /// both trunks as alternatives, nothing held or sent yet. Returns the request id.
    fn ask(&mut self, call_id: &str) -> (u64, CallKey) {
        let inv = invite(call_id);
        let key = server_key(&inv);
        let held = self.limiter.in_use();
        self.b2bua
            .on_new_invite(self.now, inv, key, pbx(), &mut self.out);
        assert_eq!(statuses(&self.out), vec![100], "the caller hears at once");
        assert_eq!(started(&self.out), 0, "no callee leg before the answer");
        assert_eq!(
            self.limiter.in_use(),
            held,
            "nothing counted before the answer"
        );
        let q = asked(&self.out);
        assert_eq!(q.len(), 1);
        assert_eq!(
            q[0].parts.len(),
            1,
            "one admission: the outbound call's path"
        );
        assert_eq!(
            q[0].parts[0].paths.len(),
            2,
            "carrier, then backup, in one request"
        );
        let id = (q[0].id, q[0].parts[0].key);
        assert_eq!(self.b2bua.waiting(), 1);
        self.out.clear();
        id
    }

    fn backend_says(&mut self, id: u64, answer: PartAnswer) {
        self.b2bua
            .on_admitted(self.now, id, vec![answer], &mut self.out);
    }

    fn cancel(&mut self, call_id: &str) {
        let key = server_key(&invite(call_id));
        self.b2bua.on_cancel(self.now, &key, &mut self.out);
    }

    fn assert_idle(&self) {
        assert_eq!(self.limiter.in_use(), 0);
        assert!(self.b2bua.is_empty());
        assert_eq!(self.b2bua.index_sizes(), IndexSizes::default());
    }
}

fn full_sp() -> Refusal {
    Refusal {
        level: crate::limits::Level::ServiceProvider,
        name: "sp".into(),
        counter: crate::limits::CounterKind::Public,
        used: 1,
        limit: 1,
    }
}

#[test]
fn the_answer_starts_the_call_and_its_end_releases_through_the_backend() {
    let (mut f, backend) = shared_fixture("reject");
    let (id, key) = f.ask("s1");
    f.backend_says(id, PartAnswer::Admitted { index: 0 });
    assert_eq!(started(&f.out), 1);
    assert_eq!(statuses(&f.out), Vec::<u16>::new(), "100 was sent already");
    assert_eq!(f.limiter.in_use(), 8, "this node's share: the carrier path");
    let b = b_invite(&f.out);
    assert!(String::from_utf8_lossy(&b).starts_with("INVITE sip:3125559999@127.0.0.1:5080"));
    f.out.clear();
    f.b_says(&b, 486, "Busy Here");
    assert_eq!(statuses(&f.out), vec![486]);
    f.assert_idle();
    assert_eq!(backend.released(), vec![key]);
}

#[test]
fn the_second_alternative_admitted_routes_to_the_backup_trunk() {
    let (mut f, _) = shared_fixture("reject");
    let (id, _) = f.ask("s2");
    f.backend_says(id, PartAnswer::Admitted { index: 1 });
    let b = b_invite(&f.out);
    assert!(String::from_utf8_lossy(&b).starts_with("INVITE sip:3125559999@127.0.0.2:5080"));
    f.out.clear();
    f.b_says(&b, 486, "Busy Here");
    assert_eq!(statuses(&f.out), vec![486]);
    f.assert_idle();
}

#[test]
fn a_refusal_from_the_backend_gets_the_reject_code_naming_the_counter() {
    let (mut f, backend) = shared_fixture("reject");
    let (id, _) = f.ask("s3");
    f.backend_says(id, PartAnswer::Refused(full_sp()));
    assert_eq!(statuses(&f.out), vec![486]);
    let reason = header(&f.out, 486, "Reason").expect("a Reason");
    assert!(
        reason.contains("service_provider sp: public 1/1"),
        "{reason}"
    );
    assert!(f.out.iter().any(|o| matches!(o, Out::Rejected(_))));
    assert_eq!(started(&f.out), 0);
    f.assert_idle();
    assert!(backend.released().is_empty(), "nothing was granted");
}

#[test]
fn a_backend_failure_with_reject_answers_503_naming_the_backend() {
    let (mut f, _) = shared_fixture("reject");
    f.b2bua = f.b2bua.with_records(true);
    let (id, _) = f.ask("s4");
    f.backend_says(id, PartAnswer::Failed("timed out".into()));
    assert_eq!(statuses(&f.out), vec![503]);
    let reason = header(&f.out, 503, "Reason").expect("a Reason");
    assert!(
        reason.contains("counter backend unavailable (redis)"),
        "{reason}"
    );
    assert_eq!(started(&f.out), 0);
    // Counted in `callgate_calls_total{outcome="rejected"}` and recorded, with no counter.
    assert!(f.out.iter().any(|o| matches!(o, Out::Rejected(None))));
    let record = f
        .out
        .iter()
        .find_map(|o| match o {
            Out::Record(r) => Some(r),
            _ => None,
        })
        .expect("a record");
    assert_eq!(
        (record.outcome, record.reason, record.status),
        ("rejected", "counter_backend", Some(503))
    );
    assert!(record.refused_by.is_none());
    f.assert_idle();
}

#[test]
fn a_backend_failure_with_local_admits_on_this_nodes_own_limits() {
    let (mut f, _) = shared_fixture("local");
    let (first, _) = f.ask("s5");
    f.backend_says(first, PartAnswer::Failed("connection refused".into()));
    assert_eq!(started(&f.out), 1, "admitted locally");
    assert_eq!(f.limiter.in_use(), 8);
    let first_out = std::mem::take(&mut f.out);
    // The provider's public = 1 is full on this node: the second call is refused locally.
    let (second, _) = f.ask("s6");
    f.backend_says(second, PartAnswer::Failed("connection refused".into()));
    assert_eq!(statuses(&f.out), vec![486]);
    assert_eq!(started(&f.out), 0);
    f.out.clear();
    let b = b_invite(&first_out);
    f.b_says(&b, 486, "Busy Here");
    f.assert_idle();
}

#[test]
fn a_cancel_while_waiting_gets_487_and_the_late_grant_is_released() {
    let (mut f, backend) = shared_fixture("reject");
    let (id, key) = f.ask("s7");
    f.cancel("s7");
    assert_eq!(statuses(&f.out), vec![487]);
    f.out.clear();
    f.backend_says(id, PartAnswer::Admitted { index: 0 });
    assert!(f.out.is_empty(), "nothing starts: {:?}", f.out);
    f.assert_idle();
    assert_eq!(
        backend.released(),
        vec![key],
        "the grant went back to the backend"
    );
}

#[test]
fn a_drain_while_waiting_answers_503_and_a_second_invite_with_its_call_id_482() {
    let (mut f, backend) = shared_fixture("reject");
    let (id, key) = f.ask("s8");
    let again = super::tests::request("INVITE sip:3125559999@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKother\nFrom: <sip:200@127.0.0.11>;tag=a2\nTo: <sip:3125559999@127.0.0.1>\nCall-ID: s8\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n");
    let k = server_key(&again);
    f.b2bua.on_new_invite(f.now, again, k, pbx(), &mut f.out);
    assert_eq!(statuses(&f.out), vec![482]);
    f.out.clear();
    f.b2bua.drain(f.now, &mut f.out);
    assert_eq!(statuses(&f.out), vec![503]);
    f.out.clear();
    f.backend_says(id, PartAnswer::Admitted { index: 0 });
    assert!(f.out.is_empty());
    f.assert_idle();
    assert_eq!(backend.released(), vec![key]);
}

#[test]
fn a_failover_is_asked_anew_under_its_own_key_and_the_call_waits_for_it() {
    let (mut f, backend) = shared_fixture("reject");
    let (id, key) = f.ask("s9");
    f.backend_says(id, PartAnswer::Admitted { index: 0 });
    let b = b_invite(&f.out);
    f.out.clear();
    f.b_says(&b, 503, "Service Unavailable");
    assert!(
        statuses(&f.out).is_empty(),
        "the caller waits for the failover"
    );
    let q = asked(&f.out);
    assert_eq!(q.len(), 1, "the next trunk is asked for");
    assert_eq!(
        q[0].parts[0].paths.len(),
        1,
        "only the trunks after the failed one"
    );
    let (fid, fkey) = (q[0].id, q[0].parts[0].key);
    assert_ne!(fkey, key, "a new admission, never the released one's retry");
    assert_eq!(f.limiter.in_use(), 0, "the carrier's units went back");
    assert_eq!(backend.released(), vec![key]);
    f.out.clear();
    f.backend_says(fid, PartAnswer::Admitted { index: 0 });
    let b2 = b_invite(&f.out);
    assert!(String::from_utf8_lossy(&b2).starts_with("INVITE sip:3125559999@127.0.0.2:5080"));
    f.out.clear();
    f.b_says(&b2, 486, "Busy Here");
    assert_eq!(statuses(&f.out), vec![486]);
    f.assert_idle();
    assert_eq!(backend.released(), vec![key, fkey]);
}

#[test]
fn a_failover_refused_by_the_backend_ends_the_call_with_the_reject_code() {
    let (mut f, _) = shared_fixture("reject");
    let (id, _) = f.ask("s10");
    f.backend_says(id, PartAnswer::Admitted { index: 0 });
    let b = b_invite(&f.out);
    f.out.clear();
    f.b_says(&b, 500, "Server Internal Error");
    let fid = asked(&f.out)[0].id;
    f.out.clear();
    f.backend_says(fid, PartAnswer::Refused(full_sp()));
    // The failed trunk's own answer stays the best response, as with in-memory counters.
    assert_eq!(statuses(&f.out), vec![500]);
    f.assert_idle();
}

#[test]
fn a_caller_cancelling_during_a_failover_ends_the_call_when_the_answer_comes() {
    let (mut f, backend) = shared_fixture("reject");
    let (id, _) = f.ask("s11");
    f.backend_says(id, PartAnswer::Admitted { index: 0 });
    let b = b_invite(&f.out);
    f.out.clear();
    f.b_says(&b, 503, "Service Unavailable");
    let q = asked(&f.out);
    let (fid, fkey) = (q[0].id, q[0].parts[0].key);
    f.out.clear();
    f.cancel("s11");
    assert_eq!(statuses(&f.out), vec![487]);
    f.out.clear();
    f.backend_says(fid, PartAnswer::Admitted { index: 0 });
    assert_eq!(started(&f.out), 0, "no leg for a cancelled call");
    f.assert_idle();
    assert!(
        backend.released().contains(&fkey),
        "the late grant went back"
    );
}
