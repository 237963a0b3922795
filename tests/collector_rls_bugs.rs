mod common;

use common::*;
use fixture_server::Fault;
use std::sync::Arc;

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("rls_bugs", &context(&server)).await.unwrap();
    assert_points(&points, "rls_bugs/expected.out");
}

#[tokio::test]
async fn reads_only_the_supported_series_files() {
    let server = server();
    collect("rls_bugs", &context(&server)).await.unwrap();
    // 5 supported series x 2 tags, nothing else (no questing, no single letters).
    assert_eq!(server.requests().get("rls_bugs"), Some(&10));
}

#[tokio::test]
async fn a_truncated_file_skips_only_that_series_and_tag() {
    let server = server();
    server.set_fault("/rls_bugs/rls-tt-incoming.json", Fault::Truncate);
    let points = collect("rls_bugs", &context(&server)).await.unwrap();
    let want: Vec<String> = expected("rls_bugs/expected.out")
        .into_iter()
        .filter(|l| !l.contains("release=tumbling,tag=incoming,"))
        .collect();
    assert_eq!(lines(&points), want);
}

#[tokio::test]
async fn every_file_missing_is_an_error_naming_the_urls() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set("rls_mgr", server.url("rls_bugs/nowhere/"));
    ctx.sources = Arc::new(sources);
    let err = collect("rls_bugs", &ctx).await.unwrap_err().to_string();
    assert!(
        err.contains("rls_bugs/nowhere/rls-tt-tracking.json") && err.contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_distro_info_is_an_error() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.distro_info = fixtures().join("distro-info/missing.csv");
    ctx.sources = Arc::new(sources);
    let err = collect("rls_bugs", &ctx).await.unwrap_err().to_string();
    assert!(err.contains("missing.csv"), "{err}");
}
