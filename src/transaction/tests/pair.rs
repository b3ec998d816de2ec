//! End-to-end exchanges through the simulated link of `testing::Pair`.

use super::*;
use crate::transaction::invite_client::State as Ic;
use crate::transaction::invite_server::State as Is;
use crate::transaction::non_invite_client::State as Nc;
use crate::transaction::non_invite_server::State as Ns;
use crate::transaction::testing::Pair;
use crate::transaction::{ClientAction, ServerAction};

#[test]
fn pair_invite_rejected_over_lossless_udp_is_acked_once() {
    let mut p = Pair::new("INVITE", false, &[(ms(0), 100), (ms(10), 486)]);
    p.to_server.delay = ms(20);
    p.to_client.delay = ms(20);
    p.drive_until(p.start + secs(1));
    assert_eq!(p.to_user(), vec![100, 486]);
    assert_eq!(p.to_server.count(b"INVITE"), 1);
    assert_eq!(p.to_server.count(b"ACK"), 1);
    assert_eq!(p.invite_client_state(), Ic::Completed);
    assert_eq!(p.invite_server_state(), Some(Is::Confirmed));
    p.drive();
    // Server: Timer I (T4) after the ACK; client: Timer D (32 s) after the 486.
    assert_eq!(p.server_terminated_at(), Some(p.start + ms(70) + secs(5)));
    assert_eq!(p.client_terminated_at(), Some(p.start + ms(50) + secs(32)));
}

#[test]
fn pair_lost_invite_is_recovered_by_timer_a() {
    let mut p = Pair::new("INVITE", false, &[(ms(0), 180), (secs(2), 200)]);
    p.to_server.drop = vec![0, 1];
    p.drive();
    // Sent at 0 and 0.5 s (both lost), delivered at 1.5 s.
    assert_eq!(
        p.to_server.times(b"INVITE"),
        vec![p.start, p.start + ms(500), p.start + ms(1500)]
    );
    assert_eq!(p.to_user(), vec![180, 200]);
    assert!(p.client_did(&ClientAction::Terminated));
    assert!(p.server_did(&ServerAction::Terminated));
}

#[test]
fn pair_lost_final_is_retransmitted_by_timer_g_and_acked() {
    let mut p = Pair::new("INVITE", false, &[(ms(0), 100), (secs(1), 603)]);
    p.to_client.drop = vec![1]; // the first 603
    p.drive_until(p.start + secs(2));
    assert_eq!(
        p.to_client.times(b"603"),
        vec![p.start + secs(1), p.start + ms(1500)]
    );
    assert_eq!(p.to_user(), vec![100, 603]);
    assert_eq!(p.invite_server_state(), Some(Is::Confirmed));
    assert_eq!(p.to_server.count(b"INVITE"), 1, "the 100 stopped Timer A");
}

#[test]
fn pair_lost_ack_is_recovered_by_final_retransmission_and_reack() {
    let mut p = Pair::new("INVITE", false, &[(ms(0), 486)]);
    p.to_server.drop = vec![1]; // packet 0 is the INVITE, 1 the first ACK
    p.drive_until(p.start + secs(2));
    // Timer G resends the 486 at 0.5 s; the client, in Completed, ACKs again without the TU.
    assert_eq!(p.to_client.count(b"486"), 2);
    assert_eq!(p.to_server.count(b"ACK"), 2);
    assert_eq!(p.to_user(), vec![486]);
    assert_eq!(p.invite_server_state(), Some(Is::Confirmed));
}

#[test]
fn pair_lost_acks_until_timer_h_time_out_the_server() {
    let mut p = Pair::new("INVITE", false, &[(ms(0), 486)]);
    p.to_server.drop = (1..100).collect();
    p.drive();
    assert!(p.server_did(&ServerAction::TimedOut));
    assert_eq!(p.server_terminated_at(), Some(p.start + secs(32)));
    // Every 486 retransmission was ACKed by the client transaction, none reached the TU twice.
    assert_eq!(p.to_server.count(b"ACK"), p.to_client.count(b"486"));
    assert_eq!(p.to_user(), vec![486]);
}

#[test]
fn pair_invite_2xx_reaches_accepted_on_both_sides() {
    let mut p = Pair::new("INVITE", false, &[(ms(0), 100), (secs(3), 200)]);
    p.drive_until(p.start + secs(4));
    assert_eq!(p.invite_client_state(), Ic::Accepted);
    assert_eq!(p.invite_server_state(), Some(Is::Accepted));
    assert_eq!(p.to_server.count(b"ACK"), 0, "ACK for 2xx is the TU's job");
    p.drive();
    assert_eq!(
        p.client_terminated_at(),
        Some(p.start + secs(35)),
        "Timer M"
    );
    assert_eq!(
        p.server_terminated_at(),
        Some(p.start + secs(35)),
        "Timer L"
    );
}

#[test]
fn pair_invite_lost_every_time_times_out_at_64_t1() {
    let mut p = Pair::new("INVITE", false, &[]);
    p.to_server.drop = (0..100).collect();
    p.drive();
    assert_eq!(p.to_server.count(b"INVITE"), 7);
    assert!(p.client_did(&ClientAction::TimedOut));
    assert_eq!(p.client_terminated_at(), Some(p.start + secs(32)));
    assert!(p.invite_server_state().is_none());
}

#[test]
fn pair_invite_over_tcp_never_retransmits_and_ends_at_once() {
    let mut p = Pair::new("INVITE", true, &[(ms(0), 100), (secs(5), 480)]);
    p.to_server.delay = ms(5);
    p.to_client.delay = ms(5);
    p.drive();
    assert_eq!(p.to_server.count(b"INVITE"), 1);
    assert_eq!(p.to_client.count(b"480"), 1);
    assert_eq!(
        p.client_terminated_at(),
        Some(p.start + ms(5010)),
        "Timer D = 0"
    );
    assert_eq!(
        p.server_terminated_at(),
        Some(p.start + ms(5015)),
        "Timer I = 0"
    );
}

#[test]
fn pair_provisional_within_t1_suppresses_invite_retransmission() {
    let mut p = Pair::new(
        "INVITE",
        false,
        &[(ms(0), 100), (secs(1), 180), (secs(2), 486)],
    );
    p.to_server.delay = ms(100);
    p.to_client.delay = ms(100);
    p.drive();
    assert_eq!(p.to_user(), vec![100, 180, 486]);
    assert_eq!(p.to_server.count(b"INVITE"), 1);
}

#[test]
fn pair_non_invite_with_loss_completes_through_retransmissions() {
    let mut p = Pair::new("OPTIONS", false, &[(ms(0), 200)]);
    p.to_server.drop = vec![0];
    p.to_client.drop = vec![0];
    p.drive_until(p.start + secs(3));
    // OPTIONS at 0 lost, 0.5 s creates the server (200 lost), 1.5 s gets the 200 resent.
    assert_eq!(p.to_server.count(b"OPTIONS"), 3);
    assert_eq!(p.to_client.count(b"200"), 2);
    assert_eq!(p.to_user(), vec![200]);
    assert_eq!(p.non_invite_client_state(), Nc::Completed);
    assert_eq!(p.non_invite_server_state(), Some(Ns::Completed));
    p.drive();
    assert_eq!(
        p.client_terminated_at(),
        Some(p.start + ms(1500) + secs(5)),
        "Timer K = T4"
    );
    assert_eq!(
        p.server_terminated_at(),
        Some(p.start + ms(500) + secs(32)),
        "Timer J = 64*T1"
    );
}

#[test]
fn pair_non_invite_over_tcp_terminates_on_the_final() {
    let mut p = Pair::new("OPTIONS", true, &[(ms(30), 200)]);
    p.drive();
    assert_eq!(p.to_user(), vec![200]);
    assert_eq!(p.client_terminated_at(), Some(p.start + ms(30)));
    assert_eq!(p.server_terminated_at(), Some(p.start + ms(30)));
}

#[test]
fn pair_non_invite_slow_tu_gets_provisional_resent_on_retransmissions() {
    let mut p = Pair::new("OPTIONS", false, &[(ms(100), 100), (secs(6), 200)]);
    p.drive();
    // Each OPTIONS retransmission after the 100 got the 100 again.
    let retransmissions = p.to_server.count(b"OPTIONS") - 1;
    assert_eq!(p.to_client.count(b"100"), 1 + retransmissions);
    assert_eq!(p.to_user().last(), Some(&200));
    assert_eq!(p.to_user().iter().filter(|s| **s == 200).count(), 1);
}

#[test]
fn pair_non_invite_survives_random_loss() {
    let (mut completed, mut lossy) = (0, 0);
    for seed in 1..=20u64 {
        let mut p = Pair::new("OPTIONS", false, &[(ms(0), 200)]);
        p.to_server.loss_per_mille = 400;
        p.to_client.loss_per_mille = 400;
        p.to_server.seed = seed;
        p.to_client.seed = seed.wrapping_mul(7919);
        p.drive();
        let timed_out = p.client_did(&ClientAction::TimedOut);
        // Exactly one outcome reaches the TU: the 200 once, or the timeout.
        assert_eq!(p.to_user() == vec![200], !timed_out, "seed {seed}");
        assert!(p.to_user().len() <= 1, "seed {seed}");
        assert!(p.client_terminated_at().is_some(), "seed {seed}");
        completed += usize::from(!timed_out);
        lossy += usize::from(p.to_server.count(b"OPTIONS") > 1);
    }
    assert!(
        lossy >= 10,
        "the loss pattern must force retransmissions ({lossy})"
    );
    assert!(
        completed >= 18,
        "retransmissions recover from 40% loss ({completed}/20)"
    );
}
