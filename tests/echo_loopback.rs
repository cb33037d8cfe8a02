//! The echo server on the real backend, driven over loopback by outside
//! clients: sizes from 1 byte to 4 MiB, 1,000 connections, half-close,
//! reset, a client that stalls, and no fd leaked.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer, EchoStats};
use ioloop::{IOLoop, LoopHandle, MioPoller, PeriodicCallback};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The fd-count test needs the process to itself: run these one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the server thread publishes every few milliseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    connections: usize,
    queued_bytes: usize,
    /// The most bytes ever queued, over every snapshot so far: the bound
    /// holds at all times, not only when a test looks.
    queued_bytes_max: usize,
    handlers: usize,
    stats: EchoStats,
}

/// The latest snapshot, and a condition variable notified on each.
type Published = Arc<(Mutex<Snapshot>, Condvar)>;

/// An echo server running in its own thread.
struct Server {
    addr: SocketAddr,
    handle: LoopHandle<MioPoller>,
    published: Published,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(config: EchoConfig) -> Server {
        let published: Published = Arc::default();
        let for_thread = Arc::clone(&published);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut io = IOLoop::new(MioPoller::new().unwrap());
            let server = EchoServer::bind(&mut io, "127.0.0.1:0".parse().unwrap(), config).unwrap();
            let addr = server.local_addr(&io).unwrap();
            let publisher = PeriodicCallback::new(
                move |io: &mut IOLoop<MioPoller>| {
                    let (snapshot, published) = &*for_thread;
                    let mut snapshot = snapshot.lock().unwrap();
                    *snapshot = Snapshot {
                        connections: server.connection_count(),
                        queued_bytes: server.queued_bytes(),
                        queued_bytes_max: snapshot.queued_bytes_max.max(server.queued_bytes()),
                        handlers: io.handler_count(),
                        stats: server.stats(),
                    };
                    published.notify_all();
                },
                Duration::from_millis(5),
            )
            .unwrap();
            publisher.start(&mut io);
            ready_tx.send((addr, io.handle())).unwrap();
            io.start().unwrap();
            publisher.stop(&mut io);
            io.close(true);
        });
        let (addr, handle) = ready_rx.recv_timeout(TIMEOUT).expect("server started");
        Server {
            addr,
            handle,
            published,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Snapshot {
        *self.published.0.lock().unwrap()
    }

    /// Wait (bounded) until a published snapshot satisfies `condition`.
    fn wait_for(&self, what: &str, condition: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let (snapshot, published) = &*self.published;
        let guard = snapshot.lock().unwrap();
        let (guard, _) = published
            .wait_timeout_while(guard, TIMEOUT, |s| !condition(s))
            .unwrap();
        assert!(condition(&guard), "timed out waiting for {what}: {guard:?}");
        *guard
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Deterministic, non-repeating test bytes.
fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Send `data` (from a writer thread), half-close, and read everything back.
fn echo_round_trip(stream: TcpStream, data: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> io::Result<()> {
        writer.write_all(&data)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut received = Vec::new();
    (&stream).read_to_end(&mut received)?;
    sender.join().expect("writer thread")?;
    Ok(received)
}

#[test]
fn echoes_messages_from_1_byte_to_4_mib() {
    let _serial = serial();
    let server = Server::start(EchoConfig::default());
    for (i, size) in [1, 2, 1023, 1024, 1025, 65_536, 1 << 20, 4 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(size, i as u64);
        let echoed = echo_round_trip(server.connect(), data.clone()).unwrap();
        assert!(
            echoed == data,
            "size {size}: echo differs (got {} bytes)",
            echoed.len()
        );
    }
    server.wait_for("all connections closed", |s| {
        s.connections == 0 && s.stats.connections_closed == 8
    });
}

#[test]
fn serves_1000_concurrent_connections() {
    let _serial = serial();
    let server = Server::start(EchoConfig::default());
    let mut streams: Vec<TcpStream> = (0..1000).map(|_| server.connect()).collect();
    server.wait_for("1000 connections", |s| s.connections == 1000);
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.write_all(&pattern(100, i as u64)).unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let mut echoed = [0; 100];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed.to_vec(), pattern(100, i as u64));
    }
    drop(streams);
    server.wait_for("all connections closed", |s| {
        s.connections == 0 && s.handlers == 1
    });
}

#[test]
fn half_closing_client_gets_everything_then_eof() {
    let _serial = serial();
    let server = Server::start(EchoConfig::default());
    let data = pattern(300_000, 7);
    let echoed = echo_round_trip(server.connect(), data.clone()).unwrap();
    assert!(echoed == data);
    // Wait for a snapshot taken after the echo.
    let snapshot = server.wait_for("connection closed", |s| {
        s.connections == 0 && s.stats.connections_closed == 1
    });
    assert_eq!(snapshot.stats.bytes_written, data.len() as u64);
}

#[test]
fn resetting_client_is_dropped_and_others_are_unaffected() {
    let _serial = serial();
    let server = Server::start(EchoConfig::default());
    let mut survivor = server.connect();
    for i in 0..20 {
        let mut doomed = server.connect();
        doomed.write_all(&pattern(10_000, i)).unwrap();
        common::reset(doomed);
    }
    survivor.write_all(b"still here").unwrap();
    let mut echoed = [0; 10];
    survivor.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"still here");
    server.wait_for("reset connections closed", |s| {
        s.connections == 1 && s.stats.connections_closed == 20
    });
}

/// More bytes than the kernel can buffer between a client that does not
/// read and a server that has stopped reading (the client's receive buffer
/// cannot grow while it does not read; the others can grow to their
/// maximum), so that the server's queue must fill to its high-water mark.
fn more_than_kernel_buffers() -> usize {
    let sizes = |path: &str| -> Vec<usize> {
        std::fs::read_to_string(path)
            .map(|text| {
                text.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let rmem = sizes("/proc/sys/net/ipv4/tcp_rmem");
    let wmem = sizes("/proc/sys/net/ipv4/tcp_wmem");
    match (rmem.as_slice(), wmem.as_slice()) {
        ([_, rmem_default, rmem_max], [_, _, wmem_max]) => {
            rmem_default + rmem_max + 2 * wmem_max + (2 << 20)
        }
        _ => 64 << 20,
    }
}

/// A client that stops reading: the server must stop reading too, keep
/// its queue bounded, and deliver everything once the client reads again.
/// (That it does not spin meanwhile is checked on the simulator, where
/// "meanwhile" is not a timing window: tests/echo_sim.rs.)
#[test]
fn stalled_reader_is_bounded_and_gets_everything() {
    let _serial = serial();
    let config = EchoConfig {
        queue_high_water_bytes: 64 * 1024,
        ..EchoConfig::default()
    };
    let bound = config.queue_high_water_bytes + config.read_chunk_bytes;
    let high_water = config.queue_high_water_bytes;
    let server = Server::start(config);
    let stream = server.connect();
    let data = pattern(more_than_kernel_buffers(), 3);
    let mut writer = stream.try_clone().unwrap();
    let to_send = data.clone();
    let sender = std::thread::spawn(move || -> io::Result<()> {
        writer.write_all(&to_send)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    // The queue reaches its high-water mark and the server stops reading,
    // unless the kernel's buffers (autotuned, they can outgrow the estimate)
    // took everything first: either way the server has stopped reading for
    // this client. The queue may already be below the mark when we look
    // (the server writes what the kernel takes), so ask the server whether
    // it paused, not the snapshot whether it sees the mark.
    let total = data.len() as u64;
    let stalled = server.wait_for("the server to stop reading at its high-water mark", |s| {
        s.stats.read_pauses > 0 || (s.stats.bytes_read == total && s.queued_bytes > 0)
    });
    assert!(
        stalled.stats.read_pauses == 0 || stalled.stats.queue_peak_bytes >= high_water,
        "paused below the high-water mark: {stalled:?}"
    );
    assert!(
        stalled.stats.queue_peak_bytes < bound,
        "server buffered {} bytes for a stalled reader",
        stalled.stats.queue_peak_bytes
    );
    let mut received = Vec::new();
    (&stream).read_to_end(&mut received).unwrap();
    sender.join().unwrap().unwrap();
    assert!(
        received == data,
        "stalled client got {} bytes",
        received.len()
    );
    let done = server.wait_for("connection closed", |s| s.connections == 0);
    assert!(done.stats.queue_peak_bytes < bound, "{done:?}");
    assert!(done.queued_bytes_max < bound, "{done:?}");
}

#[test]
fn open_fd_count_returns_to_baseline_after_clients_leave() {
    let _serial = serial();
    let server = Server::start(EchoConfig::default());
    server.wait_for("server up", |s| s.handlers == 1);
    let baseline = common::open_fd_count();
    let mut streams: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.write_all(&pattern(1000, i as u64)).unwrap();
        if i % 3 == 0 {
            common::half_close(stream);
        }
    }
    server.wait_for("200 connections", |s| s.stats.connections_accepted == 200);
    let (resets, rest): (Vec<_>, Vec<_>) =
        streams.drain(..).enumerate().partition(|(i, _)| i % 5 == 1);
    for (_, stream) in resets {
        common::reset(stream);
    }
    drop(rest);
    // The server closes a connection's fd before it publishes the count.
    server.wait_for("all connections closed", |s| s.connections == 0);
    assert_eq!(common::open_fd_count(), baseline, "fds leaked");
}

#[test]
fn random_chunks_over_hundreds_of_connections_with_half_closes_resets_and_stalls() {
    let _serial = serial();
    let server = Server::start(EchoConfig::default());
    let baseline_closed = server.snapshot().stats.connections_closed;
    let workers: Vec<_> = (0..8u64)
        .map(|worker| {
            let addr = server.addr;
            std::thread::spawn(move || drive_connections(addr, worker, 40))
        })
        .collect();
    let mut expected_closed = 0;
    for worker in workers {
        expected_closed += worker.join().unwrap();
    }
    server.wait_for("all connections closed", |s| {
        s.connections == 0 && s.stats.connections_closed - baseline_closed == expected_closed
    });
}

/// One client thread: `count` connections, random-sized chunks sent and
/// checked in turn; some half-close, some reset, some stall. Returns how
/// many connections it opened.
fn drive_connections(addr: SocketAddr, worker: u64, count: usize) -> u64 {
    let mut rng = pattern(4096, 1000 + worker).into_iter().cycle();
    let mut next = move || rng.next().unwrap() as usize;
    let mut streams: Vec<TcpStream> = (0..count)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s
        })
        .collect();
    for round in 0..6 {
        for (i, stream) in streams.iter_mut().enumerate() {
            let size = 1 + next() * 37 + next();
            let data = pattern(size, (worker << 32) ^ ((i as u64) << 8) ^ round);
            stream.write_all(&data).unwrap();
            if next() % 16 == 0 {
                // Stall: let the echo wait in the server for a moment.
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut echoed = vec![0; size];
            stream.read_exact(&mut echoed).unwrap();
            assert!(
                echoed == data,
                "worker {worker} conn {i} round {round}: wrong echo"
            );
        }
    }
    for (i, mut stream) in streams.into_iter().enumerate() {
        match i % 3 {
            0 => {
                stream.write_all(b"tail").unwrap();
                common::half_close(&stream);
                let mut rest = Vec::new();
                (&stream).read_to_end(&mut rest).unwrap();
                assert_eq!(rest, b"tail");
            }
            1 => common::reset(stream),
            _ => drop(stream),
        }
    }
    count as u64
}
