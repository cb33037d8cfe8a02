//! `ListenOptions`: how [`IOLoop::listen_with`](crate::IOLoop::listen_with) makes a listening socket.

/// Options of a listening socket, for
/// [`IOLoop::listen_with`](crate::IOLoop::listen_with).
///
/// The defaults are what [`IOLoop::listen`](crate::IOLoop::listen) does
/// (mio's): `SO_REUSEADDR` on, a backlog of 1024. Tornado's
/// `bind_sockets` also sets `SO_REUSEADDR`, with a backlog of 128.
///
/// ```
/// use ioloop::{IOLoop, ListenOptions, MioPoller};
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// let options = ListenOptions { backlog: 16, ..ListenOptions::default() };
/// let listener = io.listen_with("127.0.0.1:0".parse()?, options)?;
/// assert!(io.local_addr(listener)?.port() != 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenOptions {
    /// Set `SO_REUSEADDR` before binding, so that a restarted server can
    /// bind its port while old connections linger in `TIME_WAIT`.
    pub reuse_addr: bool,
    /// Connections the kernel queues before they are accepted (the
    /// argument of `listen(2)`; the kernel may cap it, e.g. at
    /// `net.core.somaxconn` on Linux).
    pub backlog: u32,
}

impl ListenOptions {
    /// The backlog [`IOLoop::listen`](crate::IOLoop::listen) uses.
    pub const BACKLOG_DEFAULT: u32 = 1024;
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            reuse_addr: true,
            backlog: ListenOptions::BACKLOG_DEFAULT,
        }
    }
}
