use super::*;
use crate::transaction::non_invite_client::{NonInviteClient, State};
use crate::transaction::{ClientAction, ClientInput};

type Out = Vec<ClientAction<Bytes>>;

fn start(now: Instant, reliable: bool) -> NonInviteClient {
    let mut out: Out = Vec::new();
    let m = NonInviteClient::start(now, b("OPTIONS"), reliable, &cfg(), &mut out);
    assert_eq!(out, vec![ClientAction::Transmit(b("OPTIONS"))]);
    m
}

fn respond(m: &mut NonInviteClient, now: Instant, status: u16) -> Out {
    let mut out = Vec::new();
    let response = Bytes::from(status.to_string());
    m.handle(now, ClientInput::Response { status, response }, &mut out);
    out
}

fn run_timers(m: &mut NonInviteClient, until: Instant) -> Vec<(Instant, ClientAction<Bytes>)> {
    let mut log = Vec::new();
    let mut out = Vec::new();
    while let Some(at) = m.poll_timeout().filter(|at| *at <= until) {
        m.handle_timeout(at, &mut out);
        log.extend(out.drain(..).map(|a| (at, a)));
    }
    log
}

fn send_offsets(log: &[(Instant, ClientAction<Bytes>)], base: Instant) -> Vec<Duration> {
    log.iter()
        .filter(|(_, a)| matches!(a, ClientAction::Transmit(_)))
        .map(|(t, _)| *t - base)
        .collect()
}

fn to_user(s: &str) -> ClientAction<Bytes> {
    ClientAction::ToUser(Bytes::from(s.to_owned()))
}

#[test]
fn non_invite_client_timer_e_doubles_up_to_t2_until_timer_f() {
    let now = t0();
    let mut m = start(now, false);
    let log = run_timers(&mut m, now + secs(3600));
    let expected: Vec<Duration> = [
        500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .map(ms)
    .to_vec();
    assert_eq!(send_offsets(&log, now), expected);
    assert_eq!(
        log[log.len() - 2..],
        [
            (now + secs(32), ClientAction::TimedOut),
            (now + secs(32), ClientAction::Terminated)
        ]
    );
}

#[test]
fn non_invite_client_reliable_has_no_timer_e() {
    let now = t0();
    let mut m = start(now, true);
    let log = run_timers(&mut m, now + secs(3600));
    assert!(send_offsets(&log, now).is_empty());
    assert_eq!(log[0], (now + secs(32), ClientAction::TimedOut));
}

#[test]
fn non_invite_client_provisional_enters_proceeding() {
    let now = t0();
    let mut m = start(now, false);
    assert_eq!(respond(&mut m, now + ms(100), 100), vec![to_user("100")]);
    assert_eq!(m.state(), State::Proceeding);
    assert_eq!(respond(&mut m, now + ms(200), 180), vec![to_user("180")]);
    assert_eq!(m.state(), State::Proceeding);
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2() {
    let now = t0();
    let mut m = start(now, false);
    respond(&mut m, now + ms(100), 100);
    let log = run_timers(&mut m, now + secs(3600));
    // E was armed at T1 in Trying; from then on it is reset to T2 each time (17.1.2.2).
    let expected: Vec<Duration> = [500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]
        .map(ms)
        .to_vec();
    assert_eq!(send_offsets(&log, now), expected);
    assert!(log.contains(&(now + secs(32), ClientAction::TimedOut)));
}

#[test]
fn non_invite_client_final_in_trying_completes_with_timer_k_t4() {
    let now = t0();
    let mut m = start(now, false);
    assert_eq!(respond(&mut m, now + ms(50), 200), vec![to_user("200")]);
    assert_eq!(m.state(), State::Completed);
    assert_eq!(m.poll_timeout(), Some(now + ms(50) + secs(5)));
    let log = run_timers(&mut m, now + secs(3600));
    assert_eq!(log, vec![(now + ms(5050), ClientAction::Terminated)]);
}

#[test]
fn non_invite_client_final_in_proceeding_completes() {
    let now = t0();
    let mut m = start(now, false);
    respond(&mut m, now, 100);
    assert_eq!(respond(&mut m, now + secs(1), 404), vec![to_user("404")]);
    assert_eq!(m.state(), State::Completed);
}

#[test]
fn non_invite_client_completed_absorbs_response_retransmissions() {
    let now = t0();
    let mut m = start(now, false);
    respond(&mut m, now, 200);
    assert!(respond(&mut m, now + ms(500), 200).is_empty());
    assert!(respond(&mut m, now + ms(600), 100).is_empty());
    assert_eq!(m.state(), State::Completed);
}

#[test]
fn non_invite_client_timer_k_is_zero_on_reliable_transport() {
    let now = t0();
    let mut m = start(now, true);
    assert_eq!(
        respond(&mut m, now, 200),
        vec![to_user("200"), ClientAction::Terminated]
    );
    assert!(m.is_terminated());
}

#[test]
fn non_invite_client_timer_f_fires_in_proceeding() {
    let now = t0();
    let mut m = start(now, true);
    respond(&mut m, now + secs(1), 100);
    let log = run_timers(&mut m, now + secs(3600));
    assert_eq!(
        log,
        vec![
            (now + secs(32), ClientAction::TimedOut),
            (now + secs(32), ClientAction::Terminated)
        ]
    );
}

#[test]
fn non_invite_client_transport_error_informs_tu_and_terminates() {
    let now = t0();
    for provisional in [false, true] {
        let mut m = start(now, false);
        if provisional {
            respond(&mut m, now, 100);
        }
        let mut out = Vec::new();
        m.handle(now, ClientInput::<Bytes>::TransportError, &mut out);
        assert_eq!(
            out,
            vec![ClientAction::TransportError, ClientAction::Terminated]
        );
        assert_eq!(m.poll_timeout(), None);
    }
}
