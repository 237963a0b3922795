//! sponsoring: the Ubuntu sponsoring queue, overall and per package set.
//!
//! Source: [`GENERAL`] (`general.json`), a list of entries with
//! `date_queued` (`MM/DD/YY`, UTC) and `sets`. The report `sponsoring`
//! holds every entry; one report per package set holds that set's entries.
//! An empty queue reports `sponsoring` with zeros. What it writes is
//! [`schema`].
//!
//! This file is the model for a new collector. Everything about a
//! collector is declared here: its name, description and interval, its
//! schema (what it writes), its sources (with their production URLs and
//! fixtures), its Grafana panels, and `collect`, with a pure function
//! from parsed input to points (unit-tested here). Its test case is the
//! folder `tests/fixtures/sponsoring/`: the recorded-shape input the fixture
//! server serves for [`GENERAL`], and `expected.out`, the line protocol
//! `tests/collectors.rs` expects from it.

use crate::collector::{Collector, CollectorError, Context, Spec};
use crate::config::SourceUrl;
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, int, tag};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The collector: its spec.
pub struct Sponsoring {
    spec: Spec,
}

/// The sponsoring queue report.
pub static GENERAL: SourceUrl = SourceUrl::new(
    "sponsoring",
    "http://sponsoring-reports.ubuntu.com/jsons/general.json",
    "the sponsoring queue (JSON)",
    "sponsoring/general.json",
);

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![Measurement::new(
        "sponsoring_queue_stats",
        &[tag(
            "report",
            "`sponsoring` (every entry), or a package set",
        )],
        &[
            int("count", "entries"),
            int("oldest", "max age in days"),
            int("average_age", "mean age in days, truncated"),
        ],
    )]
}

#[derive(Debug, Deserialize)]
struct Entry {
    date_queued: Option<String>,
    #[serde(default)]
    sets: Option<Vec<String>>,
}

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::Queues,
        title: "Sponsoring".into(),
        panels: vec![
            Panel::new(
                Kind::Timeseries,
                "Sponsoring queue size",
                "sponsoring_queue_stats",
                &["count"],
                &["report"],
            ),
            Panel::new(
                Kind::Timeseries,
                "Sponsoring queue age",
                "sponsoring_queue_stats",
                &["oldest", "average_age"],
                &["report"],
            )
            .unit("d"),
        ],
    }
}

impl Default for Sponsoring {
    fn default() -> Sponsoring {
        Sponsoring {
            spec: Spec::new(
                "sponsoring",
                "size and age of the sponsoring queue, overall and per package set",
            )
            .schema(schema())
            .sources(vec![GENERAL.clone()])
            .panels(panels()),
        }
    }
}

#[async_trait::async_trait]
impl Collector for Sponsoring {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let url = ctx.source(&GENERAL);
        let entries: Vec<Entry> = ctx.http.get_json(url).await?;
        Ok(points(url, &entries, ctx.now))
    }
}

/// Age in whole days of an entry queued on `date` (a UTC date).
fn age_days(date: NaiveDate, now: DateTime<Utc>) -> i64 {
    let queued = date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    (now - queued).num_days()
}

fn points(url: &str, entries: &[Entry], now: DateTime<Utc>) -> Vec<Point> {
    // report name -> ages of its entries
    let mut reports: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    reports.insert("sponsoring", Vec::new());
    for (i, e) in entries.iter().enumerate() {
        let date = e
            .date_queued
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d.trim(), "%m/%d/%y").ok());
        let Some(date) = date else {
            tracing::warn!(
                "{url}: entry {i}: date_queued {:?} is not MM/DD/YY; entry skipped",
                e.date_queued
            );
            continue;
        };
        let age = age_days(date, now);
        reports.entry("sponsoring").or_default().push(age);
        for set in e.sets.iter().flatten() {
            reports.entry(set.as_str()).or_default().push(age);
        }
    }
    reports
        .into_iter()
        .map(|(report, ages)| {
            let count = ages.len() as i64;
            let oldest = ages.iter().copied().max().unwrap_or(0);
            let average = if count == 0 {
                0
            } else {
                ages.iter().sum::<i64>() / count
            };
            Point::new("sponsoring_queue_stats")
                .tag("report", report)
                .field("count", count)
                .field("oldest", oldest)
                .field("average_age", average)
                .at(now)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::{lines, now};

    fn parse(json: &str) -> Vec<Entry> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn empty_queue_reports_zeros() {
        assert_eq!(
            lines(points("u", &[], now())),
            [
                "sponsoring_queue_stats,report=sponsoring average_age=0i,count=0i,oldest=0i 1795521600000000000"
            ]
        );
    }

    #[test]
    fn per_set_reports_and_truncated_mean() {
        let e = parse(
            r#"[{"date_queued":"11/20/26","sets":["core"]},
                {"date_queued":"11/23/26","sets":["core","desktop"]},
                {"date_queued":"11/24/26","sets":[]},
                {"date_queued":"bogus","sets":["x"]},
                {"date_queued":"11/01/26","sets":null}]"#,
        );
        let got = lines(points("u", &e, now()));
        assert_eq!(
            got,
            [
                "sponsoring_queue_stats,report=core average_age=2i,count=2i,oldest=4i 1795521600000000000",
                "sponsoring_queue_stats,report=desktop average_age=1i,count=1i,oldest=1i 1795521600000000000",
                "sponsoring_queue_stats,report=sponsoring average_age=7i,count=4i,oldest=23i 1795521600000000000",
            ]
        );
    }
}

/// Property tests: the report read from any bytes, mutated recordings
/// included; any entries turned into points.
#[cfg(test)]
mod props {
    use super::*;
    use crate::model::point::FieldValue;
    use crate::support::proptest_support::{CASES, encode_all, mutated};
    use crate::support::test_support::now;
    use proptest::prelude::*;

    fn int(p: &Point, field: &str) -> i64 {
        match p.fields.get(field) {
            Some(FieldValue::Integer(n)) => *n,
            other => panic!("field {field} is {other:?}"),
        }
    }

    /// What must hold of the points of any entries: one point per report,
    /// in name order, the overall `sponsoring` one always there and
    /// counting every entry whose date reads; no count below 0, no mean
    /// above the oldest, zeros for an empty report.
    fn check(entries: &[Entry], points: &[Point]) -> Result<(), TestCaseError> {
        encode_all(points);
        let dated = entries
            .iter()
            .filter(|e| {
                e.date_queued
                    .as_deref()
                    .is_some_and(|d| NaiveDate::parse_from_str(d.trim(), "%m/%d/%y").is_ok())
            })
            .count() as i64;
        let overall: Vec<&Point> = points
            .iter()
            .filter(|p| p.tags.get("report").map(String::as_str) == Some("sponsoring"))
            .collect();
        prop_assert_eq!(overall.len(), 1);
        prop_assert_eq!(int(overall[0], "count"), dated);
        let reports: Vec<Option<&String>> = points.iter().map(|p| p.tags.get("report")).collect();
        let mut sorted = reports.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted, reports, "one point per report, in name order");
        for p in points {
            prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
            prop_assert_eq!(p.timestamp, Some(now()));
            let (count, oldest, average) =
                (int(p, "count"), int(p, "oldest"), int(p, "average_age"));
            prop_assert!(count >= 0);
            prop_assert!(average <= oldest, "{}", p.describe());
            if count == 0 {
                prop_assert_eq!((oldest, average), (0, 0));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        #[test]
        fn mutated_report_gives_consistent_figures(text in mutated(include_str!("../../tests/fixtures/sponsoring/general.json"))) {
            if let Ok(entries) = serde_json::from_str::<Vec<Entry>>(&text) {
                check(&entries, &points("u", &entries, now()))?;
            }
        }

        #[test]
        fn any_entries_give_consistent_figures(entries in proptest::collection::vec((proptest::option::of(".{0,12}|[0-9]{4}-[0-9]{2}-[0-9]{2}.{0,10}|[0-9]{1,2}/[0-9]{1,2}/[0-9]{2}"), proptest::option::of(proptest::collection::vec(".{0,8}", 0..4))), 0..20)) {
            let entries: Vec<Entry> = entries.into_iter().map(|(d, s)| Entry { date_queued: d, sets: s }).collect();
            check(&entries, &points("u", &entries, now()))?;
        }

        /// Entries built from parts (a queued date written MM/DD/YY, some
        /// in the future, some unreadable; distinct sets) give, per report,
        /// the count, the oldest and the truncated mean of the ages in
        /// whole days from midnight UTC of the queued date.
        #[test]
        fn entries_built_from_parts_give_the_counted_figures(
            entries in proptest::collection::vec((
                proptest::option::of((0i32..=68, 1u32..=12, 1u32..=28, any::<bool>())),
                proptest::collection::btree_set("core|desktop|kernel", 0..3),
            ), 0..20),
        ) {
            let mut want: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            want.insert("sponsoring".into(), Vec::new());
            let mut parsed = Vec::new();
            for (date, sets) in entries {
                let date_queued = match date {
                    Some((y, m, d, padded)) => {
                        let queued = NaiveDate::from_ymd_opt(2000 + y, m, d).expect("a day of the month");
                        let midnight = queued.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
                        let age = (now().timestamp() - midnight.timestamp()) / 86_400;
                        want.get_mut("sponsoring").expect("there").push(age);
                        for set in &sets {
                            want.entry(set.clone()).or_default().push(age);
                        }
                        let pad = if padded { " " } else { "" };
                        format!("{pad}{m:02}/{d:02}/{y:02}{pad}")
                    }
                    None => "2026-11-20".to_owned(),
                };
                parsed.push(Entry { date_queued: Some(date_queued), sets: Some(sets.into_iter().collect()) });
            }
            let got: Vec<(String, [i64; 3])> = points("u", &parsed, now())
                .iter()
                .map(|p| (p.tags["report"].clone(), [int(p, "count"), int(p, "oldest"), int(p, "average_age")]))
                .collect();
            let want: Vec<(String, [i64; 3])> = want
                .into_iter()
                .map(|(report, ages)| {
                    let n = ages.len() as i64;
                    let oldest = ages.iter().copied().max().unwrap_or(0);
                    let average = if n == 0 { 0 } else { ages.iter().sum::<i64>() / n };
                    (report, [n, oldest, average])
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
