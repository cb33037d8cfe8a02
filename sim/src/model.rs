//! The handler-map model: random operations on a loop, checked step by step against a reference.
//!
//! A loop on a simulated host talks to an echo server on another host. A
//! sequence of [`Op`]s adds, updates and removes handlers on open,
//! unknown and duplicate fds, from the top level and from inside handlers,
//! callbacks and timeouts (a handler removing itself, removing another fd
//! whose event is pending in the same batch, closing an fd and reusing its
//! number at once). After every step the loop's table must equal the
//! model's, every error must be the one the model expects, and no handler
//! may run after its removal or outside its interest.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use ioloop::echo::{EchoConfig, EchoServer};
use ioloop::{Error, Events, Fd, IOLoop};

use crate::{Entropy, FaultPlan, SimNet, SimPoller};

/// Names an fd in an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdRef {
    /// The n-th open client socket (modulo how many are open).
    Open(u8),
    /// A number that is not open (or negative).
    Raw(i32),
}

/// Something a handler, callback or timeout does when it first runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Remove its own handler (handlers only).
    RemoveSelf,
    /// Remove its own handler and add a new one on the same fd.
    ReplaceSelf(Events),
    /// Change its own interest.
    UpdateSelf(Events),
    /// Remove another fd's handler (its event may be pending in this batch).
    Remove(FdRef),
    /// Add a handler on an fd.
    Add(FdRef, Events),
    /// Close an fd and open a new socket at once: the kernel hands out the
    /// lowest free number, so it is usually reused within the batch.
    CloseAndReopen(FdRef),
}

/// One step of a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Connect a new client socket to the echo server.
    Open,
    /// `add_handler`, with what the handler does on its first call.
    Add(FdRef, Events, Vec<Action>),
    /// `update_handler`.
    Update(FdRef, Events),
    /// `remove_handler`.
    Remove(FdRef),
    /// `close_fd`.
    Close(FdRef),
    /// Write a few bytes, so that their echo raises `READ`.
    Send(FdRef),
    /// `add_callback` doing these actions.
    Callback(Vec<Action>),
    /// `call_later` doing these actions.
    Timeout(u8, Vec<Action>),
    /// One iteration of both loops.
    Run,
}

/// Prepares the loop under test before the first step: the property's
/// planted-bug twins plant a bug in it (`IOLoop::plant_bug`, behind
/// `ioloop`'s test-only feature `planted-bugs`).
pub type Setup = fn(&mut IOLoop<SimPoller>);

/// What a [`check_ops`] run exercised, so that a property that passes can
/// show it checked something: handlers added and called, each refusal the
/// model predicts, removals and interest changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exercised {
    /// Handlers added.
    pub added: u64,
    /// Handler calls, each checked against the registration the model holds.
    pub calls: u64,
    /// Calls refused as the model predicted, by error (`InvalidFd`,
    /// `AlreadyRegistered`, `NotRegistered`, `Os`).
    pub refused: BTreeMap<&'static str, u64>,
    /// Handlers removed by `remove_handler`.
    pub removed: u64,
    /// Handlers dropped by `close_fd` of their fd.
    pub closed: u64,
    /// Interest changes (`update_handler` that succeeded).
    pub updated: u64,
    /// Actions done from inside a handler, a callback or a timeout.
    pub from_inside: u64,
}

impl Exercised {
    /// Add `other`'s counts to these.
    pub fn absorb(&mut self, other: &Exercised) {
        self.added += other.added;
        self.calls += other.calls;
        for (error, n) in &other.refused {
            *self.refused.entry(error).or_default() += n;
        }
        self.removed += other.removed;
        self.closed += other.closed;
        self.updated += other.updated;
        self.from_inside += other.from_inside;
    }

    fn refused(&mut self, error: &'static str) {
        *self.refused.entry(error).or_default() += 1;
    }
}

/// What the model believes.
#[derive(Default)]
struct Model {
    /// fd → (handler id, interest).
    registered: BTreeMap<Fd, (u64, Events)>,
    /// Client sockets open, in opening order.
    open: Vec<Fd>,
    handler_id_next: u64,
    failure: Option<String>,
    exercised: Exercised,
}

impl Model {
    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        }
    }

    fn resolve(&self, fd: FdRef) -> Fd {
        match fd {
            FdRef::Open(n) if !self.open.is_empty() => self.open[n as usize % self.open.len()],
            FdRef::Open(_) => Fd(900),
            FdRef::Raw(raw) => Fd(raw),
        }
    }
}

type Shared = Rc<RefCell<Model>>;

/// The system under test: a client loop, its model, and the echo server.
struct Harness {
    io: IOLoop<SimPoller>,
    server_io: IOLoop<SimPoller>,
    _server: EchoServer,
    server_addr: SocketAddr,
    model: Shared,
}

impl fmt::Display for FdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdRef::Open(n) => write!(f, "open[{n}]"),
            FdRef::Raw(raw) => write!(f, "fd{raw}"),
        }
    }
}

/// Draw `count` operations from `entropy` (seeded or fuzzer bytes).
pub fn ops_from_entropy(entropy: &mut Entropy, count: usize) -> Vec<Op> {
    (0..count).map(|_| draw_op(entropy)).collect()
}

fn draw_events(entropy: &mut Entropy) -> Events {
    Events::from_bits_truncate(entropy.below(8) as u8)
}

fn draw_fd(entropy: &mut Entropy) -> FdRef {
    match entropy.below(10) {
        0 => FdRef::Raw([-1, 3, 77, 900][entropy.below(4) as usize]),
        _ => FdRef::Open(entropy.below(8) as u8),
    }
}

fn draw_actions(entropy: &mut Entropy) -> Vec<Action> {
    (0..entropy.below(3))
        .map(|_| match entropy.below(6) {
            0 => Action::RemoveSelf,
            1 => Action::ReplaceSelf(draw_events(entropy)),
            2 => Action::UpdateSelf(draw_events(entropy)),
            3 => Action::Remove(draw_fd(entropy)),
            4 => Action::Add(draw_fd(entropy), draw_events(entropy)),
            _ => Action::CloseAndReopen(draw_fd(entropy)),
        })
        .collect()
}

fn draw_op(entropy: &mut Entropy) -> Op {
    match entropy.below(16) {
        0 | 1 => Op::Open,
        2..=4 => Op::Add(
            draw_fd(entropy),
            draw_events(entropy),
            draw_actions(entropy),
        ),
        5 => Op::Update(draw_fd(entropy), draw_events(entropy)),
        6 => Op::Remove(draw_fd(entropy)),
        7 => Op::Close(draw_fd(entropy)),
        8 => Op::Send(draw_fd(entropy)),
        9 => Op::Callback(draw_actions(entropy)),
        10 => Op::Timeout(entropy.below(5) as u8, draw_actions(entropy)),
        _ => Op::Run,
    }
}

/// Run `ops` against a fresh loop (prepared by `setup`, if any) and the
/// model; `Err` names the first step where they disagree, `Ok` tells what
/// the run exercised.
pub fn check_ops(ops: &[Op], setup: Option<Setup>) -> Result<Exercised, String> {
    let mut harness = Harness::new();
    if let Some(setup) = setup {
        setup(&mut harness.io);
    }
    for (step, op) in ops.iter().enumerate() {
        harness.apply(op);
        harness
            .compare()
            .map_err(|why| format!("step {step} ({op:?}): {why}"))?;
    }
    // Let everything pending run, still checking.
    for step in 0..20 {
        harness.apply(&Op::Run);
        harness
            .compare()
            .map_err(|why| format!("final run {step}: {why}"))?;
    }
    let exercised = harness.model.borrow().exercised.clone();
    Ok(exercised)
}

impl Harness {
    fn new() -> Harness {
        let net = SimNet::with_plan(Entropy::seeded(0), FaultPlan::none(), false);
        let server_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let server_addr = SocketAddr::new(server_ip, 7);
        let mut server_io = IOLoop::new(net.host(server_ip));
        let server = EchoServer::bind(&mut server_io, server_addr, EchoConfig::default())
            .expect("the echo server binds in a fresh world");
        let io = IOLoop::new(net.host(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        Harness {
            io,
            server_io,
            _server: server,
            server_addr,
            model: Shared::default(),
        }
    }

    fn apply(&mut self, op: &Op) {
        let io = &mut self.io;
        let model = &self.model;
        match op {
            Op::Open => open(io, model, self.server_addr),
            Op::Add(fd, events, actions) => {
                let fd = model.borrow().resolve(*fd);
                add(
                    io,
                    model,
                    fd,
                    *events,
                    actions.clone(),
                    self.server_addr,
                    false,
                );
            }
            Op::Update(fd, events) => {
                let fd = model.borrow().resolve(*fd);
                update(io, model, fd, *events);
            }
            Op::Remove(fd) => {
                let fd = model.borrow().resolve(*fd);
                remove(io, model, fd);
            }
            Op::Close(fd) => {
                let fd = model.borrow().resolve(*fd);
                close(io, model, fd);
            }
            Op::Send(fd) => {
                let fd = model.borrow().resolve(*fd);
                let _ = io.write(fd, b"ping");
            }
            Op::Callback(actions) => {
                let (model, actions, addr) = (Rc::clone(model), actions.clone(), self.server_addr);
                io.add_callback(move |io| perform(io, &model, None, &actions, addr));
            }
            Op::Timeout(ms, actions) => {
                let (model, actions, addr) = (Rc::clone(model), actions.clone(), self.server_addr);
                io.call_later(Duration::from_millis(u64::from(*ms)), move |io| {
                    perform(io, &model, None, &actions, addr)
                });
            }
            Op::Run => {
                for io in [&mut self.io, &mut self.server_io] {
                    match io.run_once(Some(Duration::from_millis(1))) {
                        Ok(()) | Err(Error::Poll(_)) => {}
                        Err(error) => self.model.borrow_mut().fail(format!("run_once: {error}")),
                    }
                }
            }
        }
    }

    /// The loop's table against the model, and any failure seen inside
    /// handlers.
    fn compare(&self) -> Result<(), String> {
        let model = self.model.borrow();
        if let Some(failure) = &model.failure {
            return Err(failure.clone());
        }
        let loop_table: BTreeMap<Fd, Events> = self.io.handlers().collect();
        let model_table: BTreeMap<Fd, Events> = model
            .registered
            .iter()
            .map(|(fd, (_, ev))| (*fd, *ev))
            .collect();
        if loop_table != model_table {
            return Err(format!(
                "loop table {loop_table:?} != model {model_table:?}"
            ));
        }
        self.io.check_consistency()
    }
}

fn open(io: &mut IOLoop<SimPoller>, model: &Shared, server: SocketAddr) {
    match io.connect(server) {
        Ok(fd) => model.borrow_mut().open.push(fd),
        Err(error) => model.borrow_mut().fail(format!("connect: {error}")),
    }
}

/// Which error the model expects from `add_handler(fd)`.
fn expected_add(model: &Model, fd: Fd) -> Result<(), &'static str> {
    if fd.0 < 0 {
        Err("InvalidFd")
    } else if model.registered.contains_key(&fd) {
        Err("AlreadyRegistered")
    } else if !model.open.contains(&fd) {
        Err("Os")
    } else {
        Ok(())
    }
}

fn error_name(error: &Error) -> &'static str {
    match error {
        Error::InvalidFd(_) => "InvalidFd",
        Error::AlreadyRegistered(_) => "AlreadyRegistered",
        Error::NotRegistered(_) => "NotRegistered",
        Error::Os { .. } => "Os",
        _ => "other",
    }
}

/// `add_handler` on `fd`, checked against the model. `from_callback`: added
/// before this iteration's poll, so its first events may come in the same
/// iteration; a handler added between iterations or by another handler
/// must wait for the next one.
fn add(
    io: &mut IOLoop<SimPoller>,
    model: &Shared,
    fd: Fd,
    events: Events,
    actions: Vec<Action>,
    server: SocketAddr,
    from_callback: bool,
) {
    let expected = expected_add(&model.borrow(), fd);
    let id = {
        let mut m = model.borrow_mut();
        m.handler_id_next += 1;
        m.handler_id_next
    };
    let added_at = (!from_callback).then(|| io.iterations());
    let for_handler = Rc::clone(model);
    let mut first_call = Some(actions);
    let result = io.add_handler(
        fd,
        move |io, fd, fired| {
            check_call(io, &for_handler, id, fd, fired, added_at);
            if let Some(actions) = first_call.take() {
                perform(io, &for_handler, Some(fd), &actions, server);
            }
            let mut buf = [0u8; 256];
            let _ = io.read(fd, &mut buf);
        },
        events,
    );
    let got = result.as_ref().map(|_| ()).map_err(error_name);
    let mut m = model.borrow_mut();
    if got != expected {
        m.fail(format!(
            "add_handler({fd:?}): got {got:?}, model expects {expected:?}"
        ));
    } else if let Err(error) = got {
        m.exercised.refused(error);
    } else {
        m.registered.insert(fd, (id, events));
        m.exercised.added += 1;
    }
}

/// A handler call must be for the registration the model holds, within its
/// interest, and never in the iteration that added it.
fn check_call(
    io: &IOLoop<SimPoller>,
    model: &Shared,
    id: u64,
    fd: Fd,
    fired: Events,
    added_at: Option<u64>,
) {
    let mut m = model.borrow_mut();
    m.exercised.calls += 1;
    match m.registered.get(&fd).copied() {
        Some((registered_id, interest)) if registered_id == id => {
            if !(interest | Events::ERROR).contains(fired) {
                m.fail(format!(
                    "handler {id} on {fd:?} got {fired:?} outside its interest {interest:?}"
                ));
            }
            if added_at.is_some_and(|added_at| io.iterations() <= added_at) {
                m.fail(format!(
                    "handler {id} on {fd:?} ran in the iteration that added it"
                ));
            }
        }
        other => m.fail(format!(
            "handler {id} on {fd:?} ran, but the model holds {other:?}"
        )),
    }
}

fn update(io: &mut IOLoop<SimPoller>, model: &Shared, fd: Fd, events: Events) {
    let expected = if model.borrow().registered.contains_key(&fd) {
        Ok(())
    } else {
        Err("NotRegistered")
    };
    let got = io.update_handler(fd, events).map_err(|e| error_name(&e));
    let mut m = model.borrow_mut();
    if got != expected {
        m.fail(format!(
            "update_handler({fd:?}): got {got:?}, model expects {expected:?}"
        ));
    } else if let Some(entry) = m.registered.get_mut(&fd) {
        entry.1 = events;
        m.exercised.updated += 1;
    } else {
        m.exercised.refused("NotRegistered");
    }
}

fn remove(io: &mut IOLoop<SimPoller>, model: &Shared, fd: Fd) {
    let expected = model.borrow_mut().registered.remove(&fd).is_some();
    let got = io.remove_handler(fd);
    let mut m = model.borrow_mut();
    if got != expected {
        m.fail(format!(
            "remove_handler({fd:?}) returned {got}, model expects {expected}"
        ));
    } else if got {
        m.exercised.removed += 1;
    }
}

/// `close_fd`: closes an open socket and drops its handler; on an fd that
/// is not open it fails and changes nothing.
fn close(io: &mut IOLoop<SimPoller>, model: &Shared, fd: Fd) {
    let was_open = {
        let mut m = model.borrow_mut();
        let position = m.open.iter().position(|&open| open == fd);
        let was_open = position.map(|p| m.open.remove(p)).is_some();
        if was_open && m.registered.remove(&fd).is_some() {
            m.exercised.closed += 1;
        }
        was_open
    };
    let got = io.close_fd(fd).is_ok();
    if got != was_open {
        model.borrow_mut().fail(format!(
            "close_fd({fd:?}) ok={got}, model expects ok={was_open}"
        ));
    }
}

/// Do `actions`, from inside a handler of `own` (or a callback: `None`).
fn perform(
    io: &mut IOLoop<SimPoller>,
    model: &Shared,
    own: Option<Fd>,
    actions: &[Action],
    server: SocketAddr,
) {
    for action in actions {
        model.borrow_mut().exercised.from_inside += 1;
        match (*action, own) {
            (Action::RemoveSelf, Some(fd)) => remove(io, model, fd),
            (Action::ReplaceSelf(events), Some(fd)) => {
                remove(io, model, fd);
                add(io, model, fd, events, Vec::new(), server, false);
            }
            (Action::UpdateSelf(events), Some(fd)) => update(io, model, fd, events),
            (Action::RemoveSelf | Action::ReplaceSelf(_) | Action::UpdateSelf(_), None) => {}
            (Action::Remove(fd), _) => {
                let fd = model.borrow().resolve(fd);
                remove(io, model, fd);
            }
            (Action::Add(fd, events), _) => {
                let fd = model.borrow().resolve(fd);
                add(io, model, fd, events, Vec::new(), server, own.is_none());
            }
            (Action::CloseAndReopen(fd), _) => {
                let fd = model.borrow().resolve(fd);
                close(io, model, fd);
                open(io, model, server);
                let reopened = model.borrow().open.last().copied();
                if let Some(new_fd) = reopened {
                    add(
                        io,
                        model,
                        new_fd,
                        Events::READ | Events::WRITE,
                        Vec::new(),
                        server,
                        own.is_none(),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every kind of step the generator can draw, named.
    fn kinds(ops: &[Op]) -> BTreeSet<String> {
        let mut kinds = BTreeSet::new();
        let fd = |kinds: &mut BTreeSet<String>, fd: &FdRef| {
            kinds.insert(match fd {
                FdRef::Open(_) => "fd open".to_string(),
                FdRef::Raw(raw) if *raw < 0 => "fd negative".to_string(),
                FdRef::Raw(_) => "fd not open".to_string(),
            });
        };
        let actions = |kinds: &mut BTreeSet<String>, actions: &[Action]| {
            for action in actions {
                let name = format!("{action:?}");
                kinds.insert(format!(
                    "action {}",
                    &name[..name.find('(').unwrap_or(name.len())]
                ));
                match action {
                    Action::Remove(f) | Action::Add(f, _) | Action::CloseAndReopen(f) => {
                        fd(kinds, f)
                    }
                    _ => {}
                }
            }
        };
        for op in ops {
            let name = format!("{op:?}");
            kinds.insert(name[..name.find('(').unwrap_or(name.len())].to_string());
            match op {
                Op::Add(f, events, acts) => {
                    fd(&mut kinds, f);
                    kinds.insert(format!("events {:?}", events.bits()));
                    actions(&mut kinds, acts);
                }
                Op::Update(f, _) | Op::Remove(f) | Op::Close(f) | Op::Send(f) => fd(&mut kinds, f),
                Op::Callback(acts) | Op::Timeout(_, acts) => actions(&mut kinds, acts),
                Op::Open | Op::Run => {}
            }
        }
        kinds
    }

    #[test]
    fn the_generator_draws_every_kind_of_step() {
        let ops = ops_from_entropy(&mut Entropy::seeded(0), 5_000);
        let drawn = kinds(&ops);
        let mut expected: BTreeSet<String> = [
            "Open",
            "Add",
            "Update",
            "Remove",
            "Close",
            "Send",
            "Callback",
            "Timeout",
            "Run",
            "action RemoveSelf",
            "action ReplaceSelf",
            "action UpdateSelf",
            "action Remove",
            "action Add",
            "action CloseAndReopen",
            "fd open",
            "fd negative",
            "fd not open",
        ]
        .map(String::from)
        .into();
        // Every interest, ERROR included, and none.
        expected.extend((0..8).map(|bits| format!("events {bits}")));
        let missing: Vec<_> = expected.difference(&drawn).collect();
        assert!(missing.is_empty(), "never drawn: {missing:?}");
    }

    #[test]
    fn an_fd_ref_names_an_open_socket_modulo_how_many_or_a_raw_number() {
        let mut model = Model::default();
        assert_eq!(model.resolve(FdRef::Open(3)), Fd(900), "none open");
        model.open = vec![Fd(5), Fd(6)];
        assert_eq!(model.resolve(FdRef::Open(0)), Fd(5));
        assert_eq!(model.resolve(FdRef::Open(3)), Fd(6));
        assert_eq!(model.resolve(FdRef::Raw(-1)), Fd(-1));
        assert_eq!(FdRef::Open(3).to_string(), "open[3]");
        assert_eq!(FdRef::Raw(-1).to_string(), "fd-1");
    }

    #[test]
    fn the_generator_is_a_function_of_its_entropy() {
        let draw = |seed| ops_from_entropy(&mut Entropy::seeded(seed), 200);
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
