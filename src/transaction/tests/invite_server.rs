use super::*;
use crate::transaction::invite_server::{InviteServer, State};
use crate::transaction::{ServerAction, ServerInput, Timer};

fn respond(m: &mut InviteServer, now: Instant, status: u16) -> Vec<ServerAction> {
    let mut out = Vec::new();
    m.handle(
        now,
        ServerInput::Respond {
            status,
            bytes: Bytes::from(status.to_string()),
        },
        &mut out,
    );
    out
}

fn input(m: &mut InviteServer, now: Instant, input: ServerInput) -> Vec<ServerAction> {
    let mut out = Vec::new();
    m.handle(now, input, &mut out);
    out
}

fn run_timers(m: &mut InviteServer, until: Instant) -> Vec<(Instant, ServerAction)> {
    let mut log = Vec::new();
    let mut out = Vec::new();
    while let Some(at) = m.poll_timeout().filter(|at| *at <= until) {
        m.handle_timeout(at, &mut out);
        log.extend(out.drain(..).map(|a| (at, a)));
    }
    log
}

fn tx(s: &str) -> ServerAction {
    ServerAction::Transmit(Bytes::from(s.to_owned()))
}

fn completed(now: Instant, reliable: bool) -> InviteServer {
    let mut m = InviteServer::new(reliable, &cfg());
    respond(&mut m, now, 100);
    assert_eq!(respond(&mut m, now, 486), vec![tx("486")]);
    m
}

#[test]
fn invite_server_starts_in_proceeding_without_sending() {
    let m = InviteServer::new(false, &cfg());
    assert_eq!(m.state(), State::Proceeding);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn invite_server_retransmission_before_any_response_is_absorbed() {
    let mut m = InviteServer::new(false, &cfg());
    assert!(input(&mut m, t0(), ServerInput::Request).is_empty());
}

#[test]
fn invite_server_proceeding_sends_tu_provisionals_and_resends_the_last_one() {
    let now = t0();
    let mut m = InviteServer::new(false, &cfg());
    assert_eq!(respond(&mut m, now, 100), vec![tx("100")]);
    assert_eq!(respond(&mut m, now, 180), vec![tx("180")]);
    assert_eq!(input(&mut m, now, ServerInput::Request), vec![tx("180")]);
    assert_eq!(m.state(), State::Proceeding);
    assert_eq!(m.poll_timeout(), None, "no timers while Proceeding");
}

#[test]
fn invite_server_non_2xx_enters_completed_with_timers_g_and_h() {
    let now = t0();
    let m = completed(now, false);
    assert_eq!(m.state(), State::Completed);
    assert_eq!(m.poll_timeout(), Some(now + ms(500)));
}

#[test]
fn invite_server_timer_g_doubles_up_to_t2_until_timer_h() {
    let now = t0();
    let mut m = completed(now, false);
    let log = run_timers(&mut m, now + secs(3600));
    let sends: Vec<Duration> = log
        .iter()
        .filter(|(_, a)| *a == tx("486"))
        .map(|(t, _)| *t - now)
        .collect();
    let expected: Vec<Duration> = [
        500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .map(ms)
    .to_vec();
    assert_eq!(sends, expected);
    assert_eq!(
        log[log.len() - 2..],
        [
            (now + secs(32), ServerAction::TimedOut),
            (now + secs(32), ServerAction::Terminated)
        ]
    );
}

#[test]
fn invite_server_timer_h_times_out_without_ack_on_reliable_transport() {
    let now = t0();
    let mut m = completed(now, true);
    assert_eq!(
        m.poll_timeout(),
        Some(now + secs(32)),
        "no Timer G on reliable transports"
    );
    let log = run_timers(&mut m, now + secs(3600));
    assert_eq!(
        log,
        vec![
            (now + secs(32), ServerAction::TimedOut),
            (now + secs(32), ServerAction::Terminated)
        ]
    );
}

#[test]
fn invite_server_completed_resends_final_on_invite_retransmission() {
    let now = t0();
    let mut m = completed(now, false);
    assert_eq!(
        input(&mut m, now + ms(100), ServerInput::Request),
        vec![tx("486")]
    );
    assert!(
        respond(&mut m, now, 200).is_empty(),
        "TU responses after the final are dropped"
    );
}

#[test]
fn invite_server_ack_confirms_and_arms_timer_i_t4() {
    let now = t0();
    let mut m = completed(now, false);
    assert_eq!(
        input(&mut m, now + secs(1), ServerInput::Ack),
        vec![ServerAction::Confirmed]
    );
    assert_eq!(m.state(), State::Confirmed);
    assert_eq!(m.poll_timeout(), Some(now + secs(6)));
    let log = run_timers(&mut m, now + secs(3600));
    assert_eq!(log, vec![(now + secs(6), ServerAction::Terminated)]);
}

#[test]
fn invite_server_confirmed_absorbs_acks_and_invites() {
    let now = t0();
    let mut m = completed(now, false);
    input(&mut m, now, ServerInput::Ack);
    assert!(input(&mut m, now, ServerInput::Ack).is_empty());
    assert!(input(&mut m, now, ServerInput::Request).is_empty());
    assert_eq!(m.state(), State::Confirmed);
}

#[test]
fn invite_server_timer_i_is_zero_on_reliable_transport() {
    let now = t0();
    let mut m = completed(now, true);
    assert_eq!(
        input(&mut m, now, ServerInput::Ack),
        vec![ServerAction::Confirmed, ServerAction::Terminated]
    );
}

#[test]
fn invite_server_2xx_enters_accepted_with_timer_l() {
    let now = t0();
    let mut m = InviteServer::new(false, &cfg());
    respond(&mut m, now, 180);
    assert_eq!(respond(&mut m, now + secs(2), 200), vec![tx("200")]);
    assert_eq!(m.state(), State::Accepted);
    assert_eq!(m.poll_timeout(), Some(now + secs(34)));
}

#[test]
fn invite_server_accepted_absorbs_invite_retransmissions() {
    let now = t0();
    let mut m = InviteServer::new(false, &cfg());
    respond(&mut m, now, 200);
    assert!(input(&mut m, now, ServerInput::Request).is_empty());
}

#[test]
fn invite_server_accepted_passes_tu_2xx_retransmissions_only() {
    let now = t0();
    let mut m = InviteServer::new(false, &cfg());
    respond(&mut m, now, 200);
    assert_eq!(respond(&mut m, now + ms(500), 200), vec![tx("200")]);
    assert!(respond(&mut m, now, 180).is_empty());
    assert!(respond(&mut m, now, 486).is_empty());
}

#[test]
fn invite_server_accepted_passes_ack_to_tu() {
    let now = t0();
    let mut m = InviteServer::new(false, &cfg());
    respond(&mut m, now, 200);
    assert_eq!(
        input(&mut m, now, ServerInput::Ack),
        vec![ServerAction::AckReceived]
    );
    assert_eq!(m.state(), State::Accepted);
}

#[test]
fn invite_server_timer_l_terminates_accepted() {
    let now = t0();
    let mut m = InviteServer::new(true, &cfg());
    respond(&mut m, now, 200);
    let log = run_timers(&mut m, now + secs(3600));
    assert_eq!(log, vec![(now + secs(32), ServerAction::Terminated)]);
}

#[test]
fn invite_server_ack_in_proceeding_is_ignored() {
    let now = t0();
    let mut m = InviteServer::new(false, &cfg());
    assert!(input(&mut m, now, ServerInput::Ack).is_empty());
    assert_eq!(m.state(), State::Proceeding);
}

#[test]
fn invite_server_transport_error_informs_tu_and_terminates() {
    let now = t0();
    for final_status in [None, Some(486u16), Some(200)] {
        let mut m = InviteServer::new(false, &cfg());
        if let Some(s) = final_status {
            respond(&mut m, now, s);
        }
        assert_eq!(
            input(&mut m, now, ServerInput::TransportError),
            vec![ServerAction::TransportError, ServerAction::Terminated]
        );
        assert_eq!(m.poll_timeout(), None);
    }
}

#[test]
fn invite_server_spurious_timer_inputs_are_ignored() {
    let now = t0();
    let mut m = completed(now, false);
    assert!(input(&mut m, now + ms(499), ServerInput::TimerFired(Timer::G)).is_empty());
    assert!(input(&mut m, now + secs(99), ServerInput::TimerFired(Timer::I)).is_empty());
    assert_eq!(
        input(&mut m, now + ms(500), ServerInput::TimerFired(Timer::G)),
        vec![tx("486")]
    );
}
