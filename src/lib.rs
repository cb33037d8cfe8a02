//! # ioloop
//!
//! A Tornado-style, single-threaded I/O reactor whose every run can be
//! replayed, bit for bit, in a simulated network.
//!
//! Write a service once against [`IOLoop<P>`](IOLoop): register a handler
//! per fd with [`add_handler`](IOLoop::add_handler), switch its interest with
//! [`update_handler`](IOLoop::update_handler), drop it with
//! [`remove_handler`](IOLoop::remove_handler); queue work with
//! [`add_callback`](IOLoop::add_callback),
//! [`call_later`](IOLoop::call_later) and [`PeriodicCallback`]. In
//! production, run it on [`MioPoller`] (epoll, kqueue); in tests, on the
//! `SimPoller` of crate `ioloop-sim`, which injects partial reads and writes,
//! resets, errors, spurious wake-ups and latency from one seed.
//!
//! ## Where Rust differs from Tornado
//!
//! - Handlers are closures `FnMut(&mut IOLoop<P>, Fd, Events)`: the loop
//!   owns them, and each call gets the loop back, so a handler can add,
//!   update or remove any handler, its own included.
//! - Socket I/O goes through the loop ([`IOLoop::read`], [`IOLoop::write`],
//!   [`IOLoop::accept`], ...), addressed by [`Fd`]: that is how the loop
//!   knows when an fd is drained (mio is edge-triggered, handlers are
//!   level-triggered) and how the same code runs on the simulator.
//! - Calls that Tornado lets raise return [`Result`]s with an [`Error`],
//!   and change nothing when they fail.
//! - [`IOLoop::close`] closes the loop; [`IOLoop::close_fd`] closes a socket.
//!
//! ```
//! use ioloop::{Events, IOLoop, MioPoller};
//! let mut io = IOLoop::new(MioPoller::new()?);
//! let listener = io.listen("127.0.0.1:0".parse()?)?;
//! let addr = io.local_addr(listener)?;
//! io.add_handler(listener, |io, listener, _events| {
//!     while let Ok((conn, _peer)) = io.accept(listener) {
//!         // Say hello, then hang up.
//!         let _ = io.write(conn, b"hello\n");
//!         let _ = io.close_fd(conn);
//!     }
//! }, Events::READ)?;
//!
//! // A client on another thread; when it has its answer, it stops the loop
//! // (a `LoopHandle` is `Send`, and wakes the loop).
//! let stopper = io.handle();
//! let client = std::thread::spawn(move || {
//!     use std::io::Read;
//!     let mut reply = String::new();
//!     let read = std::net::TcpStream::connect(addr).and_then(|mut stream| {
//!         stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
//!         stream.read_to_string(&mut reply)
//!     });
//!     stopper.stop();
//!     read.map(|_| reply)
//! });
//! io.start()?;
//! assert_eq!(client.join().unwrap()?, "hello\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

#[cfg(not(unix))]
compile_error!(
    "ioloop supports Unix only (epoll on Linux, kqueue on the BSDs and macOS): \
     its fds are Unix file descriptors"
);

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod channel;
pub mod echo;
mod error;
mod events;
mod handle;
mod ioloop;
mod mio_poller;
mod periodic;
#[cfg(feature = "planted-bugs")]
pub mod planted;
mod poller;
mod readiness;
mod socket_options;
mod stream;
mod timers;

pub use channel::{LoopSender, SendError};
pub use error::Error;
pub use events::Events;
pub use handle::LoopHandle;
pub use ioloop::{
    Callback, FdHandler, FdReadiness, Handler, IOLoop, PanicPolicy, RUN_FOR_END_ITERATIONS,
};
pub use mio_poller::MioPoller;
pub use periodic::PeriodicCallback;
pub use poller::{Event, Fd, Instant, Poller, Ready, Token, Wake};
pub use readiness::Readiness;
pub use socket_options::ListenOptions;
pub use stream::{
    CloseCallback, ConnectCallback, FlushCallback, IOStream, ReadCallback, StreamConfig,
    StreamError, StreamHandle, TcpClient, TcpServer, READ_CHUNK_BYTES,
};
pub use timers::TimeoutHandle;
