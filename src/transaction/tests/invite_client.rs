use super::*;
use crate::transaction::invite_client::{InviteClient, State};
use crate::transaction::{ClientAction, ClientInput, Timer};

type Out = Vec<ClientAction<Bytes>>;

fn start(now: Instant, reliable: bool) -> (InviteClient, Out) {
    let mut out = Vec::new();
    let m = InviteClient::start(now, b("INVITE"), reliable, &cfg(), &mut out);
    (m, out)
}

fn respond(m: &mut InviteClient, now: Instant, status: u16) -> Out {
    let mut out = Vec::new();
    let response = Bytes::from(status.to_string());
    m.handle(now, ClientInput::Response { status, response }, &mut out);
    out
}

/// Fires timers in deadline order up to `until`; returns (time, action) pairs.
fn run_timers(m: &mut InviteClient, until: Instant) -> Vec<(Instant, ClientAction<Bytes>)> {
    let mut log = Vec::new();
    let mut out = Vec::new();
    while let Some(at) = m.poll_timeout().filter(|at| *at <= until) {
        m.handle_timeout(at, &mut out);
        log.extend(out.drain(..).map(|a| (at, a)));
    }
    log
}

fn ack(s: &str) -> ClientAction<Bytes> {
    ClientAction::SendAck(Bytes::from(s.to_owned()))
}

fn to_user(s: &str) -> ClientAction<Bytes> {
    ClientAction::ToUser(Bytes::from(s.to_owned()))
}

#[test]
fn invite_client_start_transmits_and_arms_timers_a_and_b() {
    let now = t0();
    let (m, out) = start(now, false);
    assert_eq!(out, vec![ClientAction::Transmit(b("INVITE"))]);
    assert_eq!(m.state(), State::Calling);
    assert_eq!(m.poll_timeout(), Some(now + ms(500)));
}

#[test]
fn invite_client_retransmits_until_timer_b() {
    let now = t0();
    let (mut m, _) = start(now, false);
    let log = run_timers(&mut m, now + secs(3600));
    let sends: Vec<Duration> = log
        .iter()
        .filter(|(_, a)| matches!(a, ClientAction::Transmit(_)))
        .map(|(t, _)| *t - now)
        .collect();
    // Timer A: T1, 2T1, 4T1, ... with no T2 cap (17.1.1.2).
    assert_eq!(
        sends,
        vec![ms(500), ms(1500), ms(3500), ms(7500), ms(15500), ms(31500)]
    );
    let tail: Vec<_> = log.iter().skip(sends.len()).cloned().collect();
    assert_eq!(
        tail,
        vec![
            (now + secs(32), ClientAction::TimedOut),
            (now + secs(32), ClientAction::Terminated)
        ]
    );
    assert!(m.is_terminated());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn invite_client_reliable_arms_no_timer_a() {
    let now = t0();
    let (mut m, _) = start(now, true);
    assert_eq!(m.poll_timeout(), Some(now + secs(32)));
    let log = run_timers(&mut m, now + secs(3600));
    assert!(!log
        .iter()
        .any(|(_, a)| matches!(a, ClientAction::Transmit(_))));
    assert_eq!(log[0], (now + secs(32), ClientAction::TimedOut));
}

#[test]
fn invite_client_provisional_enters_proceeding_and_stops_timers_a_b() {
    let now = t0();
    let (mut m, _) = start(now, false);
    let out = respond(&mut m, now + ms(100), 100);
    assert_eq!(out, vec![to_user("100")]);
    assert_eq!(m.state(), State::Proceeding);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn invite_client_proceeding_passes_further_provisionals_to_tu() {
    let now = t0();
    let (mut m, _) = start(now, false);
    respond(&mut m, now, 100);
    assert_eq!(respond(&mut m, now + secs(1), 180), vec![to_user("180")]);
    assert_eq!(respond(&mut m, now + secs(2), 183), vec![to_user("183")]);
    assert_eq!(m.state(), State::Proceeding);
}

#[test]
fn invite_client_2xx_in_calling_enters_accepted_with_timer_m() {
    let now = t0();
    let (mut m, _) = start(now, false);
    let out = respond(&mut m, now + ms(200), 200);
    assert_eq!(out, vec![to_user("200")]);
    assert_eq!(m.state(), State::Accepted);
    assert_eq!(m.poll_timeout(), Some(now + ms(200) + secs(32)));
}

#[test]
fn invite_client_2xx_in_proceeding_enters_accepted_without_acking() {
    let now = t0();
    let (mut m, _) = start(now, true);
    respond(&mut m, now, 180);
    let out = respond(&mut m, now + secs(5), 200);
    assert_eq!(out, vec![to_user("200")]);
    assert_eq!(m.state(), State::Accepted);
}

#[test]
fn invite_client_accepted_passes_every_2xx_to_tu() {
    let now = t0();
    let (mut m, _) = start(now, false);
    respond(&mut m, now, 200);
    // A retransmission and a second fork's 2xx both reach the TU, which ACKs them (13.2.2.4).
    assert_eq!(respond(&mut m, now + secs(1), 200), vec![to_user("200")]);
    assert_eq!(respond(&mut m, now + secs(2), 202), vec![to_user("202")]);
    assert_eq!(m.state(), State::Accepted);
}

#[test]
fn invite_client_accepted_ignores_provisionals_and_non_2xx() {
    let now = t0();
    let (mut m, _) = start(now, false);
    respond(&mut m, now, 200);
    assert!(respond(&mut m, now, 180).is_empty());
    assert!(respond(&mut m, now, 486).is_empty());
    assert_eq!(m.state(), State::Accepted);
}

#[test]
fn invite_client_timer_m_terminates_accepted() {
    let now = t0();
    let (mut m, _) = start(now, false);
    respond(&mut m, now, 200);
    let log = run_timers(&mut m, now + secs(3600));
    assert_eq!(log, vec![(now + secs(32), ClientAction::Terminated)]);
}

#[test]
fn invite_client_non_2xx_in_calling_acks_and_enters_completed() {
    let now = t0();
    let (mut m, _) = start(now, false);
    let out = respond(&mut m, now + ms(300), 486);
    assert_eq!(out, vec![ack("486"), to_user("486")]);
    assert_eq!(m.state(), State::Completed);
    assert_eq!(m.poll_timeout(), Some(now + ms(300) + secs(32)));
}

#[test]
fn invite_client_non_2xx_in_proceeding_acks_and_enters_completed() {
    let now = t0();
    let (mut m, _) = start(now, false);
    respond(&mut m, now, 180);
    let out = respond(&mut m, now + secs(3), 603);
    assert_eq!(out, vec![ack("603"), to_user("603")]);
    assert_eq!(m.state(), State::Completed);
}

#[test]
fn invite_client_completed_reacks_retransmitted_final_without_tu() {
    let now = t0();
    let (mut m, _) = start(now, false);
    respond(&mut m, now, 404);
    assert_eq!(respond(&mut m, now + ms(500), 404), vec![ack("404")]);
    assert_eq!(respond(&mut m, now + ms(1500), 404), vec![ack("404")]);
    // Provisionals and 2xx are not part of this transaction any more.
    assert!(respond(&mut m, now + ms(1600), 180).is_empty());
    assert!(respond(&mut m, now + ms(1700), 200).is_empty());
    assert_eq!(m.state(), State::Completed);
}

#[test]
fn invite_client_timer_d_is_32s_on_unreliable_transport() {
    let now = t0();
    let (mut m, _) = start(now, false);
    respond(&mut m, now, 500);
    let log = run_timers(&mut m, now + secs(3600));
    assert_eq!(log, vec![(now + secs(32), ClientAction::Terminated)]);
}

#[test]
fn invite_client_timer_d_is_zero_on_reliable_transport() {
    let now = t0();
    let (mut m, _) = start(now, true);
    let out = respond(&mut m, now, 500);
    assert_eq!(
        out,
        vec![ack("500"), to_user("500"), ClientAction::Terminated]
    );
    assert!(m.is_terminated());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn invite_client_timer_d_follows_configured_value() {
    let now = t0();
    let mut out = Vec::new();
    let c = TimerConfig {
        d: secs(40),
        ..cfg()
    };
    let mut m = InviteClient::start(now, b("INVITE"), false, &c, &mut out);
    m.handle(
        now,
        ClientInput::Response {
            status: 480,
            response: b("480"),
        },
        &mut out,
    );
    assert_eq!(m.poll_timeout(), Some(now + secs(40)));
}

#[test]
fn invite_client_transport_error_informs_tu_and_terminates_in_every_live_state() {
    let now = t0();
    for setup in [None, Some(180u16), Some(486), Some(200)] {
        let (mut m, _) = start(now, false);
        if let Some(status) = setup {
            respond(&mut m, now, status);
        }
        let mut out = Vec::new();
        m.handle(now, ClientInput::<Bytes>::TransportError, &mut out);
        assert_eq!(
            out,
            vec![ClientAction::TransportError, ClientAction::Terminated],
            "{setup:?}"
        );
        assert!(m.is_terminated());
        m.handle(now, ClientInput::<Bytes>::TransportError, &mut out);
        assert_eq!(out.len(), 2, "a second error after Terminated is ignored");
    }
}

#[test]
fn invite_client_spurious_timer_inputs_are_ignored() {
    let now = t0();
    let (mut m, _) = start(now, false);
    let mut out: Out = Vec::new();
    m.handle(now + ms(100), ClientInput::TimerFired(Timer::A), &mut out);
    m.handle(now + secs(100), ClientInput::TimerFired(Timer::D), &mut out);
    m.handle_timeout(now + ms(499), &mut out);
    assert!(out.is_empty());
    assert_eq!(m.state(), State::Calling);
    m.handle(now + ms(500), ClientInput::TimerFired(Timer::A), &mut out);
    assert_eq!(out, vec![ClientAction::Transmit(b("INVITE"))]);
}

#[test]
fn invite_client_ignores_status_codes_outside_100_699() {
    let now = t0();
    let (mut m, _) = start(now, false);
    assert!(respond(&mut m, now, 99).is_empty());
    assert!(respond(&mut m, now, 700).is_empty());
    assert_eq!(m.state(), State::Calling);
}

#[test]
fn invite_client_late_wakeup_fires_timers_in_deadline_order() {
    let now = t0();
    let (mut m, _) = start(now, false);
    let mut out: Out = Vec::new();
    // A driver that oversleeps to past Timer B sees one retransmission then the timeout.
    m.handle_timeout(now + secs(40), &mut out);
    assert_eq!(
        out,
        vec![
            ClientAction::Transmit(b("INVITE")),
            ClientAction::TimedOut,
            ClientAction::Terminated
        ]
    );
}
