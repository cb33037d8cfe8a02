//! Socket options — `TCP_NODELAY`, keep-alive, the peer's address, the pending error — recorded per socket and honoured where the model has a use for them.
//!
//! The world has no Nagle algorithm (every write is sent at once) and no
//! idle probes, so `nodelay` and `keepalive` are recorded and read back,
//! nothing more. A pending error (a reset, a refused connect) is modelled:
//! [`World::take_error`] reads it once, as `SO_ERROR` does. None of these
//! calls draws from the entropy stream or writes to the trace.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ioloop::Fd;

use super::connection::End;
use super::host::Socket;
use super::{HostId, World};

impl World {
    /// Record `TCP_NODELAY` on a stream.
    pub fn set_nodelay(&mut self, host: HostId, fd: Fd, nodelay: bool) -> io::Result<()> {
        self.end_mut(host, fd)?.nodelay = nodelay;
        Ok(())
    }

    /// The recorded `TCP_NODELAY` of a stream.
    pub fn nodelay(&self, host: HostId, fd: Fd) -> io::Result<bool> {
        Ok(self.end(host, fd)?.nodelay)
    }

    /// Record keep-alive on a stream: `idle` in whole seconds, at least one.
    pub fn set_keepalive(
        &mut self,
        host: HostId,
        fd: Fd,
        idle: Option<Duration>,
    ) -> io::Result<()> {
        let idle = match idle {
            Some(idle) if idle < Duration::from_secs(1) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "keep-alive idle time must be at least one second",
                ))
            }
            Some(idle) => Some(Duration::from_secs(idle.as_secs())),
            None => None,
        };
        self.end_mut(host, fd)?.keepalive = idle;
        Ok(())
    }

    /// The recorded keep-alive idle time of a stream.
    pub fn keepalive(&self, host: HostId, fd: Fd) -> io::Result<Option<Duration>> {
        Ok(self.end(host, fd)?.keepalive)
    }

    /// The peer of a connected stream; `NotConnected` before the handshake
    /// completes (or after a refused connect).
    pub fn peer_addr(&self, host: HostId, fd: Fd) -> io::Result<SocketAddr> {
        if let Socket::Datagram(_) = self.socket(host, fd)? {
            return self.udp_peer(host, fd);
        }
        let (conn, side) = self.stream_only(host, fd)?;
        let c = &self.conns[conn];
        if !c.ends[side].connected {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        }
        Ok(c.ends[1 - side].local)
    }

    /// Read and clear a socket's pending error; a listener has none.
    pub fn take_error(&mut self, host: HostId, fd: Fd) -> io::Result<Option<io::Error>> {
        let (conn, side) = match self.socket(host, fd)? {
            Socket::Listener { .. } => return Ok(None),
            Socket::Stream { conn, side } => (*conn, *side),
            Socket::Datagram(_) => {
                let socket = &mut self.hosts[host].sockets[fd.0 as usize];
                let Some(Socket::Datagram(socket)) = socket else {
                    unreachable!("checked to be a UDP socket")
                };
                return Ok(socket.error.take().map(io::Error::from));
            }
        };
        Ok(self.conns[conn].ends[side]
            .error
            .take()
            .map(io::Error::from))
    }

    /// The recorded options of a listener: `(backlog_max, reuse_addr)`.
    pub fn listen_options(&self, host: HostId, fd: Fd) -> io::Result<(usize, bool)> {
        match self.socket(host, fd)? {
            Socket::Listener {
                backlog_max,
                reuse_addr,
                ..
            } => Ok((*backlog_max, *reuse_addr)),
            Socket::Stream { .. } | Socket::Datagram(_) => Err(not_a(fd, "listener")),
        }
    }

    /// A stream's id and side; `InvalidInput` for a listener, `EBADF` for
    /// an fd that is not open.
    fn stream_only(&self, host: HostId, fd: Fd) -> io::Result<(super::connection::ConnId, usize)> {
        match self.socket(host, fd)? {
            Socket::Stream { conn, side } => Ok((*conn, *side)),
            Socket::Listener { .. } | Socket::Datagram(_) => Err(not_a(fd, "connected socket")),
        }
    }

    fn end(&self, host: HostId, fd: Fd) -> io::Result<&End> {
        let (conn, side) = self.stream_only(host, fd)?;
        Ok(&self.conns[conn].ends[side])
    }

    fn end_mut(&mut self, host: HostId, fd: Fd) -> io::Result<&mut End> {
        let (conn, side) = self.stream_only(host, fd)?;
        Ok(&mut self.conns[conn].ends[side])
    }
}

fn not_a(fd: Fd, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("fd {fd} is not a {what}"),
    )
}
