//! The running backlog summary: what each segment holds, kept in the file
//! `summary` beside the segments so that [`Spool::status`](crate::Spool::status)
//! and [`peek`](crate::peek) decode no segment.
//!
//! Every change to a segment under the lock (an append, a drop at the size
//! limit, a replay's progress or its end) updates the segment's entry, and
//! a dead letter the dead-letter count. The file is written whole (a
//! temporary name, then a rename) but not `fsync`ed: it is a cache that
//! its reader checks. An entry counts only while its segment is the very
//! file it was made for (same size and inode: a segment is only ever
//! replaced by a rename, so any rewrite changes the inode) with the same
//! progress marker (same CRC-32); the dead-letter count only while the
//! dead-letter file has the size and inode it was counted at. Anything
//! else (no summary: a spool of an earlier release; a crash between a
//! segment's rename and the summary's; a hand edit) is rebuilt by decoding
//! just the segments it no longer describes.
//!
//! ```text
//! ubuntu-metrics spool summary 1
//! segment <name> <bytes> <inode> <marker CRC|-> <records in it> <records waiting> <points waiting> <oldest spooled at|-> <oldest point|-> <label>=<points>,...|-
//! dead-letter <bytes> <inode> <entries>
//! end <CRC-32 of the lines above>
//! ```
//!
//! Names and labels are written with `%XX` escapes for every byte but
//! ASCII letters, digits, `.`, `_` and `-`.

use crate::Record;
use crate::files::{read_regular, replace_file};
use crate::progress::Marker;
use std::collections::BTreeMap;
use std::path::Path;

/// The summary's file name in the spool directory.
pub const SUMMARY_FILE: &str = "summary";
const HEADER: &str = "ubuntu-metrics spool summary 1";
/// Far more than any real spool's summary: a larger file is not one.
const LIMIT: u64 = 64 << 20;

/// What one segment holds, as of the file it was made for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub len: u64,
    pub ino: u64,
    /// The CRC-32 of the segment's progress marker, `None` without one.
    pub marker: Option<u32>,
    /// Records in the segment (delivered or not).
    pub total: usize,
    /// Records with lines still to deliver, and those lines.
    pub records: usize,
    pub points: usize,
    /// When the oldest record waiting was spooled (ns).
    pub oldest: Option<i64>,
    /// The oldest timestamp of a line waiting (ns).
    pub oldest_point: Option<i64>,
    /// Lines waiting, per label.
    pub labels: BTreeMap<String, usize>,
}

/// What the summary needs of a record: enough to count what waits after
/// any progress, without its lines (kept by the spool for the segment a
/// replay is delivering, so that recording its progress decodes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sketch {
    id: u32,
    fingerprint: u32,
    spooled_at: i64,
    label: String,
    /// `oldest[i]`: the oldest timestamp of the lines from the `i`th on
    /// (one more than the lines: `None` at the end).
    oldest: Vec<Option<i64>>,
}

impl Sketch {
    pub fn of(r: &Record) -> Sketch {
        let mut oldest = vec![None; r.lines.len() + 1];
        for (i, l) in r.lines.iter().enumerate().rev() {
            let ts = crate::line_timestamp(l);
            oldest[i] = match (ts, oldest[i + 1]) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Sketch {
            id: r.id,
            fingerprint: r.fingerprint(),
            spooled_at: r.spooled_at,
            label: r.label.clone(),
            oldest,
        }
    }

    pub fn all(records: &[Record]) -> Vec<Sketch> {
        records.iter().map(Sketch::of).collect()
    }

    fn lines(&self) -> usize {
        self.oldest.len() - 1
    }

    /// The lines `marker` says were delivered (the rule of
    /// [`delivered_of`](crate::progress::delivered_of)).
    fn delivered(&self, marker: &Marker) -> usize {
        marker
            .entries
            .iter()
            .find(|e| e.id == self.id)
            .filter(|e| e.lines <= self.lines() && e.fingerprint == self.fingerprint)
            .map_or(0, |e| e.lines)
    }
}

impl Entry {
    /// The entry of a segment file (`len` bytes, inode `ino`) holding the
    /// records sketched in `records`, with progress `marker`.
    pub fn of(len: u64, ino: u64, marker: &Marker, records: &[Sketch]) -> Entry {
        let mut e = Entry {
            len,
            ino,
            marker: marker.key,
            total: records.len(),
            ..Entry::default()
        };
        for r in records {
            let done = r.delivered(marker);
            if done >= r.lines() {
                continue;
            }
            e.records += 1;
            e.points += r.lines() - done;
            *e.labels.entry(r.label.clone()).or_default() += r.lines() - done;
            e.oldest = Some(e.oldest.map_or(r.spooled_at, |o| o.min(r.spooled_at)));
            if let Some(ts) = r.oldest[done] {
                e.oldest_point = Some(e.oldest_point.map_or(ts, |o| o.min(ts)));
            }
        }
        e
    }

    /// Whether the entry still describes the segment file (`len`, `ino`)
    /// with the marker whose CRC-32 is `marker`.
    pub fn describes(&self, len: u64, ino: u64, marker: Option<u32>) -> bool {
        (self.len, self.ino, self.marker) == (len, ino, marker)
    }

    fn encode(&self, name: &str, out: &mut String) {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(l, n)| format!("{}={n}", escape(l)))
            .collect();
        out.push_str(&format!(
            "segment {} {} {} {} {} {} {} {} {} {}\n",
            escape(name),
            self.len,
            self.ino,
            opt(self.marker),
            self.total,
            self.records,
            self.points,
            opt(self.oldest),
            opt(self.oldest_point),
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels.join(",")
            }
        ));
    }

    fn decode(f: &[&str]) -> Option<(String, Entry)> {
        let [
            name,
            len,
            ino,
            marker,
            total,
            records,
            points,
            oldest,
            oldest_point,
            labels,
        ] = f
        else {
            return None;
        };
        let mut e = Entry {
            len: len.parse().ok()?,
            ino: ino.parse().ok()?,
            marker: parse_opt(marker)?,
            total: total.parse().ok()?,
            records: records.parse().ok()?,
            points: points.parse().ok()?,
            oldest: parse_opt(oldest)?,
            oldest_point: parse_opt(oldest_point)?,
            labels: BTreeMap::new(),
        };
        if *labels != "-" {
            for pair in labels.split(',') {
                let (l, n) = pair.split_once('=')?;
                e.labels.insert(unescape(l)?, n.parse().ok()?);
            }
        }
        Some((unescape(name)?, e))
    }
}

/// The dead-letter file as counted: its size, inode and entries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeadLetters {
    pub len: u64,
    pub ino: u64,
    pub entries: usize,
}

/// The whole summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub segments: BTreeMap<String, Entry>,
    pub dead: Option<DeadLetters>,
}

impl Summary {
    /// The summary of the spool at `dir`; empty when there is none or it
    /// cannot be read (then rebuilt).
    pub fn load(dir: &Path) -> Summary {
        read_regular(&dir.join(SUMMARY_FILE), LIMIT)
            .ok()
            .and_then(|b| Summary::decode(std::str::from_utf8(&b).ok()?))
            .unwrap_or_default()
    }

    /// Writes the summary whole. A failure is only logged: the next
    /// status finds the old summary out of date and rebuilds it.
    pub fn save(&self, dir: &Path) {
        let path = dir.join(SUMMARY_FILE);
        let tmp = dir.join(format!(".{SUMMARY_FILE}.tmp"));
        if let Err(e) = replace_file(&path, &tmp, self.encode().as_bytes(), false) {
            tracing::warn!(
                spool = %dir.display(),
                "cannot write the backlog summary {}: {e}; the next status rebuilds it",
                path.display()
            );
        }
    }

    pub fn encode(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for (name, e) in &self.segments {
            e.encode(name, &mut out);
        }
        if let Some(d) = self.dead {
            out.push_str(&format!("dead-letter {} {} {}\n", d.len, d.ino, d.entries));
        }
        let crc = crc32fast::hash(out.as_bytes());
        out.push_str(&format!("end {crc}\n"));
        out
    }

    /// `None` unless `text` is a whole summary whose checksum holds.
    pub fn decode(text: &str) -> Option<Summary> {
        let body_end = text.strip_suffix('\n')?.rfind('\n')? + 1;
        let (body, end) = text.split_at(body_end);
        let crc: u32 = end.strip_prefix("end ")?.trim_end().parse().ok()?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut s = Summary::default();
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            match f.split_first()? {
                (&"segment", rest) => {
                    let (name, e) = Entry::decode(rest)?;
                    s.segments.insert(name, e);
                }
                (&"dead-letter", [len, ino, entries]) => {
                    s.dead = Some(DeadLetters {
                        len: len.parse().ok()?,
                        ino: ino.parse().ok()?,
                        entries: entries.parse().ok()?,
                    });
                }
                _ => return None,
            }
        }
        Some(s)
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `Some(None)` for `-`, `None` when it is neither `-` nor a value.
fn parse_opt<T: std::str::FromStr>(s: &str) -> Option<Option<T>> {
    if s == "-" {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        // An empty label must still be one field.
        out.push('%');
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    if s == "%" {
        return Some(String::new());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::rec;

    #[test]
    fn a_summary_round_trips_and_refuses_damage() {
        let recs = [
            rec(0, "a b,c=d%", &["m v=1i 5", "m v=2i 3"]),
            rec(1, "", &["n v=1i 9"]),
        ];
        let mut s = Summary::default();
        s.segments.insert(
            "00001-2-3.seg".into(),
            Entry::of(10, 20, &Marker::default(), &Sketch::all(&recs)),
        );
        s.segments.insert(
            "odd name é.seg".into(),
            Entry::of(1, 2, &Marker::default(), &[]),
        );
        s.dead = Some(DeadLetters {
            len: 5,
            ino: 6,
            entries: 2,
        });
        let text = s.encode();
        assert_eq!(Summary::decode(&text), Some(s.clone()));
        let e = &s.segments["00001-2-3.seg"];
        assert_eq!((e.records, e.points, e.oldest_point), (2, 3, Some(3)));
        assert_eq!(e.labels["a b,c=d%"], 2);
        assert_eq!(e.labels[""], 1);
        // Any change to the text, or a cut, is refused (then rebuilt).
        for cut in 0..text.len() {
            assert_eq!(Summary::decode(&text[..cut]), None, "cut at {cut}");
        }
        let flipped = text.replacen(" 10 ", " 11 ", 1);
        assert_eq!(Summary::decode(&flipped), None);
    }
}
