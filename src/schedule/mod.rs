//! Scheduling: systemd time spans, the daemon, and systemd units.
pub mod daemon;
pub mod systemd;
pub mod timespan;
