use super::*;

fn account() -> Account {
    Account {
        username: "acct".into(),
        password: "pw".into(),
        uri: "sip:provider.example".into(),
        expires: Duration::from_secs(600),
        retry: Duration::from_secs(30),
    }
}

fn challenge(nonce: &str, stale: bool) -> ClientChallenge {
    ClientChallenge {
        realm: "provider.example".into(),
        nonce: nonce.into(),
        opaque: None,
        algorithm: crate::auth::Algorithm::Md5,
        qop_auth: true,
        stale,
    }
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        ..Reply::default()
    }
}

fn challenged(nonce: &str) -> Reply {
    Reply {
        challenge: Some(challenge(nonce, false)),
        ..reply(401)
    }
}

fn granted(secs: u32) -> Reply {
    Reply {
        granted_secs: Some(secs),
        ..reply(200)
    }
}

fn started() -> (Registration, Instant, Register) {
    let t0 = crate::test_clock::origin();
    let mut r = Registration::new(account(), t0);
    let first = r.due(t0, "c1").expect("first REGISTER due at once");
    (r, t0, first)
}

fn next_at(r: &Registration) -> Instant {
    r.view(crate::test_clock::origin())
        .next_attempt
        .expect("an attempt is scheduled")
}

#[test]
fn first_register_is_unauthenticated_and_asks_the_configured_lifetime() {
    let (mut r, t0, first) = started();
    assert_eq!(first.expires_secs, 600);
    assert_eq!(first.authorization, None);
    assert_eq!(r.due(t0, "c"), None, "one REGISTER in flight at a time");
    assert_eq!(r.view(t0).state, RegState::Idle);
}

#[test]
fn a_401_is_answered_at_once_with_the_nonce_and_nc() {
    let (mut r, t0, _) = started();
    r.on_response(t0, challenged("n1"));
    let second = r.due(t0, "c2").expect("answered at once");
    let auth = second.authorization.expect("authorization");
    assert!(
        auth.contains(r#"nonce="n1""#) && auth.contains("nc=00000001"),
        "{auth}"
    );
    assert!(!second.proxy);
    r.on_response(t0, granted(600));
    assert!(r.is_registered(t0));
    assert_eq!(r.view(t0).state, RegState::Registered);
}

#[test]
fn a_407_answer_goes_in_proxy_authorization() {
    let (mut r, t0, _) = started();
    r.on_response(
        t0,
        Reply {
            challenge: Some(challenge("n1", false)),
            ..reply(407)
        },
    );
    assert!(r.due(t0, "c2").is_some_and(|reg| reg.proxy));
}

#[test]
fn a_second_401_for_the_answered_nonce_is_a_failure_not_a_loop() {
    let (mut r, t0, _) = started();
    r.on_response(t0, challenged("n1"));
    r.due(t0, "c2").expect("answer");
    r.on_response(t0, challenged("n1"));
    let v = r.view(t0);
    assert_eq!(v.state, RegState::Failing);
    assert_eq!(v.failure, Some(Failure::CredentialsRefused));
    assert_eq!(v.last_status, Some(401));
    assert_eq!(v.next_attempt, Some(t0 + Duration::from_secs(30)));
    assert_eq!(r.due(t0, "c3"), None, "no retry before the backoff");
    let retry = r.due(t0 + Duration::from_secs(30), "c4").expect("retry");
    assert_eq!(
        retry.authorization, None,
        "a fresh exchange after a refusal"
    );
}

#[test]
fn a_stale_nonce_is_answered_again() {
    let (mut r, t0, _) = started();
    r.on_response(t0, challenged("n1"));
    r.due(t0, "c2").expect("answer");
    r.on_response(
        t0,
        Reply {
            challenge: Some(challenge("n1", true)),
            ..reply(401)
        },
    );
    assert!(r
        .due(t0, "c3")
        .is_some_and(|reg| reg.authorization.is_some()));
}

#[test]
fn new_nonces_forever_end_as_a_failure() {
    let (mut r, t0, _) = started();
    for n in 0..MAX_CHALLENGES {
        r.on_response(t0, challenged(&format!("n{n}")));
        assert!(r.due(t0, "c").is_some(), "challenge {n} answered");
    }
    r.on_response(t0, challenged("another"));
    assert_eq!(r.view(t0).failure, Some(Failure::CredentialsRefused));
}

#[test]
fn refresh_at_half_the_granted_lifetime_with_the_next_nc() {
    let (mut r, t0, _) = started();
    r.on_response(t0, challenged("n1"));
    r.due(t0, "c2").expect("answer");
    r.on_response(t0, granted(120));
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    assert_eq!(r.due(t0 + Duration::from_secs(59), "c"), None);
    let refresh = r.due(t0 + Duration::from_secs(60), "c3").expect("refresh");
    assert_eq!(
        refresh.expires_secs, 600,
        "asks the configured lifetime again"
    );
    let auth = refresh
        .authorization
        .expect("the known challenge is reused");
    assert!(auth.contains("nc=00000002"), "{auth}");
}

#[test]
fn a_tiny_grant_never_refreshes_sooner_than_the_floor() {
    let (mut r, t0, _) = started();
    r.on_response(t0, granted(1));
    assert_eq!(next_at(&r), t0 + MIN_REFRESH);
}

#[test]
fn no_granted_lifetime_means_the_one_asked() {
    let (mut r, t0, _) = started();
    r.on_response(t0, reply(200));
    assert_eq!(next_at(&r), t0 + Duration::from_secs(300));
}

#[test]
fn a_zero_grant_is_a_failure() {
    let (mut r, t0, _) = started();
    r.on_response(t0, granted(0));
    assert_eq!(r.view(t0).failure, Some(Failure::NothingGranted));
    assert!(!r.is_registered(t0));
}

#[test]
fn the_binding_lapses_at_its_expiry_and_poll_timeout_says_when() {
    let (mut r, t0, _) = started();
    r.on_response(t0, granted(10));
    let refresh = t0 + Duration::from_secs(5);
    r.due(refresh, "c").expect("refresh");
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    r.on_timeout(refresh + Duration::from_secs(4));
    assert!(r.is_registered(t0 + Duration::from_secs(9)), "still bound");
    assert_eq!(
        r.view(t0 + Duration::from_secs(9)).state,
        RegState::Registered
    );
    let later = t0 + Duration::from_secs(10);
    assert_eq!(r.view(later).state, RegState::Failing);
    r.handle_timeout(later);
    assert!(
        r.poll_timeout().is_some_and(|at| at > later),
        "the lapsed binding is no deadline any more"
    );
}

#[test]
fn forbidden_backs_off_doubling_up_to_thirty_minutes() {
    let (mut r, mut now, _) = started();
    let mut delays = Vec::new();
    for _ in 0..9 {
        r.on_response(now, reply(403));
        let at = next_at(&r);
        delays.push((at - now).as_secs());
        now = at;
        r.due(now, "c").expect("retry when due");
    }
    assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    assert_eq!(r.view(now).last_status, Some(403));
}

#[test]
fn timeouts_back_off_up_to_five_minutes_and_success_resets() {
    let (mut r, mut now, _) = started();
    let mut delays = Vec::new();
    for _ in 0..6 {
        r.on_timeout(now);
        let at = next_at(&r);
        delays.push((at - now).as_secs());
        now = at;
        r.due(now, "c").expect("retry");
    }
    assert_eq!(delays, [30, 60, 120, 240, 300, 300]);
    assert_eq!(r.view(now).failure, Some(Failure::Timeout));
    r.on_response(now, granted(600));
    r.due(now + Duration::from_secs(300), "c").expect("refresh");
    r.on_response(now, reply(500));
    assert_eq!(
        next_at(&r) - now,
        Duration::from_secs(30),
        "backoff starts over"
    );
}

#[test]
fn retry_after_replaces_the_computed_delay() {
    for status in [503, 500, 480] {
        let (mut r, t0, _) = started();
        r.on_response(
            t0,
            Reply {
                retry_after_secs: Some(7),
                ..reply(status)
            },
        );
        assert_eq!(next_at(&r), t0 + Duration::from_secs(7), "{status}");
    }
}

#[test]
fn interval_too_brief_retries_at_once_with_min_expires() {
    let (mut r, t0, _) = started();
    r.on_response(
        t0,
        Reply {
            min_expires_secs: Some(3600),
            ..reply(423)
        },
    );
    assert_eq!(r.due(t0, "c").map(|reg| reg.expires_secs), Some(3600));
    // A Min-Expires no larger than what was asked cannot help.
    r.on_response(
        t0,
        Reply {
            min_expires_secs: Some(3600),
            ..reply(423)
        },
    );
    assert_eq!(r.view(t0).failure, Some(Failure::IntervalTooBrief));
}

#[test]
fn a_challenge_without_usable_digest_is_a_failure() {
    let (mut r, t0, _) = started();
    r.on_response(t0, reply(401));
    assert_eq!(r.view(t0).failure, Some(Failure::NoUsableChallenge));
}

#[test]
fn provisional_and_stray_responses_change_nothing() {
    let (mut r, t0, _) = started();
    r.on_response(t0, reply(100));
    assert_eq!(r.due(t0, "c"), None, "still in flight");
    r.on_response(t0, granted(600));
    let before = r.view(t0);
    r.on_response(t0, reply(403));
    r.on_timeout(t0);
    assert_eq!(r.view(t0), before, "nothing in flight: ignored");
}

#[test]
fn stop_unregisters_a_bound_account_with_expires_zero() {
    let (mut r, t0, _) = started();
    r.on_response(t0, granted(600));
    r.stop(t0);
    let unregister = r.due(t0, "c").expect("unregister at once");
    assert_eq!(unregister.expires_secs, 0);
    r.on_response(t0, reply(200));
    assert!(r.is_stopped() && !r.is_registered(t0));
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn stop_while_in_flight_unregisters_after_the_answer() {
    let (mut r, t0, _) = started();
    r.stop(t0);
    assert!(!r.is_stopped());
    r.on_response(t0, granted(600));
    assert_eq!(r.due(t0, "c").map(|reg| reg.expires_secs), Some(0));
    r.on_timeout(t0);
    assert!(r.is_stopped(), "unregistering is best effort");
}

#[test]
fn stop_of_an_unbound_account_sends_nothing() {
    let (mut r, t0, _) = started();
    r.on_response(t0, reply(403));
    r.stop(t0);
    assert!(r.is_stopped());
    assert_eq!(r.due(t0 + Duration::from_secs(3600), "c"), None);
    assert_eq!(r.view(t0).state, RegState::Idle);
}

fn response(text: &str) -> Response {
    let bytes = bytes::Bytes::from(text.replace('\n', "\r\n"));
    match crate::sip::parse_datagram(bytes) {
        Ok(crate::sip::Message::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

const HEAD: &str = "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcgt-1\nFrom: <sip:acct@p>;tag=a\nTo: <sip:acct@p>;tag=b\nCall-ID: x\nCSeq: 1 REGISTER\n";

#[test]
fn reply_reads_our_contact_lifetime_among_the_bindings() {
    let r = response(&format!(
        "SIP/2.0 200 OK\n{HEAD}Contact: <sip:acct@10.9.9.9:5060>;expires=3000\nContact: <sip:acct@10.0.0.1:5060>;expires=120\nExpires: 900\nContent-Length: 0\n\n"
    ));
    assert_eq!(
        Reply::from_response(&r, "10.0.0.1:5060").granted_secs,
        Some(120)
    );
    let r = response(&format!(
        "SIP/2.0 200 OK\n{HEAD}Expires: 900\nContent-Length: 0\n\n"
    ));
    assert_eq!(
        Reply::from_response(&r, "10.0.0.1:5060").granted_secs,
        Some(900)
    );
}

#[test]
fn reply_reads_challenge_min_expires_and_retry_after() {
    let r = response(&format!(
        "SIP/2.0 401 Unauthorized\n{HEAD}WWW-Authenticate: Digest realm=\"p\", nonce=\"abc\", qop=\"auth\"\nContent-Length: 0\n\n"
    ));
    let reply = Reply::from_response(&r, "h");
    assert_eq!(reply.challenge.map(|c| c.nonce), Some("abc".into()));
    let r = response(&format!(
        "SIP/2.0 423 Interval Too Brief\n{HEAD}Min-Expires: 1800\nContent-Length: 0\n\n"
    ));
    assert_eq!(Reply::from_response(&r, "h").min_expires_secs, Some(1800));
    let r = response(&format!(
        "SIP/2.0 503 Service Unavailable\n{HEAD}Retry-After: 120 (maintenance)\nContent-Length: 0\n\n"
    ));
    assert_eq!(Reply::from_response(&r, "h").retry_after_secs, Some(120));
}
