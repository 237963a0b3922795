//! One run of one or more collectors: each gets its own context (options,
//! request counter), they run concurrently, a failure stays with its
//! collector, and every point leaves with an explicit timestamp. The run
//! goes to its outputs through the [`Sink`] interface alone: the runner
//! knows no writer and no spool ([`outputs`] opens them from the
//! configuration).

pub mod backfill;
pub mod outputs;

use crate::collector::{Collector, Context};
use crate::config::Config;
use crate::model::point::Point;
use crate::model::schema::{Measurement, float, int, string, tag};
use crate::sinks::{Delivery, Run, SelfMetrics, Sink, output_schema};
use crate::sources::http::{HostCount, Http};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The measurement of the self-metrics: one point per collector run. Named
/// after the program so that it cannot clash with an Ubuntu measurement.
pub const SELF_MEASUREMENT: &str = "ubuntu_metrics_run";

/// The self-metrics of a run's upstream requests: one point per collector
/// run and host asked (tags `collector`, `host`; fields `requests`,
/// `errors`).
pub const HTTP_MEASUREMENT: &str = "ubuntu_metrics_http";

/// [`SELF_MEASUREMENT`], declared like a collector's schema.
pub fn run_schema() -> Measurement {
    Measurement::new(
        SELF_MEASUREMENT,
        &[
            tag("collector", "the collector's name"),
            tag("status", "`ok`, `error` or `timeout`"),
        ],
        &[
            float("duration_seconds", "how long the run took"),
            int("points", "points handed to the writer"),
            int("requests", "upstream requests"),
            int(
                "spool_dropped",
                "points the spool dropped at its size limit since the last report",
            ),
            string("error", "why the run failed (only when it did)"),
        ],
    )
}

/// [`HTTP_MEASUREMENT`], declared like a collector's schema.
pub fn http_schema() -> Measurement {
    Measurement::new(
        HTTP_MEASUREMENT,
        &[
            tag("collector", "the collector's name"),
            tag(
                "host",
                "the upstream host (`host:port` when not the default port)",
            ),
        ],
        &[
            int(
                "requests",
                "HTTP requests of the run to the host (each retry is one)",
            ),
            int(
                "errors",
                "of which failed: no answer, an error status, an unreadable body",
            ),
        ],
    )
}

/// Everything the program writes about itself: the runs' measurements and
/// the outputs' own ([`output_schema`]; the dashboards' self-metrics panels
/// read only this; `tests/self_metrics.rs` checks every self-metrics point
/// against it).
pub fn self_schema() -> Vec<Measurement> {
    let mut all = vec![run_schema(), http_schema()];
    all.extend(output_schema());
    all
}

/// The answers kept for conditional requests, in the state directory.
pub const HTTP_CACHE_DIR: &str = "http-cache";

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
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub status: Status,
    /// The collection time of the run (the points' default timestamp).
    pub time: DateTime<Utc>,
    pub points: Vec<Point>,
    /// The collector's error message, when it failed.
    pub error: Option<String>,
    pub duration: Duration,
    pub requests: u64,
    /// The run's HTTP requests and failures per host.
    pub hosts: BTreeMap<String, HostCount>,
    /// The newest row read of each time-series source (URL, credentials
    /// redacted): the catch-up marks to set once the points are safe.
    pub newest: BTreeMap<String, DateTime<Utc>>,
}

/// The base context of a run, from the configuration: its answers kept
/// for conditional requests and its scripts' homes in the state directory.
pub fn context(config: &Config, now: DateTime<Utc>) -> Result<Context, String> {
    let state = config.state_dir();
    let http =
        Http::from_config(&config.http)?.with_conditional_requests(&state.join(HTTP_CACHE_DIR));
    Ok(Context::new(http, Arc::new(config.sources.clone()), now).with_state_dir(state))
}

/// [`context`] writing nothing in the state directory: no answers kept,
/// scripts get the inherited `HOME` (a dry run by root in the services'
/// state directory).
pub fn context_read_only(config: &Config, now: DateTime<Utc>) -> Result<Context, String> {
    let http = Http::from_config(&config.http)?;
    Ok(Context::new(http, Arc::new(config.sources.clone()), now))
}

impl Outcome {
    /// The outcome of `name`'s run at `time`: `points` (with `Status::Ok`)
    /// or an `error` (with its status), and what the run asked upstream.
    pub fn new(
        name: &str,
        time: DateTime<Utc>,
        result: Result<Vec<Point>, (Status, String)>,
        duration: Duration,
    ) -> Outcome {
        let (status, points, error) = match result {
            Ok(points) => (Status::Ok, points, None),
            Err((status, e)) => (status, Vec::new(), Some(e)),
        };
        Outcome {
            name: name.to_owned(),
            status,
            time,
            points,
            error,
            duration,
            requests: 0,
            hosts: BTreeMap::new(),
            newest: BTreeMap::new(),
        }
    }

    /// This outcome with what its run asked upstream: `requests`, per
    /// host, and the newest rows read (the catch-up marks).
    pub fn with_requests(
        mut self,
        requests: u64,
        hosts: BTreeMap<String, HostCount>,
        newest: BTreeMap<String, DateTime<Utc>>,
    ) -> Outcome {
        self.requests = requests;
        self.hosts = hosts;
        self.newest = newest;
        self
    }

    /// This outcome without its points: what its self-metrics need, owned.
    fn summary(&self) -> Outcome {
        Outcome {
            name: self.name.clone(),
            points: Vec::new(),
            error: self.error.clone(),
            hosts: self.hosts.clone(),
            newest: BTreeMap::new(),
            ..*self
        }
    }

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
            .tag("collector", self.name.as_str())
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

    /// The run's [`HTTP_MEASUREMENT`] points: one per host it asked.
    pub fn host_points(&self) -> impl Iterator<Item = Point> + '_ {
        self.hosts.iter().map(|(host, n)| {
            Point::new(HTTP_MEASUREMENT)
                .tag("collector", self.name.as_str())
                .tag("host", host.as_str())
                .field("requests", n.requests)
                .field("errors", n.errors)
                .at(self.time)
        })
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
    let hosts = ctx.http.per_host();
    let result = match result {
        None => {
            let msg = format!(
                "timed out after {:.1} s (run timeout; the run was abandoned)",
                duration.as_secs_f64()
            );
            tracing::error!("collector {} {msg}", c.name());
            Err((Status::Timeout, msg))
        }
        Some(Ok(mut points)) => {
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
            Ok(points)
        }
        Some(Err(e)) => {
            // An upstream's whole answer can end up in a message: cut it.
            let e = e.short();
            // The one place a run's failure is reported: `run` does not
            // repeat it at the end.
            tracing::error!("collector {} failed: {e}", c.name());
            Err((Status::Error, e))
        }
    };
    // The rows read are the catch-up marks only of a run that succeeded.
    let newest = if result.is_ok() {
        ctx.newest_rows()
    } else {
        BTreeMap::new()
    };
    Outcome::new(c.name(), ctx.now, result, duration).with_requests(requests, hosts, newest)
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

/// The outcomes as a sink's run: each collector's points under its name,
/// and (when `self_metrics`) one self-metrics point per outcome.
fn as_run(outcomes: &[Outcome], self_metrics: bool) -> Run<'_> {
    Run {
        parts: outcomes
            .iter()
            .map(|o| (o.name.as_str(), &o.points[..]))
            .collect(),
        self_metrics: self_metrics.then(|| self_metrics_of(outcomes)),
    }
}

/// The self-metrics maker of `outcomes`, owning what it needs (a sink may
/// call it on another thread).
fn self_metrics_of(outcomes: &[Outcome]) -> std::sync::Arc<SelfMetrics> {
    let runs: Vec<Outcome> = outcomes.iter().map(Outcome::summary).collect();
    std::sync::Arc::new(move |counts: &[usize], dropped: u64| self_points(&runs, counts, dropped))
}

/// The self-metrics of `outcomes`: one point per outcome, with the number
/// of its points the sink took (the sink's drop count goes on the first),
/// then each outcome's requests per host.
fn self_points(outcomes: &[Outcome], counts: &[usize], dropped: u64) -> Vec<Point> {
    let mut dropped = dropped;
    let mut points: Vec<Point> = outcomes
        .iter()
        .zip(counts)
        .map(|(o, n)| o.self_point(*n, std::mem::take(&mut dropped)))
        .collect();
    points.extend(outcomes.iter().flat_map(Outcome::host_points));
    points
}

/// Hands a run's points (and, when `self_metrics`, its self-metrics) to
/// `sink`, whichever it is.
pub async fn deliver_to(outcomes: &[Outcome], sink: &dyn Sink, self_metrics: bool) -> Delivery {
    sink.deliver(as_run(outcomes, self_metrics)).await
}

/// Hands a run to `sink` to keep for a later delivery (the daemon's
/// collectors: the write-ahead step alone; its delivery task writes).
pub async fn keep_in(outcomes: &[Outcome], sink: &dyn Sink, self_metrics: bool) -> Delivery {
    sink.keep(as_run(outcomes, self_metrics)).await
}

#[cfg(test)]
mod tests {
    /// The runner, the daemon and `run` see outputs through the `Sink` and
    /// `Output` interfaces: they name no writer and no spool, and the
    /// runner re-exports nothing of the sinks (`runner::outputs` alone
    /// opens an output of a kind).
    #[test]
    fn the_run_sees_outputs_through_their_interface_alone() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in [
            "src/runner/mod.rs",
            "src/schedule/daemon.rs",
            "src/cli/run.rs",
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for name in [
                "InfluxWriter",
                "InfluxOutput",
                "spool::Spool",
                "Spool::open",
                "replay(&",
            ] {
                assert!(!code.contains(name), "{file} names {name}");
            }
            assert!(
                !code.contains("pub use crate::sinks"),
                "{file} re-exports sinks"
            );
        }
    }
}
