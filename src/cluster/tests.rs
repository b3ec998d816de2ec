//! Unit tests that need no Redis: counter names, script text. The scripts themselves are tested
//! against a real redis-server in `tests/cluster_props.rs` and `tests/cluster_redis.rs`.

use super::*;
use crate::limits::{CounterKind, Level};

#[test]
fn counter_key_wire_form_round_trips() {
    let k = CounterKey::new(Level::Extension, "101@acme:east", CounterKind::MaxCalls);
    assert_eq!(k.as_str(), "extension:101@acme:east:max_calls");
    assert_eq!(k.name(), "101@acme:east");
    let back = CounterKey::parse(k.as_str()).expect("callgate's own key parses");
    assert_eq!(back, k);
    assert_eq!(back.level(), Level::Extension);
    assert_eq!(back.kind(), CounterKind::MaxCalls);
}

#[test]
fn server_counter_ignores_the_configured_server_name() {
    let a = CounterKey::new(Level::Server, "node-a", CounterKind::Public);
    let b = CounterKey::new(Level::Server, "node-b", CounterKind::Public);
    assert_eq!(a, b);
    assert_eq!(a.as_str(), "server::public");
}

#[test]
fn counter_key_replaces_the_scripts_separator() {
    let k = CounterKey::new(Level::Organization, "a\0b", CounterKind::Public);
    assert!(!k.as_str().contains('\0'));
}

#[test]
fn foreign_keys_do_not_parse() {
    assert_eq!(CounterKey::parse("nonsense"), None);
    assert_eq!(CounterKey::parse("planet:earth:public"), None);
    assert_eq!(CounterKey::parse("user:bob:sideways"), None);
}

#[test]
fn node_names_with_the_epoch_separator_are_refused() {
    let cfg = ClusterConfig::new("redis://127.0.0.1:1/", "a#1");
    assert!(matches!(
        RedisCounters::new(cfg),
        Err(ClusterError::NodeName(_))
    ));
    let cfg = ClusterConfig::new("redis://127.0.0.1:1/", "");
    assert!(matches!(
        RedisCounters::new(cfg),
        Err(ClusterError::NodeName(_))
    ));
}

#[test]
fn manual_clock_is_never_zero_and_advances() {
    let c = ManualClock::new(0);
    assert_eq!(c.now_ms(), 1);
    c.advance(std::time::Duration::from_millis(1500));
    assert_eq!(c.now_ms(), 1501);
}

#[test]
fn config_comes_from_the_counters_section() {
    use crate::config::model::CounterBackend;
    let backend = CounterBackend::Redis {
        url: "redis://10.0.0.5:6379/".to_owned(),
        lease: std::time::Duration::from_secs(9),
        on_error: crate::config::model::BackendErrorPolicy::Reject,
        cluster: "east".to_owned(),
    };
    let cfg = ClusterConfig::from_backend(&backend, "edge-1").expect("redis backend");
    assert_eq!(
        (cfg.redis_url.as_str(), cfg.node.as_str()),
        ("redis://10.0.0.5:6379/", "edge-1")
    );
    assert_eq!(cfg.lease, std::time::Duration::from_secs(9));
    assert_eq!(cfg.cluster, "east");
    assert!(ClusterConfig::from_backend(&CounterBackend::Memory, "edge-1").is_none());
}
