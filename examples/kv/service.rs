//! A line-protocol key-value store on `IOStream`, generic over the poller: `examples/kv` runs it on mio, `sim/tests/kv.rs` on the simulator.
//!
//! ```text
//! SET key value\n   ->  OK\n
//! GET key\n         ->  VALUE value\n   or  NONE\n
//! DEL key\n         ->  DELETED\n       or  NONE\n
//! anything else     ->  ERR what\n
//! ```
//!
//! Requests may be pipelined. While more than [`KvConfig::output_high_water`]
//! bytes of answers wait to be sent, the connection reads no further
//! request (backpressure: a client that sends without reading cannot make
//! the server buffer without bound). A connection idle for
//! [`KvConfig::idle_timeout`] is closed.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{IOLoop, IOStream, Poller, StreamError, TcpServer};

/// The service's limits.
#[derive(Clone, Copy, Debug)]
pub struct KvConfig {
    /// Longest request line, newline included.
    pub line_bytes_max: usize,
    /// Answers queued above this stop the reading of requests.
    pub output_high_water: usize,
    /// A connection that sends and takes no byte for this long is closed
    /// ([`IOStream::set_idle_timeout`]).
    pub idle_timeout: Duration,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            line_bytes_max: 64 * 1024,
            output_high_water: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What the server has seen, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests answered.
    pub requests: u64,
    /// Connections closed for idling.
    pub idle_closed: u64,
    /// Times reading paused for backpressure.
    pub paused: u64,
    /// The most answer bytes ever queued on one connection.
    pub output_queued_max: usize,
}

/// The store and its stats, shared by every connection.
#[derive(Default)]
struct Shared {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    stats: KvStats,
}

/// One connection's state: the stream's `S`.
struct Conn {
    shared: Rc<RefCell<Shared>>,
    config: KvConfig,
}

/// A running key-value server.
pub struct KvServer {
    server: TcpServer<Conn>,
    shared: Rc<RefCell<Shared>>,
}

impl KvServer {
    /// Listen on `addr` and serve.
    pub fn bind<P: Poller>(
        io: &mut IOLoop<P>,
        addr: SocketAddr,
        config: KvConfig,
    ) -> std::io::Result<KvServer> {
        let shared = Rc::new(RefCell::new(Shared::default()));
        let for_state = Rc::clone(&shared);
        let server = TcpServer::bind_with(
            io,
            addr,
            move |_peer| Conn {
                shared: Rc::clone(&for_state),
                config,
            },
            |io: &mut IOLoop<P>, stream: &mut IOStream<P, Conn>| {
                stream.state().shared.borrow_mut().stats.connections += 1;
                let idle_timeout = stream.state().config.idle_timeout;
                stream.set_idle_timeout(io, Some(idle_timeout));
                stream.set_close_callback(|_, stream| {
                    if let Some(StreamError::Idle { .. }) = stream.error() {
                        stream.state().shared.borrow_mut().stats.idle_closed += 1;
                    }
                });
                next_request(io, stream);
            },
        )?;
        Ok(KvServer { server, shared })
    }

    /// The address it listens on.
    pub fn local_addr<P: Poller>(&self, io: &IOLoop<P>) -> std::io::Result<SocketAddr> {
        self.server.local_addr(io)
    }

    /// What it has seen so far.
    pub fn stats(&self) -> KvStats {
        self.shared.borrow().stats
    }
}

/// Read the next request, unless answers pile up: then wait until they
/// are flushed.
fn next_request<P: Poller>(io: &mut IOLoop<P>, stream: &mut IOStream<P, Conn>) {
    let queued = stream.write_buffer_len();
    {
        let mut shared = stream.state().shared.borrow_mut();
        shared.stats.output_queued_max = shared.stats.output_queued_max.max(queued);
    }
    if queued > stream.state().config.output_high_water {
        stream.state().shared.borrow_mut().stats.paused += 1;
        let _ = stream.write_then(io, b"", |io, stream, flushed| {
            if flushed.is_ok() {
                next_request(io, stream);
            }
        });
        return;
    }
    let line_max = stream.state().config.line_bytes_max;
    let _ = stream.read_until(io, b"\n", line_max, |io, stream, line| match line {
        Ok(line) => {
            let answer = stream.state().shared.borrow_mut().answer(&line);
            if stream.write(io, &answer).is_ok() {
                next_request(io, stream);
            }
        }
        Err(StreamError::Unsatisfiable { .. }) => {} // closed: the line was too long
        Err(_) => {}                                 // the peer left
    });
}

impl Shared {
    /// The answer to one request line.
    fn answer(&mut self, line: &[u8]) -> Vec<u8> {
        self.stats.requests += 1;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut parts = line.splitn(3, |&b| b == b' ');
        let command = parts.next().unwrap_or_default();
        let key = parts.next().filter(|k| !k.is_empty());
        let value = parts.next();
        match (command, key, value) {
            (b"SET", Some(key), Some(value)) => {
                self.map.insert(key.to_vec(), value.to_vec());
                b"OK\n".to_vec()
            }
            (b"GET", Some(key), None) => match self.map.get(key) {
                Some(value) => [b"VALUE ", &value[..], b"\n"].concat(),
                None => b"NONE\n".to_vec(),
            },
            (b"DEL", Some(key), None) => match self.map.remove(key) {
                Some(_) => b"DELETED\n".to_vec(),
                None => b"NONE\n".to_vec(),
            },
            (b"SET" | b"GET" | b"DEL", _, _) => b"ERR wrong number of arguments\n".to_vec(),
            _ => b"ERR unknown command\n".to_vec(),
        }
    }
}
