//! Conditional requests (issue 17, item 1): a document whose last answer
//! had an `ETag` or `Last-Modified` is asked for with `If-None-Match` /
//! `If-Modified-Since`; a `304` reuses the body kept in the state
//! directory, and gives exactly the points of a full answer. The fixture
//! server answers as Apache and lazr.restful do.

mod common;

use common::*;
use std::path::Path;

/// `run --all --dry-run` at the fixtures' time: its points.
fn dry_run(config: &Path, state: &Path) -> String {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(["run", "--all", "--dry-run", "--now", NOW])
        .env("UBUNTU_METRICS_STATE_DIR", state)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn unchanged_documents_come_back_as_304_with_the_same_points() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_copy(dir.path());
    let server = fixture_server::FixtureServer::start(&root)
        .unwrap()
        .with_rsync()
        .unwrap();
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    let state = dir.path().join("state");

    // A first round: every document whole, kept with its validators.
    let first = dry_run(&config, &state);
    assert!(first.lines().count() > 150, "{first}");
    assert_eq!(server.not_modified(), 0);
    let sent_first = server.bytes_sent();
    let kept = std::fs::read_dir(state.join("http-cache")).unwrap().count();
    assert!(kept > 40, "{kept} files kept");

    // A second round, nothing changed: 304s, the same points, a fraction
    // of the bytes.
    let second = dry_run(&config, &state);
    assert_eq!(
        second, first,
        "the points of a 304 are those of a full answer"
    );
    assert!(
        server.not_modified() > 30,
        "{} answers 304",
        server.not_modified()
    );
    let sent_second = server.bytes_sent() - sent_first;
    assert!(
        sent_second * 10 < sent_first,
        "second round {sent_second} bytes, first {sent_first}"
    );

    // A document that changes is fetched whole again: new points.
    let before = server.not_modified();
    let sponsoring = root.join("sponsoring");
    let file = std::fs::read_dir(&sponsoring)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let entries: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = entries.as_array().map_or(0, Vec::len);
    assert!(n > 1, "{}", file.display());
    let fewer = serde_json::Value::Array(entries.as_array().unwrap()[1..].to_vec());
    std::fs::write(&file, fewer.to_string()).unwrap();
    let third = dry_run(&config, &state);
    assert_ne!(third, first);
    let count = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("sponsoring_queue_stats,report=sponsoring "))
            .map(str::to_owned)
    };
    assert!(
        count(&third)
            .unwrap()
            .contains(&format!("count={}i", n - 1)),
        "{:?}",
        count(&third)
    );
    // The other documents were still not modified.
    assert!(server.not_modified() - before > 30);
}
