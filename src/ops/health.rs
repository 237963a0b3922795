//! How the station is: each enabled collector's last run, last success,
//! failures, next run and whether it is late (from the state file every
//! run writes), then the spool, and the verdict on all of it. `status`
//! prints it; the daemon's optional HTTP endpoint (`[daemon] listen`)
//! serves the same verdict (`/health`), the same JSON (`/status`) and the
//! numbers in Prometheus' text format (`/metrics`).
//!
//! Nothing here prints: the command line renders, the endpoint answers.
//! Errors in the state file are already shortened and redacted when
//! recorded (see [`crate::state`]); nothing else from the configuration
//! (passwords, URLs of the sources) is part of an answer.

use crate::collector::Collector;
use crate::config::Config;
use crate::model::timespan::TimeSpan;
use crate::ops::systemd_view::{self as sd, SystemdView};
use crate::sinks::spool::{self, Spool};
use crate::state::{self, CollectorState};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Points waiting in the spool longer than this are a problem, unless
/// `status --spool-age` says otherwise (the endpoint uses this).
pub const DEFAULT_SPOOL_AGE: &str = "30m";

/// One collector's verdict.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub interval: chrono::Duration,
    pub state: Option<CollectorState>,
    pub next: Option<DateTime<Utc>>,
    /// Where `next` comes from: [`NextSource`].
    pub next_source: NextSource,
    pub late: bool,
    pub failing: bool,
}

/// Where a collector's next run time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextSource {
    /// The running daemon's schedule (its due time).
    Daemon,
    /// The collector's systemd timer (`NextElapseUSecRealtime`).
    Timer,
    /// Neither could be asked: one interval after the last run ended.
    Estimate,
}

impl NextSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NextSource::Daemon => "daemon",
            NextSource::Timer => "timer",
            NextSource::Estimate => "estimate",
        }
    }
}

/// Asks systemd about the daemon and the timers of the given collectors;
/// `None` when it cannot be asked (see
/// `schedule::systemd::systemd_view`).
pub type TimerQuery<'a> = &'a dyn Fn(&[&str]) -> Option<SystemdView>;

/// Nothing to ask (the daemon's endpoint: its own schedule is there).
pub fn no_timers(_: &[&str]) -> Option<SystemdView> {
    None
}

/// The station's state and the verdict on it, at `now`.
#[derive(Debug, Clone)]
pub struct Report {
    pub now: DateTime<Utc>,
    /// Spool age beyond which waiting points are a problem.
    pub threshold: chrono::Duration,
    pub rows: Vec<Row>,
    /// Empty when all is fine.
    pub problems: Vec<String>,
    pub spool: spool::Status,
    pub oldest_age: Option<chrono::Duration>,
    pub spool_too_old: bool,
    pub state_dir: PathBuf,
    pub spool_dir: PathBuf,
    /// Every output's spool (the fields above are the first's).
    pub outputs: Vec<OutputSpool>,
    /// What systemd said of the daemon and the timers, when asked.
    pub systemd: Option<SystemdView>,
    /// Whether the collectors run from timers (`[systemd] timers`, or
    /// timers `systemd install` wrote).
    pub timers_on: bool,
    /// A problem means nothing is being collected (Nagios CRITICAL).
    pub critical: bool,
}

/// What waits in one output's spool.
#[derive(Debug, Clone)]
pub struct OutputSpool {
    pub name: String,
    pub dir: PathBuf,
    pub status: spool::Status,
    pub oldest_age: Option<chrono::Duration>,
    pub too_old: bool,
    /// Why the spool was read without its lock (it could not be taken:
    /// a read-only state directory, another user's spool), when it was:
    /// the figures may be stale.
    pub stale: Option<String>,
}

/// The configuration does not let the report be made (`spool.max_size`).
#[derive(Debug, thiserror::Error)]
#[error("configuration error: spool.max_size: {0}")]
pub struct ReportError(pub String);

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A span as a person reads it: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86400 && s % 3600 < 60 {
        format!("{}h", s / 3600)
    } else if s < 86400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86400, s % 86400 / 3600)
    }
}

pub fn std_to_chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A row for each enabled collector: its state, when it runs next (the
/// `scheduled` time from `source` when plausible, else an estimate), and
/// whether it is failing or late.
fn collector_rows(
    registry: &[Box<dyn Collector>],
    config: &Config,
    now: DateTime<Utc>,
    st: &state::StateFile,
    scheduled: &std::collections::BTreeMap<String, DateTime<Utc>>,
    source: NextSource,
) -> Vec<Row> {
    let run_timeout = std_to_chrono(config.daemon.run_timeout.as_duration());
    registry
        .iter()
        .filter(|c| config.enabled(c.name()))
        .map(|c| {
            let interval = std_to_chrono(config.interval(c.as_ref()).as_duration());
            let state = st.collectors.get(c.name()).cloned();
            let ended = state.as_ref().map(|s| s.last_run.ended);
            // A due time no schedule gives (years ago, centuries
            // ahead: a file written by hand or by another version) is
            // not trusted: the estimate instead.
            let plausible = |at: DateTime<Utc>| {
                source != NextSource::Daemon || {
                    let slack = interval * 2 + run_timeout;
                    let ahead = slack
                        + std_to_chrono(config.daemon.startup_delay.as_duration())
                        + std_to_chrono(config.daemon.random_delay.as_duration());
                    at >= now - slack && at <= now + ahead
                }
            };
            let (next, next_source) = match scheduled.get(c.name()).filter(|at| plausible(**at)) {
                Some(at) => (Some(*at), source),
                None => (ended.map(|e| e + interval), NextSource::Estimate),
            };
            Row {
                name: c.name().to_owned(),
                interval,
                next,
                next_source,
                late: ended.is_some_and(|e| now - e > interval * 2 + run_timeout),
                failing: state.as_ref().is_some_and(|s| s.last_run.result != "ok"),
                state,
            }
        })
        .collect()
}

/// Each output's spool (`max` bytes at most), read under its lock, else
/// without it (stale); a backlog older than `spool_age` is a problem.
fn output_spools(
    config: &Config,
    max: u64,
    now: DateTime<Utc>,
    spool_age: &TimeSpan,
    problems: &mut Vec<String>,
) -> Vec<OutputSpool> {
    let threshold = std_to_chrono(spool_age.as_duration());
    let specs = config.outputs();
    let several = specs.len() > 1;
    let mut outputs = Vec::new();
    for o in specs {
        let status = if o.spool_dir.exists() {
            Spool::open(&o.spool_dir, max).and_then(|s| s.status())
        } else {
            Ok(Default::default())
        };
        let mut stale = None;
        let status = match status {
            Ok(s) => s,
            // No lock to be had: read it as it is, and say so.
            Err(e) => match spool::peek(&o.spool_dir) {
                Ok(s) => {
                    stale = Some(e.to_string());
                    s
                }
                Err(_) => {
                    problems.push(e.to_string());
                    Default::default()
                }
            },
        };
        let oldest_age = status.oldest.map(|t| now - t);
        let too_old = oldest_age.is_some_and(|a| a > threshold);
        if too_old {
            problems.push(format!(
                "{} points waiting in the spool{} for {} (more than {})",
                status.points,
                if several {
                    format!(" of output {}", o.name)
                } else {
                    String::new()
                },
                span(oldest_age.unwrap_or_default()),
                spool_age.text()
            ));
        }
        outputs.push(OutputSpool {
            name: o.name,
            dir: o.spool_dir,
            status,
            oldest_age,
            too_old,
            stale,
        });
    }
    outputs
}

impl Report {
    /// Reads the state file and the spool of `config` and judges them as
    /// at `now`; `spool_age` is the spool age beyond which waiting points
    /// are a problem. A state file or spool that cannot be read is a
    /// problem in the report, not an error.
    ///
    /// The next run of each collector is the running daemon's due time
    /// (its schedule file), else its timer's next elapse (asked through
    /// `timers`), else one interval after its last run.
    pub fn new(
        registry: &[Box<dyn Collector>],
        config: &Config,
        now: DateTime<Utc>,
        spool_age: &TimeSpan,
        timers: TimerQuery<'_>,
    ) -> Result<Report, ReportError> {
        let threshold = std_to_chrono(spool_age.as_duration());
        let max = config.spool.max_bytes().map_err(ReportError)?;
        let state_dir = state::dir(config);
        let mut problems: Vec<String> = Vec::new();
        let st = match state::read(&state_dir) {
            Ok(s) => s,
            Err(e) => {
                problems.push(e.to_string());
                state::StateFile::default()
            }
        };
        let enabled: Vec<&str> = registry
            .iter()
            .map(|c| c.name())
            .filter(|n| config.enabled(n))
            .collect();
        let view = timers(&enabled);
        let (scheduled, source) = match state::read_schedule(&state_dir) {
            Some(s) => (s.due, NextSource::Daemon),
            None => (
                view.as_ref()
                    .map(SystemdView::next_elapses)
                    .unwrap_or_default(),
                NextSource::Timer,
            ),
        };
        let timers_on = config.systemd.timers
            || (view.is_some()
                && sd::installed_timers(std::path::Path::new("/etc/systemd/system")));
        let mut critical = false;
        if let Some(v) = &view {
            for f in sd::judge(v, timers_on, &enabled) {
                critical |= f.critical;
                problems.push(f.message);
            }
        }
        let rows = collector_rows(registry, config, now, &st, &scheduled, source);
        let failing: Vec<&str> = rows
            .iter()
            .filter(|r| r.failing)
            .map(|r| r.name.as_str())
            .collect();
        let late: Vec<&str> = rows
            .iter()
            .filter(|r| r.late)
            .map(|r| r.name.as_str())
            .collect();
        if !failing.is_empty() {
            problems.push(format!("failing: {}", failing.join(", ")));
        }
        if !late.is_empty() {
            problems.push(format!("late: {}", late.join(", ")));
        }

        let outputs = output_spools(config, max, now, spool_age, &mut problems);
        let first = outputs[0].clone();
        let (spool, oldest_age, spool_too_old, spool_dir) =
            (first.status, first.oldest_age, first.too_old, first.dir);
        Ok(Report {
            outputs,
            now,
            threshold,
            rows,
            problems,
            spool,
            oldest_age,
            spool_too_old,
            state_dir,
            spool_dir,
            systemd: view,
            timers_on,
            critical,
        })
    }

    /// All fine: nothing failing, late, or waiting too long.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// No problem, but no enabled collector has ever run on this station
    /// (no state recorded): there is nothing to judge yet, which is not
    /// "OK" (Nagios UNKNOWN).
    pub fn nothing_ran(&self) -> bool {
        self.ok() && self.rows.iter().all(|r| r.state.is_none())
    }

    /// The exit status of `status` for this verdict (Nagios style): 0 all
    /// fine, 1 a problem (WARNING), 2 nothing is being collected
    /// (CRITICAL: the daemon cannot start, or no timer is active), 3
    /// nothing has run yet (UNKNOWN). A problem wins over UNKNOWN: a
    /// daemon that cannot start is CRITICAL whether or not anything ran.
    pub fn exit_status(&self) -> i32 {
        if self.nothing_ran() {
            3
        } else if self.ok() {
            0
        } else if self.critical {
            2
        } else {
            1
        }
    }

    /// The verdict's word, as Nagios shows it: `OK`, `WARNING`,
    /// `CRITICAL` or `UNKNOWN`.
    pub fn verdict(&self) -> &'static str {
        match self.exit_status() {
            0 => "OK",
            2 => "CRITICAL",
            3 => "UNKNOWN",
            _ => "WARNING",
        }
    }

    /// The verdict's line when there is no problem: `OK: N collectors,
    /// none failing or late` or `UNKNOWN: nothing has run yet (N
    /// collectors enabled)`.
    pub fn summary(&self) -> String {
        if self.nothing_ran() {
            format!(
                "UNKNOWN: nothing has run yet ({} collectors enabled)",
                self.rows.len()
            )
        } else {
            format!("OK: {} collectors, none failing or late", self.rows.len())
        }
    }

    /// The `systemd` object of the JSON: what systemd said (null when it
    /// could not be asked).
    fn systemd_json(&self) -> Value {
        let Some(v) = &self.systemd else {
            return Value::Null;
        };
        let unit = |u: &sd::UnitState| {
            json!({
                "unit": u.id,
                "load_state": u.load_state,
                "active_state": u.active_state,
                "sub_state": u.sub_state,
                "result": u.result,
                "unit_file_state": u.unit_file_state,
            })
        };
        json!({
            "timers_on": self.timers_on,
            "daemon": v.daemon.as_ref().map(|d| {
                let mut o = unit(d);
                o["n_restarts"] = json!(d.n_restarts);
                o
            }),
            "timers": v.timers.iter().map(|(name, t)| {
                let mut o = unit(t);
                o["collector"] = json!(name);
                o["next_elapse"] = json!(t.next.map(rfc3339));
                o
            }).collect::<Vec<_>>(),
        })
    }

    /// The document of `status --format json` and the endpoint's `/status`.
    pub fn json(&self) -> Value {
        let now = self.now;
        let collectors: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let s = r.state.as_ref();
                json!({
                    "name": r.name,
                    "interval_seconds": r.interval.num_seconds(),
                    "last_run": s.map(|s| json!({
                        "time": rfc3339(s.last_run.time),
                        "ended": rfc3339(s.last_run.ended),
                        "age_seconds": (now - s.last_run.ended).num_seconds(),
                        "result": s.last_run.result,
                        "points": s.last_run.points,
                        "duration_seconds": s.last_run.duration_seconds,
                        "requests": s.last_run.requests,
                        "error": s.last_run.error,
                    })),
                    "last_success": s.and_then(|s| s.last_success).map(rfc3339),
                    "consecutive_failures": s.map_or(0, |s| s.consecutive_failures),
                    "next_run": r.next.map(rfc3339),
                    "next_run_source": r.next.map(|_| r.next_source.as_str()),
                    "due": r.next.is_some_and(|n| n <= now),
                    "failing": r.failing,
                    "late": r.late,
                })
            })
            .collect();
        json!({
            "now": rfc3339(now),
            "status": if self.nothing_ran() { "unknown" } else if self.ok() { "ok" } else { "problem" },
            "exit_status": self.exit_status(),
            "verdict": self.verdict(),
            "problems": self.problems,
            "state_file": self.state_dir.join(state::STATE_FILE).display().to_string(),
            "collectors": collectors,
            "spool": {
                "dir": self.spool_dir.display().to_string(),
                "records": self.spool.records,
                "points": self.spool.points,
                "oldest_record": self.spool.oldest.map(rfc3339),
                "oldest_age_seconds": self.oldest_age.map(|a| a.num_seconds()),
                "threshold_seconds": self.threshold.num_seconds(),
                "too_old": self.spool_too_old,
                "dead_letter_batches": self.spool.dead_letter_entries,
                "stale": self.outputs[0].stale.is_some(),
                "stale_reason": self.outputs[0].stale,
            },
            "outputs": self.outputs.iter().map(|o| json!({
                "name": o.name,
                "dir": o.dir.display().to_string(),
                "records": o.status.records,
                "points": o.status.points,
                "oldest_record": o.status.oldest.map(rfc3339),
                "oldest_age_seconds": o.oldest_age.map(|a| a.num_seconds()),
                "too_old": o.too_old,
                "dead_letter_batches": o.status.dead_letter_entries,
                "stale": o.stale.is_some(),
                "stale_reason": o.stale,
            })).collect::<Vec<_>>(),
            "systemd": self.systemd_json(),
        })
    }

    /// The self-metrics in Prometheus' text exposition format (0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "healthy",
            "1 when the verdict of `ubuntu-metrics status` is OK, 0 when something is failing, late or waiting too long in the spool.",
            "gauge",
            vec![(String::new(), u8::from(self.ok()).to_string())],
        );
        self.collector_families(&mut out);
        self.spool_families(&mut out);
        out
    }

    /// The collectors' families of [`Report::prometheus`].
    fn collector_families(&self, out: &mut String) {
        let mut family = |name: &str, help: &str, kind: &str, samples: Vec<(String, String)>| {
            family(out, name, help, kind, samples);
        };
        let label = |r: &Row| format!("{{collector=\"{}\"}}", escape(&r.name));
        let per_run = |f: &dyn Fn(&CollectorState) -> String| -> Vec<(String, String)> {
            self.rows
                .iter()
                .filter_map(|r| r.state.as_ref().map(|s| (label(r), f(s))))
                .collect()
        };
        family(
            "collector_last_run_success",
            "1 when the collector's last run succeeded, 0 when it failed or timed out (label result).",
            "gauge",
            self.rows
                .iter()
                .filter_map(|r| {
                    r.state.as_ref().map(|s| {
                        (
                            format!(
                                "{{collector=\"{}\",result=\"{}\"}}",
                                escape(&r.name),
                                escape(&s.last_run.result)
                            ),
                            u8::from(s.last_run.result == "ok").to_string(),
                        )
                    })
                })
                .collect(),
        );
        family(
            "collector_last_run_duration_seconds",
            "How long the collector's last run took.",
            "gauge",
            per_run(&|s| s.last_run.duration_seconds.to_string()),
        );
        family(
            "collector_last_run_points",
            "Points the collector's last run collected.",
            "gauge",
            per_run(&|s| s.last_run.points.to_string()),
        );
        family(
            "collector_last_run_requests",
            "Upstream requests of the collector's last run.",
            "gauge",
            per_run(&|s| s.last_run.requests.to_string()),
        );
        family(
            "collector_last_run_timestamp_seconds",
            "When the collector's last run ended (Unix time).",
            "gauge",
            per_run(&|s| s.last_run.ended.timestamp().to_string()),
        );
        family(
            "collector_consecutive_failures",
            "Failed or timed-out runs of the collector since its last success.",
            "gauge",
            self.rows
                .iter()
                .map(|r| {
                    (
                        label(r),
                        r.state
                            .as_ref()
                            .map_or(0, |s| s.consecutive_failures)
                            .to_string(),
                    )
                })
                .collect(),
        );
        family(
            "collector_last_success_timestamp_seconds",
            "When the collector's last successful run started (Unix time).",
            "gauge",
            self.rows
                .iter()
                .filter_map(|r| {
                    r.state
                        .as_ref()
                        .and_then(|s| s.last_success)
                        .map(|t| (label(r), t.timestamp().to_string()))
                })
                .collect(),
        );
        family(
            "collector_late",
            "1 when the collector has not run for more than 2 intervals + the run timeout.",
            "gauge",
            self.rows
                .iter()
                .map(|r| (label(r), u8::from(r.late).to_string()))
                .collect(),
        );
    }

    /// The spools' families of [`Report::prometheus`].
    fn spool_families(&self, out: &mut String) {
        let mut family = |name: &str, help: &str, kind: &str, samples: Vec<(String, String)>| {
            family(out, name, help, kind, samples);
        };
        let per_output = |f: &dyn Fn(&OutputSpool) -> Option<String>| -> Vec<(String, String)> {
            self.outputs
                .iter()
                .filter_map(|o| f(o).map(|v| (format!("{{output=\"{}\"}}", escape(&o.name)), v)))
                .collect()
        };
        family(
            "spool_points",
            "Points waiting in the output's spool.",
            "gauge",
            per_output(&|o| Some(o.status.points.to_string())),
        );
        family(
            "spool_records",
            "Records (batches) waiting in the output's spool.",
            "gauge",
            per_output(&|o| Some(o.status.records.to_string())),
        );
        family(
            "spool_oldest_age_seconds",
            "How long the oldest record in the output's spool has been waiting.",
            "gauge",
            per_output(&|o| o.oldest_age.map(|a| a.num_seconds().to_string())),
        );
        family(
            "dead_letter_batches",
            "Batches the output refused for good, kept in its dead-letter file.",
            "gauge",
            per_output(&|o| Some(o.status.dead_letter_entries.to_string())),
        );
    }
}

/// One metric family in the exposition format: its help, its type and its
/// samples (`labels`, value); nothing when it has no sample.
fn family(out: &mut String, name: &str, help: &str, kind: &str, samples: Vec<(String, String)>) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP ubuntu_metrics_{name} {help}");
    let _ = writeln!(out, "# TYPE ubuntu_metrics_{name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "ubuntu_metrics_{name}{labels} {value}");
    }
}

/// A label value as the exposition format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The daemon's endpoint: what it needs to make a report.
pub struct Endpoint {
    pub registry: Arc<Vec<Box<dyn Collector>>>,
    /// The configuration in force (it changes on SIGHUP).
    pub config: Arc<dyn Fn() -> Arc<Config> + Send + Sync>,
}

/// The address to listen on cannot be taken: which, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ([daemon] listen): {source}")]
pub struct BindError {
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` (already validated with the configuration).
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError {
            addr: addr.to_owned(),
            source,
        })
}

type Body = http_body_util::Full<hyper::body::Bytes>;

fn answer(status: u16, content_type: &str, body: String) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Body::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

impl Endpoint {
    /// The answer to one request.
    pub async fn answer<B>(&self, req: &hyper::Request<B>) -> hyper::Response<Body> {
        let path = req.uri().path();
        if !matches!(path, "/health" | "/status" | "/metrics") {
            return answer(
                404,
                "text/plain; charset=utf-8",
                format!("not found: {path}; try /health, /status or /metrics\n"),
            );
        }
        if req.method() != hyper::Method::GET {
            let mut r = answer(
                405,
                "text/plain; charset=utf-8",
                format!("method {} not allowed: only GET\n", req.method()),
            );
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET"),
            );
            return r;
        }
        let registry = self.registry.clone();
        let config = (self.config)();
        let threshold =
            TimeSpan::parse(DEFAULT_SPOOL_AGE).unwrap_or_else(|_| TimeSpan::from_secs(30 * 60));
        // The state file and the spool are read from disk: off the runtime.
        let report = tokio::task::spawn_blocking(move || {
            Report::new(&registry, &config, Utc::now(), &threshold, &no_timers)
        })
        .await;
        let report = match report {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return answer(500, "text/plain; charset=utf-8", format!("{e}\n")),
            Err(e) => {
                return answer(
                    500,
                    "text/plain; charset=utf-8",
                    format!("the report failed: {e}\n"),
                );
            }
        };
        match path {
            "/health" => {
                // Nothing run yet is no failure of the daemon: 200, saying so.
                let (code, body) = if report.ok() {
                    (200, format!("{}\n", report.summary()))
                } else {
                    (
                        503,
                        format!("{}: {}\n", report.verdict(), report.problems.join("; ")),
                    )
                };
                answer(code, "text/plain; charset=utf-8", body)
            }
            "/status" => answer(
                200,
                "application/json",
                serde_json::to_string_pretty(&report.json()).unwrap_or_default() + "\n",
            ),
            _ => answer(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                report.prometheus(),
            ),
        }
    }

    /// Serves HTTP/1.1 on `listener` until the task is dropped.
    ///
    /// A peer cannot take the station's descriptors nor silence the
    /// endpoint (issue 22 item 2): at most [`MAX_CONNECTIONS`] are open at
    /// once, and when one more comes the oldest still waiting for its
    /// request head is closed for it (a peer that never finishes its head
    /// loses to one that asks); a head must arrive within
    /// [`HEADER_READ_TIMEOUT`], a connection ends after one answer and
    /// lives at most [`CONNECTION_LIFETIME`]. A connection is closed at
    /// once, unserved, when the process's open descriptors come within
    /// [`reserved_descriptors`] of its limit (`RLIMIT_NOFILE`): those are
    /// kept for the spool, the state files and the collectors' requests.
    /// An accept that fails (EMFILE) closes the oldest waiting connection
    /// and backs off, and is logged once per streak, not once per try.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let live = Arc::new(Mutex::new(Connections::default()));
        let mut errors = Throttled::default();
        let mut shed = Throttled::default();
        let mut evicted = Throttled::default();
        let mut pause = ACCEPT_PAUSE;
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => {
                    pause = ACCEPT_PAUSE;
                    if let Some(report) = errors.end() {
                        tracing::warn!("health endpoint: accepting again ({report})");
                    }
                    s
                }
                Err(e) => {
                    // A descriptor back from a peer that sends nothing.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        lock(&live).evict_waiting();
                    }
                    if let Some(report) = errors.event() {
                        tracing::warn!(
                            "health endpoint: accept: {e} ({report}; retrying with a backoff up to {} s)",
                            MAX_ACCEPT_PAUSE.as_secs()
                        );
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
                    continue;
                }
            };
            if let Err(why) = descriptors_to_spare() {
                drop(stream);
                if let Some(report) = shed.event() {
                    tracing::warn!(
                        "health endpoint: a connection closed unserved: {why} ({report})"
                    );
                }
                continue;
            }
            let mut conns = lock(&live);
            if conns.open.len() >= MAX_CONNECTIONS {
                if conns.evict_waiting() {
                    if let Some(report) = evicted.event() {
                        tracing::warn!(
                            "health endpoint: {MAX_CONNECTIONS} connections open: the oldest one still waiting for its request head was closed for a new one ({report})"
                        );
                    }
                } else {
                    drop(conns);
                    drop(stream);
                    if let Some(report) = shed.event() {
                        tracing::warn!(
                            "health endpoint: a connection closed unserved: {MAX_CONNECTIONS} connections are being answered ({report})"
                        );
                    }
                    continue;
                }
            }
            let id = conns.next;
            conns.next += 1;
            let asked = Arc::new(AtomicBool::new(false));
            let guard = Leave {
                live: live.clone(),
                id,
            };
            // Spawned under the lock: the task's `Leave` cannot run before
            // its entry is in the table.
            let task = tokio::spawn(self.clone().connection(stream, asked.clone(), guard));
            conns.open.insert(
                id,
                Open {
                    asked,
                    abort: task.abort_handle(),
                },
            );
        }
    }

    /// One connection: one request, its head within the timeout, the
    /// whole within [`CONNECTION_LIFETIME`].
    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        asked: Arc<AtomicBool>,
        _leave: Leave,
    ) {
        let service = hyper::service::service_fn(move |req| {
            asked.store(true, Ordering::Relaxed);
            let this = self.clone();
            async move { Ok::<_, std::convert::Infallible>(this.answer(&req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(false)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("health endpoint: connection: {e}"),
            Err(_) => tracing::debug!(
                "health endpoint: connection closed after {} s",
                CONNECTION_LIFETIME.as_secs()
            ),
        }
    }
}

/// Connections the endpoint answers at once; more close the oldest one
/// still waiting for its request head, or are closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// A request head not complete by then closes the connection.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// No connection lives longer (a peer that reads its answer slowly).
pub const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);
/// The first pause after a failed accept, doubled up to the second.
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
const MAX_ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// At most one log line per this span for a repeated event.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Descriptors of a process limited to `limit` that the endpoint's sockets
/// never take: a quarter of the limit, at least 64, at most half.
pub fn reserved_descriptors(limit: u64) -> u64 {
    (limit / 4).max(64).min(limit / 2)
}

/// Whether a descriptor may go to one more connection: `open` of the
/// process's descriptors are open (this connection's included), `limit`
/// is its `RLIMIT_NOFILE`. `Err` says why not.
pub fn spare(open: u64, limit: u64) -> Result<(), NoSpareDescriptor> {
    let reserved = reserved_descriptors(limit);
    if open + reserved > limit {
        Err(NoSpareDescriptor {
            open,
            limit,
            reserved,
        })
    } else {
        Ok(())
    }
}

/// No descriptor to spare for one more connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{open} of the process's {limit} descriptors are open (RLIMIT_NOFILE) and the last {reserved} are kept for the spool and the state files"
)]
pub struct NoSpareDescriptor {
    pub open: u64,
    pub limit: u64,
    pub reserved: u64,
}

/// [`spare`] for this process (its soft `RLIMIT_NOFILE`, its descriptors
/// in `/proc/self/fd`); without a limit, or without `/proc`, only the cap
/// on connections applies.
fn descriptors_to_spare() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return Ok(());
    }
    let open = match std::fs::read_dir("/proc/self/fd") {
        // (less the directory's own descriptor)
        Ok(d) => (d.count() as u64).saturating_sub(1),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("the open descriptors cannot be counted: {e}")),
    };
    spare(open, limit.rlim_cur).map_err(|e| e.to_string())
}

fn lock(m: &Mutex<Connections>) -> std::sync::MutexGuard<'_, Connections> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The endpoint's open connections, by the order they came in.
#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, Open>,
}

struct Open {
    /// Its request head arrived (it is being answered).
    asked: Arc<AtomicBool>,
    abort: tokio::task::AbortHandle,
}

impl Connections {
    /// Closes the oldest connection still waiting for its request head;
    /// `false` when every one is being answered.
    fn evict_waiting(&mut self) -> bool {
        let Some(id) = self
            .open
            .iter()
            .find(|(_, o)| !o.asked.load(Ordering::Relaxed))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(o) = self.open.remove(&id) {
            o.abort.abort();
        }
        true
    }
}

/// Takes a connection out of the table when its task ends (or is aborted).
struct Leave {
    live: Arc<Mutex<Connections>>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        lock(&self.live).open.remove(&self.id);
    }
}

/// A repeated event logged once per streak and then at most once per
/// [`LOG_EVERY`], with how many there were.
#[derive(Default)]
struct Throttled {
    /// Events of the streak, and the first one's time.
    count: u64,
    since: Option<std::time::Instant>,
    /// Events not logged since the last line, and its time.
    unlogged: u64,
    logged: Option<std::time::Instant>,
}

impl Throttled {
    /// One more event: `Some` (what to add to the line) when it is logged.
    fn event(&mut self) -> Option<String> {
        let now = std::time::Instant::now();
        self.count += 1;
        let since = *self.since.get_or_insert(now);
        if self
            .logged
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            self.unlogged += 1;
            return None;
        }
        let report = if self.count == 1 {
            "the first; repeats are counted, not logged, for a minute".to_owned()
        } else {
            format!(
                "{} times in {} s",
                self.count,
                now.duration_since(since).as_secs()
            )
        };
        self.logged = Some(now);
        self.unlogged = 0;
        Some(report)
    }

    /// The streak ended: `Some` (a summary) when some of it was not logged.
    fn end(&mut self) -> Option<String> {
        let report = (self.unlogged > 0).then(|| {
            format!(
                "{} failures in {} s",
                self.count,
                self.since.map_or(0, |t| t.elapsed().as_secs())
            )
        });
        *self = Throttled::default();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A station whose state directory is empty, judged with what a fake
    /// systemd says.
    fn report_with(config_text: &str, text: &'static str) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_toml(config_text).unwrap();
        config.spool.dir = dir.path().join("spool");
        let registry = crate::collectors::registry();
        let now = Utc::now();
        let query = move |names: &[&str]| {
            assert!(!names.is_empty());
            Some(SystemdView::from_units(sd::parse_show(
                text,
                now,
                std::time::Duration::from_secs(3600),
            )))
        };
        let age = TimeSpan::parse(DEFAULT_SPOOL_AGE).unwrap();
        Report::new(&registry, &config, now, &age, &query).unwrap()
    }

    #[test]
    fn systemd_problems_make_the_verdict() {
        // The daemon enabled but restarting: CRITICAL, exit 2.
        let r = report_with(
            "",
            "Id=ubuntu-metrics.service\nLoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=exit-code\nNRestarts=4\nUnitFileState=enabled\n",
        );
        assert_eq!((r.exit_status(), r.verdict()), (2, "CRITICAL"));
        assert_eq!(
            r.problems,
            [
                "the daemon ubuntu-metrics.service cannot start (auto-restart, result exit-code, 4 restarts): see journalctl -u ubuntu-metrics.service -p err"
            ]
        );
        let doc = r.json();
        assert_eq!(doc["exit_status"], 2);
        assert_eq!(doc["verdict"], "CRITICAL");
        assert_eq!(doc["systemd"]["daemon"]["sub_state"], "auto-restart");
        assert_eq!(doc["systemd"]["daemon"]["n_restarts"], 4);

        // Timers on, one active (its next run from the monotonic clock),
        // one stopped: WARNING naming it.
        let r = report_with(
            "[systemd]\ntimers = true\n[collectors.britney]\nenabled = true\n",
            "Id=ubuntu-metrics.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\nUnitFileState=disabled\n\n\
             Id=ubuntu-metrics-britney.timer\nLoadState=loaded\nActiveState=active\nNextElapseUSecRealtime=\nNextElapseUSecMonotonic=1h 4min 12.003112s\n\n\
             Id=ubuntu-metrics-cnf.timer\nLoadState=loaded\nActiveState=inactive\nNextElapseUSecMonotonic=infinity\n",
        );
        assert_eq!((r.exit_status(), r.verdict()), (1, "WARNING"));
        assert!(
            r.problems
                .contains(&"timer ubuntu-metrics-cnf.timer is stopped (inactive): run `sudo ubuntu-metrics systemd apply`".to_owned()),
            "{:?}",
            r.problems
        );
        let britney = r.rows.iter().find(|row| row.name == "britney").unwrap();
        assert_eq!(britney.next_source, NextSource::Timer);
        assert_eq!(
            britney.next,
            Some(r.now + chrono::Duration::microseconds(252_003_112))
        );
        let doc = r.json();
        let timers = doc["systemd"]["timers"].as_array().unwrap();
        assert!(timers.iter().any(|t| t["collector"] == "britney"
            && t["active_state"] == "active"
            && t["next_elapse"].is_string()));

        // Timers on and none active: CRITICAL.
        let r = report_with(
            "[systemd]\ntimers = true\n",
            "Id=ubuntu-metrics-britney.timer\nLoadState=loaded\nActiveState=inactive\n",
        );
        assert_eq!(r.exit_status(), 2, "{:?}", r.problems);
        // Timers off, none loaded, the daemon running: OK.
        let r = report_with(
            "",
            "Id=ubuntu-metrics.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n\nId=ubuntu-metrics-britney.timer\nLoadState=not-found\nActiveState=inactive\n",
        );
        assert!(r.ok(), "{:?}", r.problems);
        // ... but nothing has run on this station yet: UNKNOWN, exit 3.
        assert_eq!((r.exit_status(), r.verdict()), (3, "UNKNOWN"));
        assert_eq!(r.json()["status"], "unknown");
    }

    /// The rows of `sponsoring` alone (every 5m; run_timeout 10m,
    /// startup_delay 30s, random_delay 1m), its last run ended at `ended`
    /// with `result`, the daemon's schedule saying `due`.
    fn sponsoring_row(
        now: DateTime<Utc>,
        ended: Option<(DateTime<Utc>, &str)>,
        due: Option<DateTime<Utc>>,
        source: NextSource,
    ) -> Row {
        let config = Config::from_toml(
            "[daemon]\nrun_timeout = \"10m\"\nstartup_delay = \"30s\"\nrandom_delay = \"1m\"\n[collectors.sponsoring]\ninterval = \"5m\"\n",
        )
        .unwrap();
        let registry: Vec<Box<dyn Collector>> = crate::collectors::registry()
            .into_iter()
            .filter(|c| c.name() == "sponsoring")
            .collect();
        let mut st = state::StateFile::default();
        if let Some((ended, result)) = ended {
            st.collectors.insert(
                "sponsoring".into(),
                state::CollectorState {
                    last_run: state::LastRun {
                        time: ended - chrono::Duration::seconds(3),
                        ended,
                        result: result.into(),
                        points: 4,
                        duration_seconds: 3.0,
                        requests: 2,
                        error: None,
                    },
                    last_success: None,
                    consecutive_failures: 0,
                },
            );
        }
        let scheduled = due
            .map(|d| ("sponsoring".to_owned(), d))
            .into_iter()
            .collect();
        let mut rows = collector_rows(&registry, &config, now, &st, &scheduled, source);
        assert_eq!(rows.len(), 1);
        rows.remove(0)
    }

    /// Late: no run ended for more than 2 intervals + run_timeout (20m
    /// here); exactly that is not late yet. Failing: the last result is not
    /// `ok`.
    #[test]
    fn a_collector_is_late_only_past_two_intervals_and_the_run_timeout() {
        let now = Utc::now();
        let m = chrono::Duration::minutes;
        let s = chrono::Duration::seconds;
        let row =
            |ago, result| sponsoring_row(now, Some((now - ago, result)), None, NextSource::Daemon);
        assert!(!row(m(20), "ok").late);
        assert!(row(m(20) + s(1), "ok").late);
        assert!(!row(m(20) + s(1), "ok").failing);
        assert!(row(m(1), "error").failing);
        assert!(row(m(1), "timeout").failing);
        // Never ran: neither late nor failing, and no next run known.
        let never = sponsoring_row(now, None, None, NextSource::Daemon);
        assert!(!never.late && !never.failing && never.next.is_none());
        // Without a schedule, the next run is estimated: an interval after
        // the last one ended.
        let r = row(m(2), "ok");
        assert_eq!(
            (r.next, r.next_source),
            (Some(now - m(2) + m(5)), NextSource::Estimate)
        );
    }

    /// The daemon's due time is trusted within [now - slack, now + slack +
    /// startup_delay + random_delay], slack = 2 intervals + run_timeout
    /// (20m; ahead 21m30s), both ends included; outside it, the estimate.
    /// A timer's time is always taken.
    #[test]
    fn a_due_time_is_trusted_only_within_the_plausible_window() {
        let now = Utc::now();
        let m = chrono::Duration::minutes;
        let s = chrono::Duration::seconds;
        let ended = Some((now - m(2), "ok"));
        let estimate = (Some(now + m(3)), NextSource::Estimate);
        let next = |due, source| {
            let r = sponsoring_row(now, ended, Some(due), source);
            (r.next, r.next_source)
        };
        for due in [now - m(20), now, now + m(21) + s(30)] {
            assert_eq!(
                next(due, NextSource::Daemon),
                (Some(due), NextSource::Daemon),
                "{due}"
            );
        }
        for due in [now - m(20) - s(1), now + m(21) + s(31), now + m(600)] {
            assert_eq!(next(due, NextSource::Daemon), estimate, "{due}");
            assert_eq!(
                next(due, NextSource::Timer),
                (Some(due), NextSource::Timer),
                "{due}"
            );
        }
    }

    /// A backlog is a problem only when older than `spool_age` (exactly
    /// that age is not yet); with several outputs the message names the
    /// output whose spool it is.
    #[test]
    fn a_spool_is_too_old_only_past_its_age_and_names_its_output_among_several() {
        let dir = tempfile::tempdir().unwrap();
        for several in [false, true] {
            let mut config = Config::from_toml(if several {
                "[outputs.vm]\nurl = \"http://127.0.0.1:9/\"\n"
            } else {
                ""
            })
            .unwrap();
            config.spool.dir = dir.path().join(format!("spool{several}"));
            let specs = config.outputs();
            let last = specs.last().unwrap();
            let spool = Spool::open(&last.spool_dir, 1 << 20).unwrap();
            spool
                .append(&[spool::Batch {
                    label: "sponsoring".into(),
                    lines: vec!["m v=1i 1".into(), "m v=2i 2".into()],
                }])
                .unwrap();
            let oldest = spool.status().unwrap().oldest.unwrap();
            let age = TimeSpan::parse("1h").unwrap();
            let judge = |now| {
                let mut problems = Vec::new();
                let outs = output_spools(&config, 1 << 20, now, &age, &mut problems);
                (outs.last().unwrap().too_old, problems)
            };
            let (too_old, problems) = judge(oldest + chrono::Duration::hours(1));
            assert!(!too_old && problems.is_empty(), "{problems:?}");
            let (too_old, problems) =
                judge(oldest + chrono::Duration::hours(1) + chrono::Duration::seconds(1));
            let name = if several { " of output vm" } else { "" };
            assert!(too_old);
            assert_eq!(
                problems,
                [format!(
                    "2 points waiting in the spool{name} for 1h (more than 1h)"
                )]
            );
        }
    }

    /// Each verdict's word, line and `healthy` sample: UNKNOWN before any
    /// run, OK once a collector ran, WARNING with a problem.
    #[test]
    fn verdicts_their_words_lines_and_healthy_sample() {
        let mut r = report_with(
            "",
            "Id=ubuntu-metrics.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n",
        );
        let n = r.rows.len();
        assert!(n > 1);
        assert_eq!((r.exit_status(), r.verdict()), (3, "UNKNOWN"));
        assert_eq!(
            r.summary(),
            format!("UNKNOWN: nothing has run yet ({n} collectors enabled)")
        );
        let healthy = |r: &Report| {
            let text = r.prometheus();
            assert!(
                text.contains("# TYPE ubuntu_metrics_healthy gauge\n"),
                "{text}"
            );
            text.lines()
                .find_map(|l| l.strip_prefix("ubuntu_metrics_healthy "))
                .map(str::to_owned)
        };
        assert_eq!(healthy(&r).as_deref(), Some("1"));

        let now = r.now;
        r.rows[0].state = Some(state::CollectorState {
            last_run: state::LastRun {
                time: now,
                ended: now,
                result: "ok".into(),
                points: 4,
                duration_seconds: 1.0,
                requests: 1,
                error: None,
            },
            last_success: Some(now),
            consecutive_failures: 0,
        });
        assert_eq!((r.exit_status(), r.verdict()), (0, "OK"));
        assert_eq!(
            r.summary(),
            format!("OK: {n} collectors, none failing or late")
        );
        assert_eq!(healthy(&r).as_deref(), Some("1"));

        // The samples of the collector that ran, of one that is late, and
        // of the spool.
        if let Some(s) = r.rows[0].state.as_mut() {
            s.last_run.duration_seconds = 1.5;
            s.consecutive_failures = 2;
            s.last_run.requests = 3;
        }
        r.rows[1].late = true;
        let (ran, late) = (r.rows[0].name.clone(), r.rows[1].name.clone());
        let text = r.prometheus();
        let t = now.timestamp();
        for line in [
            format!(
                "ubuntu_metrics_collector_last_run_success{{collector=\"{ran}\",result=\"ok\"}} 1"
            ),
            format!(
                "ubuntu_metrics_collector_last_run_duration_seconds{{collector=\"{ran}\"}} 1.5"
            ),
            format!("ubuntu_metrics_collector_last_run_points{{collector=\"{ran}\"}} 4"),
            format!("ubuntu_metrics_collector_last_run_requests{{collector=\"{ran}\"}} 3"),
            format!(
                "ubuntu_metrics_collector_last_run_timestamp_seconds{{collector=\"{ran}\"}} {t}"
            ),
            format!("ubuntu_metrics_collector_consecutive_failures{{collector=\"{ran}\"}} 2"),
            format!("ubuntu_metrics_collector_consecutive_failures{{collector=\"{late}\"}} 0"),
            format!(
                "ubuntu_metrics_collector_last_success_timestamp_seconds{{collector=\"{ran}\"}} {t}"
            ),
            format!("ubuntu_metrics_collector_late{{collector=\"{ran}\"}} 0"),
            format!("ubuntu_metrics_collector_late{{collector=\"{late}\"}} 1"),
            "ubuntu_metrics_spool_points{output=\"influxdb\"} 0".to_owned(),
            "ubuntu_metrics_spool_records{output=\"influxdb\"} 0".to_owned(),
            "ubuntu_metrics_dead_letter_batches{output=\"influxdb\"} 0".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Only the collector that ran has per-run samples; an empty spool
        // has no oldest age.
        assert_eq!(
            text.matches("ubuntu_metrics_collector_last_run_points{")
                .count(),
            1
        );
        assert!(
            !text.contains("ubuntu_metrics_spool_oldest_age_seconds"),
            "{text}"
        );

        r.problems.push("failing: sponsoring".into());
        assert_eq!((r.exit_status(), r.verdict()), (1, "WARNING"));
        assert_eq!(healthy(&r).as_deref(), Some("0"));
    }

    #[test]
    fn spans_read_naturally() {
        let s = chrono::Duration::seconds;
        assert_eq!(span(s(45)), "45s");
        assert_eq!(span(s(12 * 60 + 5)), "12m");
        assert_eq!(span(s(3 * 3600 + 5 * 60)), "3h05m");
        assert_eq!(span(s(3600)), "1h");
        assert_eq!(span(s(2 * 86400 + 4 * 3600)), "2d04h");
        assert_eq!(span(s(-5)), "0s");
        // Each unit starts exactly at its boundary.
        for (secs, shown) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h"),
            (3659, "1h"),
            (3660, "1h01m"),
            (7 * 3600 + 59, "7h"),
            (86_399, "23h59m"),
            (86_400, "1d00h"),
            (86_400 + 3599, "1d00h"),
            (86_400 + 3600, "1d01h"),
        ] {
            assert_eq!(span(s(secs)), shown, "{secs} s");
        }
    }

    #[test]
    fn sockets_never_take_the_reserved_descriptors() {
        assert_eq!(reserved_descriptors(256), 64);
        assert_eq!(reserved_descriptors(1024), 256);
        assert_eq!(reserved_descriptors(8192), 2048);
        // A tiny limit: half of it still goes to the rest of the daemon.
        assert_eq!(reserved_descriptors(64), 32);
        assert!(spare(192, 256).is_ok());
        let e = spare(193, 256).unwrap_err().to_string();
        assert!(
            e.contains("193 of the process's 256") && e.contains("64"),
            "{e}"
        );
    }

    #[test]
    fn a_log_line_per_streak_then_one_a_minute_with_the_count() {
        let mut t = Throttled::default();
        assert!(t.event().is_some_and(|r| r.contains("the first")));
        for _ in 0..500 {
            assert_eq!(t.event(), None);
        }
        assert!(t.end().is_some_and(|r| r.starts_with("501 failures")));
        // A new streak is logged again; one without repeats ends quietly.
        assert!(t.event().is_some());
        assert_eq!(t.end(), None);
    }

    #[tokio::test]
    async fn the_oldest_connection_waiting_for_its_head_is_evicted_first() {
        let live = Arc::new(Mutex::new(Connections::default()));
        let mut asked = Vec::new();
        for id in 0..3u64 {
            let a = Arc::new(AtomicBool::new(id == 0));
            let task = tokio::spawn(std::future::pending::<()>());
            lock(&live).open.insert(
                id,
                Open {
                    asked: a.clone(),
                    abort: task.abort_handle(),
                },
            );
            asked.push(a);
        }
        // 0 is being answered: 1 goes, then 2, then none.
        assert!(lock(&live).evict_waiting());
        assert_eq!(lock(&live).open.keys().copied().collect::<Vec<_>>(), [0, 2]);
        assert!(lock(&live).evict_waiting());
        assert!(!lock(&live).evict_waiting());
        assert_eq!(lock(&live).open.len(), 1);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
