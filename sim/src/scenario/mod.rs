//! Ready-made scenarios: the echo server under K clients, and planted-bug servers that must fail.

mod client;
pub mod planted;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{Error, Events, IOLoop, Instant, PanicPolicy};

pub use client::{ClientResult, EchoClients, Workload};
use planted::{Bug, PlantedServer};

use crate::check::{self, SpinDetector};
use crate::net::FiredFault;
use crate::{Entropy, FaultPlan, FaultPreset, SimNet, SimPoller};

/// Virtual time a run may take before it counts as hung.
const VIRTUAL_TIME_MAX: Duration = Duration::from_secs(3600);
/// Rounds (one iteration of every host) a run may take.
const ROUNDS_MAX: u64 = 5_000_000;

/// A server application to run against the echo clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// `ioloop::echo::EchoServer`: the very code `examples/echo.rs` runs.
    Echo,
    /// A planted-bug server: the run must fail.
    Planted(Bug),
}

impl Scenario {
    /// Every scenario.
    pub fn all() -> Vec<Scenario> {
        let mut all = vec![Scenario::Echo];
        all.extend(Bug::ALL.map(Scenario::Planted));
        all.push(Scenario::Planted(Bug::HashMapOrder));
        all.push(Scenario::Planted(Bug::IdleTicker));
        all
    }

    /// The name the `sim` command takes.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo",
            Scenario::Planted(bug) => bug.name(),
        }
    }

    /// What the scenario runs.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Echo => "the echo server of examples/echo.rs under K checking clients",
            Scenario::Planted(bug) => bug.describe(),
        }
    }

    /// `true` for planted bugs, which the checkers must catch.
    pub fn expects_failure(self) -> bool {
        matches!(self, Scenario::Planted(bug) if Bug::ALL.contains(&bug))
    }

    /// `true` for the planted bug that only a liveness phase catches.
    pub fn expects_liveness_failure(self) -> bool {
        self == Scenario::Planted(Bug::IdleTicker)
    }

    /// `true` for the planted non-determinism, which
    /// `sim check-determinism` must catch.
    pub fn expects_divergence(self) -> bool {
        self == Scenario::Planted(Bug::HashMapOrder)
    }

    /// The scenario called `name`.
    pub fn from_name(name: &str) -> Result<Scenario, String> {
        Scenario::all()
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::all().iter().map(|s| s.name()).collect();
                format!("unknown scenario {name:?} (known: {})", names.join(", "))
            })
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that determines a run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The server application.
    pub scenario: Scenario,
    /// The seed of every decision.
    pub seed: u64,
    /// The fault preset.
    pub faults: FaultPreset,
    /// The clients and their messages.
    pub workload: Workload,
    /// Keep a readable line per decision.
    pub trace_full: bool,
    /// A liveness phase: faults stop at this virtual time, and the run must
    /// then settle within [`SETTLE_WITHIN`].
    pub liveness_after: Option<Duration>,
}

/// How long a run may take to settle once a liveness phase turned faults off.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(10);

impl RunConfig {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run -p ioloop-sim --release -- {}",
            self.replay_args().join(" ")
        )
    }

    /// The `sim` arguments that replay this run.
    pub fn replay_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "replay",
            "--scenario",
            self.scenario.name(),
            "--seed",
            &format!("{:#x}", self.seed),
            "--faults",
            self.faults.name(),
            "--clients",
            &self.workload.clients.to_string(),
            "--messages",
            &self.workload.messages.to_string(),
            "--message-bytes",
            &self.workload.message_bytes_max.to_string(),
        ]
        .map(String::from)
        .to_vec();
        if !self.workload.message_sizes.is_empty() {
            args.push("--message-sizes".into());
            args.push(self.workload.message_sizes_csv());
        }
        if let Some(after) = self.liveness_after {
            args.push("--liveness-after-ms".into());
            args.push(after.as_millis().to_string());
        }
        args
    }
}

/// How a run ended.
pub struct Outcome {
    /// The fault plan the seed drew.
    pub plan: FaultPlan,
    /// Hash of every decision.
    pub trace_hash: u64,
    /// Decisions recorded (simulated events).
    pub sim_events: u64,
    /// Virtual time at the end.
    pub virtual_time: Instant,
    /// Why the run failed, if it did.
    pub failure: Option<String>,
    /// The readable trace, if asked for.
    pub trace_lines: Vec<String>,
    /// Client results.
    pub results: Vec<Option<ClientResult>>,
    /// Bytes of echo each client received.
    pub received: Vec<usize>,
    /// Every fault that fired.
    pub fired: Vec<FiredFault>,
}

/// The server side of a scenario.
enum Server {
    Echo(EchoServer),
    Planted(PlantedServer),
}

impl Server {
    fn connection_count(&self) -> usize {
        match self {
            Server::Echo(server) => server.connection_count(),
            Server::Planted(server) => server.connection_count(),
        }
    }

    fn queued_bytes(&self) -> usize {
        match self {
            Server::Echo(server) => server.queued_bytes(),
            Server::Planted(server) => server.queued_bytes(),
        }
    }
}

/// Run one seed of a scenario and check it.
pub fn run(config: &RunConfig) -> Outcome {
    run_on(
        SimNet::new(config.seed, config.faults, config.trace_full),
        config,
    )
}

/// Run a seed with exactly the fault draws in `schedule` firing (see
/// [`crate::shrink`]); every other decision comes from the seed.
pub fn run_scheduled(config: &RunConfig, schedule: &BTreeSet<u64>) -> Outcome {
    let net = SimNet::new(config.seed, config.faults, config.trace_full);
    net.world_mut().set_schedule(schedule.clone());
    run_on(net, config)
}

/// Run a scenario with every decision drawn from `data` (a fuzzer's
/// bytes) instead of the seed, the fault plan included (as `swarm` draws
/// it). When the bytes run out, no more faults happen.
pub fn run_from_bytes(config: &RunConfig, data: &[u8]) -> Outcome {
    let mut entropy = Entropy::from_bytes(data);
    let plan = FaultPlan::swarm(&mut entropy);
    run_with_plan(config, entropy, plan)
}

/// Run a scenario under an explicit fault `plan`, deciding from `entropy`.
pub fn run_with_plan(config: &RunConfig, entropy: Entropy, plan: FaultPlan) -> Outcome {
    run_on(SimNet::with_plan(entropy, plan, config.trace_full), config)
}

fn run_on(net: SimNet, config: &RunConfig) -> Outcome {
    let server_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let client_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let addr = SocketAddr::new(server_ip, 7);
    let mut server_io = IOLoop::new(net.host(server_ip));
    let mut client_io = IOLoop::new(net.host(client_ip));
    server_io.set_panic_policy(PanicPolicy::Propagate);
    client_io.set_panic_policy(PanicPolicy::Propagate);
    let server = match config.scenario {
        Scenario::Echo => {
            EchoServer::bind(&mut server_io, addr, EchoConfig::default()).map(Server::Echo)
        }
        Scenario::Planted(bug) => {
            PlantedServer::bind(&mut server_io, addr, bug).map(Server::Planted)
        }
    };
    let half_close = net.world().plan().half_close;
    let clients = EchoClients::draw(&config.workload, half_close, net.world_mut().entropy());
    clients.start(&mut client_io, addr);
    let failure = match server {
        Ok(server) => drive(
            &net,
            &mut server_io,
            &mut client_io,
            &server,
            &clients,
            config.liveness_after,
        )
        .err(),
        Err(error) => Some(format!("server did not start: {error}")),
    };
    let world = net.world();
    Outcome {
        plan: world.plan_drawn().clone(),
        trace_hash: world.trace().hash(),
        sim_events: world.trace().len(),
        virtual_time: world.now(),
        failure,
        trace_lines: world.trace().lines().to_vec(),
        results: clients.results(),
        received: clients.received(),
        fired: world.fired().to_vec(),
    }
}

/// Step both hosts until the clients are done and the server has let go of
/// every connection, checking after every iteration. With a liveness phase,
/// faults stop at `liveness_after`, and the run must then settle — clients
/// done, server idle, nothing pending — within [`SETTLE_WITHIN`].
fn drive(
    net: &SimNet,
    server_io: &mut IOLoop<SimPoller>,
    client_io: &mut IOLoop<SimPoller>,
    server: &Server,
    clients: &EchoClients,
    liveness_after: Option<Duration>,
) -> Result<(), String> {
    let mut spin = SpinDetector::new();
    let mut settle_by: Option<Instant> = None;
    for _round in 0..ROUNDS_MAX {
        step("server", server_io, net)?;
        step("clients", client_io, net)?;
        if settle_by.is_none()
            && liveness_after.is_some_and(|after| net.world().now().since_epoch() >= after)
        {
            net.world_mut().stop_faults();
            settle_by = Some(net.world().now() + SETTLE_WITHIN);
        }
        let done = clients.finished() && server.connection_count() == 0;
        let idle = !server_io.has_pending_work() && !client_io.has_pending_work();
        let world = net.world();
        if done && (liveness_after.is_none() || (world.is_quiescent() && idle)) {
            drop(world);
            return finish(net, server_io, clients);
        }
        if let Some(deadline) = settle_by.filter(|deadline| world.now() > *deadline) {
            return Err(format!(
                "liveness: not settled {SETTLE_WITHIN:?} after faults stopped (at {deadline:?}): {}",
                unsettled(done, server, server_io, client_io, clients)
            ));
        }
        if world.is_quiescent() && idle {
            return Err(format!(
                "stall at {:?}: nothing pending but work unfinished; server holds {} connections, handlers {}; {}",
                world.now(),
                server.connection_count(),
                check::describe_handlers(server_io),
                clients.describe_unfinished().join("; ")
            ));
        }
        if spin.round(&world) {
            return Err(format!(
                "spin at {:?}: {} rounds without a byte moved or time passing; server handlers {}, client handlers {}",
                world.now(),
                check::SPIN_ROUNDS_MAX,
                check::describe_handlers(server_io),
                check::describe_handlers(client_io)
            ));
        }
        if world.now().since_epoch() > VIRTUAL_TIME_MAX {
            return Err(format!(
                "not finished after {VIRTUAL_TIME_MAX:?} of virtual time"
            ));
        }
    }
    Err(format!("not finished after {ROUNDS_MAX} rounds"))
}

/// What failed to settle, for a liveness failure.
fn unsettled(
    done: bool,
    server: &Server,
    server_io: &IOLoop<SimPoller>,
    client_io: &IOLoop<SimPoller>,
    clients: &EchoClients,
) -> String {
    let mut what = Vec::new();
    if !done {
        what.push(format!(
            "server holds {} connections; {}",
            server.connection_count(),
            clients.describe_unfinished().join("; ")
        ));
    }
    let idle_writers: Vec<String> = server_io
        .handlers()
        .filter(|(_, events)| events.contains(Events::WRITE))
        .map(|(fd, _)| format!("{fd:?}"))
        .collect();
    if !idle_writers.is_empty() && server.queued_bytes() == 0 {
        what.push(format!(
            "WRITE interest with nothing queued on {}",
            idle_writers.join(", ")
        ));
    }
    for (name, io) in [("server", server_io), ("clients", client_io)] {
        if io.timeout_count() > 0 {
            what.push(format!(
                "{name}: {} timeouts still pending",
                io.timeout_count()
            ));
        }
        if io.has_pending_work() {
            what.push(format!("{name}: handlers or callbacks still due"));
        }
    }
    if what.is_empty() {
        what.push("events still in flight".into());
    }
    what.join("; ")
}

/// One iteration of one host's loop, then the checkers.
fn step(name: &str, io: &mut IOLoop<SimPoller>, net: &SimNet) -> Result<(), String> {
    let ran = panic::catch_unwind(AssertUnwindSafe(|| io.run_once(None)));
    match ran {
        Ok(Ok(())) => {}
        // Quiescence is reported by `drive`, which knows whether work remains.
        Ok(Err(Error::Poll(_))) if net.world().is_quiescent() => {}
        Ok(Err(error)) => return Err(format!("{name}: run_once failed: {error}")),
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("{name}: a handler panicked: {message}"));
        }
    }
    check::check_loop(name, io, || net.world_mut().take_violations())
}

/// The end-of-run checks: every echo right, only the listener left.
fn finish(
    net: &SimNet,
    server_io: &IOLoop<SimPoller>,
    clients: &EchoClients,
) -> Result<(), String> {
    let world = net.world();
    let may_break = world.plan_drawn().may_break_connections();
    for (index, result) in clients.results().into_iter().enumerate() {
        match result {
            Some(ClientResult::Echoed) => {}
            Some(ClientResult::Broken { .. }) if may_break => {}
            Some(ClientResult::Broken { verified, error }) => {
                return Err(format!(
                    "client {index}: connection failed after {verified} bytes ({error}) with no fault that breaks connections"
                ))
            }
            Some(ClientResult::Wrong(why)) => return Err(format!("client {index}: wrong echo: {why}")),
            None => return Err(format!("client {index}: unfinished")),
        }
    }
    let server_fds = world.open_fds(server_io.poller().host_id());
    if server_fds.len() != 1 || server_io.handler_count() != 1 {
        return Err(format!(
            "server leaks: open fds {server_fds:?}, handlers {}",
            check::describe_handlers(server_io)
        ));
    }
    Ok(())
}
