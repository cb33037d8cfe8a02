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

/// So that `?` works in a function returning `io::Result`, next to the
/// socket calls: the kind says what went wrong (`AlreadyExists` for a
/// duplicate registration, `NotFound` for a missing one, `InvalidInput` for
/// a bad fd or argument, the poller's own kind for `Os` and `Poll`), and
/// the `Error` itself is kept as the inner error, message and source.
///
/// ```
/// use std::io;
/// use ioloop::{Events, IOLoop, MioPoller};
///
/// fn watch_twice(io: &mut IOLoop<MioPoller>) -> io::Result<()> {
///     let fd = io.listen("127.0.0.1:0".parse().unwrap())?;
///     io.add_handler(fd, |_, _, _| {}, Events::READ)?;
///     io.add_handler(fd, |_, _, _| {}, Events::READ)?; // refused
///     Ok(())
/// }
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// let error = watch_twice(&mut io).unwrap_err();
/// assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
/// assert!(error.to_string().contains("already has a handler"));
/// # Ok::<(), io::Error>(())
/// ```
impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        let kind = match &error {
            Error::AlreadyRegistered(_) => io::ErrorKind::AlreadyExists,
            Error::NotRegistered(_) => io::ErrorKind::NotFound,
            Error::InvalidFd(_) | Error::InvalidArgument(_) => io::ErrorKind::InvalidInput,
            Error::Os { source, .. } | Error::Poll(source) => source.kind(),
            Error::AlreadyRunning | Error::LoopClosed => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_the_kind_and_the_message() {
        let cases = [
            (
                Error::AlreadyRegistered(Fd(3)),
                io::ErrorKind::AlreadyExists,
            ),
            (Error::NotRegistered(Fd(3)), io::ErrorKind::NotFound),
            (Error::InvalidFd(Fd(-1)), io::ErrorKind::InvalidInput),
            (
                Error::InvalidArgument("period"),
                io::ErrorKind::InvalidInput,
            ),
            (
                Error::Os {
                    fd: Fd(3),
                    source: io::Error::from(io::ErrorKind::PermissionDenied),
                },
                io::ErrorKind::PermissionDenied,
            ),
            (
                Error::Poll(io::Error::from(io::ErrorKind::OutOfMemory)),
                io::ErrorKind::OutOfMemory,
            ),
            (Error::AlreadyRunning, io::ErrorKind::Other),
            (Error::LoopClosed, io::ErrorKind::Other),
        ];
        for (error, kind) in cases {
            let message = error.to_string();
            let converted = io::Error::from(error);
            assert_eq!(converted.kind(), kind, "{message}");
            assert_eq!(converted.to_string(), message);
            assert!(converted.get_ref().is_some_and(|inner| inner.is::<Error>()));
        }
    }
}
