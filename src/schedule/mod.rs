//! Scheduling: the daemon and systemd units (time spans: [`crate::timespan`]).
pub mod daemon;
pub mod notify;
pub mod systemd;
