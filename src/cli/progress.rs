//! `run` at a terminal: live progress per collector (indicatif, on standard
//! error) and a summary table at the end. Elsewhere (a pipe, a file, the
//! journal) nothing but the usual log lines: no bars, no table.
//!
//! While the bars are drawn, log lines go through [`LogWriter`], which
//! prints them above the bars instead of through them.

use crate::collector::{Collector, Context};
use crate::config::Config;
use crate::runner::{self, Outcome, Status};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

/// The bars being drawn, if any: log lines are printed above them.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Whether standard error is a terminal a person watches (not the journal,
/// not a dumb terminal).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("JOURNAL_STREAM").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Runs the collectors as [`runner::collect_many`] does; on a terminal,
/// with a live line per collector.
pub async fn collect_many(
    collectors: &[&dyn Collector],
    base: &Context,
    config: &Config,
    timeout: Option<Duration>,
) -> Vec<Outcome> {
    if !interactive() {
        return runner::collect_many(collectors, base, config, timeout).await;
    }
    let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let width = collectors.iter().map(|c| c.name().len()).max().unwrap_or(0);
    let running = ProgressStyle::with_template(&format!(
        "{{spinner:.cyan}} {{prefix:{width}}}  running {{elapsed:>4}}  {{msg}}"
    ))
    .expect("a valid template")
    .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✓"]);
    let done = ProgressStyle::with_template("{msg}").expect("a valid template");
    let bars: Vec<ProgressBar> = collectors
        .iter()
        .map(|c| {
            let pb = mp.add(ProgressBar::new_spinner());
            pb.set_style(running.clone());
            pb.set_prefix(c.name().to_owned());
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        })
        .collect();
    set_bars(Some(mp.clone()));
    let outcomes = futures::future::join_all(collectors.iter().zip(&bars).map(|(c, pb)| {
        let done = done.clone();
        async move {
            let o = runner::collect_one(*c, base, config, timeout).await;
            pb.set_style(done);
            let (mark, text) = match o.status {
                Status::Ok => (
                    "✔",
                    format!(
                        "{}, {}, {}",
                        plural(o.points.len() as u64, "point"),
                        plural(o.requests, "request"),
                        format_duration(o.duration)
                    ),
                ),
                Status::Error => ("✘", format!("failed after {}", format_duration(o.duration))),
                Status::Timeout => (
                    "✘",
                    format!("timed out after {}", format_duration(o.duration)),
                ),
            };
            pb.finish_with_message(format!("{mark} {:width$}  {text}", c.name()));
            o
        }
    }))
    .await;
    set_bars(None);
    let _ = mp.clear();
    outcomes
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn set_bars(mp: Option<MultiProgress>) {
    if let Ok(mut g) = BARS.lock() {
        *g = mp;
    }
}

/// A log writer for `tracing_subscriber`: standard error, printed above
/// the progress bars while they are drawn.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = BARS.lock().ok().and_then(|g| g.clone());
        match bars {
            Some(mp) => mp.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// One line of the summary table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub collector: String,
    pub status: &'static str,
    pub points: usize,
    pub duration: Duration,
    pub requests: u64,
}

/// The summary of a run, taken before the points are handed on.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub rows: Vec<Row>,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Summary {
        Summary {
            rows: outcomes
                .iter()
                .map(|o| Row {
                    collector: o.name.to_owned(),
                    status: o.status.as_str(),
                    points: o.points.len(),
                    duration: o.duration,
                    requests: o.requests,
                })
                .collect(),
        }
    }

    /// Prints the table on standard error when it is a terminal.
    pub fn print_if_interactive(&self) {
        if interactive() && !self.rows.is_empty() {
            let _ = std::io::stderr().write_all(render_summary(&self.rows).as_bytes());
        }
    }
}

/// `1.23s`, `45ms`, `2m05s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The summary table: one line per collector, then the totals.
pub fn render_summary(rows: &[Row]) -> String {
    let headers = ["COLLECTOR", "STATUS", "POINTS", "DURATION", "REQUESTS"];
    let failed = rows.iter().filter(|r| r.status != "ok").count();
    let total = Row {
        collector: "total".into(),
        status: if failed == 0 { "ok" } else { "failed" },
        points: rows.iter().map(|r| r.points).sum(),
        // The collectors run concurrently: the run took as long as the longest.
        duration: rows.iter().map(|r| r.duration).max().unwrap_or_default(),
        requests: rows.iter().map(|r| r.requests).sum(),
    };
    let cells = |r: &Row| -> [String; 5] {
        [
            r.collector.clone(),
            if r.collector == "total" && failed > 0 {
                format!("{failed} failed")
            } else {
                r.status.to_owned()
            },
            r.points.to_string(),
            format_duration(r.duration),
            r.requests.to_string(),
        ]
    };
    let body: Vec<[String; 5]> = rows.iter().map(cells).collect();
    let foot = cells(&total);
    let mut widths = headers.map(str::len);
    for r in body.iter().chain(std::iter::once(&foot)) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [&str; 5]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            // Text columns left-aligned, numbers right-aligned.
            if i < 2 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
            if i < 4 {
                s.push_str("  ");
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = String::new();
    out.push_str(&line(headers));
    let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    out.push_str(&line([&rule[0], &rule[1], &rule[2], &rule[3], &rule[4]]));
    for r in &body {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out.push_str(&line([&rule[0], &rule[1], &rule[2], &rule[3], &rule[4]]));
    out.push_str(&line([&foot[0], &foot[1], &foot[2], &foot[3], &foot[4]]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, status: &'static str, points: usize, ms: u64, requests: u64) -> Row {
        Row {
            collector: name.into(),
            status,
            points,
            duration: Duration::from_millis(ms),
            requests,
        }
    }

    #[test]
    fn summary_table_aligns_columns_and_totals() {
        let t = render_summary(&[
            row("autopkgtest", "ok", 34, 120, 4),
            row("sponsoring", "error", 0, 1500, 1),
            row("images", "timeout", 0, 600_000, 15),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "COLLECTOR    STATUS    POINTS  DURATION  REQUESTS"
        );
        assert!(lines[1].starts_with("───────────  "), "{t}");
        assert_eq!(
            lines[2],
            "autopkgtest  ok            34     120ms         4"
        );
        assert_eq!(
            lines[3],
            "sponsoring   error          0     1.50s         1"
        );
        assert_eq!(
            lines[4],
            "images       timeout        0    10m00s        15"
        );
        assert_eq!(
            lines[6],
            "total        2 failed      34    10m00s        20"
        );
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(45)), "45ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.23s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }
}
