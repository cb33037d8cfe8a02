//! Virtual time: a host's `wait`, the next instant anything happens, and advancing to it.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ioloop::{Event, Fd, Instant};

use super::{tag, FaultKind, HostId, World};

/// What every simulated host's wall clock reads at virtual time zero, in
/// seconds since the Unix epoch: 2026-01-01T00:00:00Z. Fixed, not drawn, so
/// that no seed depends on when it ran; a test moves a host's clock with
/// [`Sim::set_wall_clock`](crate::Sim::set_wall_clock).
pub const WALL_CLOCK_START_UNIX_S: u64 = 1_767_225_600;

/// [`WALL_CLOCK_START_UNIX_S`] as a `SystemTime`.
pub fn wall_clock_start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(WALL_CLOCK_START_UNIX_S)
}

impl World {
    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time as `host` sees it: ahead of the world's while the host
    /// is busy with simulated CPU work (see [`World::consume`]).
    pub fn host_now(&self, host: HostId) -> Instant {
        self.now.max(self.hosts[host].busy_until)
    }

    /// `host`'s wall clock: [`WALL_CLOCK_START_UNIX_S`] at virtual time
    /// zero, running with the host's virtual time, from wherever
    /// [`set_wall_clock`](Self::set_wall_clock) last set it. It survives a
    /// crash and restart, as a machine's clock does.
    pub fn system_time(&self, host: HostId) -> SystemTime {
        let h = &self.hosts[host];
        let since_set = self
            .host_now(host)
            .saturating_duration_since(h.wall_clock_set_at);
        h.wall_clock_set + since_set
    }

    /// Set `host`'s wall clock to `to` now (back or forward, as an operator
    /// or NTP steps a clock); it runs on from there. Traced.
    pub fn set_wall_clock(&mut self, host: HostId, to: SystemTime) {
        let at = self.host_now(host);
        let h = &mut self.hosts[host];
        (h.wall_clock_set, h.wall_clock_set_at) = (to, at);
        self.progress += 1;
        // Seconds and nanoseconds from the Unix epoch, signed (a clock may
        // be set before it).
        let (sign, offset) = match to.duration_since(UNIX_EPOCH) {
            Ok(after) => (0, after),
            Err(before) => (1, before.duration()),
        };
        self.trace.record(
            tag::TIME,
            &[
                host as u64,
                sign,
                offset.as_secs(),
                u64::from(offset.subsec_nanos()),
            ],
            || format!("{at:?} {} wall clock set to {to:?}", self.names[host]),
        );
    }

    /// Until when `host` is busy with simulated CPU work (never later than
    /// now once the world has caught up).
    pub fn busy_until(&self, host: HostId) -> Instant {
        self.hosts[host].busy_until
    }

    /// `host` spends `cost` of virtual CPU time: its clock moves ahead by
    /// `cost`, and the harness does not step it again until the world's
    /// clock catches up. Other hosts and the network go on meanwhile.
    pub fn consume(&mut self, host: HostId, cost: Duration) {
        let until = self.host_now(host) + cost;
        self.hosts[host].busy_until = until;
        self.progress += 1;
        self.trace.record(
            tag::TIME,
            &[host as u64, until.since_epoch().as_nanos() as u64],
            || format!("{until:?} {} busy until", self.names[host]),
        );
    }

    /// When the earliest delivery in flight lands (or a clogged link lets
    /// what it held go), if any. Segments on a cut link have no time.
    pub fn next_delivery(&self) -> Option<Instant> {
        let landing = self.deliveries.first_at();
        match (landing, self.next_link_release()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `true` if nothing is in flight, nor held on a blocked link.
    pub fn nothing_in_flight(&self) -> bool {
        self.deliveries.is_empty() && self.held_count() == 0
    }

    /// `true` when nothing can ever happen again: no edge pending, nothing
    /// in flight, and no host waiting for a time.
    pub fn is_quiescent(&self) -> bool {
        self.deliveries.is_empty()
            && self.hosts.iter().all(|h| {
                h.pending.is_empty() && h.wake_at.is_none() && !h.woken.load(Ordering::Relaxed)
            })
    }

    /// One `wait` of `host`'s loop: deliver what is due, maybe advance time,
    /// and hand over the host's pending edges.
    pub fn wait(
        &mut self,
        host: HostId,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.deliver_due();
        // A plain load first: the locked swap only once a waker fired.
        let flag = &self.hosts[host].woken;
        let woken = flag.load(Ordering::Acquire) && flag.swap(false, Ordering::AcqRel);
        self.hosts[host].wake_at = timeout.map(|t| self.now + t);
        let busy = woken || timeout == Some(Duration::ZERO) || !self.hosts[host].pending.is_empty();
        if !busy && self.hosts.iter().all(|h| h.pending.is_empty()) {
            match self.next_instant() {
                None => {
                    return Err(io::Error::other(
                        "simulation quiescent: nothing in flight and no timer; the loop would sleep forever",
                    ))
                }
                Some(next) if next > self.now => self.advance_to(next),
                Some(_) => {}
            }
        }
        if self.fault(self.plan.interrupt, FaultKind::EintrWait, host, Fd(-1)) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        self.hand_over_events(host, events);
        Ok(())
    }

    /// The next time something happens: a delivery or a host's timer as
    /// each host recorded it at its last `wait` — right for one loop stepped
    /// by hand; with several hosts, the [`Sim`](crate::Sim) moves the clock,
    /// knowing every loop's timeouts as they are now.
    fn next_instant(&self) -> Option<Instant> {
        let delivery = self.next_delivery();
        let timers = self.hosts.iter().filter_map(|h| h.wake_at);
        delivery.into_iter().chain(timers).min()
    }

    /// Move virtual time forward to `next` (never backwards) and deliver
    /// what is due by then. The harness calls this when every host is idle.
    pub fn advance_to(&mut self, next: Instant) {
        if next <= self.now {
            self.deliver_due();
            return;
        }
        self.now = next;
        self.progress += 1;
        self.trace
            .record(tag::TIME, &[next.since_epoch().as_nanos() as u64], || {
                format!("{next:?} time advances")
            });
        self.deliver_due();
    }
}
