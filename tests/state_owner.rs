//! A command that writes into the state directory, run as root while the
//! directory belongs to another uid (the services' dynamic user), is
//! refused before it writes anything: what root left there (spool
//! segments, status.json) could not be read by the services, and the
//! points it kept were never written (issue 23, defect 3). The test needs
//! root (CI runs as root) to give a directory to another uid.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The uid the state directory is given to: not root, not the test's.
const OTHER: u32 = 12345;

fn euid() -> u32 {
    // SAFETY: geteuid(2).
    unsafe { libc::geteuid() }
}

/// A configuration with a script collector printing one point, InfluxDB
/// nowhere (a run keeps its point in the spool, under the state directory).
fn config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        "[influxdb]\nurl = \"http://127.0.0.1:9\"\ndatabase = \"x\"\n\n[collectors.hello]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"echo 'm v=1i'\"]\n[collectors.hello.measurements.m]\nfields = { v = \"int\" }\n",
    )
    .unwrap();
    p
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn root_is_refused_in_a_state_directory_of_another_uid_and_writes_nothing() {
    assert_eq!(
        euid(),
        0,
        "this test needs root (CI runs the tests as root): it gives a state directory to uid {OTHER}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(OTHER), None).unwrap();
    let commands: [&[&str]; 4] = [
        &["run", "hello"],
        &["daemon"],
        &["spool", "flush"],
        &["backfill", "nbs"],
    ];
    for args in commands {
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("UBUNTU_METRICS_STATE_DIR", &state)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(77), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!(
                "ubuntu-metrics: refusing to run as root: the state directory {} belongs to uid {OTHER};",
                state.display()
            )),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!("sudo -u '#{OTHER}' env UBUNTU_METRICS_STATE_DIR=")),
            "{args:?}: {err}"
        );
        assert!(
            entries(&state).is_empty(),
            "{args:?} wrote {:?}",
            entries(&state)
        );
        assert_eq!(std::fs::metadata(&state).unwrap().uid(), OTHER);
    }
    // A dry run is not refused: it writes nothing there (no answers kept,
    // no scripts' homes).
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["run", "hello", "--dry-run"])
        .env("UBUNTU_METRICS_STATE_DIR", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("m v=1i "),
        "{}",
        text(&out.stdout)
    );
    assert!(entries(&state).is_empty(), "{:?}", entries(&state));

    // Root's own directory: the run goes on (InfluxDB is away: 75, the
    // point kept in the spool) and writes its files.
    std::os::unix::fs::chown(&state, Some(0), None).unwrap();
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["run", "hello"])
        .env("UBUNTU_METRICS_STATE_DIR", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let written = entries(&state);
    assert!(
        written.contains(&"spool".to_owned()) && written.contains(&"status.json".to_owned()),
        "{written:?}"
    );
}

/// A user who cannot write the state directory is told which, with its
/// owner and mode, before anything runs.
#[test]
fn a_user_who_cannot_write_the_state_directory_is_told_which() {
    assert_eq!(
        euid(),
        0,
        "this test needs root (CI runs the tests as root): it runs the program as uid {OTHER}"
    );
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = config(dir.path());
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={OTHER}"),
            &format!("--regid={OTHER}"),
            "--clear-groups",
            env!("CARGO_BIN_EXE_ubuntu-metrics"),
            "--config",
        ])
        .arg(&cfg)
        .args(["run", "hello"])
        .env("UBUNTU_METRICS_STATE_DIR", &state)
        .env("UBUNTU_METRICS_CONFIG", "/dev/null")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("setpriv (util-linux) runs");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(
        err.starts_with(&format!(
            "ubuntu-metrics: cannot write in the state directory {} (owner uid 0, mode 0700): Permission denied",
            state.display()
        )),
        "{err}"
    );
    assert!(entries(&state).is_empty(), "{:?}", entries(&state));
}
