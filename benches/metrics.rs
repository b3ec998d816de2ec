//! Cost of recording a metric on the hot path, next to its floor: one `AtomicU64::fetch_add`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use callgate::admin::{Direction, Metrics, Outcome};
use criterion::{criterion_group, criterion_main, Criterion};

fn record(c: &mut Criterion) {
    let m = Metrics::new();
    let floor = AtomicU64::new(0);
    let mut g = c.benchmark_group("metrics");
    g.bench_function("floor_atomic_fetch_add", |b| {
        b.iter(|| floor.fetch_add(1, Ordering::Relaxed))
    });
    g.bench_function("sip_request_invite", |b| {
        b.iter(|| m.sip_request(black_box("INVITE"), Direction::In))
    });
    g.bench_function("sip_request_unknown_method", |b| {
        b.iter(|| m.sip_request(black_box("FOOBAR"), Direction::In))
    });
    g.bench_function("sip_response", |b| {
        b.iter(|| m.sip_response(black_box(486), Direction::Out))
    });
    g.bench_function("call_started_and_ended", |b| {
        b.iter(|| {
            m.call_started();
            m.call_ended(black_box(Outcome::Answered));
        })
    });
    g.bench_function("rejection_existing_series", |b| {
        b.iter(|| m.rejection("organization", black_box("acme"), "public"))
    });
    g.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
