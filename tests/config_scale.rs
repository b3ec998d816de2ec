//! Loading a 100 000-extension configuration stays well under a second (release build).

#[path = "fixtures/scale.rs"]
mod scale;

use std::time::Instant;

#[test]
fn load_of_100k_extensions_is_fast() {
    let text = scale::generate(&scale::FULL);
    let start = Instant::now();
    let loaded = callgate::config::load(&text).unwrap_or_else(|issues| {
        panic!(
            "generated config refused: {:?}",
            &issues[..issues.len().min(5)]
        )
    });
    let elapsed = start.elapsed();
    let s = loaded.snapshot.summary();
    assert_eq!(s.extensions, 100_000);
    assert_eq!(s.pbx_extensions, 100);
    assert_eq!(s.users, 10_000);
    assert_eq!(loaded.snapshot.index.extension_by_number.len(), 100_000);
    eprintln!("load of {} bytes: {elapsed:?} ({s})", text.len());
    // Timing is only meaningful with optimizations; debug builds still load the whole file.
    if !cfg!(debug_assertions) {
        assert!(elapsed.as_secs_f64() < 1.0, "load took {elapsed:?}");
    }
}
