//! A UDP heartbeat and membership service, tested as the user who wrote it would: sweeps that run each seed for a fixed time (the service never ends), a liveness phase over its periodic work, and its planted twins.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use ioloop::{Events, IOLoop, Instant, PeriodicCallback, Poller};
use ioloop_sim::{AtRest, Entropy, FailureKind, Sim, Survives, Sweep, SweepError};

// ----- the service ----------------------------------------------------------------

/// The nodes: each sends a heartbeat to the others every [`PERIOD`].
const NODES: [(&str, &str); 3] = [("n1", "10.0.0.1"), ("n2", "10.0.0.2"), ("n3", "10.0.0.3")];
const PORT: u16 = 7946;
const PERIOD: Duration = Duration::from_millis(50);

/// How its planted twins break the service.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flaw {
    None,
    /// Sends each round of heartbeats from a socket of its own, and never
    /// closes it: an fd leak.
    SocketPerBeat,
}

/// Each node's view: peer → when the newest heartbeat heard from it was
/// sent. A restart starts from an empty view.
type Views = Rc<RefCell<BTreeMap<&'static str, BTreeMap<String, Instant>>>>;

fn addr_of(name: &str) -> SocketAddr {
    let (_, ip) = NODES.iter().find(|(n, _)| *n == name).unwrap();
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), PORT)
}

/// Node `me`: record every heartbeat heard, and send one to every peer each
/// period, from a `PeriodicCallback` its setup starts and never stops.
fn node<P: Poller + 'static>(
    io: &mut IOLoop<P>,
    me: &'static str,
    views: &Views,
    flaw: Flaw,
) -> io::Result<()> {
    let fd = io.udp_bind(addr_of(me))?;
    views.borrow_mut().insert(me, BTreeMap::new());
    let heard = Rc::clone(views);
    let on_datagram = move |io: &mut IOLoop<P>, fd, _| {
        let mut buf = [0u8; 64];
        loop {
            match io.recv_from(fd, &mut buf) {
                Ok((n, _)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let mut words = text.split(' ');
                    let (Some("hb"), Some(peer), Some(micros)) =
                        (words.next(), words.next(), words.next())
                    else {
                        continue;
                    };
                    let Ok(micros) = micros.parse::<u64>() else {
                        continue;
                    };
                    let sent = Instant::from_epoch(Duration::from_micros(micros));
                    let mut views = heard.borrow_mut();
                    let last = views.entry(me).or_default().entry(peer.into()).or_default();
                    *last = (*last).max(sent);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    };
    io.add_handler(fd, on_datagram, Events::READ)
        .map_err(io::Error::other)?;
    let beat = move |io: &mut IOLoop<P>| {
        let from = match flaw {
            Flaw::SocketPerBeat => match io.udp_bind(SocketAddr::new(addr_of(me).ip(), 0)) {
                Ok(fd) => fd,
                Err(_) => return,
            },
            Flaw::None => fd,
        };
        let message = format!("hb {me} {}", io.time().since_epoch().as_micros());
        for (peer, _) in NODES.iter().filter(|(peer, _)| *peer != me) {
            let _ = io.send_to(from, message.as_bytes(), addr_of(peer));
        }
    };
    PeriodicCallback::new(beat, PERIOD)
        .map_err(io::Error::other)?
        .start(io);
    Ok(())
}

/// The simulation: three nodes, nothing else; they may crash and restart.
fn membership(sim: &mut Sim, flaw: Flaw) -> Views {
    let views = Views::default();
    for (name, ip) in NODES {
        let views = Rc::clone(&views);
        sim.host(name, ip, move |io| Ok(node(io, name, &views, flaw)?));
    }
    sim.survives(Survives::MachineCrashes);
    views
}

// ----- sweeps for a fixed time ----------------------------------------------------

#[test]
fn membership_runs_each_seed_for_a_fixed_time_with_no_client() {
    let summary = Sweep::new("membership_runs_each_seed_for_a_fixed_time_with_no_client")
        .seeds(0..40)
        .run_for(Duration::from_secs(2), |sim| {
            membership(sim, Flaw::None);
        });
    assert_eq!(summary.ran, 40);
    // Every kind of network fault struck some seed: the nemesis went on
    // for the whole time, with no client to wait for.
    for kind in ["partition", "clog", "pause", "crash"] {
        assert!(summary.faults_fired.contains_key(kind), "{summary:?}");
    }
}

#[test]
fn heartbeats_settle_once_faults_stop() {
    // The user's first report: a liveness phase over a service whose setup
    // starts a PeriodicCallback. Its timer is the service at rest.
    let sweep = || {
        Sweep::new("heartbeats_settle_once_faults_stop")
            .seeds(0..20)
            .liveness_after(Duration::from_millis(500))
    };
    sweep().run_for(Duration::from_secs(1), |sim| {
        membership(sim, Flaw::None);
    });
    // The rule for a service with no periodic work fails every seed of it.
    let result = sweep()
        .configure(|builder| builder.at_rest(AtRest::NoTimeouts))
        .try_run_for(Duration::from_secs(1), |sim| {
            membership(sim, Flaw::None);
        });
    match result {
        Err(SweepError::Failed(failure)) => {
            assert_eq!(failure.failure.kind, FailureKind::Liveness, "{failure}");
            assert!(
                failure.failure.message.contains("timeouts still pending"),
                "{failure}"
            );
        }
        other => panic!("expected a liveness failure, got {other:?}"),
    }
}

#[test]
fn a_leak_is_caught_at_the_end_of_a_fixed_time() {
    let leaky = || Sweep::new("a_leak_is_caught_at_the_end_of_a_fixed_time").seeds(0..1);
    let describe = |sim: &mut Sim| {
        membership(sim, Flaw::SocketPerBeat);
    };
    match leaky().try_run_for(Duration::from_millis(500), describe) {
        Err(SweepError::Failed(failure)) => {
            assert_eq!(failure.failure.kind, FailureKind::Leak, "{failure}");
            assert!(failure.failure.message.contains("holds fds"), "{failure}");
        }
        other => panic!("the leak was not caught: {other:?}"),
    }
    // The knob that turns the check off reaches every seed.
    leaky()
        .configure(|builder| builder.leak_check(false))
        .run_for(Duration::from_millis(500), describe);
}

#[test]
fn configure_passes_builder_knobs_to_every_seed_and_refuses_those_that_break_replay() {
    let sweep = || {
        Sweep::new(
            "configure_passes_builder_knobs_to_every_seed_and_refuses_those_that_break_replay",
        )
        .seeds(0..2)
    };
    let describe = |sim: &mut Sim| {
        membership(sim, Flaw::None);
    };
    // A time limit shorter than the run's duration: every seed is hung.
    let result = sweep()
        .configure(|builder| builder.time_limit(Duration::from_millis(100)))
        .try_run_for(Duration::from_secs(1), describe);
    match result {
        Err(SweepError::Failed(failure)) => {
            assert_eq!(failure.failure.kind, FailureKind::Hung, "{failure}");
            assert_eq!(failure.seed, 0);
        }
        other => panic!("expected a hung seed, got {other:?}"),
    }
    // Two calls compose: the second's limit is the one in force.
    sweep()
        .configure(|builder| builder.time_limit(Duration::from_millis(100)))
        .configure(|builder| builder.time_limit(Duration::from_secs(60)))
        .run_for(Duration::from_secs(1), describe);
    let result = sweep()
        .configure(|builder| builder.entropy(Entropy::from_bytes(&[1, 2, 3])))
        .try_run_for(Duration::from_secs(1), describe);
    match result {
        Err(SweepError::Config(message)) => assert!(message.contains("entropy"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
