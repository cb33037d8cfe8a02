//! The simulated wall clock: `IOLoop::system_time` on a simulated host is
//! virtual, moves with the host's own time, survives a restart, and is
//! stepped only by the test (`Sim::set_wall_clock`), never by the machine
//! the test runs on.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ioloop::{IOLoop, PeriodicCallback};
use ioloop_sim::{
    wall_clock_start, CrashMode, FailureKind, FaultPreset, Sim, SimPoller, WALL_CLOCK_START_UNIX_S,
};

type Stamps = Rc<RefCell<Vec<(u128, SystemTime)>>>;

/// A host that stamps the wall clock (with its loop's time, in ms) at its
/// setup — an incarnation number, as a membership service takes one — and
/// every `period` after.
fn stamping_host(sim: &mut Sim, name: &str, ip: &str, period: Duration) -> Stamps {
    let stamps: Stamps = Rc::default();
    let for_host = Rc::clone(&stamps);
    sim.host(name, ip, move |io| {
        let stamps = Rc::clone(&for_host);
        stamps
            .borrow_mut()
            .push((io.time().since_epoch().as_millis(), io.system_time()));
        let ticker = PeriodicCallback::new(
            move |io: &mut IOLoop<SimPoller>| {
                stamps
                    .borrow_mut()
                    .push((io.time().since_epoch().as_millis(), io.system_time()));
            },
            period,
        )?;
        ticker.start(io);
        Ok(())
    });
    stamps
}

#[test]
fn every_host_starts_at_the_fixed_epoch_and_its_wall_clock_runs_with_virtual_time() {
    assert_eq!(
        wall_clock_start(),
        UNIX_EPOCH + Duration::from_secs(WALL_CLOCK_START_UNIX_S)
    );
    let mut sim = Sim::new(7, FaultPreset::None);
    let a = stamping_host(&mut sim, "a", "10.0.0.1", Duration::from_millis(250));
    let b = stamping_host(&mut sim, "b", "10.0.0.2", Duration::from_millis(400));
    sim.run_for(Duration::from_secs(1)).unwrap();
    for stamps in [&a, &b] {
        let stamps = stamps.borrow();
        assert!(stamps.len() >= 3, "{stamps:?}");
        for (at_ms, wall) in stamps.iter() {
            let expected = wall_clock_start() + Duration::from_millis(*at_ms as u64);
            assert_eq!(*wall, expected, "at {at_ms} ms");
        }
    }
    // Not the machine's clock: it reads the same whenever the test runs.
    assert_eq!(
        sim.io("a").unwrap().system_time(),
        wall_clock_start() + Duration::from_secs(1)
    );
}

#[test]
fn a_paused_host_sees_its_wall_clock_jump_with_its_own_clock() {
    let mut sim = Sim::new(7, FaultPreset::None);
    let stamps = stamping_host(&mut sim, "slow", "10.0.0.1", Duration::from_millis(100));
    sim.pause("slow", Duration::from_millis(550));
    sim.run_for(Duration::from_secs(1)).unwrap();
    let stamps = stamps.borrow();
    // The periodic callback resumes at 550 ms; the wall clock agrees with
    // the loop's clock on every stamp, before and after the pause.
    assert!(stamps.iter().any(|(at_ms, _)| *at_ms == 550), "{stamps:?}");
    for (at_ms, wall) in stamps.iter() {
        assert_eq!(
            *wall,
            wall_clock_start() + Duration::from_millis(*at_ms as u64)
        );
    }
}

#[test]
fn the_wall_clock_survives_a_crash_so_a_restarted_host_takes_a_later_incarnation() {
    let mut sim = Sim::new(7, FaultPreset::None);
    let stamps = stamping_host(&mut sim, "node", "10.0.0.1", Duration::from_secs(3600));
    sim.run_for(Duration::from_millis(300)).unwrap();
    sim.crash("node", CrashMode::Machine);
    sim.run_for(Duration::from_millis(200)).unwrap();
    sim.restart("node");
    let stamps = stamps.borrow();
    let incarnations: Vec<SystemTime> = stamps.iter().map(|(_, wall)| *wall).collect();
    assert_eq!(
        incarnations,
        [
            wall_clock_start(),
            wall_clock_start() + Duration::from_millis(500)
        ]
    );
}

#[test]
fn a_clock_set_back_moves_the_wall_clock_only_not_the_loops_time_or_its_timeouts() {
    let mut sim = Sim::new(7, FaultPreset::None);
    let stamps = stamping_host(&mut sim, "node", "10.0.0.1", Duration::from_millis(100));
    let back = wall_clock_start() - Duration::from_secs(86_400);
    sim.at(Duration::from_millis(250), move |sim| {
        sim.set_wall_clock("node", back);
    });
    sim.run_for(Duration::from_millis(500)).unwrap();
    let stamps = stamps.borrow();
    // The periodic callback still fires every 100 ms of loop time (the
    // last at the run's end instant)...
    let times: Vec<u128> = stamps.iter().map(|(at_ms, _)| *at_ms).collect();
    assert_eq!(times, [0, 100, 200, 300, 400, 500]);
    // ...while the wall clock went a day back at 250 ms and ran on from there.
    for (at_ms, wall) in stamps.iter() {
        let expected = if *at_ms < 250 {
            wall_clock_start() + Duration::from_millis(*at_ms as u64)
        } else {
            back + Duration::from_millis(*at_ms as u64 - 250)
        };
        assert_eq!(*wall, expected, "at {at_ms} ms");
    }
}

#[test]
fn setting_a_clock_is_a_decision_of_the_trace() {
    let hash_with = |to: Option<SystemTime>| {
        let mut sim = Sim::builder(7).trace(true).build();
        stamping_host(&mut sim, "node", "10.0.0.1", Duration::from_millis(100));
        if let Some(to) = to {
            sim.set_wall_clock("node", to);
        }
        sim.run_for(Duration::from_millis(300)).unwrap();
        let report = sim.report();
        (report.trace_hash, report.trace_lines)
    };
    let (plain, _) = hash_with(None);
    let (set, lines) = hash_with(Some(UNIX_EPOCH - Duration::from_secs(5)));
    let (set_again, _) = hash_with(Some(UNIX_EPOCH - Duration::from_secs(5)));
    let (set_elsewhere, _) = hash_with(Some(UNIX_EPOCH + Duration::from_secs(5)));
    assert_eq!(set, set_again, "same setting, same run");
    assert_ne!(set, plain);
    assert_ne!(set, set_elsewhere, "before the Unix epoch is not after it");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("node wall clock set to")),
        "{lines:#?}"
    );
}

#[test]
fn setting_the_clock_of_a_host_that_does_not_exist_fails_the_run_by_name() {
    let mut sim = Sim::new(7, FaultPreset::None);
    stamping_host(&mut sim, "node", "10.0.0.1", Duration::from_millis(100));
    sim.set_wall_clock("nod", wall_clock_start());
    let failure = sim.run_for(Duration::from_millis(100)).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Setup);
    assert!(
        failure.message.contains("no host named \"nod\""),
        "{failure}"
    );
}

#[test]
fn a_crash_while_busy_does_not_set_the_wall_clock_back() {
    // The host spends 800 ms of simulated CPU at 100 ms, so its clocks run
    // 800 ms ahead of the world's; a crash at 300 ms ends that work, and
    // its clock falls back to the world's. Its wall clock must not.
    let mut sim = Sim::new(7, FaultPreset::None);
    let read: Stamps = Rc::default();
    let for_host = Rc::clone(&read);
    sim.host("node", "10.0.0.1", move |io| {
        let read = Rc::clone(&for_host);
        read.borrow_mut()
            .push((io.time().since_epoch().as_millis(), io.system_time()));
        io.call_later(Duration::from_millis(100), move |io| {
            io.poller().consume(Duration::from_millis(800));
            read.borrow_mut()
                .push((io.time().since_epoch().as_millis(), io.system_time()));
        });
        Ok(())
    });
    sim.run_for(Duration::from_millis(300)).unwrap();
    sim.crash("node", CrashMode::Process);
    sim.restart("node");
    let read = read.borrow();
    let walls: Vec<SystemTime> = read.iter().map(|(_, wall)| *wall).collect();
    assert_eq!(walls.len(), 3, "{read:?}");
    // 0 ms; 900 ms (100 ms, plus 800 ms of work); the restart's, at
    // 300 ms of world time, goes on from the 900 ms the host had reached.
    assert_eq!(walls[0], wall_clock_start());
    assert_eq!(walls[1], wall_clock_start() + Duration::from_millis(900));
    assert!(walls[2] >= walls[1], "the wall clock went back: {walls:?}");
}
