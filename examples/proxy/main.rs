//! A TCP proxy on `IOStream` (see `service.rs`): every client's bytes to the upstream and back, half-closes passed on.
//!
//! ```text
//! cargo run --release --example proxy -- LISTEN UPSTREAM [--idle-timeout SECONDS]
//! ```
//!
//! Prints `listening on ADDR` once bound (port 0 picks a free port). Try it
//! in front of the echo server, with a client that sends, shuts down its
//! write side, and waits for everything back:
//! `cargo run --example echo_stream -- 127.0.0.1:10001`,
//! `cargo run --example proxy -- 127.0.0.1:8000 127.0.0.1:10001`,
//! `printf 'hello\n' | nc -N 127.0.0.1 8000`.

mod service;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use ioloop::{IOLoop, MioPoller};
use service::{Proxy, ProxyConfig};

const USAGE: &str = "usage: proxy LISTEN UPSTREAM [--idle-timeout SECONDS]
  LISTEN                  address to listen on (IP:PORT; port 0: any free port)
  UPSTREAM                address to forward every connection to (IP:PORT)
  --idle-timeout SECONDS  close a pair idle this long (default 60)";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, ProxyConfig), String> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut idle_timeout = None;
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
                idle_timeout = Some(Duration::from_secs(seconds));
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
            value if addrs.len() < 2 => addrs.push(
                value
                    .parse()
                    .map_err(|_| format!("not an address (IP:PORT): {value:?}"))?,
            ),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    let [listen, upstream] = addrs[..] else {
        return Err("expected LISTEN and UPSTREAM".into());
    };
    let mut config = ProxyConfig::new(upstream);
    if let Some(idle_timeout) = idle_timeout {
        config.idle_timeout = idle_timeout;
    }
    Ok((listen, config))
}

fn main() -> ExitCode {
    let (listen, config) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("proxy: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let mut io = IOLoop::new(MioPoller::new()?);
        let proxy = Proxy::bind(&mut io, listen, config)?;
        println!("listening on {}", proxy.local_addr(&io)?);
        io.start()?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("proxy: {error}");
            ExitCode::FAILURE
        }
    }
}
