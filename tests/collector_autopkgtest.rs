mod common;

use common::*;
use fixture_server::Fault;
use std::sync::Arc;

/// A URL on a loopback port where nothing listens.
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/")
}

/// The lines of `autopkgtest/expected.out` for one instance.
fn expected_for(instance: &str) -> Vec<String> {
    let tag = format!("instance={instance},");
    expected("autopkgtest/expected.out")
        .into_iter()
        .filter(|l| l.contains(&tag))
        .collect()
}

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("autopkgtest", &context(&server)).await.unwrap();
    assert_points(&points, "autopkgtest/expected.out");
}

#[tokio::test]
async fn staging_returning_404_still_reports_production() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set(
        "autopkgtest_staging",
        server.url("autopkgtest/nonexistent/"),
    );
    ctx.sources = Arc::new(sources);
    let points = collect("autopkgtest", &ctx).await.unwrap();
    assert_eq!(lines(&points), expected_for("production"));
}

#[tokio::test]
async fn production_on_a_closed_port_still_reports_staging() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set("autopkgtest_production", closed_port_url());
    ctx.sources = Arc::new(sources);
    let points = collect("autopkgtest", &ctx).await.unwrap();
    assert_eq!(lines(&points), expected_for("staging"));
}

#[tokio::test]
async fn both_instances_unreachable_is_an_error_naming_both() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    let closed = closed_port_url();
    sources.set("autopkgtest_production", closed.clone());
    sources.set(
        "autopkgtest_staging",
        server.url("autopkgtest/nonexistent/"),
    );
    ctx.sources = Arc::new(sources);
    let err = collect("autopkgtest", &ctx).await.unwrap_err().to_string();
    // The closed host once, by name (its two documents fail alike).
    let host = closed.trim_start_matches("http://").trim_end_matches('/');
    assert_eq!(
        err.matches(&format!(
            "instance production: cannot connect to {host} (connection refused)"
        ))
        .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("autopkgtest/nonexistent/static/running.json") && err.contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn an_html_error_page_instead_of_json_skips_that_instance() {
    let server = server();
    server.set_fault("/autopkgtest/staging/", Fault::Garbage);
    let points = collect("autopkgtest", &context(&server)).await.unwrap();
    assert_eq!(lines(&points), expected_for("production"));
}

#[tokio::test]
async fn one_missing_document_keeps_the_other_of_the_same_instance() {
    let server = server();
    server.set_fault(
        "/autopkgtest/staging/static/running.json",
        Fault::Status(503),
    );
    let points = collect("autopkgtest", &context(&server)).await.unwrap();
    let want: Vec<String> = expected("autopkgtest/expected.out")
        .into_iter()
        .filter(|l| !(l.starts_with("autopkgtest_running,") && l.contains("instance=staging,")))
        .collect();
    assert_eq!(lines(&points), want);
}

#[tokio::test]
async fn malformed_entries_are_skipped_and_the_rest_kept() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set(
        "autopkgtest_production",
        server.url("autopkgtest/malformed/"),
    );
    sources.set(
        "autopkgtest_staging",
        server.url("autopkgtest/nonexistent/"),
    );
    ctx.sources = Arc::new(sources);
    let points = collect("autopkgtest", &ctx).await.unwrap();
    assert_points(&points, "autopkgtest/malformed/expected.out");
}

/// `ubuntu-metrics run autopkgtest --dry-run` with the instances at
/// `production` and `staging`: (exit code, stderr).
fn dry_run(production: &str, staging: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[sources]\nautopkgtest_production = \"{production}\"\nautopkgtest_staging = \"{staging}\"\n"
        ),
    )
    .expect("write config");
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["run", "autopkgtest", "--dry-run"])
        .output()
        .expect("ubuntu-metrics runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The log in `stderr`: without the CLI's closing line(s) (`ubuntu-metrics:
/// ...`: a summary of the failed collectors; until the CLI says only that,
/// a copy of each collector's error).
fn log_of(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("ubuntu-metrics: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn every_part_failing_logs_each_error_exactly_once() {
    let closed = closed_port_url();
    let staging = format!("{closed}staging/");
    let (code, stderr) = dry_run(&closed, &staging);
    assert_eq!(code, Some(1), "{stderr}");
    let log = log_of(&stderr);
    // Four documents on one host nobody listens on: the host, said once,
    // in the collector's error (issue 24 item 1), not in warnings besides.
    let host = closed.trim_start_matches("http://").trim_end_matches('/');
    assert!(!log.contains("WARN"), "{stderr}");
    assert_eq!(log.lines().count(), 1, "{stderr}");
    assert!(
        log.trim_end().ends_with(&format!(
            "collector autopkgtest failed: cannot connect to {host} (connection refused)"
        )),
        "{stderr}"
    );
}

#[test]
fn a_failed_part_beside_working_ones_is_one_warning() {
    let server = server();
    let closed = closed_port_url();
    let staging = server.url("autopkgtest/staging/");
    let (code, stderr) = dry_run(&closed, &staging);
    assert_eq!(code, Some(0), "{stderr}");
    // Production's two documents on a host nobody listens on: one warning
    // naming the host and the part.
    let host = closed.trim_start_matches("http://").trim_end_matches('/');
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(&format!(
            "autopkgtest: cannot connect to {host} (connection refused) (instance production); the other parts are still reported"
        )),
        "{stderr}"
    );
}
