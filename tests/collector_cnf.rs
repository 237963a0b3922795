mod common;

use common::*;
use fixture_server::Fault;
use std::sync::Arc;

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("cnf", &context(&server)).await.unwrap();
    assert_points(&points, "cnf/expected.out");
    let requests = server.requests();
    // ubuntu + its series; one listing per active series (5).
    assert_eq!(requests.get("launchpad"), Some(&2));
    assert_eq!(requests.get("cnf"), Some(&5));
}

#[tokio::test]
async fn no_listing_at_all_is_an_error() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set("archive", server.url("cnf/nowhere/"));
    ctx.sources = Arc::new(sources);
    let err = collect("cnf", &ctx).await.unwrap_err();
    assert!(
        err.to_string().contains("cnf/nowhere/dists/") && err.to_string().contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_listing_is_skipped() {
    let server = server();
    server.set_fault("/cnf/ubuntu/dists/noble/", Fault::Status(500));
    let points = collect("cnf", &context(&server)).await.unwrap();
    let got = lines(&points);
    let want: Vec<String> = expected("cnf/expected.out")
        .into_iter()
        .filter(|l| !l.contains("release=noble"))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_garbage_listing_is_skipped() {
    let server = server();
    server.set_fault("/cnf/ubuntu/dists/tumbling/", Fault::Garbage);
    let points = collect("cnf", &context(&server)).await.unwrap();
    let got = lines(&points);
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().all(|l| !l.contains("release=tumbling")),
        "{got:?}"
    );
}

#[tokio::test]
async fn launchpad_unavailable_is_an_error() {
    let server = server();
    server.set_fault("/launchpad/", Fault::Status(404));
    let err = collect("cnf", &context(&server)).await.unwrap_err();
    assert!(err.to_string().contains("launchpad/devel/ubuntu"), "{err}");
    assert_eq!(server.requests().get("cnf"), None);
}
