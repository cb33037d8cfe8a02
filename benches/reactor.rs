//! The reactor's own costs: dispatch per ready fd (against raw mio, with 10
//! to 10,000 idle fds registered), timers, and cross-thread callbacks.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ioloop::{Events, Fd, IOLoop, MioPoller};
use mio::unix::SourceFd;

/// Fds made ready per round.
const ACTIVE: usize = 100;

/// `ACTIVE` socket pairs (ours non-blocking) and `idle` registered-never-ready
/// UDP sockets.
struct Fds {
    ours: Vec<UnixStream>,
    peers: Vec<UnixStream>,
    idle: Vec<UdpSocket>,
}

impl Fds {
    fn new(idle: usize) -> Fds {
        let (ours, peers) = (0..ACTIVE)
            .map(|_| {
                let (a, b) = UnixStream::pair().unwrap();
                a.set_nonblocking(true).unwrap();
                (a, b)
            })
            .unzip();
        let idle = (0..idle)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        Fds { ours, peers, idle }
    }

    /// Make every active fd readable.
    fn poke(&mut self) {
        for peer in &mut self.peers {
            peer.write_all(b"x").unwrap();
        }
    }
}

/// Read until `WouldBlock`, as both loops do.
fn drain(mut stream: &UnixStream) -> usize {
    let mut buf = [0u8; 64];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => total += n,
            _ => return total,
        }
    }
}

/// The fds, a loop watching all of them, and the count of handled events.
fn dispatch_ioloop(idle: usize) -> (Fds, IOLoop<MioPoller>, Rc<Cell<usize>>) {
    let fds = Fds::new(idle);
    let mut io = IOLoop::new(MioPoller::new().unwrap());
    let handled = Rc::new(Cell::new(0usize));
    for socket in &fds.idle {
        io.add_handler(Fd(socket.as_raw_fd()), |_, _, _| {}, Events::READ)
            .unwrap();
    }
    for stream in &fds.ours {
        let stream = stream.try_clone().unwrap();
        let counter = Rc::clone(&handled);
        io.add_handler(
            Fd(stream.as_raw_fd()),
            move |io, fd, _| {
                drain(&stream);
                // Our own read bypassed the loop: tell it the fd is drained.
                io.clear_readiness(fd, Events::READ);
                counter.set(counter.get() + 1);
            },
            Events::READ,
        )
        .unwrap();
    }
    (fds, io, handled)
}

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(ACTIVE as u64));
    group.sample_size(30);
    for idle in [10, 1_000, 10_000] {
        let (mut fds, mut io, handled) = dispatch_ioloop(idle);
        group.bench_with_input(BenchmarkId::new("ioloop", idle), &idle, |b, _| {
            b.iter(|| {
                fds.poke();
                handled.set(0);
                while handled.get() < ACTIVE {
                    io.run_once(Some(Duration::from_secs(1))).unwrap();
                }
            })
        });
        drop((io, fds));

        let mut fds = Fds::new(idle);
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(1024);
        for (index, socket) in fds.idle.iter().enumerate() {
            let raw = socket.as_raw_fd();
            poll.registry()
                .register(
                    &mut SourceFd(&raw),
                    mio::Token(ACTIVE + index),
                    mio::Interest::READABLE,
                )
                .unwrap();
        }
        for (index, stream) in fds.ours.iter().enumerate() {
            let raw = stream.as_raw_fd();
            poll.registry()
                .register(
                    &mut SourceFd(&raw),
                    mio::Token(index),
                    mio::Interest::READABLE,
                )
                .unwrap();
        }
        group.bench_with_input(BenchmarkId::new("raw_mio", idle), &idle, |b, _| {
            b.iter(|| {
                fds.poke();
                let mut handled = 0;
                while handled < ACTIVE {
                    poll.poll(&mut events, Some(Duration::from_secs(1)))
                        .unwrap();
                    for event in events.iter() {
                        if event.token().0 < ACTIVE {
                            drain(&fds.ours[event.token().0]);
                            handled += 1;
                        }
                    }
                }
            })
        });
    }
    group.finish();
}

fn timers(c: &mut Criterion) {
    let mut group = c.benchmark_group("timers");
    for count in [1_000u64, 100_000] {
        group.throughput(Throughput::Elements(count));
        let mut io = IOLoop::new(MioPoller::new().unwrap());
        let mut handles = Vec::with_capacity(count as usize);
        group.bench_with_input(
            BenchmarkId::new("add_cancel", count),
            &count,
            |b, &count| {
                b.iter(|| {
                    for i in 0..count {
                        handles.push(io.call_later(Duration::from_secs(1_000 + i % 97), |_| {}));
                    }
                    for handle in handles.drain(..) {
                        io.remove_timeout(handle);
                    }
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("fire_in_order", count),
            &count,
            |b, &count| {
                b.iter_batched(
                    || {
                        let mut io = IOLoop::new(MioPoller::new().unwrap());
                        let fired = Rc::new(Cell::new(0u64));
                        let now = io.time();
                        for i in 0..count {
                            let fired = Rc::clone(&fired);
                            // Deadlines already past, out of order, with ties.
                            let deadline = now
                                .saturating_duration_since(ioloop::Instant::ZERO)
                                .saturating_sub(Duration::from_nanos((i * 7_919) % 1_000));
                            io.call_at(ioloop::Instant::from_epoch(deadline), move |_| {
                                fired.set(fired.get() + 1)
                            });
                        }
                        (io, fired)
                    },
                    |(mut io, fired)| {
                        io.run_once(Some(Duration::ZERO)).unwrap();
                        assert_eq!(fired.get(), count);
                        io
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    group.finish();
}

fn callbacks(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_thread_callback");
    const COUNT: u64 = 10_000;
    group.throughput(Throughput::Elements(COUNT));
    group.sample_size(20);
    group.bench_function("throughput", |b| {
        b.iter_custom(|rounds| {
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let mut io = IOLoop::new(MioPoller::new().unwrap());
                let handle = io.handle();
                let started = Instant::now();
                let sender = std::thread::spawn(move || {
                    for i in 0..COUNT {
                        handle
                            .add_callback(move |io| {
                                if i == COUNT - 1 {
                                    io.stop();
                                }
                            })
                            .unwrap();
                    }
                });
                io.start().unwrap();
                total += started.elapsed();
                sender.join().unwrap();
            }
            total
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("wake_up_round_trip", |b| {
        let (reply_tx, reply_rx) = mpsc::channel::<()>();
        let (handle_tx, handle_rx) = mpsc::channel();
        let looper = std::thread::spawn(move || {
            let mut io = IOLoop::new(MioPoller::new().unwrap());
            handle_tx.send(io.handle()).unwrap();
            io.start().unwrap();
        });
        let handle = handle_rx.recv().unwrap();
        b.iter(|| {
            let reply = reply_tx.clone();
            handle
                .add_callback(move |_| {
                    let _ = reply.send(());
                })
                .unwrap();
            reply_rx.recv().unwrap();
        });
        handle.stop();
        looper.join().unwrap();
    });
    group.finish();
}

criterion_group!(benches, dispatch, timers, callbacks);
criterion_main!(benches);
