//! The Grafana alert rules `dashboards export` writes
//! (`alerting/ubuntu-metrics.yaml`): each rule's query runs against a real
//! InfluxDB filled by real `run`s at successive `--now` times (a healthy
//! collector, one failing, one that stops running, and a period with
//! InfluxDB stopped), its reduce and threshold are applied as the rule says,
//! and the rules fire exactly where they should.

mod common;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::influxd::Influxd;
use common::*;
use fixture_server::Fault;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use ubuntu_metrics::ops::dashboards::{DATASOURCE_UID, alerts};

/// The collectors of the test: `versions` (1h) stays healthy, `sponsoring`
/// (5m) starts failing, `upload_queues` (5m) stops running; the others are
/// disabled (they would be late, never having run).
const HEALTHY: &str = "versions";
const FAILING: &str = "sponsoring";
const STOPPED: &str = "upload_queues";

fn at(minutes: i64) -> DateTime<Utc> {
    now() + Duration::minutes(minutes)
}

/// `run NAMES --now TIME`; returns the exit status.
fn run(config: &Path, names: &[&str], time: DateTime<Utc>) -> i32 {
    let out = bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .arg("--now")
        .arg(time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .args(names)
        .output()
        .expect("ubuntu-metrics runs");
    out.status.code().unwrap_or_else(|| {
        panic!(
            "killed by a signal: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The configuration: every source at the fixture server, InfluxDB at
/// `db`, only the three collectors of the test enabled.
fn config(dir: &Path, server: &fixture_server::FixtureServer, db: &Influxd) -> std::path::PathBuf {
    let path = write_config(dir, server, &db.url());
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let collectors = t
        .entry("collectors")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap();
    for c in ubuntu_metrics::collectors::registry() {
        if ![HEALTHY, FAILING, STOPPED].contains(&c.name()) {
            let mut off = toml::Table::new();
            off.insert("enabled".into(), toml::Value::Boolean(false));
            collectors.insert(c.name().into(), toml::Value::Table(off));
        }
    }
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

/// The rules `dashboards export` writes for `config`.
fn exported_rules(config: &Path) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("--config")
        .arg(config)
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
    let text = std::fs::read_to_string(dir.path().join(alerts::FILE)).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(doc["apiVersion"], 1, "{text}");
    let groups = doc["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{text}");
    groups[0]["rules"].as_array().expect("rules").clone()
}

fn data<'a>(rule: &'a Value, ref_id: &str) -> &'a Value {
    rule["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["refId"] == ref_id)
        .unwrap_or_else(|| panic!("no {ref_id} in {rule}"))
}

/// The alert instances of `rule` at `time`, as Grafana would evaluate it:
/// the InfluxQL query `A` over its relative time range (`$timeFilter`
/// expanded as Grafana does), each series reduced by `B`, compared by the
/// threshold `C`; no series at all is the rule's `noDataState`. Each
/// firing instance is named `alert:collector` (from the series' tag or the
/// rule's label) or `alert`.
fn firing(db: &Influxd, rule: &Value, time: DateTime<Utc>) -> Vec<String> {
    let title = rule["title"].as_str().unwrap();
    assert_eq!(rule["condition"], "C", "{title}");
    let a = data(rule, "A");
    assert_eq!(a["datasourceUid"], DATASOURCE_UID, "{title}");
    let range = &a["relativeTimeRange"];
    let from = time.timestamp_millis() - range["from"].as_i64().unwrap() * 1000;
    let to = time.timestamp_millis() - range["to"].as_i64().unwrap() * 1000;
    let q = a["model"]["query"].as_str().unwrap().replace(
        "$timeFilter",
        &format!("time >= {from}ms and time <= {to}ms"),
    );
    assert!(
        !q.contains("$__") && !q.contains("$time"),
        "{title}: a macro left in {q}"
    );
    let answer = db.query(&q);
    let result = &answer["results"][0];
    assert!(result.get("error").is_none(), "{title}: {q}: {answer}");

    let b = &data(rule, "B")["model"];
    assert_eq!(b["type"], "reduce", "{title}");
    assert_eq!(b["expression"], "A", "{title}");
    let c = &data(rule, "C")["model"];
    assert_eq!(c["type"], "threshold", "{title}");
    assert_eq!(c["expression"], "B", "{title}");
    let evaluator = &c["conditions"][0]["evaluator"];
    let limit = evaluator["params"][0].as_f64().unwrap();
    let fires_at = |v: f64| match evaluator["type"].as_str().unwrap() {
        "gt" => v > limit,
        "lt" => v < limit,
        other => panic!("{title}: threshold {other} not evaluated by this test"),
    };

    let alert = rule["labels"]["alert"].as_str().unwrap();
    let name = |collector: Option<&str>| match collector {
        Some(c) => format!("{alert}:{c}"),
        None => alert.to_owned(),
    };
    let series = result["series"].as_array().cloned().unwrap_or_default();
    if series.is_empty() {
        return match rule["noDataState"].as_str().unwrap() {
            "Alerting" => vec![name(rule["labels"]["collector"].as_str())],
            "OK" | "NoData" => vec![],
            other => panic!("{title}: noDataState {other}"),
        };
    }
    let mut out = Vec::new();
    for s in &series {
        assert_eq!(s["columns"].as_array().unwrap().len(), 2, "{title}: {s}");
        // Grafana's alerting asks for the series in time order.
        let mut rows: Vec<(i64, Option<f64>)> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_i64().unwrap(), r[1].as_f64()))
            .collect();
        rows.sort_by_key(|r| r.0);
        let values: Vec<f64> = match b["settings"]["mode"].as_str().unwrap_or("") {
            "dropNN" => rows
                .iter()
                .filter_map(|r| r.1.filter(|v| v.is_finite()))
                .collect(),
            other => panic!("{title}: reduce mode {other:?} not evaluated by this test"),
        };
        let reduced = match b["reducer"].as_str().unwrap() {
            "last" => values.last().copied(),
            "max" => values.iter().copied().reduce(f64::max),
            other => panic!("{title}: reducer {other} not evaluated by this test"),
        };
        // A series reduced to nothing is no data for that instance.
        let collector = s["tags"]["collector"]
            .as_str()
            .or(rule["labels"]["collector"].as_str());
        match reduced {
            Some(v) if fires_at(v) => out.push(name(collector)),
            Some(_) => {}
            None if rule["noDataState"] == "Alerting" => out.push(name(collector)),
            None => {}
        }
    }
    out
}

fn all_firing(db: &Influxd, rules: &[Value], time: DateTime<Utc>) -> BTreeSet<String> {
    rules.iter().flat_map(|r| firing(db, r, time)).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn alert_rules_fire_exactly_where_they_should() {
    let server = server();
    let mut db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, &db);
    let rules = exported_rules(&config);
    let uids: BTreeSet<&str> = rules.iter().map(|r| r["uid"].as_str().unwrap()).collect();
    assert_eq!(
        uids,
        BTreeSet::from([
            alerts::FAILING_UID,
            alerts::SILENT_UID,
            alerts::SPOOL_AGE_UID,
            alerts::DEAD_LETTERS_UID,
            "ubuntu-metrics-late-sponsoring",
            "ubuntu-metrics-late-upload_queues",
            "ubuntu-metrics-late-versions",
        ]),
        "one late rule per enabled collector"
    );

    // Before any run: every collector is late, the station silent.
    assert_eq!(
        all_firing(&db, &rules, at(0)),
        set(&[
            "late:sponsoring",
            "late:upload_queues",
            "late:versions",
            "silent"
        ])
    );

    // 12:00 all three run fine; then sponsoring's upstream breaks and
    // upload_queues stops running.
    assert_eq!(run(&config, &[HEALTHY, FAILING, STOPPED], at(0)), 0);
    assert_eq!(all_firing(&db, &rules, at(0)), set(&[]));
    server.set_fault("/sponsoring", Fault::Garbage);
    assert_eq!(run(&config, &[HEALTHY, FAILING], at(10)), 1);
    assert_eq!(run(&config, &[HEALTHY, FAILING], at(20)), 1);
    // Two failures in a row, and upload_queues' last run exactly 2 × 5m +
    // 10m ago: nothing yet.
    assert_eq!(all_firing(&db, &rules, at(20)), set(&[]));
    assert_eq!(run(&config, &[HEALTHY, FAILING], at(30)), 1);
    // The third failure in a row; upload_queues 30m without a run.
    assert_eq!(
        all_firing(&db, &rules, at(30)),
        set(&["failing:sponsoring", "late:upload_queues"])
    );
    // The failures are in InfluxDB as the runs recorded them.
    let errors = db.query(&format!(
        "SELECT count(\"error\") FROM \"ubuntu_metrics_run\" WHERE \"collector\" = '{FAILING}' AND \"status\" = 'error'"
    ));
    assert_eq!(
        errors["results"][0]["series"][0]["values"][0][1], 3,
        "{errors}"
    );

    // sponsoring recovers: the failing rule clears at once.
    server.clear_faults();
    assert_eq!(run(&config, &[HEALTHY, FAILING], at(35)), 0);
    assert_eq!(
        all_firing(&db, &rules, at(35)),
        set(&["late:upload_queues"])
    );

    // InfluxDB stops taking writes: the runs at 12:40 and 13:10 wait in the
    // spool (exit 75), and from 13:10 on (30 minutes after the last run that
    // reached InfluxDB) the station is silent.
    db.stop();
    assert_eq!(run(&config, &[HEALTHY, FAILING], at(40)), 75);
    assert_eq!(run(&config, &[HEALTHY, FAILING], at(70)), 75);
    db.restart();
    // sponsoring's runs wait in the spool: InfluxDB has none since 12:35.
    assert_eq!(
        all_firing(&db, &rules, at(64)),
        set(&["late:sponsoring", "late:upload_queues"]),
        "29 minutes without a point is not yet silent"
    );
    assert_eq!(
        all_firing(&db, &rules, at(71)),
        set(&["late:sponsoring", "late:upload_queues", "silent"])
    );
    // The spool is written: the held runs arrive, silence and lateness end.
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["spool", "flush"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        all_firing(&db, &rules, at(71)),
        set(&["late:upload_queues"])
    );
}

/// The spool's rules, on the spool's own self-metrics: points that waited
/// more than 30 minutes, and a batch InfluxDB refused for good. The
/// spool's records carry the real time they were spooled, so this story
/// is told from the real present on (the runs' clock `--now` moves ahead
/// of it).
#[test]
fn spool_rules_fire_on_old_points_and_new_dead_letters() {
    let server = server();
    let mut db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, &db);
    let rules: Vec<Value> = exported_rules(&config)
        .into_iter()
        .filter(|r| {
            [alerts::SPOOL_AGE_UID, alerts::DEAD_LETTERS_UID].contains(&r["uid"].as_str().unwrap())
        })
        .collect();
    assert_eq!(rules.len(), 2);
    let t0 = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() + Duration::minutes(1);
    let at = |m: i64| t0 + Duration::minutes(m);

    assert_eq!(run(&config, &[HEALTHY], at(0)), 0);
    assert_eq!(all_firing(&db, &rules, at(0)), set(&[]));

    // InfluxDB away at 0:40: the run waits in the spool (spooled now, so
    // 40 minutes old by the runs' clock).
    db.stop();
    assert_eq!(run(&config, &[HEALTHY], at(40)), 75);
    db.restart();
    assert_eq!(
        all_firing(&db, &rules, at(40)),
        set(&[]),
        "nothing arrived yet"
    );
    // At 0:41 a run writes the backlog and reports its age: the rule fires
    // on it, until a later delivery finds the spool empty.
    assert_eq!(run(&config, &[HEALTHY], at(41)), 0);
    let spool = db.rows("ubuntu_metrics_spool");
    assert!(
        spool
            .iter()
            .any(|r| r["oldest_age_seconds"].as_f64().unwrap() > 1800.0),
        "{spool:?}"
    );
    assert_eq!(all_firing(&db, &rules, at(41)), set(&["spool_age"]));
    assert_eq!(run(&config, &[HEALTHY], at(46)), 0);
    assert_eq!(all_firing(&db, &rules, at(46)), set(&[]));

    // A week later (a new shard), InfluxDB refuses sponsoring's points for
    // good: a field of another type is stored at that time already.
    let week = 8 * 24 * 60;
    assert_eq!(run(&config, &[HEALTHY], at(week - 10)), 0);
    let first = std::fs::read_to_string(fixtures().join(format!("{FAILING}/expected.out")))
        .unwrap()
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap()
        .to_owned();
    let series = first.split(' ').next().unwrap();
    let field = first.split(' ').nth(1).unwrap().split('=').next().unwrap();
    db.write(&format!(
        "{series} {field}=\"text\" {}",
        at(week).timestamp_nanos_opt().unwrap()
    ));
    run(&config, &[FAILING], at(week));
    let spool = db.rows("ubuntu_metrics_spool");
    assert_eq!(spool.last().unwrap()["dead_letter_batches"], 1, "{spool:?}");
    assert_eq!(all_firing(&db, &rules, at(week)), set(&["dead_letters"]));
    assert_eq!(
        all_firing(&db, &rules, at(week + 45)),
        set(&["dead_letters"]),
        "while the window holds the point before the new dead letter"
    );
    assert_eq!(all_firing(&db, &rules, at(week + 61)), set(&[]));
}
