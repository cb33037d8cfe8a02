//! `IOLoop::channel`: messages from other threads to a handler on the
//! loop's thread, which may hold `Rc` state. Real threads on mio (the
//! loop wakes on the send; no test sleeps), and the simulator.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use ioloop::{IOLoop, LoopSender, MioPoller, PanicPolicy, SendError};
use ioloop_sim::{FaultPreset, SimNet};

const LIMIT: Duration = Duration::from_secs(10);

fn mio_loop() -> IOLoop<MioPoller> {
    let mut io = IOLoop::new(MioPoller::new().unwrap());
    io.set_panic_policy(PanicPolicy::Propagate);
    io
}

#[test]
fn messages_from_threads_reach_the_handler_in_each_senders_order() {
    const EACH: u32 = 500;
    let mut io = mio_loop();
    let got: Rc<RefCell<Vec<(u32, u32)>>> = Rc::default();
    let log = Rc::clone(&got);
    let sender = io.channel(move |_, message: (u32, u32)| log.borrow_mut().push(message));
    // Both threads start sending at once, most likely while the loop
    // sleeps in its poll (nothing makes sure: the wake-ups are exercised,
    // not proven).
    let start = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|thread| {
            let (sender, start) = (sender.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for n in 0..EACH {
                    sender.send((thread, n)).unwrap();
                }
            })
        })
        .collect();
    drop(sender);
    let all = io
        .run_until(LIMIT, |_| got.borrow().len() == 2 * EACH as usize)
        .unwrap();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(all, "{} of {} messages", got.borrow().len(), 2 * EACH);
    for thread in 0..2 {
        let order: Vec<u32> = got
            .borrow()
            .iter()
            .filter(|(from, _)| *from == thread)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(order, (0..EACH).collect::<Vec<_>>(), "thread {thread}");
    }
}

#[test]
fn a_send_to_a_dropped_loop_gives_the_message_back() {
    let mut io = mio_loop();
    let sender = io.channel(|_, _: String| {});
    drop(io);
    let error = sender.send("hello".to_string()).unwrap_err();
    assert_eq!(error, SendError("hello".to_string()));
    assert_eq!(error.to_string(), "sending into a loop that was dropped");
    assert_eq!(
        format!("{error:?}"),
        "SendError(..)",
        "the message may not be Debug"
    );

    // Messages queued before the loop went, then one more: refused too,
    // although its queue was not empty (no wake to fail).
    let mut io = mio_loop();
    let sender = io.channel(|_, _: u8| {});
    sender.send(1).unwrap();
    sender.send(2).unwrap();
    drop(io);
    assert_eq!(sender.send(3), Err(SendError(3)));
}

/// Drops to say its handler was dropped.
struct Dropped(Rc<Cell<bool>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn the_last_sender_dropped_lets_the_handler_go_after_the_queued_messages() {
    let mut io = mio_loop();
    let (got, dropped) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
    let (count, guard) = (Rc::clone(&got), Dropped(Rc::clone(&dropped)));
    let sender = io.channel(move |_, n: u32| {
        let _ = &guard;
        count.set(count.get() + n);
    });
    let second = sender.clone();
    std::thread::spawn(move || {
        sender.send(1).unwrap();
        second.send(2).unwrap();
        // Both senders dropped here, their messages still queued.
    })
    .join()
    .unwrap();
    assert!(!dropped.get());
    io.run_until(LIMIT, |_| dropped.get()).unwrap();
    assert_eq!(got.get(), 3, "the queued messages first");
    assert!(dropped.get());
}

/// A loop dropped while a callback queued from another thread holds the
/// last sender: the sender's drop, as the callback goes, asks the loop to
/// forget the channel — it must not wait on the lock the drop holds.
#[test]
fn a_loop_dropped_with_a_queued_callback_holding_the_last_sender_does_not_deadlock() {
    // On a thread of its own, so that a deadlock fails the test in
    // bounded time instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut io = mio_loop();
        let sender = io.channel(|_, _: ()| {});
        io.handle().add_callback(move |_| drop(sender)).unwrap();
        drop(io);
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(LIMIT)
        .expect("dropping the loop deadlocked");
}

#[test]
fn the_last_senders_messages_after_a_panic_are_handled_and_the_handler_let_go() {
    let mut io = mio_loop();
    io.set_panic_policy(PanicPolicy::Contain);
    let (got, dropped) = (Rc::new(RefCell::new(Vec::new())), Rc::new(Cell::new(false)));
    let (log, guard) = (Rc::clone(&got), Dropped(Rc::clone(&dropped)));
    let sender = io.channel(move |_, n: u32| {
        let _ = &guard;
        assert_ne!(n, 2, "a handler that fails on 2");
        log.borrow_mut().push(n);
    });
    std::thread::spawn(move || {
        for n in 1..=4 {
            sender.send(n).unwrap();
        }
        // The only sender, dropped with its messages queued.
    })
    .join()
    .unwrap();
    io.run_until(LIMIT, |_| dropped.get()).unwrap();
    assert_eq!(*got.borrow(), [1, 3, 4]);
    assert!(dropped.get(), "the handler outlived its senders");
}

#[test]
fn under_propagate_a_panic_leaves_the_rest_for_the_next_run() {
    let mut io = mio_loop(); // PanicPolicy::Propagate
    let got: Rc<RefCell<Vec<u32>>> = Rc::default();
    let log = Rc::clone(&got);
    let sender = io.channel(move |_, n: u32| {
        assert_ne!(n, 2, "a handler that fails on 2");
        log.borrow_mut().push(n);
    });
    for n in 1..=3 {
        sender.send(n).unwrap();
    }
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        io.run_once(Some(Duration::ZERO))
    }));
    assert!(panicked.is_err(), "propagated");
    assert_eq!(*got.borrow(), [1]);
    io.run_until(LIMIT, |_| got.borrow().len() == 2).unwrap();
    assert_eq!(*got.borrow(), [1, 3]);
}

/// Under `Propagate`, a panic in the last drain (the one that forgets the
/// channel) ends that drain before it lets the handler go: the drain asks
/// for another go at forgetting it, or the handler would outlive its
/// senders.
#[test]
fn a_panic_in_the_forgetting_drain_still_lets_the_handler_go() {
    let mut io = mio_loop(); // PanicPolicy::Propagate
    let (got, dropped) = (Rc::new(RefCell::new(Vec::new())), Rc::new(Cell::new(false)));
    let (log, guard) = (Rc::clone(&got), Dropped(Rc::clone(&dropped)));
    let sender = io.channel(move |_, n: u32| {
        let _ = &guard;
        assert!(n != 2 && n != 4, "a handler that fails on 2 and 4");
        log.borrow_mut().push(n);
    });
    for n in 1..=5 {
        sender.send(n).unwrap();
    }
    drop(sender);
    let mut panics = 0;
    for _ in 0..10 {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            io.run_once(Some(Duration::ZERO))
        }));
        panics += usize::from(run.is_err());
        if dropped.get() {
            break;
        }
    }
    assert_eq!(panics, 2);
    assert_eq!(*got.borrow(), [1, 3, 5]);
    assert!(dropped.get(), "the handler outlived its senders");
}

#[test]
fn messages_after_a_panicking_one_are_still_handled() {
    let mut io = mio_loop();
    io.set_panic_policy(PanicPolicy::Contain);
    let got: Rc<RefCell<Vec<u32>>> = Rc::default();
    let log = Rc::clone(&got);
    let sender = io.channel(move |_, n: u32| {
        assert_ne!(n, 3, "a handler that fails on 3");
        log.borrow_mut().push(n);
    });
    // A sender kept: the messages after the panic are not left to the
    // last sender's drop.
    let kept = sender.clone();
    std::thread::spawn(move || {
        for n in 1..=6 {
            sender.send(n).unwrap();
        }
    })
    .join()
    .unwrap();
    io.run_until(LIMIT, |_| got.borrow().len() == 5).unwrap();
    assert_eq!(*got.borrow(), [1, 2, 4, 5, 6]);
    drop(kept);
}

#[test]
fn a_handler_may_send_to_its_own_channel_from_the_loop() {
    // Each message re-sent from the handler waits for a later iteration:
    // no lock held, no recursion, and no drain that never ends.
    let mut io = mio_loop();
    let got: Rc<RefCell<Vec<(u32, u64)>>> = Rc::default();
    let own: Rc<RefCell<Option<LoopSender<u32>>>> = Rc::default();
    let (log, again) = (Rc::clone(&got), Rc::clone(&own));
    let sender = io.channel(move |io, n: u32| {
        log.borrow_mut().push((n, io.iterations()));
        if n < 3 {
            again.borrow().as_ref().unwrap().send(n + 1).unwrap();
            assert_eq!(
                log.borrow().len(),
                n as usize + 1,
                "not handled inside send"
            );
        }
    });
    sender.send(0).unwrap();
    *own.borrow_mut() = Some(sender);
    io.run_until(LIMIT, |_| got.borrow().len() == 4).unwrap();
    let got = got.borrow();
    assert_eq!(
        got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    for pair in got.windows(2) {
        assert!(pair[1].1 > pair[0].1, "one message an iteration: {got:?}");
    }
    // The handler holds its own sender: it lives on until the loop goes.
    own.borrow_mut().take();
}

#[test]
fn a_sender_faster_than_the_handler_does_not_hold_the_loop_in_one_callback() {
    // Every message handled sends two more: a queue that never empties.
    // Timers still run, and `stop` is heard.
    let mut io = mio_loop();
    let handled = Rc::new(Cell::new(0u64));
    let own: Rc<RefCell<Option<LoopSender<()>>>> = Rc::default();
    let (count, again) = (Rc::clone(&handled), Rc::clone(&own));
    let sender = io.channel(move |_, ()| {
        count.set(count.get() + 1);
        // Bounded, so that a drain that never ends fails, not hangs.
        if count.get() < 100_000 {
            let again = again.borrow();
            let sender = again.as_ref().unwrap();
            sender.send(()).unwrap();
            sender.send(()).unwrap();
        }
    });
    sender.send(()).unwrap();
    *own.borrow_mut() = Some(sender);
    let fired = Rc::new(Cell::new(false));
    let for_timer = Rc::clone(&fired);
    io.call_later(Duration::ZERO, move |io| {
        for_timer.set(true);
        io.stop();
    });
    io.start().unwrap();
    assert!(fired.get());
    assert!(
        handled.get() < 1_000,
        "{} messages in the meantime",
        handled.get()
    );
    own.borrow_mut().take();
}

#[test]
fn a_channel_works_on_the_simulator_too() {
    let net = SimNet::new(7, FaultPreset::None, false);
    let mut io = IOLoop::new(net.host("10.0.0.1".parse().unwrap()));
    io.set_panic_policy(PanicPolicy::Propagate);
    let got = Rc::new(Cell::new(0));
    let count = Rc::clone(&got);
    let sender = io.channel(move |_, n: u64| count.set(count.get() + n));
    sender.send(20).unwrap();
    sender.send(22).unwrap();
    assert_eq!(got.get(), 0, "not from inside send");
    io.run_until(LIMIT, |_| got.get() == 42).unwrap();
    assert_eq!(got.get(), 42);
}
