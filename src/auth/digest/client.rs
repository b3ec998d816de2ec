//! The client side of digest: answering a registrar's `WWW-Authenticate` /
//! `Proxy-Authenticate` challenge (RFC 3261 22.2, RFC 7616 3.4, RFC 2069 when no qop is offered,
//! RFC 8760 for SHA-256). callgate uses it to register its `register` trunks to providers.
//!
//! Pure: the caller supplies the client nonce and the nonce count.

use std::fmt;

use super::{push_quoted_content, Algorithm};
use crate::sip::headers::Challenge;

/// A digest challenge callgate can answer, copied out of the response.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientChallenge {
    /// The realm to answer.
    pub realm: String,
    /// The server's nonce.
    pub nonce: String,
    /// Echoed back unchanged when present.
    pub opaque: Option<String>,
    /// MD5 when the challenge names none.
    pub algorithm: Algorithm,
    /// Whether `qop=auth` was offered (else the RFC 2069 answer).
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired, the credentials were right.
    pub stale: bool,
}

impl fmt::Debug for ClientChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientChallenge")
            .field("realm", &self.realm)
            .field("algorithm", &self.algorithm)
            .field("qop_auth", &self.qop_auth)
            .field("stale", &self.stale)
            .finish_non_exhaustive()
    }
}

impl ClientChallenge {
    /// The challenge of `view` when it is a digest one callgate can answer: scheme `Digest`,
    /// algorithm MD5 or SHA-256 (no `-sess`), and when qop is offered it includes `auth`
    /// (`auth-int` alone would need the body hashed).
    pub fn from_view(view: &Challenge<'_>) -> Option<ClientChallenge> {
        if !view.scheme().eq_ignore_ascii_case("digest") {
            return None;
        }
        let algorithm = match view.param("algorithm") {
            None => Algorithm::Md5,
            Some(token) => Algorithm::from_token(token)?,
        };
        let qop_auth = match view.param("qop") {
            None => false,
            Some(list) => {
                let mut offered = list.split(',').map(str::trim);
                if !offered.any(|q| q.eq_ignore_ascii_case("auth")) {
                    return None;
                }
                true
            }
        };
        Some(ClientChallenge {
            realm: view.param("realm")?.to_owned(),
            nonce: view.param("nonce")?.to_owned(),
            opaque: view.param("opaque").map(str::to_owned),
            algorithm,
            qop_auth,
            stale: view
                .param("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The best challenge among `views` (in header order): the first SHA-256 one, else the first
    /// MD5 one (RFC 8760 2.4 lets the client pick the strongest it supports).
    pub fn pick<'a>(views: impl Iterator<Item = Challenge<'a>>) -> Option<ClientChallenge> {
        let usable: Vec<ClientChallenge> = views.filter_map(|v| Self::from_view(&v)).collect();
        let sha = usable.iter().position(|c| c.algorithm == Algorithm::Sha256);
        let i = sha.or(if usable.is_empty() { None } else { Some(0) })?;
        usable.into_iter().nth(i)
    }
}

/// What the client answers with besides the challenge.
#[derive(Clone, Copy)]
pub struct ClientAnswer<'a> {
    /// The account name.
    pub username: &'a str,
    /// The account password (never logged).
    pub password: &'a str,
    /// The request method (`REGISTER`).
    pub method: &'a str,
    /// The Request-URI as sent (the `digest-uri`).
    pub uri: &'a str,
    /// The nonce count, 1 for the first answer to a nonce.
    pub nc: u32,
    /// A fresh client nonce (token characters).
    pub cnonce: &'a str,
}

/// The `Authorization` / `Proxy-Authorization` value answering `challenge`.
pub fn authorization(challenge: &ClientChallenge, answer: &ClientAnswer<'_>) -> String {
    let alg = challenge.algorithm;
    let ha1 = alg.hash(&[
        answer.username.as_bytes(),
        challenge.realm.as_bytes(),
        answer.password.as_bytes(),
    ]);
    let ha2 = alg.hash(&[answer.method.as_bytes(), answer.uri.as_bytes()]);
    let nc = format!("{:08x}", answer.nc);
    let response = if challenge.qop_auth {
        alg.hash(&[
            ha1.as_bytes(),
            challenge.nonce.as_bytes(),
            nc.as_bytes(),
            answer.cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ])
    } else {
        alg.hash(&[ha1.as_bytes(), challenge.nonce.as_bytes(), ha2.as_bytes()])
    };
    let mut v = String::with_capacity(256);
    let quoted = |v: &mut String, name: &str, value: &str| {
        v.push_str(name);
        v.push_str("=\"");
        push_quoted_content(v, value);
        v.push_str("\", ");
    };
    v.push_str("Digest ");
    quoted(&mut v, "username", answer.username);
    quoted(&mut v, "realm", &challenge.realm);
    quoted(&mut v, "nonce", &challenge.nonce);
    quoted(&mut v, "uri", answer.uri);
    // Hex digits are ASCII.
    quoted(
        &mut v,
        "response",
        std::str::from_utf8(response.as_bytes()).unwrap_or_default(),
    );
    if let Some(opaque) = &challenge.opaque {
        quoted(&mut v, "opaque", opaque);
    }
    v.push_str("algorithm=");
    v.push_str(alg.token());
    if challenge.qop_auth {
        v.push_str(", qop=auth, nc=");
        v.push_str(&nc);
        v.push_str(", cnonce=\"");
        push_quoted_content(&mut v, answer.cnonce);
        v.push('"');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{parse_credentials, verify, Secret};

    fn challenge(text: &str) -> Option<ClientChallenge> {
        ClientChallenge::from_view(&Challenge::parse(text).ok()?)
    }

    fn answer(nc: u32) -> ClientAnswer<'static> {
        ClientAnswer {
            username: "acct",
            password: "s3cret",
            method: "REGISTER",
            uri: "sip:provider.example",
            nc,
            cnonce: "c0ffee",
        }
    }

    /// The server side of callgate accepts what the client side computes: both RFC 7616
    /// formulas, each algorithm.
    #[test]
    fn answers_verify_with_the_server_side() {
        for text in [
            r#"Digest realm="p.example", nonce="abc", qop="auth", algorithm=MD5"#,
            r#"Digest realm="p.example", nonce="abc""#,
            r#"Digest realm="p.example", nonce="abc", qop="auth,auth-int", algorithm=SHA-256"#,
        ] {
            let ch = challenge(text).expect(text);
            let value = authorization(&ch, &answer(3));
            let creds = parse_credentials(&value).expect("parses");
            assert!(
                verify(&creds, "REGISTER", Secret::Password("s3cret")),
                "{text}"
            );
            assert!(!verify(&creds, "REGISTER", Secret::Password("wrong")));
            assert_eq!(creds.cnonce.is_some(), ch.qop_auth, "{text}");
        }
    }

    #[test]
    fn nonce_count_and_opaque_are_sent() {
        let ch = challenge(r#"Digest realm="r", nonce="n", opaque="op1", qop=auth"#).expect("ok");
        let value = authorization(&ch, &answer(0x1a));
        assert!(value.contains("nc=0000001a"), "{value}");
        assert!(value.contains(r#"opaque="op1""#), "{value}");
    }

    #[test]
    fn unanswerable_challenges_are_refused() {
        for text in [
            r#"Basic realm="r""#,
            r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#,
            r#"Digest realm="r", nonce="n", qop="auth-int""#,
            r#"Digest realm="r""#,
        ] {
            assert_eq!(challenge(text), None, "{text}");
        }
        assert!(challenge(r#"Digest realm="r", nonce="n", stale=TRUE"#).is_some_and(|c| c.stale));
    }

    #[test]
    fn sha256_is_preferred_when_offered() {
        let views = [
            r#"Digest realm="r", nonce="n1", algorithm=MD5"#,
            r#"Digest realm="r", nonce="n2", algorithm=SHA-256"#,
        ];
        let picked = ClientChallenge::pick(views.iter().filter_map(|t| Challenge::parse(t).ok()));
        assert_eq!(picked.map(|c| c.algorithm), Some(Algorithm::Sha256));
    }

    #[test]
    fn debug_hides_the_nonce() {
        let ch = challenge(r#"Digest realm="r", nonce="secretnonce""#).expect("ok");
        assert!(!format!("{ch:?}").contains("secretnonce"));
    }
}
