//! Fuzzing entry for "bytes in -> whatever the engine does": arbitrary input split into
//! datagrams from a PBX, a trunk and an unknown source, fed to a real [`Engine`] (transactions,
//! B2BUA, limiter) with a clock that advances by input-chosen steps. It must never panic, and
//! once everything is ended and every timer has fired, no counter may stay held and every
//! table is empty.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::admin::Metrics;
use crate::b2bua::{B2bua, Dest, Local, Settings};
use crate::config::model::Transport;
use crate::engine::Engine;
use crate::limits::Limiter;
use crate::transaction::{Layer, TimerConfig};

const CFG: &str = r#"
[server]
name = "fuzz"
session_expires = "120s"
max_call_duration = "1h"
[license]
sip_trunking_channels = 10
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[[service_provider]]
name = "sp"
limits = { public = 3, internal = 3 }
[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"
[[user]]
name = "u"
organization = "acme"
[[extension]]
number = "200"
user = "u"
pbx = { address = "127.0.0.11:5060", transport = "udp", authenticate = false }
[[extension]]
number = "201"
user = "u"
pbx = { address = "127.0.0.12:5060", transport = "tcp", authenticate = false }
[[trunk]]
name = "carrier"
kind = "ip"
address = "127.0.0.1:5080"
[[did_pool]]
trunk = "carrier"
organization = "acme"
dids = ["3125550000-3125550099"]
[[inbound_rule]]
organization = "acme"
trunk = "carrier"
dids = "3125550000-3125550099"
destination = { extension = "200" }
[[outbound_rule]]
organization = "acme"
pattern = "^[0-9]+$"
trunks = ["carrier"]
"#;

/// Separates messages in the fuzz input.
const SEPARATOR: &[u8] = b"\n--\n";

/// Runs `data` through an engine. Panics only when an invariant breaks (the fuzzer's signal).
pub fn engine(data: &[u8]) {
    let Ok(loaded) = crate::config::load(CFG) else {
        panic!("invariant: the fuzzing configuration is valid");
    };
    let limiter = Arc::new(Limiter::new(Arc::new(loaded.snapshot)));
    let settings = Settings {
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        local: Local {
            udp: Some("127.0.0.1:5060".into()),
            tcp: Some("127.0.0.1:5060".into()),
            tls: None,
        },
        node: "fuzz".into(),
        ring_timeout: Duration::from_secs(180),
    };
    // Seeded from the input-independent constant: a fuzz run must be reproducible.
    let ids = crate::sip::ids::Ids::new(0, rand::SeedableRng::seed_from_u64(1));
    let b2bua = B2bua::new(limiter.clone(), settings, ids);
    let mut engine = Engine::new(
        b2bua,
        Layer::new(TimerConfig::default()),
        Arc::new(Metrics::new()),
        crate::engine::Shared::new([7; 32], std::time::Instant::now()),
    );
    let sources = [
        Dest {
            transport: Transport::Udp,
            addr: ([127, 0, 0, 11], 5060).into(),
        },
        Dest {
            transport: Transport::Tcp,
            addr: ([127, 0, 0, 12], 5060).into(),
        },
        Dest {
            transport: Transport::Udp,
            addr: ([127, 0, 0, 1], 5080).into(),
        },
        Dest {
            transport: Transport::Udp,
            addr: ([127, 0, 0, 99], 5060).into(),
        },
    ];
    let mut now = std::time::Instant::now();
    let mut sink = Vec::new();
    for chunk in split(data) {
        let Some((&control, message)) = chunk.split_first() else {
            continue;
        };
        let source = sources[usize::from(control & 3)];
        now += Duration::from_millis(u64::from(control >> 2) * 50);
        engine.on_timeouts(now);
        if control == 0xff {
            engine.on_closed(now, source, now);
        } else {
            engine.on_received(now, Bytes::copy_from_slice(message), source);
        }
        engine.take_outbox(&mut sink);
        sink.clear();
    }
    // End everything, then let every timer run out: nothing may stay held, and every table
    // (transactions, destinations, kept INVITEs, call timers, the B2BUA's indexes) is empty.
    engine.drain(now);
    for _ in 0..100_000 {
        match engine.next_deadline() {
            Some(at) => {
                now = now.max(at);
                engine.on_timeouts(now);
            }
            None => break,
        }
    }
    assert_eq!(engine.calls(), 0, "drained engine still has calls");
    assert_eq!(limiter.in_use(), 0, "counters held after every call ended");
    let sizes = engine.sizes();
    assert_eq!(
        sizes,
        crate::engine::TableSizes::default(),
        "tables not empty once every timer ran out"
    );
}

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memmem::find(rest, SEPARATOR) {
            Some(i) => {
                let (head, tail) = rest.split_at(i);
                rest = &tail[SEPARATOR.len()..];
                Some(head)
            }
            None => Some(std::mem::take(&mut rest)),
        }
    })
}
