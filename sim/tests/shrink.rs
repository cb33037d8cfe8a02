//! Every planted bug shrinks to a small schedule that still fails the same way.

use ioloop_sim::scenario::{run, run_schedule, shrink, RunConfig, Scenario, Workload};
use ioloop_sim::shrink::Schedule;
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
        let original = run(&config(scenario, seed)).failure_kind.unwrap();
        assert!(
            report.schedule.fire.len() <= 8,
            "{scenario}: {} faults left of {}",
            report.schedule.fire.len(),
            report.faults_before
        );
        assert!(report.schedule.fire.len() <= report.faults_before);
        // The file round-trips and replays the same kind of failure.
        let text = report.schedule.to_text(
            "sim replay --schedule FILE",
            Some(&report.failure),
            &report.fired,
        );
        let (_, replayed) = run_schedule(&Schedule::parse(&text).unwrap(), false).unwrap();
        let failure = replayed.failure.expect("the shrunk schedule still fails");
        assert_eq!(
            replayed.failure_kind,
            Some(original),
            "{scenario}: {failure}"
        );
    }
}

#[test]
fn a_passing_seed_has_nothing_to_shrink() {
    assert!(shrink(&config(Scenario::Echo, 1)).is_err());
}

#[test]
fn a_schedule_a_scenario_cannot_run_as_written_is_rejected() {
    for (text, expected) in [
        ("name nope\nseed 1\n", "unknown scenario"),
        (
            "name echo\nseed 1\nparam clients 100000000\n",
            "clients must be 1 to",
        ),
        ("name echo\nseed 1\nclients 0\n", "clients must be 1 to"),
        (
            "name echo\nseed 1\nparam message-sizes 1,0\n",
            "bad message size",
        ),
        // A misspelt parameter is not the default in disguise.
        (
            "name echo\nseed 1\nparam client 8\n",
            "unknown param \"client\" (a scenario's schedule has clients, messages,",
        ),
        // A number on a host the scenario does not have would never fire.
        (
            "name echo\nseed 1\nfire accept-emfile:9:4\n",
            "fire accept-emfile:9:4: a scenario has hosts 0 (server) and 1 (clients)",
        ),
    ] {
        let schedule = Schedule::parse(text).unwrap();
        let error = run_schedule(&schedule, false).err().expect("rejected");
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}
