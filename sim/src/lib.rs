//! # ioloop-sim
//!
//! A seeded, simulated network for [`ioloop`]: test **your** service —
//! written once against `IOLoop<P: Poller>` — under partial reads and
//! writes, resets, `EINTR`, spurious events, accept failures, latency, and
//! lost, duplicated, reordered and delayed UDP datagrams ([`DatagramFaults`]),
//! on virtual time, and replay any failure from its seed.
//!
//! - [`Sim`]: hosts running your service, clients that report through
//!   [`Done`], a scheduler that owns the clock, and checkers on every step
//!   (handler map, dispatch, stall, spin, leaks, your invariants). Beyond
//!   socket faults, the network between hosts: partitions, clogs, pauses,
//!   crashes and restarts, scripted or drawn by the seed as far as the
//!   simulation declares its service [`Survives`] them.
//! - [`Sweep`]: many seeds inside `cargo test` (each until its clients are
//!   done, or for a fixed virtual time: [`Sweep::run_for`]; on several
//!   threads: [`Sweep::run_parallel`]); the first failure prints the
//!   one line that replays it (`IOLOOP_SIM_SEED=0x1f cargo test ...`), and
//!   `IOLOOP_SIM_*` variables add traces, determinism checks, shrinking to
//!   a schedule file, shards and JSON summaries.
//! - [`SimPoller`]: the [`Poller`](ioloop::Poller) of one simulated host;
//!   inside a handler, `io.poller().consume(d)` spends simulated CPU time.
//!
//! ```
//! use ioloop::Events;
//! use ioloop_sim::{FaultPreset, Sweep};
//!
//! // A service that greets and hangs up, and a client that expects that.
//! Sweep::new("greeter").seeds(0..20).faults(FaultPreset::None).run(|sim| {
//!     sim.host("server", "10.0.0.1", |io| {
//!         let listener = io.listen("10.0.0.1:7".parse()?)?;
//!         io.add_handler(listener, |io, fd, _| {
//!             while let Ok((conn, _)) = io.accept(fd) {
//!                 let _ = io.write(conn, b"hi");
//!                 let _ = io.close_fd(conn);
//!             }
//!         }, Events::READ)?;
//!         Ok(())
//!     });
//!     sim.client("client", "10.0.0.2", |io, done| {
//!         let conn = io.connect("10.0.0.1:7".parse()?)?;
//!         let mut got = Vec::new();
//!         io.add_handler(conn, move |io, fd, _| {
//!             let mut buf = [0u8; 8];
//!             match io.read(fd, &mut buf) {
//!                 Ok(0) => {
//!                     let _ = io.close_fd(fd);
//!                     done.finish(if got == b"hi" { Ok(()) } else { Err(format!("{got:?}")) });
//!                 }
//!                 Ok(n) => got.extend_from_slice(&buf[..n]),
//!                 Err(_) => {}
//!             }
//!         }, Events::READ)?;
//!         Ok(())
//!     });
//! });
//! ```
//!
//! Below the harness: [`SimNet`] (the shared world, for a loop stepped by
//! hand), [`FaultPlan`] and [`FaultPreset`], [`Entropy`] (the one source of
//! decisions), [`Trace`], and [`shrink`] (schedule files). The `sim`
//! command's scenarios, its command line, the fuzz targets' bodies and the
//! handler-map model are in modules hidden from these docs.
#![deny(missing_docs)]

#[doc(hidden)]
pub mod check;
#[doc(hidden)]
#[cfg(feature = "cli")]
pub mod cli;
mod coverage;
#[doc(hidden)]
pub mod determinism;
mod entropy;
mod faults;
#[doc(hidden)]
pub mod fuzz;
#[doc(hidden)]
pub mod model;
mod nemesis;
#[doc(hidden)]
pub mod net;
mod parallel;
mod poller;
#[doc(hidden)]
pub mod scenario;
pub mod shrink;
mod sim;
mod sweep;
mod trace;
pub mod world;

pub use coverage::{CoverageRow, FaultCoverage};
pub use entropy::Entropy;
pub use faults::{DatagramFaults, FaultPlan, FaultPreset, Ppm};
pub use nemesis::{NetworkFaults, Survives};
pub use poller::{SimNet, SimPoller};
pub use sim::{
    AtRest, BoxError, Builder, Done, Failure, FailureKind, HostState, LinkState, Report, Sim,
    ROUNDS_MAX, SETTLE_WITHIN, TIME_LIMIT,
};
pub use sweep::{ProbeCount, Sweep, SweepError, SweepFailure, SweepSummary};
pub use trace::Trace;
pub use world::FaultKind;
pub use world::{wall_clock_start, CrashMode, DatagramStats, WALL_CLOCK_START_UNIX_S};
