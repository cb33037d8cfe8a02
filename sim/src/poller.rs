//! `SimPoller`: the `Poller` of one simulated host, over the shared world.

use std::cell::{Ref, RefCell, RefMut};
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ioloop::{Event, Events, Fd, Instant, ListenOptions, Poller, Readiness, Token, Wake};

use crate::net::{HostId, World};
use crate::{Entropy, FaultPlan, FaultPreset, Trace};

/// The simulated network: one world shared by every host's poller.
///
/// ```
/// use ioloop::IOLoop;
/// use ioloop_sim::{FaultPreset, SimNet};
///
/// let net = SimNet::new(7, FaultPreset::None, false);
/// let mut server = IOLoop::new(net.host("127.0.0.1".parse().unwrap()));
/// let listener = server.listen("127.0.0.1:80".parse().unwrap()).unwrap();
/// assert_eq!(listener.0, 0); // fds start at the lowest free number
/// ```
#[derive(Clone)]
pub struct SimNet {
    world: Rc<RefCell<World>>,
}

impl SimNet {
    /// A world whose every decision comes from `seed`, with the fault plan
    /// of `preset` (drawn from the same stream for `swarm`; its datagram
    /// faults join the plan with the first UDP socket); `trace_full` keeps a
    /// readable line per decision.
    pub fn new(seed: u64, preset: FaultPreset, trace_full: bool) -> SimNet {
        let mut entropy = Entropy::seeded(seed);
        let plan = FaultPlan::from_preset(preset, &mut entropy);
        let net = SimNet::with_plan(entropy, plan, trace_full);
        net.world_mut().set_datagram_preset(preset);
        net
    }

    /// A world deciding from `entropy` under an explicit `plan`.
    pub fn with_plan(entropy: Entropy, plan: FaultPlan, trace_full: bool) -> SimNet {
        SimNet {
            world: Rc::new(RefCell::new(World::new(
                entropy,
                plan,
                Trace::new(trace_full),
            ))),
        }
    }

    /// A new host with address `ip`, and its poller.
    pub fn host(&self, ip: IpAddr) -> SimPoller {
        let (host, woken) = self.world.borrow_mut().add_host(ip);
        SimPoller {
            world: Rc::clone(&self.world),
            host,
            waker: Arc::new(SimWaker { woken }),
            events: Vec::new(),
        }
    }

    /// A new poller for `host` after a restart (see
    /// [`World::restart_host`]): the same address, an empty fd table.
    pub fn restart(&self, host: HostId) -> SimPoller {
        let woken = self.world.borrow_mut().restart_host(host);
        SimPoller {
            world: Rc::clone(&self.world),
            host,
            waker: Arc::new(SimWaker { woken }),
            events: Vec::new(),
        }
    }

    /// The world, to read.
    pub fn world(&self) -> Ref<'_, World> {
        self.world.borrow()
    }

    /// The world, to change (workloads draw from its entropy).
    pub fn world_mut(&self) -> RefMut<'_, World> {
        self.world.borrow_mut()
    }
}

/// The [`Poller`] of one simulated host.
///
/// UDP sockets are simulated too (`udp_bind`, `send_to`, `recv_from`, ...):
/// datagrams are routed between hosts over the same links as segments, and
/// may be lost, duplicated, reordered or delayed (see
/// [`DatagramFaults`](crate::DatagramFaults)); a cut link, a host that is
/// down, an unbound port and a full receive queue drop them.
///
/// Socket options are recorded per socket: `set_nodelay` and
/// `set_keepalive` are read back but change nothing (the simulated network
/// has no Nagle algorithm and no idle probes); the listen backlog is
/// honoured (capped at 128); `take_error` reads a reset or a refused connect
/// once.
///
/// A reset is reported as Linux reports it: `ConnectionReset` to the next
/// read or write (or `take_error`), then end of stream to reads and
/// `BrokenPipe` to writes. To an end that had received the peer's FIN,
/// reads stay at end of stream, and the error goes to the next write (or
/// `take_error`): `BrokenPipe` if the end had not sent its own FIN
/// (`CLOSE_WAIT`), `ConnectionReset` if it had. Closing with unread bytes
/// sends a reset. Real
/// sockets cannot enter a simulated host: `adopt_*` and
/// `release_*` answer `Unsupported`.
pub struct SimPoller {
    world: Rc<RefCell<World>>,
    host: HostId,
    waker: Arc<SimWaker>,
    /// The edges of one `wait`, as the world hands them over (and traces
    /// them), before they are reported to the loop.
    events: Vec<Event>,
}

impl SimPoller {
    /// This host's id in the world.
    pub fn host_id(&self) -> HostId {
        self.host
    }

    fn world(&self) -> RefMut<'_, World> {
        self.world.borrow_mut()
    }

    /// Spend `cost` of simulated CPU time on this host, as a slow callback
    /// would: the host's clock ([`IOLoop::time`](ioloop::IOLoop::time))
    /// moves ahead at once, and the [`Sim`](crate::Sim) does not step the
    /// host again until the rest of the world catches up. Call it from a
    /// handler, callback or timeout through
    /// [`IOLoop::poller`](ioloop::IOLoop::poller).
    pub fn consume(&self, cost: Duration) {
        self.world.borrow_mut().consume(self.host, cost);
    }

    /// A random number in `0..bound` from the simulation's one stream of
    /// decisions (0 when `bound` is 0): for client workloads that must
    /// replay with the seed.
    pub fn random_below(&self, bound: u64) -> u64 {
        self.world.borrow_mut().entropy().below(bound)
    }

    /// `true` with probability `ppm` parts per million, from the
    /// simulation's one stream of decisions.
    pub fn random_chance(&self, ppm: u32) -> bool {
        self.world.borrow_mut().entropy().chance(ppm)
    }

    /// The fault plan in force (all faults off after a liveness switch).
    pub fn fault_plan(&self) -> FaultPlan {
        self.world.borrow().plan().clone()
    }

    /// This host's address.
    pub fn ip(&self) -> IpAddr {
        self.world.borrow().host_ip(self.host)
    }
}

struct SimWaker {
    woken: Arc<AtomicBool>,
}

impl Wake for SimWaker {
    fn wake(&self) -> io::Result<()> {
        self.woken.store(true, Ordering::Release);
        Ok(())
    }
}

impl Poller for SimPoller {
    fn add(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        self.world().add(self.host, fd, token, interest)
    }
    fn modify(&mut self, fd: Fd, token: Token, interest: Events) -> io::Result<()> {
        self.world().modify(self.host, fd, token, interest)
    }
    fn delete(&mut self, fd: Fd) -> io::Result<()> {
        self.world().delete(self.host, fd)
    }
    fn wait(&mut self, readiness: &mut Readiness, timeout: Option<Duration>) -> io::Result<()> {
        self.events.clear();
        let waited = self
            .world
            .borrow_mut()
            .wait(self.host, &mut self.events, timeout);
        for event in self.events.drain(..) {
            readiness.report(event.token, event.ready);
        }
        waited
    }
    fn now(&self) -> Instant {
        self.world.borrow().host_now(self.host)
    }
    /// From the simulation's one stream of decisions, as
    /// [`random_below`](SimPoller::random_below): the seed replays it.
    fn random_u64(&self) -> u64 {
        self.world().entropy().next_u64()
    }

    /// Into the run's readable trace, never its hash. The line is made
    /// with the world not borrowed: `note` may read the loop (its time, an
    /// fd's address).
    fn note(&self, note: &dyn Fn() -> String) {
        if !self.world.borrow().trace().is_full() {
            return;
        }
        let line = note();
        self.world().note(self.host, line);
    }

    /// Counted for the run (`Report::probes`), and a line in the readable
    /// trace; never in its hash.
    fn probe(&self, name: &'static str) {
        self.world().probe(Some(self.host), name);
    }

    fn system_time(&self) -> SystemTime {
        self.world.borrow().system_time(self.host)
    }
    fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }
    fn registration(&self, fd: Fd) -> Option<(Token, Events)> {
        self.world.borrow().registration(self.host, fd)
    }
    fn registration_count(&self) -> usize {
        self.world.borrow().registration_count(self.host)
    }
    fn short_read_drains(&self, fd: Fd) -> bool {
        self.world.borrow().is_stream(self.host, fd)
    }
    fn listen(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        self.world().listen(self.host, addr)
    }
    fn accept(&mut self, listener: Fd) -> io::Result<(Fd, SocketAddr)> {
        self.world().accept(self.host, listener)
    }
    fn connect(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        self.world().connect(self.host, addr)
    }
    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        self.world().read(self.host, fd, buf)
    }
    fn write(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        self.world().write(self.host, fd, buf)
    }
    fn shutdown(&mut self, fd: Fd, how: Shutdown) -> io::Result<()> {
        self.world().shutdown(self.host, fd, how)
    }
    fn close(&mut self, fd: Fd) -> io::Result<()> {
        self.world().close(self.host, fd)
    }
    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        self.world.borrow().local_addr(self.host, fd)
    }
    fn before_dispatch(&mut self, token: Token, events: Events) {
        self.world().check_dispatch(self.host, token, events);
    }
    fn listen_with(&mut self, addr: SocketAddr, options: ListenOptions) -> io::Result<Fd> {
        self.world().listen_with(self.host, addr, options)
    }
    fn set_nodelay(&mut self, fd: Fd, nodelay: bool) -> io::Result<()> {
        self.world().set_nodelay(self.host, fd, nodelay)
    }
    fn nodelay(&self, fd: Fd) -> io::Result<bool> {
        self.world.borrow().nodelay(self.host, fd)
    }
    fn set_keepalive(&mut self, fd: Fd, idle: Option<Duration>) -> io::Result<()> {
        self.world().set_keepalive(self.host, fd, idle)
    }
    fn keepalive(&self, fd: Fd) -> io::Result<Option<Duration>> {
        self.world.borrow().keepalive(self.host, fd)
    }
    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddr> {
        self.world.borrow().peer_addr(self.host, fd)
    }
    fn take_error(&mut self, fd: Fd) -> io::Result<Option<io::Error>> {
        self.world().take_error(self.host, fd)
    }
    fn adopt_listener(&mut self, listener: std::net::TcpListener) -> io::Result<Fd> {
        drop(listener);
        Err(no_real_sockets("adopt_listener"))
    }
    fn adopt_stream(&mut self, stream: std::net::TcpStream) -> io::Result<Fd> {
        drop(stream);
        Err(no_real_sockets("adopt_stream"))
    }
    fn release_listener(&mut self, fd: Fd) -> io::Result<std::net::TcpListener> {
        let _ = fd;
        Err(no_real_sockets("release_listener"))
    }
    fn release_stream(&mut self, fd: Fd) -> io::Result<std::net::TcpStream> {
        let _ = fd;
        Err(no_real_sockets("release_stream"))
    }
    fn udp_bind(&mut self, addr: SocketAddr) -> io::Result<Fd> {
        self.world().udp_bind(self.host, addr)
    }
    fn udp_connect(&mut self, fd: Fd, addr: SocketAddr) -> io::Result<()> {
        self.world().udp_connect(self.host, fd, addr)
    }
    fn send_to(&mut self, fd: Fd, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        self.world().send_to(self.host, fd, buf, addr)
    }
    fn recv_from(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.world().recv_from(self.host, fd, buf)
    }
    fn send(&mut self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        self.world().send(self.host, fd, buf)
    }
    fn recv(&mut self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        self.world().recv(self.host, fd, buf)
    }
}

/// Real sockets cannot enter or leave a simulated host.
fn no_real_sockets(call: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{call}: the simulator has no real sockets to adopt or hand back"),
    )
}
