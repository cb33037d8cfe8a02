//! Socket options on the simulator: recorded per socket and read back, honoured where the model has a use (a pending error read once, the listen backlog), real sockets refused, and each bad input refused without a change.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{Events, Fd, IOLoop, ListenOptions};
use ioloop_sim::{FaultPreset, Sim, SimNet, SimPoller};

const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const SERVER_ADDR: SocketAddr = SocketAddr::new(SERVER_IP, 80);
/// Rounds of waits a handshake or a reset may take before the test gives up.
const SETTLE_ROUNDS_MAX: usize = 1_000;
/// EBADF, the simulator's answer for an fd that is not open.
const EBADF: i32 = 9;

/// A fault-free world with a server loop and a client loop.
fn two_loops() -> (SimNet, IOLoop<SimPoller>, IOLoop<SimPoller>) {
    let net = SimNet::new(1, FaultPreset::None, false);
    let server = IOLoop::new(net.host(SERVER_IP));
    let client = IOLoop::new(net.host(CLIENT_IP));
    (net, server, client)
}

/// Deliver everything in flight (the loops' handlers are not run).
fn settle(net: &SimNet, loops: &[&IOLoop<SimPoller>]) {
    let mut events = Vec::new();
    for _ in 0..SETTLE_ROUNDS_MAX {
        if net.world().is_quiescent() {
            return;
        }
        for io in loops {
            let host = io.poller().host_id();
            let _ = net.world_mut().wait(host, &mut events, None);
        }
        events.clear();
    }
    panic!("the world did not settle within {SETTLE_ROUNDS_MAX} rounds");
}

/// A connected pair: the server's accepted fd and the client's fd.
fn connected(
    net: &SimNet,
    server: &mut IOLoop<SimPoller>,
    client: &mut IOLoop<SimPoller>,
) -> (Fd, Fd, Fd) {
    let listener = server.listen(SERVER_ADDR).unwrap();
    let client_fd = client.connect(SERVER_ADDR).unwrap();
    settle(net, &[server, client]);
    let (server_fd, _) = server.accept(listener).unwrap();
    (listener, server_fd, client_fd)
}

fn kind_of<T: std::fmt::Debug>(result: io::Result<T>) -> io::ErrorKind {
    result.expect_err("refused").kind()
}

#[test]
fn nodelay_and_keepalive_are_recorded_per_socket() {
    let (net, mut server, mut client) = two_loops();
    let (_, server_fd, client_fd) = connected(&net, &mut server, &mut client);
    assert!(!server.nodelay(server_fd).unwrap());
    server.set_nodelay(server_fd, true).unwrap();
    assert!(server.nodelay(server_fd).unwrap());
    assert!(
        !client.nodelay(client_fd).unwrap(),
        "per socket, not per connection"
    );
    assert_eq!(server.keepalive(server_fd).unwrap(), None);
    server
        .set_keepalive(server_fd, Some(Duration::from_millis(7_900)))
        .unwrap();
    assert_eq!(
        server.keepalive(server_fd).unwrap(),
        Some(Duration::from_secs(7)),
        "whole seconds, as the kernel keeps it"
    );
    let refused = server.set_keepalive(server_fd, Some(Duration::ZERO));
    assert_eq!(kind_of(refused), io::ErrorKind::InvalidInput);
    assert_eq!(
        server.keepalive(server_fd).unwrap(),
        Some(Duration::from_secs(7))
    );
    server.set_keepalive(server_fd, None).unwrap();
    assert_eq!(server.keepalive(server_fd).unwrap(), None);
}

#[test]
fn stream_options_refuse_a_listener_and_an_unknown_fd() {
    let (_net, mut server, _client) = two_loops();
    let listener = server.listen(SERVER_ADDR).unwrap();
    assert_eq!(
        kind_of(server.set_nodelay(listener, true)),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        kind_of(server.nodelay(listener)),
        io::ErrorKind::InvalidInput
    );
    let keepalive = server.set_keepalive(listener, Some(Duration::from_secs(5)));
    assert_eq!(kind_of(keepalive), io::ErrorKind::InvalidInput);
    assert_eq!(
        kind_of(server.peer_addr(listener)),
        io::ErrorKind::InvalidInput
    );
    assert!(server.take_error(listener).unwrap().is_none());
    for unknown in [Fd(9), Fd(-1)] {
        let error = server.set_nodelay(unknown, true).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(EBADF));
        let error = server.take_error(unknown).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(EBADF));
        let error = server.peer_addr(unknown).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(EBADF));
    }
}

#[test]
fn peer_addr_is_known_once_connected() {
    let (net, mut server, mut client) = two_loops();
    let listener = server.listen(SERVER_ADDR).unwrap();
    let client_fd = client.connect(SERVER_ADDR).unwrap();
    assert_eq!(
        kind_of(client.peer_addr(client_fd)),
        io::ErrorKind::NotConnected
    );
    settle(&net, &[&server, &client]);
    let (server_fd, peer) = server.accept(listener).unwrap();
    assert_eq!(client.peer_addr(client_fd).unwrap(), SERVER_ADDR);
    assert_eq!(server.peer_addr(server_fd).unwrap(), peer);
    assert_eq!(peer, client.local_addr(client_fd).unwrap());
}

#[test]
fn take_error_reads_a_reset_once() {
    let (net, mut server, mut client) = two_loops();
    let (_, server_fd, client_fd) = connected(&net, &mut server, &mut client);
    assert!(client.take_error(client_fd).unwrap().is_none());
    // The server closes with unread bytes: a reset, as on Linux.
    client.write(client_fd, b"unread").unwrap();
    settle(&net, &[&server, &client]);
    server.close_fd(server_fd).unwrap();
    settle(&net, &[&server, &client]);
    let error = client
        .take_error(client_fd)
        .unwrap()
        .expect("a pending error");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    assert!(client.take_error(client_fd).unwrap().is_none(), "read once");
}

#[test]
fn take_error_reads_a_refused_connect_once() {
    let (net, server, mut client) = two_loops();
    let client_fd = client.connect(SERVER_ADDR).unwrap(); // nobody listens
    settle(&net, &[&server, &client]);
    let error = client
        .take_error(client_fd)
        .unwrap()
        .expect("a pending error");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    assert!(client.take_error(client_fd).unwrap().is_none());
    assert_eq!(
        kind_of(client.peer_addr(client_fd)),
        io::ErrorKind::NotConnected
    );
}

#[test]
fn the_listen_backlog_is_honoured() {
    let (net, mut server, mut client) = two_loops();
    let options = ListenOptions {
        reuse_addr: false,
        backlog: 2,
    };
    let listener = server.listen_with(SERVER_ADDR, options).unwrap();
    let host = server.poller().host_id();
    assert_eq!(
        net.world().listen_options(host, listener).unwrap(),
        (2, false)
    );
    let fds: Vec<Fd> = (0..3)
        .map(|_| client.connect(SERVER_ADDR).unwrap())
        .collect();
    settle(&net, &[&server, &client]);
    let refused = client
        .take_error(fds[2])
        .unwrap()
        .expect("the third is refused");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    for fd in &fds[..2] {
        assert!(client.take_error(*fd).unwrap().is_none());
        assert!(client.peer_addr(*fd).is_ok());
    }
    server.accept(listener).unwrap();
    server.accept(listener).unwrap();
    assert_eq!(kind_of(server.accept(listener)), io::ErrorKind::WouldBlock);
}

#[test]
fn listen_uses_the_default_options() {
    let (net, mut server, _client) = two_loops();
    let listener = server.listen(SERVER_ADDR).unwrap();
    let host = server.poller().host_id();
    // The default backlog (1024) within the simulator's cap of 128.
    assert_eq!(
        net.world().listen_options(host, listener).unwrap(),
        (128, true)
    );
    let in_use = server.listen_with(SERVER_ADDR, ListenOptions::default());
    assert_eq!(kind_of(in_use), io::ErrorKind::AddrInUse);
}

#[test]
fn real_sockets_are_refused_and_nothing_changes() {
    let (net, mut server, mut client) = two_loops();
    let (listener, server_fd, _) = connected(&net, &mut server, &mut client);
    server
        .add_handler(server_fd, |_, _, _| {}, Events::READ)
        .unwrap();
    server
        .add_handler(listener, |_, _, _| {}, Events::READ)
        .unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let std_stream = std::net::TcpStream::connect(std_listener.local_addr().unwrap()).unwrap();
    assert_eq!(
        kind_of(server.adopt_stream(std_stream)),
        io::ErrorKind::Unsupported
    );
    assert_eq!(
        kind_of(server.adopt_listener(std_listener)),
        io::ErrorKind::Unsupported
    );
    assert_eq!(
        kind_of(server.release_stream(server_fd)),
        io::ErrorKind::Unsupported
    );
    assert_eq!(
        kind_of(server.release_listener(listener)),
        io::ErrorKind::Unsupported
    );
    assert_eq!(server.handler_count(), 2);
    assert_eq!(server.interest(server_fd), Some(Events::READ));
    assert_eq!(server.check_consistency(), Ok(()));
    assert!(server.peer_addr(server_fd).is_ok(), "still open");
}

#[test]
fn echo_server_sets_nodelay_on_accepted_connections() {
    let mut sim = Sim::new(1, FaultPreset::None);
    sim.host("server", "10.0.0.1", |io| {
        EchoServer::bind(io, SERVER_ADDR, EchoConfig::default())?;
        Ok(())
    });
    sim.client("client", "10.0.0.2", |io, _done| {
        io.connect(SERVER_ADDR)?;
        Ok(())
    });
    let accepted = sim
        .run_until(Duration::from_secs(1), |sim| {
            sim.io("server").unwrap().handler_count() == 2
        })
        .unwrap();
    assert!(accepted, "the server accepted the connection");
    let server = sim.io("server").unwrap();
    let conn = server.handlers().map(|(fd, _)| fd).nth(1).unwrap();
    assert!(server.nodelay(conn).unwrap());
}
