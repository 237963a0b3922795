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
    /// Another process was replaying the spool: the new lines wait there.
    pub busy: bool,
    /// Spool trouble (reading, writing, dead-letter file).
    pub spool_errors: Vec<String>,
}

pub use crate::sinks::SELF_LABEL;

/// The run's batches: each collector's points as its own batch (the
/// unencodable ones refused with an error), and the encodable count of each
/// outcome, in order.
fn encode_outcomes(outcomes: &[Outcome], d: &mut Delivery) -> (Vec<Batch>, Vec<usize>) {
    let mut batches = Vec::new();
    let mut counts = Vec::new();
    for o in outcomes {
        let (lines, errors) = crate::point::encode_lines(&o.points);
        d.unencodable.extend(errors);
        counts.push(lines.len());
        if !lines.is_empty() {
            batches.push(Batch {
                label: o.name.to_owned(),
                lines,
            });
        }
    }
    (batches, counts)
}

/// The self-metrics batch of a run: one point per outcome; the spool's
/// drop count goes on the first.
fn self_batch(outcomes: &[Outcome], counts: &[usize], dropped: u64) -> Batch {
    let mut dropped = dropped;
    let points: Vec<Point> = outcomes
        .iter()
        .zip(counts)
        .map(|(o, n)| o.self_point(*n, std::mem::take(&mut dropped)))
        .collect();
    let (lines, errors) = crate::point::encode_lines(&points);
    for e in errors {
        tracing::error!("self-metrics point not written: {e}");
    }
    Batch {
        label: SELF_LABEL.to_owned(),
        lines,
    }
}

/// How long `deliver` waits for another process's replay of the spool
/// before leaving its points there for that process (or a later run).
pub const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// What [`spool_run`] did.
#[derive(Debug, Default)]
pub struct Spooled {
    /// The new segment holding the run's lines, and how many lines.
    pub segment: Option<String>,
    pub lines: usize,
    /// Lines of the run (points and self-metrics) given to the spool.
    pub total: usize,
    pub unencodable: Vec<crate::point::PointError>,
}

/// The write-ahead step: appends a run's points and self-metrics to the
/// spool (`fsync`ed) before any write is attempted, so that whatever
/// happens to the write (a hung InfluxDB, SIGTERM, a crash) nothing
/// collected is lost. The daemon's collectors only do this; its delivery
/// task replays the spool.
pub fn spool_run(
    outcomes: &[Outcome],
    spool: &Spool,
    self_metrics: bool,
) -> Result<Spooled, (SpoolError, Vec<Batch>, Spooled)> {
    let mut d = Delivery::default();
    let (batches, counts) = encode_outcomes(outcomes, &mut d);
    let mut out = Spooled {
        unencodable: d.unencodable,
        ..Spooled::default()
    };
    let with_self = self_metrics && !outcomes.is_empty();
    let make_self = |dropped: u64| self_batch(outcomes, &counts, dropped);
    out.total = batches.iter().map(|b| b.lines.len()).sum::<usize>()
        + if with_self { outcomes.len() } else { 0 };
    match spool.append_reporting(
        &batches,
        with_self.then_some(&make_self as &dyn Fn(u64) -> Batch),
    ) {
        Ok(a) => {
            out.segment = a.segment;
            out.lines = a.points;
            Ok(out)
        }
        Err(e) => {
            let mut all = batches;
            if with_self {
                all.push(self_batch(outcomes, &counts, 0));
            }
            Err((e, all, out))
        }
    }
}

/// Writes a run's points, write-ahead: the run's points and self-metrics
/// (one point per outcome, when `self_metrics` is on) are first appended to
/// the spool, then the spool is replayed oldest first; a record leaves the
/// spool only once InfluxDB accepted it (or refused it for good: the
/// dead-letter file). Without a usable spool, the batches are sent
/// directly and what InfluxDB cannot take now is lost (and counted).
pub async fn deliver(
    outcomes: &[Outcome],
    writer: &InfluxWriter,
    spool: Option<&Spool>,
    self_metrics: bool,
) -> Delivery {
    let mut d = Delivery::default();
    let direct = match spool {
        None => {
            let (mut batches, counts) = encode_outcomes(outcomes, &mut d);
            if self_metrics && !outcomes.is_empty() {
                batches.push(self_batch(outcomes, &counts, 0));
            }
            Some(batches)
        }
        Some(spool) => match spool_run(outcomes, spool, self_metrics) {
            Ok(s) => {
                d.total = s.total;
                d.unencodable = s.unencodable;
                let r = replay(spool, writer, REPLAY_WAIT).await;
                let (mine_written, mine_dead) = s
                    .segment
                    .as_ref()
                    .and_then(|seg| r.segments.iter().find(|x| &x.0 == seg))
                    .map_or((0, 0), |x| (x.1, x.2));
                // What is left of the run's segment: another process
                // replaying at the same time may have written part of it.
                let left = match s.segment.as_deref().map(|seg| spool.pending_points(seg)) {
                    Some(Ok(n)) => n,
                    Some(Err(e)) => {
                        d.spool_errors.push(e.to_string());
                        s.lines.saturating_sub(mine_written + mine_dead)
                    }
                    None => 0,
                };
                d.written = s.lines.saturating_sub(left + mine_dead);
                d.replayed = r.written - mine_written;
                d.dead_lettered = r.dead_lettered;
                d.spooled = left;
                d.busy = r.busy;
                if let Some(e) = r.error {
                    d.spool_errors.push(e.to_string());
                }
                d.error = r.stopped;
                None
            }
            Err((e, batches, s)) => {
                d.unencodable = s.unencodable;
                tracing::error!("{e}");
                d.spool_errors.push(e.to_string());
                Some(batches)
            }
        },
    };
    if let Some(batches) = direct {
        let mut down: Option<WriteError> = None;
        let mut pending: Vec<Batch> = Vec::new();
        for b in batches.into_iter().filter(|b| !b.lines.is_empty()) {
            deliver_batch(b, writer, spool, &mut down, &mut pending, &mut d).await;
        }
        let n: usize = pending.iter().map(|b| b.lines.len()).sum();
        if n > 0 {
            d.lost += n;
            let why = d
                .error
                .as_ref()
                .map_or_else(String::new, ToString::to_string);
            tracing::error!(
                "{n} points are LOST: InfluxDB cannot take them now ({why}) and there is no usable spool"
            );
        }
    }
    for e in &d.unencodable {
        tracing::error!("not written: {e}");
    }
    if d.spooled > 0 {
        match &d.error {
            Some(e) => tracing::warn!(
                points = d.spooled,
                "InfluxDB cannot take these points now ({e}); they are kept in the spool for a later write"
            ),
            None => tracing::info!(
                points = d.spooled,
                "another process is writing the spool; this run's points wait there for it (or the next run)"
            ),
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
    /// Per segment replayed: its name, lines written, lines dead-lettered.
    pub segments: Vec<(String, usize, usize)>,
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
        let (mut seg_written, mut seg_dead) = (0, 0);
        for rec in &seg.records {
            let report = writer.send(&rec.lines).await;
            r.written += report.written;
            seg_written += report.written;
            let mut refused_ok = true;
            if let Some((lines, e)) = report.refused_batch() {
                match spool.dead_letter(&rec.label, &lines, &e) {
                    Ok(()) => {
                        r.dead_lettered += lines.len();
                        seg_dead += lines.len();
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
        r.segments.push((seg.name.clone(), seg_written, seg_dead));
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
