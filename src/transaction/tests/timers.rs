use super::*;
use crate::transaction::timers::{Timer, TimerTable};

#[test]
fn timer_config_defaults_match_rfc_3261_table_4() {
    let c = cfg();
    assert_eq!(
        (c.t1, c.t2, c.t4, c.d),
        (ms(500), secs(4), secs(5), secs(32))
    );
    assert_eq!(c.t1_x64(), secs(32));
}

#[test]
fn timer_config_zeroes_d_i_j_k_on_reliable_transports() {
    let c = cfg();
    assert_eq!(c.timer_d(true), Duration::ZERO);
    assert_eq!(c.timer_t4(true), Duration::ZERO);
    assert_eq!(c.timer_j(true), Duration::ZERO);
    assert_eq!(c.timer_d(false), secs(32));
    assert_eq!(c.timer_t4(false), secs(5));
    assert_eq!(c.timer_j(false), secs(32));
}

#[test]
fn timer_config_t1_scales_64_t1_timers() {
    let c = TimerConfig {
        t1: ms(100),
        ..cfg()
    };
    assert_eq!(c.t1_x64(), ms(6400));
    assert_eq!(c.timer_j(false), ms(6400));
}

#[test]
fn timer_table_next_is_earliest_armed_deadline() {
    let now = t0();
    let mut table = TimerTable::new([Timer::A, Timer::B, Timer::D]);
    assert_eq!(table.next(), None);
    table.arm(Timer::B, now + secs(32));
    table.arm(Timer::A, now + ms(500));
    assert_eq!(table.next(), Some(now + ms(500)));
    table.cancel(Timer::A);
    assert_eq!(table.next(), Some(now + secs(32)));
    table.clear();
    assert_eq!(table.next(), None);
}

#[test]
fn timer_table_expired_returns_earliest_due_timer_only() {
    let now = t0();
    let mut table = TimerTable::new([Timer::G, Timer::H]);
    table.arm(Timer::H, now + ms(10));
    table.arm(Timer::G, now + ms(20));
    assert_eq!(table.expired(now), None);
    assert_eq!(table.expired(now + ms(30)), Some(Timer::H));
    assert!(table.is_due(Timer::G, now + ms(20)));
    assert!(!table.is_due(Timer::G, now + ms(19)));
}
