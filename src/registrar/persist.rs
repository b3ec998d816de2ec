//! The location store as a state file, so bindings survive a restart (no re-registration storm
//! after an upgrade): one JSON line per binding, with Unix times. Pure: the caller passes the
//! time on both clocks and does the file I/O.
//!
//! Only UDP bindings are kept: a TCP binding's connection does not outlive the process, and a
//! phone behind NAT cannot be reached without it (it re-registers over a new connection).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Aor, Binding, Flow, LocationStore};
use crate::config::model::Transport;

/// One binding on disk.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    aor: String,
    contact: String,
    source: SocketAddr,
    expires_unix: u64,
    registered_unix: u64,
    call_id: String,
    cseq: u32,
    q: Option<u16>,
}

/// The store's live UDP bindings at `now` (`unix_now` on the wall clock), one JSON line each.
pub fn save(store: &LocationStore, now: Instant, unix_now: u64) -> String {
    let unix = |at: Instant| -> u64 {
        match at.checked_duration_since(now) {
            Some(ahead) => unix_now.saturating_add(ahead.as_secs()),
            None => unix_now.saturating_sub(now.saturating_duration_since(at).as_secs()),
        }
    };
    let mut out = String::new();
    for (aor, b) in store.snapshot(now) {
        if b.flow.transport != Transport::Udp {
            continue;
        }
        let line = Line {
            aor: aor.as_str().to_owned(),
            contact: b.contact,
            source: b.flow.source,
            expires_unix: unix(b.expires_at),
            registered_unix: unix(b.registered_at),
            call_id: b.call_id,
            cseq: b.cseq,
            q: b.q,
        };
        if let Ok(json) = serde_json::to_string(&line) {
            out.push_str(&json);
            out.push('\n');
        }
    }
    out
}

/// What [`load`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loaded {
    /// Bindings restored.
    pub restored: usize,
    /// Lines already expired, dropped.
    pub expired: usize,
    /// Lines that did not parse, skipped.
    pub malformed: usize,
}

/// Restores the bindings of `text` (what [`save`] wrote) that are still live at `unix_now`.
pub fn load(store: &LocationStore, text: &str, now: Instant, unix_now: u64) -> Loaded {
    let mut done = Loaded::default();
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(line) = serde_json::from_str::<Line>(raw) else {
            done.malformed += 1;
            continue;
        };
        if line.expires_unix <= unix_now {
            done.expired += 1;
            continue;
        }
        let Some(aor) = parse_aor(&line.aor) else {
            done.malformed += 1;
            continue;
        };
        let left = Duration::from_secs(line.expires_unix - unix_now);
        let age = Duration::from_secs(unix_now.saturating_sub(line.registered_unix));
        let binding = Binding {
            contact: line.contact,
            flow: Flow {
                transport: Transport::Udp,
                source: line.source,
                local: None,
            },
            expires_at: now + left,
            registered_at: now.checked_sub(age).unwrap_or(now),
            call_id: line.call_id,
            cseq: line.cseq,
            q: line.q,
        };
        // The file was written under the limits of its day: keep every binding it holds.
        if store.upsert(aor, binding, usize::MAX, now).is_ok() {
            done.restored += 1;
        }
    }
    done
}

fn parse_aor(text: &str) -> Option<Aor> {
    let (user, domain) = text.rsplit_once('@')?;
    (!user.is_empty() && !domain.is_empty()).then(|| Aor::new(domain, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(transport: Transport, now: Instant, secs: u64) -> Binding {
        Binding {
            contact: "sip:101@10.0.0.5:5060".into(),
            flow: Flow {
                transport,
                source: ([198, 51, 100, 7], 40000).into(),
                local: None,
            },
            expires_at: now + Duration::from_secs(secs),
            registered_at: now,
            call_id: "reg-1".into(),
            cseq: 7,
            q: Some(500),
        }
    }

    #[test]
    fn udp_bindings_survive_a_restart_with_their_time_left_and_expired_ones_do_not() {
        let t0 = crate::test_clock::origin();
        let store = LocationStore::new();
        let aor = Aor::new("acme.example", "101");
        store
            .upsert(aor.clone(), binding(Transport::Udp, t0, 600), 5, t0)
            .expect("bound");
        let other = Aor::new("acme.example", "102");
        store
            .upsert(other.clone(), binding(Transport::Tcp, t0, 600), 5, t0)
            .expect("bound");
        let file = save(&store, t0, 1_000_000);
        assert_eq!(
            file.lines().count(),
            1,
            "the TCP binding is not kept: {file}"
        );
        // The new process starts 100 s later (on its own Instant origin).
        let t1 = crate::test_clock::origin();
        let fresh = LocationStore::new();
        let done = load(&fresh, &file, t1, 1_000_100);
        assert_eq!(
            done,
            Loaded {
                restored: 1,
                expired: 0,
                malformed: 0
            }
        );
        let b = fresh.lookup(&aor, t1);
        assert_eq!(b.len(), 1);
        let left = b[0].expires_at.saturating_duration_since(t1).as_secs();
        assert_eq!(left, 500);
        assert_eq!(
            (b[0].cseq, b[0].q, b[0].call_id.as_str()),
            (7, Some(500), "reg-1")
        );
        // Long after: nothing comes back.
        let again = LocationStore::new();
        let done = load(&again, &file, t1, 1_000_700);
        assert_eq!(done.expired, 1);
        assert!(again.is_empty());
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let t0 = crate::test_clock::origin();
        let store = LocationStore::new();
        let done = load(&store, "not json\n{\"aor\":1}\n\n", t0, 10);
        assert_eq!(done.malformed, 2);
        assert!(store.is_empty());
    }
}
