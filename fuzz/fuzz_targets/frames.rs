//! Feeds arbitrary bytes to the frame decoder and, for every frame it yields,
//! to the Hello, request-head, response-status and GoAway parsers and the
//! payload decoder (as several types, including recursive ones). Hostile
//! input must give errors: a panic, an abort (a huge allocation, a stack
//! overflow) or a hang is a bug.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rpc::protocol::fuzz_decode(data);
});
