//! The echo server: Tornado's classic example, ported, generic over the poller.
//!
//! An fd map of connections, a byte queue per connection, interest switched
//! between `READ` and `WRITE` as the queue fills and drains. It is the very
//! code that `examples/echo.rs` runs on mio and that the simulator's `echo`
//! scenario runs on `SimPoller`, and it is correct where the original is
//! not: partial writes, half-close (echo everything, then close), resets,
//! a bounded queue per connection (a peer that never reads cannot make the
//! server buffer without bound), and `EMFILE` on accept without a busy loop.
//!
//! On a `READ` event it reads [`EchoConfig::read_chunk_bytes`] (1 KiB, as
//! Tornado's example), and while reads come back full reads on, each read
//! twice the last, until a read comes back short or the queue reaches its
//! high-water mark; then it echoes the queue in one write: a message
//! larger than one read goes back whole, not one write (a segment and a
//! wake-up of the peer) per piece. It sets `TCP_NODELAY` on every
//! connection it accepts ([`EchoConfig::nodelay`]): an echo that still goes
//! out in several writes (a partial write, a message that arrives in
//! several segments) is sent at once. Without it, Nagle's algorithm holds
//! each write after the first until the peer ACKs the first, and the peer
//! delays that ACK (~40 ms on Linux) because it has nothing to send back
//! yet: every message larger than one piece stalled ~44 ms per round trip
//! (23 round trips/s at 4 KiB against 67,000 for a raw mio loop). Tornado's
//! IOStream has `set_nodelay` for the same reason.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::{Events, Fd, IOLoop, Poller};

/// Knobs of the echo server.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// The size of the first read on a `READ` event (Tornado's example
    /// reads 1024). While reads come back full the next is twice as large,
    /// up to the room left below `queue_high_water_bytes`.
    pub read_chunk_bytes: usize,
    /// Stop reading from a connection once this many bytes wait to be
    /// echoed; resume below half of it.
    pub queue_high_water_bytes: usize,
    /// Connections accepted per `READ` event on the listener, so a flood of
    /// connects cannot starve established connections.
    pub accept_batch_max: usize,
    /// How long to stop accepting after an accept fails for lack of
    /// resources (`EMFILE`, `ENFILE`, `ENOBUFS`, ...).
    pub accept_backoff: Duration,
    /// Set `TCP_NODELAY` on accepted connections (default `true`): each
    /// piece is sent as it is written instead of waiting for the peer's
    /// (delayed) ACK of the previous one. `false` only to measure the stall.
    pub nodelay: bool,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            read_chunk_bytes: 1024,
            queue_high_water_bytes: 64 * 1024,
            accept_batch_max: 64,
            accept_backoff: Duration::from_millis(100),
            nodelay: true,
        }
    }
}

/// Counters of an echo server since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EchoStats {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections closed (end of stream, error or reset).
    pub connections_closed: u64,
    /// Bytes read from clients.
    pub bytes_read: u64,
    /// Bytes written back to clients.
    pub bytes_written: u64,
    /// Times accepting was paused because an accept failed.
    pub accept_pauses: u64,
    /// Times a connection stopped reading because its queue reached
    /// [`EchoConfig::queue_high_water_bytes`] (its peer reads slower than it
    /// writes).
    pub read_pauses: u64,
    /// The most bytes ever queued on one connection: at most
    /// `queue_high_water_bytes + read_chunk_bytes - 1`.
    pub queue_peak_bytes: usize,
}

/// One connection: the bytes to echo back, and where its reading stands.
#[derive(Default)]
struct Connection {
    queue: VecDeque<u8>,
    /// The peer closed its sending side; close once `queue` is flushed.
    eof: bool,
    /// Below the high-water mark (with hysteresis): reading allowed.
    paused: bool,
}

struct State {
    config: EchoConfig,
    listener: Fd,
    connections: BTreeMap<Fd, Connection>,
    read_buf: Vec<u8>,
    stats: EchoStats,
}

/// A running echo server on some [`IOLoop`]. Dropping it leaves the server
/// running in its loop; call [`close`](Self::close) to stop it.
///
/// ```
/// use ioloop::echo::{EchoConfig, EchoServer};
/// use ioloop::{IOLoop, MioPoller};
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// let server = EchoServer::bind(&mut io, "127.0.0.1:0".parse()?, EchoConfig::default())?;
/// println!("listening on {}", server.local_addr(&io)?);
/// # server.close(&mut io);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EchoServer {
    state: Rc<RefCell<State>>,
}

impl EchoServer {
    /// Listen on `addr` and serve on `io`.
    pub fn bind<P: Poller + 'static>(
        io: &mut IOLoop<P>,
        addr: SocketAddr,
        config: EchoConfig,
    ) -> io::Result<EchoServer> {
        if config.read_chunk_bytes == 0 || config.queue_high_water_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read_chunk_bytes and queue_high_water_bytes must be positive",
            ));
        }
        let listener = io.listen(addr)?;
        let state = Rc::new(RefCell::new(State {
            read_buf: vec![0; config.read_chunk_bytes],
            config,
            listener,
            connections: BTreeMap::new(),
            stats: EchoStats::default(),
        }));
        let for_accept = Rc::clone(&state);
        let added = io.add_handler(
            listener,
            move |io, fd, _events| on_listener(&for_accept, io, fd),
            Events::READ,
        );
        if let Err(error) = added {
            let _ = io.close_fd(listener);
            return Err(io::Error::other(error.to_string()));
        }
        Ok(EchoServer { state })
    }

    /// The listening socket.
    pub fn listener(&self) -> Fd {
        self.state.borrow().listener
    }

    /// The address the server listens on (the real port if bound to port 0).
    pub fn local_addr<P: Poller>(&self, io: &IOLoop<P>) -> io::Result<SocketAddr> {
        io.local_addr(self.listener())
    }

    /// Connections now open.
    pub fn connection_count(&self) -> usize {
        self.state.borrow().connections.len()
    }

    /// Bytes read and not yet echoed, over all connections (each bounded by
    /// [`EchoConfig::queue_high_water_bytes`] plus one read).
    pub fn queued_bytes(&self) -> usize {
        let state = self.state.borrow();
        state.connections.values().map(|c| c.queue.len()).sum()
    }

    /// The server's counters.
    pub fn stats(&self) -> EchoStats {
        self.state.borrow().stats
    }

    /// Stop listening and close every connection.
    pub fn close<P: Poller>(self, io: &mut IOLoop<P>) {
        let mut state = self.state.borrow_mut();
        let connections = std::mem::take(&mut state.connections);
        for fd in connections.keys() {
            let _ = io.close_fd(*fd);
        }
        let _ = io.close_fd(state.listener);
    }
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("EchoServer")
            .field("listener", &state.listener)
            .field("connections", &state.connections.len())
            .field("stats", &state.stats)
            .finish()
    }
}

fn on_listener<P: Poller + 'static>(
    state_rc: &Rc<RefCell<State>>,
    io: &mut IOLoop<P>,
    listener: Fd,
) {
    let accept_batch_max = state_rc.borrow().config.accept_batch_max;
    for _ in 0..accept_batch_max {
        match io.accept(listener) {
            Ok((fd, peer)) => on_accepted(state_rc, io, fd, peer),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            // The peer gave up before we accepted: try the next one.
            Err(e) if is_transient_accept_error(&e) => continue,
            Err(e) => {
                // Out of fds or memory: readiness stays set, so retrying now
                // would spin. Stop accepting for a while.
                pause_accepting(state_rc, io, listener, &e);
                return;
            }
        }
    }
}

fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionReset
    )
}

fn pause_accepting<P: Poller + 'static>(
    state_rc: &Rc<RefCell<State>>,
    io: &mut IOLoop<P>,
    listener: Fd,
    error: &io::Error,
) {
    let backoff = {
        let mut state = state_rc.borrow_mut();
        state.stats.accept_pauses += 1;
        state.config.accept_backoff
    };
    log::warn!("accept failed: {error}; not accepting for {backoff:?}");
    if io.update_handler(listener, Events::empty()).is_ok() {
        io.call_later(backoff, move |io| {
            // The listener may have been closed meanwhile: then nothing to do.
            let _ = io.update_handler(listener, Events::READ);
        });
    }
}

fn on_accepted<P: Poller + 'static>(
    state_rc: &Rc<RefCell<State>>,
    io: &mut IOLoop<P>,
    fd: Fd,
    peer: SocketAddr,
) {
    let for_handler = Rc::clone(state_rc);
    let added = io.add_handler(
        fd,
        move |io, fd, events| on_connection(&for_handler, io, fd, events),
        Events::READ,
    );
    if let Err(error) = added {
        log::warn!("cannot watch connection from {peer}: {error}");
        let _ = io.close_fd(fd);
        return;
    }
    let mut state = state_rc.borrow_mut();
    if state.config.nodelay {
        if let Err(error) = io.set_nodelay(fd, true) {
            // Slower, not wrong: serve the connection anyway.
            log::debug!("connection {fd}: cannot set TCP_NODELAY: {error}");
        }
    }
    state.stats.connections_accepted += 1;
    state.connections.insert(fd, Connection::default());
    log::debug!("connection {fd} from {peer}");
}

fn on_connection<P: Poller>(
    state_rc: &Rc<RefCell<State>>,
    io: &mut IOLoop<P>,
    fd: Fd,
    events: Events,
) {
    let mut state = state_rc.borrow_mut();
    let state = &mut *state;
    let Some(connection) = state.connections.get_mut(&fd) else {
        // Not ours (closed by `EchoServer::close`): drop the handler.
        io.remove_handler(fd);
        return;
    };
    let mut alive = !events.contains(Events::ERROR);
    if alive && events.contains(Events::READ) && !connection.paused && !connection.eof {
        alive = read_into_queue(
            io,
            fd,
            connection,
            &mut state.read_buf,
            &state.config,
            &mut state.stats,
        );
    }
    if alive && !connection.queue.is_empty() && events.contains(Events::WRITE) {
        alive = write_from_queue(io, fd, connection, &mut state.stats);
    }
    let high_water = state.config.queue_high_water_bytes;
    if connection.queue.len() >= high_water {
        if !connection.paused {
            state.stats.read_pauses += 1;
        }
        connection.paused = true;
    } else if connection.queue.len() <= high_water / 2 {
        connection.paused = false;
    }
    let finished = connection.eof && connection.queue.is_empty();
    if !alive || finished {
        state.connections.remove(&fd);
        state.stats.connections_closed += 1;
        log::debug!(
            "connection {fd} closed ({})",
            if alive { "end of stream" } else { "error" }
        );
        let _ = io.close_fd(fd);
        return;
    }
    let mut interest = Events::empty();
    if !connection.paused && !connection.eof {
        interest |= Events::READ;
    }
    if !connection.queue.is_empty() {
        interest |= Events::WRITE;
    }
    if io.interest(fd) != Some(interest) {
        // Bookkeeping only: no system call.
        let _ = io.update_handler(fd, interest);
    }
}

/// Read into the queue while reads come back full (more is waiting) and
/// the queue is below its high-water mark, so that a message larger than
/// one read goes back in one write rather than one write (a segment, a
/// wake-up of the peer) per piece. The first read is
/// `config.read_chunk_bytes`; each full read doubles the next (as Netty's
/// adaptive receive buffer does), never past the room left below the mark,
/// so a 64 KiB message takes 7 reads of 1 to 32 KiB instead of 64 of 1 KiB,
/// and the queue never holds more than `queue_high_water_bytes +
/// read_chunk_bytes - 1`. Stops at a short read, `WouldBlock`, end of
/// stream or an error. Returns `false` if the connection failed.
fn read_into_queue<P: Poller>(
    io: &mut IOLoop<P>,
    fd: Fd,
    connection: &mut Connection,
    read_buf: &mut Vec<u8>,
    config: &EchoConfig,
    stats: &mut EchoStats,
) -> bool {
    let high_water = config.queue_high_water_bytes;
    let mut chunk = config.read_chunk_bytes;
    loop {
        if read_buf.len() < chunk {
            read_buf.resize(chunk, 0);
        }
        let buf = &mut read_buf[..chunk];
        match io.read(fd, buf) {
            Ok(0) => {
                connection.eof = true;
                return true;
            }
            Ok(n) => {
                connection.queue.extend(&buf[..n]);
                stats.bytes_read += n as u64;
                stats.queue_peak_bytes = stats.queue_peak_bytes.max(connection.queue.len());
                let queued = connection.queue.len();
                if n < chunk || queued >= high_water {
                    return true;
                }
                chunk = chunk
                    .saturating_mul(2)
                    .min(high_water - queued)
                    .max(config.read_chunk_bytes);
            }
            Err(e) => return is_retryable(&e),
        }
    }
}

/// Write as much of the queue as the socket takes. Returns `false` if the
/// connection failed.
fn write_from_queue<P: Poller>(
    io: &mut IOLoop<P>,
    fd: Fd,
    connection: &mut Connection,
    stats: &mut EchoStats,
) -> bool {
    let pending = connection.queue.make_contiguous();
    match io.write(fd, pending) {
        Ok(n) => {
            connection.queue.drain(..n);
            stats.bytes_written += n as u64;
            true
        }
        Err(e) => is_retryable(&e),
    }
}

/// `WouldBlock` and `Interrupted` leave the connection usable: the loop calls
/// the handler again when it is ready.
fn is_retryable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MioPoller;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn server(io: &mut IOLoop<MioPoller>) -> EchoServer {
        EchoServer::bind(io, "127.0.0.1:0".parse().unwrap(), EchoConfig::default()).unwrap()
    }

    #[test]
    fn bind_refuses_a_zero_read_or_a_zero_queue_and_listens_on_nothing() {
        let mut io = IOLoop::new(MioPoller::new().unwrap());
        let addr = "127.0.0.1:0".parse().unwrap();
        for config in [
            EchoConfig {
                read_chunk_bytes: 0,
                ..EchoConfig::default()
            },
            EchoConfig {
                queue_high_water_bytes: 0,
                ..EchoConfig::default()
            },
        ] {
            let error = EchoServer::bind(&mut io, addr, config).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        }
        assert_eq!(io.handler_count(), 0);
    }

    #[test]
    fn a_stalled_reader_shows_in_queued_bytes_and_close_ends_everything() {
        let mut io = IOLoop::new(MioPoller::new().unwrap());
        let server = server(&mut io);
        let addr = server.local_addr(&io).unwrap();
        assert_eq!(
            format!("{server:?}"),
            format!(
                "EchoServer {{ listener: {:?}, connections: 0, stats: {:?} }}",
                server.listener(),
                server.stats()
            )
        );
        // A client that writes 4 MiB and reads nothing: once the socket
        // buffers are full, the server holds what it read and cannot echo.
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_nonblocking(true).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        let held = io
            .run_until(TIMEOUT, |_| {
                if let Ok(n) = client.write(&chunk) {
                    sent += n;
                }
                server.queued_bytes() > 0 && sent >= 4 << 20
            })
            .unwrap();
        assert!(
            held,
            "queued {} after sending {sent}",
            server.queued_bytes()
        );
        assert_eq!(server.connection_count(), 1);
        // Nothing failed to accept: no pause (a `WouldBlock` ends a batch
        // of accepts, it does not pause them).
        assert_eq!(server.stats().accept_pauses, 0);
        server.close(&mut io);
        assert_eq!(io.handler_count(), 0, "listener and connection closed");
        // The client sees the connection end: a reset or end of stream,
        // once what was echoed is read.
        client.set_nonblocking(false).unwrap();
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let ended = loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break true,
                Ok(_) => {}
            }
        };
        assert!(ended);
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }
}
