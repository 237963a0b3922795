//! `backfill NAME [--since DATE]`: a time-series source's history into
//! InfluxDB, with progress on a terminal; see [`crate::backfill`].

use super::{BackfillArgs, EXIT_DATAERR, EXIT_FAILED, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE};
use crate::backfill::{self, Error, Options, Report};
use crate::config::Config;
use crate::sinks::influxdb::InfluxWriter;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub(super) async fn main(config: &Config, args: &BackfillArgs) -> i32 {
    let sources = match backfill::select(&args.name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_USAGE;
        }
    };
    let writer = match config
        .password()
        .map_err(|e| e.to_string())
        .and_then(|p| InfluxWriter::new(&config.influxdb, p))
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ubuntu-metrics: configuration error: {e}");
            return EXIT_USAGE;
        }
    };
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
    for source in sources {
        let started = Instant::now();
        let mut last = Instant::now() - Duration::from_secs(1);
        let mut announced = false;
        let name = source.name;
        let mut show = |r: &Report| {
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
        };
        let result = backfill::backfill(source, &ctx, &writer, &dir, &opts, &mut show).await;
        if tty {
            eprintln!();
        }
        match result {
            Ok(r) => {
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
                    status = worse(status, EXIT_DATAERR);
                }
            }
            Err(Error::Stop(e)) => {
                eprintln!("ubuntu-metrics: backfill {name}: {e}");
                status = worse(status, EXIT_FAILED);
            }
            Err(e) => {
                eprintln!("ubuntu-metrics: backfill {name}: {e}");
                eprintln!(
                    "ubuntu-metrics: what was written is remembered in {}; run the same command again to go on",
                    dir.join(backfill::PROGRESS_FILE).display()
                );
                let code = if matches!(e, Error::Influx(_)) {
                    EXIT_TEMPFAIL
                } else {
                    EXIT_FAILED
                };
                status = worse(status, code);
            }
        }
    }
    status
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
