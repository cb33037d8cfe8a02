//! `PeriodicCallback`: a callback run every `period`, on a fixed grid.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use crate::timers::TimeoutHandle;
use crate::{Error, IOLoop, Instant, Poller};

type PeriodicFn<P> = Box<dyn FnMut(&mut IOLoop<P>)>;

struct State<P: Poller> {
    /// `None` while the callback runs.
    callback: Option<PeriodicFn<P>>,
    period: Duration,
    running: bool,
    deadline_next: Instant,
    timeout: Option<TimeoutHandle>,
}

/// Runs a callback every `period` on the loop's clock, as Tornado's
/// `PeriodicCallback` does.
///
/// Runs stay on the grid `start + k × period`: if the loop was busy past one
/// or more deadlines, the missed runs are skipped, not run in a burst, and
/// the next run is the next grid point. The loop's clock never goes
/// backwards, so a run never fires twice. A run that panics keeps the
/// schedule, as Tornado logs the exception and keeps calling: the panic is
/// handled by the loop's [`PanicPolicy`](crate::PanicPolicy) (logged under
/// `Contain`; under `Propagate` it unwinds out of the loop, and the next run
/// is scheduled all the same).
///
/// The first run is one `period` after [`start`](Self::start), as in
/// Tornado; call the callback yourself first if you want a run at once.
/// Once started, it runs until [`stop`](Self::stop): the loop holds the
/// schedule, so dropping the `PeriodicCallback` does **not** stop it (and
/// leaves you no way to) — keep it for as long as you may want to stop it.
///
/// ```
/// use ioloop::{IOLoop, MioPoller, PeriodicCallback};
/// use std::time::Duration;
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// let mut ticks = 0;
/// let ticker = PeriodicCallback::new(move |io: &mut IOLoop<MioPoller>| {
///     ticks += 1;
///     if ticks == 3 {
///         io.stop();
///     }
/// }, Duration::from_millis(1))?;
/// ticker.start(&mut io);
/// io.start()?;
/// ticker.stop(&mut io);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PeriodicCallback<P: Poller> {
    state: Rc<RefCell<State<P>>>,
}

impl<P: Poller + 'static> PeriodicCallback<P> {
    /// A periodic callback, not yet started. Fails with
    /// [`Error::InvalidArgument`] for a zero period (Tornado's `ValueError`).
    pub fn new<F>(callback: F, period: Duration) -> Result<Self, Error>
    where
        F: FnMut(&mut IOLoop<P>) + 'static,
    {
        if period.is_zero() {
            return Err(Error::InvalidArgument(
                "PeriodicCallback period must be positive",
            ));
        }
        Ok(PeriodicCallback {
            state: Rc::new(RefCell::new(State {
                callback: Some(Box::new(callback)),
                period,
                running: false,
                deadline_next: Instant::ZERO,
                timeout: None,
            })),
        })
    }

    /// Start running every period, the first run one period from now.
    /// Starting a running callback does nothing.
    pub fn start(&self, io: &mut IOLoop<P>) {
        {
            let mut state = self.state.borrow_mut();
            if state.running {
                return;
            }
            state.running = true;
            state.deadline_next = io.time();
        }
        schedule_next(&self.state, io);
    }

    /// Stop; the callback does not run again until [`start`](Self::start).
    pub fn stop(&self, io: &mut IOLoop<P>) {
        let mut state = self.state.borrow_mut();
        state.running = false;
        if let Some(handle) = state.timeout.take() {
            io.remove_timeout(handle);
        }
    }

    /// `true` between `start` and `stop`.
    pub fn is_running(&self) -> bool {
        self.state.borrow().running
    }
}

/// Schedule the next run on the grid, strictly after now.
fn schedule_next<P: Poller + 'static>(state_rc: &Rc<RefCell<State<P>>>, io: &mut IOLoop<P>) {
    let now = io.time();
    let mut state = state_rc.borrow_mut();
    if !state.running || state.timeout.is_some() {
        return;
    }
    if state.deadline_next <= now {
        let period_ns = state.period.as_nanos();
        let behind_ns = (now - state.deadline_next).as_nanos();
        let periods = u32::try_from(behind_ns / period_ns + 1).unwrap_or(u32::MAX);
        state.deadline_next = state.deadline_next + state.period.saturating_mul(periods);
    }
    let state_for_run = Rc::clone(state_rc);
    state.timeout = Some(io.call_at(state.deadline_next, move |io| run(&state_for_run, io)));
}

fn run<P: Poller + 'static>(state_rc: &Rc<RefCell<State<P>>>, io: &mut IOLoop<P>) {
    let mut callback = {
        let mut state = state_rc.borrow_mut();
        state.timeout = None;
        if !state.running {
            return;
        }
        match state.callback.take() {
            Some(callback) => callback,
            None => return,
        }
    };
    // Put the callback back and keep the schedule even if it panics; the
    // loop then handles the panic as for any timeout.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| callback(io)));
    state_rc.borrow_mut().callback = Some(callback);
    schedule_next(state_rc, io);
    if let Err(payload) = outcome {
        panic::resume_unwind(payload);
    }
}

impl<P: Poller> std::fmt::Debug for PeriodicCallback<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("PeriodicCallback")
            .field("period", &state.period)
            .field("running", &state.running)
            .finish()
    }
}
