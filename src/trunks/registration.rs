//! Outbound registration of a `register` trunk: callgate registers to the provider's registrar
//! as the trunk's account (RFC 3261 10.2), answers its digest challenge (22.2), refreshes at half
//! the granted lifetime and backs off on failure.
//!
//! Sans-IO, one machine per trunk. Driver contract: after creating the machine, and after every
//! input ([`Registration::on_response`], [`Registration::on_timeout`], [`Registration::stop`],
//! and [`Registration::handle_timeout`] on every wake-up), call [`Registration::due`] (it hands out at most one REGISTER at a time) and re-arm the wake-up
//! from [`Registration::poll_timeout`]; the driver owns the transaction (retransmissions, Timer
//! F), the Call-ID (stable for the account) and the CSeq (incremented per REGISTER, 10.2.4).
//!
//! Behaviour where the RFC is silent follows Kamailio's `uac_registrant` and Asterisk's outbound
//! registrations: a refused challenge answer (a second 401 for the nonce already answered) is a
//! failure, not a loop; 423 retries at once with `Min-Expires`; failures back off exponentially
//! from `register_retry` (credential refusals up to 30 min, others up to 5 min), and a
//! `Retry-After` in the failure replaces the computed delay.

use std::time::{Duration, Instant};

use crate::auth::{authorization, ClientAnswer, ClientChallenge};
use crate::sip::Response;

/// Never refresh sooner than this after a 2xx, whatever lifetime was granted: a registrar
/// granting 1 s must not make callgate spin.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Ceiling of the backoff after refused credentials (401 to our answer, 403).
pub const MAX_RETRY_REFUSED: Duration = Duration::from_secs(30 * 60);
/// Ceiling of the backoff after other failures (timeouts, 5xx): the provider is likely to
/// come back, and calls fail meanwhile.
pub const MAX_RETRY_OTHER: Duration = Duration::from_secs(5 * 60);
/// Longest `Retry-After` or `Min-Expires` believed (a day).
const MAX_SERVER_SECS: u32 = 86_400;
/// Challenges answered in a row without a final answer other than 401/407.
const MAX_CHALLENGES: u32 = 2;

/// What a registration is configured with.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The account (`username`), also the user part of the AOR.
    pub username: String,
    /// Never logged.
    pub password: String,
    /// The registrar's Request-URI, also the digest `uri`.
    pub uri: String,
    /// The lifetime asked for.
    pub expires: Duration,
    /// The first backoff delay; doubled per consecutive failure.
    pub retry: Duration,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.username)
            .field("uri", &self.uri)
            .field("expires", &self.expires)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The parts of a REGISTER response the machine acts on, taken out of the message by
/// [`Reply::from_response`] (or written by tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// The best digest challenge callgate can answer (401/407).
    pub challenge: Option<ClientChallenge>,
    /// Lifetime granted to our Contact (its `expires`, else `Expires`), in seconds.
    pub granted_secs: Option<u32>,
    /// `Min-Expires` (423).
    pub min_expires_secs: Option<u32>,
    /// `Retry-After`, in seconds.
    pub retry_after_secs: Option<u32>,
}

impl Reply {
    /// Reads a response to our REGISTER. `contact_host` is the `host:port` of the Contact
    /// callgate registered: a registrar lists every binding of the AOR in its 2xx, and ours is
    /// the one whose lifetime counts.
    pub fn from_response(resp: &Response, contact_host: &str) -> Reply {
        let p = resp.parts();
        let status = resp.status().as_u16();
        let challenge = match status {
            401 => ClientChallenge::pick(p.www_authenticate().filter_map(Result::ok)),
            407 => ClientChallenge::pick(p.proxy_authenticate().filter_map(Result::ok)),
            _ => None,
        };
        let header_secs = |name: &str| {
            p.headers_raw(name)
                .next()
                .and_then(|h| h.value_str())
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let contacts: Vec<(bool, Option<u32>)> = p
            .contacts()
            .filter_map(Result::ok)
            .filter_map(|c| {
                let mine = c.address()?.uri.contains(contact_host);
                Some((mine, c.expires()))
            })
            .collect();
        let ours = contacts.iter().find(|(mine, _)| *mine).and_then(|c| c.1);
        let granted_secs = ours
            .or_else(|| p.expires().and_then(Result::ok))
            .or_else(|| contacts.first().and_then(|c| c.1));
        Reply {
            status,
            challenge,
            granted_secs,
            min_expires_secs: header_secs("Min-Expires"),
            retry_after_secs: p.retry_after().and_then(Result::ok).map(|r| r.secs),
        }
    }
}

/// A REGISTER to send now.
#[derive(Clone, PartialEq, Eq)]
pub struct Register {
    /// `Expires` (0: unregister).
    pub expires_secs: u32,
    /// The `Authorization` (or `Proxy-Authorization`, see `proxy`) value, when answering a
    /// challenge.
    pub authorization: Option<String>,
    /// The challenge was a 407: the answer goes in `Proxy-Authorization`.
    pub proxy: bool,
}

impl std::fmt::Debug for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Register")
            .field("expires_secs", &self.expires_secs)
            .field("authorized", &self.authorization.is_some())
            .finish()
    }
}

/// Why the last attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No final answer (Timer F) or the transport failed.
    Timeout,
    /// A final failure status.
    Refused,
    /// The registrar challenged again the nonce we answered: wrong credentials.
    CredentialsRefused,
    /// A 401/407 without a digest challenge callgate can answer.
    NoUsableChallenge,
    /// 423 without a usable `Min-Expires`.
    IntervalTooBrief,
    /// A 2xx granting our Contact no lifetime.
    NothingGranted,
}

impl Failure {
    /// Short text for the admin API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Refused => "refused",
            Failure::CredentialsRefused => "credentials refused",
            Failure::NoUsableChallenge => "no usable challenge",
            Failure::IntervalTooBrief => "interval too brief",
            Failure::NothingGranted => "nothing granted",
        }
    }
}

/// Where the registration stands, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// A binding is in force at the registrar.
    Registered,
    /// The last attempt failed and no binding is in force.
    Failing,
    /// Not registered yet (first attempt pending), or stopped.
    Idle,
}

impl RegState {
    /// `registered`, `failing` or `idle`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegState::Registered => "registered",
            RegState::Failing => "failing",
            RegState::Idle => "idle",
        }
    }
}

/// A copy of the machine's state with absolute times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationView {
    /// Registered, failing or idle.
    pub state: RegState,
    /// When the binding lapses (registered only).
    pub registered_until: Option<Instant>,
    /// The last final status received (any attempt).
    pub last_status: Option<u16>,
    /// Why the last attempt failed, while failing.
    pub failure: Option<Failure>,
    /// When the next REGISTER goes out (`None`: one is in flight, or stopped).
    pub next_attempt: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// The next REGISTER goes out at this instant.
    Waiting(Instant),
    /// A REGISTER is in flight; what it carried.
    InFlight {
        expires_secs: u32,
        nonce: Option<String>,
    },
    /// Unregistered (or given up unregistering); nothing more to send.
    Stopped,
}

/// One trunk's registration ([module docs](self) for the driver contract).
#[derive(Debug)]
pub struct Registration {
    account: Account,
    /// Asked for; raised by 423.
    expires_secs: u32,
    phase: Phase,
    challenge: Option<(ClientChallenge, bool)>,
    nc: u32,
    challenges: u32,
    registered_until: Option<Instant>,
    failures: u32,
    failure: Option<Failure>,
    last_status: Option<u16>,
    stopping: bool,
}

impl Registration {
    /// A registration whose first REGISTER is due at `now`.
    pub fn new(account: Account, now: Instant) -> Registration {
        let expires_secs = u32::try_from(account.expires.as_secs()).unwrap_or(u32::MAX);
        Registration {
            account,
            expires_secs: expires_secs.max(1),
            phase: Phase::Waiting(now),
            challenge: None,
            nc: 0,
            challenges: 0,
            registered_until: None,
            failures: 0,
            failure: None,
            last_status: None,
            stopping: false,
        }
    }

    /// The configured account.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The REGISTER to send now, if one is due; `cnonce` is a fresh client nonce (used when
    /// answering a challenge). At most one is in flight.
    pub fn due(&mut self, now: Instant, cnonce: &str) -> Option<Register> {
        match self.phase {
            Phase::Waiting(at) if at <= now => {}
            _ => return None,
        }
        let expires_secs = if self.stopping { 0 } else { self.expires_secs };
        let (authorization, proxy, nonce) = match &self.challenge {
            Some((ch, proxy)) => {
                self.nc += 1;
                let answer = ClientAnswer {
                    username: &self.account.username,
                    password: &self.account.password,
                    method: "REGISTER",
                    uri: &self.account.uri,
                    nc: self.nc,
                    cnonce,
                };
                (
                    Some(authorization(ch, &answer)),
                    *proxy,
                    Some(ch.nonce.clone()),
                )
            }
            None => (None, false, None),
        };
        self.phase = Phase::InFlight {
            expires_secs,
            nonce,
        };
        Some(Register {
            expires_secs,
            authorization,
            proxy,
        })
    }

    /// A response to the REGISTER in flight (provisional ones are ignored; so is anything when
    /// none is in flight).
    pub fn on_response(&mut self, now: Instant, reply: Reply) {
        let Phase::InFlight {
            expires_secs,
            nonce,
        } = &self.phase
        else {
            return;
        };
        let (sent_expires, sent_nonce) = (*expires_secs, nonce.clone());
        match reply.status {
            100..=199 => {}
            200..=299 => self.on_success(now, sent_expires, &reply),
            401 | 407 => self.on_challenge(now, sent_nonce, reply),
            423 => match reply.min_expires_secs {
                Some(min) if min > sent_expires && min <= MAX_SERVER_SECS => {
                    self.last_status = Some(423);
                    self.expires_secs = min;
                    self.phase = Phase::Waiting(now);
                }
                _ => self.fail(now, Some(423), Failure::IntervalTooBrief, None),
            },
            status => self.fail(now, Some(status), Failure::Refused, reply.retry_after_secs),
        }
    }

    /// The REGISTER in flight got no final answer (Timer F) or could not be sent.
    pub fn on_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::InFlight { .. }) {
            self.fail(now, None, Failure::Timeout, None);
        }
    }

    /// Stops the registration: unregisters (`Expires: 0`) when a binding may be in force, else
    /// stops at once. Removal from the config, shutdown.
    pub fn stop(&mut self, now: Instant) {
        self.stopping = true;
        match self.phase {
            Phase::InFlight { .. } | Phase::Stopped => {}
            Phase::Waiting(_) if self.is_registered(now) => self.phase = Phase::Waiting(now),
            Phase::Waiting(_) => self.phase = Phase::Stopped,
        }
    }

    /// Forgets a binding whose lifetime has passed (so [`Registration::poll_timeout`] no longer
    /// names it). Call before [`Registration::due`] on every wake-up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.registered_until.is_some_and(|until| until <= now) {
            self.registered_until = None;
        }
    }

    /// True once stopped and nothing more will be sent.
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// Whether a binding is in force at `now`.
    pub fn is_registered(&self, now: Instant) -> bool {
        self.registered_until.is_some_and(|until| until > now)
    }

    /// The next instant the driver must call [`Registration::due`] (or republish the state:
    /// the binding's lapse is one).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = match self.phase {
            Phase::Waiting(at) => Some(at),
            _ => None,
        };
        match (next, self.registered_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The state now, for the admin API and routing.
    pub fn view(&self, now: Instant) -> RegistrationView {
        let registered = self.is_registered(now);
        let state = if registered {
            RegState::Registered
        } else if self.failure.is_some() && !self.is_stopped() {
            RegState::Failing
        } else {
            RegState::Idle
        };
        RegistrationView {
            state,
            registered_until: self.registered_until.filter(|_| registered),
            last_status: self.last_status,
            failure: self.failure,
            next_attempt: match self.phase {
                Phase::Waiting(at) => Some(at),
                _ => None,
            },
        }
    }

    fn on_success(&mut self, now: Instant, sent_expires: u32, reply: &Reply) {
        self.last_status = Some(reply.status);
        self.challenges = 0;
        if sent_expires == 0 {
            self.registered_until = None;
            self.phase = Phase::Stopped;
            return;
        }
        let granted = reply.granted_secs.unwrap_or(sent_expires);
        if granted == 0 {
            self.registered_until = None;
            return self.fail(now, Some(reply.status), Failure::NothingGranted, None);
        }
        let lifetime = Duration::from_secs(u64::from(granted));
        self.registered_until = Some(now + lifetime);
        self.failures = 0;
        self.failure = None;
        let refresh = now + (lifetime / 2).max(MIN_REFRESH);
        self.phase = Phase::Waiting(if self.stopping { now } else { refresh });
    }

    fn on_challenge(&mut self, now: Instant, sent_nonce: Option<String>, reply: Reply) {
        let status = reply.status;
        let Some(ch) = reply.challenge else {
            return self.fail(now, Some(status), Failure::NoUsableChallenge, None);
        };
        let same_nonce = sent_nonce.as_deref() == Some(ch.nonce.as_str());
        if (same_nonce && !ch.stale) || self.challenges >= MAX_CHALLENGES {
            return self.fail(now, Some(status), Failure::CredentialsRefused, None);
        }
        self.last_status = Some(status);
        self.challenges += 1;
        self.nc = 0;
        self.challenge = Some((ch, status == 407));
        self.phase = Phase::Waiting(now);
    }

    fn fail(&mut self, now: Instant, status: Option<u16>, why: Failure, retry_after: Option<u32>) {
        if status.is_some() {
            self.last_status = status;
        }
        self.failure = Some(why);
        // A fresh start: the nonce of a refused exchange is of no further use.
        self.challenge = None;
        self.challenges = 0;
        if self.stopping {
            self.phase = Phase::Stopped;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        self.phase = Phase::Waiting(now + self.backoff(status, why, retry_after));
    }

    fn backoff(&self, status: Option<u16>, why: Failure, retry_after: Option<u32>) -> Duration {
        if let Some(secs) = retry_after.filter(|s| *s > 0) {
            return Duration::from_secs(u64::from(secs.min(MAX_SERVER_SECS)));
        }
        let refused = why == Failure::CredentialsRefused || status == Some(403);
        let cap = if refused {
            MAX_RETRY_REFUSED
        } else {
            MAX_RETRY_OTHER
        };
        let doublings = self.failures.saturating_sub(1).min(20);
        self.account
            .retry
            .saturating_mul(1u32 << doublings)
            .min(cap)
            .max(MIN_REFRESH)
    }
}

#[cfg(test)]
mod tests;
