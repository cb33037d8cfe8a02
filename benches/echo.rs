//! Echo throughput over loopback: ioloop against a raw mio loop and tokio
//! `current_thread`, side by side, at 1, 16 and 256 connections and 64 B
//! and 16 KiB messages, ping-pong, every echoed byte checked. ioloop runs
//! twice: with 64 KiB reads like the others (`ioloop`), and as shipped
//! (`ioloop_default`: `EchoConfig::default()`, 1 KiB reads, what
//! `examples/echo.rs` runs).

mod support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::{spawn, Kind, Load};

fn echo(c: &mut Criterion) {
    for (connections, size) in [
        (1, 64),
        (16, 64),
        (256, 64),
        (1, 16 * 1024),
        (16, 16 * 1024),
        (256, 16 * 1024),
    ] {
        let mut group = c.benchmark_group(format!("echo/{connections}conn/{size}B"));
        group.throughput(Throughput::Elements(connections as u64));
        group.sample_size(20);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        for kind in Kind::ALL {
            let server = spawn(kind, "127.0.0.1:0".parse().unwrap());
            let mut load = Load::connect(server.addr, connections, size);
            group.bench_function(BenchmarkId::from_parameter(kind.name()), |b| {
                b.iter_custom(|rounds| {
                    let started = Instant::now();
                    for _ in 0..rounds {
                        load.round().expect("echo round");
                    }
                    started.elapsed()
                })
            });
            drop(load);
            drop(server);
        }
        group.finish();
    }
}

criterion_group!(benches, echo);
criterion_main!(benches);
