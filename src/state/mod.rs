//! What a station remembers between runs: per collector, its last run,
//! last success and consecutive failures, in `status.json` under the state
//! directory (`$UBUNTU_METRICS_STATE_DIR`, else the spool's parent).
//!
//! Every run (`run`, a timer, the daemon) records its outcome with
//! [`record`]: read-modify-write under an exclusive lock on `status.lock`,
//! the new file written to a temporary file and renamed over the old one.
//! So runs started at the same moment by timers never corrupt the file nor
//! lose each other's entries, and a crash leaves the old file or the new.

use crate::config::{Config, redact_url};
use crate::model::catch_up::Marks;
use crate::runner::Outcome;
use crate::sinks::spool::FileLock;
use crate::support::fsutil::replace_file;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The state file, in the state directory.
pub const STATE_FILE: &str = "status.json";
/// The lock every writer of the state file holds.
pub const LOCK_FILE: &str = "status.lock";
/// The version of the file's layout.
pub const VERSION: u32 = 1;
/// Longest error message kept (characters).
const MAX_ERROR: usize = 300;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    pub collectors: BTreeMap<String, CollectorState>,
}

/// What is remembered of one collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorState {
    pub last_run: LastRun,
    /// When the last successful run started.
    pub last_success: Option<DateTime<Utc>>,
    /// Failed or timed-out runs since the last success.
    pub consecutive_failures: u64,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    /// When it started (wall clock).
    pub time: DateTime<Utc>,
    /// When it ended (wall clock).
    pub ended: DateTime<Utc>,
    /// `ok`, `error` or `timeout`.
    pub result: String,
    /// Points collected and handed to the sink.
    pub points: u64,
    pub duration_seconds: f64,
    /// Upstream requests.
    pub requests: u64,
    /// The error, shortened, when it failed.
    pub error: Option<String>,
}

/// The state file cannot be read or written: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {message}")]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

/// The state directory of `config`: `$UBUNTU_METRICS_STATE_DIR`, else the
/// spool directory's parent.
pub fn dir(config: &Config) -> PathBuf {
    config.state_dir()
}

/// The error on one line, credentials in URLs redacted, cut to
/// [`MAX_ERROR`] characters.
fn short(e: &str) -> String {
    let one_line = redact_url(&e.split_whitespace().collect::<Vec<_>>().join(" "));
    if one_line.chars().count() <= MAX_ERROR {
        one_line
    } else {
        one_line.chars().take(MAX_ERROR - 1).collect::<String>() + "…"
    }
}

/// Reads the state file in `dir` (empty when there is none yet).
pub fn read(dir: &Path) -> Result<StateFile, StateError> {
    let path = dir.join(STATE_FILE);
    let err = |message: String| StateError {
        path: path.clone(),
        message,
    };
    match crate::support::fsutil::read_file(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(format!("not valid: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile {
            version: VERSION,
            ..Default::default()
        }),
        Err(e) => Err(err(format!("cannot read: {e}"))),
    }
}

/// Records the outcomes of a run in the state file of `dir` (created with
/// the directory when missing), under the lock.
pub fn record(dir: &Path, outcomes: &[Outcome], ended: DateTime<Utc>) -> Result<(), StateError> {
    let path = dir.join(STATE_FILE);
    let err = |message: String| StateError {
        path: path.clone(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create the directory: {e}")))?;
    let lock = dir.join(LOCK_FILE);
    let _guard = FileLock::exclusive(&lock)
        .map_err(|e| err(format!("cannot lock {}: {e}", lock.display())))?;
    // A damaged file (written by hand, a full disk outside this code) is
    // reported and replaced: the state is a summary, the runs go on.
    let mut state = read(dir).unwrap_or_else(|e| {
        tracing::warn!("{e}; starting a new one");
        StateFile::default()
    });
    state.version = VERSION;
    for o in outcomes {
        let time = ended
            - chrono::Duration::from_std(o.duration).unwrap_or_else(|_| chrono::Duration::zero());
        let ok = o.error.is_none();
        let prev = state.collectors.remove(&o.name);
        let entry = CollectorState {
            last_run: LastRun {
                time,
                ended,
                result: o.status.as_str().to_owned(),
                points: o.points.len() as u64,
                duration_seconds: o.duration.as_secs_f64(),
                requests: o.requests,
                error: o.error.as_deref().map(short),
            },
            last_success: if ok {
                Some(time)
            } else {
                prev.as_ref().and_then(|p| p.last_success)
            },
            consecutive_failures: if ok {
                0
            } else {
                prev.as_ref().map_or(0, |p| p.consecutive_failures) + 1
            },
        };
        state.collectors.insert(o.name.to_owned(), entry);
    }
    let mut bytes = serde_json::to_vec_pretty(&state).map_err(|e| err(e.to_string()))?;
    bytes.push(b'\n');
    let tmp = dir.join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
    replace_file(&path, &tmp, &bytes, 0o600).map_err(|e| err(format!("cannot write: {e}")))
}

/// The catch-up marks ([`crate::model::catch_up`]), in the state directory.
pub const MARKS_FILE: &str = "catch-up.json";
/// The lock every writer of the marks holds.
pub const MARKS_LOCK: &str = "catch-up.lock";

/// The marks file: per collector and source URL, the newest row written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarksFile {
    pub version: u32,
    pub marks: Marks,
}

/// Reads the catch-up marks in `dir` (none when there is no file yet).
pub fn read_marks(dir: &Path) -> Result<Marks, StateError> {
    let path = dir.join(MARKS_FILE);
    match crate::support::fsutil::read_file(&path) {
        Ok(bytes) => serde_json::from_slice::<MarksFile>(&bytes)
            .map(|f| f.marks)
            .map_err(|e| StateError {
                path,
                message: format!("not valid: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Marks::new()),
        Err(e) => Err(StateError {
            path,
            message: format!("cannot read: {e}"),
        }),
    }
}

/// The marks of the configuration's state directory; none (with a
/// warning) when they cannot be read: the run then reads the window.
pub fn marks_or_warn(config: &Config) -> Marks {
    read_marks(&dir(config)).unwrap_or_else(|e| {
        tracing::warn!(
            "{e}; reading the last {} h of every time-series source",
            crate::model::catch_up::WINDOW_HOURS
        );
        Marks::new()
    })
}

/// Sets the marks of `outcomes` (each collector's newest rows read) in
/// `dir`, under the lock, written atomically. Call it only once the
/// outcomes' points are safe (durably in the spool, or written).
pub fn set_marks(dir: &Path, outcomes: &[Outcome]) -> Result<(), StateError> {
    if outcomes.iter().all(|o| o.newest.is_empty()) {
        return Ok(());
    }
    let path = dir.join(MARKS_FILE);
    let err = |message: String| StateError {
        path: path.clone(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create the directory: {e}")))?;
    let lock = dir.join(MARKS_LOCK);
    let _guard = FileLock::exclusive(&lock)
        .map_err(|e| err(format!("cannot lock {}: {e}", lock.display())))?;
    let mut marks = read_marks(dir).unwrap_or_else(|e| {
        tracing::warn!("{e}; starting a new one");
        Marks::new()
    });
    for o in outcomes {
        for (url, time) in &o.newest {
            marks
                .entry(o.name.to_owned())
                .or_default()
                .insert(url.clone(), *time);
        }
    }
    let file = MarksFile {
        version: VERSION,
        marks,
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| err(e.to_string()))?;
    bytes.push(b'\n');
    let tmp = dir.join(format!(".{MARKS_FILE}.{}.tmp", std::process::id()));
    replace_file(&path, &tmp, &bytes, 0o600).map_err(|e| err(format!("cannot write: {e}")))
}

/// [`set_marks`] for callers that only log a failure (the next run then
/// reads again what this one read: rows written twice are harmless), off
/// the async workers: the marks' lock, write and fsync block.
pub async fn set_marks_off_runtime(config: &Config, outcomes: &[Outcome]) {
    let dir = dir(config);
    let outcomes = outcomes.to_vec();
    off_runtime("the catch-up marks", move || set_marks(&dir, &outcomes)).await;
}

/// The daemon's schedule, in the state directory while it runs.
pub const SCHEDULE_FILE: &str = "schedule.json";

/// When the daemon runs each collector next: written by the daemon each
/// time a due time changes, removed when it stops; `status` trusts it only
/// while the process it names is the daemon that wrote it: the same pid,
/// start time and boot (a pid is reused; a file left by a killed daemon
/// may name another process, or `init`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub pid: u32,
    /// The writer's start time: field 22 of `/proc/PID/stat` (clock ticks
    /// after boot). A file without it is not trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// The boot the writer ran in (`/proc/sys/kernel/random/boot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    pub due: BTreeMap<String, DateTime<Utc>>,
}

impl Schedule {
    /// The schedule of this process, with what proves it wrote it.
    pub fn of_this_process(due: BTreeMap<String, DateTime<Utc>>) -> Schedule {
        let pid = std::process::id();
        Schedule {
            pid,
            started: start_time(pid),
            boot_id: boot_id(),
            due,
        }
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks
/// after boot; `None` when it cannot be read.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (field 2) is in parentheses and may hold spaces or ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // Fields 3, 4, ...: the 22nd is the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// This boot's id; `None` when it cannot be read.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Writes `schedule` to the state directory `dir` (atomically).
pub fn write_schedule(dir: &Path, schedule: &Schedule) -> Result<(), StateError> {
    let path = dir.join(SCHEDULE_FILE);
    let err = |message: String| StateError {
        path: path.clone(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create the directory: {e}")))?;
    let mut bytes = serde_json::to_vec_pretty(schedule).map_err(|e| err(e.to_string()))?;
    bytes.push(b'\n');
    let tmp = dir.join(format!(".{SCHEDULE_FILE}.{}.tmp", std::process::id()));
    replace_file(&path, &tmp, &bytes, 0o600).map_err(|e| err(format!("cannot write: {e}")))
}

/// Removes the schedule of the daemon `pid` (not another's).
pub fn remove_schedule(dir: &Path, pid: u32) {
    let file = std::fs::read(dir.join(SCHEDULE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Schedule>(&b).ok());
    if file.is_some_and(|s| s.pid == pid) {
        let _ = std::fs::remove_file(dir.join(SCHEDULE_FILE));
    }
}

/// The schedule of a daemon that is running, if there is one: the file's
/// writer still runs (see [`Schedule`]).
pub fn read_schedule(dir: &Path) -> Option<Schedule> {
    let bytes = crate::support::fsutil::read_file(&dir.join(SCHEDULE_FILE)).ok()?;
    let s: Schedule = serde_json::from_slice(&bytes).ok()?;
    written_by_a_live_process(&s).then_some(s)
}

/// Whether the process that wrote `s` still runs: its pid lives, with the
/// start time and boot the file records.
fn written_by_a_live_process(s: &Schedule) -> bool {
    let (Some(started), Some(boot)) = (s.started, s.boot_id.as_deref()) else {
        return false;
    };
    alive(s.pid) && start_time(s.pid) == Some(started) && boot_id().as_deref() == Some(boot)
}

/// Whether process `pid` exists (a daemon of another user counts).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// [`record`] for the callers that only log a failure (the points matter
/// more than the summary), off the async workers: the state file's lock,
/// its write and its rename block.
pub async fn record_off_runtime(config: &Config, outcomes: &[Outcome]) {
    let dir = dir(config);
    let outcomes = outcomes.to_vec();
    off_runtime("the state file", move || {
        record(&dir, &outcomes, Utc::now())
    })
    .await;
}

/// Runs `f` on tokio's blocking threads; a failure is logged (`what` was
/// not updated), since the run itself is not affected.
async fn off_runtime(what: &str, f: impl FnOnce() -> Result<(), StateError> + Send + 'static) {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("{e} (the run itself is not affected)"),
        Err(e) => {
            tracing::warn!("{what} was not updated: {e} (the run itself is not affected)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Status;
    use std::time::Duration;

    fn outcome(name: &'static str, error: Option<&str>) -> Outcome {
        Outcome {
            name: name.into(),
            status: if error.is_some() {
                Status::Error
            } else {
                Status::Ok
            },
            time: Utc::now(),
            points: Vec::new(),
            error: error.map(str::to_owned),
            duration: Duration::from_millis(1500),
            requests: 3,
            hosts: Default::default(),
            newest: Default::default(),
        }
    }

    #[test]
    fn failures_count_up_and_a_success_resets_them() {
        let d = tempfile::tempdir().unwrap();
        let t0: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().unwrap();
        record(d.path(), &[outcome("a", None)], t0).unwrap();
        record(
            d.path(),
            &[outcome("a", Some("boom\nfrom https://u:Sekr1t@h/x"))],
            t0,
        )
        .unwrap();
        let e = read(d.path()).unwrap().collectors["a"]
            .last_run
            .error
            .clone();
        assert_eq!(e.as_deref(), Some("boom from https://u:<redacted>@h/x"));
        record(d.path(), &[outcome("a", Some("boom"))], t0).unwrap();
        let s = read(d.path()).unwrap();
        let a = &s.collectors["a"];
        assert_eq!(a.consecutive_failures, 2);
        assert_eq!(
            a.last_success,
            Some(t0 - chrono::Duration::milliseconds(1500))
        );
        assert_eq!(a.last_run.result, "error");
        record(d.path(), &[outcome("a", None)], t0).unwrap();
        assert_eq!(
            read(d.path()).unwrap().collectors["a"].consecutive_failures,
            0
        );
    }

    #[test]
    fn marks_are_set_per_collector_and_url_and_kept_for_the_others() {
        let d = tempfile::tempdir().unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // nothing read: no file
        set_marks(d.path(), &[outcome("a", None)]).unwrap();
        assert!(!d.path().join(MARKS_FILE).exists());
        let mut a = outcome("a", None);
        a.newest
            .insert("http://h/x.csv".into(), t("2026-11-24T10:00:00Z"));
        let mut b = outcome("b", None);
        b.newest
            .insert("http://h/y.csv".into(), t("2026-11-24T09:00:00Z"));
        set_marks(d.path(), &[a, b]).unwrap();
        let mut a = outcome("a", None);
        a.newest
            .insert("http://h/x.csv".into(), t("2026-11-24T11:00:00Z"));
        set_marks(d.path(), &[a]).unwrap();
        let m = read_marks(d.path()).unwrap();
        assert_eq!(m["a"]["http://h/x.csv"], t("2026-11-24T11:00:00Z"));
        assert_eq!(m["b"]["http://h/y.csv"], t("2026-11-24T09:00:00Z"));
        // a damaged file is named, and replaced by the next write
        std::fs::write(d.path().join(MARKS_FILE), "{").unwrap();
        assert!(
            read_marks(d.path())
                .unwrap_err()
                .to_string()
                .contains(MARKS_FILE)
        );
    }

    #[test]
    fn a_schedule_is_trusted_only_from_its_live_writer() {
        let d = tempfile::tempdir().unwrap();
        let mine = Schedule::of_this_process(BTreeMap::new());
        assert!(mine.started.is_some() && mine.boot_id.is_some());
        write_schedule(d.path(), &mine).unwrap();
        assert_eq!(read_schedule(d.path()), Some(mine.clone()));
        for stale in [
            Schedule {
                started: None,
                ..mine.clone()
            },
            Schedule {
                started: mine.started.map(|t| t + 1),
                ..mine.clone()
            },
            Schedule {
                boot_id: Some("another boot".into()),
                ..mine.clone()
            },
            Schedule {
                pid: 1,
                ..mine.clone()
            },
        ] {
            write_schedule(d.path(), &stale).unwrap();
            assert_eq!(read_schedule(d.path()), None, "{stale:?}");
        }
        // Removed by its writer only, trusted or not.
        remove_schedule(d.path(), std::process::id() + 1);
        assert!(d.path().join(SCHEDULE_FILE).exists());
        remove_schedule(d.path(), 1);
        assert!(!d.path().join(SCHEDULE_FILE).exists());
    }

    #[test]
    fn a_damaged_file_is_named_when_read_and_replaced_when_written() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(STATE_FILE), "{not json").unwrap();
        let e = read(d.path()).unwrap_err().to_string();
        assert!(e.contains(STATE_FILE) && e.contains("not valid"), "{e}");
        record(d.path(), &[outcome("a", None)], Utc::now()).unwrap();
        assert!(read(d.path()).unwrap().collectors.contains_key("a"));
    }

    /// Issue 22, item 5: links planted in the state directory (at a state
    /// file's name, at its temporary name, at the lock) are never read nor
    /// written through: the files they point to are unchanged.
    #[test]
    fn links_in_the_state_directory_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let victim = d.path().join("victim");
        let precious = "{\"version\": 1, \"collectors\": {}}";
        std::fs::write(&victim, precious).unwrap();
        let pid = std::process::id();
        for name in [STATE_FILE, MARKS_FILE, SCHEDULE_FILE] {
            let link = state.join(name);
            std::os::unix::fs::symlink(&victim, &link).unwrap();
            std::os::unix::fs::symlink(&victim, state.join(format!(".{name}.{pid}.tmp"))).unwrap();
        }
        let e = read(&state).unwrap_err().to_string();
        assert!(e.contains(STATE_FILE) && e.contains("symbolic link"), "{e}");
        assert!(
            read_marks(&state)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
        std::fs::write(&victim, format!("{{\"pid\": {pid}, \"due\": {{}}}}")).unwrap();
        assert_eq!(read_schedule(&state), None);
        std::fs::write(&victim, precious).unwrap();
        let mut a = outcome("a", None);
        a.newest.insert("http://h/x.csv".into(), Utc::now());
        record(&state, std::slice::from_ref(&a), Utc::now()).unwrap();
        set_marks(&state, &[a]).unwrap();
        write_schedule(&state, &Schedule::of_this_process(BTreeMap::new())).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), precious);
        assert!(read(&state).unwrap().collectors.contains_key("a"));
        assert!(read_marks(&state).unwrap().contains_key("a"));
        assert!(read_schedule(&state).is_some());
        // A link at the lock: refused, not created through.
        let (state2, target) = (d.path().join("state2"), d.path().join("made-elsewhere"));
        std::fs::create_dir(&state2).unwrap();
        std::os::unix::fs::symlink(&target, state2.join(LOCK_FILE)).unwrap();
        assert!(record(&state2, &[outcome("a", None)], Utc::now()).is_err());
        assert!(!target.exists());
    }
}
