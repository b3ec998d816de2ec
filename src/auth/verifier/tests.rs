use super::*;
use crate::auth::{Guard, GuardConfig};
use crate::config::model::Credentials;

const REALM: &str = "acme.example";
const T0: u64 = 1_700_000_000;

/// A daemon's worth of state: nonce key, shared nonce-count table.
struct Fixture {
    key: NonceKey,
    nonces: NonceCounts,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            key: NonceKey::new([42; 32]),
            nonces: NonceCounts::new(100),
        }
    }

    fn at(&self, secs_after_t0: u64) -> u64 {
        T0 + secs_after_t0
    }

    fn authenticate(&self, header: &str, secs_after_t0: u64) -> AuthOutcome {
        let now_unix = self.at(secs_after_t0);
        authenticate(
            std::iter::once(header),
            "REGISTER",
            REALM,
            secrets,
            &self.key,
            &self.nonces,
            now_unix,
        )
    }
}

/// The config's credentials: 101 by password, 102 by MD5 HA1 (of 102:acme.example:pw102), 103 by
/// SHA-256 HA1 only (pw103), 104 by both (pw104), picked per answer as the engine does.
fn secrets(username: &str, algorithm: Algorithm) -> Option<Secret<'static>> {
    use std::sync::OnceLock;
    static CONFIG: OnceLock<Vec<(&str, Credentials)>> = OnceLock::new();
    let hashed = |md5: Option<&str>, sha256: Option<&str>| Credentials::Ha1 {
        md5: md5.map(str::to_owned),
        sha256: sha256.map(str::to_owned),
    };
    let config = CONFIG.get_or_init(|| {
        vec![
            ("101", Credentials::Password("s3cret".into())),
            (
                "102",
                hashed(Some("95e12176aff93fec99e07cf7ddec76dd"), None),
            ),
            (
                "103",
                hashed(
                    None,
                    Some("55083716712106c4828c816d7ad04eb053c5bd74c2253fcdd5ceee75f3d8e2fa"),
                ),
            ),
            (
                "104",
                hashed(
                    Some("9a342d5e466c19cfbd0c9a267ebc1328"),
                    Some("5bea69590979987ccf3dbe4b6713ea3cf0561da24b93b9536105ff11e32c0ab5"),
                ),
            ),
        ]
    });
    let (_, creds) = config.iter().find(|(n, _)| *n == username)?;
    Secret::for_algorithm(creds, algorithm)
}

/// What a phone knowing `password` answers for `nonce` (qop=auth with `nc`, or RFC 2069 when
/// `nc` is `None`).
fn answer(
    username: &str,
    password: &str,
    nonce: &str,
    nc: Option<u32>,
    algorithm: Algorithm,
) -> String {
    let uri = "sip:acme.example";
    let head = format!(
        r#"Digest username="{username}", realm="{REALM}", nonce="{nonce}", uri="{uri}", algorithm={}"#,
        algorithm.token()
    );
    let stub = match nc {
        Some(nc) => format!(
            r#"{head}, qop=auth, nc={nc:08x}, cnonce="c0ffee", response="00000000000000000000000000000000""#
        ),
        None => format!(r#"{head}, response="00000000000000000000000000000000""#),
    };
    // The response comes from the verifier's own arithmetic, which the RFC vectors of the digest
    // tests pin down; here only the outcome logic is under test.
    let creds = parse_credentials(&stub).unwrap();
    let response = crate::auth::digest::client_response(&creds, "REGISTER", password);
    stub.replace("00000000000000000000000000000000", &response)
}

#[test]
fn right_answer_authenticates() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let header = answer("101", "s3cret", &nonce, Some(1), Algorithm::Md5);
    assert_eq!(
        f.authenticate(&header, 1),
        AuthOutcome::Authenticated {
            username: "101".into()
        }
    );
    // Recorded: the same answer again is a replay (challenged with stale=true: it verified).
    assert_eq!(
        f.authenticate(&header, 2),
        AuthOutcome::Challenge { stale: true }
    );
}

#[test]
fn sha256_answer_authenticates_a_password_extension() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let header = answer("101", "s3cret", &nonce, Some(1), Algorithm::Sha256);
    assert!(matches!(
        f.authenticate(&header, 1),
        AuthOutcome::Authenticated { .. }
    ));
}

#[test]
fn no_credentials_or_other_realm_or_garbage_is_a_plain_challenge() {
    let f = Fixture::new();
    let now_unix = f.at(0);
    let none = authenticate(
        std::iter::empty(),
        "REGISTER",
        REALM,
        secrets,
        &f.key,
        &f.nonces,
        now_unix,
    );
    assert_eq!(none, AuthOutcome::Challenge { stale: false });
    let nonce = f.key.issue(T0);
    let other =
        answer("101", "s3cret", &nonce, Some(1), Algorithm::Md5).replace(REALM, "other.example");
    assert_eq!(
        f.authenticate(&other, 1),
        AuthOutcome::Challenge { stale: false }
    );
    assert_eq!(
        f.authenticate("Digest username=", 1),
        AuthOutcome::Challenge { stale: false }
    );
}

#[test]
fn credentials_for_our_realm_are_found_among_several_headers() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let ours = answer("101", "s3cret", &nonce, Some(1), Algorithm::Md5);
    let theirs = ours.replace(REALM, "carrier.example");
    let now_unix = f.at(1);
    let outcome = authenticate(
        ["garbage", theirs.as_str(), ours.as_str()].into_iter(),
        "REGISTER",
        REALM,
        secrets,
        &f.key,
        &f.nonces,
        now_unix,
    );
    assert!(matches!(outcome, AuthOutcome::Authenticated { .. }));
}

#[test]
fn forged_nonce_is_a_challenge_not_a_failure() {
    let f = Fixture::new();
    let forged = NonceKey::new([1; 32]).issue(T0);
    let header = answer("101", "s3cret", &forged, Some(1), Algorithm::Md5);
    assert_eq!(
        f.authenticate(&header, 1),
        AuthOutcome::Challenge { stale: false }
    );
}

#[test]
fn stale_nonce_is_a_stale_challenge_and_never_counts() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let lapsed = crate::auth::NONCE_LIFETIME_SECS;
    let right = answer("101", "s3cret", &nonce, Some(1), Algorithm::Md5);
    let wrong = answer("101", "guess", &nonce, Some(1), Algorithm::Md5);
    assert_eq!(
        f.authenticate(&right, lapsed),
        AuthOutcome::Challenge { stale: true }
    );
    // A guess against a stale nonce gets the same answer, so it learns nothing, and a guard fed
    // only Failed { counts: true } never sees it.
    let guard = Guard::new(GuardConfig {
        per_ip: 1,
        ..GuardConfig::default()
    });
    for _ in 0..5 {
        let outcome = f.authenticate(&wrong, lapsed + 1);
        assert_eq!(outcome, AuthOutcome::Challenge { stale: true });
        if let AuthOutcome::Failed {
            username,
            counts: true,
        } = outcome
        {
            guard.record_failure("192.0.2.1".parse().unwrap(), &username, T0);
        }
    }
    assert!(guard.bans(T0).is_empty());
}

#[test]
fn wrong_password_fails_and_counts() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let header = answer("101", "guess", &nonce, Some(1), Algorithm::Md5);
    assert_eq!(
        f.authenticate(&header, 1),
        AuthOutcome::Failed {
            username: "101".into(),
            counts: true
        }
    );
}

#[test]
fn unknown_username_fails_and_counts_like_a_wrong_password() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let header = answer("999", "s3cret", &nonce, Some(1), Algorithm::Md5);
    assert_eq!(
        f.authenticate(&header, 1),
        AuthOutcome::Failed {
            username: "999".into(),
            counts: true
        }
    );
    // Even an answer right for the dummy secret is refused.
    let dummy = answer(
        "999",
        "callgate: no such user",
        &nonce,
        Some(2),
        Algorithm::Md5,
    );
    assert!(matches!(
        f.authenticate(&dummy, 1),
        AuthOutcome::Failed { counts: true, .. }
    ));
}

#[test]
fn a_failed_answer_does_not_use_up_its_nonce_count() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let wrong = answer("101", "guess", &nonce, Some(1), Algorithm::Md5);
    assert!(matches!(
        f.authenticate(&wrong, 1),
        AuthOutcome::Failed { .. }
    ));
    let right = answer("101", "s3cret", &nonce, Some(1), Algorithm::Md5);
    assert!(matches!(
        f.authenticate(&right, 2),
        AuthOutcome::Authenticated { .. }
    ));
}

#[test]
fn replayed_nonce_count_is_a_stale_challenge_not_counted() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let header = answer("101", "s3cret", &nonce, Some(1), Algorithm::Md5);
    assert!(matches!(
        f.authenticate(&header, 1),
        AuthOutcome::Authenticated { .. }
    ));
    // A retransmission of a stateless REGISTER whose 200 was lost looks the same: the phone must
    // retry with a new nonce quietly, not ask its user for a password.
    assert_eq!(
        f.authenticate(&header, 2),
        AuthOutcome::Challenge { stale: true }
    );
    let next = answer("101", "s3cret", &nonce, Some(2), Algorithm::Md5);
    assert!(matches!(
        f.authenticate(&next, 3),
        AuthOutcome::Authenticated { .. }
    ));
}

#[test]
fn rfc2069_answer_authenticates_once_per_nonce() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let header = answer("101", "s3cret", &nonce, None, Algorithm::Md5);
    assert!(matches!(
        f.authenticate(&header, 1),
        AuthOutcome::Authenticated { .. }
    ));
    assert_eq!(
        f.authenticate(&header, 2),
        AuthOutcome::Challenge { stale: true }
    );
}

#[test]
fn ha1_extension_authenticates_with_md5() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let header = answer("102", "pw102", &nonce, Some(1), Algorithm::Md5);
    assert_eq!(
        f.authenticate(&header, 1),
        AuthOutcome::Authenticated {
            username: "102".into()
        }
    );
}

#[test]
fn sha256_answer_for_an_ha1_extension_fails_without_counting() {
    let f = Fixture::new();
    let nonce = f.key.issue(T0);
    let header = answer("102", "pw102", &nonce, Some(1), Algorithm::Sha256);
    assert_eq!(
        f.authenticate(&header, 1),
        AuthOutcome::Failed {
            username: "102".into(),
            counts: false
        }
    );
}

#[test]
fn a_stored_sha256_ha1_answers_sha256_only_and_both_hashes_answer_either() {
    let f = Fixture::new();
    let sha = answer("103", "pw103", &f.key.issue(T0), Some(1), Algorithm::Sha256);
    assert!(matches!(
        f.authenticate(&sha, 1),
        AuthOutcome::Authenticated { .. }
    ));
    let md5 = answer("103", "pw103", &f.key.issue(T0), Some(1), Algorithm::Md5);
    assert_eq!(
        f.authenticate(&md5, 1),
        AuthOutcome::Failed {
            username: "103".into(),
            counts: false
        },
        "a configuration mismatch, not a guess"
    );
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let right = answer("104", "pw104", &f.key.issue(T0), Some(1), alg);
        assert!(matches!(
            f.authenticate(&right, 1),
            AuthOutcome::Authenticated { .. }
        ));
        let wrong = answer("104", "guess", &f.key.issue(T0), Some(1), alg);
        assert!(matches!(
            f.authenticate(&wrong, 1),
            AuthOutcome::Failed { counts: true, .. }
        ));
    }
}

#[test]
fn a_nonce_overtaken_in_the_count_table_is_a_stale_challenge() {
    let mut f = Fixture::new();
    f.nonces = NonceCounts::new(2);
    let nonce = f.key.issue(T0);
    let header = answer("101", "s3cret", &nonce, Some(1), Algorithm::Md5);
    // Two more challenges since: the first nonce's slot may now be another's.
    f.key.issue(T0);
    f.key.issue(T0);
    assert_eq!(
        f.authenticate(&header, 1),
        AuthOutcome::Challenge { stale: true }
    );
    let fresh = f.key.issue(T0);
    let header = answer("101", "s3cret", &fresh, Some(1), Algorithm::Md5);
    assert!(matches!(
        f.authenticate(&header, 1),
        AuthOutcome::Authenticated { .. }
    ));
}
