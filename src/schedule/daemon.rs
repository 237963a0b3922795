//! `ubuntu-metrics daemon`: every enabled collector on its interval, with
//! the semantics of the first generation's systemd timers
//! (`OnBootSec=<startup_delay>`, `OnUnitInactiveSec=<interval>`,
//! `RandomizedDelaySec=<random_delay>`, `FixedRandomDelay=yes`,
//! `RuntimeMaxSec=<run_timeout>`):
//!
//! - each collector's first run comes `startup_delay` after start, plus its
//!   fixed random delay;
//! - the next run comes `interval` (plus the fixed delay) after the previous
//!   run *ended*, so one collector never runs twice at once;
//! - the fixed random delay is derived from the collector's name and the
//!   host, so it is the same across restarts and differs between machines;
//! - a run still going after `run_timeout` is abandoned and reported as
//!   timed out;
//! - every collector is its own task: one hanging or failing delays no other.
//!
//! Delivery is write-ahead: a run's points and self-metrics are appended
//! to the spool (`fsync`ed) as soon as they are collected; one delivery
//! task replays the spool to InfluxDB when a run appended (and, while
//! InfluxDB cannot take points, again with a growing backoff), removing a
//! record only once InfluxDB accepted it. So a slow or hung InfluxDB never
//! delays a collector's next run, and nothing collected is lost.
//!
//! The collectors due at the same moment (every collector at start when
//! `random_delay` is 0) are one wake-up: they share one run cache, so the
//! documents several of them need (Launchpad's `ubuntu` distribution and
//! its series) are read once for them, as in `run --all`. Each wake-up has
//! a new cache: nothing read at one wake-up is reused at a later one.
//!
//! A collector that panics is reported as a failed run (self-metrics
//! `status=error`, the panic message) and keeps its schedule.
//!
//! SIGTERM / SIGINT: no new runs start; running ones get `shutdown_grace`
//! to finish (then they are cancelled, and the processes they started are
//! killed), and what remains of it is used to write the spool; then the
//! daemon exits 0, within `shutdown_grace` plus the 1 s the command line
//! gives its tasks' leftovers, whatever a run was doing. Everything collected is on disk by then: what InfluxDB
//! did not take waits in the spool for the next start or `spool flush`.
//! SIGHUP: the configuration is read again; a bad one is reported and the
//! old one kept.
//!
//! Under systemd (`NOTIFY_SOCKET`), the daemon reports readiness, reloads,
//! a one-line status and watchdog pings while its scheduler is alive: see
//! [`super::notify`].

use crate::collector::{Collector, Context, RunCache};
use crate::config::Config;
use crate::runner;
use crate::schedule::notify::{self, Board, Heartbeat, Watchdog};
use crate::sinks::influxdb::InfluxWriter;
use crate::sinks::spool::Spool;
use crate::sources::http::Http;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a run needs, rebuilt when the configuration is reloaded.
pub struct State {
    pub config: Arc<Config>,
    /// Every output (`[influxdb]` first), each with its own spool.
    pub outputs: Vec<Output>,
    pub http: Http,
}

/// One output: its writer and the spool where its points wait while it
/// cannot take them.
pub struct Output {
    pub writer: Arc<InfluxWriter>,
    pub spool: Arc<Spool>,
}

impl State {
    pub fn new(config: Config) -> Result<State, String> {
        let http = Http::from_config(&config.http)?
            .with_conditional_requests(&config.state_dir().join(runner::HTTP_CACHE_DIR));
        let max = config.spool.max_bytes()?;
        let mut outputs = Vec::new();
        for o in config.outputs() {
            let secret = config.output_secret(&o).map_err(|e| e.to_string())?;
            let writer = InfluxWriter::new(&o.influx, secret)?.named(&o.name);
            // The daemon promises that nothing is lost: without a usable
            // spool for every output it does not start.
            let spool = Spool::open(&o.spool_dir, max)
                .map_err(|e| format!("{e} (set [spool] dir to a writable directory)"))?;
            outputs.push(Output {
                writer: Arc::new(writer),
                spool: Arc::new(spool),
            });
        }
        Ok(State {
            config: Arc::new(config),
            outputs,
            http,
        })
    }

    /// The outputs' names, in order.
    fn output_names(&self) -> Vec<String> {
        self.outputs
            .iter()
            .map(|o| o.writer.name().to_owned())
            .collect()
    }
}

/// The host's name, for the fixed random delay.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// 64-bit FNV-1a: a stable hash (the standard library's may change between
/// Rust releases, and the delay must stay the same across upgrades too).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The collector's fixed random delay: in `[0, max]`, the same for the same
/// collector on the same host.
pub fn fixed_delay(collector: &str, host: &str, max: Duration) -> Duration {
    let max_us = max.as_micros() as u64;
    if max_us == 0 {
        return Duration::ZERO;
    }
    let h = fnv1a(format!("{collector}@{host}").as_bytes());
    Duration::from_micros(h % (max_us + 1))
}

pub type Registry = Arc<Vec<Box<dyn Collector>>>;

/// When a collector's first run is due, and the wake-ups it joins.
struct FirstWakeUp {
    at: Instant,
    wakeups: Arc<WakeUps>,
}

/// The run caches of the daemon's wake-ups, by the moment the collectors
/// were due: collectors due at the same moment get the same [`RunCache`],
/// a later moment a new one.
#[derive(Default)]
pub struct WakeUps {
    caches: Mutex<BTreeMap<Instant, Arc<RunCache>>>,
}

impl WakeUps {
    /// The cache of the wake-up due at `due`. The caches of earlier
    /// wake-ups are let go (their collectors hold them while they run).
    pub fn cache(&self, due: Instant) -> Arc<RunCache> {
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        caches.retain(|at, _| *at >= due);
        caches.entry(due).or_default().clone()
    }
}

/// Why the daemon could not run (it reports nothing itself: the caller
/// does, once).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration gives no writer, HTTP client or usable spool.
    #[error("cannot start: {0}")]
    Start(String),
    /// SIGTERM, SIGINT or SIGHUP cannot be caught.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// systemd asked for watchdog pings and the thread sending them cannot
    /// be started.
    #[error("cannot start the watchdog thread")]
    Watchdog(#[source] std::io::Error),
    /// `[daemon] listen` names an address that cannot be taken.
    #[error(transparent)]
    Listen(#[from] crate::ops::health::BindError),
}

/// What a caller may add to [`run_with`].
#[derive(Default)]
pub struct Options {
    /// Test hook: once this turns `true` the scheduler loop stands still
    /// for good, as a wedged one would (no more heartbeats, signals not
    /// handled), so that a test sees the watchdog pings stop.
    pub freeze: Option<watch::Receiver<bool>>,
}

/// Runs the daemon until SIGTERM/SIGINT; `Ok` once it stopped in order
/// (what InfluxDB did not take yet waits in the spool).
pub async fn run(
    config_path: Option<PathBuf>,
    config: Config,
    registry: Registry,
) -> Result<(), DaemonError> {
    run_with(config_path, config, registry, Options::default()).await
}

/// Completes when the freeze hook turned `true`; never without it.
async fn frozen(freeze: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = freeze
        && rx.wait_for(|f| *f).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// [`run`], with [`Options`].
pub async fn run_with(
    config_path: Option<PathBuf>,
    config: Config,
    registry: Registry,
    mut options: Options,
) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let state = State::new(config).map_err(DaemonError::Start)?;
    // The health endpoint, when asked for: bound before anything runs, so
    // a taken address stops the start (read at start only, not on SIGHUP).
    let listener = match state.config.daemon.listen.as_deref() {
        Some(addr) => {
            let l = crate::ops::health::bind(addr).await?;
            if l.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
                tracing::warn!(
                    "the health endpoint listens on {addr}, not a loopback address: anyone who reaches it sees the collectors' state"
                );
            }
            tracing::info!(
                "health endpoint on http://{}/health, /status, /metrics",
                l.local_addr()
                    .map_or_else(|_| addr.to_owned(), |a| a.to_string())
            );
            Some(l)
        }
        None => None,
    };
    let signals = || -> std::io::Result<_> {
        Ok((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ))
    };
    let (mut sigterm, mut sigint, mut sighup) = signals().map_err(DaemonError::Signals)?;
    let host = host_name();
    let (state_tx, state_rx) = watch::channel(Arc::new(state));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    // One delivery task per output, each woken when a run appended.
    let outputs = state_rx.borrow().output_names();
    let appended: Arc<Vec<tokio::sync::Notify>> =
        Arc::new(outputs.iter().map(|_| tokio::sync::Notify::new()).collect());
    let wakeups = Arc::new(WakeUps::default());
    let board = Arc::new(Board::default());
    let state_dir = crate::state::dir(&state_rx.borrow().config);
    board.persist_to(state_dir.clone());
    let endpoint = listener.map(|l| {
        let rx = state_rx.clone();
        let ep = Arc::new(crate::ops::health::Endpoint {
            registry: registry.clone(),
            config: Arc::new(move || rx.borrow().config.clone()),
        });
        tokio::spawn(ep.serve(l))
    });
    let deliveries: Vec<_> = (0..outputs.len())
        .map(|i| {
            tokio::spawn(delivery_loop(
                i,
                state_rx.clone(),
                appended.clone(),
                board.clone(),
            ))
        })
        .collect();
    // The watchdog pings only while this loop goes round (it beats the
    // heartbeat at every tick).
    let heartbeat = Arc::new(Heartbeat::default());
    let watchdog_timeout = sd_notify::watchdog_enabled();
    let mut tick = tokio::time::interval(watchdog_timeout.map_or(STATUS_REFRESH, |t| {
        Watchdog::beat_every(t).min(STATUS_REFRESH)
    }));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let reconcile = |tasks: &mut BTreeMap<String, tokio::task::JoinHandle<()>>| {
        let config = state_rx.borrow().config.clone();
        // The collectors scheduled together count their delays from the
        // same moment: those due at once share a wake-up (and its cache).
        let start = Instant::now();
        tasks.retain(|_, t| !t.is_finished());
        for c in registry.iter() {
            if config.enabled(c.name()) && !tasks.contains_key(c.name()) {
                let delay = config.daemon.startup_delay.as_duration()
                    + fixed_delay(c.name(), &host, config.daemon.random_delay.as_duration());
                tracing::info!(
                    collector = c.name(),
                    interval = %config.interval(c.as_ref()),
                    first_run_in_s = delay.as_secs_f64(),
                    "scheduled"
                );
                board.due(c.name(), start + delay);
                let task = collector_loop(
                    c.name().to_owned(),
                    registry.clone(),
                    host.clone(),
                    FirstWakeUp {
                        at: start + delay,
                        wakeups: wakeups.clone(),
                    },
                    state_rx.clone(),
                    stop_rx.clone(),
                    Links {
                        appended: appended.clone(),
                        board: board.clone(),
                    },
                );
                tasks.insert(c.name().to_owned(), tokio::spawn(task));
            }
        }
    };
    reconcile(&mut tasks);
    tracing::info!(collectors = tasks.len(), "daemon started");
    heartbeat.beat();
    let mut status = board.summary(Instant::now());
    notify::ready(&status);
    // Pings from now on (stopped when dropped, as the daemon returns).
    let _watchdog = match watchdog_timeout {
        Some(t) => Some(Watchdog::start(heartbeat.clone(), t).map_err(DaemonError::Watchdog)?),
        None => None,
    };

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                notify::reloading();
                let loaded = Config::load(config_path.as_deref(), &registry)
                    .map_err(|e| e.to_string())
                    .and_then(State::new)
                    .and_then(|new| {
                        if new.output_names() == outputs {
                            Ok(new)
                        } else {
                            Err(format!(
                                "the outputs changed ({} before, {} now): restart the daemon to add or remove an output",
                                outputs.join(", "),
                                new.output_names().join(", ")
                            ))
                        }
                    });
                match loaded {
                    Ok(new) => {
                        tracing::info!("SIGHUP: configuration reloaded");
                        let _ = state_tx.send(Arc::new(new));
                        reconcile(&mut tasks);
                    }
                    Err(e) => tracing::error!("SIGHUP: the new configuration is not valid, keeping the old one: {e}"),
                }
                status = board.summary(Instant::now());
                notify::ready(&status);
            }
            _ = tick.tick() => {
                heartbeat.beat();
                let now = board.summary(Instant::now());
                if now != status {
                    status = now;
                    notify::notify(&[sd_notify::NotifyState::Status(&status)]);
                }
            }
            _ = board.changed.notified() => {
                let now = board.summary(Instant::now());
                if now != status {
                    status = now;
                    notify::notify(&[sd_notify::NotifyState::Status(&status)]);
                }
            }
            _ = frozen(&mut options.freeze) => {
                tracing::warn!("test hook: the scheduler is frozen");
                std::future::pending::<()>().await;
            }
        }
    }

    notify::notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping: letting runs finish, writing the spool"),
    ]);
    let _ = stop_tx.send(true);
    if let Some(e) = &endpoint {
        e.abort();
    }
    let grace = state_tx.borrow().config.daemon.shutdown_grace.as_duration();
    let deadline = Instant::now() + grace;
    let running: Vec<_> = tasks.values().map(|t| t.abort_handle()).collect();
    let all = futures::future::join_all(tasks.into_values());
    match tokio::time::timeout_at(deadline, all).await {
        Ok(_) => tracing::info!("all runs finished"),
        Err(_) => {
            // Cancelled, not left running: a run's future is dropped, and
            // with it the processes it started (a jq filter's, a script's).
            for r in &running {
                r.abort();
            }
            tracing::warn!(
                "runs still going after the {:.0} s shutdown grace were abandoned (they had collected nothing yet)",
                grace.as_secs_f64()
            )
        }
    }
    // Every point collected is in the spool. The rest of the grace goes to
    // writing it; what InfluxDB does not take by then stays there.
    for d in &deliveries {
        d.abort();
    }
    for d in deliveries {
        let _ = d.await;
    }
    let st = state_tx.borrow().clone();
    let wait = deadline.saturating_duration_since(Instant::now());
    let self_metrics = st.config.self_metrics.enabled;
    let finals = st.outputs.iter().map(|o| async move {
        let replay = runner::replay(&o.spool, &o.writer, wait);
        match tokio::time::timeout_at(deadline, replay).await {
            Ok(r) if r.stopped.is_none() && !r.busy && r.error.is_none() => {
                if self_metrics {
                    let now = chrono::Utc::now();
                    let own = runner::write_self_metrics(&o.writer, Some(&o.spool), None, now);
                    let _ = tokio::time::timeout_at(deadline, own).await;
                }
                tracing::info!(output = o.writer.name(), "daemon stopped; the spool is written")
            }
            _ => tracing::warn!(
                output = o.writer.name(),
                spool = %o.spool.dir().display(),
                "daemon stopped; points this output did not take yet are kept in its spool (the next start or `ubuntu-metrics spool flush` writes them)"
            ),
        }
    });
    futures::future::join_all(finals).await;
    crate::state::remove_schedule(&state_dir, std::process::id());
    Ok(())
}

/// How often the status line is brought up to date (the time to the next
/// run changes) when no watchdog asks for more.
const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The longest wait between two replays while InfluxDB cannot take points.
const MAX_DELIVERY_BACKOFF: Duration = Duration::from_secs(60);

/// The one task writing the spool to InfluxDB: after each append, and
/// while InfluxDB cannot take points, again after a growing backoff (runs
/// appending meanwhile do not cut it short).
async fn delivery_loop(
    index: usize,
    mut state_rx: watch::Receiver<Arc<State>>,
    appended: Arc<Vec<tokio::sync::Notify>>,
    board: Arc<Board>,
) {
    let mut backoff = Duration::from_secs(1);
    // What waited in the spool after the last replay that left something:
    // the backlog the next successful one reports in the self-metrics.
    let mut backlog: Option<runner::SpoolStatus> = None;
    loop {
        let st = state_rx.borrow_and_update().clone();
        let out = &st.outputs[index];
        let name = out.writer.name();
        let r = runner::replay(&out.spool, &out.writer, Duration::ZERO).await;
        let trouble = r.stopped.is_some() || r.busy || r.error.is_some();
        // What waits in the spool, for the status line (read only when
        // the replay left something: an empty spool costs nothing).
        let spooled = if trouble {
            match out.spool.status() {
                Ok(s) => {
                    let n = s.points;
                    // The first backlog of an outage holds the oldest record.
                    backlog.get_or_insert(s);
                    Some(n)
                }
                Err(_) => None,
            }
        } else {
            Some(0)
        };
        if let Some(n) = spooled {
            board.set_spooled(name, n);
        }
        if !trouble && st.config.self_metrics.enabled {
            // The writes just made, and the backlog written, in a write of
            // their own (while InfluxDB is away they wait in memory).
            let now = chrono::Utc::now();
            let own =
                runner::write_self_metrics(&out.writer, Some(&out.spool), backlog.as_ref(), now);
            if own.await.is_ok() {
                backlog = None;
            }
        }
        drop(st);
        if trouble {
            let wait = backoff;
            backoff = (backoff * 2).min(MAX_DELIVERY_BACKOFF);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A new configuration may fix the trouble: try it at once.
                changed = state_rx.changed() => { if changed.is_err() { return; } }
            }
        } else {
            backoff = Duration::from_secs(1);
            tokio::select! {
                _ = appended[index].notified() => {}
                changed = state_rx.changed() => { if changed.is_err() { return; } }
            }
        }
    }
}

/// Waits until `at`; false when asked to stop first.
async fn wait_or_stop(at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(at) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// What a collector's task tells the rest of the daemon: the delivery task
/// that it appended to the spool, the status line how its runs go.
struct Links {
    appended: Arc<Vec<tokio::sync::Notify>>,
    board: Arc<Board>,
}

async fn collector_loop(
    name: String,
    registry: Registry,
    host: String,
    first: FirstWakeUp,
    mut state_rx: watch::Receiver<Arc<State>>,
    mut stop_rx: watch::Receiver<bool>,
    links: Links,
) {
    let Links { appended, board } = links;
    let name = name.as_str();
    let Some(collector) = registry.iter().find(|c| c.name() == name) else {
        return;
    };
    // Off the status line once this task ends, however it ends.
    struct Scheduled<'a>(&'a Board, &'a str);
    impl Drop for Scheduled<'_> {
        fn drop(&mut self) {
            self.0.remove(self.1);
        }
    }
    let _scheduled = Scheduled(&board, name);
    let collector = collector.as_ref();
    // When this run is due: the wake-up it belongs to.
    let FirstWakeUp {
        at: mut due,
        wakeups,
    } = first;
    board.due(name, due);
    if !wait_or_stop(due, &mut stop_rx).await {
        return;
    }
    loop {
        let st = state_rx.borrow_and_update().clone();
        if !st.config.enabled(name) {
            tracing::info!(collector = name, "disabled by the new configuration");
            return;
        }
        let ctx = Context::new(
            st.http.clone(),
            Arc::new(st.config.sources.clone()),
            chrono::Utc::now(),
        )
        .with_cache(wakeups.cache(due))
        .with_marks(crate::state::marks_or_warn(&st.config))
        .with_state_dir(st.config.state_dir());
        let timeout = Some(st.config.daemon.run_timeout.as_duration());
        board.running(name);
        let outcome = runner::collect_one(collector, &ctx, &st.config, timeout).await;
        crate::state::record_or_warn(&st.config, std::slice::from_ref(&outcome));
        board.ended(name, outcome.status != runner::Status::Ok);
        // Write-ahead: on disk now, in every output's spool; each
        // output's delivery task writes it.
        let mut safe = true;
        for (i, out) in st.outputs.iter().enumerate() {
            match runner::spool_run(
                std::slice::from_ref(&outcome),
                &out.spool,
                st.config.self_metrics.enabled,
            ) {
                Ok(s) => {
                    // (Unencodable points are the same for every output.)
                    if i == 0 {
                        for e in &s.unencodable {
                            tracing::error!(collector = name, "not written: {e}");
                        }
                    }
                    appended[i].notify_one();
                }
                Err((e, _, _)) => {
                    // The spool cannot keep them: try the output directly
                    // (this run waits for it), counting what is lost.
                    tracing::error!(
                        collector = name,
                        output = out.writer.name(),
                        "{e}; writing this run's points directly"
                    );
                    let d = runner::deliver(
                        std::slice::from_ref(&outcome),
                        &out.writer,
                        None,
                        st.config.self_metrics.enabled,
                    )
                    .await;
                    safe &= d.lost == 0;
                }
            }
        }
        // fsync'd in every spool (or written): the rows read are safe, the
        // catch-up marks move.
        if safe {
            crate::state::set_marks_or_warn(&st.config, std::slice::from_ref(&outcome));
        }
        drop(st);
        let ended = Instant::now();
        // Sleep until `interval` (+ the fixed delay) after this run ended;
        // a reload recomputes the deadline with the new interval.
        loop {
            let deadline = {
                let st = state_rx.borrow_and_update();
                ended
                    + st.config.interval(collector).as_duration()
                    + fixed_delay(name, &host, st.config.daemon.random_delay.as_duration())
            };
            board.due(name, deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => { due = deadline; break }
                changed = state_rx.changed() => { if changed.is_err() { return; } }
                _ = stop_rx.wait_for(|s| *s) => return,
            }
        }
        if *stop_rx.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_delay_is_stable_bounded_and_spread() {
        let max = Duration::from_secs(60);
        let a = fixed_delay("britney", "host-a", max);
        assert_eq!(a, fixed_delay("britney", "host-a", max));
        assert!(a <= max);
        assert_ne!(a, fixed_delay("britney", "host-b", max));
        assert_ne!(a, fixed_delay("images", "host-a", max));
        assert_eq!(
            fixed_delay("britney", "host-a", Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn collectors_due_at_one_moment_share_its_cache_and_a_later_moment_has_a_new_one() {
        let wakeups = WakeUps::default();
        let t = Instant::now();
        let a = wakeups.cache(t);
        assert!(Arc::ptr_eq(&a, &wakeups.cache(t)));
        let later = wakeups.cache(t + Duration::from_secs(60));
        assert!(!Arc::ptr_eq(&a, &later));
        // The earlier wake-up's cache is let go: asked again, it is new.
        assert!(!Arc::ptr_eq(&a, &wakeups.cache(t)));
    }
}
