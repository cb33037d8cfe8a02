//! The proxy example (`examples/proxy`) on the simulator, through the public harness: clients that send, shut down their write side and expect every byte back through the proxy and an echo upstream, then end of stream — under swarm faults.

#[path = "../../examples/proxy/service.rs"]
mod service;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{IOLoop, IOStream, StreamError, TcpClient};
use ioloop_sim::{BoxError, Done, FaultPreset, Sim, SimPoller, Sweep};
use service::{Proxy, ProxyConfig, ProxyStats};

const PROXY: &str = "10.0.0.1:8000";
const UPSTREAM: &str = "10.0.0.2:7";
const CLIENTS: usize = 3;
const MESSAGE_BYTES_MAX: u64 = 200_000;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

// Clients that got every byte back, and those a fault cut short: a sweep
// where most are cut short would test little. Per thread: the sweep runs
// its seeds on the test's thread.
thread_local! {
    static WHOLE: Cell<u64> = const { Cell::new(0) };
    static CUT_SHORT: Cell<u64> = const { Cell::new(0) };
    /// Some side of some pair stopped reading for backpressure.
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

/// The proxy's stats, as its host's setup made them.
type StatsSlot = Rc<RefCell<Option<Proxy>>>;

fn stats(slot: &StatsSlot) -> Option<ProxyStats> {
    slot.borrow().as_ref().map(Proxy::stats)
}

/// An echo upstream, the proxy in front of it, and `CLIENTS` clients.
fn proxied_echo(sim: &mut Sim) {
    sim.host("upstream", "10.0.0.2", |io| {
        EchoServer::bind(io, addr(UPSTREAM), EchoConfig::default())?;
        Ok(())
    });
    let config = ProxyConfig {
        // Longer than any healing network fault: a connect that times out
        // or a pair closed for idling is a bug, not the nemesis.
        connect_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        ..ProxyConfig::new(addr(UPSTREAM))
    };
    let slot: StatsSlot = Rc::default();
    let for_setup = Rc::clone(&slot);
    sim.host("proxy", "10.0.0.1", move |io| {
        *for_setup.borrow_mut() = Some(Proxy::bind(io, addr(PROXY), config)?);
        Ok(())
    });
    let may_break = sim.may_break_connections();
    for index in 0..CLIENTS {
        let ip = format!("10.0.1.{}", index + 1);
        sim.client(&format!("client{index}"), &ip, move |io, done| {
            send_then_read(io, done, may_break)
        });
    }
    // The proxy holds its listener and one fd per open stream, no more:
    // every pair it let go of is closed on both sides.
    let for_fds = Rc::clone(&slot);
    sim.invariant("one fd per open stream", move |sim| {
        let Some(stats) = stats(&for_fds) else {
            return Ok(());
        };
        if !sim.is_up("proxy") {
            return Ok(());
        }
        let fds = sim.open_fds("proxy").len();
        if fds != 1 + stats.streams_open {
            return Err(format!("{fds} fds for {} open streams", stats.streams_open));
        }
        Ok(())
    });
    sim.invariant("bounded buffers", move |_| match stats(&slot) {
        Some(stats) if stats.buffered_max > bound() => Err(format!(
            "{} bytes waited on one side (bound {})",
            stats.buffered_max,
            bound()
        )),
        Some(stats) => {
            if stats.paused > 0 {
                PAUSED.with(|paused| paused.set(true));
            }
            Ok(())
        }
        None => Ok(()),
    });
}

/// The most bytes a side may hold: its high-water mark, and one read more.
fn bound() -> usize {
    let config = ProxyConfig::new(addr(UPSTREAM));
    config.write_high_water_bytes + config.read_chunk_bytes
}

/// Send a seeded message, shut down the write side, read (slowly, on some
/// seeds: backpressure all the way to the upstream) until end of stream,
/// and check that every byte came back.
fn send_then_read(io: &mut IOLoop<SimPoller>, done: Done, may_break: bool) -> Result<(), BoxError> {
    let len = 1 + io.poller().random_below(MESSAGE_BYTES_MAX) as usize;
    let salt = io.poller().random_below(256) as u8;
    let slow = io.poller().random_below(2) == 0;
    let message: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect();
    let received = Rc::new(RefCell::new(Vec::new()));
    let for_describe = Rc::clone(&received);
    done.describe_with(move || format!("received {} of {len} bytes", for_describe.borrow().len()));
    TcpClient::connect(
        io,
        addr(PROXY),
        Duration::from_secs(30),
        (),
        move |io, stream, connected| {
            let check = Check {
                message: Rc::new(message),
                received,
                done,
                may_break,
                slow,
            };
            if let Err(error) = connected {
                return check.end(Err(error));
            }
            // However it ends, the close callback reports it: a paused
            // reader may find the stream closed (both sides done) when it
            // comes back.
            let for_close = check.clone();
            stream.set_close_callback(move |_, stream| {
                for_close.end(stream.error().cloned().map_or(Ok(()), Err))
            });
            let sent = stream
                .write(io, &check.message)
                .and_then(|()| stream.shutdown_write(io));
            match sent {
                Ok(()) => read_back(io, stream, check),
                Err(_) => stream.close(io),
            }
        },
    );
    Ok(())
}

/// One client's message, what came back of it, and how to report.
#[derive(Clone)]
struct Check {
    message: Rc<Vec<u8>>,
    received: Rc<RefCell<Vec<u8>>>,
    done: Done,
    may_break: bool,
    slow: bool,
}

impl Check {
    /// The stream ended: at end of stream (`Ok`) or with an error.
    fn end(&self, how: Result<(), StreamError>) {
        let received = self.received.borrow();
        let whole = how.is_ok() && received.len() == self.message.len();
        let tally = if whole { &WHOLE } else { &CUT_SHORT };
        tally.with(|count| count.set(count.get() + 1));
        let result = match how {
            _ if !self.message.starts_with(&received) => Err(format!(
                "{} bytes back are not a prefix of the {} sent",
                received.len(),
                self.message.len()
            )),
            _ if whole || self.may_break => Ok(()),
            Ok(()) => Err(format!(
                "end of stream after {} of {} bytes",
                received.len(),
                self.message.len()
            )),
            Err(error) => Err(format!(
                "{error} after {} of {} bytes, with no fault that breaks connections",
                received.len(),
                self.message.len()
            )),
        };
        self.done.finish(result);
    }
}

/// Read what comes back (with a nap between reads when slow); the close
/// callback judges it.
fn read_back(io: &mut IOLoop<SimPoller>, stream: &mut IOStream<SimPoller>, check: Check) {
    let _ = stream.read_bytes(io, 4096, true, move |io, stream, read| match read {
        Ok(data) => {
            check.received.borrow_mut().extend_from_slice(&data);
            if !check.slow {
                return read_back(io, stream, check);
            }
            let handle = stream.handle();
            io.call_later(Duration::from_millis(1), move |io| {
                IOStream::with(io, handle, |io, stream: &mut IOStream<SimPoller>| {
                    read_back(io, stream, check)
                });
            });
        }
        // End of stream: the stream closes after this callback.
        Err(StreamError::Closed { unread }) => {
            check.received.borrow_mut().extend_from_slice(&unread);
        }
        Err(_) => {}
    });
}

#[test]
fn every_byte_comes_back_through_the_proxy_after_a_half_close() {
    WHOLE.with(|count| count.set(0));
    CUT_SHORT.with(|count| count.set(0));
    PAUSED.with(|paused| paused.set(false));
    let summary = Sweep::new("every_byte_comes_back_through_the_proxy_after_a_half_close")
        .seeds(0..300)
        .faults(FaultPreset::Swarm)
        .liveness_after(Duration::from_secs(2))
        .run(proxied_echo);
    // What the sweep as written must show; a replay (`IOLOOP_SIM_SEED`),
    // another range or a shard, runs other seeds, and is judged by its
    // runs alone.
    if summary.seeds != (0..300) || summary.ran != 300 {
        return;
    }
    let (whole, cut_short) = (WHOLE.with(Cell::get), CUT_SHORT.with(Cell::get));
    assert!(
        whole >= 4 * cut_short,
        "{whole} clients got everything back, {cut_short} were cut short: too few whole runs to test much"
    );
    assert!(PAUSED.with(Cell::get), "backpressure never engaged");
}
