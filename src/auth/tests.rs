use std::collections::HashMap;
use std::sync::Barrier;
use std::time::Duration;

use super::*;

const LIFETIME: Duration = Duration::from_secs(300);

#[test]
fn first_nc_of_a_nonce_is_fresh() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(10);
    let verdict = counts.check_and_record("n1", 1, t0 + LIFETIME, t0);
    assert_eq!(verdict, NcVerdict::Fresh);
    assert_eq!(counts.len(), 1);
}

#[test]
fn increasing_nc_is_fresh_even_with_gaps() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(10);
    for nc in [1, 2, 5, 6] {
        assert_eq!(
            counts.check_and_record("n1", nc, t0 + LIFETIME, t0),
            NcVerdict::Fresh
        );
    }
    assert_eq!(counts.len(), 1);
}

#[test]
fn replayed_nc_is_refused() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(10);
    let expires = t0 + LIFETIME;
    assert_eq!(
        counts.check_and_record("n1", 3, expires, t0),
        NcVerdict::Fresh
    );
    assert_eq!(
        counts.check_and_record("n1", 3, expires, t0),
        NcVerdict::Replay
    );
    assert_eq!(
        counts.check_and_record("n1", 2, expires, t0),
        NcVerdict::Replay
    );
    // Another nonce has its own count.
    assert_eq!(
        counts.check_and_record("n2", 1, expires, t0),
        NcVerdict::Fresh
    );
}

#[test]
fn nc_zero_is_never_fresh() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(10);
    assert_eq!(
        counts.check_and_record("n1", 0, t0 + LIFETIME, t0),
        NcVerdict::Replay
    );
    assert!(counts.is_empty());
}

#[test]
fn lapsed_nonce_is_expired_whatever_its_nc() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(10);
    let expires = t0 + LIFETIME;
    assert_eq!(
        counts.check_and_record("n1", 1, expires, t0),
        NcVerdict::Fresh
    );
    assert_eq!(
        counts.check_and_record("n1", 2, expires, expires),
        NcVerdict::Expired
    );
    assert_eq!(
        counts.check_and_record("n2", 1, expires, expires),
        NcVerdict::Expired
    );
    assert_eq!(counts.len(), 1, "an expired nonce is not recorded");
}

#[test]
fn purge_drops_only_lapsed_nonces() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(10);
    counts.check_and_record("short", 1, t0 + Duration::from_secs(10), t0);
    counts.check_and_record("long", 1, t0 + LIFETIME, t0);
    assert_eq!(counts.purge(t0 + Duration::from_secs(9)), 0);
    assert_eq!(counts.purge(t0 + Duration::from_secs(10)), 1);
    assert_eq!(counts.len(), 1);
    // The survivor still remembers its count.
    let t1 = t0 + Duration::from_secs(11);
    assert_eq!(
        counts.check_and_record("long", 1, t0 + LIFETIME, t1),
        NcVerdict::Replay
    );
}

#[test]
fn full_table_refuses_new_nonce_but_serves_known_ones() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(2);
    let expires = t0 + LIFETIME;
    counts.check_and_record("a", 1, expires, t0);
    counts.check_and_record("b", 1, expires, t0);
    assert_eq!(
        counts.check_and_record("c", 1, expires, t0),
        NcVerdict::TableFull
    );
    assert_eq!(
        counts.check_and_record("a", 2, expires, t0),
        NcVerdict::Fresh
    );
    assert_eq!(
        counts.check_and_record("b", 1, expires, t0),
        NcVerdict::Replay
    );
    assert_eq!(counts.len(), 2);
}

#[test]
fn full_table_purges_lapsed_nonces_before_refusing() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(2);
    counts.check_and_record("a", 1, t0 + Duration::from_secs(10), t0);
    counts.check_and_record("b", 1, t0 + LIFETIME, t0);
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(
        counts.check_and_record("c", 1, t0 + LIFETIME, t1),
        NcVerdict::TableFull
    );
    let t2 = t0 + Duration::from_secs(10);
    assert_eq!(
        counts.check_and_record("c", 1, t2 + LIFETIME, t2),
        NcVerdict::Fresh
    );
    assert_eq!(counts.len(), 2);
    assert_eq!(
        counts.check_and_record("d", 1, t2 + LIFETIME, t2),
        NcVerdict::TableFull
    );
}

#[test]
fn zero_capacity_table_refuses_every_new_nonce() {
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(0);
    assert_eq!(
        counts.check_and_record("a", 1, t0 + LIFETIME, t0),
        NcVerdict::TableFull
    );
    assert!(counts.is_empty());
}

#[test]
fn racing_shards_record_one_fresh_nc() {
    const NONCES: usize = 2_000;
    const COUNTS: u32 = 4;
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(NONCES);
    let nonces: Vec<String> = (0..NONCES).map(|i| format!("nonce-{i}")).collect();
    let barrier = Barrier::new(2);
    let verdicts: Vec<Vec<(usize, u32, NcVerdict)>> = std::thread::scope(|s| {
        let shards: Vec<_> = (0..2)
            .map(|_| {
                let (counts, nonces, barrier) = (&counts, &nonces, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut seen = Vec::new();
                    for (i, nonce) in nonces.iter().enumerate() {
                        for nc in 1..=COUNTS {
                            let v = counts.check_and_record(nonce, nc, t0 + LIFETIME, t0);
                            seen.push((i, nc, v));
                        }
                    }
                    seen
                })
            })
            .collect();
        shards.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut fresh: HashMap<(usize, u32), usize> = HashMap::new();
    for (i, nc, verdict) in verdicts.into_iter().flatten() {
        assert!(matches!(verdict, NcVerdict::Fresh | NcVerdict::Replay));
        *fresh.entry((i, nc)).or_default() += usize::from(verdict == NcVerdict::Fresh);
    }
    assert_eq!(fresh.len(), NONCES * COUNTS as usize);
    assert!(
        fresh.values().all(|&n| n == 1),
        "exactly one Fresh per (nonce, nc)"
    );
    assert_eq!(counts.len(), NONCES);
}

#[test]
fn racing_shards_never_exceed_capacity() {
    const CAP: usize = 100;
    let t0 = crate::test_clock::origin();
    let counts = NonceCounts::new(CAP);
    let barrier = Barrier::new(2);
    let fresh: usize = std::thread::scope(|s| {
        let shards: Vec<_> = (0..2)
            .map(|shard| {
                let (counts, barrier) = (&counts, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..CAP)
                        .filter(|i| {
                            let nonce = format!("{shard}-{i}");
                            counts.check_and_record(&nonce, 1, t0 + LIFETIME, t0)
                                == NcVerdict::Fresh
                        })
                        .count()
                })
            })
            .collect();
        shards.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(fresh, CAP);
    assert_eq!(counts.len(), CAP);
}
