//! `EchoClients`: K simulated clients, each sending messages ping-pong and checking every echoed byte.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use ioloop::{Events, Fd, IOLoop, Poller};

use crate::{Done, Entropy, FaultPlan};

/// How one client ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResult {
    /// Every byte came back, in order.
    Echoed,
    /// The connection failed with a clean error after `verified` correct
    /// bytes (allowed only when the fault plan breaks connections).
    Broken {
        /// Bytes echoed correctly before the error.
        verified: usize,
        /// The error.
        error: String,
    },
    /// The echo was wrong: a byte differed, came too early, or the stream
    /// ended short.
    Wrong(String),
}

/// What one client sends and how it ends.
struct Client {
    fd: Option<Fd>,
    /// The messages, in the order sent: together, the client's stream.
    messages: Vec<Message>,
    message_current: usize,
    sent: usize,
    received: usize,
    half_close: bool,
    shut: bool,
    result: Option<ClientResult>,
    /// The result was reported to the harness.
    reported: bool,
}

impl Client {
    /// Bytes of the whole stream.
    fn stream_bytes(&self) -> usize {
        self.messages.last().map_or(0, |message| message.end)
    }

    /// The bytes of the stream from `from` to the end of the message it
    /// is in.
    fn bytes_from(&self, from: usize) -> &[u8] {
        let message = &self.messages[self.message_current];
        debug_assert!((message.start..message.end).contains(&from));
        &message.bytes()[from - message.start..]
    }
}

/// One message: where it starts and ends in the client's stream, and
/// where its bytes are.
struct Message {
    start: usize,
    end: usize,
    bytes: Pattern,
}

impl Message {
    fn bytes(&self) -> &[u8] {
        let size = self.end - self.start;
        match &self.bytes {
            Pattern::Table { offset } => &pattern_table()[*offset..*offset + size],
            Pattern::Copied(bytes) => bytes,
        }
    }
}

/// A message's bytes: a window of the pattern table, or a copy of them
/// for a message longer than the table's wrap-around margin holds.
enum Pattern {
    Table { offset: usize },
    Copied(Vec<u8>),
}

/// The workload of a run, drawn from the seed.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Number of clients.
    pub clients: usize,
    /// Messages per client.
    pub messages: usize,
    /// Largest message, in bytes, when sizes are drawn from the seed.
    pub message_bytes_max: usize,
    /// Explicit sizes: when non-empty, message `j` of client `i` has size
    /// `message_sizes[(i + j) % len]` and `message_bytes_max` is ignored.
    pub message_sizes: Vec<usize>,
}

impl Workload {
    /// `clients` clients sending `messages` messages each, of sizes drawn
    /// from 1 to `message_bytes_max`.
    pub fn random(clients: usize, messages: usize, message_bytes_max: usize) -> Workload {
        Workload {
            clients,
            messages,
            message_bytes_max,
            message_sizes: Vec::new(),
        }
    }

    /// The explicit sizes as `a,b,c`, as the `sim` command takes them.
    pub fn message_sizes_csv(&self) -> String {
        let sizes: Vec<String> = self.message_sizes.iter().map(usize::to_string).collect();
        sizes.join(",")
    }

    fn message_size(&self, client: usize, message: usize, entropy: &mut Entropy) -> usize {
        if self.message_sizes.is_empty() {
            entropy.between(1, self.message_bytes_max as u64) as usize
        } else {
            self.message_sizes[(client + message) % self.message_sizes.len()].max(1)
        }
    }
}

/// K echo clients sharing one loop; clones share the clients.
#[derive(Clone)]
pub struct EchoClients {
    clients: Rc<RefCell<Vec<Client>>>,
    connect_delays: Rc<[Duration]>,
    /// The plan may break connections: a clean error is then a fine end.
    may_break: bool,
    /// Clients whose result was reported to `Done`.
    reported: Rc<Cell<usize>>,
    /// What a read lands in, shared by the clients: one buffer, zeroed once.
    read_buf: Rc<RefCell<Vec<u8>>>,
}

/// Bytes a client asks for per read.
const READ_BYTES: usize = 4096;

impl EchoClients {
    /// Draw the clients' messages, endings and connect times from
    /// `entropy`, under the fault `plan` (its half-close rate); `may_break`
    /// says whether a fault of the run may break connections
    /// ([`Sim::may_break_connections`](crate::Sim::may_break_connections)),
    /// so that a clean error is a fine end.
    pub fn draw(
        workload: &Workload,
        plan: &FaultPlan,
        may_break: bool,
        entropy: &mut Entropy,
    ) -> EchoClients {
        let half_close_ppm = plan.half_close;
        let mut clients = Vec::with_capacity(workload.clients);
        let mut delays = Vec::with_capacity(workload.clients);
        let mut sizes = Vec::with_capacity(workload.messages);
        for index in 0..workload.clients {
            sizes.clear();
            sizes.extend((0..workload.messages).map(|m| workload.message_size(index, m, entropy)));
            let mut messages = Vec::with_capacity(sizes.len());
            let mut start = 0;
            for &size in &sizes {
                let salt = (index as u64) << 32 ^ start as u64;
                messages.push(Message {
                    start,
                    end: start + size,
                    bytes: pattern(salt, size),
                });
                start += size;
            }
            clients.push(Client {
                fd: None,
                messages,
                message_current: 0,
                sent: 0,
                received: 0,
                half_close: entropy.chance(half_close_ppm),
                shut: false,
                result: None,
                reported: false,
            });
            delays.push(Duration::from_micros(entropy.below(3_000)));
        }
        EchoClients {
            clients: Rc::new(RefCell::new(clients)),
            connect_delays: delays.into(),
            may_break,
            reported: Rc::new(Cell::new(0)),
            read_buf: Rc::new(RefCell::new(vec![0; READ_BYTES])),
        }
    }

    /// Schedule the connects to `server` on `io`, staggered over a few
    /// milliseconds; report to `done` once every client has ended (or at
    /// the first wrong one).
    pub fn start<P: Poller + 'static>(&self, io: &mut IOLoop<P>, server: SocketAddr, done: Done) {
        let for_describe = self.clone();
        done.describe_with(move || for_describe.describe_unfinished().join("; "));
        for (index, delay) in self.connect_delays.iter().enumerate() {
            let for_connect = self.clone();
            let done = done.clone();
            io.call_later(*delay, move |io| {
                connect(&for_connect, &done, io, index, server)
            });
        }
    }

    /// Once client `index` has ended, tell `done`: at once for a wrong echo
    /// or an error no fault of the plan explains, and once every client
    /// has ended otherwise.
    fn report(&self, index: usize, done: &Done) {
        let mut clients = self.clients.borrow_mut();
        let client = &mut clients[index];
        if client.reported {
            return;
        }
        let Some(result) = &client.result else {
            return;
        };
        client.reported = true;
        match result {
            ClientResult::Wrong(why) => done.fail(format!("client {index}: wrong echo: {why}")),
            ClientResult::Broken { verified, error } if !self.may_break => done.fail(format!(
                "client {index}: connection failed after {verified} bytes ({error}) with no fault that breaks connections"
            )),
            _ => {}
        }
        self.reported.set(self.reported.get() + 1);
        if self.reported.get() == clients.len() {
            done.ok();
        }
    }

    /// `true` once every client has a result.
    pub fn finished(&self) -> bool {
        self.clients.borrow().iter().all(|c| c.result.is_some())
    }

    /// Each client's result so far (`None`: still running).
    pub fn results(&self) -> Vec<Option<ClientResult>> {
        self.clients
            .borrow()
            .iter()
            .map(|c| c.result.clone())
            .collect()
    }

    /// Bytes of echo each client received (and checked).
    pub fn received(&self) -> Vec<usize> {
        self.clients.borrow().iter().map(|c| c.received).collect()
    }

    /// One line per unfinished client: what it is waiting for.
    pub fn describe_unfinished(&self) -> Vec<String> {
        self.clients
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.result.is_none())
            .map(|(i, c)| {
                format!(
                    "client {i} {:?}: sent {}/{} received {} (message {} of {}, half_close={} shut={})",
                    c.fd,
                    c.sent,
                    c.stream_bytes(),
                    c.received,
                    c.message_current + 1,
                    c.messages.len(),
                    c.half_close,
                    c.shut
                )
            })
            .collect()
    }
}

/// The byte at `index` of a message: varies with position and client, so a
/// lost, duplicated or misrouted byte shows.
fn pattern_byte(salt: u64, index: usize) -> u8 {
    let x = (salt ^ index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

/// Bytes in the pattern: a prime, so that windows of different clients
/// and offsets rarely line up.
const PATTERN_BYTES: usize = 65_521;
/// The table repeats the pattern's start after its end, so that a message
/// of up to this many bytes is one window of it wherever it starts.
const PATTERN_WRAP_BYTES: usize = 64 * 1024;

/// The pattern, and its start again after its end.
fn pattern_table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..PATTERN_BYTES + PATTERN_WRAP_BYTES)
            .map(|i| pattern_byte(0x5eed, i % PATTERN_BYTES))
            .collect()
    })
}

/// The `size` bytes of the pattern from an offset chosen by `salt` (client
/// and position), wrapping around: a window of the table, with no copy,
/// when it fits. The contents never reach the trace (only sizes do), so
/// they may change without changing any trace hash.
fn pattern(salt: u64, size: usize) -> Pattern {
    let offset = (salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize % PATTERN_BYTES;
    let table = pattern_table();
    if offset + size <= table.len() {
        return Pattern::Table { offset };
    }
    let mut bytes = Vec::with_capacity(size);
    let mut offset = offset;
    while bytes.len() < size {
        let take = (size - bytes.len()).min(PATTERN_BYTES - offset);
        bytes.extend_from_slice(&table[offset..offset + take]);
        offset = 0;
    }
    Pattern::Copied(bytes)
}

fn connect<P: Poller + 'static>(
    echo: &EchoClients,
    done: &Done,
    io: &mut IOLoop<P>,
    index: usize,
    server: SocketAddr,
) {
    let clients_rc = &echo.clients;
    let fd = match io.connect(server) {
        Ok(fd) => fd,
        Err(error) => {
            clients_rc.borrow_mut()[index].result = Some(broken(0, &error));
            return echo.report(index, done);
        }
    };
    clients_rc.borrow_mut()[index].fd = Some(fd);
    let (for_handler, done_handler) = (echo.clone(), done.clone());
    let added = io.add_handler(
        fd,
        move |io, fd, events| {
            on_event(&for_handler, io, index, fd, events);
            for_handler.report(index, &done_handler);
        },
        Events::READ | Events::WRITE,
    );
    if let Err(error) = added {
        clients_rc.borrow_mut()[index].result =
            Some(ClientResult::Wrong(format!("add_handler: {error}")));
        let _ = io.close_fd(fd);
        echo.report(index, done);
    }
}

fn broken(verified: usize, error: &io::Error) -> ClientResult {
    ClientResult::Broken {
        verified,
        error: error.to_string(),
    }
}

fn retryable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn on_event<P: Poller>(
    echo: &EchoClients,
    io: &mut IOLoop<P>,
    index: usize,
    fd: Fd,
    events: Events,
) {
    let mut clients = echo.clients.borrow_mut();
    let client = &mut clients[index];
    if client.result.is_none() && events.intersects(Events::READ | Events::ERROR) {
        receive(io, fd, client, &mut echo.read_buf.borrow_mut());
    }
    if client.result.is_none() && events.intersects(Events::WRITE | Events::ERROR) {
        send(io, fd, client);
    }
    if client.result.is_some() {
        let _ = io.close_fd(fd);
        client.fd = None;
        return;
    }
    let mut interest = Events::READ;
    if client.sent < client.messages[client.message_current].end {
        interest |= Events::WRITE;
    }
    if io.interest(fd) != Some(interest) {
        let _ = io.update_handler(fd, interest);
    }
}

fn receive<P: Poller>(io: &mut IOLoop<P>, fd: Fd, client: &mut Client, buf: &mut [u8]) {
    match io.read(fd, buf) {
        Ok(0) => {
            client.result = Some(if client.received == client.stream_bytes() {
                ClientResult::Echoed
            } else {
                ClientResult::Wrong(format!(
                    "end of stream after {} of {} bytes",
                    client.received,
                    client.stream_bytes()
                ))
            });
        }
        Ok(n) => {
            let got = &buf[..n];
            let start = client.received;
            if start + n > client.sent {
                client.result = Some(ClientResult::Wrong(format!(
                    "received {} bytes but only {} were sent",
                    start + n,
                    client.sent
                )));
                return;
            }
            // Sent and not yet echoed: within the current message.
            let expected = &client.bytes_from(start)[..n];
            if got != expected {
                let at = got
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .expect("the slices differ");
                client.result = Some(ClientResult::Wrong(format!(
                    "byte {} differs: got {:#04x}, sent {:#04x}",
                    start + at,
                    got[at],
                    expected[at]
                )));
                return;
            }
            client.received += n;
            advance(client);
        }
        Err(e) if retryable(&e) => {}
        Err(e) => client.result = Some(broken(client.received, &e)),
    }
}

/// After an echo: move to the next message, and finish the stream.
fn advance(client: &mut Client) {
    let last = client.messages.len() - 1;
    while client.message_current < last
        && client.received >= client.messages[client.message_current].end
    {
        client.message_current += 1;
    }
    if client.received == client.stream_bytes() && !client.half_close {
        client.result = Some(ClientResult::Echoed);
    }
}

fn send<P: Poller>(io: &mut IOLoop<P>, fd: Fd, client: &mut Client) {
    let end = client.messages[client.message_current].end;
    if client.sent < end {
        match io.write(fd, client.bytes_from(client.sent)) {
            Ok(n) => client.sent += n,
            Err(e) if retryable(&e) => return,
            Err(e) => {
                client.result = Some(broken(client.received, &e));
                return;
            }
        }
    }
    if client.sent == client.stream_bytes() && client.half_close && !client.shut {
        client.shut = true;
        if let Err(e) = io.shutdown(fd, Shutdown::Write) {
            client.result = Some(broken(client.received, &e));
        }
    }
}
