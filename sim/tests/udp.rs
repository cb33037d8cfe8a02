//! UDP on the simulator: the contract of `tests/udp_contract` on a simulated host, then datagrams between hosts through the public harness — faults that fire and are seen, partitions and crashes that drop datagrams, and a planted twin that only duplication catches.

#[path = "../../tests/udp_contract/mod.rs"]
mod udp_contract;

use std::net::IpAddr;

use ioloop::{IOLoop, PanicPolicy};
use ioloop_sim::{FaultPreset, SimNet, SimPoller};

fn fresh() -> (IOLoop<SimPoller>, IpAddr) {
    let net = SimNet::new(7, FaultPreset::None, false);
    let mut io = IOLoop::new(net.host("10.0.0.1".parse().unwrap()));
    io.set_panic_policy(PanicPolicy::Propagate);
    (io, "10.0.0.1".parse().unwrap())
}

macro_rules! on_the_simulator {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (io, ip) = fresh();
                udp_contract::$check(io, ip);
            }
        )*
    };
}

on_the_simulator!(
    datagrams_arrive_whole_with_their_sender,
    a_handler_reading_one_datagram_per_call_gets_them_all,
    a_long_datagram_is_truncated_to_the_buffer,
    an_empty_datagram_is_not_an_end,
    connected_sockets_talk_to_their_peer_only,
    a_connected_send_to_an_unbound_port_is_refused,
    bad_input_gets_an_error_and_changes_nothing,
    close_fd_closes_a_udp_socket,
);
