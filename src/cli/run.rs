//! `run`: collect once, then write to InfluxDB (through the spool) or
//! print (`--dry-run`); the exit status says what happened to the points.

use super::{EXIT_FAILED, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE, RunArgs, normalise_name};
use crate::collector::Collector;
use crate::config::{Config, OutputSpec};
use crate::runner::{self, Outcome};
use crate::sinks::influxdb::InfluxWriter;
use crate::sinks::print::Printer;
use crate::sinks::spool::Spool;
use crate::sources::tape::Tape;
use chrono::Utc;
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
    let now = args.now;
    let selected = match select(registry, config, args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_USAGE;
        }
    };
    // Every output's writer (none for a dry run).
    let mut writers = Vec::new();
    if !args.dry_run {
        for o in config.outputs() {
            let made = config
                .output_secret(&o)
                .map_err(|e| e.to_string())
                .and_then(|secret| InfluxWriter::new(&o.influx, secret));
            match made {
                Ok(w) => writers.push((w.named(&o.name), o)),
                Err(e) => {
                    eprintln!("ubuntu-metrics: configuration error: {e}");
                    return EXIT_USAGE;
                }
            }
        }
    }
    let tape = match (&args.record, &args.replay) {
        (Some(dir), _) => Tape::record(dir, now.unwrap_or_else(Utc::now)),
        (None, Some(dir)) => Tape::replay(dir),
        (None, None) => Err(String::new()),
    };
    let tape = match tape {
        Ok(t) => Some(Arc::new(t)),
        Err(e) if e.is_empty() => None,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_USAGE;
        }
    };
    // A replay runs at the recorded time (unless --now says otherwise).
    let now = now.or_else(|| tape.as_ref().and_then(|t| t.now()));
    let made = if read_only {
        runner::context_read_only(config, now.unwrap_or_else(Utc::now))
    } else {
        runner::context(config, now.unwrap_or_else(Utc::now))
    };
    let mut base = match made {
        // A dry run reads the same rows, and never moves the marks.
        Ok(c) => c,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_FAILED;
        }
    };
    let marks = match tape.as_ref().filter(|t| t.is_replay()) {
        Some(t) => serde_json::from_value(t.marks()).unwrap_or_default(),
        None => crate::state::marks_or_warn(config),
    };
    if let Some(t) = &tape {
        t.set_marks(serde_json::to_value(&marks).unwrap_or_default());
        base.http = base.http.with_tape(t.clone());
    }
    let base = base.with_marks(marks);
    let timeout = Some(config.daemon.run_timeout.as_duration());
    let outcomes = super::progress::collect_many(&selected, &base, config, timeout).await;
    let summary = super::progress::Summary::of(&outcomes);
    if let Some(Err(e)) = tape.as_ref().map(|t| t.finish()) {
        eprintln!("ubuntu-metrics: the recording is incomplete: {e}");
    }
    if !args.dry_run {
        crate::state::record_or_warn(config, &outcomes);
    }
    let mut status = EXIT_OK;
    if let Some(line) = failure_summary(&outcomes, base.http.answers()) {
        eprintln!("ubuntu-metrics: {line}");
        status = EXIT_FAILED;
    }
    match writers.is_empty() {
        true => {
            let d = runner::deliver_to(
                &outcomes,
                &Printer::new(Box::new(std::io::stdout()), args.format),
                false,
            )
            .await;
            for e in d.unencodable {
                eprintln!("ubuntu-metrics: {e}");
                status = EXIT_FAILED;
            }
            if let Some(e) = d.output_error {
                eprintln!("ubuntu-metrics: cannot write to standard output: {e}");
                status = EXIT_FAILED;
            }
        }
        false => {
            // Every output at once: one that is down does not delay the
            // others' writes (each keeps its own spool).
            let self_metrics = config.self_metrics.enabled;
            let outcomes = &outcomes;
            let deliveries = writers.iter().map(|(w, o)| async move {
                let spool = open_spool(config, o);
                // What waited before this run (for the spool's self-metrics).
                let backlog = spool.as_ref().and_then(|s| s.status().ok());
                let d = runner::deliver(outcomes, w, spool.as_ref(), self_metrics).await;
                if self_metrics && d.spooled == 0 && d.error.is_none() && !d.busy {
                    let at = now.unwrap_or_else(Utc::now);
                    let _ =
                        runner::write_self_metrics(w, spool.as_ref(), backlog.as_ref(), at).await;
                }
                d
            });
            let delivered = futures::future::join_all(deliveries).await;
            // The rows read are safe once every point is written or fsync'd
            // in every output's spool: only then do the catch-up marks move.
            // A replay's rows are not the station's.
            let safe = delivered
                .iter()
                .all(|d| d.lost == 0 && d.spool_errors.is_empty());
            if safe && args.replay.is_none() {
                crate::state::set_marks_or_warn(config, outcomes);
            }
            for ((_, o), d) in writers.iter().zip(delivered) {
                status = report_delivery(&d, o, status);
            }
        }
    }
    summary.print_if_interactive();
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

/// The spool of the configuration, or `None` (with a warning) when it is
/// not usable: a run still writes, but cannot keep what InfluxDB refuses.
fn open_spool(config: &Config, o: &OutputSpec) -> Option<Spool> {
    let max = config.spool.max_bytes().ok()?;
    match Spool::open(&o.spool_dir, max) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "{e}: points that InfluxDB cannot take now would be lost; set [spool] dir to a writable directory"
            );
            None
        }
    }
}

/// Says what happened to the points and returns the exit status: 1 for
/// points lost or refused (dead-letter file), else 75 when points wait in
/// the spool, else `status`.
fn report_delivery(d: &runner::Delivery, o: &OutputSpec, mut status: i32) -> i32 {
    // Each message names its output as the configuration does
    // (`[outputs.vm]`: a VictoriaMetrics output is not "InfluxDB").
    let out = crate::sinks::influxdb::output_label(&o.name);
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
            o.spool_dir
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
            o.spool_dir.display()
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
            o.spool_dir.display()
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
