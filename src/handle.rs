//! `LoopHandle`: the `Send + Clone` way into a loop from other threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Callback, Error, IOLoop, Poller, Wake};

/// A callback sent from another thread.
pub(crate) type RemoteCallback<P> = Box<dyn FnOnce(&mut IOLoop<P>) + Send>;

/// State shared between a loop and its handles.
pub(crate) struct Shared<P: Poller> {
    queue: Mutex<Vec<RemoteCallback<P>>>,
    /// Set when `queue` may be non-empty; lets the loop skip the lock.
    pending: AtomicBool,
    stop_requested: AtomicBool,
    closed: AtomicBool,
    waker: Arc<dyn Wake>,
}

impl<P: Poller> Shared<P> {
    pub(crate) fn new(waker: Arc<dyn Wake>) -> Self {
        Shared {
            queue: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker,
        }
    }

    /// `true` if a remote callback or stop may be waiting.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire) || self.stop_requested.load(Ordering::Acquire)
    }

    /// Move every queued remote callback into `into`, in arrival order.
    pub(crate) fn drain_into(&self, into: &mut VecDeque<Callback<P>>) {
        // A plain load first: the locked swap only when a handle queued
        // something (this runs every iteration).
        if !self.pending.load(Ordering::Acquire) || !self.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        into.extend(queue.drain(..).map(|callback| callback as Callback<P>));
    }

    /// Take a stop request made through a handle, if any.
    pub(crate) fn take_stop(&self) -> bool {
        self.stop_requested.swap(false, Ordering::AcqRel)
    }

    /// Mark the loop as gone: later `add_callback` calls fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropped after the lock is released: a callback's captures may
        // reach for it as they go (a `LoopSender`'s last drop asks the loop
        // to forget its channel).
        let dropped =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        drop(dropped);
    }
}

/// A `Send + Clone` handle to an [`IOLoop`], for other threads: queue a
/// callback or stop the loop, waking it if it sleeps in `wait`.
///
/// Its callbacks must be `Send`, so they cannot carry the loop's own `Rc`
/// state; to reach it from another thread, send a message through an
/// [`IOLoop::channel`], whose handler lives on the loop.
///
/// ```
/// use ioloop::{IOLoop, MioPoller};
/// use std::time::Duration;
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// let handle = io.handle();
/// let worker = std::thread::spawn(move || {
///     handle.add_callback(|io| io.stop()).unwrap();
/// });
/// io.start()?; // returns once the worker's callback ran
/// worker.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LoopHandle<P: Poller> {
    shared: Arc<Shared<P>>,
}

impl<P: Poller> LoopHandle<P> {
    pub(crate) fn new(shared: Arc<Shared<P>>) -> Self {
        LoopHandle { shared }
    }

    /// Run `callback` on the loop's thread, in the loop's next iteration,
    /// waking the loop if it is blocked. Fails with [`Error::LoopClosed`]
    /// once the loop is dropped.
    pub fn add_callback<F>(&self, callback: F) -> Result<(), Error>
    where
        F: FnOnce(&mut IOLoop<P>) + Send + 'static,
    {
        {
            let mut queue = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(Error::LoopClosed);
            }
            queue.push(Box::new(callback));
        }
        if !self.shared.pending.swap(true, Ordering::AcqRel) {
            self.wake();
        }
        Ok(())
    }

    /// `true` once the loop is dropped (or closed): callbacks are refused.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Ask the loop to stop after its current iteration, as
    /// [`IOLoop::stop`] does, from any thread.
    pub fn stop(&self) {
        self.shared.stop_requested.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Err(error) = self.shared.waker.wake() {
            log::error!("waking the loop failed: {error}");
        }
    }
}

impl<P: Poller> Clone for LoopHandle<P> {
    fn clone(&self) -> Self {
        LoopHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: Poller> std::fmt::Debug for LoopHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopHandle")
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}
