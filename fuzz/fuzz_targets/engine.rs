#![no_main]
//! Bytes in -> whatever the engine does (transactions, B2BUA, limiter): never a panic, and no
//! counter left held once every call has ended.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| callgate::daemon::fuzzing::engine(data));
