//! A register replicated on three hosts, on `IOStream` and generic over the poller: every write is acknowledged only once a majority of replicas hold it on disk, every read merges a majority's answers — so a read sees every write acknowledged before it began, through partitions, pauses and crashes. `examples/replicated` runs it on mio, `sim/tests/replicated.rs` on the simulator.
//!
//! The register holds, for each key, the highest number written to it:
//! writes merge by `max`, so a write retried, duplicated or delivered late
//! changes nothing. Any replica coordinates a client's request: it applies
//! the request itself, then asks one peer — its successor on the ring
//! first, the other if the successor does not answer in time — and answers
//! once the peer has. A majority of three is the coordinator and one peer.
//!
//! ```text
//! client -> coordinator   WRITE key n\n    ->  OK\n       (or RETRY\n: no majority in time)
//!                         READ\n           ->  VALUES k=n,...\n   (or RETRY\n)
//! coordinator -> peer     STORE key n\n    ->  STORED\n
//!                         QUERY\n          ->  VALUES k=n,...\n
//! ```
//!
//! One request per connection: the asker connects, sends a line, reads
//! the answer and closes. Each replica keeps its values in memory and on a
//! [`Disk`] that outlives the process: a restart loads the disk.
//!
//! **Between replicas**, requests go through a [`PeerLink`], one request
//! and its one answer: over TCP, a connection each ([`TcpPeerLink`]), or in
//! datagrams tagged with a request id and sent again until answered
//! ([`UdpPeerLink`](crate::udp_link::UdpPeerLink)); [`Config::transport`]
//! chooses. Clients always speak TCP.
//!
//! **Planted bugs** ([`Flaw`]), each caught only by a network fault:
//! [`Flaw::AckWithoutBackup`] acknowledges a write whose peer timed out (a
//! partition, a clog or a pause loses it); [`Flaw::AckBeforePersist`]
//! acknowledges before the disk has the write (a crash loses it);
//! [`Flaw::AnswerByPeer`], over UDP, takes the first answer from the peer
//! it asked, whatever its id (a datagram lost, late, duplicated or
//! reordered, and another request's answer stands in for it);
//! [`Flaw::LastStoreWins`] overwrites a key with a peer's `STORE` as it
//! arrives (over UDP, a duplicate or a reordered `STORE` that lands after
//! a newer one rolls the key back).
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{IOLoop, IOStream, Instant, Poller, StreamError, StreamHandle, TcpClient, TcpServer};

use crate::udp_link::{Matching, UdpPeerLink};

/// Longest protocol line, newline included.
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// Keys a register holds at most (a `STORE` past it is refused).
pub const KEYS_MAX: usize = 1024;
/// A peer that failed at once (refused, reset) is asked again after this.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// The register: for each key, the highest number written to it.
pub type Values = BTreeMap<String, u64>;

/// Merge `from` into `into` (`max` per key); `true` if `into` changed.
pub fn merge(into: &mut Values, from: &Values) -> bool {
    let mut changed = false;
    for (key, &value) in from {
        let slot = into.entry(key.clone()).or_insert(0);
        if value > *slot {
            *slot = value;
            changed = true;
        }
    }
    changed
}

// ----- the protocol --------------------------------------------------------------

/// A protocol line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Client to coordinator: raise `key` to `value`.
    Write {
        /// The key.
        key: String,
        /// The value.
        value: u64,
    },
    /// Client to coordinator: the register, as a majority has it.
    Read,
    /// Coordinator to peer: raise `key` to `value` on your disk.
    Store {
        /// The key.
        key: String,
        /// The value.
        value: u64,
    },
    /// Coordinator to peer: your register.
    Query,
    /// A write is on a majority.
    Ok,
    /// A `STORE` is on this replica's disk.
    Stored,
    /// A register (the answer to `READ` and to `QUERY`).
    Values(Values),
    /// No majority answered in time: ask again (maybe elsewhere).
    Retry,
}

impl Message {
    /// Parse one line (its newline included or not); `None` if malformed.
    pub fn parse(line: &[u8]) -> Option<Message> {
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
        let mut words = line.split(' ');
        let message = match (words.next()?, words.next(), words.next()) {
            ("WRITE", Some(key), Some(value)) => Message::Write {
                key: valid_key(key)?,
                value: value.parse().ok()?,
            },
            ("STORE", Some(key), Some(value)) => Message::Store {
                key: valid_key(key)?,
                value: value.parse().ok()?,
            },
            ("READ", None, None) => Message::Read,
            ("QUERY", None, None) => Message::Query,
            ("OK", None, None) => Message::Ok,
            ("STORED", None, None) => Message::Stored,
            ("RETRY", None, None) => Message::Retry,
            ("VALUES", Some(values), None) => Message::Values(parse_values(values)?),
            _ => return None,
        };
        words.next().is_none().then_some(message)
    }

    /// The message as a line, newline included.
    pub fn line(&self) -> Vec<u8> {
        format!("{self}\n").into_bytes()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Write { key, value } => write!(f, "WRITE {key} {value}"),
            Message::Store { key, value } => write!(f, "STORE {key} {value}"),
            Message::Read => f.write_str("READ"),
            Message::Query => f.write_str("QUERY"),
            Message::Ok => f.write_str("OK"),
            Message::Stored => f.write_str("STORED"),
            Message::Retry => f.write_str("RETRY"),
            Message::Values(values) if values.is_empty() => f.write_str("VALUES -"),
            Message::Values(values) => {
                let pairs: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "VALUES {}", pairs.join(","))
            }
        }
    }
}

fn valid_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| key.to_string())
}

fn parse_values(text: &str) -> Option<Values> {
    if text == "-" {
        return Some(Values::new());
    }
    let mut values = Values::new();
    for pair in text.split(',') {
        let (key, value) = pair.split_once('=')?;
        values.insert(valid_key(key)?, value.parse().ok()?);
        if values.len() > KEYS_MAX {
            return None;
        }
    }
    Some(values)
}

// ----- one request, one answer -------------------------------------------------------

/// Why a request got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AskError {
    /// Nothing came back in time.
    TimedOut,
    /// The connection failed (refused, reset, closed), or the answer was
    /// not a protocol line.
    Failed(String),
}

/// What `ask` calls back with.
pub type Answer<P> = Box<dyn FnOnce(&mut IOLoop<P>, Result<Message, AskError>)>;

/// Send `request` to `addr` on a connection of its own, and call `answer`
/// once with the answer, or with why there is none: connecting and
/// answering each get `timeout`.
pub fn ask<P: Poller + 'static>(
    io: &mut IOLoop<P>,
    addr: SocketAddr,
    request: &Message,
    timeout: Duration,
    answer: Answer<P>,
) {
    let line = request.line();
    // The answer is given once, by whichever path gets there first.
    let answer = Rc::new(RefCell::new(Some(answer)));
    let give = move |io: &mut IOLoop<P>, result: Result<Message, AskError>| {
        if let Some(answer) = answer.borrow_mut().take() {
            answer(io, result);
        }
    };
    // Every failure, a connect refused at once included, reaches the
    // callback, from the loop: never from inside `ask`.
    TcpClient::connect(
        io,
        addr,
        timeout,
        (),
        move |io, stream, connected| match connected {
            Ok(()) => exchange(io, stream, &line, timeout, give),
            Err(StreamError::TimedOut) => give(io, Err(AskError::TimedOut)),
            Err(error) => give(io, Err(AskError::Failed(error.to_string()))),
        },
    );
}

/// On a connected stream: write `line`, read one answer line, close.
fn exchange<P, G>(
    io: &mut IOLoop<P>,
    stream: &mut IOStream<P>,
    line: &[u8],
    timeout: Duration,
    give: G,
) where
    P: Poller + 'static,
    G: Fn(&mut IOLoop<P>, Result<Message, AskError>) + Clone + 'static,
{
    let handle = stream.handle();
    let on_timeout = give.clone();
    let timer = io.call_later(timeout, move |io| {
        on_timeout(io, Err(AskError::TimedOut));
        IOStream::with(io, handle, |io, stream: &mut IOStream<P>| stream.close(io));
    });
    let _ = stream.write(io, line); // a failed write fails the read below
    let on_read_error = give.clone();
    let reading = stream.read_until(io, b"\n", LINE_BYTES_MAX, move |io, stream, line| {
        io.remove_timeout(timer);
        stream.close(io);
        give(
            io,
            match line {
                Ok(line) => Message::parse(&line)
                    .ok_or_else(|| AskError::Failed(format!("not an answer: {line:?}"))),
                Err(error) => Err(AskError::Failed(error.to_string())),
            },
        );
    });
    if let Err(error) = reading {
        io.remove_timeout(timer);
        stream.close(io);
        on_read_error(io, Err(AskError::Failed(error.to_string())));
    }
}

// ----- the link between replicas -------------------------------------------------------

/// How a replica answers a peer's request (`STORE`, `QUERY`): the answer,
/// or `None` for none.
pub type PeerRequests<P> = Rc<dyn Fn(&mut IOLoop<P>, &Message) -> Option<Message>>;

/// How replicas ask each other: one request, its one answer, or an error
/// within the timeout.
pub trait PeerLink<P: Poller> {
    /// Answer the peers' requests that come through the link with
    /// `requests`.
    fn serve(&self, requests: PeerRequests<P>);

    /// Ask `peer`; `answer` is called once, and never from inside `ask`.
    fn ask(
        &self,
        io: &mut IOLoop<P>,
        peer: SocketAddr,
        request: &Message,
        timeout: Duration,
        answer: Answer<P>,
    );
}

/// Peer requests over TCP, a connection each ([`ask`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpPeerLink;

impl<P: Poller + 'static> PeerLink<P> for TcpPeerLink {
    /// Nothing to do: the replica's listener takes peers' requests along
    /// with clients'.
    fn serve(&self, _requests: PeerRequests<P>) {}

    fn ask(
        &self,
        io: &mut IOLoop<P>,
        peer: SocketAddr,
        request: &Message,
        timeout: Duration,
        answer: Answer<P>,
    ) {
        ask(io, peer, request, timeout, answer);
    }
}

// ----- a replica -------------------------------------------------------------------

/// A deliberate bug, for the tests that must catch it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flaw {
    /// None: the replica as it should be.
    #[default]
    None,
    /// "The backup is slow, but the write is on our disk": a coordinator
    /// whose peer does not answer in time acknowledges the write anyway.
    /// Caught by a partition (or a clog, or a pause) that holds the write
    /// from the peer while a read asks the other two replicas.
    AckWithoutBackup,
    /// "Group commit": a replica applies a write in memory and answers at
    /// once; its disk catches up within [`Config::group_commit`] (a second,
    /// as with Redis's `appendfsync everysec`). Caught by a crash and
    /// restart in between.
    AckBeforePersist,
    /// "One answer per request, in order": the UDP link
    /// ([`Transport::Udp`]) hands the first answer from a peer to the
    /// oldest request waiting on it, whatever the answer's id. Right while
    /// every request gets its one answer, in order and in time. A request
    /// that never arrives (lost, or dropped by a partition or a crash)
    /// breaks it: the `STORED` of the next `STORE` to that peer
    /// acknowledges a `STORE` it never got, and the write is on the
    /// coordinator alone. So does an answer that comes late, twice or out
    /// of order (delayed, duplicated, reordered): a `VALUES` given before a
    /// write was acknowledged answers a read that began after, or a
    /// `STORED` answers a `STORE` still on its way. With
    /// [`Transport::Tcp`] it changes nothing.
    AnswerByPeer,
    /// "The coordinator sends a key's writes in order": a replica applies
    /// a peer's `STORE` by overwriting the key with its value, as it
    /// arrives, instead of raising it (`max`). Right while a `STORE` never
    /// lands after a newer one. Over UDP, a `STORE` lost, or dropped by a
    /// partition or a crash, never lands, and a paused replica reads its
    /// datagrams in the order they came: the twin rides those out. A
    /// duplicate's copy, or a `STORE` held back (reordered) — or one
    /// delayed, or held by a clog, past the coordinator's wait for its
    /// peer — lands after the next write's `STORE` and rolls the key back
    /// on a replica that acknowledged the newer value; a read that asks it
    /// and the replica that missed the newer write misses an acknowledged
    /// write.
    LastStoreWins,
}

/// How replicas ask each other (clients always speak TCP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection per request ([`TcpPeerLink`]).
    #[default]
    Tcp,
    /// Datagrams from a UDP socket on the replica's address, tagged with
    /// request ids ([`UdpPeerLink`]).
    Udp,
}

/// Storage that survives a crash of the process: a restarted replica loads
/// it. On the simulator, the host's setup closure keeps it across restarts;
/// the process's memory does not.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    values: Rc<RefCell<Values>>,
    boots: Rc<Cell<u64>>,
}

impl Disk {
    /// An empty disk.
    pub fn new() -> Disk {
        Disk::default()
    }

    /// What the disk holds.
    pub fn load(&self) -> Values {
        self.values.borrow().clone()
    }

    /// Write `values` to the disk (durable once this returns).
    pub fn store(&self, values: &Values) {
        self.values.borrow_mut().clone_from(values);
    }

    /// Count a start of a replica on this disk (durable once this
    /// returns): the count, from 1, a number no earlier start had.
    pub fn boot(&self) -> u64 {
        self.boots.set(self.boots.get() + 1);
        self.boots.get()
    }
}

/// One replica's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The three replicas, in ring order.
    pub replicas: [SocketAddr; 3],
    /// This replica's index in `replicas`.
    pub me: usize,
    /// How long a coordinator waits for one peer before asking the other.
    pub peer_timeout: Duration,
    /// How long a coordinator tries to reach a majority before it answers
    /// `RETRY`; also how long a connection may take to send its request.
    pub request_deadline: Duration,
    /// With [`Flaw::AckBeforePersist`]: how long the disk lags.
    pub group_commit: Duration,
    /// How replicas ask each other.
    pub transport: Transport,
    /// The planted bug, if any.
    pub flaw: Flaw,
}

impl Config {
    /// Replica `me` of `replicas`, with the default timeouts and no flaw.
    pub fn new(replicas: [SocketAddr; 3], me: usize) -> Config {
        assert!(me < replicas.len(), "replica {me} of {}", replicas.len());
        Config {
            replicas,
            me,
            peer_timeout: Duration::from_millis(100),
            request_deadline: Duration::from_millis(500),
            group_commit: Duration::from_secs(1),
            transport: Transport::Tcp,
            flaw: Flaw::None,
        }
    }

    /// The peer asked on `attempt`: the successor, then the other, in turn.
    fn peer(&self, attempt: u32) -> SocketAddr {
        let n = self.replicas.len();
        self.replicas[(self.me + 1 + attempt as usize % (n - 1)) % n]
    }
}

/// A running replica.
pub struct Replica<P: Poller> {
    config: Config,
    link: Box<dyn PeerLink<P>>,
    disk: Disk,
    state: RefCell<State>,
}

/// What a replica holds in memory.
struct State {
    values: Values,
    /// With [`Flaw::AckBeforePersist`]: the disk is behind memory.
    flush_pending: bool,
    stats: ReplicaStats,
}

/// What a replica did, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Requests coordinated (`WRITE` and `READ`).
    pub coordinated: u64,
    /// `STORE`s and `QUERY`s answered for peers.
    pub served: u64,
    /// Coordinated requests answered `RETRY`.
    pub retried: u64,
}

impl<P: Poller + 'static> Replica<P> {
    /// Load `disk`, listen on the replica's address, and serve; peers are
    /// asked as [`Config::transport`] says (over UDP, from a socket on the
    /// same address, which answers peers too).
    pub fn start(io: &mut IOLoop<P>, config: Config, disk: Disk) -> io::Result<Rc<Replica<P>>> {
        let addr = config.replicas[config.me];
        let incarnation = disk.boot();
        let link: Box<dyn PeerLink<P>> = match config.transport {
            Transport::Tcp => Box::new(TcpPeerLink),
            Transport::Udp => {
                let matching = match config.flaw {
                    Flaw::AnswerByPeer => Matching::ByPeer, // the planted bug
                    _ => Matching::ById,
                };
                Box::new(UdpPeerLink::bind(io, addr, incarnation, matching)?)
            }
        };
        let replica = Rc::new(Replica {
            state: RefCell::new(State {
                values: disk.load(),
                flush_pending: false,
                stats: ReplicaStats::default(),
            }),
            config,
            link,
            disk,
        });
        let serving = Rc::clone(&replica);
        TcpServer::bind(io, addr, move |io, stream: &mut IOStream<P>| {
            Rc::clone(&serving).serve(io, stream);
        })?;
        let serving = Rc::clone(&replica);
        let requests: PeerRequests<P> =
            Rc::new(move |io, request| serving.answer_peer(io, request));
        replica.link.serve(requests);
        Ok(replica)
    }

    /// What the replica holds in memory now.
    pub fn values(&self) -> Values {
        self.state.borrow().values.clone()
    }

    /// What it did so far.
    pub fn stats(&self) -> ReplicaStats {
        self.state.borrow().stats
    }

    /// One connection: one request line (within the deadline), one answer.
    fn serve(self: Rc<Self>, io: &mut IOLoop<P>, stream: &mut IOStream<P>) {
        let handle = stream.handle();
        let idle = io.call_later(self.config.request_deadline, move |io| {
            IOStream::with(io, handle, |io, stream: &mut IOStream<P>| stream.close(io));
        });
        let _ = stream.read_until(io, b"\n", LINE_BYTES_MAX, move |io, stream, line| {
            io.remove_timeout(idle);
            match line.ok().as_deref().and_then(Message::parse) {
                Some(request @ (Message::Store { .. } | Message::Query)) => {
                    match self.answer_peer(io, &request) {
                        Some(reply) => answer(io, stream, &reply),
                        None => stream.close(io),
                    }
                }
                Some(Message::Write { key, value }) if self.apply(io, &key, value, false) => {
                    let request = Message::Store { key, value };
                    self.coordinate(io, stream.handle(), request);
                }
                Some(Message::Read) => self.coordinate(io, stream.handle(), Message::Query),
                // Closed, not a request, or a key past `KEYS_MAX`.
                _ => stream.close(io),
            }
        });
    }

    /// A peer's `STORE` or `QUERY`: its answer (`None` for a `STORE` of a
    /// new key past [`KEYS_MAX`], or not a peer's request).
    fn answer_peer(self: &Rc<Self>, io: &mut IOLoop<P>, request: &Message) -> Option<Message> {
        let reply = match request {
            Message::Store { key, value } if self.apply(io, key, *value, true) => Message::Stored,
            Message::Query => Message::Values(self.values()),
            _ => return None,
        };
        self.state.borrow_mut().stats.served += 1;
        Some(reply)
    }

    /// Raise `key` to `value` in memory, and on disk before any answer —
    /// unless the planted [`Flaw::AckBeforePersist`] defers the disk, or
    /// the planted [`Flaw::LastStoreWins`] overwrites the key with a
    /// peer's `STORE` (`stored`). `false` (nothing changed) for a new key
    /// past [`KEYS_MAX`].
    fn apply(self: &Rc<Self>, io: &mut IOLoop<P>, key: &str, value: u64, stored: bool) -> bool {
        let mut state = self.state.borrow_mut();
        if state.values.len() >= KEYS_MAX && !state.values.contains_key(key) {
            return false;
        }
        let slot = state.values.entry(key.to_string()).or_insert(0);
        *slot = match self.config.flaw {
            Flaw::LastStoreWins if stored => value, // the planted bug
            _ => (*slot).max(value),
        };
        if self.config.flaw != Flaw::AckBeforePersist {
            self.disk.store(&state.values);
        } else if !state.flush_pending {
            state.flush_pending = true;
            let replica = Rc::clone(self);
            io.call_later(self.config.group_commit, move |_| {
                let mut state = replica.state.borrow_mut();
                state.flush_pending = false;
                replica.disk.store(&state.values);
            });
        }
        true
    }

    /// Ask a peer `request` (it holds or reads what we hold), then answer
    /// the client on `client`: with a majority's answer, or `RETRY`.
    fn coordinate(self: Rc<Self>, io: &mut IOLoop<P>, client: StreamHandle, request: Message) {
        self.state.borrow_mut().stats.coordinated += 1;
        let deadline = io.time() + self.config.request_deadline;
        let replica = Rc::clone(&self);
        self.ask_a_peer(io, request, 0, deadline, move |io, peer_answer| {
            let reply = match peer_answer {
                Some(Message::Stored) => Message::Ok,
                Some(Message::Values(theirs)) => {
                    let mut values = replica.values();
                    merge(&mut values, &theirs);
                    Message::Values(values)
                }
                _ => {
                    replica.state.borrow_mut().stats.retried += 1;
                    Message::Retry
                }
            };
            IOStream::with(io, client, |io, stream: &mut IOStream<P>| {
                answer(io, stream, &reply)
            });
        });
    }

    /// Ask the peers in turn, from `attempt` on, until one answers as
    /// `request` expects; `None` once `deadline` passes.
    fn ask_a_peer<F>(
        self: Rc<Self>,
        io: &mut IOLoop<P>,
        request: Message,
        attempt: u32,
        deadline: Instant,
        done: F,
    ) where
        F: FnOnce(&mut IOLoop<P>, Option<Message>) + 'static,
    {
        let now = io.time();
        if now >= deadline {
            return done(io, None);
        }
        let timeout = self.config.peer_timeout.min(deadline - now);
        let peer = self.config.peer(attempt);
        let replica = Rc::clone(&self);
        let sent = request.clone();
        let on_answer: Answer<P> = Box::new(move |io, result| {
            let expected = matches!(
                (&sent, &result),
                (Message::Store { .. }, Ok(Message::Stored))
                    | (Message::Query, Ok(Message::Values(_)))
            );
            match result {
                _ if expected => done(io, result.ok()),
                Err(AskError::TimedOut)
                    if replica.config.flaw == Flaw::AckWithoutBackup
                        && matches!(sent, Message::Store { .. }) =>
                {
                    done(io, Some(Message::Stored)) // the planted bug
                }
                Err(AskError::TimedOut) => {
                    replica.ask_a_peer(io, sent, attempt + 1, deadline, done)
                }
                _ => {
                    io.call_later(RETRY_BACKOFF, move |io| {
                        replica.ask_a_peer(io, sent, attempt + 1, deadline, done)
                    });
                }
            }
        });
        self.link.ask(io, peer, &request, timeout, on_answer);
    }
}

/// Write `message` and close the connection once it is sent.
fn answer<P: Poller + 'static>(io: &mut IOLoop<P>, stream: &mut IOStream<P>, message: &Message) {
    let sent = stream.write_then(io, &message.line(), |io, stream, _| stream.close(io));
    if sent.is_err() {
        stream.close(io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_their_lines() {
        let values: Values = [("a".to_string(), 3), ("b-2".to_string(), 9)].into();
        for message in [
            Message::Write {
                key: "a".into(),
                value: 7,
            },
            Message::Store {
                key: "b_1".into(),
                value: 0,
            },
            Message::Read,
            Message::Query,
            Message::Ok,
            Message::Stored,
            Message::Retry,
            Message::Values(Values::new()),
            Message::Values(values),
        ] {
            assert_eq!(Message::parse(&message.line()), Some(message));
        }
        for bad in [
            "",
            "WRITE a",
            "WRITE a b",
            "WRITE a 1 2",
            "VALUES a",
            "READ x",
            "WRITE a b c",
        ] {
            assert_eq!(Message::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
