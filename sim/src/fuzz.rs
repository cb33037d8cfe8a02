//! The bodies of the cargo-fuzz targets, here so that a stable `cargo test`
//! replays every corpus file through the very same code.
//!
//! Each function panics on a finding: a checker violation, a wrong echo, or
//! a panic inside the code under test.

use crate::cli;
use crate::model::{check_ops, ops_from_entropy};
use crate::scenario::{self, RunConfig, Scenario, Workload};
use crate::{Entropy, FaultPlan, FaultPreset};

/// Operations on a loop, decoded from `data`, checked against the model
/// after every step.
pub fn handler_ops(data: &[u8]) {
    let mut entropy = Entropy::from_bytes(data);
    let count = (data.len() / 4).min(256);
    let ops = ops_from_entropy(&mut entropy, count);
    if let Err(why) = check_ops(&ops, None) {
        panic!("the handler map left the model: {why}\nops: {ops:?}");
    }
}

/// The echo scenario with every decision — fault plan included — taken
/// from `data`.
pub fn sim_schedule(data: &[u8]) {
    let config = RunConfig {
        scenario: Scenario::Echo,
        seed: 0,
        faults: FaultPreset::Swarm,
        workload: Workload::random(4, 4, 3000),
        trace_full: false,
        liveness_after: None,
    };
    let outcome = scenario::run_from_bytes(&config, data);
    if let Some(failure) = outcome.failure {
        panic!(
            "echo failed under a fuzzed schedule: {failure}\nplan: {}",
            outcome.plan
        );
    }
}

/// `data` as a `sim` command line (before the first NUL byte) and a raw
/// fault plan (after it). Bad input must give an error, never a panic or a
/// hang; runs are bounded to a few small seeds.
pub fn sim_args(data: &[u8]) {
    let (line, rest) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let line = String::from_utf8_lossy(line);
    if let Ok(mut parsed) = cli::parse(line.split_whitespace()) {
        if bound(&mut parsed) {
            cli::execute(&parsed, &mut std::io::sink());
        }
    }
    if !rest.is_empty() {
        // Any plan, however odd (zero window, inverted latency), must run
        // to a verdict.
        let mut entropy = Entropy::from_bytes(rest);
        let plan = raw_plan(&mut entropy);
        let config = RunConfig {
            scenario: Scenario::Echo,
            seed: 0,
            faults: FaultPreset::None,
            workload: Workload::random(2, 2, 512),
            trace_full: false,
            liveness_after: None,
        };
        let _ = scenario::run_with_plan(&config, entropy, plan);
    }
}

/// Keep a fuzzed command small: at most two seeds of a small workload.
/// Returns `false` for commands that touch files (`shrink` writes one,
/// `replay --schedule` reads one), which are parsed but not run.
fn bound(parsed: &mut cli::Cli) -> bool {
    let common = match &mut parsed.command {
        cli::Command::Shrink { .. }
        | cli::Command::Replay {
            schedule: Some(_), ..
        } => return false,
        cli::Command::Run { common, seeds, .. } => {
            seeds.end = seeds.end.min(seeds.start.saturating_add(2));
            common
        }
        cli::Command::Replay { common, .. } => common,
        cli::Command::CheckDeterminism {
            common,
            seeds,
            in_process,
            ..
        } => {
            // Never spawn processes from a fuzz target.
            *in_process = true;
            seeds.end = seeds.end.min(seeds.start.saturating_add(1));
            common
        }
        cli::Command::List => return true,
    };
    common.clients = common.clients.min(4);
    common.messages = common.messages.min(4);
    common.message_bytes = common.message_bytes.min(4096);
    common.message_sizes.truncate(4);
    for size in &mut common.message_sizes {
        *size = (*size).min(4096);
    }
    true
}

/// A fault plan with every field drawn raw, out-of-range values included.
fn raw_plan(entropy: &mut Entropy) -> FaultPlan {
    let mut ppm = || entropy.below(1_100_000) as u32;
    FaultPlan {
        partial_read: ppm(),
        partial_write: ppm(),
        interrupt: ppm(),
        spurious: ppm(),
        reset: ppm(),
        refuse_connect: ppm(),
        accept_emfile: ppm(),
        accept_aborted: ppm(),
        half_close: ppm(),
        shuffle: ppm(),
        latency_us_min: entropy.below(100_000),
        latency_us_max: entropy.below(100_000),
        window_bytes: entropy.below(1 << 20) as usize,
    }
}
