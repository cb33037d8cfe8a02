//! Shared by the criterion benches and `examples/echo_bench.rs`:
//! echo servers to compare — ioloop's, a hand-written raw mio loop, tokio
//! `current_thread` — each on its own thread, and a verifying ping-pong
//! load generator. Shared by the criterion benches and `examples/echo_bench.rs`.
#![allow(dead_code)]

pub mod dispatch;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{IOLoop, IOStream, MioPoller, TcpServer};

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `ioloop::echo::EchoServer` on `MioPoller`, 64 KiB reads like the others.
    Ioloop,
    /// `EchoServer` as shipped: `EchoConfig::default()` (1 KiB reads,
    /// `TCP_NODELAY` on accepted connections), what `examples/echo.rs` runs.
    IoloopDefault,
    /// The shipped defaults with `TCP_NODELAY` off: the 44 ms stall it fixes.
    IoloopNagle,
    /// The echo server on `IOStream` (`examples/echo_stream.rs`): the layer
    /// users write services on.
    IoloopStream,
    /// The hand-written edge-triggered mio loop: the floor.
    RawMio,
    /// tokio, `current_thread` runtime, a task per connection.
    Tokio,
}

impl Kind {
    /// The servers every throughput bench compares.
    pub const ALL: [Kind; 5] = [
        Kind::Ioloop,
        Kind::IoloopDefault,
        Kind::IoloopStream,
        Kind::RawMio,
        Kind::Tokio,
    ];

    /// Every server, the stalling one included (latency only).
    pub const EVERY: [Kind; 6] = [
        Kind::Ioloop,
        Kind::IoloopDefault,
        Kind::IoloopNagle,
        Kind::IoloopStream,
        Kind::RawMio,
        Kind::Tokio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ioloop => "ioloop",
            Kind::IoloopDefault => "ioloop_default",
            Kind::IoloopNagle => "ioloop_nagle",
            Kind::IoloopStream => "ioloop_stream",
            Kind::RawMio => "raw_mio",
            Kind::Tokio => "tokio",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::EVERY.into_iter().find(|k| k.name() == name)
    }
}

/// Bytes read per read call by every server, so they compare like for like.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A server running on its own thread; stopped on drop.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Start a server of `kind` on `addr` (port 0: any).
pub fn spawn(kind: Kind, addr: SocketAddr) -> Server {
    match kind {
        Kind::Ioloop => spawn_ioloop(
            addr,
            EchoConfig {
                read_chunk_bytes: READ_CHUNK_BYTES,
                ..EchoConfig::default()
            },
        ),
        Kind::IoloopDefault => spawn_ioloop(addr, EchoConfig::default()),
        Kind::IoloopNagle => spawn_ioloop(
            addr,
            EchoConfig {
                nodelay: false,
                ..EchoConfig::default()
            },
        ),
        Kind::IoloopStream => spawn_ioloop_stream(addr),
        Kind::RawMio => spawn_raw_mio(addr),
        Kind::Tokio => spawn_tokio(addr),
    }
}

/// Echo over `IOStream`, as `examples/echo_stream.rs` writes it.
fn spawn_ioloop_stream(addr: SocketAddr) -> Server {
    fn echo(io: &mut IOLoop<MioPoller>, stream: &mut IOStream<MioPoller>) {
        let _ = stream.read_bytes(io, READ_CHUNK_BYTES, true, |io, stream, data| {
            if let Ok(data) = data {
                let _ = stream.write(io, &data);
                echo(io, stream);
            }
        });
    }
    spawn_loop(move |io| {
        let server = TcpServer::bind(io, addr, echo).unwrap();
        server.local_addr(io).unwrap()
    })
}

fn spawn_ioloop(addr: SocketAddr, config: EchoConfig) -> Server {
    spawn_loop(move |io| {
        let server = EchoServer::bind(io, addr, config).unwrap();
        server.local_addr(io).unwrap()
    })
}

/// A loop on its own thread, its service installed by `serve` (which
/// returns the address it listens on); stopped through its handle.
fn spawn_loop<F>(serve: F) -> Server
where
    F: FnOnce(&mut IOLoop<MioPoller>) -> SocketAddr + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut io = IOLoop::new(MioPoller::new().unwrap());
        let addr = serve(&mut io);
        tx.send((addr, io.handle())).unwrap();
        io.start().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    Server {
        addr,
        stop: Some(Box::new(move || handle.stop())),
        thread: Some(thread),
    }
}

fn spawn_raw_mio(addr: SocketAddr) -> Server {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || raw_mio::serve(addr, tx));
    let (addr, waker) = rx.recv().unwrap();
    Server {
        addr,
        stop: Some(Box::new(move || raw_mio::stop(&waker))),
        thread: Some(thread),
    }
}

fn spawn_tokio(addr: SocketAddr) -> Server {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
            tx.send((listener.local_addr().unwrap(), stop_tx)).unwrap();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(tokio_echo(stream));
                    }
                    _ = &mut stop_rx => break,
                }
            }
        });
    });
    let (addr, stop_tx) = rx.recv().unwrap();
    Server {
        addr,
        stop: Some(Box::new(move || {
            let _ = stop_tx.send(());
        })),
        thread: Some(thread),
    }
}

async fn tokio_echo(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The floor: an edge-triggered mio loop, draining until `WouldBlock`.
mod raw_mio {
    use super::*;
    use mio::net::{TcpListener, TcpStream};
    use mio::{Events, Interest, Poll, Token, Waker};
    use std::sync::Arc;

    const LISTENER: Token = Token(usize::MAX - 1);
    const WAKER: Token = Token(usize::MAX);

    struct Conn {
        stream: TcpStream,
        pending: Vec<u8>,
        eof: bool,
    }

    pub fn stop(waker: &Arc<Waker>) {
        let _ = waker.wake();
    }

    pub fn serve(addr: SocketAddr, ready: mpsc::Sender<(SocketAddr, Arc<Waker>)>) {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let mut listener = TcpListener::bind(addr).unwrap();
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .unwrap();
        // Keep a clone: closing the waker's eventfd before this loop saw
        // the wake would drop the wake-up with it.
        ready
            .send((listener.local_addr().unwrap(), Arc::clone(&waker)))
            .unwrap();
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        loop {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("poll: {e}");
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => return,
                    LISTENER => accept_all(&poll, &listener, &mut conns),
                    Token(index) => {
                        let Some(conn) = conns[index].as_mut() else {
                            continue;
                        };
                        if !serve_conn(conn, &mut buf) {
                            let mut conn = conns[index].take().unwrap();
                            let _ = poll.registry().deregister(&mut conn.stream);
                        }
                    }
                }
            }
        }
    }

    fn accept_all(poll: &Poll, listener: &TcpListener, conns: &mut Vec<Option<Conn>>) {
        while let Ok((mut stream, _)) = listener.accept() {
            let index = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                conns.push(None);
                conns.len() - 1
            });
            poll.registry()
                .register(
                    &mut stream,
                    Token(index),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .unwrap();
            conns[index] = Some(Conn {
                stream,
                pending: Vec::new(),
                eof: false,
            });
        }
    }

    /// Handle any readiness: flush, then read until `WouldBlock`, echoing
    /// as it goes. Returns `false` once the connection is done.
    fn serve_conn(conn: &mut Conn, buf: &mut [u8]) -> bool {
        if !flush(conn) {
            return false;
        }
        while !conn.eof && conn.pending.is_empty() {
            match conn.stream.read(buf) {
                Ok(0) => conn.eof = true,
                Ok(n) => {
                    conn.pending.extend_from_slice(&buf[..n]);
                    if !flush(conn) {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        !(conn.eof && conn.pending.is_empty())
    }

    /// Write what is pending; `false` on a write error.
    fn flush(conn: &mut Conn) -> bool {
        while !conn.pending.is_empty() {
            match conn.stream.write(&conn.pending) {
                Ok(n) => {
                    conn.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// Ping-pong clients: each connection sends a message and reads its echo
/// back, checking every byte.
pub struct Load {
    streams: Vec<TcpStream>,
    message: Vec<u8>,
    echo: Vec<u8>,
}

impl Load {
    /// `connections` clients of `server`, each sending `size`-byte messages.
    pub fn connect(server: SocketAddr, connections: usize, size: usize) -> Load {
        let streams = (0..connections)
            .map(|_| {
                let stream = TcpStream::connect(server).unwrap();
                stream.set_nodelay(true).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                stream
            })
            .collect();
        let message = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        Load {
            streams,
            message,
            echo: vec![0; size],
        }
    }

    /// One message per connection, there and back; returns messages echoed.
    pub fn round(&mut self) -> io::Result<u64> {
        for stream in &mut self.streams {
            stream.write_all(&self.message)?;
        }
        for stream in &mut self.streams {
            stream.read_exact(&mut self.echo)?;
            if self.echo != self.message {
                return Err(io::Error::other("echo differs"));
            }
        }
        Ok(self.streams.len() as u64)
    }
}
