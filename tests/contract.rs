//! The contract of DESIGN.md, point by point, on the real backend.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use common::{mio_loop, tcp_pair, ManualClock};
use ioloop::{
    Error, Event, Events, Fd, IOLoop, Instant, MioPoller, PanicPolicy, PeriodicCallback, Poller,
    Ready,
};

const TIMEOUT: Duration = Duration::from_secs(10);

type Log = Rc<RefCell<Vec<(Fd, Events)>>>;

/// A handler that records its calls and does nothing else.
fn recorder(log: &Log) -> impl FnMut(&mut IOLoop<MioPoller>, Fd, Events) + 'static {
    let log = Rc::clone(log);
    move |_io, fd, events| log.borrow_mut().push((fd, events))
}

/// A handler that records its calls and reads (and drops) what is there.
fn reading_recorder(log: &Log) -> impl FnMut(&mut IOLoop<MioPoller>, Fd, Events) + 'static {
    let log = Rc::clone(log);
    move |io, fd, events| {
        log.borrow_mut().push((fd, events));
        let mut buf = [0; 64];
        let _ = io.read(fd, &mut buf);
    }
}

// ----- 1. events --------------------------------------------------------------

#[test]
fn read_only_registration_never_reports_write() {
    let mut io = mio_loop();
    let (fd, mut peer) = tcp_pair(&mut io);
    let log: Log = Rc::default();
    io.add_handler(fd, reading_recorder(&log), Events::READ)
        .unwrap();
    peer.write_all(b"ping").unwrap();
    assert!(io.run_until(TIMEOUT, |_| !log.borrow().is_empty()).unwrap());
    for _ in 0..5 {
        io.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    assert!(
        log.borrow().iter().all(|(_, e)| *e == Events::READ),
        "{log:?}"
    );
}

#[test]
fn eof_is_delivered_as_read_and_the_read_returns_zero() {
    let mut io = mio_loop();
    let (fd, peer) = tcp_pair(&mut io);
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
    common::half_close(&peer);
    assert!(io.run_until(TIMEOUT, |io| io.handler_count() == 0).unwrap());
    assert_eq!(*reads.borrow(), vec![(Events::READ, 0)]);
}

#[test]
fn reset_is_delivered_as_error_even_with_empty_interest() {
    let mut io = mio_loop();
    let (fd, peer) = tcp_pair(&mut io);
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
    // The reset reaches us as an error once we write into the dead socket.
    common::reset(peer);
    std::thread::sleep(Duration::from_millis(20));
    let _ = io.write(fd, b"x");
    assert!(io.run_until(TIMEOUT, |io| io.handler_count() == 0).unwrap());
    let log = log.borrow();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].1, Events::ERROR, "{log:?}");
}

// ----- 2. level-triggered -------------------------------------------------------

#[test]
fn one_byte_reader_receives_a_1_mib_message() {
    const SIZE: usize = 1 << 20;
    let mut io = mio_loop();
    let (fd, mut peer) = tcp_pair(&mut io);
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
    let writer = std::thread::spawn(move || peer.write_all(&vec![7u8; SIZE]).map(|_| peer));
    assert!(io
        .run_until(TIMEOUT * 3, |_| received.get() == SIZE)
        .unwrap());
    drop(writer.join().unwrap().unwrap());
}

#[test]
fn handler_that_does_not_read_is_called_again_next_iteration() {
    let mut io = mio_loop();
    let (fd, mut peer) = tcp_pair(&mut io);
    let calls = Rc::new(Cell::new(0u32));
    let for_handler = Rc::clone(&calls);
    io.add_handler(
        fd,
        move |_, _, _| for_handler.set(for_handler.get() + 1),
        Events::READ,
    )
    .unwrap();
    peer.write_all(b"unread").unwrap();
    assert!(io.run_until(TIMEOUT, |_| calls.get() == 1).unwrap());
    // No new bytes arrive, yet the handler is called on every iteration.
    for expected in 2..=4 {
        io.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(calls.get(), expected);
    }
}

#[test]
fn switching_to_write_on_a_writable_socket_runs_in_the_same_iteration() {
    let mut io = mio_loop();
    let (fd, mut peer) = tcp_pair(&mut io);
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
    peer.write_all(b"hi").unwrap();
    assert!(io.run_until(TIMEOUT, |_| !log.borrow().is_empty()).unwrap());
    let events: Vec<Events> = log.borrow().iter().map(|(_, e)| *e).collect();
    assert_eq!(events, vec![Events::READ, Events::WRITE]);
}

// ----- 3. the handler map is the truth ------------------------------------------

/// Two connections with data waiting, so that both land in one poll batch.
fn two_ready_connections(io: &mut IOLoop<MioPoller>) -> [(Fd, std::net::TcpStream); 2] {
    let mut pair_a = tcp_pair(io);
    let mut pair_b = tcp_pair(io);
    pair_a.1.write_all(b"a").unwrap();
    pair_b.1.write_all(b"b").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    [pair_a, pair_b]
}

#[test]
fn removed_fd_gets_no_event_from_same_batch() {
    let mut io = mio_loop();
    let [(a, _pa), (b, _pb)] = two_ready_connections(&mut io);
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
    io.run_once(Some(Duration::from_millis(100))).unwrap();
    assert_eq!(log.borrow().len(), 1, "{log:?}");
    assert_eq!(io.handler_count(), 1);
    io.check_consistency().unwrap();
}

#[test]
fn handler_re_added_on_same_fd_does_not_get_the_old_registrations_event() {
    let mut io = mio_loop();
    let [(a, _pa), (b, _pb)] = two_ready_connections(&mut io);
    let new_handler_calls = Rc::new(Cell::new(0u32));
    let old_b_calls = Rc::new(Cell::new(0u32));
    let for_old_b = Rc::clone(&old_b_calls);
    io.add_handler(
        b,
        move |_, _, _| for_old_b.set(for_old_b.get() + 1),
        Events::READ,
    )
    .unwrap();
    let for_a = Rc::clone(&new_handler_calls);
    io.add_handler(
        a,
        move |io, _, _| {
            // b's event of this batch was collected under its old token.
            io.remove_handler(b);
            let counter = Rc::clone(&for_a);
            io.add_handler(
                b,
                move |_, _, _| counter.set(counter.get() + 1),
                Events::READ,
            )
            .unwrap();
            io.remove_handler(a);
        },
        Events::READ,
    )
    .unwrap();
    io.run_once(Some(Duration::from_millis(100))).unwrap();
    if old_b_calls.get() == 0 {
        // a ran first: the new handler must wait for an event of its own.
        assert_eq!(new_handler_calls.get(), 0);
        assert!(io
            .run_until(TIMEOUT, |_| new_handler_calls.get() > 0)
            .unwrap());
    }
    io.check_consistency().unwrap();
}

#[test]
fn event_of_an_old_registration_never_reaches_the_new_handler_of_a_reused_fd() {
    // Real kernels drop pending events on close; the loop must not rely on
    // it. Report an event under the old token after the fd was reused.
    let (poller, _clock, injected) = ManualClock::with_injection();
    let mut io = IOLoop::new(poller);
    let (fd, _peer) = tcp_pair(&mut io);
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
    injected.borrow_mut().push(Event {
        token: old_token,
        ready: Ready::READABLE | Ready::ERROR,
    });
    for _ in 0..3 {
        io.run_once(None).unwrap();
    }
    assert_eq!(
        calls.get(),
        0,
        "the new handler got the old registration's event"
    );
}

#[test]
fn handler_removing_itself_and_adding_a_new_one_on_the_same_fd() {
    let mut io = mio_loop();
    let (fd, mut peer) = tcp_pair(&mut io);
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
    peer.write_all(b"x").unwrap();
    assert!(io.run_until(TIMEOUT, |_| second_calls.get() > 0).unwrap());
    assert_eq!(io.handler_count(), 1);
    io.check_consistency().unwrap();
}

#[test]
fn handler_removing_itself_is_not_called_again() {
    let mut io = mio_loop();
    let (fd, mut peer) = tcp_pair(&mut io);
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
    peer.write_all(b"x").unwrap();
    assert!(io.run_until(TIMEOUT, |_| calls.get() > 0).unwrap());
    for _ in 0..3 {
        io.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    assert_eq!(calls.get(), 1);
}

// ----- 5. iteration order ---------------------------------------------------------

#[test]
fn callbacks_added_during_an_iteration_run_in_the_next() {
    let mut io = mio_loop();
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
}

#[test]
fn timeouts_with_equal_deadlines_fire_in_the_order_added() {
    let (poller, clock) = ManualClock::new();
    let mut io = IOLoop::new(poller);
    let order = Rc::new(RefCell::new(Vec::new()));
    let deadline = Instant::from_epoch(Duration::from_secs(1));
    for id in 0..20 {
        let for_timeout = Rc::clone(&order);
        io.call_at(deadline, move |_| for_timeout.borrow_mut().push(id));
    }
    let for_early = Rc::clone(&order);
    io.call_at(Instant::from_epoch(Duration::from_millis(500)), move |_| {
        for_early.borrow_mut().push(-1)
    });
    clock.set(deadline);
    io.run_once(None).unwrap();
    let mut expected = vec![-1];
    expected.extend(0..20);
    assert_eq!(*order.borrow(), expected);
}

#[test]
fn a_due_timeout_cancelling_another_due_timeout_stops_it() {
    let (poller, clock) = ManualClock::new();
    let mut io = IOLoop::new(poller);
    let ran = Rc::new(RefCell::new(Vec::new()));
    let deadline = Instant::from_epoch(Duration::from_secs(1));
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
    clock.set(deadline);
    io.run_once(None).unwrap();
    io.run_once(None).unwrap();
    assert_eq!(*ran.borrow(), vec!["first"]);
    assert_eq!(io.timeout_count(), 0);
}

#[test]
fn remove_timeout_after_it_fired_is_harmless() {
    let mut io = mio_loop();
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

#[test]
fn timeouts_wait_for_their_deadline() {
    let (poller, clock) = ManualClock::new();
    let mut io = IOLoop::new(poller);
    let fired = Rc::new(Cell::new(false));
    let for_timeout = Rc::clone(&fired);
    io.call_later(Duration::from_secs(5), move |_| for_timeout.set(true));
    clock.set(Instant::from_epoch(Duration::from_millis(4999)));
    io.run_once(None).unwrap();
    assert!(!fired.get());
    clock.set(Instant::from_epoch(Duration::from_secs(5)));
    io.run_once(None).unwrap();
    assert!(fired.get());
}

#[test]
fn periodic_callback_skips_missed_runs_and_stays_on_its_grid() {
    let (poller, clock) = ManualClock::new();
    let mut io = IOLoop::new(poller);
    let runs = Rc::new(RefCell::new(Vec::new()));
    let for_periodic = Rc::clone(&runs);
    let periodic = PeriodicCallback::new(
        move |io: &mut IOLoop<ManualClock>| for_periodic.borrow_mut().push(io.time()),
        Duration::from_secs(10),
    )
    .unwrap();
    periodic.start(&mut io);
    let at = |s: u64| Instant::from_epoch(Duration::from_secs(s));
    clock.set(at(10));
    io.run_once(None).unwrap();
    // The loop was busy until t=35: runs at 20 and 30 are skipped.
    clock.set(at(35));
    io.run_once(None).unwrap();
    clock.set(at(39));
    io.run_once(None).unwrap();
    clock.set(at(40));
    io.run_once(None).unwrap();
    assert_eq!(*runs.borrow(), vec![at(10), at(35), at(40)]);
    periodic.stop(&mut io);
    clock.set(at(100));
    io.run_once(None).unwrap();
    assert_eq!(runs.borrow().len(), 3);
    assert!(!periodic.is_running());
    assert!(PeriodicCallback::new(|_: &mut IOLoop<ManualClock>| {}, Duration::ZERO).is_err());
}

#[test]
fn periodic_callback_never_fires_twice_when_the_clock_steps_back() {
    let (poller, clock) = ManualClock::new();
    let mut io = IOLoop::new(poller);
    let runs = Rc::new(Cell::new(0u32));
    let for_periodic = Rc::clone(&runs);
    let periodic = PeriodicCallback::new(
        move |_: &mut IOLoop<ManualClock>| for_periodic.set(for_periodic.get() + 1),
        Duration::from_secs(10),
    )
    .unwrap();
    periodic.start(&mut io);
    clock.set(Instant::from_epoch(Duration::from_secs(10)));
    io.run_once(None).unwrap();
    assert_eq!(runs.get(), 1);
    // The poller's clock steps back; the loop's time does not.
    clock.set(Instant::from_epoch(Duration::from_secs(3)));
    for _ in 0..3 {
        io.run_once(None).unwrap();
    }
    assert_eq!(runs.get(), 1);
    assert_eq!(io.time(), Instant::from_epoch(Duration::from_secs(10)));
}

// ----- 6. bad input ----------------------------------------------------------------

#[test]
fn duplicate_add_fails_and_keeps_the_first_handler() {
    let mut io = mio_loop();
    let (fd, mut peer) = tcp_pair(&mut io);
    let log: Log = Rc::default();
    io.add_handler(fd, recorder(&log), Events::READ).unwrap();
    let second = io.add_handler(fd, |_, _, _| panic!("second handler ran"), Events::WRITE);
    assert!(matches!(second, Err(Error::AlreadyRegistered(f)) if f == fd));
    assert_eq!(io.interest(fd), Some(Events::READ));
    peer.write_all(b"x").unwrap();
    assert!(io.run_until(TIMEOUT, |_| !log.borrow().is_empty()).unwrap());
    io.check_consistency().unwrap();
}

#[test]
fn update_of_an_unknown_fd_fails_and_changes_nothing() {
    let mut io = mio_loop();
    let (fd, _peer) = tcp_pair(&mut io);
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
}

#[test]
fn removing_an_unknown_fd_is_a_no_op() {
    let mut io = mio_loop();
    assert!(!io.remove_handler(Fd(12_345)));
    assert!(!io.remove_handler(Fd(-1)));
    assert_eq!(io.handler_count(), 0);
    io.check_consistency().unwrap();
}

#[test]
fn socket_operations_on_bad_fds_return_errors() {
    let mut io = mio_loop();
    let mut buf = [0; 8];
    assert!(io.read(Fd(19_998), &mut buf).is_err());
    assert!(io.write(Fd(19_998), b"x").is_err());
    assert!(io.accept(Fd(19_998)).is_err());
    assert!(io.close_fd(Fd(19_998)).is_err());
    assert!(io.shutdown(Fd(19_998), Shutdown::Both).is_err());
    let (fd, _peer) = tcp_pair(&mut io);
    assert_eq!(
        io.accept(fd).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

// ----- 7. panics ---------------------------------------------------------------

#[test]
fn panicking_handler_is_removed_and_the_loop_goes_on() {
    let mut io = mio_loop();
    let (bad, mut bad_peer) = tcp_pair(&mut io);
    let (good, mut good_peer) = tcp_pair(&mut io);
    io.add_handler(bad, |_, _, _| panic!("planted handler panic"), Events::READ)
        .unwrap();
    let log: Log = Rc::default();
    io.add_handler(good, reading_recorder(&log), Events::READ)
        .unwrap();
    bad_peer.write_all(b"boom").unwrap();
    good_peer.write_all(b"fine").unwrap();
    assert!(io
        .run_until(TIMEOUT, |io| !io.has_handler(bad)
            && !log.borrow().is_empty())
        .unwrap());
    assert!(io.has_handler(good));
    io.check_consistency().unwrap();
    // Panicking callbacks and timeouts are contained too.
    io.add_callback(|_| panic!("planted callback panic"));
    io.call_later(Duration::ZERO, |_| panic!("planted timeout panic"));
    io.run_once(Some(Duration::ZERO)).unwrap();
    io.run_once(Some(Duration::ZERO)).unwrap();
}

#[test]
fn fail_fast_policy_propagates_the_panic_and_leaves_the_loop_usable() {
    let mut io = mio_loop();
    io.set_panic_policy(PanicPolicy::Propagate);
    io.add_callback(|_| panic!("planted"));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        io.run_once(Some(Duration::ZERO))
    }));
    assert!(unwound.is_err());
    let ran = Rc::new(Cell::new(false));
    let for_callback = Rc::clone(&ran);
    io.add_callback(move |_| for_callback.set(true));
    io.run_once(Some(Duration::ZERO)).unwrap();
    assert!(ran.get());
}

// ----- 8. cross-thread wake-up ---------------------------------------------------

#[test]
fn add_callback_from_another_thread_wakes_a_blocked_loop() {
    let mut io = mio_loop();
    let handle = io.handle();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let sent_at = std::time::Instant::now();
        handle
            .add_callback(move |io| {
                let latency = sent_at.elapsed();
                io.add_callback(move |_| println!("wake-up latency {latency:?}"));
                io.stop();
            })
            .unwrap();
    });
    let started = std::time::Instant::now();
    // No timeout, no handler: without the wake-up this blocks forever, so run
    // it under a watchdog that stops the test instead of hanging.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if done_rx.recv_timeout(TIMEOUT).is_err() {
            eprintln!("the loop was not woken");
            std::process::exit(1);
        }
    });
    io.start().unwrap();
    done_tx.send(()).unwrap();
    sender.join().unwrap();
    assert!(started.elapsed() < TIMEOUT);
}

#[test]
fn stop_from_another_thread_stops_the_loop() {
    let mut io = mio_loop();
    let handle = io.handle();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        handle.stop();
    });
    // A far timeout keeps the loop asleep until the stop wakes it.
    io.call_later(TIMEOUT, |_| panic!("not woken by stop"));
    io.start().unwrap();
    stopper.join().unwrap();
}

#[test]
fn handle_of_a_dropped_loop_reports_it() {
    let io = mio_loop();
    let handle = io.handle();
    drop(io);
    assert!(matches!(
        handle.add_callback(|_| {}),
        Err(Error::LoopClosed)
    ));
}

// ----- running ----------------------------------------------------------------------

#[test]
fn stop_before_start_makes_start_return_at_once() {
    let mut io = mio_loop();
    io.call_later(TIMEOUT, |_| panic!("start did not return at once"));
    io.stop();
    io.start().unwrap();
}

#[test]
fn re_entrant_start_is_an_error() {
    let mut io = mio_loop();
    let inner = Rc::new(RefCell::new(None));
    let for_callback = Rc::clone(&inner);
    io.add_callback(move |io| {
        *for_callback.borrow_mut() = Some((io.start().is_err(), io.run_once(None).is_err()));
        io.stop();
    });
    io.start().unwrap();
    assert_eq!(*inner.borrow(), Some((true, true)));
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

// ----- 9. user-owned fds ---------------------------------------------------------------

#[test]
fn user_owned_pipe_is_watched_and_read_through_the_loop() {
    let mut io = mio_loop();
    let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
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
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            }
        },
        Events::READ,
    )
    .unwrap();
    writer.write_all(b"hello, loop").unwrap();
    assert!(io.run_until(TIMEOUT, |_| got.borrow().len() == 11).unwrap());
    assert_eq!(&*got.borrow(), b"hello, loop");
    // The poller does not close what it did not create.
    assert!(io.close_fd(fd).is_err());
    assert!(!io.has_handler(fd));
}
