//! Replays the committed fuzz seeds (fuzz/seeds/<target>/) and past crash inputs through the
//! same functions the cargo-fuzz targets call, so stable CI exercises them without nightly.
//! (fuzz/corpus/ is gitignored; fuzz/seeds/ is the committed part.)

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run(&data);
        n += 1;
    }
    n
}

#[test]
fn parse_seeds_replay_without_panic() {
    assert!(replay("parse", callgate::sip::fuzzing::parse) >= 49);
}

#[test]
fn roundtrip_seeds_replay_without_mismatch() {
    assert!(replay("roundtrip", callgate::sip::fuzzing::roundtrip) >= 10);
}

#[test]
fn engine_seeds_replay_and_release_every_counter() {
    assert!(replay("engine", callgate::daemon::fuzzing::engine) >= 10);
}

#[test]
fn parse_seeds_through_the_engine_from_every_source() {
    // Every RFC 4475 message, as sent by the PBX, the TCP PBX, the trunk and a stranger.
    let run = |data: &[u8]| {
        for source in 0u8..4 {
            let mut input = vec![source];
            input.extend_from_slice(data);
            callgate::daemon::fuzzing::engine(&input);
        }
    };
    assert!(replay("parse", run) >= 49);
}
