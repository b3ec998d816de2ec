//! Arbitrary bytes into `parse_datagram` and `frame_stream`: must return, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| callgate::sip::fuzzing::parse(data));
