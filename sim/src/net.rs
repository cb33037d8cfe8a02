//! The world: hosts, their fd tables, connections, bytes in flight, and every fault decision.
//!
//! A host allocates fds as the kernel does (lowest free number). A
//! connection has two ends; bytes written at one end travel as segments,
//! delivered after a latency, in order per direction, into the other end's
//! receive buffer. A direction holds at most `window_bytes` in flight plus
//! unread. Readiness is reported as epoll reports it, edge-triggered: an
//! edge when data arrives, when send space frees up, on EOF and on reset.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ioloop::{Event, Events, Fd, Instant, Ready, Token};

use crate::{Entropy, FaultPlan, Trace};

/// Index of a host in the world.
pub type HostId = usize;
type ConnId = usize;

/// `EMFILE` as Linux and macOS number it.
const EMFILE: i32 = 24;
/// `EBADF`.
const EBADF: i32 = 9;
/// Pending connections a listener holds before refusing more.
const BACKLOG_MAX: usize = 128;
/// Fds a host may hold.
const FD_LIMIT: usize = 4096;
/// First ephemeral port.
const EPHEMERAL_PORT_FIRST: u16 = 40_000;

/// Trace tags: one per kind of decision.
mod tag {
    pub const TIME: u8 = 1;
    pub const DELIVER: u8 = 2;
    pub const EVENT: u8 = 3;
    pub const FAULT: u8 = 4;
    pub const FD: u8 = 5;
    pub const DISPATCH: u8 = 6;
    pub const IO: u8 = 7;
}

/// What a host's fd refers to.
enum Socket {
    Listener {
        port: u16,
        backlog: VecDeque<ConnId>,
    },
    Stream {
        conn: ConnId,
        side: usize,
    },
}

/// One simulated machine: an fd table, registrations, pending edges.
struct Host {
    ip: IpAddr,
    sockets: Vec<Option<Socket>>,
    registrations: Vec<Option<(Token, Events)>>,
    registration_count: usize,
    pending: Vec<Event>,
    /// When the host's loop wants to wake up; `None`: only for an event.
    wake_at: Option<Instant>,
    woken: Arc<AtomicBool>,
    /// Out of fds (an `EMFILE` fault) until then, or until an fd is closed.
    emfile_until: Option<Instant>,
    port_next: u16,
    /// Busy with simulated CPU work until then: its clock runs ahead of the
    /// world's, and the harness does not step it before the world catches up.
    busy_until: Instant,
}

/// One end of a connection.
struct End {
    host: HostId,
    fd: Option<Fd>,
    local: SocketAddr,
    recv: VecDeque<u8>,
    /// The peer's FIN arrived (after all its data: delivery is in order).
    recv_fin: bool,
    write_shut: bool,
    closed: bool,
    connected: bool,
    reset: bool,
    /// An error to report once, on the next read or write.
    error: Option<io::ErrorKind>,
    /// Bytes sent toward the peer and not yet delivered.
    in_flight: usize,
    /// A write hit the window: raise a WRITE edge when it frees.
    write_blocked: bool,
    /// Deliveries from this end keep their order.
    last_delivery: Instant,
}

impl End {
    fn new(host: HostId, local: SocketAddr) -> End {
        End {
            host,
            fd: None,
            local,
            recv: VecDeque::new(),
            recv_fin: false,
            write_shut: false,
            closed: false,
            connected: false,
            reset: false,
            error: None,
            in_flight: 0,
            write_blocked: false,
            last_delivery: Instant::ZERO,
        }
    }
}

struct Connection {
    /// Side 0 connected, side 1 accepted.
    ends: [End; 2],
    /// Where side 0 connects to.
    target: SocketAddr,
}

/// Something in flight, delivered at its time.
enum Delivery {
    Syn {
        conn: ConnId,
    },
    SynAck {
        conn: ConnId,
    },
    Refused {
        conn: ConnId,
    },
    Data {
        conn: ConnId,
        to: usize,
        bytes: Vec<u8>,
    },
    Fin {
        conn: ConnId,
        to: usize,
    },
    Reset {
        conn: ConnId,
        to: usize,
    },
}

/// The whole simulated network and its single source of decisions.
pub struct World {
    now: Instant,
    entropy: Entropy,
    /// The plan in force (all faults off after a liveness switch).
    plan: FaultPlan,
    /// The plan the run started with.
    plan_drawn: FaultPlan,
    trace: Trace,
    hosts: Vec<Host>,
    conns: Vec<Connection>,
    deliveries: BTreeMap<(Instant, u64), Delivery>,
    delivery_seq: u64,
    progress: u64,
    violations: Vec<String>,
    /// Fault decisions made so far (fired or not): a fault's identity in a
    /// schedule.
    fault_draws: u64,
    /// When set, exactly these fault draws fire.
    schedule: Option<BTreeSet<u64>>,
    fired: Vec<FiredFault>,
}

/// A fault that fired: which draw, what, where and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredFault {
    /// Index of the fault decision in the run.
    pub draw: u64,
    /// The fault's name (`partial-write`, `reset`, ...).
    pub name: &'static str,
    /// The host it hit.
    pub host: HostId,
    /// The fd it hit (-1 for a host-wide decision).
    pub fd: Fd,
    /// Virtual time.
    pub at: Instant,
}

impl World {
    /// A world with no hosts, deciding from `entropy` under `plan`.
    pub fn new(entropy: Entropy, plan: FaultPlan, trace: Trace) -> World {
        World {
            now: Instant::ZERO,
            entropy,
            plan_drawn: plan.clone(),
            plan,
            trace,
            hosts: Vec::new(),
            conns: Vec::new(),
            deliveries: BTreeMap::new(),
            delivery_seq: 0,
            progress: 0,
            violations: Vec::new(),
            fault_draws: 0,
            schedule: None,
            fired: Vec::new(),
        }
    }

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
        });
        (self.hosts.len() - 1, woken)
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time as `host` sees it: ahead of the world's while the host
    /// is busy with simulated CPU work (see [`World::consume`]).
    pub fn host_now(&self, host: HostId) -> Instant {
        self.now.max(self.hosts[host].busy_until)
    }

    /// Until when `host` is busy with simulated CPU work (never later than
    /// now once the world has caught up).
    pub fn busy_until(&self, host: HostId) -> Instant {
        self.hosts[host].busy_until
    }

    /// `host` spends `cost` of virtual CPU time: its clock moves ahead by
    /// `cost`, and it is not stepped again until the world's clock catches
    /// up. Other hosts and the network go on meanwhile.
    pub fn consume(&mut self, host: HostId, cost: Duration) {
        let until = self.host_now(host) + cost;
        self.hosts[host].busy_until = until;
        self.progress += 1;
        self.trace.record(
            tag::TIME,
            &[host as u64, until.since_epoch().as_nanos() as u64],
            || format!("{until:?} host{host} busy until"),
        );
    }

    /// `true` if `host` has readiness edges waiting for its next `wait`, or
    /// was woken through its waker.
    pub fn has_pending_edges(&self, host: HostId) -> bool {
        let h = &self.hosts[host];
        !h.pending.is_empty() || h.woken.load(Ordering::Relaxed)
    }

    /// When the earliest delivery in flight lands, if any.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.deliveries.keys().next().map(|(at, _)| *at)
    }

    /// `true` if nothing is in flight.
    pub fn nothing_in_flight(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// Move virtual time forward to `next` (never backwards) and deliver
    /// what is due by then. The harness calls this when every host is idle.
    pub fn advance_to(&mut self, next: Instant) {
        if next <= self.now {
            self.deliver_due();
            return;
        }
        self.now = next;
        self.progress += 1;
        self.trace
            .record(tag::TIME, &[next.since_epoch().as_nanos() as u64], || {
                format!("{next:?} time advances")
            });
        self.deliver_due();
    }

    /// The fault plan in force.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// The fault plan the run started with (before a liveness phase).
    pub fn plan_drawn(&self) -> &FaultPlan {
        &self.plan_drawn
    }

    /// From now on, fire exactly the fault draws in `schedule` (by index),
    /// whatever the plan's probabilities say.
    pub fn set_schedule(&mut self, schedule: BTreeSet<u64>) {
        self.schedule = Some(schedule);
    }

    /// Every fault that fired so far.
    pub fn fired(&self) -> &[FiredFault] {
        &self.fired
    }

    /// End the faulty phase: every fault off from now on; latency and
    /// window stay as they were.
    pub fn stop_faults(&mut self) {
        self.plan = FaultPlan {
            latency_us_min: self.plan.latency_us_min,
            latency_us_max: self.plan.latency_us_max,
            window_bytes: self.plan.window_bytes,
            ..FaultPlan::none()
        };
        if let Some(schedule) = &mut self.schedule {
            schedule.clear();
        }
        let now = self.now;
        self.trace
            .record(tag::FAULT, &[u64::MAX], || format!("{now:?} faults stop"));
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The entropy source, for workloads that draw from the same stream.
    pub fn entropy(&mut self) -> &mut Entropy {
        &mut self.entropy
    }

    /// A counter that grows whenever bytes move, an fd opens or closes, or
    /// time advances; a run whose counter stands still is spinning.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// Contract violations seen by the poller (dispatch checks), drained.
    pub fn take_violations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.violations)
    }

    /// `true` when nothing can ever happen again: no edge pending, nothing
    /// in flight, and no host waiting for a time.
    pub fn is_quiescent(&self) -> bool {
        self.deliveries.is_empty()
            && self.hosts.iter().all(|h| {
                h.pending.is_empty() && h.wake_at.is_none() && !h.woken.load(Ordering::Relaxed)
            })
    }

    /// The address of `host`.
    pub fn host_ip(&self, host: HostId) -> IpAddr {
        self.hosts[host].ip
    }

    /// Open fds of a host.
    pub fn open_fds(&self, host: HostId) -> Vec<Fd> {
        let sockets = &self.hosts[host].sockets;
        (0..sockets.len())
            .filter(|&i| sockets[i].is_some())
            .map(|i| Fd(i as i32))
            .collect()
    }

    // ----- decisions ----------------------------------------------------------

    /// Draw a fault with probability `ppm`; a fault that fires is traced.
    fn fault(&mut self, ppm: u32, name: &'static str, host: HostId, fd: Fd) -> bool {
        let draw = self.fault_draws;
        self.fault_draws += 1;
        // The draw is made even under a schedule, so that a schedule of
        // every fault that fired replays the seeded run exactly.
        let drawn = self.entropy.chance(ppm);
        let fires = match &self.schedule {
            Some(schedule) => schedule.contains(&draw),
            None => drawn,
        };
        if !fires {
            return false;
        }
        let now = self.now;
        self.fired.push(FiredFault {
            draw,
            name,
            host,
            fd,
            at: now,
        });
        self.trace.record(
            tag::FAULT,
            &[host as u64, fd.0 as u64, name.len() as u64],
            || format!("{now:?} host{host} {fd:?} fault {name}"),
        );
        true
    }

    fn latency(&mut self) -> Duration {
        let us = self
            .entropy
            .between(self.plan.latency_us_min, self.plan.latency_us_max);
        Duration::from_micros(us)
    }

    // ----- fds ----------------------------------------------------------------

    fn socket(&self, host: HostId, fd: Fd) -> io::Result<&Socket> {
        fd.index()
            .and_then(|i| self.hosts[host].sockets.get(i))
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::from_raw_os_error(EBADF))
    }

    fn stream(&self, host: HostId, fd: Fd) -> io::Result<(ConnId, usize)> {
        match self.socket(host, fd)? {
            Socket::Stream { conn, side } => Ok((*conn, *side)),
            Socket::Listener { .. } => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// The lowest free fd of `host`, as the kernel allocates.
    fn allocate_fd(&mut self, host: HostId, socket: Socket) -> io::Result<Fd> {
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
                format!("{now:?} host{host} open {fd:?}")
            });
        Ok(fd)
    }

    fn free_fd(&mut self, host: HostId, fd: Fd) {
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
                format!("{now:?} host{host} close {fd:?}")
            });
    }

    fn ephemeral_addr(&mut self, host: HostId) -> SocketAddr {
        let h = &mut self.hosts[host];
        let port = h.port_next;
        h.port_next = h.port_next.checked_add(1).unwrap_or(EPHEMERAL_PORT_FIRST);
        SocketAddr::new(h.ip, port)
    }

    // ----- readiness ----------------------------------------------------------

    /// Report an edge on `fd` of `host`, if it is registered.
    fn raise(&mut self, host: HostId, fd: Option<Fd>, ready: Ready) {
        let Some(fd) = fd else { return };
        let h = &mut self.hosts[host];
        if let Some(Some((token, _))) = fd.index().and_then(|i| h.registrations.get(i)) {
            h.pending.push(Event {
                token: *token,
                ready,
            });
        }
    }

    fn end_ready(end: &End, window_bytes: usize, peer: &End) -> Ready {
        let mut ready = Ready::empty();
        if !end.recv.is_empty() || end.recv_fin || end.reset || end.error.is_some() {
            ready |= Ready::READABLE;
        }
        if end.recv_fin || end.reset {
            ready |= Ready::READ_CLOSED;
        }
        let used = end.in_flight + peer.recv.len();
        if (end.connected && used < window_bytes) || end.reset || end.error.is_some() {
            ready |= Ready::WRITABLE;
        }
        if end.reset || (end.write_shut && end.recv_fin) {
            ready |= Ready::WRITE_CLOSED;
        }
        if end.reset || end.error.is_some() {
            ready |= Ready::ERROR;
        }
        ready
    }

    /// The readiness of `fd` now, as epoll reports on `EPOLL_CTL_ADD`.
    fn current_ready(&self, host: HostId, fd: Fd) -> Ready {
        match self.socket(host, fd) {
            Ok(Socket::Listener { backlog, .. }) if !backlog.is_empty() => Ready::READABLE,
            Ok(Socket::Stream { conn, side }) => {
                let c = &self.conns[*conn];
                World::end_ready(&c.ends[*side], self.plan.window_bytes, &c.ends[1 - side])
            }
            _ => Ready::empty(),
        }
    }

    // ----- registrations --------------------------------------------------------

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
            || format!("{now:?} host{host} dispatch {token:?} {events:?}"),
        );
        match self.registration(host, fd) {
            Some((registered, interest)) if registered == token => {
                if !(interest | Events::ERROR).contains(events) {
                    self.violations.push(format!(
                        "host{host} {fd:?}: handler called with {events:?} outside its interest {interest:?}"
                    ));
                }
            }
            other => self.violations.push(format!(
                "host{host} {fd:?}: handler of {token:?} called, but the registration is {other:?}"
            )),
        }
    }

    // ----- waiting and time -----------------------------------------------------

    /// One `wait` of `host`'s loop: deliver what is due, maybe advance time,
    /// and hand over the host's pending edges.
    pub fn wait(
        &mut self,
        host: HostId,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.deliver_due();
        let woken = self.hosts[host].woken.swap(false, Ordering::AcqRel);
        self.hosts[host].wake_at = timeout.map(|t| self.now + t);
        let busy = woken || timeout == Some(Duration::ZERO) || !self.hosts[host].pending.is_empty();
        if !busy && self.hosts.iter().all(|h| h.pending.is_empty()) {
            match self.next_instant() {
                None => {
                    return Err(io::Error::other(
                        "simulation quiescent: nothing in flight and no timer; the loop would sleep forever",
                    ))
                }
                Some(next) if next > self.now => self.advance_to(next),
                Some(_) => {}
            }
        }
        if self.fault(self.plan.interrupt, "eintr-wait", host, Fd(-1)) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
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
                        "{now:?} host{host} event {:?} {:?}",
                        event.token, event.ready
                    )
                },
            );
            events.push(event);
        }
        Ok(())
    }

    /// A spurious edge: an fd reported ready that may not be.
    fn maybe_spurious_event(&mut self, host: HostId) {
        let count = self.hosts[host].registration_count;
        if count == 0 || !self.fault(self.plan.spurious, "spurious-event", host, Fd(-1)) {
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

    /// The next time something happens: a delivery or a host's timer.
    fn next_instant(&self) -> Option<Instant> {
        let delivery = self.deliveries.keys().next().map(|(at, _)| *at);
        let timers = self.hosts.iter().filter_map(|h| h.wake_at);
        delivery.into_iter().chain(timers).min()
    }

    fn schedule(&mut self, from: Option<(ConnId, usize)>, delivery: Delivery) {
        let mut at = self.now + self.latency();
        if let Some((conn, side)) = from {
            let end = &mut self.conns[conn].ends[side];
            at = at.max(end.last_delivery);
            end.last_delivery = at;
        }
        self.deliveries.insert((at, self.delivery_seq), delivery);
        self.delivery_seq += 1;
    }

    fn deliver_due(&mut self) {
        while let Some(entry) = self.deliveries.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let delivery = entry.remove();
            self.deliver(delivery);
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.now;
        match delivery {
            Delivery::Syn { conn } => self.deliver_syn(conn),
            Delivery::SynAck { conn } => {
                self.trace.record(tag::DELIVER, &[1, conn as u64], || {
                    format!("{now:?} conn{conn} syn-ack")
                });
                let client = &mut self.conns[conn].ends[0];
                if client.closed {
                    self.schedule(Some((conn, 0)), Delivery::Reset { conn, to: 1 });
                    return;
                }
                client.connected = true;
                let (host, fd) = (client.host, client.fd);
                self.raise(host, fd, Ready::WRITABLE);
            }
            Delivery::Refused { conn } => {
                self.trace.record(tag::DELIVER, &[2, conn as u64], || {
                    format!("{now:?} conn{conn} refused")
                });
                let client = &mut self.conns[conn].ends[0];
                if client.closed {
                    return;
                }
                client.error = Some(io::ErrorKind::ConnectionRefused);
                client.reset = true;
                let (host, fd) = (client.host, client.fd);
                self.raise(
                    host,
                    fd,
                    Ready::READABLE
                        | Ready::WRITABLE
                        | Ready::READ_CLOSED
                        | Ready::WRITE_CLOSED
                        | Ready::ERROR,
                );
            }
            Delivery::Data { conn, to, bytes } => {
                let len = bytes.len();
                self.trace.record(
                    tag::DELIVER,
                    &[3, conn as u64, to as u64, len as u64],
                    || format!("{now:?} conn{conn} {len} bytes to side {to}"),
                );
                self.conns[conn].ends[1 - to].in_flight -= len;
                let end = &mut self.conns[conn].ends[to];
                if end.closed {
                    // Data for a closed socket: the kernel answers with RST.
                    self.schedule(Some((conn, to)), Delivery::Reset { conn, to: 1 - to });
                    return;
                }
                if end.reset {
                    return;
                }
                end.recv.extend(bytes);
                self.progress += 1;
                let (host, fd) = (end.host, end.fd);
                self.raise(host, fd, Ready::READABLE);
            }
            Delivery::Fin { conn, to } => {
                self.trace
                    .record(tag::DELIVER, &[4, conn as u64, to as u64], || {
                        format!("{now:?} conn{conn} FIN to side {to}")
                    });
                let end = &mut self.conns[conn].ends[to];
                if end.closed || end.reset {
                    return;
                }
                end.recv_fin = true;
                self.progress += 1;
                let mut ready = Ready::READABLE | Ready::READ_CLOSED;
                if end.write_shut {
                    ready |= Ready::WRITE_CLOSED;
                }
                let (host, fd) = (end.host, end.fd);
                self.raise(host, fd, ready);
            }
            Delivery::Reset { conn, to } => {
                self.trace
                    .record(tag::DELIVER, &[5, conn as u64, to as u64], || {
                        format!("{now:?} conn{conn} RST to side {to}")
                    });
                let end = &mut self.conns[conn].ends[to];
                if end.closed || end.reset {
                    return;
                }
                end.reset = true;
                end.error = Some(io::ErrorKind::ConnectionReset);
                self.progress += 1;
                let (host, fd) = (end.host, end.fd);
                self.raise(
                    host,
                    fd,
                    Ready::READABLE
                        | Ready::WRITABLE
                        | Ready::READ_CLOSED
                        | Ready::WRITE_CLOSED
                        | Ready::ERROR,
                );
            }
        }
    }

    fn deliver_syn(&mut self, conn: ConnId) {
        let now = self.now;
        let target = self.conns[conn].target;
        self.trace.record(tag::DELIVER, &[0, conn as u64], || {
            format!("{now:?} conn{conn} SYN to {target}")
        });
        let listener = self.find_listener(target);
        let refuse = self.fault(self.plan.refuse_connect, "refuse-connect", 0, Fd(-1));
        let Some((host, fd)) = listener.filter(|_| !refuse) else {
            self.schedule(None, Delivery::Refused { conn });
            return;
        };
        let Ok(Socket::Listener { backlog, .. }) = self.socket(host, fd) else {
            unreachable!("find_listener returns listeners");
        };
        if backlog.len() >= BACKLOG_MAX {
            self.schedule(None, Delivery::Refused { conn });
            return;
        }
        let local = SocketAddr::new(self.hosts[host].ip, target.port());
        let mut server_end = End::new(host, local);
        server_end.connected = true;
        self.conns[conn].ends[1] = server_end;
        if let Some(Some(Socket::Listener { backlog, .. })) =
            self.hosts[host].sockets.get_mut(fd.0 as usize)
        {
            backlog.push_back(conn);
        }
        self.raise(host, Some(fd), Ready::READABLE);
        // The SYN-ACK leads everything the server sends.
        self.schedule(Some((conn, 1)), Delivery::SynAck { conn });
    }

    fn find_listener(&self, addr: SocketAddr) -> Option<(HostId, Fd)> {
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

    // ----- socket operations ----------------------------------------------------

    /// A listener on `addr`'s port (0: an ephemeral port) of `host`.
    pub fn listen(&mut self, host: HostId, addr: SocketAddr) -> io::Result<Fd> {
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
        if self.fault(self.plan.accept_emfile, "accept-emfile", host, listener) {
            let out_for = Duration::from_micros(self.entropy.between(1_000, 50_000));
            self.hosts[host].emfile_until = Some(self.now + out_for);
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        let conn = self.pop_backlog(host, listener);
        if self.fault(self.plan.accept_aborted, "accept-aborted", host, listener) {
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

    /// Start connecting `host` to `addr`.
    pub fn connect(&mut self, host: HostId, addr: SocketAddr) -> io::Result<Fd> {
        let conn = self.conns.len();
        let local = self.ephemeral_addr(host);
        let fd = self.allocate_fd(host, Socket::Stream { conn, side: 0 })?;
        let mut client = End::new(host, local);
        client.fd = Some(fd);
        self.conns.push(Connection {
            ends: [client, End::new(host, addr)],
            target: addr,
        });
        self.schedule(Some((conn, 0)), Delivery::Syn { conn });
        Ok(fd)
    }

    /// Read from a stream.
    pub fn read(&mut self, host: HostId, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        let (conn, side) = self.stream(host, fd)?;
        if self.fault(self.plan.interrupt, "eintr-read", host, fd) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let available = self.conns[conn].ends[side].recv.len();
        if available > 0 && !buf.is_empty() {
            if self.fault(self.plan.spurious, "wouldblock-read", host, fd) {
                // As if another reader took the data first; it comes back
                // with a new edge carrying the whole state (EOF included).
                let ready = self.current_ready(host, fd);
                self.raise(host, Some(fd), ready);
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            let mut n = available.min(buf.len());
            if n > 1 && self.fault(self.plan.partial_read, "partial-read", host, fd) {
                n = self.entropy.between(1, n as u64 - 1) as usize;
                // The rest counts as arriving now: a new edge, as on a real
                // kernel where a short read means the queue was empty.
                let ready = self.current_ready(host, fd);
                self.raise(host, Some(fd), ready);
            }
            let end = &mut self.conns[conn].ends[side];
            for (slot, byte) in buf.iter_mut().zip(end.recv.drain(..n)) {
                *slot = byte;
            }
            self.progress += 1;
            self.trace_io(host, fd, "read", n);
            self.window_freed(conn, 1 - side);
            return Ok(n);
        }
        let end = &mut self.conns[conn].ends[side];
        if let Some(kind) = end.error.take() {
            return Err(io::Error::from(kind));
        }
        if end.recv_fin || end.reset || buf.is_empty() {
            return Ok(0);
        }
        Err(io::Error::from(io::ErrorKind::WouldBlock))
    }

    /// The reader of `conn` made room: wake the writer at `side` if it was
    /// blocked on the window.
    fn window_freed(&mut self, conn: ConnId, side: usize) {
        let writer = &mut self.conns[conn].ends[side];
        if writer.write_blocked && !writer.closed {
            writer.write_blocked = false;
            let (host, fd) = (writer.host, writer.fd);
            self.raise(host, fd, Ready::WRITABLE);
        }
    }

    fn trace_io(&mut self, host: HostId, fd: Fd, what: &'static str, n: usize) {
        let now = self.now;
        self.trace.record(
            tag::IO,
            &[host as u64, fd.0 as u64, what.len() as u64, n as u64],
            || format!("{now:?} host{host} {fd:?} {what} {n}"),
        );
    }

    /// Write to a stream.
    pub fn write(&mut self, host: HostId, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let (conn, side) = self.stream(host, fd)?;
        if self.fault(self.plan.interrupt, "eintr-write", host, fd) {
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
        if room == 0 {
            end.write_blocked = true;
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        let mut n = room.min(buf.len());
        if n > 1 && self.fault(self.plan.partial_write, "partial-write", host, fd) {
            n = self.entropy.between(1, n as u64 - 1) as usize;
        }
        self.conns[conn].ends[side].in_flight += n;
        self.progress += 1;
        self.trace_io(host, fd, "write", n);
        self.schedule(
            Some((conn, side)),
            Delivery::Data {
                conn,
                to: 1 - side,
                bytes: buf[..n].to_vec(),
            },
        );
        if self.fault(self.plan.reset, "reset", host, fd) {
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
            }
        }
        self.free_fd(host, fd);
        Ok(())
    }

    /// The local address of a socket.
    pub fn local_addr(&self, host: HostId, fd: Fd) -> io::Result<SocketAddr> {
        match self.socket(host, fd)? {
            Socket::Listener { port, .. } => Ok(SocketAddr::new(self.hosts[host].ip, *port)),
            Socket::Stream { conn, side } => Ok(self.conns[*conn].ends[*side].local),
        }
    }

    /// `true` for stream sockets: a short read means drained.
    pub fn is_stream(&self, host: HostId, fd: Fd) -> bool {
        matches!(self.socket(host, fd), Ok(Socket::Stream { .. }))
    }
}
