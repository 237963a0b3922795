//! contributors: the size of the Ubuntu developer teams on Launchpad.
//!
//! What it writes: [`schema`].
//!
//! Source: for each team of the option `teams` (by default the ten teams
//! below), the sizes of its `members` and `participants` collections on
//! Launchpad, each read as one `total_size` (one request; no page of
//! people is read). A team that cannot be read (e.g. a 404: no such team)
//! is logged and skipped; the other teams are still reported. If no team
//! can be read, the collection fails.

use crate::collector::LAUNCHPAD;
use crate::collector::{
    Collector, CollectorError, CollectorOptions, Configured, Context, OptionError, Parts, Spec,
};
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, int, tag};
use crate::model::timespan::TimeSpan;
use crate::sources::http::encode_segment;
use crate::sources::launchpad::Launchpad;
use chrono::{DateTime, Utc};

/// The collector: its spec and its typed options.
pub struct Contributors {
    spec: Spec,
    options: Configured<Options>,
}

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![Measurement::new(
        "launchpad_team_members",
        &[
            tag("team", ""),
            tag("count_type", "`members` or `participants`"),
        ],
        &[int("count", "")],
    )]
}

/// The teams counted unless the option `teams` says otherwise.
pub const DEFAULT_TEAMS: [&str; 10] = [
    "motu",
    "ubuntumembers",
    "ubuntu-archive",
    "ubuntu-core-dev",
    "ubuntu-dev",
    "ubuntu-developer-members",
    "ubuntu-release",
    "ubuntu-sru",
    "ubuntu-sru-developers",
    "ubuntu-uploaders",
];

/// `[collectors.contributors]` options, checked when the configuration
/// loads and read by `collect`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Launchpad team names; a leading `~` is allowed.
    pub teams: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            teams: DEFAULT_TEAMS.iter().map(|t| t.to_string()).collect(),
        }
    }
}

impl CollectorOptions for Options {
    fn check(&self) -> Result<(), (&'static str, String)> {
        for t in &self.teams {
            team_name(t).map_err(|e| ("teams", e))?;
        }
        Ok(())
    }
}

/// The collections counted per team, also the `count_type` tag.
const COUNT_TYPES: [&str; 2] = ["members", "participants"];

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::People,
        title: "Contributors".into(),
        panels: vec![
            Panel::new(
                Kind::Timeseries,
                "Launchpad team members",
                "launchpad_team_members",
                &["count"],
                &["team"],
            )
            .filter("\"count_type\" = 'members'")
            .describe("Direct members of each team."),
            Panel::new(
                Kind::Timeseries,
                "Launchpad team participants",
                "launchpad_team_members",
                &["count"],
                &["team"],
            )
            .filter("\"count_type\" = 'participants'")
            .describe("Direct and indirect members (through member teams)."),
        ],
    }
}

impl Default for Contributors {
    fn default() -> Contributors {
        Contributors {
            spec: Spec::new(
                "contributors",
                "number of members and participants of the Ubuntu developer teams on Launchpad",
            )
            .interval(TimeSpan::hours(1))
            .schema(schema())
            .sources(vec![LAUNCHPAD.clone()])
            .panels(panels())
            .options(&[(
            "teams",
            "Launchpad team names (without ~) whose members and participants are counted; default: motu, ubuntumembers, ubuntu-archive, ubuntu-core-dev, ubuntu-dev, ubuntu-developer-members, ubuntu-release, ubuntu-sru, ubuntu-sru-developers, ubuntu-uploaders",
        )]),
            options: Configured::default(),
        }
    }
}

#[async_trait::async_trait]
impl Collector for Contributors {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn configure(&self, options: &toml::Table) -> Result<Option<Box<dyn Collector>>, OptionError> {
        Ok(Some(Box::new(Contributors {
            spec: self.spec.clone(),
            options: Configured::new(options)?,
        })))
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let options = self.options.current(&ctx.options)?;
        let teams = options
            .teams
            .iter()
            .map(|t| team_name(t).map_err(|e| CollectorError::Other(format!("option teams: {e}"))))
            .collect::<Result<Vec<String>, CollectorError>>()?;
        if teams.is_empty() {
            return Ok(Vec::new());
        }
        let lp = ctx.launchpad();
        // Every count together: the HTTP client's per-host limit keeps
        // Launchpad from seeing more than `[http] max_per_host` at once.
        let results =
            futures::future::join_all(teams.into_iter().map(|team| count_team(lp.clone(), team)))
                .await;

        // Each team fails alone.
        let mut parts = Parts::new("contributors");
        for (team, result) in results {
            let points = result.map(|counts| team_points(&team, counts, ctx.now));
            parts.add(format!("team {team}"), points);
        }
        parts.finish()
    }
}

/// A team name from the configuration: a leading `~` is allowed and
/// dropped; the rest must be a Launchpad name (lower-case letters, digits,
/// `+`, `-` and `.`, starting with a letter or a digit).
fn team_name(configured: &str) -> Result<String, String> {
    let name = configured.trim().trim_start_matches('~');
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !valid {
        return Err(format!(
            "{configured:?} is not a Launchpad team name (lower-case letters, digits, '+', '-' and '.')"
        ));
    }
    Ok(name.to_owned())
}

/// The sizes of a team's members and participants collections (in the
/// order of [`COUNT_TYPES`]), asked for together.
async fn count_team(lp: Launchpad, team: String) -> (String, Result<[u64; 2], CollectorError>) {
    let count = |kind: &str| {
        let path = format!("~{}/{kind}", encode_segment(&team));
        let lp = lp.clone();
        async move { lp.count(&path, &[]).await }
    };
    let [members, participants] = COUNT_TYPES;
    let result = futures::try_join!(count(members), count(participants)).map(|(m, p)| [m, p]);
    (team, result.map_err(CollectorError::from))
}

fn team_points(team: &str, counts: [u64; 2], now: DateTime<Utc>) -> Vec<Point> {
    COUNT_TYPES
        .iter()
        .zip(counts)
        .map(|(kind, n)| {
            Point::new("launchpad_team_members")
                .tag("team", team)
                .tag("count_type", *kind)
                .field("count", n)
                .at(now)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_names() {
        assert_eq!(team_name("motu").unwrap(), "motu");
        assert_eq!(team_name(" ~ubuntu-sru ").unwrap(), "ubuntu-sru");
        assert!(team_name("~").is_err());
        assert!(team_name("").is_err());
        assert!(team_name("Ubuntu Release").is_err());
        let bad: toml::Table = toml::from_str("teams = \"motu\"").unwrap();
        let e = crate::collector::parse_options::<Options>(&bad).unwrap_err();
        assert_eq!(e.key, "teams", "{e}");
        let bad: toml::Table = toml::from_str("teams = [\"motu\", \"\"]").unwrap();
        assert_eq!(
            Contributors::default().configure(&bad).err().unwrap().key,
            "teams"
        );
    }

    #[test]
    fn two_points_per_team() {
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let lines: Vec<String> = team_points("motu", [3, 0], now)
            .iter()
            .map(|p| p.to_line().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "launchpad_team_members,count_type=members,team=motu count=3i 1795521600000000000",
                "launchpad_team_members,count_type=participants,team=motu count=0i 1795521600000000000",
            ]
        );
    }

    #[test]
    fn default_teams_are_the_specs_ten() {
        assert_eq!(DEFAULT_TEAMS.len(), 10);
        assert!(DEFAULT_TEAMS.contains(&"ubuntumembers"));
    }
}

/// Property tests: the `teams` option's names.
#[cfg(test)]
mod props {
    use super::*;
    use crate::model::point::FieldValue;
    use proptest::prelude::*;

    /// What `team_name` must accept: after trimming and dropping leading
    /// `~`s, a first character that is a lower-case letter or a digit, the
    /// rest lower-case letters, digits, `+`, `-` or `.`.
    fn valid_model(name: &str) -> Option<String> {
        let n = name.trim().trim_start_matches('~');
        let mut chars = n.chars();
        let first = chars.next()?;
        let ok = (first.is_ascii_lowercase() || first.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        ok.then(|| n.to_owned())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::support::proptest_support::CASES))]
        /// Any text is accepted exactly when the model accepts it, as the
        /// model's name; an accepted team gives its two points, members then
        /// participants, each with its count and the schema's tags.
        #[test]
        fn team_names_agree_with_the_model_and_give_two_points(
            name in ".{0,40}|~?[a-z0-9][a-z0-9.+-]{0,20}|[ ~]{0,3}[a-zA-Z0-9 +._-]{0,12}",
            members in any::<u32>(),
            participants in any::<u32>(),
        ) {
            let got = team_name(&name);
            prop_assert_eq!(got.clone().ok(), valid_model(&name), "{:?}", name);
            if let Err(e) = &got {
                prop_assert!(e.contains(&format!("{name:?}")), "{}", e);
            }
            if let Ok(team) = got {
                let now = chrono::DateTime::from_timestamp(1_795_521_600, 0).expect("valid");
                let points = team_points(&team, [members.into(), participants.into()], now);
                crate::support::proptest_support::encode_all(&points);
                prop_assert_eq!(points.len(), 2);
                for (p, (kind, n)) in points.iter().zip([("members", members), ("participants", participants)]) {
                    prop_assert_eq!(crate::model::schema::check(&schema(), p), Ok(()));
                    prop_assert_eq!(p.tags.get("team"), Some(&team));
                    prop_assert_eq!(p.tags.get("count_type").map(String::as_str), Some(kind));
                    prop_assert_eq!(p.fields.get("count"), Some(&FieldValue::from(u64::from(n))));
                    prop_assert_eq!(p.timestamp, Some(now));
                }
            }
        }

        /// A well-formed name, with a `~` and blanks around it, reads as
        /// the name itself.
        #[test]
        fn valid_team_names_read_back(name in "[a-z0-9][a-z0-9.+-]{0,20}", tilde in any::<bool>(), pad in "[ \t]{0,2}") {
            let written = format!("{pad}{}{name}{pad}", if tilde { "~" } else { "" });
            prop_assert_eq!(team_name(&written), Ok(name));
        }
    }
}
