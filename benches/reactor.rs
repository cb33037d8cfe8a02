//! The reactor's own costs: dispatch per ready fd (against raw mio, with 10
//! to 10,000 idle fds registered), timers, cross-thread callbacks, and
//! cross-thread channels (against tokio's).

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ioloop::{IOLoop, MioPoller};
use support::dispatch::{IoloopDispatch, RawMioDispatch, ACTIVE};

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(ACTIVE as u64));
    group.sample_size(30);
    for idle in [10, 1_000, 10_000] {
        let mut ioloop = IoloopDispatch::new(idle);
        group.bench_with_input(BenchmarkId::new("ioloop", idle), &idle, |b, _| {
            b.iter(|| ioloop.round())
        });
        drop(ioloop);
        let mut raw = RawMioDispatch::new(idle);
        group.bench_with_input(BenchmarkId::new("raw_mio", idle), &idle, |b, _| {
            b.iter(|| raw.round())
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

/// Messages from another thread to a handler on the loop: `IOLoop::channel`
/// against tokio's unbounded channel into a `current_thread` runtime (the
/// reference), in the same run.
fn channels(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_thread_channel");
    const COUNT: u64 = 10_000;
    group.throughput(Throughput::Elements(COUNT));
    group.sample_size(20);
    group.bench_function("ioloop_throughput", |b| {
        b.iter_custom(|rounds| {
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let mut io = IOLoop::new(MioPoller::new().unwrap());
                let received = Rc::new(Cell::new(0u64));
                let seen = Rc::clone(&received);
                let sender = io.channel(move |io, i: u64| {
                    seen.set(seen.get() + 1);
                    if i == COUNT - 1 {
                        io.stop();
                    }
                });
                let started = Instant::now();
                let thread = std::thread::spawn(move || {
                    for i in 0..COUNT {
                        sender.send(i).unwrap();
                    }
                });
                io.start().unwrap();
                total += started.elapsed();
                thread.join().unwrap();
                assert_eq!(received.get(), COUNT);
            }
            total
        })
    });
    group.bench_function("tokio_throughput", |b| {
        b.iter_custom(|rounds| {
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .unwrap();
                let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<u64>();
                let started = Instant::now();
                let thread = std::thread::spawn(move || {
                    for i in 0..COUNT {
                        sender.send(i).unwrap();
                    }
                });
                let received = runtime.block_on(async move {
                    let mut received = 0u64;
                    while let Some(i) = receiver.recv().await {
                        received += 1;
                        if i == COUNT - 1 {
                            break;
                        }
                    }
                    received
                });
                total += started.elapsed();
                thread.join().unwrap();
                assert_eq!(received, COUNT);
            }
            total
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("ioloop_wake_up_round_trip", |b| {
        let (reply_tx, reply_rx) = mpsc::channel::<()>();
        let (sender_tx, sender_rx) = mpsc::channel();
        let looper = std::thread::spawn(move || {
            let mut io = IOLoop::new(MioPoller::new().unwrap());
            let sender = io.channel(move |io, stop: bool| {
                if stop {
                    io.stop();
                } else {
                    let _ = reply_tx.send(());
                }
            });
            sender_tx.send(sender).unwrap();
            io.start().unwrap();
        });
        let sender = sender_rx.recv().unwrap();
        b.iter(|| {
            sender.send(false).unwrap();
            reply_rx.recv().unwrap();
        });
        sender.send(true).unwrap();
        looper.join().unwrap();
    });
    group.bench_function("tokio_wake_up_round_trip", |b| {
        let (reply_tx, reply_rx) = mpsc::channel::<()>();
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<bool>();
        let looper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            runtime.block_on(async move {
                while let Some(false) = receiver.recv().await {
                    let _ = reply_tx.send(());
                }
            });
        });
        b.iter(|| {
            sender.send(false).unwrap();
            reply_rx.recv().unwrap();
        });
        sender.send(true).unwrap();
        looper.join().unwrap();
    });
    group.finish();
}

criterion_group!(benches, dispatch, timers, callbacks, channels);
criterion_main!(benches);
