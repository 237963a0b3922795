mod common;

use common::*;
use fixture_server::Fault;

fn teams(names: &[&str]) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert(
        "teams".into(),
        toml::Value::Array(
            names
                .iter()
                .map(|n| toml::Value::String(n.to_string()))
                .collect(),
        ),
    );
    t
}

#[tokio::test]
async fn points_match_the_fixture() {
    let server = server();
    let points = collect("contributors", &context(&server)).await.unwrap();
    assert_points(&points, "contributors/expected.out");
    // One total_size per collection: 10 teams x 2.
    assert_eq!(server.requests().get("launchpad"), Some(&20));
}

#[tokio::test]
async fn teams_are_configurable_and_a_missing_team_is_skipped() {
    let server = server();
    let options = teams(&["ubuntu-release", "no-such-team", "~ubuntu-empty-team"]);
    let points = collect_with("contributors", &context(&server), options)
        .await
        .unwrap();
    assert_points(&points, "contributors/teams-option.out");
}

#[tokio::test]
async fn a_team_failing_halfway_is_skipped_whole() {
    let server = server();
    server.set_fault("/launchpad/devel/~motu/participants", Fault::Status(404));
    let points = collect_with(
        "contributors",
        &context(&server),
        teams(&["motu", "ubuntu-release"]),
    )
    .await
    .unwrap();
    let got = lines(&points);
    assert!(got.iter().all(|l| !l.contains("team=motu")), "{got:?}");
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn no_readable_team_is_an_error() {
    let server = server();
    let err = collect_with(
        "contributors",
        &context(&server),
        teams(&["no-such-team", "nor-this-one"]),
    )
    .await
    .unwrap_err();
    // A team's members and participants are asked side by side: either
    // may be the one that failed first.
    let msg = err.to_string();
    assert!(
        msg.contains("team no-such-team: ")
            && msg.contains("team nor-this-one: ")
            && msg.contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bad_teams_option_is_an_error() {
    let server = server();
    let mut options = toml::Table::new();
    options.insert("teams".into(), toml::Value::String("motu".into()));
    let err = collect_with("contributors", &context(&server), options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("option teams"), "{err}");
    let err = collect_with("contributors", &context(&server), teams(&["motu", ""]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("option teams"), "{err}");
}

#[tokio::test]
async fn an_empty_team_list_reports_nothing() {
    let server = server();
    let points = collect_with("contributors", &context(&server), teams(&[]))
        .await
        .unwrap();
    assert!(points.is_empty());
    assert_eq!(server.requests().get("launchpad"), None);
}
