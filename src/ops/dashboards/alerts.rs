//! Grafana alert rules on the self-metrics (`ubuntu_metrics_run`, one
//! point per collector run: tags `collector`, `status`; an `error` field
//! exactly when the run did not end `ok`), written by `dashboards export`
//! as Grafana's alerting provisioning file `alerting/ubuntu-metrics.yaml`
//! (apiVersion 1: groups of rules, each an InfluxQL query `A` against the
//! data source, a reduce `B` and a threshold `C`, the condition).
//!
//! | rule | query | fires |
//! | --- | --- | --- |
//! | `ubuntu-metrics-failing` | per enabled collector, how many of its last 3 runs carry an `error` | at 3: its last 3 runs failed or timed out |
//! | `ubuntu-metrics-late-NAME`, one per enabled collector | NAME's runs in the last 2 × interval + run timeout | when there is none (no data: `noDataState: Alerting`) |
//! | `ubuntu-metrics-silent` | runs of any collector in the last 30 minutes (or more, when no collector runs that often) | when there is none |
//!
//! Why one "late" rule per collector: a collector with no run in the window
//! has no series in InfluxDB's answer, so a rule grouping by collector
//! cannot see it; and each collector has its own threshold.
//!
//! | `ubuntu-metrics-spool-age` | the oldest spooled record's age in `ubuntu_metrics_spool` over the last 15 minutes | above 30 minutes |
//! | `ubuntu-metrics-dead-letters` | increases of `ubuntu_metrics_spool`'s `dead_letter_batches` in the last hour | above 0 |
//!
//! The spool's own point is written after each delivery: when InfluxDB
//! takes writes again, the backlog arrives with the points saying how long
//! it waited, and the spool-age rule fires on them. While InfluxDB takes
//! no writes at all, nothing arrives: the "silent" rule is what can be
//! said then (no run point for 30 minutes); it also fires when the
//! station does not run at all.

use crate::config::Config;
use serde_json::{Value, json};
use std::time::Duration;

use super::DATASOURCE_UID;
use crate::runner::SELF_MEASUREMENT;
use crate::sinks::SPOOL_MEASUREMENT;

/// Where `dashboards export` writes the rules, relative to its directory.
pub const FILE: &str = "alerting/ubuntu-metrics.yaml";
/// The folder the rules go in (the dashboards' folder).
pub const FOLDER: &str = "Ubuntu metrics";
/// The rule group.
pub const GROUP: &str = "ubuntu-metrics";
/// How often Grafana evaluates the group.
pub const EVALUATION_INTERVAL: &str = "1m";
/// Failed runs in a row that make a collector "failing".
pub const FAILED_RUNS: u32 = 3;
/// No run point from any collector for this long: the "silent" rule.
pub const SILENT_AFTER: Duration = Duration::from_secs(30 * 60);
/// The uid of the "failing" rule.
pub const FAILING_UID: &str = "ubuntu-metrics-failing";
/// The uid of the "silent" rule.
pub const SILENT_UID: &str = "ubuntu-metrics-silent";
/// The uid of the "spool age" rule.
pub const SPOOL_AGE_UID: &str = "ubuntu-metrics-spool-age";
/// The uid of the "dead letters" rule.
pub const DEAD_LETTERS_UID: &str = "ubuntu-metrics-dead-letters";
/// Points waiting in the spool longer than this: the "spool age" rule.
pub const SPOOL_AGE: Duration = Duration::from_secs(30 * 60);
/// The window of the "spool age" rule (the spool's points come after each
/// delivery: several in a window).
pub const SPOOL_AGE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The window of the "dead letters" rule: new dead letters alert for an hour.
pub const DEAD_LETTERS_WINDOW: Duration = Duration::from_secs(60 * 60);
/// The uid prefix of the "late" rules (then the collector's name).
pub const LATE_UID_PREFIX: &str = "ubuntu-metrics-late-";

/// What the rules need from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertOptions {
    /// The enabled collectors and their effective intervals.
    pub collectors: Vec<(String, Duration)>,
    /// `daemon.run_timeout` (also the timers' `RuntimeMaxSec`).
    pub run_timeout: Duration,
    /// `self_metrics.enabled`: without self-metrics there is nothing to
    /// alert on, and the file holds no rule.
    pub self_metrics: bool,
}

impl AlertOptions {
    /// The options of `config` (every registered collector it enables).
    pub fn from_config(config: &Config) -> AlertOptions {
        AlertOptions::from_config_of(config, &crate::collectors::registry())
    }

    /// The options of `config` for `registry` (with the collectors the
    /// configuration declares).
    pub fn from_config_of(
        config: &Config,
        registry: &[Box<dyn crate::collector::Collector>],
    ) -> AlertOptions {
        AlertOptions {
            collectors: registry
                .iter()
                .filter(|c| config.enabled(c.name()))
                .map(|c| (c.name().to_owned(), config.interval(&**c).as_duration()))
                .collect(),
            run_timeout: config.daemon.run_timeout.as_duration(),
            self_metrics: config.self_metrics.enabled,
        }
    }

    /// When a collector with this interval is late: no run for more than
    /// 2 intervals + the run timeout.
    pub fn late_after(&self, interval: Duration) -> Duration {
        interval * 2 + self.run_timeout
    }

    /// The window of the "silent" rule: [`SILENT_AFTER`], or the shortest
    /// "late" threshold when that is longer (a station whose most frequent
    /// collector runs hourly is quiet for more than 30 minutes when fine).
    pub fn silent_after(&self) -> Duration {
        self.collectors
            .iter()
            .map(|(_, i)| self.late_after(*i))
            .min()
            .map_or(SILENT_AFTER, |d| d.max(SILENT_AFTER))
    }

    /// The window of the "failing" rule: long enough to hold the last
    /// [`FAILED_RUNS`] runs of the least frequent collector, even a late one.
    pub fn failing_window(&self) -> Duration {
        let longest = self
            .collectors
            .iter()
            .map(|(_, i)| self.late_after(*i))
            .max()
            .unwrap_or(SILENT_AFTER);
        longest * FAILED_RUNS
    }
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions::from_config(&Config::default())
    }
}

/// A span as Grafana writes one (`1h30m0s` style is accepted; seconds are
/// always exact).
fn span(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The InfluxQL query `A`, over the last `window`.
fn query(sql: String, window: Duration) -> Value {
    json!({
        "refId": "A",
        "relativeTimeRange": {"from": window.as_secs(), "to": 0},
        "datasourceUid": DATASOURCE_UID,
        "model": {
            "refId": "A",
            "datasource": {"type": "influxdb", "uid": DATASOURCE_UID},
            "query": sql,
            "rawQuery": true,
            "resultFormat": "time_series",
            "intervalMs": 60000,
            "maxDataPoints": 43200
        }
    })
}

/// A server-side expression (`B`, `C`).
fn expression(model: Value) -> Value {
    let ref_id = model["refId"].clone();
    json!({
        "refId": ref_id,
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": "__expr__",
        "model": model,
    })
}

/// `A` reduced to its last value (`B`), then `B <op> value` (`C`).
fn data(a: Value, op: &str, value: f64) -> Value {
    reduced(a, "last", op, value)
}

/// `A` reduced by `reducer` (`B`), then `B <op> value` (`C`).
fn reduced(a: Value, reducer: &str, op: &str, value: f64) -> Value {
    let expr = json!({"type": "__expr__", "uid": "__expr__"});
    json!([
        a,
        expression(json!({
            "refId": "B",
            "datasource": expr,
            "type": "reduce",
            "expression": "A",
            "reducer": reducer,
            "settings": {"mode": "dropNN"}
        })),
        expression(json!({
            "refId": "C",
            "datasource": expr,
            "type": "threshold",
            "expression": "B",
            "conditions": [{"evaluator": {"type": op, "params": [value]}}]
        })),
    ])
}

fn rule(
    uid: String,
    title: String,
    data: Value,
    no_data: &str,
    labels: Value,
    summary: String,
    description: String,
) -> Value {
    json!({
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": data,
        "noDataState": no_data,
        "execErrState": "Error",
        "for": "0s",
        "isPaused": false,
        "labels": labels,
        "annotations": {"summary": summary, "description": description},
    })
}

/// The rules for `o`.
pub fn rules(o: &AlertOptions) -> Vec<Value> {
    if !o.self_metrics || o.collectors.is_empty() {
        return Vec::new();
    }
    let mut out = vec![failing_rule(o)];
    out.extend(late_rules(o));
    out.push(silent_rule(o));
    out.extend(spool_rules());
    out
}

/// A collector failed its last runs.
fn failing_rule(o: &AlertOptions) -> Value {
    let m = SELF_MEASUREMENT;
    let names: Vec<&str> = o.collectors.iter().map(|(n, _)| n.as_str()).collect();
    // Collector names are [a-z_]: nothing to escape in the regex.
    let enabled = format!("\"collector\" =~ /^({})$/", names.join("|"));
    rule(
        FAILING_UID.into(),
        format!("ubuntu-metrics: a collector failed {FAILED_RUNS} runs in a row"),
        data(
            query(
                format!(
                    "SELECT count(\"error\") AS \"failed\" FROM (SELECT \"error\", \"duration_seconds\" FROM \"{m}\" WHERE {enabled} AND $timeFilter GROUP BY \"collector\" ORDER BY time DESC LIMIT {FAILED_RUNS}) WHERE $timeFilter GROUP BY \"collector\" ORDER BY time DESC"
                ),
                o.failing_window(),
            ),
            "gt",
            f64::from(FAILED_RUNS - 1),
        ),
        "OK",
        json!({"service": "ubuntu-metrics", "alert": "failing", "severity": "warning"}),
        format!("Collector {{{{ $labels.collector }}}}: its last {FAILED_RUNS} runs failed"),
        format!(
            "The last {FAILED_RUNS} runs of {{{{ $labels.collector }}}} ended in error or timeout (ubuntu_metrics_run, status != ok). Its error: `journalctl -u 'ubuntu-metrics*'`, or the error field of {m}."
        ),
    )
}

/// Each collector: no run for 2 intervals and the run timeout.
fn late_rules(o: &AlertOptions) -> Vec<Value> {
    let m = SELF_MEASUREMENT;
    let mut out = Vec::new();
    for (name, interval) in &o.collectors {
        let after = o.late_after(*interval);
        out.push(rule(
            format!("{LATE_UID_PREFIX}{name}"),
            format!("ubuntu-metrics: collector {name} is late"),
            data(
                query(
                    format!(
                        "SELECT count(\"duration_seconds\") AS \"runs\" FROM \"{m}\" WHERE \"collector\" = '{name}' AND $timeFilter"
                    ),
                    after,
                ),
                "lt",
                1.0,
            ),
            "Alerting",
            json!({"service": "ubuntu-metrics", "alert": "late", "severity": "warning", "collector": name}),
            format!("Collector {name}: no run for {}", span(after)),
            format!(
                "No run of {name} reached InfluxDB in the last {} (2 × its interval {} + the run timeout {}): its timer or the daemon is not running it, or its points wait in the spool (`ubuntu-metrics spool status`).",
                span(after),
                span(*interval),
                span(o.run_timeout)
            ),
        ));
    }
    out
}

/// No run of any collector reached InfluxDB.
fn silent_rule(o: &AlertOptions) -> Value {
    let m = SELF_MEASUREMENT;
    let silent = o.silent_after();
    rule(
        SILENT_UID.into(),
        format!(
            "ubuntu-metrics: no run reached InfluxDB for {}",
            span(silent)
        ),
        data(
            query(
                format!(
                    "SELECT count(\"duration_seconds\") AS \"runs\" FROM \"{m}\" WHERE $timeFilter"
                ),
                silent,
            ),
            "lt",
            1.0,
        ),
        "Alerting",
        json!({"service": "ubuntu-metrics", "alert": "silent", "severity": "critical"}),
        format!("No collector run reached InfluxDB for {}", span(silent)),
        format!(
            "No {m} point in the last {}. Either the station does not run (the daemon or its timers are stopped), or InfluxDB takes no writes and every run waits in the spool: `ubuntu-metrics status` on the station says which, and since when.",
            span(silent)
        ),
    )
}

/// The spool: points waiting too long, new dead letters.
fn spool_rules() -> Vec<Value> {
    let mut out = Vec::new();
    let spool = SPOOL_MEASUREMENT;
    out.push(rule(
        SPOOL_AGE_UID.into(),
        format!("ubuntu-metrics: points waited in the spool for more than {}", span(SPOOL_AGE)),
        data(
            query(
                format!("SELECT max(\"oldest_age_seconds\") AS \"age\" FROM \"{spool}\" WHERE $timeFilter GROUP BY time(1m) fill(none)"),
                SPOOL_AGE_WINDOW,
            ),
            "gt",
            SPOOL_AGE.as_secs_f64(),
        ),
        "OK",
        json!({"service": "ubuntu-metrics", "alert": "spool_age", "severity": "warning"}),
        format!("Points waited in the spool for more than {}", span(SPOOL_AGE)),
        format!(
            "The spool's oldest record had waited more than {} for InfluxDB ({spool}, oldest_age_seconds). InfluxDB refused or could not take writes for that long: the station's journal says why; `ubuntu-metrics spool status` shows what still waits.",
            span(SPOOL_AGE)
        ),
    ));
    out.push(rule(
        DEAD_LETTERS_UID.into(),
        "ubuntu-metrics: InfluxDB refused points for good (dead letters)".into(),
        reduced(
            query(
                format!("SELECT non_negative_difference(max(\"dead_letter_batches\")) AS \"new\" FROM \"{spool}\" WHERE $timeFilter GROUP BY time(1m) fill(none)"),
                DEAD_LETTERS_WINDOW,
            ),
            "max",
            "gt",
            0.0,
        ),
        "OK",
        json!({"service": "ubuntu-metrics", "alert": "dead_letters", "severity": "warning"}),
        "New dead letters: InfluxDB refused points for good".into(),
        format!(
            "The dead-letter file grew in the last {} ({spool}, dead_letter_batches): InfluxDB refused a batch for good (a field type conflict, a bad line). `ubuntu-metrics spool status` on the station names the file; each entry holds InfluxDB's answer and the lines.",
            span(DEAD_LETTERS_WINDOW)
        ),
    ));
    out
}

/// Grafana's alerting provisioning document for `o`.
pub fn provisioning(o: &AlertOptions) -> Value {
    let rules = rules(o);
    let groups = if rules.is_empty() {
        json!([])
    } else {
        json!([{
            "orgId": 1,
            "name": GROUP,
            "folder": FOLDER,
            "interval": EVALUATION_INTERVAL,
            "rules": rules,
        }])
    };
    json!({"apiVersion": 1, "groups": groups})
}

/// The alerting provisioning file.
pub fn alerting_yaml(o: &AlertOptions) -> String {
    // Queries on one line each, as Grafana shows them.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    let body = serde_saphyr::to_string_with_options(&provisioning(o), options)
        .expect("JSON values serialise as YAML");
    let none = if o.self_metrics {
        ""
    } else {
        "# [self_metrics] enabled = false: without self-metrics there is nothing to\n# alert on, so no rule.\n"
    };
    format!(
        "# Generated by `ubuntu-metrics dashboards export`: Grafana alert rules on the
# ubuntu-metrics self-metrics (ubuntu_metrics_run), with the collectors'
# intervals and run timeout of the configuration it was exported with.
# Regenerate it after changing them.
{none}{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> AlertOptions {
        AlertOptions::default()
    }

    #[test]
    fn the_file_reads_back_as_the_document() {
        let o = options();
        let back: Value = serde_saphyr::from_str(&alerting_yaml(&o)).unwrap();
        assert_eq!(back, provisioning(&o));
    }

    #[test]
    fn every_rule_has_what_grafana_requires() {
        let doc = provisioning(&options());
        assert_eq!(doc["apiVersion"], json!(1));
        let g = &doc["groups"][0];
        assert_eq!(g["folder"], json!(FOLDER));
        assert_eq!(g["interval"], json!(EVALUATION_INTERVAL));
        let rules = g["rules"].as_array().unwrap();
        // failing + one late rule per collector + silent + spool age +
        // dead letters.
        let n = crate::collectors::registry().len();
        assert_eq!(rules.len(), n + 4);
        let mut uids = std::collections::BTreeSet::new();
        for r in rules {
            let uid = r["uid"].as_str().unwrap();
            assert!(
                uid.len() <= 40,
                "{uid}: Grafana uids have at most 40 characters"
            );
            assert!(
                uid.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{uid}"
            );
            assert!(uids.insert(uid.to_owned()), "duplicate uid {uid}");
            // Grafana replaces $NAME in titles and labels with environment variables.
            assert!(!r["title"].as_str().unwrap().contains('$'), "{r}");
            assert!(!r["labels"].to_string().contains('$'), "{r}");
            assert_eq!(r["condition"], json!("C"));
            let data = r["data"].as_array().unwrap();
            let refs: Vec<&str> = data.iter().map(|d| d["refId"].as_str().unwrap()).collect();
            assert_eq!(refs, ["A", "B", "C"]);
            assert_eq!(data[0]["datasourceUid"], json!(DATASOURCE_UID));
            let q = data[0]["model"]["query"].as_str().unwrap();
            assert!(q.contains("$timeFilter") && !q.contains("now()"), "{q}");
            assert!(data[0]["relativeTimeRange"]["from"].as_u64().unwrap() > 0);
            assert_eq!(data[1]["model"]["type"], json!("reduce"));
            assert_eq!(data[2]["model"]["type"], json!("threshold"));
        }
    }

    #[test]
    fn late_thresholds_follow_the_configuration() {
        let mut c = Config::default();
        c.collectors.insert(
            "versions".into(),
            toml::from_str("interval = \"2h\"").unwrap(),
        );
        c.collectors
            .insert("britney".into(), toml::from_str("enabled = false").unwrap());
        c.daemon.run_timeout = crate::model::timespan::TimeSpan::parse("5m").unwrap();
        let o = AlertOptions::from_config(&c);
        let rules = rules(&o);
        let late = |name: &str| {
            rules
                .iter()
                .find(|r| r["uid"] == json!(format!("{LATE_UID_PREFIX}{name}")))
                .map(|r| r["data"][0]["relativeTimeRange"]["from"].as_u64().unwrap())
        };
        assert_eq!(late("versions"), Some(2 * 7200 + 300));
        assert_eq!(late("sponsoring"), Some(2 * 300 + 300));
        assert_eq!(late("britney"), None, "disabled: no rule");
        // The shortest late threshold (15m) is below 30m: the silent rule waits 30m.
        assert_eq!(o.silent_after(), SILENT_AFTER);
        assert_eq!(
            o.failing_window(),
            Duration::from_secs(3 * (2 * 7200 + 300))
        );
        let failing = rules[0]["data"][0]["model"]["query"].as_str().unwrap();
        assert!(
            failing.contains("versions") && !failing.contains("britney"),
            "{failing}"
        );
    }

    #[test]
    fn no_self_metrics_no_rules() {
        let mut c = Config::default();
        c.self_metrics.enabled = false;
        let o = AlertOptions::from_config(&c);
        assert_eq!(provisioning(&o)["groups"], json!([]));
        let back: Value = serde_saphyr::from_str(&alerting_yaml(&o)).unwrap();
        assert_eq!(back["groups"], json!([]));
    }
}
