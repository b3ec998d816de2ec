//! Unit tests of the transaction module: one file per machine, keys, layer, and end-to-end
//! exchanges through the `testing::Pair` harness.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::TimerConfig;

mod invite_client;
mod invite_server;
mod key;
mod layer;
mod layer_props;
mod non_invite_client;
mod non_invite_server;
mod pair;
mod timers;

fn cfg() -> TimerConfig {
    TimerConfig::default()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn t0() -> Instant {
    super::testing::origin()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}
