//! `Host`: one simulated machine — its fd table, its registrations, and the edges pending for its loop.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use ioloop::{Event, Events, Fd, Instant, Ready, Token};

use super::clock::wall_clock_start;
use super::connection::ConnId;
use super::datagram::UdpSocket;
use super::{tag, FaultKind, World, EBADF, EMFILE};

/// Index of a host in the world.
pub type HostId = usize;

/// Fds a host may hold.
const FD_LIMIT: usize = 65_536;
/// First ephemeral port.
const EPHEMERAL_PORT_FIRST: u16 = 40_000;

/// What a host's fd refers to.
pub(super) enum Socket {
    Listener {
        port: u16,
        backlog: VecDeque<ConnId>,
        /// Pending connections held before refusing more: the listen
        /// backlog asked for, within `1..=BACKLOG_MAX`.
        backlog_max: usize,
        /// Recorded; the world has no `TIME_WAIT` for it to matter.
        reuse_addr: bool,
    },
    Stream {
        conn: ConnId,
        side: usize,
    },
    Datagram(UdpSocket),
}

/// One simulated machine: an fd table, registrations, pending edges.
pub(super) struct Host {
    pub(super) ip: IpAddr,
    pub(super) sockets: Vec<Option<Socket>>,
    registrations: Vec<Option<(Token, Events)>>,
    registration_count: usize,
    pub(super) pending: Vec<Event>,
    /// When the host's loop wants to wake up; `None`: only for an event.
    pub(super) wake_at: Option<Instant>,
    pub(super) woken: Arc<AtomicBool>,
    /// Out of fds (an `EMFILE` fault) until then, or until an fd is closed.
    pub(super) emfile_until: Option<Instant>,
    port_next: u16,
    /// Busy with simulated CPU work until then: its clock runs ahead of the
    /// world's, and the harness does not step it before the world catches up.
    pub(super) busy_until: Instant,
    /// Down after a machine crash: everything sent to it is lost.
    pub(super) down: bool,
    /// The wall clock: it read `wall_clock_set` at host time
    /// `wall_clock_set_at`, and runs with virtual time from there.
    pub(super) wall_clock_set: SystemTime,
    pub(super) wall_clock_set_at: Instant,
}

impl World {
    /// Add a host with address `ip`; returns its id and its wake flag.
    pub fn add_host(&mut self, ip: IpAddr) -> (HostId, Arc<AtomicBool>) {
        let woken = Arc::new(AtomicBool::new(false));
        self.hosts.push(Host {
            ip,
            sockets: Vec::new(),
            registrations: Vec::new(),
            registration_count: 0,
            pending: Vec::new(),
            wake_at: Some(self.now),
            woken: Arc::clone(&woken),
            emfile_until: None,
            port_next: EPHEMERAL_PORT_FIRST,
            busy_until: Instant::ZERO,
            down: false,
            wall_clock_set: wall_clock_start(),
            wall_clock_set_at: Instant::ZERO,
        });
        self.names
            .push(format!("host{}", self.hosts.len() - 1).into());
        self.add_socket_draws(self.hosts.len() - 1);
        (self.hosts.len() - 1, woken)
    }

    /// Name `host` in trace lines and messages (the harness gives each
    /// host the name it was added with).
    pub fn name_host(&mut self, host: HostId, name: &str) {
        if let Some(slot) = self.names.get_mut(host) {
            *slot = name.into();
        }
    }

    /// The name of `host` in trace lines and messages: its harness name,
    /// or `host<id>`.
    pub fn host_name(&self, host: HostId) -> &str {
        &self.names[host]
    }

    /// Every host's name, by id.
    pub fn host_names(&self) -> Vec<String> {
        self.names.iter().map(|name| name.to_string()).collect()
    }

    /// The address of `host`.
    pub fn host_ip(&self, host: HostId) -> IpAddr {
        self.hosts[host].ip
    }

    /// `true` if `host` has readiness edges waiting for its next `wait`, or
    /// was woken through its waker.
    pub fn has_pending_edges(&self, host: HostId) -> bool {
        let h = &self.hosts[host];
        !h.pending.is_empty() || h.woken.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Open fds of a host.
    pub fn open_fds(&self, host: HostId) -> Vec<Fd> {
        let sockets = &self.hosts[host].sockets;
        (0..sockets.len())
            .filter(|&i| sockets[i].is_some())
            .map(|i| Fd(i as i32))
            .collect()
    }

    // ----- the fd table -------------------------------------------------------

    pub(super) fn socket(&self, host: HostId, fd: Fd) -> io::Result<&Socket> {
        fd.index()
            .and_then(|i| self.hosts[host].sockets.get(i))
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::from_raw_os_error(EBADF))
    }

    pub(super) fn stream(&self, host: HostId, fd: Fd) -> io::Result<(ConnId, usize)> {
        match self.socket(host, fd)? {
            Socket::Stream { conn, side } => Ok((*conn, *side)),
            Socket::Listener { .. } => Err(listener_not_stream(fd)),
            // A datagram of 0 bytes would read as the end of a stream.
            Socket::Datagram(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is a UDP socket: use recv_from, recv, send_to or send"),
            )),
        }
    }

    /// The lowest free fd of `host`, as the kernel allocates.
    pub(super) fn allocate_fd(&mut self, host: HostId, socket: Socket) -> io::Result<Fd> {
        let h = &mut self.hosts[host];
        let index = match h.sockets.iter().position(Option::is_none) {
            Some(index) => index,
            None if h.sockets.len() < FD_LIMIT => {
                h.sockets.push(None);
                h.sockets.len() - 1
            }
            None => return Err(io::Error::from_raw_os_error(EMFILE)),
        };
        h.sockets[index] = Some(socket);
        self.progress += 1;
        let fd = Fd(index as i32);
        let now = self.now;
        self.trace
            .record(tag::FD, &[host as u64, fd.0 as u64, 1], || {
                format!("{now:?} {} open {fd:?}", self.names[host])
            });
        Ok(fd)
    }

    /// Forget every fd, registration and pending edge of `host`, as a
    /// crash does.
    pub(super) fn clear_host(&mut self, host: HostId) {
        // The host's clock falls back to the world's (it was ahead while
        // busy); its wall clock does not go back with it: it goes on from
        // what it read, as a machine's clock does through a crash.
        let (wall, now) = (self.system_time(host), self.now);
        let h = &mut self.hosts[host];
        (h.wall_clock_set, h.wall_clock_set_at) = (wall, now);
        h.sockets.clear();
        h.registrations.clear();
        h.registration_count = 0;
        h.pending.clear();
        h.emfile_until = None;
        h.busy_until = self.now;
        h.wake_at = None;
        self.progress += 1;
    }

    pub(super) fn free_fd(&mut self, host: HostId, fd: Fd) {
        let h = &mut self.hosts[host];
        let index = fd.index().expect("valid fd");
        h.sockets[index] = None;
        if let Some(Some(_)) = h.registrations.get(index) {
            // Closing an fd drops its registration, as epoll does.
            h.registrations[index] = None;
            h.registration_count -= 1;
        }
        h.emfile_until = None;
        self.progress += 1;
        let now = self.now;
        self.trace
            .record(tag::FD, &[host as u64, fd.0 as u64, 0], || {
                format!("{now:?} {} close {fd:?}", self.names[host])
            });
    }

    pub(super) fn ephemeral_addr(&mut self, host: HostId) -> SocketAddr {
        let h = &mut self.hosts[host];
        let port = h.port_next;
        h.port_next = h.port_next.checked_add(1).unwrap_or(EPHEMERAL_PORT_FIRST);
        SocketAddr::new(h.ip, port)
    }

    /// The host and fd listening on `addr`, if any.
    pub(super) fn find_listener(&self, addr: SocketAddr) -> Option<(HostId, Fd)> {
        self.hosts.iter().enumerate().find_map(|(host, h)| {
            if h.ip != addr.ip() {
                return None;
            }
            h.sockets.iter().enumerate().find_map(|(i, s)| match s {
                Some(Socket::Listener { port, .. }) if *port == addr.port() => {
                    Some((host, Fd(i as i32)))
                }
                _ => None,
            })
        })
    }

    // ----- readiness ----------------------------------------------------------

    /// Report an edge on `fd` of `host`, if it is registered.
    pub(super) fn raise(&mut self, host: HostId, fd: Option<Fd>, ready: Ready) {
        let Some(fd) = fd else { return };
        let h = &mut self.hosts[host];
        if let Some(Some((token, _))) = fd.index().and_then(|i| h.registrations.get(i)) {
            h.pending.push(Event {
                token: *token,
                ready,
            });
        }
    }

    /// The readiness of `fd` now, as epoll reports on `EPOLL_CTL_ADD`.
    pub(super) fn current_ready(&self, host: HostId, fd: Fd) -> Ready {
        match self.socket(host, fd) {
            Ok(Socket::Listener { backlog, .. }) if !backlog.is_empty() => Ready::READABLE,
            Ok(Socket::Stream { conn, side }) => {
                let c = &self.conns[*conn];
                c.ends[*side].ready(self.plan.window_bytes, &c.ends[1 - side])
            }
            Ok(Socket::Datagram(socket)) => socket.ready(),
            _ => Ready::empty(),
        }
    }

    /// Hand `host`'s pending edges to its loop (after a wait): maybe a
    /// spurious one first, maybe shuffled.
    pub(super) fn hand_over_events(&mut self, host: HostId, events: &mut Vec<Event>) {
        self.maybe_spurious_event(host);
        let pending = &mut self.hosts[host].pending;
        if pending.len() > 1 && self.entropy.chance(self.plan.shuffle) {
            for i in (1..pending.len()).rev() {
                let j = self.entropy.below(i as u64 + 1) as usize;
                pending.swap(i, j);
            }
        }
        let now = self.now;
        for event in self.hosts[host].pending.drain(..) {
            self.trace.record(
                tag::EVENT,
                &[host as u64, event.token.0, u64::from(event.ready.bits())],
                || {
                    format!(
                        "{now:?} {} event {:?} {:?}",
                        self.names[host], event.token, event.ready
                    )
                },
            );
            events.push(event);
        }
    }

    /// A spurious edge: an fd reported ready that may not be.
    fn maybe_spurious_event(&mut self, host: HostId) {
        let count = self.hosts[host].registration_count;
        if count == 0 || !self.fault(self.plan.spurious, FaultKind::SpuriousEvent, host, Fd(-1)) {
            return;
        }
        let nth = self.entropy.below(count as u64) as usize;
        let ready = if self.entropy.chance(500_000) {
            Ready::READABLE
        } else {
            Ready::WRITABLE
        };
        let h = &mut self.hosts[host];
        if let Some((token, _)) = h.registrations.iter().flatten().nth(nth).copied() {
            h.pending.push(Event { token, ready });
        }
    }

    // ----- registrations ------------------------------------------------------

    /// Register `fd` of `host`.
    pub fn add(&mut self, host: HostId, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        self.socket(host, fd)?;
        let index = fd.index().expect("open fds are non-negative");
        let h = &mut self.hosts[host];
        if h.registrations.len() <= index {
            h.registrations.resize(index + 1, None);
        }
        if h.registrations[index].is_some() {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        h.registrations[index] = Some((token, interest));
        h.registration_count += 1;
        let ready = self.current_ready(host, fd);
        if !ready.is_empty() {
            self.raise(host, Some(fd), ready);
        }
        Ok(())
    }

    /// Change the interest of a registered fd.
    pub fn modify(
        &mut self,
        host: HostId,
        fd: Fd,
        token: Token,
        interest: Events,
    ) -> io::Result<()> {
        let slot = self.registration_slot(host, fd)?;
        *slot = Some((token, interest));
        Ok(())
    }

    /// Unregister `fd`. Edges already pending keep the old token: the loop
    /// must ignore them (real kernels drop them; the simulator is harsher).
    pub fn delete(&mut self, host: HostId, fd: Fd) -> io::Result<()> {
        let slot = self.registration_slot(host, fd)?;
        *slot = None;
        self.hosts[host].registration_count -= 1;
        Ok(())
    }

    fn registration_slot(
        &mut self,
        host: HostId,
        fd: Fd,
    ) -> io::Result<&mut Option<(Token, Events)>> {
        fd.index()
            .and_then(|i| self.hosts[host].registrations.get_mut(i))
            .filter(|slot| slot.is_some())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// The registration of `fd`.
    pub fn registration(&self, host: HostId, fd: Fd) -> Option<(Token, Events)> {
        *self.hosts[host].registrations.get(fd.index()?)?
    }

    /// Registered fds of `host`.
    pub fn registration_count(&self, host: HostId) -> usize {
        self.hosts[host].registration_count
    }

    /// Check one dispatch against the registrations (contract point 3).
    pub fn check_dispatch(&mut self, host: HostId, token: Token, events: Events) {
        let fd = token.fd();
        let now = self.now;
        self.trace.record(
            tag::DISPATCH,
            &[host as u64, token.0, u64::from(events.bits())],
            || format!("{now:?} {} dispatch {token:?} {events:?}", self.names[host]),
        );
        match self.registration(host, fd) {
            Some((registered, interest)) if registered == token => {
                if !(interest | Events::ERROR).contains(events) {
                    self.violations.push(format!(
                        "{} {fd:?}: handler called with {events:?} outside its interest {interest:?}",
                        self.names[host]
                    ));
                }
            }
            other => self.violations.push(format!(
                "{} {fd:?}: handler of {token:?} called, but the registration is {other:?}",
                self.names[host]
            )),
        }
    }
}

/// A stream operation on a listener (out of line: `stream` is on every
/// read and write).
#[cold]
#[inline(never)]
fn listener_not_stream(fd: Fd) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("fd {fd} is a listening socket: accept connections from it"),
    )
}
