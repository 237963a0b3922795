//! What the daemon tells systemd (`sd_notify(3)`, through the `sd-notify`
//! crate; nothing is sent when `NOTIFY_SOCKET` is unset):
//!
//! - `READY=1` once the configuration is loaded and every collector is
//!   scheduled (the unit is `Type=notify`);
//! - `RELOADING=1` with `MONOTONIC_USEC=` when SIGHUP starts a reload, and
//!   `READY=1` when it is done (kept or refused);
//! - `STATUS=` a one-line summary (`systemctl status` shows it):
//!   "10 collectors, 0 failing, 0 points spooled, next: britney in 2m";
//! - `WATCHDOG=1` every half of `WATCHDOG_USEC` (the unit's `WatchdogSec=`),
//!   only while the scheduler is alive: its loop beats a [`Heartbeat`], and
//!   the pings (from a thread of their own, outside the async runtime) stop
//!   once the last beat is older than half the watchdog time; systemd then
//!   restarts the wedged daemon;
//! - `STOPPING=1` on SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::time::Instant;

use sd_notify::NotifyState;

/// Sends `states` to systemd; a failure is logged, never fatal (the daemon
/// works without systemd).
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd ($NOTIFY_SOCKET): {e}");
    }
}

/// `READY=1` with the summary.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (which `Type=notify-reload` needs).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// The moment the scheduler loop last went round.
pub struct Heartbeat {
    base: std::time::Instant,
    last_ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            base: std::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the last beat was.
    pub fn age(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The thread sending `WATCHDOG=1`; it stops when dropped.
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Pings every `timeout / 2` while `heartbeat` is younger than
    /// `timeout / 2`. The scheduler beats every [`Watchdog::beat_every`].
    pub fn start(heartbeat: Arc<Heartbeat>, timeout: Duration) -> std::io::Result<Watchdog> {
        let (stop, stopped) = mpsc::channel::<()>();
        let period = timeout / 2;
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut silent = false;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    let age = heartbeat.age();
                    if age <= period {
                        notify(&[NotifyState::Watchdog]);
                        silent = false;
                    } else if !silent {
                        tracing::error!(
                            "the scheduler has not gone round for {:.1} s: no more watchdog pings (systemd restarts the daemon)",
                            age.as_secs_f64()
                        );
                        silent = true;
                    }
                }
            })?;
        Ok(Watchdog {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// How often the scheduler must beat for a watchdog of `timeout`.
    pub fn beat_every(timeout: Duration) -> Duration {
        (timeout / 4).max(Duration::from_millis(10))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What each collector's task reports for the summary.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// The last run failed (error or timeout).
    failing: bool,
    /// When the next run is due; `None` while it runs.
    next: Option<Instant>,
}

/// The daemon's view of its collectors, for `STATUS=`.
#[derive(Default)]
pub struct Board {
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Points waiting in each output's spool after its last replay.
    spooled: Mutex<BTreeMap<String, usize>>,
    /// Woken when something in the summary changed.
    pub changed: tokio::sync::Notify,
    /// The state directory the due times are written to
    /// ([`crate::state::SCHEDULE_FILE`], for `status`), once set.
    schedule_dir: Mutex<Option<std::path::PathBuf>>,
    /// The last failure to write the schedule file, until one succeeds.
    schedule_error: Mutex<Option<String>>,
}

impl Board {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>) -> R) -> R {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// From now on, every change of a due time is written to the schedule
    /// file in the state directory `dir`.
    pub fn persist_to(&self, dir: std::path::PathBuf) {
        *self.schedule_dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir);
        self.write_schedule();
    }

    /// The due times as wall-clock times, to the schedule file.
    fn write_schedule(&self) {
        let dir = self.schedule_dir.lock().unwrap_or_else(|e| e.into_inner());
        let Some(dir) = dir.as_ref() else {
            return;
        };
        let (now, wall) = (Instant::now(), chrono::Utc::now());
        let due = self.with(|m| {
            m.iter()
                .filter_map(|(name, e)| {
                    let left = e.next?.saturating_duration_since(now);
                    Some((
                        (*name).to_owned(),
                        wall + chrono::Duration::from_std(left).ok()?,
                    ))
                })
                .collect()
        });
        let schedule = crate::state::Schedule::of_this_process(due);
        // A warning when writing starts failing (or fails otherwise), not
        // at every change of a due time; a line when it works again.
        let mut failing = self
            .schedule_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match crate::state::write_schedule(dir, &schedule) {
            Err(e) => {
                let e = e.to_string();
                if failing.as_deref() != Some(e.as_str()) {
                    tracing::warn!(
                        "{e}: `status` cannot show this daemon's next runs (it estimates them)"
                    );
                    *failing = Some(e);
                }
            }
            Ok(()) => {
                if failing.take().is_some() {
                    tracing::info!("{} written again", crate::state::SCHEDULE_FILE);
                }
            }
        }
    }

    /// `name`'s next run is due at `at`.
    pub fn due(&self, name: &str, at: Instant) {
        self.with(|m| m.entry(name.to_owned()).or_default().next = Some(at));
        self.write_schedule();
        self.changed.notify_one();
    }

    /// `name` is running.
    pub fn running(&self, name: &str) {
        self.with(|m| m.entry(name.to_owned()).or_default().next = None);
        self.write_schedule();
        self.changed.notify_one();
    }

    /// `name`'s run ended, failed or not.
    pub fn ended(&self, name: &str, failed: bool) {
        self.with(|m| m.entry(name.to_owned()).or_default().failing = failed);
        self.changed.notify_one();
    }

    /// `name` is no longer scheduled.
    pub fn remove(&self, name: &str) {
        self.with(|m| m.remove(name));
        self.write_schedule();
        self.changed.notify_one();
    }

    /// Points waiting in `output`'s spool.
    pub fn set_spooled(&self, output: &str, points: usize) {
        let mut m = self.spooled.lock().unwrap_or_else(|e| e.into_inner());
        if m.insert(output.to_owned(), points) != Some(points) {
            self.changed.notify_one();
        }
    }

    /// Points waiting in every output's spool.
    pub fn spooled(&self) -> usize {
        self.spooled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    /// "10 collectors, 0 failing, 0 points spooled, next: britney in 2m".
    pub fn summary(&self, now: Instant) -> String {
        let (n, failing, running, next) = self.with(|m| {
            let failing = m.values().filter(|e| e.failing).count();
            let running = m.values().filter(|e| e.next.is_none()).count();
            let next = m
                .iter()
                .filter_map(|(name, e)| e.next.map(|at| (at, name.clone())))
                .min();
            (m.len(), failing, running, next)
        });
        let spooled = self.spooled();
        let mut s = format!(
            "{n} collector{}, {failing} failing, {spooled} point{} spooled",
            if n == 1 { "" } else { "s" },
            if spooled == 1 { "" } else { "s" },
        );
        if running > 0 {
            s += &format!(", {running} running");
        }
        match next {
            Some((at, name)) => {
                s += &format!(", next: {name} in {}", short_span(at - now.min(at)));
            }
            None if n == 0 => s += ", nothing scheduled",
            None => {}
        }
        s
    }
}

/// `2m`, `45s`, `1h5m`, `2d3h`: rounded up to the unit shown.
pub fn short_span(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let m = s.div_ceil(60);
    if s < 60 {
        format!("{s}s")
    } else if m < 60 {
        format!("{m}m")
    } else if m < 24 * 60 {
        match m % 60 {
            0 => format!("{}h", m / 60),
            r => format!("{}h{r}m", m / 60),
        }
    } else {
        let h = s.div_ceil(3600);
        match h % 24 {
            0 => format!("{}d", h / 24),
            r => format!("{}d{r}h", h / 24),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_counts_and_the_next_run() {
        let board = Board::default();
        let now = Instant::now();
        assert_eq!(
            board.summary(now),
            "0 collectors, 0 failing, 0 points spooled, nothing scheduled"
        );
        board.due("britney", now + Duration::from_secs(120));
        board.due("images", now + Duration::from_secs(600));
        board.running("cnf");
        board.ended("cnf", true);
        board.set_spooled("influxdb", 12);
        assert_eq!(
            board.summary(now),
            "3 collectors, 1 failing, 12 points spooled, 1 running, next: britney in 2m"
        );
        board.remove("britney");
        board.due("cnf", now + Duration::from_secs(30));
        assert_eq!(
            board.summary(now),
            "2 collectors, 1 failing, 12 points spooled, next: cnf in 30s"
        );
    }

    #[test]
    fn short_spans() {
        let s = |secs: f64| short_span(Duration::from_secs_f64(secs));
        assert_eq!(s(0.0), "0s");
        assert_eq!(s(0.2), "1s");
        assert_eq!(s(59.0), "59s");
        assert_eq!(s(60.0), "1m");
        assert_eq!(s(119.5), "2m");
        assert_eq!(s(3599.0), "1h");
        assert_eq!(s(3599.5), "1h");
        assert_eq!(s(86399.0), "1d");
        assert_eq!(s(3600.0), "1h");
        assert_eq!(s(3900.0), "1h5m");
        assert_eq!(s(86400.0), "1d");
        assert_eq!(s(97200.0), "1d3h");
    }

    #[test]
    fn the_heartbeat_ages() {
        let h = Heartbeat::default();
        h.beat();
        assert!(h.age() < Duration::from_secs(5));
    }
}
