//! The Launchpad client against the fake Launchpad of the fixture server:
//! URL building, paging, counting, series helpers, errors and retries.

mod common;

use common::*;
use fixture_server::Fault;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use ubuntu_metrics::sources::SourceError;
use ubuntu_metrics::sources::launchpad::{Launchpad, Series};

fn lp(ctx: &ubuntu_metrics::Context) -> Launchpad {
    ctx.launchpad().with_retries(3, Duration::from_millis(5))
}

#[derive(Debug, Deserialize)]
struct Upload {
    date_created: Option<String>,
    changes_file_url: Option<String>,
    contains_source: Option<bool>,
    contains_build: Option<bool>,
    contains_copy: Option<bool>,
}

#[tokio::test]
async fn resource_urls_follow_the_configured_base() {
    let server = server();
    let ctx = context(&server);
    let lp = lp(&ctx);
    assert_eq!(
        lp.resource_url("~ubuntu-archive"),
        server.url("launchpad/devel/~ubuntu-archive")
    );
    let entry: Value = lp.get("ubuntu", &[]).await.unwrap();
    assert_eq!(entry["name"], "ubuntu");
    // Links in answers point back at the fake, so they can be followed.
    assert_eq!(
        entry["current_series_link"],
        server.url("launchpad/devel/ubuntu/tumbling").as_str()
    );
    let series: Value = lp
        .get(entry["current_series_link"].as_str().unwrap(), &[])
        .await
        .unwrap();
    assert_eq!(series["name"], "tumbling");
    assert_eq!(ctx.http.requests(), 2);
}

#[tokio::test]
async fn ubuntu_series_with_active_and_current_flags() {
    let server = server();
    let ctx = context(&server);
    let series = lp(&ctx).ubuntu_series().await.unwrap();
    let got: Vec<(&str, bool, bool)> = series
        .iter()
        .map(|s| (s.name.as_str(), s.active, s.current))
        .collect();
    assert_eq!(
        got,
        [
            ("tumbling", true, true),
            ("stonking", true, false),
            ("resolute", true, false),
            ("questing", false, false),
            ("plucky", false, false),
            ("noble", true, false),
            ("jammy", true, false),
        ]
    );
    assert_eq!(
        series[0],
        Series {
            name: "tumbling".into(),
            active: true,
            current: true,
            self_link: server.url("launchpad/devel/ubuntu/tumbling"),
        }
    );
    assert_eq!(ctx.http.requests(), 2);
}

#[tokio::test]
async fn devel_architectures() {
    let server = server();
    let ctx = context(&server);
    let (name, archs) = lp(&ctx).devel_architectures().await.unwrap();
    assert_eq!(name, "tumbling");
    assert_eq!(
        archs,
        [
            "amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x"
        ]
    );
    assert_eq!(ctx.http.requests(), 3);
}

#[tokio::test]
async fn collection_follows_every_page() {
    let server = server();
    let ctx = context(&server);
    let lp = lp(&ctx);
    let params = [
        ("ws.op", "getPackageUploads"),
        ("status", "Unapproved"),
        ("pocket", "Proposed"),
    ];
    let uploads: Vec<Upload> = lp.collection("ubuntu/tumbling", &params).await.unwrap();
    assert_eq!(uploads.len(), 700);
    // Pages of 300: 300 + 300 + 100.
    assert_eq!(ctx.http.requests(), 3);
    // Nulls and missing fields read as None.
    assert!(uploads.iter().any(|u| u.date_created.is_none()));
    assert!(
        uploads
            .iter()
            .any(|u| u.changes_file_url.is_none() && u.contains_copy == Some(true))
    );
    assert!(
        uploads
            .iter()
            .any(|u| u.contains_source.is_none() && u.contains_build.is_none())
    );

    // A caller's own page size is kept.
    let before = ctx.http.requests();
    let small = [
        ("ws.op", "getPackageUploads"),
        ("status", "Unapproved"),
        ("pocket", "Proposed"),
        ("ws.size", "100"),
    ];
    let uploads: Vec<Upload> = lp.collection("ubuntu/tumbling", &small).await.unwrap();
    assert_eq!(uploads.len(), 700);
    assert_eq!(ctx.http.requests() - before, 7);

    // Exactly one full page: no next link, one request.
    let before = ctx.http.requests();
    let noble: Vec<Upload> = lp.collection("ubuntu/noble", &params).await.unwrap();
    assert_eq!(noble.len(), 300);
    assert_eq!(ctx.http.requests() - before, 1);

    // An empty queue.
    let empty: Vec<Upload> = lp.collection("ubuntu/stonking", &params).await.unwrap();
    assert!(empty.is_empty());
}

#[tokio::test]
async fn counts_use_total_size_or_its_link() {
    let server = server();
    let ctx = context(&server);
    let lp = lp(&ctx);
    let team = lp.resource_url("~ubuntu-archive");

    // Named operation spanning pages: total_size_link, two requests.
    let n = lp
        .count(
            "~ubuntu-archive",
            &[("ws.op", "searchTasks"), ("bug_subscriber", &team)],
        )
        .await
        .unwrap();
    assert_eq!(n, 412);
    assert_eq!(ctx.http.requests(), 2);
    let n = lp
        .count(
            "~ubuntu-archive",
            &[("ws.op", "searchTasks"), ("assignee", &team)],
        )
        .await
        .unwrap();
    assert_eq!(n, 7);
    assert_eq!(ctx.http.requests(), 4);

    // Plain collections always carry total_size: one request each.
    let before = ctx.http.requests();
    assert_eq!(lp.count("~motu/members", &[]).await.unwrap(), 143);
    assert_eq!(lp.count("~motu/participants", &[]).await.unwrap(), 612);
    assert_eq!(
        lp.count("~ubuntu-empty-team/members", &[]).await.unwrap(),
        0
    );
    assert_eq!(
        lp.count("ubuntu/tumbling/architectures", &[])
            .await
            .unwrap(),
        7
    );
    assert_eq!(ctx.http.requests() - before, 4);

    // An empty named-operation result: total_size on its only page.
    let before = ctx.http.requests();
    let q = [
        ("ws.op", "getPackageUploads"),
        ("status", "Unapproved"),
        ("pocket", "Proposed"),
    ];
    assert_eq!(lp.count("ubuntu/stonking", &q).await.unwrap(), 0);
    assert_eq!(lp.count("ubuntu/tumbling", &q).await.unwrap(), 700);
    assert_eq!(ctx.http.requests() - before, 3);
}

#[tokio::test]
async fn the_fake_pages_like_lazr_restful() {
    let server = server();
    let ctx = context(&server);
    let lp = lp(&ctx);
    let q = [
        ("ws.op", "getPackageUploads"),
        ("status", "Unapproved"),
        ("pocket", "Proposed"),
    ];

    // Default page: 75 entries, a next link, no prev link, and for a named
    // operation spanning pages a total_size_link instead of total_size.
    let first: Value = lp.get("ubuntu/tumbling", &q).await.unwrap();
    assert_eq!(first["start"], 0);
    assert_eq!(first["entries"].as_array().unwrap().len(), 75);
    assert!(first.get("total_size").is_none());
    assert!(first.get("prev_collection_link").is_none());
    let link = first["total_size_link"].as_str().unwrap();
    assert!(
        link.contains("ws.show=total_size") && link.contains("ws.op=getPackageUploads"),
        "{link}"
    );
    let next = first["next_collection_link"].as_str().unwrap();
    assert!(
        next.contains("ws.start=75") && next.contains("status=Unapproved"),
        "{next}"
    );

    // The last page: total_size, prev link, no next link.
    let last: Value = lp
        .get("ubuntu/tumbling", &[q[0], q[1], q[2], ("ws.start", "650")])
        .await
        .unwrap();
    assert_eq!(last["entries"].as_array().unwrap().len(), 50);
    assert_eq!(last["total_size"], 700);
    assert!(last.get("next_collection_link").is_none());
    assert!(
        last["prev_collection_link"]
            .as_str()
            .unwrap()
            .contains("ws.start=575")
    );

    // ws.size is capped at 300.
    let big: Value = lp
        .get("ubuntu/tumbling", &[q[0], q[1], q[2], ("ws.size", "1000")])
        .await
        .unwrap();
    assert_eq!(big["entries"].as_array().unwrap().len(), 300);

    // Plain collections: total_size even when spanning pages.
    let members: Value = lp.get("~motu/participants", &[]).await.unwrap();
    assert_eq!(members["total_size"], 612);
    assert_eq!(members["entries"].as_array().unwrap().len(), 75);

    // Generated entries are numbered.
    let p: Value = lp.get("~motu/members", &[("ws.size", "2")]).await.unwrap();
    assert_eq!(p["entries"][1]["name"], "motu-member-2");
}

#[tokio::test]
async fn unknown_objects_are_404_with_launchpads_message_and_not_retried() {
    let server = server();
    let ctx = context(&server);
    let err = lp(&ctx)
        .count("~no-such-team/members", &[])
        .await
        .unwrap_err();
    match &err {
        SourceError::HttpStatus {
            url,
            status,
            message,
        } => {
            assert_eq!(*status, 404);
            assert!(url.contains("~no-such-team/members"), "{url}");
            assert!(message.contains("name: '~no-such-team'"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_not_found());
    assert_eq!(ctx.http.requests(), 1);
}

#[tokio::test]
async fn bad_operation_arguments_are_400_and_not_retried() {
    let server = server();
    let ctx = context(&server);
    let lp = lp(&ctx);
    let err = lp
        .collection::<Value>(
            "ubuntu/tumbling",
            &[("ws.op", "getPackageUploads"), ("status", "unapproved")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::HttpStatus { status: 400, .. }),
        "{err}"
    );
    let err = lp
        .get::<Value>("ubuntu", &[("ws.op", "noSuchOp")])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("No such operation: noSuchOp"),
        "{err}"
    );
    assert_eq!(ctx.http.requests(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_three_times() {
    let server = server();
    server.set_fault("/launchpad/devel/ubuntu", Fault::Status(503));
    let ctx = context(&server);
    let err = lp(&ctx).ubuntu_series().await.unwrap_err();
    assert!(
        matches!(err, SourceError::HttpStatus { status: 503, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("launchpad/devel/ubuntu"), "{err}");
    assert_eq!(ctx.http.requests(), 4);
    assert_eq!(server.requests().get("launchpad"), Some(&4));
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let server = server();
    server.set_fault("/launchpad/devel/ubuntu", Fault::Truncate);
    let ctx = context(&server);
    let err = lp(&ctx).get::<Value>("ubuntu", &[]).await.unwrap_err();
    assert!(matches!(err, SourceError::Request { .. }), "{err}");
    assert_eq!(ctx.http.requests(), 4);
}

#[tokio::test]
async fn a_transient_failure_recovers() {
    let server = server();
    server.set_fault("/launchpad/devel/ubuntu", Fault::Status(502));
    let ctx = context(&server);
    // The first retry waits 0.5 to 1 s; the fault is gone after 0.2 s.
    let lp = ctx.launchpad().with_retries(3, Duration::from_secs(1));
    let task = tokio::spawn(async move { lp.get::<Value>("ubuntu", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.clear_faults();
    let entry = task.await.unwrap().unwrap();
    assert_eq!(entry["name"], "ubuntu");
    assert_eq!(ctx.http.requests(), 2);
}

#[tokio::test]
async fn garbage_is_a_parse_error_naming_the_url() {
    let server = server();
    server.set_fault("/launchpad/devel/ubuntu", Fault::Garbage);
    let ctx = context(&server);
    let err = lp(&ctx).ubuntu_series().await.unwrap_err();
    assert!(matches!(err, SourceError::Parse { .. }), "{err}");
    assert!(
        err.to_string().contains("launchpad/devel/ubuntu")
            && err.to_string().contains("invalid JSON"),
        "{err}"
    );
    // Not retried.
    assert_eq!(ctx.http.requests(), 1);

    server.set_fault("/launchpad/devel/ubuntu", Fault::Empty);
    let err = lp(&ctx).get::<Value>("ubuntu", &[]).await.unwrap_err();
    assert!(err.to_string().contains("empty body"), "{err}");
}

#[tokio::test]
async fn a_base_without_trailing_slash_works() {
    let server = server();
    let mut ctx = context(&server);
    let mut sources = (*ctx.sources).clone();
    sources.set("launchpad", server.url("launchpad/devel"));
    ctx.sources = std::sync::Arc::new(sources);
    let series = lp(&ctx).ubuntu_series().await.unwrap();
    assert_eq!(series.len(), 7);
}
