//! `IOLoop`'s datagram calls: UDP sockets bound, connected, sent to and received from through the loop.

use std::io;
use std::net::SocketAddr;

use super::{is_would_block, IOLoop};
use crate::{Events, Fd, Poller};

/// UDP, through the loop (Tornado leaves it to `socket.sendto` and
/// `socket.recvfrom` on a socket passed to `add_handler`). Going through the
/// loop is what lets it see `WouldBlock` and keep handlers level-triggered,
/// and what lets the same service run on the simulator, which loses,
/// duplicates, delays and reorders datagrams.
///
/// ```
/// use ioloop::{Events, IOLoop, MioPoller};
/// use std::time::Duration;
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// let server = io.udp_bind("127.0.0.1:0".parse()?)?;
/// let addr = io.local_addr(server)?;
/// io.add_handler(server, |io, fd, _events| {
///     // Level-triggered: receive until WouldBlock, or be called again.
///     let mut buf = [0u8; 1500];
///     while let Ok((n, from)) = io.recv_from(fd, &mut buf) {
///         let _ = io.send_to(fd, &buf[..n].to_ascii_uppercase(), from);
///     }
/// }, Events::READ)?;
///
/// let client = io.udp_bind("127.0.0.1:0".parse()?)?;
/// io.udp_connect(client, addr)?;
/// let reply = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
/// let got = reply.clone();
/// io.add_handler(client, move |io, fd, _events| {
///     let mut buf = [0u8; 16];
///     while let Ok(n) = io.recv(fd, &mut buf) {
///         got.borrow_mut().extend_from_slice(&buf[..n]);
///     }
/// }, Events::READ)?;
/// io.send(client, b"ping")?;
/// io.run_until(Duration::from_secs(5), |_| !reply.borrow().is_empty())?;
/// assert_eq!(&reply.borrow()[..], b"PING");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<P: Poller> IOLoop<P> {
    /// A non-blocking UDP socket bound to `addr` (port 0: any free port);
    /// add a `READ` handler to receive. [`local_addr`](Self::local_addr),
    /// [`close_fd`](Self::close_fd) and [`take_error`](Self::take_error)
    /// work on it; [`read`](Self::read) and [`write`](Self::write) refuse it
    /// (`InvalidInput`): an empty datagram is not the end of a stream.
    pub fn udp_bind(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        self.poller.udp_bind(addr)
    }

    /// Connect a UDP socket to `addr`: [`send`](Self::send) goes there, only
    /// `addr`'s datagrams are received from now on, and
    /// [`peer_addr`](Self::peer_addr) names it. A later call may fail with
    /// `ConnectionRefused` when a datagram met a port nobody had bound (the
    /// kernel's ICMP answer; the handler is called with `ERROR`).
    pub fn udp_connect(&mut self, fd: Fd, addr: SocketAddr) -> io::Result<()> {
        self.poller.udp_connect(fd, addr)
    }

    /// Send `buf` as one datagram to `addr`: all of it or an error.
    /// `WouldBlock` (a full send buffer, rare) waits for the next `WRITE`
    /// edge.
    pub fn send_to(&mut self, fd: Fd, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let result = self.poller.send_to(fd, buf, addr);
        if is_would_block(&result) {
            self.clear_readiness(fd, Events::WRITE);
        }
        result
    }

    /// Receive one datagram and its sender. A datagram longer than `buf` is
    /// truncated to `buf.len()` and the rest discarded (Linux's
    /// `recvfrom`); `Ok((0, from))` is an empty datagram. `WouldBlock` when
    /// none waits (the handler then waits for the next edge).
    pub fn recv_from(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let result = self.poller.recv_from(fd, buf);
        if is_would_block(&result) {
            self.clear_readiness(fd, Events::READ);
        }
        result
    }

    /// [`send_to`](Self::send_to) the connected peer; `NotConnected` before
    /// [`udp_connect`](Self::udp_connect).
    pub fn send(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let result = self.poller.send(fd, buf);
        if is_would_block(&result) {
            self.clear_readiness(fd, Events::WRITE);
        }
        result
    }

    /// [`recv_from`](Self::recv_from) without the sender's address.
    pub fn recv(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.poller.recv(fd, buf);
        if is_would_block(&result) {
            self.clear_readiness(fd, Events::READ);
        }
        result
    }
}
