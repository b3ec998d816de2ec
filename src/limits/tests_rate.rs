//! Calls-per-second buckets: the arithmetic at its boundaries with a hand-advanced clock, all or
//! nothing together with the concurrent counters, which entities a call charges, threads, reload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::testing::{limits, TreeBuilder};
use super::*;
use crate::config::model::{ExtId, Limit, OrgId, Snapshot, SpId, TrunkId};

const MS: Duration = Duration::from_millis(1);

/// One provider `sp1`, organizations `acme` (extensions 100, 101) and `globex` (300), trunks
/// `pstn` and `backup`. No limit anywhere until a test sets one.
struct Tree {
    b: TreeBuilder,
    sp: SpId,
    acme: OrgId,
    e100: ExtId,
    e101: ExtId,
    e300: ExtId,
    pstn: TrunkId,
    backup: TrunkId,
}

fn tree() -> Tree {
    let mut b = TreeBuilder::new();
    let sp = b.service_provider("sp1", limits(None, None));
    let acme = b.organization("acme", sp, limits(None, None));
    let globex = b.organization("globex", sp, limits(None, None));
    let alice = b.user("alice", acme, limits(None, None));
    let carol = b.user("carol", globex, limits(None, None));
    let e100 = b.extension("100", alice, None, None);
    let e101 = b.extension("101", alice, None, None);
    let e300 = b.extension("300", carol, None, None);
    let pstn = b.trunk("pstn", None, None, None);
    let backup = b.trunk("backup", None, None, None);
    Tree {
        b,
        sp,
        acme,
        e100,
        e101,
        e300,
        pstn,
        backup,
    }
}

impl Tree {
    fn limiter(&self) -> Limiter {
        Limiter::new(Arc::new(self.b.build()))
    }

    fn out(&self) -> PathSpec {
        PathSpec::LocalToPublic {
            caller: self.e100,
            trunk: self.pstn,
        }
    }

    fn with_trunk_cps(mut self, cps: Limit) -> Self {
        self.b.trunk_cps(self.pstn, cps);
        self
    }
}

/// Admits `n` calls at `now`, keys from `first`; returns how many were admitted (permits dropped:
/// a rate is not given back on release).
fn burst(l: &Limiter, spec: PathSpec, first: u64, n: u64, now: Instant) -> u64 {
    (first..first + n)
        .filter(|k| l.try_admit(CallKey(*k), spec, now).is_ok())
        .count() as u64
}

fn cps_used(l: &Limiter, level: Level, name: &str, now: Instant) -> Option<(u32, Option<u32>)> {
    l.snapshot_at(now)
        .into_iter()
        .find(|v| v.level == level && v.name == name && v.kind == CounterKind::Cps)
        .map(|v| (v.used, v.limit))
}

#[test]
fn cps_bucket_admits_n_at_once_then_one_per_interval() {
    let t = tree().with_trunk_cps(Some(5));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    assert_eq!(burst(&l, t.out(), 0, 5, t0), 5, "a full bucket holds 5");
    let r = l
        .try_admit(CallKey(5), t.out(), t0 + 199 * MS)
        .expect_err("empty until 200 ms");
    assert_eq!(
        (r.level, r.name.as_str(), r.counter, r.used, r.limit),
        (Level::Trunk, "pstn", CounterKind::Cps, 5, 5)
    );
    assert_eq!(r.to_string(), "trunk pstn: cps 5/5");
    assert_eq!(
        burst(&l, t.out(), 6, 3, t0 + 200 * MS),
        1,
        "one token per 200 ms"
    );
    assert_eq!(burst(&l, t.out(), 9, 3, t0 + 400 * MS), 1);
    assert_eq!(l.in_use(), 0, "a rate holds no units once calls end");
}

#[test]
fn cps_bucket_is_full_again_one_second_after_a_burst() {
    let t = tree().with_trunk_cps(Some(5));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    assert_eq!(burst(&l, t.out(), 0, 9, t0), 5);
    assert_eq!(cps_used(&l, Level::Trunk, "pstn", t0), Some((5, Some(5))));
    assert_eq!(
        cps_used(&l, Level::Trunk, "pstn", t0 + 401 * MS),
        Some((3, Some(5)))
    );
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(cps_used(&l, Level::Trunk, "pstn", t1), Some((0, Some(5))));
    assert_eq!(
        burst(&l, t.out(), 10, 9, t1),
        5,
        "never more than N at once"
    );
}

#[test]
fn cps_interval_rounds_up_so_the_rate_never_exceeds_n() {
    let t = tree().with_trunk_cps(Some(3));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    assert_eq!(burst(&l, t.out(), 0, 3, t0), 3);
    let interval = Duration::from_nanos(333_333_334);
    let early = t0 + interval - Duration::from_nanos(1);
    assert!(l.try_admit(CallKey(3), t.out(), early).is_err());
    assert!(l.try_admit(CallKey(4), t.out(), t0 + interval).is_ok());
}

#[test]
fn cps_zero_admits_no_new_call() {
    let t = tree().with_trunk_cps(Some(0));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    let r = l
        .try_admit(CallKey(0), t.out(), t0 + Duration::from_secs(5))
        .expect_err("cps = 0");
    assert_eq!((r.counter, r.used, r.limit), (CounterKind::Cps, 0, 0));
    assert_eq!(l.in_use(), 0);
}

#[test]
fn a_counter_refusal_spends_no_token() {
    let mut t = tree().with_trunk_cps(Some(2));
    let one = t.b.trunk("one", Some(1), None, None);
    t.b.trunk_cps(one, Some(2));
    t.b.organization_cps(t.acme, Some(2));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    let via_one = PathSpec::LocalToPublic {
        caller: t.e100,
        trunk: one,
    };
    let held = l.try_admit(CallKey(0), via_one, t0).expect("room");
    for k in 1..10 {
        let r = l
            .try_admit(CallKey(k), via_one, t0)
            .expect_err("max_calls 1");
        assert_eq!(r.counter, CounterKind::MaxCalls);
    }
    assert_eq!(cps_used(&l, Level::Trunk, "one", t0), Some((1, Some(2))));
    assert_eq!(
        cps_used(&l, Level::Organization, "acme", t0),
        Some((1, Some(2)))
    );
    drop(held);
    assert!(
        l.try_admit(CallKey(10), via_one, t0).is_ok(),
        "a token left"
    );
}

#[test]
fn a_cps_refusal_holds_no_unit_and_spends_no_other_token() {
    let mut t = tree().with_trunk_cps(Some(1));
    t.b.organization_cps(t.acme, Some(10));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    let first = l.try_admit(CallKey(0), t.out(), t0).expect("a token");
    let units = l.in_use();
    let r = l
        .try_admit(CallKey(1), t.out(), t0)
        .expect_err("trunk empty");
    assert_eq!((r.level, r.counter), (Level::Trunk, CounterKind::Cps));
    assert_eq!(l.in_use(), units, "the refused call holds nothing");
    assert_eq!(
        cps_used(&l, Level::Organization, "acme", t0),
        Some((1, Some(10))),
        "the organization's token taken before the trunk refused came back"
    );
    drop(first);
    assert_eq!(l.in_use(), 0);
}

#[test]
fn a_call_charges_each_entity_of_its_path_once() {
    let mut t = tree();
    t.b.organization_cps(t.acme, Some(10));
    t.b.service_provider_cps(t.sp, Some(10));
    t.b.server_cps(Some(10));
    t.b.trunk_cps(t.pstn, Some(10));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    let inside = PathSpec::LocalToLocal {
        caller: t.e100,
        callee: t.e101,
    };
    let between = PathSpec::LocalToLocal {
        caller: t.e100,
        callee: t.e300,
    };
    let inbound = PathSpec::PublicToLocal {
        trunk: t.pstn,
        callee: t.e101,
    };
    for (k, spec) in [inside, between, t.out(), inbound].into_iter().enumerate() {
        drop(l.try_admit(CallKey(k as u64), spec, t0).expect("room"));
    }
    let used = |level, name| cps_used(&l, level, name, t0).map(|(u, _)| u);
    assert_eq!(used(Level::Organization, "acme"), Some(4), "once per call");
    assert_eq!(used(Level::ServiceProvider, "sp1"), Some(4));
    assert_eq!(used(Level::Server, "node1"), Some(4));
    assert_eq!(used(Level::Trunk, "pstn"), Some(2), "outbound and inbound");
    assert_eq!(
        used(Level::Organization, "globex"),
        None,
        "unlimited: no row"
    );
}

#[test]
fn fork_legs_charge_only_the_trunk_of_a_public_leg() {
    let mut t = tree().with_trunk_cps(Some(5));
    t.b.organization_cps(t.acme, Some(1));
    t.b.server_cps(Some(1));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    let incoming = PathSpec::PublicToLocal {
        trunk: t.pstn,
        callee: t.e100,
    };
    let _call = l.try_admit(CallKey(0), incoming, t0).expect("first call");
    let local = PathSpec::ForkLocalLeg { target: t.e101 };
    let public = PathSpec::ForkPublicLeg {
        owner: RuleOwner::Organization(t.acme),
        trunk: t.pstn,
    };
    let _legs = [
        l.try_admit(CallKey(1), local, t0).expect("not a new call"),
        l.try_admit(CallKey(2), public, t0)
            .expect("trunk has tokens"),
    ];
    assert_eq!(cps_used(&l, Level::Trunk, "pstn", t0), Some((2, Some(5))));
    assert_eq!(cps_used(&l, Level::Server, "node1", t0), Some((1, Some(1))));
}

#[test]
fn a_fail_over_charges_only_the_next_trunk() {
    let mut t = tree();
    t.b.organization_cps(t.acme, Some(1));
    t.b.trunk_cps(t.backup, Some(1));
    let l = t.limiter();
    let t0 = crate::test_clock::origin();
    let g = l.current();
    let first = g.try_admit(CallKey(0), t.out(), t0).expect("first trunk");
    drop(first);
    let next = PathSpec::LocalToPublic {
        caller: t.e100,
        trunk: t.backup,
    };
    let r = g.try_admit(CallKey(1), next, t0).expect_err("a new call");
    assert_eq!(
        (r.level, r.counter),
        (Level::Organization, CounterKind::Cps)
    );
    let over = g.try_admit_charging(CallKey(0), next, Charge::FailOver, t0);
    assert!(over.is_ok(), "the call was counted by acme already");
    let again = g.try_admit_charging(CallKey(2), next, Charge::FailOver, t0);
    let r = again.expect_err("backup's one token is spent");
    assert_eq!((r.level, r.name.as_str()), (Level::Trunk, "backup"));
}

#[test]
fn threads_at_one_instant_never_take_more_than_n() {
    let t = tree().with_trunk_cps(Some(100));
    let l = Arc::new(t.limiter());
    let t0 = crate::test_clock::origin();
    let spec = t.out();
    let admitted: u64 = (0..8u64)
        .map(|th| {
            let l = Arc::clone(&l);
            thread::spawn(move || burst(&l, spec, th << 32, 1000, t0))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .sum();
    assert_eq!(admitted, 100);
}

/// Threads admit at a shared clock one thread advances: every set of admissions whose `now`s
/// span `d` is at most `N + d / t` (`t = 1 s / N`), the bucket's bound.
#[test]
fn threads_on_a_moving_clock_stay_within_the_bucket_bound() {
    const N: u64 = 50;
    let t = tree().with_trunk_cps(Some(N as u32));
    let l = Arc::new(t.limiter());
    let t0 = crate::test_clock::origin();
    let clock = Arc::new(AtomicU64::new(0));
    let spec = t.out();
    let workers: Vec<_> = (0..4u64)
        .map(|th| {
            let (l, clock) = (Arc::clone(&l), Arc::clone(&clock));
            thread::spawn(move || {
                let mut times = Vec::new();
                for k in 0..20_000 {
                    let at = clock.load(Ordering::Relaxed);
                    let now = t0 + Duration::from_micros(at);
                    if l.try_admit(CallKey(th << 32 | k), spec, now).is_ok() {
                        times.push(at);
                    }
                }
                times
            })
        })
        .collect();
    for _ in 0..2_500 {
        clock.fetch_add(1_000, Ordering::Relaxed);
        thread::yield_now();
    }
    let mut times: Vec<u64> = workers
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    times.sort_unstable();
    let interval_us = 1_000_000 / N;
    for (i, first) in times.iter().enumerate() {
        for (j, last) in times.iter().enumerate().skip(i) {
            let count = (j - i + 1) as u64;
            assert!(
                count <= N + (last - first) / interval_us,
                "{count} calls within {} us",
                last - first
            );
        }
    }
    assert!(times.len() as u64 >= N, "the first burst passes");
}

fn reloaded(s: &Snapshot, f: impl FnOnce(&mut Snapshot)) -> Arc<Snapshot> {
    let mut next = s.clone();
    f(&mut next);
    Arc::new(next)
}

#[test]
fn reload_keeps_a_surviving_bucket_and_its_refill_time() {
    let t = tree().with_trunk_cps(Some(5));
    let s = t.b.build();
    let l = Limiter::new(Arc::new(s.clone()));
    let t0 = crate::test_clock::origin();
    assert_eq!(burst(&l, t.out(), 0, 5, t0), 5);
    l.reload(reloaded(&s, |s| s.organizations[0].cps = Some(7)));
    assert!(l.try_admit(CallKey(5), t.out(), t0).is_err(), "still empty");
    // Twice the rate: the 1 s to refill is kept, so after 500 ms half of 10 is back.
    l.reload(reloaded(&s, |s| s.trunks[0].cps = Some(10)));
    assert!(l.try_admit(CallKey(6), t.out(), t0).is_err());
    assert_eq!(burst(&l, t.out(), 7, 9, t0 + 500 * MS), 5);
    // A trunk removed and added back is a new entity with a full bucket.
    l.reload(reloaded(&s, |s| {
        s.trunks.remove(0);
    }));
    l.reload(Arc::new(s.clone()));
    assert_eq!(burst(&l, t.out(), 20, 9, t0 + 500 * MS), 5);
}

// Two-step admission (a shared backend): tokens at reservation, counters at the answer.

fn shared(t: &Tree) -> (Limiter, Arc<testing::SharedBackend>) {
    let backend = Arc::new(testing::SharedBackend::default());
    let l = Limiter::with_backend(Arc::new(t.b.build()), backend.clone());
    (l, backend)
}

#[test]
fn a_reservation_takes_tokens_only_and_gives_them_back_when_dropped() {
    let t = tree().with_trunk_cps(Some(2));
    let (l, backend) = shared(&t);
    let g = l.current();
    assert!(g.is_shared());
    let t0 = crate::test_clock::origin();
    let r = g
        .reserve(CallKey(1), t.out(), Charge::NewCall, t0)
        .expect("a token is free");
    assert_eq!(r.path().ids().len(), g.path(t.out()).ids().len());
    assert_eq!(l.in_use(), 0, "no counter is taken before the answer");
    assert_eq!(cps_used(&l, Level::Trunk, "pstn", t0), Some((1, Some(2))));
    drop(r);
    assert_eq!(cps_used(&l, Level::Trunk, "pstn", t0), Some((0, Some(2))));
    assert!(backend.released().is_empty(), "nothing was acquired");
}

#[test]
fn a_spent_bucket_refuses_the_reservation_before_the_backend_is_asked() {
    let t = tree().with_trunk_cps(Some(1));
    let (l, _) = shared(&t);
    let g = l.current();
    let t0 = crate::test_clock::origin();
    let _first = g
        .reserve(CallKey(1), t.out(), Charge::NewCall, t0)
        .expect("free");
    let refusal = g
        .reserve(CallKey(2), t.out(), Charge::NewCall, t0)
        .expect_err("spent");
    assert_eq!(refusal.to_string(), "trunk pstn: cps 1/1");
}

#[test]
fn a_granted_reservation_counts_the_node_share_and_releases_through_the_backend() {
    // The local limit is 1, but the backend checked the cluster's: granting never refuses.
    let mut t = tree();
    t.b.organization_limits(t.acme, limits(Some(1), None));
    let (l, backend) = shared(&t);
    let g = l.current();
    let t0 = crate::test_clock::origin();
    let a = g
        .reserve(CallKey(1), t.out(), Charge::NewCall, t0)
        .expect("no cps");
    let b = g
        .reserve(CallKey(2), t.out(), Charge::NewCall, t0)
        .expect("no cps");
    let (pa, pb) = (a.granted(), b.granted());
    let used = |l: &Limiter| {
        l.snapshot()
            .into_iter()
            .find(|v| v.level == Level::Organization && v.name == "acme")
            .map(|v| v.used)
    };
    assert_eq!(used(&l), Some(2));
    drop(pa);
    drop(pb);
    assert_eq!(l.in_use(), 0);
    assert_eq!(backend.released(), vec![CallKey(1), CallKey(2)]);
}

#[test]
fn admitting_locally_applies_the_local_limits_all_or_nothing() {
    let mut t = tree().with_trunk_cps(Some(5));
    t.b.organization_limits(t.acme, limits(Some(1), None));
    let (l, _) = shared(&t);
    let g = l.current();
    let t0 = crate::test_clock::origin();
    let first = g
        .reserve(CallKey(1), t.out(), Charge::NewCall, t0)
        .and_then(|r| r.admit_locally(CallKey(1 << 47)))
        .expect("room");
    let refusal = g
        .reserve(CallKey(2), t.out(), Charge::NewCall, t0)
        .and_then(|r| r.admit_locally(CallKey(1 << 47)))
        .expect_err("acme is full here");
    assert_eq!(refusal.level, Level::Organization);
    assert_eq!(
        cps_used(&l, Level::Trunk, "pstn", t0),
        Some((1, Some(5))),
        "the refused call's token went back"
    );
    drop(first);
    assert_eq!(l.in_use(), 0);
}
