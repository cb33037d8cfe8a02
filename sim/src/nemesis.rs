//! `NetworkFaults`: partitions, clogs, pauses and crash–restarts drawn by the seed, on a fixed tick of virtual time — the simulator's nemesis.
//!
//! Opt in with [`Builder::network_faults`](crate::Builder::network_faults):
//! a service must expect its peers to vanish before a seed may crash them.
//! The nemesis draws from its own stream (seeded from the run's seed), so
//! turning it on leaves every other decision of a seed as it was; each
//! draw is a fault decision like the others, so a schedule names it and
//! shrinking removes it.

use std::fmt;
use std::time::Duration;

use crate::{Entropy, FaultPreset, Ppm};

/// How often the nemesis strikes, and how hard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFaults {
    /// Virtual time between two draws.
    pub tick: Duration,
    /// Per tick: cut the links between two random hosts, both ways.
    pub partition: Ppm,
    /// Per tick: clog the links between two random hosts.
    pub clog: Ppm,
    /// Per tick: pause a random host.
    pub pause: Ppm,
    /// Per tick: crash a random service host (not a client), and restart it.
    pub crash: Ppm,
    /// Longest partition, clog, pause or outage, in milliseconds.
    pub duration_ms_max: u64,
}

/// XORed into the seed for the nemesis's own stream.
const NEMESIS_STREAM: u64 = 0x6e65_6d65_7369_7321;

impl NetworkFaults {
    /// No network fault.
    pub fn none() -> NetworkFaults {
        NetworkFaults {
            tick: Duration::from_millis(10),
            partition: 0,
            clog: 0,
            pause: 0,
            crash: 0,
            duration_ms_max: 500,
        }
    }

    /// Every network fault at its default strength: about one of each
    /// kind per second of virtual time.
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
    /// strength; a random longest duration.
    pub fn swarm(entropy: &mut Entropy) -> NetworkFaults {
        let all = NetworkFaults::all();
        let mut pick = |ppm: Ppm| -> Ppm {
            if entropy.chance(500_000) {
                entropy.between(u64::from(ppm / 8).max(1), u64::from(ppm) * 2) as Ppm
            } else {
                0
            }
        };
        let mut faults = NetworkFaults {
            partition: pick(all.partition),
            clog: pick(all.clog),
            pause: pick(all.pause),
            crash: pick(all.crash),
            ..all
        };
        faults.duration_ms_max = entropy.between(10, 2_000);
        faults
    }

    /// The network faults of `preset` for `seed`, from the nemesis's own
    /// stream (or from `bytes`, a fuzzer's, when given).
    pub(crate) fn for_preset(preset: FaultPreset, seed: u64) -> (NetworkFaults, Entropy) {
        let mut entropy = Entropy::seeded(seed ^ NEMESIS_STREAM);
        let faults = match preset {
            FaultPreset::None => NetworkFaults::none(),
            FaultPreset::All => NetworkFaults::all(),
            FaultPreset::Swarm => NetworkFaults::swarm(&mut entropy),
        };
        (faults, entropy)
    }

    /// `true` if any kind may strike.
    pub fn any(&self) -> bool {
        self.partition > 0 || self.clog > 0 || self.pause > 0 || self.crash > 0
    }
}

impl fmt::Display for NetworkFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [
            ("partition", self.partition),
            ("clog", self.clog),
            ("pause", self.pause),
            ("crash", self.crash),
        ];
        let on: Vec<String> = kinds
            .iter()
            .filter(|(_, ppm)| *ppm > 0)
            .map(|(name, ppm)| format!("{name}={}%", f64::from(*ppm) / 10_000.0))
            .collect();
        if on.is_empty() {
            return f.write_str("no network faults");
        }
        write!(
            f,
            "{} per {:?}, up to {}ms",
            on.join(" "),
            self.tick,
            self.duration_ms_max
        )
    }
}
