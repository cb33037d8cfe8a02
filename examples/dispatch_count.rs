//! The dispatch workload of `benches/reactor.rs` as a command, for counting
//! instructions per event under callgrind (steadier than timings):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/dispatch_count ioloop|raw_mio IDLE ROUNDS
//! ```
//! Run it at two round counts and divide the difference by the events.

#[path = "../benches/support/mod.rs"]
mod support;

use std::process::ExitCode;

use support::dispatch::{IoloopDispatch, RawMioDispatch, ACTIVE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, idle, rounds] = args.as_slice() else {
        eprintln!("usage: dispatch_count ioloop|raw_mio IDLE ROUNDS");
        return ExitCode::from(2);
    };
    let (Ok(idle), Ok(rounds)) = (idle.parse::<usize>(), rounds.parse::<usize>()) else {
        eprintln!("dispatch_count: IDLE and ROUNDS are counts");
        return ExitCode::from(2);
    };
    match kind.as_str() {
        "ioloop" => {
            let mut workload = IoloopDispatch::new(idle);
            (0..rounds).for_each(|_| workload.round());
        }
        "raw_mio" => {
            let mut workload = RawMioDispatch::new(idle);
            (0..rounds).for_each(|_| workload.round());
        }
        other => {
            eprintln!("dispatch_count: unknown loop {other:?}");
            return ExitCode::from(2);
        }
    }
    println!("events={}", rounds * ACTIVE);
    ExitCode::SUCCESS
}
