mod common;

use common::*;
use fixture_server::Fault;
use std::sync::Arc;

const EXPECTED: &str = "britney/expected.out";

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("britney", &context(&server)).await.unwrap();
    assert_points(&points, EXPECTED);
}

#[tokio::test]
async fn reads_only_what_it_needs() {
    // 7 excuses pages; 5 log listings (not resolute: no Generated line);
    // logs: focal 1, jammy 1 (only its own day), stonking 1, tumbling 2
    // (the notest log is never fetched, nor anything older than the first
    // complete one); the CSV and the YAML.
    let server = server();
    collect("britney", &context(&server)).await.unwrap();
    assert_eq!(server.requests().get("britney"), Some(&19));
}

/// The expected lines without those of `measurement`.
fn expected_without(measurement: &str) -> Vec<String> {
    expected(EXPECTED)
        .into_iter()
        .filter(|l| !l.starts_with(&format!("{measurement},")))
        .collect()
}

#[tokio::test]
async fn a_failing_csv_does_not_stop_the_other_parts() {
    let server = server();
    server.set_fault(
        "/britney/proposed-migration/update_excuses.csv",
        Fault::Status(500),
    );
    let points = collect("britney", &context(&server)).await.unwrap();
    assert_eq!(lines(&points), expected_without("update_excuses_stats"));
}

#[tokio::test]
async fn an_unreadable_yaml_does_not_stop_the_other_parts() {
    let server = server();
    server.set_fault(
        "/britney/proposed-migration/update_excuses_by_team.yaml",
        Fault::Garbage,
    );
    let points = collect("britney", &context(&server)).await.unwrap();
    assert_eq!(
        lines(&points),
        expected_without("update_excuses_by_team_stats")
    );
}

#[tokio::test]
async fn unreachable_logs_lose_only_the_durations() {
    let server = server();
    server.set_fault("/britney/proposed-migration/log/", Fault::Status(503));
    let points = collect("britney", &context(&server)).await.unwrap();
    assert_eq!(
        lines(&points),
        expected_without("britney_last_run_duration")
    );
}

#[tokio::test]
async fn unreachable_excuses_pages_lose_ages_and_durations() {
    let server = server();
    for s in [
        "bionic", "focal", "jammy", "noble", "resolute", "stonking", "tumbling",
    ] {
        server.set_fault(
            &format!("/britney/proposed-migration/{s}/"),
            Fault::Status(500),
        );
    }
    let points = collect("britney", &context(&server)).await.unwrap();
    let want: Vec<String> = expected_without("britney_last_run_age")
        .into_iter()
        .filter(|l| !l.starts_with("britney_last_run_duration,"))
        .collect();
    assert_eq!(lines(&points), want);
}

#[tokio::test]
async fn every_part_failing_is_an_error_naming_the_urls() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set("proposed_migration", server.url("britney/nowhere/"));
    ctx.sources = Arc::new(sources);
    let err = collect("britney", &ctx).await.unwrap_err().to_string();
    assert!(
        err.contains("britney/nowhere/update_excuses.csv") && err.contains("404"),
        "{err}"
    );
    assert!(
        err.contains("britney/nowhere/update_excuses_by_team.yaml"),
        "{err}"
    );
    assert!(err.contains("update_excuses.html"), "{err}");
}

#[tokio::test]
async fn missing_distro_info_is_an_error() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.distro_info = fixtures().join("britney/no-such-ubuntu.csv");
    ctx.sources = Arc::new(sources);
    let err = collect("britney", &ctx).await.unwrap_err().to_string();
    assert!(err.contains("no-such-ubuntu.csv"), "{err}");
}
