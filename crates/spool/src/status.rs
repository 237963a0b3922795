//! What waits in a spool, from its backlog summary (see
//! [`summary`](crate::summary)): a segment is decoded only when the
//! summary no longer describes it.

use crate::dead_letter::{DEAD_LETTER_FILE, count_entries};
use crate::dropped::DROPPED_FILE;
use crate::files::read_count;
use crate::listing::{Listed, SEGMENT_SUFFIX};
use crate::progress::read_marker;
use crate::summary::{DeadLetters, Entry, Sketch, Summary};
use crate::{Record, SpoolError, io_err, parse_segment};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
    /// Points waiting, per label (per collector, and the self-metrics).
    pub pending: BTreeMap<String, usize>,
    pub dead_letter_bytes: u64,
    pub dead_letter_entries: usize,
    /// Points dropped at the size limit, not yet reported.
    pub dropped_unreported: u64,
}

impl Status {
    fn add(&mut self, e: &Entry) {
        if e.total == 0 {
            return;
        }
        self.segments += 1;
        self.bytes += e.len;
        self.records += e.records;
        self.points += e.points;
        if let Some(t) = e.oldest.map(DateTime::from_timestamp_nanos) {
            self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
        }
        if let Some(ts) = e.oldest_point {
            self.oldest_point = Some(self.oldest_point.map_or(ts, |o| o.min(ts)));
        }
        for (label, n) in &e.labels {
            *self.pending.entry(label.clone()).or_default() += n;
        }
    }
}

/// The status of the spool at `dir` holding the segments `listed`, from
/// `summary`, brought up to date: a segment it does not describe is read
/// with `decode` (`None`: gone, or set aside), and the dead-letter file
/// counted again when it changed. Returns whether `summary` changed.
pub(crate) fn tally(
    dir: &Path,
    listed: &[Listed],
    summary: &mut Summary,
    mut decode: impl FnMut(&Listed) -> Result<Option<Vec<Record>>, SpoolError>,
) -> Result<(Status, bool), SpoolError> {
    let mut st = Status::default();
    let mut fresh = BTreeMap::new();
    let mut changed = listed.len() != summary.segments.len();
    for l in listed {
        let marker = read_marker(dir, &l.name);
        let kept = summary.segments.remove(&l.name);
        let entry = match kept {
            Some(e) if e.describes(l.len, l.ino, marker.key) => e,
            _ => {
                changed = true;
                let Some(records) = decode(l)? else {
                    continue;
                };
                Entry::of(l.len, l.ino, &marker, &Sketch::all(&records))
            }
        };
        st.add(&entry);
        fresh.insert(l.name.clone(), entry);
    }
    summary.segments = fresh;
    let dead = dead_letters(dir, summary.dead);
    changed |= dead != summary.dead;
    summary.dead = dead;
    if let Some(d) = dead {
        st.dead_letter_bytes = d.len;
        st.dead_letter_entries = d.entries;
    }
    st.dropped_unreported = read_count(&dir.join(DROPPED_FILE));
    Ok((st, changed))
}

/// The dead-letter file's count: `known` while the file is the one it was
/// made for, else counted again.
fn dead_letters(dir: &Path, known: Option<DeadLetters>) -> Option<DeadLetters> {
    let m = fs::metadata(dir.join(DEAD_LETTER_FILE)).ok()?;
    match known {
        Some(d) if (d.len, d.ino) == (m.len(), m.ino()) => Some(d),
        _ => Some(DeadLetters {
            len: m.len(),
            ino: m.ino(),
            entries: count_entries(dir),
        }),
    }
}

/// What waits in the spool at `dir`, read without its lock and without
/// changing anything (no leftover removed, nothing set aside, the summary
/// not rewritten): for a reader that cannot take the lock (a read-only
/// state directory, another user's spool). Segments are only ever replaced
/// whole (renamed into place), so each one read is whole; but the figures
/// may be stale: a replay or an append may be under way. A segment the
/// summary does not describe is decoded; one that cannot be read or whose
/// checksum fails is left out, with a warning.
pub fn peek(dir: &Path) -> Result<Status, SpoolError> {
    let rd = fs::read_dir(dir).map_err(|e| io_err(dir, "cannot list", e))?;
    let mut listed = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err(dir, "cannot list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        if let Ok(m) = entry.metadata()
            && m.file_type().is_file()
        {
            listed.push(Listed {
                name,
                len: m.len(),
                ino: m.ino(),
            });
        }
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let mut summary = Summary::load(dir);
    let (st, _) = tally(dir, &listed, &mut summary, |l| Ok(peek_segment(dir, l)))?;
    Ok(st)
}

/// A segment's records read without the lock; `None` (with a warning) when
/// it cannot be read or is damaged.
fn peek_segment(dir: &Path, l: &Listed) -> Option<Vec<Record>> {
    let path = dir.join(&l.name);
    let data = match crate::files::read_regular(&path, u64::MAX) {
        Ok(data) => data,
        // Replayed (or dropped) since the listing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("spool {}: cannot read it: {e}; not counted", path.display());
            return None;
        }
    };
    let parsed = parse_segment(&data);
    if !parsed.damage.is_empty() {
        tracing::warn!(
            "spool {}: {} damaged bytes; not counted",
            path.display(),
            parsed.damaged_bytes()
        );
        return None;
    }
    Some(parsed.records.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noticed_tests::logged;

    /// A segment replayed since the listing is quietly not counted; one
    /// that cannot be read is not counted either, with a warning naming it.
    #[test]
    fn only_a_segment_that_cannot_be_read_is_warned_about() {
        let d = tempfile::tempdir().unwrap();
        let listed = Listed {
            name: "00000000000000000001-1-0.seg".into(),
            len: 1,
            ino: 1,
        };
        let (r, logs) = logged(|| peek_segment(d.path(), &listed));
        assert!(r.is_none());
        assert!(logs.is_empty(), "{logs:?}");
        let path = d.path().join(&listed.name);
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &path).unwrap();
        let (r, logs) = logged(|| peek_segment(d.path(), &listed));
        assert!(r.is_none());
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert!(
            logs[0].starts_with("WARN")
                && logs[0].contains(&format!("spool {}: cannot read it: ", path.display()))
                && logs[0].ends_with("; not counted"),
            "{logs:?}"
        );
    }
}
