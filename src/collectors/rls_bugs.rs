//! rls_bugs: release-management bugs per supported series and team.
//!
//! What it writes: [`schema`].
//!
//! Series: supported series on the collector's date (distro-info, not ESM).
//! Sources per series `S` under [`RLS_MGR`]: `rls-X-incoming.json` and
//! `rls-X-tracking.json`, where `X` is the first letter of `S`, written twice
//! (`rls-tt-…`) for `artful` and every later series in distro-info order,
//! once for older ones. Each document is `{"tasks": {bug: [task, …]}}`; each
//! task's `team` is a list of team names, or null, empty or absent. A bug
//! counts once for each team named in any of its tasks.
//!
//! Failures: a file that cannot be fetched (e.g. a 404) or read (not JSON,
//! no `tasks` object) is logged and skipped; the other files are still
//! reported. When no file at all could be read, the collection is an error.
//! Inside a document, a bug whose tasks are not a list, a task whose `team`
//! is neither a list nor null, and a team entry that is not a string are
//! skipped with a warning. A team named by the empty string is skipped
//! silently: a point needs its `team_name` tag.

use crate::collector::{Collector, CollectorError, Context, Parts, Spec};
use crate::config::SourceUrl;
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, int, tag};
use crate::model::timespan::TimeSpan;
use crate::sources::distro_info::DistroInfo;
use crate::sources::http::join;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The collector: its spec.
pub struct RlsBugs {
    spec: Spec,
}

/// The QA team's release-management reports.
pub static RLS_MGR: SourceUrl = SourceUrl::new(
    "rls_mgr",
    "http://reports.qa.ubuntu.com/reports/rls-mgr/",
    "the rls-X-incoming/tracking JSON reports",
    "rls_bugs/",
);

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![Measurement::new(
        "distro_rls_bug_tasks",
        &[
            tag("tag", "`incoming` or `tracking`"),
            tag("release", ""),
            tag("team_name", ""),
        ],
        &[int("count", "number of bugs")],
    )]
}

const TAGS: [&str; 2] = ["incoming", "tracking"];

/// The first series whose files carry its letter twice.
const FIRST_DOUBLED: &str = "artful";

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::People,
        title: "Release bugs (rls-*-incoming / tracking)".into(),
        panels: vec![
            Panel::new(
                Kind::Timeseries,
                "Incoming release bugs by team",
                "distro_rls_bug_tasks",
                &["count"],
                &["release", "team_name"],
            )
            .filter("\"tag\" = 'incoming'"),
            Panel::new(
                Kind::Timeseries,
                "Tracked release bugs by team",
                "distro_rls_bug_tasks",
                &["count"],
                &["release", "team_name"],
            )
            .filter("\"tag\" = 'tracking'"),
            Panel::new(
                Kind::Table,
                "Release bugs (latest)",
                "distro_rls_bug_tasks",
                &["count"],
                &["tag", "release", "team_name"],
            ),
        ],
    }
}

impl Default for RlsBugs {
    fn default() -> RlsBugs {
        RlsBugs {
            spec: Spec::new(
                "rls_bugs",
                "release-management (rls) bugs per supported series, list and team",
            )
            .interval(TimeSpan::hours(1))
            .schema(schema())
            .sources(vec![RLS_MGR.clone()])
            .panels(panels()),
        }
    }
}

#[async_trait::async_trait]
impl Collector for RlsBugs {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let di = ctx.distro_info()?;
        let series: Vec<String> = di
            .supported(ctx.today())
            .iter()
            .map(|r| r.series.clone())
            .collect();
        let mut fetches = Vec::new();
        for s in &series {
            let Some(name_part) = file_letters(&di, s) else {
                tracing::warn!("rls_bugs: series {s:?} has no first letter; skipped");
                continue;
            };
            for tag in TAGS {
                let url = join(ctx.source(&RLS_MGR), &format!("rls-{name_part}-{tag}.json"));
                fetches.push(async move {
                    let doc = ctx
                        .http
                        .get_json::<Value>(&url)
                        .await
                        .map_err(CollectorError::from);
                    (s.as_str(), tag, url, doc)
                });
            }
        }
        let results = futures::future::join_all(fetches).await;

        // Each (series, tag) file fails alone.
        let mut parts = Parts::new("rls_bugs");
        for (release, tag, url, doc) in results {
            let points = doc.and_then(|d| bugs_per_team(&url, &d)).map(|counts| {
                counts
                    .into_iter()
                    .map(|(team, count)| {
                        Point::new("distro_rls_bug_tasks")
                            .tag("tag", tag)
                            .tag("release", release)
                            .tag("team_name", team)
                            .field("count", count)
                            .at(ctx.now)
                    })
                    .collect()
            });
            parts.add(format!("{release} {tag}"), points);
        }
        parts.finish()
    }
}

/// The `X` of `rls-X-….json` for `series`: its first letter, twice from
/// `artful` on (in distro-info order), once before. A series unknown to
/// the data is taken as new (twice).
fn file_letters(di: &DistroInfo, series: &str) -> Option<String> {
    let letter = series.chars().next()?;
    let doubled = match (di.index_of(series), di.index_of(FIRST_DOUBLED)) {
        (Some(i), Some(first)) => i >= first,
        _ => true,
    };
    Some(if doubled {
        format!("{letter}{letter}")
    } else {
        letter.to_string()
    })
}

/// Number of bugs per team of one rls-mgr document.
fn bugs_per_team(url: &str, doc: &Value) -> Result<BTreeMap<String, usize>, CollectorError> {
    let tasks = doc
        .get("tasks")
        .and_then(Value::as_object)
        .ok_or_else(|| CollectorError::parse(url, "no \"tasks\" object"))?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (bug, bug_tasks) in tasks {
        let Some(bug_tasks) = bug_tasks.as_array() else {
            tracing::warn!("{url}: bug {bug}: tasks are not a list; bug skipped");
            continue;
        };
        let mut teams: BTreeSet<&str> = BTreeSet::new();
        for task in bug_tasks {
            match task.get("team") {
                None | Some(Value::Null) => {}
                Some(Value::Array(names)) => {
                    for name in names {
                        match name.as_str() {
                            Some("") => {}
                            Some(n) => {
                                teams.insert(n);
                            }
                            None => tracing::warn!(
                                "{url}: bug {bug}: team {name} is not a string; skipped"
                            ),
                        }
                    }
                }
                Some(other) => {
                    tracing::warn!("{url}: bug {bug}: team {other} is not a list; skipped")
                }
            }
        }
        for team in teams {
            *counts.entry(team.to_owned()).or_default() += 1;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "version,codename,series,created,release,eol,eol-server,eol-esm\n\
16.04 LTS,Xenial Xerus,xenial,2015-10-22,2016-04-21,2021-04-30,2021-04-30,2026-04-23\n\
17.04,Zesty Zapus,zesty,2016-10-13,2017-04-13,2018-01-13\n\
17.10,Artful Aardvark,artful,2017-04-13,2017-10-19,2018-07-19\n\
18.04 LTS,Bionic Beaver,bionic,2017-10-19,2018-04-26,2023-05-31,2023-05-31,2028-04-26\n\
27.04,Tumbling Tapir,tumbling,2026-10-15,2027-04-22,2028-01-20\n";

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn counts(doc: &str) -> Vec<(String, usize)> {
        bugs_per_team("u", &json(doc))
            .unwrap()
            .into_iter()
            .collect()
    }

    #[test]
    fn letter_doubled_from_artful_on() {
        let di = DistroInfo::parse(CSV.as_bytes()).unwrap();
        assert_eq!(file_letters(&di, "xenial").unwrap(), "x");
        assert_eq!(file_letters(&di, "zesty").unwrap(), "z");
        assert_eq!(file_letters(&di, "artful").unwrap(), "aa");
        assert_eq!(file_letters(&di, "bionic").unwrap(), "bb");
        assert_eq!(file_letters(&di, "tumbling").unwrap(), "tt");
        assert_eq!(file_letters(&di, "unknown").unwrap(), "uu");
        assert_eq!(file_letters(&di, ""), None);
    }

    #[test]
    fn a_bug_counts_once_per_team_of_any_task() {
        let got = counts(
            r#"{"tasks": {
                "1": [{"team": ["foundations-bugs", "desktop-packages"]}, {"team": ["foundations-bugs"]}],
                "2": [{"team": ["foundations-bugs"]}],
                "3": [{"team": null}, {"team": []}, {}],
                "4": [{"team": []}, {"team": ["kernel"]}],
                "5": []
            }}"#,
        );
        assert_eq!(
            got,
            [
                ("desktop-packages".to_owned(), 1),
                ("foundations-bugs".to_owned(), 2),
                ("kernel".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn malformed_bugs_tasks_and_teams_are_skipped() {
        let got = counts(
            r#"{"tasks": {
                "1": {"team": ["a"]},
                "2": [{"team": "a"}, {"team": ["", 7, null, "b"]}],
                "3": [{"team": {"x": 1}}, "not a task", {"team": ["a"]}]
            }}"#,
        );
        assert_eq!(got, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
    }

    #[test]
    fn a_document_without_tasks_is_an_error_naming_the_url() {
        for doc in [r#"{}"#, r#"{"tasks": []}"#, r#"[1]"#, "null"] {
            let e = bugs_per_team("http://x/rls-tt-incoming.json", &json(doc)).unwrap_err();
            assert!(
                e.to_string().contains("http://x/rls-tt-incoming.json"),
                "{e}"
            );
        }
        assert!(counts(r#"{"tasks": {}}"#).is_empty());
    }
}

/// Property tests: any JSON document, mutated recordings included.
#[cfg(test)]
mod props {
    use super::*;
    use crate::support::proptest_support::{CASES, json_like};
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        /// Any document reads exactly when it has a `tasks` object; each
        /// team then counts at least one and at most every bug, and is
        /// named (an empty name is no team).
        #[test]
        fn bug_lists_count_each_team_at_most_once_per_bug(doc in json_like(include_str!("../../tests/fixtures/rls_bugs/rls-tt-incoming.json"))) {
            let tasks = doc.get("tasks").and_then(Value::as_object);
            match bugs_per_team("u", &doc) {
                Ok(counts) => {
                    let bugs = tasks.expect("read without a tasks object").len();
                    for (team, n) in &counts {
                        prop_assert!(!team.is_empty());
                        prop_assert!((1..=bugs).contains(n), "{} counts {} of {} bugs", team, n, bugs);
                    }
                }
                Err(e) => {
                    prop_assert!(tasks.is_none(), "refused a tasks object: {}", e);
                    prop_assert!(e.to_string().contains("no \"tasks\" object"), "{}", e);
                }
            }
        }

        /// A list built from parts (bugs, each with tasks naming teams,
        /// a team named in several tasks of a bug, tasks without a team)
        /// counts, per team, the bugs one of whose tasks names it.
        #[test]
        fn bug_lists_built_from_parts_count_the_bugs_per_team(
            bugs in proptest::collection::btree_map(
                "[0-9]{1,7}",
                proptest::collection::vec(proptest::option::of(proptest::collection::vec("kernel|desktop|foundations|server|", 0..4)), 0..4),
                0..10,
            ),
        ) {
            let mut want: BTreeMap<String, usize> = BTreeMap::new();
            let mut tasks = serde_json::Map::new();
            for (bug, bug_tasks) in &bugs {
                let mut named: BTreeSet<&str> = BTreeSet::new();
                let mut list = Vec::new();
                for task in bug_tasks {
                    match task {
                        Some(teams) => {
                            named.extend(teams.iter().map(String::as_str).filter(|t| !t.is_empty()));
                            list.push(json!({"team": teams, "status": "New"}));
                        }
                        None => list.push(json!({"status": "Fix Released"})),
                    }
                }
                for team in named {
                    *want.entry(team.to_owned()).or_default() += 1;
                }
                tasks.insert(bug.clone(), Value::Array(list));
            }
            let doc = json!({"tasks": tasks, "generated": "2026-11-24"});
            prop_assert_eq!(bugs_per_team("u", &doc).expect("a tasks object"), want);
        }
    }
}
