mod common;

use common::*;
use fixture_server::Fault;

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("upload_queues", &context(&server)).await.unwrap();
    assert_points(&points, "upload_queues/expected.out");
    // ubuntu + its series, then each of the 10 queues once: tumbling
    // Unapproved takes 3 pages of 300, every other queue one page.
    assert_eq!(server.requests().get("launchpad"), Some(&14));
}

#[tokio::test]
async fn a_queue_that_fails_is_skipped() {
    let server = server();
    server.set_fault("/launchpad/devel/ubuntu/jammy", Fault::Status(404));
    let points = collect("upload_queues", &context(&server)).await.unwrap();
    let got = lines(&points);
    let want: Vec<String> = expected("upload_queues/expected.out")
        .into_iter()
        .filter(|l| !l.contains("release=jammy"))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn no_readable_queue_is_an_error() {
    let server = server();
    for s in ["tumbling", "stonking", "resolute", "noble", "jammy"] {
        server.set_fault(&format!("/launchpad/devel/ubuntu/{s}"), Fault::Status(403));
    }
    let err = collect("upload_queues", &context(&server))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("403") && err.to_string().contains("getPackageUploads"),
        "{err}"
    );
}

#[tokio::test]
async fn series_unavailable_is_an_error_naming_the_url() {
    let server = server();
    server.set_fault("/launchpad/devel/ubuntu/series", Fault::Status(404));
    let err = collect("upload_queues", &context(&server))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("launchpad/devel/ubuntu/series")
            && err.to_string().contains("404"),
        "{err}"
    );
}
