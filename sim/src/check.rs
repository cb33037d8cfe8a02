//! Checkers run after every iteration: the handler map, dispatches, spins and stalls.

use ioloop::{IOLoop, Poller};

use crate::net::World;

/// Rounds in a row with no progress (no byte moved, no fd opened or
/// closed, no time passing) before a run counts as spinning.
pub const SPIN_ROUNDS_MAX: u64 = 2_000;

/// Watches a run for spins, across rounds of every host.
pub struct SpinDetector {
    progress_last: u64,
    rounds_idle: u64,
}

impl SpinDetector {
    /// A detector that has seen nothing yet.
    pub fn new() -> SpinDetector {
        SpinDetector {
            progress_last: u64::MAX,
            rounds_idle: 0,
        }
    }

    /// Note the end of a round; `true` once the run has been idle for
    /// [`SPIN_ROUNDS_MAX`] rounds.
    pub fn round(&mut self, world: &World) -> bool {
        if world.progress() != self.progress_last {
            self.progress_last = world.progress();
            self.rounds_idle = 0;
            return false;
        }
        self.rounds_idle += 1;
        self.rounds_idle >= SPIN_ROUNDS_MAX
    }
}

impl Default for SpinDetector {
    fn default() -> Self {
        SpinDetector::new()
    }
}

/// The handler map against the poller's registrations, and the dispatch
/// checks the poller made during the iteration (contract point 3).
pub fn check_loop<P: Poller>(
    name: &str,
    io: &IOLoop<P>,
    take_violations: impl FnOnce() -> Vec<String>,
) -> Result<(), String> {
    io.check_consistency()
        .map_err(|e| format!("{name}: handler map and registrations differ: {e}"))?;
    let violations = take_violations();
    if let Some(first) = violations.first() {
        return Err(format!("{name}: {first} ({} violations)", violations.len()));
    }
    Ok(())
}

/// A loop's handlers and their interest, for failure reports.
pub fn describe_handlers<P: Poller>(io: &IOLoop<P>) -> String {
    let handlers: Vec<String> = io
        .handlers()
        .map(|(fd, events)| format!("{fd:?}:{events:?}"))
        .collect();
    format!("[{}]", handlers.join(", "))
}

/// The fds whose handler will be called again without a new event (their
/// due events, interest and readiness), and those holding an `ERROR` that
/// was delivered and ignored: for a spin or stall report. Empty when no fd
/// is either.
pub fn describe_pending_readiness<P: Poller>(io: &IOLoop<P>) -> String {
    let fds: Vec<String> = io
        .handlers()
        .filter_map(|(fd, _)| {
            let state = io.readiness(fd)?;
            if state.due.is_empty() && !state.error_ignored {
                return None;
            }
            let ignored = if state.error_ignored {
                " (ERROR delivered and ignored: the fd is neither closed nor removed)"
            } else {
                ""
            };
            Some(format!(
                "{fd:?}: due {:?}, interest {:?}, ready {:?}{ignored}",
                state.due, state.interest, state.ready
            ))
        })
        .collect();
    fds.join("; ")
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use ioloop::{Events, IOLoop};

    use super::*;
    use crate::{FaultPreset, SimNet};

    #[test]
    fn check_loop_passes_a_consistent_loop_and_names_what_differs() {
        let net = SimNet::new(1, FaultPreset::None, false);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mut io = IOLoop::new(net.host(ip));
        let fd = io.listen(SocketAddr::new(ip, 80)).unwrap();
        io.add_handler(fd, |_, _, _| {}, Events::READ).unwrap();
        assert_eq!(check_loop("server", &io, Vec::new), Ok(()));
        assert_eq!(describe_handlers(&io), format!("[{fd:?}:READ]"));
        assert_eq!(describe_pending_readiness(&io), "");
        // A connection the handler never accepts: the listener stays due.
        let mut client = IOLoop::new(net.host(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
        client.connect(SocketAddr::new(ip, 80)).unwrap();
        let mut pending = String::new();
        for _ in 0..100 {
            let next = net.world().next_delivery();
            if let Some(at) = next {
                net.world_mut().advance_to(at);
            }
            io.run_once(Some(std::time::Duration::ZERO)).unwrap();
            client.run_once(Some(std::time::Duration::ZERO)).unwrap();
            pending = describe_pending_readiness(&io);
            if !pending.is_empty() {
                break;
            }
        }
        assert_eq!(
            pending,
            format!("{fd:?}: due READ, interest READ, ready {{READABLE}}")
        );
        // The dispatch checks' violations: the first, and how many.
        let violations = || vec!["first".to_string(), "second".to_string()];
        assert_eq!(
            check_loop("server", &io, violations),
            Err("server: first (2 violations)".to_string())
        );
        // Closed behind the loop's back: the poller forgot the fd.
        let host = io.poller().host_id();
        net.world_mut().close(host, fd).unwrap();
        let error = check_loop("server", &io, Vec::new).unwrap_err();
        assert!(
            error.starts_with("server: handler map and registrations differ: "),
            "{error}"
        );
    }
}
