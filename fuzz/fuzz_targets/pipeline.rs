//! The whole pipeline, one frame at a time, against the golden snapshot and a pipeline that
//! holds a few NAT flows: no panic, books balance, and every verdict passes the oracle of
//! `fulcrum_fuzz` (forward only VIP traffic and NAT replies, well-formed output, ...).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fulcrum_fuzz::run_frame(data);
});
