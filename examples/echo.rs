//! The echo server on the real backend.
//!
//! ```text
//! cargo run --release --example echo -- [ADDR] [--read-chunk BYTES] [--nagle] [-v]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:10000`; port 0 picks a free port. Prints
//! `listening on ADDR` once bound. `-v` logs connections (debug level);
//! warnings (accept back-off) are always logged. Stop with Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{IOLoop, MioPoller};

const USAGE: &str = "usage: echo [ADDR] [--read-chunk BYTES] [--nagle] [-v]
  ADDR               address to listen on (default 127.0.0.1:10000; port 0: any free port)
  --read-chunk BYTES size of the first read (default 1024, as Tornado's example)
  --nagle            leave TCP_NODELAY off (an echo in several writes then stalls ~40 ms)
  -v                 log connections";

struct Args {
    addr: SocketAddr,
    config: EchoConfig,
    verbose: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        addr: "127.0.0.1:10000".parse().expect("valid default address"),
        config: EchoConfig::default(),
        verbose: false,
    };
    let mut addr_seen = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "-v" | "--verbose" => parsed.verbose = true,
            "--nagle" => parsed.config.nodelay = false,
            "--read-chunk" => {
                let value = args.next().ok_or("--read-chunk needs a value")?;
                parsed.config.read_chunk_bytes = match value.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(format!(
                            "--read-chunk: not a positive byte count: {value:?}"
                        ))
                    }
                };
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
            addr if !addr_seen => {
                parsed.addr = addr
                    .parse()
                    .map_err(|_| format!("not an address (IP:PORT): {addr:?}"))?;
                addr_seen = true;
            }
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    Ok(parsed)
}

/// Logs to stderr: warnings and errors, plus debug lines with `-v`.
struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{} {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let level = if args.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    let logger = Box::leak(Box::new(StderrLogger { level }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut io = IOLoop::new(MioPoller::new()?);
    let server = EchoServer::bind(&mut io, args.addr, args.config.clone())
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    println!("listening on {}", server.local_addr(&io)?);
    io.start()?;
    Ok(())
}
