//! The images collector against a real `rsync --daemon` serving the tree
//! described by `tests/fixtures/images/tree.txt`.
mod common;

use common::*;
use fixture_server::FixtureServer;
use fixture_server::rsyncd::RsyncDaemon;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ubuntu_metrics::sources::rsync::Rsync;
use ubuntu_metrics::{CollectorError, Context, Point};

fn daemon() -> RsyncDaemon {
    RsyncDaemon::start(&fixtures().join("images/tree.txt")).expect("rsync daemon starts")
}

/// The fixture context, with `sources.cdimage_rsync` set to `url`.
fn context_with_rsync(server: &FixtureServer, url: &str) -> Context {
    let mut ctx = context(server);
    let mut sources = (*ctx.sources).clone();
    sources.set("cdimage_rsync", url.to_owned());
    ctx.sources = Arc::new(sources);
    ctx
}

fn options(toml: &str) -> toml::Table {
    toml.parse().expect("valid TOML")
}

async fn images(ctx: &Context, opts: toml::Table) -> Result<Vec<Point>, CollectorError> {
    collect_with("images", ctx, opts).await
}

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let rsyncd = daemon();
    let ctx = context_with_rsync(&server, &rsyncd.url());
    let points = images(&ctx, toml::Table::new())
        .await
        .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", rsyncd.log()));
    assert_points(&points, "images/expected.out");
}

#[tokio::test]
async fn the_url_may_lack_its_trailing_slash() {
    let server = server();
    let rsyncd = daemon();
    let ctx = context_with_rsync(&server, rsyncd.url().trim_end_matches('/'));
    let points = images(&ctx, toml::Table::new()).await.unwrap();
    assert_points(&points, "images/expected.out");
}

/// rsync exits 23 for a pattern matching nothing: an empty listing, not a
/// failure, even when every pattern matches nothing.
#[tokio::test]
async fn patterns_matching_nothing_are_not_failures() {
    let rsyncd = RsyncDaemon::serve(&[]).unwrap();
    let rsync = Rsync::new(Duration::from_secs(10)).unwrap();
    let listing = rsync
        .list(&format!("{}daily*/*/*.iso", rsyncd.url()))
        .await
        .unwrap();
    assert_eq!(listing.exit_code, 23, "{listing:?}");
    assert!(listing.entries.is_empty(), "{listing:?}");

    let server = server();
    let ctx = context_with_rsync(&server, &rsyncd.url());
    let points = images(&ctx, toml::Table::new()).await.unwrap();
    assert!(points.is_empty(), "{points:?}");
}

/// rsync exits 23 when a file cannot be read (here: a dangling link under
/// a listed directory); the lines it printed are used.
#[tokio::test]
async fn partial_listing_lines_are_used() {
    let rsyncd = daemon();
    let rsync = Rsync::new(Duration::from_secs(10)).unwrap();
    let listing = rsync
        .list(&format!("{}daily*/*/*.iso", rsyncd.url()))
        .await
        .unwrap();
    assert_eq!(listing.exit_code, 23, "{listing:?}");
    assert!(
        listing.stderr.contains("symlink has no referent"),
        "{}",
        listing.stderr
    );
    assert!(
        listing.entries.iter().any(
            |e| e.path == "daily-live/current/tumbling-desktop-amd64.iso"
                && e.size == 6_012_345_678
        ),
        "{listing:?}"
    );
}

/// A server that accepts connections and never answers: each call is
/// killed after `rsync_timeout`, and with every call failed the collector
/// reports an error, quickly.
#[tokio::test]
async fn hanging_server_times_out() {
    let addr = silent_server();
    let server = server();
    let url = format!("rsync://{addr}/cdimage/");
    let ctx = context_with_rsync(&server, &url);
    let start = Instant::now();
    let err = images(&ctx, options("rsync_timeout = \"1s\""))
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    let msg = err.to_string();
    assert!(
        msg.starts_with("every part of images failed (15): ")
            && msg.matches(&url).count() == 15
            && msg.matches("did not finish within 1s").count() == 15,
        "{msg}"
    );
    // 15 calls, all at once (3 ms apart), 1 s each: about 1 s, where 4 at
    // a time took 4 rounds.
    assert!(
        elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(3500),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn unknown_module_is_an_error_naming_it() {
    let server = server();
    let rsyncd = daemon();
    let url = format!("rsync://127.0.0.1:{}/nomodule/", rsyncd.port());
    let ctx = context_with_rsync(&server, &url);
    let msg = images(&ctx, toml::Table::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&url) && msg.contains("Unknown module"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_timeout_option_is_named() {
    let server = server();
    let ctx = context_with_rsync(&server, "rsync://127.0.0.1:1/cdimage/");
    for bad in [
        "rsync_timeout = \"3mins\"",
        "rsync_timeout = \"0\"",
        "rsync_timeout = -1",
        "rsync_timeout = true",
    ] {
        let msg = images(&ctx, options(bad)).await.unwrap_err().to_string();
        assert!(msg.contains("rsync_timeout"), "{bad}: {msg}");
    }
}

#[tokio::test]
async fn timeout_option_accepts_spans_and_seconds() {
    let server = server();
    let rsyncd = daemon();
    let ctx = context_with_rsync(&server, &rsyncd.url());
    for ok in ["rsync_timeout = \"1min 30s\"", "rsync_timeout = 20"] {
        let points = images(&ctx, options(ok)).await.unwrap();
        assert_points(&points, "images/expected.out");
    }
}

/// Without the active series the flavors cannot be told: an error naming
/// Launchpad's URL.
#[tokio::test]
async fn launchpad_failure_is_an_error() {
    let server = server();
    let rsyncd = daemon();
    let mut ctx = context_with_rsync(&server, &rsyncd.url());
    let mut sources = (*ctx.sources).clone();
    sources.set("launchpad", server.url("launchpad/nowhere/"));
    ctx.sources = Arc::new(sources);
    let msg = images(&ctx, toml::Table::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("launchpad/nowhere/"), "{msg}");
}

/// The bytes rsync printed for `entries` (`%l %M %f` lines).
fn listing_bytes(entries: &[ubuntu_metrics::sources::rsync::Entry]) -> u64 {
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}\n",
                e.size,
                e.modified.format("%Y/%m/%d-%H:%M:%S"),
                e.path
            )
            .len() as u64
        })
        .sum()
}

/// One rsync call for the 15 paths lists, once ordered by path pattern,
/// exactly what the 15 calls of one path each list, in their order: the
/// same points, in the same order (the last of two points with one tag
/// set is the one InfluxDB keeps).
#[tokio::test]
async fn one_call_lists_what_a_call_per_path_lists() {
    use ubuntu_metrics::collectors::images;
    let rsyncd = daemon();
    let rsync = Rsync::new(Duration::from_secs(10)).unwrap();
    let urls = images::urls(&rsyncd.url());
    let together = rsync.list_together(&urls).await.unwrap();
    assert_eq!(together.exit_code, 23, "{together:?}");
    let mut apart = Vec::new();
    for url in &urls {
        apart.extend(rsync.list(url).await.unwrap().entries);
    }
    let kept = |entries: Vec<ubuntu_metrics::sources::rsync::Entry>| -> Vec<String> {
        entries
            .into_iter()
            .filter(|e| images::image(&e.path, &["tumbling".to_owned()]).is_some())
            .map(|e| format!("{} {} {}", e.size, e.modified, e.path))
            .collect()
    };
    let one = kept(images::in_pattern_order(together.entries));
    assert!(one.len() > 10, "{one:?}");
    assert_eq!(one, kept(apart));
}

/// What fails the one call fails only its own path: here the whole
/// listing is over `[http] max_body` while each path's is not, so the
/// collector lists each path apart and reports every image.
#[tokio::test]
async fn when_the_one_call_fails_each_path_is_listed_apart() {
    use ubuntu_metrics::collectors::images;
    let server = server();
    let rsyncd = daemon();
    let rsync = Rsync::new(Duration::from_secs(10)).unwrap();
    let urls = images::urls(&rsyncd.url());
    let whole = listing_bytes(&rsync.list_together(&urls).await.unwrap().entries);
    let mut largest = 0;
    for url in &urls {
        largest = largest.max(listing_bytes(&rsync.list(url).await.unwrap().entries));
    }
    assert!(largest < whole, "{largest} < {whole}");
    let active = ["tumbling".to_owned(), "noble".to_owned()];
    let mut ctx = context_with_rsync(&server, &rsyncd.url());
    let unlimited = images::collect_for_series(&ctx, &active).await.unwrap();
    // (Launchpad's series document is larger than that limit: the series
    // are given.)
    ctx.http = ctx.http.clone().with_max_body(largest);
    let points = images::collect_for_series(&ctx, &active)
        .await
        .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", rsyncd.log()));
    assert!(points.len() > 10, "{points:?}");
    assert_eq!(points, unlimited);
}
