//! `Entropy`: the one source of every decision — a seeded ChaCha8 stream, or a fuzzer's bytes.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where the simulator's decisions come from.
///
/// ChaCha8 is used because its stream is fixed across platforms and crate
/// versions (unlike `StdRng`), so a seed replays the same run anywhere.
pub enum Entropy {
    /// A ChaCha8 stream seeded from a `u64`.
    Seeded(Box<ChaCha8Rng>),
    /// Bytes from a fuzzer; once they run out every draw is zero, which
    /// means "no fault" and "the smallest choice".
    Bytes {
        /// The bytes.
        data: Vec<u8>,
        /// How many have been used.
        position: usize,
    },
}

impl Entropy {
    /// A ChaCha8 stream for `seed`.
    pub fn seeded(seed: u64) -> Entropy {
        Entropy::Seeded(Box::new(ChaCha8Rng::seed_from_u64(seed)))
    }

    /// Decisions drawn from `data`.
    pub fn from_bytes(data: &[u8]) -> Entropy {
        Entropy::Bytes {
            data: data.to_vec(),
            position: 0,
        }
    }

    /// An independent stream for decisions that must not move this one
    /// (the datagram faults of a swarm plan, each datagram's fate): the
    /// same seed's ChaCha8 on stream `stream`, from its start. A fork of
    /// fuzzer bytes reads the same bytes, all of them, from an offset of
    /// its own (`stream` modulo their number, wrapping once), so that the
    /// fuzzer steers every stream, not only the main one.
    pub fn fork(&self, stream: u64) -> Entropy {
        match self {
            Entropy::Seeded(rng) => {
                let mut forked = ChaCha8Rng::from_seed(rng.get_seed());
                forked.set_stream(stream);
                Entropy::Seeded(Box::new(forked))
            }
            Entropy::Bytes { data, .. } => {
                let offset = match data.len() {
                    0 => 0,
                    len => (stream % len as u64) as usize,
                };
                let (front, back) = data.split_at(offset);
                Entropy::Bytes {
                    data: back.iter().chain(front).copied().collect(),
                    position: 0,
                }
            }
        }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        match self {
            Entropy::Seeded(rng) => rng.next_u64(),
            Entropy::Bytes { data, position } => {
                let mut word = [0u8; 8];
                let available = data.len().saturating_sub(*position).min(8);
                word[..available].copy_from_slice(&data[*position..*position + available]);
                *position += available;
                u64::from_le_bytes(word)
            }
        }
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift: no modulo bias worth caring about at these sizes,
        // and the same answer on every platform.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A number in `low..=high`.
    #[inline]
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.below(high - low + 1)
    }

    /// `true` with probability `ppm` parts per million (never for 0). A
    /// zero draw — what exhausted fuzzer bytes give — is always `false`.
    #[inline]
    pub fn chance(&mut self, ppm: u32) -> bool {
        let ppm = u64::from(ppm.min(1_000_000));
        ppm > 0 && self.below(1_000_000) >= 1_000_000 - ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_its_own_stream() {
        // The stream's values themselves are pinned in tests/golden.rs.
        let first = Entropy::seeded(42).next_u64();
        assert_eq!(first, Entropy::seeded(42).next_u64());
        assert_ne!(first, Entropy::seeded(43).next_u64());
    }

    #[test]
    fn a_fork_leaves_its_parent_where_it_was() {
        let mut parent = Entropy::seeded(42);
        let mut fork = parent.fork(1);
        let mut untouched = Entropy::seeded(42);
        let forked = fork.next_u64();
        assert_eq!(parent.next_u64(), untouched.next_u64());
        assert_ne!(forked, Entropy::seeded(42).next_u64());
        // A fork depends on the seed and the stream, not on the position.
        parent.next_u64();
        assert_eq!(parent.fork(1).next_u64(), forked);
    }

    #[test]
    fn a_fork_of_bytes_reads_the_same_bytes_from_its_own_offset() {
        let bytes: Vec<u8> = (1..=16).collect();
        let parent = Entropy::from_bytes(&bytes);
        let mut fork = parent.fork(3);
        // From byte 3 on, then the first three: every byte, none made up.
        assert_eq!(
            fork.next_u64(),
            u64::from_le_bytes([4, 5, 6, 7, 8, 9, 10, 11])
        );
        assert_eq!(
            fork.next_u64(),
            u64::from_le_bytes([12, 13, 14, 15, 16, 1, 2, 3])
        );
        assert_eq!(fork.next_u64(), 0);
        // Another stream, another offset; no bytes, no offset.
        assert_ne!(parent.fork(5).next_u64(), parent.fork(3).next_u64());
        assert_eq!(Entropy::from_bytes(&[]).fork(7).next_u64(), 0);
    }

    #[test]
    fn exhausted_bytes_draw_zero() {
        let mut entropy = Entropy::from_bytes(&[0xff; 3]);
        assert_eq!(entropy.next_u64(), 0xff_ffff);
        assert_eq!(entropy.next_u64(), 0);
        assert!(!entropy.chance(999_999));
        assert_eq!(entropy.between(5, 9), 5);
    }
}
