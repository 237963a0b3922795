//! Grafana dashboards, generated from the collectors: each collector
//! declares its row of panels next to its code ([`crate::collector::Spec::panels`],
//! built from [`crate::model::panel::Panel`]) and the dashboard it belongs on
//! ([`Board`]); this module lays the rows out, adds the self-metrics row,
//! and writes Grafana's JSON. Unit tests check that every measurement of
//! every registered collector appears in some panel and that every panel
//! reads fields and tags its collector declares in its schema;
//! `tests/dashboards.rs` runs every panel's query against a real InfluxDB
//! filled by `run --all` from the fixtures.
//!
//! `ubuntu-metrics dashboards export DIR` writes, in the layout of Grafana's
//! provisioning directory (`/etc/grafana/provisioning`):
//!
//! | file | what |
//! | --- | --- |
//! | `datasources/ubuntu-metrics.yaml` | the InfluxDB data source (InfluxQL, database `metrics`, user `grafana`, password from `$INFLUXDB_GRAFANA_PASSWORD`) |
//! | `dashboards/ubuntu-metrics.yaml` | the dashboard provider, reading the folder below |
//! | `dashboards/ubuntu-metrics/<uid>.json` | one file per dashboard |
//! | `alerting/ubuntu-metrics.yaml` | alert rules on the self-metrics ([`alerts`]) |
//!
//! Nothing generated is committed: the files are written where they are
//! used (Grafana's provisioning directory, the Debian package).

pub mod alerts;

use crate::collector::Collector;
use crate::model::panel::{Agg, Board, Kind, Panel};
use crate::runner::{HTTP_MEASUREMENT, SELF_MEASUREMENT};
use crate::sinks::{SPOOL_MEASUREMENT, WRITE_MEASUREMENT};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The data source's uid, referenced by every panel.
pub const DATASOURCE_UID: &str = "ubuntu-metrics-influxdb";
/// The data source's name as Grafana shows it.
pub const DATASOURCE_NAME: &str = "ubuntu-metrics InfluxDB";
/// The environment variable Grafana reads the InfluxDB password from.
pub const PASSWORD_ENV: &str = "INFLUXDB_GRAFANA_PASSWORD";
/// Where the dashboard provider looks for the JSON files by default.
pub const DEFAULT_DASHBOARDS_PATH: &str = "/etc/grafana/provisioning/dashboards/ubuntu-metrics";
/// The tag on every dashboard (and the dashboards' link menu).
pub const TAG: &str = "ubuntu-metrics";
/// Grafana's dashboard schema version the JSON follows.
pub const SCHEMA_VERSION: u32 = 39;

/// A titled row of panels.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: crate::model::schema::Text,
    pub panels: Vec<Panel>,
}

/// One dashboard.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub uid: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub sections: Vec<Section>,
}

impl Dashboard {
    pub fn panels(&self) -> impl Iterator<Item = &Panel> {
        self.sections.iter().flat_map(|s| s.panels.iter())
    }

    /// The file name of its JSON.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.uid)
    }
}

/// The self-metrics row (written by the runner for every run), at the
/// end of the first dashboard.
fn self_panels() -> Vec<Panel> {
    vec![
    Panel::new(Kind::Table, "Collector runs (latest)", SELF_MEASUREMENT, &["duration_seconds", "points", "requests"], &["collector", "status"])
        .field_units(&[("duration_seconds", "s")])
        .width(12)
        .describe("The last run of each collector: how it ended, how long it took, the points it wrote and the upstream requests it made."),
    Panel::new(Kind::Timeseries, "Collector run duration", SELF_MEASUREMENT, &["duration_seconds"], &["collector"])
        .agg(Agg::Max)
        .unit("s"),
    Panel::new(Kind::Timeseries, "Upstream requests per host", HTTP_MEASUREMENT, &["requests"], &["host"])
        .agg(Agg::Max)
        .describe("The most HTTP requests one collector run made to each upstream host (retries included)."),
    Panel::new(Kind::Timeseries, "Upstream errors per host", HTTP_MEASUREMENT, &["errors"], &["host"])
        .agg(Agg::Max)
        .describe("Failed requests to each upstream host in one collector run: no answer, an error status, a body that could not be read."),
    Panel::new(Kind::Timeseries, "InfluxDB write latency", WRITE_MEASUREMENT, &["latency_seconds"], &["outcome"])
        .agg(Agg::Max)
        .unit("s")
        .describe("Each request to InfluxDB's write endpoint: how long InfluxDB took to answer, by outcome (`ok`, or the kind of failure)."),
    Panel::new(Kind::Timeseries, "Points per write", WRITE_MEASUREMENT, &["points"], &["outcome"])
        .agg(Agg::Max)
        .describe("Points (lines) in each write request, by outcome."),
    Panel::new(Kind::Timeseries, "Spool: points waiting and age", SPOOL_MEASUREMENT, &["points", "oldest_age_seconds"], &[])
        .agg(Agg::Max)
        .field_units(&[("oldest_age_seconds", "s")])
        .describe("Points waiting in the spool for InfluxDB, and how long the oldest has waited, as seen after each delivery. While InfluxDB is away these arrive with the backlog."),
    Panel::new(Kind::Stat, "Dead-letter batches", SPOOL_MEASUREMENT, &["dead_letter_batches"], &[])
        .describe("Batches InfluxDB refused for good, kept in the spool's dead-letter file (`ubuntu-metrics spool status` shows them)."),
]
}

/// Every dashboard, built from the collectors of the registry: each
/// collector's row of panels ([`crate::collector::Spec::panels`]) on its
/// dashboard, in registry order.
pub fn dashboards() -> Vec<Dashboard> {
    dashboards_of(&crate::collectors::registry())
}

/// The dashboards of these collectors.
pub fn dashboards_of(collectors: &[Box<dyn Collector>]) -> Vec<Dashboard> {
    Board::ALL
        .iter()
        .map(|&board| {
            let mut sections: Vec<Section> = collectors
                .iter()
                .map(|c| c.panels())
                .filter(|p| p.board == board)
                .map(|p| Section {
                    title: p.title,
                    panels: p.panels,
                })
                .collect();
            if board == Board::Queues {
                sections.push(Section {
                    title: "ubuntu-metrics itself".into(),
                    panels: self_panels(),
                });
            }
            Dashboard {
                uid: board.uid(),
                title: board.title(),
                description: board.description(),
                sections,
            }
        })
        .collect()
}

fn datasource_ref() -> Value {
    json!({"type": "influxdb", "uid": DATASOURCE_UID})
}

fn field_config(p: &Panel) -> Value {
    let overrides: Vec<Value> = p
        .field_units
        .iter()
        .map(|(field, unit)| {
            json!({
                "matcher": {"id": "byName", "options": field},
                "properties": [{"id": "unit", "value": unit}]
            })
        })
        .collect();
    let mut defaults = json!({
        "unit": p.unit,
        "color": {"mode": "palette-classic"},
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": "green", "value": null}]
        }
    });
    if p.kind == Kind::Timeseries {
        defaults["custom"] = json!({
            "drawStyle": "line",
            "lineInterpolation": "linear",
            "lineWidth": 1,
            "fillOpacity": 0,
            "showPoints": "auto",
            "pointSize": 4,
            "spanNulls": true,
            "axisPlacement": "auto",
            "stacking": {"mode": "none", "group": "A"}
        });
    }
    if p.kind == Kind::Stat {
        defaults["color"] = json!({"mode": "thresholds"});
    }
    json!({"defaults": defaults, "overrides": overrides})
}

fn panel_json(p: &Panel, id: u32, x: u32, y: u32) -> Value {
    let result_format = if p.kind == Kind::Table {
        "table"
    } else {
        "time_series"
    };
    let mut target = json!({
        "refId": "A",
        "datasource": datasource_ref(),
        "query": p.query(),
        "rawQuery": true,
        "resultFormat": result_format,
    });
    if p.kind != Kind::Table {
        target["alias"] = json!(p.alias());
    }
    let mut v = json!({
        "id": id,
        "type": match p.kind {
            Kind::Timeseries => "timeseries",
            Kind::Stat => "stat",
            Kind::Table => "table",
        },
        "title": p.title,
        "description": p.description,
        "datasource": datasource_ref(),
        "gridPos": {"h": p.height(), "w": p.width, "x": x, "y": y},
        "targets": [target],
        "fieldConfig": field_config(p),
    });
    v["options"] = match p.kind {
        Kind::Timeseries => json!({
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true, "calcs": []},
            "tooltip": {"mode": "multi", "sort": "desc"}
        }),
        Kind::Stat => json!({
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto"
        }),
        Kind::Table => json!({
            "showHeader": true,
            "cellHeight": "sm",
            "footer": {"show": false, "reducer": ["sum"], "fields": "", "countRows": false}
        }),
    };
    if p.kind == Kind::Table {
        // InfluxDB answers one frame per tag set: merge them into one table
        // and drop the time column (the latest value's time).
        v["transformations"] = json!([
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": true}, "indexByName": {}, "renameByName": {}}}
        ]);
    }
    v
}

/// A dashboard as Grafana's JSON model.
pub fn dashboard_json(d: &Dashboard) -> Value {
    let mut panels = Vec::new();
    let mut id = 1;
    let mut y = 0;
    for s in &d.sections {
        panels.push(json!({
            "id": id,
            "type": "row",
            "title": s.title,
            "collapsed": false,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": []
        }));
        id += 1;
        y += 1;
        // Left to right, wrapping at 24 columns; a line is as tall as its tallest panel.
        let mut x = 0;
        let mut line_height = 0;
        for p in &s.panels {
            if x + p.width > 24 {
                y += line_height;
                x = 0;
                line_height = 0;
            }
            panels.push(panel_json(p, id, x, y));
            id += 1;
            x += p.width;
            line_height = line_height.max(p.height());
        }
        y += line_height;
    }
    json!({
        "id": null,
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": [TAG],
        "timezone": "utc",
        "editable": true,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": false,
        "refresh": "5m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "weekStart": "",
        "time": {"from": "now-7d", "to": "now"},
        "timepicker": {},
        "templating": {"list": []},
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard"
        }]},
        "links": [{
            "type": "dashboards",
            "title": "Ubuntu metrics",
            "tags": [TAG],
            "asDropdown": true,
            "includeVars": false,
            "keepTime": true,
            "icon": "external link",
            "targetBlank": false,
            "tooltip": "",
            "url": ""
        }],
        "panels": panels,
    })
}

/// Settings of the generated provisioning files.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The InfluxDB URL Grafana's server connects to.
    pub influxdb_url: String,
    pub database: String,
    /// The InfluxDB user Grafana reads as.
    pub user: String,
    /// Where Grafana finds the dashboard JSON files (the provider's path).
    pub dashboards_path: PathBuf,
    /// The collectors' schedule the alert rules follow.
    pub alerts: alerts::AlertOptions,
    /// The PEM text of the CA Grafana trusts for an `https` InfluxDB with a
    /// private CA (`influxdb.ca_file`): `tlsAuthWithCACert` and `tlsCACert`.
    pub ca_pem: Option<String>,
    /// Grafana does not verify InfluxDB's certificate (`tlsSkipVerify`;
    /// no CA then): for a certificate Grafana (Go) cannot verify, such as
    /// the first generation's self-signed one without subjectAltName, which
    /// Go refuses for any host, on loopback.
    pub tls_skip_verify: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            influxdb_url: "http://localhost:8086".into(),
            database: "metrics".into(),
            user: "grafana".into(),
            dashboards_path: PathBuf::from(DEFAULT_DASHBOARDS_PATH),
            alerts: alerts::AlertOptions::default(),
            ca_pem: None,
            tls_skip_verify: false,
        }
    }
}

/// A YAML scalar, double-quoted.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The data source provisioning file.
pub fn datasource_yaml(o: &ExportOptions) -> String {
    // A private CA (influxdb.ca_file): Grafana verifies InfluxDB's
    // certificate against it (a PEM certificate is public). Or no check at
    // all (--tls-skip-verify), and then no CA either.
    let (ca_flag, ca_cert) = match &o.ca_pem {
        _ if o.tls_skip_verify => ("      tlsSkipVerify: true\n", String::new()),
        Some(pem) => {
            let mut block = String::from("      tlsCACert: |\n");
            for line in pem.lines().filter(|l| !l.trim().is_empty()) {
                block.push_str("        ");
                block.push_str(line.trim_end());
                block.push('\n');
            }
            ("      tlsAuthWithCACert: true\n", block)
        }
        None => ("", String::new()),
    };
    format!(
        "# Generated by `ubuntu-metrics dashboards export`: the InfluxDB data source of the
# ubuntu-metrics dashboards. Grafana reads the password of the InfluxDB user
# from the environment variable {env} of grafana-server (e.g. in a systemd
# drop-in: Environment=... or EnvironmentFile=<mode-0600 file>); the user is
# created, READ only, by `ubuntu-metrics influxdb provision`.
apiVersion: 1
datasources:
  - name: {name}
    uid: {uid}
    type: influxdb
    access: proxy
    url: {url}
    user: {user}
    database: {db}
    isDefault: false
    editable: false
    jsonData:
      version: InfluxQL
      dbName: {db}
      httpMode: GET
      timeInterval: 5m
{ca_flag}    secureJsonData:
      password: ${env}
{ca_cert}",
        env = PASSWORD_ENV,
        name = yaml_str(DATASOURCE_NAME),
        uid = yaml_str(DATASOURCE_UID),
        url = yaml_str(&o.influxdb_url),
        user = yaml_str(&o.user),
        db = yaml_str(&o.database),
    )
}

/// The dashboard provider file.
pub fn provider_yaml(o: &ExportOptions) -> String {
    format!(
        "# Generated by `ubuntu-metrics dashboards export`: Grafana loads the
# ubuntu-metrics dashboards from the folder below (regenerate them rather
# than editing them in Grafana).
apiVersion: 1
providers:
  - name: ubuntu-metrics
    orgId: 1
    folder: \"Ubuntu metrics\"
    folderUid: ubuntu-metrics
    type: file
    disableDeletion: false
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: {path}
      foldersFromFilesStructure: false
",
        path = yaml_str(&o.dashboards_path.display().to_string()),
    )
}

/// Every exported file: (path relative to the export directory, content).
pub fn files(o: &ExportOptions) -> Vec<(PathBuf, String)> {
    files_of(o, &crate::collectors::registry())
}

/// [`files`] with the dashboards of `collectors` (the built-in ones and
/// those the configuration declares).
pub fn files_of(o: &ExportOptions, collectors: &[Box<dyn Collector>]) -> Vec<(PathBuf, String)> {
    let mut out = vec![
        (
            PathBuf::from("datasources/ubuntu-metrics.yaml"),
            datasource_yaml(o),
        ),
        (
            PathBuf::from("dashboards/ubuntu-metrics.yaml"),
            provider_yaml(o),
        ),
        (
            PathBuf::from(alerts::FILE),
            alerts::alerting_yaml(&o.alerts),
        ),
    ];
    for d in dashboards_of(collectors) {
        let mut text =
            serde_json::to_string_pretty(&dashboard_json(&d)).expect("JSON values serialise");
        text.push('\n');
        out.push((
            Path::new("dashboards/ubuntu-metrics").join(d.file_name()),
            text,
        ));
    }
    out
}

/// Writes every file under `dir`; returns the paths written.
pub fn export(dir: &Path, o: &ExportOptions) -> std::io::Result<Vec<PathBuf>> {
    export_of(dir, o, &crate::collectors::registry())
}

/// [`export`] with the dashboards of `collectors`.
pub fn export_of(
    dir: &Path,
    o: &ExportOptions,
    collectors: &[Box<dyn Collector>],
) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, text) in files_of(o, collectors) {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::registry;
    use std::collections::BTreeSet;

    fn all_panels() -> Vec<Panel> {
        dashboards()
            .into_iter()
            .flat_map(|d| d.panels().cloned().collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn every_measurement_of_every_collector_has_a_panel() {
        let panels = all_panels();
        let shown: BTreeSet<&str> = panels.iter().map(|p| p.measurement.as_ref()).collect();
        let mut missing = Vec::new();
        for c in registry() {
            for m in c.measurements() {
                if !shown.contains(m) {
                    missing.push(format!("{}: {m}", c.name()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "measurements without a panel: {missing:?}"
        );
        assert!(
            shown.contains(crate::runner::SELF_MEASUREMENT),
            "no self-metrics panel"
        );
    }

    #[test]
    fn every_panel_reads_what_its_collector_declares() {
        for c in registry() {
            let name = c.name();
            for p in c.panels().panels {
                let m = c
                    .schema()
                    .iter()
                    .find(|m| m.name == p.measurement)
                    .unwrap_or_else(|| {
                        panic!(
                            "{name}: panel {:?} reads {:?}, which {name} does not write",
                            p.title, p.measurement
                        )
                    });
                assert!(!p.fields.is_empty(), "panel {:?} has no field", p.title);
                for f in &p.fields {
                    assert!(
                        m.field(f).is_some(),
                        "{name}: panel {:?} reads field {f:?}, not declared for {}",
                        p.title,
                        m.name
                    );
                }
                let filtered = p.filter.map(|f| f.split('"').nth(1).unwrap_or_default());
                for t in p.group_by.iter().map(|t| t.as_ref()).chain(filtered) {
                    assert!(
                        m.tags.iter().any(|d| d.name == t),
                        "{name}: panel {:?} uses tag {t:?}, not declared for {}",
                        p.title,
                        m.name
                    );
                }
            }
        }
        for p in self_panels() {
            let schema = crate::runner::self_schema();
            let m = schema
                .iter()
                .find(|m| m.name == p.measurement)
                .unwrap_or_else(|| {
                    panic!(
                        "panel {:?} reads {:?}: no self-metric",
                        p.title, p.measurement
                    )
                });
            for f in &p.fields {
                assert!(
                    m.field(f).is_some(),
                    "panel {:?} reads {f:?}, not in {}",
                    p.title,
                    m.name
                );
            }
            for t in p.group_by {
                assert!(
                    m.tags.iter().any(|d| d.name == *t),
                    "panel {:?}: tag {t:?} not in {}",
                    p.title,
                    m.name
                );
            }
        }
        // Every self-metric has a panel.
        for m in crate::runner::self_schema() {
            assert!(
                self_panels().iter().any(|p| p.measurement == m.name),
                "no panel reads {}",
                m.name
            );
        }
    }

    #[test]
    fn four_dashboards_as_the_teams_look_at_them() {
        let d = dashboards();
        let titles: Vec<&str> = d.iter().map(|d| d.title).collect();
        assert_eq!(
            titles,
            [
                "Ubuntu: queues and migration",
                "Ubuntu: archive health",
                "Ubuntu: images",
                "Ubuntu: bugs and contributors"
            ]
        );
        let uids: BTreeSet<&str> = d.iter().map(|d| d.uid).collect();
        assert_eq!(uids.len(), d.len(), "dashboard uids must be unique");
        for d in &d {
            assert!(d.uid.len() <= 40, "Grafana uids have at most 40 characters");
        }
    }

    #[test]
    fn queries_use_grafanas_macros() {
        for p in all_panels() {
            let q = p.query();
            assert!(q.contains("$timeFilter"), "{}: {q}", p.title);
            assert_eq!(
                q.contains("$__interval"),
                p.kind == Kind::Timeseries,
                "{}: {q}",
                p.title
            );
            assert!(
                q.contains(&format!("FROM \"{}\"", p.measurement)),
                "{}: {q}",
                p.title
            );
            for t in p.group_by {
                assert!(q.contains(&format!("\"{t}\"")), "{}: {q}", p.title);
            }
        }
    }

    #[test]
    fn query_shapes() {
        let p = Panel::new(
            Kind::Timeseries,
            "t",
            "ubuntu_queue_size",
            &["count"],
            &["release", "status"],
        )
        .filter("\"devel\" = 'True'");
        assert_eq!(
            p.query(),
            "SELECT last(\"count\") AS \"count\" FROM \"ubuntu_queue_size\" WHERE \"devel\" = 'True' AND $timeFilter GROUP BY time($__interval), \"release\", \"status\" fill(none)"
        );
        assert_eq!(p.alias(), "$tag_release $tag_status");
        let s = Panel::new(Kind::Stat, "s", "ubuntu_archive_reviews", &["count"], &[]);
        assert_eq!(
            s.query(),
            "SELECT last(\"count\") AS \"count\" FROM \"ubuntu_archive_reviews\" WHERE $timeFilter"
        );
        assert_eq!(s.alias(), "$col");
        let sum = Panel::new(Kind::Timeseries, "x", "m", &["count"], &["arch"]).agg(Agg::SumOfLast);
        assert_eq!(
            sum.query(),
            "SELECT sum(\"count\") AS \"count\" FROM (SELECT last(\"count\") AS \"count\" FROM \"m\" WHERE $timeFilter GROUP BY time($__interval), *) WHERE $timeFilter GROUP BY time($__interval), \"arch\" fill(none)"
        );
    }

    #[test]
    fn json_model_is_consistent() {
        for d in dashboards() {
            let v = dashboard_json(&d);
            assert_eq!(v["schemaVersion"], json!(SCHEMA_VERSION));
            assert_eq!(v["uid"], json!(d.uid));
            let panels = v["panels"].as_array().unwrap();
            let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
            assert_eq!(ids.len(), panels.len(), "panel ids are unique");
            // No two panels overlap on the grid.
            let mut cells = BTreeSet::new();
            for p in panels {
                let g = &p["gridPos"];
                let (x, y, w, h) = (
                    g["x"].as_u64().unwrap(),
                    g["y"].as_u64().unwrap(),
                    g["w"].as_u64().unwrap(),
                    g["h"].as_u64().unwrap(),
                );
                assert!(x + w <= 24, "{p}");
                for cx in x..x + w {
                    for cy in y..y + h {
                        assert!(cells.insert((cx, cy)), "overlap at {cx},{cy} in {}", d.uid);
                    }
                }
                if p["type"] == json!("row") {
                    continue;
                }
                assert_eq!(p["datasource"]["uid"], json!(DATASOURCE_UID));
                let t = &p["targets"][0];
                assert_eq!(t["rawQuery"], json!(true));
                assert_eq!(t["datasource"]["uid"], json!(DATASOURCE_UID));
                assert!(t["query"].as_str().unwrap().starts_with("SELECT "));
                let fmt = if p["type"] == json!("table") {
                    "table"
                } else {
                    "time_series"
                };
                assert_eq!(t["resultFormat"], json!(fmt));
            }
        }
    }

    #[test]
    fn provisioning_files_reference_the_datasource() {
        let o = ExportOptions::default();
        let ds = datasource_yaml(&o);
        let v: serde_json::Value = serde_saphyr::from_str(&ds).unwrap();
        let d = &v["datasources"][0];
        assert_eq!(d["uid"].as_str(), Some(DATASOURCE_UID));
        assert_eq!(d["type"].as_str(), Some("influxdb"));
        assert_eq!(d["user"].as_str(), Some("grafana"));
        assert_eq!(d["jsonData"]["dbName"].as_str(), Some("metrics"));
        assert_eq!(d["jsonData"]["version"].as_str(), Some("InfluxQL"));
        assert_eq!(
            d["secureJsonData"]["password"].as_str(),
            Some(format!("${PASSWORD_ENV}").as_str())
        );
        let pv: serde_json::Value = serde_saphyr::from_str(&provider_yaml(&o)).unwrap();
        assert_eq!(
            pv["providers"][0]["options"]["path"].as_str(),
            Some(DEFAULT_DASHBOARDS_PATH)
        );
        let names: Vec<String> = files(&o)
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert!(names.contains(&"dashboards/ubuntu-metrics/ubuntu-metrics-queues.json".into()));
        assert!(names.contains(&alerts::FILE.into()));
        assert_eq!(names.len(), 3 + dashboards().len());
        assert!(d["jsonData"].get("tlsAuthWithCACert").is_none());
    }

    #[test]
    fn a_private_ca_is_trusted_by_the_datasource() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAbC+/=\n-----END CERTIFICATE-----\n";
        let o = ExportOptions {
            influxdb_url: "https://localhost:8086".into(),
            ca_pem: Some(pem.into()),
            ..ExportOptions::default()
        };
        let v: serde_json::Value = serde_saphyr::from_str(&datasource_yaml(&o)).unwrap();
        let d = &v["datasources"][0];
        assert_eq!(d["jsonData"]["tlsAuthWithCACert"], json!(true));
        assert_eq!(d["secureJsonData"]["tlsCACert"].as_str(), Some(pem));
        assert_eq!(
            d["secureJsonData"]["password"].as_str(),
            Some(format!("${PASSWORD_ENV}").as_str())
        );
        assert!(d["jsonData"].get("tlsSkipVerify").is_none());
    }

    #[test]
    fn tls_skip_verify_turns_the_check_off_and_drops_the_ca() {
        let o = ExportOptions {
            influxdb_url: "https://127.0.0.1:8086".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nAbC=\n-----END CERTIFICATE-----\n".into()),
            tls_skip_verify: true,
            ..ExportOptions::default()
        };
        let v: serde_json::Value = serde_saphyr::from_str(&datasource_yaml(&o)).unwrap();
        let d = &v["datasources"][0];
        assert_eq!(d["jsonData"]["tlsSkipVerify"], json!(true));
        assert!(d["jsonData"].get("tlsAuthWithCACert").is_none());
        assert!(d["secureJsonData"].get("tlsCACert").is_none());
        assert_eq!(
            d["secureJsonData"]["password"].as_str(),
            Some(format!("${PASSWORD_ENV}").as_str())
        );
    }
}
