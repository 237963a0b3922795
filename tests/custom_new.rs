//! `ubuntu-metrics new NAME --exec|--http` (issue 12): from an idea to a
//! dry run in one command. The printed block pasted into a configuration
//! loads as it is; the script skeleton runs and its point fits the block's
//! schema.

mod common;

use common::*;

#[test]
fn new_exec_writes_a_skeleton_whose_block_runs_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("queue_watch.py");
    let out = bin()
        .args(["new", "queue-watch", "--exec", "--script"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let block = text(&out.stdout);
    assert!(block.contains("[collectors.queue_watch]"), "{block}");
    let skeleton = std::fs::read_to_string(&script).unwrap();
    assert!(skeleton.starts_with("#!/usr/bin/env python3"), "{skeleton}");
    // The block as printed, with the machine's Python.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        block.replace("[\"python3\"", &format!("[\"{python}\"")),
    )
    .unwrap();
    let run = bin()
        .arg("--config")
        .arg(&config)
        .args(["run", "queue_watch", "--dry-run", "--now", NOW])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(
        text(&run.stdout),
        "queue_watch,series=noble count=1i,ratio=0.5 1795521600000000000\n"
    );
    assert!(text(&run.stderr).contains("queue_watch: collecting queue_watch"));
    // Never overwritten.
    let again = bin()
        .args(["new", "queue_watch", "--exec", "--script"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));

    // Without --script: the block, then the skeleton.
    let out = bin()
        .args(["new", "queue_watch", "--exec"])
        .output()
        .unwrap();
    let both = text(&out.stdout);
    assert!(
        both.contains("[collectors.queue_watch]") && both.contains("def collect():"),
        "{both}"
    );
}

#[test]
fn new_http_prints_a_block_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["new", "seeds", "--http"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &out.stdout).unwrap();
    let list = bin()
        .arg("--config")
        .arg(&config)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    assert!(text(&list.stdout).contains("seeds"));
    // Bad names and built-in names are refused.
    for bad in ["Seeds", "sponsoring", "9lives"] {
        let out = bin().args(["new", bad, "--http"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
    let out = bin().args(["new", "seeds"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--exec or --http is required");
}

/// Issue 24, item 9: `list` shows a declared collector's `description` (as
/// the README says) and a built-in's; `new` reports a bad name as it was
/// given, and without a kind names all three.
#[test]
fn list_shows_descriptions_and_new_says_what_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["new", "seeds", "--http"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let block = text(&out.stdout).replace(
        "description = \"what seeds measures\"",
        "description = \"seeds of the devel series\"",
    );
    assert!(block.contains("seeds of the devel series"), "{block}");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, block).unwrap();
    let list = bin()
        .arg("--config")
        .arg(&config)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    // Under its collector's line.
    let lines: Vec<&str> = listed.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("seeds "))
        .unwrap_or_else(|| panic!("seeds not listed:\n{listed}"));
    assert_eq!(
        lines[at + 1].trim(),
        "seeds of the devel series",
        "{listed}"
    );
    for c in ubuntu_metrics::collectors::registry() {
        assert!(listed.contains(c.description()), "{}:\n{listed}", c.name());
    }

    let out = bin().args(["new", "Bad-Name", "--http"]).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"Bad-Name\"") && !stderr.contains("Bad_Name"),
        "{stderr}"
    );

    let out = bin().args(["new", "x"]).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        ["--exec", "--http", "--first-generation"]
            .iter()
            .all(|k| stderr.contains(k)),
        "{stderr}"
    );
}
