//! What an InfluxDB output writes about itself: one point per write
//! request ([`WRITE_MEASUREMENT`], from the writer's [`WriteStat`]s) and one
//! per delivery that emptied its spool ([`SPOOL_MEASUREMENT`]). They are
//! about writes that already happened, so the output writes them in a
//! write of their own, directly, never into the spool (where `spool
//! status` would count them).

use crate::model::point::Point;
use crate::model::schema::{Measurement, float, int, tag};
use crate::sinks::spool::Status;
use std::time::Duration;

/// The self-metrics of writes: one point per request to InfluxDB's write
/// endpoint (tag `outcome`; fields `latency_seconds`, `points`, `bytes`).
pub const WRITE_MEASUREMENT: &str = "ubuntu_metrics_write";

/// The self-metrics of the spool: one point per delivery that emptied
/// it (tag `output`; fields `points`, `records`, `bytes`: the backlog the
/// delivery found waiting, `oldest_age_seconds`: how long its oldest
/// record had waited (0 when none), `dead_letter_batches` in the
/// dead-letter file after it, `writes_not_reported`: writes whose own
/// self-metrics were let go while InfluxDB was away).
pub const SPOOL_MEASUREMENT: &str = "ubuntu_metrics_spool";

/// [`WRITE_MEASUREMENT`], declared like a collector's schema.
pub fn write_schema() -> Measurement {
    Measurement::new(
        WRITE_MEASUREMENT,
        &[
            tag(
                "output",
                "the output: `influxdb`, or the NAME of `[outputs.NAME]`",
            ),
            tag(
                "outcome",
                "`ok`, or the kind of failure: `connect`, `timeout`, `server_error`, `auth`, `bad_request`, ...",
            ),
        ],
        &[
            float(
                "latency_seconds",
                "from sending the request to InfluxDB's answer",
            ),
            int("points", "lines in the request"),
            int("bytes", "size of the request before compression"),
        ],
    )
}

/// [`SPOOL_MEASUREMENT`], declared like a collector's schema.
pub fn spool_schema() -> Measurement {
    Measurement::new(
        SPOOL_MEASUREMENT,
        &[tag("output", "the output whose spool it is")],
        &[
            int(
                "points",
                "points the delivery found waiting in the spool (the backlog it wrote)",
            ),
            int("records", "records (batches) of that backlog"),
            int("bytes", "size of that backlog's segments"),
            float(
                "oldest_age_seconds",
                "how long the backlog's oldest record had waited (0 when none)",
            ),
            int(
                "dead_letter_batches",
                "batches in the dead-letter file after the delivery",
            ),
            int(
                "writes_not_reported",
                "writes whose own self-metrics were let go while InfluxDB was away",
            ),
        ],
    )
}

/// The [`SPOOL_MEASUREMENT`] point at `now`: the `backlog` a delivery
/// found, the dead letters `after` it.
pub fn spool_point(
    output: &str,
    backlog: &Status,
    after: &Status,
    now: chrono::DateTime<chrono::Utc>,
    writes_not_reported: u64,
) -> Point {
    let age = backlog
        .oldest
        .map_or(0.0, |o| (now - o).num_milliseconds().max(0) as f64 / 1000.0);
    Point::new(SPOOL_MEASUREMENT)
        .tag("output", output)
        .field("points", backlog.points)
        .field("records", backlog.records)
        .field("bytes", backlog.bytes)
        .field("oldest_age_seconds", age)
        .field("dead_letter_batches", after.dead_letter_entries)
        .field("writes_not_reported", writes_not_reported)
        .at(now)
}

/// One request to InfluxDB's write endpoint, for the self-metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteStat {
    /// When the request was sent.
    pub time: chrono::DateTime<chrono::Utc>,
    pub latency: Duration,
    /// Lines (points) in the request, and its size before compression.
    pub points: usize,
    pub bytes: usize,
    /// `ok`, or the kind of failure (`WriteError::kind`).
    pub outcome: &'static str,
    /// The output written to.
    pub output: String,
}

impl WriteStat {
    /// Its [`WRITE_MEASUREMENT`] point.
    pub fn point(&self) -> Point {
        Point::new(WRITE_MEASUREMENT)
            .tag("output", self.output.as_str())
            .tag("outcome", self.outcome)
            .field("latency_seconds", self.latency.as_secs_f64())
            .field("points", self.points)
            .field("bytes", self.bytes)
            .at(self.time)
    }
}
