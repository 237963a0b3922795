//! The durable spool: points InfluxDB could not take now, kept on disk until
//! a later run or daemon cycle writes them.
//!
//! # Layout of the spool directory
//!
//! | file | what |
//! | --- | --- |
//! | `<seq>-<pid>-<n>.seg` | a segment: the records of one append, oldest segment first by name |
//! | `dead-letter.lp` | batches InfluxDB refused (HTTP 400), each after a `# ubuntu-metrics dead letter: ...` line holding the server's message |
//! | `dropped` | points dropped at the size limit and not yet reported in the self-metrics |
//! | `<seq>-<pid>-<n>.seg.progress` | the delivery progress of a segment being replayed: per record, the lines already delivered (see below) |
//! | `.<seq>-<pid>-<n>.seg.tmp` | a segment being written; renamed into place once synced (a leftover from a crash is removed at the next open) |
//! | `NAME.bad` | a segment whose checksum failed, or an entry that is not a file, set aside with an error |
//! | `.lock` | file lock taken for every change on disk (short; never held across a network request) |
//! | `.replay.lock` | file lock of the one process replaying the spool |
//!
//! # Records
//!
//! A segment is a sequence of records, each framed and checksummed:
//!
//! ```text
//! "UMSP" | payload length (u32 LE) | CRC-32 of (length bytes ++ payload) (u32 LE) | payload
//! payload = version 1 (u8) | id (u32) | spooled at, ns since the epoch (i64) |
//!           label length (u16) | label | line count (u32) | (line length (u32) | line)*
//! ```
//!
//! A segment is never written in place: every write (an append, or a
//! replay's rewrite) goes to a temporary name in the spool directory, is
//! `fsync`ed, renamed into place, and the directory `fsync`ed, all under
//! `.lock`, before the append returns. A crash (even `kill -9` or a power
//! cut) leaves the old segments and at most a temporary file, which the
//! next process that takes the lock removes: a segment cannot tear. A
//! segment whose checksum fails anyway (bit rot, a hand edit) is set aside
//! as `NAME.bad` with an error, never half-read; the other segments carry
//! on.
//!
//! Records leave the spool only after InfluxDB accepted them (or refused
//! them for good, into the dead-letter file): a replay rewrites a segment
//! without the records it wrote.
//!
//! # Progress within a segment
//!
//! A record goes out in batches (`batch_size` lines a request). After each
//! batch accepted (or dead-lettered), the replay records how far it got in
//! `NAME.progress` (written to a temporary name, `fsync`ed, renamed, the
//! directory `fsync`ed: one small file, not the whole segment):
//!
//! ```text
//! ubuntu-metrics spool progress 1
//! <record id> <CRC-32 of the record's frame> <lines delivered>
//! ```
//!
//! so that a process killed in the middle of a record (SIGKILL, a power
//! cut, the daemon's shutdown grace running out) is followed by a replay
//! that starts at the first batch not delivered instead of the record's
//! first. An entry counts only while the record is exactly the one it was
//! written for (same id and checksum): a segment rewritten meanwhile (the
//! end of a replay, the size limit) makes it void, never wrong; a marker
//! that cannot be read is ignored (the record is resent whole). The end
//! of a segment's replay rewrites the segment and then removes the marker.
//!
//! Delivery is therefore at least once: the batch in flight when a process
//! dies is sent again, whole. That is harmless for InfluxDB (a point is
//! its series and timestamp: the same point written twice is stored once);
//! VictoriaMetrics keeps both samples unless it runs with
//! `-dedup.minScrapeInterval`.
//!
//! At the size limit the oldest records are dropped, with an error log and a
//! counter the self-metrics report (`spool_dropped`).

use super::Batch;
use chrono::{DateTime, Utc};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The first bytes of every record.
pub const MAGIC: [u8; 4] = *b"UMSP";
/// Magic, length and checksum.
pub const HEADER_LEN: usize = 12;
const VERSION: u8 = 1;
/// At most this many lines in one record (InfluxDB's batch size).
pub const MAX_RECORD_LINES: usize = crate::sinks::influxdb::MAX_BATCH_LINES;
/// A record grows past this many payload bytes only for a single huge line.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
pub const DEAD_LETTER_FILE: &str = "dead-letter.lp";
/// The first words of each dead-letter entry's header line.
pub const DEAD_LETTER_MARK: &str = "# ubuntu-metrics dead letter:";
const LOCK_FILE: &str = ".lock";
const REPLAY_LOCK_FILE: &str = ".replay.lock";
const DROPPED_FILE: &str = "dropped";
const SEGMENT_SUFFIX: &str = ".seg";
/// A segment's delivery progress: `NAME.seg.progress`.
const PROGRESS_SUFFIX: &str = ".progress";
const PROGRESS_HEADER: &str = "ubuntu-metrics spool progress 1";
const TMP_SUFFIX: &str = ".tmp";
/// Entries moved aside because they cannot be read as segments.
pub const BAD_SUFFIX: &str = ".bad";

/// What a directory entry is, for messages.
fn kind_of(m: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// One spooled batch: lines of line protocol, each with its own timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unique within its segment, kept when the segment is rewritten.
    pub id: u32,
    /// When it was spooled, in ns since the Unix epoch.
    pub spooled_at: i64,
    /// Where the lines came from (a collector's name, `self-metrics`).
    pub label: String,
    pub lines: Vec<String>,
}

impl Record {
    /// The record framed for the segment file. `None` when it cannot be
    /// framed (a payload over 4 GiB).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let label = truncate_utf8(&self.label, usize::from(u16::MAX));
        let size =
            1 + 4 + 8 + 2 + label.len() + 4 + self.lines.iter().map(|l| 4 + l.len()).sum::<usize>();
        let len = u32::try_from(size).ok()?;
        let n = u32::try_from(self.lines.len()).ok()?;
        let mut out = Vec::with_capacity(HEADER_LEN + size);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(VERSION);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.spooled_at.to_le_bytes());
        out.extend_from_slice(&(label.len() as u16).to_le_bytes());
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        for l in &self.lines {
            out.extend_from_slice(&u32::try_from(l.len()).ok()?.to_le_bytes());
            out.extend_from_slice(l.as_bytes());
        }
        let crc = checksum(&out[4..8], &out[HEADER_LEN..]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        Some(out)
    }

    /// The CRC-32 of the record's frame: what a progress entry is valid
    /// for (0 for a record that cannot be framed).
    pub fn fingerprint(&self) -> u32 {
        self.encode().map_or(0, |b| crc32fast::hash(&b))
    }

    pub fn spooled_at_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.spooled_at)
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

/// What the reader found in a segment's bytes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    /// The valid records, in file order, with their byte ranges.
    pub records: Vec<(Range<usize>, Record)>,
    /// Byte ranges that are not part of a valid record.
    pub damage: Vec<Range<usize>>,
}

impl Parsed {
    /// The end of the last valid record.
    pub fn valid_end(&self) -> usize {
        self.records.last().map_or(0, |(r, _)| r.end)
    }

    /// Whether the only damage is at the end (an interrupted append).
    pub fn torn_tail_only(&self, len: usize) -> bool {
        self.damage.len() == 1
            && self.damage[0].end == len
            && self.damage[0].start == self.valid_end()
    }

    pub fn damaged_bytes(&self) -> usize {
        self.damage.iter().map(|r| r.len()).sum()
    }
}

/// Reads a segment's bytes. Never panics; returns only records whose
/// checksum holds and whose payload decodes completely.
pub fn parse_segment(data: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let mut pos = 0;
    while pos < data.len() {
        if let Some((end, rec)) = parse_record_at(data, pos) {
            out.records.push((pos..end, rec));
            pos = end;
            continue;
        }
        // Damaged here: resynchronise on the next valid record, if any.
        let mut search = pos + 1;
        let mut next = None;
        while search < data.len() {
            let Some(off) = find_magic(&data[search..]) else {
                break;
            };
            let cand = search + off;
            if let Some(found) = parse_record_at(data, cand) {
                next = Some((cand, found));
                break;
            }
            search = cand + 1;
        }
        match next {
            Some((cand, (end, rec))) => {
                out.damage.push(pos..cand);
                out.records.push((cand..end, rec));
                pos = end;
            }
            None => {
                out.damage.push(pos..data.len());
                break;
            }
        }
    }
    out
}

fn find_magic(data: &[u8]) -> Option<usize> {
    data.windows(MAGIC.len()).position(|w| w == MAGIC)
}

/// The record framed at `pos`, with the offset just after it.
fn parse_record_at(data: &[u8], pos: usize) -> Option<(usize, Record)> {
    let header = data.get(pos..pos.checked_add(HEADER_LEN)?)?;
    if header[0..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let start = pos + HEADER_LEN;
    let end = start.checked_add(len)?;
    let payload = data.get(start..end)?;
    if checksum(&header[4..8], payload) != crc {
        return None;
    }
    Some((end, decode_payload(payload)?))
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn str(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(n)?).ok()
    }
}

fn decode_payload(payload: &[u8]) -> Option<Record> {
    let mut c = Cursor {
        data: payload,
        pos: 0,
    };
    if c.array::<1>()?[0] != VERSION {
        return None;
    }
    let id = u32::from_le_bytes(c.array()?);
    let spooled_at = i64::from_le_bytes(c.array()?);
    let label_len = u16::from_le_bytes(c.array()?);
    let label = c.str(label_len.into())?.to_owned();
    let n = u32::from_le_bytes(c.array()?) as usize;
    // Every line takes at least 4 bytes: do not trust `n` for the allocation.
    let mut lines = Vec::with_capacity(n.min((payload.len() - c.pos) / 4));
    for _ in 0..n {
        let len = u32::from_le_bytes(c.array()?) as usize;
        lines.push(c.str(len)?.to_owned());
    }
    if c.pos != payload.len() {
        return None;
    }
    Some(Record {
        id,
        spooled_at,
        label,
        lines,
    })
}

/// A spool error: what failed, on which file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpoolError(pub String);

fn io_err(path: &Path, what: &str, e: io::Error) -> SpoolError {
    SpoolError(format!("spool {}: {what}: {e}", path.display()))
}

/// An exclusive file lock (the standard library's, an `flock` on Linux),
/// released when dropped (the file is closed).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    }

    /// Waits for the lock.
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = Self::open(path)?;
        loop {
            match file.lock() {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The lock, or `None` when another holder has it.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        let file = Self::open(path)?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(FileLock { _file: file })),
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    continue;
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "cannot sync the directory", e))
}

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

/// What waits in the spool.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status {
    pub segments: usize,
    pub records: usize,
    pub points: usize,
    pub bytes: u64,
    /// When the oldest record waiting was spooled.
    pub oldest: Option<DateTime<Utc>>,
    /// The oldest timestamp of a point waiting (ns), as written in its line.
    pub oldest_point: Option<i64>,
    pub dead_letter_bytes: u64,
    pub dead_letter_entries: usize,
    /// Points dropped at the size limit, not yet reported in the self-metrics.
    pub dropped_unreported: u64,
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

/// One entry of a segment's progress marker: record `id`, whose
/// [`Record::fingerprint`] is `fingerprint`, has its first `lines` lines
/// delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub id: u32,
    pub fingerprint: u32,
    pub lines: usize,
}

impl Progress {
    fn encode(entries: &[Progress]) -> String {
        let mut out = format!("{PROGRESS_HEADER}\n");
        for e in entries {
            out.push_str(&format!("{} {} {}\n", e.id, e.fingerprint, e.lines));
        }
        out
    }

    /// `None` when the text is not a whole marker (the segment is then
    /// replayed from its start: duplicates, never a loss).
    fn decode(text: &str) -> Option<Vec<Progress>> {
        let mut lines = text.split_terminator('\n');
        if lines.next()? != PROGRESS_HEADER || !text.ends_with('\n') {
            return None;
        }
        lines
            .map(|l| {
                let mut f = l.split(' ');
                let e = Progress {
                    id: f.next()?.parse().ok()?,
                    fingerprint: f.next()?.parse().ok()?,
                    lines: f.next()?.parse().ok()?,
                };
                f.next().is_none().then_some(e)
            })
            .collect()
    }
}

/// For each record, the lines `entries` say were delivered (an entry
/// counts only for the very record it was written for).
fn delivered_of(records: &[Record], entries: &[Progress]) -> Vec<usize> {
    records
        .iter()
        .map(|r| {
            entries
                .iter()
                .find(|e| e.id == r.id)
                .filter(|e| e.lines <= r.lines.len() && e.fingerprint == r.fingerprint())
                .map_or(0, |e| e.lines)
        })
        .collect()
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    counter: AtomicU64,
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

    pub fn dead_letter_path(&self) -> PathBuf {
        self.dir.join(DEAD_LETTER_FILE)
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

    /// Segment names, oldest first, with their sizes. Removes temporary
    /// files left by an interrupted write (with the lock held, no write is
    /// under way: any temporary file is a crash's leftover, and the
    /// segment it was to become, or replace, is whole or absent).
    /// Call with the lock held.
    fn segments(&self) -> Result<Vec<(String, u64)>, SpoolError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, "cannot list", e))?;
        let mut out = Vec::new();
        let mut markers = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| io_err(&self.dir, "cannot list", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TMP_SUFFIX) {
                match fs::remove_file(entry.path()) {
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
                Ok(m) if m.file_type().is_file() => out.push((name, m.len())),
                Ok(m) => self.move_aside(&name, &format!("not a regular file ({})", kind_of(&m))),
                Err(e) => self.move_aside(&name, &format!("cannot stat it: {e}")),
            }
        }
        out.sort();
        // The marker of a segment that is gone (replayed, dropped at the
        // size limit, set aside) says nothing any more.
        for seg in markers {
            if out.binary_search_by(|(n, _)| n.as_str().cmp(&seg)).is_err() {
                let _ = fs::remove_file(self.progress_path(&seg));
            }
        }
        Ok(out)
    }

    fn progress_path(&self, name: &str) -> PathBuf {
        progress_path(&self.dir, name)
    }

    /// The progress marker of segment `name` (lock held).
    fn read_progress(&self, name: &str) -> Vec<Progress> {
        read_progress(&self.dir, name)
    }

    /// Records how far the replay of segment `name` got (see the module's
    /// documentation): written whole (temporary name, `fsync`, rename,
    /// directory `fsync`) before it returns. Nothing is written when the
    /// segment is gone.
    pub fn record_progress(&self, name: &str, entries: &[Progress]) -> Result<(), SpoolError> {
        let _guard = self.lock()?;
        match fs::symlink_metadata(self.dir.join(name)) {
            Ok(m) if m.file_type().is_file() => {}
            _ => return Ok(()),
        }
        let path = self.progress_path(name);
        let tmp = self
            .dir
            .join(format!(".{name}{PROGRESS_SUFFIX}{TMP_SUFFIX}"));
        crate::support::fsutil::replace_file(
            &path,
            &tmp,
            Progress::encode(entries).as_bytes(),
            0o600,
        )
        .map_err(|e| io_err(&path, "cannot write the progress marker", e))?;
        fsync_dir(&self.dir)
    }

    fn new_segment_name(&self, existing: &[(String, u64)]) -> String {
        let last = existing
            .iter()
            .filter_map(|(n, _)| n.split('-').next()?.parse::<u64>().ok())
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
    fn read_segment(&self, name: &str) -> Result<Option<Vec<Record>>, SpoolError> {
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
        crate::support::fsutil::replace_file(&path, &tmp, bytes, 0o600)
            .map_err(|e| io_err(&path, "cannot write", e))?;
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

    /// Appends batches (split into records of at most
    /// [`MAX_RECORD_LINES`] lines) as one new segment, `fsync`ed with the
    /// directory before returning. At the size limit the oldest records are
    /// dropped first (logged, and counted for the self-metrics).
    pub fn append(&self, batches: &[Batch]) -> Result<AppendReport, SpoolError> {
        self.append_reporting(batches, None)
    }

    /// [`Spool::append`], plus the batch `report(n)` returns, where `n` is
    /// the count of points dropped at the size limit not yet reported: the
    /// self-metrics that carry it. The count moves from the counter to that
    /// batch under the lock, in the same append, so it is never reported
    /// twice nor lost; and when a record carrying a count is dropped at the
    /// size limit later, its count goes back to the counter.
    pub fn append_reporting(
        &self,
        batches: &[Batch],
        report: Option<&dyn Fn(u64) -> Batch>,
    ) -> Result<AppendReport, SpoolError> {
        let _guard = self.lock()?;
        let carried = if report.is_some() {
            self.read_dropped()
        } else {
            0
        };
        let extra = report.map(|f| f(carried));
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        // (points, encoded bytes, count of drops it carries)
        let mut records: Vec<(usize, Vec<u8>, u64)> = Vec::new();
        let mut id: u32 = 0;
        for b in batches.iter().chain(extra.as_ref()) {
            for chunk in chunk_lines(&b.lines) {
                let rec = Record {
                    id,
                    spooled_at: now,
                    label: b.label.clone(),
                    lines: chunk.to_vec(),
                };
                let bytes = rec.encode().ok_or_else(|| {
                    SpoolError(format!(
                        "spool {}: a batch of {} is too large to frame",
                        self.dir.display(),
                        b.label
                    ))
                })?;
                records.push((chunk.len(), bytes, carried_drops(&rec)));
                id = id.wrapping_add(1);
            }
        }
        let mut report = AppendReport::default();
        if records.is_empty() {
            return Ok(report);
        }
        // Counts carried by self-metrics dropped here go back to the counter.
        let mut given_back = 0u64;
        let existing = self.segments()?;
        let new_bytes: u64 = records.iter().map(|(_, b, _)| b.len() as u64).sum();
        let total: u64 = existing.iter().map(|(_, l)| l).sum();
        if total + new_bytes > self.max_bytes {
            let mut excess = total + new_bytes - self.max_bytes;
            for (name, len) in &existing {
                if excess == 0 {
                    break;
                }
                let Some(recs) = self.read_segment(name)? else {
                    continue;
                };
                if *len <= excess {
                    report.dropped_records += recs.len();
                    report.dropped_points += recs.iter().map(|r| r.lines.len()).sum::<usize>();
                    given_back += recs.iter().map(carried_drops).sum::<u64>();
                    self.remove(name)?;
                    excess -= len;
                    continue;
                }
                let mut freed = 0u64;
                let mut k = 0;
                while k < recs.len() && freed < excess {
                    freed += recs[k].encode().map_or(0, |b| b.len() as u64);
                    k += 1;
                }
                report.dropped_records += k;
                report.dropped_points += recs[..k].iter().map(|r| r.lines.len()).sum::<usize>();
                given_back += recs[..k].iter().map(carried_drops).sum::<u64>();
                self.rewrite(name, &recs[k..])?;
                excess = excess.saturating_sub(freed);
            }
            // The new records alone are over the limit: keep the newest.
            let mut k = 0;
            while excess > 0 && k < records.len() {
                excess = excess.saturating_sub(records[k].1.len() as u64);
                report.dropped_records += 1;
                report.dropped_points += records[k].0;
                given_back += records[k].2;
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
                self.add_dropped((report.dropped_points as u64).saturating_add(given_back))?;
            }
        }
        if records.is_empty() {
            // Whatever carried the count was dropped and gave it back.
            return Ok(report);
        }
        let name = self.new_segment_name(&self.segments()?);
        let mut buf = Vec::with_capacity(records.iter().map(|(_, b, _)| b.len()).sum());
        for (_, b, _) in &records {
            buf.extend_from_slice(b);
        }
        self.write_segment(&name, &buf)?;
        // The count now travels in the segment: take it off the counter
        // (drops added by this very append stay for the next report).
        if carried > 0 {
            self.write_dropped(self.read_dropped().saturating_sub(carried))?;
        }
        report.records = records.len();
        report.points = records.iter().map(|(n, _, _)| n).sum();
        report.segment = Some(name);
        Ok(report)
    }

    /// The oldest segment that still holds records, repaired.
    pub fn oldest_segment(&self) -> Result<Option<Segment>, SpoolError> {
        let _guard = self.lock()?;
        for (name, _) in self.segments()? {
            if let Some(records) = self.read_segment(&name)?
                && !records.is_empty()
            {
                let delivered = delivered_of(&records, &self.read_progress(&name));
                return Ok(Some(Segment {
                    name,
                    records,
                    delivered,
                }));
            }
        }
        Ok(None)
    }

    /// After a replay of `name`: removes the records whose id is in `done`,
    /// and replaces the lines of the record `partial.0` by `partial.1` (the
    /// lines still to write). Re-reads the segment first, so records dropped
    /// at the size limit meanwhile stay dropped. The segment's progress
    /// marker goes after the rewrite: the rewritten segment holds all the
    /// progress (a crash between the two leaves a marker whose entries no
    /// longer match their records, which is void).
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
        self.remove_progress(name)
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
            let done = delivered_of(&recs, &self.read_progress(name));
            recs.iter().map(|r| r.lines.len()).sum::<usize>() - done.iter().sum::<usize>()
        }))
    }

    /// Every record waiting, oldest first.
    pub fn records(&self) -> Result<Vec<Record>, SpoolError> {
        let _guard = self.lock()?;
        let mut out = Vec::new();
        for (name, _) in self.segments()? {
            out.extend(self.read_segment(&name)?.unwrap_or_default());
        }
        Ok(out)
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
        let path = self.dead_letter_path();
        let existed = path.exists();
        let mut text = format!(
            "{DEAD_LETTER_MARK} {} {label}: {} lines refused by InfluxDB: {}\n",
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            lines.len(),
            message.replace(['\n', '\r'], " ")
        );
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        let r = (|| {
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })();
        r.map_err(|e| io_err(&path, "cannot write the dead-letter file", e))?;
        if !existed {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn dropped_path(&self) -> PathBuf {
        self.dir.join(DROPPED_FILE)
    }

    fn read_dropped(&self) -> u64 {
        read_count(&self.dropped_path())
    }

    fn write_dropped(&self, n: u64) -> Result<(), SpoolError> {
        let path = self.dropped_path();
        let tmp = self.dir.join(format!("{DROPPED_FILE}{TMP_SUFFIX}"));
        crate::support::fsutil::replace_file(&path, &tmp, format!("{n}\n").as_bytes(), 0o600)
            .map_err(|e| io_err(&path, "cannot write the drop counter", e))?;
        fsync_dir(&self.dir)
    }

    /// Lock held.
    fn add_dropped(&self, n: u64) -> Result<(), SpoolError> {
        self.write_dropped(self.read_dropped().saturating_add(n))
    }

    /// The points dropped at the size limit since the last call (for the
    /// self-metrics), resetting the counter.
    pub fn take_dropped(&self) -> Result<u64, SpoolError> {
        let _guard = self.lock()?;
        let n = self.read_dropped();
        if n > 0 {
            self.write_dropped(0)?;
        }
        Ok(n)
    }

    /// What waits, and since when.
    pub fn status(&self) -> Result<Status, SpoolError> {
        let _guard = self.lock()?;
        let mut st = Status::default();
        for (name, _) in self.segments()? {
            let Some(records) = self.read_segment(&name)? else {
                continue;
            };
            let bytes = fs::metadata(self.dir.join(&name)).map_or(0, |m| m.len());
            let delivered = delivered_of(&records, &self.read_progress(&name));
            count_segment(&mut st, &records, &delivered, bytes);
        }
        count_dead_letters_and_drops(&mut st, &self.dir);
        Ok(st)
    }
}

fn progress_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{PROGRESS_SUFFIX}"))
}

/// The progress marker of segment `name` in `dir`; empty when there is
/// none or it cannot be read (the segment is then replayed whole).
fn read_progress(dir: &Path, name: &str) -> Vec<Progress> {
    let path = progress_path(dir, name);
    let mut text = String::new();
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|f| {
            if !f.metadata()?.file_type().is_file() {
                return Err(io::Error::other("not a regular file"));
            }
            f.take(1 << 20).read_to_string(&mut text)
        });
    match read {
        Ok(_) => Progress::decode(&text).unwrap_or_else(|| {
            tracing::warn!(
                spool = %dir.display(),
                "{}: not a progress marker; the segment is replayed from its start",
                path.display()
            );
            Vec::new()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!(
                spool = %dir.display(),
                "{}: cannot read the progress marker ({e}); the segment is replayed from its start",
                path.display()
            );
            Vec::new()
        }
    }
}

/// Adds a segment's records (`delivered`: the lines of each already
/// delivered) to `st`.
fn count_segment(st: &mut Status, records: &[Record], delivered: &[usize], bytes: u64) {
    if records.is_empty() {
        return;
    }
    st.segments += 1;
    st.bytes += bytes;
    for (r, &done) in records.iter().zip(delivered) {
        if done >= r.lines.len() {
            continue;
        }
        st.records += 1;
        st.points += r.lines.len() - done;
        let t = r.spooled_at_time();
        st.oldest = Some(st.oldest.map_or(t, |o| o.min(t)));
        for l in &r.lines[done..] {
            if let Some(ts) = line_timestamp(l) {
                st.oldest_point = Some(st.oldest_point.map_or(ts, |o| o.min(ts)));
            }
        }
    }
}

/// The dead-letter file's and the drop counter's part of a status.
fn count_dead_letters_and_drops(st: &mut Status, dir: &Path) {
    let dl = dir.join(DEAD_LETTER_FILE);
    if let Ok(m) = fs::metadata(&dl) {
        st.dead_letter_bytes = m.len();
        st.dead_letter_entries = crate::support::fsutil::read_file(&dl)
            .map(|t| {
                String::from_utf8_lossy(&t)
                    .lines()
                    .filter(|l| l.starts_with(DEAD_LETTER_MARK))
                    .count()
            })
            .unwrap_or(0);
    }
    st.dropped_unreported = read_count(&dir.join(DROPPED_FILE));
}

/// A counter kept as text in a file of the spool (0 when absent or
/// unreadable), read without following a link.
fn read_count(path: &Path) -> u64 {
    crate::support::fsutil::read_file(path)
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
        .unwrap_or(0)
}

/// What waits in the spool at `dir`, read without its lock and without
/// changing anything (no leftover removed, nothing set aside): for a
/// reader that cannot take the lock (a read-only state directory,
/// another user's spool). Segments are only ever replaced whole (renamed
/// into place), so each one read is whole; but the figures may be stale:
/// a replay or an append may be under way. A segment that cannot be read
/// or whose checksum fails is left out, with a warning.
pub fn peek(dir: &Path) -> Result<Status, SpoolError> {
    let rd = fs::read_dir(dir).map_err(|e| io_err(dir, "cannot list", e))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err(dir, "cannot list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(SEGMENT_SUFFIX) && entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(name);
        }
    }
    names.sort();
    let mut st = Status::default();
    for name in names {
        let path = dir.join(&name);
        let mut data = Vec::new();
        let read = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| {
                if !f.metadata()?.file_type().is_file() {
                    return Err(io::Error::other("not a regular file"));
                }
                f.read_to_end(&mut data)
            });
        match read {
            Ok(_) => {}
            // Replayed (or dropped) since the listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!("spool {}: cannot read it: {e}; not counted", path.display());
                continue;
            }
        }
        let parsed = parse_segment(&data);
        if !parsed.damage.is_empty() {
            tracing::warn!(
                "spool {}: {} damaged bytes; not counted",
                path.display(),
                parsed.damaged_bytes()
            );
            continue;
        }
        let records: Vec<Record> = parsed.records.into_iter().map(|(_, r)| r).collect();
        let delivered = delivered_of(&records, &read_progress(dir, &name));
        count_segment(&mut st, &records, &delivered, data.len() as u64);
    }
    count_dead_letters_and_drops(&mut st, dir);
    Ok(st)
}

/// Splits lines into records: at most [`MAX_RECORD_LINES`] lines and
/// (unless a single line is larger) [`MAX_RECORD_BYTES`] bytes each.
fn chunk_lines(lines: &[String]) -> Vec<&[String]> {
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

/// The drop counts a self-metrics record carries (its points'
/// `spool_dropped` fields).
fn carried_drops(r: &Record) -> u64 {
    if r.label != super::SELF_LABEL {
        return 0;
    }
    r.lines
        .iter()
        .filter_map(|l| int_field(l, "spool_dropped"))
        .map(|v| u64::try_from(v).unwrap_or(0))
        .sum()
}

/// The integer field `key` of a line of line protocol: the field set is
/// scanned for the key at a field's start, outside string values.
pub fn int_field(line: &str, key: &str) -> Option<i64> {
    let b = line.as_bytes();
    // Skip the measurement and tags: up to the first unescaped space.
    let mut i = 0;
    while i < b.len() && b[i] != b' ' {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i += 1;
    let mut field_start = true;
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if field_start && line[i..].starts_with(key) && b.get(i + key.len()) == Some(&b'=') {
            let v = &line[i + key.len() + 1..];
            let end = v.find([',', ' ']).unwrap_or(v.len());
            return v[..end].strip_suffix('i')?.parse().ok();
        } else {
            match c {
                b'"' => in_string = true,
                b',' => {
                    field_start = true;
                    i += 1;
                    continue;
                }
                b' ' => return None,
                _ => {}
            }
        }
        field_start = false;
        i += 1;
    }
    None
}

/// The timestamp at the end of a line of line protocol (the text after the
/// last space, when it is an integer).
pub fn line_timestamp(line: &str) -> Option<i64> {
    line.rsplit_once(' ')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(id: u32, label: &str, lines: &[&str]) -> Record {
        Record {
            id,
            spooled_at: 1_795_521_600_000_000_000 + i64::from(id),
            label: label.into(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn encode_all(recs: &[Record]) -> Vec<u8> {
        recs.iter().flat_map(|r| r.encode().unwrap()).collect()
    }

    fn sample() -> Vec<Record> {
        vec![
            rec(0, "sponsoring", &["m,t=a v=1i 1", "m,t=b v=2i 2"]),
            rec(1, "self-metrics", &["s f=\"x\ny UMSP\" 3"]),
            rec(2, "", &[]),
            rec(3, "ünï", &["m v=1.5 4"]),
        ]
    }

    fn batch(label: &str, lines: &[&str]) -> Batch {
        Batch {
            label: label.into(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn records_round_trip() {
        let recs = sample();
        let data = encode_all(&recs);
        let p = parse_segment(&data);
        assert!(p.damage.is_empty(), "{:?}", p.damage);
        let got: Vec<Record> = p.records.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, recs);
    }

    #[test]
    fn every_truncation_keeps_exactly_the_complete_records() {
        let recs = sample();
        let data = encode_all(&recs);
        let ends: Vec<usize> = parse_segment(&data)
            .records
            .iter()
            .map(|(r, _)| r.end)
            .collect();
        for cut in 0..=data.len() {
            let p = parse_segment(&data[..cut]);
            let complete = ends.iter().filter(|e| **e <= cut).count();
            let got: Vec<Record> = p.records.iter().map(|(_, r)| r.clone()).collect();
            assert_eq!(got, recs[..complete], "cut at {cut}");
            if cut == p.valid_end() {
                assert!(p.damage.is_empty());
            } else {
                assert!(p.torn_tail_only(cut), "cut at {cut}: {:?}", p.damage);
            }
        }
    }

    #[test]
    fn damage_in_the_middle_loses_only_that_record() {
        let recs = sample();
        let mut data = encode_all(&recs);
        let ranges: Vec<Range<usize>> = parse_segment(&data)
            .records
            .iter()
            .map(|(r, _)| r.clone())
            .collect();
        // Flip a byte in the payload of the second record.
        data[ranges[1].start + HEADER_LEN + 3] ^= 0x40;
        let p = parse_segment(&data);
        let got: Vec<Record> = p.records.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(got, vec![recs[0].clone(), recs[2].clone(), recs[3].clone()]);
        assert_eq!(p.damage, vec![ranges[1].clone()]);
        assert!(!p.torn_tail_only(data.len()));
    }

    fn spool(max: u64) -> (tempfile::TempDir, Spool) {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::open(&d.path().join("spool"), max).unwrap();
        (d, s)
    }

    #[test]
    fn append_read_finish() {
        let (_d, s) = spool(1 << 20);
        let r = s
            .append(&[
                batch("a", &["m v=1i 1", "m v=2i 2"]),
                batch("b", &["n v=1i 1"]),
            ])
            .unwrap();
        assert_eq!((r.records, r.points), (2, 3));
        s.append(&[batch("c", &["o v=1i 1"])]).unwrap();
        let st = s.status().unwrap();
        assert_eq!((st.segments, st.records, st.points), (2, 3, 4));
        assert_eq!(st.oldest_point, Some(1));
        let seg = s.oldest_segment().unwrap().unwrap();
        assert_eq!(seg.records.len(), 2);
        assert_eq!(seg.records[0].label, "a");
        // First record written, second half-written.
        s.finish_segment(&seg.name, &[0], Some((1, vec!["n v=1i 1".into()])))
            .unwrap();
        let seg2 = s.oldest_segment().unwrap().unwrap();
        assert_eq!(seg2.name, seg.name);
        assert_eq!(seg2.records.len(), 1);
        assert_eq!(seg2.records[0].id, 1);
        s.finish_segment(&seg.name, &[1], None).unwrap();
        let seg3 = s.oldest_segment().unwrap().unwrap();
        assert_ne!(seg3.name, seg.name);
        assert_eq!(seg3.records[0].label, "c");
        s.finish_segment(&seg3.name, &[0], None).unwrap();
        assert!(s.oldest_segment().unwrap().is_none());
        assert_eq!(s.status().unwrap(), Status::default());
        // Finishing a segment that is gone is not an error.
        s.finish_segment(&seg3.name, &[0], None).unwrap();
    }

    #[test]
    fn progress_counts_only_for_the_record_it_was_written_for() {
        let (_d, s) = spool(1 << 20);
        let lines: Vec<String> = (0..10).map(|i| format!("m v={i}i {i}")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        s.append(&[batch("a", &refs), batch("b", &["n v=1i 1", "n v=2i 2"])])
            .unwrap();
        let seg = s.oldest_segment().unwrap().unwrap();
        assert_eq!(seg.delivered, vec![0, 0]);
        let a = &seg.records[0];
        s.record_progress(
            &seg.name,
            &[Progress {
                id: a.id,
                fingerprint: a.fingerprint(),
                lines: 4,
            }],
        )
        .unwrap();
        // Read back by the next replay, and by status.
        assert_eq!(s.oldest_segment().unwrap().unwrap().delivered, vec![4, 0]);
        assert_eq!(s.status().unwrap().points, 8);
        assert_eq!(s.status().unwrap().oldest_point, Some(1));
        assert_eq!(s.pending_points(&seg.name).unwrap(), 8);
        // Record a done, b half done.
        let b = &seg.records[1];
        let both = [
            Progress {
                id: a.id,
                fingerprint: a.fingerprint(),
                lines: 10,
            },
            Progress {
                id: b.id,
                fingerprint: b.fingerprint(),
                lines: 1,
            },
        ];
        s.record_progress(&seg.name, &both).unwrap();
        let st = s.status().unwrap();
        assert_eq!((st.records, st.points, st.oldest_point), (1, 1, Some(2)));
        // A marker for another content of the record (a rewrite since) is
        // void, never applied to the new content.
        let mut other = both;
        other[0].fingerprint ^= 1;
        other[1].lines = 3;
        s.record_progress(&seg.name, &other).unwrap();
        assert_eq!(s.oldest_segment().unwrap().unwrap().delivered, vec![0, 0]);
        // Garbage is ignored (replayed whole).
        fs::write(s.progress_path(&seg.name), "1 2 3\n").unwrap();
        assert_eq!(s.oldest_segment().unwrap().unwrap().delivered, vec![0, 0]);
        // The end of the replay rewrites the segment, then drops the marker.
        s.record_progress(&seg.name, &both).unwrap();
        s.finish_segment(&seg.name, &[a.id], Some((b.id, vec!["n v=2i 2".into()])))
            .unwrap();
        assert!(!s.progress_path(&seg.name).exists());
        let left = s.oldest_segment().unwrap().unwrap();
        assert_eq!(left.records.len(), 1);
        assert_eq!(left.delivered, vec![0]);
        assert_eq!(s.status().unwrap().points, 1);
        // A marker left for a segment that is gone is removed at the next
        // listing; none is written for a segment that is gone.
        s.record_progress(&seg.name, &both).unwrap();
        s.finish_segment(&seg.name, &[b.id], None).unwrap();
        assert!(s.oldest_segment().unwrap().is_none());
        s.record_progress(&seg.name, &both).unwrap();
        assert!(!s.progress_path(&seg.name).exists());
        fs::write(s.progress_path(&seg.name), Progress::encode(&both)).unwrap();
        assert_eq!(s.status().unwrap(), Status::default());
        assert!(entries(&s).is_empty(), "{:?}", entries(&s));
    }

    fn entries(s: &Spool) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(s.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with("lock"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_segment_whose_checksum_fails_is_set_aside_whole() {
        let (_d, s) = spool(1 << 20);
        s.append(&[batch("a", &["m v=1i 1"]), batch("b", &["m v=2i 2"])])
            .unwrap();
        s.append(&[batch("c", &["m v=3i 3"])]).unwrap();
        let names = s.segments().unwrap();
        let (first, second) = (names[0].0.clone(), names[1].0.clone());
        let path = s.dir().join(&first);
        let mut full = fs::read(&path).unwrap();
        // Bit rot in the first record: the valid second record is not
        // half-read out of a damaged segment either.
        full[HEADER_LEN + 3] ^= 0x40;
        fs::write(&path, &full).unwrap();
        let recs = s.records().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].lines, vec!["m v=3i 3"]);
        assert_eq!(entries(&s), vec![format!("{first}.bad"), second.clone()]);
        // Untouched, for a human to look at.
        assert_eq!(
            fs::read(s.dir().join(format!("{first}.bad"))).unwrap(),
            full
        );
        // A torn segment (however it came to be) is set aside the same way,
        // and appends go on.
        let p = s.dir().join(&second);
        let bytes = fs::read(&p).unwrap();
        fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        assert!(s.oldest_segment().unwrap().is_none());
        assert_eq!(s.status().unwrap().records, 0);
        assert!(s.dir().join(format!("{second}.bad")).exists());
        s.append(&[batch("d", &["m v=4i 4"])]).unwrap();
        assert_eq!(s.records().unwrap().len(), 1);
    }

    #[test]
    fn appends_go_through_a_temporary_name_and_leftovers_are_removed_at_open() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("spool");
        let s = Spool::open(&dir, 1 << 20).unwrap();
        s.append(&[batch("a", &["m v=1i 1"])]).unwrap();
        let seg = entries(&s).pop().unwrap();
        assert!(seg.ends_with(SEGMENT_SUFFIX), "{seg}");
        // What a kill -9 in the middle of an append now leaves: a partial
        // temporary file beside the whole segments.
        let tmp = dir.join(format!(".{}{TMP_SUFFIX}", seg.replace("-0.", "-9.")));
        let whole = fs::read(dir.join(&seg)).unwrap();
        fs::write(&tmp, &whole[..whole.len() / 2]).unwrap();
        drop(s);
        let s = Spool::open(&dir, 1 << 20).unwrap();
        assert!(!tmp.exists(), "a crash's temporary file is removed at open");
        assert_eq!(entries(&s), vec![seg]);
        assert_eq!(s.records().unwrap().len(), 1);
    }

    #[test]
    fn size_limit_drops_the_oldest_and_counts() {
        let one = Record {
            id: 0,
            spooled_at: 0,
            label: "x".into(),
            lines: vec!["m v=1i 1".into()],
        }
        .encode()
        .unwrap()
        .len() as u64;
        let (_d, s) = spool(3 * one);
        for i in 0..3 {
            let l = format!("m v={i}i {i}");
            s.append(&[batch("x", &[l.as_str()])]).unwrap();
        }
        assert_eq!(s.status().unwrap().records, 3);
        let r = s.append(&[batch("x", &["m v=9i 9"])]).unwrap();
        assert_eq!((r.dropped_points, r.points), (1, 1));
        let lines: Vec<String> = s
            .records()
            .unwrap()
            .into_iter()
            .flat_map(|r| r.lines)
            .collect();
        assert_eq!(lines, vec!["m v=1i 1", "m v=2i 2", "m v=9i 9"]);
        assert_eq!(s.status().unwrap().dropped_unreported, 1);
        assert_eq!(s.take_dropped().unwrap(), 1);
        assert_eq!(s.take_dropped().unwrap(), 0);
        // A single append over the limit keeps its newest records.
        let r = s
            .append(&[
                batch("x", &["m v=5i 5"]),
                batch("x", &["m v=6i 6"]),
                batch("x", &["m v=7i 7"]),
                batch("x", &["m v=8i 8"]),
            ])
            .unwrap();
        assert_eq!(r.points, 3);
        assert_eq!(r.dropped_points, 4);
        let lines: Vec<String> = s
            .records()
            .unwrap()
            .into_iter()
            .flat_map(|r| r.lines)
            .collect();
        assert_eq!(lines, vec!["m v=6i 6", "m v=7i 7", "m v=8i 8"]);
        assert!(s.status().unwrap().bytes <= 3 * one);
    }

    #[test]
    fn dead_letter_keeps_batch_and_message() {
        let (_d, s) = spool(1 << 20);
        s.dead_letter(
            "sponsoring",
            &["m v=1.5 1".into()],
            "field type conflict\nsecond",
        )
        .unwrap();
        s.dead_letter("x", &["n v=1i 2".into()], "bad").unwrap();
        let text = fs::read_to_string(s.dead_letter_path()).unwrap();
        assert!(text.contains(
            "sponsoring: 1 lines refused by InfluxDB: field type conflict second\nm v=1.5 1\n"
        ));
        let st = s.status().unwrap();
        assert_eq!(st.dead_letter_entries, 2);
        assert_eq!(st.records, 0);
    }

    #[test]
    fn int_field_reads_a_field_not_text_inside_a_string() {
        let l = r#"ubuntu_metrics_run,collector=a\ b,status=error error="x,spool_dropped=99i \"q\" spool_dropped=7i",points=3i,spool_dropped=12i 5"#;
        assert_eq!(int_field(l, "spool_dropped"), Some(12));
        assert_eq!(int_field(l, "points"), Some(3));
        assert_eq!(int_field("m spool_dropped=4i 1", "spool_dropped"), Some(4));
        assert_eq!(
            int_field("m,spool_dropped=4i v=1i 1", "spool_dropped"),
            None
        );
        assert_eq!(int_field("m v=1.5 1", "spool_dropped"), None);
    }

    #[test]
    fn replay_lock_is_exclusive() {
        let (_d, s) = spool(1 << 20);
        let g = s.try_replay_lock().unwrap();
        assert!(g.is_some());
        assert!(s.try_replay_lock().unwrap().is_none());
        drop(g);
        assert!(s.try_replay_lock().unwrap().is_some());
    }

    #[test]
    fn big_batches_are_split_into_records() {
        let lines: Vec<String> = (0..MAX_RECORD_LINES + 3)
            .map(|i| format!("m v={i}i {i}"))
            .collect();
        let chunks = chunk_lines(&lines);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].len(), 3);
        assert!(chunk_lines(&[]).is_empty());
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<u32>(),
            any::<i64>(),
            ".{0,8}",
            proptest::collection::vec(".{0,40}", 0..6),
        )
            .prop_map(|(id, spooled_at, label, lines)| Record {
                id,
                spooled_at,
                label,
                lines,
            })
    }

    /// Checks what the reader must guarantee on any input.
    fn check_invariants(data: &[u8], p: &Parsed) {
        let mut last_end = 0;
        for (r, rec) in &p.records {
            assert!(r.start >= last_end && r.end <= data.len());
            last_end = r.end;
            let frame = &data[r.clone()];
            assert_eq!(frame[0..4], MAGIC);
            let crc = u32::from_le_bytes(frame[8..12].try_into().unwrap());
            assert_eq!(checksum(&frame[4..8], &frame[HEADER_LEN..]), crc);
            assert_eq!(rec.encode().unwrap(), frame, "re-encodes to its bytes");
        }
        let covered: usize =
            p.records.iter().map(|(r, _)| r.len()).sum::<usize>() + p.damaged_bytes();
        assert_eq!(covered, data.len(), "every byte is a record or damage");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn reader_survives_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let p = parse_segment(&data);
            check_invariants(&data, &p);
        }

        #[test]
        fn reader_survives_bytes_after_a_magic(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut data = MAGIC.to_vec();
            data.extend(tail);
            let p = parse_segment(&data);
            check_invariants(&data, &p);
        }

        #[test]
        fn reader_on_mutated_segments_returns_only_original_records(
            recs in proptest::collection::vec(arb_record(), 0..6),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut data = encode_all(&recs);
            for (at, byte, kind) in edits {
                if data.is_empty() { break; }
                let i = at.index(data.len());
                match kind {
                    0 => data[i] ^= byte | 1,
                    1 => data.insert(i, byte),
                    2 => { data.remove(i); }
                    _ => data[i] = byte,
                }
            }
            let keep = if data.is_empty() { 0 } else { cut.index(data.len() + 1) };
            data.truncate(keep);
            let p = parse_segment(&data);
            check_invariants(&data, &p);
            for (_, r) in &p.records {
                prop_assert!(recs.contains(r), "a record that was never written: {:?}", r);
            }
        }

        #[test]
        fn reader_on_framed_arbitrary_payloads(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4),
            version_ok in any::<bool>(),
        ) {
            // Valid frames and checksums around arbitrary payloads: the
            // payload decoder must refuse what is not a whole record.
            let mut data = Vec::new();
            for mut p in payloads {
                if version_ok && !p.is_empty() { p[0] = VERSION; }
                let len = (p.len() as u32).to_le_bytes();
                data.extend_from_slice(&MAGIC);
                data.extend_from_slice(&len);
                data.extend_from_slice(&checksum(&len, &p).to_le_bytes());
                data.extend_from_slice(&p);
            }
            let p = parse_segment(&data);
            check_invariants(&data, &p);
        }

        #[test]
        fn unmutated_segments_read_back_whole(recs in proptest::collection::vec(arb_record(), 0..8)) {
            let data = encode_all(&recs);
            let p = parse_segment(&data);
            prop_assert!(p.damage.is_empty());
            let got: Vec<Record> = p.records.into_iter().map(|(_, r)| r).collect();
            prop_assert_eq!(got, recs);
        }
    }
}
