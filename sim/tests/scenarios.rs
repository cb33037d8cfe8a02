//! Scenario sweeps in-process: the echo server passes, every planted bug is caught.

use ioloop_sim::scenario::{run, RunConfig, Scenario, Workload};
use ioloop_sim::FaultPreset;

fn config(scenario: Scenario, seed: u64, faults: FaultPreset) -> RunConfig {
    RunConfig {
        scenario,
        seed,
        faults,
        workload: Workload::random(8, 6, 3000),
        trace_full: false,
        liveness_after: None,
    }
}

#[test]
fn echo_passes_under_every_preset() {
    for faults in [FaultPreset::None, FaultPreset::All, FaultPreset::Swarm] {
        for seed in 0..150 {
            let config = config(Scenario::Echo, seed, faults);
            let outcome = run(&config);
            assert!(
                outcome.failure.is_none(),
                "{:?}\nreplay: {}",
                outcome.failure,
                config.replay_command()
            );
        }
    }
}

/// The failure each planted bug must be caught as: by the checker meant to
/// catch it, not by whichever trips first (a spin left unnoticed would
/// still end as a hang, much later).
fn expected_failure(scenario: Scenario) -> &'static str {
    match scenario.name() {
        "planted-full-write" => "wrong echo",
        "planted-write-interest"
        | "planted-ignore-eof"
        | "planted-emfile-spin"
        | "planted-reentrant-accept" => "spin at t+",
        other => panic!("no expected failure for {other}: add it here"),
    }
}

#[test]
fn every_planted_bug_is_caught_within_1000_seeds() {
    for scenario in Scenario::all().into_iter().filter(|s| s.expects_failure()) {
        let caught =
            (0..1000).find_map(|seed| run(&config(scenario, seed, FaultPreset::Swarm)).failure);
        let failure = caught.unwrap_or_else(|| panic!("{scenario} was never caught"));
        let expected = expected_failure(scenario);
        assert!(
            failure.contains(expected),
            "{scenario} was caught as something else than {expected:?}: {failure}"
        );
    }
}

#[test]
fn echo_with_big_messages_and_many_clients() {
    let config = RunConfig {
        workload: Workload::random(64, 3, 256 * 1024),
        ..config(Scenario::Echo, 7, FaultPreset::All)
    };
    let outcome = run(&config);
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
}

#[test]
fn liveness_phase_passes_echo_and_catches_a_timer_that_never_settles() {
    let with_liveness = |scenario, seed| RunConfig {
        liveness_after: Some(std::time::Duration::from_millis(20)),
        ..config(scenario, seed, FaultPreset::Swarm)
    };
    for seed in 0..100 {
        let outcome = run(&with_liveness(Scenario::Echo, seed));
        assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    }
    let ticker = Scenario::all()
        .into_iter()
        .find(|s| s.expects_liveness_failure())
        .unwrap();
    // Without a liveness phase the endless ticker goes unnoticed...
    assert!(run(&config(ticker, 0, FaultPreset::Swarm))
        .failure
        .is_none());
    // ...with one, the run must settle, and the report names the timer.
    let failure = run(&with_liveness(ticker, 0)).failure.expect("not caught");
    assert!(
        failure.contains("liveness") && failure.contains("timeouts still pending"),
        "{failure}"
    );
}
