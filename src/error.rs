//! `Error`: why a call into the loop was refused. A refused call changes nothing.

use std::fmt;
use std::io;

use crate::Fd;

/// Why a call into the loop failed. Every refused call leaves the loop as it
/// was (contract point 6).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// [`add_handler`](crate::IOLoop::add_handler) on an fd that already has
    /// a handler. Tornado raises here too; remove the old handler first.
    AlreadyRegistered(Fd),
    /// [`update_handler`](crate::IOLoop::update_handler) on an fd without a
    /// handler.
    NotRegistered(Fd),
    /// A negative fd number.
    InvalidFd(Fd),
    /// The poller (the OS) refused the fd: closed (`EBADF`), a regular file
    /// (`EPERM`), ...
    Os {
        /// The fd that was refused.
        fd: Fd,
        /// The poller's error.
        source: io::Error,
    },
    /// [`start`](crate::IOLoop::start) or
    /// [`run_once`](crate::IOLoop::run_once) while the loop is already
    /// running (a re-entrant start from a handler or callback).
    AlreadyRunning,
    /// Waiting for events failed for a reason other than an interrupt.
    Poll(io::Error),
    /// The loop behind a [`LoopHandle`](crate::LoopHandle) was dropped.
    LoopClosed,
    /// An argument out of its range, with what was expected.
    InvalidArgument(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyRegistered(fd) => write!(f, "fd {fd} already has a handler"),
            Error::NotRegistered(fd) => write!(f, "fd {fd} has no handler"),
            Error::InvalidFd(fd) => write!(f, "fd {fd} is not a valid file descriptor number"),
            Error::Os { fd, source } => write!(f, "the poller refused fd {fd}: {source}"),
            Error::AlreadyRunning => f.write_str("the loop is already running"),
            Error::Poll(source) => write!(f, "waiting for events failed: {source}"),
            Error::LoopClosed => f.write_str("the loop was dropped"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } | Error::Poll(source) => Some(source),
            _ => None,
        }
    }
}
