//! versions: the desktop team's package-version reports.
//!
//! What it writes: [`schema`].
//!
//! Source: [`VERSIONS`]. Its file `reports` lists one report name per
//! line; each report is a file of that name (percent-encoded in the URL, as
//! names may hold `,` or `=`) holding `category=value` lines. In both kinds
//! of file, CR and surrounding white space are stripped from each line and
//! blank lines are ignored. A line is split at its first `=`; the category
//! and the value are trimmed; the value must be a base-10 integer.
//!
//! Failures: `reports` unreadable is an error. A report file that cannot be
//! fetched (e.g. a 404) is logged and skipped; the other reports are still
//! reported, unless every report failed, which is an error (the base URL is
//! probably wrong). A line that is not `category=<integer>` (no `=`, an empty
//! category, a value that is not an integer) is skipped with a warning.

use crate::collector::{Collector, CollectorError, Context, Parts, Spec};
use crate::config::SourceUrl;
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, int, tag};
use crate::model::timespan::TimeSpan;
use crate::sources::http::{encode_segment, join};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// The collector: its spec.
pub struct Versions {
    spec: Spec,
}

/// The desktop team's versions reports.
pub static VERSIONS: SourceUrl = SourceUrl::new(
    "versions",
    "https://people.canonical.com/~platform/desktop/versions/stats/current/",
    "the `reports` list and one file per report",
    "versions/",
);

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![Measurement::new(
        "versions_script_stats",
        &[
            tag("report", ""),
            tag("category", ""),
            tag("series", "always `devel`"),
        ],
        &[int("count", "")],
    )]
}

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::Archive,
        title: "Desktop versions report".into(),
        panels: vec![
            Panel::new(
                Kind::Timeseries,
                "Packages by versions category",
                "versions_script_stats",
                &["count"],
                &["report", "category"],
            ),
            Panel::new(
                Kind::Table,
                "Versions report (latest)",
                "versions_script_stats",
                &["count"],
                &["series", "report", "category"],
            )
            .width(12),
        ],
    }
}

impl Default for Versions {
    fn default() -> Versions {
        Versions {
            spec: Spec::new(
                "versions",
                "counts per category of the desktop team's package-version reports",
            )
            .interval(TimeSpan::hours(1))
            .schema(schema())
            .sources(vec![VERSIONS.clone()])
            .panels(panels()),
        }
    }
}

#[async_trait::async_trait]
impl Collector for Versions {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let base = ctx.source(&VERSIONS);
        let list = ctx.http.get_text(&join(base, "reports")).await?;
        let names = report_names(&list);
        let mut fetches = Vec::new();
        for name in &names {
            let url = report_url(base, name);
            fetches.push(async move {
                let text = ctx.http.get_text(&url).await.map_err(CollectorError::from);
                (name.as_str(), url, text)
            });
        }
        // All together: the HTTP client's per-host limit keeps it polite.
        let results = futures::future::join_all(fetches).await;

        // Each report fails alone.
        let mut parts = Parts::new("versions");
        for (name, url, text) in results {
            let points = text.map(|text| report_points(&url, name, &text, ctx.now));
            parts.add(format!("report {name:?}"), points);
        }
        parts.finish()
    }
}

/// The URL of a report: its name is one percent-encoded path segment.
fn report_url(base: &str, name: &str) -> String {
    join(base, &encode_segment(name))
}

/// The report names of the `reports` file, without duplicates, in order.
fn report_names(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    clean_lines(text)
        .filter(|l| seen.insert(*l))
        .map(str::to_owned)
        .collect()
}

/// Lines with CR and surrounding white space stripped, blank ones left out.
/// A lone CR ends a line too: no name or category can hold one.
fn clean_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
}

/// `(category, value)` of a `category=<integer>` line, or why it is not one.
fn parse_line(line: &str) -> Result<(&str, i64), &'static str> {
    let (category, value) = line.split_once('=').ok_or("no '='")?;
    let category = category.trim();
    if category.is_empty() {
        return Err("empty category");
    }
    let value = value.trim();
    if !value
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_digit() || (i == 0 && (b == b'-' || b == b'+')))
    {
        return Err("value is not an integer");
    }
    let value = value
        .parse::<i64>()
        .map_err(|_| "value is not an integer")?;
    Ok((category, value))
}

fn report_points(url: &str, report: &str, text: &str, now: DateTime<Utc>) -> Vec<Point> {
    let mut points = Vec::new();
    for line in clean_lines(text) {
        match parse_line(line) {
            Ok((category, count)) => points.push(
                Point::new("versions_script_stats")
                    .tag("report", report)
                    .tag("category", category)
                    .tag("series", "devel")
                    .field("count", count)
                    .at(now),
            ),
            Err(why) => {
                tracing::warn!("{url}: line {line:?} is not category=<integer> ({why}); skipped")
            }
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::now;

    #[test]
    fn report_names_are_cleaned_and_deduplicated() {
        assert_eq!(
            report_names("gnome\r\n  \r\n\tkde, qt=6 \r\n\ngnome\nlast"),
            ["gnome", "kde, qt=6", "last"]
        );
        assert!(report_names("").is_empty());
        assert!(report_names(" \r\n\r\n").is_empty());
    }

    #[test]
    fn report_names_are_percent_encoded_in_the_url() {
        assert_eq!(
            report_url("http://h/v/", "kde, qt=6"),
            "http://h/v/kde%2C%20qt%3D6"
        );
        assert_eq!(
            report_url("http://h/v", "a/b?c#d"),
            "http://h/v/a%2Fb%3Fc%23d"
        );
        assert_eq!(
            report_url("http://h/v/", "desktop-main_1.x"),
            "http://h/v/desktop-main_1.x"
        );
    }

    #[test]
    fn lines_split_at_the_first_equals_sign() {
        assert_eq!(parse_line("up-to-date=12"), Ok(("up-to-date", 12)));
        assert_eq!(parse_line("a = 3"), Ok(("a", 3)));
        assert_eq!(parse_line("x=-2"), Ok(("x", -2)));
        assert_eq!(parse_line("x=+2"), Ok(("x", 2)));
        assert!(parse_line("a=b=3").is_err());
        assert!(parse_line("a").is_err());
        assert!(parse_line("=3").is_err());
        assert!(parse_line("a=").is_err());
        assert!(parse_line("a=1.5").is_err());
        assert!(parse_line("a=0x10").is_err());
        assert!(parse_line("a=1 2").is_err());
        assert!(parse_line("a=99999999999999999999").is_err());
    }

    #[test]
    fn points_keep_the_report_name_verbatim_and_skip_bad_lines() {
        let text = "outdated=4\r\n\r\n  up to date = 10 \nbogus\nratio=0.5\nempty=0\n";
        let got: Vec<String> = report_points("u", "kde, qt=6", text, now())
            .iter()
            .map(|p| p.to_line().unwrap())
            .collect();
        assert_eq!(
            got,
            [
                r"versions_script_stats,category=outdated,report=kde\,\ qt\=6,series=devel count=4i 1795521600000000000",
                r"versions_script_stats,category=up\ to\ date,report=kde\,\ qt\=6,series=devel count=10i 1795521600000000000",
                r"versions_script_stats,category=empty,report=kde\,\ qt\=6,series=devel count=0i 1795521600000000000",
            ]
        );
    }
}

/// Property tests: the report list and report parsers on arbitrary and
/// mutated input.
#[cfg(test)]
mod props {
    use super::*;
    use crate::model::point::FieldValue;
    use crate::support::proptest_support::{CASES, encode_all, text_like};
    use crate::support::test_support::now;
    use proptest::prelude::*;

    /// The trimmed pieces of a text between line ends (`\n` or `\r`).
    fn pieces(text: &str) -> Vec<&str> {
        text.split(['\n', '\r']).map(str::trim).collect()
    }

    /// `(category, count)` of a point.
    fn figures(p: &Point) -> (String, i64) {
        let category = p.tags.get("category").cloned().unwrap_or_default();
        match p.fields.get("count") {
            Some(FieldValue::Integer(n)) => (category, *n),
            other => panic!("count is {other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        /// Whatever the list, the names are its non-blank lines, trimmed,
        /// each once, in order of first appearance; each name's URL is one
        /// path segment below the base that decodes back to the name.
        #[test]
        fn report_list_gives_each_line_once_and_its_url(text in text_like(include_str!("../../tests/fixtures/versions/reports"))) {
            let names = report_names(&text);
            let mut want: Vec<&str> = Vec::new();
            for l in pieces(&text) {
                if !l.is_empty() && !want.contains(&l) {
                    want.push(l);
                }
            }
            prop_assert_eq!(&names, &want);
            for name in &names {
                let url = report_url("http://h/", name);
                let segment = url.strip_prefix("http://h/").expect("below the base");
                prop_assert!(segment.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~%".contains(c)), "{}", url);
                let decoded = percent_encoding::percent_decode_str(segment).decode_utf8();
                prop_assert_eq!(decoded.as_deref(), Ok(name.as_str()));
            }
        }

        /// Whatever the report, each point is a `category=<integer>` line
        /// of it, in order, tagged with the report's name; no more points
        /// than lines.
        #[test]
        fn report_points_are_its_category_lines(text in text_like(include_str!("../../tests/fixtures/versions/desktop-main")), report in ".{0,10}") {
            for line in text.lines() {
                let _ = parse_line(line);
            }
            let points = report_points("u", &report, &text, now());
            encode_all(&points);
            let want: Vec<(String, i64)> = pieces(&text)
                .into_iter()
                .filter_map(|l| {
                    let (c, v) = l.split_once('=')?;
                    let c = c.trim();
                    let v = v.trim().parse::<i64>().ok()?;
                    (!c.is_empty()).then(|| (c.to_owned(), v))
                })
                .collect();
            prop_assert_eq!(points.iter().map(figures).collect::<Vec<_>>(), want);
            for p in &points {
                prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
                prop_assert_eq!(p.tags.get("report").map(String::as_str), Some(report.as_str()).filter(|r| !r.is_empty()));
                prop_assert_eq!(p.tags.get("series").map(String::as_str), Some("devel"));
                prop_assert_eq!(p.timestamp, Some(now()));
            }
        }

        /// A report built from `category = count` lines (blanks around,
        /// CRLF or LF, lines that are not counts between them) gives its
        /// counts back, in order.
        #[test]
        fn report_built_from_lines_reads_back(
            rows in proptest::collection::vec(("[a-z][a-z -]{0,10}[a-z]", any::<i64>(), "[ \t]{0,2}", prop::sample::select(vec!["", "bogus", "ratio=0.5", "=3", "x=", "a=0x10"])), 0..12),
            crlf in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = String::new();
            for (category, n, pad, junk) in &rows {
                text.push_str(&format!("{pad}{category}{pad}={pad}{n}{pad}{eol}{junk}{eol}"));
            }
            let want: Vec<(String, i64)> = rows.into_iter().map(|(c, n, _, _)| (c, n)).collect();
            let got: Vec<(String, i64)> = report_points("u", "desktop-main", &text, now()).iter().map(figures).collect();
            prop_assert_eq!(got, want);
        }
    }
}
