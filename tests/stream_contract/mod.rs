//! The `IOStream` contract, written once over any `Poller`: `tests/stream.rs` runs it on mio over loopback, `sim/tests/stream.rs` on the simulator.
//!
//! Each check takes a fresh loop and an address to listen on (port 0 is
//! fine), runs server and client streams in that one loop, and bounds the
//! run by the loop's clock.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{
    IOLoop, IOStream, Instant, Poller, StreamConfig, StreamError, StreamHandle, TcpClient,
    TcpServer,
};

/// How long a check may take on the loop's clock.
const LIMIT: Duration = Duration::from_secs(10);

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// Serve with `on_stream`; connect a client that writes `pieces` one after
/// the other (each once the previous is flushed), then runs `then`.
fn serve_and_send<P, F, G>(
    io: &mut IOLoop<P>,
    addr: SocketAddr,
    on_stream: F,
    pieces: Vec<Vec<u8>>,
    then: G,
) -> SocketAddr
where
    P: Poller,
    F: FnMut(&mut IOLoop<P>, &mut IOStream<P>) + 'static,
    G: FnOnce(&mut IOLoop<P>, &mut IOStream<P>) + 'static,
{
    let server = TcpServer::bind(io, addr, on_stream).expect("bind");
    let addr = server.local_addr(io).expect("local_addr");
    TcpClient::connect(io, addr, LIMIT, (), move |io, stream, connected| {
        connected.expect("connect");
        send_pieces(io, stream, pieces.into(), then);
    });
    addr
}

fn send_pieces<P, G>(
    io: &mut IOLoop<P>,
    stream: &mut IOStream<P>,
    mut pieces: std::collections::VecDeque<Vec<u8>>,
    then: G,
) where
    P: Poller,
    G: FnOnce(&mut IOLoop<P>, &mut IOStream<P>) + 'static,
{
    match pieces.pop_front() {
        None => then(io, stream),
        Some(piece) => {
            stream
                .write_then(io, &piece, move |io, stream, flushed| {
                    flushed.expect("flushed");
                    send_pieces(io, stream, pieces, then);
                })
                .expect("write");
        }
    }
}

fn run<P: Poller>(io: &mut IOLoop<P>, log: &Log, entries: usize) {
    let done = io
        .run_until(LIMIT, |_| log.borrow().len() >= entries)
        .expect("run");
    assert!(done, "not done: {:?}", log.borrow());
}

/// A client that connects to `addr`, writes `request`, shuts down its
/// write side, and logs `client read RESULT` once its read until close
/// completes.
fn half_closing_client<P: Poller>(
    io: &mut IOLoop<P>,
    addr: SocketAddr,
    request: &'static [u8],
    log: &Log,
) {
    let log = Rc::clone(log);
    TcpClient::connect(io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        stream.write(io, request).unwrap();
        stream.shutdown_write(io).unwrap();
        let log = Rc::clone(&log);
        stream
            .read_until_close(io, move |_, _, answer| {
                log.borrow_mut().push(format!("client read {answer:?}"));
            })
            .unwrap();
    });
}

/// A line split across writes (and so, often, across reads) arrives whole,
/// delimiter included, and the next line after it.
pub fn read_until_joins_a_delimiter_split_across_reads<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let _ = stream.read_until(io, b"\r\n", 1024, move |io, stream, first| {
            got.borrow_mut()
                .push(String::from_utf8(first.unwrap()).unwrap());
            let got = Rc::clone(&got);
            let _ = stream.read_until(io, b"\r\n", 1024, move |_, _, second| {
                got.borrow_mut()
                    .push(String::from_utf8(second.unwrap()).unwrap());
            });
        });
    };
    let pieces = vec![b"hello\r".to_vec(), b"\nwor".to_vec(), b"ld\r\n".to_vec()];
    serve_and_send(&mut io, addr, on_stream, pieces, |_, _| {});
    run(&mut io, &got, 2);
    assert_eq!(*got.borrow(), ["hello\r\n", "world\r\n"]);
}

/// `read_bytes` waits for exactly `count` bytes; with `partial` it takes
/// what is there, up to `count`.
pub fn read_bytes_exact_and_partial<P: Poller>(mut io: IOLoop<P>, addr: SocketAddr) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let _ = stream.read_bytes(io, 5, false, move |io, stream, five| {
            got.borrow_mut()
                .push(String::from_utf8(five.unwrap()).unwrap());
            let got = Rc::clone(&got);
            let _ = stream.read_bytes(io, 100, true, move |_, _, some| {
                let some = some.unwrap();
                assert!(!some.is_empty() && some.len() <= 100);
                got.borrow_mut().push(String::from_utf8(some).unwrap());
            });
        });
    };
    serve_and_send(
        &mut io,
        addr,
        on_stream,
        vec![b"ab".to_vec(), b"cdefg".to_vec()],
        |_, _| {},
    );
    run(&mut io, &got, 2);
    assert_eq!(got.borrow()[0], "abcde");
    assert!("fg".starts_with(got.borrow()[1].as_str()));
}

/// `read_until_close` gets every byte once the peer closes.
pub fn read_until_close_gets_everything<P: Poller>(mut io: IOLoop<P>, addr: SocketAddr) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let _ = stream.read_until_close(io, move |_, _, all| {
            got.borrow_mut()
                .push(String::from_utf8(all.unwrap()).unwrap());
        });
    };
    let pieces = vec![b"one ".to_vec(), b"two ".to_vec(), b"three".to_vec()];
    serve_and_send(&mut io, addr, on_stream, pieces, |io, stream| {
        stream.close(io)
    });
    run(&mut io, &got, 1);
    assert_eq!(got.borrow()[0], "one two three");
}

/// A second read while one is pending is an error that changes nothing:
/// the first read still completes.
pub fn a_second_pending_read_is_an_error_not_a_panic<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let first = stream.read_until(io, b"\n", 1024, move |_, _, line| {
            got.borrow_mut()
                .push(String::from_utf8(line.unwrap()).unwrap());
        });
        assert_eq!(first, Ok(()));
        let second = stream.read_bytes(io, 1, false, |_, _, _| panic!("never called"));
        assert_eq!(second, Err(StreamError::ReadPending));
        assert!(stream.reading());
    };
    serve_and_send(&mut io, addr, on_stream, vec![b"x\n".to_vec()], |_, _| {});
    run(&mut io, &got, 1);
    assert_eq!(got.borrow()[0], "x\n");
}

/// `max_bytes` without the delimiter fails the read and closes the
/// stream; the close callback runs after the read's.
pub fn read_until_past_max_bytes_fails_and_closes<P: Poller>(mut io: IOLoop<P>, addr: SocketAddr) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let (read_log, close_log) = (Rc::clone(&for_server), Rc::clone(&for_server));
        stream.set_close_callback(move |_, stream| {
            close_log
                .borrow_mut()
                .push(format!("closed: {:?}", stream.error()));
        });
        let _ = stream.read_until(io, b"\n", 8, move |_, stream, line| {
            read_log
                .borrow_mut()
                .push(format!("read: {:?} closed={}", line, stream.closed()));
        });
    };
    serve_and_send(
        &mut io,
        addr,
        on_stream,
        vec![b"0123456789\n".to_vec()],
        |_, _| {},
    );
    run(&mut io, &got, 2);
    let unsatisfiable = StreamError::Unsatisfiable { max_bytes: 8 };
    assert_eq!(
        *got.borrow(),
        [
            format!(
                "read: {:?} closed=true",
                Err::<Vec<u8>, _>(unsatisfiable.clone())
            ),
            format!("closed: {:?}", Some(&unsatisfiable)),
        ]
    );
}

/// A read pending when the peer closes gets the bytes that arrived, then
/// the close callback runs.
pub fn eof_while_a_read_is_pending_hands_over_what_arrived<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let (read_log, close_log) = (Rc::clone(&for_server), Rc::clone(&for_server));
        stream.set_close_callback(move |_, _| close_log.borrow_mut().push("closed".into()));
        let _ = stream.read_until(io, b"\n", 1024, move |_, _, line| {
            read_log.borrow_mut().push(format!("{line:?}"));
        });
    };
    serve_and_send(
        &mut io,
        addr,
        on_stream,
        vec![b"no newline".to_vec()],
        |io, stream| stream.close(io),
    );
    run(&mut io, &got, 2);
    let closed = StreamError::Closed {
        unread: b"no newline".to_vec(),
    };
    assert_eq!(
        *got.borrow(),
        [
            format!("{:?}", Err::<Vec<u8>, _>(closed)),
            "closed".to_string()
        ]
    );
}

/// Writes past the high-water mark report backpressure; the flush
/// callback runs once the peer has read it all; a write past the limit
/// fails and writes nothing.
pub fn backpressure_is_visible_and_flush_callbacks_run<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    const TOTAL: usize = 4 * 1024 * 1024;
    let got = log();
    let for_server = Rc::clone(&got);
    // The server reads nothing until the client says it is done writing.
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let _ = stream.read_bytes(io, 1, false, move |io, stream, go| {
            go.unwrap();
            let got = Rc::clone(&got);
            let _ = stream.read_bytes(io, TOTAL, false, move |_, _, all| {
                got.borrow_mut()
                    .push(format!("server read {}", all.unwrap().len()));
            });
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        let mut config = stream.config();
        config.max_write_buffer_bytes = TOTAL + 1;
        stream.set_config(config);
        stream.write(io, b"g").unwrap();
        let got = Rc::clone(&for_client);
        stream
            .write_then(io, &vec![7u8; TOTAL], move |_, _, flushed| {
                got.borrow_mut().push(format!("flushed {flushed:?}"));
            })
            .unwrap();
        for_client
            .borrow_mut()
            .push(format!("backpressured {}", stream.is_backpressured()));
        let buffered = stream.write_buffer_len();
        config.max_write_buffer_bytes = buffered + 1;
        stream.set_config(config);
        let too_much = stream.write(io, &[0u8; 2]);
        assert_eq!(
            too_much,
            Err(StreamError::BufferFull {
                limit: buffered + 1
            })
        );
        assert_eq!(
            stream.write_buffer_len(),
            buffered,
            "a failed write changes nothing"
        );
    });
    run(&mut io, &got, 3);
    let got = got.borrow();
    assert_eq!(got[0], "backpressured true");
    assert!(got.contains(&"flushed Ok(())".to_string()), "{got:?}");
    assert!(got.contains(&format!("server read {TOTAL}")), "{got:?}");
}

/// Every operation on a closed stream is an error; closing twice is
/// harmless.
pub fn a_closed_stream_refuses_reads_and_writes<P: Poller>(mut io: IOLoop<P>, addr: SocketAddr) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        stream.close(io);
        stream.close(io);
        assert!(stream.closed());
        let closed = Err(StreamError::Closed { unread: Vec::new() });
        assert_eq!(stream.write(io, b"x"), closed);
        assert_eq!(stream.read_bytes(io, 1, true, |_, _, _| {}), closed);
        for_server.borrow_mut().push("checked".into());
    };
    serve_and_send(&mut io, addr, on_stream, vec![], |_, _| {});
    run(&mut io, &got, 1);
}

/// A connect to a port nobody listens on reports the error to the
/// callback; a connect that outlasts its timeout reports `TimedOut`.
pub fn connect_errors_reach_the_callback<P: Poller>(mut io: IOLoop<P>, unused: SocketAddr) {
    let got = log();
    let for_refused = Rc::clone(&got);
    TcpClient::connect(
        &mut io,
        unused,
        LIMIT,
        (),
        move |_, stream: &mut IOStream<P>, connected| {
            assert!(stream.closed(), "a failed connect closes the stream");
            let kind = match connected {
                Err(StreamError::Io { kind, .. }) => format!("{kind:?}"),
                other => format!("unexpected {other:?}"),
            };
            for_refused.borrow_mut().push(kind);
        },
    );
    run(&mut io, &got, 1);
    assert_eq!(got.borrow()[0], "ConnectionRefused");
    let for_timeout = Rc::clone(&got);
    TcpClient::connect(
        &mut io,
        unused,
        Duration::ZERO,
        (),
        move |_, _: &mut IOStream<P>, connected| {
            for_timeout
                .borrow_mut()
                .push(format!("{:?}", connected.err()));
        },
    );
    run(&mut io, &got, 2);
    assert_eq!(got.borrow()[1], "Some(TimedOut)");
    // Closed before it connects: the callback runs inside the close, once.
    let for_closed = Rc::clone(&got);
    let handle = TcpClient::connect(
        &mut io,
        unused,
        LIMIT,
        (),
        move |_, _: &mut IOStream<P>, connected| {
            for_closed
                .borrow_mut()
                .push(format!("{:?}", connected.err()));
        },
    );
    IOStream::with(&mut io, handle, |io, stream: &mut IOStream<P>| {
        stream.close(io)
    })
    .expect("a connecting stream is reachable");
    assert_eq!(got.borrow()[2], "Some(Closed { unread: [] })");
    for _ in 0..10 {
        io.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(got.borrow().len(), 3, "{:?}", got.borrow());
    assert_eq!(
        io.handler_count(),
        0,
        "failed connects leave nothing behind"
    );
}

/// Per-connection state lives in the stream; a handle reaches it from a
/// timeout, and no longer once the stream is gone.
pub fn state_and_handles_reach_a_stream_from_outside<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P, u32>| {
        *stream.state_mut() = 41;
        let handle = stream.handle();
        // From its own callback: open, but not reachable through `with`.
        let own = IOStream::with(io, handle, |_, _: &mut IOStream<P, u32>| ());
        assert_eq!((own, handle.is_open(io)), (None, true));
        let got = Rc::clone(&for_server);
        io.call_later(Duration::from_millis(1), move |io| {
            let seen = IOStream::with(io, handle, |io, stream: &mut IOStream<P, u32>| {
                *stream.state_mut() += 1;
                let value = *stream.state();
                assert!(handle.is_open(io), "open until closed");
                stream.close(io);
                value
            });
            got.borrow_mut().push(format!("{seen:?}"));
            let again = IOStream::with(io, handle, |_, stream: &mut IOStream<P, u32>| {
                *stream.state()
            });
            got.borrow_mut()
                .push(format!("{again:?} {}", handle.is_open(io)));
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    TcpClient::connect(
        &mut io,
        addr,
        LIMIT,
        (),
        |_, _: &mut IOStream<P>, connected| {
            connected.unwrap();
        },
    );
    run(&mut io, &got, 2);
    assert_eq!(*got.borrow(), ["Some(42)", "None false"]);
}

/// Streams of a `TcpServer` and a `TcpClient` have `TCP_NODELAY` set, so
/// that replies written in pieces do not wait on Nagle's algorithm.
pub fn streams_send_at_once_with_nodelay<P: Poller>(mut io: IOLoop<P>, addr: SocketAddr) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let on = io.nodelay(stream.fd()).expect("a stream option");
        for_server.borrow_mut().push(format!("server {on}"));
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(
        &mut io,
        addr,
        LIMIT,
        (),
        move |io, stream: &mut IOStream<P>, connected| {
            connected.unwrap();
            let on = io.nodelay(stream.fd()).expect("a stream option");
            for_client.borrow_mut().push(format!("client {on}"));
        },
    );
    run(&mut io, &got, 2);
    let mut got = got.borrow().clone();
    got.sort();
    assert_eq!(got, ["client true", "server true"]);
}

/// An idle timeout closes a stream once no byte has moved for that long,
/// counted from its last activity: a client that sends a byte every 10 ms
/// for 40 ms keeps a 20 ms idle timeout at bay, then goes quiet and is
/// closed with `StreamError::Idle`, no sooner than 20 ms after its last
/// byte; its own read sees the end of the stream.
pub fn idle_streams_are_closed_after_their_last_activity<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    // The last byte comes at 4 × GAP, well before IDLE: a loop woken late
    // on a busy machine still reads each byte before the timeout is due.
    const IDLE: Duration = Duration::from_millis(100);
    const GAP: Duration = Duration::from_millis(10);
    const BYTES: usize = 5;
    let got = log();
    let last_read = Rc::new(RefCell::new(None));
    let for_server = Rc::clone(&got);
    let for_reads = Rc::clone(&last_read);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        assert_eq!(stream.idle_timeout(), None, "no idle timeout by default");
        stream.set_idle_timeout(io, Some(IDLE));
        assert_eq!(stream.idle_timeout(), Some(IDLE));
        let got = Rc::clone(&for_server);
        let last_read = Rc::clone(&for_reads);
        stream.set_close_callback(move |io, stream| {
            // Logged, not asserted here: a panic in a callback is the
            // loop's to contain, the check's to miss.
            let quiet = last_read
                .borrow()
                .map(|last| io.time().saturating_duration_since(last));
            got.borrow_mut().push(format!(
                "server: {:?}, {} after the last byte",
                stream.error(),
                match quiet {
                    Some(quiet) if quiet >= IDLE => "not sooner than the timeout",
                    Some(_) => "TOO SOON",
                    None => "NO BYTE READ",
                }
            ));
        });
        fn read_byte<P: Poller>(
            io: &mut IOLoop<P>,
            stream: &mut IOStream<P>,
            last_read: Rc<RefCell<Option<ioloop::Instant>>>,
        ) {
            let _ = stream.read_bytes(io, 1, false, move |io, stream, byte| {
                if byte.is_ok() {
                    *last_read.borrow_mut() = Some(io.time());
                    read_byte(io, stream, last_read);
                }
            });
        }
        read_byte(io, stream, Rc::clone(&for_reads));
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        let got = Rc::clone(&for_client);
        stream
            .read_until_close(io, move |_, _, rest| {
                got.borrow_mut()
                    .push(format!("client: {:?}", rest.map(|r| r.len())));
            })
            .unwrap();
        let handle = stream.handle();
        for i in 0..BYTES {
            io.call_later(GAP * i as u32, move |io| {
                IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                    stream.write(io, b"x").unwrap();
                });
            });
        }
    });
    run(&mut io, &got, 2);
    let got = got.borrow();
    assert!(
        got.contains(&format!(
            "server: {:?}, not sooner than the timeout after the last byte",
            Some(StreamError::Idle { timeout: IDLE })
        )),
        "{got:?}"
    );
    assert!(got.contains(&"client: Ok(0)".to_string()), "{got:?}");
}

// ----- half-close ------------------------------------------------------------------

/// Let the stream stay open after the peer's end of stream.
fn half_close<P: Poller>(stream: &mut IOStream<P>) {
    stream.set_config(StreamConfig {
        allow_half_close: true,
        ..StreamConfig::default()
    });
}

/// Log the close, and how the stream stood, under `name`.
fn log_close<P: Poller>(stream: &mut IOStream<P>, log: &Log, name: &'static str) {
    let log = Rc::clone(log);
    stream.set_close_callback(move |_, stream| {
        log.borrow_mut()
            .push(format!("{name} closed: {:?}", stream.error()));
    });
}

/// `shutdown_write` after a write larger than the socket takes at once:
/// the peer reads every byte, then end of stream; the stream that shut
/// down stays readable and gets the peer's answer, then closes.
pub fn shutdown_write_sends_end_of_stream_after_the_buffered_bytes<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    const TOTAL: usize = 4 * 1024 * 1024;
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let _ = stream.read_until_close(io, move |io, stream, all| {
            let all = all.unwrap();
            let whole = all.len() == TOTAL && all.iter().enumerate().all(|(i, &b)| b == i as u8);
            got.borrow_mut()
                .push(format!("server read {} whole={whole}", all.len()));
            let _ = stream.write(io, format!("got {}", all.len()).as_bytes());
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        log_close(stream, &for_client, "client");
        let data: Vec<u8> = (0..TOTAL).map(|i| i as u8).collect();
        stream.write(io, &data).unwrap();
        stream.shutdown_write(io).unwrap();
        for_client.borrow_mut().push(format!(
            "client shut: write_closed={} read_closed={} closed={}",
            stream.write_closed(),
            stream.read_closed(),
            stream.closed()
        ));
        let got = Rc::clone(&for_client);
        stream
            .read_until_close(io, move |_, _, answer| {
                got.borrow_mut().push(format!(
                    "client read {:?}",
                    answer.map(|a| String::from_utf8(a).unwrap())
                ));
            })
            .unwrap();
    });
    run(&mut io, &got, 4);
    assert_eq!(
        *got.borrow(),
        [
            "client shut: write_closed=true read_closed=false closed=false".to_string(),
            format!("server read {TOTAL} whole=true"),
            format!("client read Ok(\"got {TOTAL}\")"),
            "client closed: None".to_string(),
        ]
    );
}

/// After `shutdown_write`, `write` and `write_then` fail with
/// `WriteClosed` and change nothing (the peer never sees their bytes, the
/// callback never runs); a second `shutdown_write` is harmless; the stream
/// stays open.
pub fn writes_after_shutdown_write_fail_and_change_nothing<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    // The server stays open, so that the client's read side does too.
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        half_close(stream);
        let got = Rc::clone(&for_server);
        let _ = stream.read_until_close(io, move |_, _, all| {
            got.borrow_mut().push(format!(
                "server read {:?}",
                all.map(|a| String::from_utf8(a).unwrap())
            ));
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        stream.write(io, b"abc").unwrap();
        stream.shutdown_write(io).unwrap();
        let buffered = stream.write_buffer_len();
        assert_eq!(stream.write(io, b"x"), Err(StreamError::WriteClosed));
        let refused = stream.write_then(io, b"y", |_, _, _| panic!("never called"));
        assert_eq!(refused, Err(StreamError::WriteClosed));
        assert_eq!(stream.write_buffer_len(), buffered, "nothing buffered");
        assert_eq!(stream.shutdown_write(io), Ok(()), "twice is harmless");
        let handle = stream.handle();
        let got = Rc::clone(&for_client);
        // Later, once the FIN is out: still refused, still open.
        io.call_later(Duration::from_millis(20), move |io| {
            let seen = IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                format!(
                    "client later: {:?} closed={} error={:?}",
                    stream.write(io, b"z"),
                    stream.closed(),
                    stream.error()
                )
            });
            got.borrow_mut()
                .push(seen.unwrap_or_else(|| "client gone".into()));
        });
    });
    run(&mut io, &got, 2);
    let mut got = got.borrow().clone();
    got.sort();
    assert_eq!(
        got,
        [
            "client later: Err(WriteClosed) closed=false error=None",
            "server read Ok(\"abc\")",
        ]
    );
}

/// With `allow_half_close`, the peer's end of stream leaves the stream
/// open and writable: an answer written well after it (and larger than
/// the socket takes at once) arrives whole, then end of stream; the close
/// callback runs once the stream shut down its own write side, not before.
pub fn with_half_close_an_answer_after_the_peers_end_of_stream_arrives_whole<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    const ANSWER: usize = 1024 * 1024;
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        half_close(stream);
        log_close(stream, &for_server, "server");
        let got = Rc::clone(&for_server);
        let _ = stream.read_until_close(io, move |io, stream, request| {
            got.borrow_mut().push(format!(
                "server read {:?} closed={} read_closed={} write_closed={}",
                request.map(|r| String::from_utf8(r).unwrap()),
                stream.closed(),
                stream.read_closed(),
                stream.write_closed(),
            ));
            let handle = stream.handle();
            let got = Rc::clone(&got);
            io.call_later(Duration::from_millis(5), move |io| {
                IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                    let answer: Vec<u8> = (0..ANSWER).map(|i| (i % 251) as u8).collect();
                    stream.write(io, &answer).unwrap();
                    got.borrow_mut().push("server answered".into());
                    stream.shutdown_write(io).unwrap();
                })
                .expect("still open after the peer's end of stream");
            });
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        stream.write(io, b"request").unwrap();
        stream.shutdown_write(io).unwrap();
        let got = Rc::clone(&for_client);
        stream
            .read_until_close(io, move |_, _, answer| {
                let answer = answer.unwrap();
                let whole = answer.len() == ANSWER
                    && answer
                        .iter()
                        .enumerate()
                        .all(|(i, &b)| b == (i % 251) as u8);
                got.borrow_mut()
                    .push(format!("client read {} whole={whole}", answer.len()));
            })
            .unwrap();
    });
    run(&mut io, &got, 4);
    let got = got.borrow();
    assert_eq!(
        got[..2],
        [
            "server read Ok(\"request\") closed=false read_closed=true write_closed=false",
            "server answered",
        ]
    );
    let mut rest = got[2..].to_vec();
    rest.sort();
    assert_eq!(
        rest,
        [
            format!("client read {ANSWER} whole=true"),
            "server closed: None".to_string(),
        ]
    );
}

/// How a read went, and whether the stream was closed then.
fn read_step<P: Poller>(
    what: &str,
    stream: &IOStream<P>,
    result: Result<Vec<u8>, StreamError>,
) -> String {
    format!(
        "{what} {:?} closed={}",
        result.map(|r| String::from_utf8(r).unwrap()),
        stream.closed()
    )
}

/// With `allow_half_close`, reads after the peer's end of stream complete
/// from the buffer while they can, then fail with `Closed` and the unread
/// bytes, the stream still open; `read_until_close` then completes with
/// nothing.
pub fn with_half_close_reads_after_the_peers_end_of_stream_drain_the_buffer<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        half_close(stream);
        let got = Rc::clone(&for_server);
        // Wait until everything is there, end of stream included.
        let handle = stream.handle();
        io.call_later(Duration::from_millis(20), move |io| {
            IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                let got = Rc::clone(&got);
                let _ = stream.read_until(io, b"\n", 1024, move |io, stream, line| {
                    got.borrow_mut().push(read_step("line", stream, line));
                    let got = Rc::clone(&got);
                    let _ = stream.read_until(io, b"\n", 1024, move |io, stream, line| {
                        got.borrow_mut().push(read_step("line", stream, line));
                        let got = Rc::clone(&got);
                        let _ = stream.read_until_close(io, move |io, stream, rest| {
                            got.borrow_mut().push(read_step("rest", stream, rest));
                            // Still open later: answer and finish then.
                            let handle = stream.handle();
                            io.call_later(Duration::from_millis(5), move |io| {
                                IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                                    stream.write(io, b"bye").unwrap();
                                    stream.shutdown_write(io).unwrap();
                                });
                            });
                        });
                    });
                });
            });
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        stream.write(io, b"one\npartial").unwrap();
        stream.shutdown_write(io).unwrap();
        let got = Rc::clone(&for_client);
        stream
            .read_until_close(io, move |_, _, answer| {
                got.borrow_mut().push(format!(
                    "client read {:?}",
                    answer.map(|a| String::from_utf8(a).unwrap())
                ));
            })
            .unwrap();
    });
    run(&mut io, &got, 4);
    let closed = StreamError::Closed {
        unread: b"partial".to_vec(),
    };
    assert_eq!(
        *got.borrow(),
        [
            "line Ok(\"one\\n\") closed=false".to_string(),
            format!("line {:?} closed=false", Err::<String, _>(closed)),
            "rest Ok(\"\") closed=false".to_string(),
            "client read Ok(\"bye\")".to_string(),
        ]
    );
}

/// Without `allow_half_close`, a peer that shuts down its write side
/// closes the stream as before: the pending read fails with the unread
/// bytes, the close callback runs, the handle reaches nothing, and the
/// peer (which is still reading) sees end of stream.
pub fn without_half_close_the_peers_end_of_stream_closes_the_stream<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        assert!(!stream.config().allow_half_close, "off by default");
        log_close(stream, &for_server, "server");
        let got = Rc::clone(&for_server);
        let handle = stream.handle();
        let _ = stream.read_until(io, b"\n", 1024, move |io, _, line| {
            got.borrow_mut().push(format!("server read {line:?}"));
            let got = Rc::clone(&got);
            io.call_later(Duration::from_millis(5), move |io| {
                let reached = IOStream::with(io, handle, |_, _: &mut IOStream<P>| ());
                got.borrow_mut().push(format!("server later {reached:?}"));
            });
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    half_closing_client(&mut io, addr, b"partial", &got);
    run(&mut io, &got, 4);
    let closed = StreamError::Closed {
        unread: b"partial".to_vec(),
    };
    let got = got.borrow();
    assert_eq!(
        got[..2],
        [
            format!("server read {:?}", Err::<Vec<u8>, _>(closed)),
            "server closed: None".to_string(),
        ]
    );
    let mut rest = got[2..].to_vec();
    rest.sort();
    assert_eq!(rest, ["client read Ok([])", "server later None"]);
}

/// A stream that shuts down its write side first closes only once the
/// peer's end of stream is read too — the close callback runs then, once,
/// after the last read.
pub fn the_close_callback_runs_when_both_directions_are_done<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        half_close(stream);
        log_close(stream, &for_server, "server");
        stream.write(io, b"hi").unwrap();
        stream.shutdown_write(io).unwrap();
        let got = Rc::clone(&for_server);
        let _ = stream.read_until_close(io, move |_, stream, all| {
            got.borrow_mut().push(format!(
                "server read {:?} closed={}",
                all.map(|a| String::from_utf8(a).unwrap()),
                stream.closed()
            ));
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        half_close(stream);
        let got = Rc::clone(&for_client);
        // Read the server's whole message (its end of stream included),
        // wait, then answer and finish.
        stream
            .read_until_close(io, move |io, stream, all| {
                got.borrow_mut().push(format!(
                    "client read {:?}",
                    all.map(|a| String::from_utf8(a).unwrap())
                ));
                let handle = stream.handle();
                io.call_later(Duration::from_millis(10), move |io| {
                    IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                        stream.write(io, b"bye").unwrap();
                        stream.shutdown_write(io).unwrap();
                    });
                });
            })
            .unwrap();
    });
    run(&mut io, &got, 3);
    io.run_until(Duration::from_millis(50), |_| false).unwrap();
    assert_eq!(
        *got.borrow(),
        [
            "client read Ok(\"hi\")",
            "server read Ok(\"bye\") closed=false",
            "server closed: None",
        ]
    );
}

/// The idle timeout closes a half-closed stream that goes quiet, with
/// `StreamError::Idle`; the peer sees end of stream.
pub fn the_idle_timeout_closes_a_half_closed_stream<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    const IDLE: Duration = Duration::from_millis(20);
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        half_close(stream);
        stream.set_idle_timeout(io, Some(IDLE));
        log_close(stream, &for_server, "server");
        let got = Rc::clone(&for_server);
        let _ = stream.read_until_close(io, move |_, stream, all| {
            got.borrow_mut().push(format!(
                "server read {:?} closed={}",
                all.map(|a| String::from_utf8(a).unwrap()),
                stream.closed()
            ));
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    half_closing_client(&mut io, addr, b"x", &got);
    run(&mut io, &got, 3);
    assert_eq!(
        *got.borrow(),
        [
            "server read Ok(\"x\") closed=false".to_string(),
            format!(
                "server closed: {:?}",
                Some(StreamError::Idle { timeout: IDLE })
            ),
            "client read Ok([])".to_string(),
        ]
    );
}

/// A reset reaches a half-closed stream that neither reads nor writes:
/// it closes with the error instead of waiting for a write to fail.
pub fn a_reset_reaches_an_idle_half_closed_stream<P: Poller>(mut io: IOLoop<P>, addr: SocketAddr) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        half_close(stream);
        let got = Rc::clone(&for_server);
        stream.set_close_callback(move |_, stream| {
            // Linux says EPIPE for a reset after the peer's FIN (CLOSE_WAIT).
            let why = match stream.error() {
                Some(StreamError::Io {
                    kind: io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe,
                    ..
                }) => "reset".to_string(),
                other => format!("{other:?}"),
            };
            got.borrow_mut().push(format!("server closed: {why}"));
        });
        let _ = stream.read_until_close(io, move |io, stream, _| {
            // An answer the client never reads: its close resets.
            stream.write(io, b"unread").unwrap();
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        stream.write(io, b"request").unwrap();
        stream.shutdown_write(io).unwrap();
        let handle = stream.handle();
        io.call_later(Duration::from_millis(50), move |io| {
            IOStream::with(io, handle, |io, stream: &mut IOStream<P>| stream.close(io));
        });
    });
    run(&mut io, &got, 1);
    assert_eq!(*got.borrow(), ["server closed: reset"]);
}

/// A stream that shut down its write side and pauses between reads loses
/// no byte when the peer's end of stream arrives meanwhile (as a hang-up,
/// both directions now shut): the bytes wait for its next read, then it
/// closes.
pub fn a_paused_reader_loses_no_byte_to_the_peers_end_of_stream<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        half_close(stream);
        let _ = stream.read_until_close(io, |io, stream, _| {
            stream.write(io, b"abcdef").unwrap();
            // The end of stream later, while the client's reader pauses.
            let handle = stream.handle();
            io.call_later(Duration::from_millis(5), move |io| {
                IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                    stream.shutdown_write(io).unwrap();
                });
            });
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        log_close(stream, &for_client, "client");
        stream.write(io, b"request").unwrap();
        stream.shutdown_write(io).unwrap();
        let got = Rc::clone(&for_client);
        stream
            .read_bytes(io, 2, false, move |io, stream, first| {
                got.borrow_mut().push(read_step("first", stream, first));
                let handle = stream.handle();
                io.call_later(Duration::from_millis(20), move |io| {
                    let reached = IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                        let got = Rc::clone(&got);
                        let _ = stream.read_until_close(io, move |_, stream, rest| {
                            got.borrow_mut().push(read_step("rest", stream, rest));
                        });
                    });
                    got.borrow_mut().push(format!("client later {reached:?}"));
                });
            })
            .unwrap();
    });
    run(&mut io, &got, 4);
    assert_eq!(
        *got.borrow(),
        [
            "first Ok(\"ab\") closed=false",
            "rest Ok(\"cdef\") closed=false",
            "client closed: None",
            "client later Some(())",
        ]
    );
}

/// What a read leaves in the buffer is counted there, and `reading` says
/// whether a read is pending: not inside a read's own callback, until
/// it starts the next.
pub fn the_read_buffer_and_a_pending_read_can_be_seen<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let _ = stream.read_until(io, b"\n", 64, move |io, stream, first| {
            let seen = |stream: &IOStream<P>| {
                format!(
                    "buffered {} reading {}",
                    stream.read_buffer_len(),
                    stream.reading()
                )
            };
            let first = String::from_utf8(first.unwrap()).unwrap();
            got.borrow_mut().push(format!("{first:?} {}", seen(stream)));
            let got = Rc::clone(&got);
            let _ = stream.read_until(io, b"\n", 64, move |io, stream, second| {
                let second = String::from_utf8(second.unwrap()).unwrap();
                got.borrow_mut()
                    .push(format!("{second:?} {}", seen(stream)));
                let last = Rc::clone(&got);
                let _ = stream.read_bytes(io, 100, false, move |_, _, rest| {
                    last.borrow_mut().push(format!("{rest:?}"));
                });
                got.borrow_mut().push(seen(stream));
            });
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    TcpClient::connect(&mut io, addr, LIMIT, (), |io, stream, connected| {
        connected.unwrap();
        // One write: the three lines arrive together.
        let _ = stream.write_then(io, b"one\ntwo\nthree", |io, stream, _| stream.close(io));
    });
    run(&mut io, &got, 4);
    assert_eq!(
        *got.borrow(),
        [
            "\"one\\n\" buffered 9 reading false",
            "\"two\\n\" buffered 5 reading false",
            "buffered 5 reading true",
            "Err(Closed { unread: [116, 104, 114, 101, 101] })",
        ]
    );
}

/// The write buffer's limit takes a write that reaches it exactly; one
/// byte more fails and writes nothing, with the buffer empty too.
pub fn a_write_up_to_the_limit_is_taken_and_one_byte_more_is_not<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let _ = stream.read_until_close(io, move |_, _, all| {
            got.borrow_mut().push(format!("server read {all:?}"));
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        stream.set_config(StreamConfig {
            max_write_buffer_bytes: 4,
            ..stream.config()
        });
        assert_eq!(stream.config().max_write_buffer_bytes, 4);
        let too_much = stream.write(io, b"12345");
        let exactly = stream.write(io, b"abcd");
        for_client
            .borrow_mut()
            .push(format!("{too_much:?} then {exactly:?}"));
        let _ = stream.write_then(io, b"", |io, stream, _| stream.close(io));
    });
    run(&mut io, &got, 2);
    assert_eq!(
        *got.borrow(),
        [
            "Err(BufferFull { limit: 4 }) then Ok(())",
            "server read Ok([97, 98, 99, 100])",
        ]
    );
}

/// A flush callback runs once every byte written before it is out, those
/// of earlier plain writes included, and not before.
pub fn a_flush_callback_waits_for_every_earlier_write<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    // More than the socket takes at once: most of it waits in the buffer.
    const TOTAL: usize = 4 * 1024 * 1024;
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let got = Rc::clone(&for_server);
        let _ = stream.read_bytes(io, TOTAL + 1, false, move |_, _, all| {
            got.borrow_mut()
                .push(format!("server read {}", all.unwrap().len()));
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        stream.set_config(StreamConfig {
            max_write_buffer_bytes: TOTAL + 1,
            ..stream.config()
        });
        stream.write(io, &vec![7u8; TOTAL]).unwrap();
        // The high-water mark is a bound: at it, no backpressure; past it,
        // backpressure.
        let buffered = stream.write_buffer_len();
        assert!(buffered > 0, "{TOTAL} bytes went out at once");
        let config = stream.config();
        stream.set_config(StreamConfig {
            write_high_water_bytes: buffered,
            ..config
        });
        assert!(!stream.is_backpressured());
        stream.set_config(StreamConfig {
            write_high_water_bytes: buffered - 1,
            ..config
        });
        assert!(stream.is_backpressured());
        stream.set_config(config);
        let got = Rc::clone(&for_client);
        stream
            .write_then(io, b"x", move |_, stream, flushed| {
                got.borrow_mut().push(format!(
                    "flushed {flushed:?}, {} bytes left, backpressured {}",
                    stream.write_buffer_len(),
                    stream.is_backpressured()
                ));
            })
            .unwrap();
    });
    run(&mut io, &got, 2);
    let got = got.borrow();
    assert!(
        got.contains(&"flushed Ok(()), 0 bytes left, backpressured false".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&format!("server read {}", TOTAL + 1)),
        "{got:?}"
    );
}

/// From a stream's callback, `with_stream` reaches every stream, that one
/// included, where `IOStream::with` cannot reach that one: a broadcast to
/// every connection, the one that triggered it among them.
pub fn a_broadcast_from_a_callback_reaches_every_stream_its_own_included<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let streams: Rc<RefCell<Vec<ioloop::StreamHandle<()>>>> = Rc::default();
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        streams.borrow_mut().push(stream.handle());
        if streams.borrow().len() < 2 {
            return;
        }
        let own = IOStream::with(io, stream.handle(), |_, _: &mut IOStream<P>| ());
        for_server
            .borrow_mut()
            .push(format!("with reaches its own: {}", own.is_some()));
        for &handle in streams.borrow().iter() {
            let wrote = stream.with_stream(io, handle, |io, other| other.write(io, b"go\n"));
            for_server.borrow_mut().push(format!("{wrote:?}"));
        }
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    for name in ["first", "second"] {
        let got = Rc::clone(&got);
        TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
            connected.unwrap();
            let _ = stream.read_until(io, b"\n", 64, move |io, stream, line| {
                got.borrow_mut().push(format!("{name} read {line:?}"));
                stream.close(io);
                let closed = stream.with_stream(io, stream.handle(), |_, _| ());
                got.borrow_mut()
                    .push(format!("{name} reaches itself closed: {closed:?}"));
            });
        });
    }
    run(&mut io, &got, 7);
    let mut got = got.borrow().clone();
    got[3..].sort();
    assert_eq!(
        got,
        [
            "with reaches its own: false",
            "Some(Ok(()))",
            "Some(Ok(()))",
            "first reaches itself closed: None",
            "first read Ok([103, 111, 10])",
            "second reaches itself closed: None",
            "second read Ok([103, 111, 10])",
        ]
    );
}

/// Bytes written count as activity for the idle timeout, as bytes read
/// do: a stream that only writes is closed once it stops writing, not
/// before. A closed stream arms no idle timer.
pub fn writes_keep_a_stream_from_idling_until_they_stop<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    // The last write is at 4 × GAP, well before IDLE (as in
    // `idle_streams_are_closed_after_their_last_activity`).
    const IDLE: Duration = Duration::from_millis(100);
    const GAP: Duration = Duration::from_millis(10);
    const BYTES: u32 = 5;
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        stream.set_idle_timeout(io, Some(IDLE));
        let last_write = Rc::new(RefCell::new(io.time()));
        let got = Rc::clone(&for_server);
        let last = Rc::clone(&last_write);
        stream.set_close_callback(move |io, stream| {
            let quiet = io.time().saturating_duration_since(*last.borrow());
            let timers = io.timeout_count();
            stream.set_idle_timeout(io, Some(IDLE));
            got.borrow_mut().push(format!(
                "server: {:?}, {} after the last write; {} timers armed once closed",
                stream.error(),
                if quiet >= IDLE {
                    "not sooner than the timeout"
                } else {
                    "TOO SOON"
                },
                io.timeout_count() - timers
            ));
        });
        let handle = stream.handle();
        for i in 0..BYTES {
            let last_write = Rc::clone(&last_write);
            io.call_later(GAP * i, move |io| {
                IOStream::with(io, handle, |io, stream: &mut IOStream<P>| {
                    stream.write(io, b"x").unwrap();
                    *last_write.borrow_mut() = io.time();
                });
            });
        }
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.unwrap();
        let got = Rc::clone(&for_client);
        stream
            .read_until_close(io, move |_, _, all| {
                got.borrow_mut()
                    .push(format!("client: {:?}", all.map(|a| a.len())));
            })
            .unwrap();
    });
    run(&mut io, &got, 2);
    let got = got.borrow();
    assert!(
        got.contains(&format!(
            "server: {:?}, not sooner than the timeout after the last write; 0 timers armed once closed",
            Some(StreamError::Idle { timeout: IDLE })
        )),
        "{got:?}"
    );
    assert!(got.contains(&format!("client: Ok({BYTES})")), "{got:?}");
}

/// A read of a contract check: `read_until` or `read_bytes` (whole).
#[derive(Clone, Copy)]
enum Read {
    Until(&'static [u8], usize),
    Bytes(usize),
}

/// Start `read` on `stream`, its result to `callback`.
fn start<P, F>(io: &mut IOLoop<P>, stream: &mut IOStream<P>, read: Read, callback: F)
where
    P: Poller,
    F: FnOnce(&mut IOLoop<P>, &mut IOStream<P>, Result<Vec<u8>, StreamError>) + 'static,
{
    let _ = match read {
        Read::Until(delimiter, max_bytes) => stream.read_until(io, delimiter, max_bytes, callback),
        Read::Bytes(count) => stream.read_bytes(io, count, false, callback),
    };
}

/// The results of two reads in a row (the second started in the first's
/// callback) on a stream whose read buffer holds `buffer_bytes`, of what
/// a client sends in one write, `sent`.
fn two_reads<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
    buffer_bytes: usize,
    [first, second]: [Read; 2],
    sent: &[u8],
) -> Vec<String> {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        stream.set_config(StreamConfig {
            max_buffer_bytes: buffer_bytes,
            ..stream.config()
        });
        let got = Rc::clone(&for_server);
        start(io, stream, first, move |io, stream, result| {
            got.borrow_mut().push(format!("{result:?}"));
            let got = Rc::clone(&got);
            start(io, stream, second, move |_, _, result| {
                got.borrow_mut().push(format!("{result:?}"));
            });
        });
    };
    serve_and_send(&mut io, addr, on_stream, vec![sent.to_vec()], |_, _| {});
    run(&mut io, &got, 2);
    let got = got.borrow().clone();
    got
}

/// `max_bytes` bounds a line delimiter included: a line of exactly that
/// many bytes is read; one byte more fails the read.
pub fn a_line_of_exactly_max_bytes_is_read<P: Poller>(io: IOLoop<P>, addr: SocketAddr) {
    let line = Read::Until(b"\n", 4);
    assert_eq!(
        two_reads(io, addr, 1024, [line, line], b"abc\ndefg\n"),
        [
            "Ok([97, 98, 99, 10])",
            "Err(Unsatisfiable { max_bytes: 4 })"
        ]
    );
}

/// A read callback that starts the next read, with the next line already
/// buffered, gets it after it returns, not inside itself: many pipelined
/// lines take no stack.
pub fn pipelined_lines_are_read_one_after_another_not_nested<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    // Deep enough to overflow a test thread's 2 MiB stack if each line
    // nested its callback in the previous one.
    const LINES: usize = 100_000;
    let got = log();
    let for_server = Rc::clone(&got);
    fn read_lines<P: Poller>(
        io: &mut IOLoop<P>,
        stream: &mut IOStream<P>,
        depth: Rc<RefCell<(usize, usize, usize)>>,
        got: Log,
    ) {
        let _ = stream.read_until(io, b"\n", 16, move |io, stream, line| {
            if line.is_err() {
                return;
            }
            let (lines, nesting, deepest) = {
                let mut depth = depth.borrow_mut();
                depth.0 += 1;
                depth.1 += 1;
                depth.2 = depth.2.max(depth.1);
                *depth
            };
            if lines == LINES {
                got.borrow_mut()
                    .push(format!("{lines} lines, nested at most {deepest}"));
            } else {
                read_lines(io, stream, Rc::clone(&depth), Rc::clone(&got));
            }
            depth.borrow_mut().1 = nesting - 1;
        });
    }
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let depth = Rc::new(RefCell::new((0, 0, 0)));
        read_lines(io, stream, depth, Rc::clone(&for_server));
    };
    serve_and_send(
        &mut io,
        addr,
        on_stream,
        vec![b"x\n".repeat(LINES)],
        |_, _| {},
    );
    run(&mut io, &got, 1);
    assert_eq!(*got.borrow(), [format!("{LINES} lines, nested at most 1")]);
}

/// A full read leaves the socket readable: with a small read buffer, what
/// arrived in one go is read in pieces without waiting for a new edge
/// (none comes: the peer sent everything at once and waits).
pub fn a_full_read_is_not_taken_for_a_drained_socket<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    fn read_fours<P: Poller>(io: &mut IOLoop<P>, stream: &mut IOStream<P>, got: Log) {
        let _ = stream.read_bytes(io, 4, false, move |io, stream, four| {
            got.borrow_mut()
                .push(String::from_utf8(four.unwrap()).unwrap());
            if got.borrow().len() < 3 {
                read_fours(io, stream, got);
            }
        });
    }
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        stream.set_config(StreamConfig {
            max_buffer_bytes: 4,
            ..stream.config()
        });
        read_fours(io, stream, Rc::clone(&for_server));
    };
    serve_and_send(
        &mut io,
        addr,
        on_stream,
        vec![b"abcdefghijkl".to_vec()],
        |_, _| {},
    );
    run(&mut io, &got, 3);
    assert_eq!(*got.borrow(), ["abcd", "efgh", "ijkl"]);
}

/// A `read_bytes` the read buffer can hold exactly waits for its bytes;
/// one that needs more than the buffer may hold fails at once (nothing
/// more comes: only the limit can fail it).
pub fn read_bytes_up_to_the_buffer_limit_waits_and_past_it_fails_at_once<P: Poller>(
    io: IOLoop<P>,
    addr: SocketAddr,
) {
    assert_eq!(
        two_reads(io, addr, 8, [Read::Bytes(8), Read::Bytes(9)], b"12345678"),
        [
            "Ok([49, 50, 51, 52, 53, 54, 55, 56])",
            "Err(BufferFull { limit: 8 })"
        ]
    );
}

/// A server accepts a client that comes after the others at once, not
/// after a pause: running out of connections to accept is no failure.
/// Once stopped, it accepts nobody.
pub fn a_server_accepts_late_clients_at_once_and_none_once_stopped<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let connect_started = Rc::new(RefCell::new(io.time()));
    let for_server = Rc::clone(&got);
    let started = Rc::clone(&connect_started);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let waited = io.time().saturating_duration_since(*started.borrow());
        let when = if waited < TcpServer::ACCEPT_BACKOFF {
            "at once"
        } else {
            "LATE"
        };
        for_server.borrow_mut().push(format!("accepted {when}"));
        assert!(format!("{stream:?}").starts_with("IOStream { fd: "));
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let connect = |io: &mut IOLoop<P>, got: &Log, name: &'static str| {
        *connect_started.borrow_mut() = io.time();
        let got = Rc::clone(got);
        TcpClient::connect(io, addr, LIMIT, (), move |io, stream, connected| {
            let connected = connected.map_err(|e| e.to_string());
            got.borrow_mut().push(format!("{name}: {connected:?}"));
            stream.close(io);
        });
    };
    connect(&mut io, &got, "first");
    run(&mut io, &got, 2);
    // The first batch of accepts has ended, with `WouldBlock`.
    connect(&mut io, &got, "second");
    run(&mut io, &got, 4);
    let mut seen = got.borrow().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "accepted at once",
            "accepted at once",
            "first: Ok(())",
            "second: Ok(())"
        ]
    );
    server.stop(&mut io).unwrap();
    connect(&mut io, &got, "after stop");
    run(&mut io, &got, 5);
    let last = got.borrow().last().cloned().unwrap();
    assert!(last.starts_with("after stop: Err("), "{:?}", got.borrow());
}

/// The read timeout watches the peer alone: a client that sends a
/// heartbeat every `GAP` stays open while the server answers (longer than
/// the timeout), and is closed with `ReadTimeout` once the answers stop,
/// not sooner than the timeout after the last one — its own heartbeats,
/// which would keep an idle timeout going, do not count.
pub fn a_read_timeout_closes_a_stream_whose_peer_falls_silent_despite_its_writes<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    // Wide margins for a shared machine: a stall of the whole process
    // under 300 ms cannot time the stream out while it is answered.
    const TIMEOUT: Duration = Duration::from_millis(300);
    const GAP: Duration = Duration::from_millis(10);
    /// Answered: 40 × GAP, longer than the timeout.
    const ANSWERED: u32 = 40;
    const PINGS_MAX: u32 = 100;
    fn answer<P: Poller>(io: &mut IOLoop<P>, stream: &mut IOStream<P, u32>) {
        let _ = stream.read_until(io, b"\n", 64, |io, stream, line| {
            if line.is_ok() {
                *stream.state_mut() += 1;
                if *stream.state() <= ANSWERED {
                    let _ = stream.write(io, b"pong\n");
                }
                answer(io, stream);
            }
        });
    }
    fn pongs<P: Poller>(io: &mut IOLoop<P>, stream: &mut IOStream<P, (u32, Instant)>) {
        let _ = stream.read_until(io, b"\n", 64, |io, stream, line| {
            if line.is_ok() {
                *stream.state_mut() = (stream.state().0 + 1, io.time());
                pongs(io, stream);
            }
        });
    }
    type Handle = StreamHandle<(u32, Instant)>;
    fn ping<P: Poller>(io: &mut IOLoop<P>, handle: Handle, sent: Rc<RefCell<u32>>) {
        let ok = IOStream::with(
            io,
            handle,
            |io, stream: &mut IOStream<P, (u32, Instant)>| stream.write(io, b"ping\n").is_ok(),
        );
        if ok == Some(true) {
            *sent.borrow_mut() += 1;
            if *sent.borrow() < PINGS_MAX {
                io.call_later(GAP, move |io| ping(io, handle, sent));
            }
        }
    }
    let server = TcpServer::bind_with(&mut io, addr, |_| 0u32, answer).unwrap();
    let addr = server.local_addr(&io).unwrap();
    let got = log();
    let for_client = Rc::clone(&got);
    let on_connect = move |io: &mut IOLoop<P>,
                           stream: &mut IOStream<P, (u32, Instant)>,
                           connected: Result<(), StreamError>| {
        connected.unwrap();
        assert_eq!(stream.read_timeout(), None, "off by default");
        stream.set_read_timeout(io, Some(TIMEOUT));
        assert_eq!(
            (stream.read_timeout(), stream.idle_timeout()),
            (Some(TIMEOUT), None)
        );
        let got = Rc::clone(&for_client);
        let sent = Rc::new(RefCell::new(1));
        let pinged = Rc::clone(&sent);
        stream.set_close_callback(move |io, stream| {
            let (answers, last) = *stream.state();
            let quiet = io.time().saturating_duration_since(last);
            got.borrow_mut().push(format!(
                "{:?} after {answers} answers, {}, {}",
                stream.error(),
                if quiet >= TIMEOUT {
                    "not sooner than the timeout after the last"
                } else {
                    "TOO SOON"
                },
                if *pinged.borrow() < PINGS_MAX {
                    "while still sending heartbeats"
                } else {
                    "only once the heartbeats stopped"
                }
            ));
        });
        pongs(io, stream);
        // From its own callback the stream is not reachable by handle:
        // the first heartbeat from here, the rest from timeouts.
        stream.write(io, b"ping\n").unwrap();
        let handle = stream.handle();
        io.call_later(GAP, move |io| ping(io, handle, sent));
    };
    let start = io.time();
    TcpClient::connect(&mut io, addr, LIMIT, (0, start), on_connect);
    run(&mut io, &got, 1);
    assert_eq!(
        *got.borrow(),
        [format!(
            "{:?} after {ANSWERED} answers, not sooner than the timeout after the last, \
             while still sending heartbeats",
            Some(StreamError::ReadTimeout { timeout: TIMEOUT })
        )]
    );
}

/// Connect `count` clients to `addr`; each logs `"{i}: connected"`, then
/// reads to the end of stream and logs what it got.
fn connect_readers<P: Poller>(io: &mut IOLoop<P>, addr: SocketAddr, count: usize, got: &Log) {
    for i in 0..count {
        let got = Rc::clone(got);
        TcpClient::connect(io, addr, LIMIT, (), move |io, stream, connected| {
            connected.expect("connect");
            got.borrow_mut().push(format!("{i}: connected"));
            let _ = stream.read_until_close(io, move |_, _, all| {
                let all = all.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                got.borrow_mut().push(format!("{i}: end {all:?}"));
            });
        });
    }
}

/// A server lists the streams it accepted while they are open, in the
/// order it accepted them; a goodbye reaches each through its handle, and
/// `close_streams` closes them all (their close callbacks run), stopped or
/// not. A stream that closed is no longer listed.
pub fn a_server_lists_its_open_streams_and_closes_them_all<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P, usize>| {
        let number = for_server.borrow().len();
        *stream.state_mut() = number;
        for_server.borrow_mut().push("accepted".to_string());
        let log = Rc::clone(&for_server);
        stream.set_close_callback(move |_, stream| {
            log.borrow_mut()
                .push(format!("server closed stream {}", stream.state()));
        });
        // Nothing to read: the read notices the client's end of stream.
        let _ = stream.read_until_close(io, |_, _, _| {});
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    assert!(server.streams().is_empty());
    connect_readers(&mut io, addr, 3, &got);
    run(&mut io, &got, 6);
    let streams = server.streams();
    assert_eq!(server.stream_count(), 3);
    // In the order accepted: each stream's state is its place in the log.
    let order: Vec<usize> = streams
        .iter()
        .map(|&handle| IOStream::with(&mut io, handle, |_, stream| *stream.state()).unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "{:?}", got.borrow());
    assert!(streams.iter().all(|handle| handle.is_open(&io)));

    // The last one goes away on its own: no longer listed.
    let last = *streams.last().unwrap();
    IOStream::with(&mut io, last, |io, stream| stream.close(io)).unwrap();
    assert_eq!(server.streams(), streams[..2]);
    // A goodbye to the others, then every one closed at once.
    for &handle in &server.streams() {
        IOStream::with(&mut io, handle, |io, stream| stream.write(io, b"BYE"))
            .unwrap()
            .unwrap();
    }
    server.stop(&mut io).unwrap();
    assert!(server.stop(&mut io).is_err(), "stopped twice");
    let before = got.borrow().len();
    let copy = server.clone();
    assert_eq!(copy.close_streams(&mut io), 2);
    assert_eq!(server.stream_count(), 0);
    assert_eq!(server.close_streams(&mut io), 0);
    let closed_at_once: Vec<String> = got.borrow()[before..].to_vec();
    // Closed before `close_streams` returned, in the order accepted.
    assert_eq!(
        closed_at_once,
        order[..2]
            .iter()
            .map(|number| format!("server closed stream {number}"))
            .collect::<Vec<_>>()
    );
    run(&mut io, &got, 12);
    let mut seen = got.borrow()[6..].to_vec();
    seen.sort();
    // `close` drops unflushed writes: each client got the goodbye or
    // nothing of it (this loop has no partial writes: a three-byte write
    // goes whole), then the end of stream — and the closed one its end of
    // stream.
    let (ends, closes): (Vec<String>, Vec<String>) =
        seen.into_iter().partition(|line| line.contains(": end "));
    assert_eq!(closes.len(), 3, "{closes:?}");
    assert!(closes
        .iter()
        .all(|line| line.starts_with("server closed stream ")));
    assert_eq!(ends.len(), 3, "{ends:?}");
    for line in ends {
        assert!(
            line.ends_with(r#"end Ok("BYE")"#) || line.ends_with(r#"end Ok("")"#),
            "{line}"
        );
    }
}

/// `close_streams` from the callback of one of the server's own streams
/// (a `SHUTDOWN` command on one connection): the others close at once,
/// the caller's stream is open until its callback returns, then closes.
pub fn close_streams_from_a_streams_callback_closes_that_stream_once_it_returns<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let server_cell: Rc<RefCell<Option<TcpServer>>> = Rc::default();
    let (for_server, server_ref) = (Rc::clone(&got), Rc::clone(&server_cell));
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let log = Rc::clone(&for_server);
        stream.set_close_callback(move |_, _| log.borrow_mut().push("closed".to_string()));
        let (log, server) = (Rc::clone(&for_server), Rc::clone(&server_ref));
        let _ = stream.read_until(io, b"\n", 64, move |io, stream, line| {
            // The others' reads fail as they close.
            let Ok(line) = line else { return };
            assert_eq!(line, b"SHUTDOWN\n");
            let server = server.borrow().clone().unwrap();
            let closing = server.close_streams(io);
            log.borrow_mut().push(format!(
                "closing {closing}, own closed: {}, listed: {}",
                stream.closed(),
                server.stream_count()
            ));
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    *server_cell.borrow_mut() = Some(server.clone());
    let addr = server.local_addr(&io).unwrap();
    connect_readers(&mut io, addr, 2, &got);
    run(&mut io, &got, 2);
    let for_admin = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.expect("connect");
        stream.write(io, b"SHUTDOWN\n").unwrap();
        let _ = stream.read_until_close(io, move |_, _, all| {
            for_admin.borrow_mut().push(format!("admin: end {all:?}"));
        });
    });
    run(&mut io, &got, 9);
    let got = got.borrow().clone();
    assert_eq!(
        got[2..5],
        [
            "closed",
            "closed",
            "closing 3, own closed: false, listed: 1"
        ],
        "{got:?}"
    );
    assert_eq!(got[5], "closed", "{got:?}");
    let mut ends = got[6..].to_vec();
    ends.sort();
    assert_eq!(
        ends,
        [r#"0: end Ok("")"#, r#"1: end Ok("")"#, "admin: end Ok([])"],
        "{got:?}"
    );
    assert_eq!(server.stream_count(), 0);
}

/// The list of a server's streams holds the open ones and no more: many
/// short connections, one after another, leave nothing behind; a stream
/// whose handler is removed from under it (dropped, not closed) leaves the
/// list too.
pub fn a_server_keeps_no_trace_of_its_closed_streams<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let for_server = Rc::clone(&got);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let log = Rc::clone(&for_server);
        stream.set_close_callback(move |_, _| log.borrow_mut().push("server closed".into()));
        let _ = stream.read_until_close(io, |_, _, _| {});
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    let addr = server.local_addr(&io).unwrap();
    for round in 0..200 {
        let got_ = Rc::clone(&got);
        TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
            connected.expect("connect");
            stream.close(io);
            got_.borrow_mut().push("client closed".into());
        });
        run(&mut io, &got, 2 * (round + 1));
        assert_eq!(server.stream_count(), 0, "round {round}");
        assert!(format!("{server:?}").contains("open: 0"), "{server:?}");
    }
    // Three open at once; one dropped from under the server.
    got.borrow_mut().clear();
    connect_readers(&mut io, addr, 3, &got);
    let done = io.run_until(LIMIT, |_| server.stream_count() == 3).unwrap();
    assert!(done, "{server:?}");
    let streams = server.streams();
    assert!(io.remove_handler(streams[1].fd()));
    assert_eq!(server.streams(), [streams[0], streams[2]]);
    assert_eq!(server.stream_count(), 2);
    let _ = io.close_fd(streams[1].fd());
}

/// A connect the system refuses at once (`refused_at_once`: no route, or
/// no fd left) takes the path of every other failure: `connect` returns a
/// handle, which names no stream, and `on_connect` runs later, from the
/// loop, with the stream — closed, its state still there — and the error.
/// Nothing is left registered. Each such handle is its own (a key in a map
/// of pending connects), the one `on_connect`'s stream gives.
pub fn a_connect_refused_at_once_reaches_on_connect_from_the_loop<P: Poller>(
    mut io: IOLoop<P>,
    refused_at_once: SocketAddr,
) {
    let got = log();
    let handlers = io.handler_count();
    let mut pending = std::collections::BTreeMap::new();
    for name in ["first", "second"] {
        let for_connect = Rc::clone(&got);
        let handle = TcpClient::connect(
            &mut io,
            refused_at_once,
            LIMIT,
            format!("{name} state"),
            move |io, stream: &mut IOStream<P, String>, connected| {
                let error = connected.expect_err("refused at once");
                assert!(matches!(error, StreamError::Io { .. }), "{error:?}");
                assert!(stream.closed());
                assert_eq!(stream.error(), Some(&error));
                assert!(!stream.handle().is_open(io));
                assert!(stream.write(io, b"x").is_err());
                let state = std::mem::take(stream.state_mut());
                for_connect
                    .borrow_mut()
                    .push(format!("{state}: {:?}", stream.handle()));
            },
        );
        assert!(!handle.is_open(&io));
        assert!(IOStream::with(&mut io, handle, |_, _| ()).is_none());
        assert_eq!(pending.insert(handle, name), None, "{handle:?} given twice");
    }
    assert!(got.borrow().is_empty(), "on_connect ran inside connect");
    run(&mut io, &got, 2);
    let expected: Vec<String> = pending
        .iter()
        .map(|(handle, name)| format!("{name} state: {handle:?}"))
        .collect();
    assert_eq!(*got.borrow(), expected);
    assert_eq!(io.handler_count(), handlers);
}

/// A stopped server acts on nothing: stopping it again, through it or a
/// clone, or asking its address, is an error — also once its fd number is
/// another listener's, which goes on accepting. Returns whether the number
/// was reused (the kernel may give it to another thread's socket first).
pub fn a_stopped_server_leaves_the_socket_that_reuses_its_fd_alone<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) -> bool {
    let first = TcpServer::bind(&mut io, addr, |_, _: &mut IOStream<P>| {}).unwrap();
    let (fd, copy) = (first.listener(), first.clone());
    assert!(first.is_listening(&io));
    first.stop(&mut io).unwrap();
    assert!(!copy.is_listening(&io));
    let got = log();
    let for_server = Rc::clone(&got);
    let second = TcpServer::bind(&mut io, addr, move |_, _: &mut IOStream<P>| {
        for_server.borrow_mut().push("accepted".into());
    })
    .unwrap();
    let reused = second.listener() == fd;
    for stale in [&first, &copy] {
        let error = stale.stop(&mut io).expect_err("stopped already");
        assert_eq!(error.kind(), io::ErrorKind::NotConnected, "{error}");
        assert!(error.to_string().contains("is stopped"), "{error}");
        assert!(stale.local_addr(&io).is_err());
    }
    assert!(second.is_listening(&io));
    let addr = second.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |_, _, connected| {
        for_client
            .borrow_mut()
            .push(format!("connected: {connected:?}"));
    });
    run(&mut io, &got, 2);
    let mut seen = got.borrow().clone();
    seen.sort();
    assert_eq!(seen, ["accepted", "connected: Ok(())"]);
    reused
}

/// A new stream is among its server's from its first callback: listed and
/// counted in `on_stream`, and reached by `close_streams` from a read
/// that completes as the connection is accepted (the request came first).
pub fn a_new_stream_is_listed_from_its_first_callback<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let server_cell: Rc<RefCell<Option<TcpServer>>> = Rc::default();
    let (for_server, server_ref) = (Rc::clone(&got), Rc::clone(&server_cell));
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let server = server_ref.borrow().clone().unwrap();
        let listed = server.streams().contains(&stream.handle());
        for_server.borrow_mut().push(format!(
            "on_stream: listed {listed}, count {}",
            server.stream_count()
        ));
        let log = Rc::clone(&for_server);
        stream.set_close_callback(move |_, _| {
            log.borrow_mut()
                .push(format!("closed, count {}", server.stream_count()));
        });
        let (log, server) = (Rc::clone(&for_server), Rc::clone(&server_ref));
        let _ = stream.read_until(io, b"\n", 64, move |io, _, line| {
            let server = server.borrow().clone().unwrap();
            log.borrow_mut().push(format!(
                "{:?}: closing {}",
                line.map(|line| String::from_utf8_lossy(&line).into_owned()),
                server.close_streams(io)
            ));
        });
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    *server_cell.borrow_mut() = Some(server.clone());
    let addr = server.local_addr(&io).unwrap();
    let for_client = Rc::clone(&got);
    TcpClient::connect(&mut io, addr, LIMIT, (), move |io, stream, connected| {
        connected.expect("connect");
        stream.write(io, b"SHUTDOWN\n").unwrap();
        let _ = stream.read_until_close(io, move |_, _, all| {
            for_client.borrow_mut().push(format!("client: end {all:?}"));
        });
    });
    run(&mut io, &got, 4);
    assert_eq!(
        *got.borrow(),
        [
            "on_stream: listed true, count 1",
            "Ok(\"SHUTDOWN\\n\"): closing 1",
            "closed, count 0",
            "client: end Ok([])",
        ]
    );
}

/// A server stopped from its own `on_stream`, with another connection
/// waiting, accepts no more, and leaves alone the socket that takes its
/// listener's fd number next: a connect made there completes. Returns
/// whether that socket got the number (the kernel may give it to another
/// thread's socket first).
pub fn a_server_stopped_in_on_stream_leaves_the_socket_on_its_number_alone<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) -> bool {
    let other = TcpServer::bind(
        &mut io,
        SocketAddr::new(addr.ip(), 0),
        |_, _: &mut IOStream<P>| {},
    )
    .unwrap();
    let other_addr = other.local_addr(&io).unwrap();
    let got = log();
    let server_cell: Rc<RefCell<Option<TcpServer>>> = Rc::default();
    let reused = Rc::new(RefCell::new(None));
    let (for_server, server_ref, reused_ref) =
        (Rc::clone(&got), Rc::clone(&server_cell), Rc::clone(&reused));
    let on_stream = move |io: &mut IOLoop<P>, _: &mut IOStream<P>| {
        for_server.borrow_mut().push("accepted".to_string());
        let server = server_ref.borrow().clone().unwrap();
        let listener = server.listener();
        server.stop(io).unwrap();
        let log = Rc::clone(&for_server);
        let upstream = TcpClient::connect(io, other_addr, LIMIT, (), move |_, _, connected| {
            log.borrow_mut().push(format!("upstream: {connected:?}"));
        });
        *reused_ref.borrow_mut() = Some(upstream.fd() == listener);
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    *server_cell.borrow_mut() = Some(server.clone());
    let addr = server.local_addr(&io).unwrap();
    for _ in 0..2 {
        TcpClient::connect(&mut io, addr, LIMIT, (), |_, _, _| {});
    }
    run(&mut io, &got, 2);
    // Let a second accept have its chance: none comes.
    let _ = io.run_until(Duration::from_millis(50), |_| false);
    assert_eq!(*got.borrow(), ["accepted", "upstream: Ok(())"]);
    let reused = reused.borrow().expect("on_stream ran");
    reused
}

/// `close_streams` when a close callback closes another stream of the
/// server first: each closes once, and the count is what this call closed.
pub fn close_streams_counts_a_stream_another_close_closed_once<P: Poller>(
    mut io: IOLoop<P>,
    addr: SocketAddr,
) {
    let got = log();
    let server_cell: Rc<RefCell<Option<TcpServer>>> = Rc::default();
    let (for_server, server_ref) = (Rc::clone(&got), Rc::clone(&server_cell));
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        let (log, server) = (Rc::clone(&for_server), Rc::clone(&server_ref));
        stream.set_close_callback(move |io, stream| {
            log.borrow_mut().push(format!("closed {}", stream.fd()));
            // The first to close takes the last one with it.
            let server = server.borrow().clone().unwrap();
            if let Some(&last) = server.streams().last() {
                if log.borrow().len() == 4 {
                    IOStream::with(io, last, |io, last| last.close(io));
                }
            }
        });
        let _ = stream.read_until_close(io, |_, _, _| {});
    };
    let server = TcpServer::bind(&mut io, addr, on_stream).unwrap();
    *server_cell.borrow_mut() = Some(server.clone());
    let addr = server.local_addr(&io).unwrap();
    connect_readers(&mut io, addr, 3, &got);
    let done = io.run_until(LIMIT, |_| server.stream_count() == 3).unwrap();
    assert!(done);
    run(&mut io, &got, 3);
    assert_eq!(server.close_streams(&mut io), 2, "{:?}", got.borrow());
    let closes: Vec<String> = got
        .borrow()
        .iter()
        .filter(|line| line.starts_with("closed "))
        .cloned()
        .collect();
    assert_eq!(closes.len(), 3, "{closes:?}");
    let mut unique = closes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "each once: {closes:?}");
    assert_eq!(server.stream_count(), 0);
}
