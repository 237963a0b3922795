//! `ubuntu-metrics run --all` as an operator runs it: the binary, a
//! configuration file, the fixture server for every upstream source and a
//! real influxd. Every expected point of every collector must be read back
//! from InfluxDB with its tags, values, types and timestamp.

mod common;

use common::influxd::Influxd;
use common::*;
use influxdb_line_protocol::{FieldValue, parse_lines};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;
use ubuntu_metrics::collectors::registry;

fn type_name(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::I64(_) | FieldValue::U64(_) => "integer",
        FieldValue::F64(_) => "float",
        FieldValue::String(_) => "string",
        FieldValue::Boolean(_) => "boolean",
    }
}

fn json_of(v: &FieldValue) -> Value {
    match v {
        FieldValue::I64(i) => json!(i),
        FieldValue::U64(u) => json!(u),
        FieldValue::F64(f) => json!(f),
        FieldValue::String(s) => json!(s.to_string()),
        FieldValue::Boolean(b) => json!(b),
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[test]
fn run_all_writes_every_expected_point() {
    let server = server_with_rsync();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());

    let out = run_all(&config);
    assert!(out.stdout.is_empty(), "a real run prints nothing on stdout");

    // Every expected line of every registered collector.
    let mut expected = String::new();
    for c in registry() {
        let path = fixtures().join(c.name()).join("expected.out");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        expected.push_str(&text);
        expected.push('\n');
    }
    let lines: Vec<&str> = expected
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!lines.is_empty());

    // Lines with the same measurement, tag set and time are one point in
    // InfluxDB (the last written wins: the images spec keeps such
    // duplicates), so such a group needs one of its lines in the database.
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for line in &lines {
        let parsed = parse_lines(line)
            .next()
            .unwrap()
            .unwrap_or_else(|e| panic!("bad expected line {line}: {e}"));
        let ts = parsed
            .timestamp
            .unwrap_or_else(|| panic!("expected line without timestamp: {line}"));
        groups
            .entry(format!("{} {ts}", parsed.series))
            .or_default()
            .push(line);
    }
    let mut types_checked: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut rows_cache: BTreeMap<String, Vec<serde_json::Map<String, Value>>> = BTreeMap::new();
    let mut checked = 0;
    for group in groups.values() {
        let mut found = false;
        let mut m = String::new();
        for line in group {
            let parsed = parse_lines(line).next().unwrap().unwrap();
            m = parsed.series.measurement.to_string();
            let ts = parsed.timestamp.unwrap();
            let rows = rows_cache.entry(m.clone()).or_insert_with(|| db.rows(&m));
            let tags: Vec<(String, String)> = parsed
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            found |= rows.iter().any(|r| {
                r.get("time") == Some(&json!(ts))
                    && tags.iter().all(|(k, v)| r.get(k) == Some(&json!(v)))
                    && parsed.field_set.iter().all(|(k, v)| {
                        r.get(&k.to_string())
                            .is_some_and(|got| same_value(got, &json_of(v)))
                    })
            });
            let types = types_checked
                .entry(m.clone())
                .or_insert_with(|| db.field_types(&m));
            for (k, v) in &parsed.field_set {
                let want = (k.to_string(), type_name(v).to_owned());
                assert!(
                    types.contains(&want),
                    "{m}.{k} should be {}: {types:?}",
                    type_name(v)
                );
            }
        }
        assert!(
            found,
            "not in InfluxDB: {group:?}\nrows of {m}: {:?}",
            rows_cache.get(&m)
        );
        checked += 1;
    }
    eprintln!("checked {checked} points in InfluxDB");
}

#[test]
fn dry_run_prints_points_only_and_writes_nothing() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    // An InfluxDB URL nobody answers: a dry run must not need it.
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    let out = bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--now",
            NOW,
            "sponsoring",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_printed(&out, "sponsoring/expected.out");
}

#[test]
fn a_failing_collector_does_not_stop_the_others_and_exits_1() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    // Point sponsoring at a missing file by overriding its source.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("sponsoring/general.json", "sponsoring/nope.json");
    std::fs::write(&config, text).unwrap();
    let out = bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--now",
            NOW,
            "--all",
            "-n",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sponsoring") && stderr.contains("nope.json") && stderr.contains("404"),
        "{stderr}"
    );
    if registry().len() > 1 {
        assert!(
            !out.stdout.is_empty(),
            "the other collectors still printed their points"
        );
    }
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    // (configuration, what the message must name)
    let cases: [(&str, &[&str]); 3] = [
        ("[influxdb]\ndatabse = \"x\"\n", &["databse", "bad.toml"]),
        (
            "[collectors.sponsoring]\ninterval = \"1h,30m\"\n",
            &["1h,30m", "bad.toml"],
        ),
        ("[collectors.nosuch]\nenabled = false\n", &["nosuch"]),
    ];
    for (text, needles) in cases {
        std::fs::write(&bad, text).unwrap();
        let out = bin()
            .args(["--config", bad.to_str().unwrap(), "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(
            needles.iter().all(|n| stderr.contains(n)),
            "{text}: {stderr}"
        );
    }

    let out = bin().args(["run", "nosuch", "-n"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_show_redacts_the_password_and_env_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[influxdb]\nurl = \"http://file-host:8086\"\npassword = \"file-secret-77\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["--config", file.to_str().unwrap(), "config", "show"])
        .env("INFLUXDB_HOSTNAME", "env-host")
        .env("INFLUXDB_PASSWORD", "env-secret-88")
        .env("INFLUXDB_DATABASE", "envdb")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("file-secret-77") && !all.contains("env-secret-88"),
        "{all}"
    );
    assert!(
        all.contains("https://env-host:8086")
            && all.contains("envdb")
            && all.contains("<redacted>"),
        "{all}"
    );
}

#[test]
fn a_link_named_after_a_collector_runs_it() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    let link = dir.path().join("sponsoring");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ubuntu-metrics"), &link).unwrap();
    let out = clean_env(&mut Command::new(&link))
        .args(["--config", config.to_str().unwrap(), "--now", NOW, "-n"])
        .output()
        .unwrap();
    assert_printed(&out, "sponsoring/expected.out");
}

#[test]
fn self_metrics_one_point_per_run_and_switchable_off() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    let out = bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--now",
            NOW,
            "sponsoring",
            "versions",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = db.rows("ubuntu_metrics_run");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["status"], json!("ok"));
        assert!(r["duration_seconds"].as_f64().unwrap() >= 0.0);
        assert!(r.get("error").is_none());
    }
    let sp = rows
        .iter()
        .find(|r| r["collector"] == json!("sponsoring"))
        .unwrap();
    assert_eq!(sp["points"], json!(4));
    assert_eq!(sp["requests"], json!(1));
    let types = db.field_types("ubuntu_metrics_run");
    for want in [
        ("duration_seconds", "float"),
        ("points", "integer"),
        ("requests", "integer"),
    ] {
        assert!(
            types.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{types:?}"
        );
    }

    // A failing run: status error with its message.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("sponsoring/general.json", "sponsoring/gone.json");
    std::fs::write(&config, text).unwrap();
    let out = bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--now",
            "2026-11-24T13:00:00Z",
            "sponsoring",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = db.query("SELECT * FROM ubuntu_metrics_run WHERE status = 'error'");
    assert!(v.to_string().contains("gone.json"), "{v}");

    // Switched off: no new self-metrics point.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[self_metrics]\nenabled = true",
        "[self_metrics]\nenabled = false",
    );
    assert!(text.contains("enabled = false"));
    std::fs::write(&config, text).unwrap();
    bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--now",
            "2026-11-24T14:00:00Z",
            "versions",
        ])
        .output()
        .unwrap();
    assert_eq!(db.rows("ubuntu_metrics_run").len(), 3);
}
