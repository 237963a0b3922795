//! The first generation's Python collectors, unchanged, through
//! `contrib/first-generation/run-collector.py` (issues 12 and 23): the
//! checkout in `tests/fixtures/first-generation/` has the old repository's
//! real layout (`metrics/lib/basemetric.py` importing influxdb-python at
//! the top, with `Metric` and `run_metric_main`; `metrics/lib/errors.py`
//! with `CollectorError`; each collector a package whose `__init__` imports
//! the class from a submodule and whose `__main__` calls
//! `run_metric_main`). Each collector runs as an exec collector into a real
//! influxd, and its points are read back there; `new NAME
//! --first-generation CHECKOUT` prints a block that runs as it is.

mod common;

use common::influxd::{self, Influxd};
use common::*;
use std::path::{Path, PathBuf};

fn checkout() -> PathBuf {
    fixtures().join("first-generation")
}

fn adapter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/first-generation/run-collector.py")
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A configuration writing to `db`, with `blocks` appended.
fn config(dir: &Path, db: &Influxd, blocks: &str) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[influxdb]\nurl = \"{url}\"\ndatabase = \"{db}\"\n\n[spool]\ndir = \"{spool}\"\n\n{blocks}",
            url = db.url(),
            db = influxd::DATABASE,
            spool = dir.join("spool").display(),
        ),
    )
    .unwrap();
    cfg
}

/// The `[collectors.NAME]` block running the old collector `old` through
/// the adapter, with its measurements.
fn block(name: &str, old: &str, measurements: &str) -> String {
    format!(
        "[collectors.{name}]\ntype = \"exec\"\ncommand = [\"{python}\", \"{adapter}\", \"--checkout\", \"{checkout}\", \"{old}\"]\n\n{measurements}\n",
        python = python(),
        adapter = adapter().display(),
        checkout = checkout().display(),
    )
}

/// Rows of `measurement` as sorted JSON texts.
fn rows(db: &Influxd, measurement: &str) -> Vec<String> {
    let mut rows: Vec<String> = db
        .rows(measurement)
        .iter()
        .map(|r| serde_json::Value::Object(r.clone()).to_string())
        .collect();
    rows.sort();
    rows
}

#[test]
fn the_first_generation_collectors_run_through_the_adapter_into_influxd() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let blocks = [
        block(
            "sru_queue",
            "sru-queue",
            "[collectors.sru_queue.measurements.sru_queue]\ntags = [\"series\", \"pocket\", \"priority\"]\nfields = { count = \"int\", age_hours = \"float\" }\n",
        ),
        // cnf and upload_queues are built-in collectors' names too.
        block(
            "old_cnf",
            "cnf",
            "[collectors.old_cnf.measurements.cnf_commands]\ntags = [\"series\", \"arch\"]\nfields = { commands = \"int\", complete = \"bool\", source = \"string\" }\n",
        ),
        block(
            "old_upload_queues",
            "upload_queues",
            "[collectors.old_upload_queues.measurements.upload_queue]\ntags = [\"queue\"]\nfields = { count = \"int\", oldest_days = \"float\" }\n",
        ),
        block(
            "broken",
            "broken",
            "[collectors.broken.measurements.broken]\nfields = { count = \"int\" }\n",
        ),
    ]
    .concat();
    let cfg = config(dir.path(), &db, &blocks);

    // The class named by __main__, in NAME/NAME_collector.py; its
    // constructor reads a file; it print()s; one time is naive.
    let out = run_now(&cfg, &["sru-queue"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // What the old collector printed and logged is in the log, not read
    // as points.
    assert!(
        stderr.contains("sru_queue: collecting (this went to stdout"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sru_queue: INFO: read 2 series from queue.json"),
        "{stderr}"
    );
    // The naive datetime 11:45:00.25 is stored as UTC.
    assert_eq!(
        rows(&db, "sru_queue"),
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

    // The class in a differently named submodule (cnf/command_not_found.py);
    // no time: the collection time.
    let out = run_now(&cfg, &["old_cnf"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        rows(&db, "cnf_commands"),
        [
            r#"{"arch":"amd64","commands":61234,"complete":true,"series":"noble","source":"Contents-amd64","time":1795521600000000000}"#,
            r#"{"arch":"arm64","commands":60987,"complete":true,"series":"noble","source":"Contents-arm64","time":1795521600000000000}"#,
        ]
    );

    // Two Metric subclasses in the submodule: the one __main__ names.
    let out = run_now(&cfg, &["old_upload_queues"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("old_upload_queues: reading the upload queues"),
        "{stderr}"
    );
    assert_eq!(db.rows("upload_queue").len(), 2);

    // A CollectorError fails the run with its message; nothing is written.
    let out = run_now(&cfg, &["broken"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CollectorError: the queue page answered 503 Service Unavailable"),
        "{stderr}"
    );
    assert!(!stderr.contains("Traceback"), "{stderr}");
    assert!(db.rows("broken").is_empty());

    // Nothing was written into the checkout.
    let pycache = std::process::Command::new("find")
        .arg(checkout())
        .args(["-name", "__pycache__"])
        .output()
        .unwrap();
    assert_eq!(text(&pycache.stdout), "");
}

#[test]
fn new_first_generation_prints_a_block_that_runs_as_it_is() {
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let new = |name: &str| {
        bin()
            .args(["new", name, "--first-generation"])
            .arg(checkout())
            .arg("--adapter")
            .arg(adapter())
            .output()
            .unwrap()
    };
    let mut blocks = String::new();
    for name in ["sru-queue", "cnf"] {
        let out = new(name);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        blocks.push_str(&text(&out.stdout));
        blocks.push('\n');
    }
    // Declared from the points, field types as seen; cnf is a built-in's
    // name, so its block is old_cnf.
    assert!(
        blocks.contains(
            "[collectors.sru_queue.measurements.sru_queue]\ntags = [\"pocket\", \"priority\", \"series\"]\nfields = { age_hours = \"float\", count = \"int\" }\n"
        ),
        "{blocks}"
    );
    assert!(
        blocks.contains(
            "[collectors.old_cnf.measurements.cnf_commands]\ntags = [\"arch\", \"series\"]\nfields = { commands = \"int\", complete = \"bool\", source = \"string\" }\n"
        ),
        "{blocks}"
    );
    // The blocks as printed, appended to a configuration: accepted
    // unchanged, and the dry run prints the points.
    let cfg = config(dir.path(), &db, &blocks);
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["run", "sru_queue", "--dry-run", "--now", NOW])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "sru_queue,pocket=proposed,priority=1,series=noble age_hours=30.5,count=12i 1795519800000000000",
            "sru_queue,pocket=proposed,priority=2,series=plucky age_hours=0,count=0i 1795520700250000000",
        ]
    );
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["run", "old_cnf", "--dry-run", "--now", NOW])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    // And for real: the points are in influxd.
    let out = run_now(&cfg, &["old_cnf"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(db.rows("cnf_commands").len(), 2);

    // A failing collector, a missing one, a wrong checkout: clear errors.
    let out = new("broken");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("CollectorError: the queue page answered 503"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");
    let out = new("nope");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("metrics/collectors: no nope/ nor nope.py"),
        "{}",
        text(&out.stderr)
    );
    let out = bin()
        .args(["new", "cnf", "--first-generation", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // Without --adapter: the run uses the adapter built into the program,
    // the block names the Debian package's, and a note says it is missing
    // here.
    let out = bin()
        .args(["new", "sru_queue", "--first-generation"])
        .arg(checkout())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("\"/usr/share/ubuntu-metrics/first-generation/run-collector.py\""),
        "{}",
        text(&out.stdout)
    );
    if !Path::new("/usr/share/ubuntu-metrics/first-generation/run-collector.py").exists() {
        assert!(
            text(&out.stderr).contains("not on this machine"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// The adapter alone on `tree`: its exit status, the points it printed
/// (a JSON array) and its standard error.
fn adapt(tree: &Path, name: &str) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = std::process::Command::new(python())
        .arg(adapter())
        .arg("--checkout")
        .arg(tree)
        .arg(name)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let points = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out.status.code(), points, text(&out.stderr))
}

#[test]
fn the_adapter_finds_the_class_however_the_package_exposes_it() {
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(checkout())
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let tree = dir.path().join("first-generation");
    let collectors = tree.join("metrics/collectors");
    // Named by __main__ (the real layout).
    let (code, points, stderr) = adapt(&tree, "sru_queue");
    assert_eq!((code, points.len()), (Some(0), 2), "{stderr}");
    // No __main__: the class __init__ imports.
    std::fs::remove_file(collectors.join("sru_queue/__main__.py")).unwrap();
    let (code, points, stderr) = adapt(&tree, "sru_queue");
    assert_eq!((code, points.len()), (Some(0), 2), "{stderr}");
    // Neither: the one its submodules define (of two Metric subclasses,
    // the one the other does not derive from).
    std::fs::remove_file(collectors.join("upload_queues/__main__.py")).unwrap();
    std::fs::write(collectors.join("upload_queues/__init__.py"), "").unwrap();
    let (code, points, stderr) = adapt(&tree, "upload-queues");
    assert_eq!((code, points.len()), (Some(0), 2), "{stderr}");
    // A __main__ naming a class that does not exist: said, with its file.
    std::fs::write(
        collectors.join("cnf/__main__.py"),
        "from metrics.lib.basemetric import run_metric_main\n\nrun_metric_main(\"metrics.collectors.cnf\", \"CnfMetricz\")\n",
    )
    .unwrap();
    let (code, _, stderr) = adapt(&tree, "cnf");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cnf/__main__.py names metrics.collectors.cnf.CnfMetricz"),
        "{stderr}"
    );
    // An old layout: a module with the class in it.
    std::fs::write(
        collectors.join("flat.py"),
        "from metrics.lib.basemetric import Metric\n\n\nclass FlatMetrics(Metric):\n    def collect(self):\n        return [{\"measurement\": \"flat\", \"fields\": {\"n\": 1}}]\n",
    )
    .unwrap();
    let (code, points, stderr) = adapt(&tree, "flat");
    assert_eq!((code, points.len()), (Some(0), 1), "{stderr}");
}
