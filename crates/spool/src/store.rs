//! The segment store: the spool directory, its segments and their
//! progress markers, appends with the size limit, replays' reads and
//! rewrites.

use crate::dead_letter::DEAD_LETTER_FILE;
use crate::files::{fsync_dir, kind_of, replace_file};
use crate::listing::{Listed, SEGMENT_SUFFIX, TMP_SUFFIX};
use crate::lock::FileLock;
use crate::progress::{PROGRESS_SUFFIX, Progress, delivered_of, progress_path, read_marker};
use crate::status::{Status, tally};
use crate::summary::{Entry, Sketch, Summary};
use crate::{Batch, MAX_RECORD_BYTES, MAX_RECORD_LINES, Record, SpoolError, io_err, parse_segment};
use crate::{dead_letter, dropped};
use chrono::Utc;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const LOCK_FILE: &str = ".lock";
const REPLAY_LOCK_FILE: &str = ".replay.lock";
/// Entries moved aside because they cannot be read as segments.
pub const BAD_SUFFIX: &str = ".bad";

/// What an append did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendReport {
    /// Records and points now on disk.
    pub records: usize,
    pub points: usize,
    /// Oldest records dropped to stay under the size limit.
    pub dropped_records: usize,
    pub dropped_points: usize,
    /// The new segment's name (`None` when nothing was written).
    pub segment: Option<String>,
}

/// A segment read for replay.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub records: Vec<Record>,
    /// For each record, how many of its first lines an interrupted replay
    /// already delivered (its progress marker; 0 without one).
    pub delivered: Vec<usize>,
}

/// A record of an append, with its frame.
struct Framed {
    record: Record,
    bytes: Vec<u8>,
}

/// A segment being replayed: its name, its file (size, inode) and the
/// sketch of its records.
type Replaying = (String, (u64, u64), Vec<Sketch>);

/// The spool directory. Every method blocks (file locks, `fsync`): see the
/// crate's documentation.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    counter: AtomicU64,
    /// The sketch of the segment last read for replay, with its size and
    /// inode: what recording its progress updates the summary from.
    replaying: Mutex<Option<Replaying>>,
}

impl Spool {
    /// Opens (creating it, mode 0700, when missing) the spool directory.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(dir, "cannot create the directory", e))?;
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            counter: AtomicU64::new(0),
            replaying: Mutex::new(None),
        };
        // Check now that we may write there, rather than when it matters,
        // and remove the temporary files a crash left (listing does).
        let guard = spool.lock()?;
        spool.segments()?;
        drop(guard);
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn lock(&self) -> Result<FileLock, SpoolError> {
        let p = self.dir.join(LOCK_FILE);
        FileLock::exclusive(&p).map_err(|e| io_err(&p, "cannot lock the spool", e))
    }

    /// The replay lock, or `None` when another process replays.
    pub fn try_replay_lock(&self) -> Result<Option<FileLock>, SpoolError> {
        let p = self.dir.join(REPLAY_LOCK_FILE);
        FileLock::try_exclusive(&p).map_err(|e| io_err(&p, "cannot lock the spool for replay", e))
    }

    /// Segments, oldest first, with their sizes and inodes. Removes
    /// temporary files left by an interrupted write (with the lock held, no
    /// write is under way: any temporary file is a crash's leftover, and
    /// the segment it was to become, or replace, is whole or absent), and
    /// the progress markers of segments that are gone. Call with the lock
    /// held.
    pub(crate) fn segments(&self) -> Result<Vec<Listed>, SpoolError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, "cannot list", e))?;
        let mut out = Vec::new();
        let mut markers = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| io_err(&self.dir, "cannot list", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TMP_SUFFIX) {
                self.remove_leftover(&entry.path(), &name);
                continue;
            }
            if let Some(seg) = name.strip_suffix(PROGRESS_SUFFIX) {
                markers.push(seg.to_owned());
                continue;
            }
            if !name.ends_with(SEGMENT_SUFFIX) {
                continue;
            }
            // `DirEntry::metadata` does not follow symbolic links: a
            // directory, FIFO, socket or link named like a segment is never
            // opened, it is moved aside.
            match entry.metadata() {
                Ok(m) if m.file_type().is_file() => out.push(Listed {
                    name,
                    len: m.len(),
                    ino: m.ino(),
                }),
                Ok(m) => self.move_aside(&name, &format!("not a regular file ({})", kind_of(&m))),
                Err(e) => self.move_aside(&name, &format!("cannot stat it: {e}")),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        // The marker of a segment that is gone (replayed, dropped at the
        // size limit, set aside) says nothing any more.
        for seg in markers {
            if out.binary_search_by(|l| l.name.as_str().cmp(&seg)).is_err() {
                let _ = fs::remove_file(self.progress_path(&seg));
            }
        }
        Ok(out)
    }

    fn remove_leftover(&self, path: &Path, name: &str) {
        match fs::remove_file(path) {
            Ok(()) => tracing::warn!(
                spool = %self.dir.display(),
                "removed {name}, left by an interrupted write (its append was never acknowledged)"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                spool = %self.dir.display(),
                "cannot remove {name}, left by an interrupted write: {e}"
            ),
        }
    }

    pub(crate) fn progress_path(&self, name: &str) -> PathBuf {
        progress_path(&self.dir, name)
    }

    /// Records how far the replay of segment `name` got (see
    /// [`Progress`]): written whole (temporary name, `fsync`, rename,
    /// directory `fsync`) before it returns. Nothing is written when the
    /// segment is gone.
    pub fn record_progress(&self, name: &str, entries: &[Progress]) -> Result<(), SpoolError> {
        let _guard = self.lock()?;
        let file = match fs::symlink_metadata(self.dir.join(name)) {
            Ok(m) if m.file_type().is_file() => (m.len(), m.ino()),
            _ => return Ok(()),
        };
        let path = self.progress_path(name);
        let tmp = self
            .dir
            .join(format!(".{name}{PROGRESS_SUFFIX}{TMP_SUFFIX}"));
        replace_file(&path, &tmp, Progress::encode(entries).as_bytes(), true)
            .map_err(|e| io_err(&path, "cannot write the progress marker", e))?;
        fsync_dir(&self.dir)?;
        let cached = self.replaying.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(n, f, _)| n == name && *f == file)
                .map(|(_, _, sketches)| sketches.clone())
        });
        let sketches = match cached {
            Some(s) => Some(s),
            None => self.read_segment(name)?.map(|r| Sketch::all(&r)),
        };
        let mut sum = Summary::load(&self.dir);
        self.summarize(&mut sum, name, sketches.as_deref());
        sum.save(&self.dir);
        Ok(())
    }

    fn new_segment_name(&self, existing: &[Listed]) -> String {
        let last = existing
            .iter()
            .filter_map(|l| l.name.split('-').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let now = u64::try_from(Utc::now().timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
        let seq = now.max(last.saturating_add(1));
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{seq:020}-{}-{n}{SEGMENT_SUFFIX}", std::process::id())
    }

    /// Reads a segment (lock held). A segment whose checksum fails anywhere
    /// is set aside (`NAME.bad`, with an error); an empty segment is
    /// removed. `None` when the segment no longer exists or was set aside.
    pub(crate) fn read_segment(&self, name: &str) -> Result<Option<Vec<Record>>, SpoolError> {
        let path = self.dir.join(name);
        let mut data = Vec::new();
        // O_NONBLOCK: a FIFO put there after the listing cannot block the
        // open (the lock is held); O_NOFOLLOW: a symbolic link is refused.
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&path);
        let read = match opened {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => Err(format!("cannot open it: {e}")),
            Ok(mut f) => match f.metadata() {
                Ok(m) if !m.file_type().is_file() => {
                    Err(format!("not a regular file ({})", kind_of(&m)))
                }
                Err(e) => Err(format!("cannot stat it: {e}")),
                Ok(_) => f
                    .read_to_end(&mut data)
                    .map(drop)
                    .map_err(|e| format!("cannot read it: {e}")),
            },
        };
        if let Err(why) = read {
            self.move_aside(name, &why);
            return Ok(None);
        }
        let parsed = parse_segment(&data);
        if !parsed.damage.is_empty() {
            self.move_aside(
                name,
                &format!(
                    "{} damaged bytes (checksum or framing errors) in {} places, beside {} valid records",
                    parsed.damaged_bytes(),
                    parsed.damage.len(),
                    parsed.records.len()
                ),
            );
            return Ok(None);
        }
        let records: Vec<Record> = parsed.records.into_iter().map(|(_, r)| r).collect();
        if records.is_empty() {
            self.remove(name)?;
        }
        Ok(Some(records))
    }

    /// A spool entry named like a segment that cannot be read as one (a
    /// directory, a FIFO, a link, an unreadable file, a failed checksum) is
    /// renamed `NAME.bad`, with an error, so that it never stops a flush, a
    /// status or the size-limit drop again; the other segments carry on.
    fn move_aside(&self, name: &str, why: &str) {
        let from = self.dir.join(name);
        let mut to = self.dir.join(format!("{name}{BAD_SUFFIX}"));
        let mut n = 0;
        while fs::symlink_metadata(&to).is_ok() {
            n += 1;
            to = self.dir.join(format!("{name}{BAD_SUFFIX}.{n}"));
        }
        match fs::rename(&from, &to) {
            Ok(()) => tracing::error!(
                spool = %self.dir.display(),
                "{name}: {why}, so it cannot be a spool segment; moved aside to {} and skipped (look at it, then remove it)",
                to.display()
            ),
            Err(e) => tracing::error!(
                spool = %self.dir.display(),
                "{name}: {why}, so it cannot be a spool segment; skipped, and it cannot be moved aside ({e}): remove it"
            ),
        }
    }

    fn remove(&self, name: &str) -> Result<(), SpoolError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, "cannot remove", e)),
        }
    }

    /// Writes a segment whole (lock held): to a temporary name, synced,
    /// renamed into place, the directory synced. A crash leaves the old
    /// content (or no segment) and a temporary file removed at the next
    /// listing, never a partial segment.
    fn write_segment(&self, name: &str, bytes: &[u8]) -> Result<(), SpoolError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}{TMP_SUFFIX}"));
        replace_file(&path, &tmp, bytes, true).map_err(|e| io_err(&path, "cannot write", e))?;
        fsync_dir(&self.dir)
    }

    /// Replaces a segment's content atomically (lock held).
    fn rewrite(&self, name: &str, records: &[Record]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return self.remove(name);
        }
        let path = self.dir.join(name);
        let mut buf = Vec::new();
        for r in records {
            buf.extend(r.encode().ok_or_else(|| {
                SpoolError(format!(
                    "spool {}: record too large to frame",
                    path.display()
                ))
            })?);
        }
        self.write_segment(name, &buf)
    }

    /// Sets segment `name`'s entry in `sum` from the sketches of its
    /// `records` as now on disk (lock held); `None`, or a segment that is
    /// gone: no entry.
    fn summarize(&self, sum: &mut Summary, name: &str, records: Option<&[Sketch]>) {
        let meta = fs::symlink_metadata(self.dir.join(name));
        match (records, meta) {
            (Some(records), Ok(m)) if !records.is_empty() && m.file_type().is_file() => {
                let marker = read_marker(&self.dir, name);
                let entry = Entry::of(m.len(), m.ino(), &marker, records);
                sum.segments.insert(name.to_owned(), entry);
            }
            _ => {
                sum.segments.remove(name);
            }
        }
    }

    /// Appends batches (split into records of at most
    /// [`MAX_RECORD_LINES`] lines) as one new segment, `fsync`ed with the
    /// directory before returning. At the size limit the oldest records are
    /// dropped first (logged, and counted: [`Spool::take_dropped`]).
    pub fn append(&self, batches: &[Batch]) -> Result<AppendReport, SpoolError> {
        self.append_reporting(batches, None)
    }

    /// [`Spool::append`], plus the batch `report(n)` returns, where `n` is
    /// the count of points dropped at the size limit not yet reported: the
    /// self-metrics that carry it. The count moves from the counter to that
    /// batch's first record ([`Record::dropped`]) under the lock, in the
    /// same append, so it is never reported twice nor lost; and when a
    /// record carrying a count is dropped at the size limit later, its
    /// count goes back to the counter.
    pub fn append_reporting(
        &self,
        batches: &[Batch],
        report: Option<&dyn Fn(u64) -> Batch>,
    ) -> Result<AppendReport, SpoolError> {
        let _guard = self.lock()?;
        let carried = if report.is_some() {
            dropped::read(&self.dir)
        } else {
            0
        };
        let extra = report.map(|f| (f(carried), carried));
        let mut records = self.frame(batches, extra.as_ref())?;
        let mut report = AppendReport::default();
        if records.is_empty() {
            return Ok(report);
        }
        let placed: u64 = records.iter().map(|f| f.record.dropped).sum();
        let mut sum = Summary::load(&self.dir);
        self.make_room(&mut records, &mut report, &mut sum)?;
        if !records.is_empty() {
            let name = self.new_segment_name(&self.segments()?);
            let buf: Vec<u8> = records
                .iter()
                .flat_map(|f| f.bytes.iter().copied())
                .collect();
            self.write_segment(&name, &buf)?;
            let kept: Vec<Record> = records.into_iter().map(|f| f.record).collect();
            self.summarize(&mut sum, &name, Some(&Sketch::all(&kept)));
            report.records = kept.len();
            report.points = kept.iter().map(|r| r.lines.len()).sum();
            report.segment = Some(name);
        }
        sum.save(&self.dir);
        // The count now travels in the segment (or went back to the counter
        // with the record dropped that carried it): take it off the counter
        // (drops added by this very append stay for the next report).
        if placed > 0 {
            dropped::write(&self.dir, dropped::read(&self.dir).saturating_sub(placed))?;
        }
        Ok(report)
    }

    /// The records of an append, framed: each batch split into records,
    /// `extra` last, its first record carrying the drop count given.
    fn frame(
        &self,
        batches: &[Batch],
        extra: Option<&(Batch, u64)>,
    ) -> Result<Vec<Framed>, SpoolError> {
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let mut out = Vec::new();
        let mut id: u32 = 0;
        let all = batches
            .iter()
            .map(|b| (b, 0))
            .chain(extra.map(|(b, n)| (b, *n)));
        for (b, mut dropped) in all {
            for chunk in chunk_lines(&b.lines) {
                let record = Record {
                    id,
                    spooled_at: now,
                    dropped: std::mem::take(&mut dropped),
                    label: b.label.clone(),
                    lines: chunk.to_vec(),
                };
                let bytes = record.encode().ok_or_else(|| {
                    SpoolError(format!(
                        "spool {}: a batch of {} is too large to frame",
                        self.dir.display(),
                        b.label
                    ))
                })?;
                out.push(Framed { record, bytes });
                id = id.wrapping_add(1);
            }
        }
        Ok(out)
    }

    /// Stays under the size limit with `records` to add: drops the oldest
    /// records on disk first, then the oldest of `records` (lock held).
    /// The drops are logged and counted, with the counts the dropped
    /// records carried.
    fn make_room(
        &self,
        records: &mut Vec<Framed>,
        report: &mut AppendReport,
        sum: &mut Summary,
    ) -> Result<(), SpoolError> {
        let existing = self.segments()?;
        let new_bytes: u64 = records.iter().map(|f| f.bytes.len() as u64).sum();
        let total: u64 = existing.iter().map(|l| l.len).sum();
        if total + new_bytes <= self.max_bytes {
            return Ok(());
        }
        let mut excess = total + new_bytes - self.max_bytes;
        let mut given_back = 0u64;
        for l in &existing {
            if excess == 0 {
                break;
            }
            let freed = self.drop_oldest_of(l, excess, report, &mut given_back, sum)?;
            excess = excess.saturating_sub(freed);
        }
        // The new records alone are over the limit: keep the newest.
        let mut k = 0;
        while excess > 0 && k < records.len() {
            let r = &records[k];
            excess = excess.saturating_sub(r.bytes.len() as u64);
            report.dropped_records += 1;
            report.dropped_points += r.record.lines.len();
            given_back += r.record.dropped;
            k += 1;
        }
        records.drain(..k);
        if report.dropped_points > 0 {
            tracing::error!(
                spool = %self.dir.display(),
                limit_bytes = self.max_bytes,
                "spool full: dropped the {} oldest points ({} records) to keep the newest; raise [spool] max_size or fix the InfluxDB connection",
                report.dropped_points,
                report.dropped_records
            );
            dropped::add(
                &self.dir,
                (report.dropped_points as u64).saturating_add(given_back),
            )?;
        }
        Ok(())
    }

    /// Drops the oldest records of segment `l`, at least `excess` bytes'
    /// worth (the whole segment when it is no larger), and says how many
    /// bytes that freed.
    fn drop_oldest_of(
        &self,
        l: &Listed,
        excess: u64,
        report: &mut AppendReport,
        given_back: &mut u64,
        sum: &mut Summary,
    ) -> Result<u64, SpoolError> {
        let Some(recs) = self.read_segment(&l.name)? else {
            // Gone, or set aside: its bytes no longer count either way.
            sum.segments.remove(&l.name);
            return Ok(l.len);
        };
        let mut freed = 0u64;
        let mut k = recs.len();
        if l.len > excess {
            k = 0;
            while k < recs.len() && freed < excess {
                freed += recs[k].encode().map_or(0, |b| b.len() as u64);
                k += 1;
            }
        }
        report.dropped_records += k;
        report.dropped_points += recs[..k].iter().map(|r| r.lines.len()).sum::<usize>();
        *given_back += recs[..k].iter().map(|r| r.dropped).sum::<u64>();
        if k == recs.len() {
            self.remove(&l.name)?;
            sum.segments.remove(&l.name);
            return Ok(l.len);
        }
        self.rewrite(&l.name, &recs[k..])?;
        self.summarize(sum, &l.name, Some(&Sketch::all(&recs[k..])));
        Ok(freed)
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.dir.join(DEAD_LETTER_FILE)
    }

    /// Appends a refused batch, after a header line with the server's
    /// message, to the dead-letter file (line protocol with `#` comments:
    /// it can be fixed and written again by hand).
    pub fn dead_letter(
        &self,
        label: &str,
        lines: &[String],
        message: &str,
    ) -> Result<(), SpoolError> {
        let _guard = self.lock()?;
        dead_letter::append(&self.dir, label, lines, message)
    }

    /// The points dropped at the size limit since the last call (for the
    /// self-metrics), resetting the counter.
    pub fn take_dropped(&self) -> Result<u64, SpoolError> {
        let _guard = self.lock()?;
        let n = dropped::read(&self.dir);
        if n > 0 {
            dropped::write(&self.dir, 0)?;
        }
        Ok(n)
    }

    /// The oldest segment that still holds records, repaired.
    pub fn oldest_segment(&self) -> Result<Option<Segment>, SpoolError> {
        let _guard = self.lock()?;
        for l in self.segments()? {
            if let Some(records) = self.read_segment(&l.name)?
                && !records.is_empty()
            {
                let delivered = delivered_of(&records, &read_marker(&self.dir, &l.name).entries);
                if let Ok(mut c) = self.replaying.lock() {
                    *c = Some((l.name.clone(), (l.len, l.ino), Sketch::all(&records)));
                }
                return Ok(Some(Segment {
                    name: l.name,
                    records,
                    delivered,
                }));
            }
        }
        Ok(None)
    }

    /// After a replay of `name`: removes the records whose id is in `done`,
    /// and replaces the lines of the record `partial.0` by `partial.1` (the
    /// lines still to write: the record then reports no drop, its first
    /// lines, which carried the count, being delivered). Re-reads the
    /// segment first, so records dropped at the size limit meanwhile stay
    /// dropped. The segment's progress marker goes after the rewrite: the
    /// rewritten segment holds all the progress (a crash between the two
    /// leaves a marker whose entries no longer match their records, which
    /// is void).
    pub fn finish_segment(
        &self,
        name: &str,
        done: &[u32],
        partial: Option<(u32, Vec<String>)>,
    ) -> Result<(), SpoolError> {
        let _guard = self.lock()?;
        let Some(records) = self.read_segment(name)? else {
            return Ok(());
        };
        let mut changed = false;
        let mut keep = Vec::with_capacity(records.len());
        for mut r in records {
            if done.contains(&r.id) {
                changed = true;
                continue;
            }
            if let Some((id, lines)) = &partial
                && *id == r.id
                && *lines != r.lines
            {
                r.lines = lines.clone();
                r.dropped = 0;
                changed = true;
                if r.lines.is_empty() {
                    continue;
                }
            }
            keep.push(r);
        }
        if changed {
            self.rewrite(name, &keep)?;
        }
        self.remove_progress(name)?;
        let mut sum = Summary::load(&self.dir);
        self.summarize(&mut sum, name, Some(&Sketch::all(&keep)));
        sum.save(&self.dir);
        Ok(())
    }

    /// Removes segment `name`'s progress marker (lock held).
    fn remove_progress(&self, name: &str) -> Result<(), SpoolError> {
        let path = self.progress_path(name);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, "cannot remove the progress marker", e)),
        }
    }

    /// The points still waiting in segment `name` (0 when it is gone).
    pub fn pending_points(&self, name: &str) -> Result<usize, SpoolError> {
        let _guard = self.lock()?;
        Ok(self.read_segment(name)?.map_or(0, |recs| {
            let done = delivered_of(&recs, &read_marker(&self.dir, name).entries);
            recs.iter().map(|r| r.lines.len()).sum::<usize>() - done.iter().sum::<usize>()
        }))
    }

    /// Every record waiting, oldest first.
    pub fn records(&self) -> Result<Vec<Record>, SpoolError> {
        let _guard = self.lock()?;
        let mut out = Vec::new();
        for l in self.segments()? {
            out.extend(self.read_segment(&l.name)?.unwrap_or_default());
        }
        Ok(out)
    }

    /// What waits, and since when: from the backlog summary, which is
    /// brought up to date (and rewritten) when it no longer describes a
    /// segment; only such a segment is decoded.
    pub fn status(&self) -> Result<Status, SpoolError> {
        let _guard = self.lock()?;
        let listed = self.segments()?;
        let mut sum = Summary::load(&self.dir);
        let (st, changed) = tally(&self.dir, &listed, &mut sum, |l| self.read_segment(&l.name))?;
        if changed {
            sum.save(&self.dir);
        }
        Ok(st)
    }
}

/// Splits lines into records: at most [`MAX_RECORD_LINES`] lines and
/// (unless a single line is larger) [`MAX_RECORD_BYTES`] bytes each.
pub(crate) fn chunk_lines(lines: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, l) in lines.iter().enumerate() {
        let n = l.len() + 4;
        if i > start && (i - start >= MAX_RECORD_LINES || bytes + n > MAX_RECORD_BYTES) {
            out.push(&lines[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += n;
    }
    if start < lines.len() {
        out.push(&lines[start..]);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
