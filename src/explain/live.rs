//! The live side of `callgate explain --admin`: the units in use and the registrations of a
//! running daemon, read from its admin API (`GET /counters`, `GET /registrations`). Reads only:
//! nothing is acquired or changed on the daemon.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Explanation;
use crate::admin::client::{self, AdminUrl};
use crate::admin::{CounterView, RegistrationView, StatusError, TrunkView};
use crate::config::model::Transport;
use crate::limits::{CounterKind, Level};
use crate::registrar::{Aor, Binding, Flow, LocationStore};
use crate::routing::plan::TrunkAvailability;

/// A running daemon's counters and registrations at one moment.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// `(level, name, counter)` -> (used, limit).
    counters: HashMap<(String, String, String), (u32, Option<u32>)>,
    registrations: Vec<RegistrationView>,
    /// Trunks outbound routing may not use now (`available: false` in `GET /trunks`).
    unavailable: Vec<String>,
}

/// Reads the daemon at `url` (`http://host:port`), with the bearer `token` when it needs one.
pub async fn read(url: &str, token: Option<&str>) -> Result<Live, StatusError> {
    let url = AdminUrl::parse(url)?;
    let counters: Vec<CounterView> = client::get_json(&url, "/counters", token).await?;
    let registrations = client::get_json(&url, "/registrations", token).await?;
    let trunks: Vec<TrunkView> = client::get_json(&url, "/trunks", token).await?;
    let mut live = Live::new(counters, registrations);
    live.unavailable = trunks
        .into_iter()
        .filter(|t| !t.available)
        .map(|t| t.name)
        .collect();
    Ok(live)
}

impl Live {
    /// From the admin API's views.
    pub fn new(counters: Vec<CounterView>, registrations: Vec<RegistrationView>) -> Live {
        let counters = counters
            .into_iter()
            .map(|c| ((c.level, c.name, c.counter), (c.used, c.limit)))
            .collect();
        Live {
            counters,
            registrations,
            unavailable: Vec::new(),
        }
    }

    /// Units in use on a counter; 0 for one the daemon does not have (not reloaded yet).
    pub fn used(&self, level: Level, name: &str, kind: CounterKind) -> u32 {
        let key = (
            level.as_str().to_owned(),
            name.to_owned(),
            kind.as_str().to_owned(),
        );
        self.counters.get(&key).map_or(0, |(used, _)| *used)
    }

    /// Where the daemon's counters disagree with the file the explanation was made from (a
    /// counter it does not have, another limit): the file is not the one it runs, or a reload
    /// is pending. Empty for a file alone.
    pub fn mismatches(&self, e: &Explanation) -> Vec<String> {
        if self.counters.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in e.path.iter().flat_map(|s| &s.counters) {
            let key = (c.level.clone(), c.name.clone(), c.counter.clone());
            let what = format!("{} {} {}", c.level, c.name, c.counter);
            let note = match self.counters.get(&key) {
                None => format!("the daemon has no counter {what}"),
                Some((_, limit)) if *limit != c.limit => {
                    let show = |l: Option<u32>| l.map_or("unlimited".to_owned(), |l| l.to_string());
                    format!(
                        "{what}: the daemon's limit is {}, the file's {}",
                        show(*limit),
                        show(c.limit)
                    )
                }
                Some(_) => continue,
            };
            if !out.contains(&note) {
                out.push(note);
            }
        }
        out
    }

    /// The registrations as a location store judged at `now`, so routing sees the phones and
    /// `accept-register` gateways the daemon sees.
    pub fn location(&self, now: Instant) -> LocationStore {
        let store = LocationStore::new();
        for r in &self.registrations {
            let Some((aor, binding)) = binding(r, now) else {
                continue;
            };
            // A registration the daemon holds is valid; a refusal here only loses a binding.
            let _ = store.upsert(aor, binding, usize::MAX, now);
        }
        store
    }
}

/// As the daemon's trunks table says; a trunk it does not list is available (a file alone).
impl TrunkAvailability for Live {
    fn is_available(&self, trunk: &str) -> bool {
        !self.unavailable.iter().any(|t| t == trunk)
    }
}

fn binding(r: &RegistrationView, now: Instant) -> Option<(Aor, Binding)> {
    let aor = match &r.trunk {
        Some(trunk) => Aor::trunk(trunk),
        None => {
            let (number, domain) = r.extension.rsplit_once('@')?;
            Aor::new(domain, number)
        }
    };
    let transport = match r.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => return None,
    };
    let source: SocketAddr = r.source.parse().ok()?;
    let binding = Binding {
        contact: r.contact.clone(),
        flow: Flow {
            transport,
            source,
            local: None,
        },
        expires_at: now + Duration::from_secs(r.expires_secs.max(1)),
        registered_at: now,
        call_id: "explain".to_owned(),
        cseq: 1,
        q: None,
    };
    Some((aor, binding))
}
