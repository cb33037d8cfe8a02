//! `IOLoop::channel`: messages from other threads to a handler that lives on
//! the loop's thread, and so may hold the loop's `Rc` state.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Error, IOLoop, LoopHandle, Poller};

/// The most messages a channel's queues keep room for between drains.
const KEPT_CAPACITY: usize = 1024;

/// What a channel's senders and its handler share.
pub(crate) struct ChannelQueue<M> {
    messages: Mutex<VecDeque<M>>,
    senders: AtomicUsize,
}

impl<M> ChannelQueue<M> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<M>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The messages one drain of a channel handles: those queued when it
/// began, so that a producer faster than the handler, or a handler that
/// sends to its own channel, cannot keep the loop in one callback (what
/// arrives meanwhile wakes the loop for a later drain, as the queue it
/// finds is empty).
///
/// Dropped by a panic with messages unhandled, it puts them back at the
/// front of the queue and asks the loop for another drain, since no send
/// will; after the last sender's drop, for another try at forgetting the
/// channel, so that its handler does not outlive it.
struct Batch<'a, M, P: Poller> {
    messages: &'a mut VecDeque<M>,
    queue: &'a ChannelQueue<M>,
    handle: &'a LoopHandle<P>,
    channel: u64,
}

impl<M, P: Poller> Drop for Batch<'_, M, P> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let unhandled = std::mem::take(self.messages);
        let queued = {
            let mut queue = self.queue.lock();
            for message in unhandled.into_iter().rev() {
                queue.push_front(message);
            }
            !queue.is_empty()
        };
        let channel = self.channel;
        // A closed loop refuses: its channels go with it.
        if self.queue.senders.load(Ordering::Acquire) == 0 {
            let _ = self
                .handle
                .add_callback(move |io| io.forget_channel(channel));
        } else if queued {
            let _ = self
                .handle
                .add_callback(move |io| io.drain_channel(channel));
        }
    }
}

/// The loop a sender sends into, its poller type erased.
trait Link: Send + Sync {
    /// Have the loop run the channel's handler over its queue.
    fn wake(&self, channel: u64) -> Result<(), Error>;
    /// The last sender is gone: deliver what is queued, then let the
    /// handler go.
    fn forget(&self, channel: u64);
    /// The loop was dropped.
    fn closed(&self) -> bool;
}

impl<P: Poller> Link for LoopHandle<P> {
    fn wake(&self, channel: u64) -> Result<(), Error> {
        self.add_callback(move |io| io.drain_channel(channel))
    }

    fn forget(&self, channel: u64) {
        // A dropped loop dropped the handler already.
        let _ = self.add_callback(move |io| io.forget_channel(channel));
    }

    fn closed(&self) -> bool {
        self.is_closed()
    }
}

/// The sending side of a channel into a loop ([`IOLoop::channel`]): `Send`
/// and `Clone`, for other threads (a signal or stdin thread, a worker
/// pool). Each message is handed to the channel's handler on the loop's
/// thread, in the order sent, waking the loop if it sleeps.
///
/// The handler lives on the loop and may hold its `Rc` state — what
/// [`LoopHandle::add_callback`], whose callbacks must be `Send`, cannot
/// reach. When the last sender is dropped, the messages still queued are
/// handled, then the handler is dropped.
pub struct LoopSender<M> {
    queue: Arc<ChannelQueue<M>>,
    link: Arc<dyn Link>,
    channel: u64,
}

/// A message sent to a loop that was dropped: the message, given back.
#[derive(Clone, PartialEq, Eq)]
pub struct SendError<M>(pub M);

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending into a loop that was dropped")
    }
}

impl<M> std::error::Error for SendError<M> {}

impl<M: Send + 'static> LoopSender<M> {
    /// Queue `message` for the channel's handler, waking the loop if it
    /// sleeps. Fails, giving the message back, once the loop is dropped (a
    /// message sent while it is being dropped may be dropped with it).
    ///
    /// The queue has no bound: a loop that stalls while a thread sends
    /// holds what it sent.
    pub fn send(&self, message: M) -> Result<(), SendError<M>> {
        let mut messages = self.queue.lock();
        if self.link.closed() {
            return Err(SendError(message));
        }
        messages.push_back(message);
        // A queue that was not empty has a drain pending, which takes this
        // message too. The wake is asked for under the lock, so that a
        // refusal gives back this sender's own message.
        if messages.len() == 1 {
            if let Err(Error::LoopClosed) = self.link.wake(self.channel) {
                let message = messages.pop_back().expect("pushed above");
                return Err(SendError(message));
            }
        }
        Ok(())
    }
}

impl<M> Clone for LoopSender<M> {
    fn clone(&self) -> Self {
        self.queue.senders.fetch_add(1, Ordering::Relaxed);
        LoopSender {
            queue: Arc::clone(&self.queue),
            link: Arc::clone(&self.link),
            channel: self.channel,
        }
    }
}

impl<M> Drop for LoopSender<M> {
    fn drop(&mut self) {
        if self.queue.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.link.forget(self.channel);
        }
    }
}

impl<M> fmt::Debug for LoopSender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopSender")
            .field("channel", &self.channel)
            .field("queued", &self.queue.lock().len())
            .finish()
    }
}

impl<P: Poller> IOLoop<P> {
    /// A channel into this loop: `handler` runs on the loop's thread, once
    /// per message, in the order the messages were sent, from the loop's
    /// callbacks (the iteration after the send; a message sent while the
    /// handler runs waits for a later callback; panics are contained or
    /// propagated as any callback's, and the messages after a panic are
    /// still handled). The [`LoopSender`] is `Send` and `Clone`; the
    /// handler need not be `Send`, so it may hold the loop's `Rc` state.
    ///
    /// The handler is dropped once every sender is (after the messages
    /// they queued), or with the loop. A handler that holds a sender of
    /// its own channel keeps itself alive until the loop is dropped.
    ///
    /// On the simulator, send from the loop's own thread (a callback, a
    /// test between runs): a message from another thread arrives whenever
    /// that thread runs, which no seed decides.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    /// use ioloop::{IOLoop, MioPoller};
    ///
    /// enum Command { Shutdown { grace: Duration } }
    ///
    /// let mut io = IOLoop::new(MioPoller::new()?);
    /// let state = Rc::new(RefCell::new(Vec::new())); // not Send
    /// let seen = Rc::clone(&state);
    /// let commands = io.channel(move |io, command: Command| match command {
    ///     Command::Shutdown { grace } => {
    ///         seen.borrow_mut().push(format!("closing within {grace:?}"));
    ///         io.stop();
    ///     }
    /// });
    /// // A signal or stdin thread:
    /// let thread = std::thread::spawn(move || {
    ///     commands.send(Command::Shutdown { grace: Duration::from_secs(5) })
    /// });
    /// io.start()?; // until the command stops it
    /// assert!(thread.join().unwrap().is_ok());
    /// assert_eq!(*state.borrow(), ["closing within 5s"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel<M, F>(&mut self, mut handler: F) -> LoopSender<M>
    where
        M: Send + 'static,
        F: FnMut(&mut IOLoop<P>, M) + 'static,
    {
        let queue = Arc::new(ChannelQueue {
            messages: Mutex::new(VecDeque::new()),
            senders: AtomicUsize::new(1),
        });
        let channel = self.next_channel();
        let handle = self.handle();
        let for_loop = Arc::clone(&queue);
        // The queue is swapped with this one, empty, at each drain: the
        // senders keep pushing into a queue that kept its capacity, not
        // into a new one grown from nothing each time — up to
        // `KEPT_CAPACITY` messages: after a burst, both go back to nothing
        // within two drains.
        let mut taken = VecDeque::new();
        let drain = move |io: &mut IOLoop<P>| {
            std::mem::swap(&mut *for_loop.lock(), &mut taken);
            let batch = Batch {
                messages: &mut taken,
                queue: &for_loop,
                handle: &handle,
                channel,
            };
            while let Some(message) = batch.messages.pop_front() {
                handler(io, message);
            }
            drop(batch);
            if taken.capacity() > KEPT_CAPACITY {
                taken = VecDeque::new();
            }
        };
        self.insert_channel(channel, Rc::new(RefCell::new(drain)));
        LoopSender {
            queue,
            link: Arc::new(self.handle()),
            channel,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{IOLoop, MioPoller};

    #[test]
    fn the_loop_keeps_a_handler_while_a_sender_lives() {
        let mut io = IOLoop::new(MioPoller::new().unwrap());
        let first = io.channel(|_, _: ()| {});
        let second = first.clone();
        let other = io.channel(|_, _: ()| {});
        assert_eq!(io.channel_count(), 2);
        other.send(()).unwrap();
        assert_eq!(
            format!("{other:?} {first:?}"),
            "LoopSender { channel: 1, queued: 1 } LoopSender { channel: 0, queued: 0 }"
        );
        drop(first);
        io.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(io.channel_count(), 2, "a clone still sends");
        drop(second);
        io.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(io.channel_count(), 1, "the other channel stays");
        drop(other);
        io.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(io.channel_count(), 0);
    }
}
