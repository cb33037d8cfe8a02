//! The `Poller` trait: what a backend gives the loop — readiness, sockets, a clock and a waker.
//!
//! Two backends answer it: [`MioPoller`](crate::MioPoller) (epoll, kqueue) and
//! the simulator's `SimPoller` (crate `ioloop-sim`). The loop never touches
//! the OS directly, so a service written against
//! [`IOLoop<P>`](crate::IOLoop) runs unchanged on either.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::ops::{Add, AddAssign, BitOr, BitOrAssign, Sub, SubAssign};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{Events, ListenOptions, Readiness};

/// A file descriptor number, as the OS (or the simulator) hands it out.
///
/// Numbers are reused: once an fd is closed, the next socket may get the same
/// number. The loop tells registrations apart with a generation (see
/// [`Token`]), never by the bare number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fd(pub i32);

impl Fd {
    /// The number as an index, or `None` for a negative number.
    pub fn index(self) -> Option<usize> {
        usize::try_from(self.0).ok()
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd{}", self.0)
    }
}

impl fmt::Display for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<RawFd> for Fd {
    /// The fd of a raw number, e.g. from
    /// [`AsRawFd::as_raw_fd`](std::os::fd::AsRawFd::as_raw_fd) on a socket
    /// you own and want to watch.
    fn from(raw: RawFd) -> Fd {
        Fd(raw)
    }
}

impl From<Fd> for RawFd {
    fn from(fd: Fd) -> RawFd {
        fd.0
    }
}

/// The number only: an `Fd` owns nothing, so this is no ownership claim.
///
/// ```
/// use ioloop::Fd;
/// use std::os::fd::{AsRawFd, RawFd};
/// assert_eq!(Fd::from(7).as_raw_fd(), 7);
/// assert_eq!(RawFd::from(Fd(3)), 3);
/// ```
impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The loop's name for one registration: the fd number in the low 32 bits,
/// the registration's generation in the high 32 bits.
///
/// A poller reports events by token, so an event collected for an fd that
/// was closed and reused within the same batch carries the old generation
/// and is never delivered to the new handler.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

impl Token {
    /// The token of generation `generation` of `fd`.
    pub fn new(fd: Fd, generation: u32) -> Token {
        Token((u64::from(generation) << 32) | u64::from(fd.0 as u32))
    }

    /// The fd this token names.
    pub fn fd(self) -> Fd {
        Fd(self.0 as u32 as i32)
    }

    /// The generation of the registration this token names.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}#{}", self.fd(), self.generation())
    }
}

/// What a poller observed about an fd: finer than [`Events`], so that the loop
/// can track readiness itself (see [`Ready::events`]).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready(u8);

impl Ready {
    /// Bytes (or a connection) can be read.
    pub const READABLE: Ready = Ready(0b0_0001);
    /// Bytes can be written.
    pub const WRITABLE: Ready = Ready(0b0_0010);
    /// The peer closed its sending side: reads return 0 once drained.
    pub const READ_CLOSED: Ready = Ready(0b0_0100);
    /// Our sending side is closed (peer reset, or shut down): writes fail.
    pub const WRITE_CLOSED: Ready = Ready(0b0_1000);
    /// A socket error is pending.
    pub const ERROR: Ready = Ready(0b1_0000);

    /// Nothing observed.
    pub const fn empty() -> Ready {
        Ready(0)
    }

    /// `true` when nothing is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `true` when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    /// `true` when `self` and `other` share a bit.
    pub const fn intersects(self, other: Ready) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` without the bits of `other`.
    pub const fn remove(self, other: Ready) -> Ready {
        Ready(self.0 & !other.0)
    }

    /// The raw bits, for compact encodings such as traces.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The handler events this readiness means (contract point 1): `READ` for
    /// readable or read-closed (EOF is delivered as `READ`), `WRITE` for
    /// writable or write-closed (so a writer learns of the failure), `ERROR`
    /// for a pending error or a full hang-up (both directions closed).
    pub const fn events(self) -> Events {
        // A table of every byte (the unused bits ignored), so that the
        // look-up needs no mask and no bounds check: this is on the
        // dispatch path.
        EVENTS_OF_READY[self.0 as usize]
    }

    /// `events` computed bit by bit, to build the table.
    const fn events_slow(self) -> Events {
        let mut bits = 0;
        if self.intersects(Ready(Self::READABLE.0 | Self::READ_CLOSED.0)) {
            bits |= Events::READ.bits();
        }
        if self.intersects(Ready(Self::WRITABLE.0 | Self::WRITE_CLOSED.0)) {
            bits |= Events::WRITE.bits();
        }
        let hang_up = Ready(Self::READ_CLOSED.0 | Self::WRITE_CLOSED.0);
        if self.intersects(Self::ERROR) || self.contains(hang_up) {
            bits |= Events::ERROR.bits();
        }
        Events::from_bits_truncate(bits)
    }
}

/// [`Ready::events`] of every readiness set, indexed by its bits.
const EVENTS_OF_READY: [Events; 256] = {
    let mut table = [Events::empty(); 256];
    let mut bits = 0;
    while bits < 256 {
        table[bits] = Ready(bits as u8 & 0b1_1111).events_slow();
        bits += 1;
    }
    table
};

impl BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Ready::READABLE, "READABLE"),
            (Ready::WRITABLE, "WRITABLE"),
            (Ready::READ_CLOSED, "READ_CLOSED"),
            (Ready::WRITE_CLOSED, "WRITE_CLOSED"),
            (Ready::ERROR, "ERROR"),
        ];
        let mut list = f.debug_set();
        for (bit, name) in names {
            if self.contains(bit) {
                list.entry(&format_args!("{name}"));
            }
        }
        list.finish()
    }
}

/// One readiness report: a registration's token and what was observed —
/// what [`Readiness::report`] takes, as one value, for pollers that keep
/// their edges in a list before handing them over (the simulator).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Event {
    /// The token given at [`Poller::add`].
    pub token: Token,
    /// What became ready.
    pub ready: Ready,
}

/// A point on a poller's monotonic clock: time since the poller was created.
///
/// On [`MioPoller`](crate::MioPoller) this follows `std::time::Instant`; on the
/// simulator it is virtual time, which jumps when nothing is ready.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The poller's epoch.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// The instant `since_epoch` after the poller's epoch.
    pub const fn from_epoch(since_epoch: Duration) -> Instant {
        Instant(since_epoch)
    }

    /// Time since the poller's epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later: the same
    /// as [`saturating_duration_since`](Self::saturating_duration_since),
    /// and as `std::time::Instant::duration_since` does.
    ///
    /// ```
    /// use ioloop::Instant;
    /// use std::time::Duration;
    ///
    /// let (start, end) = (Instant::from_epoch(Duration::from_millis(5)), Instant::from_epoch(Duration::from_millis(12)));
    /// assert_eq!(end.duration_since(start), Duration::from_millis(7));
    /// assert_eq!(start.duration_since(end), Duration::ZERO);
    /// ```
    #[inline]
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    #[inline]
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0)
    }

    /// The instant `duration` before `self`, or `None` if that is before
    /// the poller's epoch.
    ///
    /// ```
    /// use ioloop::Instant;
    /// use std::time::Duration;
    ///
    /// let deadline = Instant::from_epoch(Duration::from_millis(300));
    /// let just_before = deadline - Duration::from_nanos(1);
    /// assert_eq!(just_before + Duration::from_nanos(1), deadline);
    /// assert_eq!(deadline.checked_sub(Duration::from_secs(1)), None);
    /// assert_eq!(deadline - Duration::from_secs(1), Instant::ZERO, "saturates");
    /// ```
    #[inline]
    pub fn checked_sub(self, duration: Duration) -> Option<Instant> {
        self.0.checked_sub(duration).map(Instant)
    }

    /// The instant `duration` after `self`, or `None` if that cannot be
    /// represented (`+` saturates instead).
    #[inline]
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        self.0.checked_add(duration).map(Instant)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    #[inline]
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs))
    }
}

impl AddAssign<Duration> for Instant {
    #[inline]
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

/// `instant - duration`; saturates at the poller's epoch
/// ([`Instant::ZERO`]), so it never panics
/// ([`Instant::checked_sub`] tells).
impl Sub<Duration> for Instant {
    type Output = Instant;
    #[inline]
    fn sub(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_sub(rhs))
    }
}

impl SubAssign<Duration> for Instant {
    #[inline]
    fn sub_assign(&mut self, rhs: Duration) {
        *self = *self - rhs;
    }
}

/// `later - earlier`; saturates to zero if `earlier` is the later one (as
/// [`Instant::saturating_duration_since`]), so it never panics.
impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:?}", self.0)
    }
}

/// Wakes a loop blocked in [`Poller::wait`] from any thread.
pub trait Wake: Send + Sync {
    /// Make the current or next `wait` return promptly.
    fn wake(&self) -> io::Result<()>;
}

/// A readiness backend for [`IOLoop`](crate::IOLoop): registrations,
/// `wait`, a clock, a waker, and the socket operations a handler needs,
/// all addressed by [`Fd`].
///
/// # Readiness model
///
/// A poller reports readiness **edges** for every direction it can observe,
/// whatever the registered interest (interest is kept by the poller as
/// bookkeeping only, so that [`Poller::modify`] costs no system call). The
/// loop keeps the readiness it was told and clears a direction only when an
/// operation returns `WouldBlock`; that makes handlers level-triggered, as
/// in Tornado. A poller must therefore raise a new edge whenever readiness
/// returns after a `WouldBlock` (data arrives, send space frees, EOF, reset),
/// and when [`Poller::short_read_drains`] is true for an fd, also after a
/// read that returned fewer bytes than asked.
///
/// # I/O results
///
/// `read`, `write`, `accept` and the datagram calls (`recv_from`,
/// `send_to`, ...) return `ErrorKind::WouldBlock` when nothing can be done
/// now, `Ok(0)` from `read` at end of stream, and any other error as the OS
/// (or the simulator) reports it (`ConnectionReset`, `BrokenPipe`,
/// `ConnectionRefused`, `Interrupted`, ...).
pub trait Poller: 'static {
    /// Watch `fd`, reporting its events under `token`; `interest` is recorded
    /// for [`Poller::registration`]. Fails with the OS's error for an fd it
    /// cannot watch (`EBADF`, `EPERM` for a regular file, `EEXIST`).
    fn add(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()>;

    /// Change the recorded interest of a registered fd. Fails with
    /// `NotFound` for an fd that is not registered.
    fn modify(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()>;

    /// Stop watching `fd`. Fails with `NotFound` for an fd that is not
    /// registered. Like every method here, a call that fails changes
    /// nothing.
    fn delete(&mut self, fd: Fd) -> io::Result<()>;

    /// Wait at most `timeout` (`None`: until something happens) for
    /// readiness edges, and report each one to the loop's table with
    /// [`Readiness::report`], in the order observed; the table drops those
    /// of tokens no longer registered. Returns early when woken through
    /// [`Poller::waker`]. `Interrupted` may be returned and means "no
    /// events".
    ///
    /// Reporting into the table, rather than filling a list of
    /// [`Event`]s for the loop to read back, saves a copy of every event
    /// on the dispatch path.
    fn wait(&mut self, readiness: &mut Readiness, timeout: Option<Duration>) -> io::Result<()>;

    /// The current time on this poller's monotonic clock.
    fn now(&self) -> Instant;

    /// The wall clock: for timestamps a service keeps or sends (an
    /// incarnation number, a `Date` header, a lease's expiry as others
    /// read it), never for timeouts, which use [`Poller::now`]. On
    /// [`MioPoller`](crate::MioPoller) it is `SystemTime::now()`; a
    /// simulated poller answers with virtual time, so that a service which
    /// reads the wall clock only here stays deterministic. Unlike
    /// [`Poller::now`], it may jump backwards (a clock set back).
    fn system_time(&self) -> SystemTime;

    /// 64 random bits, for what a service draws at random: a backoff's
    /// jitter, a peer to try, a request id. Not for cryptography.
    ///
    /// The default — [`MioPoller`](crate::MioPoller)'s — comes from std's
    /// randomly keyed `RandomState`: a different stream in every process. A
    /// simulated poller draws them from its seed, so that a service which
    /// takes its randomness only here (through
    /// [`IOLoop::random_u64`](crate::IOLoop::random_u64)) replays bit for
    /// bit. A poller that wraps another must forward it, as it forwards
    /// [`Poller::now`]: the default would draw from the OS instead of the
    /// inner poller's seed.
    fn random_u64(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        // Each `RandomState` has its own keys (the thread's random keys,
        // the first one counted up): hashing nothing under them gives a
        // new value every call.
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    }

    /// A line a service adds to what its run records
    /// ([`IOLoop::note`](crate::IOLoop::note)). The default logs it at
    /// trace level (target `ioloop::note`), calling `note` only if that
    /// level is on; a simulated poller puts it in the run's readable trace
    /// (never in its hash). A poller that wraps another must forward it.
    fn note(&self, note: &dyn Fn() -> String) {
        if log::log_enabled!(target: "ioloop::note", log::Level::Trace) {
            log::trace!(target: "ioloop::note", "{}", note());
        }
    }

    /// A service's code reached the probe `name`
    /// ([`IOLoop::probe`](crate::IOLoop::probe)). The default logs it at
    /// trace level (target `ioloop::probe`); a simulated poller counts it
    /// for the run (never in its hash). A poller that wraps another must
    /// forward it.
    fn probe(&self, name: &'static str) {
        log::trace!(target: "ioloop::probe", "{name}");
    }

    /// A handle that wakes this poller's `wait` from any thread.
    fn waker(&self) -> Arc<dyn Wake>;

    /// The token and interest `fd` is registered with, if it is.
    fn registration(&self, fd: Fd) -> Option<(Token, Events)>;

    /// How many fds are registered.
    fn registration_count(&self) -> usize;

    /// `true` if a read of `fd` that returns fewer bytes than asked leaves it
    /// drained, so that new data raises a new edge (stream sockets).
    fn short_read_drains(&self, fd: Fd) -> bool;

    /// A non-blocking TCP listener bound to `addr` (port 0: any free port).
    fn listen(&mut self, addr: SocketAddr) -> io::Result<Fd>;

    /// Accept one pending connection on a listener: the new fd and the
    /// peer's address.
    fn accept(&mut self, listener: Fd) -> io::Result<(Fd, SocketAddr)>;

    /// Start a non-blocking connect to `addr`. The fd reports `WRITE` once
    /// connected; if the connect fails, `ERROR` with `READ` and `WRITE` (as
    /// epoll reports a refused connect), and
    /// [`take_error`](Poller::take_error) says why.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<Fd>;

    /// Read into `buf`. `Ok(0)` is end of stream (for a non-empty `buf`).
    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize>;

    /// Write from `buf`; may accept fewer bytes than offered.
    fn write(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize>;

    /// Shut down one or both directions of a connected socket.
    fn shutdown(&mut self, fd: Fd, how: Shutdown) -> io::Result<()>;

    /// Close a socket this poller created. The fd number is free for reuse
    /// afterwards. Fails, changing nothing (a registration included), for an
    /// fd the poller did not create. A poller may drop the fd's registration
    /// with it; [`IOLoop::close_fd`](crate::IOLoop::close_fd) then asks
    /// [`registration`](Self::registration), and deletes the registration
    /// only if it is still reported — so `registration` must be accurate
    /// right after `close`.
    fn close(&mut self, fd: Fd) -> io::Result<()>;

    /// Close a registered fd whoever created it: a socket of the poller, or
    /// an fd the user registered (a pipe, a UDP socket), for
    /// [`IOLoop::close`](crate::IOLoop::close) with `all_fds`. The default
    /// is [`close`](Self::close), for pollers that watch only their own
    /// sockets (the simulator).
    fn close_registered(&mut self, fd: Fd) -> io::Result<()> {
        self.close(fd)
    }

    /// The local address of a socket this poller created.
    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddr>;

    /// Called by the loop just before it runs the handler of `token` with
    /// `events`. Real backends ignore it; the simulator checks the dispatch
    /// against its own registrations (no dispatch after removal, none
    /// outside the interest).
    #[inline]
    fn before_dispatch(&mut self, token: Token, events: Events) {
        let _ = (token, events);
    }

    // ----- socket options and sockets from outside --------------------------
    //
    // Each has a default that refuses with `Unsupported`, so that a poller
    // written before them (or one that wraps another) still compiles.

    /// A listener on `addr` made with `options` (`SO_REUSEADDR`, backlog).
    fn listen_with(&mut self, addr: SocketAddr, options: ListenOptions) -> io::Result<Fd> {
        let _ = (addr, options);
        Err(unsupported("listen_with"))
    }

    /// Set `TCP_NODELAY` on a connected socket this poller owns: send small
    /// writes at once instead of waiting for the peer's ACK (Nagle).
    fn set_nodelay(&mut self, fd: Fd, nodelay: bool) -> io::Result<()> {
        let _ = (fd, nodelay);
        Err(unsupported("set_nodelay"))
    }

    /// Whether `TCP_NODELAY` is set on a connected socket.
    fn nodelay(&self, fd: Fd) -> io::Result<bool> {
        let _ = fd;
        Err(unsupported("nodelay"))
    }

    /// Turn TCP keep-alive on, probing after `idle` without traffic
    /// (`SO_KEEPALIVE` and `TCP_KEEPIDLE`, whole seconds, at least one), or
    /// off with `None`.
    fn set_keepalive(&mut self, fd: Fd, idle: Option<Duration>) -> io::Result<()> {
        let _ = (fd, idle);
        Err(unsupported("set_keepalive"))
    }

    /// The keep-alive idle time of a connected socket, `None` when off.
    fn keepalive(&self, fd: Fd) -> io::Result<Option<Duration>> {
        let _ = fd;
        Err(unsupported("keepalive"))
    }

    /// The address of a connected socket's peer.
    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        let _ = fd;
        Err(unsupported("peer_addr"))
    }

    /// Read and clear the socket's pending error (`SO_ERROR`): `Ok(None)`
    /// when there is none.
    fn take_error(&mut self, fd: Fd) -> io::Result<Option<io::Error>> {
        let _ = fd;
        Err(unsupported("take_error"))
    }

    /// Take ownership of a listener made outside; it becomes non-blocking.
    fn adopt_listener(&mut self, listener: std::net::TcpListener) -> io::Result<Fd> {
        drop(listener);
        Err(unsupported("adopt_listener"))
    }

    /// Take ownership of a connected stream made outside; it becomes
    /// non-blocking.
    fn adopt_stream(&mut self, stream: std::net::TcpStream) -> io::Result<Fd> {
        drop(stream);
        Err(unsupported("adopt_stream"))
    }

    /// Give up a listener this poller owns, dropping its registration; it
    /// stays non-blocking.
    fn release_listener(&mut self, fd: Fd) -> io::Result<std::net::TcpListener> {
        let _ = fd;
        Err(unsupported("release_listener"))
    }

    /// Give up a stream this poller owns, dropping its registration; it
    /// stays non-blocking.
    fn release_stream(&mut self, fd: Fd) -> io::Result<std::net::TcpStream> {
        let _ = fd;
        Err(unsupported("release_stream"))
    }

    // ----- datagrams (UDP) ----------------------------------------------------
    //
    // A UDP socket's fd works with the registration calls, `close`,
    // `local_addr`, `peer_addr` (once connected) and `take_error`, like any
    // socket of the poller. `read` and `write` refuse it: on a datagram
    // socket a read of 0 bytes is an empty datagram, not the end of a
    // stream, so datagrams have calls of their own. Each has a default that
    // refuses with `Unsupported`.

    /// A non-blocking UDP socket bound to `addr` (port 0: any free port).
    /// It is always writable; it is readable while a datagram (or a pending
    /// error) waits.
    fn udp_bind(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        let _ = addr;
        Err(unsupported("udp_bind"))
    }

    /// Connect a UDP socket to `addr`: [`send`](Self::send) sends there,
    /// only datagrams from `addr` are received from now on, and a datagram
    /// sent to a port nobody has bound may come back as `ConnectionRefused`
    /// on a later call (the ICMP answer; an unconnected socket never sees
    /// it). No packet is sent.
    fn udp_connect(&mut self, fd: Fd, addr: SocketAddr) -> io::Result<()> {
        let _ = (fd, addr);
        Err(unsupported("udp_connect"))
    }

    /// Send `buf` as one datagram to `addr`: all of it or an error, never
    /// part. A datagram larger than UDP carries (65,507 bytes over IPv4)
    /// fails with `EMSGSIZE`. Success means sent, not delivered: UDP may
    /// lose, duplicate, delay or reorder it.
    fn send_to(&mut self, fd: Fd, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let _ = (fd, buf, addr);
        Err(unsupported("send_to"))
    }

    /// Receive one datagram into `buf`, and the address it came from. A
    /// datagram longer than `buf` is truncated to it and the rest is
    /// discarded, as Linux's `recvfrom` does (the returned length is then
    /// `buf.len()`); `Ok((0, from))` is an empty datagram, not an end.
    /// `WouldBlock` when none waits.
    fn recv_from(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let _ = (fd, buf);
        Err(unsupported("recv_from"))
    }

    /// [`send_to`](Self::send_to) the address the socket is connected to;
    /// `NotConnected` if it is not.
    fn send(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let _ = (fd, buf);
        Err(unsupported("send"))
    }

    /// [`recv_from`](Self::recv_from) without the address (on a connected
    /// socket, it is the peer's).
    fn recv(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        let _ = (fd, buf);
        Err(unsupported("recv"))
    }
}

/// The error of a socket call a poller does not support.
pub(crate) fn unsupported(call: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{call} is not supported by this poller"),
    )
}

#[cfg(test)]
pub(crate) mod minimal {
    //! A poller for unit tests.
    use super::*;

    /// A poller of a user's that writes only what it must: every default
    /// of the trait is what its documentation says.
    pub(crate) struct Minimal {
        /// The fds it was asked to close.
        pub(crate) closed: Vec<Fd>,
        /// The error `add` answers with (an `errno`), if any.
        pub(crate) refuse_add: Option<i32>,
    }

    impl Poller for Minimal {
        fn add(&mut self, _: Fd, _: Token, _: Events) -> io::Result<()> {
            match self.refuse_add {
                Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                None => Ok(()),
            }
        }
        fn modify(&mut self, _: Fd, _: Token, _: Events) -> io::Result<()> {
            Ok(())
        }
        fn delete(&mut self, _: Fd) -> io::Result<()> {
            Ok(())
        }
        fn wait(&mut self, _: &mut Readiness, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
        fn now(&self) -> Instant {
            Instant::ZERO
        }
        fn system_time(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH
        }
        fn waker(&self) -> Arc<dyn Wake> {
            struct Nothing;
            impl Wake for Nothing {
                fn wake(&self) -> io::Result<()> {
                    Ok(())
                }
            }
            Arc::new(Nothing)
        }
        fn registration(&self, _: Fd) -> Option<(Token, Events)> {
            None
        }
        fn registration_count(&self) -> usize {
            0
        }
        fn short_read_drains(&self, _: Fd) -> bool {
            false
        }
        fn listen(&mut self, _: SocketAddr) -> io::Result<Fd> {
            Ok(Fd(3))
        }
        fn accept(&mut self, _: Fd) -> io::Result<(Fd, SocketAddr)> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn connect(&mut self, _: SocketAddr) -> io::Result<Fd> {
            Ok(Fd(4))
        }
        fn read(&mut self, _: Fd, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn write(&mut self, _: Fd, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn shutdown(&mut self, _: Fd, _: Shutdown) -> io::Result<()> {
            Ok(())
        }
        fn close(&mut self, fd: Fd) -> io::Result<()> {
            self.closed.push(fd);
            Ok(())
        }
        fn local_addr(&self, _: Fd) -> io::Result<SocketAddr> {
            Ok("127.0.0.1:1".parse().unwrap())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_add_and_subtract_durations_without_panicking() {
        let ms = Duration::from_millis;
        let at = |n| Instant::from_epoch(ms(n));
        assert_eq!(at(300) - ms(100), at(200));
        assert_eq!(at(100) - ms(300), Instant::ZERO);
        assert_eq!(at(300).checked_sub(ms(300)), Some(Instant::ZERO));
        assert_eq!(at(300).checked_sub(ms(301)), None);
        assert_eq!(at(1).checked_add(ms(2)), Some(at(3)));
        assert_eq!(Instant::from_epoch(Duration::MAX).checked_add(ms(1)), None);
        assert_eq!(
            Instant::from_epoch(Duration::MAX) + ms(1),
            Instant::from_epoch(Duration::MAX)
        );
        let mut moving = at(10);
        moving += ms(5);
        assert_eq!(moving, at(15));
        moving -= ms(20);
        assert_eq!(moving, Instant::ZERO);
        assert_eq!(at(300) - at(100), ms(200));
        assert_eq!(at(100) - at(300), Duration::ZERO);
    }

    #[test]
    fn fds_and_tokens_print_the_number_and_the_generation() {
        assert_eq!(format!("{:?} {}", Fd(7), Fd(7)), "fd7 7");
        assert_eq!(format!("{:?}", Token::new(Fd(7), 3)), "fd7#3");
    }

    #[test]
    fn ready_sets_test_and_encode_their_bits() {
        let read_closed = Ready::READABLE | Ready::READ_CLOSED;
        assert!(Ready::empty().is_empty());
        assert!(!Ready::ERROR.is_empty());
        assert!(read_closed.contains(Ready::READ_CLOSED));
        assert!(read_closed.contains(Ready::empty()));
        assert!(!read_closed.contains(Ready::READ_CLOSED | Ready::WRITABLE));
        assert_eq!(read_closed.bits(), 0b0_0101);
        assert_eq!(Ready::ERROR.bits(), 0b1_0000);
        assert_eq!(Ready::empty().bits(), 0);
        assert_eq!(Ready::READABLE | Ready::READABLE, Ready::READABLE);
    }

    #[test]
    fn instants_and_readiness_print_and_measure() {
        let (start, end) = (
            Instant::from_epoch(Duration::from_millis(5)),
            Instant::from_epoch(Duration::from_millis(12)),
        );
        assert_eq!(end.duration_since(start), Duration::from_millis(7));
        assert_eq!(
            end.checked_duration_since(start),
            Some(Duration::from_millis(7))
        );
        assert_eq!(start.checked_duration_since(end), None);
        assert_eq!(format!("{end:?}"), "t+12ms");
        let both = Ready::READABLE | Ready::ERROR;
        assert_eq!(format!("{both:?}"), "{READABLE, ERROR}");
    }

    #[test]
    fn a_poller_gets_the_documented_defaults() {
        let mut poller = super::minimal::Minimal {
            closed: Vec::new(),
            refuse_add: None,
        };
        poller.close_registered(Fd(9)).unwrap();
        assert_eq!(poller.closed, [Fd(9)], "close_registered is close");
        poller.before_dispatch(Token::new(Fd(9), 1), Events::READ);
        let fd = Fd(4);
        let addr: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut buf = [0u8; 4];
        let results = [
            ("set_nodelay", poller.set_nodelay(fd, true).err()),
            ("nodelay", poller.nodelay(fd).err()),
            ("set_keepalive", poller.set_keepalive(fd, None).err()),
            ("keepalive", poller.keepalive(fd).err()),
            ("peer_addr", poller.peer_addr(fd).err()),
            ("take_error", poller.take_error(fd).err()),
            ("udp_bind", poller.udp_bind(addr).err()),
            ("udp_connect", poller.udp_connect(fd, addr).err()),
            ("send_to", poller.send_to(fd, b"x", addr).err()),
            ("recv_from", poller.recv_from(fd, &mut buf).err()),
            ("send", poller.send(fd, b"x").err()),
            ("recv", poller.recv(fd, &mut buf).err()),
        ];
        for (call, error) in results {
            let error = error.unwrap_or_else(|| panic!("{call} succeeded"));
            assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{call}");
            assert_eq!(
                error.to_string(),
                format!("{call} is not supported by this poller")
            );
        }
        assert!(poller.closed == [Fd(9)], "no default closed anything");
        // Random bits, a new value each call (64 equal draws in a row: a
        // chance of 2^-4032).
        let first = poller.random_u64();
        assert!((0..64).any(|_| poller.random_u64() != first));
    }
}
