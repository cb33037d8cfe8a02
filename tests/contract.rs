//! The contract of DESIGN.md, point by point, written once and run on both
//! backends: `on_mio::*` (mio over loopback) and `on_sim::*` (the
//! simulator, faults off). Each test is a function generic over the
//! backend; the `contract!` list at the end runs it on both. Tests that
//! need the OS itself (a regular file, fds you own, other threads) are in
//! `mio_only`.
//!
//! No test sleeps or depends on timing: a test that needs several events in
//! one poll batch, in a known order, injects them (`Script::inject`); one
//! that needs time to pass sets the clock (`Script::set_time`); one that
//! needs a loop blocked in `wait` hooks the wait (`Script::on_blocking_wait`).
//!
//! The loops propagate panics (`PanicPolicy::Propagate`, set by `new_loop`):
//! an `assert!` inside a handler or callback fails its test rather than
//! being contained by the loop under test. The tests of containment set
//! `PanicPolicy::Contain` themselves.

mod common;

use std::cell::{Cell, RefCell};
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use common::{new_clocked_loop, new_loop, pair, Backend, TIMEOUT};
use ioloop::{Error, Events, Fd, IOLoop, Instant, PanicPolicy, PeriodicCallback, Poller, Ready};

type Log = Rc<RefCell<Vec<(Fd, Events)>>>;

/// A handler that records its calls and does nothing else.
fn recorder<P: Poller>(log: &Log) -> impl FnMut(&mut IOLoop<P>, Fd, Events) + 'static {
    let log = Rc::clone(log);
    move |_io, fd, events| log.borrow_mut().push((fd, events))
}

/// A handler that records its calls and reads (and drops) what is there.
fn reading_recorder<P: Poller>(log: &Log) -> impl FnMut(&mut IOLoop<P>, Fd, Events) + 'static {
    let log = Rc::clone(log);
    move |io, fd, events| {
        log.borrow_mut().push((fd, events));
        let mut buf = [0; 64];
        let _ = io.read(fd, &mut buf);
    }
}

fn at_ms(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

fn at_s(s: u64) -> Instant {
    Instant::from_epoch(Duration::from_secs(s))
}

/// Run one iteration that must unwind (a panic under `Propagate`).
fn run_once_unwinds<P: Poller>(io: &mut IOLoop<P>) {
    let unwound = catch_unwind(AssertUnwindSafe(|| io.run_once(Some(Duration::ZERO))));
    assert!(unwound.is_err(), "the panic did not propagate");
}

// ----- 1. events --------------------------------------------------------------

fn read_only_registration_never_reports_write<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let log: Log = Rc::default();
    io.add_handler(fd, reading_recorder(&log), Events::READ)
        .unwrap();
    io.write(peer, b"ping").unwrap();
    assert!(io.run_until(TIMEOUT, |_| !log.borrow().is_empty()).unwrap());
    for _ in 0..5 {
        io.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    assert!(
        log.borrow().iter().all(|(_, e)| *e == Events::READ),
        "{log:?}"
    );
}

fn eof_is_delivered_as_read_and_the_read_returns_zero<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let reads: Rc<RefCell<Vec<(Events, usize)>>> = Rc::default();
    let for_handler = Rc::clone(&reads);
    io.add_handler(
        fd,
        move |io, fd, events| {
            let mut buf = [0; 16];
            let n = io.read(fd, &mut buf).unwrap();
            for_handler.borrow_mut().push((events, n));
            if n == 0 {
                io.close_fd(fd).unwrap();
            }
        },
        Events::READ,
    )
    .unwrap();
    io.shutdown(peer, Shutdown::Write).unwrap();
    assert!(io.run_until(TIMEOUT, |io| io.handler_count() == 0).unwrap());
    assert_eq!(*reads.borrow(), vec![(Events::READ, 0)]);
}

fn reset_is_delivered_as_error_even_with_empty_interest<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let log: Log = Rc::default();
    let for_handler = Rc::clone(&log);
    io.add_handler(
        fd,
        move |io, fd, events| {
            for_handler.borrow_mut().push((fd, events));
            io.close_fd(fd).unwrap();
        },
        Events::empty(),
    )
    .unwrap();
    // The peer closes with unread data: that sends a reset, as Linux does.
    io.write(fd, b"unread").unwrap();
    io.add_handler(peer, |io, peer, _| io.close_fd(peer).unwrap(), Events::READ)
        .unwrap();
    assert!(io.run_until(TIMEOUT, |io| io.handler_count() == 0).unwrap());
    assert_eq!(*log.borrow(), vec![(fd, Events::ERROR)]);
}

/// What a reset does to an end that has already read the peer's FIN
/// (`CLOSE_WAIT`), as Linux's `tcp_reset` has it: reads still say end of
/// stream, and the error is `EPIPE` (`BrokenPipe`), not `ECONNRESET`. An
/// end that had not read a FIN gets `ConnectionReset` (the test above and
/// `take_error_reads_a_reset_once` in the simulator's tests).
fn a_reset_after_the_peers_fin_reads_end_of_stream_and_the_error_is_broken_pipe<B: Backend>() {
    use std::io::ErrorKind;
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    // The peer sends its FIN; the end reads it.
    io.shutdown(peer, Shutdown::Write).unwrap();
    let mut buf = [0; 16];
    let mut eof = false;
    assert!(io
        .run_until(TIMEOUT, |io| {
            eof = matches!(io.read(fd, &mut buf), Ok(0));
            eof
        })
        .unwrap());
    // The end writes what the peer never reads; the peer closes with it
    // unread: a reset, which finds the end in CLOSE_WAIT.
    io.write(fd, b"unread").unwrap();
    let landed = Rc::new(Cell::new(false));
    let for_peer = Rc::clone(&landed);
    io.add_handler(peer, move |_, _, _| for_peer.set(true), Events::READ)
        .unwrap();
    assert!(io.run_until(TIMEOUT, |_| landed.get()).unwrap());
    io.close_fd(peer).unwrap();
    type Seen = Vec<(
        Events,
        std::io::Result<usize>,
        Option<ErrorKind>,
        Option<ErrorKind>,
    )>;
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let for_handler = Rc::clone(&seen);
    io.add_handler(
        fd,
        move |io, fd, events| {
            let mut buf = [0; 16];
            let read = io.read(fd, &mut buf);
            let error = io.take_error(fd).unwrap().map(|e| e.kind());
            let again = io.take_error(fd).unwrap().map(|e| e.kind());
            for_handler.borrow_mut().push((events, read, error, again));
            io.remove_handler(fd);
        },
        Events::empty(),
    )
    .unwrap();
    assert!(io.run_until(TIMEOUT, |io| io.handler_count() == 0).unwrap());
    let seen = seen.borrow();
    let [(events, read, error, again)] = &seen[..] else {
        panic!("one call expected: {seen:?}");
    };
    assert_eq!(*events, Events::ERROR);
    assert_eq!(read.as_ref().ok(), Some(&0), "{read:?}");
    assert_eq!(*error, Some(ErrorKind::BrokenPipe));
    assert_eq!(*again, None, "SO_ERROR is read once");
    let write = io.write(fd, b"more").map_err(|e| e.kind());
    assert_eq!(write, Err(ErrorKind::BrokenPipe));
    io.close_fd(fd).unwrap();
}

fn a_refused_connect_is_read_write_and_error_at_once_and_take_error_says_why<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    // A port nobody listens on any more.
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = io.local_addr(listener).unwrap();
    io.close_fd(listener).unwrap();
    for interest in [Events::WRITE, Events::READ | Events::WRITE] {
        let conn = io.connect(addr).unwrap();
        type Seen = Vec<(Events, Option<std::io::ErrorKind>)>;
        let seen: Rc<RefCell<Seen>> = Rc::default();
        let for_handler = Rc::clone(&seen);
        io.add_handler(
            conn,
            move |io, fd, events| {
                let why = io.take_error(fd).unwrap().map(|error| error.kind());
                for_handler.borrow_mut().push((events, why));
                io.close_fd(fd).unwrap();
            },
            interest,
        )
        .unwrap();
        assert!(io
            .run_until(TIMEOUT, |_| !seen.borrow().is_empty())
            .unwrap());
        assert_eq!(
            *seen.borrow(),
            [(
                interest | Events::ERROR,
                Some(std::io::ErrorKind::ConnectionRefused)
            )],
            "interest {interest:?}"
        );
    }
}

fn a_listener_is_neither_read_written_nor_shut_down<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let read = io.read(listener, &mut [0; 8]).unwrap_err();
    let written = io.write(listener, b"x").unwrap_err();
    let shut = io
        .shutdown(listener, std::net::Shutdown::Write)
        .unwrap_err();
    for error in [read, written, shut] {
        assert_eq!(error.kind(), std::io::ErrorKind::NotConnected, "{error}");
        assert!(
            error.to_string().contains("is a listening socket"),
            "{error}"
        );
    }
    io.close_fd(listener).unwrap();
}

fn error_is_delivered_once_per_report<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    let log: Log = Rc::default();
    // Paused: interest empty, and it ignores what it is called with.
    io.add_handler(fd, recorder(&log), Events::empty()).unwrap();
    script.inject(&io, fd, Ready::ERROR);
    for _ in 0..5 {
        io.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(*log.borrow(), vec![(fd, Events::ERROR)], "ERROR spins");
    assert!(!io.has_pending_work());
    let state = io.readiness(fd).unwrap();
    assert!(state.error_ignored && state.due.is_empty(), "{state:?}");
    // Seen from a handler that runs before it in the batch, an ERROR not yet
    // delivered is not "ignored".
    let (other, _other_peer) = pair(&mut io);
    let seen = Rc::new(Cell::new(None));
    let for_other = Rc::clone(&seen);
    io.add_handler(
        other,
        move |io, other, _| {
            for_other.set(io.readiness(fd));
            io.remove_handler(other);
        },
        Events::READ,
    )
    .unwrap();
    // A new report is delivered again.
    script.inject(&io, other, Ready::READABLE);
    script.inject(&io, fd, Ready::ERROR);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(log.borrow().len(), 2);
    let before = seen.get().unwrap();
    assert!(
        !before.error_ignored && before.due == Events::ERROR,
        "{before:?}"
    );
    // READ stays level-triggered beside it: resuming reading gets the data.
    io.update_handler(fd, Events::READ).unwrap();
    script.inject(&io, fd, Ready::READABLE);
    for _ in 0..3 {
        io.run_once(Some(Duration::ZERO)).unwrap();
    }
    let calls: Vec<Events> = log.borrow()[2..].iter().map(|(_, e)| *e).collect();
    assert_eq!(calls, vec![Events::READ; 3]);
}

// ----- 2. level-triggered -------------------------------------------------------

fn one_byte_reader_receives_a_1_mib_message<B: Backend>() {
    const SIZE: usize = 1 << 20;
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let received = Rc::new(Cell::new(0usize));
    let for_handler = Rc::clone(&received);
    io.add_handler(
        fd,
        move |io, fd, _events| {
            let mut byte = [0; 1];
            if let Ok(1) = io.read(fd, &mut byte) {
                for_handler.set(for_handler.get() + 1);
            }
        },
        Events::READ,
    )
    .unwrap();
    let sent = Rc::new(Cell::new(0usize));
    let for_writer = Rc::clone(&sent);
    io.add_handler(
        peer,
        move |io, peer, _| {
            let chunk = [7u8; 16 * 1024];
            while for_writer.get() < SIZE {
                let len = chunk.len().min(SIZE - for_writer.get());
                match io.write(peer, &chunk[..len]) {
                    Ok(n) => for_writer.set(for_writer.get() + n),
                    Err(_) => return,
                }
            }
            io.remove_handler(peer);
        },
        Events::WRITE,
    )
    .unwrap();
    assert!(io
        .run_until(TIMEOUT * 3, |_| received.get() == SIZE)
        .unwrap());
}

fn handler_that_does_not_read_is_called_again_next_iteration<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let calls = Rc::new(Cell::new(0u32));
    let for_handler = Rc::clone(&calls);
    io.add_handler(
        fd,
        move |_, _, _| for_handler.set(for_handler.get() + 1),
        Events::READ,
    )
    .unwrap();
    io.write(peer, b"unread").unwrap();
    assert!(io.run_until(TIMEOUT, |_| calls.get() == 1).unwrap());
    // No new bytes arrive, yet the handler is called on every iteration.
    for expected in 2..=4 {
        io.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(calls.get(), expected);
    }
}

fn short_read_counts_as_drained<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let reads = Rc::new(RefCell::new(Vec::new()));
    let for_handler = Rc::clone(&reads);
    io.add_handler(
        fd,
        move |io, fd, _| {
            let result = io.read(fd, &mut [0; 64]).map_err(|e| e.kind());
            for_handler.borrow_mut().push(result);
        },
        Events::READ,
    )
    .unwrap();
    io.write(peer, b"ten bytes!").unwrap();
    assert!(io
        .run_until(TIMEOUT, |_| !reads.borrow().is_empty())
        .unwrap());
    // 10 of 64 bytes: the stream is drained, no read that would block.
    for _ in 0..3 {
        io.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(*reads.borrow(), vec![Ok(10)]);
}

fn interrupted_read_keeps_the_handler_due<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let got = Rc::new(RefCell::new(Vec::new()));
    let for_handler = Rc::clone(&got);
    io.add_handler(
        fd,
        move |io, fd, _| {
            let mut buf = [0; 64];
            if let Ok(n) = io.read(fd, &mut buf) {
                for_handler.borrow_mut().extend_from_slice(&buf[..n]);
            }
        },
        Events::READ,
    )
    .unwrap();
    script.fail_next_read(std::io::ErrorKind::Interrupted);
    io.write(peer, b"after EINTR").unwrap();
    // Only an edge from the poller or the retry can bring the bytes: an
    // EINTR says nothing about the socket, so the handler stays due.
    assert!(io.run_until(TIMEOUT, |_| got.borrow().len() == 11).unwrap());
}

fn an_empty_read_is_not_end_of_stream<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    let log: Log = Rc::default();
    io.add_handler(fd, recorder(&log), Events::READ).unwrap();
    // A read into an empty buffer returns 0 (the simulator) or WouldBlock
    // (Linux, with nothing to read): neither means end of stream.
    match io.read(fd, &mut []) {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
    for _ in 0..3 {
        io.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert!(log.borrow().is_empty(), "{log:?}");
    assert!(!io.has_pending_work());
}

fn consistency_check_notices_a_poller_that_disagrees<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    io.add_handler(fd, |_, _, _| {}, Events::READ).unwrap();
    io.check_consistency().unwrap();
    script.misreport(fd);
    let why = io.check_consistency().unwrap_err();
    assert!(why.contains(&format!("fd {fd}")), "{why}");
}

/// `check_changes`, the cheap check a simulator makes after every step:
/// it sees an fd whose registration changed since its last call, and a
/// count that is off, and then only what changed since.
fn the_change_check_sees_a_changed_fd_and_a_wrong_count<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    // The first call checks everything, and starts noting changes.
    io.check_changes().unwrap();
    io.add_handler(fd, |_, _, _| {}, Events::READ).unwrap();
    script.misreport(fd);
    let why = io.check_changes().unwrap_err();
    assert!(why.contains(&format!("fd {fd}")), "{why}");
    // Checked, the change is forgotten: the fd did not change since.
    io.check_changes().unwrap();
    assert!(
        io.check_consistency().is_err(),
        "the full check still sees it"
    );
    script.miscount();
    let why = io.check_changes().unwrap_err();
    assert!(why.contains("registrations"), "{why}");
}

fn switching_to_write_on_a_writable_socket_runs_in_the_same_iteration<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let log: Log = Rc::default();
    let for_handler = Rc::clone(&log);
    io.add_handler(
        fd,
        move |io, fd, events| {
            for_handler.borrow_mut().push((fd, events));
            if events.contains(Events::READ) {
                let mut buf = [0; 64];
                let _ = io.read(fd, &mut buf);
                io.update_handler(fd, Events::WRITE).unwrap();
            } else {
                io.update_handler(fd, Events::empty()).unwrap();
            }
        },
        Events::READ,
    )
    .unwrap();
    // Let the first poll learn the socket is writable, then send.
    io.run_once(Some(Duration::from_millis(10))).unwrap();
    io.write(peer, b"hi").unwrap();
    assert!(io.run_until(TIMEOUT, |_| !log.borrow().is_empty()).unwrap());
    let events: Vec<Events> = log.borrow().iter().map(|(_, e)| *e).collect();
    assert_eq!(events, vec![Events::READ, Events::WRITE]);
}

// ----- 3. the handler map is the truth ------------------------------------------

fn removed_fd_gets_no_event_from_same_batch<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (a, _peer_a) = pair(&mut io);
    let (b, _peer_b) = pair(&mut io);
    let log: Log = Rc::default();
    // Whichever runs first removes the other.
    for (fd, other) in [(a, b), (b, a)] {
        let for_handler = Rc::clone(&log);
        io.add_handler(
            fd,
            move |io, fd, events| {
                for_handler.borrow_mut().push((fd, events));
                io.remove_handler(other);
            },
            Events::READ,
        )
        .unwrap();
    }
    // Both events in one batch, a's first.
    script.inject(&io, a, Ready::READABLE);
    script.inject(&io, b, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*log.borrow(), vec![(a, Events::READ)]);
    assert_eq!(io.handler_count(), 1);
    io.check_consistency().unwrap();
}

fn handler_re_added_on_same_fd_does_not_get_the_old_registrations_event<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (a, _peer_a) = pair(&mut io);
    let (b, _peer_b) = pair(&mut io);
    let new_b_calls = Rc::new(Cell::new(0u32));
    let old_b_calls = Rc::new(Cell::new(0u32));
    let for_old_b = Rc::clone(&old_b_calls);
    io.add_handler(
        b,
        move |_, _, _| for_old_b.set(for_old_b.get() + 1),
        Events::READ,
    )
    .unwrap();
    let for_a = Rc::clone(&new_b_calls);
    io.add_handler(
        a,
        move |io, _, _| {
            // b's event of this batch was collected under its old token.
            io.remove_handler(b);
            let counter = Rc::clone(&for_a);
            io.add_handler(
                b,
                move |io, fd, _| {
                    counter.set(counter.get() + 1);
                    let _ = io.read(fd, &mut [0; 16]);
                },
                Events::READ,
            )
            .unwrap();
            io.remove_handler(a);
        },
        Events::READ,
    )
    .unwrap();
    script.inject(&io, a, Ready::READABLE);
    script.inject(&io, b, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(old_b_calls.get(), 0, "the removed handler ran");
    assert_eq!(new_b_calls.get(), 0, "the new handler got the old event");
    // It gets an event of its own.
    script.inject(&io, b, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(new_b_calls.get(), 1);
    io.check_consistency().unwrap();
}

fn event_of_an_old_registration_never_reaches_the_new_handler_of_a_reused_fd<B: Backend>() {
    // Real kernels drop pending events on close; the loop must not rely on
    // it. Report an event under the old token after the fd was reused.
    let (mut io, script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    io.add_handler(fd, |_, _, _| {}, Events::READ).unwrap();
    let (old_token, _) = io.poller().registration(fd).unwrap();
    io.remove_handler(fd);
    let calls = Rc::new(Cell::new(0u32));
    let for_new = Rc::clone(&calls);
    io.add_handler(
        fd,
        move |_, _, _| for_new.set(for_new.get() + 1),
        Events::READ,
    )
    .unwrap();
    let (new_token, _) = io.poller().registration(fd).unwrap();
    assert_ne!(old_token, new_token);
    script.inject_token(old_token, Ready::READABLE | Ready::ERROR);
    for _ in 0..3 {
        io.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(calls.get(), 0, "the new handler got the old event");
}

fn handler_removing_itself_and_adding_a_new_one_on_the_same_fd<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let second_calls = Rc::new(Cell::new(0u32));
    let for_first = Rc::clone(&second_calls);
    io.add_handler(
        fd,
        move |io, fd, _| {
            assert!(io.remove_handler(fd));
            let counter = Rc::clone(&for_first);
            io.add_handler(
                fd,
                move |io, fd, _| {
                    counter.set(counter.get() + 1);
                    let mut buf = [0; 16];
                    let _ = io.read(fd, &mut buf);
                },
                Events::READ,
            )
            .unwrap();
        },
        Events::READ,
    )
    .unwrap();
    io.write(peer, b"x").unwrap();
    assert!(io.run_until(TIMEOUT, |_| second_calls.get() > 0).unwrap());
    assert_eq!(io.handler_count(), 1);
    io.check_consistency().unwrap();
}

fn handler_removing_itself_is_not_called_again<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let calls = Rc::new(Cell::new(0u32));
    let for_handler = Rc::clone(&calls);
    io.add_handler(
        fd,
        move |io, fd, _| {
            for_handler.set(for_handler.get() + 1);
            io.remove_handler(fd);
        },
        Events::READ | Events::WRITE,
    )
    .unwrap();
    io.write(peer, b"x").unwrap();
    assert!(io.run_until(TIMEOUT, |_| calls.get() > 0).unwrap());
    for _ in 0..3 {
        io.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    assert_eq!(calls.get(), 1);
}

/// Counts the drops of the handler it is captured by.
struct DropCount(Rc<Cell<u32>>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

fn handler_adding_many_handlers_grows_the_table_while_it_runs<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    // Sockets with higher numbers than any registered fd so far: each
    // handler added for one grows the table, which moves it in memory.
    let listeners: Vec<Fd> = (0..64)
        .map(|_| io.listen("127.0.0.1:0".parse().unwrap()).unwrap())
        .collect();
    let calls = Rc::new(Cell::new(0u32));
    let for_handler = Rc::clone(&calls);
    io.add_handler(
        fd,
        move |io, _, _| {
            for_handler.set(for_handler.get() + 1);
            if for_handler.get() == 1 {
                for &listener in &listeners {
                    io.add_handler(listener, |_, _, _| {}, Events::READ)
                        .unwrap();
                }
            }
        },
        Events::READ,
    )
    .unwrap();
    script.inject(&io, fd, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(calls.get(), 1);
    assert_eq!(io.handler_count(), 65);
    io.check_consistency().unwrap();
    // The handler that grew the table is still in place, and still called.
    script.inject(&io, fd, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(calls.get(), 2);
}

fn handler_closing_its_fd_is_dropped_after_its_call_and_the_reused_fd_keeps_its_new_handler<
    B: Backend,
>() {
    let (mut io, script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    let drops = Rc::new(Cell::new(0u32));
    let calls = Rc::new(Cell::new(0u32));
    let reused = Rc::new(Cell::new(None));
    let dropped = DropCount(Rc::clone(&drops));
    let (for_handler, for_reused) = (Rc::clone(&calls), Rc::clone(&reused));
    io.add_handler(
        fd,
        move |io, fd, _| {
            for_handler.set(for_handler.get() + 1);
            io.close_fd(fd).unwrap();
            // Still alive: it is dropped when this call returns.
            assert_eq!(dropped.0.get(), 0);
            // The lowest free number is the one just closed: `pair` closed
            // its listener, whose number is lower, so take that one first.
            // (On mio another test's thread may take either number first:
            // there the reuse is likely, not certain.)
            let lower = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
            assert!(
                listener == fd || B::SHARED_FD_TABLE,
                "the closed fd's number is reused"
            );
            io.close_fd(lower).unwrap();
            io.add_handler(listener, |_, _, _| {}, Events::READ)
                .unwrap();
            for_reused.set(Some(listener));
        },
        Events::READ,
    )
    .unwrap();
    script.inject(&io, fd, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!((calls.get(), drops.get()), (1, 1));
    let listener = reused.get().unwrap();
    assert!(io.has_handler(listener));
    io.check_consistency().unwrap();
    // The new registration's events reach the new handler only.
    script.inject(&io, listener, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!((calls.get(), drops.get()), (1, 1));
}

fn handler_replacing_itself_runs_to_the_end_of_its_call<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    let drops = Rc::new(Cell::new(0u32));
    let steps = Rc::new(RefCell::new(Vec::new()));
    let dropped = DropCount(Rc::clone(&drops));
    let for_first = Rc::clone(&steps);
    io.add_handler(
        fd,
        move |io, fd, _| {
            assert!(io.remove_handler(fd));
            let for_second = Rc::clone(&for_first);
            io.add_handler(
                fd,
                move |_, _, _| for_second.borrow_mut().push("second"),
                Events::READ,
            )
            .unwrap();
            // Its own state is still there after it was replaced.
            for_first.borrow_mut().push("first");
            assert_eq!(dropped.0.get(), 0);
        },
        Events::READ,
    )
    .unwrap();
    script.inject(&io, fd, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*steps.borrow(), vec!["first"]);
    assert_eq!(drops.get(), 1);
    script.inject(&io, fd, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*steps.borrow(), vec!["first", "second"]);
    assert_eq!(io.handler_count(), 1);
    io.check_consistency().unwrap();
}

/// A typed handler that reaches for itself through the loop.
struct SelfSeeker {
    found_itself: Rc<Cell<Option<bool>>>,
}

impl<P: Poller> ioloop::FdHandler<P> for SelfSeeker {
    fn on_events(&mut self, io: &mut IOLoop<P>, fd: Fd, _events: Events) {
        let token = io.token(fd).unwrap();
        let found = io.with_handler(token, |_, _: &mut SelfSeeker| ());
        let read = io.handler::<SelfSeeker>(token);
        self.found_itself
            .set(Some(found.is_some() || read.is_some()));
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

fn a_running_handler_is_not_reachable_through_with_handler<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    let found_itself = Rc::new(Cell::new(None));
    let handler = SelfSeeker {
        found_itself: Rc::clone(&found_itself),
    };
    io.add_fd_handler(fd, handler, Events::READ).unwrap();
    script.inject(&io, fd, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(found_itself.get(), Some(false));
    // Outside its call, it is.
    let token = io.token(fd).unwrap();
    assert_eq!(io.with_handler(token, |_, _: &mut SelfSeeker| 7), Some(7));
    assert!(io.handler::<SelfSeeker>(token).is_some());
    io.check_consistency().unwrap();
}

fn a_handler_is_read_through_a_shared_loop_only_by_its_live_token<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    let seeker = || SelfSeeker {
        found_itself: Rc::new(Cell::new(None)),
    };
    io.add_fd_handler(fd, seeker(), Events::READ).unwrap();
    let old = io.token(fd).unwrap();
    assert!(io.handler::<SelfSeeker>(old).is_some());
    // Removed, then the same fd registered again: the old token reads
    // nothing (generations), the new one reads the new handler.
    assert!(io.remove_handler(fd));
    assert!(io.handler::<SelfSeeker>(old).is_none());
    io.add_fd_handler(fd, seeker(), Events::READ).unwrap();
    let new = io.token(fd).unwrap();
    assert_ne!(old, new);
    assert!(io.handler::<SelfSeeker>(old).is_none());
    assert!(io.handler::<SelfSeeker>(new).is_some());
    // A closure handler lets itself be read, as its own type.
    fn readable<P: Poller, H: ioloop::FdHandler<P>>(io: &IOLoop<P>, fd: Fd, _: &H) -> bool {
        io.handler::<H>(io.token(fd).unwrap()).is_some()
    }
    fn noop_for<P: Poller>(_: &IOLoop<P>) -> impl FnMut(&mut IOLoop<P>, Fd, Events) + Copy {
        |_: &mut IOLoop<P>, _: Fd, _: Events| {}
    }
    let (other, _peer) = pair(&mut io);
    let closure = noop_for(&io);
    io.add_fd_handler(other, closure, Events::READ).unwrap();
    assert!(readable(&io, other, &closure));
    assert!(!readable(&io, fd, &closure));
    io.check_consistency().unwrap();
}

// ----- 5. iteration order ---------------------------------------------------------

fn callbacks_added_during_an_iteration_run_in_the_next<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let order = Rc::new(RefCell::new(Vec::new()));
    let for_a = Rc::clone(&order);
    io.add_callback(move |io| {
        for_a.borrow_mut().push("a");
        let for_b = Rc::clone(&for_a);
        io.add_callback(move |_| for_b.borrow_mut().push("b"));
    });
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*order.borrow(), vec!["a"]);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*order.borrow(), vec!["a", "b"]);
    assert_eq!(io.iterations(), 2);
}

fn timeouts_with_equal_deadlines_fire_in_the_order_added<B: Backend>() {
    let (mut io, script) = new_clocked_loop::<B>();
    let order = Rc::new(RefCell::new(Vec::new()));
    let deadline = at_s(1);
    for id in 0..20 {
        let for_timeout = Rc::clone(&order);
        io.call_at(deadline, move |_| for_timeout.borrow_mut().push(id));
    }
    let for_early = Rc::clone(&order);
    io.call_at(at_ms(500), move |_| for_early.borrow_mut().push(-1));
    script.set_time(deadline);
    io.run_once(None).unwrap();
    let mut expected = vec![-1];
    expected.extend(0..20);
    assert_eq!(*order.borrow(), expected);
}

fn a_due_timeout_cancelling_another_due_timeout_stops_it<B: Backend>() {
    let (mut io, script) = new_clocked_loop::<B>();
    let ran = Rc::new(RefCell::new(Vec::new()));
    let deadline = at_s(1);
    let victim = Rc::new(Cell::new(None));
    let for_first = (Rc::clone(&ran), Rc::clone(&victim));
    io.call_at(deadline, move |io| {
        for_first.0.borrow_mut().push("first");
        io.remove_timeout(for_first.1.get().unwrap());
    });
    let for_second = Rc::clone(&ran);
    victim.set(Some(io.call_at(deadline, move |_| {
        for_second.borrow_mut().push("second")
    })));
    script.set_time(deadline);
    io.run_once(None).unwrap();
    io.run_once(None).unwrap();
    assert_eq!(*ran.borrow(), vec!["first"]);
    assert_eq!(io.timeout_count(), 0);
}

fn remove_timeout_after_it_fired_is_harmless<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let fired = Rc::new(Cell::new(0));
    let for_first = Rc::clone(&fired);
    let handle = io.call_later(Duration::ZERO, move |_| for_first.set(for_first.get() + 1));
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(fired.get(), 1);
    io.remove_timeout(handle);
    io.remove_timeout(handle);
    // A new timeout may reuse the slot: the stale handle must not cancel it.
    let for_second = Rc::clone(&fired);
    io.call_later(Duration::ZERO, move |_| {
        for_second.set(for_second.get() + 10)
    });
    io.remove_timeout(handle);
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(fired.get(), 11);
}

fn timeouts_wait_for_their_deadline<B: Backend>() {
    let (mut io, script) = new_clocked_loop::<B>();
    let fired = Rc::new(Cell::new(false));
    let for_timeout = Rc::clone(&fired);
    io.call_later(Duration::from_secs(5), move |_| for_timeout.set(true));
    script.set_time(at_ms(4999));
    io.run_once(None).unwrap();
    assert!(!fired.get());
    script.set_time(at_s(5));
    io.run_once(None).unwrap();
    assert!(fired.get());
}

fn periodic_callback_skips_missed_runs_and_stays_on_its_grid<B: Backend>() {
    let (mut io, script) = new_clocked_loop::<B>();
    let runs = Rc::new(RefCell::new(Vec::new()));
    let for_periodic = Rc::clone(&runs);
    let periodic = PeriodicCallback::new(
        move |io: &mut IOLoop<_>| for_periodic.borrow_mut().push(io.time()),
        Duration::from_secs(10),
    )
    .unwrap();
    periodic.start(&mut io);
    script.set_time(at_s(10));
    io.run_once(None).unwrap();
    // The loop was busy until t=35: runs at 20 and 30 are skipped.
    script.set_time(at_s(35));
    io.run_once(None).unwrap();
    script.set_time(at_s(39));
    io.run_once(None).unwrap();
    script.set_time(at_s(40));
    io.run_once(None).unwrap();
    assert_eq!(*runs.borrow(), vec![at_s(10), at_s(35), at_s(40)]);
    periodic.stop(&mut io);
    script.set_time(at_s(100));
    io.run_once(None).unwrap();
    assert_eq!(runs.borrow().len(), 3);
    assert!(!periodic.is_running());
    assert!(PeriodicCallback::new(|_: &mut IOLoop<B::P>| {}, Duration::ZERO).is_err());
}

fn periodic_callback_never_fires_twice_when_the_clock_steps_back<B: Backend>() {
    let (mut io, script) = new_clocked_loop::<B>();
    let runs = Rc::new(Cell::new(0u32));
    let for_periodic = Rc::clone(&runs);
    let periodic = PeriodicCallback::new(
        move |_: &mut IOLoop<_>| for_periodic.set(for_periodic.get() + 1),
        Duration::from_secs(10),
    )
    .unwrap();
    periodic.start(&mut io);
    script.set_time(at_s(10));
    io.run_once(None).unwrap();
    assert_eq!(runs.get(), 1);
    // The poller's clock steps back; the loop's time does not.
    script.set_time(at_s(3));
    for _ in 0..3 {
        io.run_once(None).unwrap();
    }
    assert_eq!(runs.get(), 1);
    assert_eq!(io.time(), at_s(10));
}

fn periodic_callback_stopped_from_its_own_run_leaves_no_timeout<B: Backend>() {
    let (mut io, script) = new_clocked_loop::<B>();
    let itself: Rc<RefCell<Option<PeriodicCallback<_>>>> = Rc::default();
    let for_run = Rc::clone(&itself);
    let periodic = PeriodicCallback::new(
        move |io: &mut IOLoop<_>| {
            if let Some(periodic) = for_run.borrow().as_ref() {
                periodic.stop(io);
            }
        },
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(format!("{periodic:?}").contains("period: 10s"));
    periodic.start(&mut io);
    *itself.borrow_mut() = Some(periodic);
    script.set_time(at_s(10));
    io.run_once(None).unwrap();
    // Stopped: nothing left to keep the loop awake.
    assert_eq!(io.timeout_count(), 0);
    assert!(!itself.borrow().as_ref().unwrap().is_running());
}

fn periodic_callback_keeps_its_schedule_after_a_panic<B: Backend>() {
    for policy in [PanicPolicy::Contain, PanicPolicy::Propagate] {
        let (mut io, script) = new_clocked_loop::<B>();
        io.set_panic_policy(policy);
        let runs = Rc::new(Cell::new(0u32));
        let for_periodic = Rc::clone(&runs);
        let periodic = PeriodicCallback::new(
            move |_: &mut IOLoop<_>| {
                for_periodic.set(for_periodic.get() + 1);
                if for_periodic.get() == 1 {
                    panic!("planted periodic panic");
                }
            },
            Duration::from_secs(10),
        )
        .unwrap();
        periodic.start(&mut io);
        script.set_time(at_s(10));
        if policy == PanicPolicy::Propagate {
            run_once_unwinds(&mut io);
        } else {
            io.run_once(None).unwrap();
        }
        assert_eq!(runs.get(), 1);
        assert!(periodic.is_running());
        // As Tornado: the schedule goes on after the exception.
        for s in [20, 30] {
            script.set_time(at_s(s));
            io.run_once(None).unwrap();
        }
        assert_eq!(runs.get(), 3, "{policy:?}");
        // And stop + start works.
        periodic.stop(&mut io);
        periodic.start(&mut io);
        script.set_time(at_s(40));
        io.run_once(None).unwrap();
        assert_eq!(runs.get(), 4, "{policy:?}");
    }
}

// ----- 6. bad input ----------------------------------------------------------------

fn duplicate_add_fails_and_keeps_the_first_handler<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, peer) = pair(&mut io);
    let log: Log = Rc::default();
    io.add_handler(fd, reading_recorder(&log), Events::READ)
        .unwrap();
    let second = io.add_handler(fd, |_, _, _| panic!("second handler ran"), Events::WRITE);
    assert!(matches!(second, Err(Error::AlreadyRegistered(f)) if f == fd));
    assert_eq!(io.interest(fd), Some(Events::READ));
    io.write(peer, b"x").unwrap();
    assert!(io.run_until(TIMEOUT, |_| !log.borrow().is_empty()).unwrap());
    assert_eq!(*log.borrow(), vec![(fd, Events::READ)]);
    io.check_consistency().unwrap();
}

fn update_of_an_unknown_fd_fails_and_changes_nothing<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let (fd, _peer) = pair(&mut io);
    assert!(matches!(
        io.update_handler(fd, Events::READ),
        Err(Error::NotRegistered(_))
    ));
    assert!(matches!(
        io.update_handler(Fd(-1), Events::READ),
        Err(Error::NotRegistered(_))
    ));
    assert_eq!(io.handler_count(), 0);
    io.check_consistency().unwrap();
}

fn removing_an_unknown_fd_is_a_no_op<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    assert!(!io.remove_handler(Fd(12_345)));
    assert!(!io.remove_handler(Fd(-1)));
    assert_eq!(io.handler_count(), 0);
    io.check_consistency().unwrap();
}

fn socket_operations_on_bad_fds_return_errors<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let mut buf = [0; 8];
    assert!(io.read(Fd(19_998), &mut buf).is_err());
    assert!(io.write(Fd(19_998), b"x").is_err());
    assert!(io.accept(Fd(19_998)).is_err());
    assert!(io.close_fd(Fd(19_998)).is_err());
    assert!(io.shutdown(Fd(19_998), Shutdown::Both).is_err());
    let (fd, _peer) = pair(&mut io);
    assert_eq!(
        io.accept(fd).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
}

// ----- 7. panics ---------------------------------------------------------------

fn panicking_handler_is_removed_and_the_loop_goes_on<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    io.set_panic_policy(PanicPolicy::Contain);
    let (bad, bad_peer) = pair(&mut io);
    let (good, good_peer) = pair(&mut io);
    io.add_handler(bad, |_, _, _| panic!("planted handler panic"), Events::READ)
        .unwrap();
    let log: Log = Rc::default();
    io.add_handler(good, reading_recorder(&log), Events::READ)
        .unwrap();
    io.write(bad_peer, b"boom").unwrap();
    io.write(good_peer, b"fine").unwrap();
    assert!(io
        .run_until(TIMEOUT, |io| !io.has_handler(bad)
            && !log.borrow().is_empty())
        .unwrap());
    assert!(io.has_handler(good));
    io.check_consistency().unwrap();
    // Panicking callbacks and timeouts are contained too.
    let after = Rc::new(Cell::new(0));
    io.add_callback(|_| panic!("planted callback panic"));
    let for_callback = Rc::clone(&after);
    io.add_callback(move |_| for_callback.set(for_callback.get() + 1));
    io.call_later(Duration::ZERO, |_| panic!("planted timeout panic"));
    let for_timeout = Rc::clone(&after);
    io.call_later(Duration::ZERO, move |_| {
        for_timeout.set(for_timeout.get() + 1)
    });
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(after.get(), 2);
}

fn panicking_handler_that_replaced_itself_keeps_its_replacement<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    io.set_panic_policy(PanicPolicy::Contain);
    let (fd, _peer) = pair(&mut io);
    io.add_handler(
        fd,
        |io, fd, _| {
            io.remove_handler(fd);
            io.add_handler(fd, |_, _, _| {}, Events::READ).unwrap();
            panic!("planted panic after replacing itself");
        },
        Events::READ,
    )
    .unwrap();
    script.inject(&io, fd, Ready::READABLE);
    io.run_once(Some(Duration::ZERO)).unwrap();
    // The handler that panicked is gone already; its replacement stays.
    assert!(io.has_handler(fd));
    io.check_consistency().unwrap();
    let debug = format!("{io:?}");
    assert!(
        debug.contains("IOLoop") && debug.contains("handlers: 1"),
        "{debug}"
    );
}

fn fail_fast_policy_propagates_the_panic_and_leaves_the_loop_usable<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    io.set_panic_policy(PanicPolicy::Propagate);
    io.add_callback(|_| panic!("planted"));
    run_once_unwinds(&mut io);
    let ran = Rc::new(Cell::new(false));
    let for_callback = Rc::clone(&ran);
    io.add_callback(move |_| for_callback.set(true));
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert!(ran.get());
}

/// Under `Propagate`, a panic in any phase of an iteration loses none of
/// the work due beside it: co-due callbacks, timeouts and ready handlers
/// that had not run yet run on the next iteration, exactly once.
/// A propagated panic puts back exactly what the batch had not dispatched:
/// not a handler that ran before it (it is already queued for the next
/// iteration if still due), ahead of what is.
fn a_propagated_panic_requeues_only_the_undispatched<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let (a, _peer_a) = pair(&mut io);
    let (b, _peer_b) = pair(&mut io);
    let (c, _peer_c) = pair(&mut io);
    io.run_once(Some(Duration::ZERO)).unwrap();
    io.set_panic_policy(PanicPolicy::Propagate);
    let calls: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    // `a` never reads: it stays due, and is queued again after each call.
    let log = Rc::clone(&calls);
    io.add_handler(a, move |_, _, _| log.borrow_mut().push("a"), Events::READ)
        .unwrap();
    io.add_handler(b, |_, _, _| panic!("planted b panic"), Events::READ)
        .unwrap();
    let log = Rc::clone(&calls);
    io.add_handler(
        c,
        move |io, fd, _| {
            let _ = io.read(fd, &mut [0; 16]);
            log.borrow_mut().push("c");
        },
        Events::READ,
    )
    .unwrap();
    for fd in [a, b, c] {
        script.inject(&io, fd, Ready::READABLE);
    }
    run_once_unwinds(&mut io);
    assert_eq!(*calls.borrow(), ["a"]);
    calls.borrow_mut().clear();
    io.run_once(Some(Duration::ZERO)).unwrap();
    // `c`, which the panic kept from running, first; then `a`, once.
    assert_eq!(*calls.borrow(), ["c", "a"]);
}

fn propagated_panic_loses_no_co_due_work<B: Backend>() {
    for panicking in ["callback", "timeout", "handler"] {
        let (mut io, script) = new_loop::<B>();
        let (a, _peer_a) = pair(&mut io);
        let (b, _peer_b) = pair(&mut io);
        let (c, _peer_c) = pair(&mut io);
        // Let the connection set-up finish, so that only this test's work
        // is pending below.
        io.run_once(Some(Duration::ZERO)).unwrap();
        assert!(!io.has_pending_work());
        script.set_time(at_s(1));
        io.set_panic_policy(PanicPolicy::Propagate);
        let ran: Rc<RefCell<Vec<String>>> = Rc::default();
        let record = |what: String| {
            let ran = Rc::clone(&ran);
            move || {
                if what.ends_with("2") && what.starts_with(panicking) {
                    panic!("planted {what} panic");
                }
                ran.borrow_mut().push(what.clone());
            }
        };
        for i in 1..=3 {
            let run = record(format!("callback {i}"));
            io.add_callback(move |_| run());
            let run = record(format!("timeout {i}"));
            io.call_at(at_s(1), move |_| run());
        }
        for (i, fd) in [(1, a), (2, b), (3, c)] {
            let run = record(format!("handler {i}"));
            io.add_handler(
                fd,
                move |io, fd, _| {
                    // Drain, so that it is not due again.
                    let _ = io.read(fd, &mut [0; 16]);
                    run();
                },
                Events::READ,
            )
            .unwrap();
            script.inject(&io, fd, Ready::READABLE);
        }
        run_once_unwinds(&mut io);
        assert!(
            io.has_pending_work(),
            "{panicking}: the rest is not pending"
        );
        for _ in 0..3 {
            io.run_once(Some(Duration::ZERO)).unwrap();
        }
        let mut ran = ran.borrow().clone();
        ran.sort();
        let mut expected: Vec<String> = ["callback", "handler", "timeout"]
            .iter()
            .flat_map(|kind| (1..=3).map(move |i| format!("{kind} {i}")))
            .filter(|what| *what != format!("{panicking} 2"))
            .collect();
        expected.sort();
        assert_eq!(ran, expected, "a {panicking} panicked");
        assert_eq!(io.timeout_count(), 0, "a {panicking} panicked");
        assert!(!io.has_pending_work());
        io.check_consistency().unwrap();
    }
}

// ----- 8. the loop handle ------------------------------------------------------

fn work_sent_through_a_handle_counts_as_pending<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let handle = io.handle();
    assert!(format!("{handle:?}").contains("LoopHandle"));
    assert!(!io.has_pending_work());
    handle.add_callback(|_| {}).unwrap();
    assert!(io.has_pending_work(), "a callback sent through the handle");
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!io.has_pending_work());
    handle.stop();
    assert!(io.has_pending_work(), "a stop sent through the handle");
}

fn handle_of_a_dropped_loop_reports_it<B: Backend>() {
    let (io, _script) = new_loop::<B>();
    let handle = io.handle();
    drop(io);
    assert!(matches!(
        handle.add_callback(|_| {}),
        Err(Error::LoopClosed)
    ));
}

// ----- running ----------------------------------------------------------------------

fn stop_before_start_makes_start_return_at_once<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    io.call_later(Duration::from_millis(1), |_| {});
    io.stop();
    io.start().unwrap();
    assert_eq!(io.iterations(), 0, "start ran an iteration");
    assert_eq!(io.timeout_count(), 1);
}

fn re_entrant_start_from_run_once_is_an_error<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let inner = Rc::new(RefCell::new(None));
    let for_callback = Rc::clone(&inner);
    io.add_callback(move |io| {
        // A pending stop would make a wrongly allowed start return at once.
        io.stop();
        let start = io.start().map_err(|e| e.to_string());
        io.stop();
        let run_until = io.run_until(TIMEOUT, |_| true).map_err(|e| e.to_string());
        *for_callback.borrow_mut() = Some((start, run_until));
    });
    io.run_once(Some(Duration::ZERO)).unwrap();
    let running = Err(Error::AlreadyRunning.to_string());
    assert_eq!(
        *inner.borrow(),
        Some((running.clone(), running.map(|()| true)))
    );
}

fn run_until_returns_on_stop_and_at_its_deadline<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    io.add_callback(|io| io.stop());
    // Stopped in its first iteration: no time passes, no second iteration
    // (a loop that ignored the stop would run on to the deadline, and
    // return the same `false`).
    let (start, iterations) = (io.time(), io.iterations());
    assert!(!io.run_until(TIMEOUT, |_| false).unwrap());
    assert_eq!(io.iterations(), iterations + 1);
    assert!(io.time() < start + TIMEOUT);
    let start = io.time();
    assert!(!io.run_until(Duration::from_millis(10), |_| false).unwrap());
    assert!(io.time() >= start + Duration::from_millis(10));
}

fn run_for_runs_to_its_end_unless_stopped<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let fired = Rc::new(RefCell::new(Vec::new()));
    // "after" well after the end: on mio the wait that reaches the end may
    // return late, and the last iteration runs what is due by then.
    for (name, after) in [("within", 5), ("at the end", 10), ("after", 500)] {
        let fired = Rc::clone(&fired);
        io.call_later(Duration::from_millis(after), move |_| {
            fired.borrow_mut().push(name)
        });
    }
    // What the timeout at the end sets off at once runs too.
    let follow_up = Rc::clone(&fired);
    io.call_later(Duration::from_millis(10), move |io| {
        io.add_callback(move |_| follow_up.borrow_mut().push("its follow-up"));
    });
    let start = io.time();
    assert!(io.run_for(Duration::from_millis(10)).unwrap());
    assert!(io.time() >= start + Duration::from_millis(10));
    // What falls due at the end instant has run; what is later has not.
    assert_eq!(*fired.borrow(), ["within", "at the end", "its follow-up"]);
    // Stopped first: `false`, well before the end (and the 500 ms
    // timeout), and the stop is taken (the next run is not stopped by it).
    io.add_callback(|io| io.stop());
    let start = io.time();
    assert!(!io.run_for(TIMEOUT).unwrap());
    assert!(io.time() < start + Duration::from_millis(400));
    assert!(io.run_for(Duration::ZERO).unwrap());
    // Stopped by what runs at the end: `false`, and taken.
    io.call_later(Duration::from_millis(2), |io| io.stop());
    assert!(!io.run_for(Duration::from_millis(2)).unwrap());
    assert!(io.run_for(Duration::ZERO).unwrap());
    // A callback that re-queues itself forever is bounded at the end.
    fn again(io: &mut IOLoop<impl Poller>) {
        io.add_callback(again);
    }
    io.add_callback(again);
    let iterations = io.iterations();
    assert!(io.run_for(Duration::ZERO).unwrap());
    assert_eq!(
        io.iterations() - iterations,
        ioloop::RUN_FOR_END_ITERATIONS as u64
    );
    // Not from inside the loop.
    let inner = Rc::new(RefCell::new(None));
    let for_callback = Rc::clone(&inner);
    io.add_callback(move |io| {
        *for_callback.borrow_mut() = Some(io.run_for(TIMEOUT).map_err(|e| e.to_string()));
    });
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        *inner.borrow(),
        Some(Err(Error::AlreadyRunning.to_string()))
    );
}

/// `close_fd` on a registered socket removes its handler and closes it
/// without asking the poller to delete a registration that went with the
/// socket (on mio, that failed and was logged on every normal close).
fn close_fd_removes_the_handler_without_a_failed_delete<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    io.add_handler(listener, |_, _, _| {}, Events::READ)
        .unwrap();
    io.close_fd(listener).unwrap();
    assert!(!io.has_handler(listener));
    assert_eq!(io.poller().registration(listener), None);
    io.check_consistency().unwrap();
    assert_eq!(script.failed_deletes(), 0);
    // Nor does `close(true)`, on every fd it closes.
    for _ in 0..3 {
        let listener = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        io.add_handler(listener, |_, _, _| {}, Events::READ)
            .unwrap();
    }
    io.close(true);
    assert_eq!(script.failed_deletes(), 0);
}

fn an_interrupted_wait_is_no_error_and_a_failed_one_is<B: Backend>() {
    let (mut io, script) = new_loop::<B>();
    script.fail_next_wait(std::io::ErrorKind::Interrupted);
    io.run_once(Some(Duration::ZERO)).unwrap();
    script.fail_next_wait(std::io::ErrorKind::PermissionDenied);
    let result = io.run_once(Some(Duration::ZERO));
    assert!(matches!(result, Err(Error::Poll(_))), "{result:?}");
}

fn re_entrant_start_is_an_error<B: Backend>() {
    let (mut io, _script) = new_loop::<B>();
    let inner = Rc::new(RefCell::new(None));
    let for_callback = Rc::clone(&inner);
    io.add_callback(move |io| {
        *for_callback.borrow_mut() = Some((io.start().is_err(), io.run_once(None).is_err()));
        io.stop();
    });
    io.start().unwrap();
    assert_eq!(*inner.borrow(), Some((true, true)));
}

// ----- both backends -------------------------------------------------------------------

/// Run each generic test above on both backends.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_mio {
            $( #[test] fn $name() { super::$name::<crate::common::Mio>() } )*
        }
        mod on_sim {
            $( #[test] fn $name() { super::$name::<crate::common::Sim>() } )*
        }
    };
}

contract!(
    read_only_registration_never_reports_write,
    eof_is_delivered_as_read_and_the_read_returns_zero,
    reset_is_delivered_as_error_even_with_empty_interest,
    a_reset_after_the_peers_fin_reads_end_of_stream_and_the_error_is_broken_pipe,
    a_refused_connect_is_read_write_and_error_at_once_and_take_error_says_why,
    a_listener_is_neither_read_written_nor_shut_down,
    error_is_delivered_once_per_report,
    one_byte_reader_receives_a_1_mib_message,
    handler_that_does_not_read_is_called_again_next_iteration,
    short_read_counts_as_drained,
    an_empty_read_is_not_end_of_stream,
    interrupted_read_keeps_the_handler_due,
    consistency_check_notices_a_poller_that_disagrees,
    switching_to_write_on_a_writable_socket_runs_in_the_same_iteration,
    removed_fd_gets_no_event_from_same_batch,
    handler_re_added_on_same_fd_does_not_get_the_old_registrations_event,
    event_of_an_old_registration_never_reaches_the_new_handler_of_a_reused_fd,
    handler_removing_itself_and_adding_a_new_one_on_the_same_fd,
    handler_removing_itself_is_not_called_again,
    handler_adding_many_handlers_grows_the_table_while_it_runs,
    handler_closing_its_fd_is_dropped_after_its_call_and_the_reused_fd_keeps_its_new_handler,
    handler_replacing_itself_runs_to_the_end_of_its_call,
    a_running_handler_is_not_reachable_through_with_handler,
    a_handler_is_read_through_a_shared_loop_only_by_its_live_token,
    a_propagated_panic_requeues_only_the_undispatched,
    the_change_check_sees_a_changed_fd_and_a_wrong_count,
    callbacks_added_during_an_iteration_run_in_the_next,
    timeouts_with_equal_deadlines_fire_in_the_order_added,
    a_due_timeout_cancelling_another_due_timeout_stops_it,
    remove_timeout_after_it_fired_is_harmless,
    timeouts_wait_for_their_deadline,
    periodic_callback_skips_missed_runs_and_stays_on_its_grid,
    periodic_callback_never_fires_twice_when_the_clock_steps_back,
    periodic_callback_keeps_its_schedule_after_a_panic,
    periodic_callback_stopped_from_its_own_run_leaves_no_timeout,
    duplicate_add_fails_and_keeps_the_first_handler,
    update_of_an_unknown_fd_fails_and_changes_nothing,
    removing_an_unknown_fd_is_a_no_op,
    socket_operations_on_bad_fds_return_errors,
    panicking_handler_is_removed_and_the_loop_goes_on,
    fail_fast_policy_propagates_the_panic_and_leaves_the_loop_usable,
    panicking_handler_that_replaced_itself_keeps_its_replacement,
    propagated_panic_loses_no_co_due_work,
    handle_of_a_dropped_loop_reports_it,
    work_sent_through_a_handle_counts_as_pending,
    stop_before_start_makes_start_return_at_once,
    re_entrant_start_is_an_error,
    re_entrant_start_from_run_once_is_an_error,
    run_until_returns_on_stop_and_at_its_deadline,
    run_for_runs_to_its_end_unless_stopped,
    close_fd_removes_the_handler_without_a_failed_delete,
    an_interrupted_wait_is_no_error_and_a_failed_one_is,
);

// ----- the real backend only -------------------------------------------------------

mod mio_only {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::common::{mio_loop, new_loop, tcp_pair, Mio};
    use ioloop::{MioPoller, Token};

    /// Keeps the messages logged at `error` level, for the test below.
    struct ErrorLog(std::sync::Mutex<Vec<String>>);

    impl log::Log for ErrorLog {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.level() == log::Level::Error
        }
        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                self.0.lock().unwrap().push(record.args().to_string());
            }
        }
        fn flush(&self) {}
    }

    static ERROR_LOG: ErrorLog = ErrorLog(std::sync::Mutex::new(Vec::new()));

    #[test]
    fn a_contained_panic_is_logged_with_its_message() {
        // The only logger of this test binary; other tests' lines are ignored.
        let _ = log::set_logger(&ERROR_LOG);
        log::set_max_level(log::LevelFilter::Error);
        let mut io = mio_loop();
        io.set_panic_policy(PanicPolicy::Contain);
        io.add_callback(|_| panic!("planted callback panic 7f3a"));
        io.add_callback(|_| panic!("{}", String::from("planted string panic 7f3b")));
        io.run_once(Some(Duration::ZERO)).unwrap();
        let lines = ERROR_LOG.0.lock().unwrap().clone();
        for message in ["planted callback panic 7f3a", "planted string panic 7f3b"] {
            assert!(
                lines.iter().any(|line| line.contains(message)),
                "{message} not in {lines:?}"
            );
        }
    }

    #[test]
    fn fds_the_os_rejects_fail_and_change_nothing() {
        let mut io = mio_loop();
        let file = std::fs::File::open("Cargo.toml").unwrap();
        let regular = Fd(file.as_raw_fd());
        let r = io.add_handler(regular, |_, _, _| {}, Events::READ);
        assert!(matches!(r, Err(Error::Os { .. })), "{r:?}");
        let closed = Fd(19_999);
        let r = io.add_handler(closed, |_, _, _| {}, Events::READ);
        assert!(matches!(r, Err(Error::Os { .. })), "{r:?}");
        let r = io.add_handler(Fd(-3), |_, _, _| {}, Events::READ);
        assert!(matches!(r, Err(Error::InvalidFd(_))), "{r:?}");
        assert_eq!(io.handler_count(), 0);
        assert!(!io.has_handler(regular));
        io.check_consistency().unwrap();
        // Errors print what went wrong.
        let message = io
            .add_handler(closed, |_, _, _| {}, Events::READ)
            .unwrap_err()
            .to_string();
        assert!(message.contains("19999"), "{message}");
        // The OS's error is the source.
        let error = io
            .add_handler(closed, |_, _, _| {}, Events::READ)
            .unwrap_err();
        assert!(std::error::Error::source(&error).is_some());
    }

    /// Exits the process if `done` is not signalled within [`TIMEOUT`]: for
    /// tests whose failure is a loop that blocks forever.
    fn watchdog(what: &'static str) -> std::sync::mpsc::Sender<()> {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if done_rx.recv_timeout(TIMEOUT).is_err() {
                eprintln!("{what}");
                std::process::exit(1);
            }
        });
        done_tx
    }

    #[test]
    fn add_callback_from_another_thread_wakes_a_blocked_loop() {
        let (mut io, script) = new_loop::<Mio>();
        let handle = io.handle();
        // The sender waits until the loop is about to block with no
        // timeout: only the waker can end that wait.
        let (blocking_tx, blocking_rx) = std::sync::mpsc::channel();
        script.on_blocking_wait(move |timeout| {
            assert_eq!(timeout, None);
            let _ = blocking_tx.send(());
        });
        let sender = std::thread::spawn(move || {
            blocking_rx.recv().unwrap();
            handle.add_callback(|io| io.stop()).unwrap();
        });
        let done = watchdog("the loop was not woken by add_callback");
        io.start().unwrap();
        done.send(()).unwrap();
        sender.join().unwrap();
    }

    #[test]
    fn stop_from_another_thread_stops_the_loop() {
        let (mut io, script) = new_loop::<Mio>();
        let handle = io.handle();
        let (blocking_tx, blocking_rx) = std::sync::mpsc::channel();
        script.on_blocking_wait(move |timeout| {
            let _ = blocking_tx.send(timeout);
        });
        let stopper = std::thread::spawn(move || {
            let timeout = blocking_rx.recv().unwrap();
            handle.stop();
            timeout
        });
        // A far timeout keeps the loop asleep until the stop wakes it.
        let fired = Rc::new(Cell::new(false));
        let for_timeout = Rc::clone(&fired);
        io.call_later(TIMEOUT, move |_| for_timeout.set(true));
        io.start().unwrap();
        let timeout = stopper.join().unwrap();
        assert!(timeout.is_some_and(|t| t > TIMEOUT / 2), "{timeout:?}");
        assert!(!fired.get(), "the loop slept until its timeout: not woken");
    }

    #[test]
    fn close_with_all_fds_closes_registered_sockets() {
        let mut io = mio_loop();
        let (fd, mut peer) = tcp_pair(&mut io);
        io.add_handler(fd, |_, _, _| {}, Events::READ).unwrap();
        io.close(true);
        let mut buf = [0; 1];
        peer.set_read_timeout(Some(TIMEOUT)).unwrap();
        assert_eq!(peer.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn close_with_all_fds_closes_fds_the_user_registered() {
        let mut io = mio_loop();
        let (ours, mut peer) = UnixStream::pair().unwrap();
        // The loop takes the fd over: `close(true)` closes it, as Tornado.
        let fd = Fd(ours.into_raw_fd());
        io.add_handler(fd, |_, _, _| {}, Events::READ).unwrap();
        io.close(true);
        // A Unix socket's close is seen by its peer at once.
        peer.set_nonblocking(true).unwrap();
        assert_eq!(peer.read(&mut [0; 1]).unwrap(), 0, "the fd is still open");
    }

    #[test]
    fn user_owned_socket_is_watched_and_read_through_the_loop() {
        let mut io = mio_loop();
        let (reader, mut writer) = UnixStream::pair().unwrap();
        reader.set_nonblocking(true).unwrap();
        let fd = Fd(reader.as_raw_fd());
        let got = Rc::new(RefCell::new(Vec::new()));
        let for_handler = Rc::clone(&got);
        io.add_handler(
            fd,
            move |io, fd, _| {
                let mut buf = [0; 4];
                match io.read(fd, &mut buf) {
                    Ok(n) => for_handler.borrow_mut().extend_from_slice(&buf[..n]),
                    Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
                }
            },
            Events::READ,
        )
        .unwrap();
        writer.write_all(b"hello, loop").unwrap();
        assert!(io.run_until(TIMEOUT, |_| got.borrow().len() == 11).unwrap());
        assert_eq!(&*got.borrow(), b"hello, loop");
    }

    #[test]
    fn a_user_fd_reads_its_end_of_stream_as_zero_and_writes_nothing_as_zero() {
        let mut io = mio_loop();
        let (ours, peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let fd = Fd(ours.as_raw_fd());
        assert_eq!(io.write(fd, b"").unwrap(), 0);
        drop(peer);
        assert_eq!(io.read(fd, &mut [0; 8]).unwrap(), 0, "end of stream");
        // The poller says what it holds, not what it does not.
        assert_eq!(
            format!("{:?}", io.poller()),
            "MioPoller { registrations: 0 }"
        );
    }

    #[test]
    fn close_fd_of_a_user_fd_fails_and_changes_nothing() {
        let mut io = mio_loop();
        let (reader, mut writer) = UnixStream::pair().unwrap();
        let fd = Fd(reader.as_raw_fd());
        let log: Log = Rc::default();
        io.add_handler(fd, reading_recorder(&log), Events::READ)
            .unwrap();
        // The poller does not close what it did not create; the refusal
        // leaves the handler and its registration in place.
        assert!(io.close_fd(fd).is_err());
        assert!(io.has_handler(fd));
        io.check_consistency().unwrap();
        writer.write_all(b"x").unwrap();
        assert!(io.run_until(TIMEOUT, |_| !log.borrow().is_empty()).unwrap());
        assert!(io.remove_handler(fd));
    }

    #[test]
    fn poller_refusing_to_close_a_user_fd_keeps_its_registration() {
        let mut poller = MioPoller::new().unwrap();
        let (ours, _peer) = UnixStream::pair().unwrap();
        let fd = Fd(ours.as_raw_fd());
        poller.add(fd, Token::new(fd, 1), Events::READ).unwrap();
        assert!(poller.close(fd).is_err());
        assert_eq!(
            poller.registration(fd),
            Some((Token::new(fd, 1), Events::READ))
        );
        assert_eq!(poller.registration_count(), 1);
    }

    #[test]
    fn a_short_read_of_a_datagram_socket_the_user_registered_is_not_drained() {
        // Two datagrams wait on a Unix datagram socket the poller did not
        // create: a read that returns fewer bytes than asked took one of
        // them, not everything, so the handler must be called again for
        // the second (epoll, edge-triggered, reports no new edge for it).
        let mut io = mio_loop();
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.send(b"one").unwrap();
        theirs.send(b"two").unwrap();
        let fd = Fd(ours.as_raw_fd());
        let got = Rc::new(RefCell::new(Vec::new()));
        let for_handler = Rc::clone(&got);
        io.add_handler(
            fd,
            move |io, fd, _| {
                let mut buf = [0; 64];
                if let Ok(n) = io.read(fd, &mut buf) {
                    for_handler.borrow_mut().push(buf[..n].to_vec());
                }
            },
            Events::READ,
        )
        .unwrap();
        assert!(io.run_until(TIMEOUT, |_| got.borrow().len() == 2).unwrap());
        assert_eq!(*got.borrow(), [b"one".to_vec(), b"two".to_vec()]);
        assert!(io.remove_handler(fd));
    }

    #[test]
    fn close_registered_closes_a_user_fd_and_says_so() {
        let mut poller = MioPoller::new().unwrap();
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let fd = Fd(ours.into_raw_fd());
        poller.add(fd, Token::new(fd, 1), Events::READ).unwrap();
        poller.close_registered(fd).unwrap();
        assert_eq!(poller.registration(fd), None);
        peer.set_nonblocking(true).unwrap();
        assert_eq!(peer.read(&mut [0; 1]).unwrap(), 0, "the fd is still open");
        // Not registered any more: refused, nothing closed.
        assert!(poller.close_registered(fd).is_err());
    }

    #[test]
    fn deleting_an_fd_closed_behind_the_pollers_back_forgets_it() {
        let mut poller = MioPoller::new().unwrap();
        let (ours, _peer) = UnixStream::pair().unwrap();
        let fd = Fd(ours.as_raw_fd());
        poller.add(fd, Token::new(fd, 1), Events::READ).unwrap();
        drop(ours);
        // The kernel dropped the registration with the file: `delete`
        // succeeds and the poller's own record goes with it.
        poller.delete(fd).unwrap();
        assert_eq!(poller.registration(fd), None);
        assert_eq!(poller.registration_count(), 0);
        // A failed delete changes nothing.
        assert!(poller.delete(fd).is_err());
        assert_eq!(poller.registration_count(), 0);
    }
}
