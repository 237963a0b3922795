//! The first generation's Python collectors, unchanged, through
//! `contrib/first-generation/run-collector.py` (issue 12): the test writes a
//! small package in the first generation's layout (`metrics/lib/basemetric.py`
//! with its `Metric` base class, `metrics/collectors/<name>.py` returning
//! `write_points` dictionaries with `datetime` times), runs it as an exec
//! collector into a real influxd, and reads back exactly its points.

mod common;

use common::influxd::{self, Influxd};
use common::*;
use std::path::Path;

const BASEMETRIC: &str = r#"
"""The first generation's base class (its contract: constructor, collect, run)."""
import logging

from influxdb import InfluxDBClient


class Metric:
    def __init__(self, dry_run=False, verbose=False):
        self.dry_run = dry_run
        self.verbose = verbose
        self.log = logging.getLogger(type(self).__name__)

    def collect(self):
        raise NotImplementedError

    def influxdb_insert(self, data):
        client = InfluxDBClient("localhost", 8086, "u", "p", "metrics")
        client.write_points(data)

    def run(self):
        data = self.collect()
        if self.dry_run:
            print(data)
        else:
            self.influxdb_insert(data)
"#;

const COLLECTOR: &str = r#"
"""A first-generation collector: queue sizes per series."""
import datetime

from metrics.lib.basemetric import Metric


class SruQueueMetrics(Metric):
    def collect(self):
        print("collecting (this went to stdout in the first generation)")
        now = datetime.datetime(2026, 11, 24, 11, 30, tzinfo=datetime.timezone.utc)
        naive = datetime.datetime(2026, 11, 24, 11, 45, 0, 250000)
        return [
            {
                "measurement": "sru_queue",
                "tags": {"series": "noble", "pocket": "proposed", "priority": 1},
                "fields": {"count": 12, "age_hours": 30.5},
                "time": now,
            },
            {
                "measurement": "sru_queue",
                "tags": {"series": "plucky", "pocket": "proposed", "priority": 2},
                "fields": {"count": 0, "age_hours": 0.0},
                "time": naive,
            },
        ]


if __name__ == "__main__":
    SruQueueMetrics(dry_run=True).run()
"#;

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn a_first_generation_collector_runs_unchanged_through_the_adapter() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("old-metrics");
    write(&checkout.join("metrics/__init__.py"), "");
    write(&checkout.join("metrics/lib/__init__.py"), "");
    write(&checkout.join("metrics/lib/basemetric.py"), BASEMETRIC);
    write(&checkout.join("metrics/collectors/__init__.py"), "");
    write(&checkout.join("metrics/collectors/sru_queue.py"), COLLECTOR);
    let adapter =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/first-generation/run-collector.py");
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[influxdb]
url = "{url}"
database = "{db}"

[spool]
dir = "{spool}"

[collectors.sru_queue]
type = "exec"
command = ["{python}", "{adapter}", "--checkout", "{checkout}", "sru-queue"]

[collectors.sru_queue.measurements.sru_queue]
tags = ["series", "pocket", "priority"]
fields = {{ count = "int", age_hours = "float" }}
"#,
            url = db.url(),
            db = influxd::DATABASE,
            spool = dir.path().join("spool").display(),
            adapter = adapter.display(),
            checkout = checkout.display(),
        ),
    )
    .unwrap();
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["run", "sru-queue", "--now", NOW])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // What the old collector printed is logged, not read as points.
    assert!(
        stderr.contains("sru_queue: collecting (this went to stdout"),
        "{stderr}"
    );

    let mut rows: Vec<String> = db
        .rows("sru_queue")
        .iter()
        .map(|r| serde_json::Value::Object(r.clone()).to_string())
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            r#"{"age_hours":0,"count":0,"pocket":"proposed","priority":"2","series":"plucky","time":1795520700250000000}"#,
            r#"{"age_hours":30.5,"count":12,"pocket":"proposed","priority":"1","series":"noble","time":1795519800000000000}"#,
        ]
    );
    let mut types = db.field_types("sru_queue");
    types.sort();
    assert_eq!(
        types,
        [
            ("age_hours".to_owned(), "float".to_owned()),
            ("count".to_owned(), "integer".to_owned())
        ]
    );
}
