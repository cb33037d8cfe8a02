//! `NetworkFaults`: partitions, clogs, pauses and crash–restarts drawn by the seed, on a fixed tick of virtual time — the simulator's nemesis; and `Survives`, what a simulation declares its services can take.
//!
//! Under the `all` and `swarm` presets every simulation draws network
//! faults, as far as it declares its services survive them
//! ([`Sim::survives`](crate::Sim::survives)): by default the faults that
//! heal by themselves — partitions, clogs and pauses — which a correct
//! service rides out with no code of its own (TCP holds the bytes);
//! crashes only for a simulation that says its clients take them.
//!
//! The nemesis draws from its own stream (seeded from the run's seed), so
//! the plan of socket faults and every other decision's odds stay as they
//! were; each draw is a fault decision like the others, so a schedule
//! names it and shrinking removes it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::{Entropy, FaultPreset, Ppm};

/// Which network faults a simulation's services survive: the seed draws
/// these and no others. Each level includes the ones before it.
///
/// ```
/// use ioloop_sim::{FaultPreset, Sim, Survives};
///
/// let mut sim = Sim::new(3, FaultPreset::Swarm);
/// assert_eq!(sim.survival(), Survives::HealingFaults); // the default
/// // Clients with timeouts and retries, replicas with a disk: anything goes.
/// sim.survives(Survives::MachineCrashes);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Survives {
    /// No network fault: only the socket faults of the plan.
    SocketFaults,
    /// Faults that heal by themselves: partitions (the links heal, and
    /// deliver what they held), clogs, paused hosts. A service needs no
    /// timeout to ride them out; one with timeouts sees them fire. The
    /// default.
    #[default]
    HealingFaults,
    /// Also a crash of a service host's process, and its restart later:
    /// every connection to it is reset, connects are refused while it is
    /// down, and it comes back with only what its setup restores. Clients
    /// must take a broken connection.
    ProcessCrashes,
    /// Also a crash of the whole machine: silence until it restarts (no
    /// reset, no refusal; what is sent to it is lost). Clients need
    /// timeouts.
    MachineCrashes,
}

impl Survives {
    /// Every level, from the least to the most.
    pub const ALL: [Survives; 4] = [
        Survives::SocketFaults,
        Survives::HealingFaults,
        Survives::ProcessCrashes,
        Survives::MachineCrashes,
    ];

    /// The level's name (`healing-faults`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Survives::SocketFaults => "socket-faults",
            Survives::HealingFaults => "healing-faults",
            Survives::ProcessCrashes => "process-crashes",
            Survives::MachineCrashes => "machine-crashes",
        }
    }
}

impl fmt::Display for Survives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Survives {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Survives::ALL
            .into_iter()
            .find(|level| level.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Survives::ALL.map(Survives::name).to_vec();
                format!("unknown level {s:?} (expected one of {})", names.join(", "))
            })
    }
}

/// How often the nemesis strikes, how hard, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFaults {
    /// Virtual time between two draws.
    pub tick: Duration,
    /// Per tick: cut the links between two random hosts, both ways.
    pub partition: Ppm,
    /// Longest partition, in milliseconds, before the links heal.
    pub partition_ms_max: u64,
    /// Per tick: clog the links between two random hosts.
    pub clog: Ppm,
    /// Longest clog, in milliseconds.
    pub clog_ms_max: u64,
    /// Per tick: pause a random host.
    pub pause: Ppm,
    /// Longest pause, in milliseconds.
    pub pause_ms_max: u64,
    /// Per tick: crash a random service host (not a client), and restart it.
    pub crash: Ppm,
    /// Longest a crashed host stays down, in milliseconds.
    pub crash_down_ms_max: u64,
    /// Of the crashes, the share that take the machine down (silence);
    /// the others crash the process (its kernel resets its peers).
    pub machine_crash: Ppm,
}

/// XORed into the seed for the nemesis's own stream.
const NEMESIS_STREAM: u64 = 0x6e65_6d65_7369_7321;

impl NetworkFaults {
    /// No network fault.
    pub fn none() -> NetworkFaults {
        NetworkFaults {
            tick: Duration::from_millis(10),
            partition: 0,
            partition_ms_max: 500,
            clog: 0,
            clog_ms_max: 500,
            pause: 0,
            pause_ms_max: 500,
            crash: 0,
            crash_down_ms_max: 500,
            machine_crash: 500_000,
        }
    }

    /// Every network fault at its default strength: about one of each
    /// kind per second of virtual time, lasting up to half a second; half
    /// the crashes are machine crashes.
    pub fn all() -> NetworkFaults {
        NetworkFaults {
            partition: 10_000,
            clog: 10_000,
            pause: 10_000,
            crash: 10_000,
            ..NetworkFaults::none()
        }
    }

    /// Each kind kept with probability 1/2, at 1/8 to 2 times its default
    /// strength, with its own longest duration (10 ms to 2 s); a random
    /// share of machine crashes.
    pub fn swarm(entropy: &mut Entropy) -> NetworkFaults {
        let all = NetworkFaults::all();
        let mut pick = |ppm: Ppm| -> (Ppm, u64) {
            let strength = if entropy.chance(500_000) {
                entropy.between(u64::from(ppm / 8).max(1), u64::from(ppm) * 2) as Ppm
            } else {
                0
            };
            (strength, entropy.between(10, 2_000))
        };
        let (partition, partition_ms_max) = pick(all.partition);
        let (clog, clog_ms_max) = pick(all.clog);
        let (pause, pause_ms_max) = pick(all.pause);
        let (crash, crash_down_ms_max) = pick(all.crash);
        NetworkFaults {
            partition,
            partition_ms_max,
            clog,
            clog_ms_max,
            pause,
            pause_ms_max,
            crash,
            crash_down_ms_max,
            machine_crash: entropy.below(1_000_001) as Ppm,
            ..all
        }
    }

    /// The network faults of `preset` for `seed`, and the nemesis's own
    /// stream to draw them from.
    pub(crate) fn for_preset(preset: FaultPreset, seed: u64) -> (NetworkFaults, Entropy) {
        let mut entropy = NetworkFaults::stream(seed);
        let faults = match preset {
            FaultPreset::None => NetworkFaults::none(),
            FaultPreset::All => NetworkFaults::all(),
            FaultPreset::Swarm => NetworkFaults::swarm(&mut entropy),
        };
        (faults, entropy)
    }

    /// The nemesis's own stream for `seed`.
    pub(crate) fn stream(seed: u64) -> Entropy {
        Entropy::seeded(seed ^ NEMESIS_STREAM)
    }

    /// Only the faults a service that survives `level` can take: the
    /// others' odds set to zero (the durations stay).
    pub fn survivable_by(&self, level: Survives) -> NetworkFaults {
        let mut faults = self.clone();
        if level < Survives::HealingFaults {
            (faults.partition, faults.clog, faults.pause) = (0, 0, 0);
        }
        if level < Survives::ProcessCrashes {
            faults.crash = 0;
        }
        if level < Survives::MachineCrashes {
            faults.machine_crash = 0;
        }
        faults
    }

    /// These faults with `kind`'s odds set to zero (a kind the nemesis does
    /// not draw changes nothing).
    pub fn without(mut self, kind: crate::FaultKind) -> NetworkFaults {
        use crate::FaultKind as K;
        match kind {
            K::Partition => self.partition = 0,
            K::Clog => self.clog = 0,
            K::Pause => self.pause = 0,
            K::Crash => self.crash = 0,
            _ => {}
        }
        self
    }

    /// `true` if any kind may strike.
    pub fn any(&self) -> bool {
        self.partition > 0 || self.clog > 0 || self.pause > 0 || self.crash > 0
    }

    /// `true` if a fault may break connections: a crash resets them (or,
    /// for a machine, leaves them to their timeouts).
    pub fn may_break_connections(&self) -> bool {
        self.crash > 0
    }
}

impl fmt::Display for NetworkFaults {
    /// The kinds that are on, as `name=percent/longest`, then the tick.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [
            ("partition", self.partition, self.partition_ms_max),
            ("clog", self.clog, self.clog_ms_max),
            ("pause", self.pause, self.pause_ms_max),
            ("crash", self.crash, self.crash_down_ms_max),
        ];
        let on: Vec<String> = kinds
            .iter()
            .filter(|(_, ppm, _)| *ppm > 0)
            .map(|(name, ppm, ms)| format!("{name}={}%/{ms}ms", f64::from(*ppm) / 10_000.0))
            .collect();
        if on.is_empty() {
            return f.write_str("no network faults");
        }
        write!(f, "{} per {:?}", on.join(" "), self.tick)?;
        if self.crash > 0 {
            write!(
                f,
                " (machine crashes {}%)",
                f64::from(self.machine_crash) / 10_000.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_takes_away_what_a_service_cannot_survive() {
        let all = NetworkFaults::all();
        assert!(!all.survivable_by(Survives::SocketFaults).any());
        let healing = all.survivable_by(Survives::HealingFaults);
        assert!(healing.partition > 0 && healing.clog > 0 && healing.pause > 0);
        assert_eq!(healing.crash, 0);
        let process = all.survivable_by(Survives::ProcessCrashes);
        assert!(process.crash > 0 && process.machine_crash == 0);
        assert_eq!(all.survivable_by(Survives::MachineCrashes), all);
        assert!(Survives::ALL.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn levels_parse_back_and_the_plan_prints_each_kind_with_its_longest_duration() {
        for level in Survives::ALL {
            assert_eq!(level.name().parse::<Survives>(), Ok(level));
        }
        assert!("everything".parse::<Survives>().is_err());
        let text = NetworkFaults::all().to_string();
        assert_eq!(
            text,
            "partition=1%/500ms clog=1%/500ms pause=1%/500ms crash=1%/500ms per 10ms (machine crashes 50%)"
        );
        let healing = NetworkFaults::all().survivable_by(Survives::HealingFaults);
        assert!(!healing.to_string().contains("crash"), "{healing}");
    }
}
