//! ubuntu_archive: the archive team's reports on the devel series, its
//! review queue and its bugs.
//!
//! What it writes: [`schema`].
//!
//! Sources: [`ARCHIVE_TEAM`] (the CSV and text reports),
//! [`LAUNCHPAD_CODE`] (`~ubuntu-archive/+activereviews`) and Launchpad
//! (the devel series = the current series, its architectures, and
//! `searchTasks` counts of the `ubuntu-archive` team). Six parts, each
//! failing alone (logged, the others still report); the collector fails
//! only when every part failed.
//!
//! 1. `nbs.csv`, 2. `component-mismatches.csv` / `component-mismatches-proposed.csv`:
//!    only the last 2048 bytes are fetched (`Range`); when that tail does not
//!    start the document its first line is a fragment and is dropped. Lines
//!    of the last 12 hours become points with their own time; malformed
//!    lines (wrong number of columns, non-integers, headers) are skipped.
//!    After downtime (catch-up, [`crate::model::catch_up`]) every line newer than
//!    the newest one written before (without one: the option
//!    `catch_up_from`, if given) is read, up to the option
//!    `max_catch_up`: the `Range` grows (×8 each time) until the tail's
//!    first line is old enough, or the tail is the whole document.
//! 3. `proposed-migration/<devel>_uninst.txt` / `_outdate.txt`: the
//!    `<count> <arch>` lines after `* summary` up to the first blank line;
//!    every devel architecture gets a point (0 when not listed).
//! 4. `priority-mismatches.txt`: package names per architecture section.
//! 5. `+activereviews`: merge-proposal links under the headings of reviews
//!    the team is asked for.
//! 6. Bug tasks the team is subscribed to / assigned to.
//!
//! Every document is asked for at once, while Launchpad is asked for the
//! devel series (parts 1, 2 and 4 need it only to build points); the
//! uninst/outdate reports, named after the devel series, wait for its name
//! only, not for its architectures.

use crate::collector::LAUNCHPAD;
use crate::collector::{
    Collector, CollectorError, Configured, Context, OptionError, Rows, Series, Spec, merge_parts,
};
use crate::config::SourceUrl;
use crate::model::catch_up::{self, Cutoff};
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, int, tag};
use crate::model::timespan::TimeSpan;
use crate::sources::SourceError;
use crate::sources::http::{Tail, join};
use crate::sources::reports::{generated_line, parse_rfc2822, read_tail, tail_lines};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The collector: its spec and its typed options.
pub struct UbuntuArchive {
    spec: Spec,
    options: Configured<catch_up::Options>,
}

/// The archive team's reports.
pub static ARCHIVE_TEAM: SourceUrl = SourceUrl::new(
    "archive_team",
    "https://ubuntu-archive-team.ubuntu.com/",
    "the archive team's CSV and text reports",
    "ubuntu_archive/",
);

/// Launchpad's code site (merge proposals).
pub static LAUNCHPAD_CODE: SourceUrl = SourceUrl::new(
    "launchpad_code",
    "https://code.launchpad.net/",
    "Launchpad's code pages (~ubuntu-archive/+activereviews)",
    "launchpad_code/",
);

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![
        Measurement::new(
            "nbs_stats",
            &[tag("release", "")],
            &[int("removable", ""), int("total", "")],
        )
        .timed("the line's time"),
        Measurement::new(
            "component_mismatch_stats",
            &[
                tag("release", ""),
                tag("pocket", "`release`/`proposed`"),
                tag("action", "`promotion`/`demotion`"),
                tag("type", "`source`/`binary`"),
            ],
            &[int("count", "")],
        )
        .timed("the line's time"),
        Measurement::new(
            "uninst_stats",
            &[tag("release", ""), tag("arch", "")],
            &[int("count", "")],
        )
        .timed("the report's `Generated`"),
        Measurement::new(
            "outdate_stats",
            &[tag("release", ""), tag("arch", "")],
            &[int("count", "")],
        )
        .timed("the report's `Generated`"),
        Measurement::new(
            "priority_mismatch_stats",
            &[tag("release", ""), tag("arch", "")],
            &[int("count", "")],
        )
        .timed("the report's `Generated`"),
        Measurement::new("ubuntu_archive_reviews", &[], &[int("count", "")]),
        Measurement::new(
            "ubuntu_archive_bugs",
            &[tag("type", "`subscribed`/`assigned`")],
            &[int("count", "")],
        ),
    ]
}

/// The Launchpad team whose reviews and bugs are counted.
const TEAM: &str = "ubuntu-archive";

/// Bytes fetched from the end of each CSV.
const TAIL_BYTES: u64 = 2048;

type Part = Result<Vec<Point>, CollectorError>;

/// The devel series and its architectures, from Launchpad.
#[derive(Debug, Clone)]
struct Devel {
    series: String,
    archs: Vec<String>,
}

/// A Launchpad answer awaited by several parts.
type Pending<'a, T> = Shared<BoxFuture<'a, Result<T, CollectorError>>>;

fn devel_unknown(e: SourceError) -> CollectorError {
    // Launchpad out of reach is said as such, once per host.
    if e.is_unreachable() {
        return e.into();
    }
    CollectorError::Other(format!("the devel series is unknown (Launchpad: {e})"))
}

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::Archive,
        title: "Archive reports (devel series)".into(),
        panels: vec![
            Panel::new(
                Kind::Timeseries,
                "NBS: binaries not built from source",
                "nbs_stats",
                &["removable", "total"],
                &["release"],
            ),
            Panel::new(
                Kind::Timeseries,
                "Component mismatches",
                "component_mismatch_stats",
                &["count"],
                &["release", "pocket", "action", "type"],
            ),
            Panel::new(
                Kind::Timeseries,
                "Uninstallable packages by architecture",
                "uninst_stats",
                &["count"],
                &["release", "arch"],
            ),
            Panel::new(
                Kind::Timeseries,
                "Out-of-date packages by architecture",
                "outdate_stats",
                &["count"],
                &["release", "arch"],
            ),
            Panel::new(
                Kind::Timeseries,
                "Priority mismatches by architecture",
                "priority_mismatch_stats",
                &["count"],
                &["release", "arch"],
            ),
            Panel::new(
                Kind::Stat,
                "Archive team: active reviews",
                "ubuntu_archive_reviews",
                &["count"],
                &[],
            )
            .width(6)
            .describe("Merge proposals awaiting review by ~ubuntu-archive."),
            Panel::new(
                Kind::Stat,
                "Archive team: bugs",
                "ubuntu_archive_bugs",
                &["count"],
                &["type"],
            )
            .width(6)
            .describe("Bug tasks ~ubuntu-archive is subscribed to, and assigned to."),
        ],
    }
}

impl Default for UbuntuArchive {
    fn default() -> UbuntuArchive {
        UbuntuArchive {
            spec: Spec::new(
                "ubuntu_archive",
                "archive team reports on the devel series (NBS, component and priority mismatches, uninstallable and out-of-date packages), its reviews and bugs",
            )
            .interval(TimeSpan::hours(1))
            .schema(schema())
            .sources(vec![ARCHIVE_TEAM.clone(), LAUNCHPAD_CODE.clone(), LAUNCHPAD.clone()])
            .panels(panels())
            .options(catch_up::OPTIONS),
            options: Configured::default(),
        }
    }
}

#[async_trait::async_trait]
impl Collector for UbuntuArchive {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn configure(&self, options: &toml::Table) -> Result<Option<Box<dyn Collector>>, OptionError> {
        Ok(Some(Box::new(UbuntuArchive {
            spec: self.spec.clone(),
            options: Configured::new(options)?,
        })))
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let ctx = &ctx.with_options(self.options.current(&ctx.options)?);
        let base = ctx.source(&ARCHIVE_TEAM);
        let lp = ctx.launchpad();
        // Both through the run's cache: the distribution and its series are
        // read once.
        let name: Pending<String> = lp
            .devel_series_name()
            .map(|r| r.map_err(devel_unknown))
            .boxed()
            .shared();
        let devel: Pending<Devel> = lp
            .devel_architectures()
            .map(|r| {
                r.map(|(series, archs)| Devel { series, archs })
                    .map_err(devel_unknown)
            })
            .boxed()
            .shared();
        let (nbs, mismatches, reports, priority, reviews, bugs) = futures::join!(
            nbs(ctx, base, devel.clone()),
            component_mismatches(ctx, base, devel.clone()),
            arch_reports(ctx, base, name, devel.clone()),
            priority_mismatches(ctx, base, devel),
            reviews(ctx),
            bugs(ctx)
        );
        merge_parts(
            "ubuntu_archive",
            vec![
                ("nbs.csv", nbs),
                ("component mismatches", mismatches),
                ("uninst/outdate reports", reports),
                ("priority-mismatches.txt", priority),
                ("active reviews", reviews),
                ("bugs", bugs),
            ],
        )
    }

    fn time_series(&self) -> Vec<Series> {
        let series = |name, file, rows| Series {
            name,
            base: ARCHIVE_TEAM.clone(),
            file,
            rows,
        };
        vec![
            series("nbs", "nbs.csv", || Box::new(NbsRows)),
            series("component_mismatches", "component-mismatches.csv", || {
                Box::new(MismatchRows("release"))
            }),
            series(
                "component_mismatches_proposed",
                "component-mismatches-proposed.csv",
                || Box::new(MismatchRows("proposed")),
            ),
        ]
    }
}

/// `nbs.csv` read by `backfill`: `time,removable,total`.
struct NbsRows;

impl Rows for NbsRows {
    fn row(&self, line: &str, devel: &str) -> Result<(DateTime<Utc>, Vec<Point>), String> {
        nbs_row(line, devel)
            .map(|(t, p)| (t, vec![p]))
            .ok_or_else(|| {
                "not 3 integers (time in Unix milliseconds, removable, total)".to_owned()
            })
    }
}

/// `component-mismatches*.csv` read by `backfill`, with the `pocket` tag.
struct MismatchRows(&'static str);

impl Rows for MismatchRows {
    fn row(&self, line: &str, devel: &str) -> Result<(DateTime<Utc>, Vec<Point>), String> {
        mismatch_row(line, devel, self.0)
            .ok_or_else(|| "not 5 integers (time in Unix milliseconds and 4 counts)".to_owned())
    }
}

// ---- parts 1 and 2: the CSV tails

/// A line of exactly `n` comma-separated integers, the first a time in Unix
/// milliseconds; `None` for any other line.
fn int_columns(line: &str, n: usize) -> Option<(DateTime<Utc>, Vec<i64>)> {
    let cols: Vec<i64> = line
        .split(',')
        .map(|c| c.trim().parse::<i64>().ok())
        .collect::<Option<_>>()?;
    if cols.len() != n {
        return None;
    }
    let time = DateTime::from_timestamp_millis(cols[0])?;
    Some((time, cols[1..].to_vec()))
}

/// The tail of the CSV at `url` (rows of `n` integer columns) that holds
/// every row `cutoff` takes: [`TAIL_BYTES`] first, then eight times more
/// each time the tail's first row is still newer than the cutoff, until it
/// is not or the tail is the whole document. The newest row read is noted
/// for the catch-up mark; a mark newer than every row is warned about.
async fn csv_tail(
    ctx: &Context,
    url: &str,
    cutoff: &Cutoff,
    n: usize,
) -> Result<Tail, CollectorError> {
    let tail = read_tail(&ctx.http, url, TAIL_BYTES, |tail| {
        tail_lines(tail)
            .find_map(|l| int_columns(l, n))
            .is_some_and(|(t, _)| !cutoff.takes(t))
    })
    .await?;
    let newest = tail_lines(&tail)
        .filter_map(|l| int_columns(l, n))
        .map(|(t, _)| t)
        .max();
    if let Some(w) = cutoff.shrunk(url, newest) {
        tracing::warn!("ubuntu_archive: {w}");
    }
    if let Some(t) = newest {
        ctx.note_row(url, t);
    }
    Ok(tail)
}

/// Which rows of `url` this run reads.
fn cutoff(ctx: &Context, url: &str) -> Result<Cutoff, CollectorError> {
    let options: catch_up::Options = ctx.options_as()?;
    Ok(ctx.cutoff("ubuntu_archive", url, &options))
}

async fn nbs(ctx: &Context, base: &str, devel: Pending<'_, Devel>) -> Part {
    let url = join(base, "nbs.csv");
    let cutoff = cutoff(ctx, &url)?;
    let (tail, devel) = futures::join!(csv_tail(ctx, &url, &cutoff, 3), devel);
    let devel = devel?;
    Ok(nbs_points(&url, &tail?, &devel.series, cutoff.after))
}

/// The points of the lines newer than `after`.
fn nbs_points(url: &str, tail: &Tail, devel: &str, after: DateTime<Utc>) -> Vec<Point> {
    let mut points = Vec::new();
    for line in tail_lines(tail) {
        let Some((time, point)) = nbs_row(line, devel) else {
            tracing::debug!(
                "ubuntu_archive: {url}: line {line:?} is not time,removable,total; skipped"
            );
            continue;
        };
        if time > after {
            points.push(point);
        }
    }
    points
}

/// The point of one `nbs.csv` line, `None` for a malformed one.
pub fn nbs_row(line: &str, devel: &str) -> Option<(DateTime<Utc>, Point)> {
    let (time, v) = int_columns(line, 3)?;
    Some((
        time,
        Point::new("nbs_stats")
            .tag("release", devel)
            .field("removable", v[0])
            .field("total", v[1])
            .at(time),
    ))
}

/// The four points of one `component-mismatches*.csv` line (`pocket`
/// `release` or `proposed`), `None` for a malformed one.
pub fn mismatch_row(line: &str, devel: &str, pocket: &str) -> Option<(DateTime<Utc>, Vec<Point>)> {
    let (time, v) = int_columns(line, 5)?;
    let points = MISMATCH_COLUMNS
        .iter()
        .zip(v)
        .map(|((action, kind), count)| {
            Point::new("component_mismatch_stats")
                .tag("release", devel)
                .tag("pocket", pocket)
                .tag("action", *action)
                .tag("type", *kind)
                .field("count", count)
                .at(time)
        })
        .collect();
    Some((time, points))
}

/// The four counts of a component-mismatches line, in column order.
const MISMATCH_COLUMNS: [(&str, &str); 4] = [
    ("promotion", "source"),
    ("promotion", "binary"),
    ("demotion", "source"),
    ("demotion", "binary"),
];

async fn component_mismatches(ctx: &Context, base: &str, devel: Pending<'_, Devel>) -> Part {
    let fetch = |file: &'static str| async move {
        let url = join(base, file);
        let tail = match cutoff(ctx, &url) {
            Ok(c) => csv_tail(ctx, &url, &c, 5).await.map(|t| (t, c.after)),
            Err(e) => Err(e),
        };
        (url, tail)
    };
    let (release, proposed, devel) = futures::join!(
        fetch("component-mismatches.csv"),
        fetch("component-mismatches-proposed.csv"),
        devel
    );
    let devel = devel?;
    type Fetched = Result<(Tail, DateTime<Utc>), CollectorError>;
    let points = |pocket: &str, (url, tail): (String, Fetched)| -> Part {
        let (tail, after) = tail?;
        Ok(mismatch_points(&url, &tail, &devel.series, pocket, after))
    };
    let (release, proposed) = (points("release", release), points("proposed", proposed));
    // Sub-parts, each failing alone.
    merge_parts(
        "component mismatches",
        [("pocket release", release), ("pocket proposed", proposed)],
    )
}

fn mismatch_points(
    url: &str,
    tail: &Tail,
    devel: &str,
    pocket: &str,
    after: DateTime<Utc>,
) -> Vec<Point> {
    let mut points = Vec::new();
    for line in tail_lines(tail) {
        let Some((time, row)) = mismatch_row(line, devel, pocket) else {
            tracing::debug!("ubuntu_archive: {url}: line {line:?} is not five integers; skipped");
            continue;
        };
        if time > after {
            points.extend(row);
        }
    }
    points
}

// ---- part 3: uninst / outdate

async fn arch_reports(
    ctx: &Context,
    base: &str,
    name: Pending<'_, String>,
    devel: Pending<'_, Devel>,
) -> Part {
    let name = name.await?;
    let fetch = |suffix: &'static str| {
        let url = join(base, &format!("proposed-migration/{name}_{suffix}.txt"));
        async move {
            let text = ctx.http.get_text(&url).await.map_err(CollectorError::from);
            (url, text)
        }
    };
    let (uninst, outdate, devel) = futures::join!(fetch("uninst"), fetch("outdate"), devel);
    let devel = devel?;
    let points =
        |measurement: &str, (url, text): (String, Result<String, CollectorError>)| -> Part {
            let report = parse_arch_report(&text?).map_err(|m| CollectorError::parse(&url, m))?;
            Ok(arch_report_points(measurement, &report, &devel))
        };
    let (uninst, outdate) = (
        points("uninst_stats", uninst),
        points("outdate_stats", outdate),
    );
    merge_parts(
        "uninst/outdate reports",
        [("uninst report", uninst), ("outdate report", outdate)],
    )
}

#[derive(Debug, PartialEq)]
struct ArchReport {
    generated: DateTime<Utc>,
    /// `(arch, count)` in the order listed; an arch listed twice keeps its
    /// last count.
    counts: Vec<(String, i64)>,
}

static SUMMARY_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(\d+)\s+(\S+)\s*$").expect("valid regex"));

fn parse_arch_report(text: &str) -> Result<ArchReport, String> {
    let generated = text
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("# Generated:"))
        .ok_or("no `# Generated:` line")?;
    let generated = parse_rfc2822(generated)
        .ok_or_else(|| format!("`# Generated:{generated}` is not an RFC 2822 date"))?;
    let mut lines = text.lines();
    if !lines.any(|l| l.trim() == "* summary") {
        return Err("no `* summary` block".into());
    }
    let mut counts: Vec<(String, i64)> = Vec::new();
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let Some(c) = SUMMARY_LINE.captures(line) else {
            continue;
        };
        let Ok(count) = c[1].parse::<i64>() else {
            continue;
        };
        let arch = &c[2];
        match counts.iter_mut().find(|(a, _)| a == arch) {
            Some(entry) => entry.1 = count,
            None => counts.push((arch.to_owned(), count)),
        }
    }
    Ok(ArchReport { generated, counts })
}

/// A point per devel architecture (0 when not listed), then one per listed
/// architecture Launchpad does not know.
fn arch_report_points(measurement: &str, report: &ArchReport, devel: &Devel) -> Vec<Point> {
    let listed = |arch: &str| {
        report
            .counts
            .iter()
            .find(|(a, _)| a == arch)
            .map(|(_, c)| *c)
    };
    let known = devel
        .archs
        .iter()
        .map(|a| (a.as_str(), listed(a).unwrap_or(0)));
    let extra = report
        .counts
        .iter()
        .filter(|(a, _)| !devel.archs.contains(a))
        .map(|(a, c)| (a.as_str(), *c));
    known
        .chain(extra)
        .map(|(arch, count)| {
            Point::new(measurement)
                .tag("release", devel.series.as_str())
                .tag("arch", arch)
                .field("count", count)
                .at(report.generated)
        })
        .collect()
}

// ---- part 4: priority mismatches

async fn priority_mismatches(ctx: &Context, base: &str, devel: Pending<'_, Devel>) -> Part {
    let url = join(base, "priority-mismatches.txt");
    let (text, devel) = futures::join!(ctx.http.get_text(&url), devel);
    let devel = devel?;
    let text = text?;
    let (generated, counts) =
        parse_priority_mismatches(&text).map_err(|m| CollectorError::parse(&url, m))?;
    Ok(devel
        .archs
        .iter()
        .map(|arch| {
            Point::new("priority_mismatch_stats")
                .tag("release", devel.series.as_str())
                .tag("arch", arch.as_str())
                .field("count", counts.get(arch).copied().unwrap_or(0))
                .at(generated)
        })
        .collect())
}

/// The `Generated: Day Mon DD HH:MM:SS GMT YYYY` time (UTC). The day of the
/// week is not checked against the date.
fn parse_ctime_gmt(s: &str) -> Option<DateTime<Utc>> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let [_day, month, mday, time, "GMT" | "UTC", year] = words.as_slice() else {
        return None;
    };
    NaiveDateTime::parse_from_str(
        &format!("{month} {mday} {time} {year}"),
        "%b %d %H:%M:%S %Y",
    )
    .ok()
    .map(|t| t.and_utc())
}

/// A line made only of `c` (at least one), white space around allowed.
fn is_rule(line: &str, c: char) -> bool {
    let t = line.trim();
    !t.is_empty() && t.chars().all(|x| x == c)
}

/// The `Generated:` time and the number of package names per architecture
/// section of `priority-mismatches.txt`.
fn parse_priority_mismatches(
    text: &str,
) -> Result<(DateTime<Utc>, HashMap<String, usize>), String> {
    let (line, rest) = generated_line(text).ok_or("no `Generated:` line")?;
    let generated = parse_ctime_gmt(rest).ok_or_else(|| {
        format!(
            "{:?} is not `Generated: Day Mon DD HH:MM:SS GMT YYYY`",
            line.trim()
        )
    })?;

    let lines: Vec<&str> = text.lines().collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut arch: Option<&str> = None;
    let mut in_packages = false;
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).copied().unwrap_or("");
        let blank = line.trim().is_empty();
        if is_rule(line, '=') {
            in_packages = false;
        } else if is_rule(line, '-') {
            // the end of a sub-section header: package names follow
            in_packages = true;
        } else if blank {
            in_packages = false;
        } else if is_rule(next, '=') {
            // an architecture name, underlined by `=`
            arch = Some(line.trim());
            counts.entry(line.trim().to_owned()).or_insert(0);
            in_packages = false;
        } else if is_rule(next, '-') {
            // the (last line of a) sub-section header: never a package
            in_packages = false;
        } else if in_packages
            && !line.trim().contains(char::is_whitespace)
            && let Some(a) = arch
        {
            *counts.entry(a.to_owned()).or_insert(0) += 1;
        }
    }
    Ok((generated, counts))
}

// ---- part 5: active reviews

async fn reviews(ctx: &Context) -> Part {
    let url = join(
        ctx.source(&LAUNCHPAD_CODE),
        &format!("~{TEAM}/+activereviews"),
    );
    let html = ctx.http.get_text(&url).await?;
    Ok(vec![
        Point::new("ubuntu_archive_reviews")
            .field("count", count_reviews(&html))
            .at(ctx.now),
    ])
}

static MP_HREF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^/.*/\+merge/\d+$").expect("valid regex"));
static CAN_DO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(Requested reviews)|(Reviews) .* can do$").expect("valid regex")
});

/// Links to merge proposals under a `td.section-heading` whose text (white
/// space trimmed) matches [`CAN_DO`], in document order; every link counts,
/// also two to the same proposal.
fn count_reviews(html: &str) -> usize {
    let doc = scraper::Html::parse_document(html);
    let mut counting = false;
    let mut count = 0;
    for el in doc.root_element().descendent_elements() {
        let v = el.value();
        match v.name() {
            "td" if v.has_class("section-heading", scraper::CaseSensitivity::CaseSensitive) => {
                let text: String = el.text().collect();
                counting = CAN_DO.is_match(text.trim());
            }
            "a" if counting && v.attr("href").is_some_and(|h| MP_HREF.is_match(h)) => count += 1,
            _ => {}
        }
    }
    count
}

// ---- part 6: bugs

async fn bugs(ctx: &Context) -> Part {
    let lp = ctx.launchpad();
    let team = lp.resource_url(&format!("~{TEAM}"));
    let count = |param: &'static str| {
        let lp = lp.clone();
        let team = team.clone();
        async move {
            let n = lp
                .count(&team, &[("ws.op", "searchTasks"), (param, team.as_str())])
                .await?;
            Ok(n)
        }
    };
    let (subscribed, assigned) = futures::join!(count("bug_subscriber"), count("assignee"));
    let point = |kind: &str, r: Result<u64, CollectorError>| -> Part {
        r.map(|n| {
            vec![
                Point::new("ubuntu_archive_bugs")
                    .tag("type", kind)
                    .field("count", n)
                    .at(ctx.now),
            ]
        })
    };
    merge_parts(
        "bugs",
        [
            ("subscribed bugs", point("subscribed", subscribed)),
            ("assigned bugs", point("assigned", assigned)),
        ],
    )
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

    /// A fresh station's cutoff: the last 12 hours.
    fn win() -> DateTime<Utc> {
        now() - chrono::Duration::hours(crate::model::catch_up::WINDOW_HOURS)
    }

    fn tail(body: &str, from_start: bool) -> Tail {
        Tail {
            body: body.to_owned(),
            from_start,
        }
    }

    fn devel() -> Devel {
        Devel {
            series: "tumbling".into(),
            archs: vec!["amd64".into(), "arm64".into(), "s390x".into()],
        }
    }

    // ---- parts 1 and 2

    #[test]
    fn a_partial_tail_drops_its_first_line() {
        // 1795500000000 would be in the window: whole, but dropped, since
        // a tail not starting the document cannot tell.
        let body = "1795500000000,1,2\n1795510000000,3,4\n";
        let got = lines(&nbs_points("u", &tail(body, false), "tumbling", win()));
        assert_eq!(
            got,
            ["nbs_stats,release=tumbling removable=3i,total=4i 1795510000000000000"]
        );
        let got = lines(&nbs_points(
            "u",
            &tail("0000,1,2\n1795510000000,3,4", false),
            "t",
            win(),
        ));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn a_whole_document_200_uses_every_line() {
        let body = "time,removable,total\n1795500000000,1,2\n1795510000000,3,4\n";
        let got = lines(&nbs_points("u", &tail(body, true), "tumbling", win()));
        assert_eq!(
            got,
            [
                "nbs_stats,release=tumbling removable=1i,total=2i 1795500000000000000",
                "nbs_stats,release=tumbling removable=3i,total=4i 1795510000000000000",
            ]
        );
    }

    #[test]
    fn nbs_lines_must_be_three_integers_within_12_hours() {
        let body = "1795478400000,1,1\n\
                    1795478400001,2,2\n\
                    1795500000000,1\n\
                    1795500000001,1,2,3\n\
                    1795500000002,x,3\n\
                    1795500000003,1.5,3\n\
                    1795500000004, 5 ,6\r\n\
                    \n";
        let got = lines(&nbs_points("u", &tail(body, true), "tumbling", win()));
        assert_eq!(
            got,
            [
                "nbs_stats,release=tumbling removable=2i,total=2i 1795478400001000000",
                "nbs_stats,release=tumbling removable=5i,total=6i 1795500000004000000",
            ]
        );
    }

    #[test]
    fn component_mismatch_lines_give_four_points_or_none() {
        let body = "time,source promotions,binary promotions,source demotions,binary demotions\n\
                    1795400000000,9,9,9,9\n\
                    1795500000000,1,2,3,4\n\
                    1795500000001,1,2,3\n\
                    1795500000002,1,2,3,4,5\n\
                    1795500000003,1,2,x,4\n";
        let got = lines(&mismatch_points(
            "u",
            &tail(body, true),
            "tumbling",
            "proposed",
            win(),
        ));
        assert_eq!(
            got,
            [
                "component_mismatch_stats,action=demotion,pocket=proposed,release=tumbling,type=binary count=4i 1795500000000000000",
                "component_mismatch_stats,action=demotion,pocket=proposed,release=tumbling,type=source count=3i 1795500000000000000",
                "component_mismatch_stats,action=promotion,pocket=proposed,release=tumbling,type=binary count=2i 1795500000000000000",
                "component_mismatch_stats,action=promotion,pocket=proposed,release=tumbling,type=source count=1i 1795500000000000000",
            ]
        );
    }

    // ---- part 3

    const UNINST: &str = "* amd64
  foo (1.0-1): libfoo1 foo-utils

* summary
   2 amd64
  12 s390x
   5 powerpc
   7 riscv64 and more
   3 amd64

* s390x
   9 arm64
# Generated: Tue,  3 Nov 2026 11:02:37 +0000
";

    #[test]
    fn summary_counts_up_to_the_first_blank_line() {
        let r = parse_arch_report(UNINST).unwrap();
        assert_eq!(
            r.generated,
            Utc.with_ymd_and_hms(2026, 11, 3, 11, 2, 37).unwrap()
        );
        assert_eq!(
            r.counts,
            [
                ("amd64".to_owned(), 3),
                ("s390x".to_owned(), 12),
                ("powerpc".to_owned(), 5)
            ]
        );
        let got = lines(&arch_report_points("uninst_stats", &r, &devel()));
        assert_eq!(
            got,
            [
                "uninst_stats,arch=amd64,release=tumbling count=3i 1793703757000000000",
                "uninst_stats,arch=arm64,release=tumbling count=0i 1793703757000000000",
                "uninst_stats,arch=powerpc,release=tumbling count=5i 1793703757000000000",
                "uninst_stats,arch=s390x,release=tumbling count=12i 1793703757000000000",
            ]
        );
    }

    #[test]
    fn summary_at_the_end_of_the_file() {
        let r =
            parse_arch_report("* summary\n  4 arm64\n# Generated: Tue, 24 Nov 2026 10:00:00 +0000")
                .unwrap();
        assert_eq!(r.counts, [("arm64".to_owned(), 4)]);
    }

    #[test]
    fn no_summary_or_no_generated_is_an_error() {
        assert!(
            parse_arch_report("* amd64\n foo\n# Generated: Tue, 24 Nov 2026 10:00:00 +0000\n")
                .is_err()
        );
        assert!(parse_arch_report("* summary\n   2 amd64\n").is_err());
        assert!(parse_arch_report("* summary\n   2 amd64\n# Generated: yesterday\n").is_err());
        assert!(parse_arch_report("").is_err());
        // an empty summary is a summary of zeros
        let r = parse_arch_report("* summary\n\n# Generated: Tue, 24 Nov 2026 10:00:00 +0000\n")
            .unwrap();
        assert!(r.counts.is_empty());
    }

    // ---- part 4

    const PRIORITY: &str = "Generated: Tue Nov 24 10:15:02 GMT 2026

Priority mismatches for tumbling
================================

amd64
=====
note

Packages with priority standard but in universe
-----------------------------------------------
libfoo1
libbar2
not a package

Packages that are seeded but have the wrong
priority
-------------------------------------------
baz
Packages whose priority should be raised because
important
-------------------------------------------
qux

arm64
=====

Packages with priority mismatches
---------------------------------
libfoo1

powerpc
=======

Packages with priority mismatches
---------------------------------
oldpkg
";

    #[test]
    fn priority_mismatches_per_arch() {
        let (generated, counts) = parse_priority_mismatches(PRIORITY).unwrap();
        assert_eq!(
            generated,
            Utc.with_ymd_and_hms(2026, 11, 24, 10, 15, 2).unwrap()
        );
        assert_eq!(counts.get("amd64"), Some(&4));
        assert_eq!(counts.get("arm64"), Some(&1));
        assert_eq!(counts.get("powerpc"), Some(&1));
        assert_eq!(counts.get("s390x"), None);
    }

    #[test]
    fn priority_generated_forms() {
        let t = parse_ctime_gmt(" Wed Nov  4 01:02:03 GMT 2026").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 11, 4, 1, 2, 3).unwrap());
        assert!(parse_ctime_gmt("Tue Nov 24 10:15:02 2026 GMT").is_none());
        assert!(parse_ctime_gmt("yesterday").is_none());
        assert!(parse_priority_mismatches("amd64\n=====\n").is_err());
        assert!(parse_priority_mismatches("Generated: soon\n").is_err());
    }

    // ---- part 5

    #[test]
    fn reviews_count_links_under_requested_headings() {
        let html = r#"<html><body>
<a href="/~x/foo/+git/foo/+merge/1">before any heading</a>
<table class="listing">
<tr><td class="section-heading">Reviews Ubuntu Archive has to do</td></tr>
<tr><td><a href="/~x/foo/+git/foo/+merge/2">2</a></td></tr>
<tr><td colspan="4" class="section-heading">
   Reviews Ubuntu Archive can do
</td></tr>
<tr><td><a href="/~x/foo/+git/foo/+merge/3">3</a> <a href="/~x/foo/+git/foo/+merge/3">again</a></td>
    <td><a href="/~x">person</a> <a href="https://code.launchpad.net/~x/foo/+git/foo/+merge/4">absolute</a>
    <a href="/~x/foo/+git/foo/+merge/5/+index">index</a></td></tr>
<tr><td class="section-heading other">Requested reviews by Ubuntu Archive</td></tr>
<tr><td><a href="/~y/bar/+merge/6">6</a></td></tr>
<tr><th class="section-heading">Reviews Ubuntu Archive can do</th></tr>
<tr><td><a href="/~y/bar/+merge/7">counted: a th is no heading cell</a></td></tr>
<tr><td class="section-heading">Other reviews Ubuntu Archive is not actively reviewing</td></tr>
<tr><td><a href="/~y/bar/+merge/8">8</a></td></tr>
</table></body></html>"#;
        assert_eq!(count_reviews(html), 4);
        assert_eq!(count_reviews(""), 0);
    }
}

/// Property tests: every document parser on arbitrary and mutated input,
/// and on valid documents built from parts, whose figures must come back.
#[cfg(test)]
mod props {
    use super::*;
    use crate::model::point::FieldValue;
    use crate::support::proptest_support::{CASES, encode_all, text_like};
    use crate::support::test_support::now;
    use proptest::prelude::*;

    /// The cutoff of the CSV tests: the rows strictly after it count.
    fn after() -> DateTime<Utc> {
        now() - chrono::Duration::hours(12)
    }

    fn int(p: &Point, field: &str) -> Option<i64> {
        match p.fields.get(field) {
            Some(FieldValue::Integer(n)) => Some(*n),
            _ => None,
        }
    }

    /// The integers of a line of `n` comma-separated ones.
    fn ints(line: &str, n: usize) -> Option<Vec<i64>> {
        let v: Vec<i64> = line
            .split(',')
            .map(|c| c.trim().parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == n).then_some(v)
    }

    /// A time in Unix milliseconds around the cutoff, the cutoff itself
    /// included (not after it: not counted).
    fn millis() -> impl Strategy<Value = i64> {
        let a = after().timestamp_millis();
        prop_oneof![
            1 => Just(a),
            1 => Just(a + 1),
            6 => (a - 2 * 86_400_000)..(a + 86_400_000),
        ]
    }

    /// CSV rows of `n` columns, each written with or without blanks around
    /// its cells, with lines that are not rows between them; the body as
    /// served (a tail not from the start begins with a fragment of a row,
    /// whole-looking, which must be dropped) and the rows to count.
    fn csv(n: usize, header: &'static str) -> impl Strategy<Value = (Tail, Vec<Vec<i64>>)> {
        let row = (
            millis(),
            proptest::collection::vec(any::<i64>(), n - 1),
            any::<bool>(),
            0u8..4,
        );
        (proptest::collection::vec(row, 0..12), any::<bool>()).prop_map(
            move |(rows, from_start)| {
                let fragment: Vec<String> = (0..n)
                    .map(|i| {
                        if i == 0 {
                            (after().timestamp_millis() + 5).to_string()
                        } else {
                            i.to_string()
                        }
                    })
                    .collect();
                let mut lines = vec![if from_start {
                    header.to_owned()
                } else {
                    fragment.join(",")
                }];
                let mut want = Vec::new();
                for (ms, counts, padded, junk) in rows {
                    let mut cells = vec![ms];
                    cells.extend(counts);
                    let sep = if padded { " , " } else { "," };
                    lines.push(
                        cells
                            .iter()
                            .map(i64::to_string)
                            .collect::<Vec<_>>()
                            .join(sep),
                    );
                    match junk {
                        0 => lines.push(String::new()),
                        1 => lines.push(format!("{ms},x")),
                        _ => {}
                    }
                    if ms > after().timestamp_millis() {
                        want.push(cells);
                    }
                }
                (
                    Tail {
                        body: lines.join("\n"),
                        from_start,
                    },
                    want,
                )
            },
        )
    }

    /// `(arch, count)` pairs, an arch listed twice now and then, and the
    /// `Generated:` time.
    fn summary() -> impl Strategy<Value = (Vec<(String, i64)>, i64)> {
        let arch = prop_oneof![
            "amd64|riscv64|arm64|s390x".prop_map(String::from),
            "[a-z0-9]{1,8}"
        ];
        (
            proptest::collection::vec((arch, 0i64..100_000), 0..8),
            1_700_000_000i64..1_900_000_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        /// Whatever the tail, each point is the `nbs_stats` of a complete
        /// line of three integers, newer than the cutoff, at that line's
        /// time: never more points than lines.
        #[test]
        fn nbs_csv_gives_only_the_points_of_its_rows(body in text_like(include_str!("../../tests/fixtures/ubuntu_archive/nbs.csv")), from_start in any::<bool>()) {
            let tail = Tail { body, from_start };
            let points = nbs_points("u", &tail, "tumbling", after());
            encode_all(&points);
            let rows: Vec<Vec<i64>> = tail_lines(&tail).filter_map(|l| ints(l, 3)).collect();
            prop_assert!(points.len() <= rows.len());
            for p in &points {
                prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
                prop_assert_eq!(p.measurement.as_str(), "nbs_stats");
                prop_assert_eq!(p.tags.get("release").map(String::as_str), Some("tumbling"));
                let t = p.timestamp.expect("timed");
                prop_assert!(t > after());
                let row = vec![t.timestamp_millis(), int(p, "removable").expect("removable"), int(p, "total").expect("total")];
                prop_assert!(rows.contains(&row), "{:?} is no row of the tail", row);
            }
        }

        /// A valid tail gives one point per row newer than the cutoff, in
        /// order, with its two counts.
        #[test]
        fn nbs_csv_rows_read_back((tail, want) in csv(3, "time,removable,total")) {
            let points = nbs_points("u", &tail, "tumbling", after());
            let got: Vec<Vec<i64>> = points.iter().map(|p| vec![
                p.timestamp.expect("timed").timestamp_millis(),
                int(p, "removable").expect("removable"),
                int(p, "total").expect("total"),
            ]).collect();
            prop_assert_eq!(got, want);
        }

        /// Whatever the tail, the points come four per complete line of
        /// five integers newer than the cutoff: promotions then demotions,
        /// source then binary, each with its column's count.
        #[test]
        fn mismatch_csv_gives_four_points_per_row(body in text_like(include_str!("../../tests/fixtures/ubuntu_archive/component-mismatches.csv")), from_start in any::<bool>()) {
            let tail = Tail { body, from_start };
            let points = mismatch_points("u", &tail, "tumbling", "release", after());
            encode_all(&points);
            let rows: Vec<Vec<i64>> = tail_lines(&tail).filter_map(|l| ints(l, 5)).collect();
            prop_assert_eq!(points.len() % 4, 0);
            prop_assert!(points.len() <= 4 * rows.len());
            for row in points.chunks(4) {
                let t = row[0].timestamp.expect("timed");
                prop_assert!(t > after());
                let mut cells = vec![t.timestamp_millis()];
                for (p, (action, kind)) in row.iter().zip(MISMATCH_COLUMNS) {
                    prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
                    prop_assert_eq!(p.timestamp, Some(t));
                    prop_assert_eq!(p.tags.get("release").map(String::as_str), Some("tumbling"));
                    prop_assert_eq!(p.tags.get("pocket").map(String::as_str), Some("release"));
                    prop_assert_eq!(p.tags.get("action").map(String::as_str), Some(action));
                    prop_assert_eq!(p.tags.get("type").map(String::as_str), Some(kind));
                    cells.push(int(p, "count").expect("count"));
                }
                prop_assert!(rows.contains(&cells), "{:?} is no row of the tail", cells);
            }
        }

        /// A valid tail gives each row newer than the cutoff back, in order.
        #[test]
        fn mismatch_csv_rows_read_back((tail, want) in csv(5, "time,source promotions,binary promotions,source demotions,binary demotions")) {
            let points = mismatch_points("u", &tail, "tumbling", "proposed", after());
            prop_assert!(points.iter().all(|p| p.tags.get("pocket").map(String::as_str) == Some("proposed")));
            let got: Vec<Vec<i64>> = points.chunks(4).map(|row| {
                let mut cells = vec![row[0].timestamp.expect("timed").timestamp_millis()];
                cells.extend(row.iter().map(|p| int(p, "count").expect("count")));
                cells
            }).collect();
            prop_assert_eq!(got, want);
        }

        /// A report that reads gives a point per devel architecture first
        /// (in Launchpad's order, 0 when not listed), then one per other
        /// listed architecture, all at the report's time.
        #[test]
        fn arch_report_gives_the_devel_archs_then_the_others(text in text_like(include_str!("../../tests/fixtures/ubuntu_archive/proposed-migration/tumbling_uninst.txt"))) {
            if let Ok(r) = parse_arch_report(&text) {
                let devel = Devel { series: "tumbling".into(), archs: vec!["amd64".into(), "riscv64".into()] };
                let points = arch_report_points("uninst_stats", &r, &devel);
                encode_all(&points);
                let extra: Vec<&(String, i64)> = r.counts.iter().filter(|(a, _)| !devel.archs.contains(a)).collect();
                prop_assert_eq!(points.len(), 2 + extra.len());
                let mut archs: Vec<&str> = r.counts.iter().map(|(a, _)| a.as_str()).collect();
                archs.sort_unstable();
                archs.dedup();
                prop_assert_eq!(archs.len(), r.counts.len(), "an arch listed twice");
                for (i, p) in points.iter().enumerate() {
                    prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
                    prop_assert_eq!(p.timestamp, Some(r.generated));
                    let arch = p.tags.get("arch").map(String::as_str).unwrap_or("");
                    let want = r.counts.iter().find(|(a, _)| a == arch).map_or(0, |(_, c)| *c);
                    prop_assert_eq!(int(p, "count"), Some(want));
                    match i {
                        0 => prop_assert_eq!(arch, "amd64"),
                        1 => prop_assert_eq!(arch, "riscv64"),
                        _ => prop_assert_eq!(arch, extra[i - 2].0.as_str()),
                    }
                }
            }
        }

        /// A valid report (another architecture's block before it, lines
        /// after it) reads back: each arch once, in the order first
        /// listed, with its last count, at the `Generated:` time.
        #[test]
        fn arch_report_summary_reads_back((listed, secs) in summary()) {
            let generated = DateTime::from_timestamp(secs, 0).expect("valid");
            let mut text = String::from("* amd64\n  foo (1.0-1): libfoo1\n\n* summary\n");
            for (arch, n) in &listed {
                text.push_str(&format!("  {n:>3} {arch}\n"));
            }
            text.push_str(&format!("\n  7 after-the-block\n# Generated: {}\n", generated.to_rfc2822()));
            let mut want: Vec<(String, i64)> = Vec::new();
            for (arch, n) in listed {
                match want.iter_mut().find(|(a, _)| *a == arch) {
                    Some(e) => e.1 = n,
                    None => want.push((arch, n)),
                }
            }
            prop_assert_eq!(parse_arch_report(&text), Ok(ArchReport { generated, counts: want }));
        }
        /// A report that reads counts no more packages than it has lines,
        /// under architectures that are lines of it, underlined by `=`.
        #[test]
        fn priority_mismatches_count_under_underlined_archs(text in text_like(include_str!("../../tests/fixtures/ubuntu_archive/priority-mismatches.txt"))) {
            let _ = parse_ctime_gmt(&text);
            if let Ok((_, counts)) = parse_priority_mismatches(&text) {
                let lines: Vec<&str> = text.lines().collect();
                prop_assert!(counts.values().sum::<usize>() <= lines.len());
                for arch in counts.keys() {
                    let underlined = lines.windows(2).any(|w| w[0].trim() == arch && is_rule(w[1], '='));
                    prop_assert!(underlined, "{:?} is no underlined line", arch);
                }
            }
        }

        /// A report built from parts (architectures, each with sections of
        /// packages under a header of one or two lines, its last line one
        /// word; a blank line between sections or not; notes that are not
        /// packages) gives its time and the packages per architecture.
        #[test]
        fn priority_mismatches_built_from_parts_read_back(
            secs in 1_700_000_000i64..1_900_000_000,
            archs in proptest::collection::btree_map(
                "[a-z][a-z0-9]{1,7}",
                proptest::collection::vec((any::<bool>(), any::<bool>(), proptest::collection::vec("[a-z0-9][a-z0-9.+-]{0,10}", 0..5)), 0..3),
                0..5,
            ),
        ) {
            let generated = DateTime::from_timestamp(secs, 0).expect("valid");
            let mut text = format!("Generated: {}\n\n", generated.format("%a %b %d %H:%M:%S GMT %Y"));
            let mut want: HashMap<String, usize> = HashMap::new();
            for (arch, sections) in &archs {
                text.push_str(&format!("{arch}\n{}\nnote: not a package\n\n", "=".repeat(arch.len())));
                let n = want.entry(arch.clone()).or_insert(0);
                for (two_lines, blank, packages) in sections {
                    let header = if *two_lines { "Packages whose priority should be raised because\nimportant" } else { "Packages with priority standard but in universe" };
                    text.push_str(&format!("{header}\n{}\n", "-".repeat(40)));
                    for p in packages {
                        text.push_str(&format!("{p}\n"));
                    }
                    if *blank {
                        text.push_str("not a package\n\n");
                    }
                    *n += packages.len();
                }
            }
            prop_assert_eq!(parse_priority_mismatches(&text), Ok((generated, want)));
        }

        /// Whatever the page, no more reviews than links.
        #[test]
        fn reviews_are_at_most_the_links(html in text_like(include_str!("../../tests/fixtures/launchpad_code/~ubuntu-archive/+activereviews/index.html"))) {
            prop_assert!(count_reviews(&html) <= html.to_ascii_lowercase().matches("href").count());
        }

        /// A page built from parts (sections under headings the team can
        /// or cannot do, links to merge proposals and to other pages)
        /// counts the merge proposals under the headings it can do.
        #[test]
        fn reviews_built_from_parts_count_what_can_be_done(
            before in 0usize..3,
            sections in proptest::collection::vec((0usize..4, proptest::collection::vec(0usize..4, 0..5)), 0..5),
        ) {
            const HEADINGS: [(&str, bool); 4] = [
                ("Reviews Ubuntu Archive can do", true),
                ("Requested reviews by Ubuntu Archive", true),
                ("Reviews Ubuntu Archive has to do", false),
                ("Other reviews Ubuntu Archive is not actively reviewing", false),
            ];
            const LINKS: [(&str, bool); 4] = [
                ("/~x/foo/+git/foo/+merge/12", true),
                ("/~x", false),
                ("https://code.launchpad.net/~x/foo/+merge/4", false),
                ("/~x/foo/+merge/5/+index", false),
            ];
            let link = |l: usize| format!("<a href=\"{}\">link</a>", LINKS[l].0);
            let mut html = String::from("<html><body>");
            html.push_str(&(0..before).map(|_| link(0)).collect::<String>());
            html.push_str("<table class=\"listing\">");
            let mut want = 0;
            for (heading, links) in &sections {
                let (text, can) = HEADINGS[*heading];
                html.push_str(&format!("<tr><td colspan=\"4\" class=\"section-heading\">\n  {text}\n</td></tr>"));
                for l in links {
                    html.push_str(&format!("<tr><td>{}</td></tr>", link(*l)));
                    if can && LINKS[*l].1 {
                        want += 1;
                    }
                }
            }
            html.push_str("</table></body></html>");
            prop_assert_eq!(count_reviews(&html), want);
        }
    }
}
