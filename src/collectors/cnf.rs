//! cnf: the age of the command-not-found indexes in the archive, per active
//! series.
//!
//! What it writes: [`schema`].
//!
//! Sources: the series Launchpad marks `active`, and for each series `S`
//! the Apache directory listing [`ARCHIVE`] + `dists/S/main/cnf/`.
//! The row of a `Commands-…` file carries its modification time in the
//! cell `<td align="right">YYYY-MM-DD HH:MM  </td>` (UTC); when several
//! `Commands` rows exist, the last one in the listing counts. Age = (now −
//! that time) in days, as a float.
//!
//! A series whose listing is missing (HTTP error), or has no `Commands`
//! row, or whose last `Commands` row has no readable time, gets no point
//! (logged); the others are still reported. If no series gets a point, the
//! collection fails.

use crate::collector::LAUNCHPAD;
use crate::collector::{Collector, CollectorError, Context, Parts, Spec};
use crate::config::SourceUrl;
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, boolean, float, tag};
use crate::sources::http::{Http, encode_segment, join};
use chrono::{DateTime, NaiveDateTime, Utc};
use regex::Regex;
use std::sync::LazyLock;

/// The collector: its spec.
pub struct Cnf {
    spec: Spec,
}

/// The Ubuntu archive.
pub static ARCHIVE: SourceUrl = SourceUrl::new(
    "archive",
    "http://archive.ubuntu.com/ubuntu/",
    "the Ubuntu archive (dists/S/main/cnf/ listings)",
    "cnf/ubuntu/",
);

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![Measurement::new(
        "command_not_found_age",
        &[tag("release", "")],
        &[
            float("cnf_age", "days"),
            boolean("out_of_date", "`cnf_age > 1`"),
        ],
    )]
}

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::Archive,
        title: "command-not-found".into(),
        panels: vec![
            Panel::new(
                Kind::Timeseries,
                "command-not-found index age",
                "command_not_found_age",
                &["cnf_age"],
                &["release"],
            )
            .unit("d"),
            Panel::new(
                Kind::Table,
                "command-not-found indexes (latest)",
                "command_not_found_age",
                &["cnf_age", "out_of_date"],
                &["release"],
            )
            .field_units(&[("cnf_age", "d")])
            .width(12)
            .describe("Out of date: the index is more than a day old."),
        ],
    }
}

impl Default for Cnf {
    fn default() -> Cnf {
        Cnf {
            spec: Spec::new(
                "cnf",
                "age of the command-not-found (cnf) indexes in the archive, per active series",
            )
            .schema(schema())
            .sources(vec![ARCHIVE.clone(), LAUNCHPAD.clone()])
            .panels(panels()),
        }
    }
}

#[async_trait::async_trait]
impl Collector for Cnf {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let series: Vec<String> = ctx
            .launchpad()
            .ubuntu_series()
            .await?
            .into_iter()
            .filter(|s| s.active)
            .map(|s| s.name)
            .collect();
        if series.is_empty() {
            return Err(CollectorError::Other(format!(
                "{}: Launchpad lists no active series of ubuntu",
                ctx.launchpad().resource_url("ubuntu")
            )));
        }
        let base = ctx.source(&ARCHIVE).to_owned();
        // All together: the HTTP client's per-host limit keeps it polite.
        let results: Vec<_> = futures::future::join_all(
            series
                .into_iter()
                .map(|s| read_listing(ctx.http.clone(), base.clone(), s)),
        )
        .await;

        // Each series fails alone.
        let mut parts = Parts::new("cnf");
        for (release, result) in results {
            parts.add(
                format!("series {release}"),
                result.map(|time| vec![point(&release, time, ctx.now)]),
            );
        }
        parts.finish()
    }
}

/// The modification time of the last `Commands` index of `release`.
async fn read_listing(
    http: Http,
    base: String,
    release: String,
) -> (String, Result<NaiveDateTime, CollectorError>) {
    let url = join(
        &base,
        &format!("dists/{}/main/cnf/", encode_segment(&release)),
    );
    let result = match http.get_text(&url).await {
        Ok(html) => commands_time(&html).map_err(|msg| CollectorError::parse(&url, msg)),
        Err(e) => Err(e.into()),
    };
    (release, result)
}

static ROW_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)<tr[\s>]").expect("valid regex"));
static COMMANDS_LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)href\s*=\s*"(?:\./)?Commands-[^"]*""#).expect("valid regex")
});
static TIME_CELL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)<td align="right">\s*(\d{4}-\d{2}-\d{2} \d{2}:\d{2})\s*</td>"#)
        .expect("valid regex")
});

/// The time (UTC) in the last `Commands` row of an Apache listing, or why
/// there is none.
fn commands_time(html: &str) -> Result<NaiveDateTime, String> {
    // A row runs from one `<tr` to the next.
    let starts: Vec<usize> = ROW_START.find_iter(html).map(|m| m.start()).collect();
    let rows = starts
        .iter()
        .enumerate()
        .map(|(i, &s)| &html[s..starts.get(i + 1).copied().unwrap_or(html.len())]);
    let last = rows
        .rev()
        .find(|row| COMMANDS_LINK.is_match(row))
        .ok_or("the listing has no Commands row")?;
    let cell = TIME_CELL
        .captures(last)
        .and_then(|c| c.get(1))
        .ok_or("the last Commands row has no modification time cell")?;
    NaiveDateTime::parse_from_str(cell.as_str(), "%Y-%m-%d %H:%M").map_err(|e| {
        format!(
            "the last Commands row's time {:?} is not a date: {e}",
            cell.as_str()
        )
    })
}

fn point(release: &str, time: NaiveDateTime, now: DateTime<Utc>) -> Point {
    let age = (now - time.and_utc()).num_milliseconds() as f64 / 86_400_000.0;
    Point::new("command_not_found_age")
        .tag("release", release)
        .field("cnf_age", age)
        .field("out_of_date", age > 1.0)
        .at(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::now;

    fn row(name: &str, time: &str) -> String {
        format!(
            r#"<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="{name}">{name}</a></td><td align="right">{time}  </td><td align="right"> 34K</td><td>&nbsp;</td></tr>"#
        )
    }

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn last_commands_row_wins() {
        let html = format!(
            "<table>\n{}\n{}\n{}\n{}\n</table>",
            row("Commands-amd64.xz", "2026-11-24 09:00"),
            row("Commands-s390x.xz", "2026-11-20 06:00"),
            row("by-hash/", "2026-11-24 11:00"),
            row("Release", "2026-11-24 11:30"),
        );
        assert_eq!(commands_time(&html).unwrap(), t("2026-11-20 06:00"));
    }

    #[test]
    fn rows_on_one_line_and_upper_case_tags() {
        let html = format!(
            "<TABLE>{}{}</TABLE>",
            row("Commands-amd64.xz", "2026-11-24 09:00")
                .to_uppercase()
                .replace("COMMANDS", "Commands"),
            row("Commands-arm64.xz", "2026-11-23 09:00")
        );
        assert_eq!(commands_time(&html).unwrap(), t("2026-11-23 09:00"));
    }

    #[test]
    fn no_commands_row() {
        let html = format!("<table>{}</table>", row("by-hash/", "2026-11-24 11:00"));
        assert!(
            commands_time(&html)
                .unwrap_err()
                .contains("no Commands row")
        );
        assert!(commands_time("").is_err());
        assert!(commands_time("<html>Service Unavailable</html>").is_err());
    }

    #[test]
    fn unreadable_time_in_the_last_row() {
        let html = format!(
            "<table>{}{}</table>",
            row("Commands-amd64.xz", "2026-11-24 09:00"),
            row("Commands-arm64.xz", "yesterday")
        );
        assert!(
            commands_time(&html)
                .unwrap_err()
                .contains("no modification time")
        );
        let html = format!(
            "<table>{}</table>",
            row("Commands-amd64.xz", "2026-13-40 09:00")
        );
        assert!(commands_time(&html).unwrap_err().contains("not a date"));
    }

    #[test]
    fn age_is_a_float_in_days_and_out_of_date_strictly_over_one() {
        let line = |s| point("noble", t(s), now()).to_line().unwrap();
        assert_eq!(
            line("2026-11-23 12:00"),
            "command_not_found_age,release=noble cnf_age=1,out_of_date=false 1795521600000000000"
        );
        let l = line("2026-11-23 11:59");
        assert!(
            l.contains("cnf_age=1.00069") && l.contains("out_of_date=true"),
            "{l}"
        );
        assert_eq!(
            line("2026-11-24 06:00"),
            "command_not_found_age,release=noble cnf_age=0.25,out_of_date=false 1795521600000000000"
        );
    }
}

/// Property tests: the listing parser on arbitrary and mutated pages, and
/// on listings built from rows, whose last `Commands` time must come back.
#[cfg(test)]
mod props {
    use super::*;
    use crate::support::proptest_support::{CASES, text_like};
    use proptest::prelude::*;

    /// An Apache listing row, as the recorded page writes it.
    fn row(name: &str, time: &str) -> String {
        format!(
            r#"<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="{name}">{name}</a></td><td align="right">{time}  </td><td align="right"> 34K</td><td>&nbsp;</td></tr>"#
        )
    }

    /// File names of a `cnf` listing: `Commands` files, others.
    const NAMES: [&str; 6] = [
        "Commands-amd64.xz",
        "./Commands-s390x.xz",
        "Commands-riscv64",
        "by-hash/",
        "Release",
        "Contents-amd64.gz",
    ];

    fn time() -> impl Strategy<Value = NaiveDateTime> {
        (0i64..3_000_000).prop_map(|minutes| {
            NaiveDateTime::parse_from_str("2024-01-01 00:00", "%Y-%m-%d %H:%M").expect("valid")
                + chrono::Duration::minutes(minutes)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        /// Whatever the page, a time read is one the page shows, in a row
        /// linking to a `Commands` file.
        #[test]
        fn listing_time_is_one_the_page_shows(html in text_like(include_str!("../../tests/fixtures/cnf/ubuntu/dists/tumbling/main/cnf/index.html"))) {
            if let Ok(t) = commands_time(&html) {
                prop_assert!(html.contains(&t.format("%Y-%m-%d %H:%M").to_string()), "{} not in the page", t);
                prop_assert!(html.contains("Commands-"));
            }
        }

        /// A listing built from rows (`Commands` files and others, on one
        /// line or one per line) gives the time of its last `Commands` row,
        /// or says it has none.
        #[test]
        fn listing_built_from_rows_gives_the_last_commands_time(
            rows in proptest::collection::vec((prop::sample::select(NAMES.to_vec()), time()), 0..10),
            one_line in any::<bool>(),
        ) {
            let sep = if one_line { "" } else { "\n" };
            let body: Vec<String> = rows.iter().map(|(name, t)| row(name, &t.format("%Y-%m-%d %H:%M").to_string())).collect();
            let html = format!("<html><table>{sep}<tr><th>Name</th></tr>{sep}{}{sep}</table></html>", body.join(sep));
            let want = rows.iter().rev().find(|(name, _)| name.contains("Commands-")).map(|(_, t)| *t);
            match want {
                Some(t) => prop_assert_eq!(commands_time(&html), Ok(t)),
                None => prop_assert_eq!(commands_time(&html), Err("the listing has no Commands row".to_owned())),
            }
        }
    }
}
