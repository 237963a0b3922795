//! ubuntu-metrics: collectors of Ubuntu release-team KPIs, written to
//! InfluxDB 1.x.
//!
//! The flow is one-way: sources -> collector -> runner -> sink. See
//! `ARCHITECTURE` in the README for where each part lives.

// No product function over 100 lines (clippy.toml sets the limit); the
// inline tests are exempt.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod cli;
pub mod collector;
pub mod collectors;
pub mod config;
pub mod custom;
pub mod model;
pub mod ops;
pub mod runner;
pub mod schedule;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod support;

pub use collector::{Collector, CollectorError, Context};
pub use model::point::{FieldValue, Point};
