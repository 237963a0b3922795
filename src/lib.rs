//! ubuntu-metrics: collectors of Ubuntu release-team KPIs, written to
//! InfluxDB 1.x.
//!
//! The flow is one-way: sources -> collector -> runner -> sink. See
//! `ARCHITECTURE` in the README for where each part lives.

pub mod backfill;
pub mod catch_up;
pub mod cli;
pub mod collector;
pub mod collectors;
pub mod config;
pub mod custom;
pub mod dashboards;
pub mod fsutil;
pub mod health;
pub mod logging;
pub mod panel;
pub mod point;
#[cfg(test)]
pub(crate) mod proptest_support;
pub mod provision;
pub mod redact;
pub mod runner;
pub mod schedule;
pub mod schema;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod systemd_view;
#[cfg(test)]
pub(crate) mod test_support;
pub mod timespan;
pub mod tls;

pub use collector::{Collector, CollectorError, Context};
pub use point::{FieldValue, Point};
