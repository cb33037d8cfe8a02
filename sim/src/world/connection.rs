//! `Connection`: a stream between two hosts, and its two ends (receive buffer, window, state).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::{Index, IndexMut};
use std::time::Duration;

use ioloop::{Fd, Instant, Ready};

use super::{HostId, World};

/// A connection's id: the serial number the trace shows (handed out in
/// order, never reused), and the slot that holds its record (reused once
/// the connection is freed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ConnId {
    serial: u64,
    slot: u32,
}

impl ConnId {
    /// The number the trace records.
    pub(super) fn serial(self) -> u64 {
        self.serial
    }

    /// An id for unit tests of what carries one.
    #[cfg(test)]
    pub(super) fn for_test() -> ConnId {
        ConnId { serial: 0, slot: 0 }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.serial)
    }
}

/// The bytes toward one end: those that landed and wait to be read, then
/// those still in flight, in the order they were written. Segments of a
/// direction land in order, so a landing only moves the boundary: a byte
/// is copied in when written and out when read, never in between.
pub(super) struct RecvQueue {
    bytes: VecDeque<u8>,
    /// Bytes at the front that landed.
    landed: usize,
}

thread_local! {
    /// Receive buffers of dropped queues, for the next connections — of
    /// this run or the next one on this thread — so that a buffer grows
    /// once, not once per connection and seed. A buffer's capacity never
    /// changes what a run does.
    static SPARE: RefCell<Vec<VecDeque<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Spare buffers kept at most, and the largest kept: at most 16 MiB idle
/// per thread.
const SPARE_MAX: usize = 64;
const SPARE_BYTES_MAX: usize = 256 * 1024;

impl RecvQueue {
    fn new() -> RecvQueue {
        let spare = SPARE
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten();
        RecvQueue {
            bytes: spare.unwrap_or_default(),
            landed: 0,
        }
    }

    /// Bytes that landed and are not read yet.
    pub(super) fn len(&self) -> usize {
        self.landed
    }

    /// `true` if no byte waits to be read.
    pub(super) fn is_empty(&self) -> bool {
        self.landed == 0
    }

    /// Put `bytes` in flight, behind everything before them.
    pub(super) fn send(&mut self, bytes: &[u8]) {
        self.bytes.extend(bytes);
    }

    /// The next `len` bytes in flight land: readable from now on.
    pub(super) fn land(&mut self, len: usize) {
        debug_assert!(
            self.landed + len <= self.bytes.len(),
            "landing bytes never sent"
        );
        self.landed += len;
    }

    /// The next `len` bytes in flight are lost (the end was closed or
    /// reset, or its host is down).
    pub(super) fn lose(&mut self, len: usize) {
        debug_assert!(
            self.landed + len <= self.bytes.len(),
            "losing bytes never sent"
        );
        self.bytes.drain(self.landed..self.landed + len);
    }

    /// Move the first `buf.len()` landed bytes into `buf`.
    pub(super) fn read(&mut self, buf: &mut [u8]) {
        let n = buf.len();
        debug_assert!(n <= self.landed, "reading bytes that did not land");
        let (front, back) = self.bytes.as_slices();
        let from_front = front.len().min(n);
        buf[..from_front].copy_from_slice(&front[..from_front]);
        buf[from_front..].copy_from_slice(&back[..n - from_front]);
        self.bytes.drain(..n);
        self.landed -= n;
    }
}

impl Drop for RecvQueue {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        if bytes.capacity() == 0 || bytes.capacity() > SPARE_BYTES_MAX {
            return;
        }
        bytes.clear();
        // After the thread's locals are gone (a queue dropped at thread
        // exit) the buffer is simply freed.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_MAX {
                spare.push(bytes);
            }
        });
    }
}

/// One end of a connection.
pub(super) struct End {
    pub(super) host: HostId,
    pub(super) fd: Option<Fd>,
    pub(super) local: SocketAddr,
    /// What the peer sent this end: landed, then in flight.
    pub(super) recv: RecvQueue,
    /// The peer's FIN arrived (after all its data: delivery is in order).
    pub(super) recv_fin: bool,
    pub(super) write_shut: bool,
    pub(super) closed: bool,
    pub(super) connected: bool,
    pub(super) reset: bool,
    /// An error to report once, on the next read or write.
    pub(super) error: Option<io::ErrorKind>,
    /// Bytes sent toward the peer and not yet delivered.
    pub(super) in_flight: usize,
    /// A write hit the window: raise a WRITE edge when it frees.
    pub(super) write_blocked: bool,
    /// A short write (a `PartialWrite` fault) filled the send buffer: as on
    /// a real kernel, where a short write means there was no room for
    /// more, writes take nothing (`WouldBlock`) until some of what this end
    /// sent lands (or is lost to a machine that is down), and a WRITE edge
    /// says so.
    pub(super) send_full: bool,
    /// Deliveries from this end keep their order.
    pub(super) last_delivery: Instant,
    /// `TCP_NODELAY`, recorded: the world sends every write at once (it has
    /// no Nagle), so it changes nothing here.
    pub(super) nodelay: bool,
    /// Keep-alive idle time, recorded: the world has no idle probes.
    pub(super) keepalive: Option<Duration>,
}

impl End {
    pub(super) fn new(host: HostId, local: SocketAddr) -> End {
        End {
            host,
            fd: None,
            local,
            recv: RecvQueue::new(),
            recv_fin: false,
            write_shut: false,
            closed: false,
            connected: false,
            reset: false,
            error: None,
            in_flight: 0,
            write_blocked: false,
            send_full: false,
            last_delivery: Instant::ZERO,
            nodelay: false,
            keepalive: None,
        }
    }

    /// This end's readiness, given the window and its `peer`.
    pub(super) fn ready(&self, window_bytes: usize, peer: &End) -> Ready {
        let mut ready = Ready::empty();
        if !self.recv.is_empty() || self.recv_fin || self.reset || self.error.is_some() {
            ready |= Ready::READABLE;
        }
        if self.recv_fin || self.reset {
            ready |= Ready::READ_CLOSED;
        }
        let used = self.in_flight + peer.recv.len();
        if (self.connected && !self.send_full && used < window_bytes)
            || self.reset
            || self.error.is_some()
        {
            ready |= Ready::WRITABLE;
        }
        if self.reset || (self.write_shut && self.recv_fin) {
            ready |= Ready::WRITE_CLOSED;
        }
        if self.reset || self.error.is_some() {
            ready |= Ready::ERROR;
        }
        ready
    }
}

/// A stream between two hosts.
pub(super) struct Connection {
    /// Side 0 connected, side 1 accepted.
    pub(super) ends: [End; 2],
    /// Where side 0 connects to.
    pub(super) target: SocketAddr,
    /// Deliveries of this connection still in flight.
    pub(super) deliveries_in_flight: usize,
    serial: u64,
}

impl Connection {
    /// A connection from `client` to `target`; side 1 is a placeholder
    /// until the SYN arrives.
    pub(super) fn new(client: End, target: SocketAddr) -> Connection {
        let placeholder = End::new(client.host, target);
        Connection {
            ends: [client, placeholder],
            target,
            deliveries_in_flight: 0,
            serial: 0,
        }
    }

    /// Nothing can touch it again: both ends closed, nothing in flight.
    fn is_done(&self) -> bool {
        self.ends.iter().all(|end| end.closed) && self.deliveries_in_flight == 0
    }
}

/// The live connections: a slab whose freed slots are reused (last freed,
/// first reused). A connection's record, its buffers included, is freed
/// once it is done, so memory follows the connections alive at once, not
/// every connection ever made.
pub(super) struct Connections {
    slots: Vec<Option<Connection>>,
    slots_free: Vec<u32>,
    serial_next: u64,
    live_count: usize,
}

impl Connections {
    pub(super) fn new() -> Connections {
        Connections {
            slots: Vec::new(),
            slots_free: Vec::new(),
            serial_next: 0,
            live_count: 0,
        }
    }

    /// The id the next connection will get.
    pub(super) fn id_next(&self) -> ConnId {
        let slot = match self.slots_free.last() {
            Some(&slot) => slot,
            None => u32::try_from(self.slots.len()).expect("fewer than 2^32 live connections"),
        };
        ConnId {
            serial: self.serial_next,
            slot,
        }
    }

    /// Add `connection` under the next id.
    pub(super) fn insert(&mut self, mut connection: Connection) -> ConnId {
        let conn = self.id_next();
        connection.serial = conn.serial;
        if self.slots_free.pop().is_none() {
            self.slots.push(None);
        }
        let slot = &mut self.slots[conn.slot as usize];
        debug_assert!(slot.is_none());
        *slot = Some(connection);
        self.serial_next += 1;
        self.live_count += 1;
        conn
    }

    /// Free `conn` if nothing can touch it again.
    pub(super) fn free_if_done(&mut self, conn: ConnId) {
        if !self[conn].is_done() {
            return;
        }
        let connection = self.slots[conn.slot as usize].take().expect("live");
        debug_assert!(connection.ends.iter().all(|end| end.fd.is_none()));
        self.slots_free.push(conn.slot);
        self.live_count -= 1;
    }

    /// Live connection records.
    pub(super) fn len(&self) -> usize {
        self.live_count
    }
}

impl Index<ConnId> for Connections {
    type Output = Connection;
    fn index(&self, conn: ConnId) -> &Connection {
        let connection = self.slots[conn.slot as usize]
            .as_ref()
            .expect("a live connection");
        debug_assert_eq!(connection.serial, conn.serial, "a stale connection id");
        connection
    }
}

impl IndexMut<ConnId> for Connections {
    fn index_mut(&mut self, conn: ConnId) -> &mut Connection {
        let connection = self.slots[conn.slot as usize]
            .as_mut()
            .expect("a live connection");
        debug_assert_eq!(connection.serial, conn.serial, "a stale connection id");
        connection
    }
}

impl World {
    /// Connections whose record is still held: those with an open end or
    /// something in flight. Closed and drained ones are freed.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Room for the writer at `side` of `conn`: its reader read, or what
    /// filled its send buffer after a short write landed (or was lost to
    /// a machine that is down). Wake it if it was blocked and may write.
    pub(super) fn window_freed(&mut self, conn: ConnId, side: usize) {
        let writer = &mut self.conns[conn].ends[side];
        if writer.write_blocked && !writer.closed && !writer.send_full {
            writer.write_blocked = false;
            let (host, fd) = (writer.host, writer.fd);
            self.raise(host, fd, Ready::WRITABLE);
        }
    }
}
