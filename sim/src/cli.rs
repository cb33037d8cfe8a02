//! The `sim` command line: parsing (clap) and execution, shared by the binary and the `sim_args` fuzz target.

use std::io::Write;
use std::ops::Range;
use std::time::Instant;

use crate::parallel::{self, for_each_outcome, JOBS_MAX};
use crate::scenario::{self, RunConfig, Scenario, Workload};
use crate::sim::panic_message;
use crate::{FaultCoverage, FaultPreset};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "sim",
    about = "Run ioloop scenarios on the simulated network",
    version
)]
/// The `sim` command line.
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by `run` and `replay`.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Scenario to run (see `sim list`).
    #[arg(long, value_parser = Scenario::from_name)]
    pub scenario: Option<Scenario>,
    /// Fault preset: none, all, or swarm (each seed draws its own faults).
    #[arg(long, default_value = "swarm", value_parser = parse_preset)]
    pub faults: FaultPreset,
    /// Simulated clients.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=scenario::CLIENTS_MAX))]
    pub clients: u64,
    /// Messages per client, sent ping-pong.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=scenario::MESSAGES_MAX))]
    pub messages: u64,
    /// Largest message in bytes (sizes are drawn from 1 to this).
    #[arg(long = "message-bytes", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=scenario::MESSAGE_BYTES_MAX))]
    pub message_bytes: u64,
    /// Explicit message sizes, comma-separated (overrides --message-bytes):
    /// message j of client i has the size at (i + j) mod the list's length.
    #[arg(long = "message-sizes", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=scenario::MESSAGE_BYTES_MAX))]
    pub message_sizes: Vec<u64>,
    /// Liveness phase: stop all faults after this many ms of virtual time,
    /// then require the run to settle within 10 s.
    #[arg(long = "liveness-after-ms", value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub liveness_after_ms: Option<u64>,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run a range of seeds; print one line per failure with its replay command.
    Run {
        /// Scenario, faults and workload.
        #[command(flatten)]
        common: Common,
        /// Seeds to run, as START..END (END excluded); decimal or 0x-hex.
        #[arg(long, default_value = "0..1000", value_parser = parse_seeds)]
        seeds: Range<u64>,
        /// Succeed only if some seed fails (for planted bugs); stop at the first failure.
        #[arg(long)]
        expect_failure: bool,
        /// Fail if a fault kind some seed enabled never fired in any seed.
        #[arg(long)]
        require_faults_fire: bool,
        /// Print each seed's trace hash and event count (to compare two
        /// builds, or two machines, seed by seed).
        #[arg(long)]
        hashes: bool,
        /// Seeds to run at once, each on its own thread (0, the default:
        /// one per CPU). Every seed runs as it would alone, and the report
        /// is the same, line for line, whatever the number; only seeds/s
        /// changes.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=JOBS_MAX as i64))]
        jobs: u16,
    },
    /// Rerun one seed; print its outcome and trace hash.
    Replay {
        /// Scenario, faults and workload.
        #[command(flatten)]
        common: Common,
        /// The seed, decimal or 0x-hex.
        #[arg(long, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Print every decision of the run.
        #[arg(long)]
        trace: bool,
        /// Replay a schedule file written by `sim shrink` (it names the
        /// scenario, seed and workload itself).
        #[arg(long, conflicts_with = "seed")]
        schedule: Option<std::path::PathBuf>,
    },
    /// Shrink a failing seed to the fewest faults, clients and messages that
    /// still fail the same way; write the schedule to a file.
    Shrink {
        /// Scenario, faults and workload.
        #[command(flatten)]
        common: Common,
        /// The failing seed, decimal or 0x-hex.
        #[arg(long, value_parser = parse_seed)]
        seed: u64,
        /// Where to write the schedule (default: SCENARIO-SEED.schedule).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Run each seed twice and name the first decision where the runs part.
    CheckDeterminism {
        /// Scenario, faults and workload.
        #[command(flatten)]
        common: Common,
        /// Seeds to check, as START..END (END excluded).
        #[arg(long, default_value = "0..20", value_parser = parse_seeds)]
        seeds: Range<u64>,
        /// Run both copies in this process instead of two new processes.
        #[arg(long)]
        in_process: bool,
        /// Succeed only if some seed diverges (for the planted non-determinism).
        #[arg(long)]
        expect_divergence: bool,
    },
    /// Name the scenarios.
    List,
}

fn parse_preset(s: &str) -> Result<FaultPreset, String> {
    s.parse()
}

fn parse_seed(s: &str) -> Result<u64, String> {
    crate::shrink::parse_seed(s)
}

fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let (start, end) = s
        .split_once("..")
        .ok_or_else(|| format!("seeds must be START..END, got {s:?}"))?;
    let range = parse_seed(start)?..parse_seed(end)?;
    if range.is_empty() {
        return Err(format!(
            "empty seed range {s:?}: END must be greater than START"
        ));
    }
    Ok(range)
}

fn config(common: &Common, scenario: Scenario, seed: u64, trace_full: bool) -> RunConfig {
    RunConfig {
        scenario,
        seed,
        faults: common.faults,
        workload: Workload {
            message_sizes: common.message_sizes.iter().map(|&n| n as usize).collect(),
            ..Workload::random(
                common.clients as usize,
                common.messages as usize,
                common.message_bytes as usize,
            )
        },
        trace_full,
        liveness_after: common
            .liveness_after_ms
            .map(std::time::Duration::from_millis),
    }
}

/// Parse a command line (`args` without the program name). Bad arguments
/// give a clap error, never a panic.
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(
        std::iter::once(std::ffi::OsString::from("sim")).chain(args.into_iter().map(Into::into)),
    )
}

/// Carry out a parsed command, writing its report to `out`; returns the
/// exit status (0 success, 1 a failed seed).
pub fn execute(cli: &Cli, out: &mut dyn Write) -> u8 {
    match &cli.command {
        Command::List => {
            for scenario in Scenario::all() {
                let kind = if scenario.expects_failure() {
                    "must fail"
                } else if scenario.expects_divergence() {
                    "diverges"
                } else if scenario.expects_liveness_failure() {
                    "livelocks"
                } else {
                    "must pass"
                };
                let _ = writeln!(
                    out,
                    "{:<26} {kind:<9}  {}",
                    scenario.name(),
                    scenario.describe()
                );
            }
            0
        }
        Command::Replay {
            schedule: Some(path),
            trace,
            ..
        } => replay_schedule(path, *trace, out),
        Command::Replay {
            common,
            seed,
            trace,
            ..
        } => match (scenario_of(common, out), seed) {
            (Some(scenario), Some(seed)) => replay(&config(common, scenario, *seed, *trace), out),
            (Some(_), None) => usage(out, "--seed (or --schedule) is required"),
            (None, _) => 2,
        },
        Command::Run {
            common,
            seeds,
            expect_failure,
            require_faults_fire,
            hashes,
            jobs,
        } => match scenario_of(common, out) {
            Some(scenario) => {
                let flags = RunFlags {
                    expect_failure: *expect_failure,
                    hashes: *hashes,
                    jobs: parallel::threads(usize::from(*jobs)),
                };
                let verdict = run(common, scenario, seeds.clone(), flags, out);
                match verdict {
                    (0, coverage)
                        if *require_faults_fire && !coverage.enabled_never_fired().is_empty() =>
                    {
                        let _ = writeln!(
                            out,
                            "FAIL: enabled faults never fired (--require-faults-fire)"
                        );
                        1
                    }
                    (status, _) => status,
                }
            }
            None => 2,
        },
        Command::CheckDeterminism {
            common,
            seeds,
            in_process,
            expect_divergence,
        } => match scenario_of(common, out) {
            Some(scenario) => check_determinism(
                common,
                scenario,
                seeds.clone(),
                *in_process,
                *expect_divergence,
                out,
            ),
            None => 2,
        },
        Command::Shrink {
            common,
            seed,
            out: path,
        } => match scenario_of(common, out) {
            Some(scenario) => shrink(&config(common, scenario, *seed, false), path.clone(), out),
            None => 2,
        },
    }
}

/// A usage error: the message, and exit status 2.
fn usage(out: &mut dyn Write, message: &str) -> u8 {
    let _ = writeln!(out, "error: {message}");
    2
}

/// The scenario a command needs, or a usage error.
fn scenario_of(common: &Common, out: &mut dyn Write) -> Option<Scenario> {
    if common.scenario.is_none() {
        usage(out, "--scenario is required (see `sim list`)");
    }
    common.scenario
}

fn shrink(config: &RunConfig, path: Option<std::path::PathBuf>, out: &mut dyn Write) -> u8 {
    let report = match scenario::shrink(config) {
        Ok(report) => report,
        Err(error) => return usage(out, &error),
    };
    let path =
        path.unwrap_or_else(|| format!("{}-{:#x}.schedule", config.scenario, config.seed).into());
    let replay = format!(
        "cargo run -p ioloop-sim --release -- replay --schedule {}",
        path.display()
    );
    let text = report
        .schedule
        .to_text(&replay, Some(&report.failure), &report.fired);
    if let Err(error) = std::fs::write(&path, &text) {
        return usage(out, &format!("cannot write {}: {error}", path.display()));
    }
    let param = |params: &[(String, String)], key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map_or("?".to_string(), |(_, v)| v.clone())
    };
    let (before, after) = (&report.params_before, &report.schedule.params);
    let _ = writeln!(
        out,
        "shrunk in {} runs: {} of {} faults remain; clients {} of {}; messages {} of {}",
        report.runs,
        report.schedule.fire.len(),
        report.faults_before,
        param(after, "clients"),
        param(before, "clients"),
        param(after, "messages"),
        param(before, "messages"),
    );
    if let Some(note) = report.note() {
        let _ = writeln!(out, "{note}");
    }
    let _ = write!(out, "{text}");
    let _ = writeln!(out, "wrote {}\nreplay: {replay}", path.display());
    0
}

fn replay_schedule(path: &std::path::Path, trace: bool, out: &mut dyn Write) -> u8 {
    let text = match read_bounded(path) {
        Ok(text) => text,
        Err(error) => return usage(out, &format!("cannot read {}: {error}", path.display())),
    };
    let schedule = match crate::shrink::Schedule::parse(&text) {
        Ok(schedule) => schedule,
        Err(error) => return usage(out, &format!("{}: {error}", path.display())),
    };
    let (config, outcome) = match scenario::run_schedule(&schedule, trace) {
        Ok(run) => run,
        Err(error) => return usage(out, &format!("{}: {error}", path.display())),
    };
    for fault in &outcome.fired {
        let _ = writeln!(
            out,
            "fault {} {fault}",
            crate::shrink::draw_name(fault.draw)
        );
    }
    report_outcome(&config, &outcome, out)
}

/// A schedule file's text, refusing more than a schedule may hold (so that
/// `--schedule /dev/zero` fails instead of hanging).
fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let limit = crate::shrink::SCHEDULE_BYTES_MAX as u64;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than a schedule may be ({limit} bytes)"
        )));
    }
    Ok(text)
}

fn check_determinism(
    common: &Common,
    scenario: Scenario,
    seeds: Range<u64>,
    in_process: bool,
    expect_divergence: bool,
    out: &mut dyn Write,
) -> u8 {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            let _ = writeln!(out, "cannot find the sim binary: {error}");
            return 2;
        }
    };
    let (mut checked, mut diverged) = (0u64, 0u64);
    for seed in seeds {
        let config = config(common, scenario, seed, false);
        let result = if in_process {
            crate::determinism::check_in_process(&config)
        } else {
            match crate::determinism::check_in_processes(&exe, &config) {
                Ok(result) => result,
                Err(error) => {
                    let _ = writeln!(out, "{error}");
                    return 2;
                }
            }
        };
        checked += 1;
        if let Err(divergence) = result {
            diverged += 1;
            let _ = writeln!(
                out,
                "DIVERGED seed={seed:#x}: {divergence}\n  replay: {} --trace",
                config.replay_command()
            );
            if expect_divergence {
                break;
            }
        }
    }
    let mode = if in_process {
        "in one process"
    } else {
        "in two processes"
    };
    let _ = writeln!(out, "seeds={checked} diverged={diverged} ({mode})");
    let passed = if expect_divergence {
        diverged > 0
    } else {
        diverged == 0
    };
    u8::from(!passed)
}

fn replay(config: &RunConfig, out: &mut dyn Write) -> u8 {
    let outcome = scenario::run(config);
    report_outcome(config, &outcome, out)
}

/// The trace (if kept), the run's identity and plan, its verdict, and the
/// trace hash, last.
fn report_outcome(config: &RunConfig, outcome: &scenario::Outcome, out: &mut dyn Write) -> u8 {
    for line in &outcome.trace_lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "scenario={} seed={:#x} faults={} version={}",
        config.scenario,
        config.seed,
        config.faults,
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "plan: {} (plan_hash={:016x})",
        outcome.plan,
        outcome.plan.hash()
    );
    if let Some(network) = &outcome.network_faults {
        let _ = writeln!(out, "network: {network}");
    }
    let _ = writeln!(
        out,
        "virtual_time={:?} sim_events={}",
        outcome.virtual_time.since_epoch(),
        outcome.sim_events
    );
    let status = match &outcome.failure {
        Some(failure) => {
            let _ = writeln!(out, "FAILED: {failure}");
            1
        }
        None => {
            let _ = writeln!(out, "ok");
            0
        }
    };
    let _ = writeln!(out, "trace_hash={:016x}", outcome.trace_hash);
    status
}

/// How `sim run` runs and reports.
#[derive(Clone, Copy)]
struct RunFlags {
    /// Pass only if some seed fails; stop at the first failure.
    expect_failure: bool,
    /// A line per seed with its trace hash.
    hashes: bool,
    /// Threads running seeds at once.
    jobs: usize,
}

fn run(
    common: &Common,
    scenario: Scenario,
    seeds: Range<u64>,
    flags: RunFlags,
    out: &mut dyn Write,
) -> (u8, FaultCoverage) {
    let RunFlags {
        expect_failure,
        hashes,
        jobs,
    } = flags;
    let mut coverage = FaultCoverage::new();
    let progress = ProgressBar::new(seeds.end - seeds.start);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Wall clock for the seeds/s report only; no simulated run reads it.
    let started = Instant::now();
    let (mut ran, mut failed, mut sim_events) = (0u64, 0u64, 0u64);
    let mut panicked = false;
    // Each outcome, in seed order whatever the number of jobs: the report
    // is the same with one thread or many.
    let mut take = |seed: u64, outcome: Result<scenario::Outcome, parallel::Panic>| -> bool {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(payload) => {
                let message = panic_message(&*payload);
                // The simulator's own bug, not the scenario's: say where,
                // and stop.
                ran += 1;
                failed += 1;
                panicked = true;
                progress.suspend(|| {
                    let _ = writeln!(
                        out,
                        "FAIL seed={seed:#x} version={}: the simulator panicked: {message}\n  replay: {}",
                        env!("CARGO_PKG_VERSION"),
                        config(common, scenario, seed, false).replay_command()
                    );
                });
                return false;
            }
        };
        ran += 1;
        sim_events += outcome.sim_events;
        coverage.add_run(
            &outcome.plan,
            outcome.network_faults.as_ref(),
            &outcome.fired,
        );
        progress.inc(1);
        if hashes {
            progress.suspend(|| {
                let _ = writeln!(
                    out,
                    "seed={seed:#x} trace_hash={:016x} sim_events={}",
                    outcome.trace_hash, outcome.sim_events
                );
            });
        }
        let Some(failure) = outcome.failure else {
            return true;
        };
        failed += 1;
        progress.suspend(|| {
            let _ = writeln!(
                out,
                "FAIL seed={seed:#x} plan_hash={:016x} version={}: {failure}\n  plan: {}{}\n  replay: {}",
                outcome.plan.hash(),
                env!("CARGO_PKG_VERSION"),
                outcome.plan,
                outcome
                    .network_faults
                    .as_ref()
                    .map(|network| format!("\n  network: {network}"))
                    .unwrap_or_default(),
                config(common, scenario, seed, false).replay_command()
            );
        });
        !expect_failure
    };
    for_each_outcome(
        seeds,
        jobs,
        |seed| scenario::run(&config(common, scenario, seed, false)),
        &mut take,
    );
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let _ = writeln!(
                    out,
        "seeds={ran} failed={failed} sim_events={sim_events} seeds_per_s={:.0} sim_events_per_s={:.0}",
        ran as f64 / seconds,
        sim_events as f64 / seconds
    );
    let passed = if panicked {
        false
    } else if expect_failure {
        failed > 0
    } else {
        failed == 0
    };
    if expect_failure && !passed {
        let _ = writeln!(
            out,
            "expected a failure from {scenario}, but every seed passed"
        );
    }
    let _ = write!(out, "{coverage}");
    (u8::from(!passed), coverage)
}
