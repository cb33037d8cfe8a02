//! `UdpPeerLink`: replicas ask each other in datagrams — each request tagged with an id, sent again until its answer comes or its time is up, and only the answer carrying that id taken (the planted twin takes any answer from the peer).
//!
//! ```text
//! coordinator -> peer   <id> STORE key n\n   ->   <id> STORED\n
//!                       <id> QUERY\n         ->   <id> VALUES k=n,...\n
//! ```
//!
//! UDP loses, duplicates, delays and reorders datagrams: a request is sent
//! again every [`RESEND_AFTER`] (a `STORE` applied twice changes nothing:
//! writes merge by `max`), and every copy the peer gets is answered. The
//! id is what tells this request's answer from a late or second answer to
//! an earlier one. Ids are `incarnation << 32 | n`, and the incarnation
//! comes from the replica's disk, so a restarted replica never takes an
//! answer meant for the process it replaced.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use ioloop::{Events, Fd, IOLoop, Instant, Poller, TimeoutHandle};

use crate::service::{Answer, AskError, Message, PeerLink, PeerRequests};

/// Longest datagram: the most a UDP payload holds over IPv4. An answer
/// that does not fit (a register of several hundred long keys) is not
/// sent; its asker times out, and the client is answered `RETRY`.
pub const DATAGRAM_BYTES_MAX: usize = 65_507;
/// A request still unanswered after this long is sent again: more than a
/// round trip between hosts that are up and connected.
pub const RESEND_AFTER: Duration = Duration::from_millis(25);
/// Datagrams one call of the socket's handler reads at most; the loop is
/// level-triggered, so it calls again for the rest.
const DATAGRAMS_PER_CALL_MAX: usize = 64;
/// Tries of a send that a signal interrupts (`EINTR`).
const SEND_TRIES_MAX: usize = 16;

/// Which answer a link hands to a waiting request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Matching {
    /// The answer carrying the request's id, from the peer it was sent to.
    #[default]
    ById,
    /// The planted bug ([`Flaw::AnswerByPeer`](crate::service::Flaw::AnswerByPeer)):
    /// the first answer from a peer goes to the oldest request waiting on
    /// it, whatever its id. Right while every request gets its one answer,
    /// in order and in time.
    ByPeer,
}

/// Peer requests in datagrams. Two UDP sockets: one on the replica's own
/// address (UDP ports are not TCP's: the listener keeps its port) takes
/// peers' requests, once [`PeerLink::serve`] says how, and answers them;
/// requests go out from the other, on a port of its own, and their answers
/// come back to it — as a DNS server and its resolver keep apart.
pub struct UdpPeerLink<P: Poller> {
    /// Owned by the sockets' handlers: a loop that is dropped (a crash)
    /// drops the link's state, and every answer still awaited, with it.
    state: Weak<RefCell<LinkState<P>>>,
}

struct LinkState<P: Poller> {
    /// The socket requests go out from, and their answers come back to.
    asking: Fd,
    /// The high 32 bits of every id this process gives (the low 32 bits of
    /// its incarnation number).
    incarnation: u32,
    /// The low 32 bits of the next id.
    next: u32,
    matching: Matching,
    /// One entry per `ask` not yet answered: bounded by the requests the
    /// replica coordinates at once.
    pending: BTreeMap<u64, Pending<P>>,
    /// How to answer a peer's request; none until `serve`.
    requests: Option<PeerRequests<P>>,
}

/// A request waiting for its answer.
struct Pending<P: Poller> {
    peer: SocketAddr,
    datagram: Vec<u8>,
    deadline: Instant,
    /// The next resend, or the deadline.
    timer: TimeoutHandle,
    answer: Answer<P>,
}

impl<P: Poller> LinkState<P> {
    fn next_id(&mut self) -> u64 {
        let id = u64::from(self.incarnation) << 32 | u64::from(self.next);
        self.next = self.next.wrapping_add(1);
        id
    }

    /// The id of the request waiting for the answer that came from `from`
    /// with `id`, if any.
    fn waiting_for(&self, id: u64, from: SocketAddr) -> Option<u64> {
        match self.matching {
            Matching::ById => self
                .pending
                .get(&id)
                .filter(|pending| pending.peer == from)
                .map(|_| id),
            Matching::ByPeer => self
                .pending
                .iter()
                .find(|(_, pending)| pending.peer == from)
                .map(|(&id, _)| id),
        }
    }
}

impl<P: Poller + 'static> UdpPeerLink<P> {
    /// Bind the serving socket to `addr` and the asking one to a free port
    /// of its IP, and start reading both. `incarnation` must differ from
    /// every earlier process's on this address (see
    /// [`Disk::boot`](crate::service::Disk::boot)).
    pub fn bind(
        io: &mut IOLoop<P>,
        addr: SocketAddr,
        incarnation: u64,
        matching: Matching,
    ) -> io::Result<UdpPeerLink<P>> {
        let serving = io.udp_bind(addr)?;
        let asking = match io.udp_bind(SocketAddr::new(addr.ip(), 0)) {
            Ok(fd) => fd,
            Err(error) => {
                let _ = io.close_fd(serving);
                return Err(error);
            }
        };
        let state = Rc::new(RefCell::new(LinkState {
            asking,
            incarnation: incarnation as u32,
            next: 0,
            matching,
            pending: BTreeMap::new(),
            requests: None,
        }));
        let link = UdpPeerLink {
            state: Rc::downgrade(&state),
        };
        let handlers = [
            (
                serving,
                Rc::clone(&state),
                serve_requests::<P> as Receive<P>,
            ),
            (asking, state, take_answers::<P> as Receive<P>),
        ];
        for (fd, state, receive) in handlers {
            let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
            let handler = move |io: &mut IOLoop<P>, fd: Fd, _: Events| {
                for_each_datagram(io, fd, &mut buf, |io, from, id, message| {
                    receive(io, &state, fd, from, id, message)
                });
            };
            if let Err(error) = io.add_handler(fd, handler, Events::READ) {
                for fd in [serving, asking] {
                    let _ = io.remove_handler(fd);
                    let _ = io.close_fd(fd);
                }
                return Err(io::Error::other(error));
            }
        }
        Ok(link)
    }
}

impl<P: Poller + 'static> PeerLink<P> for UdpPeerLink<P> {
    fn serve(&self, requests: PeerRequests<P>) {
        if let Some(state) = self.state.upgrade() {
            state.borrow_mut().requests = Some(requests);
        }
    }

    fn ask(
        &self,
        io: &mut IOLoop<P>,
        peer: SocketAddr,
        request: &Message,
        timeout: Duration,
        answer: Answer<P>,
    ) {
        let Some(state) = self.state.upgrade() else {
            let closed = AskError::Failed("the link's socket is closed".into());
            io.add_callback(move |io| answer(io, Err(closed)));
            return;
        };
        let (id, fd) = {
            let mut state = state.borrow_mut();
            (state.next_id(), state.asking)
        };
        let datagram = tagged(id, request);
        debug_assert!(datagram.len() <= DATAGRAM_BYTES_MAX, "a request fits");
        send(io, fd, &datagram, peer);
        // Answered from the socket's handler or a timer, never from here.
        let timer = schedule_tick(io, &state, id, RESEND_AFTER.min(timeout));
        let pending = Pending {
            peer,
            datagram,
            deadline: io.time() + timeout,
            timer,
            answer,
        };
        state.borrow_mut().pending.insert(id, pending);
    }
}

/// `<id> <message>\n`.
fn tagged(id: u64, message: &Message) -> Vec<u8> {
    format!("{id} {message}\n").into_bytes()
}

/// A datagram's id and message; `None` if it is not one of ours.
fn untagged(datagram: &[u8]) -> Option<(u64, Message)> {
    let text = std::str::from_utf8(datagram).ok()?;
    let (id, line) = text.split_once(' ')?;
    Some((id.parse().ok()?, Message::parse(line.as_bytes())?))
}

/// `send_to` through `EINTR`. Anything else is a datagram lost: a request
/// is sent again, and an answer's asker asks again.
fn send<P: Poller>(io: &mut IOLoop<P>, fd: Fd, datagram: &[u8], to: SocketAddr) {
    for _ in 0..SEND_TRIES_MAX {
        match io.send_to(fd, datagram, to) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// What a socket's handler does with each datagram it reads.
type Receive<P> = fn(&mut IOLoop<P>, &Rc<RefCell<LinkState<P>>>, Fd, SocketAddr, u64, Message);

/// Read what waits on `fd` (up to [`DATAGRAMS_PER_CALL_MAX`]), and give
/// each of our datagrams to `each`: its sender, id and message.
fn for_each_datagram<P: Poller>(
    io: &mut IOLoop<P>,
    fd: Fd,
    buf: &mut [u8],
    mut each: impl FnMut(&mut IOLoop<P>, SocketAddr, u64, Message),
) {
    for _ in 0..DATAGRAMS_PER_CALL_MAX {
        let (n, from) = match io.recv_from(fd, buf) {
            Ok(got) => got,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return, // drained (WouldBlock)
        };
        if let Some((id, message)) = untagged(&buf[..n]) {
            each(io, from, id, message);
        }
    }
}

/// On the serving socket, a peer's `STORE` or `QUERY`: answer it, tagged
/// with its id, if the answer fits a datagram.
fn serve_requests<P: Poller>(
    io: &mut IOLoop<P>,
    state: &Rc<RefCell<LinkState<P>>>,
    fd: Fd,
    from: SocketAddr,
    id: u64,
    request: Message,
) {
    if !matches!(request, Message::Store { .. } | Message::Query) {
        return;
    }
    let requests = state.borrow().requests.clone();
    let Some(reply) = requests.and_then(|requests| requests(io, &request)) else {
        return;
    };
    let datagram = tagged(id, &reply);
    if datagram.len() <= DATAGRAM_BYTES_MAX {
        send(io, fd, &datagram, from);
    }
}

/// On the asking socket, an answer from `from`: to the request waiting for
/// it, if any (a second or late answer finds none, and is dropped).
fn take_answers<P: Poller>(
    io: &mut IOLoop<P>,
    state: &Rc<RefCell<LinkState<P>>>,
    _fd: Fd,
    from: SocketAddr,
    id: u64,
    answer: Message,
) {
    if !matches!(answer, Message::Stored | Message::Values(_)) {
        return;
    }
    let pending = {
        let mut state = state.borrow_mut();
        let waiting = state.waiting_for(id, from);
        waiting.and_then(|id| state.pending.remove(&id))
    };
    if let Some(pending) = pending {
        io.remove_timeout(pending.timer);
        (pending.answer)(io, Ok(answer));
    }
}

fn schedule_tick<P: Poller + 'static>(
    io: &mut IOLoop<P>,
    state: &Rc<RefCell<LinkState<P>>>,
    id: u64,
    after: Duration,
) -> TimeoutHandle {
    let state = Rc::downgrade(state);
    io.call_later(after, move |io| tick(io, state, id))
}

/// Request `id`'s timer: past its deadline it has timed out; before, it is
/// sent again.
fn tick<P: Poller + 'static>(io: &mut IOLoop<P>, state: Weak<RefCell<LinkState<P>>>, id: u64) {
    let Some(state) = state.upgrade() else {
        return;
    };
    let now = io.time();
    let resend = {
        let link = state.borrow();
        let fd = link.asking;
        let Some(pending) = link.pending.get(&id) else {
            return; // answered: its timer was removed with it
        };
        if now >= pending.deadline {
            None
        } else {
            let wait = RESEND_AFTER.min(pending.deadline - now);
            Some((fd, pending.peer, pending.datagram.clone(), wait))
        }
    };
    let Some((fd, peer, datagram, wait)) = resend else {
        let pending = state.borrow_mut().pending.remove(&id).expect("waiting");
        return (pending.answer)(io, Err(AskError::TimedOut));
    };
    send(io, fd, &datagram, peer);
    let timer = schedule_tick(io, &state, id, wait);
    if let Some(pending) = state.borrow_mut().pending.get_mut(&id) {
        pending.timer = timer;
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_carry_their_id_and_message() {
        let query = tagged(7 << 32 | 3, &Message::Query);
        assert_eq!(query, b"30064771075 QUERY\n");
        assert_eq!(untagged(&query), Some((7 << 32 | 3, Message::Query)));
        for bad in ["QUERY", "x QUERY", "1 NOPE", "1", ""] {
            assert_eq!(untagged(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
