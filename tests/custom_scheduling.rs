//! Declared collectors (issue 12) are scheduled like built-in ones: an exec
//! and an http collector under the daemon, each on its own interval,
//! writing to a real influxd; a SIGHUP keeps them (and refuses a changed
//! declaration); and the generated systemd units give each its timer.

mod common;

use common::daemon::*;
use common::influxd::{DATABASE, Influxd};
use common::*;
use std::path::Path;
use std::time::Duration;

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Every built-in collector off, an exec collector every 1 s and the
/// shipped declarative autopkgtest collector every 2 s.
fn config_text(dir: &Path, server: &fixture_server::FixtureServer, influx: &str) -> String {
    let script = dir.join("tick.py");
    std::fs::write(
        &script,
        "import os\nprint(\"tick,collector=%s count=1i\" % os.environ[\"UBUNTU_METRICS_COLLECTOR\"])\n",
    )
    .unwrap();
    let mut text = format!(
        "[influxdb]\nurl = \"{influx}\"\ndatabase = \"{DATABASE}\"\n\n[daemon]\nstartup_delay = \"0\"\nrandom_delay = \"0\"\nrun_timeout = \"5s\"\nshutdown_grace = \"10s\"\n\n[sources]\nautopkgtest_queues_production = \"{}\"\nautopkgtest_queues_staging = \"{}\"\n\n",
        server.url("autopkgtest/production/queue_size.json"),
        server.url("autopkgtest/staging/queue_size.json"),
    );
    for c in ubuntu_metrics::collectors::registry() {
        text.push_str(&format!("[collectors.{}]\nenabled = false\n\n", c.name()));
    }
    text.push_str(&format!(
        "[collectors.ticker]\ntype = \"exec\"\ncommand = [\"{}\", \"{}\"]\ninterval = \"1s\"\n\n[collectors.ticker.measurements.tick]\ntags = [\"collector\"]\nfields = {{ count = \"int\" }}\n\n",
        python(),
        script.display()
    ));
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/declared/autopkgtest_queues.toml"),
    )
    .unwrap();
    text.push_str(&example.replace("interval = \"5m\"", "interval = \"2s\""));
    text
}

#[test]
fn an_exec_and_an_http_collector_run_under_the_daemon_on_their_own_intervals() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let text = config_text(dir.path(), &server, &db.url());
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(&config, &log);
    std::thread::sleep(Duration::from_millis(3500));
    // The same configuration again: reloaded, the declared collectors kept.
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(1500));
    // A changed declaration is refused (it needs a restart); the daemon
    // goes on with the old one.
    std::fs::write(
        &config,
        text.replace("count = 1i", "count = 2i")
            .replace("interval = \"1s\"", "interval = \"1s\"\ntimeout = \"3s\""),
    )
    .unwrap();
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "-TERM");
    let code = wait_exit(&mut child, Duration::from_secs(15));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "daemon log:\n{logs}");
    assert!(logs.contains("SIGHUP: configuration reloaded"), "{logs}");
    assert!(
        logs.contains("keeping the old one") && logs.contains("restart the daemon"),
        "{logs}"
    );

    // ~6.5 s: the ticker every 1 s after each run, autopkgtest_queues every 2 s.
    let ticker = runs(&db, "ticker");
    let queues = runs(&db, "autopkgtest_queues");
    assert!(
        (4..=8).contains(&ticker.len()),
        "ticker: {ticker:?}\n{logs}"
    );
    assert!(
        (2..=4).contains(&queues.len()),
        "autopkgtest_queues: {queues:?}\n{logs}"
    );
    assert!(ticker.len() > queues.len(), "{ticker:?} {queues:?}");
    assert!(
        ticker.iter().chain(&queues).all(|(_, s)| s == "ok"),
        "{ticker:?} {queues:?}\n{logs}"
    );
    for w in ticker.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= 950_000_000,
            "ticker runs too close: {ticker:?}"
        );
    }
    for w in queues.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= 1_950_000_000,
            "queue runs too close: {queues:?}"
        );
    }
    assert_eq!(db.rows("tick").len(), ticker.len());
    assert!(!db.rows("autopkgtest_queue_size").is_empty());
}

fn timer_setting(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

#[test]
fn declared_collectors_get_their_timers_in_the_generated_units() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text = config_text(dir.path(), &server, "http://127.0.0.1:8086").replace(
        "startup_delay = \"0\"\nrandom_delay = \"0\"",
        "startup_delay = \"30s\"\nrandom_delay = \"1m\"",
    );
    std::fs::write(&config, text).unwrap();
    let normal = dir.path().join("normal");
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "systemd", "generate"])
        .arg(&normal)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut units: Vec<String> = std::fs::read_dir(&normal)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    units.sort();
    verify_units(&units);
    for (name, interval) in [("ticker", "1s"), ("autopkgtest_queues", "2s")] {
        let timer = std::fs::read_to_string(normal.join(format!("ubuntu-metrics-{name}.timer")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            timer_setting(&timer, "OnUnitInactiveSec").as_deref(),
            Some(interval)
        );
        assert_eq!(
            timer_setting(&timer, "Unit"),
            Some(format!("ubuntu-metrics@{name}.service"))
        );
        assert!(
            normal
                .join("timers.target.wants")
                .join(format!("ubuntu-metrics-{name}.timer"))
                .exists()
        );
    }
    // The built-in ones are disabled: no timer.
    assert!(!normal.join("ubuntu-metrics-sponsoring.timer").exists());
    // The service the timers start runs `run NAME`: the same command runs
    // the declared collector here.
    let service = std::fs::read_to_string(normal.join("ubuntu-metrics@.service")).unwrap();
    assert!(service.contains("run %i"), "{service}");
    let out = bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "ticker",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn declared_collectors_get_a_grafana_row_and_an_alert() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), &server, "http://127.0.0.1:8086"),
    )
    .unwrap();
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "dashboards", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("  ticker\n    tick [tick]: SELECT last(\"count\")"),
        "{list}"
    );
    assert!(list.contains("  autopkgtest_queues\n"), "{list}");
    let export = dir.path().join("grafana");
    let out = bin()
        .args(["--config", config.to_str().unwrap(), "dashboards", "export"])
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts =
        std::fs::read_to_string(export.join(ubuntu_metrics::ops::dashboards::alerts::FILE))
            .unwrap();
    assert!(alerts.contains("ticker"), "{alerts}");
}
