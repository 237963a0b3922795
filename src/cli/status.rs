//! `status`: how the station is, for the person on call and for
//! monitoring checks (Nagios/NRPE style exit statuses): each enabled
//! collector's last run, last success, failures, next run and whether it
//! is late (from the state file every run writes), then the spool.

//!
//! The verdict and the JSON are [`crate::ops::health`]'s, shared with the
//! daemon's HTTP endpoint; this renders them.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, StatusArgs, StatusFormat};

/// `status`: nothing is being collected (Nagios CRITICAL; also the
/// status of a configuration error, which collects nothing either).
const EXIT_CRITICAL: i32 = 2;
/// `status`: nothing has run yet on this station (Nagios UNKNOWN).
const EXIT_UNKNOWN: i32 = 3;
use crate::collector::Collector;
use crate::config::Config;
use crate::ops::health::{NextSource, Report, rfc3339, span};
use crate::state;
use chrono::Utc;
use std::io::IsTerminal;

pub(super) fn main(registry: &[Box<dyn Collector>], config: &Config, args: &StatusArgs) -> i32 {
    let now = args.now.unwrap_or_else(Utc::now);
    let timers = crate::schedule::systemd::systemd_view;
    let report = match Report::new(registry, config, now, &args.spool_age, &timers) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_USAGE;
        }
    };
    let status = match report.exit_status() {
        0 => EXIT_OK,
        2 => EXIT_CRITICAL,
        3 => EXIT_UNKNOWN,
        _ => EXIT_FAILED,
    };
    match args.format {
        StatusFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report.json()).unwrap_or_else(|e| e.to_string())
            );
        }
        StatusFormat::Text => print!("{}", render_text(&report, colours())),
    }
    status
}

/// Whether standard output gets colours: a terminal, `NO_COLOR` unset or
/// empty, not a dumb terminal.
fn colours() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

#[derive(Clone, Copy)]
enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
}

fn paint(text: &str, tone: Tone, colour: bool) -> String {
    let code = match tone {
        Tone::Plain => return text.to_owned(),
        Tone::Good => "32",
        Tone::Warn => "33",
        Tone::Bad => "31",
    };
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn render_text(report: &Report, colour: bool) -> String {
    let rows = &report.rows;
    let mut out = headline(report, colour);
    out.push('\n');
    out.push_str(&table(report, colour));
    for r in rows {
        if let Some(s) = r.state.as_ref().filter(|s| s.consecutive_failures > 0) {
            out.push_str(&format!(
                "{}: {} failed run{} in a row; last error: {}\n",
                r.name,
                s.consecutive_failures,
                if s.consecutive_failures == 1 { "" } else { "s" },
                s.last_run.error.as_deref().unwrap_or("-")
            ));
        }
    }
    out.push('\n');
    out.push_str(&spool_lines(report));
    out.push_str(&format!(
        "state file: {}\n",
        report.state_dir.join(state::STATE_FILE).display()
    ));
    if let Some(v) = &report.systemd {
        out.push_str(&systemd_line(v, report.timers_on));
    }
    out
}

/// The verdict line: UNKNOWN, OK, or what is wrong.
fn headline(report: &Report, colour: bool) -> String {
    let Report { rows, problems, .. } = report;
    let waiting: usize = report.outputs.iter().map(|o| o.status.points).sum();
    let mut out = String::new();
    if report.nothing_ran() {
        out.push_str(&paint("UNKNOWN", Tone::Warn, colour));
        out.push_str(&format!(
            ": nothing has run yet ({} collectors enabled); {} points in the spool\n",
            rows.len(),
            waiting
        ));
    } else if problems.is_empty() {
        out.push_str(&paint("OK", Tone::Good, colour));
        out.push_str(&format!(
            ": {} collectors, none failing or late; {} points in the spool\n",
            rows.len(),
            waiting
        ));
    } else {
        out.push_str(&paint(report.verdict(), Tone::Bad, colour));
        out.push_str(&format!(": {}\n", problems.join("; ")));
    }
    out
}

/// The table of collectors, one row each under its headers.
fn table(report: &Report, colour: bool) -> String {
    let (rows, now) = (&report.rows, report.now);
    let mut out = String::new();
    let headers = [
        "COLLECTOR",
        "LAST RUN",
        "RESULT",
        "POINTS",
        "DURATION",
        "REQUESTS",
        "LAST SUCCESS",
        "FAILURES",
        "NEXT RUN",
    ];
    let body: Vec<[(String, Tone); 9]> = rows.iter().map(|r| collector_row(r, now)).collect();
    let mut widths = headers.map(str::len);
    for row in &body {
        for (w, (c, _)) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<(String, Tone)>| -> String {
        let mut s = String::new();
        let last = cells.len() - 1;
        for (i, ((c, tone), w)) in cells.into_iter().zip(widths).enumerate() {
            let pad = " ".repeat(w.saturating_sub(c.chars().count()));
            let c = paint(&c, tone, colour);
            if (3..=5).contains(&i) || i == 7 {
                s.push_str(&pad);
                s.push_str(&c);
            } else {
                s.push_str(&c);
                if i < last {
                    s.push_str(&pad);
                }
            }
            if i < last {
                s.push_str("  ");
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(
        headers
            .iter()
            .map(|h| (h.to_string(), Tone::Plain))
            .collect(),
    ));
    for row in body {
        out.push_str(&line(row.into()));
    }
    out
}

/// One collector's row of the table.
fn collector_row(r: &crate::ops::health::Row, now: chrono::DateTime<Utc>) -> [(String, Tone); 9] {
    let p = |s: String| (s, Tone::Plain);
    let Some(s) = r.state.as_ref() else {
        return [
            p(r.name.to_owned()),
            p("never".into()),
            p("-".into()),
            p("-".into()),
            p("-".into()),
            p("-".into()),
            p("-".into()),
            p("0".into()),
            p(format!("every {}", span(r.interval))),
        ];
    };
    let result_tone = if r.failing { Tone::Bad } else { Tone::Good };
    let next = match r.next {
        _ if r.late => (
            format!("LATE (no run for {})", span(now - s.last_run.ended)),
            Tone::Bad,
        ),
        Some(n) if n <= now => ("due".to_owned(), Tone::Warn),
        Some(n) if r.next_source == NextSource::Estimate => (
            format!(
                "in {} ({} after the last run)",
                span(n - now),
                span(r.interval)
            ),
            Tone::Plain,
        ),
        Some(n) => (
            format!("in {} ({})", span(n - now), r.next_source.as_str()),
            Tone::Plain,
        ),
        None => ("-".to_owned(), Tone::Plain),
    };
    [
        p(r.name.to_owned()),
        p(format!(
            "{} ({} ago)",
            rfc3339(s.last_run.time),
            span(now - s.last_run.time)
        )),
        (s.last_run.result.clone(), result_tone),
        p(s.last_run.points.to_string()),
        p(format!("{:.1}s", s.last_run.duration_seconds)),
        p(s.last_run.requests.to_string()),
        p(s.last_success
            .map_or_else(|| "never".into(), |t| format!("{} ago", span(now - t)))),
        (
            s.consecutive_failures.to_string(),
            if s.consecutive_failures > 0 {
                Tone::Bad
            } else {
                Tone::Plain
            },
        ),
        next,
    ]
}

/// Each output's spool: what waits, since when, the dead letters.
fn spool_lines(report: &Report) -> String {
    let mut out = String::new();
    let several = report.outputs.len() > 1;
    for o in &report.outputs {
        out.push_str(&format!(
            "{}spool {}: {} points waiting in {} records, oldest {}; dead letters: {} batches\n",
            if several {
                format!("output {}: ", o.name)
            } else {
                String::new()
            },
            o.dir.display(),
            o.status.points,
            o.status.records,
            o.oldest_age
                .map_or_else(|| "-".into(), |a| format!("{} ago", span(a))),
            o.status.dead_letter_entries
        ));
        if let Some(why) = &o.stale {
            out.push_str(&format!(
                "  (read without the spool's lock, which cannot be taken: {why}; the figures may be stale)\n"
            ));
        }
    }
    out
}

/// What systemd said, in one line: the daemon's state, how many timers
/// are active.
fn systemd_line(v: &crate::schedule::systemd::SystemdView, timers_on: bool) -> String {
    let daemon = match &v.daemon {
        Some(d) if d.load_state == "loaded" => format!(
            "daemon {} {} ({}, {})",
            crate::schedule::systemd::DAEMON_UNIT,
            d.active_state,
            d.sub_state,
            d.unit_file_state
        ),
        _ => format!(
            "daemon {} not installed",
            crate::schedule::systemd::DAEMON_UNIT
        ),
    };
    let active = v
        .timers
        .values()
        .filter(|t| t.load_state == "loaded" && t.active_state == "active")
        .count();
    let timers = if timers_on {
        format!("{active} of {} timers active", v.timers.len())
    } else if active > 0 {
        format!("timers off, yet {active} active")
    } else {
        "timers off".to_owned()
    };
    format!("systemd: {daemon}; {timers}\n")
}
