//! Scheduling: systemd time spans (and, later, the daemon and unit files).
pub mod timespan;
