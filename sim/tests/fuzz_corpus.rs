//! Every file of every fuzz corpus (`fuzz/corpus/<target>/`), replayed
//! through the same functions the cargo-fuzz targets call, on stable: a
//! fuzz finding copied into a corpus is a regression test from then on.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(result.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn handler_ops_corpus() {
    replay("handler_ops", ioloop_sim::fuzz::handler_ops);
}

#[test]
fn sim_schedule_corpus() {
    replay("sim_schedule", ioloop_sim::fuzz::sim_schedule);
}

#[cfg(feature = "cli")]
#[test]
fn sim_args_corpus() {
    replay("sim_args", ioloop_sim::fuzz::sim_args);
}

#[test]
fn stream_reads_corpus() {
    replay("stream_reads", ioloop_sim::fuzz::stream_reads);
}

#[test]
fn schedule_file_corpus() {
    replay("schedule_file", ioloop_sim::fuzz::schedule_file);
}

/// Seeded choices through the stream-read model, on stable: a quick sweep
/// of what the fuzz target explores for longer.
#[test]
fn stream_reads_on_seeded_choices() {
    for seed in 0..300 {
        ioloop_sim::fuzz::stream_reads_seeded(seed);
    }
}
