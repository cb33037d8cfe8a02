//! Fault decisions: whether a fault fires (by the plan's odds, or by a schedule), and the record of those that did.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ioloop::{Fd, Instant};

use super::{tag, HostId, World};
use crate::Entropy;
use crate::FaultPlan;

/// A kind of fault the world injects.
///
/// The discriminant is the kind's id in the trace: it is part of the replay
/// format, so ids are never renumbered or reused (a new kind takes the next
/// number). [`FaultKind::name`] is the name the `sim` command prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FaultKind {
    /// A read returns fewer bytes than are available.
    PartialRead = 1,
    /// A write accepts fewer bytes than the window allows.
    PartialWrite = 2,
    /// A read fails with `EINTR`.
    EintrRead = 3,
    /// A write fails with `EINTR`.
    EintrWrite = 4,
    /// A wait fails with `EINTR`.
    EintrWait = 5,
    /// A read fails with `WouldBlock` although data is there.
    WouldblockRead = 6,
    /// A wait reports an fd that may not be ready.
    SpuriousEvent = 7,
    /// A connection is reset, both ends told.
    Reset = 8,
    /// A connect is refused.
    RefuseConnect = 9,
    /// An accept fails with `EMFILE`; the host stays out of fds a while.
    AcceptEmfile = 10,
    /// An accept fails with `ECONNABORTED`.
    AcceptAborted = 11,
    /// The link between two hosts is cut (one way or both): segments wait.
    Partition = 12,
    /// The link between two hosts holds every segment for a while.
    Clog = 13,
    /// A host's loop stops running for a while (a stalled process).
    Pause = 14,
    /// A host crashes: every fd gone at once; it may restart later.
    Crash = 15,
    /// A datagram is lost on the way.
    DatagramLoss = 16,
    /// A datagram arrives twice: the copy takes a path of its own (its own
    /// latency, and up to 200 ms more), so it may land long after what the
    /// socket sent later.
    DatagramDuplicate = 17,
    /// A datagram is held back 1 to 200 ms on the way, alone: what its
    /// socket sends later does not wait, and overtakes it.
    DatagramReorder = 18,
    /// A datagram waits 1 to 200 ms on the way, and what its socket sends
    /// later waits behind it (the order stays).
    DatagramDelay = 19,
    /// A datagram was longer than the buffer it was read into: the rest is
    /// gone. Not drawn: the reader's buffer decides it (recorded as
    /// [`SCRIPTED`], which no schedule removes).
    DatagramTruncate = 20,
}

impl FaultKind {
    /// Every kind, in id order.
    pub const ALL: [FaultKind; 20] = [
        FaultKind::PartialRead,
        FaultKind::PartialWrite,
        FaultKind::EintrRead,
        FaultKind::EintrWrite,
        FaultKind::EintrWait,
        FaultKind::WouldblockRead,
        FaultKind::SpuriousEvent,
        FaultKind::Reset,
        FaultKind::RefuseConnect,
        FaultKind::AcceptEmfile,
        FaultKind::AcceptAborted,
        FaultKind::Partition,
        FaultKind::Clog,
        FaultKind::Pause,
        FaultKind::Crash,
        FaultKind::DatagramLoss,
        FaultKind::DatagramDuplicate,
        FaultKind::DatagramReorder,
        FaultKind::DatagramDelay,
        FaultKind::DatagramTruncate,
    ];

    /// The kind's stable id, as the trace records it.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// `true` for the kinds a socket operation decides (numbered by
    /// [`socket_draw`]); the others are the nemesis's, a datagram's, or
    /// observed.
    pub fn is_socket_fault(self) -> bool {
        use FaultKind as K;
        // No wildcard: a new kind must say which it is.
        match self {
            K::PartialRead
            | K::PartialWrite
            | K::EintrRead
            | K::EintrWrite
            | K::EintrWait
            | K::WouldblockRead
            | K::SpuriousEvent
            | K::Reset
            | K::RefuseConnect
            | K::AcceptEmfile
            | K::AcceptAborted => true,
            K::Partition
            | K::Clog
            | K::Pause
            | K::Crash
            | K::DatagramLoss
            | K::DatagramDuplicate
            | K::DatagramReorder
            | K::DatagramDelay
            | K::DatagramTruncate => false,
        }
    }

    /// The kind's name (`partial-write`, `reset`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::PartialRead => "partial-read",
            FaultKind::PartialWrite => "partial-write",
            FaultKind::EintrRead => "eintr-read",
            FaultKind::EintrWrite => "eintr-write",
            FaultKind::EintrWait => "eintr-wait",
            FaultKind::WouldblockRead => "wouldblock-read",
            FaultKind::SpuriousEvent => "spurious-event",
            FaultKind::Reset => "reset",
            FaultKind::RefuseConnect => "refuse-connect",
            FaultKind::AcceptEmfile => "accept-emfile",
            FaultKind::AcceptAborted => "accept-aborted",
            FaultKind::Partition => "partition",
            FaultKind::Clog => "clog",
            FaultKind::Pause => "pause",
            FaultKind::Crash => "crash",
            FaultKind::DatagramLoss => "datagram-loss",
            FaultKind::DatagramDuplicate => "datagram-duplicate",
            FaultKind::DatagramReorder => "datagram-reorder",
            FaultKind::DatagramDelay => "datagram-delay",
            FaultKind::DatagramTruncate => "datagram-truncate",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.map(FaultKind::name).to_vec();
                format!(
                    "unknown fault kind {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// The `draw` of a fault a test scripted (a partition, a crash, ...), or
/// one its workload caused (a datagram truncated to the reader's buffer):
/// not drawn from the seed, so no schedule can remove it.
pub const SCRIPTED: u64 = u64::MAX;

const SOCKET_KIND_SHIFT: u32 = 43;
const SOCKET_HOST_SHIFT: u32 = 35;
/// Hosts with a numbering of their own; the rest share the last one.
const SOCKET_HOST_BUCKETS: usize = 256;
/// Decisions of one kind one host bucket may number, apart.
const SOCKET_INDEX_LIMIT: u64 = 1 << SOCKET_HOST_SHIFT;

/// The `draw` of host `host`'s socket fault decision number `index` (from
/// 0) of kind `kind`, written `kind:host:index` in a schedule file (`fire
/// partial-write:0:12`); every such number is below [`NEMESIS_DRAW`].
///
/// Numbered per host and kind, not in one sequence for the run, so that
/// removing one fault renumbers no decision of another kind or another
/// host, and a schedule's number can only ever fire a fault of the kind,
/// on the host, that it fired in the run it came from. Hosts from the
/// 256th on (index 255 and up) share one numbering — a number then names
/// the kind, not the host among them — and a host's decisions of one kind
/// past the 2<sup>35</sup>th share the last number.
pub fn socket_draw(kind: FaultKind, host: HostId, index: u64) -> u64 {
    let bucket = host.min(SOCKET_HOST_BUCKETS - 1) as u64;
    u64::from(kind.id()) << SOCKET_KIND_SHIFT
        | bucket << SOCKET_HOST_SHIFT
        | index.min(SOCKET_INDEX_LIMIT - 1)
}

/// A socket fault decision's kind, host (255 for every host from the
/// 256th on) and index, if `draw` is one: [`socket_draw`] inverted.
pub fn socket_draw_parts(draw: u64) -> Option<(FaultKind, HostId, u64)> {
    if draw >= NEMESIS_DRAW {
        return None;
    }
    let id = (draw >> SOCKET_KIND_SHIFT) as u8;
    let kind = FaultKind::ALL.into_iter().find(|kind| kind.id() == id)?;
    let host = ((draw >> SOCKET_HOST_SHIFT) & (SOCKET_HOST_BUCKETS as u64 - 1)) as HostId;
    Some((kind, host, draw & (SOCKET_INDEX_LIMIT - 1)))
}

/// The `draw` of the nemesis's decision number `i` is `NEMESIS_DRAW + i`
/// (a schedule file writes it `n<i>`): the network faults are numbered
/// apart from the socket faults.
pub const NEMESIS_DRAW: u64 = 1 << 48;

/// The `draw` of the datagram decision number `i` is `DATAGRAM_DRAW + i`
/// (a schedule file writes it `d<i>`): datagram `n` of the run (counted
/// from 0 as sent) owns decisions `4n` to `4n + 3` — loss, delay, reorder,
/// duplicate — whether or not each is made, so the numbers of one
/// datagram's faults move with neither the socket faults nor another
/// datagram's faults.
pub const DATAGRAM_DRAW: u64 = 2 << 48;

/// A fault that fired: which draw, what, where and when.
///
/// The simulator makes these; more fields may come (hence
/// `#[non_exhaustive]`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FiredFault {
    /// The fault decision's number in the run: a socket fault's
    /// ([`socket_draw`]: its kind, host and index), [`NEMESIS_DRAW`] or
    /// [`DATAGRAM_DRAW`] plus the index in those sequences, or
    /// [`SCRIPTED`] for a fault the test scripted.
    pub draw: u64,
    /// What fired.
    pub kind: FaultKind,
    /// The host it hit.
    pub host: HostId,
    /// The fd it hit (-1 for a host-wide decision).
    pub fd: Fd,
    /// Virtual time.
    pub at: Instant,
    /// The name of the host it hit: the name the harness gave it, or
    /// `host<id>`.
    pub host_name: Arc<str>,
    /// The other host of a partition or a clog, by name.
    pub peer: Option<Arc<str>>,
    /// How long it holds, where that was decided when it struck: a
    /// partition until it heals, a clog, a pause, a crashed host's time
    /// down before its restart. `None` for faults of a moment, and for what
    /// a test heals or restarts by hand.
    pub lasting: Option<Duration>,
}

impl FiredFault {
    /// The fault's name (`partial-write`, `reset`, ...).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

impl fmt::Display for FiredFault {
    /// What struck where, for how long, and when, hosts by name:
    /// `accept-emfile server fd0 at t+2.312ms`, `partition replica1 <->
    /// replica2 for 370ms at t+370ms`. A partition the seed drew cuts both
    /// ways (`<->`); one a test scripts is recorded per direction (`->`):
    /// `Sim::partition(a, b)` shows as `a -> b` and `b -> a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.host_name)?;
        if self.fd.0 >= 0 {
            write!(f, " {:?}", self.fd)?;
        }
        if let Some(peer) = &self.peer {
            let oneway = self.kind == FaultKind::Partition && self.draw == SCRIPTED;
            write!(f, " {} {peer}", if oneway { "->" } else { "<->" })?;
        }
        if let Some(lasting) = self.lasting {
            write!(f, " for {lasting:?}")?;
        }
        write!(f, " at {:?}", self.at)
    }
}

impl World {
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
        self.datagram_pending = None;
        if let Some(schedule) = &mut self.schedule {
            schedule.clear();
        }
        let now = self.now;
        self.trace
            .record(tag::FAULT, &[u64::MAX], || format!("{now:?} faults stop"));
    }

    /// Record a fault the test scripted (a partition, a clog, a pause, a
    /// crash) on `host`, with `detail` (the peer host, or a duration in
    /// microseconds).
    pub fn scripted_fault(&mut self, kind: FaultKind, host: HostId, detail: u64) {
        let (peer, lasting) = match kind {
            FaultKind::Partition | FaultKind::Clog => {
                (self.names.get(detail as usize).cloned(), None)
            }
            FaultKind::Pause => (None, Some(Duration::from_micros(detail))),
            _ => (None, None),
        };
        self.scripted_fault_lasting(kind, host, detail, peer, lasting);
    }

    /// [`scripted_fault`](Self::scripted_fault), with the peer and the
    /// duration said outright (a scripted clog's).
    pub(crate) fn scripted_fault_lasting(
        &mut self,
        kind: FaultKind,
        host: HostId,
        detail: u64,
        peer: Option<Arc<str>>,
        lasting: Option<Duration>,
    ) {
        let now = self.now;
        self.fired.push(FiredFault {
            draw: SCRIPTED,
            kind,
            host,
            fd: Fd(-1),
            at: now,
            host_name: Arc::clone(&self.names[host]),
            peer,
            lasting,
        });
        self.progress += 1;
        self.trace.record(
            tag::FAULT,
            &[host as u64, detail, u64::from(kind.id())],
            || {
                let name = &self.names[host];
                let peer = |id: u64| self.names.get(id as usize).map_or("?", |name| &**name);
                match kind {
                    FaultKind::Partition => format!("{now:?} {kind} {name} -> {}", peer(detail)),
                    FaultKind::Clog => format!("{now:?} {kind} {name} <-> {}", peer(detail)),
                    FaultKind::Pause => format!(
                        "{now:?} {kind} {name} for {:?}",
                        Duration::from_micros(detail)
                    ),
                    FaultKind::Crash if detail == 1 => format!("{now:?} {kind} {name} (process)"),
                    FaultKind::Crash => format!("{now:?} {kind} {name} (machine)"),
                    _ => format!("{now:?} {kind} {name} ({detail})"),
                }
            },
        );
    }

    /// Record a fault the workload caused, on `fd` of `host` (a datagram
    /// truncated to the reader's buffer): not a decision, so not numbered.
    pub(super) fn observed_fault(&mut self, kind: FaultKind, host: HostId, fd: Fd) {
        let now = self.now;
        self.fired.push(FiredFault {
            draw: SCRIPTED,
            kind,
            host,
            fd,
            at: now,
            host_name: Arc::clone(&self.names[host]),
            peer: None,
            lasting: None,
        });
        self.trace.record(
            tag::FAULT,
            &[host as u64, fd.0 as u64, u64::from(kind.id())],
            || format!("{now:?} {} {fd:?} {kind}", self.names[host]),
        );
    }

    /// Draw a fault with probability `ppm`; a fault that fires is traced.
    #[inline]
    pub(super) fn fault(&mut self, ppm: u32, kind: FaultKind, host: HostId, fd: Fd) -> bool {
        let drawn = self.entropy.chance(ppm);
        self.socket_decision(drawn, kind, host, fd)
    }

    /// The nemesis's decision number `index`, drawn from its own stream: a
    /// fault decision like the others (a schedule names it, shrinking
    /// removes it) that moves neither the main stream nor the numbers of
    /// the socket faults' decisions — so removing a socket fault leaves
    /// each network fault of a schedule where it was.
    ///
    /// `peer` (a partition's or a clog's other host) and `lasting` (how
    /// long it will hold) describe the fault if it fires.
    #[allow(clippy::too_many_arguments)]
    pub fn nemesis_fault(
        &mut self,
        entropy: &mut Entropy,
        ppm: u32,
        kind: FaultKind,
        host: HostId,
        index: u64,
        peer: Option<HostId>,
        lasting: Option<Duration>,
    ) -> bool {
        let drawn = entropy.chance(ppm);
        let fires = self.decide_fault(NEMESIS_DRAW + index, drawn, kind, host, Fd(-1));
        if fires {
            let peer = peer.and_then(|peer| self.names.get(peer).cloned());
            if let Some(fired) = self.fired.last_mut() {
                (fired.peer, fired.lasting) = (peer, lasting);
            }
        }
        fires
    }

    /// The datagram decision number `index` (see [`DATAGRAM_DRAW`]), whose
    /// odds the datagram's own draws decided (`drawn`): a fault decision
    /// like the others that moves neither the main stream nor the numbers
    /// of the socket faults' decisions.
    #[inline]
    pub(super) fn datagram_fault(
        &mut self,
        index: u64,
        drawn: bool,
        kind: FaultKind,
        host: HostId,
        fd: Fd,
    ) -> bool {
        self.decide_fault(DATAGRAM_DRAW + index, drawn, kind, host, fd)
    }

    /// Draw a socket fault's decision: the next number of its host and
    /// kind.
    #[inline]
    fn socket_decision(&mut self, drawn: bool, kind: FaultKind, host: HostId, fd: Fd) -> bool {
        // A row per host bucket, made when the host was added.
        let count =
            &mut self.socket_draws[host.min(SOCKET_HOST_BUCKETS - 1)][usize::from(kind.id()) - 1];
        let index = *count;
        *count += 1;
        if !drawn && self.schedule.is_none() {
            // Nearly every decision: nothing fires, no number is needed.
            return false;
        }
        self.decide_fault(socket_draw(kind, host, index), drawn, kind, host, fd)
    }

    /// Make the numbering of host `host`'s socket fault decisions (see
    /// [`socket_draw`]), when the host is added.
    pub(super) fn add_socket_draws(&mut self, host: HostId) {
        if host < SOCKET_HOST_BUCKETS {
            self.socket_draws.push([0; FaultKind::ALL.len()]);
        }
    }

    /// Let a schedule overrule `drawn` for decision `draw`, and trace the
    /// fault if it fires.
    #[inline]
    fn decide_fault(
        &mut self,
        draw: u64,
        drawn: bool,
        kind: FaultKind,
        host: HostId,
        fd: Fd,
    ) -> bool {
        // The draw is made even under a schedule, so that a schedule of
        // every fault that fired replays the seeded run exactly.
        let fires = match &self.schedule {
            Some(schedule) => schedule.contains(&draw),
            None => drawn,
        };
        if fires {
            self.fault_fired(draw, kind, host, fd);
        }
        fires
    }

    /// Record fault decision `draw`, which fired.
    #[inline(never)]
    fn fault_fired(&mut self, draw: u64, kind: FaultKind, host: HostId, fd: Fd) {
        let now = self.now;
        self.fired.push(FiredFault {
            draw,
            kind,
            host,
            fd,
            at: now,
            host_name: Arc::clone(&self.names[host]),
            peer: None,
            lasting: None,
        });
        self.trace.record(
            tag::FAULT,
            &[host as u64, fd.0 as u64, u64::from(kind.id())],
            || match fd.0 {
                // A host-wide decision (a wait's, the nemesis's): no fd.
                ..0 => format!("{now:?} {} fault {kind}", self.names[host]),
                _ => format!("{now:?} {} {fd:?} fault {kind}", self.names[host]),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_kind_ids_are_distinct_and_in_order() {
        let ids: Vec<u8> = FaultKind::ALL.map(FaultKind::id).to_vec();
        assert_eq!(ids, (1..=FaultKind::ALL.len() as u8).collect::<Vec<u8>>());
    }

    #[test]
    fn a_socket_draw_keeps_its_kind_host_and_index_apart_from_other_sequences() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in FaultKind::ALL {
            for host in [0, 1, 254] {
                for index in [0, 1, 12, (1 << 35) - 1] {
                    let draw = socket_draw(kind, host, index);
                    assert!(draw < NEMESIS_DRAW, "{kind} {host} {index}");
                    assert_eq!(socket_draw_parts(draw), Some((kind, host, index)));
                    assert!(seen.insert(draw), "{kind} {host} {index} numbered twice");
                }
            }
        }
        // Hosts from the 256th share a numbering; indices past 2^35 share
        // the last number.
        let last = socket_draw(FaultKind::Reset, 255, 5);
        assert_eq!(socket_draw(FaultKind::Reset, 9_000, 5), last);
        assert_eq!(
            socket_draw(FaultKind::Reset, 0, 1 << 40),
            socket_draw(FaultKind::Reset, 0, (1 << 35) - 1)
        );
        assert_eq!(socket_draw_parts(NEMESIS_DRAW), None);
        assert_eq!(socket_draw_parts(5), None, "kind 0 is no kind");
    }

    #[test]
    fn fault_kind_names_parse_back() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.name().parse::<FaultKind>(), Ok(kind));
        }
        assert!("partial".parse::<FaultKind>().is_err());
    }
}
