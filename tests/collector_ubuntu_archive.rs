mod common;

use common::*;
use fixture_server::Fault;
use std::sync::Arc;

const EXPECTED: &str = "ubuntu_archive/expected.out";

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("ubuntu_archive", &context(&server)).await.unwrap();
    assert_points(&points, EXPECTED);
}

/// The expected lines without those starting with any of `prefixes`.
fn expected_without(prefixes: &[&str]) -> Vec<String> {
    expected(EXPECTED)
        .into_iter()
        .filter(|l| !prefixes.iter().any(|p| l.starts_with(p)))
        .collect()
}

async fn collect_with_fault(path: &str, fault: Fault) -> Vec<String> {
    let server = server();
    server.set_fault(path, fault);
    let points = collect("ubuntu_archive", &context(&server)).await.unwrap();
    lines(&points)
}

#[tokio::test]
async fn a_missing_nbs_csv_loses_only_its_points() {
    let got = collect_with_fault("/ubuntu_archive/nbs.csv", Fault::Status(500)).await;
    assert_eq!(got, expected_without(&["nbs_stats,"]));
}

#[tokio::test]
async fn one_pocket_failing_keeps_the_other() {
    let got = collect_with_fault(
        "/ubuntu_archive/component-mismatches-proposed.csv",
        Fault::Status(404),
    )
    .await;
    let want: Vec<String> = expected(EXPECTED)
        .into_iter()
        .filter(|l| !l.contains("pocket=proposed"))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn an_unreadable_report_loses_only_its_points() {
    let got = collect_with_fault(
        "/ubuntu_archive/proposed-migration/tumbling_uninst.txt",
        Fault::Garbage,
    )
    .await;
    assert_eq!(got, expected_without(&["uninst_stats,"]));
    let got = collect_with_fault("/ubuntu_archive/priority-mismatches.txt", Fault::Empty).await;
    assert_eq!(got, expected_without(&["priority_mismatch_stats,"]));
}

#[tokio::test]
async fn unreachable_reviews_page_loses_only_the_review_count() {
    let got = collect_with_fault("/launchpad_code/", Fault::Status(503)).await;
    assert_eq!(got, expected_without(&["ubuntu_archive_reviews "]));
}

#[tokio::test]
async fn launchpad_down_leaves_the_reviews() {
    // Without Launchpad the devel series is unknown (parts 1-4) and the bug
    // counts cannot be read (part 6); the reviews page is not Launchpad's API.
    let got = collect_with_fault("/launchpad/", Fault::Status(404)).await;
    assert_eq!(got, ["ubuntu_archive_reviews count=4i 1795521600000000000"]);
}

#[tokio::test]
async fn an_unknown_team_loses_only_the_bug_counts() {
    // Both counts are requests on the team's URL: a fault there takes both.
    let got = collect_with_fault("/launchpad/devel/~ubuntu-archive", Fault::Status(404)).await;
    assert_eq!(got, expected_without(&["ubuntu_archive_bugs,"]));
}

#[tokio::test]
async fn every_part_failing_is_an_error_naming_the_urls() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set("archive_team", server.url("nowhere/archive/"));
    sources.set("launchpad_code", server.url("nowhere/code/"));
    sources.set("launchpad", server.url("nowhere/launchpad/"));
    ctx.sources = Arc::new(sources);
    let err = collect("ubuntu_archive", &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nowhere/code/~ubuntu-archive/+activereviews"),
        "{err}"
    );
    assert!(
        err.contains("nowhere/launchpad/ubuntu") && err.contains("404"),
        "{err}"
    );
    assert!(err.contains("nowhere/launchpad/~ubuntu-archive"), "{err}");
}
