//! The benches' echo servers and load generator as a command line, so that
//! system calls per message can be counted from outside (`benches/syscalls.sh`).
//!
//! ```text
//! cargo run --release --example echo_bench -- serve ioloop|ioloop_default|ioloop_nagle|ioloop_stream|raw_mio|tokio [ADDR]
//! cargo run --release --example echo_bench -- load ADDR CONNECTIONS BYTES ROUNDS
//! ```

#[path = "../benches/support/mod.rs"]
mod support;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["serve", kind, rest @ ..] if rest.len() <= 1 => {
            let Some(kind) = support::Kind::parse(kind) else {
                eprintln!("echo_bench: unknown server {kind:?} (ioloop, ioloop_default, ioloop_nagle, ioloop_stream, raw_mio, tokio)");
                return ExitCode::from(2);
            };
            let addr = rest.first().copied().unwrap_or("127.0.0.1:0");
            let Ok(addr) = addr.parse() else {
                eprintln!("echo_bench: not an address: {addr:?}");
                return ExitCode::from(2);
            };
            let server = support::spawn(kind, addr);
            println!("listening on {}", server.addr);
            // Serve until killed.
            loop {
                std::thread::park();
            }
        }
        ["load", addr, connections, bytes, rounds] => {
            let parsed = (
                addr.parse(),
                connections.parse(),
                bytes.parse(),
                rounds.parse::<u64>(),
            );
            let (Ok(addr), Ok(connections), Ok(bytes), Ok(rounds)) = parsed else {
                eprintln!("echo_bench: load ADDR CONNECTIONS BYTES ROUNDS");
                return ExitCode::from(2);
            };
            let mut load = support::Load::connect(addr, connections, bytes);
            let started = std::time::Instant::now();
            let mut messages = 0;
            for _ in 0..rounds {
                match load.round() {
                    Ok(n) => messages += n,
                    Err(e) => {
                        eprintln!("echo_bench: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "messages={messages} messages_per_s={:.0}",
                messages as f64 / seconds
            );
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: echo_bench serve KIND [ADDR] | load ADDR CONNECTIONS BYTES ROUNDS");
            ExitCode::from(2)
        }
    }
}
