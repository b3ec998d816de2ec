//! Threads racing admissions on one organization at its limit, for a bounded time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use callgate::limits::testing::{limits, TreeBuilder};
use callgate::limits::{CallKey, Level, Limiter, PathSpec};

const LIMIT: u32 = 4;
const THREADS: usize = 3;
const RUN: Duration = Duration::from_millis(2500);

#[test]
fn racing_admissions_never_exceed_the_organization_limit_and_leave_zero() {
    let mut b = TreeBuilder::new();
    let sp = b.service_provider("sp1", limits(None, None));
    let acme = b.organization("acme", sp, limits(Some(LIMIT), None));
    let users: Vec<_> = (0..THREADS)
        .map(|i| b.user(&format!("u{i}"), acme, limits(None, None)))
        .collect();
    let exts: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| b.extension(&format!("{i}00"), *u, None, None))
        .collect();
    let trunk = b.trunk("pstn", None, None, None);
    let limiter = Arc::new(Limiter::new(Arc::new(b.build())));

    let outstanding = Arc::new(AtomicI64::new(0));
    let max_seen = Arc::new(AtomicI64::new(0));
    let admitted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN;

    let workers: Vec<_> = exts
        .iter()
        .enumerate()
        .map(|(t, ext)| {
            let (limiter, outstanding, max_seen) =
                (limiter.clone(), outstanding.clone(), max_seen.clone());
            let (admitted, refused) = (admitted.clone(), refused.clone());
            let caller = *ext;
            thread::spawn(move || {
                let mut held = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    for _ in 0..64 {
                        n += 1;
                        // Outbound and inbound calls on the same organization.
                        let spec = if n % 2 == 0 {
                            PathSpec::LocalToPublic { caller, trunk }
                        } else {
                            PathSpec::PublicToLocal {
                                trunk,
                                callee: caller,
                            }
                        };
                        match limiter.try_admit(CallKey((t as u64) << 48 | n), spec, Instant::now())
                        {
                            Ok(permit) => {
                                // Counted after admission, uncounted before release: a lower
                                // bound of the organization's units at every instant.
                                let now = outstanding.fetch_add(1, Ordering::SeqCst) + 1;
                                max_seen.fetch_max(now, Ordering::SeqCst);
                                admitted.fetch_add(1, Ordering::Relaxed);
                                held.push(permit);
                            }
                            Err(r) => {
                                assert_eq!(r.level, Level::Organization);
                                assert!(r.used <= LIMIT);
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // Hold up to two calls per thread, release the oldest.
                        if !held.is_empty() && (held.len() > 2 || n % 3 == 0) {
                            outstanding.fetch_sub(1, Ordering::SeqCst);
                            drop(held.remove(0));
                        }
                    }
                }
                outstanding.fetch_sub(held.len() as i64, Ordering::SeqCst);
                drop(held);
            })
        })
        .collect();

    // Observer: every sampled counter is within its limit.
    while Instant::now() < deadline {
        for v in limiter.snapshot() {
            if let Some(limit) = v.limit {
                assert!(v.used <= limit, "{v:?} above its limit");
            }
        }
    }
    for w in workers {
        w.join().expect("worker panicked");
    }

    assert!(max_seen.load(Ordering::SeqCst) <= i64::from(LIMIT));
    assert!(
        admitted.load(Ordering::Relaxed) > 1000,
        "the race actually ran"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the limit was actually reached"
    );
    assert_eq!(limiter.in_use(), 0, "every counter back at 0");
    eprintln!(
        "admitted {} refused {} max outstanding {}",
        admitted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        max_seen.load(Ordering::SeqCst)
    );
}
