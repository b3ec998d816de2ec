use std::net::IpAddr;

use super::*;

const T0: u64 = 1_700_000_000;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn guard(per_ip: u32, per_extension: u32) -> Guard {
    Guard::new(GuardConfig {
        per_ip,
        per_extension,
        window_secs: 60,
        ban_secs: 600,
        max_entries: 1_000,
    })
}

#[test]
fn defaults_are_the_documented_thresholds() {
    let c = GuardConfig::default();
    assert_eq!(
        (c.per_ip, c.per_extension, c.window_secs, c.ban_secs),
        (10, 20, 60, 600)
    );
}

#[test]
fn source_is_banned_at_its_threshold() {
    let g = guard(3, 0);
    assert_eq!(g.record_failure(ip(1), "101", T0), None);
    assert_eq!(g.record_failure(ip(1), "102", T0 + 1), None);
    assert!(!g.is_banned(ip(1), T0 + 1));
    let ban = g.record_failure(ip(1), "103", T0 + 2).unwrap();
    assert_eq!(
        ban,
        Ban {
            ip: ip(1),
            until_unix: T0 + 2 + 600,
            reason: BanReason::SourceFailures
        }
    );
    assert!(g.is_banned(ip(1), T0 + 2));
    assert!(!g.is_banned(ip(2), T0 + 2));
    assert_eq!(g.bans(T0 + 2), vec![ban]);
}

#[test]
fn failures_in_different_windows_do_not_add_up() {
    let g = guard(3, 0);
    g.record_failure(ip(1), "101", T0);
    g.record_failure(ip(1), "101", T0 + 59);
    // The window opened at T0 is over at T0 + 60: the count restarts.
    assert_eq!(g.record_failure(ip(1), "101", T0 + 60), None);
    assert_eq!(g.record_failure(ip(1), "101", T0 + 61), None);
    assert!(g.record_failure(ip(1), "101", T0 + 62).is_some());
}

#[test]
fn ban_lapses_after_ban_secs_and_the_count_starts_over() {
    let g = guard(2, 0);
    g.record_failure(ip(1), "101", T0);
    let ban = g.record_failure(ip(1), "101", T0).unwrap();
    assert!(g.is_banned(ip(1), ban.until_unix - 1));
    assert!(!g.is_banned(ip(1), ban.until_unix));
    assert!(g.bans(ban.until_unix).is_empty());
    assert_eq!(g.record_failure(ip(1), "101", ban.until_unix), None);
}

#[test]
fn a_banned_source_is_not_counted_again() {
    let g = guard(1, 0);
    let ban = g.record_failure(ip(1), "101", T0).unwrap();
    assert_eq!(g.record_failure(ip(1), "101", T0 + 1), None);
    assert_eq!(g.bans(T0 + 1), vec![ban]);
}

#[test]
fn unban_lifts_a_ban_and_clears_the_count() {
    let g = guard(2, 0);
    g.record_failure(ip(1), "101", T0);
    g.record_failure(ip(1), "101", T0);
    assert!(g.unban(ip(1)));
    assert!(!g.is_banned(ip(1), T0));
    assert!(!g.unban(ip(1)));
    assert_eq!(g.record_failure(ip(1), "101", T0 + 1), None);
}

#[test]
fn extension_over_its_threshold_bans_each_failing_source_at_once() {
    let g = guard(0, 3);
    assert_eq!(g.record_failure(ip(1), "101", T0), None);
    assert_eq!(g.record_failure(ip(2), "101", T0), None);
    let ban = g.record_failure(ip(3), "101", T0).unwrap();
    assert_eq!(
        ban.reason,
        BanReason::ExtensionFailures {
            extension: "101".into()
        }
    );
    // Every later failure on it bans its source at its first try.
    assert!(g.record_failure(ip(4), "101", T0 + 1).is_some());
    assert!(g.is_banned(ip(4), T0 + 1));
    // Other extensions are unaffected; the earlier sources were not banned retroactively.
    assert_eq!(g.record_failure(ip(5), "102", T0 + 1), None);
    assert!(!g.is_banned(ip(1), T0 + 1));
}

#[test]
fn zero_thresholds_turn_the_rules_off() {
    let g = guard(0, 0);
    for i in 0..100 {
        assert_eq!(g.record_failure(ip(1), "101", T0 + i / 10), None);
    }
}

#[test]
fn success_forgets_that_pairs_failures() {
    let g = guard(3, 0);
    g.record_failure(ip(1), "101", T0);
    g.record_failure(ip(1), "101", T0);
    g.record_success(ip(1), "101");
    assert_eq!(g.record_failure(ip(1), "101", T0 + 1), None);
    assert_eq!(g.record_failure(ip(1), "101", T0 + 1), None);
    assert!(g.record_failure(ip(1), "101", T0 + 1).is_some());
}

#[test]
fn success_on_ones_own_extension_does_not_forgive_guesses_on_another() {
    let g = guard(3, 0);
    g.record_failure(ip(1), "102", T0);
    g.record_failure(ip(1), "102", T0);
    g.record_success(ip(1), "101");
    assert!(g.record_failure(ip(1), "102", T0 + 1).is_some());
}

#[test]
fn success_does_not_lift_a_ban() {
    let g = guard(1, 0);
    g.record_failure(ip(1), "101", T0);
    g.record_success(ip(1), "101");
    assert!(g.is_banned(ip(1), T0));
}

#[test]
fn bans_are_listed_soonest_to_end_first() {
    let g = guard(1, 0);
    g.record_failure(ip(2), "101", T0 + 5);
    g.record_failure(ip(1), "101", T0);
    let ips: Vec<IpAddr> = g.bans(T0 + 5).into_iter().map(|b| b.ip).collect();
    assert_eq!(ips, vec![ip(1), ip(2)]);
}

#[test]
fn tables_stay_within_max_entries() {
    let g = Guard::new(GuardConfig {
        per_ip: 1_000,
        per_extension: 1_000,
        max_entries: 10,
        ..GuardConfig::default()
    });
    for i in 0..=255u8 {
        g.record_failure(ip(i), &format!("ext{i}"), T0);
    }
    assert_eq!(g.by_ip.len(), 10);
    assert_eq!(g.by_extension.len(), 10);
    assert_eq!(g.by_pair.len(), 10);
    // A tracked source keeps counting; lapsed windows make room again.
    assert_eq!(g.by_ip.get(&ip(0)).map(|w| w.failures), Some(1));
    g.record_failure(ip(0), "ext0", T0);
    assert_eq!(g.by_ip.get(&ip(0)).map(|w| w.failures), Some(2));
    g.record_failure(ip(200), "ext200", T0 + 60);
    assert_eq!(g.by_ip.len(), 1);
    assert!(g.by_ip.contains_key(&ip(200)));
}

#[test]
fn full_ban_table_evicts_the_ban_ending_first() {
    let g = Guard::new(GuardConfig {
        per_ip: 1,
        max_entries: 2,
        ..GuardConfig::default()
    });
    g.record_failure(ip(1), "101", T0);
    g.record_failure(ip(2), "101", T0 + 1);
    // Counters lapse at T0 + 60, freeing room for ip(3)'s count; bans last longer.
    assert!(g.record_failure(ip(3), "101", T0 + 61).is_some());
    let ips: Vec<IpAddr> = g.bans(T0 + 61).into_iter().map(|b| b.ip).collect();
    assert_eq!(ips, vec![ip(2), ip(3)]);
}

#[test]
fn long_extension_names_are_cut_on_a_character_boundary() {
    let g = guard(0, 2);
    let long = "é".repeat(100);
    g.record_failure(ip(1), &long, T0);
    let ban = g.record_failure(ip(2), &format!("{long}x"), T0).unwrap();
    let BanReason::ExtensionFailures { extension } = ban.reason else {
        panic!("banned for the extension");
    };
    assert_eq!(extension.len(), 64);
}

#[test]
fn shards_racing_count_every_failure() {
    let g = guard(0, 0);
    std::thread::scope(|s| {
        for t in 0..2 {
            let g = &g;
            s.spawn(move || {
                for _ in 0..500 {
                    g.record_failure(ip(1), if t == 0 { "101" } else { "102" }, T0);
                }
            });
        }
    });
    assert_eq!(g.by_ip.get(&ip(1)).map(|w| w.failures), Some(1_000));
}
