//! Deliberately buggy echo servers: each must be caught by the checkers, proving they can fail.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{Events, Fd, IOLoop, PeriodicCallback, Poller};

/// The bug a planted server carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Drops its whole queue after any write, as if the write took it all.
    AssumeFullWrite,
    /// Leaves `WRITE` interest on once set, with nothing to write: spins.
    NeverClearWrite,
    /// Ignores a read of 0 (EOF): never closes, and spins on the EOF.
    IgnoreEof,
    /// Returns on an accept error without backing off: spins on `EMFILE`.
    SpinOnEmfile,
    /// Re-entrancy: after closing a connection it accepts the next one from
    /// inside the handler (which reuses the fd number), then drops the map
    /// entry of the fd it believes it closed — the new connection's.
    ReentrantAcceptOnClose,
    /// Not a correctness bug: registers each accept batch in the iteration
    /// order of a `std` `HashMap`, whose hasher is seeded at random per
    /// process — a planted source of non-determinism for
    /// `sim check-determinism` to catch.
    HashMapOrder,
    /// Echoes correctly but its setup starts a periodic timer that ticks
    /// forever with nothing to do: a run that never settles, caught by a
    /// liveness phase, since the scenarios declare that an echo server at
    /// rest holds no timer ([`AtRest::NoTimeouts`](crate::AtRest::NoTimeouts)).
    /// (Under the default, [`AtRest::SetupTimeouts`](crate::AtRest::SetupTimeouts),
    /// a timer the setup started is the host's periodic work: a heartbeat.)
    IdleTicker,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 5] = [
        Bug::AssumeFullWrite,
        Bug::NeverClearWrite,
        Bug::IgnoreEof,
        Bug::SpinOnEmfile,
        Bug::ReentrantAcceptOnClose,
    ];

    /// The scenario name of this bug.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AssumeFullWrite => "planted-full-write",
            Bug::NeverClearWrite => "planted-write-interest",
            Bug::IgnoreEof => "planted-ignore-eof",
            Bug::SpinOnEmfile => "planted-emfile-spin",
            Bug::ReentrantAcceptOnClose => "planted-reentrant-accept",
            Bug::HashMapOrder => "planted-hash-order",
            Bug::IdleTicker => "planted-idle-ticker",
        }
    }

    /// What the bug is, in a sentence.
    pub fn describe(self) -> &'static str {
        match self {
            Bug::AssumeFullWrite => "echo server that assumes a write writes everything",
            Bug::NeverClearWrite => "echo server that never clears WRITE interest",
            Bug::IgnoreEof => "echo server that ignores EOF",
            Bug::SpinOnEmfile => "echo server that retries accept at once on EMFILE",
            Bug::ReentrantAcceptOnClose => {
                "echo server that accepts from inside a connection handler and drops the reused fd's state"
            }
            Bug::HashMapOrder => "echo server that registers connections in random-hasher HashMap order",
            Bug::IdleTicker => "echo server whose periodic timer ticks forever with nothing to do",
        }
    }
}

#[derive(Default)]
struct Connection {
    queue: Vec<u8>,
    eof: bool,
    wrote: bool,
}

struct State {
    bug: Bug,
    listener: Fd,
    connections: BTreeMap<Fd, Connection>,
}

/// A running planted server.
pub struct PlantedServer {
    state: Rc<RefCell<State>>,
}

impl PlantedServer {
    /// Listen on `addr` and serve, with `bug`.
    pub fn bind<P: Poller + 'static>(
        io: &mut IOLoop<P>,
        addr: SocketAddr,
        bug: Bug,
    ) -> io::Result<PlantedServer> {
        let listener = io.listen(addr)?;
        let state = Rc::new(RefCell::new(State {
            bug,
            listener,
            connections: BTreeMap::new(),
        }));
        let for_accept = Rc::clone(&state);
        io.add_handler(
            listener,
            move |io, _, _| accept_all(&for_accept, io),
            Events::READ,
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        if bug == Bug::IdleTicker {
            let ticker = PeriodicCallback::new(|_: &mut IOLoop<P>| {}, Duration::from_millis(10))
                .map_err(|e| io::Error::other(e.to_string()))?;
            ticker.start(io);
        }
        Ok(PlantedServer { state })
    }

    /// Connections open.
    pub fn connection_count(&self) -> usize {
        self.state.borrow().connections.len()
    }

    /// Bytes waiting to be echoed, over all connections.
    pub fn queued_bytes(&self) -> usize {
        self.state
            .borrow()
            .connections
            .values()
            .map(|c| c.queue.len())
            .sum()
    }
}

fn accept_all<P: Poller + 'static>(state_rc: &Rc<RefCell<State>>, io: &mut IOLoop<P>) {
    let (bug, listener) = {
        let state = state_rc.borrow();
        (state.bug, state.listener)
    };
    // Only for `Bug::HashMapOrder`: the batch, registered after the loop.
    let mut batch: HashMap<Fd, ()> = HashMap::new();
    loop {
        match io.accept(listener) {
            Ok((fd, _)) if bug == Bug::HashMapOrder => {
                batch.insert(fd, ());
            }
            Ok((fd, _)) => register(state_rc, io, fd),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(_) if bug == Bug::SpinOnEmfile => break,
            Err(_) => {
                let _ = io.update_handler(listener, Events::empty());
                io.call_later(Duration::from_millis(50), move |io| {
                    let _ = io.update_handler(listener, Events::READ);
                });
                break;
            }
        }
    }
    for fd in batch.into_keys() {
        register(state_rc, io, fd);
    }
}

fn register<P: Poller + 'static>(state_rc: &Rc<RefCell<State>>, io: &mut IOLoop<P>, fd: Fd) {
    state_rc
        .borrow_mut()
        .connections
        .insert(fd, Connection::default());
    let for_conn = Rc::clone(state_rc);
    let _ = io.add_handler(
        fd,
        move |io, fd, ev| on_connection(&for_conn, io, fd, ev),
        Events::READ,
    );
}

fn on_connection<P: Poller + 'static>(
    state_rc: &Rc<RefCell<State>>,
    io: &mut IOLoop<P>,
    fd: Fd,
    events: Events,
) {
    let mut state = state_rc.borrow_mut();
    let bug = state.bug;
    let Some(connection) = state.connections.get_mut(&fd) else {
        return;
    };
    let mut alive = !events.contains(Events::ERROR);
    if alive && events.contains(Events::READ) && !connection.eof {
        let mut buf = [0u8; 1024];
        match io.read(fd, &mut buf) {
            Ok(0) if bug == Bug::IgnoreEof => return,
            Ok(0) => connection.eof = true,
            Ok(n) => connection.queue.extend_from_slice(&buf[..n]),
            Err(e) => {
                alive = matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                )
            }
        }
    }
    if alive && events.contains(Events::WRITE) && !connection.queue.is_empty() {
        match io.write(fd, &connection.queue) {
            Ok(n) if bug == Bug::AssumeFullWrite => {
                let _ = n;
                connection.queue.clear();
            }
            Ok(n) => {
                connection.queue.drain(..n);
            }
            Err(e) => {
                alive = matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                )
            }
        }
        connection.wrote = true;
    }
    if !alive || (connection.eof && connection.queue.is_empty()) {
        let _ = io.close_fd(fd);
        if bug == Bug::ReentrantAcceptOnClose {
            drop(state);
            accept_all(state_rc, io);
            state_rc.borrow_mut().connections.remove(&fd);
        } else {
            state.connections.remove(&fd);
        }
        return;
    }
    let mut interest = if connection.eof {
        Events::empty()
    } else {
        Events::READ
    };
    if !connection.queue.is_empty() || (bug == Bug::NeverClearWrite && connection.wrote) {
        interest |= Events::WRITE;
    }
    let _ = io.update_handler(fd, interest);
}
