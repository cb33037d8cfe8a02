//! `Delivery`: segments in flight (SYN, data, FIN, RST, ...) and datagrams, the latency they wait, and their arrival.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ioloop::{Fd, Ready};

use super::connection::{ConnId, End};
use super::datagram::Packet;
use super::host::HostId;
use super::host::Socket;
use super::{tag, FaultKind, World};

/// Pending connections a listener holds before refusing more.
pub(super) const BACKLOG_MAX: usize = 128;

/// Something in flight, delivered at its time.
pub(super) enum Delivery {
    Syn {
        conn: ConnId,
    },
    SynAck {
        conn: ConnId,
    },
    Refused {
        conn: ConnId,
    },
    /// The next `len` bytes in flight to end `to` (they wait in its
    /// receive queue, behind what landed before).
    Data {
        conn: ConnId,
        to: usize,
        len: usize,
    },
    Fin {
        conn: ConnId,
        to: usize,
    },
    Reset {
        conn: ConnId,
        to: usize,
    },
    /// UDP: a datagram, or an ICMP answer to one (see `datagram.rs`);
    /// boxed, so that a delivery is small to move.
    Udp(Box<Packet>),
}

impl Delivery {
    /// The connection it belongs to (`None`: UDP, which has none).
    fn conn(&self) -> Option<ConnId> {
        match *self {
            Delivery::Syn { conn }
            | Delivery::SynAck { conn }
            | Delivery::Refused { conn }
            | Delivery::Data { conn, .. }
            | Delivery::Fin { conn, .. }
            | Delivery::Reset { conn, .. } => Some(conn),
            Delivery::Udp(_) => None,
        }
    }
}

impl World {
    pub(super) fn latency(&mut self) -> Duration {
        let us = self
            .entropy
            .between(self.plan.latency_us_min, self.plan.latency_us_max);
        Duration::from_micros(us)
    }

    /// Put `delivery` in flight; one sent `from` an end lands after
    /// everything that end sent before.
    pub(super) fn schedule(&mut self, from: Option<(ConnId, usize)>, delivery: Delivery) {
        let mut at = self.now + self.latency();
        let conn = delivery.conn().expect("a segment of a connection");
        self.conns[conn].deliveries_in_flight += 1;
        if let Some((conn, side)) = from {
            let end = &mut self.conns[conn].ends[side];
            at = at.max(end.last_delivery);
            end.last_delivery = at;
        }
        self.deliveries.insert(at, delivery);
    }

    /// Deliver everything due by now, in time order; a segment whose link
    /// is blocked waits on the link, a datagram whose link is cut is lost.
    pub(super) fn deliver_due(&mut self) {
        self.release_links();
        while let Some(delivery) = self.deliveries.pop_due(self.now) {
            let route = self.route(&delivery);
            // No link was ever cut or clogged: none can hold this one.
            let links = route.filter(|_| !self.links.is_empty());
            match (links, delivery) {
                (Some((from, to)), Delivery::Udp(packet)) if self.link_cut(from, to) => {
                    self.packet_cut(*packet)
                }
                (Some((from, to)), delivery) if self.link_blocked(from, to) => {
                    self.hold(from, to, delivery)
                }
                (_, delivery) => self.deliver_routed(delivery, route),
            }
        }
    }

    /// Deliver one segment now, unless its host is down (then it is lost).
    pub(super) fn deliver_now(&mut self, delivery: Delivery) {
        let route = self.route(&delivery);
        self.deliver_routed(delivery, route);
    }

    /// [`deliver_now`](Self::deliver_now), the route known.
    fn deliver_routed(&mut self, delivery: Delivery, route: Option<(HostId, HostId)>) {
        let lost = route.is_some_and(|(_, to)| self.host_is_down(to));
        let conn = match delivery {
            Delivery::Udp(packet) => return self.deliver_packet(*packet, lost),
            ref segment => segment.conn().expect("a segment of a connection"),
        };
        self.conns[conn].deliveries_in_flight -= 1;
        match delivery {
            Delivery::Data { to, len, .. } if lost => {
                self.conns[conn].ends[to].recv.lose(len);
                // A send buffer a short write filled: retransmissions
                // would reach the host once it is back (and meet a reset
                // there if it restarted); the writer may write again.
                if std::mem::take(&mut self.conns[conn].ends[1 - to].send_full) {
                    self.window_freed(conn, 1 - to);
                }
            }
            delivery if !lost => self.deliver(delivery),
            _ => {}
        }
        self.conns.free_if_done(conn);
    }

    /// The hosts a segment goes from and to (`None`: a SYN to an address
    /// no host has).
    fn route(&self, delivery: &Delivery) -> Option<(HostId, HostId)> {
        let conn = match delivery {
            Delivery::Udp(packet) => return self.packet_route(packet),
            segment => &self.conns[segment.conn()?],
        };
        match *delivery {
            Delivery::Syn { .. } => Some((conn.ends[0].host, self.host_of(conn.target.ip())?)),
            Delivery::Refused { .. } => Some((self.host_of(conn.target.ip())?, conn.ends[0].host)),
            Delivery::SynAck { .. } => Some((conn.ends[1].host, conn.ends[0].host)),
            Delivery::Data { to, .. } | Delivery::Fin { to, .. } | Delivery::Reset { to, .. } => {
                Some((conn.ends[1 - to].host, conn.ends[to].host))
            }
            Delivery::Udp(_) => unreachable!("routed above"),
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.now;
        match delivery {
            Delivery::Udp(packet) => self.deliver_packet(*packet, false),
            Delivery::Syn { conn } => self.deliver_syn(conn),
            Delivery::SynAck { conn } => {
                self.trace.record(tag::DELIVER, &[1, conn.serial()], || {
                    format!("{now:?} conn{conn} syn-ack")
                });
                let client = &mut self.conns[conn].ends[0];
                if client.closed {
                    self.schedule(Some((conn, 0)), Delivery::Reset { conn, to: 1 });
                    return;
                }
                client.connected = true;
                let (host, fd) = (client.host, client.fd);
                self.raise(host, fd, Ready::WRITABLE);
            }
            Delivery::Refused { conn } => {
                self.trace.record(tag::DELIVER, &[2, conn.serial()], || {
                    format!("{now:?} conn{conn} refused")
                });
                let client = &mut self.conns[conn].ends[0];
                if client.closed {
                    return;
                }
                client.error = Some(io::ErrorKind::ConnectionRefused);
                client.reset = true;
                let (host, fd) = (client.host, client.fd);
                self.raise(
                    host,
                    fd,
                    Ready::READABLE
                        | Ready::WRITABLE
                        | Ready::READ_CLOSED
                        | Ready::WRITE_CLOSED
                        | Ready::ERROR,
                );
            }
            Delivery::Data { conn, to, len } => {
                self.trace.record(
                    tag::DELIVER,
                    &[3, conn.serial(), to as u64, len as u64],
                    || format!("{now:?} conn{conn} {len} bytes to side {to}"),
                );
                let writer = &mut self.conns[conn].ends[1 - to];
                writer.in_flight -= len;
                let send_freed = std::mem::take(&mut writer.send_full);
                let end = &mut self.conns[conn].ends[to];
                if end.closed || end.reset {
                    end.recv.lose(len);
                } else {
                    end.recv.land(len);
                }
                if send_freed {
                    // The send buffer a short write filled has room again
                    // (if the window has too).
                    let [a, b] = &self.conns[conn].ends;
                    let (writer, reader) = if to == 0 { (b, a) } else { (a, b) };
                    if writer.in_flight + reader.recv.len() < self.plan.window_bytes {
                        self.window_freed(conn, 1 - to);
                    }
                }
                let end = &mut self.conns[conn].ends[to];
                if end.closed {
                    // Data for a closed socket: the kernel answers with RST.
                    self.schedule(Some((conn, to)), Delivery::Reset { conn, to: 1 - to });
                    return;
                }
                if end.reset {
                    return;
                }
                self.progress += 1;
                let (host, fd) = (end.host, end.fd);
                self.raise(host, fd, Ready::READABLE);
            }
            Delivery::Fin { conn, to } => {
                self.trace
                    .record(tag::DELIVER, &[4, conn.serial(), to as u64], || {
                        format!("{now:?} conn{conn} FIN to side {to}")
                    });
                let end = &mut self.conns[conn].ends[to];
                if end.closed || end.reset {
                    return;
                }
                end.recv_fin = true;
                self.progress += 1;
                let mut ready = Ready::READABLE | Ready::READ_CLOSED;
                if end.write_shut {
                    ready |= Ready::WRITE_CLOSED;
                }
                let (host, fd) = (end.host, end.fd);
                self.raise(host, fd, ready);
            }
            Delivery::Reset { conn, to } => {
                self.trace
                    .record(tag::DELIVER, &[5, conn.serial(), to as u64], || {
                        format!("{now:?} conn{conn} RST to side {to}")
                    });
                let end = &mut self.conns[conn].ends[to];
                if end.closed || end.reset {
                    return;
                }
                end.reset = true;
                // Linux's `tcp_reset`: `EPIPE` in CLOSE_WAIT (the peer's
                // FIN received, this end's not sent), `ECONNRESET` otherwise.
                end.error = Some(if end.recv_fin && !end.write_shut {
                    io::ErrorKind::BrokenPipe
                } else {
                    io::ErrorKind::ConnectionReset
                });
                self.progress += 1;
                let (host, fd) = (end.host, end.fd);
                self.raise(
                    host,
                    fd,
                    Ready::READABLE
                        | Ready::WRITABLE
                        | Ready::READ_CLOSED
                        | Ready::WRITE_CLOSED
                        | Ready::ERROR,
                );
            }
        }
    }

    fn deliver_syn(&mut self, conn: ConnId) {
        let now = self.now;
        let target = self.conns[conn].target;
        self.trace.record(tag::DELIVER, &[0, conn.serial()], || {
            format!("{now:?} conn{conn} SYN to {target}")
        });
        let listener = self.find_listener(target);
        // A refusal is blamed on the connecting host and its fd (-1 once
        // closed).
        let client = &self.conns[conn].ends[0];
        let (client_host, client_fd) = (client.host, client.fd.unwrap_or(Fd(-1)));
        let refuse = self.fault(
            self.plan.refuse_connect,
            FaultKind::RefuseConnect,
            client_host,
            client_fd,
        );
        let Some((host, fd)) = listener.filter(|_| !refuse) else {
            self.refuse(conn);
            return;
        };
        let Ok(Socket::Listener {
            backlog,
            backlog_max,
            ..
        }) = self.socket(host, fd)
        else {
            unreachable!("find_listener returns listeners");
        };
        if backlog.len() >= *backlog_max {
            self.refuse(conn);
            return;
        }
        let local = SocketAddr::new(self.hosts[host].ip, target.port());
        let mut server_end = End::new(host, local);
        server_end.connected = true;
        self.conns[conn].ends[1] = server_end;
        if let Some(Some(Socket::Listener { backlog, .. })) =
            self.hosts[host].sockets.get_mut(fd.0 as usize)
        {
            backlog.push_back(conn);
        }
        self.raise(host, Some(fd), Ready::READABLE);
        // The SYN-ACK leads everything the server sends.
        self.schedule(Some((conn, 1)), Delivery::SynAck { conn });
    }

    /// Refuse `conn`: no server end will ever exist.
    fn refuse(&mut self, conn: ConnId) {
        self.conns[conn].ends[1].closed = true;
        self.schedule(None, Delivery::Refused { conn });
    }
}
