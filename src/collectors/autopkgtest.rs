//! autopkgtest: queue sizes and running tests of both autopkgtest instances.
//!
//! What it writes: [`schema`].
//!
//! Sources, for each instance `production` ([`PRODUCTION`])
//! and `staging` ([`STAGING`]):
//! - `queue_size.json`: `context -> release -> arch -> count`;
//! - `static/running.json`: `package -> params key -> release -> arch -> details`.
//!
//! `autopkgtest_running` has a point only for (release, arch) pairs with at
//! least one running entry; the details of an entry are not read.
//!
//! Failures ([`Parts`]): each of the four documents is read on its own. A
//! document that cannot be fetched or is not a JSON object contributes no
//! points and is logged as a warning; the others are still reported. Only
//! when no document at all could be read (both instances unreachable) is
//! the collection an error, naming every document's failure. Inside a
//! document, an entry of the wrong shape (a count that is not an integer, a
//! release or arch level that is not an object) is skipped with a warning
//! and the rest of the document is kept.

use crate::collector::{Collector, CollectorError, Context, Parts, Spec};
use crate::config::SourceUrl;
use crate::model::panel::{Agg, Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, int, tag};
use crate::sources::http::{join, json_kind as kind};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;

/// The collector: its spec.
pub struct Autopkgtest {
    spec: Spec,
}

/// An autopkgtest instance's web front end.
pub static PRODUCTION: SourceUrl = SourceUrl::new(
    "autopkgtest_production",
    "https://autopkgtest.ubuntu.com/",
    "the production autopkgtest instance (queue_size.json, static/running.json)",
    "autopkgtest/production/",
);

/// The staging autopkgtest instance.
pub static STAGING: SourceUrl = SourceUrl::new(
    "autopkgtest_staging",
    "https://autopkgtest.staging.ubuntu.com/",
    "the staging autopkgtest instance (same documents)",
    "autopkgtest/staging/",
);

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![
        Measurement::new(
            "autopkgtest_queue_size",
            &[
                tag("context", ""),
                tag("release", ""),
                tag("arch", ""),
                tag("instance", "`production` or `staging`"),
            ],
            &[int("count", "")],
        ),
        Measurement::new(
            "autopkgtest_running",
            &[
                tag("release", ""),
                tag("arch", ""),
                tag("instance", "`production` or `staging`"),
            ],
            &[int(
                "count",
                "(package, params) entries running for that release and arch",
            )],
        ),
    ]
}

const QUEUE_SIZE: &str = "queue_size.json";
const RUNNING: &str = "static/running.json";

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::Queues,
        title: "autopkgtest".into(),
        panels: vec![
            Panel::new(
                Kind::Timeseries,
                "autopkgtest queue size by release",
                "autopkgtest_queue_size",
                &["count"],
                &["instance", "release"],
            )
            .agg(Agg::SumOfLast),
            Panel::new(
                Kind::Timeseries,
                "autopkgtest queue size by architecture",
                "autopkgtest_queue_size",
                &["count"],
                &["instance", "arch"],
            )
            .agg(Agg::SumOfLast),
            Panel::new(
                Kind::Timeseries,
                "Running autopkgtests",
                "autopkgtest_running",
                &["count"],
                &["instance", "release", "arch"],
            ),
            Panel::new(
                Kind::Table,
                "autopkgtest queues (latest)",
                "autopkgtest_queue_size",
                &["count"],
                &["instance", "context", "release", "arch"],
            )
            .width(12),
        ],
    }
}

impl Default for Autopkgtest {
    fn default() -> Autopkgtest {
        Autopkgtest {
            spec: Spec::new(
                "autopkgtest",
                "autopkgtest queue sizes and running tests, production and staging",
            )
            .schema(schema())
            .sources(vec![PRODUCTION.clone(), STAGING.clone()])
            .panels(panels()),
        }
    }
}

#[async_trait::async_trait]
impl Collector for Autopkgtest {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let instances = [
            ("production", ctx.source(&PRODUCTION)),
            ("staging", ctx.source(&STAGING)),
        ];
        let fetches = instances.iter().flat_map(|&(instance, base)| {
            [QUEUE_SIZE, RUNNING].map(|doc| {
                let url = join(base, doc);
                async move {
                    let result = ctx
                        .http
                        .get_json::<Value>(&url)
                        .await
                        .map_err(CollectorError::from);
                    (instance, doc, url, result)
                }
            })
        });
        let results = futures::future::join_all(fetches).await;

        let mut parts = Parts::new("autopkgtest");
        for (instance, doc, url, result) in results {
            let parsed = result.and_then(|value| {
                if doc == QUEUE_SIZE {
                    queue_points(&url, &value, instance, ctx.now)
                } else {
                    running_points(&url, &value, instance, ctx.now)
                }
            });
            parts.add(format!("instance {instance}"), parsed);
        }
        parts.finish()
    }
}

/// The JSON object at the top of a document, or a parse error naming `url`.
fn top_object<'a>(
    url: &str,
    value: &'a Value,
) -> Result<&'a serde_json::Map<String, Value>, CollectorError> {
    value.as_object().ok_or_else(|| {
        CollectorError::parse(
            url,
            format!("expected a JSON object, found {}", kind(value)),
        )
    })
}

/// The object under `key`, or `None` after a warning naming where it was.
fn sub_object<'a>(
    url: &str,
    path: &str,
    v: &'a Value,
) -> Option<&'a serde_json::Map<String, Value>> {
    let o = v.as_object();
    if o.is_none() {
        tracing::warn!(
            "{url}: {path}: expected an object, found {}; skipped",
            kind(v)
        );
    }
    o
}

/// `autopkgtest_queue_size` points from `queue_size.json`.
fn queue_points(
    url: &str,
    doc: &Value,
    instance: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Point>, CollectorError> {
    let mut points = Vec::new();
    for (context, releases) in top_object(url, doc)? {
        let Some(releases) = sub_object(url, context, releases) else {
            continue;
        };
        for (release, arches) in releases {
            let Some(arches) = sub_object(url, &format!("{context}/{release}"), arches) else {
                continue;
            };
            for (arch, count) in arches {
                let Some(count) = count.as_i64() else {
                    tracing::warn!(
                        "{url}: {context}/{release}/{arch}: count {count} is not an integer; skipped"
                    );
                    continue;
                };
                points.push(
                    Point::new("autopkgtest_queue_size")
                        .tag("context", context.as_str())
                        .tag("release", release.as_str())
                        .tag("arch", arch.as_str())
                        .tag("instance", instance)
                        .field("count", count)
                        .at(now),
                );
            }
        }
    }
    Ok(points)
}

/// `autopkgtest_running` points from `static/running.json`: one per
/// (release, arch) with at least one (package, params) entry.
fn running_points(
    url: &str,
    doc: &Value,
    instance: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Point>, CollectorError> {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (package, runs) in top_object(url, doc)? {
        let Some(runs) = sub_object(url, package, runs) else {
            continue;
        };
        for (params, releases) in runs {
            let Some(releases) = sub_object(url, &format!("{package}/{params}"), releases) else {
                continue;
            };
            for (release, arches) in releases {
                let Some(arches) =
                    sub_object(url, &format!("{package}/{params}/{release}"), arches)
                else {
                    continue;
                };
                for arch in arches.keys() {
                    *counts.entry((release.as_str(), arch.as_str())).or_default() += 1;
                }
            }
        }
    }
    Ok(counts
        .into_iter()
        .map(|((release, arch), count)| {
            Point::new("autopkgtest_running")
                .tag("release", release)
                .tag("arch", arch)
                .tag("instance", instance)
                .field("count", count)
                .at(now)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::{lines, now};

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn queue_sizes_per_context_release_arch() {
        let doc = json(
            r#"{"ubuntu": {"noble": {"amd64": 3, "s390x": 0}}, "huge": {"tumbling": {"arm64": 12}}, "ppa": {}}"#,
        );
        assert_eq!(
            lines(queue_points("u", &doc, "staging", now()).unwrap()),
            [
                "autopkgtest_queue_size,arch=amd64,context=ubuntu,instance=staging,release=noble count=3i 1795521600000000000",
                "autopkgtest_queue_size,arch=arm64,context=huge,instance=staging,release=tumbling count=12i 1795521600000000000",
                "autopkgtest_queue_size,arch=s390x,context=ubuntu,instance=staging,release=noble count=0i 1795521600000000000",
            ]
        );
    }

    #[test]
    fn malformed_queue_entries_are_skipped() {
        let doc = json(
            r#"{"ubuntu": {"noble": {"amd64": "3", "arm64": 1.5, "armhf": null, "i386": 2},
                           "jammy": [1, 2]},
                "ppa": 7}"#,
        );
        assert_eq!(
            lines(queue_points("u", &doc, "production", now()).unwrap()),
            [
                "autopkgtest_queue_size,arch=i386,context=ubuntu,instance=production,release=noble count=2i 1795521600000000000"
            ]
        );
    }

    #[test]
    fn a_document_that_is_not_an_object_is_an_error_naming_the_url() {
        let e = queue_points(
            "http://x/queue_size.json",
            &json("[1]"),
            "production",
            now(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("http://x/queue_size.json") && e.to_string().contains("array"),
            "{e}"
        );
        let e = running_points("http://x/running.json", &json("null"), "production", now())
            .unwrap_err();
        assert!(e.to_string().contains("http://x/running.json"), "{e}");
    }

    #[test]
    fn running_counts_package_params_entries() {
        let doc = json(
            r#"{"glibc": {"h1": {"tumbling": {"amd64": [{}, 10, "log"], "arm64": [{}, 1, ""]}},
                          "h2": {"tumbling": {"amd64": [{}, 5, "log"]}, "noble": {"amd64": null}}},
                "zlib": {"h3": {"tumbling": {"amd64": []}}},
                "empty": {"h4": {"noble": {}}}}"#,
        );
        assert_eq!(
            lines(running_points("u", &doc, "staging", now()).unwrap()),
            [
                "autopkgtest_running,arch=amd64,instance=staging,release=noble count=1i 1795521600000000000",
                "autopkgtest_running,arch=amd64,instance=staging,release=tumbling count=3i 1795521600000000000",
                "autopkgtest_running,arch=arm64,instance=staging,release=tumbling count=1i 1795521600000000000",
            ]
        );
    }

    #[test]
    fn nothing_running_gives_no_points() {
        assert!(
            running_points("u", &json("{}"), "production", now())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_running_levels_are_skipped() {
        let doc = json(
            r#"{"a": [1], "b": {"h": "x"}, "c": {"h": {"noble": 3}},
                "d": {"h": {"noble": {"amd64": 1}}}}"#,
        );
        assert_eq!(
            lines(running_points("u", &doc, "production", now()).unwrap()),
            [
                "autopkgtest_running,arch=amd64,instance=production,release=noble count=1i 1795521600000000000"
            ]
        );
    }
}

/// Property tests: any JSON document, mutated recordings included, is
/// read without a panic, to the figures a walk of the document made here
/// gives; documents built from parts give their counts back.
#[cfg(test)]
mod props {
    use super::*;
    use crate::model::point::FieldValue;
    use crate::support::proptest_support::{CASES, encode_all, json_like};
    use crate::support::test_support::now;
    use proptest::prelude::*;
    use serde_json::json;

    fn objects(v: &Value) -> Vec<(&String, &Value)> {
        v.as_object()
            .map(|o| o.iter().collect())
            .unwrap_or_default()
    }

    /// A point's tags (an empty name is no tag) and its count.
    fn seen(points: &[Point], tags: &[&str]) -> Vec<(Vec<String>, i64)> {
        points
            .iter()
            .map(|p| {
                let t = tags
                    .iter()
                    .map(|k| p.tags.get(*k).cloned().unwrap_or_default())
                    .collect();
                match p.fields.get("count") {
                    Some(FieldValue::Integer(n)) => (t, *n),
                    other => panic!("count is {other:?}"),
                }
            })
            .collect()
    }

    /// `context -> release -> arch -> count`, the counts that are integers.
    fn queue_model(doc: &Value) -> Vec<(Vec<String>, i64)> {
        let mut out = Vec::new();
        for (context, releases) in objects(doc) {
            for (release, arches) in objects(releases) {
                for (arch, count) in objects(arches) {
                    if let Some(n) = count.as_i64() {
                        out.push((vec![context.clone(), release.clone(), arch.clone()], n));
                    }
                }
            }
        }
        out
    }

    /// `package -> params -> release -> arch -> run`: the runs per
    /// `(release, arch)`.
    fn running_model(doc: &Value) -> Vec<(Vec<String>, i64)> {
        let mut counts: BTreeMap<Vec<String>, i64> = BTreeMap::new();
        for (_, runs) in objects(doc) {
            for (_, releases) in objects(runs) {
                for (release, arches) in objects(releases) {
                    for (arch, _) in objects(arches) {
                        *counts
                            .entry(vec![release.clone(), arch.clone()])
                            .or_default() += 1;
                    }
                }
            }
        }
        counts.into_iter().collect()
    }

    fn check_points(points: &[Point], measurement: &str) -> Result<(), TestCaseError> {
        encode_all(points);
        for p in points {
            prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
            prop_assert_eq!(p.measurement.as_str(), measurement);
            prop_assert_eq!(
                p.tags.get("instance").map(String::as_str),
                Some("production")
            );
            prop_assert_eq!(p.timestamp, Some(now()));
        }
        Ok(())
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9.+-]{1,8}"
    }

    /// A `queue_size.json` built from parts, with a release that is not an
    /// object and counts that are not integers among them.
    fn queue_doc() -> impl Strategy<Value = Value> {
        let count = prop_oneof![
            6 => (0i64..5000).prop_map(Value::from),
            1 => Just(json!("12")),
            1 => Just(json!(1.5)),
            1 => Just(Value::Null),
        ];
        let arches = proptest::collection::btree_map(name(), count, 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()));
        let release = prop_oneof![8 => arches, 1 => Just(json!([1, 2]))];
        let releases = proptest::collection::btree_map(name(), release, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()));
        proptest::collection::btree_map(name(), releases, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// A `running.json` built from parts: the same release and arch names
    /// under several packages and parameters.
    fn running_doc() -> impl Strategy<Value = Value> {
        let run = json!([{"triggers": ["glibc/2.42-2ubuntu1"]}, 3600, "running tests..."]);
        let arches = proptest::collection::btree_set("amd64|arm64|s390x", 0..3)
            .prop_map(move |s| Value::Object(s.into_iter().map(|a| (a, run.clone())).collect()));
        let releases = proptest::collection::btree_map(
            "tumbling|noble|jammy",
            prop_oneof![8 => arches, 1 => Just(json!("x"))],
            0..3,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()));
        let runs = proptest::collection::btree_map("[0-9a-f]{8}", releases, 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()));
        proptest::collection::btree_map(name(), runs, 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        /// Any document: refused exactly when it is not an object, else a
        /// point per integer count, in document order, with its context,
        /// release and arch.
        #[test]
        fn queue_size_gives_a_point_per_integer_count(doc in prop_oneof![json_like(include_str!("../../tests/fixtures/autopkgtest/production/queue_size.json")), queue_doc()]) {
            match queue_points("u", &doc, "production", now()) {
                Ok(points) => {
                    prop_assert!(doc.is_object());
                    check_points(&points, "autopkgtest_queue_size")?;
                    prop_assert_eq!(seen(&points, &["context", "release", "arch"]), queue_model(&doc));
                }
                Err(e) => prop_assert!(!doc.is_object(), "{}", e),
            }
        }

        /// Any document: refused exactly when it is not an object, else a
        /// point per `(release, arch)` counting the runs listed for it.
        #[test]
        fn running_counts_the_runs_per_release_and_arch(doc in prop_oneof![json_like(include_str!("../../tests/fixtures/autopkgtest/production/static/running.json")), running_doc()]) {
            match running_points("u", &doc, "production", now()) {
                Ok(points) => {
                    prop_assert!(doc.is_object());
                    check_points(&points, "autopkgtest_running")?;
                    let got = seen(&points, &["release", "arch"]);
                    prop_assert!(got.iter().all(|(_, n)| *n >= 1));
                    prop_assert_eq!(got, running_model(&doc));
                }
                Err(e) => prop_assert!(!doc.is_object(), "{}", e),
            }
        }
    }
}
