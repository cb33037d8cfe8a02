//! `Sweep`: run your simulation over many seeds inside `cargo test`; stop at the first failure and print the one line that replays it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::determinism::first_divergence;
use crate::parallel::{self, for_each_outcome, JOBS_MAX};
use crate::shrink::{parse_seed, shrink_schedule, Attempt, Schedule, LIVENESS_MS_MAX};
use crate::{Builder, Failure, FaultCoverage, FaultPreset, Report, Sim};

/// A seed sweep of one simulation, configured in code and overridden by
/// `IOLOOP_SIM_*` environment variables.
///
/// ```no_run
/// use ioloop_sim::{FaultPreset, Sweep};
///
/// #[test]
/// fn service_survives_faults() {
///     Sweep::new("service_survives_faults")
///         .seeds(0..500)
///         .faults(FaultPreset::Swarm)
///         .run(|sim| {
///             // sim.host(...); sim.client(...);
///         });
/// }
/// ```
///
/// Each seed runs until its clients are done ([`run`](Self::run)), or for a
/// fixed virtual time ([`run_for`](Self::run_for)); [`configure`](Self::configure)
/// passes [`Builder`] knobs to every seed. [`run_parallel`](Self::run_parallel)
/// runs the seeds on [`jobs`](Self::jobs) threads, with the same result as
/// on one.
///
/// The environment overrides the code, so one test serves every use:
///
/// | variable | meaning |
/// |---|---|
/// | `IOLOOP_SIM_SEED=0x1f` | run only this seed (the replay line sets it) |
/// | `IOLOOP_SIM_SEEDS=N` or `A..B` | N seeds from the sweep's first, or this range |
/// | `IOLOOP_SIM_FAULTS=none\|all\|swarm` | the fault preset |
/// | `IOLOOP_SIM_LIVENESS_MS=N` | faults stop after N ms of virtual time, then the run must settle |
/// | `IOLOOP_SIM_TRACE=1` or `=FILE` | print (or write) every decision of a failing or replayed seed |
/// | `IOLOOP_SIM_CHECK_DETERMINISM=1` | run each seed twice and name the first decision where they part |
/// | `IOLOOP_SIM_SHARD=i/n` | run only the i-th of n equal parts of the seeds (0 ≤ i < n) |
/// | `IOLOOP_SIM_SUMMARY=FILE` | append a JSON line per sweep (and per failure) to FILE |
/// | `IOLOOP_SIM_REQUIRE_FAULTS=1` | fail if a fault kind some seed enabled never fired |
/// | `IOLOOP_SIM_SHRINK=1` or `=FILE` | shrink a failure to a schedule file (`1`: in `target/ioloop-sim/`) |
/// | `IOLOOP_SIM_SCHEDULE=FILE` | replay a schedule file written by a shrink |
/// | `IOLOOP_SIM_SCHEDULE_ANY_NAME=1` | replay it even if it names another test (a planted twin's schedule against the fixed service) |
/// | `IOLOOP_SIM_JOBS=N` | run N seeds at once in a [`run_parallel`](Self::run_parallel) sweep (0: one per CPU); the same result |
///
/// A malformed variable fails the test with a message naming it; it never
/// runs something else than what was asked.
#[derive(Clone, Debug)]
pub struct Sweep {
    name: String,
    seeds: Range<u64>,
    faults: FaultPreset,
    liveness_after: Option<Duration>,
    require_faults_fire: bool,
    /// Probes every full sweep must reach ([`Sweep::require_probes`]).
    require_probes: Vec<&'static str>,
    /// Each seed runs at least this long ([`Sweep::run_for`]).
    duration: Option<Duration>,
    configure: Option<Configure>,
    /// Threads running seeds ([`Sweep::jobs`]); unset, one.
    jobs: Option<usize>,
    /// Words the replay line adds to its `cargo test` ([`Sweep::cargo_args`]).
    cargo_args: String,
    /// Read the `IOLOOP_SIM_*` variables of the process (always, but in
    /// this crate's unit tests, which must not depend on a developer's
    /// exported variables).
    reads_environment: bool,
}

/// The [`Builder`] knobs a sweep passes to every seed ([`Sweep::configure`]),
/// on whichever thread runs the seed.
#[derive(Clone)]
struct Configure(Arc<dyn Fn(Builder) -> Builder + Send + Sync>);

impl fmt::Debug for Configure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Configure(..)")
    }
}

/// What a sweep ran.
#[derive(Clone, Debug)]
pub struct SweepSummary {
    /// The test's name.
    pub name: String,
    /// The seeds of the sweep (before sharding).
    pub seeds: Range<u64>,
    /// The shard run, as `(i, n)`.
    pub shard: Option<(u64, u64)>,
    /// Seeds run.
    pub ran: u64,
    /// Simulated events over all seeds.
    pub sim_events: u64,
    /// How many times the seeds drew each kind of fault, over all seeds.
    pub faults_fired: BTreeMap<String, u64>,
    /// How many times each kind happened without being drawn — scripted by
    /// the test ([`Sim::partition`], ...) or caused by its workload — over
    /// all seeds.
    pub faults_scripted: BTreeMap<String, u64>,
    /// For each fault kind: seeds that enabled it, seeds where it fired.
    pub coverage: FaultCoverage,
    /// For each probe reached ([`IOLoop::probe`](ioloop::IOLoop::probe),
    /// [`Sim::probe`]) or required ([`Sweep::require_probes`]): the seeds
    /// that reached it and its hits over them — each seed's first run
    /// counted, not the reruns of a determinism check or a shrink.
    pub probes: BTreeMap<&'static str, ProbeCount>,
    /// A replay ran, not the sweep: one seed (`IOLOOP_SIM_SEED`, what a
    /// replay line sets) or a schedule file (`IOLOOP_SIM_SCHEDULE`).
    pub replay: bool,
}

impl SweepSummary {
    /// Nothing run yet.
    fn new(name: &str, seeds: Range<u64>, shard: Option<(u64, u64)>) -> SweepSummary {
        SweepSummary {
            name: name.to_string(),
            seeds,
            shard,
            ran: 0,
            sim_events: 0,
            faults_fired: BTreeMap::new(),
            faults_scripted: BTreeMap::new(),
            coverage: FaultCoverage::new(),
            probes: BTreeMap::new(),
            replay: false,
        }
    }

    /// `true` when every seed of the sweep ran — not a replay, not a shard:
    /// the run after which totals over its seeds mean what the test says
    /// (a replay of one seed runs the same test, so an assertion that "at
    /// least 1,000 keys were read back" would fail it).
    ///
    /// ```
    /// use ioloop_sim::Sweep;
    ///
    /// let summary = Sweep::new("doc_sweep").seeds(0..4).run(|sim| {
    ///     sim.host("a", "10.0.0.1", |_| Ok(()));
    /// });
    /// // Under `IOLOOP_SIM_SEED=0x2` (a replay line), `ran` would be 1.
    /// if summary.ran_every_seed() {
    ///     assert_eq!(summary.ran, 4);
    /// }
    /// ```
    pub fn ran_every_seed(&self) -> bool {
        !self.replay && self.shard.is_none() && self.ran == self.seeds.end - self.seeds.start
    }

    /// Count one seed's run (passed or failed).
    fn add(&mut self, report: &Report) {
        self.ran += 1;
        self.sim_events += report.sim_events;
        self.coverage
            .add_run(&report.plan, report.network_faults.as_ref(), &report.fired);
        for (&name, &hits) in &report.probes {
            let count = self.probes.entry(name).or_default();
            count.seeds += 1;
            count.hits += hits;
        }
        for fault in &report.fired {
            let counts = if fault.draw == crate::world::SCRIPTED {
                &mut self.faults_scripted
            } else {
                &mut self.faults_fired
            };
            *counts.entry(fault.name().to_string()).or_default() += 1;
        }
    }
}

/// One probe over the seeds of a sweep ([`SweepSummary::probes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCount {
    /// Seeds that reached it at least once.
    pub seeds: u64,
    /// Times it was reached, over all seeds.
    pub hits: u64,
}

/// The probe table a sweep prints after its fault coverage: one line per
/// probe reached or required, a loud mark on a required one never reached
/// (`enforced`: a full sweep, where that fails it).
fn probe_table(summary: &SweepSummary, required: &[&'static str], enforced: bool) -> String {
    let mut table = format!("probes over {} seeds:\n", summary.ran);
    let _ = writeln!(
        table,
        "  {:<40} {:>13} {:>10}",
        "probe", "seeds reached", "hits"
    );
    for (name, count) in &summary.probes {
        let _ = write!(
            table,
            "  {:<40} {:>13} {:>10}",
            name, count.seeds, count.hits
        );
        if count.seeds == 0 && required.contains(name) {
            table.push_str(if enforced {
                "   <- NEVER REACHED (required)"
            } else {
                "   (required; checked on a full sweep)"
            });
        }
        table.push('\n');
    }
    table
}

/// The first failing seed of a sweep, with everything needed to replay it.
#[derive(Clone, Debug)]
pub struct SweepFailure {
    /// The failing seed.
    pub seed: u64,
    /// The failure.
    pub failure: Failure,
    /// The one command line that replays it.
    pub replay: String,
    /// The schedule file a shrink wrote, if one was asked for.
    pub schedule_file: Option<PathBuf>,
    /// What ran before the failure.
    pub summary: SweepSummary,
}

impl SweepFailure {
    /// The environment [`replay`](Self::replay) sets: its leading
    /// `IOLOOP_SIM_*=VALUE` words, as pairs — to replay the failure from a
    /// test of your own (a child `cargo test`, or
    /// `std::process::Command::new(std::env::current_exe()?)` with these
    /// variables and the test's name).
    ///
    /// ```
    /// # use ioloop_sim::{FaultPreset, Sweep, SweepError};
    /// let failure = match Sweep::new("doc_replay_vars")
    ///     .seeds(3..4)
    ///     .faults(FaultPreset::None)
    ///     .try_run(|sim| {
    ///         sim.client("c", "10.0.0.2", |_, done| Ok(done.fail("planted")));
    ///     }) {
    ///     Err(SweepError::Failed(failure)) => failure,
    ///     other => panic!("{other:?}"),
    /// };
    /// assert_eq!(
    ///     failure.replay_vars(),
    ///     [("IOLOOP_SIM_SEED", "0x3"), ("IOLOOP_SIM_FAULTS", "none")]
    /// );
    /// ```
    pub fn replay_vars(&self) -> Vec<(&str, &str)> {
        self.replay
            .split_whitespace()
            .map_while(|word| word.split_once('='))
            .filter(|(name, _)| name.starts_with("IOLOOP_SIM_"))
            .collect()
    }
}

impl fmt::Display for SweepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.failure.report;
        writeln!(
            f,
            "simulation {:?} failed on seed {:#x}: {}",
            self.summary.name, self.seed, self.failure
        )?;
        writeln!(f, "  plan: {}", report.plan)?;
        if let Some(network) = &report.network_faults {
            writeln!(f, "  network: {network}")?;
        }
        writeln!(
            f,
            "  trace_hash={:016x} sim_events={}",
            report.trace_hash, report.sim_events
        )?;
        writeln!(f, "  {}", crate::sim::fired_summary(&report.fired))?;
        if let Some(path) = &self.schedule_file {
            writeln!(f, "  shrunk schedule: {}", path.display())?;
        }
        write!(f, "  replay: {}", self.replay)
    }
}

impl std::error::Error for SweepFailure {}

/// What the environment asked for.
#[derive(Default)]
struct Env {
    seed: Option<u64>,
    seeds: Option<SeedsVar>,
    faults: Option<FaultPreset>,
    liveness_ms: Option<u64>,
    trace: Option<String>,
    check_determinism: bool,
    shard: Option<(u64, u64)>,
    summary: Option<PathBuf>,
    shrink: Option<String>,
    schedule: Option<PathBuf>,
    schedule_any_name: bool,
    require_faults: bool,
    jobs: Option<usize>,
}

enum SeedsVar {
    Count(u64),
    Range(Range<u64>),
}

impl Env {
    fn read() -> Result<Env, String> {
        Env::from_lookup(|name| std::env::var(name))
    }

    /// The variables as `lookup` gives them (the process environment, or a
    /// test's).
    fn from_lookup<L>(lookup: L) -> Result<Env, String>
    where
        L: Fn(&str) -> Result<String, std::env::VarError>,
    {
        let var = |name: &str| -> Result<Option<String>, String> {
            match lookup(name) {
                Ok(value) if value.trim().is_empty() => Ok(None),
                Ok(value) => Ok(Some(value.trim().to_string())),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not UTF-8")),
            }
        };
        let named = |name: &'static str| move |message: String| format!("{name}: {message}");
        let mut env = Env::default();
        if let Some(seed) = var("IOLOOP_SIM_SEED")? {
            env.seed = Some(parse_seed(&seed).map_err(named("IOLOOP_SIM_SEED"))?);
        }
        if let Some(seeds) = var("IOLOOP_SIM_SEEDS")? {
            env.seeds = Some(parse_seeds_var(&seeds).map_err(named("IOLOOP_SIM_SEEDS"))?);
        }
        if let Some(faults) = var("IOLOOP_SIM_FAULTS")? {
            env.faults = Some(faults.parse().map_err(named("IOLOOP_SIM_FAULTS"))?);
        }
        if let Some(ms) = var("IOLOOP_SIM_LIVENESS_MS")? {
            let parsed = ms.parse::<u64>().ok().filter(|ms| *ms <= LIVENESS_MS_MAX);
            env.liveness_ms = Some(parsed.ok_or_else(|| {
                format!("IOLOOP_SIM_LIVENESS_MS: expected 0 to {LIVENESS_MS_MAX} ms, got {ms:?}")
            })?);
        }
        env.trace = var("IOLOOP_SIM_TRACE")?.filter(|v| v != "0");
        env.check_determinism = match var("IOLOOP_SIM_CHECK_DETERMINISM")?.as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(format!(
                    "IOLOOP_SIM_CHECK_DETERMINISM: expected 0 or 1, got {other:?}"
                ))
            }
        };
        if let Some(shard) = var("IOLOOP_SIM_SHARD")? {
            env.shard = Some(parse_shard(&shard).map_err(named("IOLOOP_SIM_SHARD"))?);
        }
        env.summary = var("IOLOOP_SIM_SUMMARY")?.map(PathBuf::from);
        env.require_faults = match var("IOLOOP_SIM_REQUIRE_FAULTS")?.as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(format!(
                    "IOLOOP_SIM_REQUIRE_FAULTS: expected 0 or 1, got {other:?}"
                ))
            }
        };
        env.shrink = var("IOLOOP_SIM_SHRINK")?.filter(|v| v != "0");
        env.schedule = var("IOLOOP_SIM_SCHEDULE")?.map(PathBuf::from);
        env.schedule_any_name = match var("IOLOOP_SIM_SCHEDULE_ANY_NAME")?.as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(format!(
                    "IOLOOP_SIM_SCHEDULE_ANY_NAME: expected 0 or 1, got {other:?}"
                ))
            }
        };
        if let Some(jobs) = var("IOLOOP_SIM_JOBS")? {
            env.jobs = Some(parse_jobs(&jobs).map_err(named("IOLOOP_SIM_JOBS"))?);
        }
        if env.schedule.is_some() && env.seed.is_some() {
            return Err(
                "IOLOOP_SIM_SCHEDULE and IOLOOP_SIM_SEED both given: a schedule names its own seed"
                    .into(),
            );
        }
        Ok(env)
    }
}

fn parse_seeds_var(text: &str) -> Result<SeedsVar, String> {
    match text.split_once("..") {
        Some((start, end)) => {
            let range = parse_seed(start)?..parse_seed(end)?;
            if range.is_empty() {
                return Err(format!(
                    "empty range {text:?}: END must be greater than START"
                ));
            }
            Ok(SeedsVar::Range(range))
        }
        None => match parse_seed(text)? {
            0 => Err("a sweep needs at least one seed".into()),
            count => Ok(SeedsVar::Count(count)),
        },
    }
}

fn parse_jobs(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|jobs| *jobs <= JOBS_MAX)
        .ok_or_else(|| {
            format!("expected 0 (one thread per CPU) to {JOBS_MAX} threads, got {text:?}")
        })
}

fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (index, count) = text
        .split_once('/')
        .ok_or_else(|| format!("expected i/n (0 <= i < n), got {text:?}"))?;
    let index: u64 = index
        .trim()
        .parse()
        .map_err(|_| format!("bad shard index {index:?}"))?;
    let count: u64 = count
        .trim()
        .parse()
        .map_err(|_| format!("bad shard count {count:?}"))?;
    if count == 0 || index >= count {
        return Err(format!("expected i/n with 0 <= i < n, got {text:?}"));
    }
    Ok((index, count))
}

/// The part `index` of `count` equal parts of `seeds`.
fn shard_of(seeds: &Range<u64>, (index, count): (u64, u64)) -> Range<u64> {
    let len = u128::from(seeds.end.saturating_sub(seeds.start));
    let at = |i: u64| seeds.start + (len * u128::from(i) / u128::from(count)) as u64;
    at(index)..at(index + 1)
}

impl Sweep {
    /// A sweep for the test called `name` (the test function's name, so
    /// that the replay line runs exactly it): seeds `0..100`, `swarm`
    /// faults, unless the code or the environment says otherwise.
    pub fn new(name: &str) -> Sweep {
        // libtest names the thread after the test (`module::name`): a
        // different name would give a replay line that runs no test.
        if let Some(thread) = std::thread::current().name() {
            let test = thread.rsplit("::").next().unwrap_or(thread);
            if thread != "main" && test != name {
                eprintln!(
                    "ioloop-sim: Sweep::new({name:?}) runs in test {thread:?}: its replay line will name {name:?}; pass the test's own name"
                );
            }
        }
        Sweep {
            name: name.to_string(),
            seeds: 0..100,
            faults: FaultPreset::Swarm,
            liveness_after: None,
            require_faults_fire: false,
            require_probes: Vec::new(),
            duration: None,
            configure: None,
            jobs: None,
            cargo_args: String::new(),
            reads_environment: true,
        }
    }

    /// The seeds to run (`IOLOOP_SIM_SEEDS` overrides).
    pub fn seeds(mut self, seeds: Range<u64>) -> Sweep {
        self.seeds = seeds;
        self
    }

    /// The fault preset (`IOLOOP_SIM_FAULTS` overrides). `all` and `swarm`
    /// draw network faults too, those the simulation declares it survives:
    /// see [`Sim::survives`].
    pub fn faults(mut self, preset: FaultPreset) -> Sweep {
        self.faults = preset;
        self
    }

    /// A liveness phase for every seed (`IOLOOP_SIM_LIVENESS_MS`
    /// overrides): see [`Builder::liveness_after`](crate::Builder::liveness_after).
    pub fn liveness_after(mut self, after: Duration) -> Sweep {
        self.liveness_after = Some(after);
        self
    }

    /// Set [`Builder`] knobs for every seed: `time_limit`, `settle_within`,
    /// `leak_check`, `at_rest`, `trace`, `network_plan`, `plan`... The
    /// sweep's own settings — each seed, the fault preset, a liveness phase,
    /// a duration ([`run_for`](Self::run_for)), a schedule being replayed,
    /// and the environment's overrides of them — are applied after, and
    /// win. `entropy` and `schedule` would make a seed replay something
    /// else than its run, so the sweep refuses them
    /// ([`SweepError::Config`]). Called twice, both apply, in order.
    /// What the simulation's services survive is declared in the
    /// description instead ([`Sim::survives`]), as a replay runs the same.
    /// The knobs are `Send + Sync`, whatever way the sweep runs, so that
    /// the threads of [`run_parallel`](Self::run_parallel) can apply them
    /// ([`jobs`](Self::jobs)): a closure that captures an `Rc` or a `Cell`
    /// does not compile here; capture plain values (they are knobs), or
    /// an `Arc`.
    ///
    /// ```no_run
    /// use ioloop_sim::{AtRest, Sweep};
    /// use std::time::Duration;
    ///
    /// Sweep::new("service_has_no_periodic_work")
    ///     .liveness_after(Duration::from_millis(500))
    ///     .configure(|builder| {
    ///         builder
    ///             .at_rest(AtRest::NoTimeouts)
    ///             .settle_within(Duration::from_secs(30))
    ///             .time_limit(Duration::from_secs(600))
    ///     })
    ///     .run(|sim| {
    ///         // sim.host(...); sim.client(...);
    ///     });
    /// ```
    pub fn configure<F>(mut self, knobs: F) -> Sweep
    where
        F: Fn(Builder) -> Builder + Send + Sync + 'static,
    {
        self.configure = Some(Configure(match self.configure.take() {
            Some(Configure(before)) => Arc::new(move |builder| knobs(before(builder))),
            None => Arc::new(knobs),
        }));
        self
    }

    /// Run each seed for `duration` of virtual time (see
    /// [`Builder::duration`]): a service that never ends — heartbeats,
    /// gossip — needs no client that reports done. Once the time is up (and
    /// every client the description added is done) the seed ends as in
    /// [`run`](Self::run): its hosts must let go of what they opened, its
    /// invariants hold once more, and under a liveness phase it must
    /// settle.
    ///
    /// ```no_run
    /// use ioloop_sim::Sweep;
    /// use std::time::Duration;
    ///
    /// #[test]
    /// fn membership_survives_faults() {
    ///     Sweep::new("membership_survives_faults")
    ///         .seeds(0..200)
    ///         .run_for(Duration::from_secs(5), |sim| {
    ///             // sim.host("n1", ...); sim.host("n2", ...); sim.invariant(...);
    ///         });
    /// }
    /// ```
    #[track_caller]
    pub fn run_for<F>(mut self, duration: Duration, describe: F) -> SweepSummary
    where
        F: FnMut(&mut Sim),
    {
        self.duration = Some(duration);
        self.run(describe)
    }

    /// [`run_for`](Self::run_for), returning the failure instead of panicking.
    pub fn try_run_for<F>(
        mut self,
        duration: Duration,
        describe: F,
    ) -> Result<SweepSummary, SweepError>
    where
        F: FnMut(&mut Sim),
    {
        self.duration = Some(duration);
        self.try_run(describe)
    }

    /// Run the sweep; `describe` adds the hosts and clients to each seed's
    /// [`Sim`]. Panics (failing the test) at the first failure, with the
    /// line that replays it, or on a malformed `IOLOOP_SIM_*` variable.
    ///
    /// `describe` runs once per seed — three times under
    /// `IOLOOP_SIM_CHECK_DETERMINISM=1` (the run, and the two runs it
    /// compares), and more while shrinking: keep counters of your own
    /// inside the simulation, not across calls.
    ///
    /// The seeds run one after another on the calling thread;
    /// [`run_parallel`](Self::run_parallel) runs them on several.
    #[track_caller]
    pub fn run<F>(self, describe: F) -> SweepSummary
    where
        F: FnMut(&mut Sim),
    {
        match self.try_run(describe) {
            Ok(summary) => summary,
            Err(error) => panic!("{error}"),
        }
    }

    /// [`run`](Self::run), returning the failure instead of panicking.
    pub fn try_run<F>(self, mut describe: F) -> Result<SweepSummary, SweepError>
    where
        F: FnMut(&mut Sim),
    {
        if let Some(jobs) = self.jobs.filter(|&jobs| jobs != 1) {
            return Err(SweepError::Config(format!(
                "Sweep::jobs({jobs}) needs run_parallel or run_for_parallel: the closure of run and run_for is FnMut, for one thread"
            )));
        }
        let (env, plan) = self.prepare()?;
        if let Some(jobs) = env.jobs.filter(|&jobs| jobs != 1) {
            // Not an error: the same CI variable serves every sweep.
            eprintln!(
                "{}: IOLOOP_SIM_JOBS={jobs} ignored: this sweep runs on one thread (Sweep::run or run_for; run_parallel and run_for_parallel use threads)",
                self.name
            );
        }
        if let Some(path) = &env.schedule {
            return self.replay_schedule(&env, path, &mut describe);
        }
        let mut tally = Tally::new(&self.name, &plan, &env);
        for seed in plan.to_run.clone() {
            let result = self.run_seed(&env, &plan, seed, &mut describe);
            if !tally.take(&env, seed, result) {
                break;
            }
        }
        self.finish(&env, &plan, tally, &mut describe)
    }

    /// Run this many seeds at once, each on its own thread, in
    /// [`run_parallel`](Self::run_parallel) and
    /// [`run_for_parallel`](Self::run_for_parallel); `0` is one per CPU, and
    /// at most 256 (`IOLOOP_SIM_JOBS` overrides; with neither, one). The
    /// seeds are independent, so each runs exactly as it would alone, and
    /// the result is the one thread's: the lowest failing seed (seeds after
    /// it that ran ahead are dropped), its replay line, the same summary
    /// and coverage table. Shrinking a failure runs on the calling thread.
    ///
    /// [`run`](Self::run) and [`run_for`](Self::run_for) take a closure
    /// only one thread may call: with them, a number other than 1 is refused
    /// ([`SweepError::Config`]), and `IOLOOP_SIM_JOBS` does not apply.
    ///
    /// ```no_run
    /// use ioloop_sim::Sweep;
    ///
    /// #[test]
    /// fn service_survives_faults() {
    ///     Sweep::new("service_survives_faults")
    ///         .seeds(0..10_000)
    ///         .jobs(4)
    ///         .run_parallel(|sim| {
    ///             // sim.host(...); sim.client(...);
    ///         });
    /// }
    /// ```
    pub fn jobs(mut self, jobs: usize) -> Sweep {
        self.jobs = Some(jobs);
        self
    }

    /// [`run`](Self::run), with the seeds on [`jobs`](Self::jobs) threads:
    /// `describe` is shared between them, so it is `Fn + Sync` (each thread
    /// builds its own [`Sim`] for each seed). A panic in `describe` — or
    /// anywhere in a seed's run the harness does not catch — ends the sweep
    /// as on one thread: once every seed before it passed, it propagates
    /// from here. (Seeds run ahead of the one awaited, at most four per
    /// thread: one past the first failure may still print a panic message
    /// to stderr before its outcome is dropped; the result is the same.)
    ///
    /// ```no_run
    /// use ioloop_sim::Sweep;
    ///
    /// #[test]
    /// fn service_survives_faults() {
    ///     Sweep::new("service_survives_faults")
    ///         .seeds(0..10_000)
    ///         .jobs(0) // one thread per CPU
    ///         .run_parallel(|sim| {
    ///             // sim.host(...); sim.client(...);
    ///         });
    /// }
    /// ```
    #[track_caller]
    pub fn run_parallel<F>(self, describe: F) -> SweepSummary
    where
        F: Fn(&mut Sim) + Sync,
    {
        match self.try_run_parallel(describe) {
            Ok(summary) => summary,
            Err(error) => panic!("{error}"),
        }
    }

    /// [`run_parallel`](Self::run_parallel), returning the failure instead
    /// of panicking.
    ///
    /// ```
    /// use ioloop_sim::{FaultPreset, Sweep};
    ///
    /// let on = |jobs| {
    ///     Sweep::new("nothing_to_do")
    ///         .seeds(0..8)
    ///         .faults(FaultPreset::None)
    ///         .jobs(jobs)
    ///         .try_run_parallel(|sim| {
    ///             sim.host("idle", "10.0.0.1", |_| Ok(()));
    ///         })
    /// };
    /// assert_eq!(on(1)?.ran, 8);
    /// assert_eq!(format!("{:?}", on(1)?), format!("{:?}", on(2)?));
    /// # Ok::<(), ioloop_sim::SweepError>(())
    /// ```
    pub fn try_run_parallel<F>(self, describe: F) -> Result<SweepSummary, SweepError>
    where
        F: Fn(&mut Sim) + Sync,
    {
        if let Some(jobs) = self.jobs.filter(|&jobs| jobs > JOBS_MAX) {
            return Err(SweepError::Config(format!(
                "Sweep::jobs({jobs}): at most {JOBS_MAX} threads"
            )));
        }
        let (env, plan) = self.prepare()?;
        // `&F` is an `FnMut` too: each call takes its own copy of it.
        let describe = &describe;
        if let Some(path) = &env.schedule {
            return self.replay_schedule(&env, path, &mut { describe });
        }
        let jobs = env.jobs.or(self.jobs).unwrap_or(1);
        let mut tally = Tally::new(&self.name, &plan, &env);
        let mut panicked = None;
        for_each_outcome(
            plan.to_run.clone(),
            parallel::threads(jobs),
            |seed| self.run_seed(&env, &plan, seed, &mut { describe }),
            &mut |seed, outcome| match outcome {
                Ok(result) => tally.take(&env, seed, result),
                Err(payload) => {
                    panicked = Some(payload);
                    false
                }
            },
        );
        if let Some(payload) = panicked {
            // Where one thread would have unwound from that seed's run.
            std::panic::resume_unwind(payload);
        }
        self.finish(&env, &plan, tally, &mut { describe })
    }

    /// [`run_for`](Self::run_for), with the seeds on [`jobs`](Self::jobs)
    /// threads, as [`run_parallel`](Self::run_parallel).
    ///
    /// ```no_run
    /// use ioloop_sim::Sweep;
    /// use std::time::Duration;
    ///
    /// #[test]
    /// fn membership_survives_faults() {
    ///     Sweep::new("membership_survives_faults")
    ///         .seeds(0..2_000)
    ///         .jobs(0)
    ///         .run_for_parallel(Duration::from_secs(5), |sim| {
    ///             // sim.host("n1", ...); sim.host("n2", ...); sim.invariant(...);
    ///         });
    /// }
    /// ```
    #[track_caller]
    pub fn run_for_parallel<F>(mut self, duration: Duration, describe: F) -> SweepSummary
    where
        F: Fn(&mut Sim) + Sync,
    {
        self.duration = Some(duration);
        self.run_parallel(describe)
    }

    /// [`run_for_parallel`](Self::run_for_parallel), returning the failure
    /// instead of panicking.
    pub fn try_run_for_parallel<F>(
        mut self,
        duration: Duration,
        describe: F,
    ) -> Result<SweepSummary, SweepError>
    where
        F: Fn(&mut Sim) + Sync,
    {
        self.duration = Some(duration);
        self.try_run_parallel(describe)
    }

    /// The environment and the seeds to run, or why the sweep cannot start.
    fn prepare(&self) -> Result<(Env, RunPlan), SweepError> {
        let env = if self.reads_environment {
            Env::read()
        } else {
            Env::from_lookup(|_| Err(std::env::VarError::NotPresent))
        };
        let env = env.map_err(SweepError::Config)?;
        self.check_configure()?;
        let plan = self.plan(&env);
        Ok((env, plan))
    }

    /// One seed's run, checked for determinism if asked: what the sweep
    /// tallies for the seed. Runs on whichever thread runs the seed.
    fn run_seed<F>(
        &self,
        env: &Env,
        plan: &RunPlan,
        seed: u64,
        describe: &mut F,
    ) -> Result<Report, Failure>
    where
        F: FnMut(&mut Sim),
    {
        let schedule = plan.schedule(&self.name, seed);
        match self.run_schedule(&schedule, env.trace.is_some(), describe) {
            Ok(report) if env.check_determinism => {
                self.check_determinism(&schedule, &report, describe)
            }
            other => other,
        }
    }

    /// End the sweep once its seeds ran, on the calling thread: the first
    /// failure with its replay line (shrunk if asked), or the summary.
    fn finish<F>(
        &self,
        env: &Env,
        plan: &RunPlan,
        tally: Tally,
        describe: &mut F,
    ) -> Result<SweepSummary, SweepError>
    where
        F: FnMut(&mut Sim),
    {
        let Tally {
            summary,
            failed,
            started,
        } = tally;
        if let Some((seed, failure)) = failed {
            let schedule = plan.schedule(&self.name, seed);
            let failure = self.failed(env, plan, schedule, failure, summary, describe);
            write_summary(env, &failure.summary, Some(&failure), started.elapsed());
            return Err(SweepError::Failed(Box::new(failure)));
        }
        write_summary(env, &summary, None, started.elapsed());
        let mut summary = summary;
        for &name in &self.require_probes {
            summary.probes.entry(name).or_default();
        }
        // The tables go to stderr: `cargo test -- --nocapture` shows them.
        eprint!("{}: {}", self.name, summary.coverage);
        if !summary.probes.is_empty() {
            let enforced = summary.ran_every_seed();
            eprint!(
                "{}: {}",
                self.name,
                probe_table(&summary, &self.require_probes, enforced)
            );
        }
        let unreached: Vec<&'static str> = self
            .require_probes
            .iter()
            .copied()
            .filter(|name| summary.probes[name].seeds == 0)
            .collect();
        if !unreached.is_empty() && summary.ran_every_seed() {
            return Err(SweepError::ProbesNeverReached {
                names: unreached,
                summary: Box::new(summary),
            });
        }
        let never = summary.coverage.enabled_never_fired();
        if !never.is_empty() && (self.require_faults_fire || env.require_faults) {
            let names: Vec<&str> = never.iter().map(|k| k.name()).collect();
            return Err(SweepError::FaultsNeverFired {
                kinds: names.join(", "),
                summary: Box::new(summary),
            });
        }
        Ok(summary)
    }

    /// Words the replay line passes to its `cargo test`, for what the
    /// running test cannot see of how it was built: features above all
    /// (`--features planted-bug`), or a `--target`. Without them a replay
    /// line would rebuild the test without its features, and the seed
    /// pass. What the test can see, the line has already: the package, the
    /// test target and name, the profile (`--release`, or `--profile
    /// NAME`, from the directory the test binary is in; not if `args`
    /// name one themselves), and `--include-ignored`, so that an
    /// `#[ignore]`d sweep replays too. Called again, it replaces the
    /// words given before.
    ///
    /// ```no_run
    /// use ioloop_sim::Sweep;
    ///
    /// #[test]
    /// fn service_survives_faults() {
    ///     Sweep::new("service_survives_faults")
    ///         .cargo_args(if cfg!(feature = "planted-bug") { "--features planted-bug" } else { "" })
    ///         .run(|sim| {
    ///             // sim.host(...); sim.client(...);
    ///         });
    /// }
    /// ```
    pub fn cargo_args(mut self, args: &str) -> Sweep {
        self.cargo_args = args.split_whitespace().collect::<Vec<_>>().join(" ");
        self
    }

    /// Fail the sweep if a fault kind that some seed enabled never fired in
    /// any (`IOLOOP_SIM_REQUIRE_FAULTS=1` does the same): a sweep that
    /// asked for faults must have tested them.
    pub fn require_faults_fire(mut self, require: bool) -> Sweep {
        self.require_faults_fire = require;
        self
    }

    /// Fail the sweep if one of these probes
    /// ([`IOLoop::probe`](ioloop::IOLoop::probe), [`Sim::probe`]) was
    /// reached in no seed ([`SweepError::ProbesNeverReached`]): the paths
    /// the test exists for — a lease that expired, a retry, a failover —
    /// must have run. Checked on a full sweep (every seed of it ran); a
    /// replay of one seed, a schedule's replay or a shard only lists them
    /// (0 where not reached) in the probe table — a sharded CI sums the
    /// `probes` of each shard's summary line (`IOLOOP_SIM_SUMMARY`:
    /// `"probes":{"name":[seeds reached, hits]}`) to check the whole.
    /// Called again, it adds to the names given before.
    ///
    /// ```
    /// use ioloop_sim::{FaultPreset, Sweep, SweepError};
    ///
    /// let sweep = |probe| {
    ///     Sweep::new("doc_probes")
    ///         .seeds(0..4)
    ///         .faults(FaultPreset::None)
    ///         .require_probes(["retried"])
    ///         .try_run(|sim| {
    ///             sim.client("c", "10.0.0.2", move |io, done| {
    ///                 // Some seeds retry (a draw of the seed's stream).
    ///                 if probe && io.random_u64() % 2 == 1 {
    ///                     io.probe("retried");
    ///                 }
    ///                 done.ok();
    ///                 Ok(())
    ///             });
    ///         })
    /// };
    /// assert!(matches!(sweep(false), Err(SweepError::ProbesNeverReached { .. })));
    /// let summary = sweep(true)?;
    /// let retried = summary.probes["retried"];
    /// assert!(retried.seeds >= 1 && retried.hits == retried.seeds);
    /// # Ok::<(), SweepError>(())
    /// ```
    pub fn require_probes<I>(mut self, names: I) -> Sweep
    where
        I: IntoIterator<Item = &'static str>,
    {
        self.require_probes.extend(names);
        self
    }

    fn plan(&self, env: &Env) -> RunPlan {
        let seeds = match &env.seeds {
            Some(SeedsVar::Count(count)) => {
                self.seeds.start..self.seeds.start.saturating_add(*count)
            }
            Some(SeedsVar::Range(range)) => range.clone(),
            None => self.seeds.clone(),
        };
        let to_run = match (env.seed, env.shard) {
            (Some(seed), _) => seed..seed.saturating_add(1),
            (None, Some(shard)) => shard_of(&seeds, shard),
            (None, None) => seeds.clone(),
        };
        RunPlan {
            seeds,
            to_run,
            faults: env.faults.unwrap_or(self.faults),
            liveness_after: env
                .liveness_ms
                .map(Duration::from_millis)
                .or(self.liveness_after),
        }
    }

    /// Replay a schedule file: exactly its faults fire.
    fn replay_schedule<F>(
        &self,
        env: &Env,
        path: &PathBuf,
        describe: &mut F,
    ) -> Result<SweepSummary, SweepError>
    where
        F: FnMut(&mut Sim),
    {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SweepError::Config(format!("IOLOOP_SIM_SCHEDULE: {}: {e}", path.display()))
        })?;
        let schedule = Schedule::parse(&text).map_err(|e| {
            SweepError::Config(format!("IOLOOP_SIM_SCHEDULE: {}: {e}", path.display()))
        })?;
        // A schedule names the decisions that fire, by number: against
        // another test they are other decisions, unless that test is the
        // same simulation with a fix (a planted twin's schedule replayed
        // against the fixed service) — the user's call to make.
        let other_name = schedule.name != self.name;
        if other_name && !env.schedule_any_name {
            return Err(SweepError::Config(format!(
                "IOLOOP_SIM_SCHEDULE: {} is a schedule of {:?}, not of {:?} (IOLOOP_SIM_SCHEDULE_ANY_NAME=1 replays it anyway: the same simulation, its decisions numbered alike, as a planted twin and its fixed service are)",
                path.display(),
                schedule.name,
                self.name
            )));
        }
        if other_name {
            eprintln!(
                "ioloop-sim: replaying {}, a schedule of {:?}, against {:?} (IOLOOP_SIM_SCHEDULE_ANY_NAME=1)",
                path.display(),
                schedule.name,
                self.name
            );
        }
        let started = std::time::Instant::now(); // wall clock for the summary only
        let result = self.run_schedule(&schedule, env.trace.is_some(), describe);
        let report = match &result {
            Ok(report) => report,
            Err(failure) => &failure.report,
        };
        emit_trace(env, report);
        let seeds = schedule.seed..schedule.seed.saturating_add(1);
        let mut summary = SweepSummary::new(&self.name, seeds, None);
        summary.replay = true;
        summary.add(report);
        summary.coverage.set_scheduled();
        for &name in &self.require_probes {
            summary.probes.entry(name).or_default();
        }
        eprint!("{}: {}", self.name, summary.coverage);
        if !summary.probes.is_empty() {
            eprint!(
                "{}: {}",
                self.name,
                probe_table(&summary, &self.require_probes, false)
            );
        }
        match result {
            Ok(_) => {
                write_summary(env, &summary, None, started.elapsed());
                Ok(summary)
            }
            Err(failure) => {
                let any_name = if other_name {
                    " IOLOOP_SIM_SCHEDULE_ANY_NAME=1"
                } else {
                    ""
                };
                let failure = SweepFailure {
                    seed: schedule.seed,
                    failure,
                    replay: format!(
                        "IOLOOP_SIM_SCHEDULE={}{any_name} {}",
                        path.display(),
                        self.test_command()
                    ),
                    schedule_file: Some(path.clone()),
                    summary,
                };
                write_summary(env, &failure.summary, Some(&failure), started.elapsed());
                Err(SweepError::Failed(Box::new(failure)))
            }
        }
    }

    /// The failure of `schedule`, with its replay line; shrunk if asked.
    fn failed<F>(
        &self,
        env: &Env,
        plan: &RunPlan,
        schedule: Schedule,
        failure: Failure,
        summary: SweepSummary,
        describe: &mut F,
    ) -> SweepFailure
    where
        F: FnMut(&mut Sim),
    {
        let mut vars = format!(
            "IOLOOP_SIM_SEED={:#x} IOLOOP_SIM_FAULTS={}",
            schedule.seed, plan.faults
        );
        if let Some(after) = plan.liveness_after {
            let _ = write!(vars, " IOLOOP_SIM_LIVENESS_MS={}", after.as_millis());
        }
        let replay = format!("{vars} {}", self.test_command());
        let schedule_file = env.shrink.as_ref().map(|target| {
            let path = match target.as_str() {
                "1" => schedules_dir().join(format!("{}-{:#x}.schedule", self.name, schedule.seed)),
                path => PathBuf::from(path),
            };
            self.shrink_to(&path, schedule.clone(), &failure, describe);
            path
        });
        SweepFailure {
            seed: schedule.seed,
            failure,
            replay,
            schedule_file,
            summary,
        }
    }

    fn shrink_to<F>(&self, path: &PathBuf, first: Schedule, failure: &Failure, describe: &mut F)
    where
        F: FnMut(&mut Sim),
    {
        let attempt = Attempt {
            failure: Some((failure.kind, failure.to_string())),
            fired: failure.report.fired.clone(),
        };
        let shrunk = shrink_schedule(first, attempt, &[], |schedule| {
            Attempt::of(&self.run_schedule(schedule, false, describe))
        });
        let replay = format!(
            "IOLOOP_SIM_SCHEDULE={} {}",
            path.display(),
            self.test_command()
        );
        match shrunk {
            Ok(report) => {
                let text = report
                    .schedule
                    .to_text(&replay, Some(&report.failure), &report.fired);
                match std::fs::write(path, text) {
                    Ok(()) => {
                        eprintln!(
                            "shrunk in {} runs: {} of {} faults remain; wrote {}",
                            report.runs,
                            report.schedule.fire.len(),
                            report.faults_before,
                            path.display()
                        );
                        if let Some(note) = report.note() {
                            eprintln!("  {note}");
                        }
                        eprintln!("  fails with: {}\n  replay: {replay}", report.failure);
                    }
                    Err(error) => eprintln!("cannot write {}: {error}", path.display()),
                }
            }
            Err(error) => eprintln!("shrink: {error}"),
        }
    }

    /// `cargo test -p PACKAGE [PROFILE] [ARGS] --test TARGET NAME -- --exact
    /// --include-ignored --nocapture`, from what cargo tells a running test
    /// and [`cargo_args`](Self::cargo_args).
    fn test_command(&self) -> String {
        let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "PACKAGE".into());
        let targets = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(|dir| package_targets(std::path::Path::new(&dir), &package))
            .unwrap_or_default();
        self.test_command_of(&package, &targets, std::env::current_exe().ok())
    }

    /// [`test_command`](Self::test_command) for package `package`, whose
    /// targets are `targets`, and the test binary at `exe`.
    fn test_command_of(&self, package: &str, targets: &[Target], exe: Option<PathBuf>) -> String {
        let mut options = String::new();
        let names_profile = self
            .cargo_args
            .split_whitespace()
            .any(|word| word == "--release" || word == "-r" || word.starts_with("--profile"));
        if let Some(profile) = exe.as_deref().and_then(profile_option) {
            if !names_profile {
                options.push(' ');
                options.push_str(&profile);
            }
        }
        if !self.cargo_args.is_empty() {
            options.push(' ');
            options.push_str(&self.cargo_args);
        }
        let target = exe
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|stem| match stem.rsplit_once('-') {
                Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => {
                    name.to_string()
                }
                _ => stem,
            });
        let target = match target {
            Some(stem) => target_option(&stem, package, targets),
            None => "--test TARGET".into(),
        };
        format!(
            "cargo test -p {package}{options} {target} {} -- --exact --include-ignored --nocapture",
            self.name
        )
    }
}

/// A kind of cargo target whose tests a sweep may run in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetKind {
    Lib,
    Bin,
    Test,
}

/// A target of the package under test: its kind and its name as `cargo
/// test` takes it (`my-test`, which cargo builds as `my_test-HASH`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    kind: TargetKind,
    name: String,
}

/// The targets of the package whose manifest is in `dir` (named
/// `package`), as cargo finds them: its `[lib]`, `[[bin]]` and `[[test]]`
/// names, `src/main.rs`, `src/bin/`, and `tests/` (a file, or a directory
/// with a `main.rs`). Only what is needed to tell a test binary's target
/// from its file name: cargo writes `-` in a target's name as `_` there.
/// Unreadable parts are skipped.
///
/// The manifest is read line by line, not parsed: a `name = "..."` line
/// (either quote; a quoted key) under a `[lib]`, `[[bin]]` or `[[test]]`
/// header. A name given another way (`lib.name = ..`, an inline table, a
/// multi-line string) is not seen, and the replay line then names the
/// binary's own stem, as it would with no manifest at all.
fn package_targets(dir: &std::path::Path, package: &str) -> Vec<Target> {
    let mut targets = Vec::new();
    let target = |kind, name: &str| Target {
        kind,
        name: name.to_string(),
    };
    // A library is named after the package unless `[lib]` names it.
    let mut library = dir.join("src/lib.rs").is_file();
    if let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) {
        let mut section = None;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                let header: String = line
                    .split('#')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                section = match header.as_str() {
                    "[lib]" => Some(TargetKind::Lib),
                    "[[bin]]" => Some(TargetKind::Bin),
                    "[[test]]" => Some(TargetKind::Test),
                    _ => None,
                };
                library |= section == Some(TargetKind::Lib);
                continue;
            }
            let Some(kind) = section else { continue };
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
            let value = value.trim();
            let quoted = ['"', '\'']
                .into_iter()
                .find_map(|quote| value.strip_prefix(quote)?.split(quote).next());
            if let (true, Some(name)) = (key == "name", quoted) {
                if !name.is_empty() {
                    targets.push(target(kind, name));
                    library &= kind != TargetKind::Lib;
                }
            }
        }
    }
    if library {
        targets.push(target(TargetKind::Lib, package));
    }
    if dir.join("src/main.rs").is_file() {
        targets.push(target(TargetKind::Bin, package));
    }
    for (folder, kind) in [("src/bin", TargetKind::Bin), ("tests", TargetKind::Test)] {
        let Ok(entries) = std::fs::read_dir(dir.join(folder)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                let name = entry.file_name().into_string().ok()?;
                if path.is_dir() {
                    path.join("main.rs").is_file().then_some(name)
                } else {
                    name.strip_suffix(".rs").map(str::to_string)
                }
            })
            .collect();
        names.sort();
        targets.extend(names.iter().map(|name| target(kind, name)));
    }
    targets
}

/// The `cargo test` option that selects the target a test binary named
/// `stem` (`my_test`, its hash taken off) was built from: `--lib`,
/// `--bin NAME` or `--test NAME`, by the target of `targets` that cargo
/// would have named so (the library first, then the tests, then the
/// binaries). The library and a binary of one name (`src/lib.rs` and
/// `src/main.rs`) build test binaries of the same stem: both are named,
/// `--lib --bin NAME`, and the test's name picks its own. Without
/// `targets`, a stem that is the package's name is its library; a stem no
/// target explains is taken for a test's name.
fn target_option(stem: &str, package: &str, targets: &[Target]) -> String {
    let built_as = |name: &str| name.replace('-', "_") == stem;
    let of_kind = |kind| {
        targets
            .iter()
            .find(|target| target.kind == kind && built_as(&target.name))
    };
    if (targets.is_empty() && built_as(package)) || of_kind(TargetKind::Lib).is_some() {
        return match of_kind(TargetKind::Bin) {
            Some(bin) => format!("--lib --bin {}", bin.name),
            None => "--lib".into(),
        };
    }
    if let Some(test) = of_kind(TargetKind::Test) {
        return format!("--test {}", test.name);
    }
    if let Some(bin) = of_kind(TargetKind::Bin) {
        return format!("--bin {}", bin.name);
    }
    format!("--test {stem}")
}

/// The profile directory cargo built the test binary at `exe` in
/// (`target/PROFILE/deps/TEST` → `target/PROFILE`), if it is one.
fn profile_dir(exe: &std::path::Path) -> Option<&std::path::Path> {
    let deps = exe.parent()?;
    (deps.file_name()? == "deps").then_some(deps.parent()?)
}

/// The `cargo test` option that builds the profile a test binary at `exe`
/// was built in, from its directory (`target/PROFILE/deps/TEST`): none
/// for `debug` (the default), `--release`, or `--profile NAME`.
fn profile_option(exe: &std::path::Path) -> Option<String> {
    match profile_dir(exe)?.file_name()?.to_str()? {
        "debug" => None,
        "release" => Some("--release".into()),
        name => Some(format!("--profile {name}")),
    }
}

/// Where `IOLOOP_SIM_SHRINK=1` writes a schedule: `ioloop-sim/` in the
/// target directory the test was built in (`target/debug/deps/TEST` →
/// `target/ioloop-sim/`), not the crate's sources; the current directory
/// if that cannot be told or made.
fn schedules_dir() -> PathBuf {
    schedules_dir_for(std::env::current_exe().ok())
}

/// [`schedules_dir`] for the test binary at `exe`.
fn schedules_dir_for(exe: Option<PathBuf>) -> PathBuf {
    let target = exe.and_then(|exe| Some(profile_dir(&exe)?.parent()?.to_path_buf()));
    match target.map(|target| target.join("ioloop-sim")) {
        Some(dir) if std::fs::create_dir_all(&dir).is_ok() => dir,
        _ => PathBuf::new(),
    }
}

/// Why a sweep did not pass. More reasons may come (hence
/// `#[non_exhaustive]`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SweepError {
    /// A seed failed.
    Failed(Box<SweepFailure>),
    /// An `IOLOOP_SIM_*` variable is malformed, or a schedule file unusable.
    Config(String),
    /// Every seed passed, but fault kinds that seeds enabled never fired
    /// (with [`Sweep::require_faults_fire`]).
    FaultsNeverFired {
        /// The kinds, by name.
        kinds: String,
        /// What the sweep ran.
        summary: Box<SweepSummary>,
    },
    /// Every seed passed, but probes the sweep requires were reached in
    /// none ([`Sweep::require_probes`]).
    ProbesNeverReached {
        /// The probes no seed reached.
        names: Vec<&'static str>,
        /// What the sweep ran.
        summary: Box<SweepSummary>,
    },
}

impl fmt::Display for SweepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepError::Failed(failure) => failure.fmt(f),
            SweepError::Config(message) => write!(f, "ioloop-sim sweep: {message}"),
            SweepError::FaultsNeverFired { kinds, summary } => write!(
                f,
                "simulation {:?}: every seed passed, but these faults were enabled and never fired: {kinds}\n{}",
                summary.name, summary.coverage
            ),
            SweepError::ProbesNeverReached { names, summary } => write!(
                f,
                "simulation {:?}: every seed passed, but no seed reached these probes: {}\n{}",
                summary.name,
                names.join(", "),
                probe_table(summary, names, true)
            ),
        }
    }
}

impl std::error::Error for SweepError {}

/// What the seeds a sweep ran came to so far, taken in seed order.
struct Tally {
    summary: SweepSummary,
    /// The first failing seed and its failure: no seed is taken after it.
    failed: Option<(u64, Failure)>,
    /// Wall clock, for the summary's `elapsed_s` only.
    started: std::time::Instant,
}

impl Tally {
    fn new(name: &str, plan: &RunPlan, env: &Env) -> Tally {
        Tally {
            summary: SweepSummary {
                replay: env.seed.is_some(),
                ..SweepSummary::new(name, plan.seeds.clone(), env.shard)
            },
            failed: None,
            started: std::time::Instant::now(),
        }
    }

    /// Count `seed`'s run; `false` if it failed: the sweep ends there.
    fn take(&mut self, env: &Env, seed: u64, result: Result<Report, Failure>) -> bool {
        debug_assert!(self.failed.is_none(), "seed {seed} taken after a failure");
        let report = match &result {
            Ok(report) => report,
            Err(failure) => &failure.report,
        };
        // A determinism check's verdict carries the first run's report.
        self.summary.add(report);
        if env.seed.is_some() || result.is_err() {
            emit_trace(env, report);
        }
        match result {
            Ok(_) => true,
            Err(failure) => {
                self.failed = Some((seed, failure));
                false
            }
        }
    }
}

/// The seeds and settings a sweep runs with, after the environment.
struct RunPlan {
    seeds: Range<u64>,
    to_run: Range<u64>,
    faults: FaultPreset,
    liveness_after: Option<Duration>,
}

impl RunPlan {
    fn schedule(&self, name: &str, seed: u64) -> Schedule {
        let mut schedule = Schedule::new(name, seed, self.faults);
        schedule.liveness_after = self.liveness_after;
        schedule.from_seed = true;
        schedule
    }
}

impl Sweep {
    /// The [`Builder`] of one run of `schedule`: the knobs of
    /// [`configure`](Self::configure), then the schedule's own settings and
    /// the sweep's duration over them.
    fn builder(&self, schedule: &Schedule, trace: bool) -> Builder {
        let mut builder = Sim::builder(schedule.seed);
        if let Some(Configure(knobs)) = &self.configure {
            builder = knobs(builder);
        }
        builder = schedule.configure(builder);
        if let Some(duration) = self.duration {
            builder = builder.duration(duration);
        }
        if trace {
            builder = builder.trace(true);
        }
        builder
    }

    /// Refuse the knobs of [`configure`](Self::configure) that would make a
    /// seed's replay run something else.
    fn check_configure(&self) -> Result<(), SweepError> {
        if self.seeds.is_empty() {
            return Err(SweepError::Config(format!(
                "Sweep::seeds({}..{}) is empty: a sweep of no seeds would pass having tested nothing",
                self.seeds.start, self.seeds.end
            )));
        }
        let Some(Configure(knobs)) = &self.configure else {
            return Ok(());
        };
        match knobs(Sim::builder(0)).not_from_seed() {
            Some(knob) => Err(SweepError::Config(format!(
                "Sweep::configure sets `{knob}`: a sweep draws every run from its seed (and replays schedules itself)"
            ))),
            None => Ok(()),
        }
    }

    /// One run of `schedule`: with exactly its faults if it names any (a
    /// replay), else with the faults the seed draws.
    fn run_schedule<F>(
        &self,
        schedule: &Schedule,
        trace: bool,
        describe: &mut F,
    ) -> Result<Report, Failure>
    where
        F: FnMut(&mut Sim),
    {
        let mut sim = self.builder(schedule, trace).build();
        describe(&mut sim);
        sim.run()
    }

    /// Run `schedule` again, with full traces both times, and fail on the
    /// first decision where the runs part.
    fn check_determinism<F>(
        &self,
        schedule: &Schedule,
        first: &Report,
        describe: &mut F,
    ) -> Result<Report, Failure>
    where
        F: FnMut(&mut Sim),
    {
        let lines = |result: &Result<Report, Failure>| -> Vec<String> {
            let (report, verdict) = match result {
                Ok(report) => (report, "ok".to_string()),
                Err(failure) => (&*failure.report, failure.to_string()),
            };
            let mut lines = report.trace_lines.clone();
            lines.push(format!("outcome: {verdict}"));
            lines.push(format!("trace_hash={:016x}", report.trace_hash));
            lines
        };
        let a = self.run_schedule(schedule, true, describe);
        let b = self.run_schedule(schedule, true, describe);
        match first_divergence(&lines(&a), &lines(&b)) {
            None if first.trace_hash == a.as_ref().map_or(0, |r| r.trace_hash) => Ok(first.clone()),
            None => Err(Failure {
                kind: crate::FailureKind::Nondeterminism,
                host: None,
                message: "a run with a full trace hashed differently from one without".into(),
                report: Box::new(first.clone()),
            }),
            Some(divergence) => Err(Failure {
                kind: crate::FailureKind::Nondeterminism,
                host: None,
                message: format!("the same seed ran twice and parted: {divergence}"),
                report: Box::new(first.clone()),
            }),
        }
    }
}

fn emit_trace(env: &Env, report: &Report) {
    let Some(target) = &env.trace else { return };
    let mut text = String::new();
    for line in &report.trace_lines {
        text.push_str(line);
        text.push('\n');
    }
    let _ = writeln!(text, "trace_hash={:016x}", report.trace_hash);
    if target == "1" {
        eprint!("{text}");
    } else if let Err(error) = std::fs::write(target, text) {
        eprintln!("IOLOOP_SIM_TRACE: cannot write {target}: {error}");
    }
}

/// Append the sweep's JSON line (and its failure's) to `IOLOOP_SIM_SUMMARY`.
fn write_summary(
    env: &Env,
    summary: &SweepSummary,
    failure: Option<&SweepFailure>,
    elapsed: Duration,
) {
    let Some(path) = &env.summary else { return };
    let mut line = String::from("{");
    let _ = write!(line, "\"test\":{}", json_string(&summary.name));
    let _ = write!(
        line,
        ",\"seeds\":{}",
        json_string(&format!("{}..{}", summary.seeds.start, summary.seeds.end))
    );
    match summary.shard {
        Some((i, n)) => {
            let _ = write!(line, ",\"shard\":{}", json_string(&format!("{i}/{n}")));
        }
        None => line.push_str(",\"shard\":null"),
    }
    let _ = write!(
        line,
        ",\"ran\":{},\"failed\":{},\"sim_events\":{},\"elapsed_s\":{:.3}",
        summary.ran,
        u8::from(failure.is_some()),
        summary.sim_events,
        elapsed.as_secs_f64()
    );
    let _ = write!(
        line,
        ",\"coverage\":{{{}}}",
        summary.coverage.json_members()
    );
    for (key, counts) in [
        ("faults_fired", &summary.faults_fired),
        ("faults_scripted", &summary.faults_scripted),
    ] {
        let _ = write!(line, ",\"{key}\":{{");
        for (index, (name, count)) in counts.iter().enumerate() {
            let comma = if index > 0 { "," } else { "" };
            let _ = write!(line, "{comma}{}:{count}", json_string(name));
        }
        line.push('}');
    }
    // Probes as `name: [seeds reached, hits]`: a sharded CI's merge job
    // sums them over the shards to check what a shard cannot.
    line.push_str(",\"probes\":{");
    for (index, (name, count)) in summary.probes.iter().enumerate() {
        let comma = if index > 0 { "," } else { "" };
        let _ = write!(
            line,
            "{comma}{}:[{},{}]",
            json_string(name),
            count.seeds,
            count.hits
        );
    }
    line.push('}');
    match failure {
        Some(failure) => {
            let _ = write!(
                line,
                ",\"failure\":{{\"seed\":{},\"kind\":{},\"message\":{},\"trace_hash\":{},\"replay\":{}}}",
                json_string(&format!("{:#x}", failure.seed)),
                json_string(failure.failure.kind.name()),
                json_string(&failure.failure.message),
                json_string(&format!("{:016x}", failure.failure.report.trace_hash)),
                json_string(&failure.replay)
            );
        }
        None => line.push_str(",\"failure\":null"),
    }
    line.push_str("}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!(
            "IOLOOP_SIM_SUMMARY: cannot append to {}: {error}",
            path.display()
        );
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_seeds_exactly_once() {
        let seeds = 10..1_000_010;
        let mut next = seeds.start;
        for index in 0..7 {
            let shard = shard_of(&seeds, (index, 7));
            assert_eq!(shard.start, next);
            next = shard.end;
        }
        assert_eq!(next, seeds.end);
        assert_eq!(shard_of(&(0..3), (4, 5)), 2..3);
    }

    /// `Env::from_lookup` over `vars`, as if they were the environment.
    fn env_of(vars: &[(&str, &str)]) -> Result<Env, String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Env::from_lookup(|name| {
            vars.get(name)
                .cloned()
                .ok_or(std::env::VarError::NotPresent)
        })
    }

    #[test]
    fn variables_are_read_blank_ones_as_unset() {
        let env = env_of(&[
            ("IOLOOP_SIM_SEED", " 0x1f "),
            ("IOLOOP_SIM_FAULTS", "   "),
            ("IOLOOP_SIM_LIVENESS_MS", "20"),
            ("IOLOOP_SIM_TRACE", "1"),
            ("IOLOOP_SIM_SHRINK", "0"),
            ("IOLOOP_SIM_CHECK_DETERMINISM", "1"),
        ])
        .unwrap();
        assert_eq!(env.seed, Some(31));
        assert_eq!(env.faults, None, "blank is unset");
        assert_eq!(env.liveness_ms, Some(20));
        assert_eq!(env.trace.as_deref(), Some("1"));
        assert_eq!(env.shrink, None, "0 is off");
        assert!(env.check_determinism);
        let off = env_of(&[("IOLOOP_SIM_TRACE", "0")]).unwrap();
        assert_eq!(off.trace, None);
        let longest = LIVENESS_MS_MAX.to_string();
        let at_most = env_of(&[("IOLOOP_SIM_LIVENESS_MS", &longest)]).unwrap();
        assert_eq!(at_most.liveness_ms, Some(LIVENESS_MS_MAX));
        let too_long = (LIVENESS_MS_MAX + 1).to_string();
        let error = env_of(&[("IOLOOP_SIM_LIVENESS_MS", &too_long)])
            .err()
            .unwrap();
        assert!(
            error.starts_with("IOLOOP_SIM_LIVENESS_MS: expected 0 to"),
            "{error}"
        );
        let both = env_of(&[("IOLOOP_SIM_SEED", "3"), ("IOLOOP_SIM_SCHEDULE", "f")]);
        assert!(both.err().unwrap().contains("both given"));
        let not_utf8 = Env::from_lookup(|name| match name {
            "IOLOOP_SIM_SEED" => Err(std::env::VarError::NotUnicode("\u{fffd}".into())),
            _ => Err(std::env::VarError::NotPresent),
        });
        assert_eq!(not_utf8.err().unwrap(), "IOLOOP_SIM_SEED is not UTF-8");
    }

    /// `Sweep::new(name)`, blind to the process's `IOLOOP_SIM_*`
    /// variables (a developer's exported `IOLOOP_SIM_SEEDS` must not change
    /// what these tests check).
    fn sweep(name: &str) -> Sweep {
        Sweep {
            reads_environment: false,
            ..Sweep::new(name)
        }
    }

    /// A host with nothing to do, and a client that is done at once
    /// after a timer (some events to count).
    fn idle(sim: &mut Sim) {
        sim.host("idle", "10.0.0.1", |_| Ok(()));
        sim.client("quick", "10.0.0.2", |io, done| {
            io.call_later(std::time::Duration::from_millis(5), move |_| done.ok());
            Ok(())
        });
    }

    #[test]
    fn jobs_other_than_one_need_a_parallel_run_and_stay_under_the_limit() {
        let sweep = || {
            sweep("jobs_other_than_one_need_a_parallel_run_and_stay_under_the_limit")
                .seeds(0..1)
                .faults(FaultPreset::None)
        };
        assert_eq!(sweep().jobs(1).try_run(idle).map(|s| s.ran).ok(), Some(1));
        match sweep().jobs(2).try_run(idle) {
            Err(SweepError::Config(message)) => {
                assert!(message.contains("needs run_parallel"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let most = sweep().jobs(JOBS_MAX).try_run_parallel(idle);
        assert_eq!(most.map(|s| s.ran).ok(), Some(1));
        match sweep().jobs(JOBS_MAX + 1).try_run_parallel(idle) {
            Err(SweepError::Config(message)) => {
                assert!(message.contains("at most 256 threads"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_summary_counts_each_fault_that_fired() {
        // Every fault on, and sockets for them to strike (a sweep with no
        // fault fired would prove nothing).
        let connects = |sim: &mut Sim| {
            let addr: std::net::SocketAddr = "10.0.0.1:7".parse().unwrap();
            sim.host("server", "10.0.0.1", move |io| {
                let on_stream =
                    |io: &mut ioloop::IOLoop<crate::SimPoller>,
                     stream: &mut ioloop::IOStream<crate::SimPoller>| {
                        let _ = stream.read_until_close(io, |_, _, _| {});
                    };
                ioloop::TcpServer::bind(io, addr, on_stream)?;
                Ok(())
            });
            sim.client("client", "10.0.0.2", move |io, done| {
                let timeout = std::time::Duration::from_secs(1);
                ioloop::TcpClient::connect(io, addr, timeout, (), move |io, stream, _| {
                    stream.close(io);
                    done.ok();
                });
                Ok(())
            });
        };
        let summary = sweep("a_summary_counts_each_fault_that_fired")
            .seeds(0..8)
            .faults(FaultPreset::All)
            .run(connects);
        let mut fired = 0;
        for kind in crate::FaultKind::ALL {
            let row = summary.coverage.row(kind).fired;
            let counted = summary.faults_fired.get(kind.name()).copied().unwrap_or(0);
            assert_eq!(counted, row, "{kind}: {:?}", summary.faults_fired);
            fired += row;
        }
        assert!(fired > 0);
    }

    #[test]
    fn a_summary_adds_up_its_seeds_events() {
        let events = |seeds: std::ops::Range<u64>| {
            sweep("a_summary_adds_up_its_seeds_events")
                .seeds(seeds)
                .faults(FaultPreset::None)
                .run(idle)
                .sim_events
        };
        let (first, second, both) = (events(0..1), events(1..2), events(0..2));
        assert!(first > 0 && second > 0, "{first} {second}");
        assert_eq!(both, first + second);
    }

    #[test]
    fn malformed_variables_are_named_errors() {
        assert!(parse_shard("3/3").is_err());
        assert!(parse_shard("1/0").is_err());
        assert!(parse_shard("x").is_err());
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        assert!(parse_seeds_var("5..5").is_err());
        assert!(parse_seeds_var("0").is_err());
        assert!(matches!(parse_seeds_var("0x10"), Ok(SeedsVar::Count(16))));
        assert!(matches!(parse_seeds_var("3..0x10"), Ok(SeedsVar::Range(r)) if r == (3..16)));
    }

    #[test]
    fn jobs_are_a_count_of_threads_up_to_the_limit() {
        assert_eq!(parse_jobs("0"), Ok(0));
        assert_eq!(parse_jobs("4"), Ok(4));
        assert_eq!(parse_jobs("256"), Ok(256));
        for bad in ["257", "-1", "many", "0x4", "2.5"] {
            let error = parse_jobs(bad).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn what_a_sweep_hands_between_threads_may_cross_them() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<Report>();
        send::<Failure>();
        send::<SweepSummary>();
        send::<SweepFailure>();
        send::<SweepError>();
        sync::<Sweep>();
        sync::<Env>();
    }

    #[test]
    fn the_replay_line_builds_the_profile_the_test_ran_in() {
        use std::path::Path;
        let option = |exe: &str| profile_option(Path::new(exe));
        assert_eq!(option("/w/target/debug/deps/sim-0123abcd"), None);
        assert_eq!(
            option("/w/target/release/deps/sim-0123abcd").as_deref(),
            Some("--release")
        );
        assert_eq!(
            option("/w/target/ci/deps/sim-0123abcd").as_deref(),
            Some("--profile ci")
        );
        // Not a test binary cargo built: nothing to say.
        assert_eq!(option("/usr/local/bin/sim"), None);
    }

    #[test]
    fn the_replay_line_carries_the_cargo_args_and_runs_ignored_tests() {
        let command = Sweep::new("some_test")
            .cargo_args("  --features   planted-bug ")
            .test_command();
        assert!(command.contains(" --features planted-bug --"), "{command}");
        assert!(
            command.ends_with(" some_test -- --exact --include-ignored --nocapture"),
            "{command}"
        );
        assert!(!Sweep::new("some_test")
            .test_command()
            .contains("--features"));
        // A profile the words name is not named twice.
        let command = Sweep::new("some_test")
            .cargo_args("--release --features x")
            .test_command();
        assert_eq!(command.matches("--release").count(), 1, "{command}");
    }

    #[test]
    fn the_replay_line_names_the_package_profile_and_target_of_the_binary() {
        let sweep = Sweep::new("kv_survives");
        let command = |exe: Option<&str>, sweep: &Sweep| {
            sweep.test_command_of("my-crate", &[], exe.map(PathBuf::from))
        };
        let tail = "kv_survives -- --exact --include-ignored --nocapture";
        assert_eq!(
            command(Some("/w/target/release/deps/kv-0123abcd"), &sweep),
            format!("cargo test -p my-crate --release --test kv {tail}")
        );
        assert_eq!(
            command(Some("/w/target/debug/deps/my_crate-0123abcd"), &sweep),
            format!("cargo test -p my-crate --lib {tail}"),
            "the library's unit tests"
        );
        assert_eq!(
            command(Some("/w/target/debug/deps/kv-zz"), &sweep),
            format!("cargo test -p my-crate --test kv-zz {tail}"),
            "no hash to strip"
        );
        assert_eq!(
            command(None, &sweep),
            format!("cargo test -p my-crate --test TARGET {tail}")
        );
        // A profile the cargo args name is not added again; any of them.
        for named in ["--release", "-r", "--profile ci"] {
            let with_args = Sweep::new("kv_survives").cargo_args(named);
            assert_eq!(
                command(Some("/w/target/release/deps/kv-0123abcd"), &with_args),
                format!("cargo test -p my-crate {named} --test kv {tail}")
            );
        }
    }

    #[test]
    fn the_replay_line_names_a_target_as_cargo_test_takes_it() {
        // A package laid out as cargo finds its targets: cargo builds
        // `tests/my-test.rs` as `my_test-HASH`, and `--test my_test` would
        // find no such target.
        let dir = temp_file("targets");
        let _ = std::fs::remove_dir_all(&dir);
        for folder in ["src/bin/admin-tool", "tests/big-suite"] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
        }
        for file in [
            "src/lib.rs",
            "src/main.rs",
            "src/bin/admin-tool/main.rs",
            "src/bin/load-gen.rs",
            "tests/my-test.rs",
            "tests/plain.rs",
            "tests/big-suite/main.rs",
            "tests/notes.txt",
        ] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"my-crate\"\n\n[[test]] # declared\nname = 'long-haul'\n\
             path = \"soak/long.rs\"\n\n[dev-dependencies]\nname = \"not-a-target\"\n",
        )
        .unwrap();
        let targets = package_targets(&dir, "my-crate");
        std::fs::remove_dir_all(&dir).unwrap();
        let option = |stem: &str| target_option(stem, "my-crate", &targets);
        assert_eq!(option("my_test"), "--test my-test");
        assert_eq!(option("plain"), "--test plain");
        assert_eq!(option("big_suite"), "--test big-suite");
        assert_eq!(option("long_haul"), "--test long-haul", "named in [[test]]");
        assert_eq!(
            option("my_crate"),
            "--lib --bin my-crate",
            "the library and the binary of one stem: both"
        );
        assert_eq!(option("load_gen"), "--bin load-gen");
        assert_eq!(option("admin_tool"), "--bin admin-tool");
        assert_eq!(option("not_a_target"), "--test not_a_target");
        assert_eq!(option("notes"), "--test notes", "not a target: the stem");

        // A library `[lib]` renames, and binaries `[[bin]]` declares: only
        // their `name` keys name targets.
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/main.rs"), "").unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"my-crate\"\n[ lib ]\n\"name\" = \"core-lib\"\npath = \"src/core.rs\"\n\
             [[bin]]\nname = \"srv\"\nalias = \"other-bin\"\n[[test]]\nname = \"\"\"\"\"\"\n\
             [[test]]\nname = \u{e9}t\u{e9}\n",
        )
        .unwrap();
        let targets = package_targets(&dir, "my-crate");
        std::fs::remove_dir_all(&dir).unwrap();
        let option = |stem: &str| target_option(stem, "my-crate", &targets);
        assert_eq!(option("core_lib"), "--lib");
        assert_eq!(
            option("my_crate"),
            "--bin my-crate",
            "src/main.rs; no library of that name"
        );
        assert_eq!(option("srv"), "--bin srv");
        assert_eq!(option("other_bin"), "--test other_bin", "not a name key");

        // A binary-only package: its unit tests are the binary's.
        let bin_only = [Target {
            kind: TargetKind::Bin,
            name: "my-crate".into(),
        }];
        assert_eq!(
            target_option("my_crate", "my-crate", &bin_only),
            "--bin my-crate"
        );
        // A library `[lib]` renames.
        let renamed = [Target {
            kind: TargetKind::Lib,
            name: "core-lib".into(),
        }];
        assert_eq!(target_option("core_lib", "my-crate", &renamed), "--lib");
        assert_eq!(
            target_option("my_crate", "my-crate", &renamed),
            "--test my_crate"
        );
        // Nothing known of the package: its own name is its library.
        assert_eq!(target_option("my_crate", "my-crate", &[]), "--lib");
        assert_eq!(target_option("my_test", "my-crate", &[]), "--test my_test");
    }

    #[test]
    fn json_strings_escape_what_they_must() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(
            json_string("a b\u{1f}"),
            "\"a b\\u001f\"",
            "a space is itself"
        );
    }

    /// A file in the temporary directory, this process's own.
    fn temp_file(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ioloop-sim-unit-{name}-{}", std::process::id()))
    }

    /// A plan that runs every seed of `seeds`, no faults.
    fn plan_of(seeds: Range<u64>) -> RunPlan {
        RunPlan {
            seeds: seeds.clone(),
            to_run: seeds,
            faults: FaultPreset::None,
            liveness_after: None,
        }
    }

    fn run_once(describe: impl FnOnce(&mut Sim)) -> Result<Report, Failure> {
        let mut sim = Sim::new(0, FaultPreset::None);
        describe(&mut sim);
        sim.run()
    }

    #[test]
    fn a_summary_says_whether_every_seed_of_the_sweep_ran() {
        let plan = plan_of(5..7);
        let idle = |sim: &mut Sim| {
            sim.host("a", "10.0.0.1", |_| Ok(()));
        };
        let tally_of = |vars: &[(&str, &str)], seeds: Range<u64>| {
            let env = env_of(vars).unwrap();
            let mut tally = Tally::new("t", &plan, &env);
            for seed in seeds {
                assert!(tally.take(&env, seed, run_once(idle)));
            }
            tally.summary
        };
        // Seeds not from 0: `end - start` is the sweep's length.
        let whole = tally_of(&[], 5..7);
        assert!(!whole.replay && whole.ran_every_seed());
        let replay = tally_of(&[("IOLOOP_SIM_SEED", "6")], 6..7);
        assert!(replay.replay && !replay.ran_every_seed());
        let shard = tally_of(&[("IOLOOP_SIM_SHARD", "1/2")], 5..7);
        assert!(
            !shard.replay && !shard.ran_every_seed(),
            "a shard is not the sweep"
        );
        assert!(!tally_of(&[], 5..6).ran_every_seed(), "one of two seeds");
    }

    #[test]
    fn a_trace_is_written_for_a_failure_or_for_the_seed_asked_for() {
        let path = temp_file("trace");
        let target = path.to_str().unwrap();
        let plan = plan_of(0..2);
        let failing = |sim: &mut Sim| {
            sim.client("c", "10.0.0.2", |_, done| {
                done.fail("planted");
                Ok(())
            });
        };
        let env = env_of(&[("IOLOOP_SIM_TRACE", target)]).unwrap();
        let mut tally = Tally::new("t", &plan, &env);
        assert!(tally.take(&env, 0, run_once(idle)));
        assert!(!path.exists(), "a passing seed of a sweep: no trace");
        let failed = run_once(failing);
        let hash = failed.as_ref().err().map(|f| f.report.trace_hash).unwrap();
        assert!(!tally.take(&env, 1, failed));
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().map(str::to_string);
        assert_eq!(last, Some(format!("trace_hash={hash:016x}")), "{text}");
        std::fs::remove_file(&path).unwrap();
        let env = env_of(&[("IOLOOP_SIM_TRACE", target), ("IOLOOP_SIM_SEED", "0")]).unwrap();
        let mut tally = Tally::new("t", &plan, &env);
        assert!(tally.take(&env, 0, run_once(idle)));
        assert!(
            path.exists(),
            "the seed asked for is traced though it passed"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_first_run_that_hashed_apart_from_the_traced_ones_is_nondeterminism() {
        let sweep =
            Sweep::new("a_first_run_that_hashed_apart_from_the_traced_ones_is_nondeterminism")
                .faults(FaultPreset::None);
        let schedule = Schedule::new(&sweep.name, 0, FaultPreset::None);
        let first = sweep.run_schedule(&schedule, false, &mut idle).unwrap();
        let same = sweep.check_determinism(&schedule, &first, &mut idle);
        assert_eq!(
            same.map(|report| report.trace_hash).ok(),
            Some(first.trace_hash)
        );
        // A first run unlike the two traced ones (whose runs agree).
        let mut later = |sim: &mut Sim| {
            sim.client("late", "10.0.0.3", |io, done| {
                io.call_later(std::time::Duration::from_millis(9), move |_| done.ok());
                Ok(())
            });
        };
        match sweep.check_determinism(&schedule, &first, &mut later) {
            Err(failure) => {
                assert_eq!(failure.kind, crate::FailureKind::Nondeterminism);
                assert!(failure.message.contains("hashed differently"), "{failure}");
            }
            Ok(_) => panic!("a different first run passed"),
        }
    }

    #[test]
    fn the_summary_line_lists_every_fault_that_fired() {
        let path = temp_file("summary");
        let env = env_of(&[("IOLOOP_SIM_SUMMARY", path.to_str().unwrap())]).unwrap();
        let mut summary = SweepSummary::new("t", 0..2, None);
        summary.faults_fired.insert("reset".into(), 2);
        summary.faults_fired.insert("clog".into(), 1);
        write_summary(&env, &summary, None, Duration::from_millis(5));
        let line = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(
            line.contains(r#""faults_fired":{"clog":1,"reset":2}"#),
            "{line}"
        );
        assert!(line.contains(r#""faults_scripted":{}"#), "{line}");
    }

    #[test]
    fn schedules_go_to_the_target_directory_or_else_here() {
        let root = temp_file("target-dir");
        let exe = root.join("target/debug/deps/t-0123abcd");
        assert_eq!(schedules_dir_for(Some(exe)), root.join("target/ioloop-sim"));
        assert!(root.join("target/ioloop-sim").is_dir());
        std::fs::remove_dir_all(&root).unwrap();
        // Where the directory cannot be made: here.
        let exe = PathBuf::from("/dev/null/target/debug/deps/t-0123abcd");
        assert_eq!(schedules_dir_for(Some(exe)), PathBuf::new());
        assert_eq!(schedules_dir_for(None), PathBuf::new());
    }

    #[test]
    fn a_sweep_prints_its_knobs_without_their_closure() {
        let sweep = Sweep::new("t").configure(|builder| builder);
        assert!(format!("{sweep:?}").contains("configure: Some(Configure(..))"));
    }
}
