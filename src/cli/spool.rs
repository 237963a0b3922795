//! `spool status` and `spool flush`.

use super::{EXIT_FAILED, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE, SpoolCommand};
use crate::config::{Config, OutputSpec};
use crate::runner::outputs::OpenError;
use crate::runner::{self, outputs::SpoolUse};
use crate::sinks::spool::Spool;
use crate::sinks::{Output, Replay};
use chrono::{DateTime, Utc};

/// `spool status` / `spool flush`, for every output (`[influxdb]`, then
/// each `[outputs.NAME]`, each with its own spool).
pub(super) async fn main(cmd: SpoolCommand, config: &Config) -> i32 {
    let outputs = config.outputs();
    let several = outputs.len() > 1;
    let mut status = EXIT_OK;
    for (i, o) in outputs.iter().enumerate() {
        if several && matches!(cmd, SpoolCommand::Status) {
            if i > 0 {
                println!();
            }
            println!("output: {}", o.name);
        }
        let s = one(&cmd, config, o, several).await;
        status = match (status, s) {
            (_, EXIT_USAGE) | (EXIT_USAGE, _) => EXIT_USAGE,
            (_, EXIT_FAILED) | (EXIT_FAILED, _) => EXIT_FAILED,
            (_, EXIT_TEMPFAIL) | (EXIT_TEMPFAIL, _) => EXIT_TEMPFAIL,
            _ => EXIT_OK,
        };
        if status == EXIT_USAGE {
            break;
        }
    }
    status
}

/// One output's spool.
async fn one(cmd: &SpoolCommand, config: &Config, o: &OutputSpec, several: bool) -> i32 {
    let who = if several {
        format!("output {}: ", o.name)
    } else {
        String::new()
    };
    let max = match config.spool.max_bytes() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ubuntu-metrics: configuration error: spool.max_size: {e}");
            return EXIT_USAGE;
        }
    };
    match *cmd {
        SpoolCommand::Status => {
            // Reading a spool blocks (its lock, its segments): off the
            // async workers.
            let (dir, max_size) = (o.spool_dir.clone(), config.spool.max_size.clone());
            tokio::task::spawn_blocking(move || status(&dir, &max_size, max))
                .await
                .unwrap_or_else(|e| {
                    eprintln!("ubuntu-metrics: {who}spool status did not finish: {e}");
                    EXIT_FAILED
                })
        }
        SpoolCommand::Flush => flush(config, o, &who).await,
    }
}

/// `spool status` of the spool in `dir`.
fn status(dir: &std::path::Path, max_size: &str, max: u64) -> i32 {
    if !dir.exists() {
        print_spool_status(max_size, dir, &crate::sinks::spool::Status::default());
        return EXIT_OK;
    }
    let spool = match Spool::open(dir, max) {
        Ok(s) => s,
        Err(e) => {
            // Without the lock (a read-only state directory, another
            // user's spool): read it as it is.
            if let Ok(st) = crate::sinks::spool::peek(dir) {
                print_spool_status(max_size, dir, &st);
                println!(
                    "stale: read without the spool's lock, which cannot be taken ({e}); the figures may be stale"
                );
                return EXIT_OK;
            }
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_FAILED;
        }
    };
    match spool.status() {
        Ok(st) => {
            print_spool_status(max_size, dir, &st);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            EXIT_FAILED
        }
    }
}

/// `spool flush` of the output `o`: its spool written now.
async fn flush(config: &Config, o: &OutputSpec, who: &str) -> i32 {
    let out = match runner::outputs::open_one(config, o, SpoolUse::Required).await {
        Ok(out) => out,
        Err(OpenError::Spool(e)) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_FAILED;
        }
        Err(e @ OpenError::Config(_)) => {
            eprintln!("ubuntu-metrics: configuration error: {e}");
            return EXIT_USAGE;
        }
    };
    let backlog = out.backlog().await;
    // Quiet: what it wrote is said below, once.
    let r = out.replay(std::time::Duration::from_secs(300), false).await;
    let left = out.status().await;
    let emptied = matches!(&left, Ok(st) if st.records == 0);
    if config.self_metrics.enabled && emptied && r.written > 0 {
        // The backlog this flush wrote, and its writes.
        let _ = out
            .write_self_metrics(backlog.as_ref(), chrono::Utc::now())
            .await;
    }
    if r.busy {
        eprintln!(
            "ubuntu-metrics: {who}another process has been writing the spool for 5 minutes; try again later"
        );
        return EXIT_TEMPFAIL;
    }
    println!("{who}wrote {} points from the spool", r.written);
    flushed(out.as_ref(), &r, left, who)
}

/// What a flush did, said, and its exit status.
fn flushed(
    out: &dyn Output,
    r: &Replay,
    left: Result<crate::sinks::spool::Status, crate::sinks::spool::SpoolError>,
    who: &str,
) -> i32 {
    let mut status = EXIT_OK;
    if let Some(e) = &r.error {
        eprintln!("ubuntu-metrics: {e}");
        status = EXIT_FAILED;
    }
    if r.dead_lettered > 0 {
        eprintln!(
            "ubuntu-metrics: {} refused {} points for good; they are in the dead-letter file {} with its answer",
            out.label(),
            r.dead_lettered,
            out.spool_dir()
                .join(crate::sinks::spool::DEAD_LETTER_FILE)
                .display()
        );
        status = EXIT_FAILED;
    }
    match left {
        Ok(st) if st.records == 0 => {
            println!("{who}the spool is empty");
        }
        Ok(st) => {
            if let Some(e) = &r.stopped {
                eprintln!(
                    "ubuntu-metrics: {} could not take the points now: {e}",
                    out.label()
                );
            }
            eprintln!(
                "ubuntu-metrics: {who}{} points in {} records still wait in {}",
                st.points,
                st.records,
                out.spool_dir().display()
            );
            if status == EXIT_OK {
                status = EXIT_TEMPFAIL;
            }
        }
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            status = EXIT_FAILED;
        }
    }
    status
}

fn print_spool_status(max_size: &str, dir: &std::path::Path, st: &crate::sinks::spool::Status) {
    let time = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    };
    println!("dir: {}", dir.display());
    println!("max_size: {max_size}");
    println!("records: {}", st.records);
    println!("points: {}", st.points);
    println!("bytes: {}", st.bytes);
    println!("oldest_record: {}", time(st.oldest));
    println!(
        "oldest_point: {}",
        time(st.oldest_point.map(DateTime::from_timestamp_nanos))
    );
    println!(
        "dead_letter: {}",
        dir.join(crate::sinks::spool::DEAD_LETTER_FILE).display()
    );
    println!("dead_letter_batches: {}", st.dead_letter_entries);
    println!("dead_letter_bytes: {}", st.dead_letter_bytes);
    println!("dropped_unreported: {}", st.dropped_unreported);
}
