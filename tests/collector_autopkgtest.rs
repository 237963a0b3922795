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
    sources.autopkgtest_staging = server.url("autopkgtest/nonexistent/");
    ctx.sources = Arc::new(sources);
    let points = collect("autopkgtest", &ctx).await.unwrap();
    assert_eq!(lines(&points), expected_for("production"));
}

#[tokio::test]
async fn production_on_a_closed_port_still_reports_staging() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.autopkgtest_production = closed_port_url();
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
    sources.autopkgtest_production = closed.clone();
    sources.autopkgtest_staging = server.url("autopkgtest/nonexistent/");
    ctx.sources = Arc::new(sources);
    let err = collect("autopkgtest", &ctx).await.unwrap_err().to_string();
    assert!(err.contains(&format!("{closed}queue_size.json")), "{err}");
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
    sources.autopkgtest_production = server.url("autopkgtest/malformed/");
    sources.autopkgtest_staging = server.url("autopkgtest/nonexistent/");
    ctx.sources = Arc::new(sources);
    let points = collect("autopkgtest", &ctx).await.unwrap();
    assert_points(&points, "autopkgtest/malformed/expected.out");
}
