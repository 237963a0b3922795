//! What a declared collector prints is input, not trusted (issue 22,
//! items 8 and 13): a time in seconds or milliseconds where nanoseconds are
//! meant is refused (never stored in 1970), a time InfluxDB cannot store is
//! refused before it is sent, and each refusal names the value, the line
//! and the rule. Through the real binary and a real influxd.

mod common;

use common::influxd::{self, Influxd};
use common::rogue::{Rogue, response};
use common::*;
use std::path::{Path, PathBuf};

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// An exec collector `name` whose script prints `output`, writing the
/// measurement `name` (tag `src`, fields `x` int and `f` float).
fn printing(dir: &Path, name: &str, output: &str) -> String {
    let script = dir.join(format!("{name}.py"));
    std::fs::write(
        &script,
        format!("import sys\nsys.stdout.write({output:?})\n"),
    )
    .unwrap();
    format!(
        "[collectors.{name}]\ntype = \"exec\"\ncommand = [\"{}\", \"{}\"]\n[collectors.{name}.measurements.{name}]\ntags = [\"src\"]\nfields = {{ x = \"int\", f = \"float\" }}\n\n",
        python(),
        script.display()
    )
}

fn config(dir: &Path, influx_url: &str, collectors: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            "[influxdb]\nurl = \"{influx_url}\"\ndatabase = \"{}\"\n\n[spool]\ndir = \"{}\"\n\n{collectors}",
            influxd::DATABASE,
            dir.join("spool").display()
        ),
    )
    .unwrap();
    p
}

/// Issue 22, item 8: `"time": 1764000000` (seconds) and a line protocol
/// time in milliseconds were stored in 1970 and the run said nothing. Now
/// each run fails naming the line, the value and its likely unit, and
/// influxd holds nothing before 2000 (the good collector's point is there:
/// the writes were made).
#[test]
fn seconds_or_milliseconds_are_refused_and_nothing_is_stored_in_1970() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let collectors = [
        printing(
            dir.path(),
            "secs",
            "secs,src=a x=1i\n{\"measurement\": \"secs\", \"tags\": {\"src\": \"b\"}, \"fields\": {\"x\": 2}, \"time\": 1764000000}\n",
        ),
        printing(
            dir.path(),
            "millis",
            "millis,src=a x=1i 1764000000000\n",
        ),
        printing(
            dir.path(),
            "micros",
            "[{\"measurement\": \"micros\", \"fields\": {\"x\": 1}, \"timestamp\": 1764000000000000}]\n",
        ),
        printing(dir.path(), "good", "good,src=a x=1i 1764000000000000000\n"),
    ]
    .concat();
    let cfg = config(dir.path(), &db.url(), &collectors);
    let out = run_now(&cfg, &["secs", "millis", "micros", "good"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    for want in [
        "line 2: secs: time: 1764000000 is 1970-01-01T00:00:01.764Z, before 2000-01-01: 1764000000 looks like seconds: multiply by 1e9 or give RFC 3339",
        "line 1: timestamp 1764000000000 is 1970-01-01T00:29:24Z, before 2000-01-01: 1764000000000 looks like milliseconds: multiply by 1e6 or give RFC 3339",
        "point 1 of the array: micros: timestamp: 1764000000000000 is 1970-01-21T10:00:00Z, before 2000-01-01: 1764000000000000 looks like microseconds: multiply by 1e3 or give RFC 3339",
    ] {
        assert!(stderr.contains(want), "wanted {want:?} in:\n{stderr}");
    }
    // The good collector's point was written...
    let good = db.rows("good");
    assert_eq!(good.len(), 1, "{good:?}\n{stderr}");
    assert_eq!(good[0]["time"], 1_764_000_000_000_000_000i64);
    // ...and nothing at all before 2000, nor any point of the refused runs.
    let early = db.query("SELECT * FROM /.*/ WHERE time < '2000-01-01T00:00:00Z'");
    assert!(
        early["results"][0]["series"].is_null(),
        "stored before 2000: {early}"
    );
    for m in ["secs", "millis", "micros"] {
        assert!(db.rows(m).is_empty(), "{m}: {:?}", db.rows(m));
    }
}

/// Issue 22, item 13: a time of i64::MAX nanoseconds (2262) passed the
/// program's check and was dead-lettered by influxd; a time past 2100 is
/// now refused, naming it, before anything is sent, and the other
/// collector's point is written.
#[test]
fn a_time_influxdb_cannot_store_is_refused_before_it_is_sent() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let collectors = [
        printing(dir.path(), "far", "far,src=a x=1i 9223372036854775807\n"),
        printing(
            dir.path(),
            "farjson",
            "{\"measurement\": \"farjson\", \"fields\": {\"x\": 1}, \"time\": \"2262-04-11T23:47:16.854775807Z\"}\n",
        ),
        printing(dir.path(), "good", "good,src=a x=1i 1764000000000000000\n"),
    ]
    .concat();
    let cfg = config(dir.path(), &db.url(), &collectors);
    let out = run_now(&cfg, &["far", "farjson", "good"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    for want in [
        "line 1: timestamp 9223372036854775807 is 2262-04-11T23:47:16.854775807Z, after 2100-12-31 (a point's time is from 2000-01-01 to 2100-12-31)",
        "line 1: farjson: time: \"2262-04-11T23:47:16.854775807Z\" is after 2100-12-31 (a point's time is from 2000-01-01 to 2100-12-31)",
    ] {
        assert!(stderr.contains(want), "wanted {want:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("dead letter"), "{stderr}");
    assert_eq!(db.rows("good").len(), 1, "{stderr}");
    assert!(db.rows("far").is_empty());
    // Nothing was set aside as refused by influxd.
    let status = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["spool", "status"])
        .output()
        .unwrap();
    let spool = text(&status.stdout);
    assert!(spool.contains("dead_letter_batches: 0"), "{spool}");
}

/// Runs the exec collector `m` printing `output` (dry run) and returns
/// its messages, asserting that the run failed.
fn refused(output: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "http://127.0.0.1:9",
        &printing(dir.path(), "m", output),
    );
    let out = run_now(&cfg, &["m", "--dry-run"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{output}: {stderr}");
    assert!(
        text(&out.stdout).is_empty(),
        "{output}: {}",
        text(&out.stdout)
    );
    stderr
}

/// Issue 22, item 13: each refusal names the value and the rule, not the
/// parser's confusion ("No fields were provided") nor a type it guessed
/// ("field i is float").
#[test]
fn a_refused_value_is_named_with_the_rule() {
    for (output, want) in [
        (
            "m x=NaN\n",
            "line 1: field x: NaN is not a finite number; InfluxDB stores only finite floats (no NaN, no infinity)",
        ),
        (
            "m f=-inf\n",
            "line 1: field f: -inf is not a finite number; InfluxDB stores only finite floats (no NaN, no infinity)",
        ),
        (
            "m x=1i\nm x=-9223372036854775809i\n",
            "line 2: field x: -9223372036854775809i is outside InfluxDB's integers (64-bit: -9223372036854775808 to 9223372036854775807)",
        ),
        (
            "{\"measurement\": \"m\", \"fields\": {\"x\": -9223372036854775809}}\n",
            "line 1: m: field x: -9223372036854775809 is outside InfluxDB's integers (64-bit: -9223372036854775808 to 9223372036854775807)",
        ),
        (
            "[{\"measurement\": \"m\", \"fields\": {\"x\": 1}}, {\"measurement\": \"m\", \"fields\": {\"x\": 99999999999999999999999}}]\n",
            "point 2 of the array: m: field x: 99999999999999999999999 is outside InfluxDB's integers (64-bit: -9223372036854775808 to 9223372036854775807)",
        ),
        (
            "m x=1i 99999999999999999999\n",
            "line 1: timestamp 99999999999999999999 is not a number of nanoseconds InfluxDB can store (64-bit",
        ),
    ] {
        let stderr = refused(output);
        assert!(
            stderr.contains(want),
            "{output:?}: wanted {want:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("No fields were provided"), "{stderr}");
    }
}

/// Issue 22, item 13: a 304 to a request that asked for the whole document
/// (no kept copy to reuse) said only "HTTP 304".
#[test]
fn a_304_with_nothing_kept_says_what_is_wrong() {
    let server = Rogue::start(|_| Some(response("304 Not Modified", &[], b"")));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[spool]\ndir = \"{}\"\n\n[collectors.q]\ntype = \"http\"\nurl = \"{}/q.json\"\nfilter = '{{measurement: \"q\", fields: {{x: .x}}}}'\n[collectors.q.measurements.q]\nfields = {{ x = \"int\" }}\n",
            dir.path().join("spool").display(),
            server.url()
        ),
    )
    .unwrap();
    let out = run_now(&cfg, &["q", "--dry-run"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("HTTP 304: Not Modified, but this request asked for the whole document and no copy of it is kept to reuse (a 304 answers only a conditional request)"),
        "{stderr}"
    );
}
