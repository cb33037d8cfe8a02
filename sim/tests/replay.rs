//! Determinism and the `sim` command, tested across processes.

use std::process::Command;

fn sim(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .output()
        .expect("run the sim binary");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

fn trace_hash(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("trace_hash="))
        .unwrap_or_else(|| panic!("no trace_hash in {output}"))
        .to_string()
}

#[test]
fn same_seed_in_two_processes_gives_the_same_trace_hash() {
    for seed in ["0x1", "0x2a", "12345"] {
        let args = [
            "replay",
            "--scenario",
            "echo",
            "--faults",
            "swarm",
            "--seed",
            seed,
        ];
        let (code_a, first) = sim(&args);
        let (code_b, second) = sim(&args);
        assert_eq!(code_a, 0, "{first}");
        assert_eq!(code_b, 0, "{second}");
        assert_eq!(trace_hash(&first), trace_hash(&second), "seed {seed}");
        assert_eq!(first, second, "seed {seed}: outputs differ");
    }
}

#[test]
fn different_seeds_give_different_trace_hashes() {
    // The determinism check above would pass vacuously if the hash ignored
    // the run; it must not.
    let hash = |seed: &str| trace_hash(&sim(&["replay", "--scenario", "echo", "--seed", seed]).1);
    assert_ne!(hash("1"), hash("2"));
}

#[test]
fn a_failing_seed_replays_the_same_failure_and_hash() {
    let (code, run) = sim(&[
        "run",
        "--scenario",
        "planted-write-interest",
        "--seeds",
        "0..50",
        "--expect-failure",
    ]);
    assert_eq!(code, 0, "{run}");
    let replay_line = run
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay: "))
        .expect("a replay command");
    let failure = run.lines().find(|l| l.starts_with("FAIL")).unwrap();
    let reason = failure.split_once(": ").unwrap().1;
    // Run the printed command's arguments, twice, in new processes.
    let args: Vec<&str> = replay_line
        .split_whitespace()
        .skip_while(|w| *w != "replay")
        .collect();
    let (code_a, first) = sim(&args);
    let (code_b, second) = sim(&args);
    assert_eq!((code_a, code_b), (1, 1), "{first}");
    assert!(
        first.contains(reason),
        "replay fails differently:\n{first}\nexpected {reason}"
    );
    assert_eq!(trace_hash(&first), trace_hash(&second));
}

/// `sim run`'s report without its two wall-clock figures (seeds and
/// events per second); the rest of their line stays.
fn report(output: &str) -> String {
    output
        .lines()
        .map(|line| match line.find(" seeds_per_s=") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn jobs_change_the_speed_not_the_report() {
    // Every seed's hash, and the coverage table, line for line.
    let hashes = |jobs: &str| {
        let (code, out) = sim(&[
            "run",
            "--scenario",
            "echo",
            "--seeds",
            "0..60",
            "--hashes",
            "--jobs",
            jobs,
        ]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("seed=")).count(), 60);
        report(&out)
    };
    let one = hashes("1");
    assert_eq!(one, hashes("3"));
    assert_eq!(one, hashes("0"));
    // Stopping at the first failure: the same (lowest) failing seed, and
    // the coverage of exactly the seeds up to it, as one thread gives.
    let first_failure = |jobs: &str| {
        let (code, out) = sim(&[
            "run",
            "--scenario",
            "planted-write-interest",
            "--seeds",
            "0..200",
            "--expect-failure",
            "--hashes",
            "--jobs",
            jobs,
        ]);
        assert_eq!(code, 0, "{out}");
        report(&out)
    };
    let one = first_failure("1");
    assert!(one.contains("FAIL seed="), "{one}");
    assert_eq!(one, first_failure("4"));
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        vec!["run", "--scenario", "nope"],
        vec!["run", "--scenario", "echo", "--seeds", "10..5"],
        vec!["run", "--scenario", "echo", "--seeds", "abc"],
        vec!["run", "--scenario", "echo", "--faults", "most"],
        vec!["run", "--scenario", "echo", "--clients", "0"],
        vec!["run", "--scenario", "echo", "--jobs", "-1"],
        vec!["run", "--scenario", "echo", "--jobs", "100000"],
        vec!["replay", "--scenario", "echo", "--seed", "0xzz"],
        vec!["frobnicate"],
        vec!["run", "--seeds", "0..2"],
        vec!["replay", "--schedule", "/nonexistent/x.schedule"],
        vec!["replay", "--scenario", "echo"],
        vec!["shrink", "--scenario", "echo", "--seed", "1"],
    ] {
        let (code, output) = sim(&args);
        assert_eq!(code, 2, "{args:?}: {output}");
        assert!(output.contains("error"), "{args:?}: {output}");
        assert!(!output.contains("panicked"), "{args:?}: {output}");
    }
}

#[test]
fn list_names_every_scenario() {
    let (code, output) = sim(&["list"]);
    assert_eq!(code, 0);
    for name in [
        "echo",
        "planted-full-write",
        "planted-ignore-eof",
        "planted-emfile-spin",
    ] {
        assert!(output.contains(name), "{output}");
    }
}

#[test]
fn check_determinism_passes_echo_and_pinpoints_the_planted_hashmap() {
    let (code, output) = sim(&["check-determinism", "--scenario", "echo", "--seeds", "0..3"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("diverged=0"), "{output}");
    let (code, output) = sim(&[
        "check-determinism",
        "--scenario",
        "planted-hash-order",
        "--seeds",
        "0..300",
        "--expect-divergence",
    ]);
    assert_eq!(code, 0, "{output}");
    // The report names the decision, the fd and registration, the event.
    assert!(output.contains("first divergence at decision"), "{output}");
    assert!(
        output.contains("run 1:") && output.contains("run 2:"),
        "{output}"
    );
    assert!(output.contains("server"), "{output}");
}

/// The in-process determinism check (`check-determinism --in-process`):
/// it passes the echo server, and catches the planted `HashMap` order —
/// two `HashMap`s in one process are keyed apart, so two runs of a seed
/// in the same process diverge too.
#[test]
fn the_in_process_determinism_check_passes_echo_and_catches_the_planted_hashmap() {
    use ioloop_sim::determinism::check_in_process;
    use ioloop_sim::scenario::{RunConfig, Scenario, Workload};
    use ioloop_sim::FaultPreset;
    let config = |scenario: Scenario, seed| RunConfig {
        scenario,
        seed,
        faults: FaultPreset::Swarm,
        workload: Workload::random(10, 10, 4096),
        trace_full: false,
        liveness_after: None,
    };
    for seed in 0..3 {
        check_in_process(&config(Scenario::Echo, seed)).unwrap();
    }
    let planted = Scenario::all()
        .into_iter()
        .find(|s| s.name() == "planted-hash-order")
        .expect("the planted scenario");
    let divergence = (0..300)
        .find_map(|seed| check_in_process(&config(planted, seed)).err())
        .expect("the planted HashMap order diverges within 300 seeds");
    assert!(divergence.to_string().contains("server"), "{divergence}");
}
