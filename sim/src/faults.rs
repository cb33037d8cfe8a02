//! `FaultPlan`: which faults a run injects and how often; presets `none`, `all` and `swarm`; and `DatagramFaults`, its part for UDP.

use std::fmt;
use std::str::FromStr;

use crate::Entropy;

/// A probability in parts per million.
pub type Ppm = u32;

/// How often each fault happens in one run. Probabilities are per
/// operation of the kind named (per read, per write, per wait, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// A read returns fewer bytes than are available (the rest raises a new
    /// edge, as data arriving during the read would).
    pub partial_read: Ppm,
    /// A write accepts fewer bytes than the send window allows, and the
    /// send buffer is then full, as a short write on a real kernel means:
    /// the writes after it take nothing (`WouldBlock`) until some of what
    /// was sent lands (or is lost to a machine that is down), and a WRITE
    /// edge says so (sooner than on Linux,
    /// which waits for a third of the buffer). A service's own buffered
    /// output is what this exercises.
    pub partial_write: Ppm,
    /// A read, write or wait fails with `EINTR`.
    pub interrupt: Ppm,
    /// A read fails with `WouldBlock` although data is there (a new edge
    /// follows), or a wait reports an fd that is not ready (spurious event).
    pub spurious: Ppm,
    /// Per segment sent: the connection is reset, both ends told.
    pub reset: Ppm,
    /// Per connect: refused.
    pub refuse_connect: Ppm,
    /// Per accept: `EMFILE`, and the host stays out of fds for a while.
    pub accept_emfile: Ppm,
    /// Per accept: the connection was aborted (`ECONNABORTED`).
    pub accept_aborted: Ppm,
    /// Per client: half-close after sending, instead of closing once all is
    /// echoed. Not a fault but a workload knob, which the built-in echo
    /// clients read (yours may too, from [`Sim::plan`](crate::Sim::plan)):
    /// the plan's one-line description leaves it out.
    pub half_close: Ppm,
    /// Per wait: the batch of events is shuffled.
    pub shuffle: Ppm,
    /// One-way latency, lower bound, in microseconds.
    pub latency_us_min: u64,
    /// One-way latency, upper bound (jitter), in microseconds.
    pub latency_us_max: u64,
    /// Bytes in flight plus unread, per direction of a connection.
    pub window_bytes: usize,
    /// What happens to UDP datagrams. None in [`FaultPlan::none`],
    /// [`FaultPlan::all`] and [`FaultPlan::swarm`]: a run under a preset
    /// gets the preset's [`DatagramFaults`] when it opens its first UDP
    /// socket (see [`DatagramFaults::for_preset`]), so that a service that
    /// never does runs, prints and hashes as before. Set it in an explicit
    /// plan to have it from the start.
    pub datagram: DatagramFaults,
}

/// What happens to UDP datagrams, per datagram sent. UDP never
/// retransmits: a lost datagram is gone, and so is one that meets a cut
/// link, a port nobody has bound, a host that is down, or a full receive
/// queue (those are not faults but the network; see
/// [`DatagramStats`](crate::world::DatagramStats)). Truncation to a reader's
/// buffer is no drawn fault either: it follows from the buffer, and shows
/// as `datagram-truncate` among the faults that fired.
///
/// Without faults, the datagrams of one socket land in the order sent.
/// Delay keeps that order; reordering and duplication break it, as a
/// network of many paths does: a reordered datagram, or a duplicate's
/// copy, may land after datagrams sent well after it. Each datagram's
/// decisions are numbered apart from the socket faults' (`fire d<N>` in a
/// schedule), and what it meets is drawn from a stream of its own, so
/// shrinking one away leaves the others as they were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramFaults {
    /// The datagram is lost on the way.
    pub loss: Ppm,
    /// The datagram arrives twice: the copy takes a path of its own — its
    /// own latency, and 0 to 200 ms more — so it may land long after what
    /// the socket sent later, or before its original (whose own latency
    /// may be the longer, or which may be delayed, reordered, or waiting
    /// behind an earlier delayed datagram), and holds nothing back.
    pub duplicate: Ppm,
    /// The datagram is held back 1 to 200 ms on the way, alone: what its
    /// socket sends later does not wait, and overtakes it. No other
    /// datagram need be in flight.
    pub reorder: Ppm,
    /// The datagram waits 1 to 200 ms more on the way; what its socket
    /// sends later waits behind it (the order stays). A datagram both
    /// delayed and reordered is held back alone, as a reorder is: it holds
    /// nothing back.
    pub delay: Ppm,
}

/// The ChaCha stream the datagram faults of a preset are drawn from: not
/// the run's, so that drawing them moves no other decision.
const DATAGRAM_STREAM: u64 = 0x6461_7461_6772_616d;

impl DatagramFaults {
    /// No datagram fault.
    pub const fn none() -> DatagramFaults {
        DatagramFaults {
            loss: 0,
            duplicate: 0,
            reorder: 0,
            delay: 0,
        }
    }

    /// Every datagram fault at its default strength: 2% each.
    pub const fn all() -> DatagramFaults {
        DatagramFaults {
            loss: 20_000,
            duplicate: 20_000,
            reorder: 20_000,
            delay: 20_000,
        }
    }

    /// Each fault of [`DatagramFaults::all`] kept with probability 1/2, at a
    /// strength between 1/8 and 4 times its default.
    pub fn swarm(entropy: &mut Entropy) -> DatagramFaults {
        let all = DatagramFaults::all();
        let mut pick = |ppm: Ppm| -> Ppm {
            if entropy.chance(500_000) {
                entropy.between(u64::from(ppm / 8).max(1), u64::from(ppm) * 4) as Ppm
            } else {
                0
            }
        };
        DatagramFaults {
            loss: pick(all.loss),
            duplicate: pick(all.duplicate),
            reorder: pick(all.reorder),
            delay: pick(all.delay),
        }
    }

    /// The datagram faults of `preset` for a run deciding from `entropy`,
    /// drawn (for `swarm`) from a stream of their own that the seed alone
    /// decides: `entropy` does not move.
    pub fn for_preset(preset: FaultPreset, entropy: &Entropy) -> DatagramFaults {
        match preset {
            FaultPreset::None => DatagramFaults::none(),
            FaultPreset::All => DatagramFaults::all(),
            FaultPreset::Swarm => DatagramFaults::swarm(&mut entropy.fork(DATAGRAM_STREAM)),
        }
    }

    /// `true` if any fault may fire.
    pub fn any(&self) -> bool {
        self.loss > 0 || self.duplicate > 0 || self.reorder > 0 || self.delay > 0
    }

    /// These faults, with `kind`'s odds set to zero (any other kind: as
    /// they were).
    pub fn without(self, kind: crate::FaultKind) -> DatagramFaults {
        use crate::FaultKind as K;
        let mut faults = self;
        match kind {
            K::DatagramLoss => faults.loss = 0,
            K::DatagramDuplicate => faults.duplicate = 0,
            K::DatagramReorder => faults.reorder = 0,
            K::DatagramDelay => faults.delay = 0,
            _ => {}
        }
        faults
    }

    fn named(&self) -> [(&'static str, Ppm); 4] {
        [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("delay", self.delay),
        ]
    }
}

impl fmt::Display for DatagramFaults {
    /// The faults that are on, as `name=percent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on: Vec<String> = self
            .named()
            .iter()
            .filter(|(_, ppm)| *ppm > 0)
            .map(|(name, ppm)| format!("{name}={}%", f64::from(*ppm) / 10_000.0))
            .collect();
        if on.is_empty() {
            f.write_str("no datagram faults")
        } else {
            f.write_str(&on.join(" "))
        }
    }
}

/// A named way to build a [`FaultPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPreset {
    /// No faults; fixed latency.
    None,
    /// Every fault at its default strength.
    All,
    /// Each seed draws its own subset of faults and their strengths.
    Swarm,
}

impl FaultPreset {
    /// The preset's name, as the `sim` command takes it.
    pub fn name(self) -> &'static str {
        match self {
            FaultPreset::None => "none",
            FaultPreset::All => "all",
            FaultPreset::Swarm => "swarm",
        }
    }
}

impl FromStr for FaultPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(FaultPreset::None),
            "all" => Ok(FaultPreset::All),
            "swarm" => Ok(FaultPreset::Swarm),
            other => Err(format!(
                "unknown fault preset {other:?} (expected none, all or swarm)"
            )),
        }
    }
}

impl fmt::Display for FaultPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FaultPlan {
    /// No faults at all.
    pub fn none() -> FaultPlan {
        FaultPlan {
            partial_read: 0,
            partial_write: 0,
            interrupt: 0,
            spurious: 0,
            reset: 0,
            refuse_connect: 0,
            accept_emfile: 0,
            accept_aborted: 0,
            half_close: 0,
            shuffle: 0,
            latency_us_min: 100,
            latency_us_max: 100,
            window_bytes: 64 * 1024,
            datagram: DatagramFaults::none(),
        }
    }

    /// Every socket fault, at its default strength (datagram faults:
    /// [`DatagramFaults::all`], which the `all` preset adds once a run opens
    /// a UDP socket).
    pub fn all() -> FaultPlan {
        FaultPlan {
            partial_read: 200_000,
            partial_write: 200_000,
            interrupt: 20_000,
            spurious: 20_000,
            reset: 1_000,
            refuse_connect: 20_000,
            accept_emfile: 20_000,
            accept_aborted: 20_000,
            half_close: 500_000,
            shuffle: 500_000,
            latency_us_min: 20,
            latency_us_max: 2_000,
            window_bytes: 8 * 1024,
            datagram: DatagramFaults::none(),
        }
    }

    /// Each fault of [`FaultPlan::all`] kept with probability 1/2, at a
    /// strength between 1/8 and 2 times its default; a random window and
    /// latency.
    pub fn swarm(entropy: &mut Entropy) -> FaultPlan {
        let all = FaultPlan::all();
        let mut pick = |ppm: Ppm| -> Ppm {
            if entropy.chance(500_000) {
                let scaled = entropy.between(u64::from(ppm / 8).max(1), u64::from(ppm) * 2);
                scaled.min(900_000) as Ppm
            } else {
                0
            }
        };
        let mut plan = FaultPlan {
            partial_read: pick(all.partial_read),
            partial_write: pick(all.partial_write),
            interrupt: pick(all.interrupt),
            spurious: pick(all.spurious),
            reset: pick(all.reset),
            refuse_connect: pick(all.refuse_connect),
            accept_emfile: pick(all.accept_emfile),
            accept_aborted: pick(all.accept_aborted),
            half_close: pick(all.half_close),
            shuffle: pick(all.shuffle),
            ..all
        };
        plan.latency_us_min = entropy.between(1, 500);
        plan.latency_us_max = plan.latency_us_min + entropy.between(0, 5_000);
        plan.window_bytes = 1 << entropy.between(9, 18);
        plan
    }

    /// The plan of `preset`, drawing from `entropy` for `swarm`; its datagram
    /// faults come with the first UDP socket (see [`FaultPlan::datagram`]).
    pub fn from_preset(preset: FaultPreset, entropy: &mut Entropy) -> FaultPlan {
        match preset {
            FaultPreset::None => FaultPlan::none(),
            FaultPreset::All => FaultPlan::all(),
            FaultPreset::Swarm => FaultPlan::swarm(entropy),
        }
    }

    /// The plan with `kind`'s odds set to zero. Some socket faults share
    /// their odds: turning off one `eintr-*` turns off all three, and
    /// `wouldblock-read` and `spurious-event` go together. Kinds no plan
    /// draws (network faults, `datagram-truncate`) change nothing.
    pub fn without(self, kind: crate::FaultKind) -> FaultPlan {
        use crate::FaultKind as K;
        let mut plan = self;
        match kind {
            K::PartialRead => plan.partial_read = 0,
            K::PartialWrite => plan.partial_write = 0,
            K::EintrRead | K::EintrWrite | K::EintrWait => plan.interrupt = 0,
            K::WouldblockRead | K::SpuriousEvent => plan.spurious = 0,
            K::Reset => plan.reset = 0,
            K::RefuseConnect => plan.refuse_connect = 0,
            K::AcceptEmfile => plan.accept_emfile = 0,
            K::AcceptAborted => plan.accept_aborted = 0,
            K::DatagramLoss | K::DatagramDuplicate | K::DatagramReorder | K::DatagramDelay => {
                plan.datagram = plan.datagram.without(kind)
            }
            K::Partition | K::Clog | K::Pause | K::Crash | K::DatagramTruncate => {}
        }
        plan
    }

    /// `true` if the plan gives `kind` a chance to fire. Scripted kinds
    /// (partitions, clogs, pauses, crashes) are never drawn from a plan.
    pub fn enables(&self, kind: crate::FaultKind) -> bool {
        use crate::FaultKind as K;
        let ppm = match kind {
            K::PartialRead => self.partial_read,
            K::PartialWrite => self.partial_write,
            K::EintrRead | K::EintrWrite | K::EintrWait => self.interrupt,
            K::WouldblockRead | K::SpuriousEvent => self.spurious,
            K::Reset => self.reset,
            K::RefuseConnect => self.refuse_connect,
            K::AcceptEmfile => self.accept_emfile,
            K::AcceptAborted => self.accept_aborted,
            K::DatagramLoss => self.datagram.loss,
            K::DatagramDuplicate => self.datagram.duplicate,
            K::DatagramReorder => self.datagram.reorder,
            K::DatagramDelay => self.datagram.delay,
            K::Partition | K::Clog | K::Pause | K::Crash | K::DatagramTruncate => 0,
        };
        ppm > 0
    }

    /// `true` if the plan's **socket** faults may reset connections or
    /// refuse or abort them, so that a client may end with a clean error
    /// instead of its answer. A crash, which a simulation that declares it
    /// survives crashes may also draw ([`Sim::survives`](crate::Sim::survives)),
    /// breaks connections too: [`Sim::may_break_connections`](crate::Sim::may_break_connections)
    /// counts both, and a client's setup can take it from the `Sim` (read
    /// it after `survives`) instead of from its poller's plan.
    pub fn may_break_connections(&self) -> bool {
        self.reset > 0 || self.refuse_connect > 0 || self.accept_aborted > 0
    }

    /// A 64-bit hash of the plan, for one-line reproduction reports. A
    /// plan without datagram faults hashes as it did before they existed.
    ///
    /// FNV-1a over a tag byte and the little-endian bytes of each field,
    /// as the trace hashed before it became word-wise: a plan's identity
    /// did not change with the trace's hash.
    pub fn hash(&self) -> u64 {
        let mut hash = fnv1a(FNV_OFFSET, 0, &self.fields());
        if self.datagram.any() {
            let datagram = self.datagram.named().map(|(_, ppm)| u64::from(ppm));
            hash = fnv1a(hash, 1, &datagram);
        }
        hash
    }

    fn fields(&self) -> [u64; 13] {
        [
            u64::from(self.partial_read),
            u64::from(self.partial_write),
            u64::from(self.interrupt),
            u64::from(self.spurious),
            u64::from(self.reset),
            u64::from(self.refuse_connect),
            u64::from(self.accept_emfile),
            u64::from(self.accept_aborted),
            u64::from(self.half_close),
            u64::from(self.shuffle),
            self.latency_us_min,
            self.latency_us_max,
            self.window_bytes as u64,
        ]
    }
}

impl fmt::Display for FaultPlan {
    /// The faults that are on, as `name=percent`, then latency and window
    /// (not [`half_close`](Self::half_close), which is no fault).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults = [
            ("partial_read", self.partial_read),
            ("partial_write", self.partial_write),
            ("eintr", self.interrupt),
            ("spurious", self.spurious),
            ("reset", self.reset),
            ("refuse", self.refuse_connect),
            ("emfile", self.accept_emfile),
            ("aborted", self.accept_aborted),
            ("shuffle", self.shuffle),
        ];
        let mut any = false;
        for (name, ppm) in faults.iter().filter(|(_, ppm)| *ppm > 0) {
            write!(f, "{name}={}% ", f64::from(*ppm) / 10_000.0)?;
            any = true;
        }
        if !any {
            f.write_str("no-faults ")?;
        }
        write!(
            f,
            "latency={}..{}us window={}B",
            self.latency_us_min, self.latency_us_max, self.window_bytes
        )?;
        if self.datagram.any() {
            write!(f, " datagram: {}", self.datagram)?;
        }
        Ok(())
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// `hash` continued, FNV-1a, over `tag` and the little-endian bytes of
/// `values`.
fn fnv1a(hash: u64, tag: u8, values: &[u64]) -> u64 {
    let bytes = values.iter().flat_map(|value| value.to_le_bytes());
    std::iter::once(tag).chain(bytes).fold(hash, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}
