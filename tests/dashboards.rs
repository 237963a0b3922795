//! The Grafana dashboards: `dashboards export` writes what the code
//! generates from the collectors' panels, and every panel's query returns
//! data from a real InfluxDB filled by `run --all` from the fixtures.

mod common;

use common::influxd::Influxd;
use common::*;
use std::collections::BTreeSet;
use ubuntu_metrics::model::panel::Kind;
use ubuntu_metrics::ops::dashboards::{self, ExportOptions};

#[test]
fn export_writes_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["dashboards", "export"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (rel, text) in dashboards::files(&ExportOptions::default()) {
        let got = std::fs::read_to_string(dir.path().join(&rel)).unwrap();
        assert_eq!(got, text, "{}", rel.display());
    }
    // Options reach the provisioning files.
    let out = bin()
        .args(["dashboards", "export"])
        .arg(dir.path())
        .args([
            "--influxdb-url",
            "https://influx.example:8086",
            "--database",
            "kpis",
            "--dashboards-path",
            "/srv/dash",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let ds = std::fs::read_to_string(dir.path().join("datasources/ubuntu-metrics.yaml")).unwrap();
    assert!(
        ds.contains("url: \"https://influx.example:8086\"") && ds.contains("dbName: \"kpis\""),
        "{ds}"
    );
    let pv = std::fs::read_to_string(dir.path().join("dashboards/ubuntu-metrics.yaml")).unwrap();
    assert!(pv.contains("path: \"/srv/dash\""), "{pv}");
}

/// With `influxdb.ca_file` (an https InfluxDB with a private CA) the data
/// source trusts that CA; `--ca-file` names another, and a file that is not
/// a PEM certificate is an error.
#[test]
fn export_trusts_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIBCA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[influxdb]\nurl = \"https://127.0.0.1:8086\"\nca_file = {:?}\n",
            ca.display().to_string()
        ),
    )
    .unwrap();
    let prov = dir.path().join("provisioning");
    let export = |extra: &[&std::ffi::OsStr]| {
        bin()
            .arg("--config")
            .arg(&cfg)
            .args(["dashboards", "export"])
            .arg(&prov)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = export(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ds = std::fs::read_to_string(prov.join("datasources/ubuntu-metrics.yaml")).unwrap();
    assert!(
        ds.contains("tlsAuthWithCACert: true")
            && ds.contains(
                "      tlsCACert: |\n        -----BEGIN CERTIFICATE-----\n        MIIBCA==\n"
            ),
        "{ds}"
    );
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello\n").unwrap();
    let out = export(&["--ca-file".as_ref(), junk.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk.pem: not a PEM certificate"), "{err}");
}

/// `--tls-skip-verify`: the data source does not verify InfluxDB's
/// certificate (what Grafana cannot do for the first generation's
/// self-signed one without subjectAltName) and carries no CA, not even
/// influxdb.ca_file's; with `--ca-file` too it is an error.
#[test]
fn export_with_tls_skip_verify_carries_no_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("influxdb-selfsigned.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIBCA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[influxdb]\nurl = \"https://127.0.0.1:8086\"\nca_file = {:?}\n",
            ca.display().to_string()
        ),
    )
    .unwrap();
    let prov = dir.path().join("provisioning");
    let export = |extra: &[&std::ffi::OsStr]| {
        bin()
            .arg("--config")
            .arg(&cfg)
            .args(["dashboards", "export"])
            .arg(&prov)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = export(&["--tls-skip-verify".as_ref()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ds = std::fs::read_to_string(prov.join("datasources/ubuntu-metrics.yaml")).unwrap();
    assert!(
        ds.contains("    jsonData:\n")
            && ds.contains("      tlsSkipVerify: true\n    secureJsonData:\n")
            && !ds.contains("tlsCACert")
            && !ds.contains("tlsAuthWithCACert")
            && !ds.contains("BEGIN CERTIFICATE"),
        "{ds}"
    );
    let v: serde_json::Value = serde_saphyr::from_str(&ds).unwrap();
    assert_eq!(
        v["datasources"][0]["jsonData"]["tlsSkipVerify"],
        serde_json::json!(true),
        "{ds}"
    );

    let out = export(&[
        "--tls-skip-verify".as_ref(),
        "--ca-file".as_ref(),
        ca.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-skip-verify") && err.contains("--ca-file"),
        "{err}"
    );
}

/// Grafana's macros as Grafana expands them for a time range around NOW
/// (`$timeFilter` is `time >= <from>ms and time <= <to>ms`).
fn expand(query: &str, interval: &str) -> String {
    let now_ms = now().timestamp_millis();
    let from = now_ms - 30 * 86_400_000;
    let to = now_ms + 86_400_000;
    query
        .replace(
            "$timeFilter",
            &format!("time >= {from}ms and time <= {to}ms"),
        )
        .replace("$__interval", interval)
}

#[test]
fn every_panel_query_returns_data_from_run_all() {
    let server = server_with_rsync();
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), &server, &db.url());
    common::run_all(&config);

    let mut failures = Vec::new();
    let mut checked = 0;
    for d in dashboards::dashboards() {
        for p in d.panels() {
            // Every tag the panel groups or filters by, and every field it
            // reads, exists in the measurement.
            let tags = db.query(&format!("SHOW TAG KEYS FROM \"{}\"", p.measurement));
            let tag_keys: BTreeSet<String> = tags["results"][0]["series"][0]["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v[0].as_str().map(str::to_owned))
                .collect();
            for t in &p.group_by {
                if !tag_keys.contains(t.as_ref()) {
                    failures.push(format!(
                        "{} / {}: no tag {t:?} in {} (tags: {tag_keys:?})",
                        d.uid, p.title, p.measurement
                    ));
                }
            }
            let fields: BTreeSet<String> = db
                .field_types(&p.measurement)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            for f in &p.fields {
                if !fields.contains(f.as_ref()) {
                    failures.push(format!(
                        "{} / {}: no field {f:?} in {} (fields: {fields:?})",
                        d.uid, p.title, p.measurement
                    ));
                }
            }
            for interval in ["1h", "1d"] {
                let q = expand(&p.query(), interval);
                let v = db.query(&q);
                let result = &v["results"][0];
                if let Some(e) = result.get("error").or_else(|| v.get("error")) {
                    failures.push(format!("{} / {}: {q}: error {e}", d.uid, p.title));
                    continue;
                }
                let series = result["series"].as_array().cloned().unwrap_or_default();
                let rows: usize = series
                    .iter()
                    .map(|s| s["values"].as_array().map_or(0, |v| v.len()))
                    .sum();
                let has_value = series.iter().any(|s| {
                    s["values"].as_array().into_iter().flatten().any(|row| {
                        row.as_array()
                            .is_some_and(|r| r.iter().skip(1).any(|c| !c.is_null()))
                    })
                });
                if rows == 0 || !has_value {
                    failures.push(format!("{} / {}: {q}: no data ({v})", d.uid, p.title));
                }
                // Groups by tags give one series per tag set.
                if !p.group_by.is_empty() {
                    let tagged = series.iter().all(|s| {
                        p.group_by
                            .iter()
                            .all(|t| s["tags"].get(t.as_ref()).is_some())
                    });
                    if !tagged {
                        failures.push(format!(
                            "{} / {}: series without tags {:?}",
                            d.uid, p.title, p.group_by
                        ));
                    }
                }
                if p.kind != Kind::Timeseries {
                    break;
                }
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} panels failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} panel queries returned data");
}
