//! The InfluxDB v2 write API (`[influxdb] api = "v2"`: `/api/v2/write`
//! with `org`, `bucket` and `Authorization: Token`), against a real second
//! engine, VictoriaMetrics, and a loopback server that shows what was sent
//! and answers as InfluxDB 2 does.

mod common;

use common::rogue::{Rogue, response};
use common::victoria::{Victoria, expected_lines, same, samples};
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const TOKEN: &str = "tok-SECRET-7788";

/// The test configuration, writing with the v2 API to `url`; the token in
/// a 0600 file.
fn v2_config(dir: &Path, server: &fixture_server::FixtureServer, url: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let config = write_config(dir, server, url);
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let influx = c["influxdb"].as_table_mut().unwrap();
    influx.insert("api".into(), "v2".into());
    influx.insert("org".into(), "ubuntu".into());
    influx.insert("bucket".into(), "metrics".into());
    influx.insert("token_file".into(), token.display().to_string().into());
    std::fs::write(&config, toml::to_string(&c).unwrap()).unwrap();
    config
}

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_v2_api_writes_every_point_into_victoria_metrics() {
    let server = server();
    let vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let config = v2_config(dir.path(), &server, &vm.url());

    let out = run(&config, &["-v", "run", "--now", NOW, "versions"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token in the log: {stderr}");

    // VictoriaMetrics stores field F of measurement M as metric M_F.
    let stored: BTreeMap<(String, i64), f64> = vm
        .export()
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("versions_script_stats"))
        .map(|(name, t, v)| ((name, t), v))
        .collect();
    same(&stored, &samples(&expected_lines("versions"), 0));
    // The self-metrics went the same way.
    assert!(
        vm.export()
            .iter()
            .any(|(name, _, _)| name.starts_with("ubuntu_metrics_run_points{collector=versions"))
    );

    let shown = run(&config, &["config", "show"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("api = \"v2\"") && !shown.contains(TOKEN),
        "{shown}"
    );
}

#[test]
fn the_token_is_sent_as_influxdb_2_wants_and_its_errors_are_quoted() {
    let server = server();
    // Each request's path and Authorization header.
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let seen: Seen = Arc::default();
    let log = seen.clone();
    // InfluxDB 2's answer to a line it cannot parse.
    let influx2 = Rogue::start(move |r| {
        log.lock()
            .unwrap()
            .push((r.path.clone(), r.authorization.clone()));
        Some(response(
            "400 Bad Request",
            &[
                ("Content-Type", "application/json; charset=utf-8"),
                ("X-Influxdb-Version", "v2.7.11"),
            ],
            br#"{"code":"invalid","message":"unable to parse 'x y': missing fields"}"#,
        ))
    });
    let dir = tempfile::tempdir().unwrap();
    let config = v2_config(dir.path(), &server, &influx2.url());

    let out = run(&config, &["run", "--now", NOW, "sponsoring"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for (path, auth) in &seen {
        assert_eq!(
            path, "/api/v2/write?org=ubuntu&bucket=metrics&precision=ns",
            "{seen:?}"
        );
        assert_eq!(auth.as_deref(), Some(format!("Token {TOKEN}").as_str()));
    }
    // Refused for good, with InfluxDB 2's own words; never the token.
    assert!(
        stderr.contains("invalid: unable to parse 'x y': missing fields")
            && stderr.contains("dead-letter"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

/// A token that cannot be sent (a control character in its file) is a
/// configuration error when the command starts, said once, with the exit
/// status of one: never a refused write sending points to the dead
/// letters.
#[test]
fn a_token_that_cannot_be_a_header_is_a_configuration_error_at_start() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = v2_config(dir.path(), &server, "http://127.0.0.1:9");
    std::fs::write(dir.path().join("token"), "tok\u{1}en\n").unwrap();
    for args in [&["run", "--now", NOW, "versions"][..], &["spool", "flush"]] {
        let out = run(&config, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let said = "influxdb.token: the token is not a valid HTTP header value";
        assert_eq!(stderr.matches(said).count(), 1, "{args:?}: {stderr}");
    }
    let dead = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with("dead-letter.lp"))
        .count();
    assert_eq!(dead, 0, "points dead-lettered");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
