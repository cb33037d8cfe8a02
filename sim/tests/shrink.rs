//! Every planted bug shrinks to a small schedule that still fails the same way.

use ioloop_sim::scenario::{run, RunConfig, Scenario, Workload};
use ioloop_sim::shrink::{failure_kind, shrink, Schedule};
use ioloop_sim::FaultPreset;

fn config(scenario: Scenario, seed: u64) -> RunConfig {
    RunConfig {
        scenario,
        seed,
        faults: FaultPreset::Swarm,
        workload: Workload::random(10, 10, 4096),
        trace_full: false,
        liveness_after: None,
    }
}

#[test]
fn every_planted_bug_shrinks_to_a_handful_of_faults_that_replay_the_failure() {
    for scenario in Scenario::all().into_iter().filter(|s| s.expects_failure()) {
        let seed = (0..1000)
            .find(|&seed| run(&config(scenario, seed)).failure.is_some())
            .expect("caught within 1000 seeds");
        let report = shrink(&config(scenario, seed)).unwrap();
        let original = run(&config(scenario, seed)).failure.unwrap();
        assert!(
            report.schedule.fire.len() <= 8,
            "{scenario}: {} faults left of {}",
            report.schedule.fire.len(),
            report.faults_before
        );
        assert!(report.schedule.fire.len() <= report.faults_before);
        // The file round-trips and replays the same kind of failure.
        let text = report
            .schedule
            .to_text(Some(&report.failure), &report.fired);
        let replayed = Schedule::parse(&text).unwrap().run();
        let failure = replayed.failure.expect("the shrunk schedule still fails");
        assert_eq!(
            failure_kind(&failure),
            failure_kind(&original),
            "{scenario}: {failure}"
        );
    }
}

#[test]
fn a_passing_seed_has_nothing_to_shrink() {
    assert!(shrink(&config(Scenario::Echo, 1)).is_err());
}

#[test]
fn malformed_schedules_are_rejected_with_the_line() {
    for (text, expected) in [
        ("seed 0x1\n", "names no scenario"),
        ("scenario echo\nfire x\n", "line 2"),
        ("scenario echo\nwhat 3\n", "unknown key"),
        ("scenario nope\n", "unknown scenario"),
    ] {
        let error = Schedule::parse(text).unwrap_err();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}
