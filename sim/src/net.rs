//! The world's former path: `crate::net::{World, HostId, FiredFault}` still resolve (see [`crate::world`]).

pub use crate::world::{FaultKind, FiredFault, HostId, World};
