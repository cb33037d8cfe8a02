//! Property tests through the simulator: echo correctness and handler-map
//! consistency, each with a planted-bug twin that the property must catch.
//!
//! Every failure prints an `IOLOOP_CASE=…` command that reruns exactly that
//! case. Case counts: `PROPTEST_CASES` (CI uses the defaults below; a
//! longer sweep is `PROPTEST_CASES=2000 cargo test --release -p ioloop-sim
//! --test properties`).

use std::cell::RefCell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use ioloop::planted::PlantedBug;
use ioloop_sim::model::{check_ops, ops_from_entropy, Exercised, Setup};
use ioloop_sim::scenario::planted::Bug;
use ioloop_sim::scenario::{run, RunConfig, Scenario, Workload};
use ioloop_sim::{Entropy, FaultPreset};

/// Total bytes one echo case may send, to keep a case fast in debug builds.
const ECHO_CASE_BYTES_MAX: usize = 2 << 20;

// ----- echo correctness ------------------------------------------------------------

/// One echo case: everything that determines the run.
#[derive(Clone, Debug)]
struct EchoCase {
    seed: u64,
    faults: FaultPreset,
    clients: usize,
    sizes: Vec<usize>,
}

impl EchoCase {
    fn encode(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(usize::to_string).collect();
        format!(
            "seed={:#x};faults={};clients={};sizes={}",
            self.seed,
            self.faults,
            self.clients,
            sizes.join(",")
        )
    }

    fn decode(text: &str) -> Result<EchoCase, String> {
        let mut case = EchoCase {
            seed: 0,
            faults: FaultPreset::None,
            clients: 1,
            sizes: vec![1],
        };
        for part in text.split(';') {
            let (key, value) = part.split_once('=').ok_or(format!("bad part {part:?}"))?;
            match key {
                "seed" => {
                    let hex = value.trim_start_matches("0x");
                    case.seed = u64::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                }
                "faults" => case.faults = value.parse()?,
                "clients" => case.clients = value.parse().map_err(|_| "bad clients")?,
                "sizes" => {
                    case.sizes = value
                        .split(',')
                        .map(|s| s.parse().map_err(|_| format!("bad size {s:?}")))
                        .collect::<Result<_, _>>()?
                }
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        Ok(case)
    }

    fn config(&self, scenario: Scenario) -> RunConfig {
        RunConfig {
            scenario,
            seed: self.seed,
            faults: self.faults,
            workload: Workload {
                message_sizes: self.sizes.clone(),
                ..Workload::random(self.clients, self.sizes.len(), 1)
            },
            trace_full: false,
            liveness_after: None,
        }
    }
}

/// Sizes from 1 B to 256 KiB, weighted toward the read buffer's edges.
fn message_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1..=64usize,
        (1..=8usize, -2..=2isize).prop_map(|(k, d)| (k * 1024).saturating_add_signed(d).max(1)),
        1..=16 * 1024usize,
        1..=256 * 1024usize,
    ]
}

fn echo_case() -> impl Strategy<Value = EchoCase> {
    let presets = prop_oneof![
        Just(FaultPreset::None),
        Just(FaultPreset::All),
        Just(FaultPreset::Swarm)
    ];
    (
        any::<u64>(),
        presets,
        proptest::collection::vec(message_size(), 1..=4),
    )
        .prop_flat_map(|(seed, faults, sizes)| {
            let per_client: usize = sizes.iter().sum();
            let clients_max = (ECHO_CASE_BYTES_MAX / per_client).clamp(1, 64);
            (1..=clients_max).prop_map(move |clients| EchoCase {
                seed,
                faults,
                clients,
                sizes: sizes.clone(),
            })
        })
}

/// Echo correctness: the scenario's checks (every byte back in order, or a
/// clean error under faults that break connections; the server left with
/// only its listener).
fn check_echo(case: &EchoCase, scenario: Scenario) -> Result<(), TestCaseError> {
    let config = case.config(scenario);
    match run(&config).failure {
        None => Ok(()),
        Some(failure) => Err(TestCaseError::fail(format!(
            "{failure}\n  replay: IOLOOP_CASE='{}' cargo test -p ioloop-sim --test properties echo_correctness\n  or: {}",
            case.encode(),
            config.replay_command()
        ))),
    }
}

/// A property's runner config: `default` cases unless PROPTEST_CASES says
/// otherwise; failures are saved under `proptest-regressions/` and rerun
/// first forever after (commit them).
fn cases(default: u32) -> Config {
    let from_env = std::env::var("PROPTEST_CASES").is_ok();
    Config {
        cases: if from_env {
            Config::default().cases
        } else {
            default
        },
        source_file: Some(file!()),
        ..Config::default()
    }
}

/// The config of a planted-bug twin: its failures are expected, not saved.
fn twin_cases(default: u32) -> Config {
    Config {
        failure_persistence: None,
        ..cases(default)
    }
}

#[test]
fn echo_correctness() {
    if let Ok(text) = std::env::var("IOLOOP_CASE") {
        let case = EchoCase::decode(&text).expect("IOLOOP_CASE");
        check_echo(&case, Scenario::Echo).unwrap();
        return;
    }
    let mut runner = TestRunner::new(cases(24));
    let result = runner.run(&echo_case(), |case| check_echo(&case, Scenario::Echo));
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn echo_property_catches_a_server_that_assumes_full_writes() {
    let mut runner = TestRunner::new(twin_cases(64));
    let scenario = Scenario::Planted(Bug::AssumeFullWrite);
    let result = runner.run(&echo_case(), |case| check_echo(&case, scenario));
    let message = result
        .expect_err("the planted bug went unnoticed")
        .to_string();
    // The printed case replays the same failure.
    let encoded = message
        .split("IOLOOP_CASE='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the failure names its case");
    let case = EchoCase::decode(encoded).unwrap();
    let again = check_echo(&case, scenario)
        .expect_err("the replayed case fails")
        .to_string();
    let reason = again
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("Case failed: ");
    assert!(
        message.contains(reason),
        "replayed: {reason}\nfirst: {message}"
    );
}

#[test]
fn echo_case_encoding_round_trips() {
    let case = EchoCase {
        seed: 0xdead_beef,
        faults: FaultPreset::Swarm,
        clients: 3,
        sizes: vec![1023, 1, 262_144],
    };
    let again = EchoCase::decode(&case.encode()).unwrap();
    assert_eq!(again.encode(), case.encode());
}

// ----- handler-map consistency -------------------------------------------------------

/// A model-based case: the operations are drawn from `seed`, `count` long;
/// proptest shrinks both toward small.
fn check_map(seed: u64, count: usize, setup: Option<Setup>) -> Result<Exercised, TestCaseError> {
    let ops = ops_from_entropy(&mut Entropy::seeded(seed), count);
    check_ops(&ops, setup).map_err(|why| {
        TestCaseError::fail(format!(
            "{why}\n  replay: IOLOOP_CASE='seed={seed:#x};ops={count}' cargo test -p ioloop-sim --test properties handler_map_matches_the_model\n  ops: {ops:?}"
        ))
    })
}

fn decode_map_case(text: &str) -> (u64, usize) {
    let mut seed = 0;
    let mut count = 0;
    for part in text.split(';') {
        match part.split_once('=') {
            Some(("seed", v)) => {
                seed = u64::from_str_radix(v.trim_start_matches("0x"), 16).expect("hex seed")
            }
            Some(("ops", v)) => count = v.parse().expect("op count"),
            _ => panic!("bad IOLOOP_CASE part {part:?}"),
        }
    }
    (seed, count)
}

#[test]
fn handler_map_matches_the_model() {
    if let Ok(text) = std::env::var("IOLOOP_CASE") {
        let (seed, count) = decode_map_case(&text);
        check_map(seed, count, None).unwrap();
        return;
    }
    let mut runner = TestRunner::new(cases(256));
    let total = RefCell::new(Exercised::default());
    let result = runner.run(&(any::<u64>(), 1..120usize), |(seed, count)| {
        total.borrow_mut().absorb(&check_map(seed, count, None)?);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    // A pass means something only if the cases did what the model checks:
    // added, called, updated and removed handlers, and met every refusal.
    let total = total.into_inner();
    assert!(
        total.added > 0
            && total.calls > 0
            && total.updated > 0
            && total.removed > 0
            && total.closed > 0
            && total.from_inside > 0,
        "the cases exercised too little: {total:?}"
    );
    for error in ["InvalidFd", "AlreadyRegistered", "NotRegistered", "Os"] {
        assert!(
            total.refused.get(error).is_some_and(|&n| n > 0),
            "no case was refused with {error}: {total:?}"
        );
    }
}

// The twins plant their bug in the loop itself (`IOLoop::plant_bug`, behind
// `ioloop`'s feature `planted-bugs`, which only this crate's dev-dependency
// turns on): the harness and the model are the very ones the property uses.

/// Run the handler-map property on a loop with `bug` planted; the first
/// failure must come from the check named `caught_by` (so each of the
/// model's checks is shown to catch a bug of its own, not just some check).
fn twin_of_handler_map(bug: PlantedBug, caught_by: &str) {
    let setup: Setup = match bug {
        PlantedBug::RemoveIsNoop => |io| io.plant_bug(PlantedBug::RemoveIsNoop),
        PlantedBug::DuplicateAddReplaces => |io| io.plant_bug(PlantedBug::DuplicateAddReplaces),
        PlantedBug::UpdateNeverNarrows => |io| io.plant_bug(PlantedBug::UpdateNeverNarrows),
        PlantedBug::PutBackByFd => |io| io.plant_bug(PlantedBug::PutBackByFd),
        other => panic!("no twin for {other:?}"),
    };
    let mut runner = TestRunner::new(twin_cases(256));
    let result = runner.run(&(any::<u64>(), 1..120usize), |(seed, count)| {
        check_map(seed, count, Some(setup)).map(drop)
    });
    match result {
        Err(TestError::Fail(why, _)) => assert!(
            why.message().contains(caught_by),
            "{bug:?} was caught, but not by {caught_by:?}: {why}"
        ),
        other => panic!("the planted bug {bug:?} went unnoticed: {other:?}"),
    }
}

#[test]
fn handler_map_property_catches_a_reactor_whose_remove_does_nothing() {
    // The table comparison after the step.
    twin_of_handler_map(PlantedBug::RemoveIsNoop, "loop table");
}

#[test]
fn handler_map_property_catches_a_reactor_whose_duplicate_add_replaces() {
    // The error the model expects from `add_handler`.
    twin_of_handler_map(
        PlantedBug::DuplicateAddReplaces,
        "got Ok(()), model expects Err(\"AlreadyRegistered\")",
    );
}

#[test]
fn handler_map_property_catches_a_reactor_that_puts_a_handler_back_by_fd_number() {
    // The registration each handler call is checked against.
    twin_of_handler_map(PlantedBug::PutBackByFd, "ran, but the model holds Some");
}

#[test]
fn handler_map_property_catches_a_reactor_whose_update_never_narrows() {
    // The interest each handler call is checked against.
    twin_of_handler_map(PlantedBug::UpdateNeverNarrows, "outside its interest");
}
