//! `backfill` (issue 14, item 2), end to end: the real binary streaming a
//! generated `update_excuses.csv` from the fixture server into a real
//! `influxd`, killed with SIGKILL halfway and resumed: every row exactly
//! once. Issue 22, items 3 and 10: a malformed row costs that row only, a
//! resumed backfill proves it continues the same document (else starts
//! again from the beginning), and a broken `backfill.json` never makes
//! "run the same command again" fail forever.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::influxd::Influxd;
use common::*;
use fixture_server::FixtureServer;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn start() -> DateTime<Utc> {
    "2020-01-01T00:00:00Z".parse().unwrap()
}

/// An `update_excuses.csv` of the rows numbered `rows`, row `i` at
/// [`start`] + 15 minutes × `i`, its `total` `i`.
fn excuses_csv(rows: std::ops::Range<usize>) -> String {
    let mut csv = String::from("time,valid candidates,not considered,total,median age,backlog\n");
    for i in rows {
        let ms = (start() + Duration::minutes(15 * i as i64)).timestamp_millis();
        csv.push_str(&format!(
            "{ms},{},{},{},{},{}\n",
            i % 1000,
            i % 777,
            i,
            i % 30,
            i % 500
        ));
    }
    csv
}

/// A copy of the fixtures with an `update_excuses.csv` of `rows` rows, one
/// every 15 minutes from [`start`].
fn fixtures_with_excuses(dir: &Path, rows: usize) -> PathBuf {
    fixtures_with_csv(dir, &excuses_csv(0..rows))
}

/// A copy of the fixtures with `csv` as `update_excuses.csv`.
fn fixtures_with_csv(dir: &Path, csv: &str) -> PathBuf {
    let root = fixtures_copy(dir);
    std::fs::write(
        root.join("britney/proposed-migration/update_excuses.csv"),
        csv,
    )
    .unwrap();
    root
}

fn count(influx: &Influxd) -> i64 {
    let v = influx.query("SELECT count(\"total\") FROM update_excuses_stats");
    v["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

fn backfill(config: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.arg("--config")
        .arg(config)
        .args(["backfill", "update_excuses"])
        .args(extra);
    c
}

#[test]
fn killed_halfway_and_resumed_every_row_is_written_exactly_once() {
    const ROWS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_with_excuses(dir.path(), ROWS);
    let server = FixtureServer::start(&root).unwrap();
    let influx = Influxd::start();
    let config = write_config(dir.path(), &server, &influx.url());
    let progress = dir.path().join("backfill.json");

    let mut child = backfill(&config, &["--batch", "250"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL) once a few batches are in.
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let offset = std::fs::read_to_string(&progress)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["update_excuses"]["offset"].as_u64())
            .unwrap_or(0);
        if offset > 100_000 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "it ended before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = count(&influx);
    assert!(partial > 0 && (partial as usize) < ROWS, "{partial}");

    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resuming at byte"), "{stderr}");
    assert!(stdout.contains("done"), "{stdout}");
    assert_eq!(count(&influx), ROWS as i64);
    // The last row, with its own values and time.
    let v = influx.query("SELECT last(\"total\"), \"backlog\" FROM update_excuses_stats");
    let row = &v["results"][0]["series"][0]["values"][0];
    let last = start() + Duration::minutes(15 * (ROWS as i64 - 1));
    assert_eq!(row[0].as_i64(), last.timestamp_nanos_opt());
    assert_eq!(row[1].as_i64(), Some((ROWS - 1) as i64));
    // The same field types as the collector writes.
    assert!(
        influx
            .field_types("update_excuses_stats")
            .iter()
            .all(|(_, t)| t == "integer")
    );
    // Done: nothing left to resume.
    let left = std::fs::read_to_string(&progress).unwrap();
    assert!(!left.contains("update_excuses"), "{left}");
}

#[test]
fn since_a_date_only_the_rows_from_then() {
    const ROWS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_with_excuses(dir.path(), ROWS);
    let server = FixtureServer::start(&root).unwrap();
    let influx = Influxd::start();
    let config = write_config(dir.path(), &server, &influx.url());
    // 96 rows a day: from day 10 on.
    let out = backfill(&config, &["--since", "2020-01-11"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&influx), (ROWS - 10 * 96) as i64);

    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["backfill", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Rows in InfluxDB, the `total` of each (row `i` has `total` `i`), sorted.
fn totals(influx: &Influxd) -> Vec<i64> {
    let v = influx.query("SELECT \"total\" FROM update_excuses_stats");
    let mut t: Vec<i64> = v["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r[1].as_i64()).collect())
        .unwrap_or_default();
    t.sort_unstable();
    t
}

/// The last line of standard output that starts with `backfill`.
fn summary(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rfind(|l| l.starts_with("backfill"))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn an_unbalanced_quote_costs_that_row_only_and_is_named() {
    const ROWS: usize = 20_000;
    // Row 15100 is on line 15102 (after the header): its second column
    // opens a quote that nothing closes.
    const BAD: usize = 15_100;
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::new();
    for (i, line) in excuses_csv(0..ROWS).lines().enumerate() {
        if i == BAD + 1 {
            let (time, rest) = line.split_once(',').unwrap();
            csv.push_str(&format!("{time},\"{rest}\n"));
        } else {
            csv.push_str(line);
            csv.push('\n');
        }
    }
    let root = fixtures_with_csv(dir.path(), &csv);
    let server = FixtureServer::start(&root).unwrap();
    let influx = Influxd::start();
    let config = write_config(dir.path(), &server, &influx.url());

    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = summary(&out);
    eprintln!("{line}\n{stderr}");
    // Every other row is in InfluxDB: the bad one only is missing.
    let got = totals(&influx);
    let want: Vec<i64> = (0..ROWS as i64).filter(|i| *i != BAD as i64).collect();
    assert_eq!(got.len(), want.len(), "rows in influxd; {line}\n{stderr}");
    assert_eq!(got, want);
    // Counted and named, and not a silent success.
    assert!(stderr.contains("line 15102"), "{stderr}");
    assert!(stderr.contains("WARNING"), "{stderr}");
    assert!(
        line.contains("20000 rows read")
            && line.contains("19999 written")
            && line.contains("1 malformed"),
        "{line}"
    );
    assert_eq!(out.status.code(), Some(65), "{line}\n{stderr}");
}

/// An `update_excuses.csv` served from a file (read at every request) on a
/// loopback port, as Apache serves it: `Range: bytes=A-` is answered 206
/// with `Content-Range`, or 416 when `A` is past the end. [`cut_after`]
/// makes the next answer stop after so many bytes of its body (the
/// connection closed): an interrupted backfill, every time at the same row.
/// [`pause_after`] makes it wait there until [`go_on`].
///
/// [`cut_after`]: CsvServer::cut_after
/// [`pause_after`]: CsvServer::pause_after
/// [`go_on`]: CsvServer::go_on
struct CsvServer {
    port: u16,
    gate: Arc<Gate>,
    answers: Arc<Mutex<Vec<Answer>>>,
}

/// Where the next answer stops (`usize::MAX`: nowhere), and whether it
/// then waits for [`CsvServer::go_on`] rather than closing.
struct Gate {
    at: AtomicUsize,
    pause: AtomicBool,
    go: AtomicBool,
}

/// A request's `Range` header and the status it was answered with.
type Answer = (Option<String>, u16);

impl CsvServer {
    fn start(path: PathBuf) -> CsvServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Arc::new(Gate {
            at: AtomicUsize::new(usize::MAX),
            pause: AtomicBool::new(false),
            go: AtomicBool::new(false),
        });
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (c, a) = (gate.clone(), answers.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (path, c, a) = (path.clone(), c.clone(), a.clone());
                std::thread::spawn(move || serve_csv(conn, &path, &c, &a));
            }
        });
        CsvServer {
            port,
            gate,
            answers,
        }
    }

    /// The base URL of the `proposed_migration` source.
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/proposed-migration/", self.port)
    }

    fn cut_after(&self, bytes: usize) {
        self.gate.pause.store(false, Ordering::SeqCst);
        self.gate.at.store(bytes, Ordering::SeqCst);
    }

    fn pause_after(&self, bytes: usize) {
        self.gate.go.store(false, Ordering::SeqCst);
        self.gate.pause.store(true, Ordering::SeqCst);
        self.gate.at.store(bytes, Ordering::SeqCst);
    }

    fn go_on(&self) {
        self.gate.go.store(true, Ordering::SeqCst);
    }

    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }
}

fn serve_csv(conn: TcpStream, path: &Path, gate: &Gate, answers: &Mutex<Vec<Answer>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    let data = std::fs::read(path).unwrap();
    let total = data.len();
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|a| a.parse::<usize>().ok());
    let (status, head, body) = match from {
        Some(a) if a >= total => (
            416,
            format!(
                "416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0"
            ),
            &data[..0],
        ),
        Some(a) => (
            206,
            format!(
                "206 Partial Content\r\nContent-Range: bytes {a}-{}/{total}\r\nContent-Length: {}",
                total - 1,
                total - a
            ),
            &data[a..],
        ),
        None => (
            200,
            format!("200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: {total}"),
            &data[..],
        ),
    };
    answers.lock().unwrap().push((range, status));
    let at = gate.at.swap(usize::MAX, Ordering::SeqCst).min(body.len());
    let mut conn = conn;
    let _ = conn.write_all(
        format!("HTTP/1.1 {head}\r\nContent-Type: text/csv\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let _ = conn.write_all(&body[..at]);
    if gate.pause.load(Ordering::SeqCst) {
        let _ = conn.flush();
        while !gate.go.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = conn.write_all(&body[at..]);
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// A configuration reading `update_excuses.csv` from `csv`, everything else
/// from the fixture server, writing to `influx`; its state directory is
/// `dir`.
fn config_with_csv_server(dir: &Path, csv: &CsvServer, influx: &Influxd) -> PathBuf {
    let server = server();
    let mut config = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    config.sources.set(
        &ubuntu_metrics::collectors::britney::PROPOSED_MIGRATION.key,
        csv.base(),
    );
    config.influxdb.url = influx.url().into();
    config.influxdb.database = common::influxd::DATABASE.to_owned();
    config.spool.dir = dir.join("spool");
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

/// What [`csv_setup`] gives a backfill from a [`CsvServer`]: a temporary
/// directory, its `update_excuses.csv` and the text written there
/// ([`excuses_csv`] of `rows` rows), the [`CsvServer`] serving it, an
/// influxd, and the configuration reading from the one and writing to the
/// other ([`config_with_csv_server`]), in that order.
type CsvSetup = (
    tempfile::TempDir,
    PathBuf,
    String,
    CsvServer,
    Influxd,
    PathBuf,
);

fn csv_setup(rows: usize) -> CsvSetup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("update_excuses.csv");
    let original = excuses_csv(0..rows);
    std::fs::write(&file, &original).unwrap();
    let csv = CsvServer::start(file.clone());
    let influx = Influxd::start();
    let config = config_with_csv_server(dir.path(), &csv, &influx);
    (dir, file, original, csv, influx, config)
}

/// The saved offset of `update_excuses` in `dir`'s `backfill.json`.
fn saved_offset(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("backfill.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["update_excuses"]["offset"].as_u64())
        .unwrap_or(0)
}

/// Backfills `file` (served by `csv`) with batches of 500 rows, the
/// download cut after `cut` bytes: it fails, leaving its offset saved.
/// Returns the rows it wrote.
fn interrupted(config: &Path, csv: &CsvServer, cut: usize, influx: &Influxd) -> i64 {
    csv.cut_after(cut);
    let out = backfill(config, &["--batch", "500"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "not interrupted: {stderr}");
    assert!(
        saved_offset(config.parent().unwrap()) > 0,
        "no offset saved: {stderr}"
    );
    count(influx)
}

#[test]
fn a_source_rotated_after_an_interruption_is_read_again_from_the_beginning() {
    const ROWS: usize = 12_000;
    let (_dir, file, original, csv, influx, config) = csv_setup(ROWS);
    // Cut at 70%: more than the 3,000 rows the rotation removes are in.
    let partial = interrupted(&config, &csv, original.len() * 7 / 10, &influx);
    assert!(partial > 3_000 && partial < ROWS as i64, "{partial}");

    // Rotated: the 3,000 oldest rows removed, one appended.
    std::fs::write(&file, excuses_csv(3_000..ROWS + 1)).unwrap();
    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = summary(&out);
    eprintln!("{line}\n{stderr}");
    // Every row of both documents, once.
    let got = totals(&influx);
    assert_eq!(got.len(), ROWS + 1, "rows in influxd; {line}\n{stderr}");
    assert_eq!(got, (0..=ROWS as i64).collect::<Vec<_>>());
    assert!(stderr.contains("from the beginning"), "{stderr}");
    assert!(
        line.contains("9001 rows read") && line.contains("9001 written"),
        "{line}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_source_appended_to_after_an_interruption_goes_on_where_it_stopped() {
    const ROWS: usize = 12_000;
    let (dir, file, original, csv, influx, config) = csv_setup(ROWS);
    let partial = interrupted(&config, &csv, original.len() / 2, &influx);
    let offset = saved_offset(dir.path());

    // Britney appended ten rows meanwhile: the same document, longer.
    std::fs::write(&file, excuses_csv(0..ROWS + 10)).unwrap();
    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resuming at byte"), "{stderr}");
    assert!(!stderr.contains("from the beginning"), "{stderr}");
    assert_eq!(totals(&influx), (0..ROWS as i64 + 10).collect::<Vec<_>>());
    // Only the rest was asked for (with the 64 KiB before the offset,
    // which the resume checks), not the document again from byte 0.
    let answers = csv.answers();
    let (range, status) = answers.last().unwrap();
    let from: u64 = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no range asked: {answers:?}"));
    assert_eq!(from, offset - 64 * 1024, "{answers:?}");
    assert_eq!(*status, 206);
    assert!(partial > 0);
}

#[test]
fn an_offset_past_the_end_starts_over_with_a_warning() {
    const ROWS: usize = 4_000;
    let (dir, file, original, csv, influx, config) = csv_setup(ROWS);
    let partial = interrupted(&config, &csv, original.len() * 8 / 10, &influx);

    // Replaced by a far shorter document: the saved offset is past its end.
    std::fs::write(&file, excuses_csv(100_000..100_500)).unwrap();
    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        csv.answers().iter().any(|(_, s)| *s == 416),
        "{:?}",
        csv.answers()
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("from the beginning"), "{stderr}");
    assert_eq!(count(&influx), partial + 500);
    let left = std::fs::read_to_string(dir.path().join("backfill.json")).unwrap();
    assert!(!left.contains("update_excuses"), "{left}");
}

#[test]
fn a_corrupt_progress_file_starts_over_with_a_warning() {
    const ROWS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_with_excuses(dir.path(), ROWS);
    let server = FixtureServer::start(&root).unwrap();
    let influx = Influxd::start();
    let config = write_config(dir.path(), &server, &influx.url());
    std::fs::write(
        dir.path().join("backfill.json"),
        "{\"update_excuses\": {\"url\": ",
    )
    .unwrap();

    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("backfill.json") && stderr.contains("from the beginning"),
        "{stderr}"
    );
    assert_eq!(count(&influx), ROWS as i64);
    // Replaced by a valid one.
    let left = std::fs::read_to_string(dir.path().join("backfill.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&left).unwrap();
}

#[test]
fn a_progress_file_that_is_a_directory_says_what_to_remove() {
    const ROWS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_with_excuses(dir.path(), ROWS);
    let server = FixtureServer::start(&root).unwrap();
    let influx = Influxd::start();
    let config = write_config(dir.path(), &server, &influx.url());
    let progress = dir.path().join("backfill.json");
    std::fs::create_dir(&progress).unwrap();

    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is a directory")
            && stderr.contains(&format!("rmdir {}", progress.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("run the same command again"), "{stderr}");
    assert_eq!(count(&influx), 0, "nothing written before the check");

    // Doing what it says works.
    std::fs::remove_dir(&progress).unwrap();
    let out = backfill(&config, &[]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&influx), ROWS as i64);
}

#[test]
fn influxdb_down_after_some_rows_then_the_source_rotated_then_resumed_every_row_is_in_influxdb() {
    // The sequence: exit 75 (InfluxDB down) after a number of rows,
    // the 3,000 oldest rows removed and one appended, then resumed.
    const ROWS: usize = 12_000;
    const BATCH: usize = 500;
    let (dir, file, original, csv, mut influx, config) = csv_setup(ROWS);
    // The download waits at 70%; the batches before it are written.
    let pause = original.len() * 7 / 10;
    let lines = original.as_bytes()[..pause]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    let done = nth_line_end(&original, lines / BATCH * BATCH);
    csv.pause_after(pause);
    let mut child = backfill(&config, &["--batch", &BATCH.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while saved_offset(dir.path()) < done as u64 {
        assert!(Instant::now() < deadline, "no progress to byte {done}");
        assert!(child.try_wait().unwrap().is_none(), "it ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let written = count(&influx);
    assert_eq!(
        written as usize,
        lines / BATCH * BATCH - 1,
        "the header is no row"
    );
    influx.stop();
    csv.go_on();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");

    std::fs::write(&file, excuses_csv(3_000..ROWS + 1)).unwrap();
    influx.restart();
    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = summary(&out);
    eprintln!("{line}\n{stderr}");
    let got = totals(&influx);
    assert_eq!(got.len(), ROWS + 1, "rows in influxd; {line}\n{stderr}");
    assert_eq!(got, (0..=ROWS as i64).collect::<Vec<_>>());
    assert!(stderr.contains("from the beginning"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// The byte offset just after the `n`-th line of `text`.
fn nth_line_end(text: &str, n: usize) -> usize {
    text.match_indices('\n')
        .nth(n - 1)
        .map(|(i, _)| i + 1)
        .unwrap()
}

/// The fixture configuration writing to `influx` and to `vm` as the
/// second output `[outputs.vm]` (InfluxDB's v1 write API, which
/// VictoriaMetrics takes too).
fn config_with_vm(
    dir: &Path,
    server: &FixtureServer,
    influx: &Influxd,
    vm: &common::victoria::Victoria,
) -> PathBuf {
    let config = write_config(dir, server, &influx.url());
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let mut out = toml::Table::new();
    out.insert("url".into(), vm.url().into());
    out.insert("database".into(), "metrics".into());
    let mut outputs = toml::Table::new();
    outputs.insert("vm".into(), toml::Value::Table(out));
    c.insert("outputs".into(), toml::Value::Table(outputs));
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();
    config
}

/// The rows of `update_excuses_stats` VictoriaMetrics holds: the distinct
/// times of its `total` (VictoriaMetrics keeps a sample written twice
/// twice, without `-dedup.minScrapeInterval`), and the samples in all.
fn vm_rows(vm: &common::victoria::Victoria) -> (usize, usize) {
    let samples: Vec<i64> = vm
        .export()
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("update_excuses_stats_total{"))
        .map(|(_, t, _)| t)
        .collect();
    let distinct: std::collections::BTreeSet<i64> = samples.iter().copied().collect();
    (distinct.len(), samples.len())
}

/// The saved offset of `entry` in `backfill.json`, 0 when none.
fn offset_of(dir: &Path, entry: &str) -> u64 {
    std::fs::read_to_string(dir.join("backfill.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v[entry]["offset"].as_u64())
        .unwrap_or(0)
}

/// Issue 24, item 6: backfill writes to every output (`[influxdb]` and
/// each `[outputs.NAME]`), or to those named with `--output`, each with
/// its own resume mark: an output interrupted halfway goes on from its own
/// offset, and one that was down is finished by itself.
#[test]
fn every_output_gets_every_row_and_each_goes_on_by_itself() {
    const ROWS: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_with_excuses(dir.path(), ROWS);
    let server = FixtureServer::start(&root).unwrap();
    let influx = Influxd::start();
    let mut vm = common::victoria::Victoria::start();
    let config = config_with_vm(dir.path(), &server, &influx, &vm);

    // Only the second output, killed (SIGKILL) once a few batches are in:
    // its own entry holds the offset, the first output has none.
    let mut child = backfill(&config, &["--batch", "250", "--output", "vm"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while offset_of(dir.path(), "update_excuses@vm") <= 50_000 {
        assert!(Instant::now() < deadline, "no progress to [outputs.vm]");
        assert!(
            child.try_wait().unwrap().is_none(),
            "it ended before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (partial, _) = vm_rows(&vm);
    assert!(partial > 0 && partial < ROWS, "{partial}");
    assert_eq!(count(&influx), 0, "--output vm wrote to [influxdb]");
    assert_eq!(offset_of(dir.path(), "update_excuses"), 0);

    // Every output: [influxdb] from the beginning, [outputs.vm] from its
    // own offset.
    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("backfill update_excuses to [outputs.vm]: resuming at byte"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("to [influxdb]: resuming"),
        "[influxdb] had nothing to resume: {stderr}"
    );
    for output in ["[influxdb]", "[outputs.vm]"] {
        assert!(
            stdout.contains(&format!("backfill update_excuses to {output}: done")),
            "{stdout}"
        );
    }
    assert_eq!(count(&influx), ROWS as i64);
    assert_eq!(vm_rows(&vm).0, ROWS);
    let left = std::fs::read_to_string(dir.path().join("backfill.json")).unwrap();
    assert!(!left.contains("update_excuses"), "{left}");

    // The second output down: the first gets every row (again, kept once),
    // the run says which output to go on with; once it is back, that one
    // alone is finished.
    vm.stop();
    let out = backfill(&config, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("backfill update_excuses to [outputs.vm]: [outputs.vm]: "),
        "the failing output is named: {stderr}"
    );
    assert!(
        stderr.contains("run the same command again with only --output vm"),
        "{stderr}"
    );
    assert_eq!(count(&influx), ROWS as i64);
    vm.restart();
    let out = backfill(&config, &["--output", "vm"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("[influxdb]"), "{stdout}");
    assert_eq!(vm_rows(&vm).0, ROWS);
    assert_eq!(count(&influx), ROWS as i64);
    // An output the configuration does not have is a usage error naming
    // those it has.
    let out = backfill(&config, &["--output", "nope"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--output nope: no such output; the configuration has: influxdb, vm"),
        "{stderr}"
    );
}
