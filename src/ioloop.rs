//! `IOLoop`: the handler table, readiness tracking, dispatch, callbacks, timeouts and the run loop.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod datagram;

use crate::handle::{LoopHandle, Shared};
use crate::readiness::Readiness;
use crate::timers::{TimeoutHandle, TimerQueue};
use crate::{Error, Events, Fd, Instant, ListenOptions, Poller, Ready, Token};

/// What the loop calls when an fd is ready.
///
/// Every closure `FnMut(&mut IOLoop<P>, Fd, Events)` is one. A type of yours
/// can be one too (an [`IOStream`](crate::IOStream) is): register it with
/// [`IOLoop::add_fd_handler`], and [`IOLoop::with_handler`] reaches it again
/// later — from a timeout, say — without `Rc<RefCell<..>>`.
pub trait FdHandler<P: Poller>: 'static {
    /// Handle `events` on `fd`.
    fn on_events(&mut self, io: &mut IOLoop<P>, fd: Fd, events: Events);

    /// The handler as [`Any`], for [`IOLoop::with_handler`].
    fn as_any_mut(&mut self) -> &mut dyn Any;

    /// The handler as [`Any`], read-only, for [`IOLoop::handler`]: return
    /// `Some(self)` to let whoever holds `&IOLoop` read it (a test, a
    /// simulation's invariant); the default, `None`, keeps it to
    /// [`with_handler`](IOLoop::with_handler). A closure handler answers
    /// `Some`.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }
}

impl<P, F> FdHandler<P> for F
where
    P: Poller,
    F: FnMut(&mut IOLoop<P>, Fd, Events) + 'static,
{
    #[inline]
    fn on_events(&mut self, io: &mut IOLoop<P>, fd: Fd, events: Events) {
        self(io, fd, events)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

/// A condition `run_until` waits for.
type Condition<'a, P> = dyn FnMut(&mut IOLoop<P>) -> bool + 'a;

/// A registered handler, as the loop keeps it.
pub type Handler<P> = Box<dyn FdHandler<P>>;

/// A callback or timeout: called once with the loop.
pub type Callback<P> = Box<dyn FnOnce(&mut IOLoop<P>)>;

/// How many times one fd may be dispatched in one iteration when its handler
/// switches to a direction that is already ready (READ → WRITE on a writable
/// socket). Repeats of the same direction wait for the next iteration, so a
/// busy fd cannot starve the others.
///
/// Not counted: each round must bring an event that no earlier round of the
/// iteration delivered, so the number of event kinds is the bound.
const DISPATCH_ROUNDS_MAX: u32 = 3;
const _: () =
    assert!(DISPATCH_ROUNDS_MAX == Events::from_bits_truncate(u8::MAX).bits().count_ones());

/// The most iterations [`IOLoop::run_for`] runs once its clock reached the
/// end, running what is due then and what that sets off at once: a bound
/// for work that keeps adding itself (a callback that re-queues itself).
pub const RUN_FOR_END_ITERATIONS: usize = 64;

/// What the loop does when a handler, callback or timeout panics.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum PanicPolicy {
    /// Log the panic, remove the handler that panicked (its fd stays open:
    /// whoever owns it still closes it), and go on — as Tornado logs a
    /// handler's exception and continues.
    #[default]
    Contain,
    /// Let the panic unwind out of `start`/`run_once` (fail fast). The loop
    /// stays usable: the handler that panicked is removed first, and the rest
    /// of the batch it interrupted is kept, not lost — the callbacks, due
    /// timeouts and ready handlers that had not run yet run on the next
    /// iteration (and [`IOLoop::has_pending_work`] says so meanwhile).
    Propagate,
}

/// What the loop holds for one fd's handler: for diagnostics such as a spin
/// or stall report ([`IOLoop::readiness`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FdReadiness {
    /// The events the handler asked for.
    pub interest: Events,
    /// The readiness the poller reported and no operation has cleared.
    pub ready: Ready,
    /// The events the handler will be called with on the next iteration
    /// (empty: it waits for the poller). Non-empty on every iteration means
    /// the handler does not act on what it is given: a spin.
    pub due: Events,
    /// `ERROR` is pending (`ready` means it) but was already delivered once,
    /// and the handler neither closed nor removed the fd since.
    pub error_ignored: bool,
}

/// A Tornado-style, single-threaded I/O loop over a [`Poller`].
///
/// Register a handler per fd with [`add_handler`](Self::add_handler); the
/// loop calls it with the [`Events`] that are ready among those asked for
/// (`ERROR` always included). Handlers are **level-triggered**: a handler
/// that leaves data unread is called again on the next iteration. Do the I/O
/// through the loop ([`read`](Self::read), [`write`](Self::write),
/// [`accept`](Self::accept), ...), so that it knows when an fd is drained.
///
/// One iteration ([`run_once`](Self::run_once)), in this order:
/// 1. the callbacks queued before the iteration began (including those sent
///    through a [`LoopHandle`]);
/// 2. the timeouts that are due, earliest first, equal deadlines in the
///    order they were added;
/// 3. one `wait` on the poller: timeout 0 if callbacks or ready handlers are
///    pending, else until the next timeout;
/// 4. the handlers of the ready fds.
///
/// Timeouts run before the poll: after the process stalled (a pause, a long
/// GC, a suspended VM), the timeouts that came due meanwhile run before the
/// handlers hear of the bytes that arrived meanwhile. A timeout that judges
/// a peer dead for its silence should give its verdict after the next
/// poll: from a callback it queues ([`add_callback`](Self::add_callback)),
/// or a timeout due at once, either of which runs after this iteration's
/// poll and handlers — as [`IOStream`](crate::IOStream)'s idle and read
/// timeouts do.
///
/// ```
/// use ioloop::{Events, IOLoop, MioPoller};
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// let listener = io.listen("127.0.0.1:0".parse()?)?;
/// io.add_handler(listener, |io, fd, _events| {
///     while let Ok((conn, _peer)) = io.accept(fd) {
///         let _ = io.close_fd(conn); // a very short conversation
///     }
/// }, Events::READ)?;
/// io.call_later(std::time::Duration::from_millis(10), |io| io.stop());
/// io.start()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IOLoop<P: Poller> {
    poller: P,
    /// Registrations, readiness, and the queue of handlers due next
    /// iteration (level-triggered carry-over and interest changes on ready
    /// fds); the poller's `wait` reports into it.
    readiness: Readiness,
    /// Indexed by fd number, beside `readiness`; `None` for an fd with no
    /// registration, and while the handler runs (it is taken out to be
    /// called).
    handlers: Vec<Option<Handler<P>>>,
    handler_count: usize,
    /// The tokens being dispatched in this iteration.
    dispatching: Vec<Token>,
    callbacks: VecDeque<Callback<P>>,
    timers: TimerQueue<Callback<P>>,
    /// Due timeouts not yet run: collected at the start of the timeout
    /// phase; left here by a panic under [`PanicPolicy::Propagate`], they
    /// run first on the next iteration.
    due: VecDeque<TimeoutHandle>,
    shared: Arc<Shared<P>>,
    running: bool,
    in_iteration: bool,
    stop_requested: bool,
    panic_policy: PanicPolicy,
    time_last: Cell<Instant>,
    iterations: u64,
    /// Tokens handed out for fd -1 so far (streams that never had a
    /// socket: a connect refused at once), so that each names itself.
    detached_tokens: u32,
    /// The handlers of [`channel`](Self::channel)s, by number: each runs
    /// its channel's queue.
    channels: BTreeMap<u64, ChannelDrain<P>>,
    channels_made: u64,
    /// Fds whose registration changed since the last `check_changes`;
    /// `None` until someone asks (production loops keep nothing).
    changed: Option<Vec<Fd>>,
    #[cfg(feature = "planted-bugs")]
    planted: Option<crate::planted::PlantedBug>,
}

impl<P: Poller> IOLoop<P> {
    /// A loop over `poller`.
    pub fn new(poller: P) -> Self {
        let shared = Arc::new(Shared::new(poller.waker()));
        let now = poller.now();
        IOLoop {
            poller,
            readiness: Readiness::new(),
            handlers: Vec::new(),
            handler_count: 0,
            dispatching: Vec::new(),
            callbacks: VecDeque::new(),
            timers: TimerQueue::new(),
            due: VecDeque::new(),
            shared,
            running: false,
            in_iteration: false,
            stop_requested: false,
            panic_policy: PanicPolicy::default(),
            time_last: Cell::new(now),
            iterations: 0,
            detached_tokens: 0,
            channels: BTreeMap::new(),
            channels_made: 0,
            changed: None,
            #[cfg(feature = "planted-bugs")]
            planted: None,
        }
    }

    /// Plant a deliberate bug in this loop, so that a test can show its
    /// checks catch it (feature `planted-bugs`, for tests only).
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: crate::planted::PlantedBug) {
        self.planted = Some(bug);
    }

    #[cfg(feature = "planted-bugs")]
    fn planted(&self, bug: crate::planted::PlantedBug) -> bool {
        self.planted == Some(bug)
    }

    /// The poller, for inspection (the simulator's checkers read it).
    pub fn poller(&self) -> &P {
        &self.poller
    }

    /// Choose what happens when user code panics (default: contain it).
    pub fn set_panic_policy(&mut self, policy: PanicPolicy) {
        self.panic_policy = policy;
    }

    // ----- handlers -------------------------------------------------------

    /// Call `handler` when `fd` has any of `events` (plus `ERROR`, always).
    ///
    /// Fails, changing nothing, if `fd` already has a handler, is negative,
    /// or is refused by the poller (closed fd, regular file).
    pub fn add_handler<F>(&mut self, fd: Fd, handler: F, events: Events) -> Result<(), Error>
    where
        F: FnMut(&mut IOLoop<P>, Fd, Events) + 'static,
    {
        self.add_fd_handler(fd, handler, events)
    }

    /// [`add_handler`](Self::add_handler) for a handler of your own type
    /// (see [`FdHandler`]), which [`with_handler`](Self::with_handler) can
    /// reach again.
    pub fn add_fd_handler<H>(&mut self, fd: Fd, handler: H, events: Events) -> Result<(), Error>
    where
        H: FdHandler<P>,
    {
        self.add_or_give_back(fd, handler, events)
            .map_err(|(error, _)| error)
    }

    /// The number of the next channel.
    pub(crate) fn next_channel(&mut self) -> u64 {
        self.channels_made += 1;
        self.channels_made - 1
    }

    /// Keep channel `channel`'s drain (its handler over a batch of its
    /// queue) on the loop.
    pub(crate) fn insert_channel(&mut self, channel: u64, drain: ChannelDrain<P>) {
        self.channels.insert(channel, drain);
    }

    /// Run channel `channel`'s handler over what its queue holds now
    /// (unless it runs already, or the channel is gone).
    pub(crate) fn drain_channel(&mut self, channel: u64) {
        let Some(drain) = self.channels.get(&channel).map(Rc::clone) else {
            return;
        };
        let Ok(mut drain) = drain.try_borrow_mut() else {
            return;
        };
        (*drain)(self);
    }

    /// The last sender of channel `channel` is gone: handle what it queued,
    /// then drop the handler. (A panic in between leaves the channel for
    /// the drain to forget again; see `channel::Batch`.)
    pub(crate) fn forget_channel(&mut self, channel: u64) {
        self.drain_channel(channel);
        self.channels.remove(&channel);
    }

    /// Channels whose handler the loop keeps (their senders not all
    /// dropped yet).
    #[cfg(test)]
    pub(crate) fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// A token of fd -1, which no registration has, that no other call
    /// gave out (unless 2<sup>32</sup> calls were made): for a stream that
    /// never had a socket.
    pub(crate) fn detached_token(&mut self) -> Token {
        self.detached_tokens = self.detached_tokens.wrapping_add(1);
        Token::new(Fd(-1), self.detached_tokens)
    }

    /// [`add_fd_handler`](Self::add_fd_handler), handing the handler back
    /// when it fails (a stream keeps its state and callbacks to report the
    /// failure).
    pub(crate) fn add_or_give_back<H>(
        &mut self,
        fd: Fd,
        handler: H,
        events: Events,
    ) -> Result<(), (Error, H)>
    where
        H: FdHandler<P>,
    {
        let Some(index) = fd.index() else {
            return Err((Error::InvalidFd(fd), handler));
        };
        #[cfg(feature = "planted-bugs")]
        if self.planted(crate::planted::PlantedBug::DuplicateAddReplaces) {
            self.remove_handler(fd);
        }
        let Some(token) = self.readiness.next_token(fd) else {
            return Err((Error::AlreadyRegistered(fd), handler));
        };
        if let Err(source) = self.poller.add(fd, token, events) {
            return Err((Error::Os { fd, source }, handler));
        }
        // Grow the tables only once the poller has vouched for the fd; the
        // handler table first, so that a live registration always has its
        // cell (dispatch indexes it), even if growing the other fails.
        let short_read_drains = self.poller.short_read_drains(fd);
        if self.handlers.len() <= index {
            self.handlers.resize_with(index + 1, || None);
        }
        self.readiness.insert(token, events, short_read_drains);
        self.handlers[index] = Some(Box::new(handler));
        self.handler_count += 1;
        self.note_change(fd);
        Ok(())
    }

    /// Change the events `fd`'s handler is called for. Costs no system call:
    /// the poller watches both directions and the loop filters. If the fd is
    /// already ready for the new events, the handler runs without waiting
    /// for another edge.
    pub fn update_handler(&mut self, fd: Fd, events: Events) -> Result<(), Error> {
        let token = self.token_of(fd).ok_or(Error::NotRegistered(fd))?;
        self.poller
            .modify(fd, token, events)
            .map_err(|source| Error::Os { fd, source })?;
        if let Some(slot) = self.readiness.slot_mut(token) {
            #[cfg(feature = "planted-bugs")]
            let old = slot.interest();
            slot.set_interest(events);
            #[cfg(feature = "planted-bugs")]
            if self.planted == Some(crate::planted::PlantedBug::UpdateNeverNarrows) {
                slot.widen_deliverable(old);
            }
        }
        self.note_change(fd);
        self.readiness.queue_if_due(token);
        Ok(())
    }

    /// Stop calling `fd`'s handler. Returns whether it had one; removing an
    /// unknown fd is a no-op, as in Tornado. No event collected before the
    /// removal — even in the same poll batch — reaches the handler after it.
    pub fn remove_handler(&mut self, fd: Fd) -> bool {
        self.forget_handler(fd, true)
    }

    /// Take `fd`'s handler out of the table, and, with `delete`, its
    /// registration out of the poller. `false` if it had none.
    fn forget_handler(&mut self, fd: Fd, delete: bool) -> bool {
        #[cfg(feature = "planted-bugs")]
        if !self.in_iteration && self.planted(crate::planted::PlantedBug::RemoveIsNoop) {
            return self.has_handler(fd);
        }
        if !self.readiness.remove(fd) {
            return false;
        }
        // Dropped now, unless it is running (then the dispatch drops it).
        let handler = fd.index().and_then(|i| self.handlers.get_mut(i)?.take());
        drop(handler);
        self.handler_count -= 1;
        self.note_change(fd);
        if !delete {
            return true;
        }
        if let Err(error) = self.poller.delete(fd) {
            // Only a poller that lost the fd fails here (it was closed
            // behind the loop's back); the table is right either way.
            log::debug!("removing fd {fd} from the poller: {error}");
        }
        true
    }

    /// What the loop holds for `fd`'s handler — interest, readiness, the
    /// events due next, an `ERROR` delivered and ignored — if it has one.
    /// For diagnostics: a spin checker names the fds whose `due` stays
    /// non-empty.
    pub fn readiness(&self, fd: Fd) -> Option<FdReadiness> {
        let slot = self.readiness.slot(self.token_of(fd)?)?;
        Some(FdReadiness {
            interest: slot.interest(),
            ready: slot.ready,
            due: slot.due(),
            error_ignored: slot.error_delivered() && slot.ready.events().contains(Events::ERROR),
        })
    }

    /// `true` if `fd` has a handler.
    pub fn has_handler(&self, fd: Fd) -> bool {
        self.token_of(fd).is_some()
    }

    /// The token of `fd`'s current registration: its fd number and
    /// generation. Unlike the bare number, it never names a later
    /// registration of a reused fd.
    pub fn token(&self, fd: Fd) -> Option<Token> {
        self.token_of(fd)
    }

    /// Run `f` with the handler of registration `token`, if it is still
    /// registered, is an `H`, and is not running now (a handler reaches
    /// itself through its own `&mut self`); `None` otherwise. `f` may add,
    /// update or remove handlers, this one included.
    ///
    /// ```
    /// use ioloop::{Events, Fd, FdHandler, IOLoop, MioPoller};
    /// use std::any::Any;
    ///
    /// struct Counter(u32);
    /// impl FdHandler<MioPoller> for Counter {
    ///     fn on_events(&mut self, _: &mut IOLoop<MioPoller>, _: Fd, _: Events) {
    ///         self.0 += 1;
    ///     }
    ///     fn as_any_mut(&mut self) -> &mut dyn Any { self }
    /// }
    ///
    /// let mut io = IOLoop::new(MioPoller::new()?);
    /// let listener = io.listen("127.0.0.1:0".parse()?)?;
    /// io.add_fd_handler(listener, Counter(7), Events::READ)?;
    /// let token = io.token(listener).unwrap();
    /// assert_eq!(io.with_handler(token, |_, counter: &mut Counter| counter.0), Some(7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// To read a handler through `&IOLoop` instead, see
    /// [`handler`](Self::handler).
    pub fn with_handler<H, R, F>(&mut self, token: Token, f: F) -> Option<R>
    where
        H: FdHandler<P>,
        F: FnOnce(&mut IOLoop<P>, &mut H) -> R,
    {
        let cell = self.handler_cell(token)?;
        let mut handler = cell.take()?;
        if handler.as_any_mut().downcast_mut::<H>().is_none() {
            *cell = Some(handler);
            return None;
        }
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            let typed = handler.as_any_mut().downcast_mut::<H>();
            f(self, typed.expect("checked above"))
        }));
        if let Some(cell) = self.handler_cell(token) {
            if cell.is_none() {
                *cell = Some(handler);
            }
        }
        match ran {
            Ok(result) => Some(result),
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    /// The handler of registration `token`, read-only, if it is still
    /// registered, is an `H`, lets itself be read
    /// ([`FdHandler::as_any`] answers `Some`), and is not running now;
    /// `None` otherwise. It needs only `&self`: a simulation's invariant,
    /// which sees the loops through `&Sim`, reads a service's state this
    /// way, without sharing it through an `Rc<RefCell<_>>`.
    ///
    /// ```
    /// use ioloop::{Events, Fd, FdHandler, IOLoop, MioPoller};
    /// use std::any::Any;
    ///
    /// struct Counter(u32);
    /// impl FdHandler<MioPoller> for Counter {
    ///     fn on_events(&mut self, _: &mut IOLoop<MioPoller>, _: Fd, _: Events) {
    ///         self.0 += 1;
    ///     }
    ///     fn as_any_mut(&mut self) -> &mut dyn Any { self }
    ///     fn as_any(&self) -> Option<&dyn Any> { Some(self) }
    /// }
    ///
    /// /// A handler that keeps itself private (no `as_any`).
    /// struct Private;
    /// impl FdHandler<MioPoller> for Private {
    ///     fn on_events(&mut self, _: &mut IOLoop<MioPoller>, _: Fd, _: Events) {}
    ///     fn as_any_mut(&mut self) -> &mut dyn Any { self }
    /// }
    ///
    /// let mut io = IOLoop::new(MioPoller::new()?);
    /// let counted = io.listen("127.0.0.1:0".parse()?)?;
    /// io.add_fd_handler(counted, Counter(7), Events::READ)?;
    /// let private = io.listen("127.0.0.1:0".parse()?)?;
    /// io.add_fd_handler(private, Private, Events::READ)?;
    /// let (counted, private) = (io.token(counted).unwrap(), io.token(private).unwrap());
    /// let io = &io; // read-only from here on
    /// assert_eq!(io.handler::<Counter>(counted).map(|counter| counter.0), Some(7));
    /// assert!(io.handler::<Private>(counted).is_none()); // not a `Private`
    /// assert!(io.handler::<Private>(private).is_none()); // not readable
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handler<H: FdHandler<P>>(&self, token: Token) -> Option<&H> {
        self.readiness.slot(token)?;
        let handler = self.handlers.get(index_of(token))?.as_ref()?;
        handler.as_any()?.downcast_ref::<H>()
    }

    /// The events `fd`'s handler asked for, if it has one.
    pub fn interest(&self, fd: Fd) -> Option<Events> {
        let token = self.token_of(fd)?;
        self.readiness.slot(token).map(|slot| slot.interest())
    }

    /// How many fds have handlers.
    pub fn handler_count(&self) -> usize {
        self.handler_count
    }

    /// Every fd with a handler and its interest, in fd order.
    pub fn handlers(&self) -> impl Iterator<Item = (Fd, Events)> + '_ {
        self.readiness
            .registrations()
            .map(|(fd, _, interest)| (fd, interest))
    }

    /// Check contract point 3: the handler table and the poller's
    /// registrations hold the same fds, tokens and interest. Run at the end
    /// of every iteration in debug builds, and by the simulator's checkers.
    pub fn check_consistency(&self) -> Result<(), String> {
        for (fd, _, _) in self.readiness.registrations() {
            self.check_fd(fd)?;
        }
        self.check_counts()
    }

    /// [`check_consistency`](Self::check_consistency) for the fds whose
    /// registration changed since the last call (and the counts): the same
    /// verdict at a cost that does not grow with idle fds. The first call
    /// checks everything and starts the bookkeeping; until then the loop
    /// keeps none.
    pub fn check_changes(&mut self) -> Result<(), String> {
        let Some(changed) = self.changed.as_mut() else {
            self.changed = Some(Vec::new());
            return self.check_consistency();
        };
        let fds = std::mem::take(changed);
        let checked = fds
            .iter()
            .try_for_each(|fd| self.check_fd(*fd))
            .and_then(|()| self.check_counts());
        if let Some(changed) = self.changed.as_mut() {
            *changed = fds;
            changed.clear();
        }
        checked
    }

    /// One fd: the loop's entry (or its absence) against the poller's.
    fn check_fd(&self, fd: Fd) -> Result<(), String> {
        let ours = self
            .token_of(fd)
            .and_then(|token| Some((token, self.readiness.slot(token)?.interest())));
        let theirs = self.poller.registration(fd);
        if ours != theirs {
            return Err(format!("fd {fd}: loop has {ours:?}, poller has {theirs:?}"));
        }
        Ok(())
    }

    fn note_change(&mut self, fd: Fd) {
        if let Some(changed) = self.changed.as_mut() {
            changed.push(fd);
        }
    }

    fn check_counts(&self) -> Result<(), String> {
        let registered = self.poller.registration_count();
        if registered != self.handler_count {
            return Err(format!(
                "loop has {} handlers, poller has {registered} registrations",
                self.handler_count
            ));
        }
        Ok(())
    }

    // ----- I/O through the loop --------------------------------------------

    /// A non-blocking TCP listener on `addr`; add a `READ` handler to accept.
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        self.poller.listen(addr)
    }

    /// Accept one connection on `listener`. `WouldBlock` when none is
    /// pending (the loop then waits for a new edge).
    pub fn accept(&mut self, listener: Fd) -> io::Result<(Fd, SocketAddr)> {
        let result = self.poller.accept(listener);
        if is_would_block(&result) {
            self.clear_readiness(listener, Events::READ);
        }
        result
    }

    /// Start connecting to `addr`; the new fd reports `WRITE` when connected,
    /// and `ERROR` if the connect fails — with `WRITE` (and `READ`) too, as
    /// epoll reports it, to a handler registered for them:
    /// [`take_error`](Self::take_error) then says why
    /// (`ConnectionRefused`, ...).
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        self.poller.connect(addr)
    }

    /// Read from `fd` into `buf`: `Ok(0)` at end of stream, `WouldBlock` when
    /// drained.
    pub fn read(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.poller.read(fd, buf);
        let Some((token, slot)) = self.readiness.live_mut(fd) else {
            return result;
        };
        match &result {
            Ok(0) if !buf.is_empty() => {
                // Keep EOF level-triggered even if no event reported it.
                slot.ready |= Ready::READ_CLOSED;
                self.readiness.queue_if_due(token);
            }
            Ok(n) if *n < buf.len() && slot.short_read_drains => {
                // A short read on a stream socket drains it: new data raises
                // a new edge. An EOF already reported must survive, as it
                // raises no further edge.
                slot.ready = slot.ready.remove(Ready::READABLE);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                slot.ready = slot.ready.remove(Ready::READABLE | Ready::READ_CLOSED);
            }
            _ => {}
        }
        result
    }

    /// Write `buf` to `fd`; may write fewer bytes than offered.
    /// `WouldBlock` when the send buffer is full.
    pub fn write(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let result = self.poller.write(fd, buf);
        if is_would_block(&result) {
            self.clear_readiness(fd, Events::WRITE);
        }
        result
    }

    /// Shut down one or both directions of `fd`.
    pub fn shutdown(&mut self, fd: Fd, how: Shutdown) -> io::Result<()> {
        self.poller.shutdown(fd, how)
    }

    /// Close the socket and remove `fd`'s handler, if any. Only for sockets
    /// the loop's poller owns (made by `listen`, `accept`, `connect`,
    /// `udp_bind`, or adopted): for any other fd it fails and changes nothing (the handler
    /// stays). Close fds you own yourself after
    /// [`remove_handler`](Self::remove_handler).
    ///
    /// Tornado's `close_fd` closes any fd; here an fd you own is usually
    /// held by an `OwnedFd` (a `UnixStream`, ...) that closes it on drop, and
    /// closing it twice could close an unrelated fd that reused the number.
    pub fn close_fd(&mut self, fd: Fd) -> io::Result<()> {
        // Close first: if the poller refuses, nothing has changed. A
        // poller that dropped the registration with the socket (mio's: the
        // kernel drops it with the file) is not asked to delete it again.
        self.poller.close(fd)?;
        let registered = self.poller.registration(fd).is_some();
        self.forget_handler(fd, registered);
        Ok(())
    }

    /// The local address of a socket the poller owns (made or adopted, UDP
    /// included).
    pub fn local_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        self.poller.local_addr(fd)
    }

    /// Tell the loop that an operation on `fd` done outside it (on an fd you
    /// own: a read of a pipe, a `recvmsg` on a socket you made) returned
    /// `WouldBlock` for `events`, so its handler waits for the next edge
    /// instead of being called again. Needed only for such I/O: the loop's
    /// own [`read`](Self::read), [`write`](Self::write) and
    /// [`accept`](Self::accept) do this themselves.
    #[inline]
    pub fn clear_readiness(&mut self, fd: Fd, events: Events) {
        self.readiness.clear(fd, events);
    }

    // ----- socket options, and sockets from outside --------------------------

    /// A listener on `addr` with `options`: `SO_REUSEADDR` and the backlog
    /// (Tornado's `bind_sockets(port, backlog=...)`, which sets
    /// `SO_REUSEADDR` too).
    /// [`listen`](Self::listen) is this with [`ListenOptions::default`].
    pub fn listen_with(&mut self, addr: SocketAddr, options: ListenOptions) -> io::Result<Fd> {
        self.poller.listen_with(addr, options)
    }

    /// Set `TCP_NODELAY` on a connected socket: each write is sent at once
    /// rather than held back while earlier data waits for its ACK (Nagle's
    /// algorithm). A server that answers in several small writes needs it,
    /// or each answer can wait for the peer's delayed ACK (~40 ms).
    /// `InvalidInput` for a listener or an fd the poller does not own.
    ///
    /// ```
    /// use ioloop::{IOLoop, MioPoller};
    ///
    /// let mut io = IOLoop::new(MioPoller::new()?);
    /// let listener = io.listen("127.0.0.1:0".parse()?)?;
    /// let _client = std::net::TcpStream::connect(io.local_addr(listener)?)?;
    /// let conn = loop {
    ///     match io.accept(listener) {
    ///         Ok((conn, _peer)) => break conn,
    ///         Err(_) => { io.run_once(Some(std::time::Duration::from_millis(10)))?; }
    ///     }
    /// };
    /// io.set_nodelay(conn, true)?;
    /// assert!(io.nodelay(conn)?);
    /// assert!(io.set_nodelay(listener, true).is_err()); // a stream option
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_nodelay(&mut self, fd: Fd, nodelay: bool) -> io::Result<()> {
        self.poller.set_nodelay(fd, nodelay)
    }

    /// Whether `TCP_NODELAY` is set on a connected socket.
    pub fn nodelay(&self, fd: Fd) -> io::Result<bool> {
        self.poller.nodelay(fd)
    }

    /// TCP keep-alive on a connected socket: probe the peer after `idle`
    /// without traffic (whole seconds, at least one; `InvalidInput`
    /// otherwise), or `None` to turn it off. Tornado leaves this to
    /// `socket.setsockopt`.
    pub fn set_keepalive(&mut self, fd: Fd, idle: Option<Duration>) -> io::Result<()> {
        self.poller.set_keepalive(fd, idle)
    }

    /// The keep-alive idle time of a connected socket, `None` when off.
    pub fn keepalive(&self, fd: Fd) -> io::Result<Option<Duration>> {
        self.poller.keepalive(fd)
    }

    /// The address of a connected socket's peer (`getpeername`).
    pub fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        self.poller.peer_addr(fd)
    }

    /// Read and clear `fd`'s pending socket error (`SO_ERROR`), as a handler
    /// called with `ERROR` (or a connect that reported `WRITE`) does to learn
    /// what happened: `Ok(None)` when there is none. Tornado reads it with
    /// `getsockopt(SOL_SOCKET, SO_ERROR)`.
    pub fn take_error(&mut self, fd: Fd) -> io::Result<Option<io::Error>> {
        self.poller.take_error(fd)
    }

    /// Take a listener made outside the loop (by `std`, `socket2`, inherited
    /// from a supervisor) into the loop, as if made by
    /// [`listen`](Self::listen): it becomes non-blocking, and
    /// [`close_fd`](Self::close_fd), [`local_addr`](Self::local_addr) and
    /// the options work on it. Fails for a socket that is not listening, or
    /// whose fd the poller already owns; the simulator has no real sockets
    /// and answers `Unsupported`. On failure the socket is closed, except
    /// when its fd is one the poller owns (then it is left alone).
    ///
    /// ```
    /// use ioloop::{IOLoop, MioPoller};
    ///
    /// let mut io = IOLoop::new(MioPoller::new()?);
    /// let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = std_listener.local_addr()?;
    /// let listener = io.adopt_listener(std_listener)?;
    /// assert_eq!(io.local_addr(listener)?, addr);
    /// let std_listener = io.release_listener(listener)?; // and back out
    /// assert_eq!(std_listener.local_addr()?, addr);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adopt_listener(&mut self, listener: std::net::TcpListener) -> io::Result<Fd> {
        self.poller.adopt_listener(listener)
    }

    /// Take a connected stream made outside the loop into it, as if
    /// accepted; see [`adopt_listener`](Self::adopt_listener).
    pub fn adopt_stream(&mut self, stream: std::net::TcpStream) -> io::Result<Fd> {
        self.poller.adopt_stream(stream)
    }

    /// Take a listener back out of the loop: its handler, if any, is
    /// removed, and the socket is yours (still non-blocking). Fails,
    /// changing nothing, for an fd that is not a listener the poller owns.
    /// Rust's ownership makes this explicit where Tornado would hand the
    /// same socket object around.
    pub fn release_listener(&mut self, fd: Fd) -> io::Result<std::net::TcpListener> {
        self.release_with(fd, |poller| poller.release_listener(fd))
    }

    /// Take a stream back out of the loop; see
    /// [`release_listener`](Self::release_listener).
    pub fn release_stream(&mut self, fd: Fd) -> io::Result<std::net::TcpStream> {
        self.release_with(fd, |poller| poller.release_stream(fd))
    }

    /// Run a poller's release with `fd`'s handler held aside: dropped if the
    /// release succeeds (the poller dropped the registration), put back as it
    /// was if it fails.
    fn release_with<T>(
        &mut self,
        fd: Fd,
        release: impl FnOnce(&mut P) -> io::Result<T>,
    ) -> io::Result<T> {
        let row = self.readiness.row(fd);
        let registered = self.readiness.remove(fd);
        let cell = fd.index().and_then(|i| self.handlers.get_mut(i));
        let handler = cell.and_then(Option::take);
        match release(&mut self.poller) {
            Ok(socket) => {
                if registered {
                    self.handler_count -= 1;
                }
                Ok(socket)
            }
            Err(error) => {
                if let (true, Some(row)) = (registered, row) {
                    self.readiness.restore(fd, row);
                    if let Some(cell) = fd.index().and_then(|i| self.handlers.get_mut(i)) {
                        *cell = handler;
                    }
                }
                Err(error)
            }
        }
    }

    // ----- callbacks and timeouts --------------------------------------------

    /// Run `callback` on the next iteration of the loop.
    pub fn add_callback<F>(&mut self, callback: F)
    where
        F: FnOnce(&mut IOLoop<P>) + 'static,
    {
        self.callbacks.push_back(Box::new(callback));
    }

    /// Run `callback` once, `delay` from now on the loop's clock.
    pub fn call_later<F>(&mut self, delay: Duration, callback: F) -> TimeoutHandle
    where
        F: FnOnce(&mut IOLoop<P>) + 'static,
    {
        let deadline = self.time() + delay;
        self.call_at(deadline, callback)
    }

    /// Run `callback` once at `deadline` on the loop's clock (see
    /// [`time`](Self::time)). A deadline in the past runs on the next
    /// iteration.
    pub fn call_at<F>(&mut self, deadline: Instant, callback: F) -> TimeoutHandle
    where
        F: FnOnce(&mut IOLoop<P>) + 'static,
    {
        self.timers.insert(deadline, Box::new(callback))
    }

    /// Cancel a timeout. Harmless if it already ran or was removed; a due
    /// timeout removed by another that runs before it does not run.
    pub fn remove_timeout(&mut self, handle: TimeoutHandle) {
        self.timers.remove(handle);
    }

    /// Number of pending timeouts.
    pub fn timeout_count(&self) -> usize {
        self.timers.len()
    }

    /// The deadline of the earliest pending timeout, on the loop's clock.
    /// A simulation uses it to advance virtual time no further than the
    /// next thing any host has scheduled, including timeouts added since
    /// that host last waited.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The loop's clock: the poller's monotonic time, never going backwards
    /// even if the poller's clock does.
    pub fn time(&self) -> Instant {
        let now = self.poller.now().max(self.time_last.get());
        self.time_last.set(now);
        now
    }

    /// The wall clock, from the poller: for timestamps a service keeps or
    /// sends (an incarnation number, a `Date` header), not for timeouts —
    /// those run on [`time`](Self::time), which never goes backwards; this
    /// one may (a clock set back). Under the simulator it is virtual, so a
    /// service that reads the wall clock here, never through
    /// `SystemTime::now()`, replays bit for bit from its seed.
    ///
    /// ```
    /// use ioloop::{IOLoop, MioPoller};
    /// use std::time::SystemTime;
    ///
    /// let io = IOLoop::new(MioPoller::new()?);
    /// let before = SystemTime::now();
    /// assert!(io.system_time() >= before);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn system_time(&self) -> SystemTime {
        self.poller.system_time()
    }

    /// 64 random bits from the poller ([`Poller::random_u64`]): from the OS
    /// on mio, from the seed under the simulator. Take a service's
    /// randomness (a backoff's jitter, a random peer) here rather than from
    /// a generator of its own, and a simulated run that draws it still
    /// replays from its seed. Not for cryptography.
    pub fn random_u64(&self) -> u64 {
        self.poller.random_u64()
    }

    /// Add a line of your own to what the run records: under the
    /// simulator, to the readable trace of the run (`IOLOOP_SIM_TRACE`, a
    /// failure's report), between the decisions it falls among, with the
    /// host's name and time — a request id, a state change — and never to
    /// its hash, so a note added to chase a bug leaves the run and its
    /// seed as they were. On mio it is a log record at trace level (target
    /// `ioloop::note`). `note` is called only if the line is kept.
    pub fn note<F: Fn() -> String>(&self, note: F) {
        self.poller.note(&note);
    }

    /// Mark that the code reached a point worth knowing a test reached —
    /// a lease that expired and was handed out again, a retry, a
    /// fallback. Under the simulator the run counts each probe's hits
    /// (`Report::probes`), a sweep sums them over its seeds — how many
    /// seeds reached each, how often — prints that table beside its
    /// fault coverage, and can require that each named probe was reached
    /// (`Sweep::require_probes`): a test that never exercised its retry
    /// path fails instead of passing quietly. Probes never enter the trace
    /// hash, so adding one leaves every seed's run as it was. On mio it
    /// is a log record at trace level (target `ioloop::probe`). The name
    /// is a `&'static str` — a literal, free to pass on a hot path; a
    /// name built at run time does not fit (count its cases as probes of
    /// their own).
    ///
    /// ```
    /// use ioloop::{IOLoop, MioPoller};
    ///
    /// let io = IOLoop::new(MioPoller::new()?);
    /// # let lease_expired = true;
    /// if lease_expired {
    ///     io.probe("lease expired, job queued again");
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn probe(&self, name: &'static str) {
        self.poller.probe(name);
    }

    /// A random number in `0..bound` ([`random_u64`](Self::random_u64)
    /// scaled, without a draw for `bound` 0, which gives 0).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioloop::{IOLoop, MioPoller};
    ///
    /// let io = IOLoop::new(MioPoller::new()?);
    /// // A retry after 100 ms, plus up to 50 ms of jitter.
    /// let backoff = Duration::from_millis(100 + io.random_below(50));
    /// assert!(backoff < Duration::from_millis(150));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn random_below(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift: the high bits of the product, no modulo bias
        // worth caring about, the same answer on every platform.
        ((u128::from(self.random_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// `true` if the next iteration will not wait: callbacks are queued,
    /// handlers are due (level-triggered carry-over), or due timeouts were
    /// left unrun by a panic under [`PanicPolicy::Propagate`]. A simulator uses it to
    /// tell a finished run from one with work left.
    pub fn has_pending_work(&self) -> bool {
        !self.callbacks.is_empty()
            || !self.readiness.queue_is_empty()
            || !self.due.is_empty()
            || self.shared.has_pending()
    }

    /// Iterations run since the loop was created: a cheap way for tests to
    /// see a loop that spins.
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// A `Send + Clone` handle for other threads.
    pub fn handle(&self) -> LoopHandle<P> {
        LoopHandle::new(Arc::clone(&self.shared))
    }

    // ----- running ----------------------------------------------------------

    /// Run iterations until [`stop`](Self::stop) is called. If `stop` was
    /// called before `start`, returns at once. Fails with
    /// [`Error::AlreadyRunning`] when called from inside the loop.
    pub fn start(&mut self) -> Result<(), Error> {
        if self.running || self.in_iteration {
            return Err(Error::AlreadyRunning);
        }
        self.running = true;
        let result = loop {
            if self.take_stop() {
                break Ok(());
            }
            if let Err(error) = self.iterate(None) {
                break Err(error);
            }
        };
        self.running = false;
        result
    }

    /// Stop the loop after the current iteration. Before `start`, makes the
    /// next `start` return at once.
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    /// Run one iteration, waiting at most `wait_max` for events (`None`:
    /// until the next timeout or event).
    pub fn run_once(&mut self, wait_max: Option<Duration>) -> Result<(), Error> {
        if self.in_iteration {
            return Err(Error::AlreadyRunning);
        }
        let deadline = wait_max.map(|wait| self.time() + wait);
        self.iterate(deadline)
    }

    /// Run iterations until `condition` holds (returns `Ok(true)`), `timeout`
    /// passes on the loop's clock, or the loop is stopped (both `Ok(false)`
    /// unless the condition holds). For tests and scripted clients.
    ///
    /// The condition is checked before the first iteration and after each
    /// one (after every handler, within an iteration). A condition that
    /// only another thread changes does not wake a loop blocked in its
    /// poll: it is seen at the next event or timeout — at the latest when
    /// `timeout` is up. Have that thread wake the loop once it changed
    /// it: [`LoopHandle::add_callback`] (any callback, or one that does the
    /// work), or [`LoopHandle::stop`], which ends `run_until` as well.
    pub fn run_until<F>(&mut self, timeout: Duration, mut condition: F) -> Result<bool, Error>
    where
        F: FnMut(&mut IOLoop<P>) -> bool,
    {
        if self.running || self.in_iteration {
            return Err(Error::AlreadyRunning);
        }
        let deadline = self.time() + timeout;
        self.running = true;
        let result = loop {
            if condition(self) {
                break Ok(true);
            }
            if self.take_stop() || self.time() >= deadline {
                break Ok(false);
            }
            if let Err(error) = self.iterate_until(Some(deadline), Some(&mut condition)) {
                break Err(error);
            }
        };
        self.running = false;
        result
    }

    /// Run iterations for `duration` on the loop's clock, or until the loop
    /// is stopped, whichever comes first: a service run for a while in a
    /// test, or a grace period at shutdown. `Ok(true)` if it ran to the
    /// end; `Ok(false)` if it was stopped ([`IOLoop::stop`] or
    /// [`LoopHandle::stop`]) — at once, running nothing, if a stop was
    /// pending when it was called, or by a stop made before it returned
    /// (that stop is taken: the next run is not stopped by it).
    ///
    /// What is due by the end has run when it returns, and what that set
    /// off at once: once the clock reaches the end it goes on iterating
    /// without waiting while callbacks are queued, handlers are due or
    /// timeouts are due (at most [`RUN_FOR_END_ITERATIONS`] iterations,
    /// for work that keeps adding itself). So a timeout set for exactly
    /// `duration` from now fires, and the callback it adds runs, as
    /// `Sim::run_for` does on the simulator.
    ///
    /// On a `SimPoller` the loop's clock moves only while it waits: a loop
    /// that always has a callback queued never reaches the end. A host of
    /// a `Sim` is run by the harness (`Sim::run_for`), not by this.
    pub fn run_for(&mut self, duration: Duration) -> Result<bool, Error> {
        if self.running || self.in_iteration {
            return Err(Error::AlreadyRunning);
        }
        let end = self.time() + duration;
        self.running = true;
        let result = self.run_to_end(end);
        self.running = false;
        result
    }

    /// [`run_for`](Self::run_for)'s iterations, up to `end` and at it.
    fn run_to_end(&mut self, end: Instant) -> Result<bool, Error> {
        while self.time() < end {
            if self.take_stop() {
                return Ok(false);
            }
            self.iterate(Some(end))?;
        }
        for iteration in 0..RUN_FOR_END_ITERATIONS {
            if self.take_stop() {
                return Ok(false);
            }
            let now = self.time();
            let due =
                self.has_pending_work() || self.timers.next_deadline().is_some_and(|at| at <= now);
            // The first one always: it polls for what is ready by now.
            if iteration > 0 && !due {
                break;
            }
            self.iterate(Some(now))?;
        }
        Ok(!self.take_stop())
    }

    /// Close the loop: remove every handler. With `all_fds`, also close
    /// every fd that has a handler, as Tornado's `close(all_fds=True)` does
    /// — the fds you registered yourself included (see
    /// [`Poller::close_registered`]): give up their ownership first
    /// (`into_raw_fd`), or they are closed twice. Errors closing them are
    /// logged.
    pub fn close(mut self, all_fds: bool) {
        let fds: Vec<Fd> = self.handlers().map(|(fd, _)| fd).collect();
        for fd in fds {
            if all_fds {
                if let Err(error) = self.poller.close_registered(fd) {
                    log::warn!("closing fd {fd}: {error}");
                }
            }
            // As in `close_fd`: not a second delete of a registration that
            // went with the socket.
            let registered = self.poller.registration(fd).is_some();
            self.forget_handler(fd, registered);
        }
    }

    fn take_stop(&mut self) -> bool {
        let from_handle = self.shared.take_stop();
        std::mem::take(&mut self.stop_requested) || from_handle
    }

    /// One iteration, waiting for events no later than `deadline`.
    fn iterate(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        self.iterate_until(deadline, None)
    }

    /// One iteration; if `condition` holds once the callbacks and timeouts
    /// have run, the poll does not wait (so `run_until` returns promptly).
    fn iterate_until(
        &mut self,
        mut deadline: Option<Instant>,
        condition: Option<&mut Condition<'_, P>>,
    ) -> Result<(), Error> {
        self.in_iteration = true;
        self.iterations += 1;
        self.run_callbacks();
        self.run_due_timeouts();
        if let Some(condition) = condition {
            if condition(self) {
                deadline = Some(self.time());
            }
        }
        let waited = self.wait_for_events(deadline);
        if waited.is_ok() {
            self.dispatch_ready();
        }
        self.in_iteration = false;
        debug_assert_eq!(self.check_consistency(), Ok(()));
        debug_assert_eq!(self.check_handlers(), Ok(()));
        waited
    }

    fn run_callbacks(&mut self) {
        self.shared.drain_into(&mut self.callbacks);
        for _ in 0..self.callbacks.len() {
            let Some(callback) = self.callbacks.pop_front() else {
                break;
            };
            self.call_user("callback", None, |io| callback(io));
        }
    }

    fn run_due_timeouts(&mut self) {
        // With no timeout pending none is due: the clock need not be read.
        if self.timers.len() > 0 {
            let now = self.time();
            // After those a panic left (they are earlier, or equal and older).
            self.timers.collect_due(now, &mut self.due);
        }
        // One at a time off `due`: if one panics out of the loop, the rest
        // stay there for the next iteration.
        while let Some(handle) = self.due.pop_front() {
            // An earlier timeout of this batch may have removed this one.
            if let Some(callback) = self.timers.remove(handle) {
                self.call_user("timeout", None, |io| callback(io));
            }
        }
    }

    fn wait_for_events(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        let timeout = if self.has_pending_work() || self.stop_requested {
            Some(Duration::ZERO)
        } else {
            // The clock is read only when there is a time to wake at.
            [self.timers.next_deadline(), deadline]
                .into_iter()
                .flatten()
                .min()
                .map(|wake_at| wake_at.saturating_duration_since(self.time()))
        };
        // The poller merges what it observes straight into the table.
        match self.poller.wait(&mut self.readiness, timeout) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            other => other.map_err(Error::Poll),
        }
    }

    fn dispatch_ready(&mut self) {
        self.readiness.take_queue(&mut self.dispatching);
        // The place in the batch is kept here, not stored for a panic to
        // find: the panic finds it from its token (see
        // `requeue_undispatched`).
        let mut next = 0;
        while let Some(&token) = self.dispatching.get(next) {
            next += 1;
            self.dispatch(token);
        }
        self.dispatching.clear();
    }

    /// Before a panic of `token`'s handler (`None`: of a callback or a
    /// timeout) unwinds out of the loop: put the tokens of this batch that
    /// were not dispatched yet — those after `token` — back on the ready
    /// queue (they are still marked `queued`), ahead of those queued for
    /// the next iteration.
    fn requeue_undispatched(&mut self, token: Option<Token>) {
        // A batch holds a token at most once: a token is queued only when
        // not marked queued, and stays marked until it is dispatched.
        let position = token.and_then(|token| self.dispatching.iter().position(|&t| t == token));
        if let Some(position) = position {
            let undispatched = self.dispatching.drain(position + 1..);
            self.readiness.requeue_front(undispatched);
        }
        self.dispatching.clear();
    }

    /// Call one fd's handler while it is due, and queue it for the next
    /// iteration if it still is.
    ///
    /// The first round is here, the rare further ones (a handler that
    /// switched to a direction already ready) out of line, so that the
    /// common case keeps what it needs across the handler call in
    /// registers.
    #[inline]
    fn dispatch(&mut self, token: Token) {
        let Some(slot) = self.readiness.slot_mut(token) else {
            return;
        };
        let due = slot.due();
        if due.is_empty() {
            slot.queued = false;
            return;
        }
        // Every token on the queue is marked queued.
        debug_assert!(slot.queued);
        if let Some(due_next) = self.dispatch_round(token, due) {
            if due.contains(due_next) {
                // The same direction again: level-triggered, next
                // iteration. `queued` stays set: it is on the queue.
                self.readiness.push(token);
            } else {
                self.dispatch_more(token, due, due_next);
            }
        }
    }

    /// The rounds after the first: while the handler is due for an event
    /// not delivered yet in this iteration. Each round delivers one, so
    /// there are at most as many rounds as kinds of event:
    /// `DISPATCH_ROUNDS_MAX`.
    #[cold]
    #[inline(never)]
    fn dispatch_more(&mut self, token: Token, mut fired: Events, mut due: Events) {
        loop {
            fired |= due;
            let Some(due_next) = self.dispatch_round(token, due) else {
                return;
            };
            if fired.contains(due_next) {
                self.readiness.push(token);
                return;
            }
            due = due_next;
        }
    }

    /// One round: call the handler of `token` (live, queued) with `due`
    /// (not empty). Returns what is due next if it is still registered and
    /// due; otherwise its `queued` mark is cleared (or it is gone) and
    /// `None`.
    ///
    /// The round ends with one look-up of the table, after the handler
    /// returns: it puts the handler back, and finds what is due next.
    #[inline(always)]
    fn dispatch_round(&mut self, token: Token, due: Events) -> Option<Events> {
        if due.contains(Events::ERROR) {
            if let Some(slot) = self.readiness.slot_mut(token) {
                slot.set_error_delivered();
            }
        }
        // A live registration's cell exists: the table grew to it when the
        // handler was added. `queued` stays set while it runs: not to be
        // queued meanwhile (every token on the queue is marked queued).
        let Some(mut handler) = self.handlers[index_of(token)].take() else {
            if let Some(slot) = self.readiness.slot_mut(token) {
                slot.queued = false;
            }
            return None;
        };
        self.poller.before_dispatch(token, due);
        let fd = token.fd();
        if !self.call_user("handler", Some(token), |io| handler.on_events(io, fd, due)) {
            // Panicked: the handler was removed, and is dropped here.
            return None;
        }
        #[cfg(feature = "planted-bugs")]
        if self.planted == Some(crate::planted::PlantedBug::PutBackByFd)
            && self.readiness.slot(token).is_none()
            && self.readiness.token(fd).is_some()
        {
            if let Some(cell) = self.handlers.get_mut(index_of(token)) {
                *cell = Some(handler);
            }
            return None;
        }
        // Removed (or replaced) from inside: drop it.
        let slot = self.readiness.slot_mut(token)?;
        // Still registered, so still in the table, and nothing else can
        // have filled its cell meanwhile (a new handler comes only with a
        // new registration, and a new token).
        let cell = &mut self.handlers[index_of(token)];
        debug_assert!(cell.is_none());
        // The cell is empty (see above): forgetting what `replace` returns
        // drops nothing, and spares the hot path a drop.
        std::mem::forget(cell.replace(handler));
        let due_next = slot.due();
        if due_next.is_empty() {
            slot.queued = false;
            return None;
        }
        Some(due_next)
    }

    /// Run user code, applying the panic policy. Returns `false` if it
    /// panicked; a panicking handler (`token`) is removed first.
    #[inline(always)]
    fn call_user<F>(&mut self, what: &str, token: Option<Token>, call: F) -> bool
    where
        F: FnOnce(&mut IOLoop<P>),
    {
        match panic::catch_unwind(AssertUnwindSafe(|| call(self))) {
            Ok(()) => true,
            Err(payload) => {
                self.user_panicked(what, token, payload);
                false
            }
        }
    }

    /// After user code panicked: log it, remove the handler (`token`) that
    /// panicked, and apply the panic policy.
    #[cold]
    #[inline(never)]
    fn user_panicked(&mut self, what: &str, token: Option<Token>, payload: Box<dyn Any + Send>) {
        let message = panic_message(payload.as_ref());
        match token {
            Some(token) if self.readiness.slot(token).is_some() => {
                self.remove_handler(token.fd());
                log::error!(
                    "{what} for fd {} panicked: {message}; handler removed",
                    token.fd()
                );
            }
            _ => log::error!("{what} panicked: {message}"),
        }
        if self.panic_policy == PanicPolicy::Propagate {
            // Leave the loop as an iteration would: nothing of this batch
            // lost (callbacks and due timeouts not run yet are still queued).
            self.requeue_undispatched(token);
            self.in_iteration = false;
            self.running = false;
            panic::resume_unwind(payload);
        }
    }

    // ----- table helpers ----------------------------------------------------

    fn token_of(&self, fd: Fd) -> Option<Token> {
        self.readiness.token(fd)
    }

    /// The handler cell of registration `token`, if it is still the live
    /// one (empty while the handler runs).
    fn handler_cell(&mut self, token: Token) -> Option<&mut Option<Handler<P>>> {
        self.readiness.slot(token)?;
        self.handlers.get_mut(index_of(token))
    }

    /// `true` if every live registration has its handler in the table and
    /// no other fd has one: between iterations no handler is running, so
    /// none is taken out.
    fn check_handlers(&self) -> Result<(), String> {
        for (index, handler) in self.handlers.iter().enumerate() {
            let fd = Fd(index as i32);
            if handler.is_some() != self.token_of(fd).is_some() {
                return Err(format!("fd {fd}: handler table and registrations disagree"));
            }
        }
        Ok(())
    }
}

/// A channel's handler, run over a batch of its queue by the loop.
pub(crate) type ChannelDrain<P> = Rc<RefCell<dyn FnMut(&mut IOLoop<P>)>>;

impl<P: Poller> Drop for IOLoop<P> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<P: Poller> std::fmt::Debug for IOLoop<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IOLoop")
            .field("handlers", &self.handler_count)
            .field("callbacks", &self.callbacks.len())
            .field("timeouts", &self.timers.len())
            .field("running", &self.running)
            .finish()
    }
}

/// The table index of `token`'s fd (fds are non-negative; a token that
/// says otherwise indexes past any table).
#[inline]
fn index_of(token: Token) -> usize {
    token.0 as u32 as usize
}

fn is_would_block<T>(result: &io::Result<T>) -> bool {
    matches!(result, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(non-string panic payload)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MioPoller;

    /// The handler-table check (a debug assertion after every iteration)
    /// and its wrong cases: a handler without a registration, and a
    /// registration without its handler.
    #[test]
    fn the_handler_table_check_catches_a_table_out_of_step() {
        let mut io = IOLoop::new(MioPoller::new().unwrap());
        let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        io.add_handler(listener, |_: &mut IOLoop<MioPoller>, _, _| {}, Events::READ)
            .unwrap();
        assert_eq!(io.check_handlers(), Ok(()));
        let index = listener.index().unwrap();
        // A registration whose handler is gone.
        let handler = io.handlers[index].take();
        assert!(io.check_handlers().is_err());
        io.handlers[index] = handler;
        assert_eq!(io.check_handlers(), Ok(()));
        // A handler for an fd nobody registered.
        let stray: Handler<MioPoller> = Box::new(|_: &mut IOLoop<MioPoller>, _, _| {});
        io.handlers.push(Some(stray));
        let error = io.check_handlers().unwrap_err();
        assert!(error.contains("disagree"), "{error}");
        io.handlers.pop();
        assert_eq!(io.check_handlers(), Ok(()));
    }
}
