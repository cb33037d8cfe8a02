//! Schedules, and shrinking a failing run to one: keep only the faults (and parameters) the failure needs.
//!
//! A run's faults are identified by the index of the fault decision that
//! fired them. A [`Schedule`] is a seed plus the set of decisions that
//! fire; every other decision (latency, sizes, partial amounts) still comes
//! from the seed. The shrinker removes faults by delta debugging (halves,
//! then smaller chunks) and tries smaller numeric parameters (fewer
//! clients, fewer messages), keeping each step only if the run still fails
//! the same way. Removing a partial read or write merges the split
//! operation back into one.
//!
//! Schedules work for any simulation: the `sim` command writes them for
//! its scenarios, and a [`Sweep`](crate::Sweep) writes them for a user's
//! test (`IOLOOP_SIM_SHRINK=1`) and replays them (`IOLOOP_SIM_SCHEDULE`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use crate::net::FiredFault;
use crate::world::{socket_draw, socket_draw_parts, DATAGRAM_DRAW, NEMESIS_DRAW, SCRIPTED};
use crate::FaultKind;
use crate::{Builder, FailureKind, FaultPreset, Sim};

/// Runs a shrink may take.
pub const SHRINK_RUNS_MAX: usize = 2_000;
/// Fault decisions a schedule may fire.
pub const SCHEDULE_FIRES_MAX: usize = 1_000_000;
/// Parameters a schedule may carry.
pub const SCHEDULE_PARAMS_MAX: usize = 64;
/// Bytes a schedule's text may have.
pub const SCHEDULE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The longest liveness phase a schedule may ask for, in milliseconds.
pub const LIVENESS_MS_MAX: u64 = 3_600_000;

/// Parse a seed, decimal or `0x`-hex — the one way seeds are read
/// everywhere (command line, environment, schedule files).
pub fn parse_seed(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("not a seed (a u64, decimal or 0x-hex): {text:?}"))
}

/// A seed, the fault decisions that fire, and what else the run needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The test (or `sim` scenario) the schedule belongs to.
    pub name: String,
    /// The seed of every other decision.
    pub seed: u64,
    /// The fault preset (it decides the plan, and so what may fire).
    pub faults: FaultPreset,
    /// The liveness phase, if the run had one.
    pub liveness_after: Option<Duration>,
    /// Parameters of the run, in order (a scenario's clients, messages...).
    pub params: Vec<(String, String)>,
    /// Indices of the fault decisions that fire (the network faults of
    /// the nemesis and the datagram faults among them; see [`draw_name`]).
    pub fire: BTreeSet<u64>,
    /// Fire the faults the seed draws, not `fire` (a seed of a sweep, not
    /// yet a schedule). Never written to a file.
    pub from_seed: bool,
}

impl Schedule {
    /// A schedule of `seed` that fires nothing yet.
    pub fn new(name: &str, seed: u64, faults: FaultPreset) -> Schedule {
        Schedule {
            name: name.to_string(),
            seed,
            faults,
            liveness_after: None,
            params: Vec::new(),
            fire: BTreeSet::new(),
            from_seed: false,
        }
    }

    /// The value of parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set parameter `key`.
    pub fn set_param(&mut self, key: &str, value: String) {
        match self.params.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.params.push((key.to_string(), value)),
        }
    }

    /// A [`Builder`] for this schedule's run: its seed, preset, liveness
    /// phase, and exactly its faults.
    pub fn builder(&self) -> Builder {
        self.configure(Sim::builder(self.seed))
    }

    /// `builder` (of this schedule's seed) with the schedule's preset,
    /// liveness phase and faults.
    pub(crate) fn configure(&self, builder: Builder) -> Builder {
        let mut builder = builder.faults(self.faults);
        if !self.from_seed {
            builder = builder.schedule(self.fire.clone());
        }
        if let Some(after) = self.liveness_after {
            builder = builder.liveness_after(after);
        }
        builder
    }

    /// The schedule as a small, readable file. `replay` is a comment line
    /// saying how to replay it; `fired` annotates each fault.
    pub fn to_text(&self, replay: &str, failure: Option<&str>, fired: &[FiredFault]) -> String {
        let mut text = format!("# ioloop-sim schedule; replay: {replay}\n");
        if let Some(failure) = failure {
            let first_line = failure.lines().next().unwrap_or("");
            let _ = writeln!(text, "# fails: {first_line}");
        }
        let _ = writeln!(text, "name {}", self.name);
        let _ = writeln!(text, "seed {:#x}", self.seed);
        let _ = writeln!(text, "faults {}", self.faults);
        if let Some(after) = self.liveness_after {
            let _ = writeln!(text, "liveness-after-ms {}", after.as_millis());
        }
        for (key, value) in &self.params {
            let _ = writeln!(text, "param {key} {value}");
        }
        for draw in &self.fire {
            let number = draw_name(*draw);
            match fired.iter().find(|f| f.draw == *draw) {
                Some(f) => {
                    let _ = writeln!(text, "fire {number}  # {f}");
                }
                None => {
                    let _ = writeln!(text, "fire {number}");
                }
            }
        }
        text
    }

    /// Read a schedule written by [`Schedule::to_text`]. Every number is
    /// bounded; an error names the line.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        if text.len() > SCHEDULE_BYTES_MAX {
            return Err(format!(
                "a schedule has at most {SCHEDULE_BYTES_MAX} bytes, this one {}",
                text.len()
            ));
        }
        let mut name = None;
        let mut seed = None;
        let mut schedule = Schedule::new("", 0, FaultPreset::Swarm);
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |message: String| format!("line {}: {message}", number + 1);
            let (key, value) = line
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
                .ok_or_else(|| at(format!("expected `key value`: {line:?}")))?;
            match key {
                "name" | "scenario" => name = Some(value.to_string()),
                "seed" => seed = Some(parse_seed(value).map_err(at)?),
                "faults" => schedule.faults = value.parse().map_err(at)?,
                "liveness-after-ms" => {
                    let ms = value
                        .parse::<u64>()
                        .ok()
                        .filter(|ms| *ms <= LIVENESS_MS_MAX)
                        .ok_or_else(|| {
                            at(format!(
                                "liveness-after-ms must be 0 to {LIVENESS_MS_MAX}: {value:?}"
                            ))
                        })?;
                    schedule.liveness_after = Some(Duration::from_millis(ms));
                }
                "param" => {
                    let (k, v) = value
                        .split_once(char::is_whitespace)
                        .ok_or_else(|| at(format!("expected `param KEY VALUE`: {line:?}")))?;
                    if schedule.params.len() >= SCHEDULE_PARAMS_MAX {
                        return Err(at(format!("more than {SCHEDULE_PARAMS_MAX} params")));
                    }
                    schedule.set_param(k, v.trim().to_string());
                }
                "fire" => {
                    let draw = parse_draw(value).map_err(at)?;
                    if schedule.fire.len() >= SCHEDULE_FIRES_MAX {
                        return Err(at(format!("more than {SCHEDULE_FIRES_MAX} faults")));
                    }
                    schedule.fire.insert(draw);
                }
                // The `sim` command's older files named workload keys bare.
                "clients" | "messages" | "message-bytes" | "message-sizes" => {
                    schedule.set_param(key, value.to_string())
                }
                other => return Err(at(format!("unknown key {other:?}"))),
            }
        }
        schedule.name = name.ok_or("the schedule has no `name` line")?;
        schedule.seed = seed.ok_or("the schedule has no `seed` line")?;
        Ok(schedule)
    }
}

/// Fault decisions of each sequence a run may make: the nemesis's and a
/// datagram's numbers stay below it.
const DRAWS_PER_SEQUENCE_MAX: u64 = NEMESIS_DRAW;

/// A fault decision as a `fire` line writes it: `kind:host:N` for a socket
/// fault's (see [`socket_draw`]), `nN` for the nemesis's (see
/// [`NEMESIS_DRAW`]), `dN` for a datagram's (see [`DATAGRAM_DRAW`]);
/// `scripted` for a fault the test scripted.
pub fn draw_name(draw: u64) -> String {
    if draw == SCRIPTED {
        "scripted".to_string()
    } else if let Some(index) = draw.checked_sub(DATAGRAM_DRAW) {
        format!("d{index}")
    } else if let Some(index) = draw.checked_sub(NEMESIS_DRAW) {
        format!("n{index}")
    } else if let Some((kind, host, index)) = socket_draw_parts(draw) {
        format!("{kind}:{host}:{index}")
    } else {
        // Not a number this version makes (no schedule of it can be read).
        format!("socket{draw}")
    }
}

/// A `fire` line's decision, as [`draw_name`] writes it.
fn parse_draw(text: &str) -> Result<u64, String> {
    let digits = |text: &str, below: u64| {
        // Digits only: `parse` would also take a sign (`d+1`).
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
            .filter(|n| *n < below)
    };
    let bad = || {
        format!(
            "bad fault number {text:?} (expected KIND:HOST:N for a socket fault, as in \
             `partial-write:0:12`, nN for a network fault, dN for a datagram's)"
        )
    };
    if let Some((kind, rest)) = text.split_once(':') {
        let (host, index) = rest.split_once(':').ok_or_else(bad)?;
        let kind: FaultKind = kind.parse()?;
        if !kind.is_socket_fault() {
            let socket: Vec<&str> = FaultKind::ALL
                .into_iter()
                .filter(|kind| kind.is_socket_fault())
                .map(FaultKind::name)
                .collect();
            return Err(format!(
                "{text:?}: {kind} is not a socket fault (those are {})",
                socket.join(", ")
            ));
        }
        let host = digits(host, 256).ok_or_else(bad)? as usize;
        let index = digits(index, 1 << 35).ok_or_else(bad)?;
        return Ok(socket_draw(kind, host, index));
    }
    let (base, index) = match text.split_at_checked(1) {
        Some(("n", index)) => (NEMESIS_DRAW, index),
        Some(("d", index)) => (DATAGRAM_DRAW, index),
        _ if digits(text, u64::MAX).is_some() => {
            return Err(format!(
                "{text:?}: a socket fault is written KIND:HOST:N now (as in `partial-write:0:12`), \
                 numbered per host and kind; this schedule numbers them in one sequence, as \
                 ioloop-sim did before: shrink the seed again to get a schedule of this version"
            ))
        }
        _ => return Err(bad()),
    };
    digits(index, DRAWS_PER_SEQUENCE_MAX)
        .map(|index| base + index)
        .ok_or_else(bad)
}

/// What one run of a schedule gave, as far as shrinking cares.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The failure, if the run failed: its kind and message.
    pub failure: Option<(FailureKind, String)>,
    /// The faults that fired.
    pub fired: Vec<FiredFault>,
}

impl Attempt {
    /// The attempt of a [`Sim::run`] result.
    pub fn of(result: &Result<crate::Report, crate::Failure>) -> Attempt {
        match result {
            Ok(report) => Attempt {
                failure: None,
                fired: report.fired.clone(),
            },
            Err(failure) => Attempt {
                failure: Some((failure.kind, failure.to_string())),
                fired: failure.report.fired.clone(),
            },
        }
    }
}

/// What a shrink found.
pub struct ShrinkReport {
    /// The smallest schedule found that fails the same way.
    pub schedule: Schedule,
    /// The failure the shrunk schedule gives.
    pub failure: String,
    /// The faults it fires, for the report.
    pub fired: Vec<FiredFault>,
    /// Faults in the original run.
    pub faults_before: usize,
    /// The parameters of the original run.
    pub params_before: Vec<(String, String)>,
    /// Runs made.
    pub runs: usize,
}

impl ShrinkReport {
    /// What to tell a reader of the shrink whom "0 of N faults remain"
    /// would mislead: no fault is needed to fail the same way.
    pub(crate) fn note(&self) -> Option<&'static str> {
        self.schedule.fire.is_empty().then_some(
            "no fault is needed to fail this way: the seed's plan (its latency, window, ...) and \
             the workload are enough, and the schedule keeps them (the failure may now show on \
             another host or later: the same kind, not always the same message)",
        )
    }
}

/// Shrink the failing schedule `first` (which fired what `attempt` says):
/// fewer faults, and smaller values of the numeric parameters named in
/// `shrinkable` (down to 1), keeping each step only if `run` still fails
/// with the same [`FailureKind`]. `Err` if `first` does not fail.
pub fn shrink_schedule<F>(
    first: Schedule,
    attempt: Attempt,
    shrinkable: &[&str],
    run: F,
) -> Result<ShrinkReport, String>
where
    F: FnMut(&Schedule) -> Attempt,
{
    let (kind, message) = attempt
        .failure
        .clone()
        .ok_or("this seed does not fail: nothing to shrink")?;
    let mut shrinker = Shrinker {
        kind,
        run,
        runs: 1,
        best: Schedule {
            fire: draws(&attempt.fired),
            from_seed: false,
            ..first.clone()
        },
        best_failure: message,
        best_fired: attempt.fired,
    };
    let faults_before = shrinker.best.fire.len();
    shrinker.shrink_params(shrinkable);
    shrinker.shrink_faults();
    shrinker.shrink_params(shrinkable);
    Ok(ShrinkReport {
        schedule: shrinker.best,
        failure: shrinker.best_failure,
        fired: shrinker.best_fired,
        faults_before,
        params_before: first.params,
        runs: shrinker.runs,
    })
}

/// The decisions that fired, less the faults a test scripted (which are
/// its code, not the seed's).
fn draws(fired: &[FiredFault]) -> BTreeSet<u64> {
    fired
        .iter()
        .map(|f| f.draw)
        .filter(|draw| *draw != SCRIPTED)
        .collect()
}

struct Shrinker<F> {
    kind: FailureKind,
    run: F,
    runs: usize,
    best: Schedule,
    best_failure: String,
    best_fired: Vec<FiredFault>,
}

impl<F: FnMut(&Schedule) -> Attempt> Shrinker<F> {
    /// Try `candidate`; keep it if it fails the same way.
    fn try_keep(&mut self, candidate: Schedule) -> bool {
        if self.runs >= SHRINK_RUNS_MAX {
            return false;
        }
        self.runs += 1;
        let attempt = (self.run)(&candidate);
        match attempt.failure {
            Some((kind, message)) if kind == self.kind => {
                // Keep only the faults that actually fired on the new path.
                self.best = Schedule {
                    fire: draws(&attempt.fired),
                    ..candidate
                };
                self.best_failure = message;
                self.best_fired = attempt.fired;
                true
            }
            _ => false,
        }
    }

    /// Each numeric parameter in turn: the smallest value that still
    /// fails, trying 1, 2, 4, ...
    fn shrink_params(&mut self, shrinkable: &[&str]) {
        for key in shrinkable {
            let current = |s: &Schedule| s.param(key).and_then(|v| v.parse::<u64>().ok());
            let mut size = 1;
            while current(&self.best).is_some_and(|value| size < value) {
                let mut candidate = self.best.clone();
                candidate.set_param(key, size.to_string());
                if !self.try_keep(candidate) {
                    size = (size * 2).max(size + 1);
                }
            }
        }
    }

    /// Delta debugging over the faults that fire.
    fn shrink_faults(&mut self) {
        let mut chunks = 2;
        while !self.best.fire.is_empty() && self.runs < SHRINK_RUNS_MAX {
            let items: Vec<u64> = self.best.fire.iter().copied().collect();
            let chunk_len = items.len().div_ceil(chunks.min(items.len()));
            let mut removed = false;
            for part in items.chunks(chunk_len) {
                let mut candidate = self.best.clone();
                for draw in part {
                    candidate.fire.remove(draw);
                }
                if self.try_keep(candidate) {
                    chunks = (chunks - 1).max(2);
                    removed = true;
                    break;
                }
            }
            if !removed {
                if chunks >= items.len() {
                    return;
                }
                chunks = (chunks * 2).min(items.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_one_way_decimal_or_hex() {
        assert_eq!(parse_seed("31"), Ok(31));
        assert_eq!(parse_seed("0x1f"), Ok(31));
        assert_eq!(parse_seed(" 0X1F "), Ok(31));
        assert!(parse_seed("1f").is_err());
        assert!(parse_seed("-1").is_err());
        assert!(parse_seed("18446744073709551616").is_err());
    }

    #[test]
    fn a_schedule_round_trips_through_its_text() {
        let mut schedule = Schedule::new("kv_survives_faults", 31, FaultPreset::Swarm);
        schedule.liveness_after = Some(Duration::from_millis(20));
        schedule.set_param("clients", "3".into());
        schedule.fire.extend([
            socket_draw(FaultKind::PartialWrite, 0, 4),
            socket_draw(FaultKind::AcceptAborted, 3, 182),
            socket_draw(FaultKind::PartialRead, 300, (1 << 35) - 1),
            NEMESIS_DRAW + 7,
            DATAGRAM_DRAW + 13,
        ]);
        let text = schedule.to_text("IOLOOP_SIM_SCHEDULE=FILE cargo test", Some("stall"), &[]);
        assert!(text.contains("fire partial-write:0:4\n"), "{text}");
        assert!(text.contains("fire accept-aborted:3:182\n"), "{text}");
        assert!(
            text.contains("fire partial-read:255:34359738367\n"),
            "{text}"
        );
        assert!(text.contains("fire n7\n"), "{text}");
        assert!(text.contains("fire d13\n"), "{text}");
        assert_eq!(Schedule::parse(&text), Ok(schedule));
    }

    #[test]
    fn a_shrink_down_to_no_fault_says_the_plan_is_enough() {
        let mut report = ShrinkReport {
            schedule: Schedule::new("t", 3, FaultPreset::Swarm),
            failure: "stall".into(),
            fired: Vec::new(),
            faults_before: 127,
            params_before: Vec::new(),
            runs: 40,
        };
        assert!(report
            .note()
            .is_some_and(|note| note.contains("no fault is needed")));
        report
            .schedule
            .fire
            .insert(socket_draw(FaultKind::PartialWrite, 0, 4));
        assert_eq!(report.note(), None);
    }

    #[test]
    fn a_decimal_seed_in_a_file_is_read_as_decimal() {
        let schedule = Schedule::parse("name t\nseed 31\n").unwrap();
        assert_eq!(schedule.seed, 31);
    }

    #[test]
    fn malformed_schedules_are_rejected_with_the_line() {
        for (text, expected) in [
            ("seed 0x1\n", "no `name` line"),
            ("name t\n", "no `seed` line"),
            ("name t\nseed 1\nfire x\n", "line 3"),
            ("name t\nwhat 3\n", "unknown key"),
            ("name t\nseed 1f\n", "not a seed"),
            (
                "name t\nseed 1\nliveness-after-ms 99999999999\n",
                "liveness",
            ),
            ("name t\nseed 1\nfaults most\n", "unknown fault preset"),
            ("name t\nseed 1\nparam lonely\n", "param KEY VALUE"),
            ("name t\nseed 1\nfire n\n", "line 3"),
            ("name t\nseed 1\nfire 281474976710656\n", "line 3"),
            ("name t\nseed 1\nfire d281474976710656\n", "line 3"),
            ("name t\nseed 1\nfire d-1\n", "line 3"),
            ("name t\nseed 1\nfire d+1\n", "line 3"),
            ("name t\nseed 1\nfire +1\n", "line 3"),
            ("name t\nseed 1\nfire x1\n", "line 3"),
            ("name t\nseed 1\nfire 39\n", "shrink the seed again"),
            ("name t\nseed 1\nfire partition:0:1\n", "not a socket fault"),
            ("name t\nseed 1\nfire partial:0:1\n", "unknown fault kind"),
            ("name t\nseed 1\nfire reset:256:1\n", "KIND:HOST:N"),
            ("name t\nseed 1\nfire reset:0:34359738368\n", "KIND:HOST:N"),
            ("name t\nseed 1\nfire reset:0\n", "KIND:HOST:N"),
            ("name t\nseed 1\nfire reset:0:+1\n", "KIND:HOST:N"),
            ("name t\nseed 1\nfire reset::1\n", "KIND:HOST:N"),
        ] {
            let error = Schedule::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let huge = "fire d1\n".repeat(SCHEDULE_BYTES_MAX / 8 + 1);
        assert!(Schedule::parse(&huge).unwrap_err().contains("at most"));
        let many: String = (0..=SCHEDULE_PARAMS_MAX)
            .map(|i| format!("param p{i} 1\n"))
            .collect();
        assert!(Schedule::parse(&many).unwrap_err().contains("params"));
    }

    /// Decision `draw` fired: a fault of `kind` on host `host` (fd 3, at
    /// the start).
    fn fired_fault(draw: u64, kind: FaultKind, host: usize) -> FiredFault {
        FiredFault {
            draw,
            kind,
            host,
            fd: ioloop::Fd(3),
            at: ioloop::Instant::ZERO,
            host_name: format!("host{host}").into(),
            peer: None,
            lasting: None,
        }
    }

    /// A schedule of exactly `SCHEDULE_BYTES_MAX` bytes is read: the limit
    /// is 16 MiB, not less, and a text at it is within it.
    #[test]
    fn a_schedule_at_the_byte_limit_is_read() {
        let head = "name t\nseed 1\n#";
        let mut text = String::with_capacity(SCHEDULE_BYTES_MAX);
        text.push_str(head);
        text.extend(std::iter::repeat_n('x', SCHEDULE_BYTES_MAX - head.len()));
        assert_eq!(text.len(), 16 * 1024 * 1024);
        assert_eq!(Schedule::parse(&text).map(|s| s.seed), Ok(1));
    }

    /// A fault that fired is written with what it was; one that did not,
    /// bare.
    #[test]
    fn a_schedule_annotates_the_faults_that_fired() {
        let (fired_draw, quiet_draw) = (
            socket_draw(FaultKind::PartialWrite, 0, 4),
            socket_draw(FaultKind::Reset, 1, 2),
        );
        let mut schedule = Schedule::new("t", 1, FaultPreset::Swarm);
        schedule.fire.extend([fired_draw, quiet_draw]);
        let fired = fired_fault(fired_draw, FaultKind::PartialWrite, 0);
        let text = schedule.to_text("replay", None, std::slice::from_ref(&fired));
        assert!(
            text.contains(&format!("fire partial-write:0:4  # {fired}\n")),
            "{text}"
        );
        assert!(text.contains("fire reset:1:2\n"), "{text}");
    }

    /// A `fire` line that is no number at all is a bad number, not a
    /// schedule of an older version.
    #[test]
    fn a_fire_line_of_letters_is_a_bad_number() {
        for line in ["x1", "+1", "zz"] {
            let error = Schedule::parse(&format!("name t\nseed 1\nfire {line}\n")).unwrap_err();
            assert!(error.contains("bad fault number"), "{line}: {error}");
            assert!(!error.contains("shrink the seed again"), "{line}: {error}");
        }
    }

    /// The shrinker against a model run: it fails (the same way) while
    /// decision 0 fires and parameter `clients` is at least 3. Decisions 1
    /// to 4 fire only while decision 8 does (a path that changed): once 8
    /// is gone they are dropped too, unasked, which saves runs.
    #[test]
    fn the_shrinker_keeps_what_the_failure_needs_and_counts_its_runs() {
        let draw = |index| socket_draw(FaultKind::PartialWrite, 0, index);
        let needed = draw(0);
        let fired_of = |schedule: &Schedule| -> Vec<FiredFault> {
            let on_path = schedule.fire.contains(&draw(8));
            schedule
                .fire
                .iter()
                .filter(|&&d| on_path || !(draw(1)..=draw(4)).contains(&d))
                .map(|&d| fired_fault(d, FaultKind::PartialWrite, 0))
                .collect()
        };
        let mut first = Schedule::new("t", 1, FaultPreset::Swarm);
        first.set_param("clients", "8".into());
        first.from_seed = true;
        let everything: BTreeSet<u64> = (0..16).map(draw).collect();
        let mut calls = 0;
        let run = |schedule: &Schedule| {
            calls += 1;
            // As `Schedule::configure` does: a schedule from the seed fires
            // what the seed draws, whatever its `fire` says.
            let fire = if schedule.from_seed {
                everything.clone()
            } else {
                schedule.fire.clone()
            };
            let effective = Schedule {
                fire,
                ..schedule.clone()
            };
            let clients: u64 = schedule.param("clients").unwrap().parse().unwrap();
            let fails = effective.fire.contains(&needed) && clients >= 3;
            Attempt {
                failure: fails.then(|| (FailureKind::Client, "wrong answer".to_string())),
                fired: fired_of(&effective),
            }
        };
        let attempt = Attempt {
            failure: Some((FailureKind::Client, "wrong answer".into())),
            fired: fired_of(&Schedule {
                fire: everything.clone(),
                ..first.clone()
            }),
        };
        let report = shrink_schedule(first, attempt, &["clients"], run).unwrap();
        assert_eq!(report.schedule.fire, BTreeSet::from([needed]));
        assert!(!report.schedule.from_seed);
        // Tried 1, 2, 4: the first that fails.
        assert_eq!(report.schedule.param("clients"), Some("4"));
        assert_eq!(report.faults_before, 16);
        assert_eq!(report.fired.len(), 1);
        // The first run (the sweep's) counts; every other was a call.
        assert_eq!(report.runs, calls + 1);
        // Pinned: delta debugging over 16 faults, then `clients` (1, 2,
        // 4) twice. Keeping a path's unfired faults would take 15.
        assert_eq!(report.runs, 13);
    }

    /// Delta debugging where the failure needs two faults far apart:
    /// neither half fails alone, so the chunks must grow (and shrink again after a
    /// removal) before it ends at exactly the two; with one needed in each
    /// quarter, they grow to eighths. The run counts are pinned: the
    /// arithmetic of the chunk count decides them.
    #[test]
    fn delta_debugging_narrows_to_two_faults_far_apart() {
        const RUNS_SPREAD: usize = 39;
        let draw = |index| socket_draw(FaultKind::Reset, 1, index);
        let needed = [draw(0), draw(11)];
        let fired = |fire: &BTreeSet<u64>| -> Vec<FiredFault> {
            fire.iter()
                .map(|&d| fired_fault(d, FaultKind::Reset, 1))
                .collect()
        };
        let everything: BTreeSet<u64> = (0..16).map(draw).collect();
        let shrink = |needed: &[u64]| {
            let run = |schedule: &Schedule| {
                let fails = needed.iter().all(|d| schedule.fire.contains(d));
                Attempt {
                    failure: fails.then(|| (FailureKind::Stall, "stall".to_string())),
                    fired: fired(&schedule.fire),
                }
            };
            let first = Schedule::new("t", 2, FaultPreset::Swarm);
            let attempt = Attempt {
                failure: Some((FailureKind::Stall, "stall".into())),
                fired: fired(&everything),
            };
            let report = shrink_schedule(first, attempt, &[], run).unwrap();
            let kept: Vec<u64> = report.schedule.fire.iter().copied().collect();
            assert_eq!(kept, needed);
            report.runs
        };
        assert_eq!(shrink(&needed), 22);
        // One in each quarter: the chunks grow to eighths before any goes.
        assert_eq!(shrink(&[draw(0), draw(5), draw(10), draw(15)]), RUNS_SPREAD);
    }
}
