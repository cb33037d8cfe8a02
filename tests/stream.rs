//! The `IOStream` contract on the real backend, over loopback (the same checks run on the simulator in `sim/tests/stream.rs`).

mod stream_contract;

use std::net::SocketAddr;

use ioloop::{IOLoop, MioPoller, PanicPolicy};

fn fresh() -> (IOLoop<MioPoller>, SocketAddr) {
    let mut io = IOLoop::new(MioPoller::new().expect("poller"));
    io.set_panic_policy(PanicPolicy::Propagate);
    (io, "127.0.0.1:0".parse().unwrap())
}

/// A loopback port nobody listens on: bound, then let go.
fn unused_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

macro_rules! on_mio {
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

on_mio!(
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
fn connect_errors_reach_the_callback() {
    let (io, _) = fresh();
    stream_contract::connect_errors_reach_the_callback(io, unused_port());
}

#[test]
fn a_stopped_server_leaves_the_socket_that_reuses_its_fd_alone() {
    let (io, addr) = fresh();
    // Whether the number was reused depends on the other tests' threads.
    let _ = stream_contract::a_stopped_server_leaves_the_socket_that_reuses_its_fd_alone(io, addr);
}

#[test]
fn a_server_stopped_in_on_stream_leaves_the_socket_on_its_number_alone() {
    let (io, addr) = fresh();
    // Whether the number was reused depends on the other tests' threads.
    let _ = stream_contract::a_server_stopped_in_on_stream_leaves_the_socket_on_its_number_alone(
        io, addr,
    );
}

/// Linux refuses a TCP connect to a multicast address at once
/// (`ENETUNREACH`, before any packet is sent).
#[cfg(target_os = "linux")]
#[test]
fn a_connect_refused_at_once_reaches_on_connect_from_the_loop() {
    let (io, _) = fresh();
    stream_contract::a_connect_refused_at_once_reaches_on_connect_from_the_loop(
        io,
        "224.0.0.1:9".parse().unwrap(),
    );
}
