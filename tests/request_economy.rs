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

/// `ubuntu-metrics daemon` with `config`, its log in `log`: stopped with
/// SIGTERM once `done` says so (or after `limit`), and its exit status and
/// log returned.
fn daemon_until(
    config: &std::path::Path,
    log: &std::path::Path,
    limit: Duration,
    done: impl Fn() -> bool,
) -> (Option<i32>, String) {
    let mut child = bin()
        .arg("--config")
        .arg(config)
        .arg("daemon")
        // The spool goes into the test's directory.
        .env("UBUNTU_METRICS_STATE_DIR", config.parent().unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(log).unwrap())
}

/// A daemon configuration: sources at `server`, InfluxDB at `influx`, no
/// start-up or random delay (every enabled collector is due at start), and
/// `(collector, interval)` for the enabled ones (the others are off).
fn daemon_config(
    dir: &std::path::Path,
    server: &fixture_server::FixtureServer,
    influx: &str,
    enabled: &[(&str, &str)],
) -> std::path::PathBuf {
    use ubuntu_metrics::config::CollectorConfig;
    use ubuntu_metrics::model::timespan::TimeSpan;
    let mut config = common::daemon::config(server, influx);
    config.daemon.run_timeout = TimeSpan::parse("60s").unwrap();
    config.daemon.shutdown_grace = TimeSpan::parse("10s").unwrap();
    for c in ubuntu_metrics::collectors::registry() {
        let interval = enabled.iter().find(|(n, _)| *n == c.name()).map(|e| e.1);
        let cc = CollectorConfig {
            enabled: interval.is_some(),
            interval: interval.map(|i| TimeSpan::parse(i).unwrap()),
            ..Default::default()
        };
        config.collectors.insert(c.name().to_owned(), cc);
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

/// The self-metrics runs InfluxDB holds for `collector`.
fn runs_of(db: &common::influxd::Influxd, collector: &str) -> usize {
    db.rows("ubuntu_metrics_run")
        .iter()
        .filter(|r| r.get("collector").and_then(|c| c.as_str()) == Some(collector))
        .count()
}

/// Item 8 of issue 11: one daemon wake-up of every collector (all due at
/// start) shares one run cache, as `run --all` does: Launchpad's `ubuntu`
/// distribution and its series are read once, not once per collector, and
/// the wake-up asks Launchpad exactly what `run --all` asks.
#[test]
fn a_daemon_wake_up_of_every_collector_reads_the_distribution_and_its_series_once() {
    let server = server_with_rsync();
    let db = common::influxd::Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = ubuntu_metrics::collectors::registry()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let enabled: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1h")).collect();
    let config = daemon_config(dir.path(), &server, &db.url(), &enabled);
    let (code, log) = daemon_until(
        &config,
        &dir.path().join("daemon.log"),
        Duration::from_secs(90),
        || names.iter().all(|n| runs_of(&db, n) > 0),
    );
    assert_eq!(code, Some(0), "{log}");
    for n in &names {
        assert_eq!(runs_of(&db, n), 1, "{n} ran once in the hour\n{log}");
    }
    let paths = server.path_requests();
    let lp = |p: &str| paths.get(&format!("launchpad/devel/{p}")).copied();
    let daemon_total = server.requests().get("launchpad").copied();
    println!(
        "one daemon wake-up of every collector: {} requests, {daemon_total:?} to Launchpad, \
         of which {:?} for ubuntu and {:?} for ubuntu/series",
        server.requests().values().sum::<u64>(),
        lp("ubuntu"),
        lp("ubuntu/series")
    );
    assert_eq!(lp("ubuntu"), Some(1), "{paths:#?}\n{log}");
    assert_eq!(lp("ubuntu/series"), Some(1), "{paths:#?}\n{log}");

    // `run --all` against a server of its own: the same Launchpad requests.
    let other = server_with_rsync();
    let other_dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("--config")
        .arg(daemon_config(other_dir.path(), &other, &db.url(), &enabled))
        .args(["run", "--all", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.stdout.len() > 1000,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_all_total = other.requests().get("launchpad").copied();
    println!("Launchpad requests: daemon wake-up {daemon_total:?}, run --all {run_all_total:?}");
    assert_eq!(daemon_total, run_all_total);
}

/// ... and a later wake-up reads them again: nothing is kept from one
/// wake-up to the next (cnf alone every second: one distribution request
/// per run).
#[test]
fn each_daemon_wake_up_reads_the_distribution_anew() {
    let server = server();
    let db = common::influxd::Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), &server, &db.url(), &[("cnf", "1s")]);
    let (code, log) = daemon_until(
        &config,
        &dir.path().join("daemon.log"),
        Duration::from_secs(30),
        || runs_of(&db, "cnf") >= 3,
    );
    assert_eq!(code, Some(0), "{log}");
    // The daemon may have begun one more run before SIGTERM.
    let runs = runs_of(&db, "cnf");
    let paths = server.path_requests();
    let reads = paths.get("launchpad/devel/ubuntu").copied().unwrap_or(0) as usize;
    assert!(runs >= 3, "{runs} runs\n{log}");
    assert_eq!(
        reads, runs,
        "one distribution read per wake-up: {paths:#?}\n{log}"
    );
}

/// A round asks for each document (or part of one) once: no collector
/// fetches the same document twice, and collectors that need the same one
/// share it (issue 17, item 4).
#[test]
fn a_round_asks_for_each_document_once() {
    let server = server_with_rsync();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["run", "--all", "--dry-run", "--now", NOW])
        .env("UBUNTU_METRICS_STATE_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.stdout.is_empty());
    let twice: Vec<(String, u64)> = server
        .document_requests()
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(twice.is_empty(), "asked for more than once: {twice:?}");
    assert!(server.document_requests().len() > 80);
}
