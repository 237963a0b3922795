//! Tests that pin what mutation testing (`scripts/mutants`) found no test
//! noticing: each names the behaviour it holds in place.

use crate::codec::{Record, parse_segment};

fn read_back(r: &Record) -> Record {
    let p = parse_segment(&r.encode().unwrap());
    assert!(p.damage.is_empty(), "{:?}", p.damage);
    assert_eq!(p.records.len(), 1);
    p.records[0].1.clone()
}

/// A label longer than its 16-bit length field is cut to 65,535 bytes, on
/// a character boundary; a shorter one is kept whole.
#[test]
fn a_label_over_64_kib_is_cut_on_a_character_boundary() {
    let fits = Record {
        label: "x".repeat(65_535),
        ..Record::default()
    };
    assert_eq!(read_back(&fits).label, fits.label);
    // 65,534 bytes of ASCII, then 'é' (2 bytes) crossing the limit.
    let over = Record {
        label: format!("{}é{}", "x".repeat(65_534), "y".repeat(10)),
        ..Record::default()
    };
    assert_eq!(read_back(&over).label, "x".repeat(65_534));
    let short = Record {
        label: "ünï".into(),
        ..Record::default()
    };
    assert_eq!(read_back(&short).label, "ünï");
}

/// Only damage at the very end, right after the last whole record, is an
/// interrupted append; no damage, or damage elsewhere, is not.
#[test]
fn a_torn_tail_is_damage_only_at_the_end() {
    let a = Record {
        label: "a".into(),
        lines: vec!["m v=1i 1".into()],
        ..Record::default()
    };
    let whole: Vec<u8> = [a.encode().unwrap(), a.encode().unwrap()].concat();
    let clean = parse_segment(&whole);
    assert!(!clean.torn_tail_only(whole.len()));

    let torn = &whole[..whole.len() - 3];
    assert!(parse_segment(torn).torn_tail_only(torn.len()));

    let mut middle = whole.clone();
    let first_len = a.encode().unwrap().len();
    middle[first_len - 1] ^= 0xff;
    let p = parse_segment(&middle);
    assert_eq!(p.damage.len(), 1);
    assert!(!p.torn_tail_only(middle.len()), "{p:?}");

    // Damage in the middle and a torn tail: two ranges, not only a tail.
    let mut both = [middle, a.encode().unwrap()].concat();
    both.truncate(both.len() - 3);
    let p = parse_segment(&both);
    assert_eq!(p.damage.len(), 2, "{p:?}");
    assert!(!p.torn_tail_only(both.len()), "{p:?}");
}

/// Records hold at most `MAX_RECORD_LINES` lines and `MAX_RECORD_BYTES`
/// bytes (4 per line for its length): exactly at a limit is one record,
/// one more line or byte starts the next; a single line larger than the
/// byte limit is a record of its own.
#[test]
fn records_are_split_exactly_at_the_line_and_byte_limits() {
    use crate::store::chunk_lines;
    use crate::{MAX_RECORD_BYTES, MAX_RECORD_LINES};
    let sizes =
        |lines: &[String]| -> Vec<usize> { chunk_lines(lines).iter().map(|c| c.len()).collect() };
    let short = |n: usize| -> Vec<String> { (0..n).map(|i| format!("m v={i}i")).collect() };
    assert_eq!(sizes(&[]), Vec::<usize>::new());
    assert_eq!(sizes(&short(1)), [1]);
    assert_eq!(sizes(&short(MAX_RECORD_LINES)), [MAX_RECORD_LINES]);
    assert_eq!(sizes(&short(MAX_RECORD_LINES + 1)), [MAX_RECORD_LINES, 1]);
    assert_eq!(
        sizes(&short(2 * MAX_RECORD_LINES + 3)),
        [MAX_RECORD_LINES, MAX_RECORD_LINES, 3]
    );
    // Four lines that fill the byte limit exactly, then one of 1 byte.
    let quarter = MAX_RECORD_BYTES / 4 - 4;
    let mut big: Vec<String> = (0..4).map(|_| "x".repeat(quarter)).collect();
    assert_eq!(sizes(&big), [4]);
    big.push("y".into());
    assert_eq!(sizes(&big), [4, 1]);
    // One byte more in the fourth line: it starts the second record.
    big[3].push('z');
    assert_eq!(sizes(&big), [3, 2]);
    // A line over the limit alone, between two short ones.
    let huge = vec!["a".into(), "h".repeat(MAX_RECORD_BYTES + 1), "b".into()];
    assert_eq!(sizes(&huge), [1, 1, 1]);
    // The pieces are the lines, in order.
    let lines = short(MAX_RECORD_LINES + 2);
    assert_eq!(chunk_lines(&lines).concat(), lines);
}

use crate::dead_letter::DEAD_LETTER_FILE;
use crate::dropped::DROPPED_FILE;
use crate::files::kind_of;
use crate::progress::{Progress, progress_path, read_marker};
use crate::store::tests::{batch, spool};
use crate::summary::{DeadLetters, Summary};
use crate::{FileLock, Spool};
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

/// The events `f` logs on this thread, as "LEVEL message field=value ...".
///
/// Through a global subscriber that keeps the events of the threads that
/// capture: a scoped one (`with_default`) can miss an event whose
/// callsite another test thread registered at the same time, with no
/// subscriber.
pub(crate) fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        tracing::subscriber::set_global_default(Router)
            .expect("no other global subscriber in the spool's tests");
        tracing::callsite::rebuild_interest_cache();
    });
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let lines = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, lines)
}

thread_local! {
    /// The events of this thread, while it captures them.
    static CAPTURED: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Hands each event to the thread that logs it, when it captures.
struct Router;

struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl tracing::Subscriber for Router {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        CAPTURED.with(|c| {
            if let Some(lines) = c.borrow_mut().as_mut() {
                let mut text = Text(event.metadata().level().to_string());
                event.record(&mut text);
                lines.push(text.0);
            }
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {path:?}"
    );
}

/// The file type of `path`, not following a link.
fn kind(path: &Path) -> &'static str {
    kind_of(&fs::symlink_metadata(path).unwrap())
}

/// The messages name what an entry is instead of a segment.
#[test]
fn kind_of_names_each_kind_of_entry() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    fs::create_dir(p("dir")).unwrap();
    symlink(p("dir"), p("link")).unwrap();
    mkfifo(&p("fifo"));
    let _socket = std::os::unix::net::UnixListener::bind(p("socket")).unwrap();
    fs::write(p("file"), "x").unwrap();
    assert_eq!(kind(&p("dir")), "a directory");
    assert_eq!(kind(&p("link")), "a symbolic link");
    assert_eq!(kind(&p("fifo")), "a FIFO");
    assert_eq!(kind(&p("socket")), "a socket");
    assert_eq!(kind(Path::new("/dev/null")), "a device");
    assert_eq!(kind(&p("file")), "not a regular file");
}

/// An entry named like a segment that is not a regular file is set aside
/// when the spool is opened (not first opened as a segment), with an error
/// naming what it is and where it went; a second and a third one under the
/// same name go beside it, numbered, none overwritten.
#[test]
fn an_entry_that_is_not_a_segment_is_set_aside_at_listing_numbered() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("spool");
    fs::create_dir(&dir).unwrap();
    let target = d.path().join("elsewhere");
    fs::write(&target, "not a segment").unwrap();
    let name = "00000000000000000001-1-0.seg";
    symlink(&target, dir.join(name)).unwrap();
    let (s, logs) = logged(|| Spool::open(&dir, 1 << 20).unwrap());
    assert!(fs::symlink_metadata(dir.join(name)).is_err());
    let bad = dir.join(format!("{name}.bad"));
    assert_eq!(kind(&bad), "a symbolic link");
    assert_eq!(fs::read_link(&bad).unwrap(), target);
    assert_eq!(fs::read_to_string(&target).unwrap(), "not a segment");
    assert!(
        logs.iter().any(|l| l.starts_with("ERROR")
            && l.contains(&format!("{name}: not a regular file (a symbolic link)"))
            && l.contains(&format!("moved aside to {}", bad.display()))),
        "{logs:?}"
    );
    // The same name twice more: a directory, then a FIFO.
    fs::create_dir(dir.join(name)).unwrap();
    assert_eq!(s.status().unwrap(), crate::Status::default());
    mkfifo(&dir.join(name));
    let (st, logs) = logged(|| s.status().unwrap());
    assert_eq!(st, crate::Status::default());
    assert_eq!(kind(&bad), "a symbolic link");
    assert_eq!(kind(&dir.join(format!("{name}.bad.1"))), "a directory");
    assert_eq!(kind(&dir.join(format!("{name}.bad.2"))), "a FIFO");
    assert!(
        logs.iter()
            .any(|l| l.contains(&format!("{name}: not a regular file (a FIFO)"))),
        "{logs:?}"
    );
}

/// The drop counter is never read through a symbolic link planted at its
/// name: a link is no counter (0).
#[test]
fn the_drop_counter_is_not_read_through_a_link() {
    let (d, s) = spool(1 << 20);
    let target = d.path().join("count");
    fs::write(&target, "42\n").unwrap();
    symlink(&target, s.dir().join(DROPPED_FILE)).unwrap();
    assert_eq!(s.status().unwrap().dropped_unreported, 0);
    assert_eq!(s.take_dropped().unwrap(), 0);
    assert_eq!(fs::read_to_string(&target).unwrap(), "42\n");
}

/// A leftover at a file's temporary name (a crash's, or a planted link) is
/// removed and the file written afresh, never written through.
#[test]
fn a_leftover_at_the_temporary_name_is_replaced_not_followed() {
    let (d, s) = spool(1 << 20);
    let target = d.path().join("victim");
    fs::write(&target, "keep").unwrap();
    let tmp = s.dir().join(format!("{DROPPED_FILE}.tmp"));
    symlink(&target, &tmp).unwrap();
    fs::write(s.dir().join(DROPPED_FILE), "7\n").unwrap();
    assert_eq!(s.take_dropped().unwrap(), 7);
    assert_eq!(
        fs::read_to_string(s.dir().join(DROPPED_FILE)).unwrap(),
        "0\n"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    assert!(fs::symlink_metadata(&tmp).is_err());
}

/// A directory that cannot be synced is an error naming it.
#[test]
fn a_directory_that_cannot_be_synced_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let gone = d.path().join("gone");
    let e = crate::files::fsync_dir(&gone).unwrap_err();
    assert!(
        e.0.starts_with(&format!(
            "spool {}: cannot sync the directory: ",
            gone.display()
        )),
        "{e}"
    );
    crate::files::fsync_dir(d.path()).unwrap();
}

/// The thread `tid` of this process is blocked in `flock`.
fn in_flock(tid: libc::pid_t) -> bool {
    fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .is_ok_and(|s| s.split(' ').next() == Some(&libc::SYS_flock.to_string()))
}

/// A signal that interrupts the wait for the lock (`flock` fails with
/// EINTR when the handler is installed without `SA_RESTART`) does not end
/// the wait: the lock is taken once its holder lets it go.
#[test]
fn a_signal_does_not_end_the_wait_for_the_lock() {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a handler that does nothing, for a signal only this test sends.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(".lock");
    let held = FileLock::exclusive(&path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    let waiter = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(unsafe { libc::gettid() }).unwrap();
        FileLock::exclusive(&p).map(drop)
    });
    let tid = rx.recv().unwrap();
    for _ in 0..3 {
        while !in_flock(tid) && !waiter.is_finished() {
            std::thread::yield_now();
        }
        if waiter.is_finished() {
            break;
        }
        // SAFETY: the thread is alive (not finished): it waits for the lock.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::pid_t::from(tid),
                libc::SIGUSR2,
            )
        };
        assert_eq!(sent, 0);
    }
    drop(held);
    let r = waiter.join().unwrap();
    assert!(r.is_ok(), "{r:?}");
}

/// A progress marker counts only when it is whole: its header is that of
/// the current format and its last line ends. Anything else (another
/// version's header, a last line cut short) is ignored: the segment is
/// replayed whole.
#[test]
fn a_progress_marker_counts_only_whole_and_of_this_version() {
    let (_d, s) = spool(1 << 20);
    s.append(&[batch("a", &["m v=1i 1", "m v=2i 2", "m v=3i 3"])])
        .unwrap();
    let seg = s.oldest_segment().unwrap().unwrap();
    let r = &seg.records[0];
    let entry = format!("{} {} 2", r.id, r.fingerprint());
    let marker = s.progress_path(&seg.name);
    let cases = [
        (format!("ubuntu-metrics spool progress 1\n{entry}\n"), 2),
        (format!("ubuntu-metrics spool progress 2\n{entry}\n"), 0),
        (format!("ubuntu-metrics spool progress 1\n{entry}"), 0),
        (format!("something else\n{entry}\n"), 0),
    ];
    for (text, want) in cases {
        fs::write(&marker, &text).unwrap();
        let got = s.oldest_segment().unwrap().unwrap().delivered;
        assert_eq!(got, vec![want], "{text:?}");
        assert_eq!(s.pending_points(&seg.name).unwrap(), 3 - want, "{text:?}");
    }
}

/// A segment without a marker is usual: nothing logged. A marker that
/// cannot be read (a link planted there) is a warning naming it, and is
/// ignored.
#[test]
fn only_a_marker_that_cannot_be_read_is_warned_about() {
    let (d, s) = spool(1 << 20);
    let name = "00000000000000000001-1-0.seg";
    let (m, logs) = logged(|| read_marker(s.dir(), name));
    assert!(m.entries.is_empty() && m.key.is_none());
    assert!(logs.is_empty(), "{logs:?}");
    let target = d.path().join("marker");
    let entries = [Progress {
        id: 0,
        fingerprint: 1,
        lines: 1,
    }];
    fs::write(&target, Progress::encode(&entries)).unwrap();
    let path = progress_path(s.dir(), name);
    symlink(&target, &path).unwrap();
    let (m, logs) = logged(|| read_marker(s.dir(), name));
    assert!(m.entries.is_empty() && m.key.is_none());
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0].starts_with("WARN")
            && logs[0].contains(&format!(
                "{}: cannot read the progress marker",
                path.display()
            )),
        "{logs:?}"
    );
    // The marker itself, read.
    fs::remove_file(&path).unwrap();
    fs::copy(&target, &path).unwrap();
    let (m, logs) = logged(|| read_marker(s.dir(), name));
    assert_eq!(m.entries, entries);
    assert!(m.key.is_some());
    assert!(logs.is_empty(), "{logs:?}");
}

/// The status counts the bytes of the segments waiting.
#[test]
fn the_status_counts_the_bytes_waiting() {
    let (_d, s) = spool(1 << 20);
    s.append(&[batch("a", &["m v=1i 1"])]).unwrap();
    s.append(&[batch("b", &["m v=2i 2", "m v=3i 3"])]).unwrap();
    let on_disk: u64 = s.segments().unwrap().iter().map(|l| l.len).sum();
    assert!(on_disk > 0);
    assert_eq!(s.status().unwrap().bytes, on_disk);
}

/// The summary describes exactly what is on disk: an append, a dead
/// letter write their entries at once (a status then decodes nothing),
/// and a status drops the entry of a segment removed by hand and the
/// count of a dead-letter file removed by hand.
#[test]
fn the_summary_follows_every_change() {
    let (_d, s) = spool(1 << 20);
    let r = s
        .append(&[
            batch("a", &["m v=1i 5", "m v=2i 3"]),
            batch("b", &["n v=1i 9"]),
        ])
        .unwrap();
    let first = r.segment.unwrap();
    let m = fs::metadata(s.dir().join(&first)).unwrap();
    let sum = Summary::load(s.dir());
    let e = &sum.segments[&first];
    assert_eq!((e.len, e.ino), (m.len(), m.ino()));
    assert_eq!((e.total, e.records, e.points), (2, 2, 3));
    assert_eq!(e.oldest_point, Some(3));
    let second = s
        .append(&[batch("c", &["o v=1i 7"])])
        .unwrap()
        .segment
        .unwrap();
    assert_eq!(Summary::load(s.dir()).segments.len(), 2);

    // A replay's end: the entry follows the rewrite.
    s.finish_segment(&first, &[0], None).unwrap();
    let m = fs::metadata(s.dir().join(&first)).unwrap();
    let e = &Summary::load(s.dir()).segments[&first];
    assert_eq!((e.len, e.ino), (m.len(), m.ino()));
    assert_eq!((e.total, e.records, e.points), (1, 1, 1));

    // Dead letters: counted as written, the file's size and inode kept.
    let dl = s.dir().join(DEAD_LETTER_FILE);
    for n in 1..=2 {
        s.dead_letter("x", &["n v=1i 2".into()], "bad").unwrap();
        let m = fs::metadata(&dl).unwrap();
        let want = DeadLetters {
            len: m.len(),
            ino: m.ino(),
            entries: n,
        };
        assert_eq!(Summary::load(s.dir()).dead, Some(want));
    }

    // Removed by hand: the next status drops them from the summary.
    fs::remove_file(s.dir().join(&first)).unwrap();
    let st = s.status().unwrap();
    assert_eq!((st.segments, st.points, st.dead_letter_entries), (1, 1, 2));
    let sum = Summary::load(s.dir());
    assert_eq!(sum.segments.keys().collect::<Vec<_>>(), [&second]);
    fs::remove_file(&dl).unwrap();
    assert_eq!(s.status().unwrap().dead_letter_entries, 0);
    assert_eq!(Summary::load(s.dir()).dead, None);
}

/// While the dead-letter file is the one counted (same size and inode),
/// the status counts it from the summary without reading it again; an
/// append after the file was edited by hand does not add to a count of
/// the old file: the file is counted afresh.
#[test]
fn the_dead_letter_count_is_kept_for_the_file_it_was_made_for() {
    let (_d, s) = spool(1 << 20);
    let dl = s.dir().join(DEAD_LETTER_FILE);
    for _ in 0..3 {
        s.dead_letter("x", &["n v=1i 2".into()], "bad").unwrap();
    }
    assert_eq!(s.status().unwrap().dead_letter_entries, 3);
    // Overwritten in place with as many bytes and no entry: not read.
    let len = fs::metadata(&dl).unwrap().len();
    std::io::Write::write_all(
        &mut fs::OpenOptions::new().write(true).open(&dl).unwrap(),
        &vec![b'#'; len as usize],
    )
    .unwrap();
    assert_eq!(s.status().unwrap().dead_letter_entries, 3);
    // Cut by hand to its first entry, then one more refused batch: two.
    let text = fs::read_to_string(&dl).unwrap();
    assert!(!text.contains(crate::DEAD_LETTER_MARK));
    fs::write(
        &dl,
        format!(
            "{} then x: 1 lines refused by InfluxDB: bad\nn v=1i 2\n",
            crate::DEAD_LETTER_MARK
        ),
    )
    .unwrap();
    s.dead_letter("x", &["n v=1i 3".into()], "bad").unwrap();
    assert_eq!(s.status().unwrap().dead_letter_entries, 2);
    assert_eq!(peek(s.dir()).unwrap().dead_letter_entries, 2);
}

use crate::status::peek;

/// The configured size limit is the one reported.
#[test]
fn the_size_limit_is_the_one_given() {
    let (_d, s) = spool(123_456);
    assert_eq!(s.max_bytes(), 123_456);
}

/// A name given to the spool that holds a link (to a valid segment
/// elsewhere) is not read through: it holds no points, and is set aside.
#[test]
fn a_segment_name_holding_a_link_is_set_aside_not_followed() {
    let (d, other) = spool(1 << 20);
    let name = other
        .append(&[batch("a", &["m v=1i 1"])])
        .unwrap()
        .segment
        .unwrap();
    let real = other.dir().join(&name);
    let before = fs::read(&real).unwrap();
    let s = Spool::open(&d.path().join("second"), 1 << 20).unwrap();
    symlink(&real, s.dir().join(&name)).unwrap();
    assert_eq!(s.pending_points(&name).unwrap(), 0);
    assert_eq!(
        kind(&s.dir().join(format!("{name}.bad"))),
        "a symbolic link"
    );
    assert!(fs::symlink_metadata(s.dir().join(&name)).is_err());
    assert_eq!(fs::read(&real).unwrap(), before);
    assert_eq!(other.pending_points(&name).unwrap(), 1);
}

/// A FIFO at a segment's name is set aside, not read as an empty segment
/// (which would be removed).
#[test]
fn a_fifo_at_a_segment_name_is_set_aside() {
    let (_d, s) = spool(1 << 20);
    let name = "00000000000000000001-1-0.seg";
    mkfifo(&s.dir().join(name));
    let (n, logs) = logged(|| s.pending_points(name).unwrap());
    assert_eq!(n, 0);
    assert_eq!(kind(&s.dir().join(format!("{name}.bad"))), "a FIFO");
    assert!(
        logs.iter()
            .any(|l| l.contains(&format!("{name}: not a regular file (a FIFO)"))),
        "{logs:?}"
    );
}

/// A segment that is gone (replayed by another process) holds nothing,
/// and is no error: nothing logged, nothing set aside.
#[test]
fn a_segment_that_is_gone_is_quietly_empty() {
    let (_d, s) = spool(1 << 20);
    let name = "00000000000000000001-1-0.seg";
    let (r, logs) = logged(|| (s.pending_points(name), s.read_segment(name)));
    assert_eq!(r.0.unwrap(), 0);
    assert!(r.1.unwrap().is_none());
    assert!(logs.is_empty(), "{logs:?}");
    assert!(fs::read_dir(s.dir()).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(crate::BAD_SUFFIX)
    }));
}

/// No progress is recorded for a name that is not a regular file.
#[test]
fn no_progress_is_recorded_for_a_name_that_is_not_a_file() {
    let (d, s) = spool(1 << 20);
    let target = d.path().join("elsewhere");
    fs::write(&target, "x").unwrap();
    let name = "00000000000000000001-1-0.seg";
    symlink(&target, s.dir().join(name)).unwrap();
    let entries = [Progress {
        id: 0,
        fingerprint: 1,
        lines: 1,
    }];
    s.record_progress(name, &entries).unwrap();
    assert!(fs::symlink_metadata(s.progress_path(name)).is_err());
    fs::remove_file(s.dir().join(name)).unwrap();
    fs::create_dir(s.dir().join(name)).unwrap();
    s.record_progress(name, &entries).unwrap();
    assert!(fs::symlink_metadata(s.progress_path(name)).is_err());
}

/// Recording the progress of the segment being replayed decodes nothing
/// while the segment is the file read for the replay (here: bytes changed
/// in place, same size and inode, are not read); once the segment was
/// rewritten (its oldest record dropped at the size limit), the summary is
/// made from the segment as it now is.
#[test]
fn recording_progress_reads_the_segment_again_only_once_rewritten() {
    let (_d, s) = spool(1 << 20);
    let lines = ["m v=1i 1", "m v=2i 2"];
    let name = s
        .append(&[batch("a", &lines), batch("b", &lines)])
        .unwrap()
        .segment
        .unwrap();
    let seg = s.oldest_segment().unwrap().unwrap();
    let path = s.dir().join(&name);
    let progress = |r: &crate::Record, lines| Progress {
        id: r.id,
        fingerprint: r.fingerprint(),
        lines,
    };

    // Changed in place behind the spool's back: not decoded.
    let data = fs::read(&path).unwrap();
    let mut bent = data.clone();
    bent[crate::HEADER_LEN + 3] ^= 0x40;
    std::io::Write::write_all(
        &mut fs::OpenOptions::new().write(true).open(&path).unwrap(),
        &bent,
    )
    .unwrap();
    s.record_progress(&name, &[progress(&seg.records[0], 1)])
        .unwrap();
    assert!(path.exists(), "decoded, and set aside");
    let st = s.status().unwrap();
    assert_eq!((st.records, st.points), (2, 3));
    std::io::Write::write_all(
        &mut fs::OpenOptions::new().write(true).open(&path).unwrap(),
        &data,
    )
    .unwrap();

    // Another process (here: another `Spool` on the directory) appends
    // with a limit that drops record 0 of the segment: rewritten, it holds
    // record 1 alone.
    let limit = data.len() as u64 + frame_len("c", &["o v=1i 7"]) - 1;
    let tight = Spool::open(s.dir(), limit).unwrap();
    let r = tight.append(&[batch("c", &["o v=1i 7"])]).unwrap();
    assert_eq!((r.dropped_records, r.dropped_points), (1, 2));
    assert_eq!(s.pending_points(&name).unwrap(), 2);
    // The replay records its progress in record 1: the summary counts
    // record 1's last line, and record 0 no more.
    s.record_progress(&name, &[progress(&seg.records[1], 1)])
        .unwrap();
    let st = s.status().unwrap();
    assert_eq!((st.segments, st.records, st.points), (2, 2, 2));
    assert_eq!(st.pending.get("a"), None);
    assert_eq!(st.pending.get("b"), Some(&1));
}

/// The size of the frame of a record of `label` holding `lines`.
fn frame_len(label: &str, lines: &[&str]) -> u64 {
    crate::Record {
        label: label.into(),
        lines: lines.iter().map(|s| s.to_string()).collect(),
        ..crate::Record::default()
    }
    .encode()
    .unwrap()
    .len() as u64
}

/// An append whose own records are over the limit keeps its newest ones
/// and counts the others, records and points.
#[test]
fn an_append_over_the_limit_keeps_its_newest_records_and_counts_the_rest() {
    let one = ["m v=1i 1"];
    let (_d, s) = spool(frame_len("a", &one));
    let r = s
        .append(&[batch("a", &one), batch("b", &one), batch("c", &one)])
        .unwrap();
    assert_eq!((r.records, r.points), (1, 1));
    assert_eq!((r.dropped_records, r.dropped_points), (2, 2));
    let kept = s.records().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].label, "c");
    assert_eq!(s.take_dropped().unwrap(), 2);
}

/// The self-metrics batch that reports a drop count, dropped in its turn
/// at the limit, gives the count back: it is reported later, with the
/// points dropped now.
#[test]
fn a_dropped_report_gives_its_count_back() {
    let (_d, s) = spool(1);
    fs::write(s.dir().join(DROPPED_FILE), "5\n").unwrap();
    let report = |n: u64| batch("self-metrics", &[&format!("spool dropped={n}i 1")]);
    let r = s
        .append_reporting(&[batch("a", &["m v=1i 1"])], Some(&report))
        .unwrap();
    assert_eq!(r.segment, None);
    assert_eq!((r.dropped_records, r.dropped_points), (2, 2));
    assert_eq!(s.take_dropped().unwrap(), 5 + 2);
}

/// A segment set aside (its checksum fails) while room is made frees its
/// bytes: the append that found it keeps its records when they now fit,
/// and reports no drop.
#[test]
fn a_segment_set_aside_while_making_room_frees_its_bytes() {
    let one = ["m v=1i 1"];
    let (_d, s) = spool(frame_len("a", &one) + 10);
    let name = "00000000000000000001-1-0.seg";
    fs::write(s.dir().join(name), vec![0x55; 1000]).unwrap();
    let (r, logs) = logged(|| s.append(&[batch("a", &one)]).unwrap());
    assert_eq!((r.records, r.dropped_records, r.dropped_points), (1, 0, 0));
    assert_eq!(s.records().unwrap().len(), 1);
    assert!(s.dir().join(format!("{name}.bad")).exists());
    assert!(!logs.iter().any(|l| l.contains("spool full")), "{logs:?}");
    assert_eq!(s.take_dropped().unwrap(), 0);
}

/// At the limit, the oldest records go until exactly enough bytes are
/// freed: no record more.
#[test]
fn the_drop_at_the_limit_stops_once_enough_is_freed() {
    let lines = ["m v=1i 1", "m v=2i 2"];
    let (_d, s) = spool(1 << 20);
    s.append(&[batch("a", &lines), batch("b", &lines)]).unwrap();
    let on_disk = s.segments().unwrap()[0].len;
    let first = frame_len("a", &lines);
    let new = frame_len("c", &["o v=1i 7"]);
    let tight = Spool::open(s.dir(), on_disk + new - first).unwrap();
    let r = tight.append(&[batch("c", &["o v=1i 7"])]).unwrap();
    assert_eq!((r.dropped_records, r.dropped_points), (1, 2));
    let labels: Vec<String> = s.records().unwrap().into_iter().map(|r| r.label).collect();
    assert_eq!(labels, ["b", "c"]);
    assert_eq!(s.status().unwrap().bytes, on_disk + new - first);
}

/// Taking the drop count when nothing was dropped writes nothing.
#[test]
fn taking_no_drop_writes_nothing() {
    let (_d, s) = spool(1 << 20);
    assert_eq!(s.take_dropped().unwrap(), 0);
    assert!(!s.dir().join(DROPPED_FILE).exists());
    fs::write(s.dir().join(DROPPED_FILE), "3\n").unwrap();
    assert_eq!(s.take_dropped().unwrap(), 3);
    assert_eq!(
        fs::read_to_string(s.dir().join(DROPPED_FILE)).unwrap(),
        "0\n"
    );
}

/// A progress marker that cannot be removed at the end of a replay (a
/// directory at its name) is an error naming it: left there, it would
/// count for the rewritten segment.
#[test]
fn a_marker_that_cannot_be_removed_is_an_error_naming_it() {
    let (_d, s) = spool(1 << 20);
    let name = s
        .append(&[batch("a", &["m v=1i 1"]), batch("b", &["m v=2i 2"])])
        .unwrap()
        .segment
        .unwrap();
    let marker = s.progress_path(&name);
    fs::create_dir(&marker).unwrap();
    let e = s.finish_segment(&name, &[0], None).unwrap_err();
    assert!(
        e.0.starts_with(&format!(
            "spool {}: cannot remove the progress marker: ",
            marker.display()
        )),
        "{e}"
    );
}

/// The summary counts a progress entry only for the record it was written
/// for (same fingerprint) and within its lines, as the replay does; and it
/// keeps the marker's CRC-32, so that a status decodes nothing while the
/// marker is unchanged.
#[test]
fn the_summary_counts_progress_as_the_replay_does() {
    let (_d, s) = spool(1 << 20);
    let lines = ["m v=1i 1", "m v=2i 2", "m v=3i 3"];
    let name = s.append(&[batch("a", &lines)]).unwrap().segment.unwrap();
    let r = s.oldest_segment().unwrap().unwrap().records[0].clone();
    let cases = [
        (r.fingerprint(), 2, 1),
        (r.fingerprint() ^ 1, 2, 3),
        (r.fingerprint(), 4, 3),
        (r.fingerprint(), 3, 0),
    ];
    for (fingerprint, done, waiting) in cases {
        let entry = Progress {
            id: r.id,
            fingerprint,
            lines: done,
        };
        s.record_progress(&name, &[entry]).unwrap();
        let sum = Summary::load(s.dir());
        let marker = fs::read(s.progress_path(&name)).unwrap();
        assert_eq!(sum.segments[&name].marker, Some(crc32fast::hash(&marker)));
        assert_eq!(sum.segments[&name].points, waiting, "{entry:?}");
        let st = s.status().unwrap();
        assert_eq!(st.points, waiting, "{entry:?}");
        // The status rewrote nothing: the summary described the segment.
        assert_eq!(Summary::load(s.dir()), sum);
    }
}

/// The summary is text an operator can read: a segment's name and the
/// labels as they are, only other bytes escaped (`%XX`).
#[test]
fn the_summary_names_segments_and_labels_as_they_are() {
    let (_d, s) = spool(1 << 20);
    let name = s
        .append(&[
            batch("self-metrics", &["m v=1i 1"]),
            batch("a b", &["m v=2i 2"]),
        ])
        .unwrap()
        .segment
        .unwrap();
    let text = fs::read_to_string(s.dir().join(crate::summary::SUMMARY_FILE)).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("segment {name} ")))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(" a%20b=1,self-metrics=1"), "{line}");
}

/// The spool directory of [`out_of_descriptors_child`], set by
/// [`an_error_creating_a_temporary_file_is_reported_as_it_is`].
const CHILD_DIR: &str = "SPOOL_NOTICED_TESTS_CHILD_DIR";

/// An error creating a temporary file (here: no file descriptor left) is
/// the error reported, not that of removing a file that is not there.
/// Run in a child process: the limit on open files is the process's.
#[test]
fn an_error_creating_a_temporary_file_is_reported_as_it_is() {
    let d = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "noticed_tests::out_of_descriptors_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, d.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run in a child process by an_error_creating_a_temporary_file_is_reported_as_it_is"]
fn out_of_descriptors_child() {
    use std::os::fd::AsRawFd;
    let dir = std::path::PathBuf::from(std::env::var_os(CHILD_DIR).expect(CHILD_DIR));
    let s = Spool::open(&dir.join("spool"), 1 << 20).unwrap();
    let name = s
        .append(&[batch("a", &["m v=1i 1"])])
        .unwrap()
        .segment
        .unwrap();
    let entries = [Progress {
        id: 0,
        fingerprint: 1,
        lines: 1,
    }];
    // Recording progress opens the lock file, then creates the marker's
    // temporary file: a limit that lets the first through, not the second.
    let lowest_free = fs::File::open("/dev/null").unwrap().as_raw_fd();
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to rlimit structures.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let tight = libc::rlimit {
            rlim_cur: lowest_free as libc::rlim_t + 1,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &tight), 0);
    }
    let r = s.record_progress(&name, &entries);
    // SAFETY: as above.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0);
    }
    let e = r.unwrap_err();
    let marker = s.progress_path(&name);
    assert!(
        e.0.starts_with(&format!(
            "spool {}: cannot write the progress marker: ",
            marker.display()
        )) && e.0.contains(&format!("(os error {})", libc::EMFILE)),
        "{e}"
    );
    assert!(fs::symlink_metadata(&marker).is_err());
    // With descriptors again, it is written.
    s.record_progress(&name, &entries).unwrap();
    assert!(marker.exists());
}

/// A segment of an earlier release (version 1 records: 8 bytes shorter
/// than they are written now) exactly as large as the bytes to free goes
/// whole: its records are not counted by their size once re-encoded.
#[test]
fn a_version_1_segment_exactly_the_excess_goes_whole() {
    let (_d, s) = spool(1 << 20);
    let mut old = Vec::new();
    for id in 0..10 {
        let r = crate::Record {
            id,
            spooled_at: 1,
            label: "a".into(),
            lines: vec!["m v=1i 1".into()],
            ..crate::Record::default()
        };
        old.extend(r.frame(crate::codec::VERSION_1).unwrap());
    }
    fs::write(s.dir().join("00000000000000000001-1-0.seg"), &old).unwrap();
    assert_eq!(s.records().unwrap().len(), 10);
    let new = frame_len("c", &["o v=1i 7"]);
    let tight = Spool::open(s.dir(), new).unwrap();
    let r = tight.append(&[batch("c", &["o v=1i 7"])]).unwrap();
    assert_eq!(
        (r.records, r.dropped_records, r.dropped_points),
        (1, 10, 10)
    );
    let labels: Vec<String> = s.records().unwrap().into_iter().map(|r| r.label).collect();
    assert_eq!(labels, ["c"]);
    assert_eq!(s.status().unwrap().bytes, new);
}

/// A first line over the byte limit is a record of its own, with no empty
/// record before it.
#[test]
fn a_first_line_over_the_byte_limit_is_one_record() {
    use crate::store::chunk_lines;
    let huge = "h".repeat(crate::MAX_RECORD_BYTES + 1);
    let sizes =
        |lines: &[String]| -> Vec<usize> { chunk_lines(lines).iter().map(|c| c.len()).collect() };
    assert_eq!(sizes(std::slice::from_ref(&huge)), [1]);
    assert_eq!(sizes(&[huge.clone(), "b".into()]), [1, 1]);
    assert_eq!(sizes(&[huge.clone(), huge]), [1, 1]);
}

thread_local! {
    /// Errors the next calls to `flock` on this thread fail with, first
    /// first: see [`flock`].
    static FLOCK_FAILS: std::cell::RefCell<Vec<libc::c_int>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The C library's `flock`, as this test binary's `File::lock` and
/// `File::try_lock` call it: the system call itself, unless the calling
/// thread set errors for it to fail with first ([`FLOCK_FAILS`]), the way
/// the kernel or a network file system can (EINTR, ENOLCK).
///
/// # Safety
///
/// As `flock(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flock(fd: libc::c_int, operation: libc::c_int) -> libc::c_int {
    let fail = FLOCK_FAILS.with(|f| {
        let mut f = f.borrow_mut();
        (!f.is_empty()).then(|| f.remove(0))
    });
    if let Some(errno) = fail {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = errno };
        return -1;
    }
    // SAFETY: as the caller's.
    unsafe { libc::syscall(libc::SYS_flock, fd, operation) as libc::c_int }
}

/// `f`, with the first calls to `flock` on this thread failing with
/// `errors`, in turn; the errors not used are returned.
fn with_flock_failing<T>(errors: &[libc::c_int], f: impl FnOnce() -> T) -> (T, Vec<libc::c_int>) {
    FLOCK_FAILS.with(|e| *e.borrow_mut() = errors.to_vec());
    let out = f();
    (
        out,
        FLOCK_FAILS.with(|e| std::mem::take(&mut *e.borrow_mut())),
    )
}

/// A lock call interrupted (EINTR) is made again; any other error is
/// returned, not retried: waiting for the lock, and trying it.
#[test]
fn a_lock_call_is_retried_after_eintr_only() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(".lock");
    let (r, left) = with_flock_failing(&[libc::EINTR, libc::EINTR], || FileLock::exclusive(&path));
    assert!(r.is_ok(), "{r:?}");
    assert!(left.is_empty());
    drop(r);
    let (r, left) = with_flock_failing(&[libc::ENOLCK], || FileLock::exclusive(&path));
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ENOLCK));
    assert!(left.is_empty());

    let (r, left) = with_flock_failing(&[libc::EINTR], || FileLock::try_exclusive(&path));
    assert!(matches!(r, Ok(Some(_))), "{r:?}");
    assert!(left.is_empty());
    drop(r);
    let (r, left) = with_flock_failing(&[libc::ENOLCK], || FileLock::try_exclusive(&path));
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ENOLCK));
    assert!(left.is_empty());
    // Held elsewhere: None, without an error.
    let held = FileLock::exclusive(&path).unwrap();
    assert!(FileLock::try_exclusive(&path).unwrap().is_none());
    drop(held);
    assert!(FileLock::try_exclusive(&path).unwrap().is_some());
}
