mod common;

use common::*;

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("sponsoring", &context(&server)).await.unwrap();
    assert_points(&points, "sponsoring/expected.out");
}

#[tokio::test]
async fn empty_queue_reports_zeros() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set("sponsoring", server.url("sponsoring/empty/general.json"));
    ctx.sources = std::sync::Arc::new(sources);
    let points = collect("sponsoring", &ctx).await.unwrap();
    assert_points(&points, "sponsoring/empty/expected.out");
}

#[tokio::test]
async fn unreachable_source_is_an_error_naming_the_url() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set("sponsoring", server.url("sponsoring/missing.json"));
    ctx.sources = std::sync::Arc::new(sources);
    let err = collect("sponsoring", &ctx).await.unwrap_err();
    assert!(
        err.to_string().contains("sponsoring/missing.json") && err.to_string().contains("404"),
        "{err}"
    );
}
