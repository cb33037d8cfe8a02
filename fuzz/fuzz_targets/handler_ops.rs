//! Fuzz target `handler_ops`: see `ioloop_sim::fuzz::handler_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ioloop_sim::fuzz::handler_ops(data));
