//! Datagrams: UDP sockets, datagrams in flight, and what they meet — loss, duplication, reordering, delay, cut links, unbound ports, full queues — and truncation to the reader's buffer.
//!
//! A datagram is routed by address over the same links as TCP segments,
//! but UDP never retransmits, so where a segment would wait a datagram is
//! gone: a cut link drops it (and the datagrams it held), as does a host
//! that is down (a machine crash). A clogged link holds datagrams and lets
//! them go in order, like segments. A datagram to a port nobody has bound
//! is dropped, and the kernel of an up host answers with an ICMP
//! port-unreachable; only a socket connected to that address hears of it
//! (`ConnectionRefused` on its next call, as Linux reports it). A socket
//! connected to a peer drops datagrams from anyone else.
//!
//! Datagrams from one socket arrive in the order sent, unless a fault
//! says otherwise: a `datagram-reorder` holds one back 1 to 200 ms alone,
//! so what the socket sends next overtakes it; a `datagram-duplicate`'s
//! copy takes a path of its own (its own latency, and up to 200 ms more),
//! so it may land long after later datagrams, or even before its original;
//! a `datagram-delay` holds one 1 to 200 ms and what the socket sends next
//! behind it (the order stays). Each socket queues at most
//! [`RECV_QUEUE_BYTES_MAX`] bytes (each datagram charged its payload and
//! [`QUEUED_OVERHEAD_BYTES`]); a datagram that does not fit is dropped, as
//! a kernel does. A read takes one whole datagram and truncates it to the
//! caller's buffer.
//!
//! What a datagram meets comes from a stream of its own, a fixed number of
//! draws per datagram sent (see `Fate`), and its four decisions are
//! numbered apart from the socket faults' (see
//! [`DATAGRAM_DRAW`](super::DATAGRAM_DRAW)): removing one fault from a
//! schedule neither renumbers nor redraws another datagram's. Nothing is
//! drawn until a datagram is sent, so a run that opens no UDP socket draws
//! exactly what it drew before datagrams existed.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ioloop::{Fd, Instant, Ready};

use super::delivery::Delivery;
use super::host::{HostId, Socket};
use super::socket::IoKind;
use super::{tag, FaultKind, World, EBADF};
use crate::{Entropy, FaultPlan, Ppm};

/// The largest UDP payload over IPv4: 65,535 bytes less the IP and UDP
/// headers. A larger send fails with `EMSGSIZE`.
pub const DATAGRAM_BYTES_MAX: usize = 65_507;
/// Bytes a socket's receive queue holds (Linux's default `rmem_default`);
/// a datagram that does not fit is dropped.
pub const RECV_QUEUE_BYTES_MAX: usize = 212_992;
/// What a queued datagram costs beyond its payload (the kernel's
/// bookkeeping), so that a queue of empty datagrams is bounded too.
pub const QUEUED_OVERHEAD_BYTES: usize = 256;
/// The extra wait of a delayed or reordered datagram, in microseconds (a
/// duplicate's copy lags 0 to `LAG_US_MAX`).
const LAG_US_MIN: u64 = 1_000;
const LAG_US_MAX: u64 = 200_000;
/// Numbered decisions each datagram owns (see
/// [`DATAGRAM_DRAW`](super::DATAGRAM_DRAW)).
const DECISIONS_PER_DATAGRAM: u64 = 4;
/// The ChaCha stream of what datagrams meet: not the run's, so that a
/// datagram's draws move no other decision.
pub(super) const FATES_STREAM: u64 = 0x6661_7465_7321;
/// Tries to find a free ephemeral port before giving up with `AddrInUse`.
const EPHEMERAL_TRIES_MAX: usize = 64;

/// `EMSGSIZE`, as Linux and the BSDs number it.
#[cfg(target_os = "linux")]
const EMSGSIZE: i32 = 90;
#[cfg(not(target_os = "linux"))]
const EMSGSIZE: i32 = 40;

/// Trace values of datagram deliveries (after the connection kinds 0–5).
mod deliver {
    pub const QUEUED: u64 = 6;
    pub const DROPPED: u64 = 7;
    pub const UNREACHABLE: u64 = 8;
}

/// Why a datagram was dropped: its code in the trace.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
enum Dropped {
    Cut = 1,
    HostDown = 2,
    Unbound = 3,
    Filtered = 4,
    QueueFull = 5,
}

/// A datagram waiting in a socket's receive queue.
struct Received {
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// A UDP socket of a host.
pub(super) struct UdpSocket {
    pub(super) port: u16,
    /// Set by `udp_connect`: where `send` goes, and the only sender heard.
    pub(super) peer: Option<SocketAddr>,
    queue: VecDeque<Received>,
    /// Payload plus overhead of what `queue` holds.
    queue_bytes: usize,
    /// An ICMP answer to report once, on the next call.
    pub(super) error: Option<io::ErrorKind>,
    /// Datagrams from this socket land no earlier than this: in order
    /// (a reordered datagram or a duplicate's copy aside).
    last_delivery: Instant,
}

impl UdpSocket {
    fn new(port: u16) -> UdpSocket {
        UdpSocket {
            port,
            peer: None,
            queue: VecDeque::new(),
            queue_bytes: 0,
            error: None,
            last_delivery: Instant::ZERO,
        }
    }

    /// Always writable; readable while a datagram or an error waits.
    pub(super) fn ready(&self) -> Ready {
        let mut ready = Ready::WRITABLE;
        if !self.queue.is_empty() || self.error.is_some() {
            ready |= Ready::READABLE;
        }
        if self.error.is_some() {
            ready |= Ready::ERROR;
        }
        ready
    }
}

/// What travels between hosts for UDP.
pub(super) enum Packet {
    /// A datagram.
    Data {
        from_host: HostId,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// The ICMP port-unreachable answering a datagram from `to` to `about`.
    Unreachable {
        from_host: HostId,
        to_host: HostId,
        to: SocketAddr,
        about: SocketAddr,
    },
}

impl Packet {
    /// A datagram from `from` (on `from_host`) to `to`.
    fn data(from_host: HostId, from: SocketAddr, to: SocketAddr, bytes: &[u8]) -> Packet {
        Packet::Data {
            from_host,
            from,
            to,
            bytes: bytes.to_vec(),
        }
    }
}

/// What one datagram sent meets, drawn whole from the datagrams' own
/// stream before anything is decided: the same number of draws for every
/// datagram, whatever its odds and whatever fires, so that a schedule that
/// removes one datagram's fault leaves every other datagram's draws (its
/// latency, its lags, its odds) where they were.
struct Fate {
    /// One draw in `0..1_000_000` per decision — loss, delay, reorder,
    /// duplicate — read against the plan's odds by [`fires`].
    odds: [u32; DECISIONS_PER_DATAGRAM as usize],
    /// The way there.
    latency: Duration,
    /// The extra wait of a delayed datagram.
    delay: Duration,
    /// How long a reordered datagram is held back.
    hold: Duration,
    /// The copy's way there, and its extra lag.
    copy_latency: Duration,
    copy_lag: Duration,
}

impl Fate {
    fn draw(entropy: &mut Entropy, plan: &FaultPlan) -> Fate {
        let mut odds = [0u32; DECISIONS_PER_DATAGRAM as usize];
        for odd in &mut odds {
            *odd = entropy.below(1_000_000) as u32;
        }
        let (latency_min, latency_max) = (plan.latency_us_min, plan.latency_us_max);
        let mut micros = |low: u64, high: u64| {
            // Always one draw, even for an empty range.
            let span = entropy.below(high.saturating_sub(low) + 1);
            Duration::from_micros(low + span)
        };
        Fate {
            odds,
            latency: micros(latency_min, latency_max),
            delay: micros(LAG_US_MIN, LAG_US_MAX),
            hold: micros(LAG_US_MIN, LAG_US_MAX),
            copy_latency: micros(latency_min, latency_max),
            copy_lag: micros(0, LAG_US_MAX),
        }
    }
}

/// `true` if a draw in `0..1_000_000` fires a fault of `ppm` parts per
/// million — the top `ppm` of the range, as [`Entropy::chance`] reads it,
/// so that a zero draw (exhausted fuzzer bytes) is no fault.
fn fires(odds: u32, ppm: Ppm) -> bool {
    let ppm = ppm.min(1_000_000);
    ppm > 0 && odds >= 1_000_000 - ppm
}

/// What became of the datagrams of a run, counted as they go. Faults that
/// fired are in the run's fired faults too; these counts add what the
/// network did on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramStats {
    /// Datagrams sent (`send_to`, `send`).
    pub sent: u64,
    /// Copies put in a receive queue (duplicates included).
    pub queued: u64,
    /// Datagrams read (`recv_from`, `recv`).
    pub received: u64,
    /// Lost to a `datagram-loss` fault.
    pub lost: u64,
    /// Extra copies made by a `datagram-duplicate` fault.
    pub duplicated: u64,
    /// Dropped on a cut link (a partition), or held by a link when it was cut.
    pub dropped_cut: u64,
    /// Dropped at a host that is down (a machine crash).
    pub dropped_host_down: u64,
    /// Dropped for want of a socket bound to the port (or a host at the address).
    pub dropped_unbound: u64,
    /// Dropped by a socket connected to another peer.
    pub dropped_filtered: u64,
    /// Dropped by a full receive queue.
    pub dropped_queue_full: u64,
    /// Read into a buffer shorter than the datagram, the rest discarded.
    pub truncated: u64,
    /// ICMP port-unreachable answers that reached a connected socket.
    pub refused: u64,
}

impl World {
    // ----- the socket calls ---------------------------------------------------

    /// A UDP socket on `addr`'s port (0: an ephemeral port) of `host`. The
    /// first UDP socket of a run puts its preset's datagram faults in force.
    pub fn udp_bind(&mut self, host: HostId, addr: SocketAddr) -> io::Result<Fd> {
        self.check_fds_left(host)?;
        let ip = self.hosts[host].ip;
        if !addr.ip().is_unspecified() && addr.ip() != ip {
            return Err(io::Error::from(io::ErrorKind::AddrNotAvailable));
        }
        let port = match addr.port() {
            0 => self.udp_ephemeral_port(host)?,
            port if self.udp_bound(host, port).is_some() => {
                return Err(io::Error::from(io::ErrorKind::AddrInUse))
            }
            port => port,
        };
        let fd = self.allocate_fd(host, Socket::Datagram(UdpSocket::new(port)))?;
        self.datagram_faults_in_force();
        Ok(fd)
    }

    /// Connect a UDP socket to `addr`: `send` goes there, only its
    /// datagrams are received, and an ICMP answer about it is reported.
    pub fn udp_connect(&mut self, host: HostId, fd: Fd, addr: SocketAddr) -> io::Result<()> {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect a UDP socket to {addr}"),
            ));
        }
        self.udp_socket_mut(host, fd)?.peer = Some(addr);
        Ok(())
    }

    /// Send one datagram from `fd` of `host` to `addr`.
    pub fn send_to(
        &mut self,
        host: HostId,
        fd: Fd,
        buf: &[u8],
        addr: SocketAddr,
    ) -> io::Result<usize> {
        self.udp_socket(host, fd)?;
        if buf.len() > DATAGRAM_BYTES_MAX {
            return Err(io::Error::from_raw_os_error(EMSGSIZE));
        }
        if addr.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send a datagram to port 0 ({addr})"),
            ));
        }
        if self.fault(self.plan.interrupt, FaultKind::EintrWrite, host, fd) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        if let Some(kind) = self.udp_socket_mut(host, fd)?.error.take() {
            return Err(io::Error::from(kind));
        }
        self.emit(host, fd, buf, addr);
        Ok(buf.len())
    }

    /// Send one datagram to the peer `fd` is connected to.
    pub fn send(&mut self, host: HostId, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let peer = self.udp_socket(host, fd)?.peer.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("fd {fd}: send on a UDP socket that is not connected"),
            )
        })?;
        self.send_to(host, fd, buf, peer)
    }

    /// Read one datagram, truncated to `buf`, and its sender.
    pub fn recv_from(
        &mut self,
        host: HostId,
        fd: Fd,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        self.udp_socket(host, fd)?;
        if self.fault(self.plan.interrupt, FaultKind::EintrRead, host, fd) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let socket = self.udp_socket_mut(host, fd)?;
        if let Some(kind) = socket.error.take() {
            return Err(io::Error::from(kind));
        }
        if socket.queue.is_empty() {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        if self.fault(self.plan.spurious, FaultKind::WouldblockRead, host, fd) {
            // As on a stream: another reader was faster; a new edge follows.
            let ready = self.current_ready(host, fd);
            self.raise(host, Some(fd), ready);
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        let socket = self.udp_socket_mut(host, fd)?;
        let Received { from, bytes } = socket.queue.pop_front().expect("checked non-empty");
        socket.queue_bytes -= bytes.len() + QUEUED_OVERHEAD_BYTES;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        self.datagram_stats.received += 1;
        if bytes.len() > n {
            self.datagram_stats.truncated += 1;
            self.observed_fault(FaultKind::DatagramTruncate, host, fd);
        }
        self.progress += 1;
        self.trace_io(host, fd, IoKind::Recv, n);
        Ok((n, from))
    }

    /// [`recv_from`](World::recv_from) without the sender.
    pub fn recv(&mut self, host: HostId, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(host, fd, buf).map(|(n, _)| n)
    }

    /// The peer a UDP socket is connected to; `NotConnected` if none.
    pub(super) fn udp_peer(&self, host: HostId, fd: Fd) -> io::Result<SocketAddr> {
        self.udp_socket(host, fd)?
            .peer
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// What became of the datagrams of the run so far.
    pub fn datagram_stats(&self) -> DatagramStats {
        self.datagram_stats
    }

    /// Under a preset, its datagram faults (drawn from their own stream)
    /// join the plan when the run opens its first UDP socket; a run that
    /// opens none keeps the plan it had. Called once, as the world is made.
    pub fn set_datagram_preset(&mut self, preset: crate::FaultPreset) {
        let faults = crate::DatagramFaults::for_preset(preset, &self.entropy);
        self.datagram_pending = Some(faults).filter(crate::DatagramFaults::any);
    }

    /// The preset's datagram faults, still to join the plan, without
    /// `kind` (see [`Builder::without`](crate::Builder::without)).
    pub(crate) fn datagram_preset_without(&mut self, kind: FaultKind) {
        self.datagram_pending = self
            .datagram_pending
            .map(|faults| faults.without(kind))
            .filter(crate::DatagramFaults::any);
    }

    fn datagram_faults_in_force(&mut self) {
        if let Some(faults) = self.datagram_pending.take() {
            self.plan.datagram = faults;
            self.plan_drawn.datagram = faults;
        }
    }

    // ----- sending ------------------------------------------------------------

    /// Put one datagram on the way, and decide what it meets: loss, delay,
    /// reordering, duplication — in that order, each a numbered decision of
    /// its own (see [`DATAGRAM_DRAW`](super::DATAGRAM_DRAW)) on draws the
    /// datagram took from the datagrams' stream.
    fn emit(&mut self, host: HostId, fd: Fd, bytes: &[u8], to: SocketAddr) {
        let from = SocketAddr::new(self.hosts[host].ip, self.udp_port(host, fd));
        let number = self.datagram_stats.sent;
        self.datagram_stats.sent += 1;
        self.progress += 1;
        self.trace_io(host, fd, IoKind::Send, bytes.len());
        let fate = Fate::draw(&mut self.datagram_entropy, &self.plan);
        let decision = |slot: u64| DECISIONS_PER_DATAGRAM * number + slot;
        let (loss, delay, reorder, duplicate) = (
            self.plan.datagram.loss,
            self.plan.datagram.delay,
            self.plan.datagram.reorder,
            self.plan.datagram.duplicate,
        );
        let lost = fires(fate.odds[0], loss);
        if self.datagram_fault(decision(0), lost, FaultKind::DatagramLoss, host, fd) {
            self.datagram_stats.lost += 1;
            return;
        }
        let mut at = self.now + fate.latency;
        let delayed = fires(fate.odds[1], delay);
        if self.datagram_fault(decision(1), delayed, FaultKind::DatagramDelay, host, fd) {
            at += fate.delay;
        }
        // Behind what the socket sent before; delays do not add up.
        let at = at.max(self.udp_last_delivery(host, fd));
        let held = fires(fate.odds[2], reorder);
        if self.datagram_fault(decision(2), held, FaultKind::DatagramReorder, host, fd) {
            // Held back alone: what the socket sends next does not wait
            // for it, and overtakes it.
            self.schedule_packet(at + fate.hold, Packet::data(host, from, to, bytes));
        } else {
            self.schedule_packet(at, Packet::data(host, from, to, bytes));
            self.udp_landing(host, fd, at);
        }
        let copied = fires(fate.odds[3], duplicate);
        if self.datagram_fault(decision(3), copied, FaultKind::DatagramDuplicate, host, fd) {
            // A path of its own: the copy neither waits for the socket's
            // other datagrams nor holds them back.
            self.datagram_stats.duplicated += 1;
            let at = self.now + fate.copy_latency + fate.copy_lag;
            self.schedule_packet(at, Packet::data(host, from, to, bytes));
        }
    }

    /// Put `packet` in flight, to land at `at`.
    fn schedule_packet(&mut self, at: Instant, packet: Packet) {
        self.deliveries.insert(at, Delivery::Udp(Box::new(packet)));
    }

    /// A datagram of `fd` lands at `at`: what it sends next lands no sooner.
    fn udp_landing(&mut self, host: HostId, fd: Fd, at: Instant) {
        if let Ok(socket) = self.udp_socket_mut(host, fd) {
            socket.last_delivery = socket.last_delivery.max(at);
        }
    }

    fn udp_last_delivery(&self, host: HostId, fd: Fd) -> Instant {
        self.udp_socket(host, fd)
            .map_or(Instant::ZERO, |socket| socket.last_delivery)
    }

    fn udp_port(&self, host: HostId, fd: Fd) -> u16 {
        self.udp_socket(host, fd).map_or(0, |socket| socket.port)
    }

    // ----- delivery -----------------------------------------------------------

    /// The hosts a packet goes from and to (`None`: no host has the address).
    pub(super) fn packet_route(&self, packet: &Packet) -> Option<(HostId, HostId)> {
        match packet {
            Packet::Data { from_host, to, .. } => Some((*from_host, self.host_of(to.ip())?)),
            Packet::Unreachable {
                from_host, to_host, ..
            } => Some((*from_host, *to_host)),
        }
    }

    /// A packet reached a cut link: UDP does not retransmit, it is gone.
    pub(super) fn packet_cut(&mut self, packet: Packet) {
        self.packet_dropped(&packet, Dropped::Cut);
    }

    /// A packet arrives (or, its host down, is lost).
    pub(super) fn deliver_packet(&mut self, packet: Packet, host_down: bool) {
        if host_down {
            return self.packet_dropped(&packet, Dropped::HostDown);
        }
        match packet {
            Packet::Data { .. } => self.deliver_datagram(packet),
            Packet::Unreachable {
                to_host, to, about, ..
            } => self.deliver_unreachable(to_host, to, about),
        }
    }

    fn deliver_datagram(&mut self, packet: Packet) {
        let Packet::Data {
            from_host,
            from,
            to,
            ..
        } = packet
        else {
            unreachable!("called with data")
        };
        let Some(host) = self.host_of(to.ip()) else {
            return self.packet_dropped(&packet, Dropped::Unbound);
        };
        let Some(fd) = self.udp_bound(host, to.port()) else {
            self.packet_dropped(&packet, Dropped::Unbound);
            // The kernel answers for the port nobody has bound.
            let answer = Packet::Unreachable {
                from_host: host,
                to_host: from_host,
                to: from,
                about: to,
            };
            let at = self.now + self.latency();
            self.schedule_packet(at, answer);
            return;
        };
        let socket = self.udp_socket(host, fd).expect("bound");
        if socket.peer.is_some_and(|peer| peer != from) {
            return self.packet_dropped(&packet, Dropped::Filtered);
        }
        let Packet::Data { bytes, .. } = packet else {
            unreachable!("called with data")
        };
        let (len, cost) = (bytes.len(), bytes.len() + QUEUED_OVERHEAD_BYTES);
        if socket.queue_bytes + cost > RECV_QUEUE_BYTES_MAX {
            let packet = Packet::Data {
                from_host,
                from,
                to,
                bytes,
            };
            return self.packet_dropped(&packet, Dropped::QueueFull);
        }
        let socket = self.udp_socket_mut(host, fd).expect("bound");
        socket.queue_bytes += cost;
        socket.queue.push_back(Received { from, bytes });
        self.datagram_stats.queued += 1;
        self.progress += 1;
        let now = self.now;
        self.trace.record(
            tag::DELIVER,
            &[deliver::QUEUED, host as u64, fd.0 as u64, len as u64],
            || {
                format!(
                    "{now:?} datagram {from} -> {to}: {len} bytes to {} {fd:?}",
                    self.names[host]
                )
            },
        );
        self.raise(host, Some(fd), Ready::READABLE);
    }

    fn deliver_unreachable(&mut self, host: HostId, to: SocketAddr, about: SocketAddr) {
        let now = self.now;
        self.trace.record(
            tag::DELIVER,
            &[deliver::UNREACHABLE, host as u64, u64::from(to.port())],
            || format!("{now:?} ICMP port unreachable: {about}, to {to}"),
        );
        // Only a socket connected to the unreachable address hears of it.
        let Some(fd) = self.udp_bound(host, to.port()) else {
            return;
        };
        let socket = self.udp_socket_mut(host, fd).expect("bound");
        if socket.peer != Some(about) {
            return;
        }
        socket.error = Some(io::ErrorKind::ConnectionRefused);
        self.datagram_stats.refused += 1;
        self.progress += 1;
        self.raise(
            host,
            Some(fd),
            Ready::READABLE | Ready::WRITABLE | Ready::ERROR,
        );
    }

    fn packet_dropped(&mut self, packet: &Packet, why: Dropped) {
        let (from, to) = match packet {
            Packet::Data { from, to, .. } => (*from, *to),
            // An ICMP answer lost on the way is no datagram dropped.
            Packet::Unreachable { about, to, .. } => (*about, *to),
        };
        if let Packet::Data { .. } = packet {
            let stats = &mut self.datagram_stats;
            *match why {
                Dropped::Cut => &mut stats.dropped_cut,
                Dropped::HostDown => &mut stats.dropped_host_down,
                Dropped::Unbound => &mut stats.dropped_unbound,
                Dropped::Filtered => &mut stats.dropped_filtered,
                Dropped::QueueFull => &mut stats.dropped_queue_full,
            } += 1;
        }
        let now = self.now;
        self.trace.record(
            tag::DELIVER,
            &[deliver::DROPPED, u64::from(to.port()), why as u64],
            || format!("{now:?} datagram {from} -> {to} dropped: {why:?}"),
        );
    }

    // ----- the fd table -------------------------------------------------------

    fn udp_socket(&self, host: HostId, fd: Fd) -> io::Result<&UdpSocket> {
        match self.socket(host, fd)? {
            Socket::Datagram(socket) => Ok(socket),
            _ => Err(not_udp(fd)),
        }
    }

    fn udp_socket_mut(&mut self, host: HostId, fd: Fd) -> io::Result<&mut UdpSocket> {
        let socket = fd
            .index()
            .and_then(|i| self.hosts[host].sockets.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or_else(|| io::Error::from_raw_os_error(EBADF))?;
        match socket {
            Socket::Datagram(socket) => Ok(socket),
            _ => Err(not_udp(fd)),
        }
    }

    /// The fd of `host` bound to UDP `port`, if any.
    fn udp_bound(&self, host: HostId, port: u16) -> Option<Fd> {
        let sockets = &self.hosts[host].sockets;
        sockets
            .iter()
            .enumerate()
            .find_map(|(i, socket)| match socket {
                Some(Socket::Datagram(socket)) if socket.port == port => Some(Fd(i as i32)),
                _ => None,
            })
    }

    fn udp_ephemeral_port(&mut self, host: HostId) -> io::Result<u16> {
        for _ in 0..EPHEMERAL_TRIES_MAX {
            let port = self.ephemeral_addr(host).port();
            if self.udp_bound(host, port).is_none() {
                return Ok(port);
            }
        }
        Err(io::Error::from(io::ErrorKind::AddrInUse))
    }
}

fn not_udp(fd: Fd) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("fd {fd} is not a UDP socket"),
    )
}
