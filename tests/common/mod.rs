//! Helpers shared by the real-backend tests.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ioloop::{Event, Events, Fd, IOLoop, Instant, MioPoller, Poller, Token, Wake};

/// A fresh loop on the real backend.
pub fn mio_loop() -> IOLoop<MioPoller> {
    IOLoop::new(MioPoller::new().expect("epoll instance"))
}

/// A loopback connection: the accepted end, owned by the loop, and the
/// client end as a blocking std socket.
pub fn tcp_pair<P: Poller>(io: &mut IOLoop<P>) -> (Fd, TcpStream) {
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = io.local_addr(listener).unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let accepted = accept_within(io, listener, Duration::from_secs(5));
    io.close_fd(listener).unwrap();
    (accepted, client)
}

/// Accept one connection, retrying on `WouldBlock` for at most `timeout`.
pub fn accept_within<P: Poller>(io: &mut IOLoop<P>, listener: Fd, timeout: Duration) -> Fd {
    let started = std::time::Instant::now();
    loop {
        match io.accept(listener) {
            Ok((fd, _)) => return fd,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Reset a std socket: linger 0, then close, so the peer sees `ECONNRESET`.
pub fn reset(stream: TcpStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let linger = libc_linger_zero();
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

fn libc_linger_zero() -> libc::linger {
    libc::linger {
        l_onoff: 1,
        l_linger: 0,
    }
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

/// Events a test adds to the next `wait` of a [`ManualClock`].
pub type Injected = Rc<RefCell<Vec<Event>>>;

/// A poller whose clock the test sets by hand, and which reports events the
/// test injects along with the real ones; everything else is the real
/// backend, and `wait` never blocks.
pub struct ManualClock {
    inner: MioPoller,
    now: Rc<Cell<Instant>>,
    injected: Rc<RefCell<Vec<Event>>>,
}

impl ManualClock {
    /// The poller and the cell that sets its time.
    pub fn new() -> (ManualClock, Rc<Cell<Instant>>) {
        let (poller, now, _) = Self::with_injection();
        (poller, now)
    }

    /// The poller, its clock, and a list of events to report on the next
    /// `wait`, after the real ones.
    pub fn with_injection() -> (ManualClock, Rc<Cell<Instant>>, Injected) {
        let now = Rc::new(Cell::new(Instant::ZERO));
        let injected = Rc::new(RefCell::new(Vec::new()));
        let poller = ManualClock {
            inner: MioPoller::new().unwrap(),
            now: Rc::clone(&now),
            injected: Rc::clone(&injected),
        };
        (poller, now, injected)
    }
}

impl Poller for ManualClock {
    fn add(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        self.inner.add(fd, token, interest)
    }
    fn modify(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        self.inner.modify(fd, token, interest)
    }
    fn delete(&mut self, fd: Fd) -> io::Result<()> {
        self.inner.delete(fd)
    }
    fn wait(&mut self, events: &mut Vec<Event>, _timeout: Option<Duration>) -> io::Result<()> {
        self.inner.wait(events, Some(Duration::ZERO))?;
        events.append(&mut self.injected.borrow_mut());
        Ok(())
    }
    fn now(&self) -> Instant {
        self.now.get()
    }
    fn waker(&self) -> Arc<dyn Wake> {
        self.inner.waker()
    }
    fn registration(&self, fd: Fd) -> Option<(Token, Events)> {
        self.inner.registration(fd)
    }
    fn registration_count(&self) -> usize {
        self.inner.registration_count()
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
    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        self.inner.local_addr(fd)
    }
}
