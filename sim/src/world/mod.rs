//! `World`: the whole simulated network and its single source of decisions.
//!
//! A host allocates fds as the kernel does (lowest free number). A
//! connection has two ends; bytes written at one end travel as segments,
//! delivered after a latency, in order per direction, into the other end's
//! receive buffer. A direction holds at most `window_bytes` in flight plus
//! unread. Readiness is reported as epoll reports it, edge-triggered: an
//! edge when data arrives, when send space frees up, on EOF and on reset.
//!
//! One noun per file; each adds its part of `World`'s methods:
//!
//! - `clock.rs`: virtual time — `wait`, the next instant, advancing to it
//! - `host.rs`: one machine — its fd table, registrations, pending edges
//! - `connection.rs`: a connection, its two ends, and the connection table
//! - `socket.rs`: the socket calls a host makes (listen, accept, read, ...)
//! - `delivery.rs`: segments in flight, and their delivery
//! - `in_flight.rs`: the deliveries on their way, earliest first
//! - `datagram.rs`: UDP sockets and datagrams — routed like segments, but
//!   lost where a segment would wait, and faulted on their own
//! - `fault.rs`: fault kinds, and the decision whether one fires
//! - `link.rs`: links between hosts — partitions and clogs hold segments
//! - `outage.rs`: a host that crashes, pauses or restarts
//! - `options.rs`: socket options, recorded per socket and honoured where
//!   the model has a use for them

mod clock;
mod connection;
mod datagram;
mod delivery;
mod fault;
mod host;
mod in_flight;
mod link;
mod options;
mod outage;
mod socket;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ioloop::Instant;

use crate::{DatagramFaults, Entropy, FaultPlan, Trace};
pub use clock::{wall_clock_start, WALL_CLOCK_START_UNIX_S};
use connection::Connections;
pub use datagram::{
    DatagramStats, DATAGRAM_BYTES_MAX, QUEUED_OVERHEAD_BYTES, RECV_QUEUE_BYTES_MAX,
};
pub use fault::{
    socket_draw, socket_draw_parts, FaultKind, FiredFault, DATAGRAM_DRAW, NEMESIS_DRAW, SCRIPTED,
};
use host::Host;
pub use host::HostId;
use in_flight::InFlight;
pub use outage::CrashMode;

/// `EMFILE` as Linux and macOS number it.
const EMFILE: i32 = 24;
/// `EBADF`.
const EBADF: i32 = 9;

/// Trace tags: one per kind of decision. The tags, and the values each
/// records, are the replay format: a fault records host, fd and its
/// [`FaultKind`] id; an I/O call host, fd, its `IoKind` id and bytes.
mod tag {
    pub const TIME: u8 = 1;
    pub const DELIVER: u8 = 2;
    pub const EVENT: u8 = 3;
    pub const FAULT: u8 = 4;
    pub const FD: u8 = 5;
    pub const DISPATCH: u8 = 6;
    pub const IO: u8 = 7;
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
    /// Each host's name for trace lines and messages (`host<id>` until
    /// the harness names it), apart from `hosts` so that a trace line can
    /// borrow it while a host is borrowed.
    names: Vec<Arc<str>>,
    conns: Connections,
    deliveries: InFlight,
    progress: u64,
    violations: Vec<String>,
    /// Socket fault decisions made so far (fired or not), per host bucket
    /// and kind: a fault's identity in a schedule (see [`socket_draw`]).
    socket_draws: Vec<[u64; FaultKind::ALL.len()]>,
    /// When set, exactly these fault draws fire.
    schedule: Option<BTreeSet<u64>>,
    fired: Vec<FiredFault>,
    /// Links between hosts that were ever cut or clogged.
    links: BTreeMap<(HostId, HostId), link::Link>,
    /// A preset's datagram faults, until the first UDP socket puts them
    /// in force.
    datagram_pending: Option<DatagramFaults>,
    datagram_stats: DatagramStats,
    /// Hits of each probe a service reached (`IOLoop::probe`).
    probes: BTreeMap<&'static str, u64>,
    /// The datagrams' own stream: what each datagram sent meets, a fixed
    /// number of draws apiece (see `datagram.rs`).
    datagram_entropy: Entropy,
}

impl World {
    /// A world with no hosts, deciding from `entropy` under `plan`.
    pub fn new(entropy: Entropy, plan: FaultPlan, trace: Trace) -> World {
        World {
            now: Instant::ZERO,
            datagram_entropy: entropy.fork(datagram::FATES_STREAM),
            plan_drawn: plan.clone(),
            plan,
            trace,
            hosts: Vec::new(),
            names: Vec::new(),
            conns: Connections::new(),
            deliveries: InFlight::new(),
            progress: 0,
            violations: Vec::new(),
            socket_draws: Vec::new(),
            schedule: None,
            fired: Vec::new(),
            links: BTreeMap::new(),
            datagram_pending: None,
            datagram_stats: DatagramStats::default(),
            probes: BTreeMap::new(),
            entropy,
        }
    }

    /// The fault plan in force.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// The fault plan the run started with (before a liveness phase), with
    /// its preset's datagram faults once the run opened a UDP socket.
    pub fn plan_drawn(&self) -> &FaultPlan {
        &self.plan_drawn
    }

    /// A service on `host` (`None`: the test) reached the probe `name`:
    /// counted, and noted in the readable trace (never in its hash).
    pub fn probe(&mut self, host: Option<HostId>, name: &'static str) {
        *self.probes.entry(name).or_default() += 1;
        if !self.trace.is_full() {
            return;
        }
        match host {
            Some(host) => self.note(host, format!("probe {name:?}")),
            None => {
                let now = self.now;
                self.trace.note(|| format!("{now:?} test probe {name:?}"));
            }
        }
    }

    /// Hits of each probe reached so far.
    pub fn probes(&self) -> &BTreeMap<&'static str, u64> {
        &self.probes
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
}
