//! The `IOStream` contract, written once over any `Poller`: `tests/stream.rs` runs it on mio over loopback, `sim/tests/stream.rs` on the simulator.
//!
//! Each check takes a fresh loop and an address to listen on (port 0 is
//! fine), runs server and client streams in that one loop, and bounds the
//! run by the loop's clock.
#![allow(dead_code)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{IOLoop, IOStream, Poller, StreamError, TcpClient, TcpServer};

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
    })
    .expect("connect");
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
    })
    .unwrap();
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
    )
    .unwrap();
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
    )
    .unwrap();
    run(&mut io, &got, 2);
    assert_eq!(got.borrow()[1], "Some(TimedOut)");
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
        let got = Rc::clone(&for_server);
        io.call_later(Duration::from_millis(1), move |io| {
            let seen = IOStream::with(io, handle, |io, stream: &mut IOStream<P, u32>| {
                *stream.state_mut() += 1;
                let value = *stream.state();
                stream.close(io);
                value
            });
            got.borrow_mut().push(format!("{seen:?}"));
            let again = IOStream::with(io, handle, |_, stream: &mut IOStream<P, u32>| {
                *stream.state()
            });
            got.borrow_mut().push(format!("{again:?}"));
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
    )
    .unwrap();
    run(&mut io, &got, 2);
    assert_eq!(*got.borrow(), ["Some(42)", "None"]);
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
    )
    .unwrap();
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
    const IDLE: Duration = Duration::from_millis(20);
    const GAP: Duration = Duration::from_millis(10);
    const BYTES: usize = 5;
    let got = log();
    let last_read = Rc::new(RefCell::new(None));
    let for_server = Rc::clone(&got);
    let for_reads = Rc::clone(&last_read);
    let on_stream = move |io: &mut IOLoop<P>, stream: &mut IOStream<P>| {
        assert_eq!(stream.idle_timeout(), None, "no idle timeout by default");
        stream.set_idle_timeout(io, Some(IDLE));
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
    })
    .unwrap();
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
