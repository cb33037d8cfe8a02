//! The UDP contract, written once over any `Poller`: `tests/udp.rs` runs it on mio over loopback, `sim/tests/udp.rs` on the simulator (faults off).
//!
//! Each check takes a fresh loop and the IP address its sockets bind to
//! (port 0 throughout), runs every socket in that one loop, and bounds the
//! run by the loop's clock. Nothing here depends on timing: on loopback a
//! datagram is queued at the receiver before `send_to` returns, and the
//! simulator without faults delivers in the order sent.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use ioloop::{Events, Fd, IOLoop, Poller};

/// How long a check may take on the loop's clock.
const LIMIT: Duration = Duration::from_secs(10);

/// What a receiving handler saw: each datagram and its sender, or an error.
type Inbox = Rc<RefCell<Vec<Result<(Vec<u8>, SocketAddr), io::ErrorKind>>>>;

fn bind<P: Poller>(io: &mut IOLoop<P>, ip: IpAddr) -> (Fd, SocketAddr) {
    let fd = io.udp_bind(SocketAddr::new(ip, 0)).expect("udp_bind");
    let addr = io.local_addr(fd).expect("local_addr");
    assert_ne!(addr.port(), 0, "bound to a port of its own");
    (fd, addr)
}

/// A `READ` handler on `fd` that takes at most `per_call` datagrams per
/// call, into buffers of `buf_bytes`, and logs them.
fn receive<P: Poller>(io: &mut IOLoop<P>, fd: Fd, buf_bytes: usize, per_call: usize) -> Inbox {
    let inbox: Inbox = Rc::default();
    let log = Rc::clone(&inbox);
    io.add_handler(
        fd,
        move |io, fd, _events| {
            let mut buf = vec![0u8; buf_bytes];
            for _ in 0..per_call {
                match io.recv_from(fd, &mut buf) {
                    Ok((n, from)) => log.borrow_mut().push(Ok((buf[..n].to_vec(), from))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => return log.borrow_mut().push(Err(e.kind())),
                }
            }
        },
        Events::READ,
    )
    .expect("add_handler");
    inbox
}

fn run_until_count<P: Poller>(io: &mut IOLoop<P>, inbox: &Inbox, count: usize) {
    let done = io
        .run_until(LIMIT, |_| inbox.borrow().len() >= count)
        .expect("run");
    assert!(done, "got only {:?}", inbox.borrow());
}

fn datagrams(inbox: &Inbox) -> Vec<(Vec<u8>, SocketAddr)> {
    inbox
        .borrow()
        .iter()
        .map(|entry| entry.clone().expect("a datagram, not an error"))
        .collect()
}

/// Datagrams sent with `send_to` arrive whole, one per `recv_from`, with
/// the sender's address.
pub fn datagrams_arrive_whole_with_their_sender<P: Poller>(mut io: IOLoop<P>, ip: IpAddr) {
    let (a, a_addr) = bind(&mut io, ip);
    let (b, b_addr) = bind(&mut io, ip);
    let inbox = receive(&mut io, b, 1500, usize::MAX);
    for word in ["one", "two", "three"] {
        assert_eq!(io.send_to(a, word.as_bytes(), b_addr).unwrap(), word.len());
    }
    run_until_count(&mut io, &inbox, 3);
    let got = datagrams(&inbox);
    let words: Vec<&[u8]> = got.iter().map(|(bytes, _)| &bytes[..]).collect();
    assert_eq!(words, [&b"one"[..], b"two", b"three"]);
    assert!(got.iter().all(|(_, from)| *from == a_addr), "{got:?}");
}

/// A handler that reads one datagram per call is called again while
/// datagrams wait: datagram sockets are level-triggered too, and a read of
/// less than the buffer does not mean drained.
pub fn a_handler_reading_one_datagram_per_call_gets_them_all<P: Poller>(
    mut io: IOLoop<P>,
    ip: IpAddr,
) {
    let (a, _) = bind(&mut io, ip);
    let (b, b_addr) = bind(&mut io, ip);
    let inbox = receive(&mut io, b, 1500, 1);
    for i in 0..20u8 {
        io.send_to(a, &[i; 3], b_addr).unwrap();
    }
    run_until_count(&mut io, &inbox, 20);
    let firsts: Vec<u8> = datagrams(&inbox)
        .iter()
        .map(|(bytes, _)| bytes[0])
        .collect();
    assert_eq!(firsts, (0..20).collect::<Vec<u8>>());
}

/// A datagram longer than the buffer is truncated to it and the rest is
/// discarded (Linux's `recvfrom`): the next read gets the next datagram.
pub fn a_long_datagram_is_truncated_to_the_buffer<P: Poller>(mut io: IOLoop<P>, ip: IpAddr) {
    let (a, _) = bind(&mut io, ip);
    let (b, b_addr) = bind(&mut io, ip);
    let inbox = receive(&mut io, b, 10, usize::MAX);
    let long: Vec<u8> = (0..100).collect();
    io.send_to(a, &long, b_addr).unwrap();
    io.send_to(a, b"next", b_addr).unwrap();
    run_until_count(&mut io, &inbox, 2);
    let got = datagrams(&inbox);
    assert_eq!(got[0].0, &long[..10]);
    assert_eq!(got[1].0, b"next");
}

/// An empty datagram is a datagram (`Ok((0, from))`), not an end: the
/// handler stays, and what follows arrives.
pub fn an_empty_datagram_is_not_an_end<P: Poller>(mut io: IOLoop<P>, ip: IpAddr) {
    let (a, a_addr) = bind(&mut io, ip);
    let (b, b_addr) = bind(&mut io, ip);
    let inbox = receive(&mut io, b, 1500, usize::MAX);
    assert_eq!(io.send_to(a, b"", b_addr).unwrap(), 0);
    io.send_to(a, b"after", b_addr).unwrap();
    run_until_count(&mut io, &inbox, 2);
    assert_eq!(
        datagrams(&inbox),
        [(Vec::new(), a_addr), (b"after".to_vec(), a_addr)]
    );
    assert!(io.has_handler(b));
}

/// `send` and `recv` on connected sockets; a connected socket hears only
/// its peer (a stranger's datagram, sent first, never arrives).
pub fn connected_sockets_talk_to_their_peer_only<P: Poller>(mut io: IOLoop<P>, ip: IpAddr) {
    let (a, a_addr) = bind(&mut io, ip);
    let (b, b_addr) = bind(&mut io, ip);
    let (stranger, _) = bind(&mut io, ip);
    assert_eq!(
        io.send(a, b"hi").unwrap_err().kind(),
        io::ErrorKind::NotConnected
    );
    assert!(io.peer_addr(a).is_err(), "not connected yet");
    io.udp_connect(a, b_addr).unwrap();
    io.udp_connect(b, a_addr).unwrap();
    assert_eq!(io.peer_addr(a).unwrap(), b_addr);
    let inbox = receive(&mut io, b, 1500, usize::MAX);
    io.send_to(stranger, b"from a stranger", b_addr).unwrap();
    assert_eq!(io.send(a, b"from the peer").unwrap(), 13);
    run_until_count(&mut io, &inbox, 1);
    assert_eq!(datagrams(&inbox), [(b"from the peer".to_vec(), a_addr)]);
    // And back, with `recv`.
    let got = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&got);
    io.add_handler(
        a,
        move |io, fd, _| {
            let mut buf = [0u8; 64];
            while let Ok(n) = io.recv(fd, &mut buf) {
                log.borrow_mut().push(buf[..n].to_vec());
            }
        },
        Events::READ,
    )
    .unwrap();
    io.send(b, b"reply").unwrap();
    let done = io.run_until(LIMIT, |_| !got.borrow().is_empty()).unwrap();
    assert!(done);
    assert_eq!(*got.borrow(), [b"reply".to_vec()]);
}

/// A connected socket that sends to a port nobody has bound learns of it
/// (the ICMP answer): its handler is called and a call fails with
/// `ConnectionRefused`, once.
pub fn a_connected_send_to_an_unbound_port_is_refused<P: Poller>(mut io: IOLoop<P>, ip: IpAddr) {
    // `a` first, so that the port let go is not the one `a` gets.
    let (a, _) = bind(&mut io, ip);
    let (gone, gone_addr) = bind(&mut io, ip);
    io.close_fd(gone).unwrap();
    io.udp_connect(a, gone_addr).unwrap();
    let inbox = receive(&mut io, a, 1500, usize::MAX);
    io.send(a, b"anyone?").unwrap();
    run_until_count(&mut io, &inbox, 1);
    assert_eq!(
        *inbox.borrow(),
        [Err(io::ErrorKind::ConnectionRefused)],
        "refused once"
    );
    assert!(io.take_error(a).unwrap().is_none(), "reported once");
}

/// Bad input gets a clear error and changes nothing: unknown fds, a TCP
/// fd given to a datagram call, stream calls on a UDP fd, a datagram too
/// long for UDP, a port in use. The socket works afterwards.
pub fn bad_input_gets_an_error_and_changes_nothing<P: Poller>(mut io: IOLoop<P>, ip: IpAddr) {
    let (a, a_addr) = bind(&mut io, ip);
    let (b, b_addr) = bind(&mut io, ip);
    let inbox = receive(&mut io, b, 1500, usize::MAX);
    let listener = io.listen(SocketAddr::new(ip, 0)).unwrap();
    let mut buf = [0u8; 16];
    let unknown = Fd(900);
    assert!(io.recv_from(unknown, &mut buf).is_err());
    assert!(io.send_to(unknown, b"x", b_addr).is_err());
    assert!(io.udp_connect(unknown, b_addr).is_err());
    for call in ["recv_from", "send_to", "udp_connect", "send", "recv"] {
        let result = match call {
            "recv_from" => io.recv_from(listener, &mut buf).map(|_| ()),
            "send_to" => io.send_to(listener, b"x", b_addr).map(|_| ()),
            "udp_connect" => io.udp_connect(listener, b_addr),
            "send" => io.send(listener, b"x").map(|_| ()),
            _ => io.recv(listener, &mut buf).map(|_| ()),
        };
        let error = result.expect_err(call);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{call}: {error}");
    }
    assert_eq!(
        io.read(a, &mut buf).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        io.write(a, b"x").unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert!(io.shutdown(a, std::net::Shutdown::Both).is_err());
    assert!(
        io.send_to(a, &vec![0u8; 65_508], b_addr).is_err(),
        "too long"
    );
    assert_eq!(
        io.udp_bind(a_addr).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    assert!(io.set_nodelay(a, true).is_err(), "a stream option");
    // Nothing changed: the sockets still work.
    assert_eq!(io.local_addr(a).unwrap(), a_addr);
    io.send_to(a, b"still here", b_addr).unwrap();
    run_until_count(&mut io, &inbox, 1);
    assert_eq!(datagrams(&inbox), [(b"still here".to_vec(), a_addr)]);
    io.close_fd(listener).unwrap();
}

/// `close_fd` closes a UDP socket and removes its handler; its port can be
/// bound again, and what is sent there arrives at the new socket.
pub fn close_fd_closes_a_udp_socket<P: Poller>(mut io: IOLoop<P>, ip: IpAddr) {
    let (a, _) = bind(&mut io, ip);
    let (b, b_addr) = bind(&mut io, ip);
    let _ = receive(&mut io, b, 1500, usize::MAX);
    io.close_fd(b).unwrap();
    assert!(!io.has_handler(b));
    assert!(io.local_addr(b).is_err());
    assert!(io.close_fd(b).is_err(), "closed already");
    let again = io.udp_bind(b_addr).expect("the port is free again");
    let inbox = receive(&mut io, again, 1500, usize::MAX);
    io.send_to(a, b"hello again", b_addr).unwrap();
    run_until_count(&mut io, &inbox, 1);
    assert_eq!(datagrams(&inbox)[0].0, b"hello again");
}
