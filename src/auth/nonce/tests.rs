use proptest::prelude::*;

use super::*;
use crate::auth::{challenge, Algorithm};

const KEY: [u8; 32] = [7; 32];
const T0: u64 = 1_700_000_000;

#[test]
fn a_challenge_parses_back_through_the_sip_view() {
    let key = NonceKey::new(KEY);
    let nonce = key.issue(T0);
    let value = challenge("acme.example", &nonce, Algorithm::Md5, true);
    let view = crate::sip::headers::Challenge::parse(&value).unwrap();
    assert_eq!(view.param("nonce"), Some(nonce.as_str()));
    assert_eq!(view.param("stale"), Some("true"));
}

#[test]
fn issued_nonce_is_valid_until_its_lifetime_ends() {
    let key = NonceKey::new(KEY);
    let nonce = key.issue(T0);
    let expires_unix = T0 + NONCE_LIFETIME_SECS;
    let valid = NonceState::Valid {
        expires_unix,
        counter: 0,
    };
    assert_eq!(key.check(&nonce, T0), valid);
    assert_eq!(key.check(&nonce, expires_unix - 1), valid);
    assert_eq!(key.issued(), 1);
    assert_eq!(key.check(&nonce, expires_unix), NonceState::Stale);
    assert_eq!(key.check(&nonce, expires_unix + 3600), NonceState::Stale);
}

#[test]
fn nonces_issued_in_the_same_second_differ() {
    let key = NonceKey::new(KEY);
    let (a, b) = (key.issue(T0), key.issue(T0));
    assert_ne!(a, b);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    assert!(matches!(key.check(&b, T0), NonceState::Valid { .. }));
}

#[test]
fn nonce_from_another_key_or_tampered_is_forged() {
    let key = NonceKey::new(KEY);
    let nonce = key.issue(T0);
    assert_eq!(NonceKey::new([8; 32]).check(&nonce, T0), NonceState::Forged);
    // Extending the expiry breaks the MAC.
    let mut later = nonce.clone().into_bytes();
    later[15] = if later[15] == b'f' { b'e' } else { b'f' };
    let later = String::from_utf8(later).unwrap();
    assert_eq!(key.check(&later, T0), NonceState::Forged);
    // One spelling only: upper case is not ours.
    assert_eq!(
        key.check(&nonce.to_ascii_uppercase(), T0),
        if nonce.bytes().any(|c| c.is_ascii_alphabetic()) {
            NonceState::Forged
        } else {
            NonceState::Valid {
                expires_unix: T0 + NONCE_LIFETIME_SECS,
                counter: 0,
            }
        }
    );
    for bad in ["", "abc", &nonce[1..], &format!("{nonce}0"), "é"] {
        assert_eq!(key.check(bad, T0), NonceState::Forged, "{bad:?}");
    }
}

#[test]
fn a_stale_nonce_with_a_bad_mac_is_forged_not_stale() {
    let key = NonceKey::new(KEY);
    let nonce = key.issue(T0);
    let mut tampered = nonce.into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(key.check(&tampered, T0 + 10_000), NonceState::Forged);
}

#[test]
fn issuing_near_the_end_of_time_does_not_overflow() {
    let key = NonceKey::new(KEY);
    let nonce = key.issue(u64::MAX - 1);
    assert_eq!(key.check(&nonce, u64::MAX), NonceState::Stale);
}

#[test]
fn debug_output_redacts_the_key() {
    assert_eq!(format!("{:?}", NonceKey::new(KEY)), "NonceKey(<redacted>)");
}

proptest! {
    #[test]
    fn nonce_check_never_panics(nonce in ".{0,80}", now in any::<u64>()) {
        let _ = NonceKey::new(KEY).check(&nonce, now);
    }
}
