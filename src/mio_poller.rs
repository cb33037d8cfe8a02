//! `MioPoller`: the real backend, on mio (epoll on Linux, kqueue on the BSDs and macOS).
//!
//! Every fd is registered once, edge-triggered, for both directions; the
//! interest a handler asks for is bookkeeping, so `modify` makes no system
//! call. Sockets made through the poller (`listen`, `accept`, `connect`,
//! `udp_bind`) are owned by it, in a table indexed by fd number.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::unix::SourceFd;
use mio::{Interest, Registry};

use crate::{Events, Fd, Instant, ListenOptions, Poller, Readiness, Ready, Token, Wake};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("ioloop's tokens need 64-bit mio tokens (usize)");

/// The mio token of the waker; loop tokens never reach it (fds are below
/// 2^31), and as a loop token it names fd −1, which is never registered.
const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);

/// How many events one `wait` collects at most; the rest wait for the next.
const EVENTS_CAPACITY: usize = 1024;

/// A socket the poller created and owns.
enum Socket {
    Listener(TcpListener),
    Stream(TcpStream),
    /// `connected` once `udp_connect` succeeded: `send` needs a peer.
    Datagram {
        socket: UdpSocket,
        connected: bool,
    },
}

/// What the poller knows of one fd number.
#[derive(Default)]
struct FdState {
    socket: Option<Socket>,
    registration: Option<(Token, Events)>,
}

/// The real backend: epoll (Linux) or kqueue (BSD, macOS), through mio.
///
/// Datagrams: [`IOLoop::udp_bind`](crate::IOLoop::udp_bind) makes a UDP
/// socket the poller owns. A datagram longer than the buffer given to
/// `recv_from` is truncated to it, the rest discarded (Linux's
/// `recvfrom`); a connected UDP socket learns of an unbound destination
/// port from the kernel's ICMP answer (`ConnectionRefused` on a later
/// call, Linux), an unconnected one never does.
///
/// Besides its own sockets, it can watch fds you own (a pipe, a Unix
/// socket, a UDP socket made elsewhere): pass them to
/// [`IOLoop::add_handler`](crate::IOLoop::add_handler) as `Fd(raw_fd)`.
/// [`IOLoop::read`](crate::IOLoop::read) and
/// [`IOLoop::write`](crate::IOLoop::write) work on them too (plain `read(2)`
/// and `write(2)`). If you do their I/O yourself instead (`recv_from`, ...),
/// call [`IOLoop::clear_readiness`](crate::IOLoop::clear_readiness) when it
/// returns `WouldBlock`: the backend is edge-triggered, and the loop only
/// knows an fd is drained when told. Remove the handler before closing such
/// an fd; the poller never closes an fd it does not own. To hand a TCP
/// socket to the poller instead, adopt it
/// ([`IOLoop::adopt_stream`](crate::IOLoop::adopt_stream)).
///
/// ```
/// use ioloop::{IOLoop, MioPoller};
/// let io = IOLoop::new(MioPoller::new()?);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct MioPoller {
    poll: mio::Poll,
    events: mio::Events,
    fds: Vec<FdState>,
    registration_count: usize,
    waker: Arc<MioWaker>,
    /// The monotonic clock's reading when the poller was made.
    epoch: Duration,
}

struct MioWaker(mio::Waker);

impl Wake for MioWaker {
    fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }
}

impl MioPoller {
    /// A new epoll (kqueue) instance with its waker.
    pub fn new() -> io::Result<MioPoller> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        Ok(MioPoller {
            poll,
            events: mio::Events::with_capacity(EVENTS_CAPACITY),
            fds: Vec::new(),
            registration_count: 0,
            waker: Arc::new(MioWaker(waker)),
            epoch: monotonic_now(),
        })
    }

    fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    fn state(&self, fd: Fd) -> Option<&FdState> {
        self.fds.get(fd.index()?)
    }

    fn state_mut(&mut self, fd: Fd) -> Option<&mut FdState> {
        self.fds.get_mut(fd.index()?)
    }

    /// The table row of `fd`, growing the table; only for fds the OS vouched
    /// for (just created, or just registered).
    fn state_grow(&mut self, fd: Fd) -> &mut FdState {
        let index = fd.index().expect("the OS hands out non-negative fds");
        if self.fds.len() <= index {
            self.fds.resize_with(index + 1, FdState::default);
        }
        &mut self.fds[index]
    }

    fn stream(&self, fd: Fd) -> Option<&TcpStream> {
        match self.state(fd)?.socket.as_ref()? {
            Socket::Stream(stream) => Some(stream),
            Socket::Listener(_) | Socket::Datagram { .. } => None,
        }
    }

    fn adopt(&mut self, socket: Socket) -> Fd {
        let raw = match &socket {
            Socket::Listener(listener) => listener.as_raw_fd(),
            Socket::Stream(stream) => stream.as_raw_fd(),
            Socket::Datagram { socket, .. } => socket.as_raw_fd(),
        };
        let fd = Fd(raw);
        self.state_grow(fd).socket = Some(socket);
        fd
    }

    fn forget_registration(&mut self, fd: Fd) {
        if let Some(state) = self.state_mut(fd) {
            if state.registration.take().is_some() {
                self.registration_count -= 1;
            }
        }
    }

    /// The registration of `fd`, or `NotFound`.
    fn registered(&self, fd: Fd) -> io::Result<(Token, Events)> {
        self.registration(fd).ok_or_else(|| not_registered(fd))
    }
}

impl Poller for MioPoller {
    fn add(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        if self.registration(fd).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("fd {fd} is already registered"),
            ));
        }
        let raw: RawFd = fd.0;
        let mio_token = mio::Token(token.0 as usize);
        self.registry().register(
            &mut SourceFd(&raw),
            mio_token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.state_grow(fd).registration = Some((token, interest));
        self.registration_count += 1;
        Ok(())
    }

    fn modify(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        let (token_old, _) = self.registered(fd)?;
        if token_old != token {
            let raw: RawFd = fd.0;
            self.registry().reregister(
                &mut SourceFd(&raw),
                mio::Token(token.0 as usize),
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        self.state_grow(fd).registration = Some((token, interest));
        Ok(())
    }

    fn delete(&mut self, fd: Fd) -> io::Result<()> {
        self.registered(fd)?;
        let raw: RawFd = fd.0;
        match self.registry().deregister(&mut SourceFd(&raw)) {
            Ok(()) => {}
            // Closed behind the poller's back (EBADF), or closed and the
            // number reused (ENOENT): the kernel dropped the registration
            // with the file, so the fd is not watched any more.
            Err(error) if is_gone(&error) => {}
            // Anything else: still watched, and still recorded as such.
            Err(error) => return Err(error),
        }
        self.forget_registration(fd);
        Ok(())
    }

    fn wait(&mut self, readiness: &mut Readiness, timeout: Option<Duration>) -> io::Result<()> {
        self.poll.poll(&mut self.events, timeout)?;
        for event in self.events.iter() {
            // The waker's event needs no test: its token names fd −1, which
            // no registration has, so the table drops it.
            let token = Token(event.token().0 as u64);
            // Rare: one test for the error and closed bits. Without them,
            // the report needs no test for `ERROR` either.
            if is_closed_or_failed(event) {
                readiness.report(token, open_of(event) | closed_of(event));
            } else {
                readiness.report(token, open_of(event));
            }
        }
        Ok(())
    }

    fn now(&self) -> Instant {
        Instant::from_epoch(monotonic_now().saturating_sub(self.epoch))
    }

    fn system_time(&self) -> SystemTime {
        SystemTime::now()
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    fn registration(&self, fd: Fd) -> Option<(Token, Events)> {
        self.state(fd)?.registration
    }

    fn registration_count(&self) -> usize {
        self.registration_count
    }

    fn short_read_drains(&self, fd: Fd) -> bool {
        self.stream(fd).is_some()
    }

    fn listen(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        let listener = TcpListener::bind(addr)?;
        Ok(self.adopt(Socket::Listener(listener)))
    }

    fn accept(&mut self, listener: Fd) -> io::Result<(Fd, SocketAddr)> {
        let (stream, peer) = match self.state(listener).and_then(|s| s.socket.as_ref()) {
            Some(Socket::Listener(listener)) => listener.accept()?,
            _ => return Err(not_ours(listener, "listener")),
        };
        Ok((self.adopt(Socket::Stream(stream)), peer))
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        let stream = TcpStream::connect(addr)?;
        Ok(self.adopt(Socket::Stream(stream)))
    }

    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        match self.state(fd).map(|s| s.socket.as_ref()) {
            Some(Some(Socket::Stream(stream))) => {
                let mut stream: &TcpStream = stream;
                stream.read(buf)
            }
            Some(Some(Socket::Listener(_))) => Err(listener_not_stream(fd)),
            Some(Some(Socket::Datagram { .. })) => Err(datagram_not_stream(fd)),
            _ => raw_read(fd, buf),
        }
    }

    fn write(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        match self.state(fd).map(|s| s.socket.as_ref()) {
            // std's TcpStream::write passes MSG_NOSIGNAL: no SIGPIPE.
            Some(Some(Socket::Stream(stream))) => {
                let mut stream: &TcpStream = stream;
                stream.write(buf)
            }
            Some(Some(Socket::Listener(_))) => Err(listener_not_stream(fd)),
            Some(Some(Socket::Datagram { .. })) => Err(datagram_not_stream(fd)),
            _ => raw_write(fd, buf),
        }
    }

    fn shutdown(&mut self, fd: Fd, how: Shutdown) -> io::Result<()> {
        match self.state(fd).map(|s| s.socket.as_ref()) {
            Some(Some(Socket::Stream(stream))) => stream.shutdown(how),
            Some(Some(Socket::Listener(_))) => Err(listener_not_stream(fd)),
            _ => Err(not_ours(fd, "connected socket")),
        }
    }

    fn close(&mut self, fd: Fd) -> io::Result<()> {
        // Refuse before changing anything.
        if self.state(fd).and_then(|s| s.socket.as_ref()).is_none() {
            return Err(not_ours(fd, "socket"));
        }
        if self.registration(fd).is_some() {
            self.delete(fd)?;
        }
        let socket = self.state_mut(fd).and_then(|s| s.socket.take());
        drop(socket);
        Ok(())
    }

    fn close_registered(&mut self, fd: Fd) -> io::Result<()> {
        if self.state(fd).and_then(|s| s.socket.as_ref()).is_some() {
            return self.close(fd);
        }
        self.registered(fd)?;
        let raw: RawFd = fd.0;
        if let Err(error) = self.registry().deregister(&mut SourceFd(&raw)) {
            if is_gone(&error) {
                // Already closed, perhaps reused: not ours to close now.
                self.forget_registration(fd);
            }
            return Err(error);
        }
        self.forget_registration(fd);
        // SAFETY: closing an fd has no memory-safety effect; the user gave
        // this fd to the loop to watch, and `IOLoop::close(true)` documents
        // that it closes such fds (as Tornado's `close(all_fds=True)`).
        if unsafe { libc::close(fd.0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        match self.state(fd).and_then(|s| s.socket.as_ref()) {
            Some(Socket::Listener(listener)) => listener.local_addr(),
            Some(Socket::Stream(stream)) => stream.local_addr(),
            Some(Socket::Datagram { socket, .. }) => socket.local_addr(),
            None => Err(not_ours(fd, "socket")),
        }
    }

    fn listen_with(&mut self, addr: SocketAddr, options: ListenOptions) -> io::Result<Fd> {
        use socket2::{Domain, Protocol, Socket as RawSocket, Type};
        let socket = RawSocket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(options.reuse_addr)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(options.backlog).unwrap_or(i32::MAX))?;
        let listener = TcpListener::from_std(socket.into());
        Ok(self.adopt(Socket::Listener(listener)))
    }

    fn set_nodelay(&mut self, fd: Fd, nodelay: bool) -> io::Result<()> {
        self.stream_or_err(fd)?.set_nodelay(nodelay)
    }

    fn nodelay(&self, fd: Fd) -> io::Result<bool> {
        self.stream_or_err(fd)?.nodelay()
    }

    fn set_keepalive(&mut self, fd: Fd, idle: Option<Duration>) -> io::Result<()> {
        let idle = keepalive_idle_checked(idle)?;
        let socket = socket2::SockRef::from(self.stream_or_err(fd)?);
        match idle {
            Some(idle) => socket.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle)),
            None => socket.set_keepalive(false),
        }
    }

    fn keepalive(&self, fd: Fd) -> io::Result<Option<Duration>> {
        let socket = socket2::SockRef::from(self.stream_or_err(fd)?);
        if socket.keepalive()? {
            Ok(Some(socket.tcp_keepalive_time()?))
        } else {
            Ok(None)
        }
    }

    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        if let Some(Socket::Datagram { socket, .. }) =
            self.state(fd).and_then(|s| s.socket.as_ref())
        {
            return socket.peer_addr();
        }
        self.stream_or_err(fd)?.peer_addr()
    }

    fn take_error(&mut self, fd: Fd) -> io::Result<Option<io::Error>> {
        match self.state(fd).and_then(|s| s.socket.as_ref()) {
            Some(Socket::Listener(listener)) => listener.take_error(),
            Some(Socket::Stream(stream)) => stream.take_error(),
            Some(Socket::Datagram { socket, .. }) => socket.take_error(),
            None => Err(not_ours(fd, "socket")),
        }
    }

    fn adopt_listener(&mut self, listener: std::net::TcpListener) -> io::Result<Fd> {
        let fd = Fd(listener.as_raw_fd());
        if self.owns(fd) {
            // The same fd as a socket we own (made with `from_raw_fd`):
            // dropping it would close ours.
            std::mem::forget(listener);
            return Err(already_ours(fd));
        }
        if !is_listening(fd)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is not a listening socket"),
            ));
        }
        listener.set_nonblocking(true)?;
        Ok(self.adopt(Socket::Listener(TcpListener::from_std(listener))))
    }

    fn adopt_stream(&mut self, stream: std::net::TcpStream) -> io::Result<Fd> {
        let fd = Fd(stream.as_raw_fd());
        if self.owns(fd) {
            // As in `adopt_listener`: never close a socket we own.
            std::mem::forget(stream);
            return Err(already_ours(fd));
        }
        if is_listening(fd)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is a listening socket, not a stream"),
            ));
        }
        stream.set_nonblocking(true)?;
        Ok(self.adopt(Socket::Stream(TcpStream::from_std(stream))))
    }

    fn release_listener(&mut self, fd: Fd) -> io::Result<std::net::TcpListener> {
        match self.state(fd).and_then(|s| s.socket.as_ref()) {
            Some(Socket::Listener(_)) => {}
            _ => return Err(not_ours(fd, "listener")),
        }
        match self.release(fd)? {
            Socket::Listener(listener) => Ok(listener.into()),
            _ => unreachable!("checked to be a listener"),
        }
    }

    fn release_stream(&mut self, fd: Fd) -> io::Result<std::net::TcpStream> {
        self.stream_or_err(fd)?;
        match self.release(fd)? {
            Socket::Stream(stream) => Ok(stream.into()),
            _ => unreachable!("checked to be a stream"),
        }
    }

    fn udp_bind(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        let socket = UdpSocket::bind(addr)?;
        Ok(self.adopt(Socket::Datagram {
            socket,
            connected: false,
        }))
    }

    fn udp_connect(&mut self, fd: Fd, addr: SocketAddr) -> io::Result<()> {
        match self.state_mut(fd).and_then(|s| s.socket.as_mut()) {
            Some(Socket::Datagram { socket, connected }) => {
                socket.connect(addr)?;
                *connected = true;
                Ok(())
            }
            _ => Err(not_ours(fd, "UDP socket")),
        }
    }

    fn send_to(&mut self, fd: Fd, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        self.datagram(fd)?.0.send_to(buf, addr)
    }

    fn recv_from(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.datagram(fd)?.0.recv_from(buf)
    }

    fn send(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        match self.datagram(fd)? {
            (socket, true) => socket.send(buf),
            // Linux says EDESTADDRREQ; the simulator and this say one thing.
            (_, false) => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("fd {fd}: send on a UDP socket that is not connected"),
            )),
        }
    }

    fn recv(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        self.datagram(fd)?.0.recv(buf)
    }
}

impl MioPoller {
    /// The stream `fd`, or an error naming what it is not.
    fn stream_or_err(&self, fd: Fd) -> io::Result<&TcpStream> {
        self.stream(fd)
            .ok_or_else(|| not_ours(fd, "connected socket"))
    }

    /// The UDP socket `fd` and whether it is connected, or an error naming
    /// what it is not.
    fn datagram(&self, fd: Fd) -> io::Result<(&UdpSocket, bool)> {
        match self.state(fd).and_then(|s| s.socket.as_ref()) {
            Some(Socket::Datagram { socket, connected }) => Ok((socket, *connected)),
            _ => Err(not_ours(fd, "UDP socket")),
        }
    }

    /// `true` if `fd` is a socket this poller owns.
    fn owns(&self, fd: Fd) -> bool {
        self.state(fd).is_some_and(|s| s.socket.is_some())
    }

    /// Take an owned socket out of the table, dropping its registration.
    fn release(&mut self, fd: Fd) -> io::Result<Socket> {
        if self.registration(fd).is_some() {
            self.delete(fd)?;
        }
        self.state_mut(fd)
            .and_then(|s| s.socket.take())
            .ok_or_else(|| not_ours(fd, "socket"))
    }
}

impl std::fmt::Debug for MioPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MioPoller")
            .field("registrations", &self.registration_count)
            .finish()
    }
}

/// `true` if one mio event has an error or a closed bit (rare).
#[inline]
fn is_closed_or_failed(event: &mio::event::Event) -> bool {
    event.is_error() || event.is_read_closed() || event.is_write_closed()
}

/// The readable and writable bits of one mio event.
#[inline]
fn open_of(event: &mio::event::Event) -> Ready {
    let mut ready = Ready::empty();
    if event.is_readable() {
        ready |= Ready::READABLE;
    }
    if event.is_writable() {
        ready |= Ready::WRITABLE;
    }
    ready
}

/// The closed and error bits of one mio event.
fn closed_of(event: &mio::event::Event) -> Ready {
    let mut ready = Ready::empty();
    if event.is_read_closed() {
        ready |= Ready::READ_CLOSED;
    }
    if event.is_write_closed() {
        ready |= Ready::WRITE_CLOSED;
    }
    if event.is_error() {
        ready |= Ready::ERROR;
    }
    ready
}

/// `true` for a deregistration error that means the kernel no longer holds
/// the registration: the fd was closed (`EBADF`), or closed and its number
/// reused by a file that was never registered (`ENOENT`).
fn is_gone(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EBADF | libc::ENOENT))
}

fn not_registered(fd: Fd) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("fd {fd} is not registered"),
    )
}

/// `read` or `write` on a listener: not connected (Linux says `ENOTCONN`
/// to a read, `EPIPE` to a write; the simulator and this poller say
/// `NotConnected` to both).
fn listener_not_stream(fd: Fd) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("fd {fd} is a listening socket: accept connections from it"),
    )
}

fn not_ours(fd: Fd, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("fd {fd} is not a {what} created by this poller"),
    )
}

/// `read` or `write` on a UDP socket: a datagram of 0 bytes would read as
/// end of stream.
fn datagram_not_stream(fd: Fd) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("fd {fd} is a UDP socket: use recv_from, recv, send_to or send"),
    )
}

/// The monotonic clock (`CLOCK_MONOTONIC`, as `std::time::Instant` reads it
/// on Linux): read once or twice per iteration, so without
/// `Instant::elapsed`'s checked arithmetic on two `timespec`s (about 60
/// instructions a read).
fn monotonic_now() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is valid for writes of a `timespec`; CLOCK_MONOTONIC is
    // supported on every platform mio supports, so the call cannot fail.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    debug_assert_eq!(result, 0, "clock_gettime(CLOCK_MONOTONIC)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// `read(2)` on an fd the user owns.
fn raw_read(fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes; a bad fd makes
    // the call fail with EBADF, nothing worse.
    let n = unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)` on an fd the user owns.
fn raw_write(fd: Fd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of reads; a bad fd makes
    // the call fail with EBADF, nothing worse.
    let n = unsafe { libc::write(fd.0, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn already_ours(fd: Fd) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("fd {fd} already belongs to this poller"),
    )
}

/// `true` if `listen(2)` was called on `fd` (`SO_ACCEPTCONN`).
fn is_listening(fd: Fd) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` is the size
    // of `value`; a bad fd makes the call fail, nothing worse.
    let result = unsafe {
        libc::getsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value != 0)
    }
}

/// A keep-alive idle time the kernel takes: whole seconds, at least one.
pub(crate) fn keepalive_idle_checked(idle: Option<Duration>) -> io::Result<Option<Duration>> {
    match idle {
        Some(idle) if idle < Duration::from_secs(1) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "keep-alive idle time must be at least one second",
        )),
        Some(idle) => Ok(Some(Duration::from_secs(idle.as_secs()))),
        None => Ok(None),
    }
}
