//! Parse, serialize (unedited and edited), parse again, compare.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| callgate::sip::fuzzing::roundtrip(data));
