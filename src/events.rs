//! `Events`: the readiness a handler asks for and is called with (`READ`, `WRITE`, `ERROR`).

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Not, Sub};

/// A set of I/O events, as in Tornado: [`Events::READ`], [`Events::WRITE`],
/// [`Events::ERROR`]. The empty set means "no events".
///
/// `ERROR` is always watched: a handler registered for `READ` is also called
/// with `ERROR` when the socket fails, exactly as Tornado registers
/// `events | ERROR`.
///
/// ```
/// use ioloop::Events;
/// let rw = Events::READ | Events::WRITE;
/// assert!(rw.contains(Events::READ));
/// assert!(!rw.contains(Events::ERROR));
/// assert_eq!(format!("{rw:?}"), "READ | WRITE");
/// assert_eq!(format!("{:?}", Events::empty()), "(empty)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Events(u8);

impl Events {
    /// The fd has data to read, a connection to accept, or the peer closed
    /// its side in order (the read then returns 0).
    pub const READ: Events = Events(0b001);
    /// The fd can accept more outgoing bytes.
    pub const WRITE: Events = Events(0b010);
    /// The socket failed (reset, refused, pending error) or hung up in both
    /// directions.
    ///
    /// Always watched, and **delivered once per report**: the handler is
    /// called with `ERROR` when the poller reports it, and not again until
    /// the poller reports it anew, even if the handler ignores it. `READ`
    /// and `WRITE` stay level-triggered, so nothing is lost: a later read or
    /// write returns the error (or end of stream).
    ///
    /// It comes with `READ` and `WRITE` in the same call, as epoll reports
    /// them, on both backends — those of the two the handler is registered
    /// for: a failed connect is `READ | WRITE | ERROR` to a handler
    /// interested in both, `WRITE | ERROR` to one waiting for `WRITE` (a
    /// connect that succeeds is `WRITE` alone), and so is a reset or a
    /// hang-up. Bytes the peer sent before it may still be waiting: to keep
    /// them (a proxy does), read until the read returns `0` or an error
    /// before closing. [`IOLoop::take_error`](crate::IOLoop::take_error)
    /// tells a failure (`Some(error)`: refused, reset) from a hang-up in
    /// order (`None`). A handler that wants none of that closes or removes
    /// the fd when it sees `ERROR`.
    ///
    /// Tornado (epoll, level-triggered) reports `ERROR` on every iteration
    /// until the fd is closed, so a handler that ignores it — one that has
    /// paused reading, say — spins at full CPU. Here it waits instead; a
    /// stall or spin report can still name it through
    /// [`IOLoop::readiness`](crate::IOLoop::readiness)
    /// ([`FdReadiness::error_ignored`](crate::FdReadiness::error_ignored)).
    pub const ERROR: Events = Events(0b100);
    const ALL: u8 = 0b111;

    /// No events.
    pub const fn empty() -> Events {
        Events(0)
    }

    /// `true` when no event is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `true` when every event in `other` is also in `self`.
    pub const fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }

    /// `true` when `self` and `other` share at least one event.
    pub const fn intersects(self, other: Events) -> bool {
        self.0 & other.0 != 0
    }

    /// The raw bits (`READ` = 1, `WRITE` = 2, `ERROR` = 4), for compact
    /// encodings such as traces.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The set with these bits; bits outside `READ | WRITE | ERROR` are
    /// dropped.
    pub const fn from_bits_truncate(bits: u8) -> Events {
        Events(bits & Self::ALL)
    }
}

impl BitOr for Events {
    type Output = Events;
    fn bitor(self, rhs: Events) -> Events {
        Events(self.0 | rhs.0)
    }
}

impl BitOrAssign for Events {
    fn bitor_assign(&mut self, rhs: Events) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Events {
    type Output = Events;
    fn bitand(self, rhs: Events) -> Events {
        Events(self.0 & rhs.0)
    }
}

impl Sub for Events {
    type Output = Events;
    fn sub(self, rhs: Events) -> Events {
        Events(self.0 & !rhs.0)
    }
}

impl Not for Events {
    type Output = Events;
    fn not(self) -> Events {
        Events(!self.0 & Self::ALL)
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(empty)");
        }
        let names = [
            (Events::READ, "READ"),
            (Events::WRITE, "WRITE"),
            (Events::ERROR, "ERROR"),
        ];
        let mut first = true;
        for (event, name) in names {
            if self.contains(event) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_names_in_fixed_order() {
        assert_eq!(
            format!("{:?}", Events::ERROR | Events::READ),
            "READ | ERROR"
        );
        assert_eq!(
            format!("{:?}", Events::READ | Events::WRITE | Events::ERROR),
            "READ | WRITE | ERROR"
        );
    }

    #[test]
    fn union_is_idempotent_and_display_prints_names() {
        assert_eq!(Events::READ | Events::READ, Events::READ);
        assert_eq!(format!("{}", Events::READ | Events::ERROR), "READ | ERROR");
    }

    #[test]
    fn set_operations() {
        let rw = Events::READ | Events::WRITE;
        assert_eq!(rw - Events::READ, Events::WRITE);
        assert_eq!(rw & Events::WRITE, Events::WRITE);
        assert_eq!(!rw, Events::ERROR);
        assert!(rw.intersects(Events::WRITE | Events::ERROR));
        assert!(!rw.intersects(Events::ERROR));
        assert_eq!(Events::from_bits_truncate(0xff).bits(), 0b111);
    }
}
