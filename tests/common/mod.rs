//! Helpers shared by the integration tests: the two backends of the
//! contract suite, a scripted poller (hand-set clock, injected events, a
//! hook on blocking waits), and loopback helpers.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ioloop::{
    Event, Events, Fd, IOLoop, Instant, MioPoller, PanicPolicy, Poller, Readiness, Ready, Token,
    Wake,
};
use ioloop_sim::{FaultPreset, SimNet, SimPoller};

/// How long a test waits for something that should happen at once (on the
/// loop's clock: virtual time on the simulator).
pub const TIMEOUT: Duration = Duration::from_secs(10);

// ----- the two backends -----------------------------------------------------------

/// A backend the contract suite runs on.
pub trait Backend: 'static {
    /// Its poller.
    type P: Poller + 'static;
    /// A fresh poller.
    fn poller() -> Self::P;
    /// Its fd numbers come from the process's table, which the other tests'
    /// threads share: a number just closed may be taken by another test
    /// before this one reuses it.
    const SHARED_FD_TABLE: bool;
}

/// The real backend: mio over loopback.
pub struct Mio;

impl Backend for Mio {
    type P = MioPoller;
    const SHARED_FD_TABLE: bool = true;
    fn poller() -> MioPoller {
        MioPoller::new().expect("epoll instance")
    }
}

/// The simulator, faults off: one host, stepped by the loop itself (virtual
/// time advances when the host is idle).
pub struct Sim;

impl Backend for Sim {
    type P = SimPoller;
    const SHARED_FD_TABLE: bool = false;
    fn poller() -> SimPoller {
        SimNet::new(0x5eed, FaultPreset::None, false).host("127.0.0.1".parse().unwrap())
    }
}

/// The loop every contract test runs: a backend under a [`Scripted`] poller.
pub type TestLoop<B> = IOLoop<Scripted<<B as Backend>::P>>;

/// A fresh loop on backend `B`, and the script that steers its poller.
pub fn new_loop<B: Backend>() -> (TestLoop<B>, Script) {
    let (poller, script) = Scripted::new(B::poller());
    (propagating(IOLoop::new(poller)), script)
}

/// `loop_` with panics propagated: an `assert!` inside a handler, callback
/// or timeout fails the test instead of being contained by the loop under
/// test. A test of containment itself sets `PanicPolicy::Contain`.
fn propagating<P: Poller>(mut loop_: IOLoop<P>) -> IOLoop<P> {
    loop_.set_panic_policy(PanicPolicy::Propagate);
    loop_
}

/// A fresh loop on backend `B` whose clock the test sets by hand, starting
/// at [`Instant::ZERO`] (the loop's clock never goes back, so it must be set
/// before the loop first reads it).
pub fn new_clocked_loop<B: Backend>() -> (TestLoop<B>, Script) {
    let (poller, script) = Scripted::new(B::poller());
    script.set_time(Instant::ZERO);
    (propagating(IOLoop::new(poller)), script)
}

/// A fresh loop on the real backend (no scripting needed).
pub fn mio_loop() -> IOLoop<MioPoller> {
    propagating(IOLoop::new(Mio::poller()))
}

// ----- the scripted poller ------------------------------------------------------------

/// Called with the timeout of a `wait` that may block, just before it does.
type WaitHook = Box<dyn FnMut(Option<Duration>)>;

/// Steers a [`Scripted`] poller from the test.
#[derive(Clone, Default)]
pub struct Script {
    clock: Rc<Cell<Option<Instant>>>,
    injected: Rc<RefCell<Vec<Event>>>,
    on_blocking_wait: Rc<RefCell<Option<WaitHook>>>,
    misreported: Rc<Cell<Option<Fd>>>,
    miscounted: Rc<Cell<bool>>,
    read_error_next: Rc<Cell<Option<io::ErrorKind>>>,
    wait_error_next: Rc<Cell<Option<io::ErrorKind>>>,
    failed_deletes: Rc<Cell<u32>>,
}

impl Script {
    /// Set the poller's clock by hand from now on (`wait` then never blocks).
    pub fn set_time(&self, now: Instant) {
        self.clock.set(Some(now));
    }

    /// Report `ready` for `fd`'s current registration in the next `wait`,
    /// after the backend's own events, in the order injected: the way to put
    /// events for several fds in one batch, in a known order.
    pub fn inject<P: Poller>(&self, io: &IOLoop<P>, fd: Fd, ready: Ready) {
        let (token, _) = io.poller().registration(fd).expect("fd is registered");
        self.inject_token(token, ready);
    }

    /// Report `ready` under `token` in the next `wait`, registered or not.
    pub fn inject_token(&self, token: Token, ready: Ready) {
        self.injected.borrow_mut().push(Event { token, ready });
    }

    /// Make the poller report `fd`'s registration wrong (the interest with
    /// `WRITE` flipped), as a broken backend would: the loop's consistency
    /// check must notice.
    pub fn misreport(&self, fd: Fd) {
        self.misreported.set(Some(fd));
    }

    /// Make the poller count one registration more than it holds (a
    /// registration made behind the loop's back).
    pub fn miscount(&self) {
        self.miscounted.set(true);
    }

    /// Make the next `read` fail with `kind` (an `EINTR`, say) without
    /// touching the socket.
    pub fn fail_next_read(&self, kind: io::ErrorKind) {
        self.read_error_next.set(Some(kind));
    }

    /// How many times the loop asked the poller to delete a registration
    /// it did not hold.
    pub fn failed_deletes(&self) -> u32 {
        self.failed_deletes.get()
    }

    /// Make the next `wait` fail with `kind` (an `EINTR`, say).
    pub fn fail_next_wait(&self, kind: io::ErrorKind) {
        self.wait_error_next.set(Some(kind));
    }

    /// Call `hook` with the timeout of every `wait` that may block (timeout
    /// not zero), just before it blocks.
    pub fn on_blocking_wait(&self, hook: impl FnMut(Option<Duration>) + 'static) {
        *self.on_blocking_wait.borrow_mut() = Some(Box::new(hook));
    }
}

/// A poller that is backend `P` except where the test's [`Script`] says:
/// a clock set by hand, events injected into the next batch, a hook called
/// before a blocking wait.
pub struct Scripted<P> {
    inner: P,
    script: Script,
}

impl<P: Poller> Scripted<P> {
    /// `inner`, scripted, and its script.
    pub fn new(inner: P) -> (Scripted<P>, Script) {
        let script = Script::default();
        let poller = Scripted {
            inner,
            script: script.clone(),
        };
        (poller, script)
    }

    /// The backend underneath.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: Poller> Poller for Scripted<P> {
    fn add(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        self.inner.add(fd, token, interest)
    }
    fn modify(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        self.inner.modify(fd, token, interest)
    }
    fn delete(&mut self, fd: Fd) -> io::Result<()> {
        let deleted = self.inner.delete(fd);
        if deleted.is_err() {
            self.script
                .failed_deletes
                .set(self.script.failed_deletes.get() + 1);
        }
        deleted
    }
    fn wait(&mut self, readiness: &mut Readiness, timeout: Option<Duration>) -> io::Result<()> {
        if let Some(kind) = self.script.wait_error_next.take() {
            return Err(io::Error::from(kind));
        }
        let timeout =
            if self.script.clock.get().is_some() || !self.script.injected.borrow().is_empty() {
                Some(Duration::ZERO)
            } else {
                timeout
            };
        if timeout != Some(Duration::ZERO) {
            if let Some(hook) = self.script.on_blocking_wait.borrow_mut().as_mut() {
                hook(timeout);
            }
        }
        self.inner.wait(readiness, timeout)?;
        for event in self.script.injected.borrow_mut().drain(..) {
            readiness.report(event.token, event.ready);
        }
        Ok(())
    }
    fn system_time(&self) -> std::time::SystemTime {
        self.inner.system_time()
    }
    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
    fn note(&self, note: &dyn Fn() -> String) {
        self.inner.note(note)
    }
    fn probe(&self, name: &'static str) {
        self.inner.probe(name)
    }
    fn listen_with(&mut self, addr: SocketAddr, options: ioloop::ListenOptions) -> io::Result<Fd> {
        self.inner.listen_with(addr, options)
    }
    fn set_nodelay(&mut self, fd: Fd, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(fd, nodelay)
    }
    fn nodelay(&self, fd: Fd) -> io::Result<bool> {
        self.inner.nodelay(fd)
    }
    fn set_keepalive(&mut self, fd: Fd, idle: Option<Duration>) -> io::Result<()> {
        self.inner.set_keepalive(fd, idle)
    }
    fn keepalive(&self, fd: Fd) -> io::Result<Option<Duration>> {
        self.inner.keepalive(fd)
    }
    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        self.inner.peer_addr(fd)
    }
    fn take_error(&mut self, fd: Fd) -> io::Result<Option<io::Error>> {
        self.inner.take_error(fd)
    }
    fn now(&self) -> Instant {
        self.script.clock.get().unwrap_or_else(|| self.inner.now())
    }
    fn waker(&self) -> Arc<dyn Wake> {
        self.inner.waker()
    }
    fn registration(&self, fd: Fd) -> Option<(Token, Events)> {
        let registration = self.inner.registration(fd)?;
        if self.script.misreported.get() == Some(fd) {
            let (token, interest) = registration;
            let flipped = (interest - Events::WRITE) | (!interest & Events::WRITE);
            return Some((token, flipped));
        }
        Some(registration)
    }
    fn registration_count(&self) -> usize {
        self.inner.registration_count() + usize::from(self.script.miscounted.get())
    }
    fn short_read_drains(&self, fd: Fd) -> bool {
        self.inner.short_read_drains(fd)
    }
    fn listen(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        self.inner.listen(addr)
    }
    fn accept(&mut self, listener: Fd) -> io::Result<(Fd, SocketAddr)> {
        self.inner.accept(listener)
    }
    fn connect(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        self.inner.connect(addr)
    }
    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(kind) = self.script.read_error_next.take() {
            return Err(io::Error::from(kind));
        }
        self.inner.read(fd, buf)
    }
    fn write(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(fd, buf)
    }
    fn shutdown(&mut self, fd: Fd, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(fd, how)
    }
    fn close(&mut self, fd: Fd) -> io::Result<()> {
        self.inner.close(fd)
    }
    fn close_registered(&mut self, fd: Fd) -> io::Result<()> {
        self.inner.close_registered(fd)
    }
    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        self.inner.local_addr(fd)
    }
    fn before_dispatch(&mut self, token: Token, events: Events) {
        self.inner.before_dispatch(token, events)
    }
}

// ----- connections ------------------------------------------------------------------

/// A connection with both ends on `io`'s poller, made through the loop on
/// any backend: `(ours, peer)`. Neither end has a handler; the test drives
/// the peer with `io.write(peer, ..)`, `io.shutdown(peer, ..)` and
/// `io.close_fd(peer)`.
pub fn pair<P: Poller + 'static>(io: &mut IOLoop<P>) -> (Fd, Fd) {
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = io.local_addr(listener).unwrap();
    let peer = io.connect(addr).unwrap();
    let accepted = Rc::new(Cell::new(None));
    let connected = Rc::new(Cell::new(false));
    let for_listener = Rc::clone(&accepted);
    io.add_handler(
        listener,
        move |io, listener, _| {
            if let Ok((fd, _)) = io.accept(listener) {
                for_listener.set(Some(fd));
            }
        },
        Events::READ,
    )
    .unwrap();
    let for_peer = Rc::clone(&connected);
    io.add_handler(peer, move |_, _, _| for_peer.set(true), Events::WRITE)
        .unwrap();
    let done = io
        .run_until(TIMEOUT, |_| accepted.get().is_some() && connected.get())
        .unwrap();
    assert!(done, "loopback connection not established");
    io.remove_handler(peer);
    io.close_fd(listener).unwrap();
    (accepted.get().unwrap(), peer)
}

/// A loopback connection: the accepted end, owned by the loop, and the
/// client end as a blocking std socket (real backend only).
pub fn tcp_pair<P: Poller + 'static>(io: &mut IOLoop<P>) -> (Fd, TcpStream) {
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = io.local_addr(listener).unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let accepted = Rc::new(Cell::new(None));
    let for_listener = Rc::clone(&accepted);
    io.add_handler(
        listener,
        move |io, listener, _| {
            if let Ok((fd, _)) = io.accept(listener) {
                for_listener.set(Some(fd));
            }
        },
        Events::READ,
    )
    .unwrap();
    assert!(io.run_until(TIMEOUT, |_| accepted.get().is_some()).unwrap());
    io.close_fd(listener).unwrap();
    (accepted.get().unwrap(), client)
}

/// Reset a std socket: linger 0, then close, so the peer sees `ECONNRESET`.
pub fn reset(stream: TcpStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket fd and a properly sized `linger`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
    drop(stream);
}

/// Half-close a std socket's sending side.
pub fn half_close(stream: &TcpStream) {
    stream.shutdown(Shutdown::Write).unwrap();
}

/// Number of open fds of this process.
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}
