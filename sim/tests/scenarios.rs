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

#[test]
fn every_planted_bug_is_caught_within_1000_seeds() {
    for scenario in Scenario::all().into_iter().filter(|s| s.expects_failure()) {
        let caught = (0..1000).find(|&seed| {
            run(&config(scenario, seed, FaultPreset::Swarm))
                .failure
                .is_some()
        });
        assert!(caught.is_some(), "{scenario} was never caught");
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
