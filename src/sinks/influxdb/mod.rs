//! The InfluxDB output: [`writer`] (`POST /write`, or `/api/v2/write`),
//! its [`auth`] (checked when the writer is built), the [`output`] (the
//! writer with its durable spool and the delivery loop that replays it,
//! opened once and used by `run`, `spool flush` and the daemon alike) and
//! its [`self_metrics`] (the measurements an output writes about itself).
//!
//! InfluxDB 1.x speaks v1; InfluxDB 2 and 3 and VictoriaMetrics take v2.

pub mod auth;
pub mod output;
pub mod self_metrics;
pub mod writer;

pub use self_metrics::{SPOOL_MEASUREMENT, WRITE_MEASUREMENT};
pub use writer::*;
