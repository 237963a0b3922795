//! Fault tests against a real influxd and the fixture server: nothing
//! collected is lost or written twice whatever InfluxDB or a source does.
//!
//! - influxd stopped during a run: status 75, the spool holds every point;
//!   restarted: the next run writes the spool; InfluxDB then holds every
//!   point of both runs exactly once, with its original timestamp.
//! - `kill -9` of a process appending to the spool, at random moments, many
//!   times, and on until kills did land in the middle of a write: no
//!   segment is ever torn (at most a temporary file is left, and removed at
//!   the next open), the spool always reopens and replays, nothing
//!   acknowledged is lost, the records stay in the order appended.
//! - a field type conflict planted in the database: that collector's
//!   refused lines go to the dead-letter file, the rest is written.
//! - a slow / 500 / truncating / empty / garbage upstream: only that
//!   collector fails, with a message naming the URL.

mod common;

use common::influxd::{DATABASE, Influxd};
use common::*;
use fixture_server::Fault;
use influxdb_line_protocol::parse_lines;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use ubuntu_metrics::sinks::Batch;
use ubuntu_metrics::sinks::spool::{Record, Spool, parse_segment};

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(config: &Path, args: &[&str]) -> Out {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `key: value` lines of `spool status`.
fn spool_status(config: &Path) -> BTreeMap<String, String> {
    let out = run(config, &["spool", "status"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A point's identity in InfluxDB: measurement, tags, timestamp.
type Key = (String, Vec<(String, String)>, i64);

fn key_of(line: &str) -> Key {
    let p = parse_lines(line)
        .next()
        .expect("a line")
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    let mut tags: Vec<(String, String)> = p
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tags.sort();
    (
        p.series.measurement.to_string(),
        tags,
        p.timestamp.expect("every point has a timestamp"),
    )
}

/// Every point in the database, by key, with how many rows had it.
fn points_in(db: &Influxd) -> BTreeMap<Key, usize> {
    let v = db.query("SHOW MEASUREMENTS");
    let mut out = BTreeMap::new();
    let names: Vec<String> = v["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect();
    for m in names {
        if m == "ubuntu_metrics_write" || m == "ubuntu_metrics_spool" {
            // The writes' own self-metrics: one per request, at the time
            // it was made (tests/self_metrics.rs checks them).
            continue;
        }
        let tk = db.query(&format!("SHOW TAG KEYS FROM \"{m}\""));
        let tag_keys: BTreeSet<String> = tk["results"][0]["series"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| r[0].as_str().unwrap().to_owned())
            .collect();
        for row in db.rows(&m) {
            let mut tags: Vec<(String, String)> = row
                .iter()
                .filter(|(k, _)| tag_keys.contains(*k))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            tags.sort();
            let ts = row["time"].as_i64().expect("epoch=ns time");
            *out.entry((m.clone(), tags, ts)).or_insert(0) += 1;
        }
    }
    out
}

/// The lines a run at `now` collects (dry run), plus one self-metrics key
/// per collector.
fn collected_keys(config: &Path, now: &str, names: &[&str]) -> Vec<Key> {
    let mut args = vec!["run", "--now", now, "-n"];
    args.extend_from_slice(names);
    let out = run(config, &args);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mut keys: Vec<Key> = out.stdout.lines().map(key_of).collect();
    let ts = chrono::DateTime::parse_from_rfc3339(now)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    let all: Vec<String> = if names == ["--all"] {
        ubuntu_metrics::collectors::registry()
            .iter()
            .map(|c| c.name().to_owned())
            .collect()
    } else {
        names.iter().map(|s| s.to_string()).collect()
    };
    // Every source is at the fixture server: one host.
    let text = std::fs::read_to_string(config).unwrap();
    let c: toml::Table = toml::from_str(&text).unwrap();
    let (_, url) = c["sources"].as_table().unwrap().iter().next().unwrap();
    let host = url.as_str().unwrap().split('/').nth(2).unwrap().to_owned();
    for c in all {
        keys.push((
            "ubuntu_metrics_run".into(),
            vec![
                ("collector".into(), c.clone()),
                ("status".into(), "ok".into()),
            ],
            ts,
        ));
        // Its requests to that host (images asks rsync, not HTTP).
        if c != "images" {
            keys.push((
                "ubuntu_metrics_http".into(),
                vec![("collector".into(), c), ("host".into(), host.clone())],
                ts,
            ));
        }
    }
    keys
}

#[test]
fn influxd_stopped_during_a_run_then_restarted_loses_and_duplicates_nothing() {
    let server = server_with_rsync();
    let mut db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    const T1: &str = "2026-11-24T12:00:00Z";
    const T2: &str = "2026-11-24T13:00:00Z";
    let run1 = collected_keys(&config, T1, &["--all"]);
    let run2 = collected_keys(&config, T2, &["--all"]);

    // The run takes at least 1.5 s (one slow source); influxd dies 0.5 s in.
    server.set_fault("/sponsoring", Fault::Delay(Duration::from_millis(1500)));
    let child = bin()
        .arg("--config")
        .arg(&config)
        .args(["run", "--now", T1, "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    db.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("kept on disk") && stderr.contains("spool flush"),
        "{stderr}"
    );
    server.clear_faults();

    // The spool holds every point of the run, with its original timestamp.
    let st = spool_status(&config);
    assert_eq!(st["points"], run1.len().to_string(), "{st:?}");
    let spool = Spool::open(&dir.path().join("spool"), 1 << 30).unwrap();
    let mut spooled: Vec<Key> = spool
        .records()
        .unwrap()
        .iter()
        .flat_map(|r| r.lines.iter().map(|l| key_of(l)))
        .collect();
    spooled.sort();
    let mut want1 = run1.clone();
    want1.sort();
    assert_eq!(spooled, want1);
    // Kept with a reason: another run while InfluxDB is down adds to it.
    assert_eq!(st["oldest_point"].len(), "2026-11-24T12:00:00Z".len());

    db.restart();
    let out = run(&config, &["run", "--now", T2, "--all"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "and {} kept in the spool by earlier runs",
            run1.len()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(spool_status(&config)["records"], "0");

    // Every point of both runs, once, at its original time; nothing else.
    let found = points_in(&db);
    let expected: BTreeSet<Key> = run1.iter().chain(run2.iter()).cloned().collect();
    let found_keys: BTreeSet<Key> = found.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&found_keys).take(5).collect();
    let extra: Vec<_> = found_keys.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );
    assert!(found.values().all(|n| *n == 1));
    eprintln!(
        "outage: points collected {} + {} = {} (distinct measurement+tags+time: {}); found in influxd: {}",
        run1.len(),
        run2.len(),
        run1.len() + run2.len(),
        expected.len(),
        found.len()
    );
}

/// Run by `kill_9_while_appending_never_loses_an_acknowledged_record` in a
/// child process: appends to the spool in a loop, printing `ack N` after
/// each append returned.
#[test]
#[ignore = "helper process of the kill -9 test"]
fn torture_appender() {
    let Some(dir) = std::env::var_os("SPOOL_TORTURE_DIR") else {
        return;
    };
    let trial: u64 = std::env::var("SPOOL_TORTURE_TRIAL")
        .unwrap()
        .parse()
        .unwrap();
    let spool = Spool::open(Path::new(&dir), 1 << 40).unwrap();
    let stdout = std::io::stdout();
    for i in 0u64.. {
        // Two records per append, of varying size.
        let batches: Vec<Batch> = (0..2).map(|half| torture_batch(trial, i, half)).collect();
        spool.append(&batches).unwrap();
        let mut l = stdout.lock();
        writeln!(l, "ack {i}").unwrap();
        l.flush().unwrap();
    }
}

use std::io::Write as _;

/// Record `half` of append `i` of the torture appender in trial `trial`.
fn torture_batch(trial: u64, i: u64, half: u64) -> Batch {
    Batch {
        label: format!("torture-{half}"),
        lines: (0..record_lines(i, half))
            .map(|j| {
                format!(
                    "torture,trial={trial},half={half} append={i}i,j={j}i,pad=\"{}\" {}",
                    "x".repeat((j % 100) as usize),
                    1_795_521_600_000_000_000u64 + i * 10_000 + half * 5_000 + j
                )
            })
            .collect(),
    }
}

/// The spool's segments, oldest first.
fn segment_files(spool_dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(spool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// The temporary files of segments being written (`.NAME.seg.tmp`; not
/// the summary's nor the counter's).
fn segment_tmps(spool_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(spool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".seg.tmp"))
        })
        .collect()
}

/// The append of the torture appender that record `r` belongs to.
fn append_of(r: &Record) -> u64 {
    let first = &r.lines[0];
    first
        .split("append=")
        .nth(1)
        .and_then(|s| s.split('i').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {first}"))
}

/// Append `i` of the torture appender in trial `trial` as the spool frames
/// it (but for the time it was spooled at, which takes as many bytes).
fn append_bytes(trial: u64, i: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for half in 0..2 {
        let b = torture_batch(trial, i, half);
        let rec = Record {
            id: half as u32,
            spooled_at: 0,
            dropped: 0,
            label: b.label,
            lines: b.lines,
        };
        bytes.extend(rec.encode().unwrap());
    }
    bytes
}

/// Where a kill of the torture appender landed, with respect to the append
/// in flight (the one after the last acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Landed {
    /// No trace of it: before it created its temporary file.
    Before,
    /// In the middle of its write: its temporary file, cut short.
    Cut,
    /// Written whole to its temporary file, not yet renamed (during the
    /// `fsync`).
    Unrenamed,
    /// After the rename, before the ack: its segment is in place, whole.
    Renamed,
}

/// Where the kill landed, from what it left in `spool_dir` (before anything
/// else touches it). A temporary file must hold the append in flight,
/// `next`, cut at some byte: its records whole, in order, then at most a
/// torn tail.
fn landed(spool_dir: &Path, trial: u64, next: u64) -> Landed {
    let tmps = segment_tmps(spool_dir);
    assert!(tmps.len() <= 1, "trial {trial}: {tmps:?}");
    if let Some(tmp) = tmps.first() {
        let data = std::fs::read(tmp).unwrap();
        let full = append_bytes(trial, next).len();
        assert!(
            data.len() <= full,
            "trial {trial}: {} holds {} bytes, append {next} is {full}",
            tmp.display(),
            data.len()
        );
        let parsed = parse_segment(&data);
        let end = parsed.valid_end();
        assert!(
            parsed.damage.iter().all(|d| d.start >= end),
            "trial {trial}: {}: {:?}",
            tmp.display(),
            parsed.damage
        );
        for (k, (_, r)) in parsed.records.iter().enumerate() {
            let b = torture_batch(trial, next, k as u64);
            assert_eq!(
                (r.id, &r.label, &r.lines),
                (k as u32, &b.label, &b.lines),
                "trial {trial}: record {k} of {}",
                tmp.display()
            );
        }
        if data.len() == full {
            assert_eq!(parsed.records.len(), 2, "trial {trial}");
            return Landed::Unrenamed;
        }
        return Landed::Cut;
    }
    let newest = segment_files(spool_dir).pop();
    let in_place = newest.is_some_and(|p| {
        parse_segment(&std::fs::read(p).unwrap())
            .records
            .first()
            .is_some_and(|(_, r)| append_of(r) == next)
    });
    if in_place {
        Landed::Renamed
    } else {
        Landed::Before
    }
}

/// Fakes what a kill in the middle of an append's write leaves: the append
/// in flight (`next`) cut at a random byte, under a temporary name as the
/// spool writes it before renaming it into place. When the kill came after
/// `next`'s rename (its segment is in place), the append cut is the one
/// that would have followed (`next + 1`). Returns the file written, with
/// the size of the whole append.
fn tear_in_flight(
    spool_dir: &Path,
    trial: u64,
    next: u64,
    rand: &mut dyn FnMut(u64) -> u64,
) -> (PathBuf, usize) {
    let newest = segment_files(spool_dir).pop();
    let in_place = newest.as_ref().is_some_and(|p| {
        parse_segment(&std::fs::read(p).unwrap())
            .records
            .first()
            .is_some_and(|(_, r)| append_of(r) == next)
    });
    let torn = if in_place { next + 1 } else { next };
    let seq = newest
        .as_ref()
        .and_then(|p| {
            p.file_name()?
                .to_str()?
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        + 1;
    let bytes = append_bytes(trial, torn);
    let cut = 1 + rand(bytes.len() as u64 - 1) as usize;
    let path = spool_dir.join(format!(".{seq:020}-0-{trial}.seg.tmp"));
    std::fs::write(&path, &bytes[..cut]).unwrap();
    (path, bytes.len())
}

/// Lines in record `half` of append `i` of the torture appender (large
/// records, so that kills often land in the middle of a write).
fn record_lines(i: u64, half: u64) -> u64 {
    500 + (i * 377 + half * 1111) % 2500
}

/// How a trial picks the moment of its kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Aim {
    /// After the second ack, a random delay shorter than the append
    /// between the first two acks took.
    Random,
    /// As soon as a segment's temporary file shows (used only while random
    /// kills have not torn a write yet).
    OnTmp,
}

/// Spawns the torture appender for trial `trial`; its acks come on the
/// channel with the time they were read.
fn spawn_appender(
    spool_dir: &Path,
    trial: u64,
) -> (
    std::process::Child,
    std::thread::JoinHandle<()>,
    mpsc::Receiver<(u64, Instant)>,
) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "torture_appender",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SPOOL_TORTURE_DIR", spool_dir)
        .env("SPOOL_TORTURE_TRIAL", trial.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // The first ack follows libtest's `test torture_appender ... `.
            if let Some((_, n)) = line.rsplit_once("ack ") {
                let _ = tx.send((n.parse().unwrap(), Instant::now()));
            }
        }
    });
    (child, reader, rx)
}

/// Kills the appender with SIGKILL at the moment `aim` says; the acks read
/// before the kill are pushed to `acked`.
fn kill_appender(
    child: &mut std::process::Child,
    rx: &mpsc::Receiver<(u64, Instant)>,
    acked: &mut Vec<u64>,
    aim: Aim,
    spool_dir: &Path,
    rand: &mut dyn FnMut(u64) -> u64,
) {
    let ack = |acked: &mut Vec<u64>| {
        let (n, at) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the appender acknowledges an append within a minute");
        acked.push(n);
        at
    };
    match aim {
        Aim::Random => {
            let t0 = ack(acked);
            let t1 = ack(acked);
            let append = (t1 - t0).as_micros().max(1) as u64;
            std::thread::sleep(Duration::from_micros(rand(append)));
        }
        Aim::OnTmp => {
            // Watched for the next 20 appends at most.
            ack(acked);
            let t0 = Instant::now();
            while segment_tmps(spool_dir).is_empty() && acked.len() < 20 {
                acked.extend(rx.try_iter().map(|(n, _)| n));
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "the appender stalled after {acked:?}"
                );
                std::thread::yield_now();
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
}

/// `kill -9` of a process appending to the spool, many times: no segment is
/// ever torn, nothing acknowledged is lost, the spool reopens and replays.
/// Random kills mostly land between writes, so the test goes on (within a
/// cap) until real kills did land in the middle of a write, leaving a
/// temporary file; every other trial also fakes such a tear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_appending_never_loses_an_acknowledged_record() {
    let db = Influxd::start();
    let cfg = ubuntu_metrics::config::InfluxConfig {
        url: db.url().into(),
        database: DATABASE.into(),
        ..Default::default()
    };
    let writer = std::sync::Arc::new(
        ubuntu_metrics::sinks::influxdb::InfluxWriter::new(&cfg, None).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let started = Instant::now();
    let mut seed = std::process::id() as u64 ^ started.elapsed().as_nanos() as u64;
    let mut rand = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let (mut trials, mut tmp_left, mut total_acked, mut in_flight_kept) = (0, 0, 0, 0);
    let mut fakes = 0;
    // Where the real kills landed, by how they were aimed.
    let mut landings: BTreeMap<(Aim, Landed), u64> = BTreeMap::new();
    let torn = |l: &BTreeMap<(Aim, Landed), u64>| -> u64 {
        l.iter()
            .filter(|((_, w), _)| matches!(w, Landed::Cut | Landed::Unrenamed))
            .map(|(_, n)| n)
            .sum()
    };
    loop {
        let enough = trials >= 40 || started.elapsed() > Duration::from_secs(90);
        let cap = trials >= 400 || started.elapsed() > Duration::from_secs(360);
        if (enough && torn(&landings) > 0) || cap {
            break;
        }
        trials += 1;
        // Random kills first; while none has torn a write, every other
        // trial kills as soon as a write is seen under way.
        let aim = if trials > 10 && torn(&landings) == 0 && trials % 2 == 1 {
            Aim::OnTmp
        } else {
            Aim::Random
        };
        let (mut child, reader, rx) = spawn_appender(&spool_dir, trials);
        let mut acked = Vec::new();
        kill_appender(&mut child, &rx, &mut acked, aim, &spool_dir, &mut rand);
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter().map(|(n, _)| n));
        assert!(
            acked.windows(2).all(|w| w[1] == w[0] + 1) && acked[0] == 0,
            "trial {trials}: acks {acked:?}"
        );
        let last_ack = *acked.last().unwrap();
        total_acked += acked.len();

        // Where the real kill landed, before anything else touches the
        // spool.
        let landing = landed(&spool_dir, trials, last_ack + 1);
        *landings.entry((aim, landing)).or_default() += 1;

        // Every other trial, a kill in the middle of a write is faked too.
        if trials % 2 == 0 {
            let (fake, full) = tear_in_flight(&spool_dir, trials, last_ack + 1, &mut rand);
            let len = std::fs::metadata(&fake)
                .unwrap_or_else(|e| panic!("trial {trials}: the faked tear {fake:?}: {e}"))
                .len() as usize;
            assert!(
                (1..full).contains(&len),
                "trial {trials}: {fake:?} is {len} bytes of {full}"
            );
            fakes += 1;
        }

        // What the kill left on disk, before the spool opens it again:
        // whole segments, and at most a temporary file.
        let is_tmp = |p: &Path| p.extension().is_some_and(|x| x == "tmp");
        for e in std::fs::read_dir(&spool_dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "seg") {
                let data = std::fs::read(&p).unwrap();
                let damage = parse_segment(&data).damage;
                assert!(
                    damage.is_empty(),
                    "trial {trials}: the kill tore {} ({damage:?} of {} bytes)",
                    p.display(),
                    data.len()
                );
            } else if is_tmp(&p) {
                tmp_left += 1;
            }
        }

        // Reopen: every acknowledged append is there, whole; the one in
        // flight may be there in part (whole records only); nothing else.
        let spool = std::sync::Arc::new(Spool::open(&spool_dir, 1 << 40).unwrap());
        let left: Vec<_> = std::fs::read_dir(&spool_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| is_tmp(p) || p.extension().is_some_and(|x| x == "bad"))
            .collect();
        assert!(left.is_empty(), "trial {trials}: left after open: {left:?}");
        let records = spool.records().unwrap();
        let mut appends: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for r in &records {
            let i = append_of(r);
            let half: u64 = r.label.trim_start_matches("torture-").parse().unwrap();
            assert_eq!(
                r.lines.len() as u64,
                record_lines(i, half),
                "record of append {i} is whole"
            );
            appends.entry(i).or_default().push(half as usize);
        }
        for i in 0..=last_ack {
            assert_eq!(
                appends.get(&i).map(Vec::len),
                Some(2),
                "trial {trials}: acknowledged append {i} lost (last ack {last_ack})"
            );
        }
        assert!(
            matches!(appends.get(&(last_ack + 1)).map(Vec::len), None | Some(2)),
            "trial {trials}: the append in flight is there in part"
        );
        assert!(
            appends.keys().all(|i| *i <= last_ack + 1),
            "trial {trials}: {:?}",
            appends.keys().collect::<Vec<_>>()
        );
        // In the order appended: the in-flight append is kept exactly when
        // its rename happened.
        let kept = last_ack + u64::from(landing == Landed::Renamed);
        let order: Vec<(u64, String)> = records
            .iter()
            .map(|r| (append_of(r), r.label.clone()))
            .collect();
        let want: Vec<(u64, String)> = (0..=kept)
            .flat_map(|i| (0..2).map(move |h| (i, format!("torture-{h}"))))
            .collect();
        assert_eq!(order, want, "trial {trials}: records out of order");
        let lines: usize = records.iter().map(|r| r.lines.len()).sum();

        // And it replays: every line into InfluxDB, the spool emptied.
        let out = ubuntu_metrics::sinks::influxdb::output::InfluxOutput::new(
            writer.clone(),
            Some(spool.clone()),
        );
        let r = out.replay(Duration::ZERO).await;
        if appends.contains_key(&(last_ack + 1)) {
            in_flight_kept += 1;
        }
        assert_eq!(r.written, lines, "trial {trials}: {r:?}");
        assert_eq!(spool.status().unwrap().records, 0);
        let v = db.query(&format!(
            "SELECT count(j) FROM torture WHERE trial = '{trials}'"
        ));
        assert_eq!(
            v["results"][0]["series"][0]["values"][0][1].as_u64(),
            Some(lines as u64),
            "trial {trials}"
        );
    }
    let real_torn = torn(&landings);
    eprintln!(
        "kill -9: {trials} trials in {:?} ({total_acked} acknowledged appends, all kept; no segment torn); real kills landed {landings:?}: {real_torn} real torn writes; {fakes} faked tears; {tmp_left} temporary files left, removed at open; {in_flight_kept} kept the append in flight whole",
        started.elapsed()
    );
    assert!(
        real_torn > 0,
        "no kill out of {trials} landed in the middle of a write (in {:?}): they landed {landings:?}",
        started.elapsed()
    );
    assert!(trials >= 20, "only {trials} trials in the time allowed");
}

#[test]
fn a_field_type_conflict_dead_letters_that_batch_and_writes_the_rest() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    // sponsoring writes `count` as an integer; plant a string in its shard.
    let ns = now().timestamp_nanos_opt().unwrap();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-XPOST"])
        .arg(format!("{}/write?db={DATABASE}", db.url()))
        .arg("--data-binary")
        .arg(format!(
            "sponsoring_queue_stats,report=planted count=\"many\" {ns}"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");

    let out = run(&config, &["run", "--now", NOW, "sponsoring", "versions"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("dead-letter file") && out.stderr.contains("field type conflict"),
        "{}",
        out.stderr
    );
    // The refused batch, with the server's message, in the dead-letter file.
    let dl = std::fs::read_to_string(dir.path().join("spool/dead-letter.lp")).unwrap();
    let sponsoring = expected("sponsoring/expected.out");
    let dead: Vec<&str> = dl.lines().filter(|l| !l.starts_with('#')).collect();
    let mut dead_sorted = dead.clone();
    dead_sorted.sort();
    assert_eq!(dead_sorted, sponsoring, "{dl}");
    assert!(
        dl.lines()
            .any(|l| l.starts_with("# ubuntu-metrics dead letter:")
                && l.contains("sponsoring")
                && l.contains("field type conflict")),
        "{dl}"
    );
    let st = spool_status(&config);
    assert_eq!(st["dead_letter_batches"], "1", "{st:?}");
    assert_eq!(st["records"], "0", "nothing waits: refused is not retried");
    // The rest is written: versions' points and both self points.
    let versions: BTreeSet<Key> = expected("versions/expected.out")
        .iter()
        .map(|l| key_of(l))
        .collect();
    let found = points_in(&db);
    let others: BTreeSet<Key> = found
        .keys()
        .filter(|k| {
            !k.0.starts_with("ubuntu_metrics_") && k.1 != [("report".into(), "planted".into())]
        })
        .cloned()
        .collect();
    assert_eq!(others, versions);
    let runs = db.rows("ubuntu_metrics_run");
    assert_eq!(runs.len(), 2, "{runs:?}");
}

#[test]
fn a_misbehaving_upstream_fails_only_its_collector_naming_the_url() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    // A 1 s request timeout, so that the slow source is given up quickly.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[http]\nconnect_timeout = \"10s\"\ntimeout = \"60s\"",
        "[http]\nconnect_timeout = \"1s\"\ntimeout = \"1s\"",
    );
    assert!(text.contains("timeout = \"1s\""), "{text}");
    std::fs::write(&config, text).unwrap();
    let versions = expected("versions/expected.out").len();
    let cases = [
        ("500", Fault::Status(500), "500"),
        ("slow", Fault::Delay(Duration::from_secs(3)), "timed out"),
        ("truncating", Fault::Truncate, "closed"),
        ("empty", Fault::Empty, "empty body"),
        ("garbage", Fault::Garbage, "invalid JSON"),
    ];
    for (i, (what, fault, says)) in cases.into_iter().enumerate() {
        server.clear_faults();
        server.set_fault("/sponsoring", fault);
        let now = format!("2026-11-24T1{i}:00:00Z");
        let started = Instant::now();
        let out = run(&config, &["run", "--now", &now, "sponsoring", "versions"]);
        assert_eq!(out.code, Some(1), "{what}: {}", out.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: the run took {:?}",
            started.elapsed()
        );
        let failure = out
            .stderr
            .lines()
            .find(|l| l.contains("collector sponsoring failed"))
            .unwrap_or_else(|| panic!("{what}: {}", out.stderr));
        assert!(
            failure.contains(&server.url("sponsoring/general.json")) && failure.contains(says),
            "{what}: {failure}"
        );
        assert!(
            !out.stderr.contains("collector versions failed"),
            "{what}: {}",
            out.stderr
        );
        // versions' points of this run are in InfluxDB.
        let ts = chrono::DateTime::parse_from_rfc3339(&now)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        let found = points_in(&db)
            .keys()
            .filter(|k| k.2 == ts && !k.0.starts_with("ubuntu_metrics"))
            .count();
        assert_eq!(found, versions, "{what}: versions' points of this run");
        let run = db.query(&format!(
            "SELECT \"error\" FROM ubuntu_metrics_run WHERE collector = 'sponsoring' AND time = {ts}"
        ));
        assert!(
            run.to_string().contains("sponsoring/general.json"),
            "{what}: {run}"
        );
    }
}

#[test]
fn spool_flush_exits_75_while_influxdb_is_down_and_0_once_emptied() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(dir.path(), &server, &format!("http://127.0.0.1:{dead}"));
    let out = run(&config, &["run", "--now", NOW, "sponsoring"]);
    assert_eq!(out.code, Some(75), "{}", out.stderr);
    let st = spool_status(&config);
    // sponsoring's 4 points; its run's self-metrics point and the point of
    // its requests to the fixture server.
    assert_eq!((st["records"].as_str(), st["points"].as_str()), ("2", "6"));
    assert_eq!(st["oldest_point"], NOW);
    let out = run(&config, &["spool", "flush"]);
    assert_eq!(out.code, Some(75), "{}", out.stderr);
    assert!(
        out.stderr.contains("6 points in 2 records still wait"),
        "{}",
        out.stderr
    );

    let db = Influxd::start();
    let config = write_config(dir.path(), &server, &db.url());
    let out = run(&config, &["spool", "flush"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("wrote 6 points") && out.stdout.contains("empty"),
        "{}",
        out.stdout
    );
    assert_eq!(db.rows("sponsoring_queue_stats").len(), 4);
    assert_eq!(spool_status(&config)["points"], "0");
}

/// Runs the binary with a time limit (a FIFO in the spool used to hang a
/// flush for good), returning None when it had to be killed.
fn run_limited(config: &Path, args: &[&str], limit: Duration) -> Option<Out> {
    let mut child = bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    Some(Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A directory, a FIFO and a symbolic link named like segments, sorting
/// before the real ones: `spool status`, `spool flush` and the size-limit drop
/// move them aside (`*.bad`) with an error and carry on with the rest; no
/// open can block.
#[test]
fn entries_named_like_segments_that_are_not_files_are_moved_aside() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    let spool_dir = dir.path().join("spool");
    let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
    let batch = |from: u64| Batch {
        label: "kept".into(),
        lines: (from..from + 500)
            .map(|i| format!("kept,i={i} v={i}i {}", 1_795_521_600_000_000_000u64 + i))
            .collect(),
    };
    spool.append(&[batch(0)]).unwrap();
    spool.append(&[batch(500)]).unwrap();
    // Named to sort first: the oldest "segments", where a replay starts.
    let bad = |n: u32| spool_dir.join(format!("{n:020}-1-0.seg"));
    std::fs::create_dir(bad(1)).unwrap();
    let fifo = std::ffi::CString::new(bad(2).to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink(bad(2), bad(3)).unwrap();

    let status = run_limited(&config, &["spool", "status"], Duration::from_secs(20))
        .expect("spool status must not hang");
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    assert!(status.stdout.contains("points: 1000"), "{}", status.stdout);
    for n in 1..=3 {
        assert!(!bad(n).exists(), "{} still there", bad(n).display());
        assert!(
            spool_dir
                .join(format!("{n:020}-1-0.seg.bad"))
                .symlink_metadata()
                .is_ok()
        );
    }
    assert!(status.stderr.contains("moved aside"), "{}", status.stderr);

    // Again, for the flush: each kind of bad entry, then a flush.
    std::fs::create_dir(bad(4)).unwrap();
    let fifo = std::ffi::CString::new(bad(5).to_str().unwrap()).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let flush = run_limited(&config, &["spool", "flush"], Duration::from_secs(30))
        .expect("spool flush must not hang on a FIFO");
    assert_eq!(flush.code, Some(0), "{}", flush.stderr);
    assert!(
        flush.stdout.contains("wrote 1000 points"),
        "{}",
        flush.stdout
    );
    assert_eq!(db.rows("kept").len(), 1000);

    // The size-limit drop carries on past a bad entry too.
    std::fs::create_dir(bad(6)).unwrap();
    let small = Spool::open(&spool_dir, 40_000).unwrap();
    for k in 0..4 {
        let r = small.append(&[batch(1000 + 500 * k)]).unwrap();
        assert!(r.points > 0, "append {k}: {r:?}");
    }
    let st = small.status().unwrap();
    assert!(st.bytes <= 40_000 && st.dropped_unreported > 0, "{st:?}");
    assert!(!bad(6).exists());
}

/// An upstream answering a 30 MB JSON string where a list is expected:
/// the parse error quoting it is cut to a few hundred characters on
/// stderr and in the self-metrics `error` field.
#[test]
fn a_huge_upstream_string_in_an_error_is_cut_short() {
    use common::rogue::{Rogue, response};
    let server = server();
    let db = Influxd::start();
    let huge = Arc::new({
        let mut b = Vec::with_capacity(30 << 20);
        b.push(b'"');
        b.resize(30 << 20, b'x');
        b.push(b'"');
        b
    });
    let upstream = Rogue::start(move |_| {
        Some(response(
            "200 OK",
            &[("Content-Type", "application/json")],
            &huge,
        ))
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    let text = std::fs::read_to_string(&config).unwrap();
    let sponsoring = server.sources().get("sponsoring").unwrap().to_owned();
    assert!(text.contains(&sponsoring));
    let url = format!("{}/general.json", upstream.url());
    std::fs::write(&config, text.replace(&sponsoring, &url)).unwrap();
    let out = run(&config, &["run", "--now", NOW, "sponsoring"]);
    assert_eq!(
        out.code,
        Some(1),
        "{}",
        &out.stderr[..out.stderr.len().min(2000)]
    );
    let error = db.query("SELECT \"error\" FROM ubuntu_metrics_run WHERE collector = 'sponsoring'");
    let error = error["results"][0]["series"][0]["values"][0][1]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!(
        "30 MB JSON string in an error: {} bytes of stderr, an error field of {} characters",
        out.stderr.len(),
        error.chars().count()
    );
    assert!(
        out.stderr.len() < 4000,
        "stderr of {} bytes",
        out.stderr.len()
    );
    assert!(error.contains(&url), "{error}");
    assert!(
        (1..=400).contains(&error.chars().count()),
        "error field of {} characters",
        error.chars().count()
    );
}
