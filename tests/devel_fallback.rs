//! Out-of-date distro-info data (issue 10, item 19): when the data knows
//! no devel series today, the devel series is Launchpad's `current_series`
//! (the fixture Launchpad's `tumbling`), with one warning, and britney,
//! ubuntu_archive and upload_queues keep reporting it.

mod common;

use common::{NOW, bin, expected, fixtures, server};

#[test]
fn without_a_devel_series_in_distro_info_launchpad_names_it() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    // Today's distro-info data minus its last row: nothing after 26.10
    // (released 2026-10-15), so no devel series on NOW (2026-11-24).
    let csv = std::fs::read_to_string(fixtures().join("distro-info/ubuntu.csv")).unwrap();
    let stale: Vec<&str> = csv.lines().filter(|l| !l.starts_with("27.04,")).collect();
    assert_eq!(stale.len() + 1, csv.lines().count());
    let csv_path = dir.path().join("ubuntu.csv");
    std::fs::write(&csv_path, stale.join("\n") + "\n").unwrap();
    let mut config = ubuntu_metrics::config::Config {
        sources: server.sources(),
        ..Default::default()
    };
    config.sources.distro_info = csv_path.clone();
    config.influxdb.url = "http://127.0.0.1:9".into();
    config.spool.dir = dir.path().join("spool");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

    let out = bin()
        .arg("--config")
        .arg(&path)
        .args([
            "run",
            "--now",
            NOW,
            "britney",
            "ubuntu_archive",
            "upload_queues",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.contains("WARN")
                && l.contains(&*csv_path.to_string_lossy())
                && l.contains("knows no devel series")
                && l.contains("Launchpad's current series \"tumbling\"")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per run:\n{stderr}");

    // britney's devel-series reports, as with up-to-date data.
    let britney: Vec<String> = expected("britney/expected.out")
        .into_iter()
        .filter(|l| l.starts_with("update_excuses"))
        .collect();
    assert_eq!(britney.len(), 8, "{britney:?}");
    // ubuntu_archive and upload_queues, every point as with up-to-date data.
    let others = expected("ubuntu_archive/expected.out")
        .into_iter()
        .chain(expected("upload_queues/expected.out"));
    for line in britney.into_iter().chain(others) {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} is reported; stderr:\n{stderr}"
        );
    }
}
