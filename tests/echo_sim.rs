//! The echo server under a client that stops reading, on the simulator:
//! its queue stays bounded, and while everything waits on the client, and
//! once everything is echoed, no handler of the server is due — it waits
//! instead of spinning. On virtual time "while everything waits" is a state
//! of the run (no byte moved for many rounds), not a timing window.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{Events, IOLoop};
use ioloop_sim::check::describe_pending_readiness;
use ioloop_sim::scenario::planted::{Bug, PlantedServer};
use ioloop_sim::{FaultPreset, SimNet, SimPoller};

const MESSAGE_BYTES: usize = 1 << 20;
const HIGH_WATER_BYTES: usize = 64 * 1024;
/// Rounds without a byte moved that count as "everything waits".
const IDLE_ROUNDS: u32 = 200;
const ROUNDS_MAX: u32 = 200_000;

/// What the client has sent and received.
#[derive(Default)]
struct Client {
    sent: Cell<usize>,
    received: RefCell<Vec<u8>>,
}

fn pattern(index: usize) -> u8 {
    (index % 251) as u8
}

/// One round: an iteration of each host.
fn step(server: &mut IOLoop<SimPoller>, client: &mut IOLoop<SimPoller>) {
    server.run_once(Some(Duration::from_millis(1))).unwrap();
    client.run_once(Some(Duration::from_millis(1))).unwrap();
}

/// Step until no byte has moved for [`IDLE_ROUNDS`] rounds (of up to 1 ms
/// of virtual time each), checking the server's queue against `bound` on
/// every round.
fn step_until_idle(
    server: &mut IOLoop<SimPoller>,
    client_io: &mut IOLoop<SimPoller>,
    client: &Client,
    queued_bytes: &dyn Fn() -> usize,
    bound: usize,
) -> Result<(), String> {
    let moved = || {
        (
            client.sent.get(),
            client.received.borrow().len(),
            queued_bytes(),
        )
    };
    let mut idle_rounds = 0;
    let mut moved_last = moved();
    for _ in 0..ROUNDS_MAX {
        step(server, client_io);
        if queued_bytes() > bound {
            return Err(format!("the server queues {} bytes", queued_bytes()));
        }
        if moved() == moved_last {
            idle_rounds += 1;
            if idle_rounds == IDLE_ROUNDS {
                return Ok(());
            }
        } else {
            idle_rounds = 0;
            moved_last = moved();
        }
    }
    Err(format!(
        "the run never settled: server [{}] client [{}] queued {}",
        describe_pending_readiness(server),
        describe_pending_readiness(client_io),
        queued_bytes()
    ))
}

/// While everything waits, no server handler may be due.
fn check_waits(what: &str, server: &IOLoop<SimPoller>) -> Result<(), String> {
    let pending = describe_pending_readiness(server);
    if server.has_pending_work() || !pending.is_empty() {
        return Err(format!("{what}: the server spins: {pending}"));
    }
    Ok(())
}

/// Run a server bound by `bind` against a client that sends 1 MiB, stops
/// reading until everything waits, then reads it all back.
fn stalled_reader(
    bind: impl FnOnce(&mut IOLoop<SimPoller>, SocketAddr) -> Box<dyn Fn() -> usize>,
) -> Result<(), String> {
    let net = SimNet::new(0x57a11, FaultPreset::None, false);
    let server_ip: IpAddr = "10.0.0.1".parse().unwrap();
    let server_addr = SocketAddr::new(server_ip, 7);
    let mut server = IOLoop::new(net.host(server_ip));
    let mut client_io = IOLoop::new(net.host("10.0.0.2".parse().unwrap()));
    let queued_bytes = bind(&mut server, server_addr);
    let bound = HIGH_WATER_BYTES + EchoConfig::default().read_chunk_bytes;

    let client = Rc::new(Client::default());
    let fd = client_io.connect(server_addr).unwrap();
    let for_handler = Rc::clone(&client);
    client_io
        .add_handler(
            fd,
            move |io, fd, events| {
                let client = &for_handler;
                if events.contains(Events::WRITE) {
                    while client.sent.get() < MESSAGE_BYTES {
                        let start = client.sent.get();
                        let chunk: Vec<u8> = (start..MESSAGE_BYTES.min(start + 4096))
                            .map(pattern)
                            .collect();
                        match io.write(fd, &chunk) {
                            Ok(n) => client.sent.set(start + n),
                            Err(_) => break,
                        }
                    }
                }
                if events.contains(Events::READ) {
                    let mut buf = [0; 4096];
                    while let Ok(n @ 1..) = io.read(fd, &mut buf) {
                        client.received.borrow_mut().extend_from_slice(&buf[..n]);
                    }
                }
                let interest = io.interest(fd).unwrap_or(Events::empty());
                if client.sent.get() == MESSAGE_BYTES && interest.contains(Events::WRITE) {
                    io.update_handler(fd, interest - Events::WRITE).unwrap();
                }
            },
            Events::WRITE,
        )
        .unwrap();

    // The client does not read: everything comes to wait on it.
    step_until_idle(&mut server, &mut client_io, &client, &*queued_bytes, bound)?;
    if client.received.borrow().len() + queued_bytes() >= MESSAGE_BYTES {
        return Err("the client never stalled the server".into());
    }
    check_waits("stalled", &server)?;

    // The client reads again: everything comes back, then all is quiet.
    let interest = client_io.interest(fd).unwrap();
    client_io
        .update_handler(fd, interest | Events::READ)
        .unwrap();
    step_until_idle(&mut server, &mut client_io, &client, &*queued_bytes, bound)?;
    let received = client.received.borrow();
    if received.len() != MESSAGE_BYTES || received.iter().enumerate().any(|(i, b)| *b != pattern(i))
    {
        return Err(format!(
            "the client got {} bytes, not the echo",
            received.len()
        ));
    }
    check_waits("after the echo", &server)
}

#[test]
fn stalled_reader_is_bounded_and_nothing_spins() {
    stalled_reader(|io, addr| {
        let config = EchoConfig {
            queue_high_water_bytes: HIGH_WATER_BYTES,
            ..EchoConfig::default()
        };
        let server = EchoServer::bind(io, addr, config).unwrap();
        Box::new(move || server.queued_bytes())
    })
    .unwrap();
}

#[test]
fn stalled_reader_check_catches_a_server_that_never_clears_write() {
    let result = stalled_reader(|io, addr| {
        let server = PlantedServer::bind(io, addr, Bug::NeverClearWrite).unwrap();
        Box::new(move || server.queued_bytes())
    });
    let why = result.expect_err("the planted bug went unnoticed");
    // The report names the fd and what it is being called with.
    assert!(why.contains("spins") && why.contains("due WRITE"), "{why}");
}
