//! Links between hosts: partitions (one way or both) and clogs. A blocked link holds its segments in order — TCP would retransmit them — and delivers them when it heals. UDP does not retransmit: a cut link drops datagrams, and a clog holds them.

use std::collections::VecDeque;
use std::time::Duration;

use ioloop::Instant;

use super::delivery::Delivery;
use super::host::HostId;
use super::World;

/// The state of the link from one host to another.
#[derive(Default)]
pub(super) struct Link {
    /// Cut until repaired.
    cut: bool,
    /// Clogged until then.
    clogged_until: Instant,
    /// Segments that arrived while the link was blocked, in order.
    held: VecDeque<Delivery>,
}

impl World {
    /// Cut the link `from` → `to`: segments wait until
    /// [`repair_link`](World::repair_link). New connects from `from` to
    /// `to` hang (their SYN waits too) until then, or until the connecting
    /// side gives up. Datagrams are dropped, those a clog held included.
    pub fn cut_link(&mut self, from: HostId, to: HostId) {
        let link = self.links.entry((from, to)).or_default();
        link.cut = true;
        if !link.held.iter().any(|d| matches!(d, Delivery::Udp(_))) {
            return;
        }
        let held = std::mem::take(&mut link.held);
        for delivery in held {
            match delivery {
                Delivery::Udp(packet) => self.packet_cut(*packet),
                segment => self.hold(from, to, segment),
            }
        }
    }

    /// `true` if the link `from` → `to` is cut (not merely clogged).
    pub fn link_cut(&self, from: HostId, to: HostId) -> bool {
        self.links.get(&(from, to)).is_some_and(|link| link.cut)
    }

    /// Heal the link `from` → `to`: what it held is delivered now, in order.
    pub fn repair_link(&mut self, from: HostId, to: HostId) {
        if let Some(link) = self.links.get_mut(&(from, to)) {
            link.cut = false;
        }
        self.release_links();
    }

    /// Hold every segment on the link `from` → `to` for `duration`, then
    /// deliver them in order (FoundationDB's clogging).
    pub fn clog_link(&mut self, from: HostId, to: HostId, duration: Duration) {
        let until = self.now + duration;
        let link = self.links.entry((from, to)).or_default();
        link.clogged_until = link.clogged_until.max(until);
    }

    /// `true` if the link `from` → `to` holds segments now.
    pub fn link_blocked(&self, from: HostId, to: HostId) -> bool {
        self.links
            .get(&(from, to))
            .is_some_and(|link| link.cut || link.clogged_until > self.now)
    }

    /// When the earliest clogged link with held segments opens, if any.
    pub(super) fn next_link_release(&self) -> Option<Instant> {
        if self.links.is_empty() {
            return None; // never cut nor clogged: the common case, checked per wait
        }
        self.links
            .values()
            .filter(|link| !link.cut && !link.held.is_empty())
            .map(|link| link.clogged_until)
            .min()
    }

    /// Keep `delivery` until the link `from` → `to` opens.
    pub(super) fn hold(&mut self, from: HostId, to: HostId, delivery: Delivery) {
        self.links
            .entry((from, to))
            .or_default()
            .held
            .push_back(delivery);
    }

    /// Deliver, in order, what every link that is open again held.
    #[inline]
    pub(super) fn release_links(&mut self) {
        // Checked on every wait; the map is empty unless a link was ever
        // cut or clogged.
        if !self.links.is_empty() {
            self.release_open_links();
        }
    }

    fn release_open_links(&mut self) {
        let now = self.now;
        let open: Vec<(HostId, HostId)> = self
            .links
            .iter()
            .filter(|(_, link)| !link.cut && link.clogged_until <= now && !link.held.is_empty())
            .map(|(key, _)| *key)
            .collect();
        for key in open {
            while let Some(delivery) = self.links.get_mut(&key).and_then(|l| l.held.pop_front()) {
                self.deliver_now(delivery);
            }
        }
    }

    /// Segments held on blocked links.
    pub fn held_count(&self) -> usize {
        self.links.values().map(|link| link.held.len()).sum()
    }
}
