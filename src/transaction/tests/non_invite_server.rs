use super::*;
use crate::transaction::non_invite_server::{NonInviteServer, State};
use crate::transaction::{ServerAction, ServerInput};

fn respond(m: &mut NonInviteServer, now: Instant, status: u16) -> Vec<ServerAction> {
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

fn input(m: &mut NonInviteServer, now: Instant, input: ServerInput) -> Vec<ServerAction> {
    let mut out = Vec::new();
    m.handle(now, input, &mut out);
    out
}

fn tx(s: &str) -> ServerAction {
    ServerAction::Transmit(Bytes::from(s.to_owned()))
}

#[test]
fn non_invite_server_trying_absorbs_retransmissions_silently() {
    let now = t0();
    let mut m = NonInviteServer::new(false, &cfg());
    assert_eq!(m.state(), State::Trying);
    assert!(input(&mut m, now, ServerInput::Request).is_empty());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn non_invite_server_provisional_enters_proceeding_and_is_resent_on_retransmit() {
    let now = t0();
    let mut m = NonInviteServer::new(false, &cfg());
    assert_eq!(respond(&mut m, now, 100), vec![tx("100")]);
    assert_eq!(m.state(), State::Proceeding);
    assert_eq!(respond(&mut m, now, 180), vec![tx("180")]);
    assert_eq!(input(&mut m, now, ServerInput::Request), vec![tx("180")]);
}

#[test]
fn non_invite_server_final_from_trying_completes_with_timer_j() {
    let now = t0();
    let mut m = NonInviteServer::new(false, &cfg());
    assert_eq!(respond(&mut m, now, 200), vec![tx("200")]);
    assert_eq!(m.state(), State::Completed);
    assert_eq!(m.poll_timeout(), Some(now + secs(32)));
}

#[test]
fn non_invite_server_final_from_proceeding_completes() {
    let now = t0();
    let mut m = NonInviteServer::new(false, &cfg());
    respond(&mut m, now, 100);
    assert_eq!(respond(&mut m, now, 486), vec![tx("486")]);
    assert_eq!(m.state(), State::Completed);
}

#[test]
fn non_invite_server_completed_resends_final_on_retransmit() {
    let now = t0();
    let mut m = NonInviteServer::new(false, &cfg());
    respond(&mut m, now, 100);
    respond(&mut m, now, 200);
    assert_eq!(
        input(&mut m, now + secs(1), ServerInput::Request),
        vec![tx("200")]
    );
    assert_eq!(
        input(&mut m, now + secs(2), ServerInput::Request),
        vec![tx("200")]
    );
}

#[test]
fn non_invite_server_completed_discards_further_tu_responses() {
    let now = t0();
    let mut m = NonInviteServer::new(false, &cfg());
    respond(&mut m, now, 200);
    assert!(respond(&mut m, now, 500).is_empty());
    assert_eq!(input(&mut m, now, ServerInput::Request), vec![tx("200")]);
}

#[test]
fn non_invite_server_timer_j_is_64_t1_on_unreliable_transport() {
    let now = t0();
    let mut m = NonInviteServer::new(false, &cfg());
    respond(&mut m, now, 200);
    let mut out = Vec::new();
    m.handle_timeout(now + ms(31999), &mut out);
    assert!(out.is_empty());
    m.handle_timeout(now + secs(32), &mut out);
    assert_eq!(out, vec![ServerAction::Terminated]);
    assert!(m.is_terminated());
}

#[test]
fn non_invite_server_timer_j_is_zero_on_reliable_transport() {
    let now = t0();
    let mut m = NonInviteServer::new(true, &cfg());
    assert_eq!(
        respond(&mut m, now, 200),
        vec![tx("200"), ServerAction::Terminated]
    );
}

#[test]
fn non_invite_server_transport_error_informs_tu_in_proceeding_and_completed() {
    let now = t0();
    for status in [100u16, 200] {
        let mut m = NonInviteServer::new(false, &cfg());
        respond(&mut m, now, status);
        assert_eq!(
            input(&mut m, now, ServerInput::TransportError),
            vec![ServerAction::TransportError, ServerAction::Terminated]
        );
    }
}

#[test]
fn non_invite_server_ignores_ack() {
    let now = t0();
    let mut m = NonInviteServer::new(false, &cfg());
    respond(&mut m, now, 200);
    assert!(input(&mut m, now, ServerInput::Ack).is_empty());
    assert_eq!(m.state(), State::Completed);
}
