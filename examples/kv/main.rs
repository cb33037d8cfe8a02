//! A line-protocol key-value server on `IOStream` (see `service.rs` for the protocol).
//!
//! ```text
//! cargo run --release --example kv -- [ADDR] [--idle-timeout SECONDS]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:6380`; port 0 picks a free port. Prints
//! `listening on ADDR` once bound. Try `printf 'SET a 1\nGET a\n' | nc -q1 127.0.0.1 6380`.

mod service;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use ioloop::{IOLoop, MioPoller};
use service::{KvConfig, KvServer};

const USAGE: &str = "usage: kv [ADDR] [--idle-timeout SECONDS]
  ADDR                    address to listen on (default 127.0.0.1:6380; port 0: any free port)
  --idle-timeout SECONDS  close connections idle this long (default 60)";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, KvConfig), String> {
    let mut addr: SocketAddr = "127.0.0.1:6380".parse().expect("valid default");
    let mut config = KvConfig::default();
    let mut addr_seen = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--idle-timeout" => {
                let value = args.next().ok_or("--idle-timeout needs a value")?;
                let seconds = value
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| {
                        format!("--idle-timeout: expected 1 to 86400 seconds, got {value:?}")
                    })?;
                config.idle_timeout = Duration::from_secs(seconds);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
            value if !addr_seen => {
                addr = value
                    .parse()
                    .map_err(|_| format!("not an address (IP:PORT): {value:?}"))?;
                addr_seen = true;
            }
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    Ok((addr, config))
}

fn main() -> ExitCode {
    let (addr, config) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("kv: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let mut io = IOLoop::new(MioPoller::new()?);
        let server = KvServer::bind(&mut io, addr, config)?;
        println!("listening on {}", server.local_addr(&io)?);
        io.start()?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kv: {error}");
            ExitCode::FAILURE
        }
    }
}
