//! Catch-up after downtime (issue 14, item 1), end to end: the real
//! binary, the fixture server serving a copy of the fixtures whose
//! time-series CSVs the test writes, and a real `influxd`.
//!
//! The CSVs hold a row every 15 minutes over 5 days. A first run (a fresh
//! station) writes the last 12 h; the station is then down for 2 days; the
//! second run writes every row between the two runs, not only the last
//! 12 h. A dry run reads the same rows and leaves the marks alone; a source
//! that shrank (the mark is newer than every row) falls back to the window
//! with a warning. A station taking over another's database starts at the
//! collectors' `catch_up_from` (the newest row already there) instead of
//! the window, until it has marks of its own.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::influxd::Influxd;
use common::*;
use fixture_server::FixtureServer;
use std::path::{Path, PathBuf};

const STEP_MINUTES: i64 = 15;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The first row of the generated reports.
fn start() -> DateTime<Utc> {
    t("2026-11-20T00:00:00Z")
}

/// The times of the rows from [`start`] up to `until` (included).
fn times(until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut v = Vec::new();
    let mut at = start();
    while at <= until {
        v.push(at);
        at += Duration::minutes(STEP_MINUTES);
    }
    v
}

/// Writes britney's `update_excuses.csv` and the archive team's `nbs.csv`
/// with the rows up to `until`.
fn write_reports(root: &Path, until: DateTime<Utc>) {
    let mut excuses =
        String::from("time,valid candidates,not considered,total,median age,backlog\n");
    let mut nbs = String::from("time,removable,total\n");
    for (i, at) in times(until).iter().enumerate() {
        let ms = at.timestamp_millis();
        excuses.push_str(&format!(
            "{ms},{i},{},{},{},{}\n",
            i + 1,
            i + 2,
            i % 10,
            i % 7
        ));
        nbs.push_str(&format!("{ms},{},{i}\n", i % 50));
    }
    std::fs::write(
        root.join("britney/proposed-migration/update_excuses.csv"),
        excuses,
    )
    .unwrap();
    std::fs::write(root.join("ubuntu_archive/nbs.csv"), nbs).unwrap();
}

/// `run --now NOW britney ubuntu_archive` (plus `extra`), its output.
fn run(config: &Path, now: DateTime<Utc>, extra: &[&str]) -> std::process::Output {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(["run", "--now", &now.to_rfc3339()])
        .args(extra)
        .args(["britney", "ubuntu_archive"])
        .output()
        .expect("ubuntu-metrics runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The times (ns) of the rows of `measurement` in InfluxDB.
fn written(influx: &Influxd, measurement: &str) -> Vec<i64> {
    let mut v: Vec<i64> = influx
        .rows(measurement)
        .iter()
        .map(|r| r["time"].as_i64().expect("epoch=ns"))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The times (ns) of the generated rows in `(after, until]`.
fn expected_times(after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<i64> {
    times(until)
        .into_iter()
        .filter(|t| *t > after)
        .map(|t| t.timestamp_nanos_opt().unwrap())
        .collect()
}

struct Station {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    marks: PathBuf,
    server: FixtureServer,
    influx: Influxd,
}

fn station() -> Station {
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_copy(dir.path());
    let server = FixtureServer::start(&root).expect("fixture server starts");
    let influx = Influxd::start();
    let config = write_config(dir.path(), &server, &influx.url());
    let marks = dir.path().join("catch-up.json");
    Station {
        _dir: dir,
        root,
        config,
        marks,
        server,
        influx,
    }
}

fn nbs_requests(server: &FixtureServer) -> u64 {
    server
        .path_requests()
        .get("ubuntu_archive/nbs.csv")
        .copied()
        .unwrap_or(0)
}

#[test]
fn after_a_two_day_outage_every_row_between_the_runs_is_written() {
    let s = station();
    let t1 = start() + Duration::days(3);
    let t2 = t1 + Duration::days(2);

    // A fresh station: the last 12 hours only.
    write_reports(&s.root, t1);
    run(&s.config, t1, &[]);
    let window = expected_times(t1 - Duration::hours(12), t1);
    assert_eq!(window.len(), 48);
    assert_eq!(written(&s.influx, "update_excuses_stats"), window);
    assert_eq!(written(&s.influx, "nbs_stats"), window);
    assert!(s.marks.exists(), "the run set its marks");

    // Down for two days; the reports went on.
    write_reports(&s.root, t2);
    let before = nbs_requests(&s.server);
    run(&s.config, t2, &[]);
    let all = expected_times(t1 - Duration::hours(12), t2);
    assert_eq!(all.len(), 48 + 2 * 24 * 4);
    assert_eq!(written(&s.influx, "update_excuses_stats"), all);
    assert_eq!(written(&s.influx, "nbs_stats"), all);
    // The tail grew to reach the mark (2 days of rows > 2048 bytes)...
    assert!(nbs_requests(&s.server) - before > 1);
    // ...but the values are the rows' own.
    let rows = s.influx.rows("nbs_stats");
    let last = rows
        .iter()
        .max_by_key(|r| r["time"].as_i64().unwrap())
        .unwrap();
    let i = times(t2).len() as i64 - 1;
    assert_eq!(last["total"].as_i64(), Some(i));
    assert_eq!(last["removable"].as_i64(), Some(i % 50));

    // Caught up: one more row, one small tail.
    let t3 = t2 + Duration::minutes(STEP_MINUTES);
    write_reports(&s.root, t3);
    let before = nbs_requests(&s.server);
    run(&s.config, t3, &[]);
    assert_eq!(nbs_requests(&s.server) - before, 1);
    assert_eq!(
        written(&s.influx, "nbs_stats"),
        expected_times(t1 - Duration::hours(12), t3)
    );
}

#[test]
fn a_dry_run_reads_the_same_rows_and_leaves_the_marks_alone() {
    let s = station();
    let t1 = start() + Duration::days(1);
    let t2 = t1 + Duration::days(2);
    write_reports(&s.root, t1);
    run(&s.config, t1, &[]);
    let marks = std::fs::read(&s.marks).unwrap();

    write_reports(&s.root, t2);
    let out = run(&s.config, t2, &["--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed = stdout
        .lines()
        .filter(|l| l.starts_with("update_excuses_stats,"))
        .count();
    assert_eq!(printed, expected_times(t1, t2).len(), "{stdout}");
    assert_eq!(std::fs::read(&s.marks).unwrap(), marks, "the marks moved");

    // The real run after it still catches up.
    run(&s.config, t2, &[]);
    assert_eq!(
        written(&s.influx, "update_excuses_stats"),
        expected_times(t1 - Duration::hours(12), t2)
    );
    assert_ne!(std::fs::read(&s.marks).unwrap(), marks);
}

#[test]
fn a_shrunk_source_falls_back_to_the_window_with_a_warning() {
    let s = station();
    let t1 = start() + Duration::days(4);
    write_reports(&s.root, t1);
    run(&s.config, t1, &[]);

    // Restored from an old backup: every row is older than the mark.
    let cut = t1 - Duration::hours(6);
    write_reports(&s.root, cut);
    let t2 = t1 + Duration::hours(1);
    let out = run(&s.config, t2, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("update_excuses.csv") && stderr.contains("shrank or was rotated"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nbs.csv") && stderr.contains("shrank or was rotated"),
        "{stderr}"
    );
    // The marks now name the source's newest row: new rows are read again.
    let marks = std::fs::read_to_string(&s.marks).unwrap();
    assert!(
        marks.contains(&cut.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        "{marks}"
    );
    let t3 = cut + Duration::hours(1);
    write_reports(&s.root, t3);
    run(&s.config, t2 + Duration::minutes(5), &[]);
    assert_eq!(
        written(&s.influx, "update_excuses_stats"),
        expected_times(t1 - Duration::hours(12), t1)
    );
}

#[test]
fn max_catch_up_bounds_the_rows_read_and_is_checked_at_load() {
    let s = station();
    let t1 = start() + Duration::hours(12);
    let t2 = t1 + Duration::days(4);
    write_reports(&s.root, t1);
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str("\n[collectors.britney]\nmax_catch_up = \"1d\"\n");
    std::fs::write(&s.config, &config).unwrap();
    run(&s.config, t1, &[]);
    write_reports(&s.root, t2);
    run(&s.config, t2, &[]);
    let mut want = expected_times(t1 - Duration::hours(12), t1);
    want.extend(expected_times(t2 - Duration::days(1), t2));
    assert_eq!(written(&s.influx, "update_excuses_stats"), want);
    // nbs.csv has no limit but the default (90 days): all of it.
    assert_eq!(
        written(&s.influx, "nbs_stats"),
        expected_times(t1 - Duration::hours(12), t2)
    );

    std::fs::write(
        &s.config,
        config.replace("max_catch_up = \"1d\"", "max_catch_up = \"1h\""),
    )
    .unwrap();
    let out = bin()
        .arg("--config")
        .arg(&s.config)
        .args(["run", "--dry-run", "britney"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("max_catch_up"), "{stderr}");
}

/// Adds `[collectors.NAME] catch_up_from = "FROM"` for britney and
/// ubuntu_archive to the configuration `base`, written to `config`.
fn with_catch_up_from(config: &Path, base: &str, from: &str) {
    let mut text = base.to_owned();
    for name in ["britney", "ubuntu_archive"] {
        text.push_str(&format!(
            "\n[collectors.{name}]\ncatch_up_from = \"{from}\"\n"
        ));
    }
    std::fs::write(config, text).unwrap();
}

#[test]
fn a_station_taking_over_starts_at_catch_up_from_until_it_has_marks() {
    // The old station stopped writing two days before the switch: the
    // newest row in its database is at `from`. (The times are before the
    // machine's clock: a `catch_up_from` in the future is refused.)
    let s = station();
    let t1 = start() + Duration::days(3);
    let from = t1 - Duration::days(2);
    write_reports(&s.root, t1);
    let base = std::fs::read_to_string(&s.config).unwrap();
    with_catch_up_from(&s.config, &base, &from.to_rfc3339());
    assert!(!s.marks.exists());
    run(&s.config, t1, &[]);
    let taken_over = expected_times(from, t1);
    assert_eq!(taken_over.len(), 2 * 24 * 4);
    assert_eq!(written(&s.influx, "update_excuses_stats"), taken_over);
    assert_eq!(written(&s.influx, "nbs_stats"), taken_over);
    let marks = std::fs::read_to_string(&s.marks).unwrap();
    assert!(
        marks.contains("update_excuses.csv") && marks.contains("nbs.csv"),
        "{marks}"
    );

    // Run again: the marks rule, nothing new is read; a caught-up
    // station fetches one small tail of nbs.csv (not the two days back
    // to `from`).
    let before = nbs_requests(&s.server);
    run(&s.config, t1 + Duration::minutes(5), &[]);
    assert_eq!(nbs_requests(&s.server) - before, 1);
    assert_eq!(written(&s.influx, "update_excuses_stats"), taken_over);
    assert_eq!(written(&s.influx, "nbs_stats"), taken_over);
    // Even an option reaching further back is ignored once there are
    // marks; new rows are read as usual.
    with_catch_up_from(&s.config, &base, &start().to_rfc3339());
    let t2 = t1 + Duration::minutes(STEP_MINUTES);
    write_reports(&s.root, t2);
    run(&s.config, t2 + Duration::minutes(5), &[]);
    assert_eq!(
        written(&s.influx, "update_excuses_stats"),
        expected_times(from, t2)
    );
    assert_eq!(written(&s.influx, "nbs_stats"), expected_times(from, t2));

    // The same switch without the option: the last 12 hours only, a gap
    // of a day and a half.
    let fresh = station();
    write_reports(&fresh.root, t1);
    run(&fresh.config, t1, &[]);
    let window = expected_times(t1 - Duration::hours(12), t1);
    assert_eq!(window.len(), 12 * 4);
    assert_eq!(written(&fresh.influx, "update_excuses_stats"), window);
    assert_eq!(written(&fresh.influx, "nbs_stats"), window);
}

#[test]
fn catch_up_from_is_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let future = (Utc::now() + Duration::days(30)).format("%Y-%m-%dT%H:%M:%SZ");
    for (value, says) in [
        ("yesterday".to_owned(), "not an RFC 3339 time".to_owned()),
        (
            "2026-12-04T10:00:00".to_owned(),
            "not an RFC 3339 time".to_owned(),
        ),
        (future.to_string(), format!("{future} is in the future")),
    ] {
        for name in ["britney", "ubuntu_archive"] {
            std::fs::write(
                &config,
                format!("[collectors.{name}]\ncatch_up_from = \"{value}\"\n"),
            )
            .unwrap();
            for command in [&["config", "show"][..], &["run", "--dry-run", name]] {
                let out = bin()
                    .arg("--config")
                    .arg(&config)
                    .args(command)
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
                assert!(
                    stderr.contains(&format!("collectors.{name}.catch_up_from: "))
                        && stderr.contains(&value)
                        && stderr.contains(&says),
                    "{command:?}: {stderr}"
                );
            }
        }
    }
}

#[test]
fn with_influxdb_down_the_rows_wait_in_the_spool_and_the_marks_move() {
    // The marks move once the points are fsync'd in the spool: nothing is
    // lost, and the next run does not read them again.
    let mut s = station();
    let t1 = start() + Duration::days(2);
    write_reports(&s.root, t1);
    s.influx.stop();
    let out = bin()
        .arg("--config")
        .arg(&s.config)
        .args(["run", "--now", &t1.to_rfc3339(), "britney"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let marks = std::fs::read_to_string(&s.marks).unwrap();
    assert!(marks.contains("update_excuses.csv"), "{marks}");
    s.influx.restart();
    let out = bin()
        .arg("--config")
        .arg(&s.config)
        .args(["spool", "flush"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        written(&s.influx, "update_excuses_stats"),
        expected_times(t1 - Duration::hours(12), t1)
    );
}
