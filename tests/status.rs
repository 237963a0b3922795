//! `ubuntu-metrics status` as the person on call (and a monitoring check)
//! uses it: real `run` processes against the fixture server and a real
//! influxd record their outcome in the state file; `status` reads it and
//! the spool, and its exit status says whether all is fine (0), something
//! is failing, late or waiting too long in the spool (1), the
//! configuration is bad (2), or nothing has run yet (3).

mod common;

use common::influxd::Influxd;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use ubuntu_metrics::collectors::registry;

fn status(config: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--config")
        .arg(config)
        .arg("status")
        .args(args)
        .output()
        .expect("ubuntu-metrics runs")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(config: &Path, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let out = status(config, &a);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --format json is not JSON ({e}):\n{}\n{}",
            text(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn collector<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["collectors"]
        .as_array()
        .expect("collectors is an array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {doc:#}"))
}

fn run(config: &Path, names: &[&str]) -> Output {
    bin()
        .arg("--config")
        .arg(config)
        .args(["run", "--now", NOW])
        .args(names)
        .output()
        .expect("ubuntu-metrics runs")
}

/// RFC 3339, `days` from now.
fn days_ahead(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

fn hours_ahead(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339()
}

#[test]
fn healthy_run_all_then_status_is_ok_and_late_when_judged_days_later() {
    let server = server_with_rsync();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());

    // Before any run: nothing known yet, said as such (Nagios UNKNOWN).
    let out = status(&config, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).starts_with("UNKNOWN: nothing has run yet"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("never"), "{}", text(&out));

    run_all(&config);
    assert!(dir.path().join("status.json").is_file());

    let out = status(&config, &[]);
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    // As many as the registry has (all enabled): never a number written here.
    let want = format!("OK: {} collectors, ", registry().len());
    assert!(screen.starts_with(&want), "{screen}");
    assert!(!screen.contains('\x1b'), "no colours in a pipe:\n{screen}");
    for c in registry() {
        assert!(screen.contains(c.name()), "{} missing:\n{screen}", c.name());
    }
    assert!(screen.contains("spool "), "{screen}");

    let (code, doc) = json(&config, &[]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["exit_status"], 0);
    assert_eq!(doc["problems"].as_array().unwrap().len(), 0);
    assert_eq!(
        doc["collectors"].as_array().unwrap().len(),
        registry().len()
    );
    for c in registry() {
        let e = collector(&doc, c.name());
        let r = &e["last_run"];
        assert_eq!(r["result"], "ok", "{e:#}");
        assert!(r["points"].as_u64().unwrap() > 0, "{e:#}");
        assert!(r["requests"].is_u64(), "{e:#}");
        assert!(r["duration_seconds"].as_f64().unwrap() >= 0.0, "{e:#}");
        assert!(r["time"].is_string() && r["ended"].is_string(), "{e:#}");
        assert!(r["error"].is_null(), "{e:#}");
        assert_eq!(e["last_success"], r["time"], "{e:#}");
        assert_eq!(e["consecutive_failures"], 0);
        assert_eq!(e["failing"], false);
        assert_eq!(e["late"], false);
        assert_eq!(e["due"], false);
        assert!(e["next_run"].is_string() && e["interval_seconds"].is_u64());
        // Timer-style runs, and no systemd to ask here (nor in CI's
        // container): one interval after the last run.
        if !std::path::Path::new("/run/systemd/system").exists() {
            assert_eq!(e["next_run_source"], "estimate", "{e:#}");
        }
    }
    assert_eq!(doc["spool"]["points"], 0);
    let requests: u64 = doc["collectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["last_run"]["requests"].as_u64().unwrap())
        .sum();
    assert!(requests > 0, "{doc:#}");
    assert_eq!(doc["spool"]["threshold_seconds"], 1800);
    assert!(doc["spool"]["oldest_record"].is_null());

    // Ten minutes later the 5-minute collectors are due, not yet late
    // (late: no run for more than 2 intervals + the 10m run timeout).
    let later = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let (code, doc) = json(&config, &["--now", &later]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(collector(&doc, "sponsoring")["due"], true);
    assert_eq!(collector(&doc, "sponsoring")["late"], false);
    assert_eq!(collector(&doc, "versions")["due"], false);

    // 30 minutes later: the 5-minute ones are late (5m*2 + 10m), the
    // hourly ones are not.
    let later = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let (code, doc) = json(&config, &["--now", &later]);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(collector(&doc, "sponsoring")["late"], true);
    assert_eq!(collector(&doc, "versions")["late"], false);

    // Days later: every collector is late, and the screen says so.
    let out = status(&config, &["--now", &days_ahead(3)]);
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(1), "{screen}");
    assert!(screen.starts_with("WARNING: late: "), "{screen}");
    assert!(screen.contains("LATE (no run for 3d"), "{screen}");
    let (_, doc) = json(&config, &["--now", &days_ahead(3)]);
    for c in registry() {
        assert_eq!(collector(&doc, c.name())["late"], true, "{}", c.name());
    }
    // A disabled collector is not reported (nor late).
    let cfg =
        std::fs::read_to_string(&config).unwrap() + "\n[collectors.versions]\nenabled = false\n";
    std::fs::write(&config, cfg).unwrap();
    let (_, doc) = json(&config, &[]);
    assert!(
        doc["collectors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "versions")
    );
}

#[test]
fn a_failing_collector_is_reported_with_its_error_until_it_succeeds() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), &server, &db.url());
    let text_ok = std::fs::read_to_string(&good).unwrap();
    let bad = dir.path().join("bad.toml");
    let mut c: toml::Table = toml::from_str(&text_ok).unwrap();
    c["sources"]["sponsoring"] = toml::Value::String(server.url("nowhere.json"));
    std::fs::write(&bad, toml::to_string(&c).unwrap()).unwrap();

    assert_eq!(run(&good, &["sponsoring"]).status.code(), Some(0));
    for _ in 0..2 {
        let out = run(&bad, &["sponsoring"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(run(&good, &["britney"]).status.code(), Some(0));

    let out = status(&good, &[]);
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(1), "{screen}");
    assert!(
        screen.starts_with("WARNING: failing: sponsoring\n"),
        "{screen}"
    );
    assert!(
        screen.contains("sponsoring: 2 failed runs in a row; last error: ")
            && screen.contains("nowhere.json")
            && screen.contains("404"),
        "{screen}"
    );

    let (code, doc) = json(&good, &[]);
    assert_eq!(code, 1);
    let s = collector(&doc, "sponsoring");
    assert_eq!(s["failing"], true);
    assert_eq!(s["consecutive_failures"], 2);
    assert_eq!(s["last_run"]["result"], "error");
    assert_eq!(s["last_run"]["points"], 0);
    let err = s["last_run"]["error"].as_str().unwrap();
    assert!(err.contains("404") && err.len() <= 320, "{err}");
    // The last success is the first (good) run, before the failures.
    assert!(s["last_success"].as_str().unwrap() <= s["last_run"]["time"].as_str().unwrap());
    assert_eq!(collector(&doc, "britney")["failing"], false);
    // Collectors that never ran are neither failing nor late.
    assert!(collector(&doc, "versions")["last_run"].is_null());
    assert_eq!(collector(&doc, "versions")["failing"], false);

    // Fixed: the next good run clears the failure.
    assert_eq!(run(&good, &["sponsoring"]).status.code(), Some(0));
    let (code, doc) = json(&good, &[]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(collector(&doc, "sponsoring")["consecutive_failures"], 0);

    // A dry run records nothing.
    let before = std::fs::read(dir.path().join("status.json")).unwrap();
    let out = bin()
        .arg("--config")
        .arg(&bad)
        .args(["run", "--now", NOW, "--dry-run", "sponsoring"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(dir.path().join("status.json")).unwrap(),
        before
    );
}

#[test]
fn points_waiting_in_the_spool_fail_once_older_than_the_threshold() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(dir.path(), &server, &format!("http://127.0.0.1:{closed}"));
    let out = run(&config, &["sponsoring"]);
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Just spooled: shown, not (yet) a problem.
    let out = status(&config, &[]);
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(screen.contains(" points waiting in "), "{screen}");
    let (_, doc) = json(&config, &[]);
    let spooled = doc["spool"]["points"].as_u64().unwrap();
    assert!(spooled > 0, "{doc:#}");
    assert!(doc["spool"]["records"].as_u64().unwrap() > 0);
    assert!(doc["spool"]["oldest_record"].is_string());
    assert_eq!(doc["spool"]["too_old"], false);

    // 19 minutes later (sponsoring, every 5m, is not late yet): within
    // the 30m default threshold, but older than a 15m one.
    let later = (chrono::Utc::now() + chrono::Duration::minutes(19)).to_rfc3339();
    let (code, doc) = json(&config, &["--now", &later]);
    assert_eq!(code, 0, "{doc:#}");
    let (code, doc) = json(&config, &["--now", &later, "--spool-age", "15m"]);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["spool"]["too_old"], true);
    assert_eq!(doc["spool"]["threshold_seconds"], 900);
    let problems = doc["problems"].to_string();
    assert!(problems.contains("waiting in the spool"), "{problems}");
    let out = status(&config, &["--now", &later, "--spool-age", "15m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).starts_with(&format!(
            "WARNING: {spooled} points waiting in the spool for 19m (more than 15m)"
        )),
        "{}",
        text(&out)
    );
    // An hour later: older than the default threshold too.
    let (code, doc) = json(&config, &["--now", &hours_ahead(1)]);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["spool"]["too_old"], true);
}

#[test]
fn concurrent_timer_style_runs_keep_every_entry_in_a_valid_file() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    // Eight timers firing at once: sponsoring four times, and four other
    // collectors, each a read-modify-write of the same file.
    let names = [
        "sponsoring",
        "sponsoring",
        "britney",
        "sponsoring",
        "upload_queues",
        "sponsoring",
        "autopkgtest",
        "versions",
    ];
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            bin()
                .arg("--config")
                .arg(&config)
                .args(["run", "--now", NOW, n])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (c, n) in children.into_iter().zip(names) {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("status.json")).unwrap())
            .expect("the state file is valid JSON");
    for n in names {
        assert_eq!(
            file["collectors"][n]["last_run"]["result"], "ok",
            "{n} lost: {file:#}"
        );
    }
    assert_eq!(file["collectors"].as_object().unwrap().len(), 5);
    // No temporary file is left behind.
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn a_bad_configuration_or_state_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[daemon]\nrun_timeout = \"soon\"\n").unwrap();
    let out = status(&config, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run_timeout"));

    std::fs::write(
        &config,
        format!("[spool]\ndir = \"{}/spool\"\n", dir.path().display()),
    )
    .unwrap();
    let out = status(&config, &["--spool-age", "a while"]);
    assert_eq!(out.status.code(), Some(2));

    std::fs::write(dir.path().join("status.json"), "{ torn").unwrap();
    let out = status(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let screen = text(&out);
    assert!(
        screen.contains("status.json") && screen.contains("not valid"),
        "{screen}"
    );

    // $UBUNTU_METRICS_STATE_DIR moves the state file.
    let other = tempfile::tempdir().unwrap();
    let (code, doc) = {
        let out = bin()
            .env("UBUNTU_METRICS_STATE_DIR", other.path())
            .arg("--config")
            .arg(&config)
            .args(["status", "--format", "json"])
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        )
    };
    // (An empty state directory: nothing has run there yet.)
    assert_eq!(code, Some(3), "{doc:#}");
    assert_eq!(
        doc["state_file"],
        other.path().join("status.json").display().to_string()
    );
}

#[test]
fn the_daemon_records_every_run_and_status_names_the_broken_upstream() {
    let server = server_with_rsync();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["sources"]["sponsoring"] = toml::Value::String(server.url("nowhere.json"));
    let mut daemon = toml::Table::new();
    daemon.insert("startup_delay".into(), "0".into());
    daemon.insert("random_delay".into(), "0".into());
    daemon.insert("shutdown_grace".into(), "5s".into());
    c.insert("daemon".into(), toml::Value::Table(daemon));
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();

    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Every collector runs at once (no delays): wait for their entries.
    let file = dir.path().join("status.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let recorded = loop {
        let n = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map_or(0, |v| v["collectors"].as_object().map_or(0, |m| m.len()));
        // ... and for the daemon's schedule of their next runs.
        let scheduled = std::fs::read(dir.path().join("schedule.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map_or(0, |v| v["due"].as_object().map_or(0, |m| m.len()));
        if (n == registry().len() && scheduled == n) || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = status(&config, &[]);
    let (code, doc) = json(&config, &[]);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(recorded, registry().len(), "the daemon recorded every run");
    // The next runs are the daemon's due times: one interval after each run
    // ended (no random delay here).
    let now = chrono::Utc::now();
    for c in registry() {
        let e = collector(&doc, c.name());
        assert_eq!(e["next_run_source"], "daemon", "{e:#}");
        let next: chrono::DateTime<chrono::Utc> = e["next_run"].as_str().unwrap().parse().unwrap();
        let ended: chrono::DateTime<chrono::Utc> =
            e["last_run"]["ended"].as_str().unwrap().parse().unwrap();
        let interval = chrono::Duration::seconds(e["interval_seconds"].as_i64().unwrap());
        assert!(
            (next - (ended + interval)).num_seconds().abs() <= 2 && next > now,
            "{}: next {next}, ended {ended}",
            c.name()
        );
    }
    assert!(text(&out).contains("(daemon)"), "{}", text(&out));
    // Stopped, the daemon takes its schedule with it: estimates again.
    assert!(!dir.path().join("schedule.json").exists());
    let (_, after) = json(&config, &[]);
    assert_eq!(collector(&after, "britney")["next_run_source"], "estimate");
    let screen = text(&out);
    println!("{screen}");
    assert_eq!(out.status.code(), Some(1), "{screen}");
    assert!(
        screen.starts_with("WARNING: failing: sponsoring\n"),
        "{screen}"
    );
    assert_eq!(code, 1);
    for c in registry() {
        let e = collector(&doc, c.name());
        let want = if c.name() == "sponsoring" {
            "error"
        } else {
            "ok"
        };
        assert_eq!(e["last_run"]["result"], want, "{e:#}");
        assert_eq!(e["late"], false);
    }
}

#[test]
fn colours_on_a_terminal_unless_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[spool]\ndir = \"{}/spool\"\n", dir.path().display()),
    )
    .unwrap();
    // `script` runs the command on a pseudo-terminal and copies its screen.
    let on_terminal = |no_color: Option<&str>| {
        let cmd = format!(
            "'{}' --config '{}' status",
            env!("CARGO_BIN_EXE_ubuntu-metrics"),
            config.display()
        );
        let mut c = std::process::Command::new("script");
        clean_env(&mut c)
            .args(["-qec", &cmd, "/dev/null"])
            .env("TERM", "xterm-256color")
            .stdin(std::process::Stdio::null());
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = c
            .output()
            .expect("util-linux `script` runs (sudo apt-get install util-linux)");
        // A station where nothing ran yet: UNKNOWN (Nagios 3).
        assert_eq!(out.status.code(), Some(3));
        text(&out)
    };
    let screen = on_terminal(None);
    assert!(screen.contains("\x1b[33mUNKNOWN\x1b[0m: "), "{screen:?}");
    let screen = on_terminal(Some("1"));
    assert!(
        screen.contains("UNKNOWN: ") && !screen.contains('\x1b'),
        "{screen:?}"
    );
}

/// A station that has never run anything is not "OK": there is nothing
/// to judge yet. `status` says so (Nagios UNKNOWN, exit 3) in its text
/// and its JSON, and the first run makes it OK (issue 24 item 8).
#[test]
fn a_station_where_nothing_ran_yet_is_unknown_not_ok() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    let out = status(&config, &[]);
    let first = text(&out).lines().next().unwrap_or_default().to_owned();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(
        first,
        format!(
            "UNKNOWN: nothing has run yet ({} collectors enabled); 0 points in the spool",
            registry().len()
        )
    );
    let (code, doc) = json(&config, &[]);
    assert_eq!(code, 3);
    assert_eq!(doc["verdict"], "UNKNOWN");
    assert_eq!(doc["exit_status"], 3);
    assert_eq!(doc["status"], "unknown");
    assert_eq!(doc["problems"], serde_json::json!([]));

    // One collector ran (a dry run records nothing): judged on it.
    let out = run(&config, &["versions"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let (code, doc) = json(&config, &["--now", NOW]);
    assert_eq!(
        (code, &doc["verdict"]),
        (0, &serde_json::json!("OK")),
        "{doc}"
    );
}

/// A spool `status` may read but not lock (the lock file cannot be
/// opened for writing: a read-only state directory, another user's
/// spool): the points waiting are still counted, read without the lock,
/// and the figure is said to be possibly stale, in JSON and in text.
#[test]
fn a_spool_that_cannot_be_locked_is_read_without_the_lock_and_said_stale() {
    use std::os::unix::fs::PermissionsExt;
    use ubuntu_metrics::sinks::{Batch, spool::Spool};
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "http://127.0.0.1:9");
    let spool_dir = dir.path().join("spool");
    let lines: Vec<String> = (0..4001)
        .map(|i| format!("m v={i}i {}", 1_795_521_600_000_000_000i64 + i))
        .collect();
    Spool::open(&spool_dir, 100 << 20)
        .unwrap()
        .append(&[Batch {
            label: "sponsoring".into(),
            lines,
        }])
        .unwrap();
    let (_, doc) = json(&config, &[]);
    assert_eq!(doc["spool"]["points"], 4001, "{doc:#}");
    assert_ne!(doc["spool"]["stale"], true, "{doc:#}");

    // The lock cannot be opened, even by root: a directory in its place.
    let lock = spool_dir.join(".lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let before: Vec<_> = std::fs::read_dir(&spool_dir).unwrap().collect();
    let (_, doc) = json(&config, &[]);
    assert_eq!(doc["spool"]["points"], 4001, "{doc:#}");
    assert_eq!(doc["spool"]["records"], 1, "{doc:#}");
    assert_eq!(doc["spool"]["stale"], true, "{doc:#}");
    assert_eq!(doc["outputs"][0]["points"], 4001, "{doc:#}");
    assert_eq!(doc["outputs"][0]["stale"], true, "{doc:#}");
    assert!(
        doc["spool"]["stale_reason"]
            .as_str()
            .is_some_and(|r| r.contains(".lock")),
        "{doc:#}"
    );
    let out = status(&config, &[]);
    let t = text(&out);
    assert!(
        t.contains("4001 points waiting") && t.contains("may be stale"),
        "{t}"
    );
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["spool", "status"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("\npoints: 4001\n") && t.contains("may be stale"),
        "{t}"
    );
    let after: Vec<_> = std::fs::read_dir(&spool_dir).unwrap().collect();
    assert_eq!(
        before.len(),
        after.len(),
        "a read-only look changes nothing"
    );

    // The real thing: another user, who may read the spool but not write
    // in it (needs root to become nobody; the check above runs anyway).
    std::fs::remove_dir(&lock).unwrap();
    std::fs::write(&lock, "").unwrap();
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the check as user nobody is skipped");
        return;
    }
    let exe = dir.path().join("ubuntu-metrics");
    std::fs::copy(env!("CARGO_BIN_EXE_ubuntu-metrics"), &exe).unwrap();
    for entry in walk(dir.path()) {
        let mode = if entry.is_dir() || entry == exe {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut c = std::process::Command::new(&exe);
    clean_env(&mut c);
    use std::os::unix::process::CommandExt;
    // SAFETY: setgid/setuid between fork and exec, async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = c
        .arg("--config")
        .arg(&config)
        .args(["status", "--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            text(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(doc["spool"]["points"], 4001, "{doc:#}");
    assert_eq!(doc["spool"]["stale"], true, "{doc:#}");
}

/// Every entry under `dir` (and `dir`).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_owned()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `started` (field 22 of /proc/PID/stat: clock ticks after boot) of `pid`.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    // Fields from the third on: the 22nd is the 20th here.
    after_name.split(' ').nth(19).unwrap().parse().unwrap()
}

/// Issue 22 item 11: `status` trusts `schedule.json` only while the process
/// it names is the daemon that wrote it (its pid, start time and boot), and
/// a due time no schedule can give (years ago, 355,043 days away) not even
/// then: those collectors get the estimate.
#[test]
fn a_stale_or_absurd_schedule_is_not_trusted() {
    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    for c in ["sponsoring", "versions"] {
        assert_eq!(run(&config, &[c]).status.code(), Some(0));
    }
    let schedule = dir.path().join("schedule.json");
    let far = (chrono::Utc::now() + chrono::Duration::days(355_043)).to_rfc3339();
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(2)).to_rfc3339();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned();
    // A process that lives, which is not the daemon.
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = other.id();
    let sources = |doc: &Value| -> (String, String, bool) {
        (
            collector(doc, "sponsoring")["next_run_source"]
                .as_str()
                .unwrap_or("-")
                .to_owned(),
            collector(doc, "versions")["next_run_source"]
                .as_str()
                .unwrap_or("-")
                .to_owned(),
            collector(doc, "sponsoring")["due"].as_bool().unwrap(),
        )
    };
    let mut seen = Vec::new();
    let cases = [
        // The file: pid 1 (alive: init), no start time.
        (
            "pid 1",
            serde_json::json!({"pid": 1, "due": {"sponsoring": "2020-01-01T00:00:00Z", "versions": far}}),
            false,
        ),
        // A live process, the start time of another.
        (
            "wrong start",
            serde_json::json!({"pid": pid, "started": start_time(pid) + 1, "boot_id": boot_id, "due": {"sponsoring": soon, "versions": soon}}),
            false,
        ),
        // The same, written before the last boot.
        (
            "other boot",
            serde_json::json!({"pid": pid, "started": start_time(pid), "boot_id": "00000000-0000-0000-0000-000000000000", "due": {"sponsoring": soon, "versions": soon}}),
            false,
        ),
        // The process it names, as written: trusted.
        (
            "genuine",
            serde_json::json!({"pid": pid, "started": start_time(pid), "boot_id": boot_id, "due": {"sponsoring": soon, "versions": soon}}),
            true,
        ),
    ];
    for (what, file, trusted) in cases {
        std::fs::write(&schedule, serde_json::to_vec(&file).unwrap()).unwrap();
        let (code, doc) = json(&config, &[]);
        let got = sources(&doc);
        seen.push(format!("{what}: {got:?} (exit {code})"));
        let want = if trusted { "daemon" } else { "estimate" };
        if got.0 != want || got.1 != want || got.2 {
            seen.push(format!("  ^ wanted {want} for both, not due:\n{doc:#}"));
        }
    }
    // The process is the writer, but the due times are absurd: not those.
    let genuine = serde_json::json!({"pid": pid, "started": start_time(pid), "boot_id": boot_id, "due": {"sponsoring": "2020-01-01T00:00:00Z", "versions": far}});
    std::fs::write(&schedule, serde_json::to_vec(&genuine).unwrap()).unwrap();
    let (_, doc) = json(&config, &[]);
    let got = sources(&doc);
    let screen = text(&status(&config, &[]));
    seen.push(format!("genuine, absurd times: {got:?}"));
    if got != ("estimate".into(), "estimate".into(), false) || screen.contains("355043d") {
        seen.push(format!("  ^ wanted estimates:\n{screen}"));
    }
    let _ = other.kill();
    let _ = other.wait();
    let report = seen.join("\n");
    println!("{report}");
    assert!(!report.contains("^ wanted"), "{report}");
}

/// Issue 22 item 11: the daemon's schedule that cannot be written is a
/// warning in the log (once), not a debug line nobody sees.
#[test]
fn a_schedule_that_cannot_be_written_is_a_warning_once() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = write_config(dir.path(), &server, &format!("http://{refused}"));
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let mut daemon = toml::Table::new();
    // Nothing runs: the schedule is written at start.
    daemon.insert("startup_delay".into(), "1h".into());
    c.insert("daemon".into(), toml::Value::Table(daemon));
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();
    // A directory where the file goes: every write of it fails.
    std::fs::create_dir(dir.path().join("schedule.json")).unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = common::daemon::start_daemon(&config, &log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // The schedule is written (for every collector) before this line.
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("daemon started")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    common::daemon::signal(&child, "-TERM");
    common::daemon::wait_exit(&mut child, std::time::Duration::from_secs(30));
    let logs = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("schedule.json"))
        .collect();
    println!("warnings naming schedule.json: {}", warnings.len());
    assert_eq!(warnings.len(), 1, "{logs}");
}

/// Every key of `status --format json` (at every level: the collectors,
/// their last run, the spool, each output, systemd's units when it could
/// be asked) is named in the README's paragraph on it (issue 24, item 9:
/// `outputs` was not).
#[test]
fn every_key_of_the_json_is_named_in_the_readme() {
    fn keys(v: &Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    out.insert(k.clone());
                    keys(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("`--format json` prints one object")
        .expect("README: the paragraph on status --format json");
    let end = start + readme[start..].find("\n\n").expect("the paragraph ends");
    let paragraph = &readme[start..end];

    let server = server();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &db.url());
    let out = run(&config, &["versions"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, doc) = json(&config, &[]);
    let mut all = std::collections::BTreeSet::new();
    keys(&doc, &mut all);
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| !paragraph.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of status --format json the README does not name: {missing:?}\n{doc:#}"
    );
}
