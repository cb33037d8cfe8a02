//! The world's bookkeeping, through its public methods: connection records are freed, faults are blamed where they happen.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ioloop::{Events, Fd, Token};
use ioloop_sim::world::{FaultKind, HostId, World};
use ioloop_sim::{Entropy, FaultPlan, Trace};

const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
/// Rounds of waits a handshake or a close may take before the test gives up.
const SETTLE_ROUNDS_MAX: usize = 1_000;

/// A world of a server host and a client host, under `plan`.
fn two_hosts(plan: FaultPlan) -> (World, HostId, HostId) {
    let mut world = World::new(Entropy::seeded(1), plan, Trace::new(false));
    let (server, _) = world.add_host(SERVER_IP);
    let (client, _) = world.add_host(CLIENT_IP);
    (world, server, client)
}

/// Let every host wait until nothing is in flight.
fn settle(world: &mut World, hosts: &[HostId]) {
    let mut events = Vec::new();
    for _ in 0..SETTLE_ROUNDS_MAX {
        if world.is_quiescent() {
            return;
        }
        for &host in hosts {
            let _ = world.wait(host, &mut events, None);
        }
        events.clear();
    }
    panic!("the world did not settle within {SETTLE_ROUNDS_MAX} rounds");
}

#[test]
fn closed_connections_are_freed() {
    let (mut world, server, client) = two_hosts(FaultPlan::none());
    let addr = SocketAddr::new(SERVER_IP, 80);
    let listener = world.listen(server, addr).unwrap();
    let mut buf = [0u8; 16];
    for i in 0..500 {
        let client_fd = world.connect(client, addr).unwrap();
        settle(&mut world, &[server, client]);
        let (server_fd, _) = world.accept(server, listener).unwrap();
        assert_eq!(world.write(client, client_fd, b"hello").unwrap(), 5);
        settle(&mut world, &[server, client]);
        if i % 2 == 0 {
            // Read it all: an orderly close (FIN both ways).
            assert_eq!(world.read(server, server_fd, &mut buf).unwrap(), 5);
        }
        // Odd rounds close with unread bytes: a reset.
        world.close(server, server_fd).unwrap();
        world.close(client, client_fd).unwrap();
        settle(&mut world, &[server, client]);
        assert_eq!(world.connection_count(), 0, "round {i}");
    }
    // A refused connect, closed by its client: freed too.
    let nobody = SocketAddr::new(SERVER_IP, 81);
    let refused_fd = world.connect(client, nobody).unwrap();
    settle(&mut world, &[server, client]);
    assert_eq!(world.connection_count(), 1);
    world.close(client, refused_fd).unwrap();
    assert_eq!(world.connection_count(), 0);
}

#[test]
fn live_connections_keep_their_records() {
    let (mut world, server, client) = two_hosts(FaultPlan::none());
    let addr = SocketAddr::new(SERVER_IP, 80);
    world.listen(server, addr).unwrap();
    let client_fd = world.connect(client, addr).unwrap();
    settle(&mut world, &[server, client]);
    // Closed at one end, still in the listener's backlog at the other.
    world.close(client, client_fd).unwrap();
    settle(&mut world, &[server, client]);
    assert_eq!(world.connection_count(), 1);
}

#[test]
fn refused_connect_is_blamed_on_the_connecting_host_and_fd() {
    let plan = FaultPlan {
        refuse_connect: 1_000_000,
        ..FaultPlan::none()
    };
    let (mut world, server, client) = two_hosts(plan);
    let addr = SocketAddr::new(SERVER_IP, 80);
    world.listen(server, addr).unwrap();
    // A second fd on the client, so that the connecting fd is not fd 0.
    world
        .listen(client, SocketAddr::new(CLIENT_IP, 90))
        .unwrap();
    let client_fd = world.connect(client, addr).unwrap();
    assert_eq!(client_fd, Fd(1));
    world
        .add(client, client_fd, Token(1), Events::WRITE)
        .unwrap();
    settle(&mut world, &[server, client]);
    let fired = world.fired();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].kind, FaultKind::RefuseConnect);
    assert_eq!((fired[0].host, fired[0].fd), (client, client_fd));
    let mut buf = [0u8; 1];
    let error = world.read(client, client_fd, &mut buf).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
}
