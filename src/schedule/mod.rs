//! Scheduling: the daemon and systemd units (time spans: [`crate::model::timespan`]).
pub mod daemon;
pub mod notify;
pub mod systemd;
