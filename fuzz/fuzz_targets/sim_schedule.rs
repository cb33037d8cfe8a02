//! Fuzz target `sim_schedule`: see `ioloop_sim::fuzz::sim_schedule`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ioloop_sim::fuzz::sim_schedule(data));
