//! UDP on the simulator: the contract of `tests/udp_contract` on a simulated host, then datagrams between hosts through the public harness — faults that fire and are seen, partitions and crashes that drop datagrams, and a planted twin caught by a request the server gets twice.

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

// ----- datagrams between hosts, through the public harness ---------------------------

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ioloop::{Events, Fd, Instant, Poller, TimeoutHandle};
use ioloop_sim::shrink::{shrink_schedule, Attempt, Schedule};
use ioloop_sim::{
    BoxError, Builder, CrashMode, DatagramFaults, Done, Entropy, FailureKind, FaultKind, FaultPlan,
    NetworkFaults, Sim, Sweep, SweepError,
};

const RECEIVER: &str = "10.0.0.1:9000";
/// Bytes of a numbered datagram's header: its number and its send time.
const HEADER_BYTES: usize = 12;

fn receiver_addr() -> SocketAddr {
    RECEIVER.parse().unwrap()
}

/// One datagram as the receiver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Arrival {
    number: u32,
    sent_us: u64,
    arrived_us: u64,
    len: usize,
}

type Arrivals = Rc<RefCell<Vec<Arrival>>>;
type Log = Rc<RefCell<Vec<String>>>;

fn micros(io: &IOLoop<SimPoller>) -> u64 {
    io.time().since_epoch().as_micros() as u64
}

/// A host that logs each datagram it receives on [`RECEIVER`], reading
/// into buffers of `buf_bytes`. A restart binds again and logs on.
fn receiver(sim: &mut Sim, buf_bytes: usize, arrivals: &Arrivals) {
    let arrivals = Rc::clone(arrivals);
    sim.host("receiver", "10.0.0.1", move |io| {
        let fd = io.udp_bind(receiver_addr())?;
        let arrivals = Rc::clone(&arrivals);
        io.add_handler(
            fd,
            move |io, fd, _| {
                let mut buf = vec![0u8; buf_bytes];
                loop {
                    match io.recv_from(fd, &mut buf) {
                        Ok((n, _)) if n >= HEADER_BYTES => arrivals.borrow_mut().push(Arrival {
                            number: u32::from_be_bytes(buf[..4].try_into().unwrap()),
                            sent_us: u64::from_be_bytes(buf[4..12].try_into().unwrap()),
                            arrived_us: micros(io),
                            len: n,
                        }),
                        Ok(_) => panic!("a datagram shorter than its header"),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
            },
            Events::READ,
        )?;
        Ok(())
    });
}

/// How a sender sends.
#[derive(Clone, Copy)]
struct Sending {
    count: u32,
    burst: u32,
    every: Duration,
    bytes: usize,
    connected: bool,
}

/// A host that sends `count` numbered datagrams to [`RECEIVER`], `burst`
/// at a time every `every`, and logs the errors its socket reports.
fn sender(sim: &mut Sim, how: Sending, errors: &Log) {
    let errors = Rc::clone(errors);
    sim.host("sender", "10.0.0.2", move |io| {
        let fd = io.udp_bind("0.0.0.0:0".parse()?)?;
        if how.connected {
            io.udp_connect(fd, receiver_addr())?;
        }
        let errors = Rc::clone(&errors);
        io.add_handler(
            fd,
            move |io, fd, _| {
                let mut buf = [0u8; 64];
                loop {
                    match io.recv(fd, &mut buf) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) => errors.borrow_mut().push(format!("{:?}", e.kind())),
                    }
                }
            },
            Events::READ,
        )?;
        send_burst(io, fd, how, 0);
        Ok(())
    });
}

fn send_burst(io: &mut IOLoop<SimPoller>, fd: Fd, how: Sending, first: u32) {
    let last = (first + how.burst).min(how.count);
    for number in first..last {
        let mut datagram = vec![0u8; how.bytes.max(HEADER_BYTES)];
        datagram[..4].copy_from_slice(&number.to_be_bytes());
        datagram[4..12].copy_from_slice(&micros(io).to_be_bytes());
        let result = if how.connected {
            io.send(fd, &datagram)
        } else {
            io.send_to(fd, &datagram, receiver_addr())
        };
        if let Err(e) = result {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        }
    }
    if last < how.count {
        io.call_later(how.every, move |io| send_burst(io, fd, how, last));
    }
}

/// What the received sequence shows, against what was sent.
#[derive(Debug, Default, PartialEq, Eq)]
struct Observed {
    /// Numbers sent that never arrived.
    missing: usize,
    /// Arrivals of a number that had arrived before.
    duplicates: usize,
    /// First arrivals of a number lower than one that arrived before it.
    inversions: usize,
    /// Arrivals later than the plan's latency allows.
    late: usize,
}

/// The checker: what happened to a sequence of `sent` numbered datagrams.
fn observe(sent: u32, arrivals: &[Arrival], latency_us_max: u64) -> Observed {
    let mut seen = BTreeSet::new();
    let mut observed = Observed::default();
    let mut highest = None;
    for arrival in arrivals {
        if arrival.arrived_us - arrival.sent_us > latency_us_max {
            observed.late += 1;
        }
        if !seen.insert(arrival.number) {
            observed.duplicates += 1;
            continue;
        }
        if highest.is_some_and(|highest| arrival.number < highest) {
            observed.inversions += 1;
        }
        highest = highest.max(Some(arrival.number));
    }
    observed.missing = sent as usize - seen.len();
    observed
}

fn fired(sim: &Sim, kind: FaultKind) -> usize {
    sim.report().fired.iter().filter(|f| f.kind == kind).count()
}

/// 400 datagrams, in bursts of 8 every 5 ms, under `plan`.
fn numbered_run(plan: FaultPlan) -> (Sim, Vec<Arrival>) {
    numbered_run_on(Sim::builder(3).plan(plan))
}

/// The same, on the simulation `builder` describes.
fn numbered_run_on(builder: Builder) -> (Sim, Vec<Arrival>) {
    let (arrivals, errors) = (Arrivals::default(), Log::default());
    let mut sim = builder.build();
    receiver(&mut sim, 1500, &arrivals);
    let how = Sending {
        count: 400,
        burst: 8,
        every: Duration::from_millis(5),
        bytes: 100,
        connected: false,
    };
    sender(&mut sim, how, &errors);
    sim.run_for(Duration::from_secs(2)).unwrap();
    assert!(errors.borrow().is_empty(), "{:?}", errors.borrow());
    let arrivals = arrivals.borrow().clone();
    (sim, arrivals)
}

#[test]
fn datagram_faults_fire_and_show_in_what_arrives() {
    let plan = FaultPlan {
        datagram: DatagramFaults {
            loss: 100_000,
            duplicate: 100_000,
            reorder: 200_000,
            delay: 50_000,
        },
        ..FaultPlan::none()
    };
    let latency_us_max = plan.latency_us_max;
    let (sim, arrivals) = numbered_run(plan);
    let observed = observe(400, &arrivals, latency_us_max);
    let stats = sim.report().datagrams;
    for kind in [
        FaultKind::DatagramLoss,
        FaultKind::DatagramDuplicate,
        FaultKind::DatagramReorder,
        FaultKind::DatagramDelay,
    ] {
        assert!(fired(&sim, kind) > 0, "{kind} never fired: {stats:?}");
    }
    // What fired is what the receiver saw.
    assert_eq!(
        observed.missing as u64, stats.lost,
        "{observed:?} {stats:?}"
    );
    assert_eq!(observed.missing, fired(&sim, FaultKind::DatagramLoss));
    assert_eq!(observed.duplicates as u64, stats.duplicated);
    assert_eq!(
        observed.duplicates,
        fired(&sim, FaultKind::DatagramDuplicate)
    );
    assert!(observed.inversions > 0, "{observed:?}");
    assert!(
        observed.late >= fired(&sim, FaultKind::DatagramDelay),
        "{observed:?}"
    );
    assert_eq!(stats.sent, 400);
    assert_eq!(stats.received, arrivals.len() as u64);
    assert_eq!(stats.queued, 400 - stats.lost + stats.duplicated);
}

/// The checker's wrong case: without datagram faults it sees none, so the
/// counts above are the faults', not the checker's.
#[test]
fn without_datagram_faults_every_datagram_arrives_once_in_order() {
    let plan = FaultPlan::none();
    let latency_us_max = plan.latency_us_max;
    let (sim, arrivals) = numbered_run(plan);
    assert_eq!(observe(400, &arrivals, latency_us_max), Observed::default());
    assert!(sim.report().fired.is_empty());
    let numbers: Vec<u32> = arrivals.iter().map(|a| a.number).collect();
    assert_eq!(numbers, (0..400).collect::<Vec<u32>>());
}

fn every_datagram_fault(ppm: u32) -> FaultPlan {
    FaultPlan {
        datagram: DatagramFaults {
            loss: ppm,
            duplicate: ppm,
            reorder: ppm,
            delay: ppm,
        },
        ..FaultPlan::none()
    }
}

#[test]
fn a_fuzzers_bytes_steer_datagram_faults_too() {
    // Bytes as a fuzzer would give them (no seed behind them): every
    // datagram's fate is drawn from them as well, not from zeros.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let bytes: Vec<u8> = (0..1 << 16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let builder = Sim::builder(3)
        .plan(every_datagram_fault(200_000))
        .entropy(Entropy::from_bytes(&bytes));
    let (sim, arrivals) = numbered_run_on(builder);
    for kind in [
        FaultKind::DatagramLoss,
        FaultKind::DatagramDuplicate,
        FaultKind::DatagramReorder,
        FaultKind::DatagramDelay,
    ] {
        assert!(fired(&sim, kind) > 0, "{kind} never fired from the bytes");
    }
    assert_ne!(arrivals.len(), 400, "every datagram arrived once: no fault");
}

#[test]
fn removing_one_datagram_fault_leaves_every_other_where_it_was() {
    let plan = every_datagram_fault(50_000);
    let (sim, _) = numbered_run(plan.clone());
    let all: Vec<(u64, FaultKind, Instant)> = sim
        .report()
        .fired
        .iter()
        .map(|f| (f.draw, f.kind, f.at))
        .collect();
    assert!(all.len() >= 20, "too few faults to tell: {}", all.len());
    // Each of the first ten gone in turn: the others fire as before, with
    // the same numbers, at the same times.
    for gone in all.iter().take(10) {
        let schedule: BTreeSet<u64> = all
            .iter()
            .map(|(draw, _, _)| *draw)
            .filter(|draw| *draw != gone.0)
            .collect();
        let (sim, _) = numbered_run_on(Sim::builder(3).plan(plan.clone()).schedule(schedule));
        let left: Vec<(u64, FaultKind, Instant)> = sim
            .report()
            .fired
            .iter()
            .map(|f| (f.draw, f.kind, f.at))
            .collect();
        let expected: Vec<_> = all.iter().filter(|f| *f != gone).copied().collect();
        assert_eq!(left, expected, "without {gone:?}");
    }
}

#[test]
fn a_delay_keeps_the_order_and_a_reorder_breaks_it() {
    let only = |faults: DatagramFaults| FaultPlan {
        datagram: faults,
        ..FaultPlan::none()
    };
    let none = DatagramFaults::default();
    let latency_us_max = FaultPlan::none().latency_us_max;
    let (_, delayed) = numbered_run(only(DatagramFaults {
        delay: 100_000,
        ..none
    }));
    let delayed = observe(400, &delayed, latency_us_max);
    assert!(delayed.late > 0, "no delay: {delayed:?}");
    assert_eq!(delayed.inversions, 0, "a delay let a later datagram pass");
    let (_, reordered) = numbered_run(only(DatagramFaults {
        reorder: 100_000,
        ..none
    }));
    let reordered = observe(400, &reordered, latency_us_max);
    assert!(reordered.inversions > 0, "{reordered:?}");
}

#[test]
fn a_datagram_longer_than_the_buffer_is_truncated_and_recorded() {
    let (arrivals, errors) = (Arrivals::default(), Log::default());
    let mut sim = Sim::new(1, FaultPreset::None);
    receiver(&mut sim, 16, &arrivals);
    let how = Sending {
        count: 10,
        burst: 10,
        every: Duration::from_millis(1),
        bytes: 40,
        connected: false,
    };
    sender(&mut sim, how, &errors);
    sim.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(arrivals.borrow().len(), 10);
    assert!(arrivals.borrow().iter().all(|a| a.len == 16));
    assert_eq!(fired(&sim, FaultKind::DatagramTruncate), 10);
    assert_eq!(sim.report().datagrams.truncated, 10);
}

/// One datagram every 10 ms for 1 s; the test cuts the link (or crashes the
/// receiver) from 200 ms to 500 ms.
fn steady(connected: bool) -> Sending {
    Sending {
        count: 100,
        burst: 1,
        every: Duration::from_millis(10),
        bytes: 20,
        connected,
    }
}

/// The numbers of the datagrams that arrived, and whether each was sent
/// during the outage from 200 ms to 500 ms.
fn sent_during_outage(arrivals: &Arrivals) -> (usize, usize) {
    let outage = 200_000..500_000;
    let arrivals = arrivals.borrow();
    let during = arrivals
        .iter()
        .filter(|a| outage.contains(&a.sent_us))
        .count();
    (arrivals.len(), during)
}

#[test]
fn a_partition_drops_datagrams_and_a_repair_lets_new_ones_through() {
    let (arrivals, errors) = (Arrivals::default(), Log::default());
    let mut sim = Sim::new(1, FaultPreset::None);
    receiver(&mut sim, 1500, &arrivals);
    sender(&mut sim, steady(false), &errors);
    sim.at(Duration::from_millis(200), |sim| {
        sim.partition("sender", "receiver");
    });
    sim.at(Duration::from_millis(500), |sim| {
        sim.repair("sender", "receiver");
    });
    sim.run_for(Duration::from_secs(2)).unwrap();
    // Unlike a TCP segment, a datagram that meets a cut link is gone: none
    // sent during the partition arrives, not even once it heals.
    let (arrived, during) = sent_during_outage(&arrivals);
    assert_eq!(during, 0, "{:?}", arrivals.borrow());
    assert_eq!(arrived, 70);
    let stats = sim.report().datagrams;
    assert_eq!(stats.dropped_cut, 30, "{stats:?}");
    assert_eq!(sim.net().world().held_count(), 0);
}

#[test]
fn a_one_way_partition_drops_one_direction_only() {
    let (arrivals, errors) = (Arrivals::default(), Log::default());
    let mut sim = Sim::new(1, FaultPreset::None);
    receiver(&mut sim, 1500, &arrivals);
    sender(&mut sim, steady(false), &errors);
    sim.partition_oneway("receiver", "sender");
    sim.run_for(Duration::from_secs(2)).unwrap();
    assert_eq!(arrivals.borrow().len(), 100);
    sim.partition_oneway("sender", "receiver");
    let (arrivals, errors) = (Arrivals::default(), Log::default());
    let mut sim = Sim::new(1, FaultPreset::None);
    receiver(&mut sim, 1500, &arrivals);
    sender(&mut sim, steady(false), &errors);
    sim.partition_oneway("sender", "receiver");
    sim.run_for(Duration::from_secs(2)).unwrap();
    assert!(arrivals.borrow().is_empty());
    assert_eq!(sim.report().datagrams.dropped_cut, 100);
}

#[test]
fn a_clog_holds_datagrams_and_lets_them_through_in_order() {
    let (arrivals, errors) = (Arrivals::default(), Log::default());
    let mut sim = Sim::new(1, FaultPreset::None);
    receiver(&mut sim, 1500, &arrivals);
    sender(&mut sim, steady(false), &errors);
    sim.at(Duration::from_millis(200), |sim| {
        sim.clog("sender", "receiver", Duration::from_millis(300));
    });
    sim.run_for(Duration::from_secs(2)).unwrap();
    let arrivals = arrivals.borrow();
    let numbers: Vec<u32> = arrivals.iter().map(|a| a.number).collect();
    assert_eq!(numbers, (0..100).collect::<Vec<u32>>(), "all, in order");
    let held = arrivals.iter().filter(|a| a.arrived_us == 500_000).count();
    assert_eq!(held, 30, "held until the clog ended");
}

/// The receiver crashes at 200 ms in `mode` and restarts at 500 ms.
fn crash_run(mode: CrashMode, connected: bool) -> (Sim, Arrivals, Log) {
    let (arrivals, errors) = (Arrivals::default(), Log::default());
    let mut sim = Sim::new(1, FaultPreset::None);
    receiver(&mut sim, 1500, &arrivals);
    sender(&mut sim, steady(connected), &errors);
    sim.at(Duration::from_millis(200), move |sim| {
        sim.crash("receiver", mode);
    });
    sim.at(Duration::from_millis(500), |sim| {
        sim.restart("receiver");
    });
    sim.run_for(Duration::from_secs(2)).unwrap();
    (sim, arrivals, errors)
}

#[test]
fn a_crashed_machine_drops_datagrams_silently_until_it_restarts() {
    let (sim, arrivals, errors) = crash_run(CrashMode::Machine, true);
    let (arrived, during) = sent_during_outage(&arrivals);
    assert_eq!((arrived, during), (70, 0), "{:?}", arrivals.borrow());
    assert_eq!(sim.report().datagrams.dropped_host_down, 30);
    assert!(
        errors.borrow().is_empty(),
        "nothing answers: {:?}",
        errors.borrow()
    );
}

#[test]
fn a_crashed_process_drops_datagrams_and_its_kernel_refuses_connected_senders() {
    let (sim, arrivals, errors) = crash_run(CrashMode::Process, true);
    let (arrived, during) = sent_during_outage(&arrivals);
    assert_eq!((arrived, during), (70, 0));
    let stats = sim.report().datagrams;
    assert_eq!(stats.dropped_unbound, 30, "{stats:?}");
    assert!(stats.refused > 0, "{stats:?}");
    assert!(!errors.borrow().is_empty());
    assert!(errors.borrow().iter().all(|e| e == "ConnectionRefused"));
    // An unconnected sender is never told.
    let (_, _, errors) = crash_run(CrashMode::Process, false);
    assert!(errors.borrow().is_empty(), "{:?}", errors.borrow());
}

#[test]
fn a_full_receive_queue_drops_what_does_not_fit() {
    let (arrivals, errors) = (Arrivals::default(), Log::default());
    let mut sim = Sim::new(1, FaultPreset::None);
    sim.host("receiver", "10.0.0.1", |io| {
        io.udp_bind(receiver_addr())?; // nobody reads yet
        Ok(())
    });
    let how = Sending {
        count: 300,
        burst: 300,
        every: Duration::from_millis(1),
        bytes: 1000,
        connected: false,
    };
    sender(&mut sim, how, &errors);
    sim.run_for(Duration::from_millis(50)).unwrap();
    let fits =
        ioloop_sim::world::RECV_QUEUE_BYTES_MAX / (1000 + ioloop_sim::world::QUEUED_OVERHEAD_BYTES);
    let stats = sim.report().datagrams;
    assert_eq!(stats.queued as usize, fits, "{stats:?}");
    assert_eq!(stats.dropped_queue_full as usize, 300 - fits);
    // What fit is all there, in order, for a reader that comes late.
    let receiver = sim.io_mut("receiver").unwrap();
    let fd = Fd(0);
    let log = Rc::clone(&arrivals);
    receiver
        .add_handler(
            fd,
            move |io, fd, _| {
                let mut buf = [0u8; 1500];
                while let Ok((n, _)) = io.recv_from(fd, &mut buf) {
                    log.borrow_mut().push(Arrival {
                        number: u32::from_be_bytes(buf[..4].try_into().unwrap()),
                        sent_us: 0,
                        arrived_us: 0,
                        len: n,
                    });
                }
            },
            Events::READ,
        )
        .unwrap();
    sim.run_for(Duration::from_millis(10)).unwrap();
    let numbers: Vec<u32> = arrivals.borrow().iter().map(|a| a.number).collect();
    assert_eq!(numbers, (0..fits as u32).collect::<Vec<u32>>());
}

// ----- a service on datagrams, and its planted twin ---------------------------------

const COUNTER: &str = "10.0.0.1:6000";
/// Requests each client makes.
const REQUESTS: u64 = 5;
/// A client resends its request when no answer came in this long.
const RESEND_AFTER: Duration = Duration::from_millis(30);

/// How the counter server treats a request it has seen before.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    /// Applies each client's request once; a resent one gets the same
    /// answer again, an old one none.
    AppliesOnce,
    /// The planted twin: "a datagram is a request", applied as it comes.
    CountsEveryDatagram,
}

/// The counter service, generic over the poller: `INCR <seq>` is answered
/// `<seq> <value>`. `applied` counts the increments it made.
fn serve_counter<P: Poller>(
    io: &mut IOLoop<P>,
    addr: SocketAddr,
    server: Server,
    applied: Rc<Cell<u64>>,
) -> io::Result<()> {
    let fd = io.udp_bind(addr)?;
    // Per client: its last request and the answer given; one entry per
    // client that ever asked.
    let mut answered: BTreeMap<SocketAddr, (u64, u64)> = BTreeMap::new();
    let handler = move |io: &mut IOLoop<P>, fd: Fd, _: Events| {
        let mut buf = [0u8; 64];
        loop {
            let (n, from) = match io.recv_from(fd, &mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let Some(seq) = parse_words(&buf[..n], "INCR").and_then(|w| w.first().copied()) else {
                continue;
            };
            let value = match answered.get(&from) {
                Some(&(last, value)) if server == Server::AppliesOnce && seq == last => value,
                Some(&(last, _)) if server == Server::AppliesOnce && seq < last => continue,
                _ => {
                    applied.set(applied.get() + 1);
                    answered.insert(from, (seq, applied.get()));
                    applied.get()
                }
            };
            send_retrying(io, fd, format!("{seq} {value}").as_bytes(), from);
        }
    };
    io.add_handler(fd, handler, Events::READ)
        .map_err(io::Error::other)
}

/// The numbers after `verb` (or, with `verb` empty, all of them).
fn parse_words(datagram: &[u8], verb: &str) -> Option<Vec<u64>> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut words = text.split_whitespace();
    if !verb.is_empty() && words.next()? != verb {
        return None;
    }
    words.map(|w| w.parse().ok()).collect()
}

/// `send_to` through `EINTR`; anything else is the network's to lose.
fn send_retrying<P: Poller>(io: &mut IOLoop<P>, fd: Fd, datagram: &[u8], to: SocketAddr) {
    for _ in 0..16 {
        match io.send_to(fd, datagram, to) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// A client's state: the request in flight and the resend timer.
struct Client {
    fd: Fd,
    seq: u64,
    value_last: u64,
    resend: Option<TimeoutHandle>,
    done: Done,
    /// Requests all clients made (a resend is not a new one).
    issued: Rc<Cell<u64>>,
}

/// A client: `REQUESTS` increments, one at a time, each resent until
/// answered; each answer must exceed the one before.
fn count_with(
    io: &mut IOLoop<SimPoller>,
    done: Done,
    issued: Rc<Cell<u64>>,
) -> Result<(), BoxError> {
    let fd = io.udp_bind("0.0.0.0:0".parse()?)?;
    io.udp_connect(fd, COUNTER.parse()?)?;
    let client = Rc::new(RefCell::new(Client {
        fd,
        seq: 1,
        value_last: 0,
        resend: None,
        done,
        issued,
    }));
    let on_answer = Rc::clone(&client);
    io.add_handler(
        fd,
        move |io, fd, _| {
            let mut buf = [0u8; 64];
            loop {
                let n = match io.recv(fd, &mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => continue, // EINTR, or refused by a crashed server
                };
                let words = parse_words(&buf[..n], "");
                let Some([seq, value]) = words.and_then(|w| <[u64; 2]>::try_from(w).ok()) else {
                    continue;
                };
                if answered(io, &on_answer, seq, value) {
                    return;
                }
            }
        },
        Events::READ,
    )?;
    request(io, client, false);
    Ok(())
}

/// Send the current request (a new one, unless `resend`), and resend it
/// until answered.
fn request(io: &mut IOLoop<SimPoller>, client: Rc<RefCell<Client>>, resend: bool) {
    let (fd, seq) = {
        let c = client.borrow();
        if !resend {
            c.issued.set(c.issued.get() + 1);
        }
        (c.fd, c.seq)
    };
    for _ in 0..16 {
        match io.send(fd, format!("INCR {seq}").as_bytes()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    let again = Rc::clone(&client);
    let handle = io.call_later(RESEND_AFTER, move |io| request(io, again, true));
    client.borrow_mut().resend = Some(handle);
}

/// An answer came: check it, and go on to the next request (`true` once
/// the client is done and closed).
fn answered(
    io: &mut IOLoop<SimPoller>,
    client: &Rc<RefCell<Client>>,
    seq: u64,
    value: u64,
) -> bool {
    let mut c = client.borrow_mut();
    if seq != c.seq {
        return false; // a duplicate or a late answer to an earlier request
    }
    if value <= c.value_last {
        c.done
            .fail(format!("answer {value} after {}", c.value_last));
    }
    c.value_last = value;
    c.seq += 1;
    if let Some(handle) = c.resend.take() {
        io.remove_timeout(handle);
    }
    if c.seq > REQUESTS {
        let _ = io.close_fd(c.fd);
        c.done.ok();
        return true;
    }
    drop(c);
    request(io, Rc::clone(client), false);
    false
}

/// The simulation: the counter on one host, three clients on theirs, and
/// the checker: the server never applied more increments than the clients
/// asked for.
fn counter(sim: &mut Sim, server: Server) {
    let applied = Rc::new(Cell::new(0));
    let issued = Rc::new(Cell::new(0));
    let for_server = Rc::clone(&applied);
    sim.host("server", "10.0.0.1", move |io| {
        Ok(serve_counter(
            io,
            COUNTER.parse()?,
            server,
            Rc::clone(&for_server),
        )?)
    });
    for (name, ip) in [
        ("alice", "10.0.0.2"),
        ("bob", "10.0.0.3"),
        ("carol", "10.0.0.4"),
    ] {
        let issued = Rc::clone(&issued);
        sim.client(name, ip, move |io, done| {
            count_with(io, done, Rc::clone(&issued))
        });
    }
    sim.invariant("each request applied once", move |_| {
        let asked = issued.get();
        match applied.get() {
            applied if applied > asked => {
                Err(format!("{applied} increments applied for {asked} requests"))
            }
            _ => Ok(()),
        }
    });
}

#[test]
fn the_counter_applies_each_request_once_under_datagram_faults() {
    let summary = Sweep::new("the_counter_applies_each_request_once_under_datagram_faults")
        .seeds(0..200)
        .run(|sim| counter(sim, Server::AppliesOnce));
    // The sweep tested what it claims: every datagram fault fired.
    for kind in [
        FaultKind::DatagramLoss,
        FaultKind::DatagramDuplicate,
        FaultKind::DatagramReorder,
        FaultKind::DatagramDelay,
    ] {
        let row = summary.coverage.row(kind);
        assert!(row.fired > 0, "{kind} never fired:\n{}", summary.coverage);
    }
}

#[test]
fn the_counter_passes_without_faults() {
    Sweep::new("the_counter_passes_without_faults")
        .seeds(0..20)
        .faults(FaultPreset::None)
        .run(|sim| counter(sim, Server::CountsEveryDatagram));
}

/// The planted twin passes without faults (above) and is caught with
/// them; its failure shrinks to a few datagram faults, and replays.
#[test]
fn the_twin_that_counts_every_datagram_is_caught_and_shrinks() {
    let name = "the_twin_that_counts_every_datagram_is_caught_and_shrinks";
    let describe = |sim: &mut Sim| counter(sim, Server::CountsEveryDatagram);
    let failure = match Sweep::new(name).seeds(0..50).try_run(describe) {
        Err(SweepError::Failed(failure)) => failure,
        other => panic!("the twin was not caught: {other:?}"),
    };
    assert_eq!(failure.failure.kind, FailureKind::Invariant, "{failure}");
    assert!(failure.failure.message.contains("applied for"), "{failure}");
    let run = |schedule: &Schedule| {
        let mut sim = schedule.builder().build();
        describe(&mut sim);
        Attempt::of(&sim.run())
    };
    let mut first = Schedule::new(name, failure.seed, FaultPreset::Swarm);
    first.from_seed = true;
    let attempt = run(&first);
    assert!(attempt.failure.is_some(), "the seed replays its failure");
    let shrunk = shrink_schedule(first, attempt, &[], run).unwrap();
    let kinds: Vec<FaultKind> = shrunk.fired.iter().map(|f| f.kind).collect();
    assert!(
        !shrunk.schedule.fire.is_empty() && shrunk.schedule.fire.len() <= 3,
        "shrunk to {kinds:?}"
    );
    // A request the server gets twice: an answer lost (the request is
    // resent), a duplicate, or a request held back or delayed past its
    // resend.
    assert!(
        kinds.iter().any(|k| matches!(
            k,
            FaultKind::DatagramLoss
                | FaultKind::DatagramDuplicate
                | FaultKind::DatagramReorder
                | FaultKind::DatagramDelay
        )),
        "{kinds:?}"
    );
    // The shrunk schedule, through its file, fails the same way.
    let text = shrunk.schedule.to_text("test", None, &shrunk.fired);
    eprintln!("caught on seed {:#x}; shrunk:\n{text}", failure.seed);
    let replayed = run(&Schedule::parse(&text).unwrap());
    assert_eq!(
        replayed.failure.map(|(kind, _)| kind),
        Some(FailureKind::Invariant)
    );
}

#[test]
fn a_seed_replays_its_datagrams_exactly() {
    let hash = |seed| {
        let mut sim = Sim::new(seed, FaultPreset::Swarm);
        counter(&mut sim, Server::AppliesOnce);
        sim.run().unwrap().trace_hash
    };
    assert_eq!(hash(11), hash(11));
    assert_ne!(hash(11), hash(12));
}

/// A preset's datagram faults come with the first UDP socket, from a
/// stream of their own: a service without UDP keeps the plan (and so the
/// plan hash and trace) it had before datagrams existed.
#[test]
fn datagram_faults_join_the_plan_only_with_a_udp_socket() {
    let mut with_faults = 0;
    for seed in 0..20 {
        let mut tcp = Sim::new(seed, FaultPreset::Swarm);
        tcp.host("server", "10.0.0.1", |io| {
            io.listen("10.0.0.1:80".parse()?)?;
            Ok(())
        });
        let socket_plan = FaultPlan::swarm(&mut Entropy::seeded(seed));
        assert_eq!(tcp.plan(), socket_plan);
        assert_eq!(tcp.plan().hash(), socket_plan.hash());
        let mut udp = Sim::new(seed, FaultPreset::Swarm);
        udp.host("server", "10.0.0.1", |io| {
            io.udp_bind("10.0.0.1:53".parse()?)?;
            Ok(())
        });
        let datagram = DatagramFaults::for_preset(FaultPreset::Swarm, &Entropy::seeded(seed));
        assert_eq!(udp.plan().datagram, datagram);
        assert_eq!(
            FaultPlan {
                datagram,
                ..udp.plan()
            },
            udp.plan()
        );
        with_faults += usize::from(datagram.any());
    }
    assert!(with_faults > 10, "swarm turns them on in most seeds");
    let mut all = Sim::new(0, FaultPreset::All);
    all.host("server", "10.0.0.1", |io| {
        io.udp_bind("10.0.0.1:53".parse()?)?;
        Ok(())
    });
    assert_eq!(all.plan().datagram, DatagramFaults::all());
}

/// `Builder::without` takes a kind away from whatever each seed draws —
/// socket plan, datagram faults, network faults — and leaves the rest of
/// the draw as it was.
#[test]
fn without_takes_a_kind_away_from_every_seed_and_leaves_the_rest() {
    let udp = |builder: ioloop_sim::Builder| {
        let mut sim = builder.build();
        sim.host("server", "10.0.0.1", |io| {
            io.udp_bind("10.0.0.1:53".parse()?)?;
            Ok(())
        });
        sim.run_for(Duration::from_millis(1)).unwrap();
        (sim.plan(), sim.network_faults())
    };
    let mut taken = [0; 3];
    for seed in 0..20 {
        let swarm = || Sim::builder(seed).faults(FaultPreset::Swarm);
        let (plan, network) = udp(swarm());
        let (plan_without, network_without) = udp(swarm()
            .without(FaultKind::PartialRead)
            .without(FaultKind::DatagramReorder)
            .without(FaultKind::Clog));
        assert_eq!(plan_without.partial_read, 0);
        assert_eq!(plan_without.datagram.reorder, 0);
        assert_eq!(network_without.as_ref().map_or(0, |n| n.clog), 0);
        // The checker's wrong case: the seeds do draw them.
        taken[0] += usize::from(plan.partial_read > 0);
        taken[1] += usize::from(plan.datagram.reorder > 0);
        taken[2] += usize::from(network.as_ref().is_some_and(|n| n.clog > 0));
        let datagram = DatagramFaults {
            reorder: 0,
            ..plan.datagram
        };
        assert_eq!(
            plan_without,
            FaultPlan {
                partial_read: 0,
                datagram,
                ..plan
            }
        );
        let network = network.map(|n| NetworkFaults { clog: 0, ..n });
        assert_eq!(network_without, network.filter(NetworkFaults::any));
    }
    assert!(taken.iter().all(|&seeds| seeds > 0), "{taken:?}");
}
