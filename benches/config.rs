//! `config::load` of a 100 000-extension file, with TOML parsing alone (into `serde::de::IgnoredAny`)
//! as the reference floor in the same group: the ratio is what validation and resolving add.

#[path = "../tests/fixtures/scale.rs"]
mod scale;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn load(c: &mut Criterion) {
    let text = scale::generate(&scale::FULL);
    let mut group = c.benchmark_group("config_100k_extensions");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("toml_parse_floor", |b| {
        b.iter(|| toml::from_str::<serde::de::IgnoredAny>(&text).expect("valid TOML"))
    });
    group.bench_function("load", |b| {
        b.iter(|| callgate::config::load(&text).expect("valid config"))
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
