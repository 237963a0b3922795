//! britney: health of proposed-migration (britney) runs and of its excuses.
//!
//! What it writes: [`schema`].
//!
//! Source: [`PROPOSED_MIGRATION`] (and Launchpad for the devel series when distro-info is out of date). Series: supported + ESM series
//! (distro-info, release order, each once); the devel series for the two
//! excuses reports. Four parts, each failing alone (logged, the others
//! still report); the collector fails only when every part failed.
//!
//! 1. `S/update_excuses.html`: the first line holding `Generated:` gives the
//!    run time (`YYYY.MM.DD HH:MM:SS`, UTC) as the two words after it.
//! 2. `log/S/YYYY-MM-DD/` (the day of that run): a directory listing of
//!    `HH:MM:SS.log` files. Newest first, skipping names containing
//!    `notest`, the first complete log (last non-blank line `Finished at:
//!    <RFC 2822>`, first line the RFC 2822 start) gives the duration.
//! 3. `update_excuses.csv`: rows of the last 12 hours, or every row newer
//!    than the newest one written before (catch-up after downtime, bounded
//!    by the option `max_catch_up`; without one, the option `catch_up_from`
//!    stands for it; see [`crate::model::catch_up`]), columns by header name.
//!    Read from its end with `Range` ([`read_excuses`]): 4 KB, eight times
//!    more until the tail reaches back to the oldest row needed, and the
//!    header line asked for apart.
//! 4. `update_excuses_by_team.yaml`: written by PyYAML with Python tags and
//!    aliases; read as generic YAML (tags ignored, `defaultdict`s unwrapped).

use crate::collector::LAUNCHPAD;
use crate::collector::{
    Collector, CollectorError, Configured, Context, OptionError, Parts, Rows, Series, Spec,
    merge_parts,
};
use crate::config::SourceUrl;
use crate::model::catch_up::{self, Cutoff};
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, float, int, tag};
use crate::sources::http::{Tail, join};
use crate::sources::reports::{
    TailReader, Value, first_line, generated_line, numeric, parse_rfc2822, parse_yaml, plain,
    tail_lines,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use regex::Regex;
use std::sync::LazyLock;

/// The collector: its spec and its typed options.
pub struct Britney {
    spec: Spec,
    options: Configured<catch_up::Options>,
}

/// britney's proposed-migration reports.
pub static PROPOSED_MIGRATION: SourceUrl = SourceUrl::new(
    "proposed_migration",
    "https://ubuntu-archive-team.ubuntu.com/proposed-migration/",
    "britney's output: update_excuses, logs, the excuses CSV and by-team YAML",
    "britney/proposed-migration/",
);

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![
        Measurement::new(
            "britney_last_run_age",
            &[tag("release", "")],
            &[int("run_age", "whole hours since the last run")],
        ),
        Measurement::new(
            "britney_last_run_duration",
            &[tag("release", "")],
            &[int(
                "run_duration",
                "whole minutes of the last complete run",
            )],
        ),
        Measurement::new(
            "update_excuses_stats",
            &[tag("release", "the devel series")],
            &[
                int("valid_candidates", ""),
                int("not_considered", ""),
                int("total", ""),
                int("median_age", ""),
                int("backlog", ""),
            ],
        )
        .timed("the CSV row's time"),
        Measurement::new(
            "update_excuses_by_team_stats",
            &[tag("release", "the devel series"), tag("team", "")],
            &[
                int("count", "items older than 3 days"),
                float("age", "their mean age in days, 0.0 when none"),
            ],
        ),
    ]
}

/// A by-team item counts when its age in days is greater than this.
const STUCK_AGE_DAYS: f64 = 3.0;

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::Queues,
        title: "Proposed migration (britney)".into(),
        panels: vec![
            Panel::new(
                Kind::Timeseries,
                "Hours since britney's last run",
                "britney_last_run_age",
                &["run_age"],
                &["release"],
            )
            .unit("h"),
            Panel::new(
                Kind::Timeseries,
                "Duration of britney's last run",
                "britney_last_run_duration",
                &["run_duration"],
                &["release"],
            )
            .unit("m"),
            Panel::new(
                Kind::Timeseries,
                "Update excuses (devel series)",
                "update_excuses_stats",
                &["valid_candidates", "not_considered", "total", "backlog"],
                &["release"],
            ),
            Panel::new(
                Kind::Timeseries,
                "Median age of update excuses",
                "update_excuses_stats",
                &["median_age"],
                &["release"],
            )
            .unit("d"),
            Panel::new(
                Kind::Timeseries,
                "Excuses older than 3 days, by team",
                "update_excuses_by_team_stats",
                &["count"],
                &["team"],
            ),
            Panel::new(
                Kind::Table,
                "Excuses by team (latest)",
                "update_excuses_by_team_stats",
                &["count", "age"],
                &["release", "team"],
            )
            .field_units(&[("age", "d")])
            .width(12)
            .describe("Per team: items older than 3 days, and their mean age in days."),
        ],
    }
}

impl Default for Britney {
    fn default() -> Britney {
        Britney {
            spec: Spec::new(
                "britney",
                "britney (proposed-migration) run age and duration, update_excuses statistics overall and per team",
            )
            .schema(schema())
            .sources(vec![PROPOSED_MIGRATION.clone(), LAUNCHPAD.clone()])
            .panels(panels())
            .options(catch_up::OPTIONS),
            options: Configured::default(),
        }
    }
}

#[async_trait::async_trait]
impl Collector for Britney {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn configure(&self, options: &toml::Table) -> Result<Option<Box<dyn Collector>>, OptionError> {
        Ok(Some(Box::new(Britney {
            spec: self.spec.clone(),
            options: Configured::new(options)?,
        })))
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let ctx = &ctx.with_options(self.options.current(&ctx.options)?);
        let base = ctx.source(&PROPOSED_MIGRATION);
        let (runs, excuses, by_team) = futures::join!(
            run_parts(ctx, base),
            excuses_stats(ctx, base),
            by_team_stats(ctx, base)
        );
        let (ages, durations) = runs;
        merge_parts(
            "britney",
            vec![
                ("last run age", ages),
                ("last run duration", durations),
                ("update_excuses.csv", excuses),
                ("update_excuses_by_team.yaml", by_team),
            ],
        )
    }

    fn time_series(&self) -> Vec<Series> {
        vec![Series {
            name: "update_excuses",
            base: PROPOSED_MIGRATION.clone(),
            file: "update_excuses.csv",
            rows: || Box::<ExcusesRows>::default(),
        }]
    }
}

/// `update_excuses.csv` read by `backfill`: its columns by header name,
/// then each line a row, as `collect` reads it.
#[derive(Default)]
struct ExcusesRows(Option<ExcusesColumns>);

impl Rows for ExcusesRows {
    fn has_header(&self) -> bool {
        true
    }

    fn header(&mut self, url: &str, line: &str) -> Result<(), String> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(line.as_bytes());
        let rec = rdr
            .records()
            .next()
            .ok_or("an empty header line")?
            .map_err(|e| format!("unreadable CSV header: {e}"))?;
        self.0 = Some(ExcusesColumns::of(url, &rec).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn row(&self, line: &str, devel: &str) -> Result<(DateTime<Utc>, Vec<Point>), String> {
        match &self.0 {
            Some(cols) => cols.line(line, devel).map(|(t, p)| (t, vec![p])),
            None => Err("no header line before it".to_owned()),
        }
    }
}

type Part = Result<Vec<Point>, CollectorError>;

/// Supported + ESM series, in distro-info (release) order, each once.
fn run_series(ctx: &Context) -> Result<Vec<String>, CollectorError> {
    let di = ctx.distro_info()?;
    let today = ctx.today();
    let supported = di.supported(today);
    let esm = di.supported_esm(today);
    Ok(di
        .all()
        .iter()
        .filter(|r| {
            supported
                .iter()
                .chain(esm.iter())
                .any(|s| s.series == r.series)
        })
        .map(|r| r.series.clone())
        .collect())
}

/// Parts 1 and 2: last run age and last run duration of every series.
async fn run_parts(ctx: &Context, base: &str) -> (Part, Part) {
    let series = match run_series(ctx) {
        Ok(s) => s,
        Err(e) => {
            let dur = if e.is_unreachable() {
                e.clone()
            } else {
                CollectorError::Other(format!("not looked up: the series are unknown ({e})"))
            };
            return (Err(e), Err(dur));
        }
    };
    let outcomes = futures::future::join_all(series.iter().map(|s| series_run(ctx, base, s))).await;

    // Each series fails alone, in each of the two parts.
    let mut ages = Parts::new("last run age");
    let mut durations = Parts::new("last run duration");
    for (s, (age, duration)) in series.iter().zip(outcomes) {
        ages.add(s.as_str(), age.map(Vec::from_iter));
        if let Some(d) = duration {
            durations.add(s.as_str(), d.map(Vec::from_iter));
        }
    }
    let ages_part = ages.finish();
    let durations_part = if let Err(e) = &ages_part
        && e.is_unreachable()
    {
        // The same hosts, out of reach: said as such.
        Err(e.clone())
    } else if ages_part.is_err() {
        Err(CollectorError::Other(
            "not looked up: no run date is known (the last run age failed for every series)".into(),
        ))
    } else {
        durations.finish()
    };
    (ages_part, durations_part)
}

/// One series: its run-age point (if its run time is known) and, when it is,
/// the outcome of the duration lookup for that day.
async fn series_run(
    ctx: &Context,
    base: &str,
    series: &str,
) -> (
    Result<Option<Point>, CollectorError>,
    Option<Result<Option<Point>, CollectorError>>,
) {
    let url = join(base, &format!("{series}/update_excuses.html"));
    let html = match ctx.http.get_text(&url).await {
        Ok(t) => t,
        Err(e) => return (Err(e.into()), None),
    };
    let generated = match parse_generated(&html) {
        None => {
            tracing::warn!(
                "britney: {url}: no `Generated:` line; no run age or duration for {series}"
            );
            return (Ok(None), None);
        }
        Some(Err(msg)) => {
            tracing::warn!("britney: {url}: {msg}; no run age or duration for {series}");
            return (Ok(None), None);
        }
        Some(Ok(t)) => t,
    };
    let age = Point::new("britney_last_run_age")
        .tag("release", series)
        .field("run_age", run_age_hours(generated, ctx.now))
        .at(ctx.now);
    let duration = last_run_duration(ctx, base, series, generated.date_naive())
        .await
        .map(|d| {
            d.map(|minutes| {
                Point::new("britney_last_run_duration")
                    .tag("release", series)
                    .field("run_duration", minutes)
                    .at(ctx.now)
            })
        });
    (Ok(Some(age)), Some(duration))
}

static GENERATED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(\d{4}\.\d{1,2}\.\d{1,2})\s+(\d{1,2}:\d{2}:\d{2})(?:\s|<|$)")
        .expect("valid regex")
});

/// The run time in `update_excuses.html`: the two words after `Generated:`
/// on the first line holding it. `None` when no line holds it; an error
/// message when its date cannot be read.
fn parse_generated(html: &str) -> Option<Result<DateTime<Utc>, String>> {
    let (line, rest) = generated_line(html)?;
    let parsed = GENERATED.captures(rest).and_then(|c| {
        NaiveDateTime::parse_from_str(&format!("{} {}", &c[1], &c[2]), "%Y.%m.%d %H:%M:%S").ok()
    });
    Some(parsed.map(|t| t.and_utc()).ok_or_else(|| {
        format!(
            "`Generated:` line {:?} does not carry `YYYY.MM.DD HH:MM:SS`",
            line.trim()
        )
    }))
}

/// Whole hours from `generated` to `now` (total hours, not modulo a day).
fn run_age_hours(generated: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - generated).num_hours()
}

/// Part 2 for one series: the duration in minutes of the newest complete
/// log of `date`. `Ok(None)` when that day has no complete log. An error
/// only when the day's listing cannot be read.
async fn last_run_duration(
    ctx: &Context,
    base: &str,
    series: &str,
    date: NaiveDate,
) -> Result<Option<i64>, CollectorError> {
    let dir = join(base, &format!("log/{series}/{}/", date.format("%Y-%m-%d")));
    let listing = ctx.http.get_text(&dir).await?;
    let names = log_names(&listing);
    for name in &names {
        let url = join(&dir, name);
        let text = match ctx.http.get_text(&url).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("britney: {e}; trying the next older log");
                continue;
            }
        };
        match log_duration(&text) {
            Ok(Some(minutes)) => return Ok(Some(minutes)),
            Ok(None) => tracing::debug!(
                "britney: {url}: incomplete run (no `Finished at:`); trying the next older log"
            ),
            Err(msg) => tracing::warn!("britney: {url}: {msg}; trying the next older log"),
        }
    }
    tracing::warn!(
        "britney: {dir}: no complete log among {} candidate(s); no run duration for {series}",
        names.len()
    );
    Ok(None)
}

static LOG_LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"href="(?:\./)?([^"/?#]+\.log)""#).expect("valid regex"));

/// The log files a directory listing links to, newest (greatest name)
/// first, without those whose name contains `notest`.
fn log_names(listing: &str) -> Vec<String> {
    let mut names: Vec<String> = LOG_LINK
        .captures_iter(listing)
        .map(|c| c[1].to_owned())
        .filter(|n| !n.contains("notest"))
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    names.dedup();
    names
}

/// The duration in whole minutes of a britney log: `Ok(None)` for an
/// incomplete run (its last non-blank line is not `Finished at: <time>`),
/// an error when a time cannot be read.
fn log_duration(text: &str) -> Result<Option<i64>, String> {
    let Some(last) = text.lines().rev().map(str::trim).find(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let Some(finished) = last.strip_prefix("Finished at:") else {
        return Ok(None);
    };
    let first = text.lines().next().unwrap_or("").trim();
    let start = parse_rfc2822(first)
        .ok_or_else(|| format!("first line {first:?} is not an RFC 2822 start time"))?;
    let finish = parse_rfc2822(finished)
        .ok_or_else(|| format!("last line {last:?} does not carry an RFC 2822 finish time"))?;
    let minutes = (finish - start).num_minutes();
    if minutes < 0 {
        return Err(format!(
            "the run finished ({finish}) before it started ({start})"
        ));
    }
    Ok(Some(minutes))
}

/// Part 3: `update_excuses.csv` of the devel series.
async fn excuses_stats(ctx: &Context, base: &str) -> Part {
    let devel = ctx.devel_series().await?;
    let options: catch_up::Options = ctx.options_as()?;
    let url = join(base, "update_excuses.csv");
    let cutoff = ctx.cutoff("britney", &url, &options);
    let (points, newest) = read_excuses(ctx, &url, &devel, &cutoff).await?;
    if let Some(w) = cutoff.shrunk(&url, newest) {
        tracing::warn!("britney: {w}");
    }
    if let Some(n) = newest {
        ctx.note_row(&url, n);
    }
    Ok(points)
}

/// Bytes of `update_excuses.csv` asked for first. A row is about 40 bytes
/// and one is written every 15 minutes, so the rows of a round (the last
/// 12 hours: 48 rows) fit in the first tail.
const TAIL_BYTES: u64 = 4096;

/// The points of the rows of `update_excuses.csv` at `url` that `cutoff`
/// takes, and the time of its newest well-formed row, read from the
/// document's tail: the file only grows, by a row at the end, so the
/// shortest tail whose first row is older than the cutoff holds every row
/// taken (see [`crate::sources::reports::read_tail`]). When that tail does
/// not start the document, its header (the column names) is asked for
/// apart, with `Range: bytes=0-N`. A server answering with the whole
/// document (ignoring the `Range`, or after a 416) gives the whole
/// document's rows, as does a tail grown to the whole document (the file
/// was replaced, or catching up reaches back past its start).
pub async fn read_excuses(
    ctx: &Context,
    url: &str,
    devel: &str,
    cutoff: &Cutoff,
) -> Result<(Vec<Point>, Option<DateTime<Utc>>), CollectorError> {
    let mut reader = TailReader::new(&ctx.http, url, TAIL_BYTES);
    let mut tail = reader.next().await?;
    if tail.from_start {
        return excuses_points(url, &tail.body, devel, cutoff);
    }
    let header = first_line(&ctx.http, url).await?;
    let cols = excuses_columns(url, Some(&header))?;
    let reaches = |tail: &Tail| {
        tail_lines(tail)
            .find_map(|l| cols.line(l, devel).ok())
            .is_some_and(|(t, _)| !cutoff.takes(t))
    };
    while !tail.from_start && !reaches(&tail) {
        tail = reader.next().await?;
    }
    if tail.from_start {
        return excuses_points(url, &tail.body, devel, cutoff);
    }
    Ok(excuses_rows(
        url,
        &cols,
        tail_lines(&tail).zip(1u64..),
        "line of the tail",
        devel,
        cutoff,
    ))
}

/// The CSV columns and the field each becomes.
const CSV_FIELDS: [(&str, &str); 5] = [
    ("valid candidates", "valid_candidates"),
    ("not considered", "not_considered"),
    ("total", "total"),
    ("median age", "median_age"),
    ("backlog", "backlog"),
];

/// The points of the rows `cutoff` takes of the whole document `text`, and
/// the time of its newest well-formed row.
pub fn excuses_points(
    url: &str,
    text: &str,
    devel: &str,
    cutoff: &Cutoff,
) -> Result<(Vec<Point>, Option<DateTime<Utc>>), CollectorError> {
    // Each line is a row of its own (see `ExcusesColumns::line`), so a
    // malformed one, an unbalanced quote included, costs that row only.
    let mut lines = text.lines().zip(1u64..);
    let cols = excuses_columns(url, lines.next().map(|(h, _)| h))?;
    Ok(excuses_rows(url, &cols, lines, "line", devel, cutoff))
}

/// The columns named by `header`, the header line of `url` (`None`: an
/// empty document).
fn excuses_columns(url: &str, header: Option<&str>) -> Result<ExcusesColumns, CollectorError> {
    let headers = match header {
        Some(h) => excuses_record(h.trim_start_matches('\u{feff}'))
            .map_err(|e| CollectorError::parse(url, format!("unreadable CSV header: {e}")))?,
        None => csv::StringRecord::new(),
    };
    ExcusesColumns::of(url, &headers)
}

/// The points of the rows (`(line, number)`, the number said in warnings
/// as `what` N) that `cutoff` takes, and the time of the newest
/// well-formed one.
fn excuses_rows<'a>(
    url: &str,
    cols: &ExcusesColumns,
    lines: impl Iterator<Item = (&'a str, u64)>,
    what: &str,
    devel: &str,
    cutoff: &Cutoff,
) -> (Vec<Point>, Option<DateTime<Utc>>) {
    let mut points = Vec::new();
    let mut newest: Option<DateTime<Utc>> = None;
    for (text, line) in lines {
        if text.trim().is_empty() {
            continue;
        }
        match cols.line(text, devel) {
            Ok((time, point)) => {
                newest = newest.max(Some(time));
                if cutoff.takes(time) {
                    points.push(point);
                }
            }
            Err(why) => tracing::warn!("britney: {url}: {what} {line}: {why}; row skipped"),
        }
    }
    (points, newest)
}

/// One line of `update_excuses.csv` as a CSV record. Its columns are
/// integers, so records never span lines: a line without quotes is split at
/// its commas (as the CSV reader would), one with quotes is read by the CSV
/// reader alone, so that an unbalanced quote cannot reach the next line.
pub fn excuses_record(line: &str) -> Result<csv::StringRecord, String> {
    if !line.contains('"') {
        return Ok(line.split(',').map(str::trim).collect());
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(line.as_bytes());
    rdr.records()
        .next()
        .ok_or("an empty row")?
        .map_err(|e| format!("unreadable CSV ({e})"))
}

/// Where the columns of `update_excuses.csv` are, from its header.
pub struct ExcusesColumns {
    headers: csv::StringRecord,
    time: usize,
    fields: Vec<(usize, &'static str)>,
}

impl ExcusesColumns {
    /// The columns named by `headers` (the header row of `url`); an error
    /// naming the missing column.
    pub fn of(url: &str, headers: &csv::StringRecord) -> Result<ExcusesColumns, CollectorError> {
        let col = |name: &str| {
            headers.iter().position(|h| h == name).ok_or_else(|| {
                CollectorError::parse(
                    url,
                    format!(
                        "the CSV header {:?} has no column {name:?}",
                        headers.iter().collect::<Vec<_>>()
                    ),
                )
            })
        };
        let time = col("time")?;
        let fields = CSV_FIELDS
            .iter()
            .map(|(name, field)| col(name).map(|c| (c, *field)))
            .collect::<Result<_, _>>()?;
        Ok(ExcusesColumns {
            headers: headers.clone(),
            time,
            fields,
        })
    }

    /// The point of one line (a row, see [`excuses_record`]), with its
    /// time, or why it is malformed.
    pub fn line(&self, line: &str, devel: &str) -> Result<(DateTime<Utc>, Point), String> {
        let rec = excuses_record(line)?;
        self.point(&rec, devel).map_err(|why| {
            if line.matches('"').count() % 2 == 1 {
                format!("an unbalanced quote (\"): {why}")
            } else {
                why
            }
        })
    }

    /// The point of one row (with its time), or why the row is malformed.
    pub fn point(
        &self,
        rec: &csv::StringRecord,
        devel: &str,
    ) -> Result<(DateTime<Utc>, Point), String> {
        let int = |c: usize| rec.get(c).and_then(|v| v.parse::<i64>().ok());
        let Some(time) = int(self.time).and_then(DateTime::from_timestamp_millis) else {
            return Err(match rec.get(self.time) {
                Some(v) => format!("time {v:?} is not Unix milliseconds"),
                None => "no time column".to_owned(),
            });
        };
        let mut point = Point::new("update_excuses_stats")
            .tag("release", devel)
            .at(time);
        for &(c, field) in &self.fields {
            match int(c) {
                Some(v) => point = point.field(field, v),
                None => {
                    let name = self.headers.get(c).unwrap_or("");
                    return Err(match rec.get(c) {
                        Some(v) => format!("column {name:?} is {v:?}, not an integer"),
                        None => format!("no column {name:?} (the row has {} columns)", rec.len()),
                    });
                }
            }
        }
        Ok((time, point))
    }
}

/// Part 4: `update_excuses_by_team.yaml` of the devel series.
async fn by_team_stats(ctx: &Context, base: &str) -> Part {
    let devel = ctx.devel_series().await?;
    let url = join(base, "update_excuses_by_team.yaml");
    let text = ctx.http.get_text(&url).await?;
    by_team_points(&url, &text, &devel, ctx.now)
}

fn by_team_points(url: &str, text: &str, devel: &str, now: DateTime<Utc>) -> Part {
    let doc =
        parse_yaml(text).map_err(|e| CollectorError::parse(url, format!("invalid YAML: {e}")))?;
    let teams = match plain(&doc) {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => m,
        other => {
            return Err(CollectorError::parse(
                url,
                format!(
                    "expected a mapping of team -> items, found {}",
                    other.kind()
                ),
            ));
        }
    };
    let mut points = Vec::new();
    for (key, items) in teams {
        let team = match plain(key) {
            Value::String(s) => s.clone(),
            Value::Int(n) => n.to_string(),
            // As PyYAML and YAML write it (`3.0`, not `3`).
            Value::Float(f) => format!("{f:?}"),
            Value::Bool(b) => b.to_string(),
            other => {
                tracing::warn!(
                    "britney: {url}: a team key is {}, not a name; skipped",
                    other.kind()
                );
                continue;
            }
        };
        if team.is_empty() {
            tracing::warn!("britney: {url}: empty team name; skipped");
            continue;
        }
        let items: &[Value] = match plain(items) {
            Value::Null => &[],
            Value::Sequence(s) => s,
            other => {
                tracing::warn!(
                    "britney: {url}: team {team:?}: expected a list of items, found {}; skipped",
                    other.kind()
                );
                continue;
            }
        };
        let mut stuck = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match plain(item).get("age").and_then(numeric) {
                Some(age) if age > STUCK_AGE_DAYS => stuck.push(age),
                Some(_) => {}
                None => tracing::debug!(
                    "britney: {url}: team {team:?}: item {i} has no numeric age; skipped"
                ),
            }
        }
        let mean = if stuck.is_empty() {
            0.0
        } else {
            stuck.iter().sum::<f64>() / stuck.len() as f64
        };
        points.push(
            Point::new("update_excuses_by_team_stats")
                .tag("release", devel)
                .tag("team", team)
                .field("count", stuck.len())
                .field("age", mean)
                .at(now),
        );
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::now;
    use chrono::TimeZone;

    fn lines(ps: &[Point]) -> Vec<String> {
        let mut v: Vec<String> = ps.iter().map(|p| p.to_line().unwrap()).collect();
        v.sort();
        v
    }

    // ---- part 1

    #[test]
    fn generated_is_the_two_words_after_the_marker() {
        let html = "<html>\n<p>Generated: 2026.11.24 09:35:12 +0000</p>\n<p>Generated: 2020.01.01 00:00:00</p>\n";
        let t = parse_generated(html).unwrap().unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 11, 24, 9, 35, 12).unwrap());
        // directly followed by markup, or at the end of the line
        let t = parse_generated("Generated: 2026.11.24 09:35:12</p>")
            .unwrap()
            .unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 11, 24, 9, 35, 12).unwrap());
        assert!(
            parse_generated("Generated: 2026.11.24 09:35:12")
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn no_or_unreadable_generated_line() {
        assert!(parse_generated("<html>no marker</html>").is_none());
        assert!(parse_generated("").is_none());
        assert!(parse_generated("<p>Generated: soon</p>").unwrap().is_err());
        assert!(
            parse_generated("<p>Generated: 2026.13.24 09:35:12</p>")
                .unwrap()
                .is_err()
        );
        assert!(
            parse_generated("<p>Generated: 2026.11.24</p>")
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn run_age_is_total_hours() {
        let g = Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap();
        assert_eq!(run_age_hours(g, now()), 54);
        let g = Utc.with_ymd_and_hms(2026, 11, 24, 11, 0, 1).unwrap();
        assert_eq!(run_age_hours(g, now()), 0);
    }

    // ---- part 2

    #[test]
    fn log_links_newest_first_without_notest() {
        let html = r#"<a href="?C=N;O=D">Name</a> <a href="/proposed-migration/log/tumbling/">Parent Directory</a>
<tr><td><a href="./07:00:01.log">07:00:01.log</a></td></tr>
<tr><td><a href="./11:00:00-notest.log">11:00:00-notest.log</a></td></tr>
<tr><td><a href="./09:00:01.log">09:00:01.log</a></td></tr>
<tr><td><a href="./10:30:00.log">10:30:00.log</a></td></tr>
<tr><td><a href="./10:30:00.log.gz">x</a></td></tr>"#;
        assert_eq!(
            log_names(html),
            ["10:30:00.log", "09:00:01.log", "07:00:01.log"]
        );
        assert!(log_names("<html>empty</html>").is_empty());
    }

    #[test]
    fn log_duration_total_minutes() {
        let log = "Tue, 24 Nov 2026 01:00:00 +0000\nstuff\nFinished at: Tue, 24 Nov 2026 03:14:30 +0000\n\n";
        assert_eq!(log_duration(log), Ok(Some(134)));
        // a wrong day of the week does not matter
        let log = "Mon, 24 Nov 2026 01:00:00 +0000\nFinished at: Mon, 24 Nov 2026 01:30:00 +0000";
        assert_eq!(log_duration(log), Ok(Some(30)));
        // crossing midnight
        let log = "Mon, 23 Nov 2026 23:50:00 +0000\nFinished at: Tue, 24 Nov 2026 00:20:00 +0000";
        assert_eq!(log_duration(log), Ok(Some(30)));
        // a sub-minute run is 0, not skipped
        let log = "Sun, 22 Nov 2026 06:00:00 +0000\nFinished at: Sun, 22 Nov 2026 06:00:42 +0000\n";
        assert_eq!(log_duration(log), Ok(Some(0)));
        // space-padded day
        let log = "Mon,  2 Nov 2026 01:00:00 +0000\nFinished at: Mon,  2 Nov 2026 01:10:00 +0000\n";
        assert_eq!(log_duration(log), Ok(Some(10)));
    }

    #[test]
    fn incomplete_or_broken_logs() {
        assert_eq!(
            log_duration("Tue, 24 Nov 2026 01:00:00 +0000\nstill running\n"),
            Ok(None)
        );
        assert_eq!(log_duration(""), Ok(None));
        assert_eq!(log_duration("\n\n"), Ok(None));
        assert!(log_duration("garbage\nFinished at: Mon, 24 Nov 2026 03:14:30 +0000").is_err());
        assert!(log_duration("Mon, 24 Nov 2026 01:00:00 +0000\nFinished at: never").is_err());
        assert!(
            log_duration(
                "Mon, 24 Nov 2026 03:00:00 +0000\nFinished at: Mon, 24 Nov 2026 01:00:00 +0000"
            )
            .is_err()
        );
    }

    // ---- part 3

    const HEADER: &str = "time,valid candidates,not considered,total,median age,backlog\n";

    /// A fresh station's cutoff: the 12 h window.
    fn win() -> Cutoff {
        Cutoff::new(now(), None, None, chrono::Duration::days(90))
    }

    #[test]
    fn csv_rows_newer_than_the_mark_and_the_newest_row() {
        let csv = format!(
            "{HEADER}1795400000000,1,1,1,1,1\n\
             1795478400000,2,2,2,2,2\n\
             1795521600000,11,21,31,5,6\n\
             1795521600001,x,21,31,5,6\n"
        );
        // the mark is older than the window: every row after it
        let mark = DateTime::from_timestamp_millis(1_795_399_999_999).unwrap();
        let c = Cutoff::new(now(), Some(mark), None, chrono::Duration::days(90));
        let (ps, newest) = excuses_points("u", &csv, "tumbling", &c).unwrap();
        assert_eq!(ps.len(), 3);
        assert_eq!(newest, DateTime::from_timestamp_millis(1_795_521_600_000));
        // bounded by max_catch_up
        let c = Cutoff::new(now(), Some(mark), None, chrono::Duration::hours(13));
        let (ps, _) = excuses_points("u", &csv, "tumbling", &c).unwrap();
        assert_eq!(ps.len(), 2);
    }

    #[test]
    fn csv_rows_within_12_hours_with_their_time() {
        let csv = format!(
            "{HEADER}1795400000000,1,1,1,1,1\n\
             1795478400000,2,2,2,2,2\n\
             1795478400001,10,20,30,4,5\n\
             1795521600000,11,21,31,5,6\n"
        );
        let ps = excuses_points("u", &csv, "tumbling", &win()).unwrap().0;
        assert_eq!(
            lines(&ps),
            [
                "update_excuses_stats,release=tumbling backlog=5i,median_age=4i,not_considered=20i,total=30i,valid_candidates=10i 1795478400001000000",
                "update_excuses_stats,release=tumbling backlog=6i,median_age=5i,not_considered=21i,total=31i,valid_candidates=11i 1795521600000000000",
            ]
        );
    }

    #[test]
    fn csv_columns_are_found_by_header_name() {
        let csv = "backlog,median age,total,not considered,valid candidates,time,extra\n\
                   5,4,30,20,10,1795500000000,x\n";
        let ps = excuses_points("u", csv, "tumbling", &win()).unwrap().0;
        assert_eq!(
            lines(&ps),
            [
                "update_excuses_stats,release=tumbling backlog=5i,median_age=4i,not_considered=20i,total=30i,valid_candidates=10i 1795500000000000000"
            ]
        );
    }

    #[test]
    fn malformed_csv_rows_are_skipped_others_kept() {
        let csv = format!(
            "{HEADER}1795500000000,6.5,1,1,1,1\n\
             1795500000001,,1,1,1,1\n\
             1795500000002,1,1,1,1\n\
             1795500000003,1,1,1,1,x\n\
             soon,1,1,1,1,1\n\
             1795500000004,1,2,3,4,5\n"
        );
        let ps = excuses_points("u", &csv, "tumbling", &win()).unwrap().0;
        assert_eq!(
            lines(&ps),
            [
                "update_excuses_stats,release=tumbling backlog=5i,median_age=4i,not_considered=2i,total=3i,valid_candidates=1i 1795500000004000000"
            ]
        );
    }

    #[test]
    fn an_unbalanced_quote_costs_that_row_only() {
        let csv = format!(
            "{HEADER}1795500000000,\"1,1,1,1,1\n\
             1795500000001,1,2,3,4,5\n\
             1795500000002,\"1\",2,3,4,5\n"
        );
        let ps = excuses_points("u", &csv, "tumbling", &win()).unwrap().0;
        assert_eq!(ps.len(), 2, "{:?}", lines(&ps));
    }

    /// `backfill` reads update_excuses.csv as `collect` does: its first line
    /// is the header naming the columns, then each line a row.
    #[test]
    fn the_backfill_reads_the_header_then_the_rows() {
        let series = Britney::default().time_series();
        let mut rows = (series[0].rows)();
        assert!(
            rows.has_header(),
            "update_excuses.csv starts with its header"
        );
        assert!(rows.row("1795392000000,140,512,652,6,388", "t").is_err());
        rows.header("http://x/update_excuses.csv", HEADER.trim_end())
            .unwrap();
        let (time, points) = rows.row("1795392000000,140,512,652,6,388", "t").unwrap();
        assert_eq!(
            time,
            DateTime::from_timestamp_millis(1_795_392_000_000).unwrap()
        );
        assert_eq!(lines(&points).len(), 1);
        assert!(
            lines(&points)[0].contains("total=652i"),
            "{:?}",
            lines(&points)
        );
    }

    /// A malformed row says why, and points at an unbalanced quote when it
    /// has one (a quote opened in a row swallows the rest of it).
    #[test]
    fn a_malformed_row_points_at_an_unbalanced_quote() {
        let mut rows = ExcusesRows::default();
        rows.header("u", HEADER.trim_end()).unwrap();
        let e = rows.row("1795500000000,\"1,1,1,1,1", "t").unwrap_err();
        assert!(e.starts_with("an unbalanced quote (\"): "), "{e}");
        let e = rows.row("1795500000000,\"x\",1,1,1,1", "t").unwrap_err();
        assert!(!e.contains("quote"), "{e}");
        let e = rows.row("1795500000000,x,1,1,1,1", "t").unwrap_err();
        assert!(!e.contains("quote"), "{e}");
    }

    /// Its options are read when the configuration loads: a bad one is
    /// refused then, naming its key.
    #[test]
    fn options_are_checked_when_configured() {
        let ok: toml::Table = toml::from_str("max_catch_up = \"2d\"").unwrap();
        assert!(Britney::default().configure(&ok).unwrap().is_some());
        let bad: toml::Table = toml::from_str("max_catch_up = \"lots\"").unwrap();
        let e = Britney::default().configure(&bad).err().unwrap();
        assert_eq!(e.key, "max_catch_up", "{e}");
    }

    #[test]
    fn csv_without_a_needed_column_is_an_error() {
        let err = excuses_points(
            "http://x/update_excuses.csv",
            "time,total\n1,2\n",
            "t",
            &win(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("http://x/update_excuses.csv")
                && err.to_string().contains("valid candidates"),
            "{err}"
        );
        assert!(excuses_points("u", "", "t", &win()).is_err());
        assert!(
            excuses_points("u", HEADER, "t", &win())
                .unwrap()
                .0
                .is_empty()
        );
    }

    // ---- part 4

    /// The shape PyYAML (`yaml.dump`, default Dumper) gives britney's
    /// by-team report: sorted keys, `defaultdict`s as
    /// `!!python/object/apply:`, factories as `!!python/name:`, shared items
    /// as anchors and aliases.
    const PYYAML: &str = r#"canonical-foundations:
- &id001
  age: 12
  data: !!python/object/apply:collections.defaultdict
    args:
    - !!python/name:builtins.dict ''
    dictitems:
      excuses:
      - 'Migration status for foo (1.0-1 to 1.0-2): BLOCKED: Rejected/violates migration policy/introduces a regression'
      is-candidate: false
      new-version: 1.0-2
      old-version: 1.0-1
      policy_info: !!python/object/apply:collections.defaultdict
        args:
        - !!python/name:builtins.dict ''
        dictitems:
          age:
            age-requirement: 0
            current-age: 12
            verdict: PASS
      reason: !!python/tuple
      - autopkgtest
  kind: package-in-proposed
  package_in_proposed: foo
- age: '4.5'
  data: !!python/object/apply:collections.defaultdict
    args:
    - !!python/name:builtins.list ''
    dictitems: {}
  kind: package-in-proposed
  package_in_proposed: bar
- age: 1.5
  kind: regressing-other
  package_in_proposed: baz
canonical-kernel-team: []
ubuntu-server:
- *id001
- age: null
  package_in_proposed: qux
- age: soon
  package_in_proposed: quux
- package_in_proposed: corge
- !!python/object/apply:collections.defaultdict
  args:
  - !!python/name:builtins.dict ''
  dictitems:
    age: !!python/float '3.0'
- !!python/object:britney2.excuse.Item
  age: 7
unowned: null
"#;

    #[test]
    fn pyyaml_dump_with_python_tags_and_aliases() {
        let ps = by_team_points("u", PYYAML, "tumbling", now()).unwrap();
        assert_eq!(
            lines(&ps),
            [
                "update_excuses_by_team_stats,release=tumbling,team=canonical-foundations age=8.25,count=2i 1795521600000000000",
                "update_excuses_by_team_stats,release=tumbling,team=canonical-kernel-team age=0,count=0i 1795521600000000000",
                "update_excuses_by_team_stats,release=tumbling,team=ubuntu-server age=9.5,count=2i 1795521600000000000",
                "update_excuses_by_team_stats,release=tumbling,team=unowned age=0,count=0i 1795521600000000000",
            ]
        );
    }

    #[test]
    fn top_level_defaultdict_and_local_tags() {
        let yaml = "!!python/object/apply:collections.defaultdict\nargs:\n- !!python/name:builtins.list ''\ndictitems:\n  t1:\n  - !local {age: 10}\n  t2: !local null\n";
        let ps = by_team_points("u", yaml, "tumbling", now()).unwrap();
        assert_eq!(
            lines(&ps),
            [
                "update_excuses_by_team_stats,release=tumbling,team=t1 age=10,count=1i 1795521600000000000",
                "update_excuses_by_team_stats,release=tumbling,team=t2 age=0,count=0i 1795521600000000000",
            ]
        );
    }

    #[test]
    fn empty_and_broken_documents() {
        assert!(by_team_points("u", "", "t", now()).unwrap().is_empty());
        assert!(by_team_points("u", "{}\n", "t", now()).unwrap().is_empty());
        let err = by_team_points("http://x/y.yaml", "- a\n- b\n", "t", now()).unwrap_err();
        assert!(err.to_string().contains("http://x/y.yaml"), "{err}");
        let err = by_team_points("http://x/y.yaml", "a: [\n", "t", now()).unwrap_err();
        assert!(err.to_string().contains("invalid YAML"), "{err}");
        // a team whose value is not a list is skipped, the others kept
        let ps = by_team_points("u", "a: 5\nb: [{age: 4}]\n", "t", now()).unwrap();
        assert_eq!(
            lines(&ps),
            ["update_excuses_by_team_stats,release=t,team=b age=4,count=1i 1795521600000000000"]
        );
        // non-finite ages are not numeric
        let ps = by_team_points(
            "u",
            "a: [{age: .inf}, {age: .nan}, {age: 'inf'}]\n",
            "t",
            now(),
        )
        .unwrap();
        assert_eq!(
            lines(&ps),
            ["update_excuses_by_team_stats,release=t,team=a age=0,count=0i 1795521600000000000"]
        );
    }
}

/// Property tests: each document parser on arbitrary and mutated input,
/// and on documents built from parts, whose figures must come back.
#[cfg(test)]
mod props {
    use super::*;
    use crate::support::proptest_support::{CASES, encode_all, text_like};
    use crate::support::test_support::now;
    use proptest::prelude::*;

    /// A time between 2020 and 2033, to the second.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (1_577_836_800i64..2_000_000_000)
            .prop_map(|s| DateTime::from_timestamp(s, 0).expect("valid"))
    }

    /// The last non-blank line of a text, trimmed.
    fn last_line(text: &str) -> &str {
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        /// A page without `Generated:` has no time; a time read is written
        /// on the page.
        #[test]
        fn generated_time_is_read_from_a_generated_line(html in text_like(include_str!("../../tests/fixtures/britney/proposed-migration/stonking/update_excuses.html"))) {
            match parse_generated(&html) {
                None => prop_assert!(!html.contains("Generated:")),
                Some(Ok(t)) => {
                    prop_assert!(html.contains("Generated:"));
                    prop_assert!(html.contains(&t.format(":%M:%S").to_string()), "{} not on the page", t);
                }
                Some(Err(e)) => prop_assert!(e.contains("Generated:"), "{}", e),
            }
        }

        /// A page built from parts gives its `Generated:` time back (month,
        /// day and hour with or without a leading zero); a later line
        /// holding `Generated:` does not count.
        #[test]
        fn generated_time_built_from_parts_reads_back(t in instant(), zeros in any::<bool>(), tail in "( \\+0000)?(</p>)?") {
            let when = if zeros { t.format("%Y.%m.%d %H:%M:%S") } else { t.format("%Y.%-m.%-d %-H:%M:%S") };
            let html = format!("<html><body>\n<h1>excuses</h1>\n<p>Generated: {when}{tail}\n<p>Footer: Generated: by hand</p>\n");
            prop_assert_eq!(parse_generated(&html), Some(Ok(t)));
            let bad = html.replace(&when.to_string(), "soon");
            prop_assert!(matches!(parse_generated(&bad), Some(Err(_))));
        }

        /// The names listed are `.log` names the page links to, newest
        /// (greatest) first, each once, none a `notest` run.
        #[test]
        fn log_listing_gives_linked_logs_newest_first(html in text_like(include_str!("../../tests/fixtures/britney/proposed-migration/log/jammy/2026-11-23/index.html"))) {
            let names = log_names(&html);
            prop_assert!(names.windows(2).all(|w| w[0] > w[1]), "{:?}", names);
            for n in &names {
                prop_assert!(n.ends_with(".log") && !n.contains("notest") && !n.contains('/'), "{}", n);
                prop_assert!(html.contains(&format!("href=\"{n}\"")) || html.contains(&format!("href=\"./{n}\"")), "{} is not linked", n);
            }
        }

        /// A listing built from parts (logs linked as `name` or `./name`,
        /// twice now and then, `notest` runs, other files) gives its logs
        /// back, newest first.
        #[test]
        fn log_listing_built_from_parts_gives_its_logs(
            links in proptest::collection::vec(("2[0-3]:(00|30):00(-notest)?(\\.log|\\.txt|/)", any::<bool>()), 0..12),
        ) {
            let rows: Vec<String> = links
                .iter()
                .map(|(n, dot)| format!("<tr><td><a href=\"{}{n}\">{n}</a></td><td align=\"right\">2026-11-23 22:00  </td></tr>", if *dot { "./" } else { "" }))
                .collect();
            let html = format!("<table>\n<tr><td><a href=\"/proposed-migration/log/jammy/\">Parent Directory</a></td></tr>\n{}\n</table>", rows.join("\n"));
            let mut want: Vec<String> = links.into_iter().map(|(n, _)| n).filter(|n| n.ends_with(".log") && !n.contains("notest")).collect();
            want.sort();
            want.dedup();
            want.reverse();
            prop_assert_eq!(log_names(&html), want);
        }

        /// A run read as complete ends in `Finished at:`, and did not
        /// finish before it started.
        #[test]
        fn log_duration_is_of_a_finished_run(text in text_like(include_str!("../../tests/fixtures/britney/proposed-migration/log/jammy/2026-11-23/22:00:00.log"))) {
            let finished = last_line(&text).starts_with("Finished at:");
            match log_duration(&text) {
                Ok(Some(minutes)) => {
                    prop_assert!(finished);
                    prop_assert!(minutes >= 0);
                }
                Ok(None) => prop_assert!(!finished),
                Err(e) => prop_assert!(finished, "{}", e),
            }
            let _ = parse_rfc2822(&text);
        }

        /// A log built from parts (a start time, lines, a finish time after
        /// it, blank lines at the end) gives its whole minutes; one whose
        /// last line is not the finish is incomplete; one that finished
        /// before it started is refused.
        #[test]
        fn log_duration_built_from_parts_reads_back(
            start in instant(),
            secs in 0i64..3 * 86_400,
            lines in proptest::collection::vec("I: \\[[0-9T:+-]{10}\\] - [A-Za-z ]{0,20}", 0..5),
            blanks in "[ \n]{0,3}",
        ) {
            let finish = start + chrono::Duration::seconds(secs);
            let body = lines.join("\n");
            let log = format!("{}\n{body}\nFinished at: {}{blanks}", start.to_rfc2822(), finish.to_rfc2822());
            prop_assert_eq!(log_duration(&log), Ok(Some(secs / 60)));
            let running = format!("{}\n{body}\nI: still running{blanks}", start.to_rfc2822());
            prop_assert_eq!(log_duration(&running), Ok(None));
            if secs >= 60 {
                let backwards = format!("{}\n{body}\nFinished at: {}", finish.to_rfc2822(), start.to_rfc2822());
                prop_assert!(log_duration(&backwards).is_err());
            }
        }
        /// Whatever the CSV, each point is taken by the cutoff, at no
        /// later time than the newest row, and has the five fields; no
        /// more points than lines.
        #[test]
        fn excuses_csv_points_are_rows_the_cutoff_takes(text in text_like(include_str!("../../tests/fixtures/britney/proposed-migration/update_excuses.csv"))) {
            let cutoff = Cutoff::new(now(), None, None, chrono::Duration::days(90));
            if let Ok((points, newest)) = excuses_points("u", &text, "tumbling", &cutoff) {
                encode_all(&points);
                prop_assert!(points.len() <= text.lines().count());
                prop_assert!(points.is_empty() || newest.is_some());
                for p in &points {
                    prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
                    let t = p.timestamp.expect("timed");
                    prop_assert!(cutoff.takes(t) && Some(t) <= newest);
                    prop_assert_eq!(p.fields.len(), CSV_FIELDS.len());
                }
            }
        }

        /// A CSV built from parts (its columns in any order, one more
        /// column, blank lines and malformed rows between the rows) gives
        /// the rows the cutoff takes, in order, with their figures, and
        /// the time of the newest row.
        #[test]
        fn excuses_csv_built_from_parts_reads_back(
            order in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle(),
            rows in proptest::collection::vec((-2 * 86_400_000i64..3_600_000, proptest::collection::vec(0i64..100_000, 5), 0u8..4), 0..10),
        ) {
            let cutoff = Cutoff::new(now(), None, None, chrono::Duration::days(90));
            let names = ["time", "valid candidates", "not considered", "total", "median age", "backlog", "comment"];
            let mut lines = vec![order.iter().map(|&i| names[i]).collect::<Vec<_>>().join(",")];
            let mut want = Vec::new();
            let mut newest = None;
            for (offset, figures, junk) in rows {
                let t = cutoff.after + chrono::Duration::milliseconds(offset);
                let mut cells = vec![t.timestamp_millis().to_string()];
                cells.extend(figures.iter().map(i64::to_string));
                cells.push("\"a, quoted\"".to_owned());
                lines.push(order.iter().map(|&i| cells[i].as_str()).collect::<Vec<_>>().join(","));
                match junk {
                    0 => lines.push(String::new()),
                    1 => lines.push("x,x,x,x,x,x,x".to_owned()),
                    _ => {}
                }
                newest = newest.max(Some(t));
                if t > cutoff.after {
                    want.push((t, figures));
                }
            }
            let (points, got_newest) = excuses_points("u", &lines.join("\n"), "tumbling", &cutoff).expect("a header with every column");
            let got: Vec<(DateTime<Utc>, Vec<i64>)> = points
                .iter()
                .map(|p| {
                    let figures = CSV_FIELDS
                        .iter()
                        .map(|(_, f)| match p.fields.get(*f) {
                            Some(crate::model::point::FieldValue::Integer(n)) => *n,
                            other => panic!("{f} is {other:?}"),
                        })
                        .collect();
                    (p.timestamp.expect("timed"), figures)
                })
                .collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(got_newest, newest);
        }

        /// Whatever the YAML, a point per named team, whose count of stuck
        /// items is at most its items and whose mean age is 0 or over the
        /// stuck age.
        #[test]
        fn by_team_yaml_points_are_named_teams(text in text_like(include_str!("../../tests/fixtures/britney/proposed-migration/update_excuses_by_team.yaml"))) {
            if let Ok(points) = by_team_points("u", &text, "tumbling", now()) {
                encode_all(&points);
                for p in &points {
                    prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
                    prop_assert!(p.tags.get("team").is_some_and(|t| !t.is_empty()));
                    let Some(crate::model::point::FieldValue::Integer(count)) = p.fields.get("count") else {
                        panic!("count is {:?}", p.fields.get("count"))
                    };
                    let Some(crate::model::point::FieldValue::Float(age)) = p.fields.get("age") else {
                        panic!("age is {:?}", p.fields.get("age"))
                    };
                    prop_assert!(*count >= 0);
                    if *count == 0 {
                        prop_assert_eq!(*age, 0.0);
                    } else {
                        prop_assert!(*age > STUCK_AGE_DAYS, "{}", age);
                    }
                }
            }
        }

        /// A YAML built from parts (teams with items of ages in days, some
        /// items without an age; team names with a `-`, so that none reads
        /// as a YAML 1.1 boolean such as `y` or `on`) gives per team the items stuck over three
        /// days and their mean age.
        #[test]
        fn by_team_yaml_built_from_parts_reads_back(
            teams in proptest::collection::btree_map("[a-z]{1,8}-[a-z-]{0,8}", proptest::collection::vec(proptest::option::of(0u32..40), 0..6), 0..5),
        ) {
            let mut yaml = String::new();
            let mut want = Vec::new();
            for (team, items) in &teams {
                if items.is_empty() {
                    yaml.push_str(&format!("{team}: []\n"));
                } else {
                    yaml.push_str(&format!("{team}:\n"));
                }
                let mut stuck = Vec::new();
                for item in items {
                    match item {
                        Some(half_days) => {
                            let age = f64::from(*half_days) / 2.0;
                            yaml.push_str(&format!("- age: {age:?}\n  item-name: foo\n"));
                            if age > 3.0 {
                                stuck.push(age);
                            }
                        }
                        None => yaml.push_str("- item-name: bar\n"),
                    }
                }
                let mean = if stuck.is_empty() { 0.0 } else { stuck.iter().sum::<f64>() / stuck.len() as f64 };
                want.push((team.clone(), stuck.len() as i64, mean));
            }
            let points = by_team_points("u", &yaml, "tumbling", now()).expect("a mapping of teams");
            let got: Vec<(String, i64, f64)> = points
                .iter()
                .map(|p| match (p.fields.get("count"), p.fields.get("age")) {
                    (Some(crate::model::point::FieldValue::Integer(n)), Some(crate::model::point::FieldValue::Float(a))) => (p.tags["team"].clone(), *n, *a),
                    other => panic!("fields {other:?}"),
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
