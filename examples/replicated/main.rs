//! Three replicas of the replicated register and three clients, in one loop on loopback (see `service.rs` for the protocol and `client.rs` for the property the clients check).
//!
//! ```text
//! cargo run --release --example replicated -- [BASE_PORT] [--writes N] [--udp] [--flaw NAME]
//! ```
//!
//! The replicas listen on `127.0.0.1:BASE_PORT` and the two ports after it
//! (default 7101); each client writes its key N times (default 100), and
//! reads the register after each write. With `--udp`, replicas ask each
//! other in datagrams from UDP sockets on the same ports. `--flaw` plants
//! one of the bugs the simulator's tests catch (see `service::Flaw`); on a
//! loopback that loses and reorders nothing they seldom show. Prints what
//! was acknowledged and checked, and fails if a read missed an
//! acknowledged write.

mod client;
mod service;
mod udp_link;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use client::{Client, ClientConfig, History};
use ioloop::{IOLoop, MioPoller};
use service::{Config, Disk, Flaw, Replica, Transport};

const USAGE: &str = "usage: replicated [BASE_PORT] [--writes N] [--udp] [--flaw NAME]
  BASE_PORT   the replicas listen on 127.0.0.1:BASE_PORT and the two ports after it (default 7101)
  --writes N  writes per client, each followed by a read (default 100)
  --udp       replicas ask each other in datagrams (UDP, the same ports) instead of TCP
  --flaw NAME plant a bug: ack-without-backup, ack-before-persist, answer-by-peer (UDP),
              last-store-wins (default none)";

/// The planted bugs by their command-line names.
const FLAWS: [(&str, Flaw); 5] = [
    ("none", Flaw::None),
    ("ack-without-backup", Flaw::AckWithoutBackup),
    ("ack-before-persist", Flaw::AckBeforePersist),
    ("answer-by-peer", Flaw::AnswerByPeer),
    ("last-store-wins", Flaw::LastStoreWins),
];

/// What the command line asks for.
struct Args {
    base_port: u16,
    writes: u64,
    transport: Transport,
    flaw: Flaw,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut base_port, mut writes) = (7101u16, 100u64);
    let mut transport = Transport::Tcp;
    let mut flaw = Flaw::None;
    let mut port_seen = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--udp" => transport = Transport::Udp,
            "--flaw" => {
                let name = args.next().ok_or("--flaw needs a name")?;
                flaw = FLAWS
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map(|&(_, flaw)| flaw)
                    .ok_or_else(|| format!("--flaw: unknown flaw {name:?}"))?;
            }
            "--writes" => {
                let value = args.next().ok_or("--writes needs a value")?;
                writes = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| format!("--writes: expected 1 to 1000000, got {value:?}"))?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
            value if !port_seen => {
                base_port = value
                    .parse()
                    .ok()
                    .filter(|p| (1..=65_533).contains(p))
                    .ok_or_else(|| format!("not a port from 1 to 65533: {value:?}"))?;
                port_seen = true;
            }
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    Ok(Args {
        base_port,
        writes,
        transport,
        flaw,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("replicated: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("replicated: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut io = IOLoop::new(MioPoller::new()?);
    let replicas: [SocketAddr; 3] =
        [0, 1, 2].map(|i| SocketAddr::from(([127, 0, 0, 1], args.base_port + i)));
    for me in 0..replicas.len() {
        let config = Config {
            transport: args.transport,
            flaw: args.flaw,
            ..Config::new(replicas, me)
        };
        Replica::start(&mut io, config, Disk::new())?;
        let peers = match args.transport {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        };
        println!(
            "replica {me} listening on {}; its peers ask over {peers}",
            replicas[me]
        );
    }
    let history = Rc::new(RefCell::new(History::default()));
    let results = Rc::new(RefCell::new(Vec::new()));
    for (index, key) in ["ann", "ben", "cat"].into_iter().enumerate() {
        let results = Rc::clone(&results);
        let next = Cell::new(index);
        let round_robin = Box::new(move |_: &mut IOLoop<MioPoller>| next.replace(next.get() + 1));
        let finished = Box::new(move |_: &mut IOLoop<MioPoller>, result| {
            results.borrow_mut().push((key, result));
        });
        let config = ClientConfig::new(replicas, key, args.writes);
        Client::start(&mut io, config, Rc::clone(&history), round_robin, finished);
    }
    let done = io.run_until(Duration::from_secs(600), |_| results.borrow().len() == 3)?;
    if !done {
        return Err("the clients did not finish within 10 minutes".into());
    }
    for (key, result) in results.borrow().iter() {
        if let Err(why) = result {
            return Err(format!("client {key}: {why}").into());
        }
    }
    let history = history.borrow();
    if let Some(violation) = history.violation() {
        return Err(violation.into());
    }
    println!(
        "{} writes acknowledged; {} reads each saw every write acknowledged before it began",
        history.writes_acknowledged, history.reads_checked
    );
    Ok(())
}
