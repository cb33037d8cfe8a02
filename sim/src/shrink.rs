//! Shrinking a failing run: keep only the faults (and clients and messages) the failure needs.
//!
//! A run's faults are identified by the index of the fault decision that
//! fired them. A [`Schedule`] is a seed plus the set of decisions that
//! fire; every other decision (latency, sizes, partial amounts) still comes
//! from the seed. The shrinker removes faults by delta debugging (halves,
//! then smaller chunks) and tries fewer clients and messages, keeping each
//! step only if the run still fails the same way. Removing a partial read
//! or write merges the split operation back into one.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use crate::net::FiredFault;
use crate::scenario::{self, Outcome, RunConfig, Scenario, Workload};

/// Runs a shrink may take.
pub const SHRINK_RUNS_MAX: usize = 2_000;

/// A seed and exactly which fault decisions fire.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Scenario, seed, preset and workload.
    pub config: RunConfig,
    /// Indices of the fault decisions that fire.
    pub fire: BTreeSet<u64>,
}

/// What a shrink found.
pub struct ShrinkReport {
    /// The smallest schedule found that fails the same way.
    pub schedule: Schedule,
    /// The failure the shrunk schedule gives.
    pub failure: String,
    /// The faults it fires, for the report.
    pub fired: Vec<FiredFault>,
    /// Faults in the original run.
    pub faults_before: usize,
    /// Clients and messages in the original run.
    pub workload_before: (usize, usize),
    /// Runs made.
    pub runs: usize,
}

/// The kind of a failure: what must stay the same while shrinking.
pub fn failure_kind(failure: &str) -> &str {
    for kind in [
        "wrong echo",
        "connection failed",
        "server leaks",
        "panicked",
        "liveness",
        "violations",
        "differ",
    ] {
        if failure.contains(kind) {
            return kind;
        }
    }
    failure.split_whitespace().next().unwrap_or("")
}

impl Schedule {
    /// Replay the schedule.
    pub fn run(&self) -> Outcome {
        scenario::run_scheduled(&self.config, &self.fire)
    }

    /// The schedule as a small, readable file; `fired` annotates each
    /// fault with what it was.
    pub fn to_text(&self, failure: Option<&str>, fired: &[FiredFault]) -> String {
        let mut text = String::from("# ioloop-sim schedule; replay: sim replay --schedule FILE\n");
        if let Some(failure) = failure {
            let _ = writeln!(text, "# fails: {failure}");
        }
        let config = &self.config;
        let _ = writeln!(text, "scenario {}", config.scenario);
        let _ = writeln!(text, "seed {:#x}", config.seed);
        let _ = writeln!(text, "faults {}", config.faults);
        let _ = writeln!(text, "clients {}", config.workload.clients);
        let _ = writeln!(text, "messages {}", config.workload.messages);
        let _ = writeln!(text, "message-bytes {}", config.workload.message_bytes_max);
        if !config.workload.message_sizes.is_empty() {
            let _ = writeln!(
                text,
                "message-sizes {}",
                config.workload.message_sizes_csv()
            );
        }
        if let Some(after) = config.liveness_after {
            let _ = writeln!(text, "liveness-after-ms {}", after.as_millis());
        }
        for draw in &self.fire {
            match fired.iter().find(|f| f.draw == *draw) {
                Some(f) => {
                    let _ = writeln!(
                        text,
                        "fire {draw}  # {} host{} {:?} at {:?}",
                        f.kind, f.host, f.fd, f.at
                    );
                }
                None => {
                    let _ = writeln!(text, "fire {draw}");
                }
            }
        }
        text
    }

    /// Read a schedule written by [`Schedule::to_text`].
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let mut scenario = None;
        let mut config = RunConfig {
            scenario: Scenario::Echo,
            seed: 0,
            faults: crate::FaultPreset::Swarm,
            workload: Workload::random(10, 10, 4096),
            trace_full: false,
            liveness_after: None,
        };
        let mut fire = BTreeSet::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
                .ok_or_else(|| format!("line {}: expected `key value`: {line:?}", number + 1))?;
            let bad = |what: &str| format!("line {}: bad {what}: {value:?}", number + 1);
            let count = |what: &str| value.parse::<usize>().map_err(|_| bad(what));
            match key {
                "scenario" => scenario = Some(Scenario::from_name(value)?),
                "seed" => {
                    let hex = value.trim_start_matches("0x");
                    config.seed = u64::from_str_radix(hex, 16).map_err(|_| bad("seed"))?;
                }
                "faults" => config.faults = value.parse()?,
                "clients" => config.workload.clients = count("client count")?.max(1),
                "messages" => config.workload.messages = count("message count")?.max(1),
                "message-bytes" => {
                    config.workload.message_bytes_max = count("message size")?.max(1)
                }
                "message-sizes" => {
                    config.workload.message_sizes = value
                        .split(',')
                        .map(|v| v.trim().parse().map_err(|_| bad("message size")))
                        .collect::<Result<_, _>>()?
                }
                "liveness-after-ms" => {
                    config.liveness_after =
                        Some(Duration::from_millis(value.parse().map_err(|_| bad("ms"))?))
                }
                "fire" => {
                    fire.insert(value.parse().map_err(|_| bad("fault index"))?);
                }
                other => return Err(format!("line {}: unknown key {other:?}", number + 1)),
            }
        }
        config.scenario = scenario.ok_or("the schedule names no scenario")?;
        Ok(Schedule { config, fire })
    }
}

/// Shrink the failing run `config`; `Err` if it does not fail.
pub fn shrink(config: &RunConfig) -> Result<ShrinkReport, String> {
    let first = scenario::run(config);
    let failure = first
        .failure
        .clone()
        .ok_or("this seed does not fail: nothing to shrink")?;
    let kind = failure_kind(&failure).to_string();
    let mut shrinker = Shrinker {
        kind,
        runs: 1,
        best: Schedule {
            config: config.clone(),
            fire: draws(&first.fired),
        },
        best_outcome: first,
    };
    let faults_before = shrinker.best.fire.len();
    shrinker.shrink_workload();
    shrinker.shrink_faults();
    shrinker.shrink_workload();
    let Shrinker {
        best,
        best_outcome,
        runs,
        ..
    } = shrinker;
    Ok(ShrinkReport {
        failure: best_outcome.failure.clone().unwrap_or_default(),
        fired: best_outcome.fired,
        schedule: best,
        faults_before,
        workload_before: (config.workload.clients, config.workload.messages),
        runs,
    })
}

fn draws(fired: &[FiredFault]) -> BTreeSet<u64> {
    fired.iter().map(|f| f.draw).collect()
}

struct Shrinker {
    kind: String,
    runs: usize,
    best: Schedule,
    best_outcome: Outcome,
}

impl Shrinker {
    /// Try `candidate`; keep it if it fails the same way.
    fn try_keep(&mut self, candidate: Schedule) -> bool {
        if self.runs >= SHRINK_RUNS_MAX {
            return false;
        }
        self.runs += 1;
        let outcome = candidate.run();
        let same = outcome
            .failure
            .as_deref()
            .is_some_and(|failure| failure_kind(failure) == self.kind);
        if same {
            // Keep only the faults that actually fired on the new path.
            self.best = Schedule {
                fire: draws(&outcome.fired),
                ..candidate
            };
            self.best_outcome = outcome;
        }
        same
    }

    /// Fewer clients, then fewer messages, smallest first.
    fn shrink_workload(&mut self) {
        for field in [0, 1] {
            let current =
                |s: &Schedule| [s.config.workload.clients, s.config.workload.messages][field];
            let mut size = 1;
            while size < current(&self.best) {
                let mut candidate = self.best.clone();
                let workload = &mut candidate.config.workload;
                *[&mut workload.clients, &mut workload.messages][field] = size;
                if !self.try_keep(candidate) {
                    size = (size * 2).max(size + 1);
                }
            }
        }
    }

    /// Delta debugging over the faults that fire.
    fn shrink_faults(&mut self) {
        let mut chunks = 2;
        while !self.best.fire.is_empty() && self.runs < SHRINK_RUNS_MAX {
            let items: Vec<u64> = self.best.fire.iter().copied().collect();
            let chunk_len = items.len().div_ceil(chunks.min(items.len()));
            let mut removed = false;
            for part in items.chunks(chunk_len) {
                let mut candidate = self.best.clone();
                for draw in part {
                    candidate.fire.remove(draw);
                }
                if self.try_keep(candidate) {
                    chunks = (chunks - 1).max(2);
                    removed = true;
                    break;
                }
            }
            if !removed {
                if chunks >= items.len() {
                    return;
                }
                chunks = (chunks * 2).min(items.len());
            }
        }
    }
}
