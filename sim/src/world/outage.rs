//! Outages of a host: a crash (every fd gone at once, peers told or not), a restart with an empty fd table, and a pause.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::delivery::Delivery;
use super::host::{HostId, Socket};
use super::World;

/// How a host goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// The process dies; the kernel lives on and answers for it: peers get
    /// a reset, segments to its old connections are answered with resets,
    /// connects are refused.
    Process,
    /// The machine stops: nothing answers. Peers hear nothing (their
    /// connections stall until their own timeouts), and everything sent to
    /// it is lost until it restarts.
    Machine,
}

impl World {
    /// Crash `host`: every fd it holds vanishes at once. Under
    /// [`CrashMode::Process`] its peers are reset; under
    /// [`CrashMode::Machine`] they hear nothing, and the host stays down
    /// (all it is sent is lost) until [`restart_host`](World::restart_host).
    pub fn crash_host(&mut self, host: HostId, mode: CrashMode) {
        let answers = mode == CrashMode::Process;
        let sockets = std::mem::take(&mut self.hosts[host].sockets);
        for socket in sockets.into_iter().flatten() {
            match socket {
                Socket::Listener { backlog, .. } => {
                    for conn in backlog {
                        self.conns[conn].ends[1].closed = true;
                        if answers {
                            self.schedule(Some((conn, 1)), Delivery::Reset { conn, to: 0 });
                        }
                        self.conns.free_if_done(conn);
                    }
                }
                Socket::Stream { conn, side } => {
                    let end = &mut self.conns[conn].ends[side];
                    end.closed = true;
                    end.fd = None;
                    if answers && end.connected && !end.reset {
                        self.schedule(Some((conn, side)), Delivery::Reset { conn, to: 1 - side });
                    }
                    self.conns.free_if_done(conn);
                }
                // Gone with its queue; datagrams to it find no socket.
                Socket::Datagram(_) => {}
            }
        }
        self.clear_host(host);
        self.hosts[host].down = !answers;
        let now = self.now;
        self.trace.note(|| {
            let how = if answers {
                "its process (the kernel resets its peers)"
            } else {
                "the whole machine (silence until it restarts)"
            };
            format!("{now:?} {} crashes: {how}", self.names[host])
        });
    }

    /// Bring `host` back up with an empty fd table (fds from the lowest
    /// again) and a new wake flag for its new poller.
    pub fn restart_host(&mut self, host: HostId) -> Arc<AtomicBool> {
        self.clear_host(host);
        self.hosts[host].down = false;
        let woken = Arc::new(AtomicBool::new(false));
        self.hosts[host].woken = Arc::clone(&woken);
        self.progress += 1;
        let now = self.now;
        self.trace
            .record(super::tag::FD, &[host as u64, u64::MAX, 2], || {
                format!("{now:?} {} restarts", self.names[host])
            });
        woken
    }

    /// Stop `host`'s loop for `duration` (a stalled process: GC pause,
    /// swap): it is not stepped, and sees the time jump when it resumes.
    pub fn pause_host(&mut self, host: HostId, duration: Duration) {
        let until = self.host_now(host) + duration;
        self.hosts[host].busy_until = until;
        let now = self.now;
        self.trace
            .note(|| format!("{now:?} {} paused until {until:?}", self.names[host]));
    }

    /// A line of the simulator's about `host` for the readable trace (not
    /// part of the hash): what a decision did, beyond what it was.
    pub(crate) fn trace_note(&mut self, host: HostId, what: &str) {
        let now = self.now;
        self.trace
            .note(|| format!("{now:?} {} {what}", self.names[host]));
    }

    /// A line of `host`'s own for the readable trace (not part of the
    /// hash): see [`IOLoop::note`](ioloop::IOLoop::note).
    pub fn note(&mut self, host: HostId, line: String) {
        let now = self.host_now(host);
        self.trace
            .note(|| format!("{now:?} {} note: {line}", self.names[host]));
    }

    /// `true` while `host` is down after a machine crash.
    pub fn host_is_down(&self, host: HostId) -> bool {
        self.hosts[host].down
    }

    /// The host with address `ip`, if any.
    pub fn host_of(&self, ip: IpAddr) -> Option<HostId> {
        self.hosts.iter().position(|h| h.ip == ip)
    }
}
