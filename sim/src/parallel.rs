//! Seeds on N threads, their outcomes handed over in seed order: what `sim run --jobs` and `Sweep::jobs` share.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Condvar, Mutex, PoisonError};

/// The most threads a run of seeds may ask for.
pub(crate) const JOBS_MAX: usize = 256;

/// How many seeds run at most ahead of the one awaited, per thread.
const AHEAD_PER_JOB: u64 = 4;

/// What a seed whose run panicked leaves: the panic's payload.
pub(crate) type Panic = Box<dyn Any + Send>;

/// The threads `jobs` asks for: `0` is one per CPU.
pub(crate) fn threads(jobs: usize) -> usize {
    match jobs {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        jobs => jobs,
    }
}

/// Run `one` for every seed of `seeds` on `jobs` threads, and hand each
/// outcome to `take` in seed order, until `take` says stop (`false`). A
/// seed whose run panics is handed over as `Err` with the panic's payload.
/// With more than one job, seeds run ahead of the one `take` waits for, at
/// most `4 × jobs` of them (so at most that many outcomes wait); once it
/// says stop, no seed after the one it stopped at starts, and what already
/// ran past it is dropped: `take` sees exactly the seeds, in exactly the
/// order, that one thread would have given it. One job (or one seed) runs
/// on the calling thread.
pub(crate) fn for_each_outcome<T: Send>(
    seeds: Range<u64>,
    jobs: usize,
    one: impl Fn(u64) -> T + Sync,
    take: &mut dyn FnMut(u64, Result<T, Panic>) -> bool,
) {
    let run = |seed: u64| panic::catch_unwind(AssertUnwindSafe(|| one(seed)));
    // No more threads than seeds.
    let count = seeds.end.saturating_sub(seeds.start);
    let jobs = usize::try_from(count).map_or(jobs, |count| jobs.min(count));
    if jobs <= 1 {
        for seed in seeds {
            if !take(seed, run(seed)) {
                return;
            }
        }
        return;
    }
    /// The seeds handed out, the one `take` waits for, and whether to stop.
    struct Queue {
        next: u64,
        want: u64,
        stop: bool,
    }
    let ahead_max = AHEAD_PER_JOB * jobs as u64;
    let queue = Mutex::new(Queue {
        next: seeds.start,
        want: seeds.start,
        stop: false,
    });
    let lock = || queue.lock().unwrap_or_else(PoisonError::into_inner);
    let turn = Condvar::new();
    let (results, received) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let results = results.clone();
            let (lock, turn, run, end) = (&lock, &turn, &run, seeds.end);
            scope.spawn(move || loop {
                let seed = {
                    let mut queue = lock();
                    loop {
                        if queue.stop || queue.next >= end {
                            return;
                        }
                        if queue.next - queue.want < ahead_max {
                            break;
                        }
                        queue = turn.wait(queue).unwrap_or_else(PoisonError::into_inner);
                    }
                    queue.next += 1;
                    queue.next - 1
                };
                if results.send((seed, run(seed))).is_err() {
                    return;
                }
            });
        }
        drop(results);
        // However taking ends — done, told to stop, or `take` panicking —
        // the threads must stop, or the scope would wait for them forever.
        let taken = panic::catch_unwind(AssertUnwindSafe(|| {
            // Outcomes that came before their turn, by seed.
            let mut early = BTreeMap::new();
            let mut want = seeds.start;
            for (seed, outcome) in received.iter() {
                early.insert(seed, outcome);
                while let Some(outcome) = early.remove(&want) {
                    let go_on = take(want, outcome);
                    want += 1;
                    lock().want = want;
                    turn.notify_all();
                    if !go_on {
                        return;
                    }
                }
            }
        }));
        lock().stop = true;
        turn.notify_all();
        if let Err(payload) = taken {
            panic::resume_unwind(payload);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::panic_message;

    /// Every outcome `take` sees, for `jobs` threads, stopping after
    /// `stop_at` if given.
    fn taken(
        seeds: Range<u64>,
        jobs: usize,
        stop_at: Option<u64>,
    ) -> Vec<(u64, Result<u64, String>)> {
        let mut seen = Vec::new();
        let mut take = |seed: u64, outcome: Result<u64, Panic>| {
            seen.push((seed, outcome.map_err(|payload| panic_message(&*payload))));
            Some(seed) != stop_at
        };
        let one = |seed: u64| {
            assert_ne!(seed, 13, "seed thirteen");
            seed * 2
        };
        for_each_outcome(seeds, jobs, one, &mut take);
        seen
    }

    #[test]
    fn outcomes_come_in_seed_order_whatever_the_jobs() {
        let serial = taken(0..200, 1, None);
        assert_eq!(serial.len(), 200);
        assert_eq!(serial[7], (7, Ok(14)));
        for jobs in [2, 3, 8] {
            assert_eq!(taken(0..200, jobs, None), serial, "{jobs} jobs");
        }
    }

    #[test]
    fn a_stop_ends_at_exactly_that_seed() {
        for jobs in [1, 3] {
            let seen = taken(0..200, jobs, Some(9));
            let seeds: Vec<u64> = seen.iter().map(|(seed, _)| *seed).collect();
            assert_eq!(seeds, (0..=9).collect::<Vec<u64>>(), "{jobs} jobs");
        }
    }

    #[test]
    fn a_panicking_seed_is_handed_over_with_its_message() {
        for jobs in [1, 4] {
            let seen = taken(10..20, jobs, Some(13));
            let last = seen.last().unwrap();
            assert_eq!(last.0, 13);
            let message = last.1.as_ref().unwrap_err();
            assert!(message.contains("seed thirteen"), "{message}");
        }
    }

    #[test]
    fn a_panicking_take_stops_the_threads_and_propagates() {
        let mut take = |seed: u64, _: Result<u64, Panic>| {
            assert_ne!(seed, 5, "take refuses seed five");
            true
        };
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            for_each_outcome(0..10_000, 3, |seed| seed, &mut take);
        }));
        let payload = ran.expect_err("the panic of take propagates");
        let message = panic_message(&*payload);
        assert!(message.contains("take refuses seed five"), "{message}");
    }

    #[test]
    fn the_last_seeds_of_u64_run_without_overflow() {
        let seen = taken(u64::MAX - 3..u64::MAX, 4, None);
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn seeds_run_at_most_four_per_job_ahead_of_the_one_awaited() {
        let jobs = 3;
        // The highest seed started so far, and a signal when it grows.
        let started = (Mutex::new(0u64), Condvar::new());
        let started_max = || *started.0.lock().unwrap();
        let one = |seed: u64| {
            {
                let mut max = started.0.lock().unwrap();
                *max = (*max).max(seed);
                started.1.notify_all();
            }
            if seed == 0 {
                // Hold seed 0 until the others ran as far ahead as they
                // may (a minute at most; no sleep, no count of spins).
                let guard = started.0.lock().unwrap();
                let ahead = 4 * jobs as u64 - 1;
                let (guard, _) = started
                    .1
                    .wait_timeout_while(guard, std::time::Duration::from_secs(60), |max| {
                        *max < ahead
                    })
                    .unwrap();
                assert!(*guard >= ahead, "the other threads never ran ahead");
            }
            seed
        };
        let mut worst = 0;
        let mut take = |seed: u64, _: Result<u64, Panic>| {
            worst = worst.max(started_max() - seed);
            true
        };
        for_each_outcome(0..500, jobs, one, &mut take);
        assert_eq!(worst, 4 * jobs as u64 - 1, "seeds ran {worst} ahead");
    }
}
