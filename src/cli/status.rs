//! `status`: how the station is, for the person on call and for
//! monitoring checks (Nagios/NRPE style exit statuses): each enabled
//! collector's last run, last success, failures, next run and whether it
//! is late (from the state file every run writes), then the spool.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, StatusArgs, StatusFormat};
use crate::collector::Collector;
use crate::config::Config;
use crate::sinks::spool::Spool;
use crate::state::{self, CollectorState};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::io::IsTerminal;

/// One collector's verdict.
struct Row<'a> {
    name: &'static str,
    interval: chrono::Duration,
    state: Option<&'a CollectorState>,
    next: Option<DateTime<Utc>>,
    late: bool,
    failing: bool,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A span as a person reads it: `45s`, `12m`, `3h05m`, `2d04h`.
fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86400 && s % 3600 < 60 {
        format!("{}h", s / 3600)
    } else if s < 86400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86400, s % 86400 / 3600)
    }
}

fn std_to_chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Whether standard output gets colours: a terminal, `NO_COLOR` unset or
/// empty, not a dumb terminal.
fn colours() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

pub(super) fn main(registry: &[Box<dyn Collector>], config: &Config, args: &StatusArgs) -> i32 {
    let now = args.now.unwrap_or_else(Utc::now);
    let threshold = std_to_chrono(args.spool_age.as_duration());
    let run_timeout = std_to_chrono(config.daemon.run_timeout.as_duration());
    let max = match config.spool.max_bytes() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ubuntu-metrics: configuration error: spool.max_size: {e}");
            return EXIT_USAGE;
        }
    };
    let dir = state::dir(config);
    let mut problems: Vec<String> = Vec::new();
    let st = match state::read(&dir) {
        Ok(s) => s,
        Err(e) => {
            problems.push(e.to_string());
            state::StateFile::default()
        }
    };
    let rows: Vec<Row> = registry
        .iter()
        .filter(|c| config.enabled(c.name()))
        .map(|c| {
            let interval = std_to_chrono(config.interval(c.as_ref()).as_duration());
            let state = st.collectors.get(c.name());
            let ended = state.map(|s| s.last_run.ended);
            Row {
                name: c.name(),
                interval,
                state,
                next: ended.map(|e| e + interval),
                late: ended.is_some_and(|e| now - e > interval * 2 + run_timeout),
                failing: state.is_some_and(|s| s.last_run.result != "ok"),
            }
        })
        .collect();
    let failing: Vec<&str> = rows.iter().filter(|r| r.failing).map(|r| r.name).collect();
    let late: Vec<&str> = rows.iter().filter(|r| r.late).map(|r| r.name).collect();
    if !failing.is_empty() {
        problems.push(format!("failing: {}", failing.join(", ")));
    }
    if !late.is_empty() {
        problems.push(format!("late: {}", late.join(", ")));
    }

    let spool_dir = &config.spool.dir;
    let spool = if spool_dir.exists() {
        Spool::open(spool_dir, max).and_then(|s| s.status())
    } else {
        Ok(Default::default())
    };
    let spool = match spool {
        Ok(s) => s,
        Err(e) => {
            problems.push(e.to_string());
            Default::default()
        }
    };
    let oldest_age = spool.oldest.map(|o| now - o);
    let spool_too_old = oldest_age.is_some_and(|a| a > threshold);
    if spool_too_old {
        problems.push(format!(
            "{} points waiting in the spool for {} (more than {})",
            spool.points,
            span(oldest_age.unwrap_or_default()),
            args.spool_age
        ));
    }
    let status = if problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    };

    match args.format {
        StatusFormat::Json => {
            let collectors: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "interval_seconds": r.interval.num_seconds(),
                        "last_run": r.state.map(|s| json!({
                            "time": rfc3339(s.last_run.time),
                            "ended": rfc3339(s.last_run.ended),
                            "age_seconds": (now - s.last_run.ended).num_seconds(),
                            "result": s.last_run.result,
                            "points": s.last_run.points,
                            "duration_seconds": s.last_run.duration_seconds,
                            "requests": s.last_run.requests,
                            "error": s.last_run.error,
                        })),
                        "last_success": r.state.and_then(|s| s.last_success).map(rfc3339),
                        "consecutive_failures": r.state.map_or(0, |s| s.consecutive_failures),
                        "next_run": r.next.map(rfc3339),
                        "due": r.next.is_some_and(|n| n <= now),
                        "failing": r.failing,
                        "late": r.late,
                    })
                })
                .collect();
            let doc = json!({
                "now": rfc3339(now),
                "status": if status == EXIT_OK { "ok" } else { "problem" },
                "exit_status": status,
                "problems": problems,
                "state_file": dir.join(state::STATE_FILE).display().to_string(),
                "collectors": collectors,
                "spool": {
                    "dir": spool_dir.display().to_string(),
                    "records": spool.records,
                    "points": spool.points,
                    "oldest_record": spool.oldest.map(rfc3339),
                    "oldest_age_seconds": oldest_age.map(|a| a.num_seconds()),
                    "threshold_seconds": threshold.num_seconds(),
                    "too_old": spool_too_old,
                    "dead_letter_batches": spool.dead_letter_entries,
                },
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_else(|e| e.to_string())
            );
        }
        StatusFormat::Text => {
            let colour = colours();
            print!(
                "{}",
                render_text(
                    &rows, &problems, &spool, oldest_age, &dir, spool_dir, now, colour
                )
            );
        }
    }
    status
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

#[allow(clippy::too_many_arguments)]
fn render_text(
    rows: &[Row],
    problems: &[String],
    spool: &crate::sinks::spool::Status,
    oldest_age: Option<chrono::Duration>,
    state_dir: &std::path::Path,
    spool_dir: &std::path::Path,
    now: DateTime<Utc>,
    colour: bool,
) -> String {
    let mut out = String::new();
    if problems.is_empty() {
        out.push_str(&paint("OK", Tone::Good, colour));
        out.push_str(&format!(
            ": {} collectors, none failing or late; {} points in the spool\n",
            rows.len(),
            spool.points
        ));
    } else {
        out.push_str(&paint("WARNING", Tone::Bad, colour));
        out.push_str(&format!(": {}\n", problems.join("; ")));
    }
    out.push('\n');
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
    let mut body: Vec<[(String, Tone); 9]> = Vec::new();
    for r in rows {
        let p = |s: String| (s, Tone::Plain);
        let Some(s) = r.state else {
            body.push([
                p(r.name.to_owned()),
                p("never".into()),
                p("-".into()),
                p("-".into()),
                p("-".into()),
                p("-".into()),
                p("-".into()),
                p("0".into()),
                p(format!("every {}", span(r.interval))),
            ]);
            continue;
        };
        let result_tone = if r.failing { Tone::Bad } else { Tone::Good };
        let next = match r.next {
            _ if r.late => (
                format!("LATE (no run for {})", span(now - s.last_run.ended)),
                Tone::Bad,
            ),
            Some(n) if n <= now => ("due".to_owned(), Tone::Warn),
            Some(n) => (format!("in {}", span(n - now)), Tone::Plain),
            None => ("-".to_owned(), Tone::Plain),
        };
        body.push([
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
        ]);
    }
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
    for r in rows {
        if let Some(s) = r.state.filter(|s| s.consecutive_failures > 0) {
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
    out.push_str(&format!(
        "spool {}: {} points waiting in {} records, oldest {}; dead letters: {} batches\n",
        spool_dir.display(),
        spool.points,
        spool.records,
        oldest_age.map_or_else(|| "-".into(), |a| format!("{} ago", span(a))),
        spool.dead_letter_entries
    ));
    out.push_str(&format!(
        "state file: {}\n",
        state_dir.join(state::STATE_FILE).display()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        let s = chrono::Duration::seconds;
        assert_eq!(span(s(45)), "45s");
        assert_eq!(span(s(12 * 60 + 5)), "12m");
        assert_eq!(span(s(3 * 3600 + 5 * 60)), "3h05m");
        assert_eq!(span(s(3600)), "1h");
        assert_eq!(span(s(2 * 86400 + 4 * 3600)), "2d04h");
        assert_eq!(span(s(-5)), "0s");
    }
}
