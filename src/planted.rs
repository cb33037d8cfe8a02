//! Deliberate bugs a test can plant in a loop, to show its checks catch them (feature `planted-bugs`).
//!
//! Never enabled in a normal build: only the workspace's tests turn the
//! feature on (a dev-dependency of `ioloop-sim`), and even then a loop is
//! correct until [`IOLoop::plant_bug`](crate::IOLoop::plant_bug) is called.

/// A bug [`IOLoop::plant_bug`](crate::IOLoop::plant_bug) plants in one loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PlantedBug {
    /// `remove_handler` (and so `close_fd`) called between iterations keeps
    /// the handler.
    RemoveIsNoop,
    /// A duplicate `add_handler` replaces the handler instead of failing.
    DuplicateAddReplaces,
    /// `update_handler` records the new interest but only ever widens what
    /// the handler is called with: an event of the old interest still
    /// reaches it after the update took it away.
    UpdateNeverNarrows,
    /// After a handler's call, it goes back into its fd number's cell even
    /// if it was removed meanwhile and the number registered again: the
    /// old handler then runs for the new registration.
    PutBackByFd,
}
