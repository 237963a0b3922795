//! Bad settings are refused when the configuration loads (issue 10, item
//! 10): by every command, with exit 2 and a message naming the key and the
//! file (or the environment variable), and by the daemon's SIGHUP reload,
//! which keeps the old configuration.

mod common;

use common::bin;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// (configuration, the key the error must name).
const BAD: &[(&str, &str)] = &[
    ("[influxdb]\ndatabase = \"\"\n", "influxdb.database"),
    ("[influxdb]\ntimeout = \"0\"\n", "influxdb.timeout"),
    ("[influxdb]\nbatch_size = 0\n", "influxdb.batch_size"),
    ("[outputs.Big]\nurl = \"http://h:1\"\n", "outputs.Big"),
    (
        "[outputs.influxdb]\nurl = \"http://h:1\"\n",
        "outputs.influxdb",
    ),
    ("[outputs.vm]\ntimeout = \"0\"\n", "outputs.vm.timeout"),
    ("[outputs.vm]\nurl = \"ftp://h\"\n", "outputs.vm.url"),
    (
        "[outputs.vm]\napi = \"v2\"\norg = \"o\"\n",
        "outputs.vm.bucket",
    ),
    ("[influxdb]\napi = \"v2\"\norg = \"o\"\n", "influxdb.bucket"),
    ("[influxdb]\napi = \"v3\"\n", "api"),
    ("[influxdb]\ntoken = \"t\"\n", "influxdb.token"),
    ("[influxdb]\nbatch_size = 1000000\n", "influxdb.batch_size"),
    (
        "[collectors.sponsoring]\ninterval = \"0\"\n",
        "collectors.sponsoring.interval",
    ),
    (
        "[collectors.sponsoring]\ninterval = 0\n",
        "collectors.sponsoring.interval",
    ),
    (
        "[collectors.versions]\ninterval = \"200ms\"\n",
        "collectors.versions.interval",
    ),
    ("[daemon]\nrun_timeout = \"0\"\n", "daemon.run_timeout"),
    ("[daemon]\nlisten = \"localhost:9273\"\n", "daemon.listen"),
    ("[daemon]\nlisten = \"127.0.0.1:99999\"\n", "daemon.listen"),
    ("[http]\ntimeout = \"0\"\n", "http.timeout"),
    ("[http]\nconnect_timeout = \"0s\"\n", "http.connect_timeout"),
    (
        "[http]\nmax_per_host = 18446744073709551615\n",
        "http.max_per_host",
    ),
    ("[http]\nmax_per_host = 100000\n", "http.max_per_host"),
    (
        "[collectors.images]\nrsync_timeout = \"-1s\"\n",
        "collectors.images.rsync_timeout",
    ),
    (
        "[collectors.images]\nrsync_timeout = \"0\"\n",
        "collectors.images.rsync_timeout",
    ),
    (
        "[collectors.images]\nrsync_timeout = true\n",
        "collectors.images.rsync_timeout",
    ),
    (
        "[collectors.contributors]\nteams = \"motu\"\n",
        "collectors.contributors.teams",
    ),
    (
        "[collectors.contributors]\nteams = [\"motu\", \"\"]\n",
        "collectors.contributors.teams",
    ),
    (
        "[collectors.contributors]\nteams = [\"Ubuntu Release\"]\n",
        "collectors.contributors.teams",
    ),
    (
        "[collectors.sponsoring]\nteams = [\"motu\"]\n",
        "collectors.sponsoring.teams",
    ),
];

/// The commands that load the configuration, each given `dir` to write
/// into (only `systemd generate` uses it).
fn commands(dir: &Path) -> Vec<Vec<String>> {
    vec![
        vec!["config".into(), "show".into()],
        vec!["list".into()],
        vec![
            "systemd".into(),
            "generate".into(),
            dir.join("units").to_string_lossy().into_owned(),
        ],
        // Sources point nowhere reachable: a run that starts would fail
        // with exit 1, not 2.
        vec!["run".into(), "--dry-run".into(), "--all".into()],
    ]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_command_refuses_a_bad_value_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    for (text, key) in BAD {
        std::fs::write(&cfg, text).unwrap();
        for args in commands(dir.path()) {
            let out = bin()
                .arg("--config")
                .arg(&cfg)
                .args(&args)
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?} with\n{text}accepted it:\n{err}"
            );
            assert!(
                err.contains(key) && err.contains(cfg.to_str().unwrap()),
                "{args:?} with\n{text}: the error names neither {key} nor the file:\n{err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
        assert!(
            !dir.path().join("units").exists(),
            "systemd generate wrote units for\n{text}"
        );
    }
}

#[test]
fn good_values_are_accepted_an_integer_interval_is_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("good.toml");
    std::fs::write(
        &cfg,
        "[collectors.sponsoring]\ninterval = 90\n\
         [collectors.images]\nrsync_timeout = 20\n\
         [collectors.contributors]\nteams = [\"~motu\", \"ubuntu-sru\"]\n\
         [http]\nmax_per_host = 1024\n",
    )
    .unwrap();
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("sponsoring") && l.split_whitespace().nth(1) == Some("90")),
        "{list}"
    );
    let units = dir.path().join("units");
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["systemd", "generate"])
        .arg(&units)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let timer = std::fs::read_to_string(units.join("ubuntu-metrics-sponsoring.timer")).unwrap();
    assert!(timer.contains("OnUnitInactiveSec=90\n"), "{timer}");
    common::verify_units(&[units.join("ubuntu-metrics-sponsoring.timer")]);
}

#[test]
fn a_bad_environment_variable_is_named_not_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("good.toml");
    std::fs::write(&cfg, "[influxdb]\ndatabase = \"metrics\"\n").unwrap();
    for (var, value) in [
        ("INFLUXDB_HOSTNAME", "bad host name"),
        ("INFLUXDB_DATABASE", "  "),
        ("INFLUXDB_PORT", "http"),
        ("INFLUXDB_USERNAME", " "),
    ] {
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .arg("list")
            .env("INFLUXDB_HOSTNAME", "influx.internal")
            .env(var, value)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{var}={value:?}: {err}");
        assert!(
            err.contains(&format!("environment variable {var}"))
                && !err.contains(cfg.to_str().unwrap()),
            "{var}={value:?}: {err}"
        );
    }
}

#[test]
fn sighup_with_a_bad_option_keeps_the_old_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    // Every collector off: the daemon only waits for signals.
    let mut text = String::from("[influxdb]\nurl = \"http://127.0.0.1:9\"\n");
    for c in ubuntu_metrics::collectors::registry() {
        text.push_str(&format!("[collectors.{}]\nenabled = false\n", c.name()));
    }
    std::fs::write(&cfg, &text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("daemon")
        .env("UBUNTU_METRICS_STATE_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = std::fs::read_to_string(&log).unwrap_or_default();
            if logs.contains(needle) || Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let logs = wait_for("daemon started");
    assert!(logs.contains("daemon started"), "{logs}");

    std::fs::write(
        &cfg,
        text.replace(
            "[collectors.images]\nenabled = false\n",
            "[collectors.images]\nenabled = false\nrsync_timeout = \"-1s\"\n",
        ),
    )
    .unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let logs = wait_for("SIGHUP");
    let alive = child.try_wait().unwrap().is_none();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(alive, "the daemon must survive a bad reload:\n{logs}");
    assert!(
        logs.contains("keeping the old one")
            && logs.contains("collectors.images.rsync_timeout")
            && logs.contains(cfg.to_str().unwrap()),
        "{logs}"
    );
    assert!(!logs.contains("configuration reloaded"), "{logs}");
}
