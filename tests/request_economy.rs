//! Request economy and politeness across collectors: the run's cache shares
//! Launchpad's distribution, series and architectures between collectors
//! (concurrent askers coalesce, failures are shared too), plain collections
//! read their later pages together, and the per-host limit holds.

mod common;

use common::*;
use fixture_server::Fault;
use serde_json::Value;
use std::time::{Duration, Instant};
use ubuntu_metrics::sources::http::Http;

/// The four collectors that need the `ubuntu` distribution and its series.
const LAUNCHPAD_USERS: [&str; 4] = ["cnf", "images", "upload_queues", "ubuntu_archive"];

#[tokio::test]
async fn one_run_reads_the_distribution_and_its_series_once() {
    let server = server_with_rsync();
    let ctx = context(&server);
    let results =
        futures::future::join_all(LAUNCHPAD_USERS.iter().map(|name| collect(name, &ctx))).await;
    for (name, result) in LAUNCHPAD_USERS.iter().zip(results) {
        let points = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_points(&points, &format!("{name}/expected.out"));
    }
    // Alone they would ask 2 (cnf) + 2 (images) + 14 (upload_queues) +
    // 3 + 4 (ubuntu_archive: distribution, series, architectures; two
    // searchTasks counts of two requests each) = 25. Together: the
    // distribution, its series and tumbling's architectures once (3), the
    // 12 pages of the 10 queues, the 4 count requests: 19.
    assert_eq!(server.requests().get("launchpad"), Some(&19));
}

#[tokio::test]
async fn collectors_run_one_after_the_other_share_too() {
    let server = server();
    let ctx = context(&server);
    collect("cnf", &ctx).await.unwrap();
    assert_eq!(server.requests().get("launchpad"), Some(&2));
    // upload_queues asks only for its queues: 10 + 2 more pages.
    collect("upload_queues", &ctx).await.unwrap();
    assert_eq!(server.requests().get("launchpad"), Some(&14));
    // A new run (a new context) reads them again.
    let ctx = context(&server);
    collect("cnf", &ctx).await.unwrap();
    assert_eq!(server.requests().get("launchpad"), Some(&16));
}

#[tokio::test]
async fn a_failed_distribution_is_asked_for_once_per_run() {
    let server = server();
    // A 404 is not retried: each collector asking again would show here.
    server.set_fault("/launchpad/devel/ubuntu", Fault::Status(404));
    let ctx = context(&server);
    let names = ["cnf", "upload_queues"];
    let results = futures::future::join_all(names.iter().map(|n| collect(n, &ctx))).await;
    for (name, r) in names.iter().zip(results) {
        let e = r.expect_err(name);
        assert!(e.is_not_found(), "{name}: {e}");
        assert!(e.to_string().contains("launchpad/devel/ubuntu"), "{e}");
    }
    assert_eq!(server.requests().get("launchpad"), Some(&1));
}

#[tokio::test]
async fn plain_collections_read_their_pages_together_in_order() {
    let server = server();
    let ctx = context(&server);
    let lp = ctx.launchpad();
    // 612 participants: total_size on the first page, then pages at 300
    // and 600 asked for together.
    let all: Vec<Value> = lp.collection("~motu/participants", &[]).await.unwrap();
    let names: Vec<String> = all
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (1..=612).map(|n| format!("motu-participant-{n}")).collect();
    assert_eq!(names, want);
    assert_eq!(ctx.http.requests(), 3);

    // A caller's page size is kept: 7 pages of 100.
    let before = ctx.http.requests();
    let all: Vec<Value> = lp
        .collection("~motu/participants", &[("ws.size", "100")])
        .await
        .unwrap();
    assert_eq!(all.len(), 612);
    assert_eq!(all[611]["name"], "motu-participant-612");
    assert_eq!(ctx.http.requests() - before, 7);

    // A later page failing fails the collection, naming that page.
    server.set_fault("/launchpad/devel/~motu/participants", Fault::Status(404));
    let err = lp
        .collection::<Value>("~motu/participants", &[])
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn the_per_host_limit_holds_across_handles() {
    let server = server();
    server.set_latency(Duration::from_millis(100));
    let http = Http::new(Duration::from_secs(5), Duration::from_secs(10))
        .unwrap()
        .with_max_per_host(2);
    assert_eq!(http.max_per_host(), 2);
    // Two collectors' handles share the limit: 6 requests, 2 at a time,
    // take at least 3 latencies.
    let a = http.for_run();
    let b = http.for_run();
    let url = server.url("sponsoring/general.json");
    let started = Instant::now();
    let fetches = (0..6).map(|i| {
        let h = if i % 2 == 0 { a.clone() } else { b.clone() };
        let url = url.clone();
        async move { h.get_bytes(&url).await }
    });
    for r in futures::future::join_all(fetches).await {
        r.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.requests() + b.requests(), 6);
    assert_eq!(server.requests().get("sponsoring"), Some(&6));
}

#[test]
fn the_configuration_sets_the_limit() {
    let mut config = ubuntu_metrics::config::Config::default();
    config.http.max_per_host = 3;
    assert_eq!(Http::from_config(&config.http).unwrap().max_per_host(), 3);
}
