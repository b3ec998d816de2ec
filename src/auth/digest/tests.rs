use proptest::prelude::*;

use super::*;

/// RFC 2617 section 3.5 (MD5, qop=auth).
const RFC2617: &str = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

/// RFC 7616 section 3.9.1 (SHA-256, qop=auth).
const RFC7616: &str = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

/// A phone's REGISTER answer, computed independently (Python hashlib): extension 101 of
/// acme.example, password s3cret.
const SIP_REGISTER: &str = r#"Digest username="101",realm="acme.example",nonce="0123456789abcdef",uri="sip:acme.example",response="abcd1aba0239effa4eb1abde053f5eba",algorithm=MD5,cnonce="4a6f1c2e",qop=auth,nc=00000001"#;
/// HA1 of 101:acme.example:s3cret.
const SIP_HA1: &str = "515e05b079bbb30bd71565f3bab1e069";

#[test]
fn rfc2617_example_verifies() {
    let creds = parse_credentials(RFC2617).unwrap();
    assert_eq!(creds.username, "Mufasa");
    assert_eq!(creds.nc, Some(1));
    assert_eq!(creds.qop, Some(Qop::Auth));
    assert_eq!(creds.algorithm, Algorithm::Md5);
    assert_eq!(
        creds.opaque.as_deref(),
        Some("5ccc069c403ebaf9f0171e9517f40e41")
    );
    assert!(verify(&creds, "GET", Secret::Password("Circle Of Life")));
    assert!(!verify(&creds, "GET", Secret::Password("Circle of Life")));
    assert!(!verify(&creds, "POST", Secret::Password("Circle Of Life")));
}

#[test]
fn rfc7616_sha256_example_verifies() {
    let creds = parse_credentials(RFC7616).unwrap();
    assert_eq!(creds.algorithm, Algorithm::Sha256);
    assert!(verify(&creds, "GET", Secret::Password("Circle of Life")));
    assert!(!verify(&creds, "GET", Secret::Password("Circle Of Life")));
}

#[test]
fn sip_register_verifies_with_password_or_ha1() {
    let creds = parse_credentials(SIP_REGISTER).unwrap();
    assert!(verify(&creds, "REGISTER", Secret::Password("s3cret")));
    assert!(verify(&creds, "REGISTER", Secret::Ha1(SIP_HA1)));
    assert!(verify(
        &creds,
        "REGISTER",
        Secret::Ha1(&SIP_HA1.to_ascii_uppercase())
    ));
    assert!(!verify(&creds, "INVITE", Secret::Password("s3cret")));
    assert!(!verify(&creds, "REGISTER", Secret::Password("s3cret ")));
    assert!(!verify(&creds, "REGISTER", Secret::Ha1("515e05b0")));
}

#[test]
fn sip_sha256_verifies_with_password_but_never_with_ha1() {
    let value = r#"Digest username="101", realm="acme.example", nonce="0123456789abcdef", uri="sip:102@acme.example", response="3ae6c8718b7e28c18163168103f5a2630528e6347fe0b472d57232175a56915e", algorithm=SHA-256, cnonce="4a6f1c2e", qop=auth, nc=0000000a"#;
    let creds = parse_credentials(value).unwrap();
    assert_eq!(creds.nc, Some(10));
    assert!(verify(&creds, "INVITE", Secret::Password("s3cret")));
    assert!(!verify(&creds, "INVITE", Secret::Ha1(SIP_HA1)));
}

#[test]
fn rfc2069_answer_without_qop_verifies() {
    let value = r#"Digest username="101", realm="acme.example", nonce="0123456789abcdef", uri="sip:acme.example", response="490cf1c6a19847e4d040d00683853380""#;
    let creds = parse_credentials(value).unwrap();
    assert_eq!(
        (creds.qop, creds.nc, creds.cnonce.is_none()),
        (None, None, true)
    );
    assert!(verify(&creds, "REGISTER", Secret::Password("s3cret")));
    assert!(verify(&creds, "REGISTER", Secret::Ha1(SIP_HA1)));
}

#[test]
fn upper_case_response_verifies() {
    let value = SIP_REGISTER.replace(
        "abcd1aba0239effa4eb1abde053f5eba",
        "ABCD1ABA0239EFFA4EB1ABDE053F5EBA",
    );
    let creds = parse_credentials(&value).unwrap();
    assert!(verify(&creds, "REGISTER", Secret::Password("s3cret")));
}

#[test]
fn scheme_and_names_are_case_insensitive_and_quoted_qop_is_accepted() {
    let value = SIP_REGISTER
        .replace("Digest", "dIgEsT")
        .replace("username=", "UserName=")
        .replace("qop=auth", "qop=\"auth\"")
        .replace("algorithm=MD5", "algorithm=md5");
    let creds = parse_credentials(&value).unwrap();
    assert!(verify(&creds, "REGISTER", Secret::Password("s3cret")));
}

#[test]
fn escaped_quotes_in_values_are_unescaped() {
    let value = r#"Digest username="a\"b\\c", realm="r", nonce="n", uri="u", response="x""#;
    let creds = parse_credentials(value).unwrap();
    assert_eq!(creds.username, r#"a"b\c"#);
    assert!(matches!(creds.realm, Cow::Borrowed("r")));
}

#[test]
fn missing_mandatory_fields_are_refused() {
    for field in ["username", "realm", "nonce", "uri", "response"] {
        let value = SIP_REGISTER
            .replace(&format!(",{field}="), ",other=")
            .replace(&format!(" {field}="), " other=");
        assert_eq!(
            parse_credentials(&value).unwrap_err(),
            AuthError::MissingField { field },
            "{field}"
        );
    }
}

#[test]
fn qop_without_cnonce_or_nc_is_refused() {
    let no_cnonce = SIP_REGISTER.replace("cnonce=", "x=");
    assert_eq!(
        parse_credentials(&no_cnonce).unwrap_err(),
        AuthError::MissingField { field: "cnonce" }
    );
    let no_nc = SIP_REGISTER.replace("nc=", "x=");
    assert_eq!(
        parse_credentials(&no_nc).unwrap_err(),
        AuthError::MissingField { field: "nc" }
    );
}

#[test]
fn duplicate_fields_are_refused() {
    let value = format!("{SIP_REGISTER}, Username=\"102\"");
    assert_eq!(
        parse_credentials(&value).unwrap_err(),
        AuthError::DuplicateField { field: "username" }
    );
    let value = format!("{SIP_REGISTER}, nc=00000002");
    assert_eq!(
        parse_credentials(&value).unwrap_err(),
        AuthError::DuplicateField { field: "nc" }
    );
}

#[test]
fn bad_nc_unsupported_algorithm_and_qop_are_refused() {
    for nc in [
        "0000001",
        "000000001",
        "0000000g",
        "+0000001",
        "\"00000001\"x",
    ] {
        let value = SIP_REGISTER.replace("nc=00000001", &format!("nc={nc}"));
        assert!(parse_credentials(&value).is_err(), "{nc}");
    }
    let value = SIP_REGISTER.replace("algorithm=MD5", "algorithm=MD5-sess");
    assert_eq!(
        parse_credentials(&value).unwrap_err(),
        AuthError::UnsupportedAlgorithm
    );
    let value = SIP_REGISTER.replace("qop=auth", "qop=auth-int");
    assert_eq!(
        parse_credentials(&value).unwrap_err(),
        AuthError::UnsupportedQop
    );
}

#[test]
fn other_schemes_and_garbage_are_refused() {
    assert_eq!(
        parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap_err(),
        AuthError::NotDigest
    );
    for bad in [
        "",
        "Digest",
        "Digest username",
        "Digest username=\"unterminated",
        "Digest username=\"a\\",
        "Digest =x",
        "Digest username=a b",
        "\"Digest\" username=a",
    ] {
        assert!(parse_credentials(bad).is_err(), "{bad:?}");
    }
    let long = format!("{SIP_REGISTER}, x=\"{}\"", "a".repeat(MAX_CREDENTIALS_LEN));
    assert_eq!(
        parse_credentials(&long).unwrap_err(),
        AuthError::TooLong {
            max: MAX_CREDENTIALS_LEN
        }
    );
}

#[test]
fn debug_output_redacts_the_response() {
    let creds = parse_credentials(SIP_REGISTER).unwrap();
    let printed = format!("{creds:?}");
    assert!(!printed.contains("abcd1aba"), "{printed}");
    assert!(printed.contains("101"));
    let secret = format!("{:?}", Secret::Password("s3cret"));
    assert!(!secret.contains("s3cret"));
}

#[test]
fn algorithm_tokens_round_trip() {
    for a in [Algorithm::Md5, Algorithm::Sha256] {
        assert_eq!(Algorithm::from_token(a.token()), Some(a));
    }
    assert_eq!(Algorithm::from_token("sha-256"), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::from_token("SHA-512-256"), None);
}

#[test]
fn challenge_value_has_the_rfc_shape() {
    assert_eq!(
        challenge("acme.example", "abc", Algorithm::Md5, false),
        r#"Digest realm="acme.example", nonce="abc", algorithm=MD5, qop="auth""#
    );
    assert_eq!(
        challenge("acme.example", "abc", Algorithm::Sha256, true),
        r#"Digest realm="acme.example", nonce="abc", algorithm=SHA-256, qop="auth", stale=true"#
    );
    assert_eq!(
        challenge("a\"b\r\n", "n", Algorithm::Md5, false),
        r#"Digest realm="a\"b", nonce="n", algorithm=MD5, qop="auth""#
    );
}

proptest! {
    #[test]
    fn parse_credentials_never_panics_on_arbitrary_text(value in ".{0,300}") {
        let _ = parse_credentials(&value);
    }

    #[test]
    fn parse_credentials_never_panics_on_near_valid_input(
        value in r#"[Dd]igest( ?(username|realm|nonce|uri|response|nc|cnonce|qop|algorithm|x)=("([^"\\]|\\.){0,12}"?|[a-zA-Z0-9=/-]{0,10}),?){0,14}\\?"#
    ) {
        if let Ok(creds) = parse_credentials(&value) {
            let _ = verify(&creds, "REGISTER", Secret::Password("p"));
            let _ = verify(&creds, "REGISTER", Secret::Ha1(SIP_HA1));
        }
    }
}

#[test]
fn client_response_reproduces_the_rfc_examples() {
    let md5 = parse_credentials(RFC2617).unwrap();
    assert_eq!(client_response(&md5, "GET", "Circle Of Life"), md5.response);
    let sha = parse_credentials(RFC7616).unwrap();
    assert_eq!(client_response(&sha, "GET", "Circle of Life"), sha.response);
}
