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
    use crate::support::proptest_support::{CASES, encode_all, text_like};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        #[test]
        fn report_list_never_panics(text in text_like(include_str!("../../tests/fixtures/versions/reports"))) {
            for name in report_names(&text) {
                let _ = report_url("http://h/", &name);
            }
        }
        #[test]
        fn report_never_panics(text in text_like(include_str!("../../tests/fixtures/versions/desktop-main")), report in ".{0,10}") {
            for line in text.lines() {
                let _ = parse_line(line);
            }
            encode_all(&report_points("u", &report, &text, chrono::DateTime::from_timestamp(1_795_521_600, 0).expect("valid")));
        }
    }
}
