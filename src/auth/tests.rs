use std::collections::HashMap;
use std::sync::Barrier;

use super::*;

#[test]
fn first_nc_of_a_nonce_is_fresh() {
    let counts = NonceCounts::new(16);
    assert_eq!(counts.check_and_record(0, 1, 1), NcVerdict::Fresh);
}

#[test]
fn increasing_nc_is_fresh_even_with_gaps() {
    let counts = NonceCounts::new(16);
    for nc in [1, 2, 5, 6] {
        assert_eq!(counts.check_and_record(3, nc, 4), NcVerdict::Fresh);
    }
}

#[test]
fn replayed_nc_is_refused() {
    let counts = NonceCounts::new(16);
    assert_eq!(counts.check_and_record(1, 3, 2), NcVerdict::Fresh);
    assert_eq!(counts.check_and_record(1, 3, 2), NcVerdict::Replay);
    assert_eq!(counts.check_and_record(1, 2, 2), NcVerdict::Replay);
    // Another nonce has its own count.
    assert_eq!(counts.check_and_record(0, 1, 2), NcVerdict::Fresh);
}

#[test]
fn nc_zero_is_never_fresh() {
    let counts = NonceCounts::new(16);
    assert_eq!(counts.check_and_record(0, 0, 1), NcVerdict::Replay);
    assert_eq!(counts.check_and_record(0, 1, 1), NcVerdict::Fresh);
}

#[test]
fn a_nonce_overtaken_by_a_window_of_newer_ones_must_be_renewed() {
    let counts = NonceCounts::new(4);
    assert_eq!(counts.window(), 4);
    assert_eq!(counts.check_and_record(0, 1, 1), NcVerdict::Fresh);
    // Nonces 1..=4 issued since: nonce 4 shares nonce 0's slot.
    assert_eq!(counts.check_and_record(0, 2, 4), NcVerdict::Fresh);
    assert_eq!(counts.check_and_record(0, 3, 5), NcVerdict::Overtaken);
    assert_eq!(counts.check_and_record(4, 1, 5), NcVerdict::Fresh);
}

#[test]
fn a_reused_slot_never_lets_the_older_nonce_count_again() {
    let counts = NonceCounts::new(4);
    assert_eq!(counts.check_and_record(1, 5, 2), NcVerdict::Fresh);
    // Nonce 5 takes slot 1 over; a late answer to nonce 1 (even if `issued` read before nonce
    // 5 was issued) is refused, never recorded as new.
    assert_eq!(counts.check_and_record(5, 1, 6), NcVerdict::Fresh);
    assert_eq!(counts.check_and_record(1, 6, 5), NcVerdict::Overtaken);
    assert_eq!(counts.check_and_record(5, 1, 6), NcVerdict::Replay);
    assert_eq!(counts.check_and_record(5, 2, 6), NcVerdict::Fresh);
}

#[test]
fn the_window_is_a_power_of_two_of_at_least_one() {
    assert_eq!(NonceCounts::new(0).window(), 1);
    assert_eq!(NonceCounts::new(5).window(), 8);
    let one = NonceCounts::new(1);
    assert_eq!(one.check_and_record(0, 1, 1), NcVerdict::Fresh);
    assert_eq!(one.check_and_record(0, 2, 2), NcVerdict::Overtaken);
}

#[test]
fn a_registration_storm_never_refuses_the_latest_nonces() {
    // Far more nonces than slots, each answered once: every answer to a nonce within the window is
    // fresh (the bounded map this replaced refused all of them once full).
    let counts = NonceCounts::new(1024);
    for counter in 0..100_000u64 {
        assert_eq!(
            counts.check_and_record(counter, 1, counter + 1),
            NcVerdict::Fresh
        );
    }
}

#[test]
fn racing_shards_record_one_fresh_nc() {
    const NONCES: u64 = 2_000;
    const COUNTS: u32 = 4;
    let counts = NonceCounts::new(NONCES as usize);
    let barrier = Barrier::new(2);
    let verdicts: Vec<Vec<(u64, u32, NcVerdict)>> = std::thread::scope(|s| {
        let shards: Vec<_> = (0..2)
            .map(|_| {
                let (counts, barrier) = (&counts, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut seen = Vec::new();
                    for counter in 0..NONCES {
                        for nc in 1..=COUNTS {
                            let v = counts.check_and_record(counter, nc, NONCES);
                            seen.push((counter, nc, v));
                        }
                    }
                    seen
                })
            })
            .collect();
        shards.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut fresh: HashMap<(u64, u32), usize> = HashMap::new();
    for (counter, nc, verdict) in verdicts.into_iter().flatten() {
        assert!(matches!(verdict, NcVerdict::Fresh | NcVerdict::Replay));
        *fresh.entry((counter, nc)).or_default() += usize::from(verdict == NcVerdict::Fresh);
    }
    assert_eq!(fresh.len(), NONCES as usize * COUNTS as usize);
    assert!(
        fresh.values().all(|&n| n == 1),
        "exactly one Fresh per (nonce, nc)"
    );
}
