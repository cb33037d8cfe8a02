//! Round-trip latency over loopback, one connection, request/response: p50
//! and p99 of each round trip, for ioloop's shipped `EchoServer` defaults
//! (1 KiB reads, `TCP_NODELAY`), the same without `TCP_NODELAY` (the
//! ~44 ms Nagle/delayed-ACK stall), ioloop with 64 KiB reads, a raw mio
//! loop and tokio `current_thread`, side by side in one run.
//!
//! ```text
//! cargo bench --bench latency [-- ROUNDS]
//! ```
//!
//! Not criterion: a throughput mean hides a stall, a percentile shows it.
//! Every echoed byte is checked. The client sets `TCP_NODELAY` on its own
//! socket, so that only the server is measured.

mod support;

use std::time::{Duration, Instant};

use support::{spawn, Kind, Load};

/// Round trips measured per server and size (after `WARM_UP_ROUNDS`).
const ROUNDS_DEFAULT: usize = 2_000;
/// Round trips for the server without `TCP_NODELAY`: up to ~44 ms each.
const ROUNDS_STALLING: usize = 40;
const WARM_UP_ROUNDS: usize = 50;

fn main() {
    // `cargo bench` passes `--bench`; a bare number sets the rounds.
    let rounds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(ROUNDS_DEFAULT);
    println!(
        "{:<8} {:<15} {:>7} {:>11} {:>11} {:>10} {:>10}",
        "size", "server", "rounds", "p50_us", "p99_us", "p50/mio", "p99/mio"
    );
    for size in [64, 1024, 4 * 1024, 16 * 1024, 64 * 1024, 256 * 1024] {
        let mut rows = Vec::new();
        for kind in Kind::EVERY {
            let rounds = if kind == Kind::IoloopNagle && size > 1024 {
                ROUNDS_STALLING
            } else {
                rounds
            };
            rows.push((kind, rounds, measure(kind, size, rounds)));
        }
        let (_, _, mio) = rows
            .iter()
            .find(|(kind, _, _)| *kind == Kind::RawMio)
            .copied()
            .expect("raw mio measured");
        for (kind, rounds, (p50, p99)) in rows {
            println!(
                "{:<8} {:<15} {:>7} {:>11.1} {:>11.1} {:>10.2} {:>10.2}",
                size_name(size),
                kind.name(),
                rounds,
                micros(p50),
                micros(p99),
                micros(p50) / micros(mio.0),
                micros(p99) / micros(mio.1),
            );
        }
    }
}

/// p50 and p99 round trip of `rounds` `size`-byte messages to a fresh
/// server of `kind`.
fn measure(kind: Kind, size: usize, rounds: usize) -> (Duration, Duration) {
    let server = spawn(kind, "127.0.0.1:0".parse().unwrap());
    let mut load = Load::connect(server.addr, 1, size);
    for _ in 0..WARM_UP_ROUNDS.min(rounds) {
        load.round().expect("echo round");
    }
    let mut round_trips: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            load.round().expect("echo round");
            started.elapsed()
        })
        .collect();
    round_trips.sort_unstable();
    (percentile(&round_trips, 50), percentile(&round_trips, 99))
}

/// The `p`-th percentile of sorted samples (nearest rank).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}
