//! `IOStream` on the simulator: the contract of `tests/stream_contract` on a simulated host, and line echo over streams under every fault preset, with proptest over message and write-chunk sizes.

#[path = "../../tests/stream_contract/mod.rs"]
mod stream_contract;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;

use ioloop::{IOLoop, IOStream, PanicPolicy, Poller, StreamError, TcpClient, TcpServer};
use ioloop_sim::{Done, FailureKind, FaultPreset, Sim, SimNet, SimPoller};

fn fresh() -> (IOLoop<SimPoller>, SocketAddr) {
    let net = SimNet::new(7, FaultPreset::None, false);
    let mut io = IOLoop::new(net.host("10.0.0.1".parse().unwrap()));
    io.set_panic_policy(PanicPolicy::Propagate);
    (io, "10.0.0.1:7".parse().unwrap())
}

/// A loop on host 10.0.0.1 of a world seeded `seed` whose only fault is
/// the one `set` turns on (panics propagate).
fn one_fault_loop(seed: u64, set: impl FnOnce(&mut ioloop_sim::FaultPlan)) -> IOLoop<SimPoller> {
    let mut plan = ioloop_sim::FaultPlan::none();
    set(&mut plan);
    let net = SimNet::with_plan(ioloop_sim::Entropy::seeded(seed), plan, false);
    let mut io = IOLoop::new(net.host("10.0.0.1".parse().unwrap()));
    io.set_panic_policy(PanicPolicy::Propagate);
    io
}

macro_rules! on_the_simulator {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (io, addr) = fresh();
                stream_contract::$check(io, addr);
            }
        )*
    };
}

on_the_simulator!(
    read_until_joins_a_delimiter_split_across_reads,
    read_bytes_exact_and_partial,
    read_until_close_gets_everything,
    a_second_pending_read_is_an_error_not_a_panic,
    read_until_past_max_bytes_fails_and_closes,
    eof_while_a_read_is_pending_hands_over_what_arrived,
    backpressure_is_visible_and_flush_callbacks_run,
    a_closed_stream_refuses_reads_and_writes,
    state_and_handles_reach_a_stream_from_outside,
    streams_send_at_once_with_nodelay,
    idle_streams_are_closed_after_their_last_activity,
    shutdown_write_sends_end_of_stream_after_the_buffered_bytes,
    writes_after_shutdown_write_fail_and_change_nothing,
    with_half_close_an_answer_after_the_peers_end_of_stream_arrives_whole,
    with_half_close_reads_after_the_peers_end_of_stream_drain_the_buffer,
    without_half_close_the_peers_end_of_stream_closes_the_stream,
    the_close_callback_runs_when_both_directions_are_done,
    the_idle_timeout_closes_a_half_closed_stream,
    a_reset_reaches_an_idle_half_closed_stream,
    a_paused_reader_loses_no_byte_to_the_peers_end_of_stream,
    the_read_buffer_and_a_pending_read_can_be_seen,
    a_write_up_to_the_limit_is_taken_and_one_byte_more_is_not,
    a_flush_callback_waits_for_every_earlier_write,
    a_broadcast_from_a_callback_reaches_every_stream_its_own_included,
    a_read_timeout_closes_a_stream_whose_peer_falls_silent_despite_its_writes,
    writes_keep_a_stream_from_idling_until_they_stop,
    a_line_of_exactly_max_bytes_is_read,
    pipelined_lines_are_read_one_after_another_not_nested,
    a_full_read_is_not_taken_for_a_drained_socket,
    read_bytes_up_to_the_buffer_limit_waits_and_past_it_fails_at_once,
    a_server_accepts_late_clients_at_once_and_none_once_stopped,
    a_server_lists_its_open_streams_and_closes_them_all,
    close_streams_from_a_streams_callback_closes_that_stream_once_it_returns,
    a_server_keeps_no_trace_of_its_closed_streams,
    a_new_stream_is_listed_from_its_first_callback,
    close_streams_counts_a_stream_another_close_closed_once,
);

#[test]
fn a_stopped_server_leaves_the_socket_that_reuses_its_fd_alone() {
    let (io, addr) = fresh();
    let reused =
        stream_contract::a_stopped_server_leaves_the_socket_that_reuses_its_fd_alone(io, addr);
    assert!(
        reused,
        "the simulator gives the lowest free fd: the number is reused"
    );
}

/// A short write means the send buffer is full, as on a real kernel: the
/// rest of a large write waits in the stream's own buffer (where a service
/// that drops unflushed output loses it) until a WRITE edge, and arrives
/// whole, in order.
#[test]
fn a_short_write_leaves_the_rest_in_the_streams_buffer_until_a_write_edge() {
    let mut io = one_fault_loop(5, |plan| plan.partial_write = 1_000_000);
    let sent: Vec<u8> = (0..1_000u32).map(|i| (i % 251) as u8).collect();
    let buffered: Rc<RefCell<Vec<usize>>> = Rc::default();
    let (to_send, for_server) = (sent.clone(), Rc::clone(&buffered));
    let on_stream = move |io: &mut IOLoop<SimPoller>, stream: &mut IOStream<SimPoller>| {
        stream.write(io, &to_send).unwrap();
        for_server.borrow_mut().push(stream.write_buffer_len());
        // A second write waits behind the first, in the buffer.
        stream.write(io, b"!").unwrap();
        for_server.borrow_mut().push(stream.write_buffer_len());
    };
    let server = TcpServer::bind(&mut io, "10.0.0.1:7".parse().unwrap(), on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let got: Rc<RefCell<Option<Vec<u8>>>> = Rc::default();
    let for_client = Rc::clone(&got);
    TcpClient::connect(
        &mut io,
        addr,
        Duration::from_secs(5),
        (),
        move |io, stream, connected| {
            connected.unwrap();
            let _ = stream.read_bytes(io, 1_001, false, move |_, _, data| {
                *for_client.borrow_mut() = Some(data.unwrap());
            });
        },
    );
    let done = io
        .run_until(Duration::from_secs(5), |_| got.borrow().is_some())
        .unwrap();
    assert!(done);
    let buffered = buffered.borrow().clone();
    assert!((1..1_000).contains(&buffered[0]), "{buffered:?}");
    assert_eq!(buffered[1], buffered[0] + 1, "{buffered:?}");
    let mut expected = sent;
    expected.push(b'!');
    assert_eq!(got.borrow().as_deref(), Some(&expected[..]));
}

#[test]
fn a_server_stopped_in_on_stream_leaves_the_socket_on_its_number_alone() {
    let (io, addr) = fresh();
    let reused =
        stream_contract::a_server_stopped_in_on_stream_leaves_the_socket_on_its_number_alone(
            io, addr,
        );
    assert!(
        reused,
        "the simulator gives the lowest free fd: the number is reused"
    );
}

/// A server stopped while its accepts pause (after an `EMFILE`) leaves
/// alone the socket that takes its listener's fd number: the pause's end
/// does not change that socket's interest.
#[test]
fn the_end_of_an_accept_pause_after_stop_leaves_a_reused_fd_alone() {
    let mut io = one_fault_loop(3, |plan| plan.accept_emfile = 1_000_000);
    let on_stream = |_: &mut IOLoop<SimPoller>, _: &mut IOStream<SimPoller>| {};
    let server = TcpServer::bind(&mut io, "10.0.0.1:7".parse().unwrap(), on_stream).unwrap();
    let listener = server.listener();
    io.connect("10.0.0.1:7".parse().unwrap()).unwrap();
    let paused = io
        .run_until(Duration::from_secs(1), |io| {
            io.interest(listener) == Some(ioloop::Events::empty())
        })
        .unwrap();
    assert!(paused, "the accept never failed");
    server.stop(&mut io).unwrap();
    // A quiet socket on the same number: a listener nobody connects to.
    let reused = io.listen("10.0.0.1:9".parse().unwrap()).unwrap();
    assert_eq!(reused, listener, "the lowest free fd");
    io.add_handler(reused, |_, _, _| {}, ioloop::Events::empty())
        .unwrap();
    // Past the pause's end.
    let _ = io.run_until(TcpServer::ACCEPT_BACKOFF * 2, |_| false);
    assert!(io.time().since_epoch() > TcpServer::ACCEPT_BACKOFF);
    assert_eq!(io.interest(reused), Some(ioloop::Events::empty()));
}

/// Out of fds after an `EMFILE` on accept, a host cannot make the socket
/// for a connect either: the connect fails at once, and `on_connect`
/// hears of it from the loop.
#[test]
fn a_connect_refused_at_once_reaches_on_connect_from_the_loop() {
    let mut io = one_fault_loop(3, |plan| plan.accept_emfile = 1_000_000);
    let addr: std::net::SocketAddr = "10.0.0.1:7".parse().unwrap();
    let listener = io.listen(addr).unwrap();
    io.connect(addr).unwrap();
    let out_of_fds = io
        .run_until(
            Duration::from_secs(1),
            |io| matches!(io.accept(listener), Err(e) if e.raw_os_error() == Some(24)),
        )
        .unwrap();
    assert!(out_of_fds);
    let refused = io.connect(addr).expect_err("out of fds");
    assert_eq!(refused.raw_os_error(), Some(24), "{refused}");
    // No socket of any kind can be made meanwhile.
    let other: std::net::SocketAddr = "10.0.0.1:8".parse().unwrap();
    let listen = io.listen(other).expect_err("out of fds");
    let bind = io.udp_bind(other).expect_err("out of fds");
    assert_eq!(
        (listen.raw_os_error(), bind.raw_os_error()),
        (Some(24), Some(24))
    );
    stream_contract::a_connect_refused_at_once_reaches_on_connect_from_the_loop(io, addr);
}

#[test]
fn connect_errors_reach_the_callback() {
    let (io, _) = fresh();
    stream_contract::connect_errors_reach_the_callback(io, "10.0.0.1:9".parse().unwrap());
}

/// How long after its write a stream whose peer never reads is closed
/// idle, with `spurious` odds of a spurious event at each wait (the
/// periodic tick gives the loop waits to have them in), and how many
/// fired.
fn idle_close_of_a_stuck_stream(spurious: ioloop_sim::Ppm) -> (String, usize) {
    let mut plan = ioloop_sim::FaultPlan::none();
    plan.spurious = spurious;
    let net = SimNet::with_plan(ioloop_sim::Entropy::seeded(3), plan, false);
    let mut io = IOLoop::new(net.host("10.0.0.1".parse().unwrap()));
    io.set_panic_policy(PanicPolicy::Propagate);
    let closed: Rc<RefCell<Option<String>>> = Rc::default();
    let for_close = Rc::clone(&closed);
    let on_stream = move |io: &mut IOLoop<SimPoller>, stream: &mut IOStream<SimPoller>| {
        stream.set_idle_timeout(io, Some(Duration::from_millis(200)));
        // Far more than the window: most of it stays in the buffer.
        stream.write(io, &vec![7u8; 1 << 20]).unwrap();
        let (closed, written_at) = (Rc::clone(&for_close), io.time());
        stream.set_close_callback(move |io, stream| {
            let after = io.time().saturating_duration_since(written_at);
            *closed.borrow_mut() = Some(format!("{:?} after {after:?}", stream.error()));
        });
    };
    let server = TcpServer::bind(&mut io, "10.0.0.1:7".parse().unwrap(), on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let never_reads = |_: &mut IOLoop<SimPoller>,
                       _: &mut IOStream<SimPoller>,
                       connected: Result<(), StreamError>| {
        connected.unwrap();
    };
    TcpClient::connect(&mut io, addr, Duration::from_secs(5), (), never_reads);
    ioloop::PeriodicCallback::new(|_| {}, Duration::from_millis(10))
        .unwrap()
        .start(&mut io);
    io.run_until(Duration::from_secs(5), |_| closed.borrow().is_some())
        .unwrap();
    let fired = net.world().fired().len();
    let closed = closed
        .borrow()
        .clone()
        .unwrap_or_else(|| "still open after 5 s".into());
    (closed, fired)
}

/// Spurious `WRITE` events on a stream whose peer stopped reading move no
/// byte, and are no activity: it is closed idle when it would be without
/// them. (The simulator sends such events on purpose; latency is fixed
/// here, so the two runs' bytes move at the same times.)
#[test]
fn spurious_write_events_do_not_keep_a_stuck_stream_alive() {
    let (quiet, none_fired) = idle_close_of_a_stuck_stream(0);
    assert_eq!(none_fired, 0);
    assert!(quiet.starts_with("Some(Idle"), "{quiet}");
    let (spurious, fired) = idle_close_of_a_stuck_stream(500_000);
    assert!(fired > 10, "only {fired} spurious events");
    assert_eq!(spurious, quiet);
}

/// A host paused for longer than a stream's idle timeout, whose peer kept
/// writing (`talking`) or fell silent before the pause: what closed the
/// stream, when, and how many bytes it had read by then.
fn idle_timeout_across_a_pause(talking: bool) -> Vec<String> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut sim = Sim::new(1, FaultPreset::None);
    sim.host("talker", "10.0.0.1", move |io| {
        TcpServer::bind(
            io,
            "10.0.0.1:7".parse()?,
            move |io, stream: &mut IOStream<SimPoller>| {
                let handle = stream.handle();
                // A byte every 100 ms, until 900 ms (the silent peer), or on.
                let timer = ioloop::PeriodicCallback::new(
                    move |io| {
                        if talking || io.time() < ioloop::Instant::ZERO + Duration::from_millis(900)
                        {
                            IOStream::with(io, handle, |io, s: &mut IOStream<SimPoller>| {
                                drop(s.write(io, b"x"))
                            });
                        }
                    },
                    Duration::from_millis(100),
                )
                .unwrap();
                timer.start(io);
            },
        )?;
        Ok(())
    });
    let for_listener = Rc::clone(&seen);
    sim.host("listener", "10.0.0.2", move |io| {
        let seen = Rc::clone(&for_listener);
        let on_connect = move |io: &mut IOLoop<SimPoller>,
                               stream: &mut IOStream<SimPoller, usize>,
                               connected: Result<(), StreamError>| {
            connected.unwrap();
            stream.set_idle_timeout(io, Some(Duration::from_millis(500)));
            let seen = Rc::clone(&seen);
            stream.set_close_callback(move |io, s| {
                seen.borrow_mut().push(format!(
                    "{:?} at {:?} after {} bytes",
                    s.error(),
                    io.time(),
                    s.state()
                ));
            });
            fn read(io: &mut IOLoop<SimPoller>, s: &mut IOStream<SimPoller, usize>) {
                let _ = s.read_bytes(io, 1, true, |io, s, bytes| {
                    if let Ok(bytes) = bytes {
                        *s.state_mut() += bytes.len();
                        read(io, s);
                    }
                });
            }
            read(io, stream);
        };
        TcpClient::connect(
            io,
            "10.0.0.1:7".parse()?,
            Duration::from_secs(1),
            0,
            on_connect,
        );
        Ok(())
    });
    sim.at(Duration::from_secs(1), |sim| {
        sim.pause("listener", Duration::from_millis(800));
    });
    sim.run_for(Duration::from_secs(3)).unwrap();
    let seen = seen.borrow().clone();
    seen
}

/// After a pause longer than its idle timeout, a stream whose peer kept
/// writing reads what waited in the socket before its idle timeout can
/// judge it: it stays open. One whose peer fell silent is closed at the
/// end of the pause, as idle.
#[test]
fn a_pause_longer_than_the_idle_timeout_does_not_close_a_talking_stream() {
    assert_eq!(idle_timeout_across_a_pause(true), Vec::<String>::new());
    let silent = idle_timeout_across_a_pause(false);
    assert_eq!(silent.len(), 1, "{silent:?}");
    assert!(
        silent[0].starts_with("Some(Idle { timeout: 500ms }) at t+1.8"),
        "{silent:?}"
    );
}

/// A read timeout set while the stream connects counts from the connect:
/// a connect held 300 ms by a partition, under a 100 ms read timeout,
/// succeeds, and the silent server's stream closes 100 ms after it.
#[test]
fn a_read_timeout_counts_from_the_connect() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut sim = Sim::new(1, FaultPreset::None);
    sim.host("silent", "10.0.0.1", |io| {
        TcpServer::bind(
            io,
            "10.0.0.1:7".parse()?,
            |_, _: &mut IOStream<SimPoller>| {},
        )?;
        Ok(())
    });
    let for_client = Rc::clone(&seen);
    sim.host("client", "10.0.0.2", move |io| {
        let seen = Rc::clone(&for_client);
        let on_connect = move |io: &mut IOLoop<SimPoller>,
                               stream: &mut IOStream<SimPoller>,
                               connected: Result<(), StreamError>| {
            seen.borrow_mut()
                .push(format!("connect {:?} at {:?}", connected, io.time()));
            let seen = Rc::clone(&seen);
            stream.set_close_callback(move |io, stream| {
                seen.borrow_mut()
                    .push(format!("{:?} at {:?}", stream.error(), io.time()));
            });
        };
        let handle = TcpClient::connect(
            io,
            "10.0.0.1:7".parse()?,
            Duration::from_secs(1),
            (),
            on_connect,
        );
        IOStream::with(io, handle, |io, stream: &mut IOStream<SimPoller>| {
            stream.set_read_timeout(io, Some(Duration::from_millis(100)))
        });
        Ok(())
    });
    sim.partition("client", "silent");
    sim.at(Duration::from_millis(300), |sim| {
        sim.repair("client", "silent");
    });
    sim.run_for(Duration::from_secs(1)).unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let connected_at = seen[0]
        .strip_prefix("connect Ok(()) at t+")
        .unwrap_or_else(|| panic!("{seen:?}"));
    let connected_ms: f64 = connected_at.trim_end_matches("ms").parse().unwrap();
    let closed_at = seen[1]
        .strip_prefix("Some(ReadTimeout { timeout: 100ms }) at t+")
        .unwrap_or_else(|| panic!("{seen:?}"));
    let closed_ms: f64 = closed_at.trim_end_matches("ms").parse().unwrap();
    assert!(connected_ms >= 300.0, "{seen:?}");
    assert!(
        closed_ms >= connected_ms + 100.0 && closed_ms < connected_ms + 110.0,
        "{seen:?}"
    );
}

/// The read timeout ends at the peer's end of stream: a half-closed
/// stream that goes on writing for far longer is not closed for silence.
#[test]
fn a_read_timeout_ends_at_the_peers_end_of_stream() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut sim = Sim::new(1, FaultPreset::None);
    let for_server = Rc::clone(&seen);
    sim.host("server", "10.0.0.1", move |io| {
        let seen = Rc::clone(&for_server);
        let on_stream = move |io: &mut IOLoop<SimPoller>, stream: &mut IOStream<SimPoller>| {
            stream.set_config(ioloop::StreamConfig {
                allow_half_close: true,
                ..stream.config()
            });
            stream.set_read_timeout(io, Some(Duration::from_millis(100)));
            let seen = Rc::clone(&seen);
            stream.set_close_callback(move |io, stream| {
                seen.borrow_mut().push(format!(
                    "server closed: {:?} at {:?}",
                    stream.error(),
                    io.time()
                ));
            });
            // The request is the whole stream; the answer takes 500 ms.
            let _ = stream.read_until_close(io, |io, stream, request| {
                assert_eq!(request.unwrap(), b"request");
                assert_eq!(stream.read_timeout(), None, "over at end of stream");
                stream.set_read_timeout(io, Some(Duration::from_millis(100)));
                assert_eq!(stream.read_timeout(), None, "off once set after it");
                let handle = stream.handle();
                for i in 1..=5u64 {
                    io.call_later(Duration::from_millis(100 * i), move |io| {
                        IOStream::with(io, handle, |io, stream: &mut IOStream<SimPoller>| {
                            stream.write(io, b"part ").unwrap();
                            if i == 5 {
                                stream.shutdown_write(io).unwrap();
                            }
                        });
                    });
                }
            });
        };
        TcpServer::bind(io, "10.0.0.1:7".parse()?, on_stream)?;
        Ok(())
    });
    let for_client = Rc::clone(&seen);
    sim.host("client", "10.0.0.2", move |io| {
        let seen = Rc::clone(&for_client);
        let on_connect = move |io: &mut IOLoop<SimPoller>,
                               stream: &mut IOStream<SimPoller>,
                               connected: Result<(), StreamError>| {
            connected.unwrap();
            stream.write(io, b"request").unwrap();
            stream.shutdown_write(io).unwrap();
            let seen = Rc::clone(&seen);
            let _ = stream.read_until_close(io, move |_, _, answer| {
                seen.borrow_mut()
                    .push(format!("client read {:?}", answer.map(|a| a.len())));
            });
        };
        let config = ioloop::StreamConfig {
            allow_half_close: true,
            ..Default::default()
        };
        let handle = TcpClient::connect(
            io,
            "10.0.0.1:7".parse()?,
            Duration::from_secs(1),
            (),
            on_connect,
        );
        IOStream::with(io, handle, |_, stream: &mut IOStream<SimPoller>| {
            stream.set_config(config)
        });
        Ok(())
    });
    sim.run_for(Duration::from_secs(2)).unwrap();
    let seen = seen.borrow();
    assert!(seen.contains(&"client read Ok(25)".to_string()), "{seen:?}");
    assert!(
        seen.iter().all(|line| !line.contains("ReadTimeout")),
        "{seen:?}"
    );
}

// ----- line echo over streams, under faults ----------------------------------------

/// Longest line the server accepts.
const LINE_BYTES_MAX: usize = 64 * 1024;

/// Echo each line back. `chunky` is the planted twin: it takes whatever a
/// read returns for a line.
fn serve_lines<P: Poller>(io: &mut IOLoop<P>, addr: SocketAddr, chunky: bool) {
    fn echo<P: Poller>(io: &mut IOLoop<P>, stream: &mut IOStream<P>, chunky: bool) {
        let on_line = move |io: &mut IOLoop<P>,
                            stream: &mut IOStream<P>,
                            line: Result<Vec<u8>, StreamError>| {
            if let Ok(mut line) = line {
                if chunky && line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                let _ = stream.write(io, &line);
                echo(io, stream, chunky);
            }
        };
        let _ = if chunky {
            stream.read_bytes(io, LINE_BYTES_MAX, true, on_line)
        } else {
            stream.read_until(io, b"\n", LINE_BYTES_MAX, on_line)
        };
    }
    TcpServer::bind(io, addr, move |io, stream: &mut IOStream<P>| {
        echo(io, stream, chunky)
    })
    .unwrap();
}

/// What one client sends: lines, written in chunks.
#[derive(Clone, Debug)]
struct Lines {
    lines: Vec<Vec<u8>>,
    chunk_bytes: usize,
}

impl Lines {
    fn bytes(&self) -> Vec<u8> {
        self.lines.concat()
    }
}

/// Send every line in chunks, read every echo back, compare.
fn send_lines(io: &mut IOLoop<SimPoller>, done: Done, server: SocketAddr, lines: Lines) {
    let may_break = io.poller().fault_plan().may_break_connections();
    let expected = lines.bytes();
    let chunks: VecDeque<Vec<u8>> = expected
        .chunks(lines.chunk_bytes)
        .map(<[u8]>::to_vec)
        .collect();
    let received = Rc::new(RefCell::new(Vec::new()));
    let for_describe = Rc::clone(&received);
    let total = expected.len();
    done.describe_with(move || {
        format!("received {} of {total} bytes", for_describe.borrow().len())
    });
    TcpClient::connect(
        io,
        server,
        Duration::from_secs(30),
        (),
        move |io, stream, connected| {
            if let Err(error) = connected {
                return finish(&done, may_break, error);
            }
            write_chunks(io, stream, chunks, done.clone(), may_break);
            read_echo(io, stream, expected, received, done, may_break);
        },
    );
}

fn finish(done: &Done, may_break: bool, error: StreamError) {
    if may_break {
        done.ok();
    } else {
        done.fail(format!(
            "stream failed with no fault that breaks connections: {error}"
        ));
    }
}

fn write_chunks(
    io: &mut IOLoop<SimPoller>,
    stream: &mut IOStream<SimPoller>,
    mut chunks: VecDeque<Vec<u8>>,
    done: Done,
    may_break: bool,
) {
    let Some(chunk) = chunks.pop_front() else {
        return;
    };
    let for_flush = done.clone();
    let written = stream.write_then(io, &chunk, move |io, stream, flushed| match flushed {
        Ok(()) => write_chunks(io, stream, chunks, for_flush, may_break),
        Err(error) => finish(&for_flush, may_break, error),
    });
    if let Err(error) = written {
        finish(&done, may_break, error);
    }
}

fn read_echo(
    io: &mut IOLoop<SimPoller>,
    stream: &mut IOStream<SimPoller>,
    expected: Vec<u8>,
    received: Rc<RefCell<Vec<u8>>>,
    done: Done,
    may_break: bool,
) {
    if received.borrow().len() == expected.len() {
        stream.close(io);
        return done.ok();
    }
    let _ = stream.read_until(io, b"\n", LINE_BYTES_MAX, move |io, stream, line| {
        let line = match line {
            Ok(line) => line,
            Err(error) => return finish(&done, may_break, error),
        };
        let start = received.borrow().len();
        if expected.get(start..start + line.len()) != Some(&line[..]) {
            return done.fail(format!("wrong echo at byte {start}: {} bytes", line.len()));
        }
        received.borrow_mut().extend_from_slice(&line);
        read_echo(io, stream, expected, received, done, may_break);
    });
}

fn line_echo(
    seed: u64,
    faults: FaultPreset,
    clients: &[Lines],
    chunky: bool,
) -> Result<(), ioloop_sim::Failure> {
    let mut sim = Sim::new(seed, faults);
    let server: SocketAddr = "10.0.0.1:7".parse().unwrap();
    sim.host("server", "10.0.0.1", move |io| {
        serve_lines(io, server, chunky);
        Ok(())
    });
    for (index, lines) in clients.iter().enumerate() {
        let lines = lines.clone();
        let ip = format!("10.0.1.{}", index + 1);
        sim.client(&format!("client{index}"), &ip, move |io, done| {
            send_lines(io, done, server, lines.clone());
            Ok(())
        });
    }
    sim.run().map(|_| ())
}

fn lines_strategy() -> impl Strategy<Value = Lines> {
    let line = (0usize..4000, any::<u8>()).prop_map(|(len, salt)| {
        let mut line: Vec<u8> = (0..len)
            .map(|i| b'a' + ((i + salt as usize) % 26) as u8)
            .collect();
        line.push(b'\n');
        line
    });
    (prop::collection::vec(line, 1..12), 1usize..6000)
        .prop_map(|(lines, chunk_bytes)| Lines { lines, chunk_bytes })
}

fn preset_strategy() -> impl Strategy<Value = FaultPreset> {
    prop_oneof![
        Just(FaultPreset::None),
        Just(FaultPreset::All),
        Just(FaultPreset::Swarm)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every line comes back whole and in order, whatever the faults split
    /// or reset; a stream ends cleanly only as a fault explains.
    #[test]
    fn lines_echo_over_streams_under_every_fault_preset(
        seed in any::<u64>(),
        faults in preset_strategy(),
        clients in prop::collection::vec(lines_strategy(), 1..4),
    ) {
        if let Err(failure) = line_echo(seed, faults, &clients, false) {
            prop_assert!(false, "seed {seed:#x} faults {faults}: {failure}");
        }
    }
}

/// The twin: a server that takes a read for a line. Partial reads and
/// chunked writes break it, and the property catches that.
#[test]
fn a_server_that_takes_a_read_for_a_line_is_caught() {
    let lines = Lines {
        lines: vec![
            b"hello world\n".to_vec(),
            vec![b'x'; 3000].into_iter().chain([b'\n']).collect(),
        ],
        chunk_bytes: 5,
    };
    let caught = (0..50).find_map(|seed| {
        line_echo(seed, FaultPreset::Swarm, std::slice::from_ref(&lines), true).err()
    });
    let failure = caught.expect("the chunky server was not caught in 50 seeds");
    assert!(
        matches!(failure.kind, FailureKind::Client | FailureKind::Stall),
        "{failure}"
    );
}
