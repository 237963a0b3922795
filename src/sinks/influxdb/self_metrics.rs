//! What an InfluxDB output writes about itself: one point per write
//! request ([`WRITE_MEASUREMENT`]) and one per delivery that emptied its
//! spool ([`SPOOL_MEASUREMENT`]). They are about writes that already
//! happened, so they go in a write of their own, directly, never into the
//! spool (where `spool status` would count them).

use super::writer::{InfluxWriter, WriteError};
use crate::model::point::Point;
use crate::model::schema::{Measurement, float, int, tag};
use crate::sinks::spool::{Spool, Status};
use std::sync::Arc;

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
pub const WRITE_SCHEMA: Measurement = Measurement::new(
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
);

/// [`SPOOL_MEASUREMENT`], declared like a collector's schema.
pub const SPOOL_SCHEMA: Measurement = Measurement::new(
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
);

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

/// Writes the self-metrics of the writes made since the last call
/// ([`WRITE_MEASUREMENT`]) and of the spool ([`SPOOL_MEASUREMENT`]: the
/// `backlog` the delivery found, `None` when nothing waited before it).
/// Call it after a delivery that left the spool empty. When that write
/// fails, the writes' records go back to the writer, for the next call (a
/// daemon's) or for nobody (a process about to end). `now` is the run's
/// clock: the time of the spool's point; the writes' wall-clock times are
/// shifted to it.
pub async fn write(
    writer: &InfluxWriter,
    spool: Option<&Arc<Spool>>,
    backlog: Option<&Status>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), WriteError> {
    let (stats, dropped) = writer.take_write_log();
    // The writes happened on the wall clock; a run on another clock
    // (`run --now`) shifts them with the rest of its points.
    let shift = now - chrono::Utc::now();
    let mut points: Vec<Point> = stats
        .iter()
        .map(|s| {
            let mut p = s.point();
            p.timestamp = Some(s.time + shift);
            p
        })
        .collect();
    if let Some(spool) = spool {
        match super::output::blocking(spool, Spool::status).await {
            Ok(after) => {
                let b = backlog.unwrap_or(&after);
                points.push(spool_point(writer.name(), b, &after, now, dropped));
            }
            Err(e) => tracing::debug!("no spool self-metrics: {e}"),
        }
    }
    if points.is_empty() {
        return Ok(());
    }
    let (lines, errors) = crate::model::point::encode_lines(&points);
    for e in errors {
        tracing::error!("self-metrics point not written: {e}");
    }
    match writer.write_lines(&lines).await {
        Ok(_) => Ok(()),
        Err((_, e)) => {
            tracing::debug!("the writes' self-metrics are not written: {e}");
            writer.return_write_log(stats, dropped);
            Err(e)
        }
    }
}
