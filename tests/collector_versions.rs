mod common;

use common::*;
use fixture_server::Fault;
use std::sync::Arc;

fn with_base(server: &fixture_server::FixtureServer, path: &str) -> ubuntu_metrics::Context {
    let mut ctx = context(server);
    let mut sources = (*ctx.sources).clone();
    sources.set("versions", server.url(path));
    ctx.sources = Arc::new(sources);
    ctx
}

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("versions", &context(&server)).await.unwrap();
    assert_points(&points, "versions/expected.out");
}

#[tokio::test]
async fn a_server_error_on_one_report_skips_only_that_report() {
    let server = server();
    server.set_fault("/versions/kde, qt=6", Fault::Status(500));
    let points = collect("versions", &context(&server)).await.unwrap();
    let want: Vec<String> = expected("versions/expected.out")
        .into_iter()
        .filter(|l| !l.contains("report=kde"))
        .collect();
    assert_eq!(lines(&points), want);
}

#[tokio::test]
async fn a_truncated_report_is_skipped_and_the_others_kept() {
    let server = server();
    server.set_fault("/versions/desktop-main", Fault::Truncate);
    let points = collect("versions", &context(&server)).await.unwrap();
    let want: Vec<String> = expected("versions/expected.out")
        .into_iter()
        .filter(|l| !l.contains("report=desktop-main"))
        .collect();
    assert_eq!(lines(&points), want);
}

#[tokio::test]
async fn missing_reports_list_is_an_error_naming_the_url() {
    let server = server();
    let err = collect("versions", &with_base(&server, "versions/nowhere/"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("versions/nowhere/reports") && err.contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn every_report_missing_is_an_error() {
    let server = server();
    let err = collect("versions", &with_base(&server, "versions/allmissing/"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("allmissing/gone-a") && err.contains("allmissing/gone-b"),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_reports_list_gives_no_points() {
    let server = server();
    server.set_fault("/versions/reports", Fault::Empty);
    let points = collect("versions", &context(&server)).await.unwrap();
    assert!(points.is_empty());
}
