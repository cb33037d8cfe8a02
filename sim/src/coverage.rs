//! `FaultCoverage`: for each fault kind, how many seeds of a sweep enabled it and how many times it fired — so a test that asked for a fault and never got one cannot pass quietly.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use crate::net::FiredFault;
use crate::{FaultKind, FaultPlan, NetworkFaults};

/// One fault kind's row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoverageRow {
    /// Seeds whose plan enabled the kind (or, for a scripted kind, that
    /// scripted it).
    pub seeds_enabled: u64,
    /// Seeds in which it fired at least once.
    pub seeds_fired: u64,
    /// Times it fired, over all seeds.
    pub fired: u64,
}

/// Fault coverage over the seeds of a sweep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCoverage {
    rows: BTreeMap<FaultKind, CoverageRow>,
    seeds: u64,
}

impl FaultCoverage {
    /// Nothing counted yet.
    pub fn new() -> FaultCoverage {
        FaultCoverage::default()
    }

    /// Count one seed's run: its plan and the faults that fired.
    pub fn add(&mut self, plan: &FaultPlan, fired: &[FiredFault]) {
        self.add_run(plan, None, fired);
    }

    /// Count one seed's run, network faults included.
    pub fn add_run(
        &mut self,
        plan: &FaultPlan,
        network: Option<&NetworkFaults>,
        fired: &[FiredFault],
    ) {
        self.seeds += 1;
        for kind in FaultKind::ALL {
            let count = fired.iter().filter(|f| f.kind == kind).count() as u64;
            let by_network = network.is_some_and(|n| match kind {
                FaultKind::Partition => n.partition > 0,
                FaultKind::Clog => n.clog > 0,
                FaultKind::Pause => n.pause > 0,
                FaultKind::Crash => n.crash > 0,
                _ => false,
            });
            let enabled = plan.enables(kind) || by_network || count > 0;
            if !enabled {
                continue;
            }
            let row = self.rows.entry(kind).or_default();
            row.seeds_enabled += 1;
            row.fired += count;
            row.seeds_fired += u64::from(count > 0);
        }
    }

    /// The row of `kind` (zeros if no seed enabled it).
    pub fn row(&self, kind: FaultKind) -> CoverageRow {
        self.rows.get(&kind).copied().unwrap_or_default()
    }

    /// Seeds counted.
    pub fn seeds(&self) -> u64 {
        self.seeds
    }

    /// The kinds some seed enabled that never fired in any seed.
    pub fn enabled_never_fired(&self) -> Vec<FaultKind> {
        self.rows
            .iter()
            .filter(|(_, row)| row.seeds_enabled > 0 && row.fired == 0)
            .map(|(kind, _)| *kind)
            .collect()
    }

    /// Each kind's counts as JSON object members (`"reset":{...}`).
    pub fn json_members(&self) -> String {
        let mut text = String::new();
        for (index, (kind, row)) in self.rows.iter().enumerate() {
            let comma = if index > 0 { "," } else { "" };
            let _ = write!(
                text,
                "{comma}\"{kind}\":{{\"seeds_enabled\":{},\"seeds_fired\":{},\"fired\":{}}}",
                row.seeds_enabled, row.seeds_fired, row.fired
            );
        }
        text
    }
}

impl fmt::Display for FaultCoverage {
    /// The table a sweep prints: one line per kind any seed enabled, and a
    /// loud line for each that never fired.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fault coverage over {} seeds:", self.seeds)?;
        writeln!(
            f,
            "  {:<16} {:>13} {:>11} {:>10}",
            "fault", "seeds enabled", "seeds fired", "fired"
        )?;
        for (kind, row) in &self.rows {
            writeln!(
                f,
                "  {:<16} {:>13} {:>11} {:>10}{}",
                kind.name(),
                row.seeds_enabled,
                row.seeds_fired,
                row.fired,
                if row.fired == 0 {
                    "   <- NEVER FIRED"
                } else {
                    ""
                }
            )?;
        }
        let never = self.enabled_never_fired();
        if !never.is_empty() {
            let names: Vec<&str> = never.iter().map(|k| k.name()).collect();
            writeln!(
                f,
                "WARNING: enabled but never fired: {} — this sweep did not test them",
                names.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioloop::{Fd, Instant};

    fn fired(kind: FaultKind) -> FiredFault {
        FiredFault {
            draw: 0,
            kind,
            host: 0,
            fd: Fd(3),
            at: Instant::ZERO,
        }
    }

    #[test]
    fn counts_enabled_and_fired_and_flags_the_silent_ones() {
        let mut coverage = FaultCoverage::new();
        let mut plan = FaultPlan::none();
        plan.reset = 1_000;
        plan.partial_read = 100_000;
        coverage.add(
            &plan,
            &[fired(FaultKind::PartialRead), fired(FaultKind::PartialRead)],
        );
        coverage.add(&plan, &[]);
        let row = coverage.row(FaultKind::PartialRead);
        assert_eq!(
            row,
            CoverageRow {
                seeds_enabled: 2,
                seeds_fired: 1,
                fired: 2
            }
        );
        assert_eq!(coverage.enabled_never_fired(), [FaultKind::Reset]);
        let table = coverage.to_string();
        assert!(
            table.contains("NEVER FIRED") && table.contains("enabled but never fired: reset"),
            "{table}"
        );
        // A kind nobody enabled is no row, and no warning.
        assert_eq!(coverage.row(FaultKind::Crash), CoverageRow::default());
    }
}
