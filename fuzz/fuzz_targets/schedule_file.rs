//! Fuzz target `schedule_file`: see `ioloop_sim::fuzz::schedule_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ioloop_sim::fuzz::schedule_file(data));
