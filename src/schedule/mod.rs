//! Scheduling: systemd time spans, the daemon, and systemd units.
pub mod daemon;
pub mod systemd;
/// Time spans live at the crate's root (a leaf module: `sources` reads
/// them for `[http]` too); re-exported here where they were.
pub use crate::timespan;
