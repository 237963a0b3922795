//! Progress within a segment: how far an interrupted replay got.
//!
//! After each batch delivered (or dead-lettered), the replay writes
//! `NAME.progress` (temporary name, `fsync`, rename, directory `fsync`:
//! one small file, not the whole segment):
//!
//! ```text
//! ubuntu-metrics spool progress 1
//! <record id> <fingerprint of the record> <lines delivered>
//! ```

use crate::Record;
use std::io;
use std::path::{Path, PathBuf};

/// A segment's delivery progress: `NAME.seg.progress`.
pub(crate) const PROGRESS_SUFFIX: &str = ".progress";
const PROGRESS_HEADER: &str = "ubuntu-metrics spool progress 1";
/// A marker is a few lines a record: anything longer is not one.
const MARKER_LIMIT: u64 = 1 << 20;

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
    pub(crate) fn encode(entries: &[Progress]) -> String {
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
pub(crate) fn delivered_of(records: &[Record], entries: &[Progress]) -> Vec<usize> {
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

pub(crate) fn progress_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{PROGRESS_SUFFIX}"))
}

/// A segment's progress marker as read: its entries, and the CRC-32 of its
/// bytes (`None` without a marker), which the backlog summary keeps to
/// know whether it still describes the segment.
#[derive(Debug, Default)]
pub(crate) struct Marker {
    pub entries: Vec<Progress>,
    pub key: Option<u32>,
}

/// The progress marker of segment `name` in `dir`; no entry when there is
/// none or it cannot be read (the segment is then replayed whole).
pub(crate) fn read_marker(dir: &Path, name: &str) -> Marker {
    let path = progress_path(dir, name);
    match crate::files::read_regular(&path, MARKER_LIMIT) {
        Ok(bytes) => {
            let key = Some(crc32fast::hash(&bytes));
            let text = std::str::from_utf8(&bytes).ok();
            let Some(entries) = text.and_then(Progress::decode) else {
                tracing::warn!(
                    spool = %dir.display(),
                    "{}: not a progress marker; the segment is replayed from its start",
                    path.display()
                );
                return Marker {
                    entries: Vec::new(),
                    key,
                };
            };
            Marker { entries, key }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Marker::default(),
        Err(e) => {
            tracing::warn!(
                spool = %dir.display(),
                "{}: cannot read the progress marker ({e}); the segment is replayed from its start",
                path.display()
            );
            Marker::default()
        }
    }
}
