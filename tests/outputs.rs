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
    assert!(
        err.contains("output vm: "),
        "messages name the output: {err}"
    );
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
    let in_vm: std::collections::BTreeSet<(String, i64)> = vm
        .export()
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("versions_script_stats_count"))
        .map(|(n, t, _)| (n, t))
        .collect();
    assert_eq!(in_influxd.len(), rows(), "one row per point in influxd");
    assert_eq!(in_vm, in_influxd, "{log}");
}
