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
