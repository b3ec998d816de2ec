//! Loading a 100 000-extension configuration stays well under a second (release build).

#[path = "fixtures/scale.rs"]
mod scale;

use std::time::{Duration, Instant};

#[test]
fn load_of_100k_extensions_is_fast() {
    let text = scale::generate(&scale::FULL);
    // The machine is shared: the fastest of three runs is the figure least disturbed by neighbours.
    let runs = if cfg!(debug_assertions) { 1 } else { 3 };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let loaded = callgate::config::load(&text).unwrap_or_else(|issues| {
            panic!(
                "generated config refused: {:?}",
                &issues[..issues.len().min(5)]
            )
        });
        times.push(start.elapsed());
        let s = loaded.snapshot.summary();
        assert_eq!(s.extensions, 100_000);
        assert_eq!(s.pbx_extensions, 100);
        assert_eq!(s.users, 10_000);
        assert_eq!(loaded.snapshot.index.extension_by_number.len(), 100_000);
    }
    times.sort();
    eprintln!("load of {} bytes: min/median/max {times:?}", text.len());
    // Timing is only meaningful with optimizations; debug builds still load the whole file.
    if !cfg!(debug_assertions) {
        assert!(times[0] < Duration::from_secs(1), "load took {times:?}");
    }
}
