//! `backfill` (issue 14, item 2), end to end: the real binary streaming a
//! generated `update_excuses.csv` from the fixture server into a real
//! `influxd`, killed with SIGKILL halfway and resumed: every row exactly
//! once.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::influxd::Influxd;
use common::*;
use fixture_server::FixtureServer;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn start() -> DateTime<Utc> {
    "2020-01-01T00:00:00Z".parse().unwrap()
}

/// A copy of the fixtures with an `update_excuses.csv` of `rows` rows, one
/// every 15 minutes from [`start`].
fn fixtures_with_excuses(dir: &Path, rows: usize) -> PathBuf {
    let root = fixtures_copy(dir);
    let mut csv = String::from("time,valid candidates,not considered,total,median age,backlog\n");
    for i in 0..rows {
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
