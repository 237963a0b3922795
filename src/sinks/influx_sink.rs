//! The InfluxDB sink: the writer, the durable spool and the dead-letter
//! file together. Delivery is write-ahead: a run's points and self-metrics
//! are appended to the spool (`fsync`ed) before any write is attempted;
//! then the spool is replayed oldest first, and a record leaves it only
//! once InfluxDB accepted it (or refused it for good: the dead-letter
//! file). Without a usable spool, the batches are sent directly and what
//! InfluxDB cannot take now is lost (and counted).

use super::influxdb::{InfluxWriter, WriteError};
use super::spool::{Progress, Spool, SpoolError};
use super::{Batch, Delivery, Run, Sink, encode_parts, self_batch};
use std::time::{Duration, Instant};

/// InfluxDB through `spool` (when there is a usable one).
pub struct InfluxSink<'a> {
    pub writer: &'a InfluxWriter,
    pub spool: Option<&'a Spool>,
}

impl<'a> InfluxSink<'a> {
    pub fn new(writer: &'a InfluxWriter, spool: Option<&'a Spool>) -> InfluxSink<'a> {
        InfluxSink { writer, spool }
    }
}

#[async_trait::async_trait]
impl Sink for InfluxSink<'_> {
    async fn deliver(&self, run: Run<'_>) -> Delivery {
        deliver(&run, self.writer, self.spool).await
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
    pub unencodable: Vec<crate::model::point::PointError>,
}

/// The write-ahead step: appends a run's points and self-metrics to the
/// spool (`fsync`ed) before any write is attempted, so that whatever
/// happens to the write (a hung InfluxDB, SIGTERM, a crash) nothing
/// collected is lost. The daemon's collectors only do this; its delivery
/// task replays the spool.
pub fn spool_run(
    run: &Run<'_>,
    spool: &Spool,
) -> Result<Spooled, (SpoolError, Vec<Batch>, Spooled)> {
    let mut d = Delivery::default();
    let (batches, counts) = encode_parts(run, &mut d);
    let mut out = Spooled {
        unencodable: d.unencodable,
        ..Spooled::default()
    };
    let make = run.self_metrics.filter(|_| !run.parts.is_empty());
    let make_self = |dropped: u64| self_batch(make.expect("with self-metrics"), &counts, dropped);
    out.total = batches.iter().map(|b| b.lines.len()).sum::<usize>()
        + make.map_or(0, |m| m(&counts, 0).len());
    match spool.append_reporting(
        &batches,
        make.is_some()
            .then_some(&make_self as &dyn Fn(u64) -> Batch),
    ) {
        Ok(a) => {
            out.segment = a.segment;
            out.lines = a.points;
            Ok(out)
        }
        Err(e) => {
            let mut all = batches;
            if let Some(m) = make {
                all.push(self_batch(m, &counts, 0));
            }
            Err((e, all, out))
        }
    }
}

/// Writes a run's points, write-ahead: the run's points and self-metrics
/// (when the run has them) are first appended to
/// the spool, then the spool is replayed oldest first; a record leaves the
/// spool only once InfluxDB accepted it (or refused it for good: the
/// dead-letter file). Without a usable spool, the batches are sent
/// directly and what InfluxDB cannot take now is lost (and counted).
pub async fn deliver(run: &Run<'_>, writer: &InfluxWriter, spool: Option<&Spool>) -> Delivery {
    let mut d = Delivery::default();
    let direct = match spool {
        None => {
            let (mut batches, counts) = encode_parts(run, &mut d);
            if let Some(make) = run.self_metrics.filter(|_| !run.parts.is_empty()) {
                batches.push(self_batch(make, &counts, 0));
            }
            Some(batches)
        }
        Some(spool) => match spool_run(run, spool) {
            Ok(s) => {
                d.total = s.total;
                d.unencodable = s.unencodable;
                // Quiet: the delivery says what it wrote, once.
                let r = replay_logged(spool, writer, REPLAY_WAIT, false).await;
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
                "{}: {n} points are LOST: it cannot take them now ({why}) and there is no usable spool",
                writer.label()
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
                "{}: cannot take these points now ({e}); they are kept in the spool for a later write",
                writer.label()
            ),
            None => tracing::info!(
                points = d.spooled,
                "another process is writing the spool; this run's points wait there for it (or the next run)"
            ),
        }
    }
    // One line per delivery: this run's points and the earlier runs'
    // written from the spool with them.
    if d.written + d.replayed > 0 {
        tracing::info!(
            points = d.written,
            "{}: wrote {} points to {}{}",
            writer.label(),
            d.written,
            writer.url(),
            if d.replayed > 0 {
                format!(" and {} kept in the spool by earlier runs", d.replayed)
            } else {
                String::new()
            }
        );
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
        dead_letter(spool, &writer.label(), &batch.label, &lines, &message, d);
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

fn dead_letter(
    spool: Option<&Spool>,
    output: &str,
    label: &str,
    lines: &[String],
    e: &str,
    d: &mut Delivery,
) {
    match spool.map(|s| (s, s.dead_letter(label, lines, e))) {
        Some((s, Ok(()))) => {
            d.dead_lettered += lines.len();
            tracing::error!(
                "{output} refused {} points of {label} ({e}); they are in the dead-letter file {}",
                lines.len(),
                s.dead_letter_path().display()
            );
        }
        Some((_, Err(se))) => {
            d.lost += lines.len();
            tracing::error!(
                "{output}: {} points of {label} are LOST: refused ({e}) and the dead-letter file cannot be written: {se}",
                lines.len()
            );
            d.spool_errors.push(se.to_string());
        }
        None => {
            d.lost += lines.len();
            tracing::error!(
                "{output}: {} points of {label} are LOST: refused ({e}) and there is no usable spool for the dead-letter file",
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
    replay_logged(spool, writer, wait, true).await
}

/// [`replay`] leaving it to the caller to say what it wrote (`spool
/// flush` prints it): one line per delivery.
pub async fn replay_quiet(spool: &Spool, writer: &InfluxWriter, wait: Duration) -> Replay {
    replay_logged(spool, writer, wait, false).await
}

/// [`replay`], saying what it wrote (`log`) or leaving that to the caller.
async fn replay_logged(spool: &Spool, writer: &InfluxWriter, wait: Duration, log: bool) -> Replay {
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
        // How far each record got, for the segment's progress marker:
        // after every batch delivered, so that a process killed in the
        // middle of a record resumes after its last delivered batch.
        let mut progress: Vec<Progress> = seg
            .records
            .iter()
            .zip(&seg.delivered)
            .filter(|(_, n)| **n > 0)
            .map(|(rec, &lines)| Progress {
                id: rec.id,
                fingerprint: rec.fingerprint(),
                lines,
            })
            .collect();
        'records: for (rec, &already) in seg.records.iter().zip(&seg.delivered) {
            let fingerprint = rec.fingerprint();
            let mut pos = already.min(rec.lines.len());
            if pos > 0 {
                tracing::info!(
                    "resuming {} of {} after its first {pos} lines, delivered before an interruption",
                    rec.label,
                    seg.name
                );
            }
            while pos < rec.lines.len() {
                let end = (pos + writer.batch_size()).min(rec.lines.len());
                let report = writer.send(&rec.lines[pos..end]).await;
                r.written += report.written;
                seg_written += report.written;
                if let Some((lines, e)) = report.refused_batch() {
                    match spool.dead_letter(&rec.label, &lines, &e) {
                        Ok(()) => {
                            r.dead_lettered += lines.len();
                            seg_dead += lines.len();
                            tracing::error!(
                                "{} refused {} spooled points of {} ({e}); they are in the dead-letter file {}",
                                writer.label(),
                                lines.len(),
                                rec.label,
                                spool.dead_letter_path().display()
                            );
                        }
                        Err(se) => {
                            tracing::error!("{se}");
                            r.error = Some(se);
                            // Keep the record from this batch on: resending
                            // the batch's written lines is harmless.
                            partial = Some((rec.id, rec.lines[pos..].to_vec()));
                            break 'records;
                        }
                    }
                }
                if let Some((mut lines, e)) = report.kept {
                    tracing::warn!(
                        "{}: the spool's replay stopped: it cannot take points now: {e}",
                        writer.label()
                    );
                    lines.extend_from_slice(&rec.lines[end..]);
                    partial = Some((rec.id, lines));
                    r.stopped = Some(e);
                    break 'records;
                }
                pos = end;
                match progress.iter_mut().find(|p| p.id == rec.id) {
                    Some(p) => p.lines = pos,
                    None => progress.push(Progress {
                        id: rec.id,
                        fingerprint,
                        lines: pos,
                    }),
                }
                if let Err(e) = spool.record_progress(&seg.name, &progress) {
                    // Only a later resend of what this replay wrote is at
                    // stake: harmless for InfluxDB.
                    tracing::warn!("{e}");
                }
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
    if log && r.written > 0 {
        tracing::info!(
            points = r.written,
            records = r.records,
            "{}: wrote {} spooled points to {}",
            writer.label(),
            r.written,
            writer.url()
        );
    }
    r
}

/// The self-metrics of the spool: one point per delivery that emptied
/// it (tag `output`; fields `points`, `records`, `bytes`: the backlog the
/// delivery found waiting, `oldest_age_seconds`: how long its oldest
/// record had waited (0 when none), `dead_letter_batches` in the
/// dead-letter file after it, `writes_not_reported`: writes whose own
/// self-metrics were let go while InfluxDB was away).
pub const SPOOL_MEASUREMENT: &str = "ubuntu_metrics_spool";

/// The [`SPOOL_MEASUREMENT`] point at `now`: the `backlog` a delivery
/// found, the dead letters `after` it.
pub fn spool_point(
    output: &str,
    backlog: &super::spool::Status,
    after: &super::spool::Status,
    now: chrono::DateTime<chrono::Utc>,
    writes_not_reported: u64,
) -> crate::model::point::Point {
    let age = backlog
        .oldest
        .map_or(0.0, |o| (now - o).num_milliseconds().max(0) as f64 / 1000.0);
    crate::model::point::Point::new(SPOOL_MEASUREMENT)
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
/// ([`super::influxdb::WRITE_MEASUREMENT`]) and of the spool
/// ([`SPOOL_MEASUREMENT`]: the `backlog` the delivery found, `None` when
/// nothing waited before it). Call it after a delivery that left the
/// spool empty: these are about writes that already happened, so they go
/// in a write of their own, directly (never into the spool, where
/// `spool status` would count them). When that write fails, the writes'
/// records go back to the writer, for the next call (a daemon's) or for
/// nobody (a process about to end). `now` is the run's clock: the time of
/// the spool's point; the writes' wall-clock times are shifted to it.
pub async fn write_self_metrics(
    writer: &InfluxWriter,
    spool: Option<&Spool>,
    backlog: Option<&super::spool::Status>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), WriteError> {
    let (stats, dropped) = writer.take_write_log();
    // The writes happened on the wall clock; a run on another clock
    // (`run --now`) shifts them with the rest of its points.
    let shift = now - chrono::Utc::now();
    let mut points: Vec<crate::model::point::Point> = stats
        .iter()
        .map(|s| {
            let mut p = s.point();
            p.timestamp = Some(s.time + shift);
            p
        })
        .collect();
    match spool.map(Spool::status) {
        Some(Ok(after)) => {
            let b = backlog.unwrap_or(&after);
            points.push(spool_point(writer.name(), b, &after, now, dropped));
        }
        Some(Err(e)) => tracing::debug!("no spool self-metrics: {e}"),
        None => {}
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
