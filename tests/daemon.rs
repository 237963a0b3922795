//! The daemon, driven with short intervals against the fixture server and
//! a real influxd. Runs are observed through the self-metrics points the
//! daemon writes (`ubuntu_metrics_run`). Timing checks use generous bounds:
//! they assert order and counts, not exact times.
//!
//! Also: a hung InfluxDB (a local endpoint that reads the request and never
//! answers) neither slows the collectors' rhythm nor, on SIGTERM, loses a
//! point: `spool flush` against a real influxd afterwards writes every
//! collected point; and a collector that panics is a failed run that keeps
//! its schedule (through the library, with a test collector).

mod common;

use common::daemon::*;
use common::influxd::{DATABASE, Influxd};
use common::*;
use fixture_server::{Fault, FixtureServer};
use std::time::{Duration, Instant};

/// A daemon configuration: sources at the fixture server, InfluxDB at
/// `influx`, no start-up or random delay, a 1.5 s run timeout, and
/// per-collector `(name, interval or "off")`. Collectors not listed are off.
fn config_text(server: &FixtureServer, influx: &str, collectors: &[(&str, &str)]) -> String {
    use ubuntu_metrics::config::{CollectorConfig, Config};
    use ubuntu_metrics::model::timespan::TimeSpan;
    let mut config = Config {
        sources: server.sources(),
        ..Default::default()
    };
    config.influxdb.url = influx.to_owned().into();
    config.influxdb.database = DATABASE.to_owned();
    config.daemon.startup_delay = TimeSpan::parse("0").unwrap();
    config.daemon.random_delay = TimeSpan::parse("0").unwrap();
    config.daemon.run_timeout = TimeSpan::parse("1500ms").unwrap();
    config.daemon.shutdown_grace = TimeSpan::parse("10s").unwrap();
    for c in ubuntu_metrics::collectors::registry() {
        let setting = collectors
            .iter()
            .find(|(n, _)| *n == c.name())
            .map(|(_, i)| *i);
        let cc = match setting {
            None | Some("off") => CollectorConfig {
                enabled: false,
                ..Default::default()
            },
            Some(interval) => CollectorConfig {
                interval: Some(TimeSpan::parse(interval).unwrap()),
                ..Default::default()
            },
        };
        config.collectors.insert(c.name().to_owned(), cc);
    }
    toml::to_string(&config).unwrap()
}

#[test]
fn runs_keep_their_rhythm_a_hanging_collector_times_out_and_sigterm_is_clean() {
    let server = server();
    // versions hangs far beyond the 1.5 s run timeout.
    server.set_fault("/versions", Fault::Delay(Duration::from_secs(30)));
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let text = config_text(
        &server,
        &db.url(),
        &[("sponsoring", "1s"), ("versions", "1s")],
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(&config, &log);
    std::thread::sleep(Duration::from_secs(7));
    signal(&child, "-TERM");
    let code = wait_exit(&mut child, Duration::from_secs(15));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "daemon log:\n{logs}");

    let sponsoring = runs(&db, "sponsoring");
    let versions = runs(&db, "versions");
    // ~7 s with a 1 s interval after each ~instant run: 3 to 8 runs.
    assert!(
        (3..=8).contains(&sponsoring.len()),
        "sponsoring runs: {sponsoring:?}\n{logs}"
    );
    assert!(sponsoring.iter().all(|(_, s)| s == "ok"), "{sponsoring:?}");
    // Each run starts at least one interval after the previous one started
    // (it starts an interval after the previous one *ended*).
    for w in sponsoring.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= 950_000_000,
            "runs too close: {sponsoring:?}"
        );
    }
    // versions: 1.5 s timeout + 1 s interval: 2 to 4 runs, all timed out,
    // while sponsoring kept its rhythm above.
    assert!(
        (2..=4).contains(&versions.len()),
        "versions runs: {versions:?}\n{logs}"
    );
    assert!(versions.iter().all(|(_, s)| s == "timeout"), "{versions:?}");
    let v = db.query("SELECT \"error\" FROM ubuntu_metrics_run WHERE collector = 'versions'");
    assert!(v.to_string().contains("timed out"), "{v}");
    // The collected points themselves are in InfluxDB.
    assert!(!db.rows("sponsoring_queue_stats").is_empty());
    assert!(logs.contains("SIGTERM"), "{logs}");
}

#[test]
fn sigterm_lets_a_running_collector_finish_and_write() {
    let server = server();
    // The run takes 2 s; SIGTERM arrives in the middle of it.
    server.set_fault("/sponsoring", Fault::Delay(Duration::from_secs(2)));
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let text = config_text(&server, &db.url(), &[("sponsoring", "1h")])
        .replace("run_timeout = \"1500ms\"", "run_timeout = \"20s\"");
    assert!(text.contains("run_timeout = \"20s\""));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(&config, &log);
    std::thread::sleep(Duration::from_millis(700));
    signal(&child, "-TERM");
    let code = wait_exit(&mut child, Duration::from_secs(15));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(runs(&db, "sponsoring").len(), 1, "{logs}");
    assert_eq!(db.rows("sponsoring_queue_stats").len(), 4, "{logs}");
}

#[test]
fn sighup_applies_a_changed_interval_and_keeps_the_old_config_when_bad() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(&server, &db.url(), &[("sponsoring", "1h")]),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(&config, &log);
    // The first run comes at once (startup_delay 0); the next would be in 1 h.
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs(&db, "sponsoring").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(runs(&db, "sponsoring").len(), 1);

    // A bad configuration is refused; the daemon goes on.
    std::fs::write(&config, "[collectors.sponsoring]\ninterval = \"soon\"\n").unwrap();
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon must survive a bad reload"
    );

    // A good one with a 1 s interval: runs follow within seconds.
    std::fs::write(
        &config,
        config_text(&server, &db.url(), &[("sponsoring", "1s")]),
    )
    .unwrap();
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_secs(4));
    signal(&child, "-TERM");
    let code = wait_exit(&mut child, Duration::from_secs(15));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let n = runs(&db, "sponsoring").len();
    assert!((3..=7).contains(&n), "{n} runs after the reload\n{logs}");
    assert!(
        logs.contains("keeping the old one") && logs.contains("soon"),
        "{logs}"
    );
    assert!(logs.contains("configuration reloaded"), "{logs}");
}

/// Sums of the daemon log's `collected` lines: (runs, points), per collector.
fn collected_in_log(logs: &str) -> std::collections::BTreeMap<String, (usize, usize)> {
    let mut out = std::collections::BTreeMap::new();
    for l in logs.lines().filter(|l| l.contains(" collected ")) {
        let field = |k: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(|v| v.trim_matches('"').to_owned())
        };
        let (Some(c), Some(n)) = (field("collector="), field("points=")) else {
            continue;
        };
        let e = out.entry(c).or_insert((0, 0));
        e.0 += 1;
        e.1 += n.parse::<usize>().unwrap();
    }
    out
}

/// Points in the database: (self-metrics rows, all other rows).
fn stored(db: &Influxd) -> (usize, usize) {
    let v = db.query("SHOW MEASUREMENTS");
    let mut own = 0;
    let mut data = 0;
    for m in v["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let m = m[0].as_str().unwrap().to_owned();
        let n = db.rows(&m).len();
        if m == "ubuntu_metrics_run" {
            own += n;
        } else if !m.starts_with("ubuntu_metrics_") {
            // (the other self-metrics: requests per host, writes, spool)
            data += n;
        }
    }
    (own, data)
}

#[test]
fn a_hung_influxdb_neither_slows_the_runs_nor_loses_a_point_on_sigterm() {
    use common::rogue::Rogue;
    let server = server_with_rsync();
    // Reads each write and never answers (a SIGSTOPped influxd would write
    // the buffered requests once resumed and hide a loss).
    let hung = Rogue::start(|_| None);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let registry = ubuntu_metrics::collectors::registry();
    let all: Vec<(&str, &str)> = registry
        .iter()
        .map(|c| (c.name(), if c.name() == "sponsoring" { "1s" } else { "1h" }))
        .collect();
    // The default InfluxDB timeout (10 s) and retries; a 3 s grace.
    let text = config_text(&server, &hung.url(), &all)
        .replace("run_timeout = \"1500ms\"", "run_timeout = \"60s\"")
        .replace("shutdown_grace = \"10s\"", "shutdown_grace = \"3s\"");
    assert!(text.contains("shutdown_grace = \"3s\""));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(&config, &log);
    // Every collector's first run, then 6 s of sponsoring's 1 s rhythm.
    let names = all.len();
    let deadline = Instant::now() + Duration::from_secs(90);
    let first_sponsoring = loop {
        let logs = std::fs::read_to_string(&log).unwrap();
        let done = collected_in_log(&logs).len()
            + logs
                .lines()
                .filter(|l| l.contains("failed:") || l.contains("timed out"))
                .count();
        if done >= names {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "collectors did not all run:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    while first_sponsoring.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "-TERM");
    let code = wait_exit(&mut child, Duration::from_secs(20));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(hung.held() >= 1, "the daemon never tried to write");

    // Now InfluxDB is back: flush writes what the daemon collected.
    let db = Influxd::start();
    let flush_config = dir.path().join("flush.toml");
    std::fs::write(&flush_config, config_text(&server, &db.url(), &all)).unwrap();
    let out = bin()
        .args(["--config", flush_config.to_str().unwrap(), "spool", "flush"])
        .env("UBUNTU_METRICS_STATE_DIR", dir.path())
        .output()
        .unwrap();
    let collected = collected_in_log(&logs);
    let runs: usize = collected.values().map(|(r, _)| r).sum();
    let points: usize = collected.values().map(|(_, p)| p).sum();
    let failed = logs
        .lines()
        .filter(|l| l.contains("failed:") || l.contains("timed out"))
        .count();
    // Lines of one run that share a series and timestamp are one point in
    // InfluxDB (images writes some series in two lines): a dry run of
    // every collector once says how many.
    let dry = bin()
        .args([
            "--config",
            flush_config.to_str().unwrap(),
            "run",
            "--now",
            NOW,
            "--all",
            "-n",
        ])
        .output()
        .unwrap();
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    let keys: std::collections::BTreeSet<(String, String)> = dry
        .lines()
        .map(|l| {
            let p = influxdb_line_protocol::parse_lines(l)
                .next()
                .unwrap()
                .unwrap();
            let mut tags: Vec<String> = p
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            tags.sort();
            (
                format!("{} {tags:?}", p.series.measurement),
                p.timestamp.unwrap().to_string(),
            )
        })
        .collect();
    let shared = dry.lines().count() - keys.len();
    let points = points - shared;
    let (own, data) = stored(&db);
    let sponsoring_runs = collected.get("sponsoring").map_or(0, |r| r.0);
    println!(
        "hung InfluxDB + SIGTERM: {runs} runs collected {points} points ({failed} runs failed); after `spool flush`: {data} points and {own} self-metrics in InfluxDB, {} lost; sponsoring ran {sponsoring_runs} times in ~6 s at a 1 s interval",
        points.saturating_sub(data)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(data, points, "every collected point, exactly once\n{logs}");
    assert_eq!(own, runs + failed, "one self-metrics point per run\n{logs}");
    assert!(
        sponsoring_runs >= 4,
        "runs kept their interval: {sponsoring_runs}\n{logs}"
    );
}

/// A test collector that panics on its first run and succeeds after.
struct Flaky {
    runs: std::sync::atomic::AtomicUsize,
    spec: ubuntu_metrics::collector::Spec,
}

impl Default for Flaky {
    fn default() -> Flaky {
        use ubuntu_metrics::model::panel::{Board, Kind, Panel, Panels};
        use ubuntu_metrics::model::schema::{Measurement, int};
        use ubuntu_metrics::model::timespan::TimeSpan;
        let spec = ubuntu_metrics::collector::Spec::new("flaky", "panics on its first run")
            .interval(TimeSpan::parse("1s").unwrap())
            .schema(vec![Measurement::new("flaky_m", &[], &[int("run", "")])])
            .panels(Panels {
                board: Board::Queues,
                title: "flaky".into(),
                panels: vec![Panel::new(Kind::Stat, "runs", "flaky_m", &["run"], &[])],
            });
        Flaky {
            runs: Default::default(),
            spec,
        }
    }
}

#[async_trait::async_trait]
impl ubuntu_metrics::Collector for Flaky {
    fn spec(&self) -> &ubuntu_metrics::collector::Spec {
        &self.spec
    }
    async fn collect(
        &self,
        ctx: &ubuntu_metrics::Context,
    ) -> Result<Vec<ubuntu_metrics::Point>, ubuntu_metrics::CollectorError> {
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == 0 {
            panic!("flaky: the first run explodes");
        }
        Ok(vec![
            ubuntu_metrics::Point::new("flaky_m")
                .field("run", n)
                .at(ctx.now),
        ])
    }
}

#[test]
fn a_panicking_collector_is_a_failed_run_and_keeps_its_schedule() {
    use ubuntu_metrics::model::timespan::TimeSpan;
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ubuntu_metrics::config::Config::default();
    config.influxdb.url = db.url().into();
    config.influxdb.database = DATABASE.to_owned();
    config.daemon.startup_delay = TimeSpan::parse("0").unwrap();
    config.daemon.random_delay = TimeSpan::parse("0").unwrap();
    config.spool.dir = dir.path().join("spool");
    let registry: ubuntu_metrics::schedule::daemon::Registry =
        std::sync::Arc::new(vec![Box::new(Flaky::default())]);
    let daemon = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(ubuntu_metrics::schedule::daemon::run(
                None, config, registry,
            ))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs(&db, "flaky").len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // The daemon runs in this process: SIGTERM reaches its handler.
    // SAFETY: kill(2) on our own pid.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    daemon
        .join()
        .unwrap()
        .expect("the daemon stops in order on SIGTERM");
    let flaky = runs(&db, "flaky");
    println!("flaky runs: {flaky:?}");
    assert!(
        flaky.len() >= 3,
        "the schedule went on after the panic: {flaky:?}"
    );
    assert_eq!(flaky[0].1, "error", "{flaky:?}");
    assert!(flaky[1..].iter().all(|(_, s)| s == "ok"), "{flaky:?}");
    let e = db.query(
        "SELECT \"error\" FROM ubuntu_metrics_run WHERE collector = 'flaky' AND status = 'error'",
    );
    assert!(e.to_string().contains("the first run explodes"), "{e}");
    assert!(db.rows("flaky_m").len() >= 2);
}

#[test]
fn the_daemon_sets_the_catch_up_marks_once_a_run_is_spooled() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(&server, &db.url(), &[("ubuntu_archive", "1h")]),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(&config, &log);
    let marks = dir.path().join("catch-up.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !marks.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "-TERM");
    let code = wait_exit(&mut child, Duration::from_secs(15));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let text = std::fs::read_to_string(&marks).unwrap_or_default();
    for file in [
        "nbs.csv",
        "component-mismatches.csv",
        "component-mismatches-proposed.csv",
    ] {
        assert!(
            text.contains(&format!("/ubuntu_archive/{file}\"")),
            "{text}\n{logs}"
        );
    }
}
