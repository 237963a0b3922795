//! Declarative HTTP collectors (`[collectors.NAME] type = "http"`, issue
//! 12): the shipped example reproduces the built-in autopkgtest collector's
//! `autopkgtest_queue_size` points from the same fixtures; a bad jq filter
//! is refused when the configuration loads; URLs with credentials are
//! redacted where they are shown; a filter's error names the collector.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn example() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/declared/autopkgtest_queues.toml");
    std::fs::read_to_string(p).unwrap()
}

/// A configuration with every built-in source at the fixture server, the
/// example collector, and its two URLs at the fixture server's autopkgtest
/// documents (through `[sources]`, as any source is overridden).
fn config(dir: &Path, server: &fixture_server::FixtureServer, extra: &str) -> PathBuf {
    let mut sources = toml::Table::new();
    for (k, v) in server.sources().iter() {
        sources.insert(k.to_owned(), v.into());
    }
    sources.insert(
        "autopkgtest_queues_production".into(),
        server.url("autopkgtest/production/queue_size.json").into(),
    );
    sources.insert(
        "autopkgtest_queues_staging".into(),
        server.url("autopkgtest/staging/queue_size.json").into(),
    );
    let mut top = toml::Table::new();
    top.insert("sources".into(), sources.into());
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!("{}\n{}\n{extra}", toml::to_string(&top).unwrap(), example()),
    )
    .unwrap();
    p
}

fn dry_run(config: &Path, name: &str) -> std::process::Output {
    bin()
        .arg("--config")
        .arg(config)
        .args(["run", name, "--dry-run", "--now", NOW])
        .output()
        .unwrap()
}

fn sorted_lines(out: &std::process::Output, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn the_declared_autopkgtest_collector_writes_what_the_built_in_one_writes() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server, "");
    let builtin = dry_run(&cfg, "autopkgtest");
    assert_eq!(
        builtin.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&builtin.stderr)
    );
    let declared = dry_run(&cfg, "autopkgtest_queues");
    assert_eq!(
        declared.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&declared.stderr)
    );
    let want = sorted_lines(&builtin, "autopkgtest_queue_size,");
    let got = sorted_lines(&declared, "");
    assert!(want.len() > 10, "{want:?}");
    assert_eq!(got, want);
    // And both are what the fixture's expected.out says.
    let expected: Vec<String> = expected("autopkgtest/expected.out")
        .into_iter()
        .filter(|l| l.starts_with("autopkgtest_queue_size,"))
        .collect();
    assert_eq!(got, expected);
    // Each of the two runs read the document once.
    let requests = server.path_requests();
    assert_eq!(
        requests.get("autopkgtest/production/queue_size.json"),
        Some(&2),
        "{requests:?}"
    );
}

#[test]
fn a_bad_jq_filter_is_a_configuration_error_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    for (filter, want) in [
        (
            ".[] | {measurement: \"m\", fields: {x: .}",
            "jq syntax error",
        ),
        (".[] | nosuchfunction", "nosuchfunction"),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "[collectors.q]\ntype = \"http\"\nurl = \"https://example.invalid/q.json\"\nfilter = '{filter}'\n[collectors.q.measurements.m]\nfields = {{ x = \"int\" }}\n"
            ),
        )
        .unwrap();
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .arg("list")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{}: collectors.q.filter: ", cfg.display()))
                && stderr.contains(want),
            "{filter}: {stderr}"
        );
    }
}

#[test]
fn formats_credentials_and_filter_errors() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    // A document read as text; the URL carries
    // credentials, which are never shown.
    let csv_url = server
        .url("autopkgtest/production/queue_size.json")
        .replacen("http://", "http://reader:s3cr3t-pw@", 1);
    let extra = format!(
        r#"
[collectors.doc_size]
type = "http"
url = "{csv_url}"
format = "text"
filter = '{{measurement: "doc", tags: {{source: $source}}, fields: {{bytes: length, url: $url}}}}'

[collectors.doc_size.measurements.doc]
tags = ["source"]
fields = {{ bytes = "int", url = "string" }}

[collectors.broken]
type = "http"
url = "{}"
filter = '.ubuntu.tumbling.amd64 + "x"'

[collectors.broken.measurements.doc]
fields = {{ bytes = "int" }}
"#,
        server.url("autopkgtest/production/queue_size.json")
    );
    let cfg = config(dir.path(), &server, &extra);
    let out = dry_run(&cfg, "doc_size");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("doc,source=doc_size bytes="), "{stdout}");
    assert!(
        !stdout.contains("s3cr3t-pw") && stdout.contains("reader:<redacted>@"),
        "{stdout}"
    );
    let shown = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["config", "show"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        !shown.contains("s3cr3t-pw") && shown.contains("doc_size"),
        "{shown}"
    );

    let out = dry_run(&cfg, "broken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken: the filter on http://"), "{stderr}");
    assert!(stderr.contains("jq: "), "{stderr}");
}
