//! # ioloop-sim
//!
//! A seeded, simulated network for [`ioloop`]: the second backend of the
//! [`Poller`](ioloop::Poller) trait. Run a service written against
//! `IOLoop<P>` on [`SimPoller`]s sharing one [`SimNet`], and every decision —
//! latency, partial reads and writes, resets, `EINTR`, spurious events,
//! accept failures — comes from one seed. The same seed replays the same
//! run, bit for bit; the run's [`Trace`] hash proves it.
#![deny(missing_docs)]

pub mod check;
pub mod cli;
pub mod determinism;
mod entropy;
mod faults;
pub mod fuzz;
pub mod model;
pub mod net;
mod poller;
pub mod scenario;
pub mod shrink;
mod trace;
pub mod world;

pub use entropy::Entropy;
pub use faults::{FaultPlan, FaultPreset, Ppm};
pub use poller::{SimNet, SimPoller};
pub use trace::Trace;
pub use world::FaultKind;
