//! The same echo application, faults off, on the real backend over
//! loopback and on the simulator: what the handlers observe must agree.

use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{IOLoop, MioPoller};
use ioloop_sim::scenario::{
    run, run_with_plan, ClientResult, EchoClients, RunConfig, Scenario, Workload,
};
use ioloop_sim::{Done, Entropy, FaultPlan, FaultPreset};

/// What the clients observed: each one's ending and bytes of echo.
type Observed = Vec<(Option<ClientResult>, usize)>;

/// Server and clients in one real loop over loopback; the workload drawn
/// from `seed` exactly as the simulator draws it with faults off.
fn on_real_backend(seed: u64, workload: &Workload) -> Observed {
    let mut io = IOLoop::new(MioPoller::new().unwrap());
    let server = EchoServer::bind(
        &mut io,
        "127.0.0.1:0".parse().unwrap(),
        EchoConfig::default(),
    )
    .unwrap();
    let addr = server.local_addr(&io).unwrap();
    let clients = EchoClients::draw(
        workload,
        &FaultPlan::none(),
        false,
        &mut Entropy::seeded(seed),
    );
    clients.start(&mut io, addr, Done::default());
    let settled = io
        .run_until(Duration::from_secs(30), |_| {
            clients.finished() && server.connection_count() == 0
        })
        .unwrap();
    assert!(
        settled,
        "real run did not settle: {:?}",
        clients.describe_unfinished()
    );
    clients
        .results()
        .into_iter()
        .zip(clients.received())
        .collect()
}

fn on_simulator(seed: u64, workload: &Workload) -> Observed {
    let outcome = run(&RunConfig {
        scenario: Scenario::Echo,
        seed,
        faults: FaultPreset::None,
        workload: workload.clone(),
        trace_full: false,
        liveness_after: None,
    });
    assert_eq!(outcome.failure, None);
    outcome.results.into_iter().zip(outcome.received).collect()
}

#[test]
fn echo_observes_the_same_on_mio_and_on_the_simulator() {
    for (seed, workload) in [
        (1, Workload::random(1, 5, 100)),
        (2, Workload::random(10, 10, 4096)),
        (3, Workload::random(32, 4, 70_000)),
        (
            4,
            Workload {
                message_sizes: vec![1, 1023, 1024, 1025, 262_144],
                ..Workload::random(5, 5, 1)
            },
        ),
    ] {
        let real = on_real_backend(seed, &workload);
        let simulated = on_simulator(seed, &workload);
        assert_eq!(
            real, simulated,
            "seed {seed}: real and simulated runs differ"
        );
        assert!(real
            .iter()
            .all(|(result, _)| *result == Some(ClientResult::Echoed)));
    }
}

#[test]
fn the_comparison_catches_an_application_that_behaves_differently() {
    // The same workload, but the simulated server drops what a partial
    // write left over: the observations must differ.
    let workload = Workload {
        message_sizes: vec![262_144],
        ..Workload::random(2, 2, 1)
    };
    let real = on_real_backend(5, &workload);
    let config = RunConfig {
        scenario: Scenario::Planted(ioloop_sim::scenario::planted::Bug::AssumeFullWrite),
        seed: 5,
        faults: FaultPreset::None,
        workload,
        trace_full: false,
        liveness_after: None,
    };
    // Partial writes are the one fault on, so that the bug shows.
    let plan = FaultPlan {
        partial_write: 500_000,
        ..FaultPlan::none()
    };
    let outcome = run_with_plan(&config, Entropy::seeded(5), plan);
    let planted: Observed = outcome.results.into_iter().zip(outcome.received).collect();
    assert_ne!(real, planted);
}
