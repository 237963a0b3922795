//! `backfill NAME [--since DATE] [--output NAME]...`: a time-series
//! source's history into every output (or those named), each on its own,
//! with progress on a terminal; see [`crate::runner::backfill`].

use super::{BackfillArgs, EXIT_DATAERR, EXIT_FAILED, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE};
use crate::config::{Config, OutputSpec};
use crate::runner::backfill::{self, Error, Options, Report, output_label};
use crate::sinks::influxdb::InfluxWriter;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The outputs `names` picks out of the configuration's (all when none is
/// named), in the configuration's order; an unknown name is an error
/// listing the known ones.
fn chosen_outputs(config: &Config, names: &[String]) -> Result<Vec<OutputSpec>, String> {
    let all = config.outputs();
    if let Some(unknown) = names.iter().find(|n| !all.iter().any(|o| &o.name == *n)) {
        return Err(format!(
            "--output {unknown}: no such output; the configuration has: {}",
            all.iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(all
        .into_iter()
        .filter(|o| names.is_empty() || names.contains(&o.name))
        .collect())
}

pub(super) async fn main(config: &Config, args: &BackfillArgs) -> i32 {
    let sources = match backfill::select(&args.name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_USAGE;
        }
    };
    let outputs = match chosen_outputs(config, &args.output) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ubuntu-metrics: backfill: {e}");
            return EXIT_USAGE;
        }
    };
    let Some(writers) = open_writers(config, &outputs) else {
        return EXIT_USAGE;
    };
    let several = config.outputs().len() > 1;
    let ctx = match crate::runner::context(config, chrono::Utc::now()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_FAILED;
        }
    };
    let dir = crate::state::dir(config);
    let opts = Options {
        since: args.since,
        batch_rows: args.batch,
    };
    let tty = std::io::stderr().is_terminal();
    let mut status = EXIT_OK;
    // The outputs that stopped before the end, to go on with.
    let mut unfinished: Vec<&str> = Vec::new();
    for source in &sources {
        for writer in &writers {
            let started = Instant::now();
            // With several outputs configured, each line says which.
            let name = if several {
                format!("{} to {}", source.name, output_label(writer.name()))
            } else {
                source.name.to_owned()
            };
            let name = name.as_str();
            let mut show = progress(name, tty, started);
            let result = backfill::backfill(source, &ctx, writer, &dir, &opts, &mut show).await;
            if tty {
                eprintln!();
            }
            match result {
                Ok(r) => status = worse(status, print_done(name, &r, started)),
                Err(Error::Stop(e)) => {
                    eprintln!("ubuntu-metrics: backfill {name}: {e}");
                    status = worse(status, EXIT_FAILED);
                }
                Err(e) => {
                    eprintln!("ubuntu-metrics: backfill {name}: {e}");
                    if !unfinished.contains(&writer.name()) {
                        unfinished.push(writer.name());
                    }
                    let code = if matches!(e, Error::Influx(_)) {
                        EXIT_TEMPFAIL
                    } else {
                        EXIT_FAILED
                    };
                    status = worse(status, code);
                }
            }
        }
    }
    print_resume_hint(&unfinished, writers.len(), &dir);
    status
}

/// A writer for each output, named after it; a configuration error is
/// printed, and gives none.
fn open_writers(config: &Config, outputs: &[OutputSpec]) -> Option<Vec<InfluxWriter>> {
    let mut writers = Vec::with_capacity(outputs.len());
    for o in outputs {
        match config
            .output_secret(o)
            .map_err(|e| e.to_string())
            .and_then(|secret| InfluxWriter::new(&o.influx, secret))
        {
            Ok(w) => writers.push(w.named(&o.name)),
            Err(e) => {
                eprintln!(
                    "ubuntu-metrics: configuration error: {}: {e}",
                    output_label(&o.name)
                );
                return None;
            }
        }
    }
    Some(writers)
}

/// What a backfill of `name` shows as it goes: where it resumed, then
/// (on a terminal) its progress, at most five times a second.
fn progress(name: &str, tty: bool, started: Instant) -> impl FnMut(&Report) + '_ {
    let mut last = Instant::now() - Duration::from_secs(1);
    let mut announced = false;
    move |r: &Report| {
        if !announced {
            announced = true;
            if let Some(at) = r.resumed_from {
                eprintln!(
                    "backfill {name}: resuming at byte {at} ({} rows done before)",
                    r.rows
                );
            }
        }
        if tty && last.elapsed() >= Duration::from_millis(200) {
            last = Instant::now();
            let pct = r.total.filter(|t| *t > 0).map_or_else(String::new, |t| {
                format!(
                    " of {:.1} MB ({:.0}%)",
                    t as f64 / 1e6,
                    r.offset as f64 * 100.0 / t as f64
                )
            });
            let rate = r.rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
            let mut e = std::io::stderr();
            let _ = write!(
                e,
                "\rbackfill {name}: {} rows, {:.1} MB{pct}, {rate:.0} rows/s   ",
                r.rows,
                r.offset as f64 / 1e6
            );
            let _ = e.flush();
        }
    }
}

/// The summary of a backfill that went to its end; [`EXIT_DATAERR`] when
/// malformed rows were left out.
fn print_done(name: &str, r: &Report, started: Instant) -> i32 {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "backfill {name}: done: {} rows read: {} written ({} points), {} before --since, {} malformed (not written); in {secs:.1} s ({:.0} rows/s)",
        r.rows,
        r.written,
        r.points,
        r.before_since,
        r.malformed,
        r.rows as f64 / secs.max(1e-3)
    );
    if r.malformed > 0 {
        let named = r
            .malformed_lines
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let more = if r.malformed > r.malformed_lines.len() as u64 {
            " and more"
        } else {
            ""
        };
        eprintln!(
            "WARNING: backfill {name}: {} malformed rows were not written (line {named}{more}: see above); every other row was. Running again reads them the same way: fix the document, or accept the loss",
            r.malformed
        );
        return EXIT_DATAERR;
    }
    EXIT_OK
}

/// How to go on when outputs stopped before the end.
fn print_resume_hint(unfinished: &[&str], outputs: usize, dir: &std::path::Path) {
    if !unfinished.is_empty() {
        // The same command goes on; only for the outputs that did not
        // finish, as the others are done and need not be written again.
        let only = if unfinished.len() < outputs {
            let named: Vec<String> = unfinished.iter().map(|o| format!("--output {o}")).collect();
            format!(
                " with only {} (the other outputs are done)",
                named.join(" ")
            )
        } else {
            String::new()
        };
        eprintln!(
            "ubuntu-metrics: what was written is remembered in {}; run the same command again{only} to go on",
            dir.join(backfill::PROGRESS_FILE).display()
        );
    }
}

/// The status of two outcomes together: 1 over 75 over 65 over 0.
fn worse(a: i32, b: i32) -> i32 {
    let rank = |s: i32| match s {
        EXIT_OK => 0,
        EXIT_DATAERR => 1,
        EXIT_TEMPFAIL => 2,
        _ => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}
