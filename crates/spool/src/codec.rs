//! The record codec: how a [`Record`] is framed in a segment file, and the
//! reader that finds the valid records in any bytes.
//!
//! ```text
//! "UMSP" | payload length (u32 LE) | CRC-32 of (length bytes ++ payload) (u32 LE) | payload
//! payload, version 2 = 2 (u8) | id (u32) | spooled at, ns since the epoch (i64) |
//!                      points dropped it reports (u64) |
//!                      label length (u16) | label | line count (u32) | (line length (u32) | line)*
//! payload, version 1 = 1 (u8) | id (u32) | spooled at (i64) |
//!                      label length (u16) | label | line count (u32) | (line length (u32) | line)*
//! ```
//!
//! Records are written in version 2. Version 1 (the spools of earlier
//! releases) is still read, as records that report no drop: a station
//! upgraded with a non-empty spool delivers every record it kept.

use chrono::{DateTime, Utc};
use std::ops::Range;

/// The first bytes of every record.
pub const MAGIC: [u8; 4] = *b"UMSP";
/// Magic, length and checksum.
pub const HEADER_LEN: usize = 12;
/// The version records are written in.
pub(crate) const VERSION: u8 = 2;
/// The version before the drop count (read, never written but for
/// [`Record::fingerprint`]).
pub(crate) const VERSION_1: u8 = 1;

/// One spooled batch: lines of line protocol, each with its own timestamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Unique within its segment, kept when the segment is rewritten.
    pub id: u32,
    /// When it was spooled, in ns since the Unix epoch.
    pub spooled_at: i64,
    /// Points the spool dropped at its size limit that this record's lines
    /// report (the self-metrics that carry the count; 0 for any other).
    /// When the record is dropped at the size limit in its turn, the count
    /// goes back to the spool's counter, so it is reported once, never lost.
    pub dropped: u64,
    /// Where the lines came from (a collector's name, `self-metrics`).
    pub label: String,
    pub lines: Vec<String>,
}

impl Record {
    /// The record framed for the segment file. `None` when it cannot be
    /// framed (a payload over 4 GiB).
    pub fn encode(&self) -> Option<Vec<u8>> {
        self.frame(VERSION)
    }

    /// The record framed in payload version `version` (1 leaves out the
    /// drop count).
    pub(crate) fn frame(&self, version: u8) -> Option<Vec<u8>> {
        let label = truncate_utf8(&self.label, usize::from(u16::MAX));
        let dropped_len = if version == VERSION_1 { 0 } else { 8 };
        let lines: usize = self.lines.iter().map(|l| 4 + l.len()).sum();
        let size = 1 + 4 + 8 + dropped_len + 2 + label.len() + 4 + lines;
        let len = u32::try_from(size).ok()?;
        let n = u32::try_from(self.lines.len()).ok()?;
        let mut out = Vec::with_capacity(HEADER_LEN + size);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(version);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.spooled_at.to_le_bytes());
        if version != VERSION_1 {
            out.extend_from_slice(&self.dropped.to_le_bytes());
        }
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

    /// What a progress entry is valid for: the CRC-32 of the record's
    /// frame in version 1 (id, time, label and lines; 0 for a record that
    /// cannot be framed). Version 1, so that the progress markers of a
    /// spool written by an earlier release still count after an upgrade.
    pub fn fingerprint(&self) -> u32 {
        self.frame(VERSION_1).map_or(0, |b| crc32fast::hash(&b))
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

pub(crate) fn checksum(len: &[u8], payload: &[u8]) -> u32 {
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
        match next_record(data, pos + 1) {
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

/// The first valid record at or after `search`, with where it starts.
fn next_record(data: &[u8], mut search: usize) -> Option<(usize, (usize, Record))> {
    while search < data.len() {
        let cand = search + find_magic(&data[search..])?;
        if let Some(found) = parse_record_at(data, cand) {
            return Some((cand, found));
        }
        search = cand + 1;
    }
    None
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
    let version = c.array::<1>()?[0];
    if version != VERSION && version != VERSION_1 {
        return None;
    }
    let id = u32::from_le_bytes(c.array()?);
    let spooled_at = i64::from_le_bytes(c.array()?);
    let dropped = if version == VERSION_1 {
        0
    } else {
        u64::from_le_bytes(c.array()?)
    };
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
        dropped,
        label,
        lines,
    })
}

/// The timestamp at the end of a line of line protocol (the text after the
/// last space, when it is an integer).
pub fn line_timestamp(line: &str) -> Option<i64> {
    line.rsplit_once(' ')?.1.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn rec(id: u32, label: &str, lines: &[&str]) -> Record {
        Record {
            id,
            spooled_at: 1_795_521_600_000_000_000 + i64::from(id),
            dropped: 0,
            label: label.into(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub(crate) fn encode_all(recs: &[Record]) -> Vec<u8> {
        recs.iter().flat_map(|r| r.encode().unwrap()).collect()
    }

    fn sample() -> Vec<Record> {
        vec![
            rec(0, "sponsoring", &["m,t=a v=1i 1", "m,t=b v=2i 2"]),
            Record {
                dropped: 7,
                ..rec(1, "self-metrics", &["s f=\"x\ny UMSP\" 3"])
            },
            rec(2, "", &[]),
            rec(3, "ünï", &["m v=1.5 4"]),
        ]
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

    /// A segment written by the release before the drop count (payload
    /// version 1) reads whole, each record reporting no drop, and keeps
    /// its fingerprint (the progress markers that release wrote count).
    #[test]
    fn records_of_the_previous_version_read_whole() {
        let recs = sample();
        let mut data = Vec::new();
        for r in &recs {
            data.extend(r.frame(VERSION_1).unwrap());
        }
        assert_eq!(data[HEADER_LEN], 1);
        let p = parse_segment(&data);
        assert!(p.damage.is_empty(), "{:?}", p.damage);
        let got: Vec<Record> = p.records.into_iter().map(|(_, r)| r).collect();
        let want: Vec<Record> = recs
            .iter()
            .map(|r| Record {
                dropped: 0,
                ..r.clone()
            })
            .collect();
        assert_eq!(got, want);
        for (old, new) in got.iter().zip(&recs) {
            assert_eq!(old.fingerprint(), new.fingerprint());
        }
        // Written again (a rewrite after a replay), they become version 2.
        assert_eq!(got[0].encode().unwrap()[HEADER_LEN], VERSION);
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

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<u32>(),
            any::<i64>(),
            any::<u64>(),
            ".{0,8}",
            proptest::collection::vec(".{0,40}", 0..6),
        )
            .prop_map(|(id, spooled_at, dropped, label, lines)| Record {
                id,
                spooled_at,
                dropped,
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
            let version = frame[HEADER_LEN];
            assert_eq!(
                rec.frame(version).unwrap(),
                frame,
                "re-encodes to its bytes"
            );
        }
        let covered: usize =
            p.records.iter().map(|(r, _)| r.len()).sum::<usize>() + p.damaged_bytes();
        assert_eq!(covered, data.len(), "every byte is a record or damage");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes hold no record (a frame needs the magic, a
        /// matching CRC-32 and a payload that decodes whole): all of them
        /// are one range of damage.
        #[test]
        fn reader_finds_no_record_in_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let p = parse_segment(&data);
            check_invariants(&data, &p);
            prop_assert!(p.records.is_empty(), "{:?}", p.records);
            prop_assert_eq!(p.damage.len(), usize::from(!data.is_empty()));
            if let Some(d) = p.damage.first() {
                prop_assert_eq!(d.clone(), 0..data.len());
            }
            prop_assert_eq!(p.valid_end(), 0);
            prop_assert_eq!(p.torn_tail_only(data.len()), !data.is_empty());
        }

        /// Records, then a magic and garbage (a record torn after its
        /// magic): the records read back whole, in order, and the rest is
        /// one torn tail.
        #[test]
        fn reader_keeps_the_records_before_bytes_after_a_magic(
            recs in proptest::collection::vec(arb_record(), 0..4),
            tail in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut data = encode_all(&recs);
            let end = data.len();
            data.extend_from_slice(&MAGIC);
            data.extend(tail);
            let p = parse_segment(&data);
            check_invariants(&data, &p);
            let got: Vec<Record> = p.records.iter().map(|(_, r)| r.clone()).collect();
            prop_assert_eq!(got, recs);
            prop_assert_eq!(p.valid_end(), end);
            prop_assert_eq!(p.damage.len(), 1);
            prop_assert_eq!(p.damage[0].clone(), end..data.len());
            prop_assert!(p.torn_tail_only(data.len()));
        }

        /// An encoding cut anywhere and followed by garbage reads back as a
        /// prefix of the records: exactly those wholly before the cut.
        #[test]
        fn reader_on_a_cut_encoding_and_garbage_returns_a_prefix(
            recs in proptest::collection::vec(arb_record(), 0..6),
            cut in any::<prop::sample::Index>(),
            mut garbage in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let whole = encode_all(&recs);
            let cut = cut.index(whole.len() + 1);
            // Garbage that starts with the bytes cut off puts them back (a
            // record cut before its last byte, then that very byte: whole
            // again, about once in 40 runs): it starts with another byte.
            if let (Some(g), Some(b)) = (garbage.first_mut(), whole.get(cut))
                && g == b
            {
                *g ^= 0xff;
            }
            let mut ends = Vec::new();
            let mut at = 0;
            for r in &recs {
                at += r.encode().expect("frames").len();
                ends.push(at);
            }
            let complete = ends.iter().filter(|e| **e <= cut).count();
            let mut data = whole[..cut].to_vec();
            data.extend(garbage);
            let p = parse_segment(&data);
            check_invariants(&data, &p);
            let got: Vec<Record> = p.records.iter().map(|(_, r)| r.clone()).collect();
            prop_assert_eq!(got, recs[..complete].to_vec());
            let kept = if complete == 0 { 0 } else { ends[complete - 1] };
            prop_assert_eq!(p.valid_end(), kept);
            prop_assert_eq!(p.damaged_bytes(), data.len() - kept);
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
            version in 0u8..3,
        ) {
            // Valid frames and checksums around arbitrary payloads: the
            // payload decoder must refuse what is not a whole record, in
            // either version.
            let mut data = Vec::new();
            for mut p in payloads {
                if version > 0 && !p.is_empty() { p[0] = version; }
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
