//! What systemd says of the station's units, asked with `systemctl show`:
//! the daemon's state (running, restarting, failed), each collector's
//! timer (active or stopped, its next elapse, real-time or monotonic), and
//! the findings `status` and `systemd apply` report from them. Apart from
//! `schedule` (which writes the units) so that `health` can read it
//! without depending on the scheduler.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;

/// The packaged daemon unit.
pub const DAEMON_UNIT: &str = "ubuntu-metrics.service";

pub fn timer_name(collector: &str) -> String {
    format!("ubuntu-metrics-{collector}.timer")
}

/// Runs `systemctl`: the real one ([`RealSystemctl`]) runs the program; a
/// test's records the calls and answers from a script.
pub trait Systemctl {
    /// `systemctl ARGS`: its standard output, or an error naming the
    /// command and why (its standard error).
    fn run(&mut self, args: &[&str]) -> Result<String, String>;
}

/// The `systemctl` program.
pub struct RealSystemctl;

impl Systemctl for RealSystemctl {
    fn run(&mut self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new("systemctl")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run systemctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "`systemctl {}` failed ({}): {}",
                args.join(" "),
                out.status,
                err.trim()
            ))
        }
    }
}

/// What `systemctl show` says of one unit (the properties of
/// [`SHOW_PROPERTIES`]; empty when it did not print one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    pub id: String,
    /// `loaded`, `not-found`, ...
    pub load_state: String,
    /// `active`, `inactive`, `activating`, `failed`, ...
    pub active_state: String,
    /// `running`, `waiting`, `dead`, `auto-restart`, ...
    pub sub_state: String,
    /// `success`, `exit-code`, `timeout`, ...
    pub result: String,
    /// `enabled`, `disabled`, `static`, `generated`, ...
    pub unit_file_state: String,
    /// A service's automatic restarts since it was started by hand.
    pub n_restarts: Option<u64>,
    /// A timer's next elapse.
    pub next: Option<DateTime<Utc>>,
}

impl UnitState {
    pub fn loaded(&self) -> bool {
        self.load_state == "loaded"
    }
}

/// The properties `status` and `apply` ask of the daemon and the timers.
pub const SHOW_PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,Result,NRestarts,UnitFileState,NextElapseUSecRealtime,NextElapseUSecMonotonic";

/// The units in `systemctl show --timestamp=unix --property=...`'s
/// output: blocks separated by an empty line, `KEY=VALUE` lines in any
/// order. A timer's next elapse is `NextElapseUSecRealtime=@SECONDS`
/// (calendar timers), or `NextElapseUSecMonotonic=` (`OnBootSec=`,
/// `OnUnitInactiveSec=`: our timers), a time span since boot as
/// `format_timespan` prints it (`1h 4min 12.003112s`; `infinity` or `0`:
/// not scheduled), which is `now + (value - monotonic_now)`
/// (`monotonic_now`: `CLOCK_MONOTONIC` when the output was read).
pub fn parse_show(
    text: &str,
    now: DateTime<Utc>,
    monotonic_now: std::time::Duration,
) -> Vec<UnitState> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut u = UnitState::default();
        let mut nexts = Vec::new();
        for line in block.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Id" => u.id = value.to_owned(),
                "LoadState" => u.load_state = value.to_owned(),
                "ActiveState" => u.active_state = value.to_owned(),
                "SubState" => u.sub_state = value.to_owned(),
                "Result" => u.result = value.to_owned(),
                "UnitFileState" => u.unit_file_state = value.to_owned(),
                "NRestarts" => u.n_restarts = value.parse().ok(),
                "NextElapseUSecRealtime" => nexts.extend(
                    value
                        .strip_prefix('@')
                        .and_then(|v| v.parse::<i64>().ok())
                        .filter(|s| *s > 0)
                        .and_then(|s| DateTime::from_timestamp(s, 0)),
                ),
                "NextElapseUSecMonotonic" => {
                    if let Some(at) = monotonic_elapse(value, now, monotonic_now) {
                        nexts.push(at);
                    }
                }
                _ => {}
            }
        }
        u.next = nexts.into_iter().min();
        if !u.id.is_empty() {
            out.push(u);
        }
    }
    out
}

/// `NextElapseUSecMonotonic`'s value as a wall-clock time (see
/// [`parse_show`]).
fn monotonic_elapse(
    value: &str,
    now: DateTime<Utc>,
    monotonic_now: std::time::Duration,
) -> Option<DateTime<Utc>> {
    if matches!(value, "" | "0" | "infinity" | "n/a") {
        return None;
    }
    let at = crate::model::timespan::TimeSpan::parse(value)
        .ok()?
        .as_usec();
    let at = i64::try_from(at).ok()?;
    let mono = i64::try_from(monotonic_now.as_micros()).ok()?;
    now.checked_add_signed(chrono::Duration::microseconds(at - mono))
}

/// `CLOCK_MONOTONIC` now (the clock of `NextElapseUSecMonotonic`).
pub fn monotonic_now() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// What systemd says of the daemon and the collectors' timers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemdView {
    /// By collector name (`ubuntu-metrics-NAME.timer`).
    pub timers: BTreeMap<String, UnitState>,
    /// `ubuntu-metrics.service`.
    pub daemon: Option<UnitState>,
}

impl SystemdView {
    pub fn from_units(units: Vec<UnitState>) -> SystemdView {
        let mut view = SystemdView::default();
        for u in units {
            if u.id == DAEMON_UNIT {
                view.daemon = Some(u);
            } else if let Some(name) =
                u.id.strip_prefix("ubuntu-metrics-")
                    .and_then(|n| n.strip_suffix(".timer"))
            {
                view.timers.insert(name.to_owned(), u);
            }
        }
        view
    }

    /// The collectors' next elapses (those scheduled).
    pub fn next_elapses(&self) -> BTreeMap<String, DateTime<Utc>> {
        self.timers
            .iter()
            .filter_map(|(n, u)| u.next.map(|t| (n.clone(), t)))
            .collect()
    }
}

/// `systemctl show` failed: its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Asks systemd (one `systemctl show`) about the daemon and the timers of
/// `collectors`.
pub fn query(sc: &mut dyn Systemctl, collectors: &[&str]) -> Result<SystemdView, QueryError> {
    let property = format!("--property={SHOW_PROPERTIES}");
    let timers: Vec<String> = collectors.iter().map(|c| timer_name(c)).collect();
    let mut args = vec!["show", "--timestamp=unix", property.as_str(), DAEMON_UNIT];
    args.extend(timers.iter().map(String::as_str));
    let text = sc.run(&args).map_err(QueryError)?;
    Ok(SystemdView::from_units(parse_show(
        &text,
        chrono::Utc::now(),
        monotonic_now(),
    )))
}

/// What systemd says, when it can be asked: `None` on a machine or
/// container not booted with systemd (no `/run/systemd/system`) or when
/// `systemctl` fails; `status` then estimates from the last runs.
pub fn systemd_view(collectors: &[&str]) -> Option<SystemdView> {
    if !Path::new("/run/systemd/system").exists() {
        return None;
    }
    query(&mut RealSystemctl, collectors).ok()
}

/// Whether `systemd install` put timers in `etc` (`/etc/systemd/system`):
/// they schedule the collectors whatever `[systemd] timers` says.
pub fn installed_timers(etc: &Path) -> bool {
    std::fs::read_dir(etc).is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("ubuntu-metrics-") && n.ends_with(".timer")
        })
    })
}

/// One thing `status` reports about systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Nothing is being collected (Nagios CRITICAL), rather than a part.
    pub critical: bool,
    pub message: String,
}

/// The command that makes systemd follow the configuration.
pub const APPLY: &str = "sudo ubuntu-metrics systemd apply";

/// What is wrong in `view`: the daemon enabled (or starting) but not
/// running; with timers on (`timers_on`), each enabled collector's timer
/// not loaded or stopped, and no timer active at all. With timers off,
/// timers not found are what is expected.
pub fn judge(view: &SystemdView, timers_on: bool, enabled: &[&str]) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(d) = view.daemon.as_ref().filter(|d| d.loaded()) {
        let running = matches!(d.active_state.as_str(), "active" | "reloading");
        let wanted = d.unit_file_state.starts_with("enabled") || d.active_state == "activating";
        let restarts = d.n_restarts.unwrap_or(0);
        // Starting for the first time (Type=notify: until READY=1).
        let starting =
            d.active_state == "activating" && d.sub_state != "auto-restart" && restarts == 0;
        if wanted && !running && !starting {
            let message = if d.active_state == "inactive" && d.result == "success" {
                format!(
                    "the daemon {DAEMON_UNIT} is enabled but not running ({}, {}): nothing is collected; start it: sudo systemctl start {DAEMON_UNIT}",
                    d.active_state, d.sub_state
                )
            } else {
                format!(
                    "the daemon {DAEMON_UNIT} cannot start ({}, result {}, {restarts} restart{}): see journalctl -u {DAEMON_UNIT} -p err",
                    if d.sub_state.is_empty() {
                        &d.active_state
                    } else {
                        &d.sub_state
                    },
                    if d.result.is_empty() { "-" } else { &d.result },
                    if restarts == 1 { "" } else { "s" },
                )
            };
            out.push(Finding {
                critical: true,
                message,
            });
        }
    }
    if timers_on && !enabled.is_empty() {
        let mut active = 0;
        let mut each = Vec::new();
        for name in enabled {
            let timer = timer_name(name);
            match view.timers.get(*name) {
                Some(t) if t.loaded() && t.active_state == "active" => active += 1,
                Some(t) if t.loaded() => each.push(format!(
                    "timer {timer} is stopped ({}): run `{APPLY}`",
                    t.active_state
                )),
                t => each.push(format!(
                    "timer {timer} is not loaded ({}): run `{APPLY}`",
                    t.map_or("unknown", |t| t.load_state.as_str())
                )),
            }
        }
        if active == 0 {
            out.push(Finding {
                critical: true,
                message: format!(
                    "[systemd] timers = true but no timer is active: nothing is collected; run `{APPLY}`"
                ),
            });
        }
        out.extend(each.into_iter().map(|message| Finding {
            critical: false,
            message,
        }));
    }
    out
}
