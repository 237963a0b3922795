//! One run of one or more collectors: each gets its own context (options,
//! request counter), they run concurrently, a failure stays with its
//! collector, and every point leaves with an explicit timestamp.

use crate::collector::{Collector, Context};
use crate::config::Config;
use crate::point::Point;
use crate::sinks::Batch;
use crate::sinks::influxdb::{InfluxWriter, WriteError};
use crate::sinks::spool::{Spool, SpoolError};
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
    /// fields `duration_seconds` (float), `points` (int: points written with
    /// it), `requests` (int: upstream requests), `spool_dropped` (int:
    /// points the spool dropped at its size limit since the last report)
    /// and `error` (string, when the run failed or timed out).
    pub fn self_point(&self, spool_dropped: u64) -> Point {
        let p = Point::new(SELF_MEASUREMENT)
            .tag("collector", self.name)
            .tag("status", self.status.as_str())
            .field("duration_seconds", self.duration.as_secs_f64())
            .field("points", self.points.len())
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

/// What writing a run's points did. Counts are lines of line protocol
/// (one per point).
#[derive(Debug, Default)]
pub struct Delivery {
    /// New lines to deliver (the run's points and self-metrics).
    pub total: usize,
    /// New lines InfluxDB accepted.
    pub written: usize,
    /// New lines kept in the spool for a later write.
    pub spooled: usize,
    /// Lines from the spool written now.
    pub replayed: usize,
    /// Lines (new or from the spool) InfluxDB refused for good, now in the
    /// dead-letter file.
    pub dead_lettered: usize,
    /// Lines neither written nor kept (no usable spool).
    pub lost: usize,
    /// Points refused before sending (they cannot be encoded).
    pub unencodable: Vec<crate::point::PointError>,
    /// Why points were kept for later (or lost), if they were.
    pub error: Option<WriteError>,
    /// Spool trouble (reading, writing, dead-letter file).
    pub spool_errors: Vec<String>,
}

/// The label of the self-metrics batch in the spool and dead-letter file.
pub const SELF_LABEL: &str = "self-metrics";

/// Writes a run's points: first replays the spool (oldest first), then
/// writes each collector's points as its own batch, then the self-metrics
/// (one point per outcome, when `self_metrics` is on). What InfluxDB cannot
/// take now is appended to the spool before this returns; what it refuses
/// for good goes to the dead-letter file; the rest flows.
pub async fn deliver(
    outcomes: &[Outcome],
    writer: &InfluxWriter,
    spool: Option<&Spool>,
    self_metrics: bool,
) -> Delivery {
    let mut d = Delivery::default();
    // InfluxDB cannot take points now: send nothing more, keep everything.
    let mut down: Option<WriteError> = None;
    if let Some(spool) = spool {
        let r = replay(spool, writer, Duration::ZERO).await;
        d.replayed = r.written;
        d.dead_lettered += r.dead_lettered;
        if let Some(e) = r.error {
            d.spool_errors.push(e.to_string());
        }
        if let Some(e) = r.stopped {
            down = Some(e.clone());
            d.error = Some(e);
        }
    }
    let mut pending: Vec<Batch> = Vec::new();
    for o in outcomes {
        let (lines, errors) = crate::point::encode_lines(&o.points);
        d.unencodable.extend(errors);
        if !lines.is_empty() {
            let b = Batch {
                label: o.name.to_owned(),
                lines,
            };
            deliver_batch(b, writer, spool, &mut down, &mut pending, &mut d).await;
        }
    }
    if self_metrics && !outcomes.is_empty() {
        // Drops at the spool's size limit since the last report go on the
        // first self point (summing the field gives the total).
        let mut dropped = match spool.map(Spool::take_dropped).transpose() {
            Ok(n) => n.unwrap_or(0),
            Err(e) => {
                d.spool_errors.push(e.to_string());
                0
            }
        };
        let points: Vec<Point> = outcomes
            .iter()
            .map(|o| o.self_point(std::mem::take(&mut dropped)))
            .collect();
        let (lines, errors) = crate::point::encode_lines(&points);
        d.unencodable.extend(errors);
        let b = Batch {
            label: SELF_LABEL.to_owned(),
            lines,
        };
        deliver_batch(b, writer, spool, &mut down, &mut pending, &mut d).await;
    }
    for e in &d.unencodable {
        tracing::error!("not written: {e}");
    }
    if !pending.is_empty() {
        let n: usize = pending.iter().map(|b| b.lines.len()).sum();
        let why = d
            .error
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        match spool.map(|s| (s, s.append(&pending))) {
            Some((s, Ok(a))) => {
                d.spooled += a.points;
                tracing::warn!(
                    points = a.points,
                    spool = %s.dir().display(),
                    "InfluxDB cannot take these points now ({why}); they are kept in the spool for a later write"
                );
            }
            Some((s, Err(e))) => {
                d.lost += n;
                tracing::error!(
                    "{n} points are LOST: InfluxDB cannot take them now ({why}) and the spool {} cannot keep them: {e}",
                    s.dir().display()
                );
                d.spool_errors.push(e.to_string());
            }
            None => {
                d.lost += n;
                tracing::error!(
                    "{n} points are LOST: InfluxDB cannot take them now ({why}) and there is no usable spool"
                );
            }
        }
    }
    if d.written > 0 {
        tracing::info!(points = d.written, url = %writer.url(), "written to InfluxDB");
    }
    d
}

/// Sends one batch (unless InfluxDB is known to be down); refused lines go
/// to the dead-letter file, lines to keep to `pending`.
async fn deliver_batch(
    batch: Batch,
    writer: &InfluxWriter,
    spool: Option<&Spool>,
    down: &mut Option<WriteError>,
    pending: &mut Vec<Batch>,
    d: &mut Delivery,
) {
    d.total += batch.lines.len();
    if down.is_some() {
        pending.push(batch);
        return;
    }
    let report = writer.send(&batch.lines).await;
    d.written += report.written;
    if let Some((lines, message)) = report.refused_batch() {
        dead_letter(spool, &batch.label, &lines, &message, d);
    }
    if let Some((lines, e)) = report.kept {
        *down = Some(e.clone());
        d.error = Some(e);
        pending.push(Batch {
            label: batch.label,
            lines,
        });
    }
}

fn dead_letter(spool: Option<&Spool>, label: &str, lines: &[String], e: &str, d: &mut Delivery) {
    match spool.map(|s| (s, s.dead_letter(label, lines, e))) {
        Some((s, Ok(()))) => {
            d.dead_lettered += lines.len();
            tracing::error!(
                "InfluxDB refused {} points of {label} ({e}); they are in the dead-letter file {}",
                lines.len(),
                s.dead_letter_path().display()
            );
        }
        Some((_, Err(se))) => {
            d.lost += lines.len();
            tracing::error!(
                "{} points of {label} are LOST: InfluxDB refused them ({e}) and the dead-letter file cannot be written: {se}",
                lines.len()
            );
            d.spool_errors.push(se.to_string());
        }
        None => {
            d.lost += lines.len();
            tracing::error!(
                "{} points of {label} are LOST: InfluxDB refused them ({e}) and there is no usable spool for the dead-letter file",
                lines.len()
            );
        }
    }
}

/// What a replay of the spool did.
#[derive(Debug, Default)]
pub struct Replay {
    /// Lines written.
    pub written: usize,
    /// Records fully done (written or dead-lettered).
    pub records: usize,
    /// Lines moved to the dead-letter file.
    pub dead_lettered: usize,
    /// Why the replay stopped before the spool was empty.
    pub stopped: Option<WriteError>,
    /// Another process was replaying (nothing done).
    pub busy: bool,
    pub error: Option<SpoolError>,
}

/// Writes the spool's records, oldest first, removing each only after
/// InfluxDB accepted it (or refused it for good: dead-letter file). Stops
/// at the first record InfluxDB cannot take now. Waits up to `wait` for
/// another process's replay to finish; gives up (`busy`) after.
pub async fn replay(spool: &Spool, writer: &InfluxWriter, wait: Duration) -> Replay {
    let mut r = Replay::default();
    let deadline = Instant::now() + wait;
    let _guard = loop {
        match spool.try_replay_lock() {
            Ok(Some(g)) => break g,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(None) => {
                tracing::debug!("another process is replaying the spool");
                r.busy = true;
                return r;
            }
            Err(e) => {
                tracing::error!("{e}");
                r.error = Some(e);
                return r;
            }
        }
    };
    let mut seen = std::collections::HashSet::new();
    loop {
        let seg = match spool.oldest_segment() {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("{e}");
                r.error = Some(e);
                break;
            }
        };
        if !seen.insert(seg.name.clone()) {
            let e = SpoolError(format!(
                "spool {}: segment {} is still there after its replay",
                spool.dir().display(),
                seg.name
            ));
            tracing::error!("{e}");
            r.error = Some(e);
            break;
        }
        let mut done = Vec::new();
        let mut partial = None;
        for rec in &seg.records {
            let report = writer.send(&rec.lines).await;
            r.written += report.written;
            let mut refused_ok = true;
            if let Some((lines, e)) = report.refused_batch() {
                match spool.dead_letter(&rec.label, &lines, &e) {
                    Ok(()) => {
                        r.dead_lettered += lines.len();
                        tracing::error!(
                            "InfluxDB refused {} spooled points of {} ({e}); they are in the dead-letter file {}",
                            lines.len(),
                            rec.label,
                            spool.dead_letter_path().display()
                        );
                    }
                    Err(se) => {
                        tracing::error!("{se}");
                        r.error = Some(se);
                        refused_ok = false;
                    }
                }
            }
            if let Some((lines, e)) = report.kept {
                tracing::warn!("the spool's replay stopped: InfluxDB cannot take points now: {e}");
                partial = Some((rec.id, lines));
                r.stopped = Some(e);
                break;
            }
            if !refused_ok {
                // Keep the record: resending its written lines is harmless.
                break;
            }
            done.push(rec.id);
            r.records += 1;
        }
        if let Err(e) = spool.finish_segment(&seg.name, &done, partial) {
            tracing::error!("{e}");
            r.error = Some(e);
            break;
        }
        if r.stopped.is_some() || r.error.is_some() {
            break;
        }
    }
    if r.written > 0 {
        tracing::info!(
            points = r.written,
            records = r.records,
            url = %writer.url(),
            "wrote spooled points to InfluxDB"
        );
    }
    r
}
