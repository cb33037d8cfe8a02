//! Ready-made scenarios: the echo server under K clients, and planted-bug servers that must fail.

mod client;
pub mod planted;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::Instant;

pub use client::{ClientResult, EchoClients, Workload};
use planted::{Bug, PlantedServer};

use crate::net::FiredFault;
use crate::shrink::{shrink_schedule, Attempt, Schedule, ShrinkReport};
use crate::{
    AtRest, Builder, Entropy, FailureKind, FaultPlan, FaultPreset, NetworkFaults, Sim, Survives,
};

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
    /// then settle within [`SETTLE_WITHIN`](crate::SETTLE_WITHIN).
    pub liveness_after: Option<Duration>,
}

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

/// Most clients a scenario runs.
pub const CLIENTS_MAX: u64 = 20_000;
/// Most messages a client sends.
pub const MESSAGES_MAX: u64 = 10_000;
/// Largest message, in bytes.
pub const MESSAGE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Most explicit message sizes.
pub const MESSAGE_SIZES_MAX: usize = 10_000;

/// The workload parameters the shrinker may make smaller.
pub const SHRINKABLE: [&str; 2] = ["clients", "messages"];

/// The parameters a scenario's schedule may set.
const PARAMS: [&str; 4] = ["clients", "messages", "message-bytes", "message-sizes"];

/// A scenario's hosts, by id: the server, and the host of its clients.
const HOSTS: [&str; 2] = ["server", "clients"];

impl RunConfig {
    /// This run as a [`Schedule`] firing `fire`.
    pub fn to_schedule(&self, fire: BTreeSet<u64>) -> Schedule {
        let mut schedule = Schedule::new(self.scenario.name(), self.seed, self.faults);
        schedule.liveness_after = self.liveness_after;
        schedule.fire = fire;
        let workload = &self.workload;
        schedule.set_param("clients", workload.clients.to_string());
        schedule.set_param("messages", workload.messages.to_string());
        schedule.set_param("message-bytes", workload.message_bytes_max.to_string());
        if !workload.message_sizes.is_empty() {
            schedule.set_param("message-sizes", workload.message_sizes_csv());
        }
        schedule
    }

    /// The run a scenario's [`Schedule`] describes; every number bounded as
    /// the `sim` command bounds it.
    pub fn from_schedule(schedule: &Schedule) -> Result<RunConfig, String> {
        // A misspelt parameter would otherwise leave its default in force.
        if let Some((key, _)) = schedule
            .params
            .iter()
            .find(|(key, _)| !PARAMS.contains(&&**key))
        {
            return Err(format!(
                "unknown param {key:?} (a scenario's schedule has {})",
                PARAMS.join(", ")
            ));
        }
        let number = |key: &str, default: u64, max: u64| -> Result<usize, String> {
            let Some(value) = schedule.param(key) else {
                return Ok(default as usize);
            };
            value
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .map(|n| n as usize)
                .ok_or_else(|| format!("param {key} must be 1 to {max}: {value:?}"))
        };
        let mut workload = Workload::random(
            number("clients", 10, CLIENTS_MAX)?,
            number("messages", 10, MESSAGES_MAX)?,
            number("message-bytes", 4096, MESSAGE_BYTES_MAX)?,
        );
        if let Some(sizes) = schedule.param("message-sizes") {
            workload.message_sizes = sizes
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (1..=MESSAGE_BYTES_MAX).contains(n))
                        .map(|n| n as usize)
                        .ok_or_else(|| format!("bad message size {v:?}"))
                })
                .collect::<Result<_, _>>()?;
            if workload.message_sizes.len() > MESSAGE_SIZES_MAX {
                return Err(format!("more than {MESSAGE_SIZES_MAX} message sizes"));
            }
        }
        Ok(RunConfig {
            scenario: Scenario::from_name(&schedule.name)?,
            seed: schedule.seed,
            faults: schedule.faults,
            workload,
            trace_full: false,
            liveness_after: schedule.liveness_after,
        })
    }
}

/// Replay a scenario's schedule: exactly its faults fire.
pub fn run_schedule(schedule: &Schedule, trace_full: bool) -> Result<(RunConfig, Outcome), String> {
    let mut config = RunConfig::from_schedule(schedule)?;
    // A number on a host the scenario does not have would never fire.
    for &draw in &schedule.fire {
        if let Some((kind, host, index)) = crate::world::socket_draw_parts(draw) {
            if host >= HOSTS.len() {
                return Err(format!(
                    "fire {kind}:{host}:{index}: a scenario has hosts 0 ({}) and 1 ({})",
                    HOSTS[0], HOSTS[1]
                ));
            }
        }
    }
    config.trace_full = trace_full;
    let outcome = run_scheduled(&config, &schedule.fire);
    Ok((config, outcome))
}

/// Shrink the failing run `config`; `Err` if it does not fail.
pub fn shrink(config: &RunConfig) -> Result<ShrinkReport, String> {
    let first = attempt_of(&run(config));
    shrink_schedule(
        config.to_schedule(BTreeSet::new()),
        first,
        &SHRINKABLE,
        |schedule| match run_schedule(schedule, false) {
            Ok((_, outcome)) => attempt_of(&outcome),
            Err(_) => Attempt {
                failure: None,
                fired: Vec::new(),
            },
        },
    )
}

fn attempt_of(outcome: &Outcome) -> Attempt {
    Attempt {
        failure: outcome.failure_kind.zip(outcome.failure.clone()),
        fired: outcome.fired.clone(),
    }
}

/// How a run ended.
pub struct Outcome {
    /// The fault plan the seed drew.
    pub plan: FaultPlan,
    /// The network faults the seed could draw, if any.
    pub network_faults: Option<NetworkFaults>,
    /// Hash of every decision.
    pub trace_hash: u64,
    /// Decisions recorded (simulated events).
    pub sim_events: u64,
    /// Virtual time at the end.
    pub virtual_time: Instant,
    /// Why the run failed, if it did.
    pub failure: Option<String>,
    /// The kind of failure, if it failed.
    pub failure_kind: Option<FailureKind>,
    /// The readable trace, if asked for.
    pub trace_lines: Vec<String>,
    /// Client results.
    pub results: Vec<Option<ClientResult>>,
    /// Bytes of echo each client received.
    pub received: Vec<usize>,
    /// Every fault that fired.
    pub fired: Vec<FiredFault>,
}

/// Run one seed of a scenario and check it.
pub fn run(config: &RunConfig) -> Outcome {
    run_on(Sim::builder(config.seed).faults(config.faults), config)
}

/// Run a seed with exactly the fault draws in `schedule` firing (see
/// [`crate::shrink`]); every other decision comes from the seed.
pub fn run_scheduled(config: &RunConfig, schedule: &BTreeSet<u64>) -> Outcome {
    let builder = Sim::builder(config.seed)
        .faults(config.faults)
        .schedule(schedule.clone());
    run_on(builder, config)
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
    run_on(
        Sim::builder(config.seed).entropy(entropy).plan(plan),
        config,
    )
}

/// The scenario as an ordinary user of the public harness: a server host,
/// a client host with K echo clients, and [`Sim::run`].
fn run_on(builder: Builder, config: &RunConfig) -> Outcome {
    // The echo servers have no periodic work: at rest they hold no timer,
    // so a ticker left running (`planted-idle-ticker`) fails to settle.
    let mut builder = builder.trace(config.trace_full).at_rest(AtRest::NoTimeouts);
    if let Some(after) = config.liveness_after {
        builder = builder.liveness_after(after);
    }
    let mut sim = builder.build();
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 7);
    let scenario = config.scenario;
    sim.host(HOSTS[0], "127.0.0.1", move |io| {
        match scenario {
            Scenario::Echo => drop(EchoServer::bind(io, addr, EchoConfig::default())?),
            Scenario::Planted(bug) => drop(PlantedServer::bind(io, addr, bug)?),
        }
        Ok(())
    });
    // The echo clients have no timeouts: a server that crashes must reset
    // them (its kernel answers), not leave them waiting on silence.
    sim.survives(Survives::ProcessCrashes);
    let (plan, may_break) = (sim.plan(), sim.may_break_connections());
    let clients = EchoClients::draw(
        &config.workload,
        &plan,
        may_break,
        sim.net().world_mut().entropy(),
    );
    let for_setup = clients.clone();
    sim.client(HOSTS[1], "127.0.0.2", move |io, done| {
        for_setup.start(io, addr, done);
        Ok(())
    });
    let (report, failure) = match sim.run() {
        Ok(report) => (report, None),
        Err(failure) => {
            let message = failure.to_string();
            (*failure.report, Some((failure.kind, message)))
        }
    };
    Outcome {
        plan: report.plan,
        network_faults: report.network_faults,
        trace_hash: report.trace_hash,
        sim_events: report.sim_events,
        virtual_time: report.virtual_time,
        failure_kind: failure.as_ref().map(|(kind, _)| *kind),
        failure: failure.map(|(_, message)| message),
        trace_lines: report.trace_lines,
        results: clients.results(),
        received: clients.received(),
        fired: report.fired,
    }
}
