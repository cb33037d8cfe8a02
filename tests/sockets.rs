//! Socket options and sockets from outside on the real backend, over loopback: each option read back, each adoption and release path, and each bad input refused without a change.

mod common;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use common::mio_loop;
use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{Events, Fd, IOLoop, ListenOptions, MioPoller};

/// How long a test may wait for the loop before it fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected loopback pair made with blocking std calls (the handshake
/// completes in `connect`, the accept returns at once): the server end
/// adopted into `io`, and the client end.
fn adopted_pair(io: &mut IOLoop<MioPoller>) -> (Fd, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (io.adopt_stream(server).unwrap(), client)
}

fn kind_of<T: std::fmt::Debug>(result: io::Result<T>) -> io::ErrorKind {
    result.expect_err("refused").kind()
}

#[test]
fn fd_converts_to_and_from_raw_fd() {
    let fd = Fd::from(5 as RawFd);
    assert_eq!(fd, Fd(5));
    assert_eq!(RawFd::from(fd), 5);
    assert_eq!(fd.as_raw_fd(), 5);
}

#[test]
fn adopted_stream_does_io_shutdown_and_close_through_the_loop() {
    let mut io = mio_loop();
    let (fd, mut client) = adopted_pair(&mut io);
    assert_eq!(io.local_addr(fd).unwrap(), client.peer_addr().unwrap());
    assert_eq!(io.peer_addr(fd).unwrap(), client.local_addr().unwrap());
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 16];
    let mut got = 0;
    io.run_until(TEST_TIMEOUT, |io| {
        if let Ok(n) = io.read(fd, &mut buf[got..]) {
            got += n;
        }
        got == 4
    })
    .unwrap();
    assert_eq!(&buf[..4], b"ping");
    // Non-blocking once adopted: nothing more to read.
    assert_eq!(kind_of(io.read(fd, &mut buf)), io::ErrorKind::WouldBlock);
    io.shutdown(fd, std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    io.close_fd(fd).unwrap();
}

#[test]
fn adopted_listener_accepts_through_the_loop() {
    let mut io = mio_loop();
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = io.adopt_listener(std_listener).unwrap();
    assert_eq!(io.local_addr(listener).unwrap(), addr);
    // Non-blocking once adopted.
    assert_eq!(kind_of(io.accept(listener)), io::ErrorKind::WouldBlock);
    let client = TcpStream::connect(addr).unwrap();
    let mut accepted = None;
    io.add_handler(
        listener,
        |_, _, _| {}, // readiness only: the condition accepts
        Events::READ,
    )
    .unwrap();
    io.run_until(TEST_TIMEOUT, |io| {
        accepted = io.accept(listener).ok();
        accepted.is_some()
    })
    .unwrap();
    let (conn, peer) = accepted.unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    io.close_fd(conn).unwrap();
    io.close_fd(listener).unwrap();
    assert_eq!(io.handler_count(), 0);
}

#[test]
fn released_stream_works_outside_the_loop_and_its_handler_is_gone() {
    let mut io = mio_loop();
    let (fd, mut client) = adopted_pair(&mut io);
    io.add_handler(fd, |_, _, _| {}, Events::READ).unwrap();
    let mut stream = io.release_stream(fd).unwrap();
    assert!(!io.has_handler(fd));
    assert_eq!(io.handler_count(), 0);
    assert_eq!(io.check_consistency(), Ok(()));
    // Gone from the poller: the loop no longer owns or knows it.
    assert_eq!(kind_of(io.local_addr(fd)), io::ErrorKind::InvalidInput);
    stream.set_nonblocking(false).unwrap();
    stream.write_all(b"out").unwrap();
    let mut buf = [0u8; 3];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"out");
}

#[test]
fn released_listener_can_be_adopted_again() {
    let mut io = mio_loop();
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = io.local_addr(listener).unwrap();
    io.add_handler(listener, |_, _, _| {}, Events::READ)
        .unwrap();
    let std_listener = io.release_listener(listener).unwrap();
    assert!(!io.has_handler(listener));
    assert_eq!(std_listener.local_addr().unwrap(), addr);
    let again = io.adopt_listener(std_listener).unwrap();
    assert_eq!(io.local_addr(again).unwrap(), addr);
}

#[test]
fn release_of_the_wrong_kind_or_an_unknown_fd_changes_nothing() {
    let mut io = mio_loop();
    let (stream, mut client) = adopted_pair(&mut io);
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let called = Rc::new(Cell::new(false));
    let seen = Rc::clone(&called);
    io.add_handler(stream, move |_, _, _| seen.set(true), Events::READ)
        .unwrap();
    io.add_handler(listener, |_, _, _| {}, Events::READ)
        .unwrap();
    assert_eq!(
        kind_of(io.release_listener(stream)),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        kind_of(io.release_stream(listener)),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        kind_of(io.release_stream(Fd(100_000))),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        kind_of(io.release_stream(Fd(-1))),
        io::ErrorKind::InvalidInput
    );
    // A socket the user owns and only watches is not the loop's to give.
    let (_, user_owned) = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (l.accept().unwrap(), c)
    };
    let watched = Fd::from(user_owned.as_raw_fd());
    io.add_handler(watched, |_, _, _| {}, Events::READ).unwrap();
    assert_eq!(
        kind_of(io.release_stream(watched)),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(io.handler_count(), 3);
    assert_eq!(io.interest(stream), Some(Events::READ));
    assert_eq!(io.interest(listener), Some(Events::READ));
    assert_eq!(io.check_consistency(), Ok(()));
    io.remove_handler(watched);
    // The handlers are back too, not only their registrations.
    client.write_all(b"x").unwrap();
    assert!(io.run_until(TEST_TIMEOUT, |_| called.get()).unwrap());
}

#[test]
fn adopting_an_fd_the_loop_already_owns_is_refused_and_leaves_it_open() {
    let mut io = mio_loop();
    let (fd, mut client) = adopted_pair(&mut io);
    // SAFETY: deliberately aliases the loop's socket, which is what the
    // loop must detect; the refused adoption forgets it without closing.
    let alias = unsafe { TcpStream::from_raw_fd(fd.as_raw_fd()) };
    assert_eq!(
        kind_of(io.adopt_stream(alias)),
        io::ErrorKind::AlreadyExists
    );
    // SAFETY: as above.
    let alias = unsafe { TcpListener::from_raw_fd(fd.as_raw_fd()) };
    assert_eq!(
        kind_of(io.adopt_listener(alias)),
        io::ErrorKind::AlreadyExists
    );
    // Still open and still the loop's.
    io.write(fd, b"alive").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"alive");
}

#[test]
fn adopting_the_wrong_kind_of_socket_is_refused() {
    let mut io = mio_loop();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let as_stream = TcpStream::from(OwnedFd::from(listener));
    assert_eq!(
        kind_of(io.adopt_stream(as_stream)),
        io::ErrorKind::InvalidInput
    );
    let as_listener = TcpListener::from(OwnedFd::from(client));
    assert_eq!(
        kind_of(io.adopt_listener(as_listener)),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn nodelay_is_set_and_read_back() {
    let mut io = mio_loop();
    let (fd, _client) = adopted_pair(&mut io);
    assert!(!io.nodelay(fd).unwrap());
    io.set_nodelay(fd, true).unwrap();
    assert!(io.nodelay(fd).unwrap());
    io.set_nodelay(fd, false).unwrap();
    assert!(!io.nodelay(fd).unwrap());
}

#[test]
fn keepalive_is_set_read_back_and_turned_off() {
    let mut io = mio_loop();
    let (fd, _client) = adopted_pair(&mut io);
    assert_eq!(io.keepalive(fd).unwrap(), None);
    io.set_keepalive(fd, Some(Duration::from_secs(30))).unwrap();
    assert_eq!(io.keepalive(fd).unwrap(), Some(Duration::from_secs(30)));
    // Below a second: refused by the loop (not by the kernel, whose
    // EINVAL says less), the setting stays.
    let refused = io.set_keepalive(fd, Some(Duration::from_millis(500)));
    assert!(
        refused
            .as_ref()
            .is_err_and(|error| error.to_string().contains("at least one second")),
        "{refused:?}"
    );
    assert_eq!(kind_of(refused), io::ErrorKind::InvalidInput);
    assert_eq!(io.keepalive(fd).unwrap(), Some(Duration::from_secs(30)));
    // One second is the least it takes; fractions are dropped.
    io.set_keepalive(fd, Some(Duration::from_secs(1))).unwrap();
    assert_eq!(io.keepalive(fd).unwrap(), Some(Duration::from_secs(1)));
    io.set_keepalive(fd, Some(Duration::from_millis(2_900)))
        .unwrap();
    assert_eq!(io.keepalive(fd).unwrap(), Some(Duration::from_secs(2)));
    io.set_keepalive(fd, None).unwrap();
    assert_eq!(io.keepalive(fd).unwrap(), None);
}

#[test]
fn stream_options_refuse_a_listener_and_an_unknown_fd() {
    let mut io = mio_loop();
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    for fd in [listener, Fd(100_000), Fd(-1)] {
        assert_eq!(
            kind_of(io.set_nodelay(fd, true)),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(kind_of(io.nodelay(fd)), io::ErrorKind::InvalidInput);
        let keepalive = io.set_keepalive(fd, Some(Duration::from_secs(5)));
        assert_eq!(kind_of(keepalive), io::ErrorKind::InvalidInput);
        assert_eq!(kind_of(io.keepalive(fd)), io::ErrorKind::InvalidInput);
        assert_eq!(kind_of(io.peer_addr(fd)), io::ErrorKind::InvalidInput);
    }
    assert_eq!(
        kind_of(io.take_error(Fd(100_000))),
        io::ErrorKind::InvalidInput
    );
    assert!(io.take_error(listener).unwrap().is_none());
}

#[test]
fn take_error_reports_a_refused_connect_once() {
    let mut io = mio_loop();
    // A port nobody listens on: bound, then closed.
    let addr: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let fd = io.connect(addr).unwrap();
    // The handler hears of the failure, and stops listening for more.
    io.add_handler(
        fd,
        |io, fd, _events| drop(io.update_handler(fd, Events::empty())),
        Events::WRITE,
    )
    .unwrap();
    assert!(io
        .run_until(TEST_TIMEOUT, |io| io.interest(fd) == Some(Events::empty()))
        .unwrap());
    let error = io.take_error(fd).unwrap().expect("a pending error");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    assert!(
        io.take_error(fd).unwrap().is_none(),
        "read once, then cleared"
    );
    io.close_fd(fd).unwrap();
}

#[test]
fn listen_with_sets_reuse_addr_as_asked() {
    let mut io = mio_loop();
    let addr = "127.0.0.1:0".parse().unwrap();
    for reuse_addr in [false, true] {
        let options = ListenOptions {
            reuse_addr,
            backlog: 8,
        };
        let listener = io.listen_with(addr, options).unwrap();
        // SAFETY: the loop owns the fd for the whole borrow.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(listener.as_raw_fd()) };
        let socket = socket2::SockRef::from(&borrowed);
        assert_eq!(socket.reuse_address().unwrap(), reuse_addr);
        // A listener made this way accepts like any other.
        let client = TcpStream::connect(io.local_addr(listener).unwrap()).unwrap();
        let mut accepted = None;
        io.add_handler(listener, |_, _, _| {}, Events::READ)
            .unwrap();
        io.run_until(TEST_TIMEOUT, |io| {
            accepted = io.accept(listener).ok();
            accepted.is_some()
        })
        .unwrap();
        assert_eq!(accepted.unwrap().1, client.local_addr().unwrap());
        io.close_fd(accepted.unwrap().0).unwrap();
        io.close_fd(listener).unwrap();
    }
}

#[test]
fn listen_with_an_address_in_use_is_refused() {
    let mut io = mio_loop();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = io.listen_with(taken.local_addr().unwrap(), ListenOptions::default());
    assert_eq!(kind_of(refused), io::ErrorKind::AddrInUse);
    assert_eq!(io.handler_count(), 0);
}

/// The accepted connections of an echo server, once one client connected.
fn echo_connection(config: EchoConfig) -> (IOLoop<MioPoller>, Fd, TcpStream) {
    let mut io = mio_loop();
    let server = EchoServer::bind(&mut io, "127.0.0.1:0".parse().unwrap(), config).unwrap();
    let client = TcpStream::connect(server.local_addr(&io).unwrap()).unwrap();
    let listener = server.listener();
    io.run_until(TEST_TIMEOUT, |_| server.connection_count() == 1)
        .unwrap();
    let conn = io.handlers().map(|(fd, _)| fd).find(|&fd| fd != listener);
    (io, conn.expect("an accepted connection"), client)
}

#[test]
fn echo_server_sets_nodelay_on_accepted_connections_by_default() {
    let (io, conn, _client) = echo_connection(EchoConfig::default());
    assert!(io.nodelay(conn).unwrap());
    let config = EchoConfig {
        nodelay: false,
        ..EchoConfig::default()
    };
    let (io, conn, _client) = echo_connection(config);
    assert!(!io.nodelay(conn).unwrap());
}
