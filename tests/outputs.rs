//! Several outputs at once (`[influxdb]` and `[outputs.NAME]`): a real
//! influxd and a real VictoriaMetrics take every point of the same runs;
//! an output that is down keeps its points in its own spool while the
//! other gets them on time, and gets them once it is back.

mod common;

use common::influxd::Influxd;
use common::victoria::Victoria;
use common::victoria::{expected_lines, same, samples};
use common::*;
use influxdb_line_protocol::parse_lines;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The fixture configuration writing to `db` and to `vm` (output `vm`).
fn config(
    dir: &Path,
    server: &fixture_server::FixtureServer,
    db: &Influxd,
    vm: &Victoria,
) -> PathBuf {
    let config = write_config(dir, server, &db.url());
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let mut vm_out = toml::Table::new();
    vm_out.insert("url".into(), vm.url().into());
    vm_out.insert("database".into(), "metrics".into());
    let mut outputs = toml::Table::new();
    outputs.insert("vm".into(), toml::Value::Table(vm_out));
    c.insert("outputs".into(), toml::Value::Table(outputs));
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();
    config
}

fn run(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What VictoriaMetrics holds of the collectors' measurements.
fn stored(vm: &Victoria) -> BTreeMap<(String, i64), f64> {
    vm.export()
        .into_iter()
        .filter(|(name, _, _)| !name.starts_with("ubuntu_metrics_"))
        .map(|(name, t, v)| ((name, t), v))
        .collect()
}

#[test]
fn run_all_writes_every_point_into_influxd_and_victoria_metrics_at_once() {
    let server = server_with_rsync();
    let db = Influxd::start();
    let vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, &db, &vm);

    let (code, _, err) = run(&config, &["run", "--now", NOW, "--all"]);
    assert_eq!(code, Some(0), "{err}");

    let mut lines = Vec::new();
    for c in ubuntu_metrics::collectors::registry() {
        lines.extend(expected_lines(c.name()));
    }
    same(&stored(&vm), &samples(&lines, 0));
    // And in influxd: each measurement with its rows.
    let mut keys: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for l in &lines {
        let p = parse_lines(l).next().unwrap().unwrap();
        keys.entry(p.series.measurement.to_string())
            .or_default()
            .insert(format!("{} {}", p.series, p.timestamp.unwrap()));
    }
    for (m, k) in keys {
        assert_eq!(db.rows(&m).len(), k.len(), "{m} in influxd");
    }
    // Each output holds the self-metrics of its own writes and spool.
    let outputs: std::collections::BTreeSet<String> = db
        .rows("ubuntu_metrics_write")
        .iter()
        .map(|r| r["output"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outputs, ["influxdb".to_owned()].into());
    assert!(
        vm.export()
            .iter()
            .any(|(name, _, _)| name
                .starts_with("ubuntu_metrics_write_points{outcome=ok,output=vm}")),
        "vm's writes in vm"
    );
}

#[test]
fn an_output_that_is_down_keeps_its_points_in_its_own_spool_and_gets_them_later() {
    let server = server();
    let db = Influxd::start();
    let mut vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, &db, &vm);
    let versions = expected_lines("versions");

    // VictoriaMetrics killed: influxd gets the run, vm's copy waits.
    vm.stop();
    let (code, _, err) = run(&config, &["run", "--now", NOW, "versions"]);
    assert_eq!(code, Some(75), "{err}");
    // Every message about vm names it as the configuration does, and
    // none calls it InfluxDB (issue 24 item 7).
    assert!(
        err.contains("[outputs.vm] could not take the points now: cannot reach http://"),
        "messages name the output: {err}"
    );
    for l in err.lines().filter(|l| l.contains(&vm.url())) {
        assert!(l.contains("[outputs.vm]"), "not named: {l}\n{err}");
        assert!(!l.contains("InfluxDB"), "vm called InfluxDB: {l}\n{err}");
    }
    assert_eq!(db.rows("versions_script_stats").len(), versions.len());

    let (code, out, _) = run(&config, &["spool", "status"]);
    assert_eq!(code, Some(0));
    let blocks: Vec<BTreeMap<&str, &str>> = out
        .split("\n\n")
        .map(|b| b.lines().filter_map(|l| l.split_once(": ")).collect())
        .collect();
    assert_eq!(blocks.len(), 2, "{out}");
    assert_eq!(
        (blocks[0]["output"], blocks[0]["points"]),
        ("influxdb", "0")
    );
    assert_eq!(blocks[1]["output"], "vm");
    assert!(
        blocks[1]["points"].parse::<u64>().unwrap() > versions.len() as u64,
        "{out}"
    );
    assert!(blocks[1]["dir"].ends_with("spool-vm"), "{out}");

    let (code, out, _) = run(&config, &["status", "--format", "json"]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, Some(0), "waiting less than 30 minutes is fine: {out}");
    assert_eq!(doc["outputs"][0]["points"], 0);
    assert!(doc["outputs"][1]["points"].as_u64().unwrap() > 0);

    // Back: the next run writes vm's backlog and its own points; influxd
    // has each point once.
    vm.restart();
    let later = "2026-11-24T13:00:00Z";
    let (code, _, err) = run(&config, &["run", "--now", later, "versions"]);
    assert_eq!(code, Some(0), "{err}");
    // One line per delivery: influxd's, and vm's with its backlog.
    let wrote: Vec<&str> = err.lines().filter(|l| l.contains("wrote")).collect();
    assert_eq!(wrote.len(), 2, "{err}");
    assert!(
        wrote.iter().any(|l| l.contains("[influxdb]: wrote ")),
        "{err}"
    );
    assert!(
        wrote.iter().any(|l| l.contains("[outputs.vm]: wrote ")
            && l.contains("kept in the spool by earlier runs")),
        "{err}"
    );
    let mut want = samples(&versions, 0);
    want.extend(samples(&versions, 3_600_000));
    same(&stored(&vm), &want);
    assert_eq!(db.rows("versions_script_stats").len(), 2 * versions.len());
    let (_, out, _) = run(&config, &["spool", "status"]);
    assert!(
        !out.contains("\npoints: 1") && out.matches("points: 0").count() == 2,
        "{out}"
    );
}

/// The daemon: one delivery task per output. VictoriaMetrics killed for a
/// few seconds: versions keeps its 1 s rhythm into influxd meanwhile, and
/// once VictoriaMetrics is back its backlog arrives: both hold the same
/// points.
#[test]
fn under_the_daemon_an_output_down_delays_nothing_and_catches_up() {
    use std::time::{Duration, Instant};
    let server = server();
    let db = Influxd::start();
    let mut vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, &db, &vm);
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let mut daemon = toml::Table::new();
    for (k, v) in [
        ("startup_delay", "0"),
        ("random_delay", "0"),
        ("shutdown_grace", "10s"),
    ] {
        daemon.insert(k.into(), v.into());
    }
    c.insert("daemon".into(), toml::Value::Table(daemon));
    let mut collectors = toml::Table::new();
    for col in ubuntu_metrics::collectors::registry() {
        let mut t = toml::Table::new();
        if col.name() == "versions" {
            t.insert("interval".into(), "1s".into());
        } else {
            t.insert("enabled".into(), false.into());
        }
        collectors.insert(col.name().into(), toml::Value::Table(t));
    }
    c.insert("collectors".into(), toml::Value::Table(collectors));
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();

    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let rows = || db.rows("versions_script_stats").len();
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("a first run in influxd", &|| rows() > 0);

    vm.stop();
    let before = rows();
    // influxd keeps getting the runs while vm is down: two more runs' rows
    // (waited for, not slept for: a loaded machine runs slower).
    wait_for("influxd kept getting the runs while vm was down", &|| {
        rows() >= before + 2 * 7
    });
    let during = rows();

    vm.restart();
    // vm's delivery task retries with a growing backoff: its backlog
    // arrives within a few seconds of its return.
    let in_vm = |vm: &Victoria| {
        vm.export()
            .iter()
            .filter(|(n, _, _)| n.starts_with("versions_script_stats_count"))
            .count()
    };
    wait_for("vm's backlog after its return", &|| in_vm(&vm) >= during);

    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();

    // The last run before SIGTERM may still be in vm's spool (its delivery
    // task is behind influxd's on a loaded machine): flush it, then compare.
    let (code, out, err) = run(&config, &["spool", "flush"]);
    assert_eq!(code, Some(0), "{out}{err}");

    // Both hold the same points: every run, each once.
    let in_influxd: std::collections::BTreeSet<(String, i64)> = db
        .rows("versions_script_stats")
        .iter()
        .map(|r| {
            let name = format!(
                "versions_script_stats_count{{category={},report={},series={}}}",
                r["category"].as_str().unwrap(),
                r["report"].as_str().unwrap(),
                r["series"].as_str().unwrap()
            );
            (name, r["time"].as_i64().unwrap() / 1_000_000)
        })
        .collect();
    let export = || -> std::collections::BTreeSet<(String, i64)> {
        vm.export()
            .into_iter()
            .filter(|(n, _, _)| n.starts_with("versions_script_stats_count"))
            .map(|(n, t, _)| (n, t))
            .collect()
    };
    // VictoriaMetrics makes a write searchable a little after its 204.
    wait_for("vm shows every point influxd holds", &|| {
        export().len() >= in_influxd.len()
    });
    assert_eq!(in_influxd.len(), rows(), "one row per point in influxd");
    assert_eq!(export(), in_influxd, "{log}");
}

/// A loopback proxy in front of VictoriaMetrics: it forwards the first
/// `pass` write requests, then holds every later one open without a word
/// (the write in flight when the writer is killed) until `open` is set;
/// from then on it forwards every request.
struct Gate {
    port: u16,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Lines of the measurement watched VictoriaMetrics took (answered
    /// 2xx), as sent.
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    fn start(vm_port: u16, pass: usize, measurement: &'static str) -> Gate {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (h, o, n) = (held.clone(), open.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let mut headers = Vec::new();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 {
                        break;
                    }
                    let h = h.trim_end().to_owned();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        } else if k.eq_ignore_ascii_case("content-encoding")
                            || k.eq_ignore_ascii_case("content-type")
                        {
                            headers.push(h.clone());
                        }
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                if !o.load(Ordering::SeqCst) && seen.fetch_add(1, Ordering::SeqCst) >= pass {
                    kept.push(conn);
                    h.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                // Forwarded whole, one request per connection.
                let mut up = std::net::TcpStream::connect(("127.0.0.1", vm_port)).unwrap();
                let mut req = format!(
                    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{vm_port}\r\nContent-Length: {len}\r\nConnection: close\r\n"
                );
                for h in &headers {
                    req.push_str(h);
                    req.push_str("\r\n");
                }
                req.push_str("\r\n");
                up.write_all(req.as_bytes()).unwrap();
                up.write_all(&body).unwrap();
                let mut answer = Vec::new();
                up.read_to_end(&mut answer).unwrap();
                let text = String::from_utf8_lossy(&answer);
                let status = text
                    .lines()
                    .next()
                    .and_then(|l| l.split_once(' '))
                    .map_or("502 Bad Gateway".to_owned(), |(_, s)| s.trim().to_owned());
                if status.starts_with('2') {
                    let gzip = headers
                        .iter()
                        .any(|h| h.to_ascii_lowercase().contains("gzip"));
                    let mut plain = String::new();
                    if gzip {
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_string(&mut plain)
                            .unwrap();
                    } else {
                        plain = String::from_utf8_lossy(&body).into_owned();
                    }
                    let lines = plain
                        .lines()
                        .filter(|l| l.split(',').next() == Some(measurement))
                        .count();
                    n.fetch_add(lines, Ordering::SeqCst);
                }
                let rest = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                let out = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{rest}",
                    rest.len()
                );
                let mut w = &conn;
                let _ = w.write_all(out.as_bytes());
            }
        });
        Gate {
            port,
            held,
            open,
            sent,
        }
    }
}

/// The fixture configuration writing (`[influxdb]`) through `gate`,
/// `batch_size` lines a request.
fn gated_config(
    dir: &Path,
    server: &fixture_server::FixtureServer,
    gate: &Gate,
    batch_size: i64,
) -> PathBuf {
    let config = write_config(dir, server, &format!("http://127.0.0.1:{}", gate.port));
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["influxdb"]
        .as_table_mut()
        .unwrap()
        .insert("batch_size".into(), batch_size.into());
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();
    config
}

/// A spool record of several batches, and the process delivering it
/// killed (SIGKILL) while a batch is in flight, after some were written:
/// the next flush goes on from the first batch not delivered, so
/// VictoriaMetrics (which keeps duplicate samples: no dedup without
/// `-dedup.minScrapeInterval`) holds each point once.
#[test]
fn a_flush_killed_mid_record_resumes_after_the_batches_it_delivered() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    use ubuntu_metrics::sinks::{Batch, spool::Spool};
    let server = server();
    let vm = Victoria::start();
    // 5 lines a request: 2 records of 20 lines, 8 requests; the 6th (the
    // second batch of the second record) is held, then the process killed.
    let gate = Gate::start(vm.port, 5, "resume_test");
    let dir = tempfile::tempdir().unwrap();
    let config = gated_config(dir.path(), &server, &gate, 5);
    let base: i64 = 1_795_521_600_000_000_000;
    let lines = |part: &str, from: i64| -> Vec<String> {
        (from..from + 20)
            .map(|i| {
                format!(
                    "resume_test,part={part} v={i}i {}",
                    base + i * 1_000_000_000
                )
            })
            .collect()
    };
    let spool = Spool::open(&dir.path().join("spool"), 1 << 20).unwrap();
    spool
        .append(&[
            Batch {
                label: "a".into(),
                lines: lines("a", 0),
            },
            Batch {
                label: "b".into(),
                lines: lines("b", 20),
            },
        ])
        .unwrap();
    drop(spool);

    let mut flush = bin()
        .arg("--config")
        .arg(&config)
        .args(["spool", "flush"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while gate.held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the 6th write never came");
        assert!(
            flush.try_wait().unwrap().is_none(),
            "the flush ended before its 6th write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    flush.kill().unwrap();
    flush.wait().unwrap();
    // What VictoriaMetrics stores, once it shows every line it took (it
    // makes them searchable a little after its answer).
    let count = || {
        let sent = gate.sent.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = vm
                .export()
                .iter()
                .filter(|(n, _, _)| n.starts_with("resume_test_v"))
                .count();
            if n >= sent || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(count(), 25, "5 batches of 5 delivered before the kill");
    // What waits: the 15 points not delivered.
    let (code, waiting, err) = run(&config, &["spool", "status"]);
    assert_eq!(code, Some(0), "{err}");

    gate.open.store(true, Ordering::SeqCst);
    let (code, out, err) = run(&config, &["spool", "flush"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // Raw samples (the export API does not deduplicate): each point once.
    assert_eq!(
        count(),
        40,
        "samples in VictoriaMetrics for 40 points after a flush killed mid-record and resumed: {out}"
    );
    assert_eq!(gate.sent.load(Ordering::SeqCst), 40, "lines sent in all");
    assert!(out.contains("wrote 15 points from the spool"), "{out}");
    assert!(waiting.contains("\npoints: 15\n"), "{waiting}");
}

/// The same under the daemon: SIGKILL while its delivery task has written
/// part of a run's record; `spool flush` afterwards sends only the rest.
#[test]
fn a_daemon_killed_mid_record_leaves_only_the_rest_to_send() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let server = server();
    let vm = Victoria::start();
    // 2 lines a request: the versions record (7 lines) takes 4; the 3rd
    // request to the output (whatever the daemon wrote first) is held.
    let gate = Gate::start(vm.port, 2, "versions_script_stats");
    let dir = tempfile::tempdir().unwrap();
    let config = gated_config(dir.path(), &server, &gate, 2);
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let mut daemon = toml::Table::new();
    for (k, v) in [("startup_delay", "0"), ("random_delay", "0")] {
        daemon.insert(k.into(), v.into());
    }
    c.insert("daemon".into(), toml::Value::Table(daemon));
    let mut collectors = toml::Table::new();
    for col in ubuntu_metrics::collectors::registry() {
        let mut t = toml::Table::new();
        if col.name() == "versions" {
            t.insert("interval".into(), "1h".into());
        } else {
            t.insert("enabled".into(), false.into());
        }
        collectors.insert(col.name().into(), toml::Value::Table(t));
    }
    c.insert("collectors".into(), toml::Value::Table(collectors));
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();

    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while gate.held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the 3rd write never came");
        assert!(child.try_wait().unwrap().is_none(), "the daemon ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = gate.sent.load(Ordering::SeqCst);
    let lines = expected_lines("versions");
    assert!(
        before > 0 && before < lines.len(),
        "killed in the middle of the record: {before} of {} lines sent",
        lines.len()
    );

    gate.open.store(true, Ordering::SeqCst);
    let (code, out, err) = run(&config, &["spool", "flush"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let sent = gate.sent.load(Ordering::SeqCst);
    let want: usize = samples(&lines, 0).values().map(Vec::len).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let n = vm
            .export()
            .iter()
            .filter(|(n, _, _)| n.starts_with("versions_script_stats_"))
            .count();
        if n >= want || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (sent, stored),
        (lines.len(), want),
        "(lines sent, samples stored in VictoriaMetrics) for one run after a SIGKILL mid-record: {out}"
    );
}
