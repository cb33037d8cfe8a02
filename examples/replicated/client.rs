//! A client of the replicated register — timeouts, retries at another replica — and the property it checks: every acknowledged write is visible to every read that begins after the acknowledgement.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{IOLoop, Instant, Poller};

use crate::service::{ask, AskError, Message, Values};

/// The correctness property, checked on every read: a read that began
/// after a write was acknowledged returns that write (or a later one).
///
/// Clients record each acknowledgement and each read here; the first read
/// that misses an acknowledged write is a [`violation`](Self::violation).
#[derive(Debug, Default)]
pub struct History {
    /// For each key, the highest value acknowledged so far.
    acknowledged: Values,
    violations: Vec<String>,
    /// Writes acknowledged and reads checked, over every client.
    pub writes_acknowledged: u64,
    /// Reads checked.
    pub reads_checked: u64,
}

impl History {
    /// `key` = `value` was acknowledged to a client.
    pub fn acknowledged(&mut self, key: &str, value: u64) {
        let slot = self.acknowledged.entry(key.to_string()).or_insert(0);
        *slot = (*slot).max(value);
        self.writes_acknowledged += 1;
    }

    /// A read begins: what it must see.
    pub fn read_begins(&self) -> Values {
        self.acknowledged.clone()
    }

    /// A read that began when `must_see` was acknowledged returned `got`,
    /// at `at`, through the replica `from`.
    pub fn read_returned(
        &mut self,
        must_see: &Values,
        got: &Values,
        at: Instant,
        from: SocketAddr,
    ) {
        self.reads_checked += 1;
        for (key, &value) in must_see {
            let seen = got.get(key).copied().unwrap_or(0);
            if seen < value {
                self.violations.push(format!(
                    "a read through {from} at {at:?} returned {key}={seen}, but {key}={value} was acknowledged before the read began"
                ));
            }
        }
    }

    /// The first read that missed an acknowledged write, if any.
    pub fn violation(&self) -> Option<&str> {
        self.violations.first().map(String::as_str)
    }
}

/// A client's work and its patience.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The replicas; each attempt goes to one of them.
    pub replicas: [SocketAddr; 3],
    /// The key this client writes: 1, 2, ... `writes`, each followed by a
    /// read of the whole register.
    pub key: String,
    /// Writes to make.
    pub writes: u64,
    /// An attempt with no answer by then is abandoned (connecting and
    /// answering each get this long).
    pub attempt_timeout: Duration,
    /// Wait between a failed attempt and the next.
    pub backoff: Duration,
    /// Attempts per request before the client gives up (a liveness failure).
    pub attempts_max: u32,
}

impl ClientConfig {
    /// `writes` writes to `key`, with the default timeouts.
    pub fn new(replicas: [SocketAddr; 3], key: &str, writes: u64) -> ClientConfig {
        ClientConfig {
            replicas,
            key: key.to_string(),
            writes,
            attempt_timeout: Duration::from_secs(1),
            backoff: Duration::from_millis(20),
            attempts_max: 1_000,
        }
    }
}

/// What the client calls back with when it is done, or gives up.
pub type Finished<P> = Box<dyn FnOnce(&mut IOLoop<P>, Result<(), String>)>;
/// Which replica (an index into `replicas`) the next attempt goes to.
pub type Pick<P> = Box<dyn FnMut(&mut IOLoop<P>) -> usize>;

/// A running client.
pub struct Client<P: Poller> {
    config: ClientConfig,
    history: Rc<RefCell<History>>,
    pick: RefCell<Pick<P>>,
    finished: RefCell<Option<Finished<P>>>,
    progress: RefCell<Progress>,
}

/// Where a client is, for stall reports.
#[derive(Clone, Debug, Default)]
struct Progress {
    request: String,
    attempts: u32,
    last_error: String,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (attempt {}; last error: {})",
            self.request, self.attempts, self.last_error
        )
    }
}

impl<P: Poller + 'static> Client<P> {
    /// Start the client's work on `io`; `finished` is called once.
    pub fn start(
        io: &mut IOLoop<P>,
        config: ClientConfig,
        history: Rc<RefCell<History>>,
        pick: Pick<P>,
        finished: Finished<P>,
    ) -> Rc<Client<P>> {
        let client = Rc::new(Client {
            config,
            history,
            pick: RefCell::new(pick),
            finished: RefCell::new(Some(finished)),
            progress: RefCell::new(Progress::default()),
        });
        Rc::clone(&client).write(io, 1);
        client
    }

    /// What the client is doing now.
    pub fn status(&self) -> String {
        self.progress.borrow().to_string()
    }

    /// Write `value`, then read; then the next value, until `writes`.
    fn write(self: Rc<Self>, io: &mut IOLoop<P>, value: u64) {
        if value > self.config.writes {
            return self.finish(io, Ok(()));
        }
        let key = self.config.key.clone();
        let request = Message::Write { key, value };
        self.request(io, request, 1, move |client, io, answer, _| {
            if answer != Message::Ok {
                return client.finish(io, Err(format!("WRITE answered {answer}")));
            }
            client
                .history
                .borrow_mut()
                .acknowledged(&client.config.key, value);
            client.read(io, value);
        });
    }

    /// Read the register; check it against what was acknowledged.
    fn read(self: Rc<Self>, io: &mut IOLoop<P>, written: u64) {
        let must_see = self.history.borrow().read_begins();
        self.request(io, Message::Read, 1, move |client, io, answer, from| {
            let Message::Values(got) = answer else {
                return client.finish(io, Err(format!("READ answered {answer}")));
            };
            let now = io.time();
            client
                .history
                .borrow_mut()
                .read_returned(&must_see, &got, now, from);
            client.write(io, written + 1);
        });
    }

    /// Send `request` to a replica, and again elsewhere after a timeout, an
    /// error or a `RETRY`, until it is answered or `attempts_max` attempts
    /// failed.
    fn request<F>(self: Rc<Self>, io: &mut IOLoop<P>, request: Message, attempt: u32, then: F)
    where
        F: FnOnce(Rc<Self>, &mut IOLoop<P>, Message, SocketAddr) + 'static,
    {
        if attempt > self.config.attempts_max {
            let why = format!("gave up after {} attempts: {}", attempt - 1, self.status());
            return self.finish(io, Err(why));
        }
        {
            let mut progress = self.progress.borrow_mut();
            progress.request = request.to_string();
            progress.attempts = attempt;
        }
        let index = (self.pick.borrow_mut())(io) % self.config.replicas.len();
        let replica = self.config.replicas[index];
        let client = Rc::clone(&self);
        let sent = request.clone();
        let on_answer = Box::new(
            move |io: &mut IOLoop<P>, result: Result<Message, AskError>| {
                let error = match result {
                    Ok(Message::Retry) => "RETRY".to_string(),
                    Ok(answer) => return then(client, io, answer, replica),
                    Err(AskError::TimedOut) => "timed out".to_string(),
                    Err(AskError::Failed(why)) => why,
                };
                client.progress.borrow_mut().last_error = format!("{replica}: {error}");
                let backoff = client.config.backoff;
                io.call_later(backoff, move |io| {
                    client.request(io, sent, attempt + 1, then);
                });
            },
        );
        ask(
            io,
            replica,
            &request,
            self.config.attempt_timeout,
            on_answer,
        );
    }

    fn finish(&self, io: &mut IOLoop<P>, result: Result<(), String>) {
        if let Some(finished) = self.finished.borrow_mut().take() {
            finished(io, result);
        }
    }
}
