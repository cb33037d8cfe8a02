//! `Trace`: every decision the simulator makes, folded into a 64-bit hash.

use std::fmt::Write as _;

/// The record of a run: a running FNV-1a hash over every decision, and, on
/// request, a readable line per decision.
pub struct Trace {
    hash: u64,
    count: u64,
    lines: Option<Vec<String>>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    /// A trace that keeps only the hash (`full`: also a line per decision).
    pub fn new(full: bool) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            count: 0,
            lines: full.then(Vec::new),
        }
    }

    /// Record one decision: a kind tag and its values. `describe` is only
    /// called for a full trace.
    pub fn record(&mut self, tag: u8, values: &[u64], describe: impl FnOnce() -> String) {
        self.mix(&[tag]);
        for value in values {
            self.mix(&value.to_le_bytes());
        }
        self.count += 1;
        if let Some(lines) = &mut self.lines {
            let mut line = String::new();
            let _ = write!(line, "{:>6} {}", self.count, describe());
            lines.push(line);
        }
    }

    fn mix(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
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
}
