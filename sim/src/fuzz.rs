//! The bodies of the cargo-fuzz targets, here so that a stable `cargo test`
//! replays every corpus file through the very same code.
//!
//! Each function panics on a finding: a checker violation, a wrong echo, or
//! a panic inside the code under test.

#[cfg(feature = "cli")]
use crate::cli;
use crate::model::{check_ops, ops_from_entropy};
use crate::scenario::{self, RunConfig, Scenario, Workload};
#[cfg(feature = "cli")]
use crate::{DatagramFaults, FaultPlan};
use crate::{Entropy, FaultPreset};

/// Operations on a loop, decoded from `data`, checked against the model
/// after every step.
pub fn handler_ops(data: &[u8]) {
    let mut entropy = Entropy::from_bytes(data);
    let count = (data.len() / 4).min(256);
    let ops = ops_from_entropy(&mut entropy, count);
    if let Err(why) = check_ops(&ops, None) {
        panic!("the handler map left the model: {why}\nops: {ops:?}");
    }
}

/// The echo scenario with every decision — fault plan included — taken
/// from `data`.
pub fn sim_schedule(data: &[u8]) {
    let config = RunConfig {
        scenario: Scenario::Echo,
        seed: 0,
        faults: FaultPreset::Swarm,
        workload: Workload::random(4, 4, 3000),
        trace_full: false,
        liveness_after: None,
    };
    let outcome = scenario::run_from_bytes(&config, data);
    if let Some(failure) = outcome.failure {
        panic!(
            "echo failed under a fuzzed schedule: {failure}\nplan: {}",
            outcome.plan
        );
    }
}

/// `data` as a `sim` command line (before the first NUL byte) and a raw
/// fault plan (after it). Bad input must give an error, never a panic or a
/// hang; runs are bounded to a few small seeds. (With the `cli` feature,
/// the default.)
#[cfg(feature = "cli")]
pub fn sim_args(data: &[u8]) {
    let (line, rest) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let line = String::from_utf8_lossy(line);
    if let Ok(mut parsed) = cli::parse(line.split_whitespace()) {
        if bound(&mut parsed) {
            cli::execute(&parsed, &mut std::io::sink());
        }
    }
    if !rest.is_empty() {
        // Any plan, however odd (zero window, inverted latency), must run
        // to a verdict.
        let mut entropy = Entropy::from_bytes(rest);
        let plan = raw_plan(&mut entropy);
        let config = RunConfig {
            scenario: Scenario::Echo,
            seed: 0,
            faults: FaultPreset::None,
            workload: Workload::random(2, 2, 512),
            trace_full: false,
            liveness_after: None,
        };
        let _ = scenario::run_with_plan(&config, entropy, plan);
    }
}

/// Keep a fuzzed command small: at most two seeds of a small workload.
/// Returns `false` for commands that touch files (`shrink` writes one,
/// `replay --schedule` reads one), which are parsed but not run.
#[cfg(feature = "cli")]
fn bound(parsed: &mut cli::Cli) -> bool {
    let common = match &mut parsed.command {
        cli::Command::Shrink { .. }
        | cli::Command::Replay {
            schedule: Some(_), ..
        } => return false,
        cli::Command::Run {
            common,
            seeds,
            jobs,
            ..
        } => {
            seeds.end = seeds.end.min(seeds.start.saturating_add(2));
            *jobs = 1;
            common
        }
        cli::Command::Replay { common, .. } => common,
        cli::Command::CheckDeterminism {
            common,
            seeds,
            in_process,
            ..
        } => {
            // Never spawn processes from a fuzz target.
            *in_process = true;
            seeds.end = seeds.end.min(seeds.start.saturating_add(1));
            common
        }
        cli::Command::List => return true,
    };
    common.clients = common.clients.min(4);
    common.messages = common.messages.min(4);
    common.message_bytes = common.message_bytes.min(4096);
    common.message_sizes.truncate(4);
    for size in &mut common.message_sizes {
        *size = (*size).min(4096);
    }
    true
}

/// A fault plan with every field drawn raw, out-of-range values included.
#[cfg(feature = "cli")]
fn raw_plan(entropy: &mut Entropy) -> FaultPlan {
    let mut ppm = || entropy.below(1_100_000) as u32;
    FaultPlan {
        partial_read: ppm(),
        partial_write: ppm(),
        interrupt: ppm(),
        spurious: ppm(),
        reset: ppm(),
        refuse_connect: ppm(),
        accept_emfile: ppm(),
        accept_aborted: ppm(),
        half_close: ppm(),
        shuffle: ppm(),
        latency_us_min: entropy.below(100_000),
        latency_us_max: entropy.below(100_000),
        window_bytes: entropy.below(1 << 20) as usize,
        // Drawn from no bytes, so that every corpus file means what it did.
        datagram: DatagramFaults::none(),
    }
}

/// A schedule file's text: it parses to a schedule and a scenario run, or
/// gives an error naming the line; never a panic, never an unbounded
/// allocation.
pub fn schedule_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(schedule) = crate::shrink::Schedule::parse(&text) {
        let written = schedule.to_text("replay", None, &[]);
        let reparsed = crate::shrink::Schedule::parse(&written);
        assert_eq!(
            reparsed.as_ref(),
            Ok(&schedule),
            "a schedule must round-trip: {written}"
        );
        let _ = RunConfig::from_schedule(&schedule);
    }
}

/// `IOStream` reads against a model: the bytes choose a sequence of
/// `read_until` / `read_bytes` / `read_until_close`, the data a client
/// sends (in chunks, then closes), and every decision of the simulated
/// network (partial reads and writes, `EINTR`, spurious events, shuffles,
/// latency; no fault that breaks connections). Each read's result must be
/// what the model says the stream owes it.
pub fn stream_reads(data: &[u8]) {
    stream_reads::check(Entropy::from_bytes(data));
}

/// `stream_reads` with every choice drawn from a seeded stream instead
/// of a fuzzer's bytes (for sweeps on stable).
pub fn stream_reads_seeded(seed: u64) {
    stream_reads::check(Entropy::seeded(seed));
}

mod stream_reads {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::rc::Rc;
    use std::time::Duration;

    use ioloop::{IOLoop, IOStream, StreamError, TcpClient, TcpServer};

    use crate::{Entropy, FaultPlan, Sim, SimPoller};

    #[derive(Clone, Debug)]
    pub(super) enum Read {
        Until(Vec<u8>, usize),
        Bytes(usize, bool),
        UntilClose,
    }

    type Results = Rc<RefCell<Vec<Result<Vec<u8>, StreamError>>>>;

    pub(super) fn check(mut entropy: Entropy) {
        let reads = draw_reads(&mut entropy);
        let sent = draw_data(&mut entropy);
        let chunks = draw_chunks(&mut entropy, &sent);
        let mut plan = FaultPlan::swarm(&mut entropy);
        plan.reset = 0;
        plan.refuse_connect = 0;
        plan.accept_emfile = 0;
        plan.accept_aborted = 0;
        plan.half_close = 0;
        let results: Results = Rc::new(RefCell::new(Vec::new()));
        let mut sim = Sim::builder(0).entropy(entropy).plan(plan.clone()).build();
        let addr: SocketAddr = "10.0.0.1:7".parse().expect("address");
        let (for_server, for_reads) = (Rc::clone(&results), reads.clone());
        sim.host("server", "10.0.0.1", move |io| {
            let (results, reads) = (Rc::clone(&for_server), for_reads.clone());
            TcpServer::bind(
                io,
                addr,
                move |io, stream: &mut IOStream<SimPoller, usize>| {
                    next_read(io, stream, Rc::new(reads.clone()), Rc::clone(&results));
                },
            )?;
            Ok(())
        });
        sim.client("client", "10.0.0.2", move |io, done| {
            let chunks: VecDeque<Vec<u8>> = chunks.clone().into();
            TcpClient::connect(
                io,
                addr,
                Duration::from_secs(60),
                (),
                move |io, stream, connected| match connected {
                    Ok(()) => send(io, stream, chunks, done),
                    Err(_) => done.ok(),
                },
            );
            Ok(())
        });
        if let Err(failure) = sim.run() {
            panic!("the run failed: {failure}\nplan: {plan}\nreads: {reads:?}");
        }
        let results = results.borrow();
        if let Err(why) = model_accepts(&reads, &sent, &results) {
            panic!(
                "{why}\nreads: {reads:?}\nsent: {:?}\nresults: {results:?}",
                String::from_utf8_lossy(&sent)
            );
        }
    }

    fn draw_reads(entropy: &mut Entropy) -> Vec<Read> {
        let count = entropy.between(1, 8) as usize;
        (0..count)
            .map(|_| match entropy.below(4) {
                0 => Read::Until(b"\n".to_vec(), entropy.between(1, 200) as usize),
                1 => Read::Until(b"\r\n".to_vec(), entropy.between(1, 200) as usize),
                2 => Read::Bytes(entropy.between(0, 150) as usize, entropy.chance(500_000)),
                _ => Read::UntilClose,
            })
            .collect()
    }

    fn draw_data(entropy: &mut Entropy) -> Vec<u8> {
        let len = entropy.below(600) as usize;
        (0..len)
            .map(|_| b"ab\r\n"[entropy.below(4) as usize])
            .collect()
    }

    fn draw_chunks(entropy: &mut Entropy, sent: &[u8]) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < sent.len() {
            let size = (entropy.between(1, 64) as usize).min(sent.len() - at);
            chunks.push(sent[at..at + size].to_vec());
            at += size;
        }
        chunks
    }

    /// Perform read `index` of `reads`, record its result, go on.
    fn next_read(
        io: &mut IOLoop<SimPoller>,
        stream: &mut IOStream<SimPoller, usize>,
        reads: Rc<Vec<Read>>,
        results: Results,
    ) {
        let index = *stream.state();
        let Some(read) = reads.get(index).cloned() else {
            return stream.close(io);
        };
        *stream.state_mut() += 1;
        let on_result = move |io: &mut IOLoop<SimPoller>,
                              stream: &mut IOStream<SimPoller, usize>,
                              result: Result<Vec<u8>, StreamError>| {
            let ok = result.is_ok();
            results.borrow_mut().push(result);
            if ok {
                next_read(io, stream, reads, results);
            }
        };
        let started = match read {
            Read::Until(delimiter, max) => stream.read_until(io, &delimiter, max, on_result),
            Read::Bytes(count, partial) => stream.read_bytes(io, count, partial, on_result),
            Read::UntilClose => stream.read_until_close(io, on_result),
        };
        assert_eq!(
            started,
            Ok(()),
            "a read on an open stream with none pending starts"
        );
    }

    fn send(
        io: &mut IOLoop<SimPoller>,
        stream: &mut IOStream<SimPoller>,
        mut chunks: VecDeque<Vec<u8>>,
        done: crate::Done,
    ) {
        let Some(chunk) = chunks.pop_front() else {
            stream.close(io);
            return done.ok();
        };
        let written = stream.write_then(io, &chunk, move |io, stream, flushed| match flushed {
            Ok(()) => send(io, stream, chunks, done),
            Err(_) => done.ok(), // the server closed first: its reads are checked
        });
        if written.is_err() {
            // Closed already; `done` went with the callback.
        }
    }

    /// Whether `results` are what a correct stream gives for `reads` over
    /// `sent` (the data arrives in unknown pieces, so a partial
    /// `read_bytes` may take any non-empty prefix).
    pub(super) fn model_accepts(
        reads: &[Read],
        sent: &[u8],
        results: &[Result<Vec<u8>, StreamError>],
    ) -> Result<(), String> {
        let mut at = 0;
        for (index, read) in reads.iter().enumerate() {
            let rest = &sent[at..];
            let closed_with_rest = Err(StreamError::Closed {
                unread: rest.to_vec(),
            });
            let got = results.get(index);
            let expected = match read {
                Read::Until(delimiter, max) => {
                    match rest
                        .windows(delimiter.len())
                        .position(|w| w == &delimiter[..])
                    {
                        Some(found) if found + delimiter.len() <= *max => {
                            Ok(rest[..found + delimiter.len()].to_vec())
                        }
                        Some(_) => Err(StreamError::Unsatisfiable { max_bytes: *max }),
                        None if rest.len() >= *max => {
                            Err(StreamError::Unsatisfiable { max_bytes: *max })
                        }
                        None => closed_with_rest,
                    }
                }
                Read::Bytes(count, false) if rest.len() >= *count => Ok(rest[..*count].to_vec()),
                Read::Bytes(_, false) => closed_with_rest,
                Read::Bytes(count, true) => match got {
                    Some(Ok(data)) if *count == 0 && data.is_empty() => Ok(Vec::new()),
                    Some(Ok(data))
                        if !data.is_empty() && data.len() <= *count && rest.starts_with(data) =>
                    {
                        Ok(data.clone())
                    }
                    _ if rest.is_empty() && *count > 0 => closed_with_rest,
                    _ if *count == 0 => Ok(Vec::new()),
                    _ => {
                        return Err(format!(
                            "read {index} ({read:?}): not a non-empty prefix of the rest: {got:?}"
                        ))
                    }
                },
                Read::UntilClose => Ok(rest.to_vec()),
            };
            if got != Some(&expected) {
                return Err(format!(
                    "read {index} ({read:?}): got {got:?}, expected {expected:?}"
                ));
            }
            match expected {
                Ok(data) => at += data.len(),
                Err(_) => {
                    if results.len() != index + 1 {
                        return Err(format!("results after a failed read {index}: {results:?}"));
                    }
                    return Ok(());
                }
            }
        }
        if results.len() != reads.len() {
            return Err(format!(
                "{} results for {} reads",
                results.len(),
                reads.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::stream_reads::{model_accepts, Read};
    use ioloop::StreamError;

    fn ok(data: &[u8]) -> Result<Vec<u8>, StreamError> {
        Ok(data.to_vec())
    }

    #[test]
    fn the_stream_model_accepts_right_results_and_catches_wrong_ones() {
        let sent = b"ab\ncd\r\nef";
        let reads = [
            Read::Until(b"\n".to_vec(), 10),
            Read::Bytes(2, true),
            Read::UntilClose,
        ];
        assert_eq!(
            model_accepts(&reads, sent, &[ok(b"ab\n"), ok(b"c"), ok(b"d\r\nef")]),
            Ok(())
        );
        assert_eq!(
            model_accepts(&reads, sent, &[ok(b"ab\n"), ok(b"cd"), ok(b"\r\nef")]),
            Ok(())
        );
        // Wrong: the delimiter dropped; a partial read that is no prefix;
        // bytes lost; a read missing; a closed stream still reading.
        assert!(model_accepts(&reads, sent, &[ok(b"ab"), ok(b"c"), ok(b"d\r\nef")]).is_err());
        assert!(model_accepts(&reads, sent, &[ok(b"ab\n"), ok(b"x"), ok(b"d\r\nef")]).is_err());
        assert!(model_accepts(&reads, sent, &[ok(b"ab\n"), ok(b"c"), ok(b"ef")]).is_err());
        assert!(model_accepts(&reads, sent, &[ok(b"ab\n"), ok(b"c")]).is_err());
        let too_long = [Read::Until(b"\n".to_vec(), 2), Read::UntilClose];
        let unsatisfiable = Err(StreamError::Unsatisfiable { max_bytes: 2 });
        assert_eq!(
            model_accepts(&too_long, sent, std::slice::from_ref(&unsatisfiable)),
            Ok(())
        );
        assert!(model_accepts(&too_long, sent, &[unsatisfiable, ok(b"")]).is_err());
        let at_eof = [Read::Bytes(20, false)];
        let closed = Err(StreamError::Closed {
            unread: sent.to_vec(),
        });
        assert_eq!(model_accepts(&at_eof, sent, &[closed]), Ok(()));
        assert!(model_accepts(&at_eof, sent, &[ok(sent)]).is_err());
    }
}
