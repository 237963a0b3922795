//! Declarative HTTP collectors (`[collectors.NAME] type = "http"`, issue
//! 12): the shipped example reproduces the built-in autopkgtest collector's
//! `autopkgtest_queue_size` points from the same fixtures; a bad jq filter
//! is refused when the configuration loads; URLs with credentials are
//! redacted where they are shown; a filter's error names the collector.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn example() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/declared/autopkgtest_queues.toml");
    std::fs::read_to_string(p).unwrap()
}

/// A configuration with every built-in source at the fixture server, the
/// example collector, and its two URLs at the fixture server's autopkgtest
/// documents (through `[sources]`, as any source is overridden).
fn config(dir: &Path, server: &fixture_server::FixtureServer, extra: &str) -> PathBuf {
    let mut sources = toml::Table::new();
    for (k, v) in server.sources().iter() {
        sources.insert(k.to_owned(), v.into());
    }
    sources.insert(
        "autopkgtest_queues_production".into(),
        server.url("autopkgtest/production/queue_size.json").into(),
    );
    sources.insert(
        "autopkgtest_queues_staging".into(),
        server.url("autopkgtest/staging/queue_size.json").into(),
    );
    let mut top = toml::Table::new();
    top.insert("sources".into(), sources.into());
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!("{}\n{}\n{extra}", toml::to_string(&top).unwrap(), example()),
    )
    .unwrap();
    p
}

fn dry_run(config: &Path, name: &str) -> std::process::Output {
    bin()
        .arg("--config")
        .arg(config)
        .args(["run", name, "--dry-run", "--now", NOW])
        .output()
        .unwrap()
}

fn sorted_lines(out: &std::process::Output, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn the_declared_autopkgtest_collector_writes_what_the_built_in_one_writes() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server, "");
    let builtin = dry_run(&cfg, "autopkgtest");
    assert_eq!(
        builtin.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&builtin.stderr)
    );
    let declared = dry_run(&cfg, "autopkgtest_queues");
    assert_eq!(
        declared.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&declared.stderr)
    );
    let want = sorted_lines(&builtin, "autopkgtest_queue_size,");
    let got = sorted_lines(&declared, "");
    assert!(want.len() > 10, "{want:?}");
    assert_eq!(got, want);
    // And both are what the fixture's expected.out says.
    let expected: Vec<String> = expected("autopkgtest/expected.out")
        .into_iter()
        .filter(|l| l.starts_with("autopkgtest_queue_size,"))
        .collect();
    assert_eq!(got, expected);
    // Each of the two runs read the document once.
    let requests = server.path_requests();
    assert_eq!(
        requests.get("autopkgtest/production/queue_size.json"),
        Some(&2),
        "{requests:?}"
    );
}

#[test]
fn a_bad_jq_filter_is_a_configuration_error_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    for (filter, want) in [
        (
            ".[] | {measurement: \"m\", fields: {x: .}",
            "jq syntax error",
        ),
        (".[] | nosuchfunction", "nosuchfunction"),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "[collectors.q]\ntype = \"http\"\nurl = \"https://example.invalid/q.json\"\nfilter = '{filter}'\n[collectors.q.measurements.m]\nfields = {{ x = \"int\" }}\n"
            ),
        )
        .unwrap();
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .arg("list")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{}: collectors.q.filter: ", cfg.display()))
                && stderr.contains(want),
            "{filter}: {stderr}"
        );
    }
}

#[test]
fn formats_credentials_and_filter_errors() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    // A document read as text; the URL carries
    // credentials, which are never shown.
    let csv_url = server
        .url("autopkgtest/production/queue_size.json")
        .replacen("http://", "http://reader:s3cr3t-pw@", 1);
    let extra = format!(
        r#"
[collectors.doc_size]
type = "http"
url = "{csv_url}"
format = "text"
filter = '{{measurement: "doc", tags: {{source: $source}}, fields: {{bytes: length, url: $url}}}}'

[collectors.doc_size.measurements.doc]
tags = ["source"]
fields = {{ bytes = "int", url = "string" }}

[collectors.broken]
type = "http"
url = "{}"
filter = '.ubuntu.tumbling.amd64 + "x"'

[collectors.broken.measurements.doc]
fields = {{ bytes = "int" }}
"#,
        server.url("autopkgtest/production/queue_size.json")
    );
    let cfg = config(dir.path(), &server, &extra);
    let out = dry_run(&cfg, "doc_size");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("doc,source=doc_size bytes="), "{stdout}");
    assert!(
        !stdout.contains("s3cr3t-pw") && stdout.contains("reader:<redacted>@"),
        "{stdout}"
    );
    let shown = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["config", "show"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        !shown.contains("s3cr3t-pw") && shown.contains("doc_size"),
        "{shown}"
    );

    let out = dry_run(&cfg, "broken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken: the filter on http://"), "{stderr}");
    assert!(stderr.contains("jq: "), "{stderr}");
}

/// Hostile filters (issue 22, item 1): each a declared collector reading
/// the production queue document, with what should stop it (the memory
/// one needs a few seconds of a debug build to fill 1 GiB: the run
/// timeout of the test is 10 s).
const HOSTILE: &[(&str, &str, &str)] = &[
    ("h_loop", "def f: f; f", "timed out"),
    ("h_repeat", "repeat(1)", "output limit"),
    ("h_range", "range(1e12)", "output limit"),
    ("h_recurse", "def f: [f]; f", "recursion limit"),
    (
        "h_memory",
        "reduce range(30) as $i (\"x\"; . + .)",
        "memory limit",
    ),
];

/// The `[collectors.NAME]` blocks of [`HOSTILE`], at `url`.
fn hostile_blocks(url: &str, interval: &str) -> String {
    let mut s = String::new();
    for (name, filter, _) in HOSTILE {
        s += &format!(
            "[collectors.{name}]\ntype = \"http\"\ninterval = \"{interval}\"\nurl = \"{url}\"\nfilter = '{filter}'\n[collectors.{name}.measurements.m]\nfields = {{ x = \"int\" }}\n\n"
        );
    }
    s
}

/// The example's points on the fixtures: its lines of the built-in
/// collector's expected output.
fn queue_points() -> usize {
    let n = expected("autopkgtest/expected.out")
        .into_iter()
        .filter(|l| l.starts_with("autopkgtest_queue_size,"))
        .count();
    assert!(n > 10, "{n}");
    n
}

/// Waits for `child` to end within `limit`: its exit status (`None` when
/// killed by a signal) and how long it took, or `Err` (and the child
/// killed) when it did not end.
fn wait_for(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Result<(std::process::ExitStatus, std::time::Duration), std::time::Duration> {
    let started = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Ok((st, started.elapsed()));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(started.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_hostile_filter_fails_its_own_run_and_the_other_collectors_points_are_written() {
    let server = server();
    let db = common::influxd::Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}\n[influxdb]\nurl = \"{}\"\ndatabase = \"{}\"\n\n[spool]\ndir = \"{}\"\n\n[daemon]\nrun_timeout = \"10s\"\n",
        hostile_blocks(&server.url("autopkgtest/production/queue_size.json"), "5m"),
        db.url(),
        common::influxd::DATABASE,
        dir.path().join("spool").display(),
    );
    let cfg = config(dir.path(), &server, &extra);
    let per_run = queue_points();
    let mut failures = Vec::new();
    for (i, (name, filter, why)) in HOSTILE.iter().enumerate() {
        // A minute apart: each run's points are points of their own.
        let now = format!("2026-11-24T12:0{i}:00Z");
        let mut child = bin()
            .arg("--config")
            .arg(&cfg)
            .env("UBUNTU_METRICS_STATE_DIR", dir.path())
            .args(["run", "--now", &now, name, "autopkgtest_queues"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut { stderr }, &mut s);
            s
        });
        let ended = wait_for(&mut child, std::time::Duration::from_secs(30));
        let log = log.join().unwrap();
        let written = db
            .query(&format!(
                "SELECT count(\"count\") FROM autopkgtest_queue_size WHERE time = '{now}'"
            ))
            .pointer("/results/0/series/0/values/0/1")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize;
        let status = match &ended {
            Ok((st, took)) => format!("{st} after {:.2} s", took.as_secs_f64()),
            Err(took) => format!("still running after {:.1} s (killed)", took.as_secs_f64()),
        };
        eprintln!("{name} ({filter}): {status}; {written} of {per_run} points written");
        let said = log
            .lines()
            .any(|l| l.contains(&format!("collector {name} ")) && l.contains(why));
        if !(ended.as_ref().is_ok_and(|(st, _)| st.code() == Some(1)) && written == per_run && said)
        {
            failures.push(format!(
                "{name} ({filter}): {status}, {written} of {per_run} points written, the log names the collector and \"{why}\": {said}\n{log}"
            ));
        }
        // The hostile run is in the self-metrics as a failure too.
        if ended.is_ok() {
            let r = db.query(&format!(
                "SELECT \"status\", \"error\" FROM ubuntu_metrics_run WHERE collector = '{name}' AND time = '{now}'"
            ));
            let r = r.to_string();
            if !(r.contains("error") || r.contains("timeout")) || !r.contains(why) {
                failures.push(format!("{name}: self-metrics {r}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `GET path` on the health endpoint at `addr`: status code and body.
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_owned()))
}

/// The pids of the live `ubuntu-metrics` filter processes whose parent is
/// `parent`.
fn filter_processes(parent: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(parent)
            && !matches!(state, Some("Z" | "X" | "x"))
            && String::from_utf8_lossy(&cmdline).contains("__jq-filter")
        {
            v.push(pid);
        }
    }
    v
}

#[test]
fn under_the_daemon_a_looping_filter_times_out_shows_in_health_and_sigterm_ends_it_in_time() {
    use std::time::{Duration, Instant};
    let server = server();
    let db = common::influxd::Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let grace = Duration::from_secs(2);
    // Only the looping collector (every second) and the example (once:
    // its filter processes are then the looping one's) run.
    let mut off = String::new();
    for c in ubuntu_metrics::collectors::registry() {
        off += &format!("[collectors.{}]\nenabled = false\n", c.name());
    }
    let url = server.url("autopkgtest/production/queue_size.json");
    let extra = format!(
        "[collectors.h_loop]\ntype = \"http\"\ninterval = \"1s\"\nurl = \"{url}\"\nfilter = 'def f: f; f'\n[collectors.h_loop.measurements.m]\nfields = {{ x = \"int\" }}\n\n{off}\n[influxdb]\nurl = \"{}\"\ndatabase = \"{}\"\n\n[daemon]\nstartup_delay = \"0\"\nrandom_delay = \"0\"\nrun_timeout = \"3s\"\nshutdown_grace = \"{}s\"\nlisten = \"{addr}\"\n",
        db.url(),
        common::influxd::DATABASE,
        grace.as_secs(),
    );
    let cfg = config(dir.path(), &server, &extra);
    let log = dir.path().join("daemon.log");
    let mut child = common::daemon::start_daemon(&cfg, &log);

    // The run times out, and /health says so (while the example's points
    // reach InfluxDB).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut health = (0, String::new());
    // The filter processes of the first run (killed at its timeout).
    let mut seen = std::collections::BTreeSet::new();
    while Instant::now() < deadline {
        seen.extend(filter_processes(child.id()));
        if let Ok(h) = get(&addr, "/health") {
            health = h;
            if health.1.contains("failing: h_loop") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let per_run = queue_points();
    let mut points = 0;
    while Instant::now() < deadline {
        points = db.rows("autopkgtest_queue_size").len();
        if points >= per_run {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM while a filter runs (the next run of h_loop, a second after
    // the last one timed out).
    let mut running = Vec::new();
    while Instant::now() < deadline && health.1.contains("failing: h_loop") {
        running = filter_processes(child.id());
        running.retain(|p| !seen.contains(p));
        if !running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    common::daemon::signal(&child, "-TERM");
    let ended = wait_for(&mut child, Duration::from_secs(30));
    let logs = std::fs::read_to_string(&log).unwrap();
    let took = match &ended {
        Ok((st, took)) => format!("{st} after {:.2} s", took.as_secs_f64()),
        Err(took) => format!(
            "still running {:.1} s after SIGTERM (killed)",
            took.as_secs_f64()
        ),
    };
    eprintln!(
        "/health: {} {:?}; {points} of {per_run} points; filter processes at SIGTERM: {running:?}; SIGTERM: {took}",
        health.0, health.1
    );
    assert!(
        health.0 == 503 && health.1.contains("failing: h_loop"),
        "/health never reported h_loop failing: {health:?}\n{logs}"
    );
    assert!(points >= per_run, "{points} of {per_run} points\n{logs}");
    assert!(
        !running.is_empty(),
        "no filter process seen running\n{logs}"
    );
    // The run going at SIGTERM was cancelled at the end of the grace.
    assert!(logs.contains("were abandoned"), "{logs}");
    // The documented bound: shutdown_grace, and a second for the rest.
    let bound = grace + Duration::from_secs(1);
    match ended {
        Ok((st, t)) => assert!(
            st.code() == Some(0) && t <= bound + Duration::from_secs(2),
            "SIGTERM: {took} (bound {bound:?} and 2 s of slack for a loaded machine)\n{logs}"
        ),
        Err(_) => panic!("SIGTERM: {took}\n{logs}"),
    }
    // Nothing of the filter's survives the daemon.
    for pid in running {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
        {
            assert!(
                Instant::now() < deadline,
                "the filter process {pid} outlived the daemon"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(logs.contains("h_loop"), "{logs}");
}
