//! One run of one or more collectors: each gets its own context (options,
//! request counter), they run concurrently, a failure stays with its
//! collector, and every point leaves with an explicit timestamp.

use crate::collector::{Collector, Context};
use crate::config::Config;
use crate::point::Point;
use crate::sources::http::Http;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The measurement of the self-metrics: one point per collector run. Named
/// after the program so that it cannot clash with an Ubuntu measurement.
pub const SELF_MEASUREMENT: &str = "ubuntu_metrics_run";

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
    Timeout,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
        }
    }
}

/// What one collector's run produced.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub status: Status,
    /// The collection time of the run (the points' default timestamp).
    pub time: DateTime<Utc>,
    pub points: Vec<Point>,
    /// The collector's error message, when it failed.
    pub error: Option<String>,
    pub duration: Duration,
    pub requests: u64,
}

/// The base context of a run, from the configuration.
pub fn context(config: &Config, now: DateTime<Utc>) -> Result<Context, String> {
    let http = Http::new(
        config.http.connect_timeout.as_duration(),
        config.http.timeout.as_duration(),
    )?;
    Ok(Context::new(http, Arc::new(config.sources.clone()), now))
}

impl Outcome {
    /// The self-metrics point of this run: tags `collector`, `status`;
    /// fields `duration_seconds` (float), `points` (int: points written with
    /// it), `requests` (int: upstream requests), `spool_dropped` (int:
    /// points the spool dropped at its size limit since the last report)
    /// and `error` (string, when the run failed or timed out).
    pub fn self_point(&self, spool_dropped: u64) -> Point {
        Point::new(SELF_MEASUREMENT)
            .tag("collector", self.name)
            .tag("status", self.status.as_str())
            .field("duration_seconds", self.duration.as_secs_f64())
            .field("points", self.points.len())
            .field("requests", self.requests)
            .field("spool_dropped", spool_dropped)
            .at(self.time)
            .with_error(self.error.as_deref())
    }
}

trait WithError {
    fn with_error(self, e: Option<&str>) -> Self;
}

impl WithError for Point {
    fn with_error(self, e: Option<&str>) -> Self {
        match e {
            Some(e) => self.field("error", e),
            None => self,
        }
    }
}

/// Runs one collector once, abandoning it after `timeout` (its future is
/// dropped: requests are cancelled, child processes killed).
pub async fn collect_one(
    c: &dyn Collector,
    base: &Context,
    config: &Config,
    timeout: Option<Duration>,
) -> Outcome {
    let ctx = base.for_collector(config.collector(c.name()).options);
    let started = Instant::now();
    let span = tracing::info_span!("collector", name = c.name());
    let fut = c.collect(&ctx).instrument(span);
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.ok(),
        None => Some(fut.await),
    };
    let duration = started.elapsed();
    let requests = ctx.http.requests();
    let Some(result) = result else {
        let msg = format!(
            "timed out after {:.1} s (run timeout; the run was abandoned)",
            duration.as_secs_f64()
        );
        tracing::error!(collector = c.name(), "{msg}");
        return Outcome {
            name: c.name(),
            status: Status::Timeout,
            time: ctx.now,
            points: Vec::new(),
            error: Some(msg),
            duration,
            requests,
        };
    };
    match result {
        Ok(mut points) => {
            for p in &mut points {
                if p.timestamp.is_none() {
                    p.timestamp = Some(ctx.now);
                }
            }
            tracing::info!(
                collector = c.name(),
                points = points.len(),
                requests,
                duration_ms = duration.as_millis() as u64,
                "collected"
            );
            Outcome {
                name: c.name(),
                status: Status::Ok,
                time: ctx.now,
                points,
                error: None,
                duration,
                requests,
            }
        }
        Err(e) => {
            tracing::error!(collector = c.name(), "failed: {e}");
            Outcome {
                name: c.name(),
                status: Status::Error,
                time: ctx.now,
                points: Vec::new(),
                error: Some(e.to_string()),
                duration,
                requests,
            }
        }
    }
}

/// Runs collectors concurrently; outcomes come back in the given order.
pub async fn collect_many(
    collectors: &[&dyn Collector],
    base: &Context,
    config: &Config,
    timeout: Option<Duration>,
) -> Vec<Outcome> {
    futures::future::join_all(
        collectors
            .iter()
            .map(|c| collect_one(*c, base, config, timeout)),
    )
    .await
}

/// What writing a run's points did.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Lines InfluxDB accepted.
    pub written: usize,
    /// Lines that were to be written.
    pub total: usize,
    /// Points refused before sending (they cannot be encoded).
    pub unencodable: Vec<crate::point::PointError>,
    /// The write failure, if any.
    pub error: Option<crate::sinks::influxdb::WriteError>,
}

/// Writes the outcomes' points, plus one self-metrics point per outcome
/// when `self_metrics` is on.
pub async fn deliver(
    outcomes: &[Outcome],
    writer: &crate::sinks::influxdb::InfluxWriter,
    self_metrics: bool,
) -> Delivery {
    let self_points: Vec<Point> = if self_metrics {
        outcomes.iter().map(|o| o.self_point(0)).collect()
    } else {
        Vec::new()
    };
    let all = outcomes
        .iter()
        .flat_map(|o| o.points.iter())
        .chain(self_points.iter());
    let (lines, unencodable) = crate::point::encode_lines(all);
    for e in &unencodable {
        tracing::error!("not written: {e}");
    }
    let mut d = Delivery {
        total: lines.len(),
        unencodable,
        ..Delivery::default()
    };
    match writer.write_lines(&lines).await {
        Ok(n) => {
            d.written = n;
            tracing::info!(points = n, url = %writer.url(), "written to InfluxDB");
        }
        Err((n, e)) => {
            d.written = n;
            tracing::error!(
                "writing to InfluxDB failed after {n} of {} points: {e}",
                lines.len()
            );
            d.error = Some(e);
        }
    }
    d
}
