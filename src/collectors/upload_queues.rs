//! upload_queues: the Unapproved and New upload queues (pocket Proposed) of
//! every active Ubuntu series, from Launchpad.
//!
//! What it writes: [`schema`].
//!
//! Source: Launchpad's `ubuntu` series (those with `active = true`; `devel`
//! = `True` for the distribution's current series), and for each series and
//! status `getPackageUploads(status, pocket=Proposed)`. Each (series,
//! status) queue is read once per run (every page, since ages need every
//! entry) and gives all its measurements.
//!
//! An upload's age is whole days since its `date_created`; an upload
//! without a readable `date_created` counts in the queue size but not in
//! the ages (logged). A queue that cannot be read is logged and gives no
//! points; the other queues are still reported. If no queue can be read,
//! the collection fails.

use crate::collector::LAUNCHPAD;
use crate::collector::{Collector, CollectorError, Context, Parts, Spec};
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, int, tag};
use crate::sources::launchpad::{Launchpad, Series};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The collector: its spec.
pub struct UploadQueues {
    spec: Spec,
}

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![
        Measurement::new(
            "ubuntu_queue_size",
            &[
                tag("devel", "`True`/`False`"),
                tag("status", ""),
                tag("release", ""),
            ],
            &[int("count", "")],
        ),
        Measurement::new(
            "queue_ages",
            &[
                tag("devel", "`True`/`False`"),
                tag("release", ""),
                tag("status", ""),
            ],
            &[
                int("oldest_age_in_days", "0 when empty"),
                int("ten_day_backlog_count", "uploads older than 10 whole days"),
            ],
        ),
        Measurement::new(
            "ubuntu_new_queue_size",
            &[
                tag("devel", "`True`/`False`"),
                tag("release", ""),
                tag("type", "`source`, `binary`, `sync`"),
            ],
            &[int(
                "count",
                "New uploads with `contains_source`, `contains_build`, `contains_copy` true (an upload with several flags counts in each)",
            )],
        ),
    ]
}

/// The queues read, by upload status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Unapproved,
    New,
}

impl Status {
    const ALL: [Status; 2] = [Status::Unapproved, Status::New];

    /// Launchpad's name of the status (also the `status` tag).
    fn as_str(self) -> &'static str {
        match self {
            Status::Unapproved => "Unapproved",
            Status::New => "New",
        }
    }
}
const POCKET: &str = "Proposed";
/// An upload older than this many whole days is in the backlog.
const BACKLOG_DAYS: i64 = 10;

/// The fields of a package upload this collector reads.
#[derive(Debug, Default, Deserialize)]
struct Upload {
    date_created: Option<String>,
    contains_source: Option<bool>,
    contains_build: Option<bool>,
    contains_copy: Option<bool>,
}

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::Queues,
        title: "Upload queues".into(),
        panels: vec![
            Panel::new(Kind::Timeseries, "Unapproved and New queues (devel series)", "ubuntu_queue_size", &["count"], &["release", "status"])
                .filter("\"devel\" = 'True'")
                .describe("Uploads waiting in the -proposed Unapproved and New queues of the series in development."),
            Panel::new(Kind::Timeseries, "Unapproved and New queues (stable series)", "ubuntu_queue_size", &["count"], &["release", "status"])
                .filter("\"devel\" = 'False'")
                .describe("Uploads waiting in the -proposed queues of the other active series (SRUs)."),
            Panel::new(Kind::Timeseries, "Oldest upload in the queue", "queue_ages", &["oldest_age_in_days"], &["release", "status"])
                .unit("d")
                .describe("Age in days of the oldest upload of each queue (0 when empty)."),
            Panel::new(Kind::Timeseries, "Uploads waiting more than 10 days", "queue_ages", &["ten_day_backlog_count"], &["release", "status"]),
            Panel::new(Kind::Timeseries, "New queue by upload type", "ubuntu_new_queue_size", &["count"], &["release", "type"])
                .width(24)
                .describe("New uploads containing a source, a build or a copy (sync); an upload can count in several."),
        ],
    }
}

impl Default for UploadQueues {
    fn default() -> UploadQueues {
        UploadQueues {
            spec: Spec::new(
                "upload_queues",
                "size and age of the Unapproved and New upload queues (pocket Proposed) of the active series",
            )
            .schema(schema())
            .sources(vec![LAUNCHPAD.clone()])
            .panels(panels()),
        }
    }
}

#[async_trait::async_trait]
impl Collector for UploadQueues {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let lp = ctx.launchpad();
        let series: Vec<_> = lp
            .ubuntu_series()
            .await?
            .into_iter()
            .filter(|s| s.active)
            .collect();
        if series.is_empty() {
            return Err(CollectorError::Other(format!(
                "{}: Launchpad lists no active series of ubuntu",
                lp.resource_url("ubuntu")
            )));
        }
        let queues: Vec<(Series, Status)> = series
            .iter()
            .flat_map(|s| Status::ALL.map(|status| (s.clone(), status)))
            .collect();
        // All queues together: the HTTP client's per-host limit keeps
        // Launchpad from seeing more than `[http] max_per_host` at once.
        let results = futures::future::join_all(
            queues
                .into_iter()
                .map(|(s, status)| read_queue(lp.clone(), s, status)),
        )
        .await;

        // Each queue fails alone.
        let mut parts = Parts::new("upload_queues");
        for (s, status, result) in results {
            let points =
                result.map(|uploads| queue_points(&s.name, s.current, status, &uploads, ctx.now));
            parts.add(format!("queue {} of {}", status.as_str(), s.name), points);
        }
        parts.finish()
    }
}

/// Every upload of one queue (all pages).
async fn read_queue(
    lp: Launchpad,
    series: Series,
    status: Status,
) -> (Series, Status, Result<Vec<Upload>, CollectorError>) {
    let params = [
        ("ws.op", "getPackageUploads"),
        ("status", status.as_str()),
        ("pocket", POCKET),
    ];
    let result = lp
        .collection::<Upload>(&series.self_link, &params)
        .await
        .map_err(CollectorError::from);
    (series, status, result)
}

/// Whole days since `created` (never negative: a clock skew is age 0).
fn age_days(created: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - created).num_days().max(0)
}

/// The points of one queue: its size and ages, and for the New queue the
/// counts per upload type.
fn queue_points(
    release: &str,
    devel: bool,
    status: Status,
    uploads: &[Upload],
    now: DateTime<Utc>,
) -> Vec<Point> {
    let mut ages = Vec::with_capacity(uploads.len());
    let mut undated = 0;
    for u in uploads {
        match u
            .date_created
            .as_deref()
            .and_then(|d| DateTime::parse_from_rfc3339(d.trim()).ok())
        {
            Some(d) => ages.push(age_days(d.with_timezone(&Utc), now)),
            None => undated += 1,
        }
    }
    let status_name = status.as_str();
    if undated > 0 {
        tracing::warn!(
            "upload queue {status_name} of {release}: {undated} upload(s) without a readable date_created; counted, but not in the ages"
        );
    }
    let oldest = ages.iter().copied().max().unwrap_or(0);
    let backlog = ages.iter().filter(|&&a| a > BACKLOG_DAYS).count();

    let mut points = vec![
        Point::new("ubuntu_queue_size")
            .tag_bool("devel", devel)
            .tag("status", status_name)
            .tag("release", release)
            .field("count", uploads.len())
            .at(now),
        Point::new("queue_ages")
            .tag_bool("devel", devel)
            .tag("release", release)
            .tag("status", status_name)
            .field("oldest_age_in_days", oldest)
            .field("ten_day_backlog_count", backlog)
            .at(now),
    ];
    if status == Status::New {
        let count = |flag: fn(&Upload) -> Option<bool>| {
            uploads.iter().filter(|u| flag(u) == Some(true)).count()
        };
        for (kind, n) in [
            ("source", count(|u| u.contains_source)),
            ("binary", count(|u| u.contains_build)),
            ("sync", count(|u| u.contains_copy)),
        ] {
            points.push(
                Point::new("ubuntu_new_queue_size")
                    .tag_bool("devel", devel)
                    .tag("release", release)
                    .tag("type", kind)
                    .field("count", n)
                    .at(now),
            );
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::{lines, logged, now};

    fn parse(json: &str) -> Vec<Upload> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn empty_new_queue_reports_zeros() {
        assert_eq!(
            lines(queue_points("jammy", false, Status::New, &[], now())),
            [
                "queue_ages,devel=False,release=jammy,status=New oldest_age_in_days=0i,ten_day_backlog_count=0i 1795521600000000000",
                "ubuntu_new_queue_size,devel=False,release=jammy,type=binary count=0i 1795521600000000000",
                "ubuntu_new_queue_size,devel=False,release=jammy,type=source count=0i 1795521600000000000",
                "ubuntu_new_queue_size,devel=False,release=jammy,type=sync count=0i 1795521600000000000",
                "ubuntu_queue_size,devel=False,release=jammy,status=New count=0i 1795521600000000000",
            ]
        );
    }

    #[test]
    fn ages_are_whole_days_and_backlog_is_strictly_over_ten() {
        let u = parse(
            r#"[{"date_created": "2026-11-13T12:00:00+00:00"},
                {"date_created": "2026-11-13T12:00:01.5+00:00"},
                {"date_created": "2026-11-14T01:30:00+02:00"},
                {"date_created": "2026-11-25T00:00:00Z"},
                {"date_created": null},
                {"date_created": "yesterday"},
                {}]"#,
        );
        assert_eq!(
            lines(queue_points(
                "tumbling",
                true,
                Status::Unapproved,
                &u,
                now()
            )),
            [
                "queue_ages,devel=True,release=tumbling,status=Unapproved oldest_age_in_days=11i,ten_day_backlog_count=1i 1795521600000000000",
                "ubuntu_queue_size,devel=True,release=tumbling,status=Unapproved count=7i 1795521600000000000",
            ]
        );
    }

    #[test]
    fn uploads_without_a_date_are_counted_and_named_in_one_warning() {
        let u = parse(
            r#"[{"date_created": "2026-11-20T12:00:00Z"}, {}, {"date_created": "yesterday"}]"#,
        );
        let (got, log) =
            logged(|| lines(queue_points("noble", false, Status::Unapproved, &u, now())));
        assert!(
            got.contains(&"ubuntu_queue_size,devel=False,release=noble,status=Unapproved count=3i 1795521600000000000".to_owned()),
            "{got:?}"
        );
        assert!(
            log.contains(
                "upload queue Unapproved of noble: 2 upload(s) without a readable date_created"
            ),
            "{log}"
        );
        // Every upload dated: no warning.
        let (_, log) = logged(|| queue_points("noble", false, Status::Unapproved, &u[..1], now()));
        assert_eq!(log, "");
    }

    #[test]
    fn new_uploads_count_in_every_flagged_type() {
        let u = parse(
            r#"[{"contains_source": true, "contains_build": true, "contains_copy": true},
                {"contains_source": true, "contains_build": false, "contains_copy": null},
                {"contains_copy": true},
                {"contains_source": null}]"#,
        );
        let got = lines(queue_points("noble", false, Status::New, &u, now()));
        assert!(got.contains(&"ubuntu_new_queue_size,devel=False,release=noble,type=source count=2i 1795521600000000000".to_owned()));
        assert!(got.contains(&"ubuntu_new_queue_size,devel=False,release=noble,type=binary count=1i 1795521600000000000".to_owned()));
        assert!(got.contains(&"ubuntu_new_queue_size,devel=False,release=noble,type=sync count=2i 1795521600000000000".to_owned()));
        assert!(got.contains(&"ubuntu_queue_size,devel=False,release=noble,status=New count=4i 1795521600000000000".to_owned()));
    }

    #[test]
    fn unapproved_queue_has_no_type_counts() {
        let got = lines(queue_points(
            "noble",
            false,
            Status::Unapproved,
            &[Upload::default()],
            now(),
        ));
        assert!(
            got.iter().all(|l| !l.starts_with("ubuntu_new_queue_size")),
            "{got:?}"
        );
    }
}

/// Property tests: any uploads (dates of any shape) become points, whose
/// figures agree with a count made here.
#[cfg(test)]
mod props {
    use super::*;
    use crate::model::point::FieldValue;
    use crate::support::test_support::now;
    use chrono::FixedOffset;
    use proptest::prelude::*;

    /// A `date_created`: absent, any text, something shaped like a date,
    /// or a real RFC 3339 time from days in the future to weeks ago, in
    /// some time zone, with or without a fraction of a second.
    fn date() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            1 => Just(None),
            1 => ".{0,30}".prop_map(Some),
            1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{0,15}(\\+00:00|Z)?".prop_map(Some),
            4 => (-3 * 86_400i64..40 * 86_400, -12i32..=12, any::<bool>(), "[ \t]{0,2}").prop_map(|(ago, tz, frac, pad)| {
                let t = now() - chrono::Duration::seconds(ago);
                let t = t.with_timezone(&FixedOffset::east_opt(tz * 3600).expect("valid offset"));
                let text = if frac { t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false) } else { t.to_rfc3339() };
                Some(format!("{pad}{text}{pad}"))
            }),
        ]
    }

    fn int(p: &Point, field: &str) -> Option<i64> {
        match p.fields.get(field) {
            Some(FieldValue::Integer(n)) => Some(*n),
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::support::proptest_support::CASES))]
        /// The queue size counts every upload; the oldest age and the
        /// backlog (strictly over ten whole days) count the readable dates,
        /// a date in the future being age 0; the New queue counts each
        /// upload once per type it is flagged `true` for. Every point
        /// carries the queue's tags and fits the schema.
        #[test]
        fn any_uploads_give_the_counted_sizes_ages_and_types(
            uploads in proptest::collection::vec((
                date(),
                any::<Option<bool>>(), any::<Option<bool>>(), any::<Option<bool>>(),
            ), 0..20),
            devel in any::<bool>(),
            new in any::<bool>(),
        ) {
            let uploads: Vec<Upload> = uploads.into_iter().map(|(d, s, b, c)| Upload {
                date_created: d, contains_source: s, contains_build: b, contains_copy: c,
            }).collect();
            let status = if new { Status::New } else { Status::Unapproved };
            let points = queue_points("tumbling", devel, status, &uploads, now());
            crate::support::proptest_support::encode_all(&points);

            // The model: ages in whole days from the seconds elapsed.
            let ages: Vec<i64> = uploads
                .iter()
                .filter_map(|u| DateTime::parse_from_rfc3339(u.date_created.as_deref()?.trim()).ok())
                .map(|d| (now() - d.with_timezone(&Utc)).num_seconds())
                .map(|secs| if secs < 0 { 0 } else { secs / 86_400 })
                .collect();
            let oldest = ages.iter().copied().max().unwrap_or(0);
            let backlog = ages.iter().filter(|a| **a >= 11).count() as i64;
            let flagged = |f: fn(&Upload) -> Option<bool>| uploads.iter().filter(|u| f(u) == Some(true)).count() as i64;

            prop_assert_eq!(points.len(), if new { 5 } else { 2 });
            for p in &points {
                prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
                prop_assert_eq!(p.tags.get("release").map(String::as_str), Some("tumbling"));
                prop_assert_eq!(p.tags.get("devel").map(String::as_str), Some(if devel { "True" } else { "False" }));
                prop_assert_eq!(p.timestamp, Some(now()));
            }
            let size = &points[0];
            prop_assert_eq!(size.measurement.as_str(), "ubuntu_queue_size");
            prop_assert_eq!(size.tags.get("status").map(String::as_str), Some(status.as_str()));
            prop_assert_eq!(int(size, "count"), Some(uploads.len() as i64));
            let age = &points[1];
            prop_assert_eq!(age.measurement.as_str(), "queue_ages");
            prop_assert_eq!(age.tags.get("status").map(String::as_str), Some(status.as_str()));
            prop_assert_eq!(int(age, "oldest_age_in_days"), Some(oldest));
            prop_assert_eq!(int(age, "ten_day_backlog_count"), Some(backlog));
            if new {
                let want = [
                    ("source", flagged(|u| u.contains_source)),
                    ("binary", flagged(|u| u.contains_build)),
                    ("sync", flagged(|u| u.contains_copy)),
                ];
                for (p, (kind, n)) in points[2..].iter().zip(want) {
                    prop_assert_eq!(p.measurement.as_str(), "ubuntu_new_queue_size");
                    prop_assert_eq!(p.tags.get("type").map(String::as_str), Some(kind));
                    prop_assert_eq!(int(p, "count"), Some(n));
                }
            }
        }
    }
}
