//! The location store at scale: memory per registered binding (VmRSS before and after N
//! bindings, N = `BINDINGS`, default 100 000) and the time of a REGISTER's store work (upsert of
//! a refresh) with the store full. Realistic bindings: a 30-byte contact with a NAT'd source,
//! a 40-byte Call-ID, one binding per AoR.
//!
//! `cargo bench --bench registrar`

use std::time::{Duration, Instant};

use callgate::config::model::Transport;
use callgate::registrar::{Aor, Binding, Flow, LocationStore};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn binding(i: u32, now: Instant, cseq: u32) -> (Aor, Binding) {
    let aor = Aor::new("acme.example", &format!("{}", 100_000 + i));
    let b = Binding {
        contact: format!(
            "sip:{}@10.{}.{}.{}:5060",
            100_000 + i,
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ),
        flow: Flow {
            transport: Transport::Udp,
            source: std::net::SocketAddr::from(([198, 51, (i >> 8) as u8, i as u8], 40_000)),
            local: None,
        },
        expires_at: now + Duration::from_secs(3600),
        registered_at: now,
        call_id: format!("{i:08x}-5d1c-4f0e-9a3b-2c7e8d6f1a4b@10.0.0.5"),
        cseq,
        q: None,
    };
    (aor, b)
}

fn main() {
    let n: u32 = std::env::var("BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let now = Instant::now();
    let store = LocationStore::new();
    let before = rss_kib();
    for i in 0..n {
        let (aor, b) = binding(i, now, 1);
        let _ = store.upsert(aor, b, 5, now);
    }
    let after = rss_kib();
    let per = (after.saturating_sub(before)) * 1024 / u64::from(n.max(1));
    println!("{n} bindings: VmRSS {before} kB -> {after} kB: {per} B per binding");
    let started = Instant::now();
    for i in 0..n {
        let (aor, b) = binding(i, now, 2);
        let _ = store.upsert(aor, b, 5, now);
    }
    let each = started.elapsed() / n.max(1);
    println!("refresh (upsert over a full store, building the binding included): {each:?} each");
}
