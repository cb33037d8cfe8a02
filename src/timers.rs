//! Timeouts: a binary heap keyed by (deadline, insertion order), with O(1) cancellation.
//!
//! Cancelled entries stay in the heap until they surface or until they
//! outnumber the live ones, when the heap is rebuilt; so memory stays
//! proportional to the live timeouts and every operation is O(log n)
//! amortised.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::Instant;

/// Names a timeout added with [`IOLoop::call_later`](crate::IOLoop::call_later)
/// or [`IOLoop::call_at`](crate::IOLoop::call_at), for
/// [`IOLoop::remove_timeout`](crate::IOLoop::remove_timeout). Removing a
/// timeout that already ran, or was already removed, is harmless.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimeoutHandle {
    slot: u32,
    generation: u32,
}

/// Where one timeout lives in the heap order: deadline first, then the order
/// in which timeouts were added, so equal deadlines fire first-in first-out.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct HeapKey {
    deadline: Instant,
    sequence: u64,
    slot: u32,
    generation: u32,
}

struct Slot<T> {
    generation: u32,
    payload: Option<T>,
}

/// A queue of timeouts carrying payloads of type `T`.
pub(crate) struct TimerQueue<T> {
    heap: BinaryHeap<Reverse<HeapKey>>,
    slots: Vec<Slot<T>>,
    free_slots: Vec<u32>,
    sequence_next: u64,
    live_count: usize,
}

impl<T> TimerQueue<T> {
    pub(crate) fn new() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            sequence_next: 0,
            live_count: 0,
        }
    }

    /// Schedule `payload` at `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, payload: T) -> TimeoutHandle {
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 live timeouts");
                self.slots.push(Slot {
                    generation: 0,
                    payload: None,
                });
                slot
            }
        };
        let entry = &mut self.slots[slot as usize];
        debug_assert!(entry.payload.is_none());
        entry.payload = Some(payload);
        let key = HeapKey {
            deadline,
            sequence: self.sequence_next,
            slot,
            generation: entry.generation,
        };
        self.sequence_next += 1;
        self.live_count += 1;
        self.heap.push(Reverse(key));
        TimeoutHandle {
            slot,
            generation: key.generation,
        }
    }

    /// Cancel a timeout; returns its payload if it was still pending.
    pub(crate) fn remove(&mut self, handle: TimeoutHandle) -> Option<T> {
        let entry = self.slots.get_mut(handle.slot as usize)?;
        if entry.generation != handle.generation {
            return None;
        }
        let payload = entry.payload.take()?;
        self.release(handle.slot);
        self.compact_if_sparse();
        Some(payload)
    }

    /// `true` if the timeout has neither run nor been removed.
    pub(crate) fn contains(&self, handle: TimeoutHandle) -> bool {
        self.slots
            .get(handle.slot as usize)
            .is_some_and(|e| e.generation == handle.generation && e.payload.is_some())
    }

    /// Move the handles of every timeout due at `now` into `due`, in firing
    /// order. Their payloads stay in place, so a due timeout can still be
    /// cancelled by one that runs before it; take each with [`Self::remove`].
    pub(crate) fn collect_due(&mut self, now: Instant, due: &mut VecDeque<TimeoutHandle>) {
        while let Some(Reverse(key)) = self.heap.peek().copied() {
            if key.deadline > now {
                break;
            }
            self.heap.pop();
            let handle = TimeoutHandle {
                slot: key.slot,
                generation: key.generation,
            };
            if self.contains(handle) {
                due.push_back(handle);
            }
        }
    }

    /// The earliest deadline of a live timeout. Drops cancelled entries that
    /// sit on top of the heap.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse(key)) = self.heap.peek().copied() {
            let handle = TimeoutHandle {
                slot: key.slot,
                generation: key.generation,
            };
            if self.contains(handle) {
                return Some(key.deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Number of live timeouts.
    pub(crate) fn len(&self) -> usize {
        self.live_count
    }

    fn release(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        entry.generation = entry.generation.wrapping_add(1);
        self.free_slots.push(slot);
        self.live_count -= 1;
    }

    /// Rebuild the heap once cancelled entries outnumber live ones, so that
    /// memory is bounded by the live timeouts.
    fn compact_if_sparse(&mut self) {
        if self.heap.len() > 64 && self.heap.len() > 2 * self.live_count {
            let slots = &self.slots;
            self.heap.retain(|Reverse(key)| {
                let entry = &slots[key.slot as usize];
                entry.generation == key.generation && entry.payload.is_some()
            });
        }
    }

    /// Entries in the heap, cancelled ones included (for tests of the bound).
    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::from_epoch(Duration::from_millis(ms))
    }

    fn fire_all(queue: &mut TimerQueue<u32>, now: Instant) -> Vec<u32> {
        let mut due = VecDeque::new();
        queue.collect_due(now, &mut due);
        due.into_iter().filter_map(|h| queue.remove(h)).collect()
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order() {
        let mut queue = TimerQueue::new();
        for id in 0..100 {
            queue.insert(at(5), id);
        }
        queue.insert(at(1), 1000);
        assert_eq!(fire_all(&mut queue, at(5))[0], 1000);
        let mut queue = TimerQueue::new();
        for id in 0..100 {
            queue.insert(at(5), id);
        }
        assert_eq!(fire_all(&mut queue, at(5)), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn removed_timeout_does_not_fire_and_handle_reuse_is_safe() {
        let mut queue = TimerQueue::new();
        let a = queue.insert(at(1), 1);
        assert_eq!(queue.remove(a), Some(1));
        assert_eq!(queue.remove(a), None);
        let b = queue.insert(at(1), 2);
        // `b` reuses a's slot; the stale handle must not cancel it.
        assert_eq!(queue.remove(a), None);
        assert!(queue.contains(b));
        assert_eq!(fire_all(&mut queue, at(1)), vec![2]);
        assert_eq!(queue.remove(b), None);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn cancelled_entries_do_not_accumulate() {
        let mut queue = TimerQueue::new();
        for i in 0..10_000u32 {
            let h = queue.insert(at(1_000_000 + u64::from(i)), i);
            queue.remove(h);
        }
        assert!(queue.heap_len() <= 65, "heap holds {}", queue.heap_len());
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order_when_slots_are_reused() {
        let mut queue = TimerQueue::new();
        let first = queue.insert(at(1), 0);
        let second = queue.insert(at(1), 0);
        queue.remove(first);
        queue.remove(second);
        // Freed slots are reused last-freed first: slot order is not the
        // order of insertion.
        for id in 1..=4 {
            queue.insert(at(5), id);
        }
        assert_eq!(fire_all(&mut queue, at(5)), vec![1, 2, 3, 4]);
    }

    #[test]
    fn next_deadline_skips_a_cancelled_timeout_whose_slot_was_reused() {
        let mut queue = TimerQueue::new();
        let early = queue.insert(at(1), 1);
        queue.remove(early);
        queue.insert(at(9), 2);
        assert_eq!(queue.next_deadline(), Some(at(9)));
        assert_eq!(fire_all(&mut queue, at(5)), Vec::<u32>::new());
    }

    #[test]
    fn compaction_keeps_live_timeouts() {
        let mut queue = TimerQueue::new();
        queue.insert(at(5), 7);
        for i in 0..1_000u32 {
            let h = queue.insert(at(1_000 + u64::from(i)), i);
            queue.remove(h);
        }
        assert!(queue.heap_len() <= 66, "heap holds {}", queue.heap_len());
        assert_eq!(fire_all(&mut queue, at(5)), vec![7]);
    }

    #[test]
    fn compaction_drops_the_stale_keys_of_reused_slots() {
        let mut queue = TimerQueue::new();
        let first: Vec<_> = (0..60u32).map(|i| queue.insert(at(100), i)).collect();
        for handle in &first[..30] {
            queue.remove(*handle);
        }
        // Reuse the 30 freed slots: their old keys are stale, their slots live.
        for i in 0..30u32 {
            queue.insert(at(100), 100 + i);
        }
        // 90 keys for 60 live; cancelling 16 more makes stale keys outnumber
        // live ones (90 > 2 × 44), and the heap is rebuilt.
        for handle in &first[30..46] {
            queue.remove(*handle);
        }
        assert_eq!(queue.heap_len(), queue.len());
    }

    #[test]
    fn cancelling_many_live_timeouts_shrinks_the_heap() {
        let mut queue = TimerQueue::new();
        let handles: Vec<_> = (0..1_000u32).map(|i| queue.insert(at(10), i)).collect();
        for handle in handles {
            queue.remove(handle);
        }
        assert!(queue.heap_len() <= 65, "heap holds {}", queue.heap_len());
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn next_deadline_skips_cancelled() {
        let mut queue = TimerQueue::new();
        let early = queue.insert(at(1), 1);
        queue.insert(at(9), 2);
        queue.remove(early);
        assert_eq!(queue.next_deadline(), Some(at(9)));
    }
}
