//! The self-metrics beyond `ubuntu_metrics_run` (issue 13, item 4), read
//! back from a real influxd after real runs against the fixture server:
//! requests and errors per upstream host (`ubuntu_metrics_http`), each
//! write to InfluxDB (`ubuntu_metrics_write`) and the spool as seen after
//! each delivery (`ubuntu_metrics_spool`). Every self-metric written has
//! the fields and types `runner::self_schema()` declares.

mod common;

use common::influxd::Influxd;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use ubuntu_metrics::model::schema::FieldType;
use ubuntu_metrics::runner::{HTTP_MEASUREMENT, SELF_MEASUREMENT, self_schema};
use ubuntu_metrics::sinks::{SPOOL_MEASUREMENT, WRITE_MEASUREMENT};

/// The rows of `SELECT * FROM m` as maps from column to value.
fn rows(db: &Influxd, m: &str) -> Vec<BTreeMap<String, Value>> {
    let answer = db.query(&format!("SELECT * FROM \"{m}\""));
    let Some(series) = answer["results"][0]["series"].as_array() else {
        return Vec::new();
    };
    let s = &series[0];
    let columns: Vec<String> = s["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    s["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            columns
                .iter()
                .cloned()
                .zip(r.as_array().unwrap().iter().cloned())
                .collect()
        })
        .collect()
}

fn int(row: &BTreeMap<String, Value>, k: &str) -> i64 {
    row[k]
        .as_i64()
        .unwrap_or_else(|| panic!("{k} not an integer in {row:?}"))
}

/// `run ARGS` with `config`; its exit status.
fn run(config: &Path, args: &[&str]) -> i32 {
    let out = bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    out.status.code().unwrap_or(-1)
}

/// InfluxDB's field types of every self-metric match `self_schema()`.
fn assert_types_declared(db: &Influxd) {
    for m in self_schema() {
        let answer = db.query(&format!("SHOW FIELD KEYS FROM \"{}\"", m.name));
        let Some(values) = answer["results"][0]["series"][0]["values"].as_array() else {
            continue;
        };
        for v in values {
            let (key, ty) = (v[0].as_str().unwrap(), v[1].as_str().unwrap());
            let declared = m
                .field(key)
                .unwrap_or_else(|| panic!("{}: field {key} is not declared", m.name));
            let expected = match declared.kind {
                FieldType::Integer => "integer",
                FieldType::Float => "float",
                FieldType::Boolean => "boolean",
                FieldType::String => "string",
            };
            assert_eq!(ty, expected, "{}.{key}", m.name);
        }
    }
}

#[test]
fn runs_report_requests_per_host_each_write_and_the_spool() {
    let server = server_with_rsync();
    let mut db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    // sponsoring's upstream answers 404.
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["sources"]["sponsoring"] = toml::Value::String(server.url("nowhere.json"));
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();
    let host = server.url("").split('/').nth(2).unwrap().to_owned();

    let before = db.write_requests();
    assert_eq!(run(&config, &["--all"]), 1, "sponsoring fails");
    // One InfluxDB, every collector: the spool's records written together
    // (up to batch_size lines a request), then the self-metrics of the
    // writes and the spool: at most 2 requests.
    let requests = db.write_requests() - before;
    eprintln!("run --all: {requests} write requests to influxd");
    assert!((1..=2).contains(&requests), "{requests} write requests");

    // Per collector and host: the run's requests, and sponsoring's error.
    let http = rows(&db, HTTP_MEASUREMENT);
    let runs = rows(&db, SELF_MEASUREMENT);
    assert!(!http.is_empty(), "no {HTTP_MEASUREMENT} point");
    for r in &runs {
        let name = r["collector"].as_str().unwrap();
        let per_host: i64 = http
            .iter()
            .filter(|h| h["collector"] == r["collector"])
            .map(|h| int(h, "requests"))
            .sum();
        assert_eq!(
            per_host,
            int(r, "requests"),
            "{name}: requests per host add up to the run's"
        );
    }
    for h in &http {
        assert_eq!(h["host"], host.as_str(), "{h:?}");
        let errors = int(h, "errors");
        assert!(errors <= int(h, "requests"), "{h:?}");
        if h["collector"] == "sponsoring" {
            assert_eq!((int(h, "requests"), errors), (1, 1), "{h:?}");
        }
    }
    // Some fixtures answer 404 on purpose (a team that does not exist, a
    // series without a report): those count as errors too.
    // The errors of the collectors these fixtures are for (each of them
    // asks over HTTP); any other one (a new collector: no list of the
    // registry here) has none.
    let known = BTreeMap::from([
        ("autopkgtest", 0),
        ("britney", 2),
        ("cnf", 1),
        ("contributors", 0),
        ("rls_bugs", 2),
        ("sponsoring", 1),
        ("ubuntu_archive", 0),
        ("upload_queues", 0),
        ("versions", 1),
    ]);
    let errors: BTreeMap<&str, i64> = http
        .iter()
        .map(|h| (h["collector"].as_str().unwrap(), int(h, "errors")))
        .collect();
    let want: BTreeMap<&str, i64> = errors
        .keys()
        .map(|c| (*c, known.get(c).copied().unwrap_or(0)))
        .collect();
    assert_eq!(errors, want);
    for c in known.keys() {
        assert!(errors.contains_key(c), "no {HTTP_MEASUREMENT} point of {c}");
    }
    // images asks rsync, not HTTP: no point.
    assert!(http.iter().all(|h| h["collector"] != "images"));

    // The run's writes: the spool's records (each collector's points,
    // then the self-metrics) together, all taken, every point in one.
    let writes = rows(&db, WRITE_MEASUREMENT);
    assert_eq!(writes.len(), 1, "{writes:?}");
    for w in &writes {
        assert_eq!(w["outcome"], "ok");
        assert!(w["latency_seconds"].as_f64().unwrap() > 0.0, "{w:?}");
        assert!(int(w, "bytes") > 50 * int(w, "points"), "{w:?}");
    }
    let collected: i64 = runs.iter().map(|r| int(r, "points")).sum();
    assert_eq!(
        writes.iter().map(|w| int(w, "points")).sum::<i64>(),
        collected + runs.len() as i64 + http.len() as i64,
        "the collectors' points and the self-metrics"
    );
    // The spool after it: empty.
    let spool = rows(&db, SPOOL_MEASUREMENT);
    assert_eq!(spool.len(), 1, "{spool:?}");
    assert_eq!(
        (
            int(&spool[0], "points"),
            int(&spool[0], "dead_letter_batches")
        ),
        (0, 0)
    );
    assert_eq!(spool[0]["oldest_age_seconds"].as_f64(), Some(0.0));

    // InfluxDB away: the run waits in the spool. Its failed writes are in
    // the journal only (a timer's process ends before InfluxDB is back);
    // the next run that empties the spool reports the backlog it found.
    db.stop();
    assert_eq!(run(&config, &["versions"]), 75);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    db.restart();
    assert_eq!(run(&config, &["versions"]), 0);

    let writes = rows(&db, WRITE_MEASUREMENT);
    assert!(writes.iter().all(|w| w["outcome"] == "ok"), "{writes:?}");
    let spool = rows(&db, SPOOL_MEASUREMENT);
    assert_eq!(spool.len(), 2, "{spool:?}");
    let backlog = &spool[1];
    // versions' points and the run's self-metrics, waiting for over 1 s.
    assert_eq!(int(backlog, "records"), 2, "{backlog:?}");
    assert!(int(backlog, "points") > 2, "{backlog:?}");
    assert!(
        backlog["oldest_age_seconds"].as_f64().unwrap() > 1.0,
        "{backlog:?}"
    );
    assert_types_declared(&db);
}

/// `influxdb.batch_size` bounds every write request (the 413 message tells
/// the operator to lower it): versions' 7 points go in requests of 3.
#[test]
fn batch_size_bounds_every_write_request() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["influxdb"]["batch_size"] = toml::Value::Integer(3);
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();

    assert_eq!(run(&config, &["versions"]), 0);
    let versions = db.rows("versions_script_stats").len();
    assert_eq!(versions, 7);
    let sizes: Vec<i64> = rows(&db, WRITE_MEASUREMENT)
        .iter()
        .map(|w| int(w, "points"))
        .collect();
    // versions' record (7 points) and the self-metrics record (its run and
    // requests points) written together: 3 + 3 + 3.
    assert_eq!(sizes, [3, 3, 3], "{sizes:?}");
}
