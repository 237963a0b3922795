//! One run of one or more collectors: each gets its own context (options,
//! request counter), they run concurrently, a failure stays with its
//! collector, and every point leaves with an explicit timestamp.

use crate::collector::{Collector, Context};
use crate::config::Config;
use crate::point::Point;
use crate::sinks::influx_sink::{self, InfluxSink};
use crate::sinks::influxdb::InfluxWriter;
use crate::sinks::spool::{Spool, SpoolError};
use crate::sinks::{Batch, Run, SelfMetrics, Sink};
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
    let http = Http::from_config(&config.http)?;
    Ok(Context::new(http, Arc::new(config.sources.clone()), now))
}

impl Outcome {
    /// The self-metrics point of this run: tags `collector`, `status`;
    /// fields `duration_seconds` (float), `points` (int: the run's points
    /// handed to the writer: encodable, put in the spool before any write
    /// attempt; the points InfluxDB refuses later are counted in the
    /// dead-letter file, those dropped at the spool's size limit in
    /// `spool_dropped`), `requests` (int: upstream requests),
    /// `spool_dropped` (int: points the spool dropped at its size limit
    /// since the last report) and `error` (string, when the run failed or
    /// timed out).
    pub fn self_point(&self, points: usize, spool_dropped: u64) -> Point {
        let p = Point::new(SELF_MEASUREMENT)
            .tag("collector", self.name)
            .tag("status", self.status.as_str())
            .field("duration_seconds", self.duration.as_secs_f64())
            .field("points", points)
            .field("requests", self.requests)
            .field("spool_dropped", spool_dropped)
            .at(self.time);
        match &self.error {
            Some(e) => p.field("error", e.as_str()),
            None => p,
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
    // A panic in a collector is that run's failure, not the process's (nor
    // the end of its schedule in the daemon).
    let fut = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        c.collect(&ctx).instrument(span),
    ));
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.ok(),
        None => Some(fut.await),
    };
    let result = result.map(|r| {
        r.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Err(crate::CollectorError::Other(format!(
                "the collector panicked (a bug; please report it): {what}"
            )))
        })
    });
    let duration = started.elapsed();
    let requests = ctx.http.requests();
    let Some(result) = result else {
        let msg = format!(
            "timed out after {:.1} s (run timeout; the run was abandoned)",
            duration.as_secs_f64()
        );
        tracing::error!("collector {} {msg}", c.name());
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
            // An upstream's whole answer can end up in a message: cut it.
            let e = e.short();
            // The one place a run's failure is reported: `run` does not
            // repeat it at the end.
            tracing::error!("collector {} failed: {e}", c.name());
            Outcome {
                name: c.name(),
                status: Status::Error,
                time: ctx.now,
                points: Vec::new(),
                error: Some(e),
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

pub use crate::sinks::{Delivery, SELF_LABEL};

/// The outcomes as a sink's run: each collector's points under its name,
/// and (when `self_metrics`) one self-metrics point per outcome.
fn as_run<'a>(outcomes: &'a [Outcome], self_metrics: Option<&'a SelfMetrics<'a>>) -> Run<'a> {
    Run {
        parts: outcomes.iter().map(|o| (o.name, &o.points[..])).collect(),
        self_metrics,
    }
}

/// The self-metrics of `outcomes`: one point per outcome, with the number
/// of its points the sink took; the sink's drop count goes on the first.
fn self_points(outcomes: &[Outcome], counts: &[usize], dropped: u64) -> Vec<Point> {
    let mut dropped = dropped;
    outcomes
        .iter()
        .zip(counts)
        .map(|(o, n)| o.self_point(*n, std::mem::take(&mut dropped)))
        .collect()
}

/// Hands a run's points (and, when `self_metrics`, its self-metrics) to
/// `sink`, whichever it is.
pub async fn deliver_to(outcomes: &[Outcome], sink: &dyn Sink, self_metrics: bool) -> Delivery {
    let make = |counts: &[usize], dropped: u64| self_points(outcomes, counts, dropped);
    let run = as_run(outcomes, self_metrics.then_some(&make as &SelfMetrics));
    sink.deliver(run).await
}

/// [`deliver_to`] InfluxDB: `writer` through `spool` (write-ahead), for the
/// callers that hold a writer and a spool.
pub async fn deliver(
    outcomes: &[Outcome],
    writer: &InfluxWriter,
    spool: Option<&Spool>,
    self_metrics: bool,
) -> Delivery {
    deliver_to(outcomes, &InfluxSink::new(writer, spool), self_metrics).await
}

/// The write-ahead step alone ([`influx_sink::spool_run`]): the daemon's
/// collectors append their run to the spool; its delivery task replays it.
pub fn spool_run(
    outcomes: &[Outcome],
    spool: &Spool,
    self_metrics: bool,
) -> Result<Spooled, (SpoolError, Vec<Batch>, Spooled)> {
    let make = |counts: &[usize], dropped: u64| self_points(outcomes, counts, dropped);
    influx_sink::spool_run(
        &as_run(outcomes, self_metrics.then_some(&make as &SelfMetrics)),
        spool,
    )
}

pub use crate::sinks::influx_sink::{REPLAY_WAIT, Replay, Spooled, replay};
