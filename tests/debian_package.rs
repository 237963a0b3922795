//! The Debian package: built with `scripts/build-deb` (cargo deb, release
//! build), unpacked with `dpkg-deb -x` into a temporary root, its units
//! checked with `systemd-analyze verify` and its binary run.
//!
//! The packaged units name `/usr/bin/ubuntu-metrics`; this machine has no
//! such file, so the checks run on copies pointing at the unpacked binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of a packaged file with `/usr/bin/ubuntu-metrics` replaced by the
/// unpacked binary.
fn relocated(file: &Path, bin: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(file).unwrap();
    let out = dir.join(file.file_name().unwrap());
    std::fs::write(
        &out,
        text.replace("/usr/bin/ubuntu-metrics", bin.to_str().unwrap()),
    )
    .unwrap();
    out
}

#[test]
fn package_builds_unpacks_and_its_units_verify() {
    let root_dir = env!("CARGO_MANIFEST_DIR");
    let mut build = Command::new(format!("{root_dir}/scripts/build-deb"));
    common::outside_cargo(&mut build);
    let out = build.output().expect("scripts/build-deb runs");
    assert!(
        out.status.success(),
        "build-deb failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(root_dir).join(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap(),
    );
    assert!(
        deb.extension().is_some_and(|e| e == "deb"),
        "{}",
        deb.display()
    );

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Package: ubuntu-metrics") && info.contains("rsync"),
        "{info}"
    );

    let bin = root.join("usr/bin/ubuntu-metrics");
    for f in [
        "usr/bin/ubuntu-metrics",
        "usr/lib/systemd/system-generators/ubuntu-metrics-generator",
        "usr/lib/systemd/system/ubuntu-metrics.service",
        "etc/ubuntu-metrics/config.toml",
        "usr/share/doc/ubuntu-metrics/README.md",
        "usr/share/man/man1/ubuntu-metrics.1.gz",
        "usr/share/man/man1/ubuntu-metrics-run.1.gz",
        "usr/share/ubuntu-metrics/first-generation/run-collector.py",
        "usr/share/doc/ubuntu-metrics/first-generation/README.md",
        "usr/share/doc/ubuntu-metrics/examples/autopkgtest_queues.toml",
    ] {
        assert!(root.join(f).exists(), "{f} missing from the package");
    }
    // The credential file the daemon unit loads (LoadCredential=): there,
    // empty (no password), readable by root only.
    let password = root.join("etc/ubuntu-metrics/influxdb-password");
    let meta = std::fs::metadata(&password).expect("the package ships influxdb-password");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 0);

    // The packaged binary runs.
    let help = Command::new(&bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("run"));
    // The packaged configuration is valid.
    let config = root.join("etc/ubuntu-metrics/config.toml");
    let shown = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );

    // The packaged generator writes no timer while timers are off (the
    // default: the daemon unit is the other way), only the service
    // template (to run one collector by hand as the station does); every
    // timer once on.
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let generator = relocated(
        &root.join("usr/lib/systemd/system-generators/ubuntu-metrics-generator"),
        &bin,
        &work,
    );
    let run_generator = |config: &Path, out: &Path| {
        let st = Command::new("sh")
            .arg(&generator)
            .arg(out)
            .arg(out.with_extension("early"))
            .arg(out.with_extension("late"))
            .env("UBUNTU_METRICS_CONFIG", config)
            .status()
            .unwrap();
        assert!(st.success());
    };
    let off = tmp.path().join("gen-off");
    run_generator(&config, &off);
    assert!(off.join("ubuntu-metrics@.service").exists());
    assert!(
        !off.join("timers.target.wants").exists(),
        "timers are off by default"
    );
    let on_config = tmp.path().join("on.toml");
    std::fs::write(
        &on_config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("timers = false", "timers = true"),
    )
    .unwrap();
    let on = tmp.path().join("gen-on");
    run_generator(&on_config, &on);
    let mut units: Vec<PathBuf> = std::fs::read_dir(&on)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        units
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "timer"))
            .count(),
        ubuntu_metrics::collectors::registry().len(),
        "one timer per collector of the registry"
    );
    units.push(relocated(
        &root.join("usr/lib/systemd/system/ubuntu-metrics.service"),
        &bin,
        &work,
    ));
    common::verify_units(&units);
}
