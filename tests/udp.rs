//! UDP on the real backend, over loopback: the contract of `tests/udp_contract` (the same checks run on the simulator in `sim/tests/udp.rs`), and datagrams to and from a socket outside the loop.

mod common;
mod udp_contract;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use ioloop::{Events, Fd, IOLoop, MioPoller, PanicPolicy};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn fresh() -> IOLoop<MioPoller> {
    let mut io = IOLoop::new(MioPoller::new().expect("poller"));
    io.set_panic_policy(PanicPolicy::Propagate);
    io
}

macro_rules! on_mio {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                udp_contract::$check(fresh(), LOOPBACK);
            }
        )*
    };
}

on_mio!(
    datagrams_arrive_whole_with_their_sender,
    a_handler_reading_one_datagram_per_call_gets_them_all,
    a_long_datagram_is_truncated_to_the_buffer,
    an_empty_datagram_is_not_an_end,
    connected_sockets_talk_to_their_peer_only,
    a_connected_send_to_an_unbound_port_is_refused,
    bad_input_gets_an_error_and_changes_nothing,
    close_fd_closes_a_udp_socket,
);

/// A std socket outside the loop pings; the loop's handler answers each
/// datagram to its sender, upper-cased.
#[test]
fn the_loop_answers_a_socket_outside_it() {
    let mut io = fresh();
    let server = io.udp_bind(SocketAddr::new(LOOPBACK, 0)).unwrap();
    let server_addr = io.local_addr(server).unwrap();
    io.add_handler(
        server,
        |io, fd, _| {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = io.recv_from(fd, &mut buf) {
                io.send_to(fd, &buf[..n].to_ascii_uppercase(), from)
                    .unwrap();
            }
        },
        Events::READ,
    )
    .unwrap();
    let client = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    client.set_nonblocking(true).unwrap();
    let mut replies = Vec::new();
    for word in ["ping", "pong"] {
        client.send_to(word.as_bytes(), server_addr).unwrap();
    }
    let done = io
        .run_until(Duration::from_secs(10), |_| {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = client.recv_from(&mut buf) {
                assert_eq!(from, server_addr);
                replies.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            replies.len() == 2
        })
        .unwrap();
    assert!(done, "{replies:?}");
    assert_eq!(replies, ["PING", "PONG"]);
}

/// A poller written before datagrams (here the tests' `Scripted` wrapper,
/// which forwards none of them) refuses them with `Unsupported` through
/// the trait's defaults, and the loop is as it was.
#[test]
fn a_poller_without_datagrams_refuses_them() {
    let (mut io, _script) = common::new_loop::<common::Mio>();
    let addr = SocketAddr::new(LOOPBACK, 9);
    let mut buf = [0u8; 8];
    let results = [
        io.udp_bind(addr).map(drop),
        io.udp_connect(Fd(3), addr),
        io.send_to(Fd(3), b"x", addr).map(drop),
        io.recv_from(Fd(3), &mut buf).map(drop),
        io.send(Fd(3), b"x").map(drop),
        io.recv(Fd(3), &mut buf).map(drop),
    ];
    for result in results {
        assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::Unsupported);
    }
    assert_eq!(io.handler_count(), 0);
}
