//! `Readiness`: the loop's table of registrations and readiness, and the queue of handlers due; pollers report into it.
//!
//! This is where the loop makes an edge-triggered backend level-triggered
//! (contract point 2): readiness stays set until an operation through the
//! loop returns `WouldBlock`, and an fd is queued whenever its handler is
//! due. Handlers themselves live in the loop, beside this table, indexed
//! by the same fd number: the table knows nothing of the poller type, so a
//! poller can write into it directly, with no copy of its events.

use crate::{Events, Fd, Ready, Token};

/// The fd bits of a slot's token when it has no live registration: no
/// token a poller reports can name it (its fd number would be −1, which no
/// slot index is), and the generation bits keep the last generation used.
const FREE: u64 = 0xFFFF_FFFF;

/// One fd number's row: its live registration (if any) and what the loop
/// tracks for it.
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    /// The live registration's token; without one, `FREE` in the fd bits
    /// and the last generation in the high bits.
    token: u64,
    /// The events the handler asked for.
    interest: Events,
    /// The events the handler may be called with: `interest`, and `ERROR`
    /// unless it was delivered since the poller last reported it (then it
    /// is not due again until the poller reports it anew; see
    /// [`Events::ERROR`]). Kept beside `interest` so that [`Slot::due`],
    /// on the dispatch path, is one table look-up and one mask.
    deliverable: Events,
    /// The readiness the poller reported and no operation has cleared since.
    pub(crate) ready: Ready,
    /// In the ready queue, or being dispatched: not to be queued again.
    pub(crate) queued: bool,
    /// A short read drains the fd (a stream socket).
    pub(crate) short_read_drains: bool,
}

impl Slot {
    /// A row with no registration, ever.
    const EMPTY: Slot = Slot {
        token: FREE,
        interest: Events::empty(),
        deliverable: Events::ERROR,
        ready: Ready::empty(),
        queued: false,
        short_read_drains: false,
    };

    /// `true` if the fd has a live registration.
    #[inline]
    fn is_live(&self) -> bool {
        self.token & FREE != FREE
    }

    /// The generation of the live registration, or of the last one.
    fn generation(&self) -> u32 {
        (self.token >> 32) as u32
    }

    /// The events the handler is due: readiness within the interest, with
    /// `ERROR` always watched but delivered once per report.
    #[inline]
    pub(crate) fn due(&self) -> Events {
        self.ready.events() & self.deliverable
    }

    /// The events the handler asked for.
    pub(crate) fn interest(&self) -> Events {
        self.interest
    }

    /// Ask for `interest` from now on.
    pub(crate) fn set_interest(&mut self, interest: Events) {
        let error = self.deliverable & Events::ERROR;
        self.interest = interest;
        self.deliverable = (interest - Events::ERROR) | error;
    }

    /// Call the handler with `events` too, whatever its interest (the
    /// planted bug [`UpdateNeverNarrows`](crate::planted::PlantedBug::UpdateNeverNarrows)).
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn widen_deliverable(&mut self, events: Events) {
        self.deliverable |= events - Events::ERROR;
    }

    /// `true` if `ERROR` was delivered since the poller last reported it.
    pub(crate) fn error_delivered(&self) -> bool {
        !self.deliverable.contains(Events::ERROR)
    }

    /// `ERROR` was delivered: not due again until reported anew.
    #[inline]
    pub(crate) fn set_error_delivered(&mut self) {
        self.deliverable = self.deliverable - Events::ERROR;
    }
}

/// The loop's readiness table, which [`Poller::wait`](crate::Poller::wait)
/// reports into: for each fd number, the live registration's token, the
/// interest asked for, the readiness reported and not cleared since; and
/// the queue of registrations whose handlers are due.
///
/// A poller calls [`report`](Self::report) once per readiness edge it
/// observes. The loop owns the table: a poller cannot make one, only
/// report into the one it is given.
pub struct Readiness {
    /// Indexed by fd number.
    slots: Vec<Slot>,
    /// Tokens to dispatch in the next iteration, in the order they became
    /// due.
    queue: Vec<Token>,
}

/// The slot index a token names: its fd bits. A token with a negative fd
/// (or the waker's) gives an index no table reaches.
#[inline]
fn index_of(token: Token) -> usize {
    token.0 as u32 as usize
}

/// The slot index of `fd`; a negative fd gives an index no table reaches
/// (one test fewer than [`Fd::index`] on the hot paths).
#[inline]
fn fd_index(fd: Fd) -> usize {
    fd.0 as u32 as usize
}

impl Readiness {
    /// An empty table.
    pub(crate) fn new() -> Readiness {
        Readiness {
            slots: Vec::new(),
            queue: Vec::new(),
        }
    }

    /// Merge an edge the poller observed for `token`: add `ready` to the
    /// registration's readiness and queue its handler if that makes it due.
    /// A token that is no longer registered (removed, or the fd reused by a
    /// later registration) is ignored: its events are stale.
    #[inline]
    pub fn report(&mut self, token: Token, ready: Ready) {
        let Some(slot) = self.slot_mut(token) else {
            return;
        };
        slot.ready |= ready;
        // `ready.events().contains(Events::ERROR)`, spelled so that a
        // poller that knows it reports no error bits spares the test.
        if ready.intersects(Ready::ERROR)
            || ready.contains(Ready::READ_CLOSED | Ready::WRITE_CLOSED)
        {
            slot.deliverable |= Events::ERROR;
        }
        if !slot.queued && !slot.due().is_empty() {
            slot.queued = true;
            self.queue.push(token);
        }
    }

    /// The row of registration `token`, if it is still the live one.
    #[inline]
    pub(crate) fn slot(&self, token: Token) -> Option<&Slot> {
        let slot = self.slots.get(index_of(token))?;
        (slot.token == token.0).then_some(slot)
    }

    /// The row of registration `token`, if it is still the live one.
    #[inline]
    pub(crate) fn slot_mut(&mut self, token: Token) -> Option<&mut Slot> {
        let slot = self.slots.get_mut(index_of(token))?;
        (slot.token == token.0).then_some(slot)
    }

    /// The token of `fd`'s live registration.
    #[inline]
    pub(crate) fn token(&self, fd: Fd) -> Option<Token> {
        let slot = self.slots.get(fd_index(fd))?;
        slot.is_live().then_some(Token(slot.token))
    }

    /// The token and row of `fd`'s live registration.
    #[inline]
    pub(crate) fn live_mut(&mut self, fd: Fd) -> Option<(Token, &mut Slot)> {
        let slot = self.slots.get_mut(fd_index(fd))?;
        slot.is_live().then_some((Token(slot.token), slot))
    }

    /// The token the next registration of `fd` gets (its generation one
    /// more than the last, never 0), or `None` if `fd` is registered.
    pub(crate) fn next_token(&self, fd: Fd) -> Option<Token> {
        let slot = fd.index().and_then(|i| self.slots.get(i));
        let generation_last = match slot {
            Some(slot) if slot.is_live() => return None,
            Some(slot) => slot.generation(),
            None => 0,
        };
        // Generation 0 is never handed out; after 2^32 registrations of one
        // fd number the count starts again at 1.
        let generation = generation_last.checked_add(1).unwrap_or(1);
        Some(Token::new(fd, generation))
    }

    /// Make `token` (from [`next_token`](Self::next_token)) the live
    /// registration of its fd, ready for nothing yet.
    pub(crate) fn insert(&mut self, token: Token, interest: Events, short_read_drains: bool) {
        let index = index_of(token);
        if self.slots.len() <= index {
            self.slots.resize(index + 1, Slot::EMPTY);
        }
        let mut slot = Slot {
            token: token.0,
            short_read_drains,
            ..Slot::EMPTY
        };
        slot.set_interest(interest);
        self.slots[index] = slot;
    }

    /// End `fd`'s live registration; `false` if it had none. Its events
    /// still in the queue are dropped when their turn comes.
    pub(crate) fn remove(&mut self, fd: Fd) -> bool {
        let Some(slot) = fd.index().and_then(|i| self.slots.get_mut(i)) else {
            return false;
        };
        if !slot.is_live() {
            return false;
        }
        slot.token |= FREE;
        true
    }

    /// The row of `fd`, registered or not, to save and restore around an
    /// operation that may fail.
    pub(crate) fn row(&self, fd: Fd) -> Option<Slot> {
        self.slots.get(fd.index()?).copied()
    }

    /// Put back a row saved with [`row`](Self::row).
    pub(crate) fn restore(&mut self, fd: Fd, row: Slot) {
        if let Some(slot) = fd.index().and_then(|i| self.slots.get_mut(i)) {
            *slot = row;
        }
    }

    /// Every fd with a live registration and its interest, in fd order.
    pub(crate) fn registrations(&self) -> impl Iterator<Item = (Fd, Token, Events)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_live())
            .map(|(index, slot)| (Fd(index as i32), Token(slot.token), slot.interest))
    }

    /// An operation on `fd` returned `WouldBlock` for `events`: forget that
    /// readiness until the poller reports a new edge. Harmless on an fd
    /// with no registration (a new one starts ready for nothing).
    #[inline]
    pub(crate) fn clear(&mut self, fd: Fd, events: Events) {
        let Some(slot) = self.slots.get_mut(fd_index(fd)) else {
            return;
        };
        let mut cleared = Ready::empty();
        if events.contains(Events::READ) {
            cleared |= Ready::READABLE | Ready::READ_CLOSED;
        }
        if events.contains(Events::WRITE) {
            cleared |= Ready::WRITABLE;
        }
        slot.ready = slot.ready.remove(cleared);
    }

    /// Queue `token`'s handler if it is live, due, and not queued already.
    pub(crate) fn queue_if_due(&mut self, token: Token) {
        let Some(slot) = self.slot_mut(token) else {
            return;
        };
        if !slot.queued && !slot.due().is_empty() {
            slot.queued = true;
            self.queue.push(token);
        }
    }

    /// Queue `token` for the next iteration; the caller has marked it
    /// queued.
    #[inline]
    pub(crate) fn push(&mut self, token: Token) {
        self.queue.push(token);
    }

    /// `true` if no handler is queued.
    pub(crate) fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Swap the queue with `batch` (empty), to dispatch what it held while
    /// new tokens queue for the next iteration.
    pub(crate) fn take_queue(&mut self, batch: &mut Vec<Token>) {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut self.queue, batch);
    }

    /// Put tokens back at the front of the queue, ahead of those queued
    /// since (they are still marked queued).
    pub(crate) fn requeue_front(&mut self, tokens: impl Iterator<Item = Token>) {
        self.queue.splice(0..0, tokens);
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("registrations", &self.registrations().count())
            .field("queued", &self.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with `fd` registered for `interest`; its token.
    fn registered(table: &mut Readiness, fd: i32, interest: Events) -> Token {
        let token = table.next_token(Fd(fd)).expect("fd is free");
        table.insert(token, interest, true);
        token
    }

    fn queued(table: &mut Readiness) -> Vec<Token> {
        let mut batch = Vec::new();
        table.take_queue(&mut batch);
        batch
    }

    #[test]
    fn a_report_queues_a_due_handler_once() {
        let mut table = Readiness::new();
        let token = registered(&mut table, 3, Events::READ);
        table.report(token, Ready::WRITABLE); // not asked for
        assert!(table.queue_is_empty());
        table.report(token, Ready::READABLE);
        table.report(token, Ready::READABLE);
        assert_eq!(queued(&mut table), [token]);
        assert_eq!(table.slot(token).map(Slot::due), Some(Events::READ));
    }

    #[test]
    fn the_error_test_of_a_report_agrees_with_ready_events() {
        let bits = [
            Ready::READABLE,
            Ready::WRITABLE,
            Ready::READ_CLOSED,
            Ready::WRITE_CLOSED,
            Ready::ERROR,
        ];
        for subset in 0..1u32 << bits.len() {
            let ready = (0..bits.len())
                .filter(|i| subset & 1 << i != 0)
                .fold(Ready::empty(), |ready, i| ready | bits[i]);
            let mut table = Readiness::new();
            let token = registered(&mut table, 0, Events::empty());
            // Delivered already: due again only if this report brings it.
            table.slot_mut(token).unwrap().set_error_delivered();
            table.report(token, ready);
            let slot = table.slot(token).unwrap();
            let error = ready.events().contains(Events::ERROR);
            assert_eq!(slot.due().contains(Events::ERROR), error, "{ready:?}");
        }
    }

    #[test]
    fn stale_and_foreign_tokens_are_dropped() {
        let mut table = Readiness::new();
        let old = registered(&mut table, 3, Events::READ);
        assert!(table.remove(Fd(3)));
        assert!(!table.remove(Fd(3)));
        let new = registered(&mut table, 3, Events::READ);
        assert_eq!(new.generation(), old.generation() + 1);
        table.report(old, Ready::READABLE);
        // The waker's token, a negative fd, an fd past the table, a free
        // fd below it, generation 0.
        for token in [
            Token(u64::MAX),
            Token::new(Fd(-2), 1),
            Token::new(Fd(99), 1),
            Token::new(Fd(1), 0),
            Token::new(Fd(3), 0),
        ] {
            table.report(token, Ready::READABLE);
        }
        assert!(table.queue_is_empty());
        assert_eq!(table.slot(new).map(|slot| slot.ready), Some(Ready::empty()));
        assert_eq!(table.token(Fd(3)), Some(new));
        assert_eq!(table.token(Fd(1)), None);
        assert_eq!(table.token(Fd(-1)), None);
    }

    #[test]
    fn generation_zero_is_never_handed_out() {
        let mut table = Readiness::new();
        table.insert(Token::new(Fd(5), u32::MAX), Events::READ, false);
        assert_eq!(
            format!("{table:?}"),
            "Readiness { registrations: 1, queued: 0 }"
        );
        assert_eq!(table.next_token(Fd(5)), None);
        assert!(table.remove(Fd(5)));
        assert_eq!(table.next_token(Fd(5)), Some(Token::new(Fd(5), 1)));
        assert_eq!(table.next_token(Fd(6)), Some(Token::new(Fd(6), 1)));
    }

    #[test]
    fn error_is_due_once_per_report() {
        let mut table = Readiness::new();
        let token = registered(&mut table, 0, Events::READ | Events::ERROR);
        table.report(token, Ready::ERROR);
        assert_eq!(queued(&mut table), [token]);
        let slot = table.slot_mut(token).unwrap();
        assert_eq!(slot.due(), Events::ERROR);
        slot.set_error_delivered();
        assert!(slot.error_delivered());
        assert_eq!(slot.due(), Events::empty());
        // A change of interest keeps it delivered.
        slot.set_interest(Events::READ | Events::WRITE | Events::ERROR);
        assert_eq!(slot.due(), Events::empty());
        assert_eq!(
            slot.interest(),
            Events::READ | Events::WRITE | Events::ERROR
        );
        slot.queued = false; // as dispatch leaves it
        table.report(token, Ready::ERROR);
        assert_eq!(table.slot(token).map(Slot::due), Some(Events::ERROR));
        assert_eq!(queued(&mut table), [token]);
    }

    #[test]
    fn clearing_forgets_readiness_and_a_new_registration_starts_clean() {
        let mut table = Readiness::new();
        let token = registered(&mut table, 2, Events::READ | Events::WRITE);
        table.report(
            token,
            Ready::READABLE | Ready::READ_CLOSED | Ready::WRITABLE,
        );
        table.clear(Fd(2), Events::READ);
        assert_eq!(table.slot(token).map(|s| s.ready), Some(Ready::WRITABLE));
        table.clear(Fd(2), Events::WRITE);
        assert_eq!(table.slot(token).map(Slot::due), Some(Events::empty()));
        table.report(token, Ready::READABLE);
        assert!(table.remove(Fd(2)));
        table.clear(Fd(2), Events::READ); // free: harmless
        table.clear(Fd(-1), Events::READ);
        let new = registered(&mut table, 2, Events::READ);
        let slot = table.slot(new).unwrap();
        assert_eq!((slot.ready, slot.queued), (Ready::empty(), false));
        assert_eq!(table.registrations().count(), 1);
    }
}
