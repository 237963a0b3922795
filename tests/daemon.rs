//! The daemon, driven with short intervals against the fixture server and
//! a real influxd. Runs are observed through the self-metrics points the
//! daemon writes (`ubuntu_metrics_run`). Timing checks use generous bounds:
//! they assert order and counts, not exact times.

mod common;

use common::influxd::{DATABASE, Influxd};
use common::*;
use fixture_server::{Fault, FixtureServer};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon configuration: sources at the fixture server, InfluxDB at
/// `influx`, no start-up or random delay, a 1.5 s run timeout, and
/// per-collector `(name, interval or "off")`. Collectors not listed are off.
fn config_text(server: &FixtureServer, influx: &str, collectors: &[(&str, &str)]) -> String {
    use ubuntu_metrics::config::{CollectorConfig, Config};
    use ubuntu_metrics::schedule::timespan::TimeSpan;
    let mut config = Config {
        sources: server.sources(),
        ..Default::default()
    };
    config.influxdb.url = influx.to_owned();
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

fn start_daemon(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ubuntu-metrics"))
        .args(["--config", config.to_str().unwrap(), "daemon"])
        .env_remove("INFLUXDB_HOSTNAME")
        .env_remove("INFLUXDB_PASSWORD")
        // The default spool moves into the test's directory.
        .env(
            "UBUNTU_METRICS_STATE_DIR",
            config.parent().expect("config in a directory"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Self-metrics runs of a collector: (time ns, status), in time order.
fn runs(db: &Influxd, collector: &str) -> Vec<(i64, String)> {
    let mut v: Vec<(i64, String)> = db
        .rows("ubuntu_metrics_run")
        .into_iter()
        .filter(|r| r.get("collector").and_then(|c| c.as_str()) == Some(collector))
        .map(|r| {
            (
                r["time"].as_i64().unwrap(),
                r["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
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
