//! The InfluxDB output: the writer, the durable spool and the dead-letter
//! file together, opened once ([`InfluxOutput::open`]) and used by `run`,
//! `spool flush` and the daemon alike. Delivery is write-ahead: a run's
//! points and self-metrics are appended to the spool (`fsync`ed) before any
//! write is attempted; then the spool is replayed oldest first, a
//! segment's records written together up to `batch_size` lines per
//! request, and a record leaves it only once InfluxDB accepted it (or
//! refused it for good: the dead-letter file). Without a usable spool, the
//! batches are sent directly and what InfluxDB cannot take now is lost
//! (and counted).
//!
//! The spool's calls block (`flock`, `fsync`): from here they run on
//! tokio's blocking threads ([`blocking`]), never on an async worker.

use super::self_metrics::spool_point;
use super::writer::{Disposition, InfluxConfig, InfluxWriter, WriteError};
pub use crate::sinks::Replay;
pub use crate::sinks::blocking::blocking;
use crate::sinks::spool::{Progress, Segment, Spool, SpoolError, Status};
use crate::sinks::{Batch, Delivery, Output, Run, SelfMetrics, Sink, encode_parts, self_batch};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `deliver` waits for another process's replay of the spool
/// before leaving its points there for that process (or a later run).
pub const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// Whether an output must have its spool: the daemon promises that
/// nothing is lost and does not start without one; a run writes anyway
/// (what InfluxDB cannot take now is lost, and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolUse {
    Optional,
    Required,
}

/// What opening an output needs: its name, its section, its secret (v1:
/// the password; v2: the token), its spool and the spool's size limit.
pub struct OutputSettings<'a> {
    pub name: &'a str,
    pub influx: &'a InfluxConfig,
    pub secret: Option<String>,
    pub spool_dir: &'a Path,
    pub spool_max: u64,
}

/// Why an output cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration does not give a writer (a configuration error).
    #[error("{0}")]
    Config(String),
    /// The spool cannot be opened (and the caller needs it).
    #[error("{0}")]
    Spool(SpoolError),
}

/// One output: InfluxDB through its spool (when there is a usable one).
pub struct InfluxOutput {
    writer: Arc<InfluxWriter>,
    spool: Option<Arc<Spool>>,
    spool_dir: PathBuf,
}

impl InfluxOutput {
    /// The output of `settings`: its writer built (every setting checked:
    /// a bad URL, CA file or token is a configuration error now, not at the
    /// first write), its spool opened (`use_spool` says whether an
    /// unusable one stops it; else it is warned about).
    pub async fn open(
        settings: OutputSettings<'_>,
        use_spool: SpoolUse,
    ) -> Result<InfluxOutput, OpenError> {
        let writer = InfluxWriter::for_output(settings.name, settings.influx, settings.secret)
            .map_err(|e| OpenError::Config(e.to_string()))?;
        let dir = settings.spool_dir.to_owned();
        let max = settings.spool_max;
        let opened = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || Spool::open(&dir, max))
                .await
                .unwrap_or_else(|e| Err(SpoolError(format!("cannot open the spool: {e}"))))
        };
        let spool = match (opened, use_spool) {
            (Ok(s), _) => Some(Arc::new(s)),
            (Err(e), SpoolUse::Required) => return Err(OpenError::Spool(e)),
            (Err(e), SpoolUse::Optional) => {
                tracing::warn!(
                    "{e}: points that InfluxDB cannot take now would be lost; set [spool] dir to a writable directory"
                );
                None
            }
        };
        Ok(InfluxOutput {
            writer: Arc::new(writer),
            spool,
            spool_dir: dir,
        })
    }

    /// An output of a writer and a spool already made (tests, tools).
    pub fn new(writer: Arc<InfluxWriter>, spool: Option<Arc<Spool>>) -> InfluxOutput {
        let spool_dir = spool
            .as_ref()
            .map_or_else(PathBuf::new, |s| s.dir().to_owned());
        InfluxOutput {
            writer,
            spool,
            spool_dir,
        }
    }

    pub fn writer(&self) -> &InfluxWriter {
        &self.writer
    }

    /// Where the spool is (or would be).
    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// The output's name.
    pub fn name(&self) -> &str {
        self.writer.name()
    }

    /// The output as its configuration section names it, for messages.
    pub fn label(&self) -> String {
        self.writer.label()
    }

    /// What waits in the spool (`None` without a spool, or when it cannot
    /// be read).
    pub async fn backlog(&self) -> Option<Status> {
        blocking(self.spool.as_ref()?, Spool::status).await.ok()
    }

    /// Writes the self-metrics of the writes made since the last call
    /// ([`super::self_metrics::WRITE_MEASUREMENT`]) and of the spool
    /// ([`super::self_metrics::SPOOL_MEASUREMENT`]: the `backlog` the
    /// delivery found, `None` when nothing waited before it). Call it after
    /// a delivery that left the spool empty: these are about writes that
    /// already happened, so they go in a write of their own, directly
    /// (never into the spool, where `spool status` would count them). When
    /// that write fails, the writes' records go back to the writer, for the
    /// next call (a daemon's) or for nobody (a process about to end). `now`
    /// is the run's clock: the time of the spool's point; the writes'
    /// wall-clock times are shifted to it.
    pub async fn write_self_metrics(
        &self,
        backlog: Option<&Status>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), WriteError> {
        let writer = &self.writer;
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
        if let Some(spool) = &self.spool {
            match blocking(spool, Spool::status).await {
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
}

#[async_trait::async_trait]
impl Sink for InfluxOutput {
    async fn deliver(&self, run: Run<'_>) -> Delivery {
        let d = match &self.spool {
            None => self.deliver_direct(&run).await,
            Some(spool) => match spool_run(&run, spool).await {
                Ok(s) => self.replay_run(spool, s).await,
                Err((e, batches, s)) => {
                    tracing::error!("{e}");
                    self.spool_failed(e, batches, s).await
                }
            },
        };
        self.log_delivery(&d);
        d
    }

    async fn keep(&self, run: Run<'_>) -> Delivery {
        let Some(spool) = &self.spool else {
            return self.deliver(run).await;
        };
        match spool_run(&run, spool).await {
            Ok(s) => Delivery {
                total: s.total,
                spooled: s.lines,
                unencodable: s.unencodable,
                ..Delivery::default()
            },
            Err((e, batches, s)) => {
                // The spool cannot keep them: write them directly (the
                // caller waits for it), counting what is lost.
                tracing::error!(output = self.name(), "{e}; writing these points directly");
                let d = self.spool_failed(e, batches, s).await;
                self.log_delivery(&d);
                d
            }
        }
    }
}

#[async_trait::async_trait]
impl Output for InfluxOutput {
    fn name(&self) -> &str {
        InfluxOutput::name(self)
    }

    fn label(&self) -> String {
        InfluxOutput::label(self)
    }

    fn spool_dir(&self) -> &Path {
        InfluxOutput::spool_dir(self)
    }

    async fn backlog(&self) -> Option<Status> {
        InfluxOutput::backlog(self).await
    }

    async fn status(&self) -> Result<Status, SpoolError> {
        match &self.spool {
            Some(spool) => blocking(spool, Spool::status).await,
            None => Ok(Status::default()),
        }
    }

    async fn replay(&self, wait: Duration, log: bool) -> Replay {
        self.replay_logged(wait, log).await
    }

    async fn write_self_metrics(
        &self,
        backlog: Option<&Status>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), WriteError> {
        InfluxOutput::write_self_metrics(self, backlog, now).await
    }
}

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

/// Says which records of `seg` a replay resumes part-way (`pos`: the
/// lines of each delivered before an interruption).
fn log_resumed(seg: &Segment, pos: &[usize]) {
    for (rec, &pos) in seg.records.iter().zip(pos) {
        if pos > 0 {
            tracing::info!(
                "resuming {} of {} after its first {pos} lines, delivered before an interruption",
                rec.label,
                seg.name
            );
        }
    }
}

/// What is left of a run's segment of `lines` lines: what the spool says
/// (`pending`), or when it cannot be read (its error noted in `errors`),
/// the lines less those this process wrote and dead-lettered.
fn left_of_run(
    pending: Result<usize, SpoolError>,
    lines: usize,
    (written, dead_lettered): (usize, usize),
    errors: &mut Vec<String>,
) -> usize {
    pending.unwrap_or_else(|e| {
        errors.push(e.to_string());
        lines.saturating_sub(written + dead_lettered)
    })
}

/// The write-ahead step: appends a run's points and self-metrics to the
/// spool (`fsync`ed, on a blocking thread) before any write is attempted,
/// so that whatever happens to the write (a hung InfluxDB, SIGTERM, a
/// crash) nothing collected is lost. On failure, the batches to send
/// directly.
async fn spool_run(
    run: &Run<'_>,
    spool: &Arc<Spool>,
) -> Result<Spooled, (SpoolError, Vec<Batch>, Spooled)> {
    let mut d = Delivery::default();
    let (batches, counts) = encode_parts(run, &mut d);
    let mut out = Spooled {
        unencodable: d.unencodable,
        ..Spooled::default()
    };
    let make: Option<Arc<SelfMetrics>> = run.self_metrics.clone().filter(|_| !run.parts.is_empty());
    out.total = batches.iter().map(|b| b.lines.len()).sum::<usize>()
        + make.as_ref().map_or(0, |m| m(&counts, 0).len());
    let appended = {
        let (batches, counts) = (batches.clone(), counts.clone());
        let report = make.clone().map(|m| {
            Box::new(move |dropped: u64| self_batch(m.as_ref(), &counts, dropped))
                as Box<dyn Fn(u64) -> Batch + Send>
        });
        blocking(spool, move |s| {
            s.append_reporting(
                &batches,
                report.as_deref().map(|f| f as &dyn Fn(u64) -> Batch),
            )
        })
        .await
    };
    match appended {
        Ok(a) => {
            out.segment = a.segment;
            out.lines = a.points;
            Ok(out)
        }
        Err(e) => {
            let mut all = batches;
            if let Some(m) = make {
                all.push(self_batch(m.as_ref(), &counts, 0));
            }
            Err((e, all, out))
        }
    }
}

impl InfluxOutput {
    /// Delivery after the run went to the spool: the spool replayed, and
    /// what became of the run's own segment.
    async fn replay_run(&self, spool: &Arc<Spool>, s: Spooled) -> Delivery {
        let mut d = Delivery {
            total: s.total,
            unencodable: s.unencodable,
            ..Delivery::default()
        };
        // Quiet: the delivery says what it wrote, once.
        let r = self.replay_logged(REPLAY_WAIT, false).await;
        let (mine_written, mine_dead) = s
            .segment
            .as_ref()
            .and_then(|seg| r.segments.iter().find(|x| &x.0 == seg))
            .map_or((0, 0), |x| (x.1, x.2));
        // What is left of the run's segment: another process replaying at
        // the same time may have written part of it.
        let left = match s.segment.clone() {
            Some(seg) => left_of_run(
                blocking(spool, move |sp| sp.pending_points(&seg)).await,
                s.lines,
                (mine_written, mine_dead),
                &mut d.spool_errors,
            ),
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
        d
    }

    /// Delivery when the spool could not take the run: sent directly.
    async fn spool_failed(&self, e: SpoolError, batches: Vec<Batch>, s: Spooled) -> Delivery {
        let mut d = Delivery {
            unencodable: s.unencodable,
            spool_errors: vec![e.to_string()],
            ..Delivery::default()
        };
        self.send_direct(batches, &mut d).await;
        d
    }

    /// Delivery without a spool: the run's batches sent directly.
    async fn deliver_direct(&self, run: &Run<'_>) -> Delivery {
        let mut d = Delivery::default();
        let (mut batches, counts) = encode_parts(run, &mut d);
        if let Some(make) = run.self_metrics.as_ref().filter(|_| !run.parts.is_empty()) {
            batches.push(self_batch(make.as_ref(), &counts, 0));
        }
        self.send_direct(batches, &mut d).await;
        d
    }

    /// Sends `batches` one by one until InfluxDB cannot take points; what
    /// it refuses goes to the dead letters (when there is a spool), what
    /// is left is lost.
    async fn send_direct(&self, batches: Vec<Batch>, d: &mut Delivery) {
        let mut down: Option<WriteError> = None;
        let mut pending: Vec<Batch> = Vec::new();
        for b in batches.into_iter().filter(|b| !b.lines.is_empty()) {
            d.total += b.lines.len();
            if down.is_some() {
                pending.push(b);
                continue;
            }
            let report = self.writer.send(&b.lines).await;
            d.written += report.written;
            if let Some((lines, message)) = report.refused_batch() {
                self.dead_letter(&b.label, lines, &message, d).await;
            }
            if let Some((lines, e)) = report.kept {
                down = Some(e.clone());
                d.error = Some(e);
                pending.push(Batch {
                    label: b.label,
                    lines,
                });
            }
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
                self.label()
            );
        }
    }

    /// Puts refused lines in the dead-letter file (lost without a spool).
    async fn dead_letter(&self, label: &str, lines: Vec<String>, e: &str, d: &mut Delivery) {
        let output = self.label();
        let n = lines.len();
        let Some(spool) = &self.spool else {
            d.lost += n;
            tracing::error!(
                "{output}: {n} points of {label} are LOST: refused ({e}) and there is no usable spool for the dead-letter file"
            );
            return;
        };
        let (l, m) = (label.to_owned(), e.to_owned());
        match blocking(spool, move |s| s.dead_letter(&l, &lines, &m)).await {
            Ok(()) => {
                d.dead_lettered += n;
                tracing::error!(
                    "{output} refused {n} points of {label} ({e}); they are in the dead-letter file {}",
                    spool.dead_letter_path().display()
                );
            }
            Err(se) => {
                d.lost += n;
                tracing::error!(
                    "{output}: {n} points of {label} are LOST: refused ({e}) and the dead-letter file cannot be written: {se}"
                );
                d.spool_errors.push(se.to_string());
            }
        }
    }

    /// Logs what a delivery did, once.
    fn log_delivery(&self, d: &Delivery) {
        for e in &d.unencodable {
            tracing::error!("not written: {e}");
        }
        if d.spooled > 0 {
            match &d.error {
                Some(e) => tracing::warn!(
                    points = d.spooled,
                    "{}: cannot take these points now ({e}); they are kept in the spool for a later write",
                    self.label()
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
                self.label(),
                d.written,
                self.writer.url(),
                if d.replayed > 0 {
                    format!(" and {} kept in the spool by earlier runs", d.replayed)
                } else {
                    String::new()
                }
            );
        }
    }
}

/// Where the replay of one segment is: how far each record got.
struct SegmentReplay {
    /// Lines of each record delivered (or dead-lettered) so far.
    pos: Vec<usize>,
    /// The progress marker's entries.
    progress: Vec<Progress>,
    /// Records done, and the one left part-way (its lines still to write).
    done: Vec<u32>,
    partial: Option<(u32, Vec<String>)>,
    written: usize,
    dead: usize,
}

impl SegmentReplay {
    fn new(seg: &Segment) -> SegmentReplay {
        SegmentReplay {
            pos: seg
                .records
                .iter()
                .zip(&seg.delivered)
                .map(|(rec, &n)| n.min(rec.lines.len()))
                .collect(),
            // After every write, so that a process killed in the middle of
            // a record resumes after its last delivered lines.
            progress: seg
                .records
                .iter()
                .zip(&seg.delivered)
                .filter(|(_, n)| **n > 0)
                .map(|(rec, &lines)| Progress {
                    id: rec.id,
                    fingerprint: rec.fingerprint(),
                    lines,
                })
                .collect(),
            done: Vec::new(),
            partial: None,
            written: 0,
            dead: 0,
        }
    }

    /// The records from `first` on fully delivered are done.
    fn sweep(&mut self, seg: &Segment, first: &mut usize, r: &mut Replay) {
        while *first < seg.records.len() && self.pos[*first] == seg.records[*first].lines.len() {
            self.done.push(seg.records[*first].id);
            r.records += 1;
            *first += 1;
        }
    }

    /// Record `i` of `seg` delivered up to line `to`.
    fn advance(&mut self, seg: &Segment, i: usize, to: usize) {
        let rec = &seg.records[i];
        self.pos[i] = to;
        match self.progress.iter_mut().find(|p| p.id == rec.id) {
            Some(p) => p.lines = to,
            None => self.progress.push(Progress {
                id: rec.id,
                fingerprint: rec.fingerprint(),
                lines: to,
            }),
        }
    }
}

/// One piece of a combined write: record `rec`'s lines `from..to`.
#[derive(Debug, Clone, Copy)]
struct Piece {
    rec: usize,
    from: usize,
    to: usize,
}

/// The next write of a segment: pieces of its records from record
/// `first` on, `batch` lines at most in all.
fn next_pieces(seg: &Segment, pos: &[usize], first: usize, batch: usize) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut room = batch;
    for (i, rec) in seg.records.iter().enumerate().skip(first) {
        let left = rec.lines.len() - pos[i];
        if left == 0 {
            continue;
        }
        if room == 0 {
            break;
        }
        let n = left.min(room);
        pieces.push(Piece {
            rec: i,
            from: pos[i],
            to: pos[i] + n,
        });
        room -= n;
    }
    pieces
}

/// Whether a replay goes on after a step.
enum Step {
    Next,
    Stop,
}

impl InfluxOutput {
    /// Writes the spool's records, oldest first, removing each only after
    /// InfluxDB accepted it (or refused it for good: dead-letter file).
    /// Stops at the first write InfluxDB cannot take now. Waits up to
    /// `wait` for another process's replay to finish; gives up (`busy`)
    /// after.
    pub async fn replay(&self, wait: Duration) -> Replay {
        self.replay_logged(wait, true).await
    }

    /// The spool's replay lock, waiting up to `wait`; `None` (and why in
    /// `r`) when it cannot be had.
    async fn replay_lock(
        spool: &Arc<Spool>,
        wait: Duration,
        r: &mut Replay,
    ) -> Option<crate::sinks::spool::FileLock> {
        let deadline = Instant::now() + wait;
        loop {
            match blocking(spool, Spool::try_replay_lock).await {
                Ok(Some(g)) => return Some(g),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(None) => {
                    tracing::debug!("another process is replaying the spool");
                    r.busy = true;
                    return None;
                }
                Err(e) => {
                    tracing::error!("{e}");
                    r.error = Some(e);
                    return None;
                }
            }
        }
    }

    /// [`InfluxOutput::replay`], saying what it wrote (`log`) or leaving
    /// that to the caller.
    async fn replay_logged(&self, wait: Duration, log: bool) -> Replay {
        let mut r = Replay::default();
        let Some(spool) = &self.spool else {
            return r;
        };
        let Some(_guard) = Self::replay_lock(spool, wait, &mut r).await else {
            return r;
        };
        let mut seen = std::collections::HashSet::new();
        loop {
            let seg = match blocking(spool, Spool::oldest_segment).await {
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
            let st = self.replay_segment(spool, &seg, &mut r).await;
            r.segments.push((seg.name.clone(), st.written, st.dead));
            let name = seg.name.clone();
            let (done, partial) = (st.done, st.partial);
            if let Err(e) = blocking(spool, move |s| s.finish_segment(&name, &done, partial)).await
            {
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
                self.label(),
                r.written,
                self.writer.url()
            );
        }
        r
    }

    /// Replays one segment: its records' lines written together, at most
    /// `batch_size` lines a request; when InfluxDB refuses such a combined
    /// write (400: a bad line, a field type conflict; 413), its records
    /// are written one by one, so that only the refused record's lines go
    /// to the dead letters, under its label.
    async fn replay_segment(
        &self,
        spool: &Arc<Spool>,
        seg: &Segment,
        r: &mut Replay,
    ) -> SegmentReplay {
        let mut st = SegmentReplay::new(seg);
        log_resumed(seg, &st.pos);
        let mut first = 0;
        loop {
            st.sweep(seg, &mut first, r);
            let pieces = next_pieces(seg, &st.pos, first, self.writer.batch_size());
            if pieces.is_empty() {
                return st;
            }
            let step = if pieces.len() > 1 {
                self.write_combined(seg, &pieces, &mut st, r).await
            } else {
                None
            };
            let step = match step {
                Some(step) => step,
                None => self.write_pieces(spool, seg, &pieces, &mut st, r).await,
            };
            if let Step::Stop = step {
                st.sweep(seg, &mut first, r);
                return st;
            }
            let (name, progress) = (seg.name.clone(), st.progress.clone());
            if let Err(e) = blocking(spool, move |s| s.record_progress(&name, &progress)).await {
                // Only a later resend of what this replay wrote is at
                // stake: harmless for InfluxDB.
                tracing::warn!("{e}");
            }
        }
    }

    /// Several records' pieces in one request. `None` when InfluxDB
    /// refused it for good: the caller writes them one by one.
    async fn write_combined(
        &self,
        seg: &Segment,
        pieces: &[Piece],
        st: &mut SegmentReplay,
        r: &mut Replay,
    ) -> Option<Step> {
        let lines: Vec<String> = pieces
            .iter()
            .flat_map(|p| seg.records[p.rec].lines[p.from..p.to].iter().cloned())
            .collect();
        match self.writer.write_retrying(&lines).await {
            Ok(()) => {
                for p in pieces {
                    st.advance(seg, p.rec, p.to);
                }
                r.written += lines.len();
                st.written += lines.len();
                Some(Step::Next)
            }
            Err(e) if e.disposition() == Disposition::Refuse => {
                tracing::info!(
                    "{}: a write of {} records was refused ({e}); writing them one by one",
                    self.label(),
                    pieces.len()
                );
                None
            }
            Err(e) => {
                let first = pieces[0];
                let rec = &seg.records[first.rec];
                self.stopped(e, rec.id, rec.lines[first.from..].to_vec(), st, r);
                Some(Step::Stop)
            }
        }
    }

    /// The replay stops: InfluxDB cannot take points now.
    fn stopped(
        &self,
        e: WriteError,
        id: u32,
        left: Vec<String>,
        st: &mut SegmentReplay,
        r: &mut Replay,
    ) {
        tracing::warn!(
            "{}: the spool's replay stopped: it cannot take points now: {e}",
            self.label()
        );
        st.partial = Some((id, left));
        r.stopped = Some(e);
    }

    /// Each piece in requests of its own (a refused one narrowed down to
    /// its refused lines, which go to the dead letters).
    async fn write_pieces(
        &self,
        spool: &Arc<Spool>,
        seg: &Segment,
        pieces: &[Piece],
        st: &mut SegmentReplay,
        r: &mut Replay,
    ) -> Step {
        for p in pieces {
            let rec = &seg.records[p.rec];
            let report = self.writer.send(&rec.lines[p.from..p.to]).await;
            r.written += report.written;
            st.written += report.written;
            if let Some((lines, e)) = report.refused_batch() {
                let n = lines.len();
                let (label, m) = (rec.label.clone(), e.clone());
                match blocking(spool, move |s| s.dead_letter(&label, &lines, &m)).await {
                    Ok(()) => {
                        r.dead_lettered += n;
                        st.dead += n;
                        tracing::error!(
                            "{} refused {n} spooled points of {} ({e}); they are in the dead-letter file {}",
                            self.label(),
                            rec.label,
                            spool.dead_letter_path().display()
                        );
                    }
                    Err(se) => {
                        tracing::error!("{se}");
                        r.error = Some(se);
                        // Keep the record from this piece on: resending
                        // the piece's written lines is harmless.
                        st.partial = Some((rec.id, rec.lines[p.from..].to_vec()));
                        return Step::Stop;
                    }
                }
            }
            if let Some((mut lines, e)) = report.kept {
                lines.extend_from_slice(&rec.lines[p.to..]);
                self.stopped(e, rec.id, lines, st, r);
                return Step::Stop;
            }
            st.advance(seg, p.rec, p.to);
        }
        Step::Next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime a synchronous test drives the output's async parts on.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn what_is_left_of_a_run_is_the_spools_word_or_else_what_was_not_done() {
        let mut errors = Vec::new();
        assert_eq!(left_of_run(Ok(3), 10, (4, 1), &mut errors), 3);
        assert!(errors.is_empty());
        let unreadable = || Err(SpoolError("cannot read segment 7".into()));
        assert_eq!(left_of_run(unreadable(), 10, (4, 3), &mut errors), 3);
        assert_eq!(left_of_run(unreadable(), 10, (0, 0), &mut errors), 10);
        assert_eq!(left_of_run(unreadable(), 3, (4, 1), &mut errors), 0);
        assert_eq!(errors.len(), 3);
        assert!(errors[0].contains("cannot read segment 7"), "{errors:?}");
    }

    /// A replay resuming records part-way says so, of those alone.
    #[test]
    fn a_resumed_record_is_named_with_the_lines_delivered_before() {
        use crate::support::test_support::logged_at;
        let record = |label: &str| crate::sinks::spool::Record {
            id: 0,
            spooled_at: 0,
            dropped: 0,
            label: label.into(),
            lines: vec!["m v=1i 1".into(); 5],
        };
        let seg = Segment {
            name: "00000042.seg".into(),
            records: vec![record("alpha"), record("beta"), record("gamma")],
            delivered: vec![0, 3, 0],
        };
        let said = logged_at(tracing::Level::INFO, || log_resumed(&seg, &[0, 3, 0])).1;
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(
            said.contains("resuming beta of 00000042.seg after its first 3 lines"),
            "{said}"
        );
    }

    /// A delivery is logged once, saying what it did, and nothing when it
    /// did nothing.
    #[test]
    fn a_delivery_says_what_it_did() {
        use crate::support::test_support::logged_at;
        let writer = InfluxWriter::new(&InfluxConfig::default(), None).unwrap();
        let out = InfluxOutput::new(Arc::new(writer), None);
        let said = |d: Delivery| logged_at(tracing::Level::INFO, || out.log_delivery(&d)).1;

        assert_eq!(said(Delivery::default()), "");
        let down = said(Delivery {
            spooled: 3,
            error: Some(WriteError::Connect {
                url: "http://localhost:8086".into(),
                message: "connection refused".into(),
            }),
            ..Delivery::default()
        });
        assert!(down.contains("WARN"), "{down}");
        assert!(
            down.contains("points=3") && down.contains("cannot take these points now"),
            "{down}"
        );
        let busy = said(Delivery {
            spooled: 2,
            ..Delivery::default()
        });
        assert!(
            busy.contains("another process is writing the spool"),
            "{busy}"
        );
        let written = said(Delivery {
            written: 5,
            ..Delivery::default()
        });
        assert!(written.contains("wrote 5 points to"), "{written}");
        assert!(!written.contains("earlier runs"), "{written}");
        let replayed = said(Delivery {
            replayed: 4,
            ..Delivery::default()
        });
        assert!(
            replayed.contains("wrote 0 points to")
                && replayed.contains("and 4 kept in the spool by earlier runs"),
            "{replayed}"
        );
        assert_eq!(written.lines().count() + replayed.lines().count(), 2);
    }

    /// Lines refused for good go to the spool's dead-letter file; without
    /// a spool, or when that file cannot be written, they are counted lost.
    #[test]
    fn refused_lines_are_dead_lettered_or_counted_lost() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let spool = Arc::new(Spool::open(&spool_dir, 1 << 20).unwrap());
        let writer = Arc::new(InfluxWriter::new(&InfluxConfig::default(), None).unwrap());
        let lines = || {
            vec![
                "alpha_m v=\"x\" 1".to_owned(),
                "alpha_m v=\"y\" 2".to_owned(),
            ]
        };
        let refuse = |out: &InfluxOutput, d: &mut Delivery| {
            rt.block_on(out.dead_letter("alpha", lines(), "field type conflict", d));
        };

        let with_spool = InfluxOutput::new(writer.clone(), Some(spool.clone()));
        let mut d = Delivery::default();
        refuse(&with_spool, &mut d);
        refuse(&with_spool, &mut d);
        assert_eq!((d.dead_lettered, d.lost), (4, 0), "{d:?}");
        assert!(d.spool_errors.is_empty(), "{d:?}");
        let text = std::fs::read_to_string(spool.dead_letter_path()).unwrap();
        assert_eq!(text.matches("alpha_m v=\"y\" 2").count(), 2, "{text}");

        let mut d = Delivery::default();
        refuse(&InfluxOutput::new(writer.clone(), None), &mut d);
        assert_eq!((d.dead_lettered, d.lost), (0, 2), "{d:?}");

        std::fs::remove_dir_all(&spool_dir).unwrap();
        std::fs::write(&spool_dir, "not a directory").unwrap();
        let mut d = Delivery::default();
        refuse(&with_spool, &mut d);
        refuse(&with_spool, &mut d);
        assert_eq!((d.dead_lettered, d.lost), (0, 4), "{d:?}");
        assert_eq!(d.spool_errors.len(), 2, "{d:?}");
    }

    /// Sent directly without a spool: points InfluxDB cannot take now are
    /// lost and the log says how many, and says nothing of it otherwise.
    #[test]
    fn points_lost_on_the_direct_path_are_logged_and_only_then() {
        use crate::support::test_support::logged;
        let rt = runtime();
        // A loopback port nothing listens on: the listener is gone at once.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let cfg = InfluxConfig {
            url: format!("http://{dead}").as_str().into(),
            ..InfluxConfig::default()
        };
        let writer = InfluxWriter::new(&cfg, None).unwrap().with_retry_policy(
            crate::support::retry::RetryPolicy {
                retries: 0,
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
                jitter: false,
            },
        );
        let out = InfluxOutput::new(Arc::new(writer), None);
        let send = |batches: Vec<Batch>| {
            logged(|| {
                rt.block_on(async {
                    let mut d = Delivery::default();
                    out.send_direct(batches, &mut d).await;
                    d
                })
            })
        };
        let (d, log) = send(Vec::new());
        assert_eq!((d.total, d.lost), (0, 0), "{d:?}");
        assert!(!log.contains("LOST"), "{log}");
        let batch = Batch {
            label: "alpha".into(),
            lines: vec!["alpha_m v=1i 1".into(); 3],
        };
        let (d, log) = send(vec![batch]);
        assert_eq!((d.total, d.lost), (3, 3), "{d:?}");
        assert!(log.contains("3 points are LOST"), "{log}");
    }
}
