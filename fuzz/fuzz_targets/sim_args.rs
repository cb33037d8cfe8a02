//! Fuzz target `sim_args`: see `ioloop_sim::fuzz::sim_args`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ioloop_sim::fuzz::sim_args(data));
