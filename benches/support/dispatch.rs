//! The dispatch workload: `ACTIVE` socket pairs made readable each round,
//! among `idle` registered fds that never are; one loop round handles them.
//! The same work on ioloop and on a raw mio loop.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{Events, Fd, IOLoop, MioPoller};
use mio::unix::SourceFd;

/// Fds made ready per round.
pub const ACTIVE: usize = 100;

/// `ACTIVE` socket pairs (ours non-blocking) and `idle` UDP sockets.
struct Fds {
    ours: Vec<UnixStream>,
    peers: Vec<UnixStream>,
    idle: Vec<UdpSocket>,
}

impl Fds {
    fn new(idle: usize) -> Fds {
        let (ours, peers) = (0..ACTIVE)
            .map(|_| {
                let (a, b) = UnixStream::pair().unwrap();
                a.set_nonblocking(true).unwrap();
                (a, b)
            })
            .unzip();
        let idle = (0..idle)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        Fds { ours, peers, idle }
    }

    /// Make every active fd readable. Kept out of line: both loops then run
    /// the very same compiled code for it, whichever code-generation unit
    /// the compiler puts each loop in (inlined, its cost moved by ±11
    /// instructions per event with changes elsewhere in the crate).
    #[inline(never)]
    fn poke(&mut self) {
        for peer in &mut self.peers {
            peer.write_all(b"x").unwrap();
        }
    }
}

/// Read until `WouldBlock`, as both loops do.
fn drain(mut stream: &UnixStream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
    }
}

/// The workload on ioloop.
pub struct IoloopDispatch {
    fds: Fds,
    io: IOLoop<MioPoller>,
    handled: Rc<Cell<usize>>,
}

impl IoloopDispatch {
    pub fn new(idle: usize) -> IoloopDispatch {
        let fds = Fds::new(idle);
        let mut io = IOLoop::new(MioPoller::new().unwrap());
        let handled = Rc::new(Cell::new(0usize));
        for socket in &fds.idle {
            io.add_handler(Fd(socket.as_raw_fd()), |_, _, _| {}, Events::READ)
                .unwrap();
        }
        for stream in &fds.ours {
            let stream = stream.try_clone().unwrap();
            let counter = Rc::clone(&handled);
            io.add_handler(
                Fd(stream.as_raw_fd()),
                move |io, fd, _| {
                    drain(&stream);
                    // Our own read bypassed the loop: tell it the fd is drained.
                    io.clear_readiness(fd, Events::READ);
                    counter.set(counter.get() + 1);
                },
                Events::READ,
            )
            .unwrap();
        }
        IoloopDispatch { fds, io, handled }
    }

    /// Make every active fd ready and dispatch them all.
    pub fn round(&mut self) {
        self.fds.poke();
        self.handled.set(0);
        while self.handled.get() < ACTIVE {
            self.io.run_once(Some(Duration::from_secs(1))).unwrap();
        }
    }
}

/// The workload on a raw mio loop.
pub struct RawMioDispatch {
    fds: Fds,
    poll: mio::Poll,
    events: mio::Events,
}

impl RawMioDispatch {
    pub fn new(idle: usize) -> RawMioDispatch {
        let fds = Fds::new(idle);
        let poll = mio::Poll::new().unwrap();
        for (index, socket) in fds.idle.iter().enumerate() {
            let raw = socket.as_raw_fd();
            poll.registry()
                .register(
                    &mut SourceFd(&raw),
                    mio::Token(ACTIVE + index),
                    mio::Interest::READABLE,
                )
                .unwrap();
        }
        for (index, stream) in fds.ours.iter().enumerate() {
            let raw = stream.as_raw_fd();
            poll.registry()
                .register(
                    &mut SourceFd(&raw),
                    mio::Token(index),
                    mio::Interest::READABLE,
                )
                .unwrap();
        }
        RawMioDispatch {
            fds,
            poll,
            events: mio::Events::with_capacity(1024),
        }
    }

    /// Make every active fd ready and handle them all.
    pub fn round(&mut self) {
        self.fds.poke();
        let mut handled = 0;
        while handled < ACTIVE {
            self.poll
                .poll(&mut self.events, Some(Duration::from_secs(1)))
                .unwrap();
            for event in self.events.iter() {
                if event.token().0 < ACTIVE {
                    drain(&self.fds.ours[event.token().0]);
                    handled += 1;
                }
            }
        }
    }
}
