//! Fault decisions: whether a fault fires (by the plan's odds, or by a schedule), and the record of those that did.

use std::collections::BTreeSet;

use ioloop::{Fd, Instant};

use super::{tag, HostId, World};
use crate::FaultPlan;

/// A fault that fired: which draw, what, where and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredFault {
    /// Index of the fault decision in the run.
    pub draw: u64,
    /// The fault's name (`partial-write`, `reset`, ...).
    pub name: &'static str,
    /// The host it hit.
    pub host: HostId,
    /// The fd it hit (-1 for a host-wide decision).
    pub fd: Fd,
    /// Virtual time.
    pub at: Instant,
}

impl World {
    /// From now on, fire exactly the fault draws in `schedule` (by index),
    /// whatever the plan's probabilities say.
    pub fn set_schedule(&mut self, schedule: BTreeSet<u64>) {
        self.schedule = Some(schedule);
    }

    /// Every fault that fired so far.
    pub fn fired(&self) -> &[FiredFault] {
        &self.fired
    }

    /// End the faulty phase: every fault off from now on; latency and
    /// window stay as they were.
    pub fn stop_faults(&mut self) {
        self.plan = FaultPlan {
            latency_us_min: self.plan.latency_us_min,
            latency_us_max: self.plan.latency_us_max,
            window_bytes: self.plan.window_bytes,
            ..FaultPlan::none()
        };
        if let Some(schedule) = &mut self.schedule {
            schedule.clear();
        }
        let now = self.now;
        self.trace
            .record(tag::FAULT, &[u64::MAX], || format!("{now:?} faults stop"));
    }

    /// Draw a fault with probability `ppm`; a fault that fires is traced.
    pub(super) fn fault(&mut self, ppm: u32, name: &'static str, host: HostId, fd: Fd) -> bool {
        let draw = self.fault_draws;
        self.fault_draws += 1;
        // The draw is made even under a schedule, so that a schedule of
        // every fault that fired replays the seeded run exactly.
        let drawn = self.entropy.chance(ppm);
        let fires = match &self.schedule {
            Some(schedule) => schedule.contains(&draw),
            None => drawn,
        };
        if !fires {
            return false;
        }
        let now = self.now;
        self.fired.push(FiredFault {
            draw,
            name,
            host,
            fd,
            at: now,
        });
        self.trace.record(
            tag::FAULT,
            &[host as u64, fd.0 as u64, name.len() as u64],
            || format!("{now:?} host{host} {fd:?} fault {name}"),
        );
        true
    }
}
