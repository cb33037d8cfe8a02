//! `Sim`: the public harness — named hosts running your service, clients that report done, and a scheduler that owns the clock.
//!
//! A [`Sim`] holds one simulated network and a loop per host. You add
//! hosts with a setup closure that installs your service on the host's
//! `&mut IOLoop<SimPoller>`, and client hosts whose code reports through a
//! [`Done`] handle. [`Sim::run`] then steps every host until every client
//! is done, checking the reactor's contract after every step.
//!
//! **Time.** Virtual time advances only when every host is idle (no
//! callbacks, no ready handlers, no due timeouts), and then to the earliest
//! of: the next delivery in flight, any host's next timeout *as its loop
//! knows it now*, and the end of a host's simulated CPU work
//! ([`SimPoller::consume`]). Hosts are stepped in the order they were
//! added; equal times resolve in a fixed order, so a seed replays exactly.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use ioloop::{Fd, IOLoop, Instant, PanicPolicy};

use crate::check::{self, SpinDetector};
use crate::net::{FiredFault, HostId};
use crate::world::CrashMode;
use crate::FaultKind;
use crate::{
    DatagramStats, Entropy, FaultPlan, FaultPreset, NetworkFaults, SimNet, SimPoller, Survives,
};

/// The error a setup closure may return: anything that is an error.
pub type BoxError = Box<dyn std::error::Error>;

/// How long, by default, a run may take after its clients are done for
/// every host to let go of what it opened (and, under a liveness phase,
/// after faults stop for everything to settle): 10 s of virtual time.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(10);
/// Virtual time a run may take, by default, before it counts as hung: one
/// hour.
pub const TIME_LIMIT: Duration = Duration::from_secs(3600);
/// Rounds (one step of every busy host, or one advance of time) a run may
/// take before it counts as hung: five million.
pub const ROUNDS_MAX: u64 = 5_000_000;
/// Rounds between two full checks of every handler table against its
/// poller (every step checks what changed).
const CHECK_FULL_EVERY: u64 = 64;

type Setup = Box<dyn FnMut(&mut IOLoop<SimPoller>) -> Result<(), BoxError>>;
type ClientSetup = Box<dyn FnMut(&mut IOLoop<SimPoller>, Done) -> Result<(), BoxError>>;
type Invariant = Box<dyn FnMut(&Sim) -> Result<(), String>>;
type EndCheck = Box<dyn FnOnce(&Sim) -> Result<(), String>>;
type Action = Box<dyn FnOnce(&mut Sim)>;

/// Builds a [`Sim`]: the seed, the fault plan, and the run's limits.
///
/// ```
/// use ioloop_sim::{FaultPreset, Sim};
/// use std::time::Duration;
///
/// let sim = Sim::builder(0x2a)
///     .faults(FaultPreset::Swarm)
///     .liveness_after(Duration::from_millis(50))
///     .build();
/// assert_eq!(sim.seed(), 0x2a);
/// ```
pub struct Builder {
    seed: u64,
    faults: FaultPreset,
    plan: Option<FaultPlan>,
    entropy: Option<Entropy>,
    trace_full: bool,
    liveness_after: Option<Duration>,
    settle_within: Duration,
    time_limit: Duration,
    leak_check: bool,
    at_rest: AtRest,
    duration: Option<Duration>,
    schedule: Option<BTreeSet<u64>>,
    network: Option<NetworkFaults>,
    /// Kinds the seed may not draw, whatever the plan says.
    without: BTreeSet<FaultKind>,
}

/// What a host may still have pending when the harness judges a run
/// settled at the end of a liveness phase ([`Builder::at_rest`]).
///
/// Settled means, on every host at one moment: nothing in flight (no
/// segment or datagram on its way or held on a link), no work due (no
/// callback, no ready handler, no due timeout — a paused host's included),
/// every client done, no more fds and handlers than after setup (the leak
/// check), and no more pending timeouts than this allows. A periodic timer
/// a service starts in its setup (heartbeats, a `PeriodicCallback`) never
/// goes away, so the default counts it as part of the host at rest; a
/// service with no periodic work can say so, and then any timer still
/// ticking is what failed to settle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AtRest {
    /// No more timeouts than the host held right after its setup (or its
    /// restart): the periodic work its setup started goes on; a timeout
    /// added since and never run or removed is unsettled. The default.
    #[default]
    SetupTimeouts,
    /// No timeout at all: for services with no periodic work, where a
    /// timer that keeps ticking at rest — even one the setup started — is
    /// the bug.
    NoTimeouts,
    /// Timeouts never count, at rest nor in the leak check: for a service
    /// that keeps timers past the end of its work by design — a cache's
    /// expiries, leases, a reconnect backoff. Its fds and handlers are
    /// still checked. A timeout already due is still work, though: a run
    /// does not end while a paused host holds one it could not run yet.
    ///
    /// ```
    /// use ioloop_sim::{AtRest, FailureKind, Sim};
    /// use std::time::Duration;
    ///
    /// let run = |at_rest| {
    ///     let mut sim = Sim::builder(1).at_rest(at_rest).build();
    ///     sim.client("cache", "10.0.0.1", |io, done| {
    ///         io.add_callback(move |io| {
    ///             io.call_later(Duration::from_secs(3600), |_| {}); // an entry's expiry
    ///             done.ok();
    ///         });
    ///         Ok(())
    ///     });
    ///     sim.run()
    /// };
    /// assert_eq!(run(AtRest::SetupTimeouts).unwrap_err().kind, FailureKind::Leak);
    /// assert!(run(AtRest::AnyTimeouts).is_ok());
    /// ```
    AnyTimeouts,
}

impl Builder {
    /// A simulation whose every decision comes from `seed`, with no faults
    /// until [`faults`](Self::faults) says otherwise.
    pub fn new(seed: u64) -> Builder {
        Builder {
            seed,
            faults: FaultPreset::None,
            plan: None,
            entropy: None,
            trace_full: false,
            liveness_after: None,
            settle_within: SETTLE_WITHIN,
            time_limit: TIME_LIMIT,
            leak_check: true,
            at_rest: AtRest::default(),
            duration: None,
            schedule: None,
            network: None,
            without: BTreeSet::new(),
        }
    }

    /// Draw no `kind` of fault, whatever the preset (or the plan, or the
    /// network plan) gives it: its odds set to zero, the rest of the
    /// seed's draw as it was. For a sweep that shows a service survives
    /// every fault but some: `Sweep::configure(|b| b.without(kind))`. A
    /// socket fault that shares its odds takes its siblings along (see
    /// [`FaultPlan::without`]); a fault the test scripts still happens.
    /// `FaultKind::DatagramTruncate` is never drawn (a reader's buffer
    /// decides it), so taking it away changes nothing.
    ///
    /// ```
    /// use ioloop_sim::{FaultKind, FaultPreset, Sim};
    ///
    /// let sim = Sim::builder(7)
    ///     .faults(FaultPreset::All)
    ///     .without(FaultKind::DatagramDuplicate)
    ///     .without(FaultKind::Clog)
    ///     .build();
    /// assert_eq!(sim.network_faults().map(|faults| faults.clog), Some(0));
    /// ```
    pub fn without(mut self, kind: FaultKind) -> Builder {
        self.without.insert(kind);
        self
    }

    /// An explicit plan of network faults instead of the preset's (see
    /// [`NetworkFaults`]); the simulation still draws only those its
    /// services survive ([`Sim::survives`]).
    pub fn network_plan(mut self, faults: NetworkFaults) -> Builder {
        self.network = Some(faults);
        self
    }

    /// The fault preset: `None`, `All`, or `Swarm` (the seed draws its own
    /// subset of faults and their strengths). `All` and `Swarm` draw
    /// network faults too — partitions, clogs, pauses, and crashes and
    /// restarts of service hosts — as far as the simulation declares its
    /// services survive them ([`Sim::survives`]; by default those that
    /// heal: partitions, clogs, pauses).
    pub fn faults(mut self, preset: FaultPreset) -> Builder {
        self.faults = preset;
        self
    }

    /// An explicit fault plan instead of a preset; its datagram faults
    /// ([`FaultPlan::datagram`]) are in force from the start.
    pub fn plan(mut self, plan: FaultPlan) -> Builder {
        self.plan = Some(plan);
        self
    }

    /// Draw every decision from `entropy` instead of the seed (a fuzzer's
    /// bytes: [`Entropy::from_bytes`]); the plan is then drawn from it too,
    /// as the preset says, unless [`plan`](Self::plan) gave one.
    pub fn entropy(mut self, entropy: Entropy) -> Builder {
        self.entropy = Some(entropy);
        self
    }

    /// Keep a readable line per decision ([`Report::trace_lines`]).
    pub fn trace(mut self, full: bool) -> Builder {
        self.trace_full = full;
        self
    }

    /// A liveness phase: every fault stops at this virtual time, and the
    /// run must then settle within [`settle_within`](Self::settle_within):
    /// every client done, nothing in flight, no work due on any host, every
    /// host back to the fds and handlers it had after setup, and no more
    /// timeouts pending than [`at_rest`](Self::at_rest) allows (by default
    /// those the host's setup left: its periodic work). A run that has not
    /// settled fails at that deadline.
    ///
    /// A service with timers of its own (idle timeouts, retries that give
    /// up) needs a liveness phase for a sweep to catch a hang: without
    /// one, the timer ends the stuck connection and the run passes. Choose
    /// `settle_within` shorter than those timers.
    pub fn liveness_after(mut self, after: Duration) -> Builder {
        self.liveness_after = Some(after);
        self
    }

    /// What a settled host may still have pending (default
    /// [`AtRest::SetupTimeouts`]): say [`AtRest::NoTimeouts`] for a service
    /// with no periodic work, so that a timer left ticking — even one its
    /// setup started — fails the liveness phase; [`AtRest::AnyTimeouts`]
    /// for one that keeps timers by design (a cache's expiries), which the
    /// leak check then does not count either.
    ///
    /// ```
    /// use ioloop::{IOLoop, PeriodicCallback};
    /// use ioloop_sim::{AtRest, BoxError, FailureKind, Sim, SimPoller};
    /// use std::time::Duration;
    ///
    /// // A heartbeat: a periodic timer its setup starts, and never stops.
    /// let heartbeat = |io: &mut IOLoop<SimPoller>| -> Result<(), BoxError> {
    ///     PeriodicCallback::new(|_: &mut IOLoop<SimPoller>| {}, Duration::from_millis(100))?.start(io);
    ///     Ok(())
    /// };
    /// let run = |at_rest| {
    ///     let mut sim = Sim::builder(1)
    ///         .liveness_after(Duration::from_millis(10))
    ///         .at_rest(at_rest)
    ///         .build();
    ///     sim.host("node", "10.0.0.1", heartbeat);
    ///     sim.client("watch", "10.0.0.2", |io, done| {
    ///         io.call_later(Duration::from_millis(50), move |_| done.ok());
    ///         Ok(())
    ///     });
    ///     sim.run()
    /// };
    /// assert!(run(AtRest::SetupTimeouts).is_ok()); // the default
    /// assert_eq!(run(AtRest::NoTimeouts).unwrap_err().kind, FailureKind::Liveness);
    /// ```
    pub fn at_rest(mut self, at_rest: AtRest) -> Builder {
        self.at_rest = at_rest;
        self
    }

    /// How long hosts may take to let go of what they opened once every
    /// client is done (default [`SETTLE_WITHIN`]).
    pub fn settle_within(mut self, within: Duration) -> Builder {
        self.settle_within = within;
        self
    }

    /// Virtual time after which a run fails as hung (default
    /// [`TIME_LIMIT`]).
    pub fn time_limit(mut self, limit: Duration) -> Builder {
        self.time_limit = limit;
        self
    }

    /// Make `d` of virtual time part of [`Sim::run`]'s goal: the run goes
    /// on until virtual time reaches `d` *and* every client is done — so a
    /// service that never ends (heartbeats, gossip) runs with no client at
    /// all — and then ends as any run does: the hosts must let go of what
    /// they opened ([`leak_check`](Self::leak_check)) within
    /// [`settle_within`](Self::settle_within), and under a liveness phase
    /// settle within it counted from the later of `d` and the end of
    /// faults. The nemesis strikes until `d` even when nothing else is
    /// pending. [`Sweep::run_for`](crate::Sweep::run_for) runs each seed so.
    ///
    /// ```
    /// use ioloop::{IOLoop, PeriodicCallback};
    /// use ioloop_sim::{BoxError, Sim, SimPoller};
    /// use std::time::Duration;
    ///
    /// let mut sim = Sim::builder(1).duration(Duration::from_secs(60)).build();
    /// sim.host("node", "10.0.0.1", |io| -> Result<(), BoxError> {
    ///     PeriodicCallback::new(|_: &mut IOLoop<SimPoller>| {}, Duration::from_secs(1))?.start(io);
    ///     Ok(())
    /// });
    /// let report = sim.run()?; // no client: a minute of ticks, then the leak check
    /// assert_eq!(report.virtual_time.since_epoch(), Duration::from_secs(60));
    /// # Ok::<(), ioloop_sim::Failure>(())
    /// ```
    pub fn duration(mut self, d: Duration) -> Builder {
        self.duration = Some(d);
        self
    }

    /// Turn the end-of-run leak check off (on by default): a host that
    /// holds more fds, handlers or timeouts than it had after its setup.
    pub fn leak_check(mut self, on: bool) -> Builder {
        self.leak_check = on;
        self
    }

    /// Fire exactly these fault decisions, whatever the plan's
    /// probabilities say; every other decision still comes from the seed.
    /// A decision is named by its `draw` number, as [`FiredFault::draw`](crate::net::FiredFault::draw)
    /// reports it: [`socket_draw`](crate::world::socket_draw) for a socket
    /// fault, [`NEMESIS_DRAW`](crate::world::NEMESIS_DRAW) or
    /// [`DATAGRAM_DRAW`](crate::world::DATAGRAM_DRAW) plus an index for the
    /// others (a [`Schedule`](crate::shrink::Schedule) file writes them
    /// `kind:host:N`, `nN`, `dN`).
    pub fn schedule(mut self, fire: BTreeSet<u64>) -> Builder {
        self.schedule = Some(fire);
        self
    }

    /// The knob set that makes a run draw from something else than its
    /// seed's own decisions, if any: a sweep refuses it.
    pub(crate) fn not_from_seed(&self) -> Option<&'static str> {
        if self.entropy.is_some() {
            Some("entropy")
        } else if self.schedule.is_some() {
            Some("schedule")
        } else {
            None
        }
    }

    /// The simulation, with no hosts yet.
    pub fn build(self) -> Sim {
        let mut entropy = self.entropy.unwrap_or_else(|| Entropy::seeded(self.seed));
        let explicit = self.plan.is_some();
        let plan = self
            .plan
            .unwrap_or_else(|| FaultPlan::from_preset(self.faults, &mut entropy));
        let plan = self
            .without
            .iter()
            .fold(plan, |plan, &kind| plan.without(kind));
        let net = SimNet::with_plan(entropy, plan, self.trace_full);
        if !explicit {
            net.world_mut().set_datagram_preset(self.faults);
            for &kind in &self.without {
                net.world_mut().datagram_preset_without(kind);
            }
        }
        if let Some(fire) = self.schedule {
            net.world_mut().set_schedule(fire);
        }
        let nemesis = match self.network {
            Some(faults) => Some((faults, NetworkFaults::stream(self.seed))),
            None => Some(NetworkFaults::for_preset(self.faults, self.seed)),
        }
        .map(|(faults, entropy)| {
            let without = self.without.iter();
            (
                without.fold(faults, |faults, &kind| faults.without(kind)),
                entropy,
            )
        })
        .filter(|(faults, _)| faults.any())
        .map(|(faults, entropy)| Nemesis {
            next_tick: Some(Instant::ZERO + faults.tick),
            heals: BTreeMap::new(),
            faults,
            entropy,
            decisions: 0,
        });
        Sim {
            net,
            seed: self.seed,
            faults: self.faults,
            liveness_after: self.liveness_after,
            settle_within: self.settle_within,
            time_limit: self.time_limit,
            leak_check: self.leak_check,
            at_rest: self.at_rest,
            run_until: self.duration.map(|d| Instant::ZERO + d),
            hosts: Vec::new(),
            invariants: Vec::new(),
            end_checks: Vec::new(),
            setup_error: None,
            spin: SpinDetector::new(),
            rounds: 0,
            faults_stopped_at: None,
            goal_met_at: None,
            script: BTreeMap::new(),
            when_done: Vec::new(),
            nemesis_restarts_pending: 0,
            script_seq: 0,
            nemesis,
            survives: Survives::default(),
        }
    }
}

/// The nemesis: network faults drawn on a tick, from their own stream.
struct Nemesis {
    /// What the seed drew, before [`Sim::survives`] takes away what the
    /// services cannot take.
    faults: NetworkFaults,
    entropy: Entropy,
    /// Decisions made so far: each one's number in a schedule.
    decisions: u64,
    /// The next draw; `None` once the clients are done or faults stopped.
    /// Not a scripted action: a run with nothing else pending is over (a
    /// stall, or the end), however long the nemesis could go on.
    next_tick: Option<Instant>,
    /// When each pair of hosts the nemesis cut (lower id first) heals: the
    /// end of the latest-ending partition drawn on it, so that partitions
    /// that overlap on a pair hold until the last of them ends, each as
    /// long as it was drawn to.
    heals: BTreeMap<(HostId, HostId), Instant>,
}

/// How a client reports that it is done, or that it failed.
///
/// Cloneable and cheap: hand a clone to every handler and callback of the
/// client. The first report wins; a failure ends the run at once.
#[derive(Clone, Default)]
pub struct Done {
    state: Rc<RefCell<ClientState>>,
}

#[derive(Default)]
struct ClientState {
    result: Option<Result<(), String>>,
    describe: Option<Box<dyn Fn() -> String>>,
}

impl Done {
    /// The client finished its work.
    pub fn ok(&self) {
        self.finish(Ok(()));
    }

    /// The client saw something wrong: the run fails with `why`.
    pub fn fail(&self, why: impl Into<String>) {
        self.finish(Err(why.into()));
    }

    /// Report `result` (the first report wins).
    pub fn finish(&self, result: Result<(), String>) {
        let mut state = self.state.borrow_mut();
        if state.result.is_none() {
            state.result = Some(result);
        }
    }

    /// `true` once the client reported.
    pub fn is_done(&self) -> bool {
        self.state.borrow().result.is_some()
    }

    /// Describe what the client is waiting for, for failure reports (a
    /// stall, a spin, a time limit).
    pub fn describe_with(&self, describe: impl Fn() -> String + 'static) {
        self.state.borrow_mut().describe = Some(Box::new(describe));
    }

    fn failure(&self) -> Option<String> {
        match &self.state.borrow().result {
            Some(Err(why)) => Some(why.clone()),
            _ => None,
        }
    }

    fn description(&self) -> String {
        let state = self.state.borrow();
        match &state.describe {
            Some(describe) => describe(),
            None => "not done".into(),
        }
    }
}

/// What a host is for.
enum Role {
    Server,
    Client(Done),
}

/// One host: its name, its loop, and what it held after setup.
struct Host {
    name: String,
    id: HostId,
    /// `None` while crashed.
    io: Option<IOLoop<SimPoller>>,
    role: Role,
    baseline: Holdings,
    /// Stopped by a pause until then (a crash ends a pause).
    paused_until: Instant,
    /// Crashes so far, scripted or drawn, a crash of a host already down
    /// included: the nemesis restarts a host it crashed only if no crash
    /// came since (a scripted crash takes the host over until the script
    /// restarts it).
    crashes: u64,
    /// The nemesis never crashes it ([`Sim::never_crash`]).
    never_crash: bool,
    /// Run again when the host restarts.
    setup: Setup,
    client_setup: Option<ClientSetup>,
}

impl Host {
    fn handlers(&self) -> String {
        match &self.io {
            Some(io) => check::describe_handlers(io),
            None => "(crashed)".into(),
        }
    }

    /// Handlers due again without a new event, and ignored `ERROR`s: what
    /// a spin report must name.
    fn pending_readiness(&self) -> String {
        self.io
            .as_ref()
            .map(check::describe_pending_readiness)
            .unwrap_or_default()
    }

    fn timeout_count(&self) -> usize {
        self.io.as_ref().map_or(0, IOLoop::timeout_count)
    }

    fn has_pending_work(&self) -> bool {
        self.io.as_ref().is_some_and(IOLoop::has_pending_work)
    }
}

/// What a host holds: the leak check compares this with the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Holdings {
    fds: Vec<Fd>,
    handlers: usize,
    timeouts: usize,
}

impl Holdings {
    /// No more than `baseline`; timeouts not counted under
    /// [`AtRest::AnyTimeouts`].
    fn within(&self, baseline: &Holdings, at_rest: AtRest) -> bool {
        self.fds.len() <= baseline.fds.len()
            && self.handlers <= baseline.handlers
            && (self.timeouts <= baseline.timeouts || at_rest == AtRest::AnyTimeouts)
    }
}

/// What a host is doing, by the simulator's ground truth
/// ([`Sim::host_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostState {
    /// Its loop runs (or waits for an event, a timeout, or the end of
    /// simulated CPU work).
    Running,
    /// Stopped by a pause ([`Sim::pause`], or the nemesis's): its loop
    /// holds everything it had, and runs again when the pause ends.
    Paused,
    /// Crashed ([`Sim::crash`], or the nemesis's), until it restarts: its
    /// loop and fds are gone.
    Crashed(CrashMode),
}

/// The state of the link from one host to another, by the simulator's
/// ground truth ([`Sim::link`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Segments and datagrams pass (after their latency).
    Open,
    /// Partitioned: segments wait on the link until it is repaired;
    /// datagrams are dropped.
    Cut,
    /// Clogged for a while: segments and datagrams wait, and pass in order
    /// when it opens.
    Clogged,
}

/// What ended a run unsuccessfully. New kinds may come: match with a
/// wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// A host's setup failed, or the simulation was described wrongly
    /// (a malformed address, a name or address used twice).
    Setup,
    /// A client reported a failure through [`Done::fail`].
    Client,
    /// A handler, callback or timeout panicked.
    Panic,
    /// `run_once` returned an error.
    Loop,
    /// The loop's handler table and the poller's registrations differ.
    HandlerMap,
    /// A handler was called after its removal or outside its interest.
    Dispatch,
    /// A user invariant failed (returned `Err`, or panicked):
    /// [`Sim::invariant`].
    Invariant,
    /// Nothing is pending anywhere, but a client is not done.
    Stall,
    /// Many rounds without a byte moved or time passing.
    Spin,
    /// Clients are done but a host holds more fds, handlers or timeouts than
    /// after its setup.
    Leak,
    /// Faults stopped, and the run did not settle in time.
    Liveness,
    /// The virtual-time limit or the round limit was reached.
    Hung,
    /// The same seed ran twice and the runs parted.
    Nondeterminism,
    /// A check for the end of a run failed (returned `Err`, or panicked):
    /// [`Sim::check_at_end`].
    EndCheck,
}

impl FailureKind {
    /// A short name, stable across versions (used in summaries and
    /// schedules).
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Setup => "setup",
            FailureKind::Client => "client",
            FailureKind::Panic => "panic",
            FailureKind::Loop => "loop-error",
            FailureKind::HandlerMap => "handler-map",
            FailureKind::Dispatch => "dispatch",
            FailureKind::Invariant => "invariant",
            FailureKind::Stall => "stall",
            FailureKind::Spin => "spin",
            FailureKind::Leak => "leak",
            FailureKind::Liveness => "liveness",
            FailureKind::Hung => "hung",
            FailureKind::Nondeterminism => "nondeterminism",
            FailureKind::EndCheck => "end-check",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a run did: its identity, its trace hash and the faults that fired.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The fault plan the run started with (with the preset's datagram
    /// faults once it opened a UDP socket).
    pub plan: FaultPlan,
    /// Hash of every decision: the same seed gives the same hash, in any
    /// process.
    pub trace_hash: u64,
    /// Decisions recorded (simulated events).
    pub sim_events: u64,
    /// Virtual time at the end.
    pub virtual_time: Instant,
    /// Every fault that fired.
    pub fired: Vec<FiredFault>,
    /// A readable line per decision, when [`Builder::trace`] asked for it.
    pub trace_lines: Vec<String>,
    /// The network faults the seed could draw — those of its preset that
    /// the simulation survives ([`Sim::survives`]) — if any.
    pub network_faults: Option<NetworkFaults>,
    /// What became of the run's UDP datagrams (all zero without UDP).
    pub datagrams: DatagramStats,
    /// How many times the services reached each probe
    /// ([`IOLoop::probe`](ioloop::IOLoop::probe)) or the test marked it
    /// ([`Sim::probe`]); a probe never reached is not listed.
    pub probes: BTreeMap<&'static str, u64>,
}

/// Why a run failed, with the [`Report`] of the run up to the failure.
///
/// `{:?}` — what `unwrap()` and a test returning `Result` print — is the
/// failure itself, then the seed, the trace hash and the last faults that
/// fired; `{:#?}` is every field, the whole [`Report`] included.
#[derive(Clone)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The host it concerns, if one.
    pub host: Option<String>,
    /// What happened.
    pub message: String,
    /// The run up to the failure.
    pub report: Box<Report>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:?}", self.kind, self.report.virtual_time)?;
        if let Some(host) = &self.host {
            write!(f, " on host {host:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f
                .debug_struct("Failure")
                .field("kind", &self.kind)
                .field("host", &self.host)
                .field("message", &self.message)
                .field("report", &self.report)
                .finish();
        }
        let report = &self.report;
        write!(
            f,
            "{self}\n  seed {:#x} trace_hash={:016x} sim_events={}\n  {}",
            report.seed,
            report.trace_hash,
            report.sim_events,
            fired_summary(&report.fired)
        )
    }
}

/// `faults fired: N, the last: A; B; C` — how many faults a run's
/// [`Report::fired`] holds, and the last three, for a failure's text.
pub(crate) fn fired_summary(fired: &[FiredFault]) -> String {
    const SHOWN: usize = 3;
    let mut text = format!("faults fired: {}", fired.len());
    if !fired.is_empty() {
        let last: Vec<String> = fired[fired.len().saturating_sub(SHOWN)..]
            .iter()
            .map(ToString::to_string)
            .collect();
        text.push_str(if fired.len() > SHOWN {
            ", the last: "
        } else {
            ": "
        });
        text.push_str(&last.join("; "));
    }
    text
}

impl std::error::Error for Failure {}

/// What one step of the scheduler did.
enum Step {
    /// Some host ran an iteration.
    Ran,
    /// Every host was idle: time advanced.
    Advanced,
    /// Nothing is pending anywhere, and nothing ever will be.
    Quiescent,
    /// Every host is idle at the deadline to settle by, and the clock may
    /// go no further: the run has not settled.
    Deadline,
}

/// A simulation: hosts on one seeded network, stepped by a scheduler that
/// owns the virtual clock, checked after every step.
///
/// ```
/// use ioloop::Events;
/// use ioloop_sim::{FaultPreset, Sim};
///
/// let mut sim = Sim::new(7, FaultPreset::None);
/// sim.host("server", "10.0.0.1", |io| {
///     let listener = io.listen("10.0.0.1:7".parse()?)?;
///     io.add_handler(listener, |io, fd, _| {
///         while let Ok((conn, _)) = io.accept(fd) {
///             let _ = io.close_fd(conn); // hang up at once
///         }
///     }, Events::READ)?;
///     Ok(())
/// });
/// sim.client("client", "10.0.0.2", |io, done| {
///     let conn = io.connect("10.0.0.1:7".parse()?)?;
///     io.add_handler(conn, move |io, fd, _| {
///         let mut buf = [0u8; 16];
///         match io.read(fd, &mut buf) {
///             Ok(0) | Err(_) => {
///                 let _ = io.close_fd(fd);
///                 done.ok(); // closed, refused or reset: all fine here
///             }
///             Ok(_) => done.fail("the server said something"),
///         }
///     }, Events::READ)?;
///     Ok(())
/// });
/// let report = sim.run()?;
/// assert!(report.sim_events > 0);
/// # Ok::<(), ioloop_sim::Failure>(())
/// ```
pub struct Sim {
    net: SimNet,
    seed: u64,
    faults: FaultPreset,
    liveness_after: Option<Duration>,
    settle_within: Duration,
    time_limit: Duration,
    leak_check: bool,
    at_rest: AtRest,
    /// Part of [`run`](Sim::run)'s goal: virtual time reaches this
    /// ([`Builder::duration`]).
    run_until: Option<Instant>,
    hosts: Vec<Host>,
    invariants: Vec<(String, Invariant)>,
    /// Checks for the end of a run that ends well ([`Sim::check_at_end`]).
    end_checks: Vec<(String, EndCheck)>,
    setup_error: Option<(Option<String>, String)>,
    spin: SpinDetector,
    rounds: u64,
    faults_stopped_at: Option<Instant>,
    /// When [`run`](Sim::run)'s goal was first met.
    goal_met_at: Option<Instant>,
    /// Actions the test scheduled on virtual time ([`Sim::at`]).
    script: BTreeMap<(Instant, u64), Action>,
    /// Actions for the moment the goal is met ([`Sim::when_done`]).
    when_done: Vec<Action>,
    /// Restarts the nemesis planned and that have not come yet: the
    /// `when_done` actions wait for them (a host it crashed comes back,
    /// and its setup runs, before it is wound down).
    nemesis_restarts_pending: usize,
    script_seq: u64,
    nemesis: Option<Nemesis>,
    survives: Survives,
}

impl Sim {
    /// A [`Builder`] for a simulation of `seed`.
    pub fn builder(seed: u64) -> Builder {
        Builder::new(seed)
    }

    /// A simulation of `seed` under the fault `preset`, with the default
    /// limits.
    pub fn new(seed: u64, preset: FaultPreset) -> Sim {
        Builder::new(seed).faults(preset).build()
    }

    /// Add a host named `name` at address `ip` and run `setup` on its loop
    /// to install the service. A setup error, a malformed address, or a
    /// name or address used twice makes [`run`](Self::run) fail with
    /// [`FailureKind::Setup`].
    pub fn host<F>(&mut self, name: &str, ip: &str, setup: F) -> &mut Sim
    where
        F: FnMut(&mut IOLoop<SimPoller>) -> Result<(), BoxError> + 'static,
    {
        self.add(name, ip, Role::Server, Box::new(setup), None);
        self
    }

    /// Add a client host: `setup` starts its work and reports through the
    /// [`Done`] it is given. [`run`](Self::run) ends once every client is
    /// done (and the hosts have let go of what they opened).
    pub fn client<F>(&mut self, name: &str, ip: &str, setup: F) -> &mut Sim
    where
        F: FnMut(&mut IOLoop<SimPoller>, Done) -> Result<(), BoxError> + 'static,
    {
        let done = Done::default();
        self.add(
            name,
            ip,
            Role::Client(done),
            Box::new(|_: &mut IOLoop<SimPoller>| Ok(())),
            Some(Box::new(setup)),
        );
        self
    }

    /// Check `invariant` after every step of every host; an `Err` (or a
    /// panic) fails the run with [`FailureKind::Invariant`]. It sees the whole simulation
    /// (read-only): [`now`](Self::now), [`io`](Self::io), and the ground
    /// truth by host name — [`host_state`](Self::host_state),
    /// [`link`](Self::link) — ...
    pub fn invariant<F>(&mut self, name: &str, invariant: F) -> &mut Sim
    where
        F: FnMut(&Sim) -> Result<(), String> + 'static,
    {
        self.invariants
            .push((name.to_string(), Box::new(invariant)));
        self
    }

    /// Check `check` once, when [`run`](Self::run) ends well — every
    /// client done, the [`duration`](Builder::duration) up, the hosts
    /// back to what they held after setup (unless
    /// [`leak_check`](Builder::leak_check) is off) and, under a liveness
    /// phase, settled; the handler tables and the invariants checked once
    /// more — and fail the run with [`FailureKind::EndCheck`] if it
    /// returns an `Err` or panics (an `assert!` in it is fine: the failure
    /// still names the seed and its replay). For what only the end can
    /// tell: that every subscriber got every message it was owed, that
    /// the replicas agree. Checks run in the order added, and the first
    /// that fails is the failure. Not run if the run fails otherwise, nor
    /// by [`run_for`](Self::run_for) and [`run_until`](Self::run_until),
    /// after which a test may go on.
    ///
    /// ```
    /// use ioloop_sim::{FaultPreset, Sim};
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    ///
    /// let ticks = Rc::new(Cell::new(0));
    /// // Ticks at 100 ms, 200 ms, ... 1 s: the run ends at 1.05 s.
    /// let duration = Duration::from_millis(1050);
    /// let mut sim = Sim::builder(1).faults(FaultPreset::None).duration(duration).build();
    /// let counted = ticks.clone();
    /// sim.host("a", "10.0.0.1", move |io| {
    ///     let counted = counted.clone();
    ///     ioloop::PeriodicCallback::new(move |_| counted.set(counted.get() + 1), Duration::from_millis(100))?
    ///         .start(io);
    ///     Ok(())
    /// });
    /// sim.check_at_end("ten ticks in a second", move |_| match ticks.get() {
    ///     10 => Ok(()),
    ///     n => Err(format!("{n} ticks")),
    /// });
    /// sim.run()?;
    /// # Ok::<(), ioloop_sim::Failure>(())
    /// ```
    pub fn check_at_end<F>(&mut self, name: &str, check: F) -> &mut Sim
    where
        F: FnOnce(&Sim) -> Result<(), String> + 'static,
    {
        self.end_checks.push((name.to_string(), Box::new(check)));
        self
    }

    fn add(
        &mut self,
        name: &str,
        ip: &str,
        role: Role,
        setup: Setup,
        client_setup: Option<ClientSetup>,
    ) {
        // Setups run once, now; a restart (crash and restart of a host)
        // would keep them to run again.
        if self.setup_error.is_some() {
            return;
        }
        let ip: IpAddr = match ip.parse() {
            Ok(ip) => ip,
            Err(_) => return self.setup_failed(name, format!("not an IP address: {ip:?}")),
        };
        if self.hosts.iter().any(|h| h.name == name) {
            return self.setup_failed(name, "two hosts have this name".into());
        }
        if let Some(other) = self
            .hosts
            .iter()
            .find(|h| self.net.world().host_ip(h.id) == ip)
        {
            let message = format!("address {ip} is already host {:?}'s", other.name);
            return self.setup_failed(name, message);
        }
        let poller = self.net.host(ip);
        let id = poller.host_id();
        self.net.world_mut().name_host(id, name);
        let host = Host {
            name: name.to_string(),
            id,
            io: None,
            role,
            baseline: Holdings {
                fds: Vec::new(),
                handlers: 0,
                timeouts: 0,
            },
            paused_until: Instant::ZERO,
            crashes: 0,
            never_crash: false,
            setup,
            client_setup,
        };
        self.hosts.push(host);
        let index = self.hosts.len() - 1;
        if let Err(message) = self.boot(index, poller) {
            self.setup_failed(name, message);
        }
    }

    /// Give host `index` a loop over `poller`, run its setup, and take
    /// what it then holds as its baseline.
    fn boot(&mut self, index: usize, poller: SimPoller) -> Result<(), String> {
        let mut io = IOLoop::new(poller);
        io.set_panic_policy(PanicPolicy::Propagate);
        let host = &mut self.hosts[index];
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            match (&host.role, &mut host.client_setup) {
                (Role::Client(done), Some(client_setup)) => client_setup(&mut io, done.clone()),
                _ => (host.setup)(&mut io),
            }
        }));
        host.io = Some(io);
        match ran {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("setup failed: {error}")),
            Err(payload) => {
                return Err(format!(
                    "setup panicked: {}",
                    panic_message(payload.as_ref())
                ))
            }
        }
        self.hosts[index].baseline = self.holdings(&self.hosts[index]);
        Ok(())
    }

    fn setup_failed(&mut self, name: &str, message: String) {
        self.setup_error = Some((Some(name.to_string()), message));
    }

    // ----- network faults, scripted -------------------------------------------------

    /// Run `action` when virtual time reaches `after` from now (during
    /// [`run`](Self::run), [`run_for`](Self::run_for) or
    /// [`run_until`](Self::run_until)): a partition that heals, a crash and
    /// a restart, on the simulation's own clock.
    ///
    /// ```
    /// use ioloop_sim::{FaultPreset, Sim};
    /// use std::time::Duration;
    ///
    /// let mut sim = Sim::new(1, FaultPreset::None);
    /// sim.host("a", "10.0.0.1", |_| Ok(()));
    /// sim.host("b", "10.0.0.2", |_| Ok(()));
    /// sim.at(Duration::from_millis(5), |sim| { sim.partition("a", "b"); });
    /// sim.at(Duration::from_millis(50), |sim| { sim.repair("a", "b"); });
    /// sim.run_for(Duration::from_millis(100))?;
    /// # Ok::<(), ioloop_sim::Failure>(())
    /// ```
    pub fn at<F>(&mut self, after: Duration, action: F) -> &mut Sim
    where
        F: FnOnce(&mut Sim) + 'static,
    {
        let when = self.now() + after;
        self.script
            .insert((when, self.script_seq), Box::new(action));
        self.script_seq += 1;
        self
    }

    /// Run `action` once, at the moment [`run`](Self::run)'s goal is met —
    /// every client done, and the [`duration`](Builder::duration) reached
    /// if one was set — before the run is judged: the place to wind down
    /// service hosts that would otherwise end holding more than after
    /// their setup (a queue's workers still connected, a peer's reconnect
    /// timer), as a real deployment's shutdown would. A host the seed
    /// crashed (under [`Survives::ProcessCrashes`] and up) is restarted
    /// first: the action runs once no drawn restart is pending, with every
    /// host the seed crashed back up. What the action sets off runs, and
    /// must settle as any run's end must: within
    /// [`settle_within`](Builder::settle_within) of the action, or, with a
    /// [`liveness_after`](Builder::liveness_after) phase, by that phase's
    /// deadline. Several actions run in the order given. A run with no
    /// goal (no client and no duration), and [`run_for`](Self::run_for)
    /// and [`run_until`](Self::run_until), never call it.
    ///
    /// The action reaches a host's loop with [`io_mut`](Self::io_mut)
    /// (`None` while it is crashed); your service's own handle, made in
    /// the host's setup, is one the test keeps (an `Rc` works: a
    /// simulation runs on one thread).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    /// use ioloop::{Fd, IOLoop};
    /// use ioloop_sim::{FaultPreset, Sim, SimPoller};
    ///
    /// let mut sim = Sim::new(1, FaultPreset::None);
    /// sim.host("broker", "10.0.0.1", |io| {
    ///     let listener = io.listen("10.0.0.1:7000".parse()?)?;
    ///     io.add_handler(listener, |io: &mut IOLoop<SimPoller>, fd, _| {
    ///         while let Ok((conn, _)) = io.accept(fd) {
    ///             // Close once the peer does.
    ///             io.add_handler(conn, |io: &mut IOLoop<SimPoller>, fd, _| {
    ///                 if io.read(fd, &mut [0; 64]).is_ok_and(|n| n == 0) {
    ///                     io.close_fd(fd).unwrap();
    ///                 }
    ///             }, ioloop::Events::READ).unwrap();
    ///         }
    ///     }, ioloop::Events::READ)?;
    ///     Ok(())
    /// });
    /// // A worker stays connected for as long as it runs.
    /// let worker: Rc<RefCell<Option<Fd>>> = Rc::default();
    /// let connection = Rc::clone(&worker);
    /// sim.host("worker", "10.0.0.2", move |io| {
    ///     *connection.borrow_mut() = Some(io.connect("10.0.0.1:7000".parse()?)?);
    ///     Ok(())
    /// });
    /// sim.client("producer", "10.0.0.3", |io, done| {
    ///     io.call_later(Duration::from_millis(10), move |_| done.ok());
    ///     Ok(())
    /// });
    /// // Without this the run fails: both hosts hold the connection.
    /// sim.when_done(move |sim| {
    ///     if let (Some(io), Some(fd)) = (sim.io_mut("worker"), worker.borrow_mut().take()) {
    ///         io.close_fd(fd).unwrap();
    ///     }
    /// });
    /// sim.run()?;
    /// # Ok::<(), ioloop_sim::Failure>(())
    /// ```
    pub fn when_done<F>(&mut self, action: F) -> &mut Sim
    where
        F: FnOnce(&mut Sim) + 'static,
    {
        self.when_done.push(Box::new(action));
        self
    }

    /// Cut the links between hosts `a` and `b`, both ways. Segments wait
    /// (as TCP would retransmit them) and arrive, in order, once repaired;
    /// connects between them hang until then, or until their own timeout.
    pub fn partition(&mut self, a: &str, b: &str) -> &mut Sim {
        self.partition_oneway(a, b).partition_oneway(b, a)
    }

    /// Cut only the link from `from` to `to`.
    pub fn partition_oneway(&mut self, from: &str, to: &str) -> &mut Sim {
        if let Some((from, to)) = self.pair(from, to) {
            let mut world = self.net.world_mut();
            world.cut_link(from, to);
            world.scripted_fault(FaultKind::Partition, from, to as u64);
        }
        self
    }

    /// Repair the links between `a` and `b`, both ways: what they held is
    /// delivered now.
    pub fn repair(&mut self, a: &str, b: &str) -> &mut Sim {
        if let Some((a, b)) = self.pair(a, b) {
            let mut world = self.net.world_mut();
            world.repair_link(a, b);
            world.repair_link(b, a);
            // Healed by hand: a partition the seed drew on the pair no
            // longer holds it either.
            if let Some(nemesis) = self.nemesis.as_mut() {
                nemesis.heals.remove(&(a.min(b), a.max(b)));
            }
        }
        self
    }

    /// Hold everything between `a` and `b`, both ways, for `duration`, then
    /// deliver it in order.
    pub fn clog(&mut self, a: &str, b: &str, duration: Duration) -> &mut Sim {
        if let Some((a, b)) = self.pair(a, b) {
            let mut world = self.net.world_mut();
            world.clog_link(a, b, duration);
            world.clog_link(b, a, duration);
            let peer = Some(world.host_name(b).into());
            world.scripted_fault_lasting(FaultKind::Clog, a, b as u64, peer, Some(duration));
        }
        self
    }

    /// Set host `name`'s wall clock ([`IOLoop::system_time`]) to `to`, now:
    /// back or forward, as an operator or NTP steps a clock. It runs on
    /// with virtual time from there, and survives a restart. Every host
    /// starts at [`WALL_CLOCK_START_UNIX_S`](crate::WALL_CLOCK_START_UNIX_S);
    /// the loop's own clock ([`IOLoop::time`], timeouts) is not touched.
    ///
    /// ```
    /// use ioloop_sim::{wall_clock_start, FaultPreset, Sim};
    /// use std::time::Duration;
    ///
    /// let mut sim = Sim::new(1, FaultPreset::None);
    /// sim.host("server", "10.0.0.1", |_io| Ok(()));
    /// let start = wall_clock_start();
    /// assert_eq!(sim.io("server").unwrap().system_time(), start);
    /// // An hour back, ten seconds of virtual time in:
    /// sim.at(Duration::from_secs(10), move |sim| {
    ///     sim.set_wall_clock("server", start - Duration::from_secs(3600) + Duration::from_secs(10));
    /// });
    /// sim.run_for(Duration::from_secs(12))?;
    /// let wall = sim.io("server").unwrap().system_time();
    /// assert_eq!(wall, start - Duration::from_secs(3600) + Duration::from_secs(12));
    /// # Ok::<(), ioloop_sim::Failure>(())
    /// ```
    pub fn set_wall_clock(&mut self, name: &str, to: SystemTime) -> &mut Sim {
        if let Some(index) = self.index_of(name) {
            let id = self.hosts[index].id;
            self.net.world_mut().set_wall_clock(id, to);
        }
        self
    }

    /// Stop host `name`'s loop for `duration` (a stalled process).
    pub fn pause(&mut self, name: &str, duration: Duration) -> &mut Sim {
        if let Some(index) = self.index_of(name) {
            let id = self.hosts[index].id;
            self.pause_index(index, duration);
            self.net
                .world_mut()
                .scripted_fault(FaultKind::Pause, id, duration.as_micros() as u64);
        }
        self
    }

    /// Pause host `index` for `duration`, and remember until when.
    fn pause_index(&mut self, index: usize, duration: Duration) {
        let id = self.hosts[index].id;
        let mut world = self.net.world_mut();
        world.pause_host(id, duration);
        self.hosts[index].paused_until = world.busy_until(id);
    }

    /// Crash host `name`: its loop and its service's state are dropped,
    /// every fd vanishes; `mode` says whether its kernel still answers
    /// (peers reset) or the machine is gone (silence until
    /// [`restart`](Self::restart)).
    ///
    /// A host is down until the script restarts it, even if the nemesis
    /// (a seed's drawn crashes, under [`Survives::ProcessCrashes`] or
    /// [`Survives::MachineCrashes`]) had crashed it first: it stays down as
    /// it went down, and the restart the nemesis had planned is called
    /// off. So a scripted crash and restart mix with drawn ones, and the
    /// nemesis never crashes a host while it is down.
    pub fn crash(&mut self, name: &str, mode: CrashMode) -> &mut Sim {
        if let Some(index) = self.index_of(name) {
            let id = self.hosts[index].id;
            self.net.world_mut().scripted_fault(
                FaultKind::Crash,
                id,
                u64::from(mode == CrashMode::Process),
            );
            self.crash_index(index, mode);
        }
        self
    }

    fn crash_index(&mut self, index: usize, mode: CrashMode) {
        let host = &mut self.hosts[index];
        host.crashes += 1;
        if let Some(io) = host.io.take() {
            drop(io);
            self.net.world_mut().crash_host(host.id, mode);
            host.paused_until = Instant::ZERO;
            host.baseline = Holdings {
                fds: Vec::new(),
                handlers: 0,
                timeouts: 0,
            };
        } else {
            self.net.world_mut().trace_note(
                host.id,
                "is already down: it stays down as it went down, until restarted",
            );
        }
    }

    /// The nemesis's restart of host `index`, which it crashed as crash
    /// number `crash`: called off if the host crashed again since (the
    /// script took it over) or is already up.
    fn restart_index(&mut self, index: usize, crash: u64) {
        if self.hosts[index].io.is_some() || self.hosts[index].crashes != crash {
            return;
        }
        let poller = self.net.restart(self.hosts[index].id);
        if let Err(message) = self.boot(index, poller) {
            let name = self.hosts[index].name.clone();
            self.setup_failed(&name, format!("on restart: {message}"));
        }
    }

    /// Restart host `name` after a crash: same address, a fresh loop, fds
    /// from the lowest again, and its setup closure run again. Restarting a
    /// host that is running fails the run (a setup failure naming it).
    pub fn restart(&mut self, name: &str) -> &mut Sim {
        let Some(index) = self.index_of(name) else {
            return self;
        };
        if self.hosts[index].io.is_some() {
            let message = format!("restart of host {name:?}, which is running");
            self.setup_failed(name, message);
            return self;
        }
        let poller = self.net.restart(self.hosts[index].id);
        if let Err(message) = self.boot(index, poller) {
            self.setup_failed(name, format!("on restart: {message}"));
        }
        self
    }

    /// One draw of the nemesis: maybe a partition, a clog, a pause, a
    /// crash (each healed after its own drawn duration), of the kinds the
    /// services survive; then the next tick, unless the clients are done or
    /// faults stopped.
    fn nemesis_tick(&mut self) {
        let Some(mut nemesis) = self.nemesis.take() else {
            return;
        };
        nemesis.next_tick = None;
        if self.faults_stopped_at.is_some() || (self.has_goal() && self.goal_met()) {
            self.nemesis = Some(nemesis);
            return;
        }
        let faults = nemesis.faults.survivable_by(self.survives);
        self.nemesis_draw(&faults, &mut nemesis);
        nemesis.next_tick = Some(self.now() + faults.tick);
        self.nemesis = Some(nemesis);
    }

    /// When the nemesis draws next; never if the services survive none of
    /// the faults it may draw (then the run is exactly as without it).
    fn nemesis_next_tick(&self) -> Option<Instant> {
        self.network_faults()?;
        self.nemesis.as_ref()?.next_tick
    }

    /// The draws of one tick, in a fixed order: which hosts, how long, and
    /// whether each kind strikes.
    fn nemesis_draw(&mut self, faults: &NetworkFaults, nemesis: &mut Nemesis) {
        let (entropy, decisions) = (&mut nemesis.entropy, &mut nemesis.decisions);
        // `what`: the kind, the host it hits, the other host of a link,
        // and how long it will hold.
        let mut decide =
            |world: &mut crate::world::World,
             entropy: &mut Entropy,
             ppm,
             what: (FaultKind, HostId, Option<HostId>, Duration)| {
                *decisions += 1;
                let (kind, host, peer, lasting) = what;
                world.nemesis_fault(
                    entropy,
                    ppm,
                    kind,
                    host,
                    *decisions - 1,
                    peer,
                    Some(lasting),
                )
            };
        let running: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.hosts[i].io.is_some())
            .collect();
        let services: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&i| matches!(self.hosts[i].role, Role::Server) && !self.hosts[i].never_crash)
            .collect();
        let pick =
            |entropy: &mut Entropy, from: &[usize]| from[entropy.below(from.len() as u64) as usize];
        let lasting = |entropy: &mut Entropy, ms_max: u64| {
            Duration::from_millis(entropy.between(1, ms_max.max(1)))
        };
        if running.len() >= 2 {
            let a = pick(entropy, &running);
            let others: Vec<usize> = running.iter().copied().filter(|&i| i != a).collect();
            let b = pick(entropy, &others);
            let (ida, idb) = (self.hosts[a].id, self.hosts[b].id);
            let duration = lasting(entropy, faults.partition_ms_max);
            let cut = decide(
                &mut self.net.world_mut(),
                entropy,
                faults.partition,
                (FaultKind::Partition, ida, Some(idb), duration),
            );
            if cut {
                let mut world = self.net.world_mut();
                world.cut_link(ida, idb);
                world.cut_link(idb, ida);
                drop(world);
                let pair = (ida.min(idb), ida.max(idb));
                let until = self.now() + duration;
                let heal = nemesis.heals.entry(pair).or_insert(until);
                *heal = (*heal).max(until);
                self.at(duration, move |sim| {
                    // Another partition of the pair may still hold it.
                    let now = sim.now();
                    let heals = sim.nemesis.as_mut().map(|nemesis| &mut nemesis.heals);
                    let Some(heals) = heals else { return };
                    if heals.get(&pair).is_some_and(|at| *at > now) {
                        return;
                    }
                    heals.remove(&pair);
                    let mut world = sim.net.world_mut();
                    world.repair_link(ida, idb);
                    world.repair_link(idb, ida);
                });
            }
            let duration = lasting(entropy, faults.clog_ms_max);
            let clogged = decide(
                &mut self.net.world_mut(),
                entropy,
                faults.clog,
                (FaultKind::Clog, ida, Some(idb), duration),
            );
            if clogged {
                let mut world = self.net.world_mut();
                world.clog_link(ida, idb, duration);
                world.clog_link(idb, ida, duration);
            }
        }
        // A paused host is not paused again: pauses that pile up could
        // stop a host for good.
        let now = self.now();
        let awake: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&i| self.net.world().busy_until(self.hosts[i].id) <= now)
            .collect();
        if !awake.is_empty() {
            let index = pick(entropy, &awake);
            let host = self.hosts[index].id;
            let duration = lasting(entropy, faults.pause_ms_max);
            let paused = decide(
                &mut self.net.world_mut(),
                entropy,
                faults.pause,
                (FaultKind::Pause, host, None, duration),
            );
            if paused {
                self.pause_index(index, duration);
            }
        }
        if !services.is_empty() {
            let index = pick(entropy, &services);
            let mode = if entropy.chance(faults.machine_crash) {
                CrashMode::Machine
            } else {
                CrashMode::Process
            };
            let down = lasting(entropy, faults.crash_down_ms_max);
            let id = self.hosts[index].id;
            let crashed = decide(
                &mut self.net.world_mut(),
                entropy,
                faults.crash,
                (FaultKind::Crash, id, None, down),
            );
            if crashed {
                self.crash_index(index, mode);
                let crash = self.hosts[index].crashes;
                self.nemesis_restarts_pending += 1;
                self.at(down, move |sim| {
                    sim.nemesis_restarts_pending -= 1;
                    sim.restart_index(index, crash);
                });
            }
        }
    }

    /// The seed never crashes host `name` (a service host; clients never
    /// crash): under [`Survives::ProcessCrashes`] or
    /// [`Survives::MachineCrashes`] it draws its crashes among the other
    /// service hosts — the workers of a queue, say, and not its broker,
    /// whose durability the test does not cover. Partitions, clogs and
    /// pauses still strike it, and a scripted [`crash`](Self::crash) still
    /// does. A simulation that exempts no host draws as before. An unknown
    /// name fails the run's setup.
    pub fn never_crash(&mut self, name: &str) -> &mut Sim {
        if let Some(index) = self.index_of(name) {
            self.hosts[index].never_crash = true;
        }
        self
    }

    /// Declare which network faults this simulation's services survive:
    /// under the `all` and `swarm` presets the seed draws those, and no
    /// others. The default, [`Survives::HealingFaults`], draws partitions,
    /// clogs and pauses — which heal by themselves, so that any correct
    /// service passes them with no code of its own — and no crash.
    /// [`Survives::ProcessCrashes`] adds crashes of service hosts whose
    /// peers are reset; [`Survives::MachineCrashes`] adds silent ones, for
    /// clients with timeouts; [`Survives::SocketFaults`] draws none.
    ///
    /// Call it while describing the simulation, before [`run`](Self::run):
    /// a replay runs the same description, so it declares the same.
    pub fn survives(&mut self, level: Survives) -> &mut Sim {
        self.survives = level;
        self
    }

    /// Which network faults the simulation declared its services survive.
    pub fn survival(&self) -> Survives {
        self.survives
    }

    /// The network faults the seed may draw: those of the preset (or
    /// [`Builder::network_plan`]) that the services survive; `None` if none.
    pub fn network_faults(&self) -> Option<NetworkFaults> {
        self.nemesis
            .as_ref()
            .map(|n| n.faults.survivable_by(self.survives))
            .filter(NetworkFaults::any)
    }

    /// `true` if a fault this run may draw can break a connection — a
    /// reset, a refused connect or an aborted accept of the socket plan
    /// ([`FaultPlan::may_break_connections`], which counts only those), or
    /// a crash of the network faults the simulation [survives](Self::survives):
    /// a client may then end with a clean error instead of its answer.
    pub fn may_break_connections(&self) -> bool {
        self.plan().may_break_connections()
            || self
                .network_faults()
                .is_some_and(|faults| faults.may_break_connections())
    }

    fn index_of(&mut self, name: &str) -> Option<usize> {
        let index = self.hosts.iter().position(|h| h.name == name);
        if index.is_none() && self.setup_error.is_none() {
            self.setup_error = Some((None, format!("no host named {name:?}")));
        }
        index
    }

    fn pair(&mut self, a: &str, b: &str) -> Option<(HostId, HostId)> {
        let a = self.index_of(a)?;
        let b = self.index_of(b)?;
        Some((self.hosts[a].id, self.hosts[b].id))
    }

    /// Run the scripted actions that are due.
    fn run_script(&mut self) -> Result<(), Failure> {
        let now = self.now();
        let mut ran = false;
        while let Some(entry) = self.script.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let action = entry.remove();
            action(self);
            ran = true;
        }
        // The nemesis may restart a host, whose setup may fail.
        if self.nemesis_next_tick().is_some_and(|tick| tick <= now) {
            self.nemesis_tick();
            ran = true;
        }
        // Checked before the run; only an action can have broken it since.
        if ran {
            self.check_setup()
        } else {
            Ok(())
        }
    }

    // ----- reading the simulation ---------------------------------------------

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The fault preset the simulation was built with.
    pub fn preset(&self) -> FaultPreset {
        self.faults
    }

    /// The fault plan the run started with.
    pub fn plan(&self) -> FaultPlan {
        self.net.world().plan_drawn().clone()
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.net.world().now()
    }

    /// The loop of host `name`, to read.
    pub fn io(&self, name: &str) -> Option<&IOLoop<SimPoller>> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.io.as_ref())
    }

    /// The loop of host `name`, to change between runs (add a timeout, a
    /// handler, a `PeriodicCallback`...).
    pub fn io_mut(&mut self, name: &str) -> Option<&mut IOLoop<SimPoller>> {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .and_then(|h| h.io.as_mut())
    }

    /// The open fds of host `name`, in fd order.
    pub fn open_fds(&self, name: &str) -> Vec<Fd> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .map(|h| self.net.world().open_fds(h.id))
            .unwrap_or_default()
    }

    /// What host `name` is doing now — running, paused, or crashed and how
    /// — or `None` if there is no such host. For invariants that must know
    /// the truth about a host its peers can only guess at.
    ///
    /// ```
    /// use ioloop_sim::{CrashMode, FaultPreset, HostState, LinkState, Sim};
    /// use std::time::Duration;
    ///
    /// let mut sim = Sim::new(1, FaultPreset::None);
    /// sim.host("a", "10.0.0.1", |_| Ok(()));
    /// sim.host("b", "10.0.0.2", |_| Ok(()));
    /// sim.partition_oneway("a", "b").pause("a", Duration::from_millis(10));
    /// sim.crash("b", CrashMode::Machine);
    /// assert_eq!(sim.link("a", "b"), Some(LinkState::Cut));
    /// assert_eq!(sim.link("b", "a"), Some(LinkState::Open)); // one way only
    /// assert!(sim.is_paused("a") && sim.is_up("a"));
    /// assert_eq!(sim.host_state("b"), Some(HostState::Crashed(CrashMode::Machine)));
    /// sim.run_for(Duration::from_millis(20))?;
    /// assert_eq!(sim.host_state("a"), Some(HostState::Running)); // the pause is over
    /// assert!(!sim.is_up("b") && sim.host_state("c").is_none());
    /// # Ok::<(), ioloop_sim::Failure>(())
    /// ```
    pub fn host_state(&self, name: &str) -> Option<HostState> {
        let host = self.hosts.iter().find(|h| h.name == name)?;
        let world = self.net.world();
        Some(if host.io.is_none() {
            HostState::Crashed(if world.host_is_down(host.id) {
                CrashMode::Machine
            } else {
                CrashMode::Process
            })
        } else if host.paused_until > world.now() {
            HostState::Paused
        } else {
            HostState::Running
        })
    }

    /// `true` if host `name` exists and has not crashed (a paused host is
    /// up: its process lives).
    pub fn is_up(&self, name: &str) -> bool {
        self.host_state(name)
            .is_some_and(|state| !matches!(state, HostState::Crashed(_)))
    }

    /// `true` if host `name` is paused now.
    pub fn is_paused(&self, name: &str) -> bool {
        self.host_state(name) == Some(HostState::Paused)
    }

    /// The state of the link from host `from` to host `to` now (one way:
    /// [`partition_oneway`](Self::partition_oneway) cuts only one), or
    /// `None` if either host does not exist. A link to a crashed host is
    /// still open: ask [`host_state`](Self::host_state) about the host.
    pub fn link(&self, from: &str, to: &str) -> Option<LinkState> {
        let id = |name: &str| self.hosts.iter().find(|h| h.name == name).map(|h| h.id);
        let (from, to) = (id(from)?, id(to)?);
        let world = self.net.world();
        Some(if world.link_cut(from, to) {
            LinkState::Cut
        } else if world.link_blocked(from, to) {
            LinkState::Clogged
        } else {
            LinkState::Open
        })
    }

    /// The names of the hosts, in the order they were added.
    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|h| h.name.as_str())
    }

    /// The network, for what the harness does not wrap.
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// Mark the probe `name` reached, as a service's
    /// [`IOLoop::probe`](ioloop::IOLoop::probe) does, from the test: an
    /// invariant or an end check that saw a state worth counting (it is
    /// counted for the run it is made in; a sweep sums each seed's first
    /// run only, so a determinism check's or a shrink's runs of a seed do
    /// not count it again).
    pub fn probe(&self, name: &'static str) {
        self.net.world_mut().probe(None, name);
    }

    /// The run so far: trace hash, events, faults that fired.
    pub fn report(&self) -> Report {
        let world = self.net.world();
        Report {
            seed: self.seed,
            plan: world.plan_drawn().clone(),
            trace_hash: world.trace().hash(),
            sim_events: world.trace().len(),
            virtual_time: world.now(),
            fired: world.fired().to_vec(),
            trace_lines: world.trace().lines().to_vec(),
            network_faults: self.network_faults(),
            datagrams: world.datagram_stats(),
            probes: world.probes().clone(),
        }
    }

    // ----- running ---------------------------------------------------------------

    /// Run until every client is done (and virtual time reached the
    /// [`duration`](Builder::duration), if one was set) and every host holds
    /// no more fds, handlers and timeouts than after its setup; with neither
    /// clients nor a duration, until nothing is pending anywhere. Checks
    /// the contract after every step, and at the end the handler tables
    /// and the invariants once more, then the checks for the end
    /// ([`check_at_end`](Self::check_at_end)).
    pub fn run(&mut self) -> Result<Report, Failure> {
        self.check_setup()?;
        for _ in 0..ROUNDS_MAX {
            self.rounds += 1;
            self.maybe_stop_faults();
            self.run_script()?;
            if self.rounds % CHECK_FULL_EVERY == 0 {
                self.check_every_host()?;
            }
            if let Some(result) = self.end_if_done() {
                self.check_every_host()?;
                return result;
            }
            self.check_time_limit()?;
            // Before its duration is up a run goes on, however idle.
            let until = self.run_until.filter(|until| self.now() < *until);
            match self.step(until, true)? {
                Step::Ran | Step::Advanced => {}
                Step::Deadline => return Err(self.liveness_failure()),
                Step::Quiescent => {
                    if let Some(until) = until {
                        self.net.world_mut().advance_to(until);
                        continue;
                    }
                    self.check_every_host()?;
                    return self.end_quiescent();
                }
            }
        }
        Err(self.fail(
            FailureKind::Hung,
            None,
            format!("not finished after {ROUNDS_MAX} rounds"),
        ))
    }

    /// Run for `duration` of virtual time (clients need not finish), with
    /// every checker on; time jumps over idle stretches. For fake-clock
    /// tests: advance the clock, then look at what the hosts did.
    ///
    /// What is due at the end instant has run when it returns — a timeout
    /// that falls due exactly then, a segment that lands then, and what
    /// they set off at that same instant — as `tokio::time::advance` does;
    /// nothing later has. `run_for(Duration::ZERO)` runs what is due now.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), Failure> {
        let until = self.now() + duration;
        self.run_until_time(until, |_| false).map(|_| ())
    }

    /// [`run_for`](Self::run_for) up to the instant `at` (if it is past,
    /// only what is due now runs): a test of a deadline runs to it, or
    /// just before it (`deadline - Duration::from_nanos(1)`), and looks.
    pub fn run_to(&mut self, at: Instant) -> Result<(), Failure> {
        self.run_until_time(at, |_| false).map(|_| ())
    }

    /// Run until `condition` holds (`Ok(true)`) or `timeout` of virtual time
    /// passes (`Ok(false)`), with every checker on. As with
    /// [`run_for`](Self::run_for), what is due at the end instant runs
    /// before it gives up (and the condition is asked after each step).
    pub fn run_until<F>(&mut self, timeout: Duration, condition: F) -> Result<bool, Failure>
    where
        F: FnMut(&Sim) -> bool,
    {
        let until = self.now() + timeout;
        self.run_until_time(until, condition)
    }

    fn run_until_time<F>(&mut self, until: Instant, mut condition: F) -> Result<bool, Failure>
    where
        F: FnMut(&Sim) -> bool,
    {
        self.check_setup()?;
        for _ in 0..ROUNDS_MAX {
            self.rounds += 1;
            self.maybe_stop_faults();
            self.run_script()?;
            if self.rounds % CHECK_FULL_EVERY == 0 {
                self.check_every_host()?;
            }
            if condition(self) {
                return Ok(true);
            }
            if self.now() >= until && !self.work_due_now() {
                self.check_every_host()?;
                return Ok(false);
            }
            // No settle deadline here: `run_for` and `run_until` end at
            // their own time, whatever a liveness phase would ask of `run`.
            if let Step::Quiescent | Step::Deadline = self.step(Some(until), false)? {
                // Nothing will ever happen: the clock may as well jump.
                self.net.world_mut().advance_to(until);
            }
        }
        Err(self.fail(
            FailureKind::Hung,
            None,
            format!("not finished after {ROUNDS_MAX} rounds"),
        ))
    }

    fn check_setup(&self) -> Result<(), Failure> {
        match &self.setup_error {
            Some((host, message)) => Err(Failure {
                kind: FailureKind::Setup,
                host: host.clone(),
                message: message.clone(),
                report: Box::new(self.report()),
            }),
            None => Ok(()),
        }
    }

    fn check_time_limit(&self) -> Result<(), Failure> {
        if self.now().since_epoch() <= self.time_limit {
            return Ok(());
        }
        let message = format!(
            "not finished after {:?} of virtual time; {}",
            self.time_limit,
            self.describe_unfinished()
        );
        Err(self.fail(FailureKind::Hung, None, message))
    }

    /// One step: every host with work runs one iteration; if none had work,
    /// time advances to the next thing scheduled anywhere (no further than
    /// `until`, nor than [`clock_stop`](Self::clock_stop) — the settle
    /// deadline included if `settle` — if there is a next thing at all).
    fn step(&mut self, until: Option<Instant>, settle: bool) -> Result<Step, Failure> {
        let now = self.now();
        let mut ran = false;
        for index in 0..self.hosts.len() {
            if self.has_work(index, now) {
                self.run_host(index)?;
                ran = true;
            }
        }
        if ran {
            if self.spin.round(&self.net.world()) {
                return Err(self.spin_failure());
            }
            return Ok(Step::Ran);
        }
        // The nemesis's next draw is not work: with nothing else pending an
        // open-ended run is over; a bounded one lets it strike to its end.
        let tick = self.nemesis_next_tick();
        let next = match (self.next_instant(now), until) {
            (Some(next), _) => Some(tick.map_or(next, |tick| tick.min(next))),
            (None, Some(_)) => tick,
            (None, None) => None,
        };
        let Some(next) = next else {
            return Ok(Step::Quiescent);
        };
        let mut next = until.map_or(next, |until| next.min(until));
        if let Some(stop) = self.clock_stop(settle).filter(|stop| next > *stop) {
            if stop <= now {
                // Idle at the deadline, what was due then has run.
                return Ok(Step::Deadline);
            }
            next = stop;
        }
        self.net.world_mut().advance_to(next);
        self.spin.round(&self.net.world());
        Ok(Step::Advanced)
    }

    /// `true` if some host would not sleep now: work due at this instant.
    fn work_due_now(&mut self) -> bool {
        let now = self.now();
        (0..self.hosts.len()).any(|index| self.has_work(index, now))
    }

    /// `true` if host `index` would not sleep now. Inlined into `step`
    /// even though `work_due_now` calls it too: out of line, it cost 2 %
    /// of a sweep's instructions.
    #[inline(always)]
    fn has_work(&mut self, index: usize, now: Instant) -> bool {
        let host = &mut self.hosts[index];
        {
            let world = self.net.world();
            if world.busy_until(host.id) > now {
                return false;
            }
            if world.has_pending_edges(host.id) {
                return true;
            }
        }
        let Some(io) = &mut host.io else {
            return false;
        };
        io.has_pending_work() || io.next_timeout().is_some_and(|at| at <= now)
    }

    /// The earliest thing scheduled anywhere after `now`: a delivery, a
    /// host's next timeout as its loop knows it now, or the end of a host's
    /// CPU work.
    fn next_instant(&mut self, now: Instant) -> Option<Instant> {
        let scripted = self.script.keys().next().map(|(at, _)| *at);
        let delivery = self.net.world().next_delivery();
        let mut next = match (scripted, delivery) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for host in &mut self.hosts {
            let busy_until = self.net.world().busy_until(host.id);
            let timeout = host
                .io
                .as_mut()
                .and_then(IOLoop::next_timeout)
                .map(|at| at.max(busy_until));
            let busy = (busy_until > now).then_some(busy_until);
            for at in [timeout, busy].into_iter().flatten() {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        }
        next
    }

    /// One iteration of host `index`, then the checkers.
    fn run_host(&mut self, index: usize) -> Result<(), Failure> {
        let host = &mut self.hosts[index];
        let Some(io) = host.io.as_mut() else {
            return Ok(());
        };
        let ran = panic::catch_unwind(AssertUnwindSafe(|| io.run_once(Some(Duration::ZERO))));
        // The name is borrowed only to report a failure: no copy per step.
        let name = &self.hosts[index].name;
        match ran {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let message = format!("run_once failed: {error}");
                return Err(self.fail(FailureKind::Loop, Some(name), message));
            }
            Err(payload) => {
                let message = format!(
                    "a handler, callback or timeout panicked: {}",
                    panic_message(payload.as_ref())
                );
                return Err(self.fail(FailureKind::Panic, Some(name), message));
            }
        }
        // What changed, every step; everything, every CHECK_FULL_EVERY
        // rounds and at the end (`check_every_host`).
        let consistent = self.hosts[index]
            .io
            .as_mut()
            .map_or(Ok(()), IOLoop::check_changes);
        let name = &self.hosts[index].name;
        if let Err(error) = consistent {
            let message = format!("handler table and registrations differ: {error}");
            return Err(self.fail(FailureKind::HandlerMap, Some(name), message));
        }
        let violations = self.net.world_mut().take_violations();
        if let Some(first) = violations.first() {
            let message = format!("{first} ({} violations)", violations.len());
            return Err(self.fail(FailureKind::Dispatch, Some(name), message));
        }
        if let Role::Client(done) = &self.hosts[index].role {
            if let Some(why) = done.failure() {
                return Err(self.fail(FailureKind::Client, Some(name), why));
            }
        }
        self.check_invariants(Some(index))
    }

    /// Every host's whole handler table against its poller: a change made
    /// behind a loop's back shows here even on a host that never steps.
    fn check_every_host(&self) -> Result<(), Failure> {
        for host in &self.hosts {
            if let Some(Err(error)) = host.io.as_ref().map(IOLoop::check_consistency) {
                let message = format!("handler table and registrations differ: {error}");
                return Err(self.fail(FailureKind::HandlerMap, Some(&host.name), message));
            }
        }
        Ok(())
    }

    /// The invariants, after a step of host `stepped` (`None`: at the end).
    fn check_invariants(&mut self, stepped: Option<usize>) -> Result<(), Failure> {
        if self.invariants.is_empty() {
            return Ok(());
        }
        let mut invariants = std::mem::take(&mut self.invariants);
        let mut failed = None;
        for (name, invariant) in &mut invariants {
            if let Err(why) = checked(|| invariant(self)) {
                failed = Some(format!("invariant {name:?}: {why}"));
                break;
            }
        }
        self.invariants = invariants;
        match failed {
            Some(message) => {
                let stepped = stepped.map(|index| &*self.hosts[index].name);
                let message = message + &self.describe_when_judged(stepped);
                Err(self.fail(FailureKind::Invariant, None, message))
            }
            None => Ok(()),
        }
    }

    /// When a check failed: after which host's step it was found (the
    /// invariants are checked after each host's step, so a scripted action
    /// or a drawn crash shows as the next step's), and which hosts were
    /// not running then — a check that
    /// reads state a service shared with the test may be reading a dead
    /// process's. ` (after a step of host "a"; not running then: host "b"
    /// crashed (process), host "c" paused; ...)`, or nothing at the end of
    /// a run with every host running.
    fn describe_when_judged(&self, stepped: Option<&str>) -> String {
        let mut crashed = false;
        let down: Vec<String> = self
            .hosts
            .iter()
            .filter_map(|host| {
                let what = match self.host_state(&host.name)? {
                    HostState::Running => return None,
                    HostState::Paused => "paused",
                    HostState::Crashed(CrashMode::Process) => "crashed (process)",
                    HostState::Crashed(CrashMode::Machine) => "crashed (machine)",
                };
                crashed |= what.starts_with("crashed");
                Some(format!("host {:?} {what}", host.name))
            })
            .collect();
        let mut parts = Vec::new();
        if let Some(stepped) = stepped {
            parts.push(format!("after a step of host {stepped:?}"));
        }
        if !down.is_empty() {
            parts.push(format!("not running then: {}", down.join(", ")));
        }
        if crashed {
            parts.push("state a service shared with the test may be its crashed process's".into());
        }
        if parts.is_empty() {
            return String::new();
        }
        format!(" ({})", parts.join("; "))
    }

    /// The end of a run that ended well: the handler tables and the
    /// invariants once more, then the checks for the end, and the report.
    fn end_well(&mut self) -> Result<Report, Failure> {
        self.check_every_host()?;
        self.check_invariants(None)?;
        for (name, check) in std::mem::take(&mut self.end_checks) {
            if let Err(why) = checked(|| check(self)) {
                let message = format!(
                    "check at end {name:?}: {why}{}",
                    self.describe_when_judged(None)
                );
                return Err(self.fail(FailureKind::EndCheck, None, message));
            }
        }
        Ok(self.report())
    }

    #[inline]
    fn maybe_stop_faults(&mut self) {
        let Some(after) = self.liveness_after else {
            return;
        };
        if self.faults_stopped_at.is_none() && self.now().since_epoch() >= after {
            self.net.world_mut().stop_faults();
            self.faults_stopped_at = Some(self.now());
        }
    }

    #[inline]
    fn clients_done(&self) -> bool {
        self.hosts.iter().all(|h| match &h.role {
            Role::Client(done) => done.is_done(),
            Role::Server => true,
        })
    }

    #[inline]
    fn has_clients(&self) -> bool {
        self.hosts.iter().any(|h| matches!(h.role, Role::Client(_)))
    }

    /// `true` if [`run`](Self::run) has a goal to meet (clients, or a
    /// [`duration`](Builder::duration)); without one it runs until nothing
    /// is pending anywhere.
    fn has_goal(&self) -> bool {
        self.has_clients() || self.run_until.is_some()
    }

    /// Every client done, and the run's duration, if any, reached.
    fn goal_met(&self) -> bool {
        self.clients_done() && self.run_until.is_none_or(|until| self.now() >= until)
    }

    /// The first client that reported a failure, wherever it reported it
    /// (its setup, a callback, a handler of another host's).
    #[inline]
    fn client_failure(&self) -> Option<Failure> {
        self.hosts.iter().find_map(|h| match &h.role {
            Role::Client(done) => done
                .failure()
                .map(|why| self.fail(FailureKind::Client, Some(&h.name), why)),
            Role::Server => None,
        })
    }

    /// End the run if its goal is met, or if it overstayed its settle time.
    fn end_if_done(&mut self) -> Option<Result<Report, Failure>> {
        if let Some(failure) = self.client_failure() {
            return Some(Err(failure));
        }
        let now = self.now();
        if self.has_goal() && self.goal_met() {
            if self.goal_met_at.is_none() && !self.when_done.is_empty() {
                if self.nemesis_restarts_pending > 0 {
                    // A host the seed crashed comes back first, so that
                    // the actions wind it down too.
                    return None;
                }
                self.goal_met_at = Some(now);
                for action in std::mem::take(&mut self.when_done) {
                    action(self);
                }
                // An action may restart a host, whose setup may fail; what
                // the actions set off runs before the run is judged.
                return self.check_setup().err().map(Err);
            }
            let done_at = *self.goal_met_at.get_or_insert(now);
            if self.settled() {
                return Some(self.end_well());
            }
            if self.liveness_after.is_none() && now > done_at + self.settle_within {
                return Some(Err(self.leak_failure()));
            }
        }
        // The clock stops at the deadline (see `step`): a run that has not
        // settled once what was due then has run fails there, not at
        // whatever came next. Past it only if a step ran past it.
        if self.settle_by().is_some_and(|settle_by| now > settle_by) {
            return Some(Err(self.liveness_failure()));
        }
        None
    }

    /// The failure of a run that did not settle by its deadline.
    fn liveness_failure(&mut self) -> Failure {
        let now = self.now();
        let stopped = self.faults_stopped_at.unwrap_or(now);
        let settle_by = self.settle_by().unwrap_or(now);
        let message = format!(
            "not settled {:?} after faults stopped at {stopped:?} (by {settle_by:?}): {} \
             (stuck, or still at work? a workload that needs longer than that to finish \
             is not a hang: give it a longer Builder::settle_within)",
            self.settle_within,
            self.describe_unsettled()
        );
        self.fail(FailureKind::Liveness, None, message)
    }

    /// The next instant the clock must stop at, whatever comes after it:
    /// the start of the liveness phase (faults stop exactly then), then,
    /// if `settle`, the deadline to settle by.
    fn clock_stop(&self, settle: bool) -> Option<Instant> {
        match (self.liveness_after, self.faults_stopped_at) {
            (Some(after), None) => Some(Instant::from_epoch(after)),
            _ if settle => self.settle_by(),
            _ => None,
        }
    }

    /// When a run with a liveness phase must have settled: `settle_within`
    /// after the faults stopped (or after its duration, if later).
    fn settle_by(&self) -> Option<Instant> {
        let stopped = self.faults_stopped_at?;
        let settle_from = self.run_until.map_or(stopped, |until| until.max(stopped));
        Some(settle_from + self.settle_within)
    }

    /// Nothing can ever happen again: the end, one way or another.
    fn end_quiescent(&mut self) -> Result<Report, Failure> {
        if let Some(failure) = self.client_failure() {
            return Err(failure);
        }
        if !self.clients_done() {
            let message = format!(
                "nothing pending anywhere, but work unfinished: {}",
                self.describe_unfinished()
            );
            return Err(self.fail(FailureKind::Stall, None, message));
        }
        if !self.has_goal() || self.settled() {
            return self.end_well();
        }
        Err(self.leak_failure())
    }

    /// Every host holds no more than after setup; under a liveness phase,
    /// also at rest (see [`AtRest`]).
    fn settled(&mut self) -> bool {
        if self.liveness_after.is_some() && !self.at_rest() {
            return false;
        }
        if self.at_rest == AtRest::AnyTimeouts && self.timeout_overdue() {
            // Timeouts kept on purpose do not count; one already due (on a
            // paused host, which cannot run it yet) is work left to do.
            return false;
        }
        !self.leak_check
            || self
                .hosts
                .iter()
                .all(|host| self.holdings(host).within(&host.baseline, self.at_rest))
    }

    /// Some host holds a timeout due by now (one a pause keeps from
    /// running).
    fn timeout_overdue(&mut self) -> bool {
        let now = self.now();
        self.hosts.iter_mut().any(|host| {
            host.io
                .as_mut()
                .and_then(IOLoop::next_timeout)
                .is_some_and(|at| at <= now)
        })
    }

    /// Nothing in flight, no work due on any host (paused or not), and no
    /// more timeouts pending than [`AtRest`] allows.
    fn at_rest(&mut self) -> bool {
        if !self.net.world().nothing_in_flight() {
            return false;
        }
        let now = self.now();
        for index in 0..self.hosts.len() {
            if self.has_work_due(index, now) || self.timeouts_unsettled(&self.hosts[index]) {
                return false;
            }
        }
        true
    }

    /// `true` if host `index` has work due now, even if a pause or its CPU
    /// work keeps it from running it yet.
    fn has_work_due(&mut self, index: usize, now: Instant) -> bool {
        let host = &mut self.hosts[index];
        if self.net.world().has_pending_edges(host.id) {
            return true;
        }
        host.io.as_mut().is_some_and(|io| {
            io.has_pending_work() || io.next_timeout().is_some_and(|at| at <= now)
        })
    }

    /// `true` if `host` has more timeouts pending than [`AtRest`] allows.
    fn timeouts_unsettled(&self, host: &Host) -> bool {
        let allowed = match self.at_rest {
            AtRest::SetupTimeouts => host.baseline.timeouts,
            AtRest::NoTimeouts => 0,
            AtRest::AnyTimeouts => return false,
        };
        host.timeout_count() > allowed
    }

    fn holdings(&self, host: &Host) -> Holdings {
        Holdings {
            fds: self.net.world().open_fds(host.id),
            handlers: host.io.as_ref().map_or(0, IOLoop::handler_count),
            timeouts: host.timeout_count(),
        }
    }

    fn leak_failure(&self) -> Failure {
        let mut message = format!(
            "clients done {:?} ago, but {}",
            self.settle_within,
            self.describe_leaks().join("; ")
        );
        message.push_str(&self.describe_deaf_handlers());
        let leaking: Vec<&Host> = self
            .hosts
            .iter()
            .filter(|host| !self.holdings(host).within(&host.baseline, self.at_rest))
            .collect();
        // Within their baseline once timeouts do not count.
        let timers_only = leaking.iter().all(|host| {
            self.holdings(host)
                .within(&host.baseline, AtRest::AnyTimeouts)
        });
        if timers_only && !leaking.is_empty() {
            message.push_str(
                " (only timeouts: if the service keeps them on purpose — a cache's expiries, a lease — say so with Builder::at_rest(AtRest::AnyTimeouts), in a sweep .configure(|b| b.at_rest(AtRest::AnyTimeouts)), which still checks fds and handlers)",
            );
        }
        // One host leaking is the failure's host.
        let host = match leaking.as_slice() {
            [host] => Some(host.name.as_str()),
            _ => None,
        };
        self.fail(FailureKind::Leak, host, message)
    }

    /// A hint for a leak: the handlers of leaking hosts, on fds they did
    /// not hold after setup, that wait for no event — only an error wakes
    /// them.
    fn describe_deaf_handlers(&self) -> String {
        let deaf: Vec<String> = self
            .hosts
            .iter()
            .filter(|host| !self.holdings(host).within(&host.baseline, self.at_rest))
            .flat_map(|host| {
                let handlers = host.io.iter().flat_map(IOLoop::handlers);
                handlers
                    .filter(|(fd, events)| events.is_empty() && !host.baseline.fds.contains(fd))
                    .map(move |(fd, _)| format!("{:?} {fd:?}", host.name))
            })
            .collect();
        if deaf.is_empty() {
            return String::new();
        }
        format!(
            " (waiting for no event: {}; only an error wakes them — an IOStream notices the peer's end of stream only while a read is pending)",
            deaf.join(", ")
        )
    }

    fn describe_leaks(&self) -> Vec<String> {
        let mut leaks = Vec::new();
        for host in &self.hosts {
            let now = self.holdings(host);
            if !now.within(&host.baseline, self.at_rest) {
                leaks.push(format!(
                    "host {:?} holds fds {:?}, handlers {}, timeouts {} (after setup: fds {:?}, handlers {}, timeouts {})",
                    host.name,
                    now.fds,
                    host.handlers(),
                    now.timeouts,
                    host.baseline.fds,
                    host.baseline.handlers,
                    host.baseline.timeouts
                ));
            }
        }
        leaks
    }

    fn describe_unfinished(&self) -> String {
        let mut what = Vec::new();
        for host in &self.hosts {
            if let Role::Client(done) = &host.role {
                if !done.is_done() {
                    what.push(format!("client {:?}: {}", host.name, done.description()));
                }
            }
            what.push(format!("host {:?} handlers {}", host.name, host.handlers()));
        }
        what.join("; ")
    }

    fn describe_unsettled(&self) -> String {
        let mut what = Vec::new();
        if !self.clients_done() {
            what.push(self.describe_unfinished());
        }
        what.extend(self.describe_leaks());
        for host in &self.hosts {
            if self.timeouts_unsettled(host) {
                let allowed = match self.at_rest {
                    AtRest::SetupTimeouts => format!(
                        "more than the {} it held after setup",
                        host.baseline.timeouts
                    ),
                    AtRest::NoTimeouts => "at rest it may hold none (AtRest::NoTimeouts)".into(),
                    AtRest::AnyTimeouts => unreachable!("no timeout is unsettled"),
                };
                what.push(format!(
                    "host {:?}: {} timeouts still pending, {allowed}",
                    host.name,
                    host.timeout_count()
                ));
            }
            if host.has_pending_work() {
                what.push(format!(
                    "host {:?}: handlers or callbacks still due",
                    host.name
                ));
            }
        }
        if !self.net.world().nothing_in_flight() {
            what.push("deliveries still in flight".into());
        }
        what.join("; ")
    }

    fn spin_failure(&self) -> Failure {
        let handlers: Vec<String> = self
            .hosts
            .iter()
            .map(|h| {
                let pending = h.pending_readiness();
                if pending.is_empty() {
                    format!("host {:?} {}", h.name, h.handlers())
                } else {
                    format!(
                        "host {:?} {}; due without an event: {pending}",
                        h.name,
                        h.handlers()
                    )
                }
            })
            .collect();
        let message = format!(
            "{} rounds without a byte moved or time passing; {}",
            check::SPIN_ROUNDS_MAX,
            handlers.join("; ")
        );
        self.fail(FailureKind::Spin, None, message)
    }

    fn fail(&self, kind: FailureKind, host: Option<&str>, message: String) -> Failure {
        Failure {
            kind,
            host: host.map(String::from),
            message,
            report: Box::new(self.report()),
        }
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self.host_names().collect();
        f.debug_struct("Sim")
            .field("seed", &format_args!("{:#x}", self.seed))
            .field("faults", &self.faults)
            .field("now", &self.now())
            .field("hosts", &hosts)
            .finish()
    }
}

/// The message a panic carried, from its payload.
/// A user's check's verdict, a panic in it (an `assert!`) as an `Err`.
fn checked<F: FnOnce() -> Result<(), String>>(check: F) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(check))
        .unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(payload.as_ref()))))
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message.to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_faults_fired_line_names_at_most_the_last_three() {
        let fault = |ms| FiredFault {
            draw: 0,
            kind: FaultKind::Reset,
            host: 0,
            fd: Fd(3),
            at: Instant::from_epoch(Duration::from_millis(ms)),
            host_name: "a".into(),
            peer: None,
            lasting: None,
        };
        let line = |count: u64| fired_summary(&(1..=count).map(fault).collect::<Vec<_>>());
        assert_eq!(line(0), "faults fired: 0");
        assert_eq!(
            line(2),
            "faults fired: 2: reset a fd3 at t+1ms; reset a fd3 at t+2ms"
        );
        assert_eq!(
            line(3),
            "faults fired: 3: reset a fd3 at t+1ms; reset a fd3 at t+2ms; reset a fd3 at t+3ms"
        );
        assert_eq!(
            line(4),
            "faults fired: 4, the last: reset a fd3 at t+2ms; reset a fd3 at t+3ms; reset a fd3 at t+4ms"
        );
    }
}
