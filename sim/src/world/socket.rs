//! The socket calls a host makes — listen, accept, connect, read, write, shutdown, close — and the faults each may meet.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use ioloop::{Fd, ListenOptions, Ready};

use super::connection::{ConnId, Connection, End};
use super::delivery::{Delivery, BACKLOG_MAX};
use super::host::Socket;
use super::{tag, FaultKind, HostId, World, EBADF, EMFILE};

/// What a traced I/O call did. The discriminant is its id in the trace,
/// part of the replay format: never renumbered.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub(super) enum IoKind {
    Read = 1,
    Write = 2,
    /// A datagram sent.
    Send = 3,
    /// A datagram received.
    Recv = 4,
}

impl IoKind {
    fn name(self) -> &'static str {
        match self {
            IoKind::Read => "read",
            IoKind::Write => "write",
            IoKind::Send => "send",
            IoKind::Recv => "recv",
        }
    }
}

impl World {
    /// A listener on `addr`'s port (0: an ephemeral port) of `host`.
    pub fn listen(&mut self, host: HostId, addr: SocketAddr) -> io::Result<Fd> {
        self.listen_with(host, addr, ListenOptions::default())
    }

    /// A listener with `options`: the backlog is honoured (capped at 128,
    /// as an old `somaxconn`; a full backlog refuses), `reuse_addr` recorded.
    pub fn listen_with(
        &mut self,
        host: HostId,
        addr: SocketAddr,
        options: ListenOptions,
    ) -> io::Result<Fd> {
        self.check_fds_left(host)?;
        let ip = self.hosts[host].ip;
        if !addr.ip().is_unspecified() && addr.ip() != ip {
            return Err(io::Error::from(io::ErrorKind::AddrNotAvailable));
        }
        let port = if addr.port() == 0 {
            self.ephemeral_addr(host).port()
        } else {
            addr.port()
        };
        if self.find_listener(SocketAddr::new(ip, port)).is_some() {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        self.allocate_fd(
            host,
            Socket::Listener {
                port,
                backlog: VecDeque::new(),
                backlog_max: (options.backlog as usize).clamp(1, BACKLOG_MAX),
                reuse_addr: options.reuse_addr,
            },
        )
    }

    /// Accept a pending connection.
    pub fn accept(&mut self, host: HostId, listener: Fd) -> io::Result<(Fd, SocketAddr)> {
        let Socket::Listener { backlog, .. } = self.socket(host, listener)? else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        if backlog.is_empty() {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        if self.hosts[host]
            .emfile_until
            .is_some_and(|until| until > self.now)
        {
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        if self.fault(
            self.plan.accept_emfile,
            FaultKind::AcceptEmfile,
            host,
            listener,
        ) {
            let out_for = Duration::from_micros(self.entropy.between(1_000, 50_000));
            self.hosts[host].emfile_until = Some(self.now + out_for);
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        let conn = self.pop_backlog(host, listener);
        if self.fault(
            self.plan.accept_aborted,
            FaultKind::AcceptAborted,
            host,
            listener,
        ) {
            self.conns[conn].ends[1].closed = true;
            self.schedule(Some((conn, 1)), Delivery::Reset { conn, to: 0 });
            return Err(io::Error::from(io::ErrorKind::ConnectionAborted));
        }
        let fd = match self.allocate_fd(host, Socket::Stream { conn, side: 1 }) {
            Ok(fd) => fd,
            Err(error) => {
                self.push_backlog_front(host, listener, conn);
                return Err(error);
            }
        };
        self.conns[conn].ends[1].fd = Some(fd);
        Ok((fd, self.conns[conn].ends[0].local))
    }

    fn pop_backlog(&mut self, host: HostId, listener: Fd) -> ConnId {
        match &mut self.hosts[host].sockets[listener.0 as usize] {
            Some(Socket::Listener { backlog, .. }) => {
                backlog.pop_front().expect("non-empty backlog")
            }
            _ => unreachable!("checked to be a listener"),
        }
    }

    fn push_backlog_front(&mut self, host: HostId, listener: Fd, conn: ConnId) {
        if let Some(Socket::Listener { backlog, .. }) =
            &mut self.hosts[host].sockets[listener.0 as usize]
        {
            backlog.push_front(conn);
        }
    }

    /// `EMFILE` while `host` is out of fds (after an `EMFILE` fault on
    /// accept): no socket can be made, so a connect, a listen or a UDP
    /// bind fails at once, before anything else is looked at — as
    /// `socket()` fails first on a real host.
    pub(super) fn check_fds_left(&self, host: HostId) -> io::Result<()> {
        if self.hosts[host]
            .emfile_until
            .is_some_and(|until| until > self.now)
        {
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        Ok(())
    }

    /// Start connecting `host` to `addr`.
    pub fn connect(&mut self, host: HostId, addr: SocketAddr) -> io::Result<Fd> {
        self.check_fds_left(host)?;
        let conn = self.conns.id_next();
        let local = self.ephemeral_addr(host);
        let fd = self.allocate_fd(host, Socket::Stream { conn, side: 0 })?;
        let mut client = End::new(host, local);
        client.fd = Some(fd);
        let inserted = self.conns.insert(Connection::new(client, addr));
        debug_assert_eq!(inserted, conn);
        self.schedule(Some((conn, 0)), Delivery::Syn { conn });
        Ok(fd)
    }

    /// Read from a stream.
    pub fn read(&mut self, host: HostId, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        let (conn, side) = self.stream(host, fd)?;
        if self.fault(self.plan.interrupt, FaultKind::EintrRead, host, fd) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let available = self.conns[conn].ends[side].recv.len();
        if available > 0 && !buf.is_empty() {
            if self.fault(self.plan.spurious, FaultKind::WouldblockRead, host, fd) {
                // As if another reader took the data first; it comes back
                // with a new edge carrying the whole state (EOF included).
                let ready = self.current_ready(host, fd);
                self.raise(host, Some(fd), ready);
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            let mut n = available.min(buf.len());
            if n > 1 && self.fault(self.plan.partial_read, FaultKind::PartialRead, host, fd) {
                n = self.entropy.between(1, n as u64 - 1) as usize;
                // The rest counts as arriving now: a new edge, as on a real
                // kernel where a short read means the queue was empty.
                let ready = self.current_ready(host, fd);
                self.raise(host, Some(fd), ready);
            }
            self.conns[conn].ends[side].recv.read(&mut buf[..n]);
            self.progress += 1;
            self.trace_io(host, fd, IoKind::Read, n);
            self.window_freed(conn, 1 - side);
            return Ok(n);
        }
        let end = &mut self.conns[conn].ends[side];
        if end.recv_fin {
            // A FIN received is the end of the stream for good, as on Linux
            // (`SOCK_DONE`): a reset that came after it leaves its error
            // for a write or `take_error`.
            return Ok(0);
        }
        if let Some(kind) = end.error.take() {
            return Err(io::Error::from(kind));
        }
        if end.reset || buf.is_empty() {
            return Ok(0);
        }
        Err(io::Error::from(io::ErrorKind::WouldBlock))
    }

    pub(super) fn trace_io(&mut self, host: HostId, fd: Fd, kind: IoKind, n: usize) {
        let now = self.now;
        self.trace.record(
            tag::IO,
            &[host as u64, fd.0 as u64, kind as u64, n as u64],
            || format!("{now:?} {} {fd:?} {} {n}", self.names[host], kind.name()),
        );
    }

    /// Write to a stream.
    pub fn write(&mut self, host: HostId, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let (conn, side) = self.stream(host, fd)?;
        if self.fault(self.plan.interrupt, FaultKind::EintrWrite, host, fd) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let window_bytes = self.plan.window_bytes;
        let [a, b] = &mut self.conns[conn].ends;
        let (end, peer) = if side == 0 { (a, &*b) } else { (b, &*a) };
        if let Some(kind) = end.error.take() {
            return Err(io::Error::from(kind));
        }
        if end.reset || end.write_shut {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        if !end.connected {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let room = window_bytes.saturating_sub(end.in_flight + peer.recv.len());
        if room == 0 || end.send_full {
            end.write_blocked = true;
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        let mut n = room.min(buf.len());
        let short = n > 1 && self.fault(self.plan.partial_write, FaultKind::PartialWrite, host, fd);
        if short {
            n = self.entropy.between(1, n as u64 - 1) as usize;
        }
        let end = &mut self.conns[conn].ends[side];
        end.in_flight += n;
        end.send_full = short;
        // As Linux's `SOCK_NOSPACE`: a WRITE edge follows a short write
        // even if no write meets `WouldBlock` in between.
        end.write_blocked |= short;
        self.progress += 1;
        self.trace_io(host, fd, IoKind::Write, n);
        self.conns[conn].ends[1 - side].recv.send(&buf[..n]);
        self.schedule(
            Some((conn, side)),
            Delivery::Data {
                conn,
                to: 1 - side,
                len: n,
            },
        );
        if self.fault(self.plan.reset, FaultKind::Reset, host, fd) {
            // A reset from the network: both ends are told, after the data.
            self.schedule(Some((conn, side)), Delivery::Reset { conn, to: 1 - side });
            self.schedule(Some((conn, 1 - side)), Delivery::Reset { conn, to: side });
        }
        Ok(n)
    }

    /// Shut down a direction of a stream.
    pub fn shutdown(&mut self, host: HostId, fd: Fd, how: Shutdown) -> io::Result<()> {
        let (conn, side) = self.stream(host, fd)?;
        let end = &mut self.conns[conn].ends[side];
        if !end.connected {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) && !end.write_shut {
            end.write_shut = true;
            let hang_up = end.recv_fin;
            if !end.reset {
                self.schedule(Some((conn, side)), Delivery::Fin { conn, to: 1 - side });
            }
            if hang_up {
                self.raise(host, Some(fd), Ready::WRITE_CLOSED | Ready::READ_CLOSED);
            }
        }
        Ok(())
    }

    /// Close a socket; the fd number is free again.
    pub fn close(&mut self, host: HostId, fd: Fd) -> io::Result<()> {
        let socket = fd
            .index()
            .and_then(|i| self.hosts[host].sockets.get_mut(i))
            .and_then(Option::take)
            .ok_or_else(|| io::Error::from_raw_os_error(EBADF))?;
        match socket {
            Socket::Listener { backlog, .. } => {
                for conn in backlog {
                    self.conns[conn].ends[1].closed = true;
                    self.schedule(Some((conn, 1)), Delivery::Reset { conn, to: 0 });
                }
            }
            Socket::Stream { conn, side } => {
                let end = &mut self.conns[conn].ends[side];
                end.closed = true;
                end.fd = None;
                let unread = !end.recv.is_empty();
                let (reset, write_shut, connected) = (end.reset, end.write_shut, end.connected);
                if !reset && connected {
                    if unread {
                        // Closing with unread data sends RST, as Linux does.
                        self.schedule(Some((conn, side)), Delivery::Reset { conn, to: 1 - side });
                    } else if !write_shut {
                        self.schedule(Some((conn, side)), Delivery::Fin { conn, to: 1 - side });
                    }
                }
                self.conns.free_if_done(conn);
            }
            // Its queue goes with it; what it sent is still on the way.
            Socket::Datagram(_) => {}
        }
        self.free_fd(host, fd);
        Ok(())
    }

    /// The local address of a socket.
    pub fn local_addr(&self, host: HostId, fd: Fd) -> io::Result<SocketAddr> {
        match self.socket(host, fd)? {
            Socket::Listener { port, .. } => Ok(SocketAddr::new(self.hosts[host].ip, *port)),
            Socket::Stream { conn, side } => Ok(self.conns[*conn].ends[*side].local),
            Socket::Datagram(socket) => Ok(SocketAddr::new(self.hosts[host].ip, socket.port)),
        }
    }

    /// `true` for stream sockets: a short read means drained.
    pub fn is_stream(&self, host: HostId, fd: Fd) -> bool {
        matches!(self.socket(host, fd), Ok(Socket::Stream { .. }))
    }
}
