//! The key-value example (`examples/kv`) on the simulator, through the public harness: pipelined requests under faults, backpressure, and idle connections closed on virtual time.

#[path = "../../examples/kv/service.rs"]
mod service;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{IOLoop, IOStream, StreamError, TcpClient};
use ioloop_sim::{Done, FaultPreset, Sim, SimPoller, Sweep};
use service::{KvConfig, KvServer, KvStats};

const SERVER: &str = "10.0.0.1:6380";

fn server_addr() -> SocketAddr {
    SERVER.parse().unwrap()
}

/// Install the server; its stats stay readable from the test.
fn kv_host(sim: &mut Sim, config: KvConfig) -> Rc<RefCell<Option<KvServer>>> {
    let server = Rc::new(RefCell::new(None));
    let for_setup = Rc::clone(&server);
    sim.host("kv", "10.0.0.1", move |io| {
        *for_setup.borrow_mut() = Some(KvServer::bind(io, server_addr(), config)?);
        Ok(())
    });
    server
}

fn stats(server: &Rc<RefCell<Option<KvServer>>>) -> KvStats {
    server
        .borrow()
        .as_ref()
        .map(KvServer::stats)
        .unwrap_or_default()
}

/// A batch of requests on the client's own keys, and the answers a
/// correct store gives, drawn from the seed.
fn draw_batch(io: &IOLoop<SimPoller>, client: &str, count: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let random = |bound| io.poller().random_below(bound);
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let (mut requests, mut answers) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let key = format!("{client}-{}", random(4));
        match random(3) {
            0 => {
                let value = "v".repeat(random(300) as usize + 1) + &random(1000).to_string();
                requests.extend(format!("SET {key} {value}\n").bytes());
                model.insert(key, value);
                answers.push(b"OK\n".to_vec());
            }
            1 => {
                requests.extend(format!("GET {key}\n").bytes());
                answers.push(match model.get(&key) {
                    Some(value) => format!("VALUE {value}\n").into_bytes(),
                    None => b"NONE\n".to_vec(),
                });
            }
            _ => {
                requests.extend(format!("DEL {key}\n").bytes());
                answers.push(match model.remove(&key) {
                    Some(_) => b"DELETED\n".to_vec(),
                    None => b"NONE\n".to_vec(),
                });
            }
        }
    }
    (requests, answers)
}

/// Send the whole batch pipelined, then check every answer in order.
fn pipelined_client(
    io: &mut IOLoop<SimPoller>,
    done: Done,
    name: &'static str,
) -> Result<(), ioloop_sim::BoxError> {
    let (requests, answers) = draw_batch(io, name, 40);
    let may_break = io.poller().fault_plan().may_break_connections();
    TcpClient::connect(
        io,
        server_addr(),
        Duration::from_secs(30),
        0usize,
        move |io, stream, connected| {
            if let Err(error) = connected {
                return end(&done, may_break, error);
            }
            if let Err(error) = stream.write(io, &requests) {
                return end(&done, may_break, error);
            }
            check_answers(io, stream, Rc::new(answers), done, may_break);
        },
    );
    Ok(())
}

fn end(done: &Done, may_break: bool, error: StreamError) {
    if may_break {
        done.ok();
    } else {
        done.fail(format!(
            "stream failed with no fault that breaks connections: {error}"
        ));
    }
}

fn check_answers(
    io: &mut IOLoop<SimPoller>,
    stream: &mut IOStream<SimPoller, usize>,
    answers: Rc<Vec<Vec<u8>>>,
    done: Done,
    may_break: bool,
) {
    let index = *stream.state();
    if index == answers.len() {
        stream.close(io);
        return done.ok();
    }
    let _ = stream.read_until(
        io,
        b"\n",
        64 * 1024,
        move |io, stream, answer| match answer {
            Ok(answer) if answer == answers[index] => {
                *stream.state_mut() += 1;
                check_answers(io, stream, answers, done, may_break);
            }
            Ok(answer) => done.fail(format!(
                "answer {index}: got {:?}, expected {:?}",
                String::from_utf8_lossy(&answer),
                String::from_utf8_lossy(&answers[index])
            )),
            Err(error) => end(&done, may_break, error),
        },
    );
}

fn three_clients(sim: &mut Sim) {
    kv_host(sim, KvConfig::default());
    for (name, ip) in [
        ("ann", "10.0.0.2"),
        ("ben", "10.0.0.3"),
        ("cat", "10.0.0.4"),
    ] {
        sim.client(name, ip, move |io, done| pipelined_client(io, done, name));
    }
}

#[test]
fn kv_answers_pipelined_requests_under_faults() {
    Sweep::new("kv_answers_pipelined_requests_under_faults")
        .seeds(0..150)
        .faults(FaultPreset::Swarm)
        .run(three_clients);
}

#[test]
fn kv_answers_pipelined_requests_under_every_fault() {
    Sweep::new("kv_answers_pipelined_requests_under_every_fault")
        .seeds(0..50)
        .faults(FaultPreset::All)
        .run(three_clients);
}

#[test]
fn a_client_that_sends_without_reading_cannot_make_the_server_buffer_without_bound() {
    const GETS: usize = 2_000;
    let value = "x".repeat(1000);
    let answer_bytes = "VALUE ".len() + value.len() + 1;
    let mut sim = Sim::new(11, FaultPreset::None);
    let server = kv_host(&mut sim, KvConfig::default());
    sim.client("greedy", "10.0.0.2", move |io, done| {
        let mut requests = format!("SET k {value}\n").into_bytes();
        for _ in 0..GETS {
            requests.extend_from_slice(b"GET k\n");
        }
        TcpClient::connect(
            io,
            server_addr(),
            Duration::from_secs(5),
            0usize,
            move |io, stream, connected| {
                connected.expect("connect");
                stream.write(io, &requests).expect("write");
                // Read nothing for a second of virtual time, then everything.
                let handle = stream.handle();
                io.call_later(Duration::from_secs(1), move |io| {
                    IOStream::with(io, handle, |io, stream: &mut IOStream<SimPoller, usize>| {
                        let total = answer_bytes * GETS + "OK\n".len();
                        let _ = stream.read_bytes(io, total, false, move |io, stream, all| {
                            match all {
                                Ok(all) if all.len() == total => done.ok(),
                                other => done.fail(format!("{:?}", other.map(|a| a.len()))),
                            }
                            stream.close(io);
                        });
                    });
                });
            },
        );
        Ok(())
    });
    let for_invariant = Rc::clone(&server);
    sim.invariant("answers queued stay near the high-water mark", move |_| {
        let queued = stats(&for_invariant).output_queued_max;
        let bound = KvConfig::default().output_high_water + answer_bytes;
        if queued > bound {
            return Err(format!("{queued} bytes queued (bound {bound})"));
        }
        Ok(())
    });
    sim.run().unwrap();
    let stats = stats(&server);
    assert!(stats.paused > 0, "backpressure never engaged: {stats:?}");
    assert_eq!(stats.requests, GETS as u64 + 1);
}

#[test]
fn an_idle_connection_is_closed_after_the_timeout_on_virtual_time() {
    let mut sim = Sim::new(3, FaultPreset::None);
    let config = KvConfig {
        idle_timeout: Duration::from_secs(30),
        ..KvConfig::default()
    };
    let server = kv_host(&mut sim, config);
    sim.client("idler", "10.0.0.2", |io, done| {
        let started = io.time();
        TcpClient::connect(
            io,
            server_addr(),
            Duration::from_secs(5),
            (),
            move |io, stream, connected| {
                connected.expect("connect");
                // One request at 10 s pushes the deadline to 40 s.
                let handle = stream.handle();
                io.call_later(Duration::from_secs(10), move |io| {
                    IOStream::with(io, handle, |io, stream: &mut IOStream<SimPoller>| {
                        stream.write(io, b"GET a\n").unwrap();
                    });
                });
                let _ = stream.read_until_close(io, move |io, _, all| {
                    let idle_closed_after = io.time() - started;
                    match all {
                        Ok(all)
                            if all == b"NONE\n" && idle_closed_after >= Duration::from_secs(40) =>
                        {
                            done.ok()
                        }
                        other => done.fail(format!("{other:?} after {idle_closed_after:?}")),
                    }
                });
            },
        );
        Ok(())
    });
    sim.run().unwrap();
    assert_eq!(stats(&server).idle_closed, 1);
    assert!(sim.now().since_epoch() < Duration::from_secs(41));
}
