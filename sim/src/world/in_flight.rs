//! `InFlight`: the deliveries on their way, earliest first — a binary heap of landing times over a slab.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use ioloop::Instant;

use super::delivery::Delivery;

/// Where a delivery in flight stands: its landing time, then its sequence
/// number (ties land in the order they were scheduled), and its slot.
#[derive(Clone, Copy, Debug)]
pub(super) struct DeliveryKey {
    /// Landing time in nanoseconds (the high 64 bits), then the sequence
    /// number: one integer comparison orders two keys.
    order: u128,
    pub(super) at: Instant,
    slot: u32,
}

impl DeliveryKey {
    fn new(at: Instant, seq: u64, slot: u32) -> DeliveryKey {
        // Instants past 2^64 ns (584 years) share the last value: they land
        // in the order scheduled, after everything sooner.
        let at_ns = u64::try_from(at.since_epoch().as_nanos()).unwrap_or(u64::MAX);
        DeliveryKey {
            order: u128::from(at_ns) << 64 | u128::from(seq),
            at,
            slot,
        }
    }

    fn seq(&self) -> u64 {
        self.order as u64
    }
}

impl PartialEq for DeliveryKey {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl Eq for DeliveryKey {}

impl PartialOrd for DeliveryKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DeliveryKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order.cmp(&other.order)
    }
}

/// Deliveries in flight, landing in `(time, sequence)` order. The heap
/// holds keys only; the deliveries stay put in their slots, so a landing
/// costs a heap pop, not a search tree's rebalancing, and no allocation
/// once the slab has grown to the most ever in flight at once.
pub(super) struct InFlight {
    keys: BinaryHeap<Reverse<DeliveryKey>>,
    /// Each slot: the sequence number of its delivery, and the delivery.
    slots: Vec<Option<(u64, Delivery)>>,
    slots_free: Vec<u32>,
    seq_next: u64,
}

impl InFlight {
    pub(super) fn new() -> InFlight {
        InFlight {
            keys: BinaryHeap::new(),
            slots: Vec::new(),
            slots_free: Vec::new(),
            seq_next: 0,
        }
    }

    /// Put `delivery` in flight, to land at `at` (after every delivery
    /// already in flight for the same time).
    pub(super) fn insert(&mut self, at: Instant, delivery: Delivery) -> DeliveryKey {
        let seq = self.seq_next;
        self.seq_next += 1;
        let slot = match self.slots_free.pop() {
            Some(slot) => {
                debug_assert!(self.slots[slot as usize].is_none());
                self.slots[slot as usize] = Some((seq, delivery));
                slot
            }
            None => {
                self.slots.push(Some((seq, delivery)));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 deliveries in flight")
            }
        };
        let key = DeliveryKey::new(at, seq, slot);
        self.keys.push(Reverse(key));
        key
    }

    /// When the earliest delivery lands, if any is in flight.
    pub(super) fn first_at(&self) -> Option<Instant> {
        self.keys.peek().map(|Reverse(key)| key.at)
    }

    /// Take the earliest delivery if it lands by `now`.
    #[inline]
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Delivery> {
        // Asked at every wait, and mostly nothing is due: that answer is
        // inline, the landing is not.
        match self.keys.peek() {
            Some(Reverse(key)) if key.at <= now => Some(self.pop()),
            _ => None,
        }
    }

    /// Take the earliest delivery.
    #[inline(never)]
    fn pop(&mut self) -> Delivery {
        let Reverse(key) = self.keys.pop().expect("a delivery in flight");
        let (seq, delivery) = self.slots[key.slot as usize].take().expect("a key's slot");
        debug_assert_eq!(seq, key.seq());
        self.slots_free.push(key.slot);
        delivery
    }

    /// The delivery `key` names, if it is still in flight.
    #[cfg(test)]
    fn get(&self, key: DeliveryKey) -> Option<&Delivery> {
        match self.slots.get(key.slot as usize)? {
            Some((seq, delivery)) if *seq == key.seq() => Some(delivery),
            _ => None,
        }
    }

    /// `true` if nothing is in flight.
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::connection::ConnId;
    use super::*;

    fn fin(to: usize) -> Delivery {
        Delivery::Fin {
            conn: ConnId::for_test(),
            to,
        }
    }

    fn to_of(delivery: &Delivery) -> usize {
        match delivery {
            Delivery::Fin { to, .. } => *to,
            _ => unreachable!("only FINs here"),
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn lands_by_time_then_in_the_order_scheduled() {
        let mut in_flight = InFlight::new();
        for (ms, to) in [(5, 0), (1, 1), (5, 2), (1, 3), (3, 4)] {
            in_flight.insert(at(ms), fin(to));
        }
        assert_eq!(in_flight.first_at(), Some(at(1)));
        assert!(in_flight.pop_due(at(0)).is_none());
        let mut landed = Vec::new();
        while let Some(delivery) = in_flight.pop_due(at(5)) {
            landed.push(to_of(&delivery));
        }
        assert_eq!(landed, [1, 3, 4, 0, 2]);
        assert!(in_flight.is_empty());
    }

    #[test]
    fn a_key_names_its_delivery_until_it_lands() {
        let mut in_flight = InFlight::new();
        let first = in_flight.insert(at(1), fin(10));
        let second = in_flight.insert(at(2), fin(20));
        assert_eq!(in_flight.get(first).map(to_of), Some(10));
        assert_eq!(in_flight.pop_due(at(1)).as_ref().map(to_of), Some(10));
        assert!(in_flight.get(first).is_none());
        // The slot is reused; the old key does not name the newcomer.
        let third = in_flight.insert(at(3), fin(30));
        assert!(in_flight.get(first).is_none());
        assert_eq!(in_flight.get(third).map(to_of), Some(30));
        assert_eq!(in_flight.pop_due(at(9)).as_ref().map(to_of), Some(20));
        assert!(in_flight.get(second).is_none());
    }
}
