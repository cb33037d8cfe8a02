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
/// `FNV_PRIME` to the powers 0 to 8: FNV-1a over `k` zero bytes is one
/// multiply by `FNV_PRIME^k` (a zero byte's xor changes nothing).
const FNV_PRIME_POWERS: [u64; 9] = {
    let mut powers = [1u64; 9];
    let mut k = 1;
    while k < powers.len() {
        powers[k] = powers[k - 1].wrapping_mul(FNV_PRIME);
        k += 1;
    }
    powers
};

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
    #[inline]
    pub fn record(&mut self, tag: u8, values: &[u64], describe: impl FnOnce() -> String) {
        self.mix_byte(tag);
        for &value in values {
            self.mix_u64(value);
        }
        self.count += 1;
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

    #[inline]
    fn mix_byte(&mut self, byte: u8) {
        self.hash ^= u64::from(byte);
        self.hash = self.hash.wrapping_mul(FNV_PRIME);
    }

    /// FNV-1a over the 8 little-endian bytes of `value`, exactly; the high
    /// zero bytes (most values are small) cost one multiply in all.
    #[inline]
    fn mix_u64(&mut self, value: u64) {
        let bytes_significant = 8 - value.leading_zeros() as usize / 8;
        let mut rest = value;
        for _ in 0..bytes_significant {
            self.mix_byte(rest as u8);
            rest >>= 8;
        }
        self.hash = self
            .hash
            .wrapping_mul(FNV_PRIME_POWERS[8 - bytes_significant]);
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
    fn hash_is_fnv1a_over_the_little_endian_bytes() {
        // The replay format: byte-wise FNV-1a, whatever shortcut computes it.
        for value in [0, 1, 0xff, 0x100, 0x1_0000_0000, u64::MAX, 1 << 63] {
            let mut trace = Trace::new(false);
            trace.record(7, &[value, 3], String::new);
            let mut expected = FNV_OFFSET;
            let bytes = [7u8]
                .into_iter()
                .chain(value.to_le_bytes())
                .chain(3u64.to_le_bytes());
            for byte in bytes {
                expected = (expected ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
            }
            assert_eq!(trace.hash(), expected, "value {value:#x}");
        }
    }
}
