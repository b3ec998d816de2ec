//! What the call path and the admin API read about trunks: health and registration per trunk,
//! published by the trunk driver (`daemon::trunks`) whenever either changes.
//!
//! Keyed by trunk name: `TrunkId`s are indexes into one snapshot and change across reloads.
//! Reading is an `ArcSwap` load and a hash lookup, no lock; publishing swaps in a new map (a
//! change is rare next to calls: a probe answer that flips health, a registration result).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::registration::{RegState, RegistrationView};
use crate::config::model::TrunkKind;

/// Health of a trunk for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// No `probe_interval`: never probed, always considered up.
    Unprobed,
    /// Answering probes.
    Up,
    /// `probe_misses` probes in a row unanswered.
    Down,
}

impl HealthState {
    /// `unprobed`, `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unprobed => "unprobed",
            HealthState::Up => "up",
            HealthState::Down => "down",
        }
    }
}

/// One trunk's state, with absolute times (the reader subtracts its own now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkStatus {
    /// The trunk's name in the configuration.
    pub name: String,
    /// ip, register or accept-register.
    pub kind: TrunkKind,
    /// The provider's address (ip, register).
    pub address: Option<SocketAddr>,
    /// Probe health.
    pub health: HealthState,
    /// Probes unanswered in a row.
    pub misses: u32,
    /// When the last probe went out.
    pub last_probe: Option<Instant>,
    /// Register trunks only.
    pub registration: Option<RegistrationView>,
}

impl TrunkStatus {
    /// Whether outbound calls may use the trunk: not down, and for a `register` trunk
    /// registered (providers refuse calls from an account that is not registered).
    pub fn is_available(&self) -> bool {
        let registered = match &self.registration {
            Some(r) => r.state == RegState::Registered,
            None => true,
        };
        self.health != HealthState::Down && registered
    }
}

/// Every trunk's [`TrunkStatus`], shared by the trunk driver (writer), the engine shards and
/// the admin API (readers).
#[derive(Debug, Default)]
pub struct TrunkStates {
    map: ArcSwap<HashMap<String, Arc<TrunkStatus>>>,
}

impl TrunkStates {
    /// An empty table: every trunk available until the driver publishes.
    pub fn new() -> Arc<TrunkStates> {
        Arc::new(TrunkStates::default())
    }

    /// Whether outbound calls may use trunk `name` now ([`TrunkStatus::is_available`]). A trunk
    /// the driver does not track (`accept-register`, or unknown) is available: this only takes
    /// away trunks known to be unusable.
    pub fn is_available(&self, name: &str) -> bool {
        self.map.load().get(name).is_none_or(|s| s.is_available())
    }

    /// One trunk's state.
    pub fn get(&self, name: &str) -> Option<Arc<TrunkStatus>> {
        self.map.load().get(name).cloned()
    }

    /// Every tracked trunk, sorted by name.
    pub fn list(&self) -> Vec<Arc<TrunkStatus>> {
        let mut all: Vec<_> = self.map.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Replaces the whole table (the driver's view after an event).
    pub fn publish(&self, statuses: impl IntoIterator<Item = TrunkStatus>) {
        let map = statuses
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(s)))
            .collect();
        self.map.store(Arc::new(map));
    }
}

impl crate::routing::plan::TrunkAvailability for TrunkStates {
    fn is_available(&self, trunk: &str) -> bool {
        TrunkStates::is_available(self, trunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trunks::registration::Failure;

    fn status(health: HealthState, reg: Option<RegState>) -> TrunkStatus {
        TrunkStatus {
            name: "t".into(),
            kind: TrunkKind::Register,
            address: None,
            health,
            misses: 0,
            last_probe: None,
            registration: reg.map(|state| RegistrationView {
                state,
                registered_until: None,
                last_status: None,
                failure: Some(Failure::Timeout),
                next_attempt: None,
            }),
        }
    }

    #[test]
    fn down_or_unregistered_trunks_are_unavailable() {
        let states = TrunkStates::new();
        assert!(states.is_available("t"), "nothing published: available");
        for (health, reg, available) in [
            (HealthState::Unprobed, None, true),
            (HealthState::Up, None, true),
            (HealthState::Down, None, false),
            (HealthState::Up, Some(RegState::Registered), true),
            (HealthState::Unprobed, Some(RegState::Failing), false),
            (HealthState::Unprobed, Some(RegState::Idle), false),
            (HealthState::Down, Some(RegState::Registered), false),
        ] {
            states.publish([status(health, reg)]);
            assert_eq!(states.is_available("t"), available, "{health:?} {reg:?}");
        }
        assert!(states.is_available("other"));
    }
}
