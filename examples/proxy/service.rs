//! A TCP proxy on `IOStream`, generic over the poller: `examples/proxy` runs it on mio, `sim/tests/proxy.rs` on the simulator.
//!
//! Each client gets its own connection to the upstream, and bytes go both
//! ways as they come. Each side of a pair is an `IOStream` whose state
//! names the other side. Backpressure: a side stops reading while the
//! other has more than its high-water mark waiting to be written, and
//! reads again once that is flushed. Half-closes pass on: one side's end
//! of stream becomes [`IOStream::shutdown_write`] on the other, once the
//! bytes before it are written; both sides allow half-close
//! ([`StreamConfig::allow_half_close`]), so a client that sends its request
//! and shuts down its write side still gets the whole answer. A pair ends
//! when each side has closed by itself (both directions done); a failed
//! connect, a reset or an idle timeout on either side closes both at once.
#![allow(dead_code)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{
    IOLoop, IOStream, Poller, StreamConfig, StreamError, StreamHandle, TcpClient, TcpServer,
};

/// The proxy's knobs.
#[derive(Clone, Copy, Debug)]
pub struct ProxyConfig {
    /// Where every client's bytes go.
    pub upstream: SocketAddr,
    /// How long connecting to the upstream may take.
    pub connect_timeout: Duration,
    /// A side that reads and writes no byte for this long is closed, and
    /// its pair with it.
    pub idle_timeout: Duration,
    /// Most bytes one read takes from a side.
    pub read_chunk_bytes: usize,
    /// A side stops reading while the other has more than this waiting.
    pub write_high_water_bytes: usize,
}

impl ProxyConfig {
    /// Forward to `upstream`, with the defaults.
    pub fn new(upstream: SocketAddr) -> ProxyConfig {
        ProxyConfig {
            upstream,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            read_chunk_bytes: 16 * 1024,
            write_high_water_bytes: 64 * 1024,
        }
    }

    /// The configuration of every stream of a pair.
    fn stream_config(&self) -> StreamConfig {
        StreamConfig {
            allow_half_close: true,
            write_high_water_bytes: self.write_high_water_bytes,
            ..StreamConfig::default()
        }
    }
}

/// What the proxy has seen, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Clients accepted.
    pub accepted: u64,
    /// Streams open now, both sides of every pair counted.
    pub streams_open: usize,
    /// Upstream connects that failed or timed out.
    pub connect_failures: u64,
    /// Half-closes passed on from one side to the other.
    pub half_closes: u64,
    /// Times a side stopped reading for backpressure.
    pub paused: u64,
    /// The most bytes ever waiting to be written on one side.
    pub buffered_max: usize,
}

/// One side of a pair: the state `S` of its stream.
struct Side {
    /// The other side, once it exists.
    peer: Option<StreamHandle<Side>>,
    shared: Rc<RefCell<ProxyStats>>,
    config: ProxyConfig,
}

/// A running proxy.
pub struct Proxy {
    server: TcpServer<Side>,
    stats: Rc<RefCell<ProxyStats>>,
}

impl Proxy {
    /// Listen on `addr` and forward each client to `config.upstream`.
    pub fn bind<P: Poller>(
        io: &mut IOLoop<P>,
        addr: SocketAddr,
        config: ProxyConfig,
    ) -> std::io::Result<Proxy> {
        let stats = Rc::new(RefCell::new(ProxyStats::default()));
        let for_state = Rc::clone(&stats);
        let server = TcpServer::bind_with(
            io,
            addr,
            move |_peer| Side {
                peer: None,
                shared: Rc::clone(&for_state),
                config,
            },
            on_client,
        )?;
        Ok(Proxy { server, stats })
    }

    /// The address it listens on.
    pub fn local_addr<P: Poller>(&self, io: &IOLoop<P>) -> std::io::Result<SocketAddr> {
        self.server.local_addr(io)
    }

    /// What it has seen so far.
    pub fn stats(&self) -> ProxyStats {
        *self.stats.borrow()
    }
}

/// A new client: set it up, and connect its upstream side.
fn on_client<P: Poller>(io: &mut IOLoop<P>, client: &mut IOStream<P, Side>) {
    client.state().shared.borrow_mut().accepted += 1;
    set_up(io, client);
    let config = client.state().config;
    let upstream_side = Side {
        peer: Some(client.handle()),
        shared: Rc::clone(&client.state().shared),
        config,
    };
    let upstream = TcpClient::connect(
        io,
        config.upstream,
        config.connect_timeout,
        upstream_side,
        on_upstream,
    );
    client.state_mut().peer = Some(upstream);
    // A connect refused at once names no stream: nothing to set up, and
    // `on_upstream` hears of it from a callback.
    IOStream::with(io, upstream, set_up);
}

/// What both sides get: half-close, the idle timeout, and a close callback.
fn set_up<P: Poller>(io: &mut IOLoop<P>, stream: &mut IOStream<P, Side>) {
    let config = stream.state().config;
    stream.set_config(config.stream_config());
    stream.set_idle_timeout(io, Some(config.idle_timeout));
    stream.state().shared.borrow_mut().streams_open += 1;
    stream.set_close_callback(on_close);
}

/// The upstream answered (or not): start moving bytes both ways.
fn on_upstream<P: Poller>(
    io: &mut IOLoop<P>,
    upstream: &mut IOStream<P, Side>,
    connected: Result<(), StreamError>,
) {
    if connected.is_err() {
        upstream.state().shared.borrow_mut().connect_failures += 1;
        // Closed already. The client goes too (its close callback would
        // see to it, but a connect refused at once never had one).
        if let Some(client) = upstream.state().peer {
            IOStream::with(io, client, |io, client: &mut IOStream<P, Side>| {
                client.close(io)
            });
        }
        return;
    }
    pump(io, upstream);
    if let Some(client) = upstream.state().peer {
        // Later: the client's reads may complete at once, and forward to
        // this stream, which `IOStream::with` does not reach from inside
        // its own callback.
        io.add_callback(move |io| {
            IOStream::with(io, client, pump);
        });
    }
}

/// A side closed. It closed by itself (both directions done) only once the
/// other side got its end of stream and sent its own: that side ends by
/// itself too. Any other close — an error, an idle timeout — closes the
/// other side now, dropping what it still holds, as a reset would.
fn on_close<P: Poller>(io: &mut IOLoop<P>, stream: &mut IOStream<P, Side>) {
    stream.state().shared.borrow_mut().streams_open -= 1;
    let Some(peer) = stream.state().peer else {
        return;
    };
    if stream.error().is_some() {
        // Later: the other side may be the one whose callback runs now.
        io.add_callback(move |io| {
            IOStream::with(io, peer, |io, peer: &mut IOStream<P, Side>| peer.close(io));
        });
    }
}

/// Read from `source` and write to its peer, until backpressure pauses it
/// or its end of stream, which passes on.
fn pump<P: Poller>(io: &mut IOLoop<P>, source: &mut IOStream<P, Side>) {
    let chunk_bytes = source.state().config.read_chunk_bytes;
    let _ = source.read_bytes(io, chunk_bytes, true, |io, source, read| {
        let Some(sink) = source.state().peer else {
            return source.close(io);
        };
        match read {
            Ok(data) => {
                let source_handle = source.handle();
                let flowing = IOStream::with(io, sink, |io, sink: &mut IOStream<P, Side>| {
                    forward(io, sink, &data, source_handle)
                });
                match flowing {
                    Some(Ok(true)) => pump(io, source),
                    Some(Ok(false)) => {} // the sink's flush callback resumes it
                    Some(Err(_)) | None => source.close(io),
                }
            }
            // End of stream, the source still open (half-closed): pass it on.
            Err(StreamError::Closed { unread }) if !source.closed() => {
                let shared = Rc::clone(&source.state().shared);
                let passed = IOStream::with(io, sink, |io, sink: &mut IOStream<P, Side>| {
                    sink.write(io, &unread)?;
                    sink.shutdown_write(io)
                });
                match passed {
                    Some(Ok(())) => shared.borrow_mut().half_closes += 1,
                    Some(Err(_)) | None => source.close(io),
                }
            }
            // The source closed: its close callback saw to the sink.
            Err(_) => {}
        }
    });
}

/// Write `data` to `sink`; `Ok(true)` if its source may read on,
/// `Ok(false)` if it must wait: then the sink resumes it once flushed.
fn forward<P: Poller>(
    io: &mut IOLoop<P>,
    sink: &mut IOStream<P, Side>,
    data: &[u8],
    source: StreamHandle<Side>,
) -> Result<bool, StreamError> {
    sink.write(io, data)?;
    let buffered = sink.write_buffer_len();
    let mut stats = sink.state().shared.borrow_mut();
    stats.buffered_max = stats.buffered_max.max(buffered);
    if !sink.is_backpressured() {
        return Ok(true);
    }
    stats.paused += 1;
    drop(stats);
    sink.write_then(io, &[], move |io, _, flushed| {
        if flushed.is_ok() {
            // Later: the source's own callback may be running now.
            io.add_callback(move |io| {
                IOStream::with(io, source, pump);
            });
        }
    })?;
    Ok(false)
}
