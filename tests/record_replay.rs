//! `run --record DIR` then `run --replay DIR` (issue 14, item 3): a round
//! of every collector on the fixtures (HTTP, Launchpad and rsync), recorded,
//! then replayed with the fixture server gone and every proxy pointing at a
//! closed port: the same points, at the recorded time, and no secret in the
//! recording.

mod common;

use common::*;
use std::path::Path;
use std::process::Output;

fn run(config: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .args(args)
        .args(["--all", "--dry-run"])
        .output()
        .expect("ubuntu-metrics runs")
}

/// [`run`] with every HTTP request sent to a proxy at a closed port: one
/// that left the process would fail.
fn run_offline(config: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--config")
        .arg(config)
        .arg("run")
        .args(args)
        .args(["--all", "--dry-run"])
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "")
        .output()
        .expect("ubuntu-metrics runs")
}

fn sorted_lines(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn a_recorded_round_replays_to_the_same_points_with_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("recording");
    let server = server_with_rsync();
    let mut config = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    // A source with credentials in its URL: never written to the recording.
    let britney = config
        .sources
        .url(&ubuntu_metrics::collectors::britney::PROPOSED_MIGRATION)
        .to_owned();
    config.sources.set(
        "proposed_migration",
        britney.replacen("http://", "http://user:Sekr1t@", 1),
    );
    config.spool.dir = dir.path().join("spool");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

    let recorded = run(&path, &["--now", NOW, "--record", rec.to_str().unwrap()]);
    assert_eq!(
        recorded.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    drop(server);

    let replayed = run_offline(&path, &["--replay", rec.to_str().unwrap()]);
    assert_eq!(
        replayed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let want = sorted_lines(&recorded);
    assert!(want.len() > 100, "{want:?}");
    assert_eq!(sorted_lines(&replayed), want);
    // The same as the fixtures' expected points of a collector.
    let britney: Vec<String> = want
        .iter()
        .filter(|l| {
            ["britney_", "update_excuses"]
                .iter()
                .any(|m| l.starts_with(m))
        })
        .cloned()
        .collect();
    assert_eq!(britney, expected("britney/expected.out"));

    // No secret anywhere in the recording.
    let grep = std::process::Command::new("grep")
        .args(["-rl", "Sekr1t"])
        .arg(&rec)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // A request the recording does not hold fails; nothing is fetched.
    std::fs::remove_dir_all(rec.join("answers")).unwrap();
    std::fs::create_dir(rec.join("answers")).unwrap();
    let broken = run_offline(&path, &["--replay", rec.to_str().unwrap()]);
    assert_ne!(broken.status.code(), Some(0));
}
