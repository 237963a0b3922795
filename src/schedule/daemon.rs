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
use crate::runner::{self, outputs::SpoolUse};
use crate::schedule::notify::{self, Board, Heartbeat, Watchdog};
use crate::sinks::Output;
use crate::sources::http::Http;
use crate::support::retry::{Backoff, RetryPolicy};
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
    pub outputs: Vec<Arc<dyn Output>>,
    pub http: Http,
}

impl State {
    pub async fn new(config: Config) -> Result<State, String> {
        let http = Http::from_config(&config.http)?
            .with_conditional_requests(&config.state_dir().join(runner::HTTP_CACHE_DIR));
        // The daemon promises that nothing is lost: without a usable spool
        // for every output it does not start.
        let outputs = runner::outputs::open(&config, SpoolUse::Required)
            .await
            .map_err(|e| match e {
                runner::outputs::OpenError::Spool(e) => {
                    format!("{e} (set [spool] dir to a writable directory)")
                }
                e => e.to_string(),
            })?;
        Ok(State {
            config: Arc::new(config),
            outputs,
            http,
        })
    }

    /// The outputs' names, in order.
    fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.name().to_owned()).collect()
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

/// When a collector first runs, the daemon having scheduled it at `start`
/// (its start, or a reload enabling it): `startup_delay` plus its fixed
/// random delay after it.
fn first_run_due(start: Instant, config: &Config, collector: &str, host: &str) -> Instant {
    start
        + config.daemon.startup_delay.as_duration()
        + fixed_delay(collector, host, config.daemon.random_delay.as_duration())
}

/// When a collector's next run is due: `interval` plus its fixed random
/// delay after its previous run `ended`.
fn next_run_due(ended: Instant, config: &Config, collector: &dyn Collector, host: &str) -> Instant {
    ended
        + config.interval(collector).as_duration()
        + fixed_delay(
            collector.name(),
            host,
            config.daemon.random_delay.as_duration(),
        )
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
    let state = State::new(config).await.map_err(DaemonError::Start)?;
    // The health endpoint, when asked for: bound before anything runs, so
    // a taken address stops the start (read at start only, not on SIGHUP).
    let listener = listen(&state.config).await?;
    let mut signals = Signals::install().map_err(DaemonError::Signals)?;
    let (state_tx, state_rx) = watch::channel(Arc::new(state));
    let (stop_tx, stop_rx) = watch::channel(false);
    // One delivery task per output, each woken when a run appended.
    let outputs = state_rx.borrow().output_names();
    let scheduler = Scheduler {
        registry: registry.clone(),
        host: host_name(),
        appended: Arc::new(outputs.iter().map(|_| tokio::sync::Notify::new()).collect()),
        wakeups: Arc::new(WakeUps::default()),
        board: Arc::new(Board::default()),
        state_rx: state_rx.clone(),
        stop_rx,
    };
    let board = scheduler.board.clone();
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
                scheduler.appended.clone(),
                board.clone(),
            ))
        })
        .collect();
    let mut tasks = Tasks::new();
    scheduler.reconcile(&mut tasks);
    tracing::info!(collectors = tasks.len(), "daemon started");
    // The watchdog pings only while the main loop goes round (it beats the
    // heartbeat at every tick).
    let heartbeat = Arc::new(Heartbeat::default());
    heartbeat.beat();
    let status = board.summary(Instant::now());
    notify::ready(&status);
    let watchdog_timeout = sd_notify::watchdog_enabled();
    // Pings from now on (stopped when dropped, as the daemon returns).
    let _watchdog = match watchdog_timeout {
        Some(t) => Some(Watchdog::start(heartbeat.clone(), t).map_err(DaemonError::Watchdog)?),
        None => None,
    };
    let main = MainLoop {
        config_path,
        outputs,
        heartbeat,
        watchdog_timeout,
        status,
    };
    main.run(
        &scheduler,
        &state_tx,
        &mut tasks,
        &mut signals,
        &mut options,
    )
    .await;

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
    finish_runs(tasks, deadline, grace).await;
    // Every point collected is in the spool. The rest of the grace goes to
    // writing it; what InfluxDB does not take by then stays there.
    for d in &deliveries {
        d.abort();
    }
    for d in deliveries {
        let _ = d.await;
    }
    let st = state_tx.borrow().clone();
    write_spools(&st, deadline).await;
    crate::state::remove_schedule(&state_dir, std::process::id());
    Ok(())
}

/// The collectors' tasks, by name.
type Tasks = BTreeMap<String, tokio::task::JoinHandle<()>>;

/// SIGTERM, SIGINT and SIGHUP, caught.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// The health endpoint's listener, when `[daemon] listen` asks for one.
async fn listen(config: &Config) -> Result<Option<tokio::net::TcpListener>, DaemonError> {
    let Some(addr) = config.daemon.listen.as_deref() else {
        return Ok(None);
    };
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
    Ok(Some(l))
}

/// What the collectors' tasks share: the registry, the state, the stop
/// signal, the delivery tasks' wake-ups, the wake-ups' caches, the board.
struct Scheduler {
    registry: Registry,
    host: String,
    state_rx: watch::Receiver<Arc<State>>,
    stop_rx: watch::Receiver<bool>,
    appended: Arc<Vec<tokio::sync::Notify>>,
    wakeups: Arc<WakeUps>,
    board: Arc<Board>,
}

impl Scheduler {
    /// A task for every enabled collector without one.
    fn reconcile(&self, tasks: &mut Tasks) {
        let config = self.state_rx.borrow().config.clone();
        // The collectors scheduled together count their delays from the
        // same moment: those due at once share a wake-up (and its cache).
        let start = Instant::now();
        tasks.retain(|_, t| !t.is_finished());
        for c in self.registry.iter() {
            if !config.enabled(c.name()) || tasks.contains_key(c.name()) {
                continue;
            }
            let due = first_run_due(start, &config, c.name(), &self.host);
            tracing::info!(
                collector = c.name(),
                interval = %config.interval(c.as_ref()),
                first_run_in_s = due.duration_since(start).as_secs_f64(),
                "scheduled"
            );
            self.board.due(c.name(), due);
            let task = collector_loop(
                c.name().to_owned(),
                self.registry.clone(),
                self.host.clone(),
                FirstWakeUp {
                    at: due,
                    wakeups: self.wakeups.clone(),
                },
                self.state_rx.clone(),
                self.stop_rx.clone(),
                Links {
                    appended: self.appended.clone(),
                    board: self.board.clone(),
                },
            );
            tasks.insert(c.name().to_owned(), tokio::spawn(task));
        }
    }
}

/// The daemon's main loop: signals, the status line, the watchdog's
/// heartbeat.
struct MainLoop {
    config_path: Option<PathBuf>,
    /// The outputs' names at start (a reload may not change them).
    outputs: Vec<String>,
    heartbeat: Arc<Heartbeat>,
    watchdog_timeout: Option<Duration>,
    /// The status line last sent.
    status: String,
}

impl MainLoop {
    /// Runs until SIGTERM or SIGINT.
    async fn run(
        mut self,
        scheduler: &Scheduler,
        state_tx: &watch::Sender<Arc<State>>,
        tasks: &mut Tasks,
        signals: &mut Signals,
        options: &mut Options,
    ) {
        let board = scheduler.board.clone();
        let mut tick = tokio::time::interval(self.watchdog_timeout.map_or(STATUS_REFRESH, |t| {
            Watchdog::beat_every(t).min(STATUS_REFRESH)
        }));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = signals.term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = signals.int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                _ = signals.hup.recv() => {
                    notify::reloading();
                    self.reload(scheduler, state_tx, tasks).await;
                    self.status = board.summary(Instant::now());
                    notify::ready(&self.status);
                }
                _ = tick.tick() => {
                    self.heartbeat.beat();
                    self.refresh(&board);
                }
                _ = board.changed.notified() => self.refresh(&board),
                _ = frozen(&mut options.freeze) => {
                    tracing::warn!("test hook: the scheduler is frozen");
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Sends the status line when it changed.
    fn refresh(&mut self, board: &Board) {
        let now = board.summary(Instant::now());
        if now != self.status {
            self.status = now;
            notify::notify(&[sd_notify::NotifyState::Status(&self.status)]);
        }
    }

    /// SIGHUP: the configuration read again; a bad one is reported and
    /// the old one kept.
    async fn reload(
        &self,
        scheduler: &Scheduler,
        state_tx: &watch::Sender<Arc<State>>,
        tasks: &mut Tasks,
    ) {
        let loaded = match Config::load(self.config_path.as_deref(), &scheduler.registry) {
            Ok(c) => State::new(c).await,
            Err(e) => Err(e.to_string()),
        };
        let loaded = loaded.and_then(|new| {
            if new.output_names() == self.outputs {
                Ok(new)
            } else {
                Err(format!(
                    "the outputs changed ({} before, {} now): restart the daemon to add or remove an output",
                    self.outputs.join(", "),
                    new.output_names().join(", ")
                ))
            }
        });
        match loaded {
            Ok(new) => {
                tracing::info!("SIGHUP: configuration reloaded");
                let _ = state_tx.send(Arc::new(new));
                scheduler.reconcile(tasks);
            }
            Err(e) => tracing::error!(
                "SIGHUP: the new configuration is not valid, keeping the old one: {e}"
            ),
        }
    }
}

/// Lets the running collectors finish until `deadline`, then cancels them.
async fn finish_runs(tasks: Tasks, deadline: Instant, grace: Duration) {
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
}

/// At shutdown: every output's spool written until `deadline`.
async fn write_spools(st: &State, deadline: Instant) {
    let wait = deadline.saturating_duration_since(Instant::now());
    let self_metrics = st.config.self_metrics.enabled;
    let finals = st.outputs.iter().map(|o| async move {
        match tokio::time::timeout_at(deadline, o.replay(wait, true)).await {
            Ok(r) if r.stopped.is_none() && !r.busy && r.error.is_none() => {
                if self_metrics {
                    let own = o.write_self_metrics(None, chrono::Utc::now());
                    let _ = tokio::time::timeout_at(deadline, own).await;
                }
                tracing::info!(output = o.name(), "daemon stopped; the spool is written")
            }
            _ => tracing::warn!(
                output = o.name(),
                spool = %o.spool_dir().display(),
                "daemon stopped; points this output did not take yet are kept in its spool (the next start or `ubuntu-metrics spool flush` writes them)"
            ),
        }
    });
    futures::future::join_all(finals).await;
}

/// How often the status line is brought up to date (the time to the next
/// run changes) when no watchdog asks for more.
const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The one task writing the spool to InfluxDB: after each append, and
/// while InfluxDB cannot take points, again after a growing backoff (runs
/// appending meanwhile do not cut it short).
async fn delivery_loop(
    index: usize,
    mut state_rx: watch::Receiver<Arc<State>>,
    appended: Arc<Vec<tokio::sync::Notify>>,
    board: Arc<Board>,
) {
    // While the output cannot take points: the one retry policy's
    // delivery backoff (1 s doubling to a minute).
    let mut backoff = Backoff::new(RetryPolicy::DELIVERY);
    // What waited in the spool after the last replay that left something:
    // the backlog the next successful one reports in the self-metrics.
    let mut backlog: Option<crate::sinks::spool::Status> = None;
    loop {
        let st = state_rx.borrow_and_update().clone();
        let out = &st.outputs[index];
        let name = out.name();
        let r = out.replay(Duration::ZERO, true).await;
        let trouble = r.stopped.is_some() || r.busy || r.error.is_some();
        // What waits in the spool, for the status line (read only when
        // the replay left something: an empty spool costs nothing).
        let spooled = if trouble {
            out.backlog().await.map(|s| {
                let n = s.points;
                // The first backlog of an outage holds the oldest record.
                backlog.get_or_insert(s);
                n
            })
        } else {
            Some(0)
        };
        if let Some(n) = spooled {
            board.set_spooled(name, n);
        }
        if !trouble && st.config.self_metrics.enabled {
            // The writes just made, and the backlog written, in a write of
            // their own (while InfluxDB is away they wait in memory).
            let own = out.write_self_metrics(backlog.as_ref(), chrono::Utc::now());
            if own.await.is_ok() {
                backlog = None;
            }
        }
        drop(st);
        if trouble {
            let wait = backoff.next_wait();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A new configuration may fix the trouble: try it at once.
                changed = state_rx.changed() => { if changed.is_err() { return; } }
            }
        } else {
            backoff.reset();
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
        crate::state::record_off_runtime(&st.config, std::slice::from_ref(&outcome)).await;
        board.ended(name, outcome.status != runner::Status::Ok);
        // Write-ahead: on disk now, in every output's spool; each
        // output's delivery task writes it.
        let mut safe = true;
        for (i, out) in st.outputs.iter().enumerate() {
            // (When its spool cannot keep them, the output writes them
            // directly: this run waits for it, counting what is lost.)
            let d = runner::keep_in(
                std::slice::from_ref(&outcome),
                out.as_ref(),
                st.config.self_metrics.enabled,
            )
            .await;
            if d.spool_errors.is_empty() {
                // (Unencodable points are the same for every output.)
                if i == 0 {
                    for e in &d.unencodable {
                        tracing::error!(collector = name, "not written: {e}");
                    }
                }
                appended[i].notify_one();
            }
            safe &= d.lost == 0;
        }
        // fsync'd in every spool (or written): the rows read are safe, the
        // catch-up marks move.
        if safe {
            crate::state::set_marks_off_runtime(&st.config, std::slice::from_ref(&outcome)).await;
        }
        drop(st);
        let ended = Instant::now();
        // Sleep until `interval` (+ the fixed delay) after this run ended;
        // a reload recomputes the deadline with the new interval.
        loop {
            let deadline = next_run_due(
                ended,
                &state_rx.borrow_and_update().config,
                collector,
                &host,
            );
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

    /// 64-bit FNV-1a's published test vectors: the delay of a collector
    /// must not change with a release.
    #[test]
    fn fnv1a_is_the_published_hash() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn the_fixed_delay_is_the_hash_modulo_the_maximum_plus_one() {
        let h = fnv1a(b"britney@host-a");
        for max_us in [1u64, 7, 1_000_000, 86_400_000_000] {
            assert_eq!(
                fixed_delay("britney", "host-a", Duration::from_micros(max_us)),
                Duration::from_micros(h % (max_us + 1)),
                "max {max_us} us"
            );
        }
        // Over many names, the delays fill [0, max]: both ends reachable.
        let max = Duration::from_micros(3);
        let seen: std::collections::BTreeSet<Duration> = (0..200)
            .map(|i| fixed_delay(&format!("c{i}"), "h", max))
            .collect();
        assert_eq!(seen.len(), 4, "{seen:?}");
    }

    fn config(daemon: &str) -> Config {
        let mut c = Config::from_toml(&format!(
            "[daemon]\n{daemon}\n[collectors.sponsoring]\ninterval = \"15m\"\n"
        ))
        .unwrap();
        c.apply_env(&|_| None).unwrap();
        c
    }

    #[test]
    fn the_first_run_comes_after_the_startup_delay_plus_the_fixed_delay() {
        let start = Instant::now();
        let c = config("startup_delay = \"30s\"\nrandom_delay = \"0\"");
        assert_eq!(
            first_run_due(start, &c, "sponsoring", "h"),
            start + Duration::from_secs(30)
        );
        let c = config("startup_delay = \"30s\"\nrandom_delay = \"1h\"");
        let fixed = fixed_delay("sponsoring", "h", Duration::from_secs(3600));
        assert!(fixed > Duration::ZERO);
        assert_eq!(
            first_run_due(start, &c, "sponsoring", "h"),
            start + Duration::from_secs(30) + fixed
        );
    }

    #[test]
    fn the_next_run_comes_an_interval_plus_the_fixed_delay_after_the_last_ended() {
        let registry = crate::collectors::registry();
        let sponsoring = registry.iter().find(|c| c.name() == "sponsoring").unwrap();
        let ended = Instant::now();
        let c = config("random_delay = \"0\"");
        assert_eq!(
            next_run_due(ended, &c, sponsoring.as_ref(), "h"),
            ended + Duration::from_secs(900)
        );
        let c = config("random_delay = \"1h\"");
        let fixed = fixed_delay("sponsoring", "h", Duration::from_secs(3600));
        assert!(fixed > Duration::ZERO);
        assert_eq!(
            next_run_due(ended, &c, sponsoring.as_ref(), "h"),
            ended + Duration::from_secs(900) + fixed
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

    /// The task of each running collector, by name.
    fn task_ids(tasks: &Tasks) -> BTreeMap<String, tokio::task::Id> {
        tasks.iter().map(|(n, t)| (n.clone(), t.id())).collect()
    }

    /// `reconcile` starts a task for every enabled collector that has none,
    /// keeps the tasks still running (a reload does not run a collector
    /// twice) and replaces the ones that ended.
    #[tokio::test]
    async fn reconcile_starts_each_enabled_collector_once_and_replaces_an_ended_task() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing runs during the test: the first runs are an hour away.
        let mut config = Config::from_toml(
            "[daemon]\nstartup_delay = \"1h\"\n[collectors.images]\nenabled = false\n",
        )
        .unwrap();
        config.spool.dir = dir.path().join("spool");
        let state = State::new(config).await.unwrap();
        let outputs = state.outputs.len();
        let (_state_tx, state_rx) = watch::channel(Arc::new(state));
        let (_stop_tx, stop_rx) = watch::channel(false);
        let registry: Registry = Arc::new(crate::collectors::registry());
        let scheduler = Scheduler {
            registry: registry.clone(),
            host: "test-host".into(),
            appended: Arc::new((0..outputs).map(|_| tokio::sync::Notify::new()).collect()),
            wakeups: Arc::new(WakeUps::default()),
            board: Arc::new(Board::default()),
            state_rx,
            stop_rx,
        };
        let mut tasks = Tasks::new();
        scheduler.reconcile(&mut tasks);
        let mut enabled: Vec<String> = registry
            .iter()
            .map(|c| c.name().to_owned())
            .filter(|n| n != "images")
            .collect();
        enabled.sort();
        assert!(enabled.len() > 1);
        assert_eq!(tasks.keys().cloned().collect::<Vec<_>>(), enabled);

        let first = task_ids(&tasks);
        scheduler.reconcile(&mut tasks);
        assert_eq!(task_ids(&tasks), first, "running tasks are kept");

        let ended = &enabled[0];
        tasks[ended].abort();
        while !tasks[ended].is_finished() {
            tokio::task::yield_now().await;
        }
        scheduler.reconcile(&mut tasks);
        let after = task_ids(&tasks);
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            first.keys().collect::<Vec<_>>()
        );
        for (name, id) in &after {
            if name == ended {
                assert_ne!(*id, first[name], "the ended task of {name} is replaced");
            } else {
                assert_eq!(*id, first[name], "the running task of {name} is kept");
            }
        }
        for t in tasks.values() {
            t.abort();
        }
    }
}
