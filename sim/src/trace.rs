//! `Trace`: every decision the simulator makes, folded into a 64-bit hash.

use std::fmt::Write as _;

/// The record of a run: a running hash over every decision, and, on
/// request, a readable line per decision.
pub struct Trace {
    hash: u64,
    count: u64,
    lines: Option<Vec<String>>,
}

/// The hash before anything is recorded (FNV-1a's offset basis, kept from
/// the byte-wise hash this one replaced: any nonzero value would do).
const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;
/// The multiplier of the word mix (FxHash's: odd, its bits well spread).
const MIX_MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

impl Trace {
    /// A trace that keeps only the hash (`full`: also a line per decision).
    pub fn new(full: bool) -> Trace {
        Trace {
            hash: HASH_SEED,
            count: 0,
            lines: full.then(Vec::new),
        }
    }

    /// Record one decision: a kind tag and its values. `describe` is only
    /// called for a full trace.
    ///
    /// The hash takes 64-bit words: first the tag with the number of
    /// values (so that records split differently hash differently), then
    /// each value. A word costs a rotate, a xor and a multiply; the
    /// byte-wise FNV-1a before it cost a xor and a multiply per byte.
    #[inline]
    pub fn record(&mut self, tag: u8, values: &[u64], describe: impl FnOnce() -> String) {
        self.mix(u64::from(tag) | (values.len() as u64) << 8);
        for &value in values {
            self.mix(value);
        }
        self.count += 1;
        if self.lines.is_some() {
            self.push_line(describe());
        }
    }

    /// `true` if this trace keeps a readable line per decision.
    pub fn is_full(&self) -> bool {
        self.lines.is_some()
    }

    /// A line for the readable trace only: no decision, so the hash and
    /// the count stay as they were (a note added to find a bug does not
    /// change the run it describes). `describe` is only called for a full
    /// trace.
    #[inline]
    pub fn note(&mut self, describe: impl FnOnce() -> String) {
        if self.lines.is_some() {
            self.push_line(describe());
        }
    }

    #[cold]
    #[inline(never)]
    fn push_line(&mut self, description: String) {
        let mut line = String::new();
        let _ = write!(line, "{:>6} {description}", self.count);
        if let Some(lines) = &mut self.lines {
            lines.push(line);
        }
    }

    /// Fold one word in: the rotation carries high bits down, the multiply
    /// carries low bits up, so every bit of every word reaches the hash.
    #[inline]
    fn mix(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(MIX_MULTIPLIER);
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Decisions recorded.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// `true` if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The readable lines of a full trace (empty otherwise).
    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_value_and_their_order() {
        let mut a = Trace::new(false);
        a.record(1, &[2, 3], String::new);
        let mut b = Trace::new(false);
        b.record(1, &[3, 2], String::new);
        assert_ne!(a.hash(), b.hash());
        let mut c = Trace::new(true);
        c.record(1, &[2, 3], || "x".into());
        assert_eq!(a.hash(), c.hash());
        assert_eq!(c.lines().len(), 1);
    }

    #[test]
    fn hash_depends_on_how_values_split_into_records() {
        let mut one = Trace::new(false);
        one.record(1, &[2, 3], String::new);
        let mut two = Trace::new(false);
        two.record(1, &[2], String::new);
        two.record(3, &[], String::new);
        assert_ne!(one.hash(), two.hash());
    }

    #[test]
    fn hash_is_pinned() {
        // The replay format: a change here changes every trace hash.
        let mut trace = Trace::new(false);
        trace.record(7, &[0, 1, u64::MAX, 1 << 63], String::new);
        assert_eq!(trace.hash(), PINNED, "hash {:#x}", trace.hash());
    }

    const PINNED: u64 = 0x9051_4dc7_9040_5906;
}
