//! `IOStream`: Tornado's buffered stream over the loop — `read_until`, `read_bytes`, `read_until_close`, buffered `write` — and `TcpServer`, `TcpClient` around it.
//!
//! A stream is the handler of its fd: the loop owns it, and every callback
//! receives `&mut IOLoop<P>` and `&mut IOStream<P, S>`, where `S` is your
//! per-connection state ([`IOStream::state_mut`]) — no `Rc<RefCell<..>>`
//! needed for it. To reach a stream from elsewhere (a timeout, another
//! connection), keep its [`StreamHandle`] and call [`IOStream::with`].
//!
//! A stream may be half-closed: [`IOStream::shutdown_write`] sends a FIN
//! after the buffered bytes and keeps reading, and
//! [`StreamConfig::allow_half_close`] keeps the stream open for writing
//! after the peer's FIN. [`IOStream`] documents exactly when such a stream
//! closes.
//!
//! Every read verb funnels into one read path ([`IOStream::process`]'s
//! loop): fill the buffer from the socket while a read is pending and the
//! socket may have data, then complete the pending read if the buffer
//! satisfies it. Callbacks that start another read run from that loop, not
//! recursively, so a buffer of many pipelined requests costs no stack.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use crate::{Events, Fd, FdHandler, IOLoop, Instant, Poller, TimeoutHandle, Token};

/// Bytes one read from the socket asks for at most.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

thread_local! {
    /// Where socket reads land before they are copied into a stream's
    /// buffer, so that an idle stream holds no read chunk of its own.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK_BYTES]);
}

/// Why a stream operation failed, or why the stream closed.
///
/// More variants may come (hence `#[non_exhaustive]`): match the ones you
/// handle and treat the rest as the stream being unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The stream is closed (by us, or the peer closed it). For a read:
    /// the peer's end of stream came before the read could complete, and
    /// `unread` holds the bytes that arrived without completing it — on a
    /// stream with [`StreamConfig::allow_half_close`] the stream itself may
    /// still be open for writing ([`IOStream::closed`] says).
    Closed {
        /// Bytes received that the read did not consume.
        unread: Vec<u8>,
    },
    /// The socket failed (reset, refused, ...).
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The error, as the OS (or the simulator) put it.
        message: String,
    },
    /// A write after [`IOStream::shutdown_write`]: the write direction is
    /// shut down. Nothing was written; the stream is as it was (still
    /// readable, if the peer has not finished).
    WriteClosed,
    /// A read was asked for while another is pending (at most one, as in
    /// Tornado). Nothing changed.
    ReadPending,
    /// `read_until` saw `max_bytes` without the delimiter (Tornado's
    /// `UnsatisfiableReadError`). The stream is closed.
    Unsatisfiable {
        /// The limit the read gave.
        max_bytes: usize,
    },
    /// A buffer would exceed its limit (Tornado's `StreamBufferFullError`).
    /// For a write, nothing was written and the stream stays open; for the
    /// read buffer, the stream is closed.
    BufferFull {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The connect did not complete in time.
    TimedOut,
    /// No byte was read from or written to the socket for the stream's
    /// idle timeout ([`IOStream::set_idle_timeout`]). The stream is closed.
    Idle {
        /// The idle timeout that passed.
        timeout: Duration,
    },
    /// No byte was read from the socket for the stream's read timeout
    /// ([`IOStream::set_read_timeout`]): the peer fell silent. The stream
    /// is closed.
    ReadTimeout {
        /// The read timeout that passed.
        timeout: Duration,
    },
}

impl StreamError {
    fn io(error: &io::Error) -> StreamError {
        StreamError::Io {
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    fn closed() -> StreamError {
        StreamError::Closed { unread: Vec::new() }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Closed { unread } if unread.is_empty() => f.write_str("stream closed"),
            StreamError::Closed { unread } => {
                write!(f, "stream closed with {} unread bytes", unread.len())
            }
            StreamError::Io { message, .. } => write!(f, "socket error: {message}"),
            StreamError::WriteClosed => f.write_str("the stream's write direction is shut down"),
            StreamError::ReadPending => f.write_str("a read is already pending on this stream"),
            StreamError::Unsatisfiable { max_bytes } => {
                write!(f, "delimiter not found within {max_bytes} bytes")
            }
            StreamError::BufferFull { limit } => write!(f, "buffer full ({limit} bytes)"),
            StreamError::TimedOut => f.write_str("connect timed out"),
            StreamError::Idle { timeout } => {
                write!(
                    f,
                    "no bytes read or written for {timeout:?}: idle stream closed"
                )
            }
            StreamError::ReadTimeout { timeout } => {
                write!(
                    f,
                    "no bytes read for {timeout:?}: the peer is silent, stream closed"
                )
            }
        }
    }
}

impl std::error::Error for StreamError {}

/// A read's callback: the data, or why there is none.
pub type ReadCallback<P, S> =
    Box<dyn FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<Vec<u8>, StreamError>)>;
/// A write's callback: everything written before it is flushed, or why not.
pub type FlushCallback<P, S> =
    Box<dyn FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<(), StreamError>)>;
/// A close callback.
pub type CloseCallback<P, S> = Box<dyn FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>)>;
/// A connect's callback: the stream (closed, if the connect failed — its
/// state is still yours) and whether it connected.
pub type ConnectCallback<P, S> =
    Box<dyn FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<(), StreamError>)>;

/// Limits and sizes of a stream. The defaults, which every stream starts
/// with:
///
/// ```
/// use ioloop::StreamConfig;
///
/// let config = StreamConfig::default();
/// assert_eq!(config.max_buffer_bytes, 16 * 1024 * 1024);
/// assert_eq!(config.max_write_buffer_bytes, 16 * 1024 * 1024);
/// assert_eq!(config.write_high_water_bytes, 64 * 1024);
/// assert!(!config.allow_half_close);
/// ```
///
/// A server of many clients bounds what one slow reader may cost it with
/// `max_write_buffer_bytes`: by default, a peer that never reads may leave
/// up to 16 MiB queued for it before a write fails with
/// [`StreamError::BufferFull`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Most bytes the read buffer may hold (Tornado's `max_buffer_size`);
    /// a read that needs more fails with [`StreamError::BufferFull`].
    /// Default 16 MiB.
    pub max_buffer_bytes: usize,
    /// Most bytes the write buffer may hold (Tornado's
    /// `max_write_buffer_size`); a write past it fails, writing nothing,
    /// and the stream stays open. Default 16 MiB.
    pub max_write_buffer_bytes: usize,
    /// Above this many buffered bytes, [`IOStream::is_backpressured`] says
    /// to stop producing until a flush callback runs. Default 64 KiB.
    pub write_high_water_bytes: usize,
    /// Keep the stream open after the peer's end of stream (its FIN), so
    /// that it can go on writing: an answer to a client that sent its
    /// request and shut down its write side (`nc -N`, HTTP/1.0,
    /// `shutdown(SHUT_WR)`), or a proxy passing a half-close on. Default
    /// `false`: the peer's end of stream closes the stream once its write
    /// buffer is flushed, as in Tornado.
    ///
    /// It matters when the answer is written *after* the read callback
    /// that met the end of stream returns — later, from a timer, or once
    /// another host answered (a proxy's upstream). An answer written inside
    /// that callback is in the write buffer when it returns, and is flushed
    /// before the stream closes, with or without it.
    ///
    /// With it, the peer's end of stream fails a pending `read_bytes` or
    /// `read_until` that the buffer cannot complete with
    /// [`StreamError::Closed`] and the unread bytes, exactly as without it,
    /// but the stream stays open; `read_until_close` completes with what
    /// arrived. The stream closes once its own write side is shut down too
    /// ([`IOStream::shutdown_write`]), or on [`IOStream::close`], an error
    /// or its idle timeout. Set it before the peer can finish: first thing
    /// in `on_stream` or the connect callback.
    pub allow_half_close: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_buffer_bytes: 16 * 1024 * 1024,
            max_write_buffer_bytes: 16 * 1024 * 1024,
            write_high_water_bytes: 64 * 1024,
            allow_half_close: false,
        }
    }
}

/// What the pending read waits for.
enum ReadTarget {
    Until {
        delimiter: Delimiter,
        max_bytes: usize,
    },
    Bytes {
        count: usize,
        partial: bool,
    },
    UntilClose,
}

/// A `read_until` delimiter: kept inline up to [`Delimiter::INLINE`] bytes
/// (a line's `\n`, a header block's `\r\n\r\n`), so that a read
/// allocates nothing for it.
enum Delimiter {
    Inline {
        bytes: [u8; Delimiter::INLINE],
        len: u8,
    },
    Heap(Box<[u8]>),
}

impl Delimiter {
    const INLINE: usize = 15;

    fn new(delimiter: &[u8]) -> Delimiter {
        if delimiter.len() <= Delimiter::INLINE {
            let mut bytes = [0; Delimiter::INLINE];
            bytes[..delimiter.len()].copy_from_slice(delimiter);
            Delimiter::Inline {
                bytes,
                len: delimiter.len() as u8,
            }
        } else {
            Delimiter::Heap(delimiter.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Delimiter::Inline { bytes, len } => &bytes[..usize::from(*len)],
            Delimiter::Heap(bytes) => bytes,
        }
    }
}

/// How far the write direction is shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteSide {
    /// Writes are taken.
    Open,
    /// [`IOStream::shutdown_write`] was called: writes are refused, and the
    /// FIN goes out once the buffer is flushed.
    Draining,
    /// The FIN went out.
    Shut,
}

struct PendingRead<P: Poller, S> {
    target: ReadTarget,
    callback: ReadCallback<P, S>,
}

/// Bytes with a consumed prefix: appended at the end, taken at the front.
#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    start: usize,
}

/// A buffer that held more than this and emptied gives its memory back.
const BUFFER_KEEP_BYTES: usize = 4096;

impl Buffer {
    fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn data(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    fn extend(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    fn consume(&mut self, count: usize) {
        self.start += count;
        if self.start == self.bytes.len() {
            self.start = 0;
            if self.bytes.capacity() > BUFFER_KEEP_BYTES {
                self.bytes = Vec::new();
            } else {
                self.bytes.clear();
            }
        }
    }

    fn take(&mut self, count: usize) -> Vec<u8> {
        if self.start == 0 && count == self.bytes.len() {
            // All of it: hand the allocation over instead of copying.
            return std::mem::take(&mut self.bytes);
        }
        let taken = self.data()[..count].to_vec();
        self.consume(count);
        taken
    }
}

/// Which silence a stream watches for: any byte read or written (the idle
/// timeout), or a byte read (the read timeout).
#[derive(Clone, Copy, Debug)]
enum Silence {
    Idle = 0,
    Read = 1,
}

/// One of a stream's timeouts for silence.
#[derive(Clone, Copy, Debug)]
struct Watch {
    /// Close after this long without the activity watched (`None`: never).
    timeout: Option<Duration>,
    /// Armed while `timeout` is set; checks `since` when due.
    timer: Option<TimeoutHandle>,
    /// When the activity was last seen (kept only with a timeout).
    since: Instant,
}

impl Watch {
    const OFF: Watch = Watch {
        timeout: None,
        timer: None,
        since: Instant::ZERO,
    };
}

/// A handle naming one stream for [`IOStream::with`]: its registration, so
/// it never reaches a later stream on a reused fd number, and its state
/// type `S`, so it cannot be asked for the wrong one.
pub struct StreamHandle<S = ()> {
    token: Token,
    state: PhantomData<fn() -> S>,
}

impl<S> StreamHandle<S> {
    fn new(token: Token) -> StreamHandle<S> {
        StreamHandle {
            token,
            state: PhantomData,
        }
    }

    /// The fd of the stream.
    pub fn fd(self) -> Fd {
        self.token.fd()
    }

    /// `true` while the stream is open in `io`, whether or not one of its
    /// callbacks is running. Where [`IOStream::with`] answers `None`, it
    /// tells a stream busy in its own callback (open: defer the work with
    /// [`IOLoop::add_callback`], or reach it with
    /// [`IOStream::with_stream`] from that callback) from a closed one.
    pub fn is_open<P: Poller>(self, io: &IOLoop<P>) -> bool {
        io.token(self.fd()) == Some(self.token)
    }
}

impl<S> Clone for StreamHandle<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for StreamHandle<S> {}

impl<S> PartialEq for StreamHandle<S> {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
    }
}

impl<S> Eq for StreamHandle<S> {}

impl<S> std::hash::Hash for StreamHandle<S> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.token.hash(state);
    }
}

/// Handles order by fd, then by registration: a key for a `BTreeMap` or
/// `BTreeSet` of streams (a map a seeded run iterates in the same order
/// every time, unlike a `HashMap` with a random hasher).
impl<S> PartialOrd for StreamHandle<S> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<S> Ord for StreamHandle<S> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.token.fd(), self.token.generation())
            .cmp(&(other.token.fd(), other.token.generation()))
    }
}

impl<S> fmt::Debug for StreamHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamHandle({:?})", self.token)
    }
}

/// Tornado's `IOStream`: a connected socket with a read buffer, a write
/// buffer, and callbacks.
///
/// `S` is your per-connection state, reached from every callback through
/// [`state_mut`](Self::state_mut). At most one read is pending at a time; a
/// write never blocks (what the socket does not take is buffered, and
/// [`is_backpressured`](Self::is_backpressured) tells a producer to wait
/// for [`write_then`](Self::write_then)'s callback).
///
/// ```
/// use ioloop::{IOLoop, MioPoller, TcpServer};
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// // An echo server: each line back, as it comes.
/// let server = TcpServer::bind(&mut io, "127.0.0.1:0".parse()?, |io, stream| {
///     fn echo_line(io: &mut IOLoop<MioPoller>, stream: &mut ioloop::IOStream<MioPoller>) {
///         let _ = stream.read_until(io, b"\n", 64 * 1024, |io, stream, line| {
///             if let Ok(line) = line {
///                 let _ = stream.write(io, &line);
///                 echo_line(io, stream);
///             }
///         });
///     }
///     echo_line(io, stream);
/// })?;
/// # let _ = server;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Half-close
///
/// TCP ends each direction on its own. [`shutdown_write`](Self::shutdown_write)
/// ends ours: a FIN once every buffered byte is written, while reading goes
/// on. [`StreamConfig::allow_half_close`] lets the peer end theirs without
/// closing the stream, so that it can still write. A stream closes —
/// [`closed`](Self::closed) turns `true` and the close callback runs, once
/// — when both directions are done:
///
/// - **reading is done** once a read has met the peer's end of stream and
///   no read is pending. The read that meets it completes or fails first:
///   `read_until_close` with what arrived, `read_bytes` and `read_until`
///   with what the buffer can give, else [`StreamError::Closed`] with the
///   unread bytes; bytes its callback leaves unread with no new read are
///   dropped with the stream. A stream meets the end of stream by reading:
///   keep a read pending to notice it. A reader that pauses gets every
///   byte, then the end of stream, when it reads again: a stream reads
///   from its socket only while a read is pending, so with none, what
///   arrives waits in the kernel, and TCP's flow control slows the peer.
/// - **writing is done** once `shutdown_write` was called and its FIN went
///   out, after every byte written before it; without `allow_half_close`
///   (the default), also once the write buffer is empty — the peer's end of
///   stream closes a default stream after its writes are flushed, as it
///   always has.
///
/// [`close`](Self::close), a socket error, an unsatisfiable read, the
/// idle timeout and the read timeout close a stream whatever its
/// directions. While one
/// direction is done and the other is not, `closed()` is `false` and
/// [`error`](Self::error) `None`; [`read_closed`](Self::read_closed) and
/// [`write_closed`](Self::write_closed) say which side is done; the idle
/// timeout still runs (a byte either way counts as activity), the read
/// timeout ends with the peer's end of stream;
/// [`is_backpressured`](Self::is_backpressured) and flush callbacks count
/// the bytes still to go out before the FIN; the stream's
/// [`StreamHandle`] reaches it until it closes.
///
/// A server that answers only once the client has sent everything and
/// shut down its write side (`nc -N`, HTTP/1.0), the answer coming later
/// (from a timer here; from another connection in a proxy):
///
/// ```
/// use ioloop::{IOLoop, IOStream, MioPoller, StreamConfig, TcpClient, TcpServer};
/// use std::time::Duration;
///
/// let mut io = IOLoop::new(MioPoller::new()?);
/// let server = TcpServer::bind(&mut io, "127.0.0.1:0".parse()?, |io, stream: &mut IOStream<MioPoller>| {
///     stream.set_config(StreamConfig { allow_half_close: true, ..StreamConfig::default() });
///     let _ = stream.read_until_close(io, |io, stream, request| {
///         let Ok(request) = request else { return };
///         // The client is done sending; the stream is still open, and writable.
///         let handle = stream.handle();
///         io.call_later(Duration::from_millis(10), move |io| {
///             IOStream::with(io, handle, |io, stream: &mut IOStream<MioPoller>| {
///                 let _ = stream.write(io, format!("{} bytes\n", request.len()).as_bytes());
///                 let _ = stream.shutdown_write(io); // both sides done: it closes
///             });
///         });
///     });
/// })?;
///
/// let answer = std::rc::Rc::new(std::cell::RefCell::new(None));
/// let got = answer.clone();
/// let addr = server.local_addr(&io)?;
/// TcpClient::connect(&mut io, addr, Duration::from_secs(5), (), move |io, stream, connected| {
///     connected.expect("connected");
///     stream.write(io, b"hello").unwrap();
///     stream.shutdown_write(io).unwrap(); // FIN after "hello"
///     assert!(stream.write(io, b"more").is_err());
///     stream.read_until_close(io, move |_, _, all| *got.borrow_mut() = Some(all)).unwrap();
/// });
/// io.run_until(Duration::from_secs(5), |_| answer.borrow().is_some())?;
/// assert_eq!(answer.borrow_mut().take(), Some(Ok(b"5 bytes\n".to_vec())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IOStream<P: Poller, S = ()> {
    fd: Fd,
    token: Option<Token>,
    state: S,
    config: StreamConfig,
    read_buffer: Buffer,
    write_buffer: Buffer,
    /// Bytes handed to `write` so far, and bytes the socket took.
    queued_total: u64,
    flushed_total: u64,
    read: Option<PendingRead<P, S>>,
    /// Where `read_until` resumes its search for the delimiter.
    scanned: usize,
    flush_callbacks: VecDeque<(u64, FlushCallback<P, S>)>,
    close_callback: Option<CloseCallback<P, S>>,
    connecting: Option<ConnectCallback<P, S>>,
    connect_timeout: Option<TimeoutHandle>,
    /// The idle timeout (any byte read or written) and the read timeout
    /// (a byte read), indexed by [`Silence`].
    watches: [Watch; 2],
    /// The socket may have data (an event said so; no read drained it yet).
    readable: bool,
    /// The socket may take data.
    writable: bool,
    /// The peer closed its side: reads end once the buffer is used up.
    eof: bool,
    write_side: WriteSide,
    closed: bool,
    error: Option<StreamError>,
    /// Inside the processing loop: new work is picked up by it.
    processing: bool,
    interest: Events,
    /// Told once when the stream closes, or is dropped unclosed (its
    /// server's list lets go of it).
    on_gone: Option<Box<dyn FnOnce()>>,
}

impl<P: Poller, S> Drop for IOStream<P, S> {
    fn drop(&mut self) {
        // A stream dropped without `close` (its handler removed from
        // under it, or the loop dropped) is gone too.
        if let Some(gone) = self.on_gone.take() {
            gone();
        }
    }
}

impl<P: Poller, S: 'static> IOStream<P, S> {
    fn new(fd: Fd, state: S, connected: bool) -> IOStream<P, S> {
        IOStream {
            fd,
            token: None,
            state,
            config: StreamConfig::default(),
            read_buffer: Buffer::default(),
            write_buffer: Buffer::default(),
            queued_total: 0,
            flushed_total: 0,
            read: None,
            scanned: 0,
            flush_callbacks: VecDeque::new(),
            close_callback: None,
            connecting: None,
            connect_timeout: None,
            watches: [Watch::OFF; 2],
            readable: connected,
            writable: connected,
            eof: false,
            write_side: WriteSide::Open,
            closed: false,
            error: None,
            processing: false,
            interest: Events::empty(),
            on_gone: None,
        }
    }

    /// Make a connected socket (accepted, or connected through the loop) a
    /// stream the loop owns, with state `state`; `on_ready` runs at once
    /// with the stream, to start reading or writing. Fails, changing
    /// nothing, if `fd` already has a handler or the poller refuses it.
    pub fn attach<F>(
        io: &mut IOLoop<P>,
        fd: Fd,
        state: S,
        on_ready: F,
    ) -> Result<StreamHandle<S>, crate::Error>
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>),
    {
        IOStream::attach_noting(io, fd, state, None, |_| {}, on_ready)
    }

    /// [`attach`](Self::attach), calling `registered` with the new handle
    /// before any of the stream's own code runs, and `on_gone` once the
    /// stream closes or is dropped (a server's list of its streams).
    fn attach_noting<N, F>(
        io: &mut IOLoop<P>,
        fd: Fd,
        state: S,
        on_gone: Option<Box<dyn FnOnce()>>,
        registered: N,
        on_ready: F,
    ) -> Result<StreamHandle<S>, crate::Error>
    where
        N: FnOnce(StreamHandle<S>),
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>),
    {
        let mut stream = IOStream::new(fd, state, true);
        stream.on_gone = on_gone;
        let handle = stream
            .register(io, Events::empty())
            .map_err(|refused| refused.0)?;
        registered(handle);
        IOStream::<P, S>::with(io, handle, |io, stream: &mut IOStream<P, S>| {
            stream.processing = true;
            on_ready(io, stream);
            stream.processing = false;
            stream.process(io);
        });
        Ok(handle)
    }

    /// Hand the stream to the loop; if the loop refuses it, the error and
    /// the stream come back.
    fn register(
        mut self,
        io: &mut IOLoop<P>,
        interest: Events,
    ) -> Result<StreamHandle<S>, Box<(crate::Error, Self)>> {
        let fd = self.fd;
        self.interest = interest;
        io.add_or_give_back(fd, self, interest).map_err(Box::new)?;
        let token = io.token(fd).expect("just registered");
        io.with_handler(token, |_, stream: &mut IOStream<P, S>| {
            stream.token = Some(token)
        });
        Ok(StreamHandle::new(token))
    }

    /// Run `f` with the stream `handle` names. `None` if it is closed, or
    /// if it is the stream whose callback is running now — inside its own
    /// callbacks, use the `&mut IOStream` they receive;
    /// [`StreamHandle::is_open`] tells the two apart.
    ///
    /// The other stream's callbacks may run inside `f`: a read started
    /// there completes at once if its bytes are already buffered, and its
    /// callback is called before `f` returns. If that callback reaches
    /// back for the stream whose callback called `with` (a proxy pumping
    /// bytes between two streams does), it gets `None`: defer such work
    /// with [`IOLoop::add_callback`], which runs it once both callbacks
    /// have returned (as `examples/proxy` does).
    ///
    /// From a stream's own callback, [`with_stream`](Self::with_stream)
    /// reaches that stream too (but not one further up the call stack:
    /// the proxy's case above).
    pub fn with<R, F>(io: &mut IOLoop<P>, handle: StreamHandle<S>, f: F) -> Option<R>
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>) -> R,
    {
        io.with_handler(handle.token, f)
    }

    /// Run `f` with the stream `handle` names, from the callback of this
    /// one: this stream itself if `handle` is its own (which
    /// [`IOStream::with`] cannot reach from here), else as `with` does.
    /// `None` if that stream is closed. For a broadcast from one
    /// connection to many, the sender among them:
    ///
    /// ```
    /// # use ioloop::{IOLoop, IOStream, Poller, StreamHandle};
    /// fn publish<P: Poller>(
    ///     io: &mut IOLoop<P>,
    ///     sender: &mut IOStream<P>,
    ///     subscribers: &[StreamHandle<()>],
    ///     line: &[u8],
    /// ) {
    ///     for &subscriber in subscribers {
    ///         // The sender's own copy too, if it subscribed. A subscriber
    ///         // too slow to take it (`BufferFull`) is let go.
    ///         sender.with_stream(io, subscriber, |io, stream| {
    ///             if stream.write(io, line).is_err() {
    ///                 stream.close(io);
    ///             }
    ///         });
    ///     }
    /// }
    /// ```
    pub fn with_stream<R, F>(
        &mut self,
        io: &mut IOLoop<P>,
        handle: StreamHandle<S>,
        f: F,
    ) -> Option<R>
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>) -> R,
    {
        if self.token == Some(handle.token) {
            return (!self.closed).then(|| f(io, self));
        }
        IOStream::with(io, handle, f)
    }

    // ----- reading ------------------------------------------------------------

    /// Read until `delimiter` (included in the data); fail with
    /// [`StreamError::Unsatisfiable`], closing the stream, if `max_bytes`
    /// arrive without it.
    pub fn read_until<F>(
        &mut self,
        io: &mut IOLoop<P>,
        delimiter: &[u8],
        max_bytes: usize,
        callback: F,
    ) -> Result<(), StreamError>
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<Vec<u8>, StreamError>) + 'static,
    {
        if delimiter.is_empty() {
            return Err(StreamError::Unsatisfiable { max_bytes: 0 });
        }
        let target = ReadTarget::Until {
            delimiter: Delimiter::new(delimiter),
            max_bytes,
        };
        self.start_read(io, target, Box::new(callback))
    }

    /// Read `count` bytes; with `partial`, as soon as any bytes (at most
    /// `count`) are there.
    pub fn read_bytes<F>(
        &mut self,
        io: &mut IOLoop<P>,
        count: usize,
        partial: bool,
        callback: F,
    ) -> Result<(), StreamError>
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<Vec<u8>, StreamError>) + 'static,
    {
        let target = ReadTarget::Bytes { count, partial };
        self.start_read(io, target, Box::new(callback))
    }

    /// Read everything until the peer's end of stream (bounded by the read
    /// buffer's limit). Once that has arrived (on a half-closed stream),
    /// it completes at once with what is buffered, perhaps nothing.
    pub fn read_until_close<F>(
        &mut self,
        io: &mut IOLoop<P>,
        callback: F,
    ) -> Result<(), StreamError>
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<Vec<u8>, StreamError>) + 'static,
    {
        self.start_read(io, ReadTarget::UntilClose, Box::new(callback))
    }

    fn start_read(
        &mut self,
        io: &mut IOLoop<P>,
        target: ReadTarget,
        callback: ReadCallback<P, S>,
    ) -> Result<(), StreamError> {
        if self.closed {
            return Err(self.error.clone().unwrap_or_else(StreamError::closed));
        }
        if self.read.is_some() {
            return Err(StreamError::ReadPending);
        }
        self.read = Some(PendingRead { target, callback });
        self.scanned = 0;
        self.process(io);
        Ok(())
    }

    /// Bytes received and not yet read.
    pub fn read_buffer_len(&self) -> usize {
        self.read_buffer.len()
    }

    /// `true` while a read is pending.
    pub fn reading(&self) -> bool {
        self.read.is_some()
    }

    // ----- writing ------------------------------------------------------------

    /// Write `data`: at once as far as the socket takes it, the rest
    /// buffered. Fails, writing nothing, on a closed stream, after
    /// [`shutdown_write`](Self::shutdown_write) ([`StreamError::WriteClosed`]),
    /// or if the write buffer would exceed its limit.
    pub fn write(&mut self, io: &mut IOLoop<P>, data: &[u8]) -> Result<(), StreamError> {
        if self.closed {
            return Err(self.error.clone().unwrap_or_else(StreamError::closed));
        }
        if self.write_side != WriteSide::Open {
            return Err(StreamError::WriteClosed);
        }
        if self.write_buffer.len() + data.len() > self.config.max_write_buffer_bytes {
            return Err(StreamError::BufferFull {
                limit: self.config.max_write_buffer_bytes,
            });
        }
        self.queued_total += data.len() as u64;
        let mut written = 0;
        if self.write_buffer.is_empty() && self.writable && self.connecting.is_none() {
            written = self.write_some(io, data);
        }
        if written < data.len() && !self.closed {
            self.write_buffer.extend(&data[written..]);
        }
        self.process(io);
        Ok(())
    }

    /// [`write`](Self::write) `data`, then run `callback` once everything
    /// written so far is flushed to the socket (or the stream fails). Fails
    /// as `write` does, and then `callback` never runs.
    pub fn write_then<F>(
        &mut self,
        io: &mut IOLoop<P>,
        data: &[u8],
        callback: F,
    ) -> Result<(), StreamError>
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<(), StreamError>) + 'static,
    {
        if self.closed {
            return Err(self.error.clone().unwrap_or_else(StreamError::closed));
        }
        let target = self.queued_total + data.len() as u64;
        self.write(io, data)?;
        self.flush_callbacks.push_back((target, Box::new(callback)));
        self.process(io);
        Ok(())
    }

    /// Shut down the write direction (`shutdown(SHUT_WR)`; asyncio's
    /// `write_eof`): the peer reads every byte written so far, then end of
    /// stream. The FIN goes out once the write buffer is flushed; flush
    /// callbacks still run as it drains. From now on writes fail with
    /// [`StreamError::WriteClosed`], changing nothing, while reads go on
    /// until the peer finishes too — then the stream closes (see
    /// [Half-close](Self#half-close)). Calling it again does nothing. Fails
    /// only on a closed stream, with the error writes get there.
    ///
    /// A client that sends its request, then waits for the whole answer:
    ///
    /// ```
    /// # use ioloop::{IOLoop, IOStream, MioPoller, StreamError};
    /// fn request(io: &mut IOLoop<MioPoller>, stream: &mut IOStream<MioPoller>) -> Result<(), StreamError> {
    ///     stream.write(io, b"GET / HTTP/1.0\r\n\r\n")?;
    ///     stream.shutdown_write(io)?;
    ///     stream.read_until_close(io, |_, _, answer| println!("{answer:?}"))
    /// }
    /// ```
    #[doc(alias = "write_eof")]
    pub fn shutdown_write(&mut self, io: &mut IOLoop<P>) -> Result<(), StreamError> {
        if self.closed {
            return Err(self.error.clone().unwrap_or_else(StreamError::closed));
        }
        if self.write_side == WriteSide::Open {
            self.write_side = WriteSide::Draining;
            self.process(io);
        }
        Ok(())
    }

    /// `true` once no more bytes can be written: after
    /// [`shutdown_write`](Self::shutdown_write) (even while the buffer
    /// still drains before the FIN), or once the stream is closed.
    pub fn write_closed(&self) -> bool {
        self.closed || self.write_side != WriteSide::Open
    }

    /// `true` once no more bytes will arrive: the peer's end of stream has
    /// been read (bytes before it may still wait in the read buffer,
    /// [`read_buffer_len`](Self::read_buffer_len)), or the stream is closed.
    ///
    /// A stream meets the end of stream by reading: with no read pending it
    /// does not notice the peer's FIN, and this stays `false`. Keep a read
    /// pending (`read_until_close`, or the next `read_until`) to learn of it;
    /// the read's callback then sees it (`Ok` from `read_until_close`, or
    /// [`StreamError::Closed`] with the bytes that came).
    pub fn read_closed(&self) -> bool {
        self.closed || self.eof
    }

    /// Bytes written but not yet taken by the socket.
    pub fn write_buffer_len(&self) -> usize {
        self.write_buffer.len()
    }

    /// `true` when the write buffer is above its high-water mark: a
    /// producer should wait for a [`write_then`](Self::write_then) callback.
    pub fn is_backpressured(&self) -> bool {
        self.write_buffer.len() > self.config.write_high_water_bytes
    }

    /// Write from `data` until the socket takes no more; the bytes written.
    fn write_some(&mut self, io: &mut IOLoop<P>, data: &[u8]) -> usize {
        let mut written = 0;
        while written < data.len() {
            match io.write(self.fd, &data[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close_with(io, Some(StreamError::io(&e)));
                    break;
                }
            }
        }
        self.flushed_total += written as u64;
        if written > 0 {
            self.mark_active(io);
        }
        written
    }

    // ----- idle timeout -------------------------------------------------------

    /// Close the stream with [`StreamError::Idle`] once `timeout` passes
    /// without a byte read from or written to the socket, counted from now
    /// (`None`, the default: never). A pending read fails with that error
    /// and the close callback runs, as for any other failure. Call it again
    /// to change or clear the timeout. Tornado's `HTTPServer` has the same
    /// knob (`idle_connection_timeout`); here any service gets it.
    ///
    /// Waiting on the loop's clock, it runs on virtual time under the
    /// simulator. Bytes that sit in a buffer do not count as activity: a
    /// peer that stopped reading while a write is buffered times out too.
    /// A half-closed stream keeps its timeout: one that neither reads nor
    /// writes for that long is closed like any other. Your own writes count:
    /// a client that sends heartbeats keeps the stream busy whatever the
    /// peer does — [`set_read_timeout`](Self::set_read_timeout) watches the
    /// peer alone.
    ///
    /// A stream found idle is closed only after one more poll: timeouts
    /// run before the poll in an iteration, so after the process stalled
    /// (a pause, a long GC, a suspended VM) the timeout would otherwise
    /// fire before the bytes that arrived meanwhile are read. The stream
    /// looks again after that poll and its handlers (in the same instant)
    /// and stays open if they read or wrote. Your own timeouts that judge
    /// a peer dead can do the same: from the timeout, `io.add_callback`
    /// the verdict (see [`IOLoop`]'s iteration order).
    pub fn set_idle_timeout(&mut self, io: &mut IOLoop<P>, timeout: Option<Duration>) {
        self.set_watch(io, Silence::Idle, timeout);
    }

    /// The idle timeout set by [`set_idle_timeout`](Self::set_idle_timeout).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.watches[Silence::Idle as usize].timeout
    }

    /// Close the stream with [`StreamError::ReadTimeout`] once `timeout`
    /// passes without a byte read from the socket, counted from now
    /// (`None`, the default: never). Unlike the idle timeout, the stream's
    /// own writes do not count: it tells a peer that stopped answering —
    /// a crashed machine, a partition — from a quiet connection, for a
    /// client that sends heartbeats and expects their answers. Bytes that
    /// wait in the socket count once read, so a stream whose reads are
    /// paused (no read pending) times out too. It looks once more after
    /// the next poll before it closes, as the idle timeout does.
    ///
    /// It ends at the peer's end of stream, when nothing more can be read
    /// (a half-closed stream that still writes keeps its idle timeout);
    /// set after it, it is off. Set on a stream still connecting, it (as
    /// the idle timeout) counts from the connect: the connect has its own
    /// timeout.
    pub fn set_read_timeout(&mut self, io: &mut IOLoop<P>, timeout: Option<Duration>) {
        self.set_watch(io, Silence::Read, timeout);
    }

    /// The read timeout set by [`set_read_timeout`](Self::set_read_timeout).
    pub fn read_timeout(&self) -> Option<Duration> {
        self.watches[Silence::Read as usize].timeout
    }

    fn set_watch(&mut self, io: &mut IOLoop<P>, silence: Silence, timeout: Option<Duration>) {
        let over = matches!(silence, Silence::Read) && self.eof;
        let watch = &mut self.watches[silence as usize];
        if let Some(timer) = watch.timer.take() {
            io.remove_timeout(timer);
        }
        watch.timeout = if over { None } else { timeout };
        if self.closed || watch.timeout.is_none() {
            return;
        }
        watch.since = io.time();
        self.arm_watch(io, silence);
    }

    /// A byte was written: the idle timeout starts again.
    fn mark_active(&mut self, io: &IOLoop<P>) {
        if self.watches[Silence::Idle as usize].timeout.is_some() {
            self.watches[Silence::Idle as usize].since = io.time();
        }
    }

    /// A byte was read: both timeouts start again.
    fn mark_read(&mut self, io: &IOLoop<P>) {
        for watch in &mut self.watches {
            if watch.timeout.is_some() {
                watch.since = io.time();
            }
        }
    }

    /// Wake up when the stream would have been silent for the watch's
    /// timeout since it was last heard: activity meanwhile moves no timer,
    /// the wake-up looks at `since` and sleeps again if need be.
    fn arm_watch(&mut self, io: &mut IOLoop<P>, silence: Silence) {
        let watch = &self.watches[silence as usize];
        let Some(timeout) = watch.timeout else {
            return;
        };
        self.watch_at(io, silence, watch.since + timeout, false);
    }

    /// Call [`on_watch`](Self::on_watch) at `due`; `confirming`: the stream
    /// was found silent, and this looks again after a poll.
    fn watch_at(&mut self, io: &mut IOLoop<P>, silence: Silence, due: Instant, confirming: bool) {
        let Some(token) = self.token else {
            return;
        };
        let handle = StreamHandle::<S>::new(token);
        self.watches[silence as usize].timer = Some(io.call_at(due, move |io| {
            IOStream::with(io, handle, |io, stream: &mut IOStream<P, S>| {
                stream.on_watch(io, silence, confirming)
            });
        }));
    }

    fn on_watch(&mut self, io: &mut IOLoop<P>, silence: Silence, confirming: bool) {
        let watch = &mut self.watches[silence as usize];
        watch.timer = None;
        let Some(timeout) = watch.timeout else {
            return;
        };
        if self.closed {
            return;
        }
        let now = io.time();
        if self.connecting.is_some() {
            // Not connected yet: the connect has a timeout of its own, and
            // the silence counts once connected.
            watch.since = now;
            self.arm_watch(io, silence);
        } else if now.saturating_duration_since(watch.since) < timeout {
            self.arm_watch(io, silence);
        } else if confirming {
            let error = match silence {
                Silence::Idle => StreamError::Idle { timeout },
                Silence::Read => StreamError::ReadTimeout { timeout },
            };
            self.close_with(io, Some(error));
        } else {
            // Due now: it runs in the next iteration, after this one's poll
            // and handlers have read what waited in the socket.
            self.watch_at(io, silence, now, true);
        }
    }

    // ----- state, closing ---------------------------------------------------------

    /// Your per-connection state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Your per-connection state, to change.
    pub fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }

    /// The stream's fd.
    pub fn fd(&self) -> Fd {
        self.fd
    }

    /// The handle that reaches this stream through [`IOStream::with`]
    /// (from a timeout, or another connection's callback).
    pub fn handle(&self) -> StreamHandle<S> {
        StreamHandle::new(
            self.token
                .expect("a stream is registered before any code sees it"),
        )
    }

    /// Change the stream's limits.
    pub fn set_config(&mut self, config: StreamConfig) {
        self.config = config;
    }

    /// The stream's limits.
    pub fn config(&self) -> StreamConfig {
        self.config
    }

    /// Run `callback` when the stream closes, for whatever reason (after
    /// the pending read's and flush callbacks have been told): once, and
    /// for a half-closed stream only when both directions are done (see
    /// [Half-close](Self#half-close)).
    ///
    /// It **replaces** every close callback set or added before, as
    /// Tornado's `set_close_callback` does; to keep them, use
    /// [`add_close_callback`](Self::add_close_callback). Set from a
    /// callback the close itself runs (`on_connect`'s failure, a failed
    /// read's or flush's callback), it runs at the end of that close; set
    /// once the close has finished, it never runs.
    pub fn set_close_callback<F>(&mut self, callback: F)
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>) + 'static,
    {
        self.close_callback = Some(Box::new(callback));
    }

    /// Run `callback` too when the stream closes, after the close callbacks
    /// set or added before it, in the order they were added — for a second
    /// party (a shutdown that cancels its grace timer) that must not undo
    /// the first's clean-up.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use ioloop::{IOLoop, MioPoller, TcpClient};
    /// # use std::time::Duration;
    ///
    /// let mut io = IOLoop::new(MioPoller::new()?);
    /// let order = Rc::new(RefCell::new(Vec::new()));
    /// let log = Rc::clone(&order);
    /// let addr = "127.0.0.1:9".parse()?; // refused, or not: either way it closes
    /// TcpClient::connect(&mut io, addr, Duration::from_secs(1), (), move |io, stream, _| {
    ///     let (first, second) = (Rc::clone(&log), Rc::clone(&log));
    ///     stream.set_close_callback(move |_, _| first.borrow_mut().push("session clean-up"));
    ///     stream.add_close_callback(move |_, _| second.borrow_mut().push("shutdown's timer"));
    ///     stream.close(io);
    /// });
    /// io.run_until(Duration::from_secs(5), |_| order.borrow().len() == 2)?;
    /// assert_eq!(*order.borrow(), ["session clean-up", "shutdown's timer"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_close_callback<F>(&mut self, callback: F)
    where
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>) + 'static,
    {
        self.close_callback = Some(match self.close_callback.take() {
            None => Box::new(callback),
            Some(earlier) => Box::new(move |io: &mut IOLoop<P>, stream: &mut IOStream<P, S>| {
                earlier(io, stream);
                callback(io, stream);
            }),
        });
    }

    /// `true` once the stream is closed. A half-closed stream, one
    /// direction done and the other not, is not closed:
    /// [`read_closed`](Self::read_closed) and
    /// [`write_closed`](Self::write_closed) tell the directions apart.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// The error that closed the stream, if one did.
    pub fn error(&self) -> Option<&StreamError> {
        self.error.as_ref()
    }

    /// Close the stream and its socket now; unflushed writes (and the FIN
    /// of a [`shutdown_write`](Self::shutdown_write) still draining) are
    /// dropped.
    /// The pending read gets [`StreamError::Closed`] with the unread bytes,
    /// flush callbacks get `Closed`, then the close callback runs.
    pub fn close(&mut self, io: &mut IOLoop<P>) {
        self.close_with(io, None);
    }

    fn close_with(&mut self, io: &mut IOLoop<P>, error: Option<StreamError>) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.error = error;
        if let Some(timeout) = self.connect_timeout.take() {
            io.remove_timeout(timeout);
        }
        for watch in &mut self.watches {
            if let Some(timer) = watch.timer.take() {
                io.remove_timeout(timer);
            }
        }
        // A connect that failed before the loop took the stream was never
        // registered (its token is of fd -1), and its fd number, if it had
        // one, may be another socket's by now: nothing to close.
        let registered = self
            .token
            .is_some_and(|token| token.fd().0 >= 0 && token.generation() != 0);
        if registered {
            if let Err(e) = io.close_fd(self.fd) {
                // The poller refused the close (the fd was closed behind
                // the loop's back): the stream lets go of its registration
                // anyway.
                log::debug!("closing stream fd {}: {e}", self.fd);
                if io.token(self.fd) == self.token {
                    io.remove_handler(self.fd);
                }
            }
        }
        if let Some(gone) = self.on_gone.take() {
            gone();
        }
        let failure = self.error.clone().unwrap_or_else(StreamError::closed);
        if let Some(connect) = self.connecting.take() {
            connect(io, self, Err(failure.clone()));
        }
        if let Some(read) = self.read.take() {
            let failure = match &self.error {
                Some(error) => error.clone(),
                None => StreamError::Closed {
                    unread: self.read_buffer.take(self.read_buffer.len()),
                },
            };
            (read.callback)(io, self, Err(failure));
        }
        while let Some((_, callback)) = self.flush_callbacks.pop_front() {
            callback(io, self, Err(failure.clone()));
        }
        if let Some(callback) = self.close_callback.take() {
            callback(io, self);
        }
    }

    // ----- the one read path ----------------------------------------------------------

    /// Make progress: fill the read buffer while a read waits and the
    /// socket may have data, complete the pending read when the buffer
    /// satisfies it, flush writes, run flush callbacks; then ask the loop
    /// for the events still needed. Callbacks that start new work run from
    /// this loop, not recursively.
    fn process(&mut self, io: &mut IOLoop<P>) {
        if self.processing || self.closed {
            return;
        }
        self.processing = true;
        while !self.closed && self.step(io) {}
        self.processing = false;
        if !self.closed {
            self.update_interest(io);
        }
    }

    /// One round of progress; `true` if something happened.
    fn step(&mut self, io: &mut IOLoop<P>) -> bool {
        if self.connecting.is_some() {
            return false;
        }
        let mut progressed = self.flush(io);
        if self.read.is_some() {
            match self.satisfied() {
                Ok(Some(count)) => {
                    self.complete_read(io, count);
                    return true;
                }
                Ok(None) => {}
                Err(error) => {
                    self.close_with(io, Some(error));
                    return true;
                }
            }
            if self.readable && !self.eof {
                progressed |= self.fill(io);
                return progressed;
            }
            if self.eof {
                // Nothing more will come: the read fails with what arrived.
                let callback = self.read.take().expect("checked").callback;
                let unread = self.read_buffer.take(self.read_buffer.len());
                callback(io, self, Err(StreamError::Closed { unread }));
                return true;
            }
        }
        if self.eof && self.read.is_none() && self.writing_done() && !self.closed {
            self.close_with(io, None);
            return true;
        }
        progressed
    }

    /// One direction is shut: ours, or (read) the peer's.
    fn half_closed(&self) -> bool {
        self.eof || self.write_side != WriteSide::Open
    }

    /// The write direction is done, for closing once reading is done too:
    /// its FIN went out; or, on a stream that does not allow half-close,
    /// nothing waits to be written.
    fn writing_done(&self) -> bool {
        match self.write_side {
            WriteSide::Shut => true,
            WriteSide::Draining => false,
            WriteSide::Open => !self.config.allow_half_close && self.write_buffer.is_empty(),
        }
    }

    /// How many buffered bytes complete the pending read, if it can be.
    fn satisfied(&mut self) -> Result<Option<usize>, StreamError> {
        let buffered = self.read_buffer.len();
        let limit = self.config.max_buffer_bytes;
        let Some(read) = &self.read else {
            return Ok(None);
        };
        match &read.target {
            ReadTarget::Until {
                delimiter,
                max_bytes,
            } => {
                let delimiter = delimiter.as_slice();
                let data = self.read_buffer.data();
                let from = self.scanned.saturating_sub(delimiter.len() - 1);
                if let Some(at) = find(&data[from..], delimiter) {
                    let end = from + at + delimiter.len();
                    if end > *max_bytes {
                        return Err(StreamError::Unsatisfiable {
                            max_bytes: *max_bytes,
                        });
                    }
                    return Ok(Some(end));
                }
                self.scanned = buffered;
                if buffered >= *max_bytes {
                    return Err(StreamError::Unsatisfiable {
                        max_bytes: *max_bytes,
                    });
                }
            }
            ReadTarget::Bytes { count, partial } => {
                if buffered >= *count || (*partial && buffered > 0) {
                    return Ok(Some(buffered.min(*count)));
                }
                if *count > limit {
                    return Err(StreamError::BufferFull { limit });
                }
            }
            ReadTarget::UntilClose if self.eof => return Ok(Some(buffered)),
            ReadTarget::UntilClose => {}
        }
        if buffered >= limit {
            return Err(StreamError::BufferFull { limit });
        }
        Ok(None)
    }

    fn complete_read(&mut self, io: &mut IOLoop<P>, count: usize) {
        let read = self.read.take().expect("a pending read");
        let data = self.read_buffer.take(count);
        self.scanned = 0;
        (read.callback)(io, self, Ok(data));
    }

    /// Read from the socket into the buffer until it is drained or the
    /// pending read could be satisfied; `true` if bytes or EOF arrived.
    fn fill(&mut self, io: &mut IOLoop<P>) -> bool {
        let room = self
            .config
            .max_buffer_bytes
            .saturating_sub(self.read_buffer.len());
        let want = room.clamp(1, READ_CHUNK_BYTES);
        let result = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let result = io.read(self.fd, &mut scratch[..want]);
            if let Ok(n) = result {
                self.read_buffer.extend(&scratch[..n]);
            }
            result
        });
        match result {
            Ok(0) => {
                self.eof = true;
                // Nothing more can be read: the read timeout is over (a
                // half-closed stream still writing keeps its idle timeout).
                let watch = &mut self.watches[Silence::Read as usize];
                watch.timeout = None;
                if let Some(timer) = watch.timer.take() {
                    io.remove_timeout(timer);
                }
                true
            }
            Ok(n) => {
                self.mark_read(io);
                // A short read drains a stream socket: new data raises an edge.
                if n < want {
                    self.readable = false;
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                self.close_with(io, Some(StreamError::io(&e)));
                true
            }
        }
    }

    /// Write the buffer as far as the socket takes it, send the FIN of a
    /// `shutdown_write` once it is empty, then run the flush callbacks it
    /// satisfied; `true` if a callback ran.
    fn flush(&mut self, io: &mut IOLoop<P>) -> bool {
        if !self.write_buffer.is_empty() && self.writable {
            let data = std::mem::take(&mut self.write_buffer);
            let written = self.write_some(io, data.data());
            self.write_buffer = data;
            self.write_buffer.consume(written);
        }
        if self.write_side == WriteSide::Draining && self.write_buffer.is_empty() && !self.closed {
            match io.shutdown(self.fd, Shutdown::Write) {
                Ok(()) => self.write_side = WriteSide::Shut,
                Err(e) => self.close_with(io, Some(StreamError::io(&e))),
            }
        }
        let mut ran = false;
        while !self.closed {
            match self.flush_callbacks.front() {
                Some((target, _)) if *target <= self.flushed_total => {}
                _ => break,
            }
            let (_, callback) = self.flush_callbacks.pop_front().expect("checked");
            callback(io, self, Ok(()));
            ran = true;
        }
        ran
    }

    fn update_interest(&mut self, io: &mut IOLoop<P>) {
        let mut wanted = Events::empty();
        if self.read.is_some() && !self.eof {
            wanted |= Events::READ;
        }
        if !self.write_buffer.is_empty() || self.connecting.is_some() {
            wanted |= Events::WRITE;
        }
        if wanted != self.interest && self.token.is_some() {
            self.interest = wanted;
            let _ = io.update_handler(self.fd, wanted);
        }
    }

    /// A connecting stream got an event: connected, failed, or not yet.
    fn finish_connect(&mut self, io: &mut IOLoop<P>) {
        match io.write(self.fd, &[]) {
            Ok(_) => {
                if let Some(timeout) = self.connect_timeout.take() {
                    io.remove_timeout(timeout);
                }
                self.writable = true;
                self.readable = true;
                // Connected: the peer was heard from; a timeout for silence
                // set while connecting counts from now.
                self.mark_read(io);
                let callback = self.connecting.take().expect("connecting");
                self.processing = true;
                callback(io, self, Ok(()));
                self.processing = false;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.close_with(io, Some(StreamError::io(&e))),
        }
    }
}

impl<P: Poller, S: 'static> FdHandler<P> for IOStream<P, S> {
    fn on_events(&mut self, io: &mut IOLoop<P>, _fd: Fd, events: Events) {
        if events.intersects(Events::READ | Events::ERROR) {
            self.readable = true;
        }
        if events.intersects(Events::WRITE | Events::ERROR) {
            self.writable = true;
        }
        if self.connecting.is_some() {
            self.finish_connect(io);
        } else if events.contains(Events::ERROR) && !self.half_closed() && self.read.is_none() {
            // Nobody reads: a read finds the error (or the hang-up) anyway.
            self.fill(io);
        } else if events.contains(Events::ERROR)
            && self.read.is_none()
            && self.write_buffer.is_empty()
        {
            // Half-closed, with nothing to read or write that would find an
            // error: look for one. A hang-up is no error here (the other
            // direction was already shut); the end of stream waits for the
            // next read, so a paused reader gets every byte, then it.
            match io.take_error(self.fd) {
                Ok(Some(e)) | Err(e) => self.close_with(io, Some(StreamError::io(&e))),
                Ok(None) => {}
            }
        }
        self.process(io);
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl<P: Poller, S> fmt::Debug for IOStream<P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IOStream")
            .field("fd", &self.fd)
            .field("read_buffer", &self.read_buffer.len())
            .field("write_buffer", &self.write_buffer.len())
            .field("reading", &self.read.is_some())
            .field("eof", &self.eof)
            .field("write_side", &self.write_side)
            .field("closed", &self.closed)
            .finish()
    }
}

/// Where `needle` (not empty) first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(at) = find_byte(&haystack[from..], first) {
        let start = from + at;
        if haystack[start + 1..].starts_with(rest) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

/// Where `byte` first occurs in `haystack`: eight bytes a step, in safe
/// code (a line's delimiter is searched for in every byte a stream reads).
fn find_byte(haystack: &[u8], byte: u8) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let pattern = ONES * u64::from(byte);
    let mut words = haystack.chunks_exact(8);
    for (index, word) in (&mut words).enumerate() {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes")) ^ pattern;
        // The high bit of each byte that was zero (the byte sought): the
        // lowest one set is exact; a borrow may only set some above it.
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(index * 8 + (zeros.trailing_zeros() / 8) as usize);
        }
    }
    let tail = haystack.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&b| b == byte)
        .map(|at| tail + at)
}

// ----- servers and clients -------------------------------------------------------

/// Accepts connections and hands each to the service as an [`IOStream`]
/// with state `S` — `S::default()` with [`bind`](Self::bind), made from
/// the peer's address with [`bind_with`](Self::bind_with) (Tornado's
/// `TCPServer.handle_stream`).
///
/// Its streams, like [`TcpClient`]'s, have `TCP_NODELAY` set: a reply
/// written in pieces goes out at once instead of waiting ~40 ms on Nagle's
/// algorithm and the peer's delayed ACK.
///
/// Accepts at most [`TcpServer::ACCEPT_BATCH_MAX`] connections per event;
/// when an accept fails for lack of fds (`EMFILE`), it stops accepting for
/// [`TcpServer::ACCEPT_BACKOFF`] instead of spinning.
///
/// The server keeps the handles of the streams it accepted while they are
/// open: [`streams`](Self::streams) lists them, to reach each one with
/// [`IOStream::with`] (a goodbye before a shutdown, a broadcast, a limit on
/// connections); [`close_streams`](Self::close_streams) closes them all.
/// From the callback of one of them (a `SHUTDOWN` command), reach each —
/// that one included — with [`IOStream::with_stream`]. A clone names the
/// same server. Shutting down gracefully:
///
/// ```
/// use ioloop::{IOLoop, IOStream, MioPoller, TcpServer};
/// use std::time::Duration;
///
/// /// Stop accepting, say goodbye to every client and close each stream
/// /// once its goodbye is written; after `grace`, close what is left.
/// fn shut_down(io: &mut IOLoop<MioPoller>, server: &TcpServer, grace: Duration) {
///     let _ = server.stop(io);
///     for handle in server.streams() {
///         IOStream::with(io, handle, |io, stream: &mut IOStream<MioPoller>| {
///             let goodbye = stream.write_then(io, b"BYE\n", |io, stream, _| stream.close(io));
///             if goodbye.is_err() {
///                 stream.close(io); // its write side was shut, or its buffer is full
///             }
///         });
///     }
///     let server = server.clone();
///     io.call_later(grace, move |io| {
///         server.close_streams(io);
///     });
/// }
/// # let mut io = IOLoop::new(MioPoller::new()?);
/// # let server = TcpServer::bind(&mut io, "127.0.0.1:0".parse()?, |_, _: &mut IOStream<MioPoller>| {})?;
/// # shut_down(&mut io, &server, Duration::from_millis(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TcpServer<S = ()> {
    listener: Fd,
    /// The listener's registration: a stopped server's fd number may be
    /// another socket's by now.
    token: Token,
    accepted: Rc<RefCell<Accepted>>,
    state: PhantomData<fn() -> S>,
}

/// The streams a server accepted and that are still open, by the order it
/// accepted them. Each stream takes itself out as it closes (or is
/// dropped: one whose own callback removed its handler or closed its fd
/// behind it leaves once that callback returns).
#[derive(Debug, Default)]
struct Accepted {
    open: BTreeMap<u64, Token>,
    accepted: u64,
}

impl Accepted {
    /// A number for the next stream, and what takes it out of the list.
    fn next(registry: &Rc<RefCell<Accepted>>) -> (u64, Box<dyn FnOnce()>) {
        let number = {
            let mut accepted = registry.borrow_mut();
            accepted.accepted += 1;
            accepted.accepted
        };
        let registry = Rc::downgrade(registry);
        let gone = move || {
            if let Some(registry) = registry.upgrade() {
                registry.borrow_mut().open.remove(&number);
            }
        };
        (number, Box::new(gone))
    }
}

/// The constants are the same for every state type: write them
/// `TcpServer::ACCEPT_BACKOFF`, whatever your server's `S`.
impl TcpServer<()> {
    /// Connections accepted per event on the listener.
    pub const ACCEPT_BATCH_MAX: usize = 64;
    /// How long accepting pauses after an accept fails for lack of fds.
    pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
}

impl<S: 'static> TcpServer<S> {
    /// Listen on `addr` and call `on_stream` with each new connection, its
    /// state `S::default()`.
    pub fn bind<P, F>(
        io: &mut IOLoop<P>,
        addr: SocketAddr,
        on_stream: F,
    ) -> io::Result<TcpServer<S>>
    where
        P: Poller,
        S: Default,
        F: FnMut(&mut IOLoop<P>, &mut IOStream<P, S>) + 'static,
    {
        TcpServer::bind_with(io, addr, |_| S::default(), on_stream)
    }

    /// Listen on `addr`; each new connection gets the state `new_state`
    /// makes from the peer's address, then goes to `on_stream`.
    pub fn bind_with<P, N, F>(
        io: &mut IOLoop<P>,
        addr: SocketAddr,
        mut new_state: N,
        mut on_stream: F,
    ) -> io::Result<TcpServer<S>>
    where
        P: Poller,
        N: FnMut(SocketAddr) -> S + 'static,
        F: FnMut(&mut IOLoop<P>, &mut IOStream<P, S>) + 'static,
    {
        let listener = io.listen(addr)?;
        let accepted = Rc::new(RefCell::new(Accepted::default()));
        let registry = Rc::clone(&accepted);
        let accept = move |io: &mut IOLoop<P>, fd: Fd, _: Events| {
            let listening = io.token(fd);
            for _ in 0..TcpServer::ACCEPT_BATCH_MAX {
                match io.accept(fd) {
                    Ok((conn, peer)) => {
                        nodelay(io, conn);
                        // Listed before `on_stream` runs: the stream is
                        // among the server's from its first callback.
                        let (number, gone) = Accepted::next(&registry);
                        let list = |handle: StreamHandle<S>| {
                            registry.borrow_mut().open.insert(number, handle.token);
                        };
                        let state = new_state(peer);
                        let attached = IOStream::attach_noting(
                            io,
                            conn,
                            state,
                            Some(gone),
                            list,
                            &mut on_stream,
                        );
                        if let Err(e) = attached {
                            log::warn!("cannot watch accepted fd {conn}: {e}");
                            let _ = io.close_fd(conn);
                        }
                        // `on_stream` may have stopped the server: its fd
                        // number may be another socket's now.
                        if io.token(fd) != listening {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if is_transient_accept_error(&e) => {}
                    Err(e) => {
                        log::warn!(
                            "accept failed: {e}; pausing accepts for {:?}",
                            TcpServer::ACCEPT_BACKOFF
                        );
                        let _ = io.update_handler(fd, Events::empty());
                        io.call_later(TcpServer::ACCEPT_BACKOFF, move |io| {
                            // Unless the server was stopped meanwhile.
                            if io.token(fd) == listening {
                                let _ = io.update_handler(fd, Events::READ);
                            }
                        });
                        return;
                    }
                }
            }
        };
        if let Err(error) = io.add_handler(listener, accept, Events::READ) {
            let _ = io.close_fd(listener);
            return Err(io::Error::other(error));
        }
        let token = io.token(listener).expect("just registered");
        Ok(TcpServer {
            listener,
            token,
            accepted,
            state: PhantomData,
        })
    }

    /// The listening socket (once the server is stopped, its number may be
    /// another socket's).
    pub fn listener(&self) -> Fd {
        self.listener
    }

    /// `true` until the server is stopped (or its listener closed by
    /// other means).
    pub fn is_listening<P: Poller>(&self, io: &IOLoop<P>) -> bool {
        io.token(self.listener) == Some(self.token)
    }

    /// The address it listens on; an error once it is stopped.
    pub fn local_addr<P: Poller>(&self, io: &IOLoop<P>) -> io::Result<SocketAddr> {
        self.check_listening(io)?;
        io.local_addr(self.listener)
    }

    /// Stop accepting and close the listener. The streams it accepted go
    /// on (as Tornado's do): [`streams`](Self::streams) still lists them,
    /// [`close_streams`](Self::close_streams) closes them. Stopping a
    /// stopped server (through this value or a clone) is an error and
    /// changes nothing, whatever socket has the listener's fd number now.
    pub fn stop<P: Poller>(&self, io: &mut IOLoop<P>) -> io::Result<()> {
        self.check_listening(io)?;
        io.close_fd(self.listener)
    }

    fn check_listening<P: Poller>(&self, io: &IOLoop<P>) -> io::Result<()> {
        if self.is_listening(io) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("the server on fd {} is stopped", self.listener),
            ))
        }
    }

    /// The streams this server accepted that are still open, in the order
    /// it accepted them: a new one from the start of `on_stream`, a closed
    /// one no longer in its close callback (the socket is closed before
    /// the callback runs). A stream whose callback is running now is among
    /// them (reach it from that callback with
    /// [`IOStream::with_stream`]).
    pub fn streams(&self) -> Vec<StreamHandle<S>> {
        let accepted = self.accepted.borrow();
        accepted
            .open
            .values()
            .map(|&token| StreamHandle::new(token))
            .collect()
    }

    /// How many of the streams this server accepted are still open, as
    /// [`streams`](Self::streams) lists them: in `on_stream`, the new one
    /// is counted (a limit of `n` connections closes the new stream there
    /// when this is above `n`).
    pub fn stream_count(&self) -> usize {
        self.accepted.borrow().open.len()
    }

    /// Close every stream this server accepted that is still open, as
    /// [`IOStream::close`] does: unflushed writes are dropped, a pending
    /// read gets [`StreamError::Closed`], the close callback runs. Returns
    /// how many it closes or has queued to close (a stream the close
    /// callback of another closes first is not counted). A stream whose callback is running now (the
    /// caller's own, when a command on one connection shuts the others
    /// down) cannot be reached from here: it is closed after that callback
    /// returns, from a callback of the loop ([`IOLoop::add_callback`]: once
    /// the current batch of events is handled), unless it closed itself
    /// meanwhile; to spare it (an answer still to go out), close the
    /// others yourself: each of [`streams`](Self::streams) but its handle.
    /// The listener is not touched: [`stop`](Self::stop) it first, or new
    /// connections go on arriving.
    pub fn close_streams<P: Poller>(&self, io: &mut IOLoop<P>) -> usize {
        let mut closing = 0;
        for handle in self.streams() {
            let closed = IOStream::with(io, handle, |io, stream: &mut IOStream<P, S>| {
                stream.close(io);
            });
            if closed.is_some() {
                closing += 1;
            } else if handle.is_open(io) {
                // Busy in its own callback (not closed meanwhile by the
                // close callback of one before it).
                closing += 1;
                io.add_callback(move |io| {
                    IOStream::with(io, handle, |io, stream: &mut IOStream<P, S>| {
                        stream.close(io);
                    });
                });
            }
        }
        closing
    }
}

impl<S> Clone for TcpServer<S> {
    fn clone(&self) -> Self {
        TcpServer {
            listener: self.listener,
            token: self.token,
            accepted: Rc::clone(&self.accepted),
            state: PhantomData,
        }
    }
}

impl<S> fmt::Debug for TcpServer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServer")
            .field("listener", &self.listener)
            .field("open", &self.accepted.borrow().open.len())
            .finish()
    }
}

/// Streams send what they are given at once: `TCP_NODELAY`, so that a
/// reply written in pieces does not wait on Nagle's algorithm for the
/// peer's delayed ACK (~40 ms). `io.set_nodelay(stream.fd(), false)` undoes
/// it.
fn nodelay<P: Poller>(io: &mut IOLoop<P>, fd: Fd) {
    if let Err(e) = io.set_nodelay(fd, true) {
        log::debug!("TCP_NODELAY on fd {fd}: {e}");
    }
}

fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionReset
    )
}

/// Connects to a server and hands over an [`IOStream`] (Tornado's
/// `TCPClient.connect`).
#[derive(Clone, Copy, Debug)]
pub struct TcpClient;

impl TcpClient {
    /// Connect to `addr`. `on_connect` runs once, with the stream (state
    /// `state`) and the outcome: `Ok(())` once connected, or the stream,
    /// closed, its state still yours, and the error — refused, reset,
    /// [`StreamError::TimedOut`] after `timeout`, or a connect the system
    /// refused at once (no fd left, no route), which reaches `on_connect`
    /// from a callback of the loop, never from inside `connect`. Every
    /// failure takes that one path, so a client that retries does so in
    /// one place.
    ///
    /// The handle names the stream (for [`IOStream::with`], say) until it
    /// closes. Closing the stream before it connects (through the handle
    /// and [`IOStream::with`]) runs `on_connect` at once, inside that
    /// `close`, with [`StreamError::Closed`]: don't hold a `RefCell` borrow
    /// that `on_connect` needs across the `close`.
    ///
    /// After a failure at once the handle names no stream (it cannot
    /// cancel; `on_connect` runs all the same), and the stream `on_connect`
    /// gets has no socket: its fd is `Fd(-1)`. Each such handle is still
    /// its own (a key in a map of pending connects), and equal to the
    /// [`handle`](IOStream::handle) of the stream `on_connect` gets.
    pub fn connect<P, S, F>(
        io: &mut IOLoop<P>,
        addr: SocketAddr,
        timeout: Duration,
        state: S,
        on_connect: F,
    ) -> StreamHandle<S>
    where
        P: Poller,
        S: 'static,
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<(), StreamError>) + 'static,
    {
        let fd = match io.connect(addr) {
            Ok(fd) => fd,
            Err(error) => {
                let stream = IOStream::new(Fd(-1), state, false);
                return TcpClient::fail_later(io, stream, on_connect, StreamError::io(&error));
            }
        };
        nodelay(io, fd);
        let mut stream = IOStream::new(fd, state, false);
        stream.connecting = Some(Box::new(on_connect));
        let handle = match stream.register(io, Events::WRITE) {
            Ok(handle) => handle,
            Err(refused) => {
                let (error, mut stream) = *refused;
                let _ = io.close_fd(fd);
                // Its number may be another socket's by the time
                // `on_connect` runs.
                stream.fd = Fd(-1);
                let on_connect = stream.connecting.take().expect("set above");
                let error = match error {
                    crate::Error::Os { source, .. } => StreamError::io(&source),
                    other => StreamError::Io {
                        kind: io::ErrorKind::Other,
                        message: other.to_string(),
                    },
                };
                return TcpClient::fail_later(io, stream, on_connect, error);
            }
        };
        let timer = io.call_later(timeout, move |io| {
            IOStream::<P, S>::with(io, handle, |io, stream: &mut IOStream<P, S>| {
                stream.connect_timeout = None;
                if stream.connecting.is_some() {
                    stream.close_with(io, Some(StreamError::TimedOut));
                }
            });
        });
        IOStream::<P, S>::with(io, handle, |_, stream: &mut IOStream<P, S>| {
            stream.connect_timeout = Some(timer);
        });
        handle
    }

    /// A connect that failed before the loop took its stream: `on_connect`
    /// gets the stream, closed, from a callback. Its handle — fd -1, which
    /// no registration has — names no stream, and no other handle.
    fn fail_later<P, S, F>(
        io: &mut IOLoop<P>,
        mut stream: IOStream<P, S>,
        on_connect: F,
        error: StreamError,
    ) -> StreamHandle<S>
    where
        P: Poller,
        S: 'static,
        F: FnOnce(&mut IOLoop<P>, &mut IOStream<P, S>, Result<(), StreamError>) + 'static,
    {
        let token = io.detached_token();
        stream.token = Some(token);
        stream.connecting = Some(Box::new(on_connect));
        io.add_callback(move |io| stream.close_with(io, Some(error)));
        StreamHandle::new(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_takes_from_the_front_and_gives_memory_back() {
        let mut buffer = Buffer::default();
        buffer.extend(&[1; 10_000]);
        assert_eq!(buffer.take(4), vec![1; 4]);
        assert_eq!(buffer.len(), 9_996);
        buffer.consume(9_996);
        assert!(buffer.is_empty());
        assert_eq!(buffer.bytes.capacity(), 0);
        buffer.extend(b"whole");
        assert_eq!(buffer.take(5), b"whole");
        assert!(buffer.is_empty());
        buffer.extend(b"again");
        assert_eq!(buffer.data(), b"again");
    }

    #[test]
    fn every_stream_error_says_what_happened() {
        let io_error = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let cases = [
            (StreamError::closed(), "stream closed"),
            (
                StreamError::Closed { unread: vec![1; 3] },
                "stream closed with 3 unread bytes",
            ),
            (StreamError::io(&io_error), "socket error: reset by peer"),
            (
                StreamError::WriteClosed,
                "the stream's write direction is shut down",
            ),
            (
                StreamError::ReadPending,
                "a read is already pending on this stream",
            ),
            (
                StreamError::Unsatisfiable { max_bytes: 7 },
                "delimiter not found within 7 bytes",
            ),
            (
                StreamError::BufferFull { limit: 9 },
                "buffer full (9 bytes)",
            ),
            (StreamError::TimedOut, "connect timed out"),
            (
                StreamError::Idle {
                    timeout: Duration::from_secs(2),
                },
                "no bytes read or written for 2s: idle stream closed",
            ),
            (
                StreamError::ReadTimeout {
                    timeout: Duration::from_secs(3),
                },
                "no bytes read for 3s: the peer is silent, stream closed",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message, "{error:?}");
        }
        assert!(matches!(
            StreamError::io(&io_error),
            StreamError::Io {
                kind: io::ErrorKind::ConnectionReset,
                ..
            }
        ));
    }

    #[test]
    fn a_buffer_read_as_it_fills_stays_bounded() {
        // Each round leaves one byte unread: without compaction the
        // consumed front would stay in memory, 10 MB of it.
        let mut buffer = Buffer::default();
        for _ in 0..10_000 {
            buffer.extend(&[5; 1_000]);
            buffer.consume(999);
            assert_eq!(buffer.len(), buffer.data().len());
        }
        assert_eq!(buffer.len(), 10_000);
        assert!(
            buffer.bytes.len() < 30_000,
            "{} bytes kept",
            buffer.bytes.len()
        );
        assert_eq!(buffer.take(10_000), vec![5; 10_000]);
    }

    #[test]
    fn handles_are_equal_when_they_name_the_same_stream() {
        use crate::{Fd, Token};
        let one = StreamHandle::<()>::new(Token::new(Fd(7), 1));
        let copy = one;
        let reused_fd = StreamHandle::<()>::new(Token::new(Fd(7), 2));
        assert_eq!(one, copy);
        assert_ne!(one, reused_fd);
        assert_eq!(format!("{one:?}"), format!("StreamHandle({:?})", one.token));
    }

    /// A connect whose socket the poller refuses to watch: the socket is
    /// closed at once, and `on_connect` gets the poller's error (its kind
    /// kept) later, from the loop, with a stream that names no fd.
    #[test]
    fn a_connect_the_poller_refuses_reports_later_and_closes_nothing_else() {
        use crate::poller::minimal::Minimal;
        const EPERM: i32 = 1;
        let poller = Minimal {
            closed: Vec::new(),
            refuse_add: Some(EPERM),
        };
        let mut io = IOLoop::new(poller);
        let got: std::rc::Rc<RefCell<Vec<String>>> = std::rc::Rc::default();
        let for_connect = std::rc::Rc::clone(&got);
        let handle = TcpClient::connect(
            &mut io,
            "127.0.0.1:1".parse().unwrap(),
            Duration::from_secs(1),
            7u32,
            move |_, stream: &mut IOStream<Minimal, u32>, connected| {
                for_connect.borrow_mut().push(format!(
                    "{connected:?} fd {} state {}",
                    stream.fd(),
                    stream.state()
                ));
            },
        );
        assert_eq!(io.poller().closed, [Fd(4)], "its socket, closed at once");
        assert!(got.borrow().is_empty(), "not from inside connect");
        assert_eq!(handle.fd(), Fd(-1));
        io.run_once(Some(Duration::ZERO)).unwrap();
        let got = got.borrow();
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("Err(Io { kind: PermissionDenied,")
                && got[0].ends_with("fd -1 state 7"),
            "{got:?}"
        );
        assert_eq!(io.poller().closed, [Fd(4)], "nothing else closed");
    }

    #[test]
    fn handles_order_by_fd_then_registration_and_hash_as_they_compare() {
        use std::collections::{BTreeSet, HashSet};
        let handle = |fd, generation| StreamHandle::<u8>::new(Token::new(Fd(fd), generation));
        // Token order (the generation in the high bits) would put fd 9 of
        // generation 1 before fd 3 of generation 2: by fd first instead.
        let sorted: Vec<_> = [handle(9, 1), handle(3, 2), handle(3, 1), handle(-1, 0)]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            sorted,
            [handle(-1, 0), handle(3, 1), handle(3, 2), handle(9, 1)]
        );
        let set: HashSet<_> = [handle(3, 1), handle(3, 1), handle(3, 2)].into();
        assert_eq!(set.len(), 2, "a reused fd's new stream is another key");
    }

    #[test]
    fn find_locates_single_and_multi_byte_delimiters() {
        assert_eq!(find(b"abc\n", b"\n"), Some(3));
        assert_eq!(find(b"ab\r\n\r\nx", b"\r\n\r\n"), Some(2));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"a\r\r\n", b"\r\n"), Some(2), "a false start first");
        assert_eq!(find(b"abc", b""), None);
    }

    /// `find` against the plainest search there is, on every position of
    /// the needle's bytes in haystacks that straddle the eight-byte words,
    /// with bytes that make the word trick's borrows (0x00, 0x01, 0x80,
    /// 0xff, the byte sought minus one).
    #[test]
    fn find_agrees_with_a_plain_search() {
        let plain = |haystack: &[u8], needle: &[u8]| {
            haystack
                .windows(needle.len())
                .position(|window| window == needle)
        };
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let needles: [&[u8]; 5] = [b"\n", &[0x00], &[0x80], &[0xff, 0x00], b"\r\n\r\n"];
        let mut found = 0;
        for needle in needles {
            let fillers = [0x00, 0x01, 0x80, 0xff, needle[0].wrapping_sub(1), b'a'];
            for len in 0..40 {
                for _ in 0..50 {
                    let mut haystack: Vec<u8> = (0..len)
                        .map(|_| fillers[(next() % fillers.len() as u64) as usize])
                        .collect();
                    if len >= needle.len() && next() % 2 == 0 {
                        let at = (next() % (len - needle.len() + 1) as u64) as usize;
                        haystack[at..at + needle.len()].copy_from_slice(needle);
                    }
                    let expected = plain(&haystack, needle);
                    found += usize::from(expected.is_some());
                    assert_eq!(
                        find(&haystack, needle),
                        expected,
                        "{haystack:02x?} {needle:02x?}"
                    );
                }
            }
        }
        assert!(found > 2_000, "the needles were found {found} times");
        // A delimiter longer than what is kept inline.
        let long = [7u8; 40];
        let mut haystack = vec![7u8; 39];
        haystack.extend_from_slice(&long);
        assert_eq!(find(&haystack, Delimiter::new(&long).as_slice()), Some(0));
        assert!(matches!(Delimiter::new(&long), Delimiter::Heap(_)));
        assert_eq!(Delimiter::new(b"\r\n").as_slice(), b"\r\n");
    }
}
