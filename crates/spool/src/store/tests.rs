//! The segment store's tests: appends, replays, the size limit, damage,
//! the drop counts and the backlog summary.

use super::*;
use crate::codec::HEADER_LEN;
use crate::codec::VERSION_1;
use crate::status::peek;
use crate::summary::SUMMARY_FILE;

/// A batch of `lines` from `label` (shared with crate::noticed_tests).
pub(crate) fn batch(label: &str, lines: &[&str]) -> Batch {
    Batch {
        label: label.into(),
        lines: lines.iter().map(|s| s.to_string()).collect(),
    }
}

/// A spool of at most `max` bytes in a directory of its own.
pub(crate) fn spool(max: u64) -> (tempfile::TempDir, Spool) {
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
        .filter(|n| !n.ends_with("lock") && n != SUMMARY_FILE)
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
    let (first, second) = (names[0].name.clone(), names[1].name.clone());
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
        dropped: 0,
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

/// The drop count is a field of the record that reports it: taken off the
/// counter by the append that spools it, given back when that record is
/// dropped at the size limit in its turn.
#[test]
fn the_drop_count_travels_in_the_record_that_reports_it() {
    let (_d, s) = spool(1 << 20);
    dropped::add(s.dir(), 7).unwrap();
    let report = |n: u64| {
        batch(
            "self-metrics",
            &[&format!("run spool_dropped={n}i 1"), "run v=1i 2"],
        )
    };
    s.append_reporting(&[batch("a", &["m v=1i 1"])], Some(&report))
        .unwrap();
    assert_eq!(s.status().unwrap().dropped_unreported, 0);
    let recs = s.records().unwrap();
    let dropped: Vec<u64> = recs.iter().map(|r| r.dropped).collect();
    assert_eq!(dropped, vec![0, 7]);
    assert_eq!(recs[1].lines[0], "run spool_dropped=7i 1");
    // A replay that delivered the record's first line leaves the rest
    // reporting nothing.
    let seg = s.oldest_segment().unwrap().unwrap();
    s.finish_segment(&seg.name, &[0], Some((1, vec!["run v=1i 2".into()])))
        .unwrap();
    assert_eq!(s.records().unwrap()[0].dropped, 0);
    s.finish_segment(&seg.name, &[1], None).unwrap();
    // Dropped at the size limit, the record gives its count back: the 3
    // points dropped and the 5 it reported.
    let (_d2, small) = spool(150);
    dropped::add(small.dir(), 5).unwrap();
    small
        .append_reporting(&[batch("a", &["m v=1i 1"])], Some(&report))
        .unwrap();
    assert_eq!(dropped::read(small.dir()), 0);
    let big: Vec<String> = (0..3).map(|i| format!("m v={i}i {i}")).collect();
    let refs: Vec<&str> = big.iter().map(String::as_str).collect();
    let r = small.append(&[batch("b", &refs)]).unwrap();
    assert_eq!(r.dropped_points, 3, "{r:?}");
    assert_eq!(small.take_dropped().unwrap(), 3 + 5);
}

/// The segment of a spool written by the previous release (records of
/// payload version 1, the drop count only inside the self-metrics lines,
/// a progress marker, no summary) is counted, replayed from where the old
/// replay stopped and delivered whole: an upgrade loses nothing.
#[test]
fn a_spool_of_the_previous_version_is_read_and_delivered_whole() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("spool");
    fs::create_dir(&dir).unwrap();
    let old = [
        crate::codec::tests::rec(0, "sponsoring", &["m v=1i 10", "m v=2i 20", "m v=3i 30"]),
        crate::codec::tests::rec(
            1,
            "self-metrics",
            &["ubuntu_metrics_run points=3i,spool_dropped=4i 40"],
        ),
    ];
    let mut bytes = Vec::new();
    for r in &old {
        bytes.extend(r.frame(VERSION_1).unwrap());
    }
    let name = "00000000000000000001-42-0.seg";
    fs::write(dir.join(name), &bytes).unwrap();
    let marker = Progress::encode(&[Progress {
        id: 0,
        fingerprint: crc32fast::hash(&old[0].frame(VERSION_1).unwrap()),
        lines: 1,
    }]);
    fs::write(dir.join(format!("{name}.progress")), marker).unwrap();
    fs::write(dir.join("dropped"), "2\n").unwrap();
    let s = Spool::open(&dir, 1 << 20).unwrap();
    assert!(!dir.join(SUMMARY_FILE).exists());
    let st = s.status().unwrap();
    assert_eq!((st.segments, st.records, st.points), (1, 2, 3));
    assert_eq!((st.oldest_point, st.dropped_unreported), (Some(20), 2));
    assert_eq!(st.pending["sponsoring"], 2);
    assert!(dir.join(SUMMARY_FILE).exists(), "built at the first status");
    let seg = s.oldest_segment().unwrap().unwrap();
    assert_eq!(seg.delivered, vec![1, 0], "the old marker still counts");
    let lines: Vec<&str> = seg
        .records
        .iter()
        .flat_map(|r| &r.lines)
        .map(String::as_str)
        .collect();
    assert_eq!(
        lines,
        [
            "m v=1i 10",
            "m v=2i 20",
            "m v=3i 30",
            "ubuntu_metrics_run points=3i,spool_dropped=4i 40"
        ]
    );
    assert!(seg.records.iter().all(|r| r.dropped == 0));
    s.finish_segment(&seg.name, &[0], None).unwrap();
    let left = s.records().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].lines, old[1].lines);
    assert_eq!(s.status().unwrap().points, 1);
}

/// `status` and `peek` read the summary, not the segments: a segment
/// whose bytes changed in place (same size, same inode) still counts as
/// the summary says; a summary gone, damaged, or out of date for a
/// segment (replaced by another file) is rebuilt from the segments.
#[test]
fn status_reads_the_summary_and_rebuilds_it_when_it_is_out_of_date() {
    let (_d, s) = spool(1 << 20);
    s.append(&[
        batch("a", &["m v=1i 5", "m v=2i 3"]),
        batch("b", &["n v=1i 9"]),
    ])
    .unwrap();
    s.append(&[batch("a", &["o v=1i 7"])]).unwrap();
    s.dead_letter("x", &["n v=1i 2".into()], "bad").unwrap();
    let want = s.status().unwrap();
    assert_eq!((want.segments, want.records, want.points), (2, 3, 4));
    assert_eq!(want.pending.get("a"), Some(&3));
    assert_eq!(want.dead_letter_entries, 1);
    assert_eq!(peek(s.dir()).unwrap(), want);
    let summary = fs::read(s.dir().join(SUMMARY_FILE)).unwrap();
    // Every way of losing the summary rebuilds the same status.
    fs::remove_file(s.dir().join(SUMMARY_FILE)).unwrap();
    assert_eq!(peek(s.dir()).unwrap(), want);
    assert!(!s.dir().join(SUMMARY_FILE).exists(), "peek writes nothing");
    assert_eq!(s.status().unwrap(), want);
    assert_eq!(fs::read(s.dir().join(SUMMARY_FILE)).unwrap(), summary);
    fs::write(s.dir().join(SUMMARY_FILE), b"garbage").unwrap();
    assert_eq!(s.status().unwrap(), want);
    // Overwritten in place with bytes of the same length: not decoded.
    let first = s.segments().unwrap()[0].name.clone();
    let path = s.dir().join(&first);
    let mut data = fs::read(&path).unwrap();
    data[HEADER_LEN + 3] ^= 0x40;
    std::io::Write::write_all(
        &mut fs::OpenOptions::new().write(true).open(&path).unwrap(),
        &data,
    )
    .unwrap();
    assert_eq!(s.status().unwrap(), want);
    // Replaced by another file: decoded (here: damaged, set aside).
    let other = s.dir().join("other");
    fs::write(&other, &data).unwrap();
    fs::rename(&other, &path).unwrap();
    let st = s.status().unwrap();
    assert_eq!((st.segments, st.records, st.points), (1, 1, 1));
    assert_eq!(st.pending.get("b"), None);
    // The dead-letter file changed behind the summary's back: counted again.
    fs::write(s.dead_letter_path(), "").unwrap();
    assert_eq!(s.status().unwrap().dead_letter_entries, 0);
}

/// How a [`deliver`] that runs out of lines stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Killed: only the progress marker says how far it got.
    Kill,
    /// Stopped (InfluxDB went away): the segment is finished, rewritten
    /// with the lines still to write of its partly delivered record.
    Rewrite,
}

/// Delivers what `s` holds as a replay does: the oldest segment first, its
/// records in turn from where an earlier replay got (the progress marker),
/// `step` lines at a time, the progress recorded after each step, the
/// segment finished at its end. Gives up after `budget` lines, the way
/// `stop` says. Pushes the (label, line) delivered to `out`; `true` when
/// the spool was emptied.
fn deliver(
    s: &Spool,
    step: usize,
    mut budget: usize,
    stop: Stop,
    out: &mut Vec<(String, String)>,
) -> bool {
    while let Some(seg) = s.oldest_segment().unwrap() {
        let mut progress: Vec<Progress> = seg
            .records
            .iter()
            .zip(&seg.delivered)
            .filter(|(_, n)| **n > 0)
            .map(|(r, &lines)| Progress {
                id: r.id,
                fingerprint: r.fingerprint(),
                lines,
            })
            .collect();
        let mut done = Vec::new();
        for (r, &from) in seg.records.iter().zip(&seg.delivered) {
            let mut pos = from;
            while pos < r.lines.len() {
                if budget == 0 {
                    if let Stop::Rewrite = stop {
                        let left = r.lines[pos..].to_vec();
                        s.finish_segment(&seg.name, &done, Some((r.id, left)))
                            .unwrap();
                    }
                    return false;
                }
                let to = (pos + step.min(budget)).min(r.lines.len());
                out.extend(
                    r.lines[pos..to]
                        .iter()
                        .map(|l| (r.label.clone(), l.clone())),
                );
                budget -= to - pos;
                pos = to;
                progress.retain(|p| p.id != r.id);
                progress.push(Progress {
                    id: r.id,
                    fingerprint: r.fingerprint(),
                    lines: pos,
                });
                s.record_progress(&seg.name, &progress).unwrap();
            }
            done.push(r.id);
        }
        s.finish_segment(&seg.name, &done, None).unwrap();
    }
    true
}

/// The (label, line) pairs of `batches`, in order.
fn pairs(batches: &[Batch]) -> Vec<(String, String)> {
    batches
        .iter()
        .flat_map(|b| b.lines.iter().map(|l| (b.label.clone(), l.clone())))
        .collect()
}

/// Batch `k` of append `a`: `n` distinct lines.
fn numbered(a: usize, k: usize, n: usize) -> Batch {
    Batch {
        label: format!("c{a}-{k}"),
        lines: (0..n)
            .map(|j| format!("m,a={a},k={k} j={j}i {}", 1000 + j))
            .collect(),
    }
}

/// Records come back in the order appended: from `records()`, segment
/// after segment from `oldest_segment()` (ids 0, 1, ... within each),
/// after a reopen, and from a replay; a batch split into several records
/// keeps its lines' order.
#[test]
fn records_come_back_and_are_delivered_in_append_order() {
    let (d, s) = spool(1 << 30);
    let mut appends: Vec<Vec<Batch>> = (0..6)
        .map(|a| {
            (0..1 + a % 3)
                .map(|k| numbered(a, k, 1 + (a + k) % 4))
                .collect()
        })
        .collect();
    // One batch larger than a record: two records, lines in order.
    appends[3].insert(1, numbered(3, 9, MAX_RECORD_LINES + 7));
    for batches in &appends {
        s.append(batches).unwrap();
    }
    let want: Vec<(String, String)> = appends.iter().flat_map(|b| pairs(b)).collect();
    let got = |s: &Spool| -> Vec<(String, String)> {
        s.records()
            .unwrap()
            .iter()
            .flat_map(|r| r.lines.iter().map(|l| (r.label.clone(), l.clone())))
            .collect()
    };
    assert_eq!(got(&s), want);
    assert_eq!(s.status().unwrap().segments, appends.len());
    drop(s);
    let s = Spool::open(&d.path().join("spool"), 1 << 30).unwrap();
    assert_eq!(got(&s), want, "after a reopen");
    // Segment by segment, as a replay reads them.
    for (a, batches) in appends.iter().enumerate() {
        let seg = s.oldest_segment().unwrap().unwrap();
        let ids: Vec<u32> = seg.records.iter().map(|r| r.id).collect();
        let n = u32::try_from(seg.records.len()).unwrap();
        assert_eq!(ids, (0..n).collect::<Vec<_>>(), "append {a}");
        let lines: Vec<(String, String)> = seg
            .records
            .iter()
            .flat_map(|r| r.lines.iter().map(|l| (r.label.clone(), l.clone())))
            .collect();
        assert_eq!(lines, pairs(batches), "append {a}");
        s.finish_segment(&seg.name, &ids, None).unwrap();
    }
    assert!(s.oldest_segment().unwrap().is_none());
    // Delivered by a replay: in the order appended.
    for batches in &appends {
        s.append(batches).unwrap();
    }
    let mut out = Vec::new();
    assert!(deliver(&s, 2500, usize::MAX, Stop::Kill, &mut out));
    assert_eq!(out, want);
    assert_eq!(s.status().unwrap(), Status::default());
}

/// Replays interrupted at every few lines (killed: resumed from the
/// progress marker by a new process; or stopped: the segment rewritten
/// with what is left of its record), with appends in between: every line
/// is delivered once, in the order appended.
#[test]
fn an_interrupted_replay_resumes_in_append_order() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("spool");
    let mut s = Spool::open(&dir, 1 << 30).unwrap();
    let mut want = Vec::new();
    let mut a = 0;
    let mut add = |s: &Spool, want: &mut Vec<(String, String)>| {
        let batches: Vec<Batch> = (0..1 + a % 3)
            .map(|k| numbered(a, k, 1 + (a * 5 + k * 3) % 7))
            .collect();
        s.append(&batches).unwrap();
        want.extend(pairs(&batches));
        a += 1;
    };
    for _ in 0..4 {
        add(&s, &mut want);
    }
    let mut out = Vec::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 100, "the replays make no progress: {out:?}");
        let stop = if rounds % 2 == 0 {
            Stop::Kill
        } else {
            Stop::Rewrite
        };
        if deliver(&s, 1 + rounds % 3, 2 + rounds % 5, stop, &mut out) {
            break;
        }
        // Resumed by another process, sometimes after another append.
        drop(s);
        s = Spool::open(&dir, 1 << 30).unwrap();
        if rounds < 8 && rounds % 3 == 0 {
            add(&s, &mut want);
        }
        assert!(out.len() < want.len(), "round {rounds}");
        assert_eq!(out[..], want[..out.len()], "round {rounds}: out of order");
    }
    assert!(rounds > 10, "only {rounds} rounds: no interruption tested");
    assert_eq!(out, want);
    assert_eq!(s.status().unwrap(), Status::default());
}

/// A segment named ahead of the clock (the clock went back since it was
/// written): the next append still sorts after it, and is delivered after.
#[test]
fn an_append_after_a_segment_from_the_future_comes_after_it() {
    let (_d, s) = spool(1 << 20);
    s.append(&[batch("old", &["m v=1i 1"])]).unwrap();
    let name = s.segments().unwrap()[0].name.clone();
    let ahead = format!("{:020}-1-0{SEGMENT_SUFFIX}", u64::MAX / 2);
    fs::rename(s.dir().join(&name), s.dir().join(&ahead)).unwrap();
    s.append(&[batch("new", &["m v=2i 2"])]).unwrap();
    s.append(&[batch("newer", &["m v=3i 3"])]).unwrap();
    let labels: Vec<String> = s.records().unwrap().into_iter().map(|r| r.label).collect();
    assert_eq!(labels, ["old", "new", "newer"]);
    let mut out = Vec::new();
    assert!(deliver(&s, 1, usize::MAX, Stop::Kill, &mut out));
    let labels: Vec<&str> = out.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["old", "new", "newer"]);
}

/// A leftover that another process removed meanwhile is no matter for a
/// warning; one that cannot be removed (a directory) is warned about, by
/// name.
#[test]
fn only_a_leftover_that_cannot_be_removed_is_warned_about() {
    use crate::noticed_tests::logged;
    let (_d, s) = spool(1 << 20);
    let name = ".00000000000000000001-1-0.seg.tmp";
    let ((), logs) = logged(|| s.remove_leftover(&s.dir().join(name), name));
    assert!(logs.is_empty(), "{logs:?}");
    fs::create_dir(s.dir().join(name)).unwrap();
    let (_, logs) = logged(|| Spool::open(s.dir(), 1 << 20).unwrap());
    assert!(
        logs.iter().any(|l| l.starts_with("WARN")
            && l.contains(&format!(
                "cannot remove {name}, left by an interrupted write"
            ))),
        "{logs:?}"
    );
    fs::remove_dir(s.dir().join(name)).unwrap();
    fs::write(s.dir().join(name), "x").unwrap();
    let (_, logs) = logged(|| Spool::open(s.dir(), 1 << 20).unwrap());
    assert!(!s.dir().join(name).exists());
    assert!(
        logs.iter().any(|l| l.starts_with("WARN")
            && l.contains(&format!("removed {name}, left by an interrupted write"))),
        "{logs:?}"
    );
}

/// Removing a segment that is already gone is done; one that cannot be
/// removed (a directory at its name) is an error naming it.
#[test]
fn removing_a_segment_fails_only_when_it_stays() {
    let (_d, s) = spool(1 << 20);
    let name = "00000000000000000001-1-0.seg";
    s.remove(name).unwrap();
    fs::create_dir(s.dir().join(name)).unwrap();
    let e = s.remove(name).unwrap_err();
    assert!(
        e.0.starts_with(&format!(
            "spool {}: cannot remove: ",
            s.dir().join(name).display()
        )),
        "{e}"
    );
    assert!(s.dir().join(name).is_dir());
}
