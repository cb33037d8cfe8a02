//! Fuzz target `stream_reads`: see `ioloop_sim::fuzz::stream_reads`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ioloop_sim::fuzz::stream_reads(data));
