//! Acquire + release of each call path (spec call-control 3), uncontended and with a second thread
//! admitting on the same organization, next to the floor: one `AtomicU64` `fetch_add` + `fetch_sub`
//! per counter of the path (guides/measuring.md).
//!
//! Run: `cargo bench --bench limits -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use callgate::limits::testing::{limits, TreeBuilder};
use callgate::limits::{CallKey, Limiter, PathSpec};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const HIGH: Option<u32> = Some(1_000_000);

/// One organization, two users with two extensions each, one trunk; finite limits everywhere so
/// every counter goes through its limit check.
struct Fixture {
    limiter: Arc<Limiter>,
    paths: [(&'static str, usize, PathSpec); 3],
    /// The same paths from the other user (the second thread's calls).
    other: [PathSpec; 3],
}

fn fixture() -> Fixture {
    let mut b = TreeBuilder::new();
    b.server(limits(HIGH, HIGH));
    let sp = b.service_provider("sp1", limits(HIGH, HIGH));
    let org = b.organization("acme", sp, limits(HIGH, HIGH));
    let alice = b.user("alice", org, limits(HIGH, HIGH));
    let bob = b.user("bob", org, limits(HIGH, HIGH));
    let a = b.extension("100", alice, HIGH, HIGH);
    let a2 = b.extension("101", alice, HIGH, HIGH);
    let c = b.extension("200", bob, HIGH, HIGH);
    let c2 = b.extension("201", bob, HIGH, HIGH);
    let trunk = b.trunk("pstn", HIGH, HIGH, HIGH);
    Fixture {
        limiter: Arc::new(Limiter::new(Arc::new(b.build()))),
        paths: [
            (
                "local_to_local",
                11,
                PathSpec::LocalToLocal {
                    caller: a,
                    callee: a2,
                },
            ),
            (
                "local_to_public",
                8,
                PathSpec::LocalToPublic { caller: a, trunk },
            ),
            (
                "public_to_local",
                7,
                PathSpec::PublicToLocal { trunk, callee: a },
            ),
        ],
        other: [
            PathSpec::LocalToLocal {
                caller: c,
                callee: c2,
            },
            PathSpec::LocalToPublic { caller: c, trunk },
            PathSpec::PublicToLocal { trunk, callee: c },
        ],
    }
}

fn floor(counters: &[AtomicU64]) {
    for c in counters {
        c.fetch_add(1, Ordering::Relaxed);
    }
    for c in counters {
        c.fetch_sub(1, Ordering::Relaxed);
    }
}

fn uncontended(c: &mut Criterion) {
    let f = fixture();
    // No `cps` in the fixture: the time only matters to rate buckets.
    let now = Instant::now();
    let mut g = c.benchmark_group("limits_uncontended");
    for (name, len, spec) in f.paths {
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("admit_release", name), |b| {
            b.iter(|| {
                n += 1;
                let permit = f.limiter.try_admit(CallKey(n), black_box(spec), now);
                drop(black_box(permit));
            })
        });
        let counters: Vec<AtomicU64> = (0..len).map(|_| AtomicU64::new(0)).collect();
        g.bench_function(BenchmarkId::new("floor", format!("{name}_{len}")), |b| {
            b.iter(|| floor(black_box(&counters)))
        });
    }
    g.finish();
    assert_eq!(f.limiter.in_use(), 0);
}

/// Runs `work` in a loop on a second thread while `measure` runs.
fn with_rival<F: Fn() + Send + 'static>(work: F, measure: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let rival = thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            work();
        }
    });
    measure();
    stop.store(true, Ordering::Relaxed);
    rival.join().expect("rival thread panicked");
}

fn contended(c: &mut Criterion) {
    let f = fixture();
    let now = Instant::now();
    let mut g = c.benchmark_group("limits_two_threads_one_org");
    for ((name, len, spec), other) in f.paths.into_iter().zip(f.other) {
        let limiter = Arc::clone(&f.limiter);
        let rival = move || {
            for i in 0..64 {
                drop(limiter.try_admit(CallKey(u64::MAX - i), other, now));
            }
        };
        with_rival(rival, || {
            let mut n = 0u64;
            g.bench_function(BenchmarkId::new("admit_release", name), |b| {
                b.iter(|| {
                    n += 1;
                    drop(black_box(f.limiter.try_admit(
                        CallKey(n),
                        black_box(spec),
                        now,
                    )));
                })
            });
        });
        let counters: Arc<Vec<AtomicU64>> = Arc::new((0..len).map(|_| AtomicU64::new(0)).collect());
        let shared = Arc::clone(&counters);
        with_rival(
            move || (0..64).for_each(|_| floor(&shared)),
            || {
                g.bench_function(BenchmarkId::new("floor", format!("{name}_{len}")), |b| {
                    b.iter(|| floor(black_box(&counters)))
                });
            },
        );
    }
    g.finish();
    assert_eq!(f.limiter.in_use(), 0);
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
