//! The whole pipeline over a sequence of frames: two workers with tiny flow tables (floods
//! evict), a clock that moves (flows expire), NAT hand-offs delivered to their owner. The
//! input format is in `fulcrum_fuzz::records`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fulcrum_fuzz::run_sequence(data);
});
