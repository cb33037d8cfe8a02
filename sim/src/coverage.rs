//! `FaultCoverage`: for each fault kind, how many seeds of a sweep enabled it and how many times the seeds drew it — so a test that asked for a fault and never got one cannot pass quietly — and, apart, how many times a test scripted it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use crate::net::FiredFault;
use crate::world::SCRIPTED;
use crate::{FaultKind, FaultPlan, NetworkFaults};

/// One fault kind's row.
///
/// `seeds_enabled`, `seeds_fired` and `fired` are about the faults the
/// seeds drew, by their plan or the nemesis's; a fault the test scripted
/// ([`Sim::partition`](crate::Sim::partition), [`Sim::crash`](crate::Sim::crash)...)
/// or its workload caused (a datagram truncated to the reader's buffer) is
/// counted in `scripted` alone, so that it cannot hide a drawn kind that
/// never fired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoverageRow {
    /// Seeds whose plan (or network faults) enabled the kind.
    pub seeds_enabled: u64,
    /// Seeds in which the seed drew it at least once.
    pub seeds_fired: u64,
    /// Times the seeds drew it, over all seeds.
    pub fired: u64,
    /// Times it happened without being drawn — scripted by the test, or
    /// caused by its workload — over all seeds, as recorded: a scripted
    /// [`Sim::partition`](crate::Sim::partition) counts 2 (one per
    /// direction it cuts), [`Sim::partition_oneway`](crate::Sim::partition_oneway) 1.
    pub scripted: u64,
}

/// Fault coverage over the seeds of a sweep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCoverage {
    rows: BTreeMap<FaultKind, CoverageRow>,
    seeds: u64,
    /// Counted from the replay of a schedule, where only the faults it
    /// names fire: an enabled kind that never fired says nothing then.
    scheduled: bool,
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
        // One pass over what fired (a seed fires hundreds of faults), then
        // one row per kind: ids run 1..=ALL.len().
        let mut drawn = [0u64; FaultKind::ALL.len()];
        let mut scripted = [0u64; FaultKind::ALL.len()];
        for fault in fired {
            let slot = usize::from(fault.kind.id()) - 1;
            if fault.draw == SCRIPTED {
                scripted[slot] += 1;
            } else {
                drawn[slot] += 1;
            }
        }
        for kind in FaultKind::ALL {
            let slot = usize::from(kind.id()) - 1;
            let (count, scripted) = (drawn[slot], scripted[slot]);
            let by_network = network.is_some_and(|n| match kind {
                FaultKind::Partition => n.partition > 0,
                FaultKind::Clog => n.clog > 0,
                FaultKind::Pause => n.pause > 0,
                FaultKind::Crash => n.crash > 0,
                _ => false,
            });
            let enabled = plan.enables(kind) || by_network || count > 0;
            if !enabled && scripted == 0 {
                continue;
            }
            let row = self.rows.entry(kind).or_default();
            row.seeds_enabled += u64::from(enabled);
            row.fired += count;
            row.seeds_fired += u64::from(count > 0);
            row.scripted += scripted;
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

    /// Mark these counts as a schedule's replay: the table then warns of
    /// no kind that never fired, since only the schedule's faults could.
    pub(crate) fn set_scheduled(&mut self) {
        self.scheduled = true;
    }

    /// The kinds some seed enabled that no seed drew (scripted faults of
    /// the kind do not count); none in a schedule's replay.
    pub fn enabled_never_fired(&self) -> Vec<FaultKind> {
        if self.scheduled {
            return Vec::new();
        }
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
                "{comma}\"{kind}\":{{\"seeds_enabled\":{},\"seeds_fired\":{},\"fired\":{},\"scripted\":{}}}",
                row.seeds_enabled, row.seeds_fired, row.fired, row.scripted
            );
        }
        text
    }
}

impl fmt::Display for FaultCoverage {
    /// The table a sweep prints: one line per kind any seed enabled or
    /// scripted (the `scripted` column only when some run scripted one),
    /// and a loud line for each enabled kind no seed drew.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scripted = self.rows.values().any(|row| row.scripted > 0);
        write!(f, "fault coverage over {} seeds", self.seeds)?;
        if self.scheduled {
            write!(f, " (a schedule's replay: only the faults it names fire)")?;
        }
        writeln!(f, ":")?;
        write!(
            f,
            "  {:<18} {:>13} {:>11} {:>10}",
            "fault", "seeds enabled", "seeds fired", "fired"
        )?;
        if scripted {
            write!(f, " {:>10}", "scripted")?;
        }
        writeln!(f)?;
        for (kind, row) in &self.rows {
            write!(
                f,
                "  {:<18} {:>13} {:>11} {:>10}",
                kind.name(),
                row.seeds_enabled,
                row.seeds_fired,
                row.fired,
            )?;
            if scripted {
                write!(f, " {:>10}", row.scripted)?;
            }
            if row.seeds_enabled > 0 && row.fired == 0 && !self.scheduled {
                write!(f, "   <- NEVER FIRED")?;
            }
            writeln!(f)?;
        }
        let never = self.enabled_never_fired();
        // One seed (a replay, above all) cannot try every kind it enables:
        // the marks say enough.
        if !never.is_empty() && self.seeds > 1 {
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
            host_name: "host0".into(),
            peer: None,
            lasting: None,
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
                fired: 2,
                scripted: 0
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
        assert!(!table.contains("scripted"), "{table}");
        // A schedule's replay fires only what it names: the same counts
        // warn of nothing.
        coverage.set_scheduled();
        assert_eq!(coverage.enabled_never_fired(), []);
        let table = coverage.to_string();
        assert!(
            !table.contains("NEVER FIRED") && !table.contains("WARNING"),
            "{table}"
        );
        assert!(table.contains("a schedule's replay"), "{table}");
    }

    #[test]
    fn one_seed_marks_what_never_fired_without_the_sweeps_warning() {
        let mut plan = FaultPlan::none();
        plan.reset = 1_000;
        let mut coverage = FaultCoverage::new();
        coverage.add(&plan, &[]);
        assert_eq!(coverage.enabled_never_fired(), [FaultKind::Reset]);
        let table = coverage.to_string();
        assert!(table.contains("NEVER FIRED"), "{table}");
        assert!(!table.contains("WARNING"), "{table}");
        // The wrong case: two seeds, the warning.
        coverage.add(&plan, &[]);
        assert!(coverage.to_string().contains("WARNING"));
    }

    fn scripted(kind: FaultKind) -> FiredFault {
        FiredFault {
            draw: SCRIPTED,
            ..fired(kind)
        }
    }

    #[test]
    fn scripted_faults_are_counted_apart_and_hide_no_drawn_kind_that_never_fired() {
        let mut coverage = FaultCoverage::new();
        // No fault drawn (FAULTS=none), partitions scripted: no kind enabled.
        for _ in 0..3 {
            coverage.add_run(&FaultPlan::none(), None, &[scripted(FaultKind::Partition)]);
        }
        let row = coverage.row(FaultKind::Partition);
        assert_eq!((row.seeds_enabled, row.fired, row.scripted), (0, 0, 3));
        assert!(coverage.enabled_never_fired().is_empty());
        // The nemesis may partition, and never does: the scripted ones must
        // not pass for it.
        let network = NetworkFaults {
            partition: 1,
            ..NetworkFaults::none()
        };
        coverage.add_run(
            &FaultPlan::none(),
            Some(&network),
            &[scripted(FaultKind::Partition)],
        );
        let row = coverage.row(FaultKind::Partition);
        assert_eq!((row.seeds_enabled, row.fired, row.scripted), (1, 0, 4));
        assert_eq!(coverage.enabled_never_fired(), [FaultKind::Partition]);
        let table = coverage.to_string();
        assert!(
            table.contains("scripted") && table.contains("NEVER FIRED"),
            "{table}"
        );
        assert!(coverage.json_members().contains("\"scripted\":4"));
    }
}
