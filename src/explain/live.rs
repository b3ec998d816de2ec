//! The live side of `callgate explain --admin`: the units in use and the registrations of a
//! running daemon, read from its admin API (`GET /counters`, `GET /registrations`). Reads only:
//! nothing is acquired or changed on the daemon.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::admin::client::{self, AdminUrl};
use crate::admin::{CounterView, RegistrationView, StatusError};
use crate::config::model::Transport;
use crate::limits::{CounterKind, Level};
use crate::registrar::{Aor, Binding, Flow, LocationStore};

/// A running daemon's counters and registrations at one moment.
#[derive(Debug, Clone, Default)]
pub struct Live {
    used: HashMap<(String, String, String), u32>,
    registrations: Vec<RegistrationView>,
}

/// Reads the daemon at `url` (`http://host:port`), with the bearer `token` when it needs one.
pub async fn read(url: &str, token: Option<&str>) -> Result<Live, StatusError> {
    let url = AdminUrl::parse(url)?;
    let counters: Vec<CounterView> = client::get_json(&url, "/counters", token).await?;
    let registrations = client::get_json(&url, "/registrations", token).await?;
    Ok(Live::new(counters, registrations))
}

impl Live {
    /// From the admin API's views.
    pub fn new(counters: Vec<CounterView>, registrations: Vec<RegistrationView>) -> Live {
        let used = counters
            .into_iter()
            .map(|c| ((c.level, c.name, c.counter), c.used))
            .collect();
        Live {
            used,
            registrations,
        }
    }

    /// Units in use on a counter; 0 for one the daemon does not have (not reloaded yet).
    pub fn used(&self, level: Level, name: &str, kind: CounterKind) -> u32 {
        let key = (
            level.as_str().to_owned(),
            name.to_owned(),
            kind.as_str().to_owned(),
        );
        self.used.get(&key).copied().unwrap_or(0)
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
