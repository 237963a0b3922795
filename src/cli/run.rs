//! `run`: collect once, then write to InfluxDB (through the spool) or
//! print (`--dry-run`); the exit status says what happened to the points.

use super::{EXIT_FAILED, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE, RunArgs, normalise_name};
use crate::collector::{Collector, Context};
use crate::config::Config;
use crate::runner::outputs::SpoolUse;
use crate::runner::{self, Outcome};
use crate::sinks::print::Printer;
use crate::sinks::{Delivery, Output};
use crate::sources::tape::Tape;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Which collectors a `run` asks for, or a usage error.
fn select<'a>(
    registry: &'a [Box<dyn Collector>],
    config: &Config,
    args: &RunArgs,
) -> Result<Vec<&'a dyn Collector>, String> {
    if args.all {
        return Ok(registry
            .iter()
            .filter(|c| config.enabled(c.name()))
            .map(|c| c.as_ref())
            .collect());
    }
    let mut out: Vec<&dyn Collector> = Vec::new();
    for n in &args.names {
        let n = normalise_name(n);
        match registry.iter().find(|c| c.name() == n) {
            Some(c) if !out.iter().any(|o| o.name() == c.name()) => out.push(c.as_ref()),
            Some(_) => {}
            None => {
                let known: Vec<_> = registry.iter().map(|c| c.name()).collect();
                return Err(format!(
                    "unknown collector {n:?}; known: {}",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// `read_only`: a dry run that writes nothing in the state directory (no
/// answers kept for conditional requests, scripts' `HOME` inherited; see
/// `super::owner`).
pub(super) async fn main(
    registry: &[Box<dyn Collector>],
    config: &Config,
    args: &RunArgs,
    read_only: bool,
) -> i32 {
    let selected = match select(registry, config, args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_USAGE;
        }
    };
    // Every output, opened once (none for a dry run).
    let outputs = if args.dry_run {
        Vec::new()
    } else {
        match runner::outputs::open(config, SpoolUse::Optional).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("ubuntu-metrics: configuration error: {e}");
                return EXIT_USAGE;
            }
        }
    };
    let tape = match open_tape(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_USAGE;
        }
    };
    // A replay runs at the recorded time (unless --now says otherwise).
    let now = args.now.or_else(|| tape.as_ref().and_then(|t| t.now()));
    let base = match base_context(config, now, read_only, tape.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_FAILED;
        }
    };
    let timeout = Some(config.daemon.run_timeout.as_duration());
    let outcomes = super::progress::collect_many(&selected, &base, config, timeout).await;
    let summary = super::progress::Summary::of(&outcomes);
    if let Some(Err(e)) = tape.as_ref().map(|t| t.finish()) {
        eprintln!("ubuntu-metrics: the recording is incomplete: {e}");
    }
    if !args.dry_run {
        crate::state::record_off_runtime(config, &outcomes).await;
    }
    let mut status = EXIT_OK;
    if let Some(line) = failure_summary(&outcomes, base.http.answers()) {
        eprintln!("ubuntu-metrics: {line}");
        status = EXIT_FAILED;
    }
    status = if outputs.is_empty() {
        print(&outcomes, args, status).await
    } else {
        let safe_marks = args.replay.is_none();
        deliver(config, &outputs, &outcomes, now, safe_marks, status).await
    };
    summary.print_if_interactive();
    status
}

/// The recording (`--record`) or replay (`--replay`) asked for, if any.
fn open_tape(args: &RunArgs) -> Result<Option<Arc<Tape>>, String> {
    let (record, replay) = (args.record.as_deref(), args.replay.as_deref());
    let tape = Tape::for_run(record, replay, args.now.unwrap_or_else(Utc::now))
        .map_err(|e| e.to_string())?;
    Ok(tape.map(Arc::new))
}

/// The run's base context: at `now`, with the catch-up marks (a replay's
/// own), recording or replaying through `tape`.
fn base_context(
    config: &Config,
    now: Option<DateTime<Utc>>,
    read_only: bool,
    tape: Option<&Arc<Tape>>,
) -> Result<Context, String> {
    let now = now.unwrap_or_else(Utc::now);
    // A dry run reads the same rows, and never moves the marks.
    let mut base = if read_only {
        runner::context_read_only(config, now)
    } else {
        runner::context(config, now)
    }?;
    let marks = match tape.filter(|t| t.is_replay()) {
        Some(t) => serde_json::from_value(t.marks()).unwrap_or_default(),
        None => crate::state::marks_or_warn(config),
    };
    if let Some(t) = tape {
        t.set_marks(serde_json::to_value(&marks).unwrap_or_default());
        base.http = base.http.with_tape(t.clone());
    }
    Ok(base.with_marks(marks))
}

/// The dry run: every collector's points on standard output.
async fn print(outcomes: &[Outcome], args: &RunArgs, mut status: i32) -> i32 {
    let printer = Printer::new(Box::new(std::io::stdout()), args.format);
    let d = runner::deliver_to(outcomes, &printer, false).await;
    for e in d.unencodable {
        eprintln!("ubuntu-metrics: {e}");
        status = EXIT_FAILED;
    }
    if let Some(e) = d.output_error {
        eprintln!("ubuntu-metrics: cannot write to standard output: {e}");
        status = EXIT_FAILED;
    }
    status
}

/// Every output at once: one that is down does not delay the others'
/// writes (each keeps its own spool). The catch-up marks move once every
/// point is safe (`safe_marks`: a replay's rows are not the station's).
async fn deliver(
    config: &Config,
    outputs: &[Arc<dyn Output>],
    outcomes: &[Outcome],
    now: Option<DateTime<Utc>>,
    safe_marks: bool,
    mut status: i32,
) -> i32 {
    let self_metrics = config.self_metrics.enabled;
    let deliveries = outputs.iter().map(|out| async move {
        // What waited before this run (for the spool's self-metrics).
        let backlog = out.backlog().await;
        let d = runner::deliver_to(outcomes, out.as_ref(), self_metrics).await;
        if self_metrics && d.spooled == 0 && d.error.is_none() && !d.busy {
            let at = now.unwrap_or_else(Utc::now);
            let _ = out.write_self_metrics(backlog.as_ref(), at).await;
        }
        d
    });
    let delivered = futures::future::join_all(deliveries).await;
    // The rows read are safe once every point is written or fsync'd in
    // every output's spool: only then do the catch-up marks move.
    let safe = delivered
        .iter()
        .all(|d| d.lost == 0 && d.spool_errors.is_empty());
    if safe && safe_marks {
        crate::state::set_marks_off_runtime(config, outcomes).await;
    }
    for (out, d) in outputs.iter().zip(delivered) {
        status = report_delivery(&d, out.as_ref(), status);
    }
    status
}

/// The closing line of a run with failed collectors (their errors were
/// logged once as they happened), or `None` when every collector succeeded.
/// When every collector failed and no upstream server answered at all, it
/// says so: the machine is most likely offline.
fn failure_summary(outcomes: &[Outcome], answers: u64) -> Option<String> {
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.name.as_str())
        .collect();
    if failed.is_empty() {
        return None;
    }
    if failed.len() == outcomes.len() && answers == 0 && outcomes.len() > 1 {
        return Some(format!(
            "no upstream source could be reached: all {} collectors failed and no server answered. \
             Is this machine offline or behind a proxy (HTTPS_PROXY)? To try ubuntu-metrics \
             without the network, run ./scripts/try-offline in its source tree",
            outcomes.len()
        ));
    }
    Some(format!(
        "{} of {} collectors failed ({}); each error is logged above",
        failed.len(),
        outcomes.len(),
        failed.join(", ")
    ))
}

/// Says what happened to the points and returns the exit status: 1 for
/// points lost or refused (dead-letter file), else 75 when points wait in
/// the spool, else `status`.
fn report_delivery(d: &Delivery, o: &dyn Output, mut status: i32) -> i32 {
    // Each message names its output as the configuration does
    // (`[outputs.vm]`: a VictoriaMetrics output is not "InfluxDB").
    let out = o.label();
    let who = format!("{out} ");
    let mut failed = status == EXIT_FAILED;
    for e in &d.unencodable {
        eprintln!("ubuntu-metrics: {who}not written: {e}");
        failed = true;
    }
    for e in &d.spool_errors {
        eprintln!("ubuntu-metrics: {who}{e}");
        failed = true;
    }
    if d.dead_lettered > 0 {
        eprintln!(
            "ubuntu-metrics: {out} refused {} points for good; they are in the dead-letter file {} with its answer",
            d.dead_lettered,
            o.spool_dir()
                .join(crate::sinks::spool::DEAD_LETTER_FILE)
                .display()
        );
        failed = true;
    }
    if d.lost > 0 {
        eprintln!(
            "ubuntu-metrics: {who}{} points are LOST: they could not be written{} and the spool {} could not keep them",
            d.lost,
            d.error
                .as_ref()
                .map_or_else(String::new, |e| format!(" ({e})")),
            o.spool_dir().display()
        );
        failed = true;
    }
    // What the delivery wrote (this run's points and the earlier runs'
    // from the spool) is logged once, by the sink.
    let mut kept = false;
    if d.busy && d.error.is_none() && d.spooled > 0 {
        eprintln!(
            "ubuntu-metrics: {who}another process is writing the spool; {} points of this run wait there for it (or the next run, or `ubuntu-metrics spool flush`)",
            d.spooled
        );
        kept = true;
    } else if let Some(e) = d.error.as_ref().filter(|_| d.lost == 0) {
        eprintln!("ubuntu-metrics: {who}could not take the points now: {e}");
        eprintln!(
            "ubuntu-metrics: {who}{} points of this run are kept on disk in {} for a later write (the next run, or `ubuntu-metrics spool flush`)",
            d.spooled,
            o.spool_dir().display()
        );
        kept = true;
    }
    if failed {
        status = EXIT_FAILED;
    } else if kept {
        status = EXIT_TEMPFAIL;
    }
    status
}
