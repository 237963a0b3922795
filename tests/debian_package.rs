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

    // Every program the packaged unit's Exec*= lines name is there once
    // installed (issue 23, defect 6), and the maintainer scripts are in
    // the package and do what they say (defect 10).
    check_exec_programs(&root, &deb);
    check_maintainer_scripts(&deb, tmp.path());

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

/// Which package ships a program the packaged units run that is not the
/// package's own (Debian and Ubuntu; `/bin` is `/usr/bin` there).
const PROGRAM_PACKAGES: &[(&str, &str)] = &[("/bin/kill", "procps"), ("/usr/bin/kill", "procps")];

/// The packages of the `.deb`'s Depends (names only: versions and
/// alternatives dropped).
fn depends(deb: &Path) -> Vec<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg("Depends")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Each absolute program an `Exec*=` line of the packaged unit runs is in
/// the package, or in a package it depends on (`/bin/kill` of
/// `ExecReload=` is procps's: without it `systemctl reload` failed with
/// 203/EXEC). A program this table does not know fails the test.
fn check_exec_programs(root: &Path, deb: &Path) {
    let deps = depends(deb);
    let unit = root.join("usr/lib/systemd/system/ubuntu-metrics.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.trim().starts_with("Exec") {
            continue;
        }
        // The prefixes of systemd.service(5): @ - : + !
        let program = value
            .trim()
            .trim_start_matches(['@', '-', ':', '+', '!'])
            .split_whitespace()
            .next()
            .unwrap_or_default();
        assert!(program.starts_with('/'), "{line}: not an absolute program");
        seen += 1;
        if root.join(program.trim_start_matches('/')).exists() {
            continue;
        }
        let Some((_, package)) = PROGRAM_PACKAGES.iter().find(|(p, _)| *p == program) else {
            panic!(
                "{line}: {program} is not in the package and PROGRAM_PACKAGES does not say which package ships it"
            );
        };
        assert!(
            deps.iter().any(|d| d == package),
            "{line}: {program} is {package}'s, not in Depends: {deps:?}"
        );
    }
    assert!(seen >= 2, "ExecStart= and ExecReload= expected in {text}");
}

/// The maintainer scripts: in the control archive with mode 0755, as
/// written in debian/, POSIX sh; run (copies with their paths moved into a
/// temporary root, `systemctl` a fake that notes its arguments) with and
/// without a running systemd, for install, upgrade, remove and purge.
fn check_maintainer_scripts(deb: &Path, tmp: &Path) {
    let listing = Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --ctrl-tarfile \"$1\" | tar -tvf -")
        .arg("sh")
        .arg(deb)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    let control = tmp.join("control");
    let st = Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(&control)
        .status()
        .unwrap();
    assert!(st.success());
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian");
    for name in ["postinst", "prerm", "postrm"] {
        let entry = listing
            .lines()
            .find(|l| l.ends_with(&format!("./{name}")))
            .unwrap_or_else(|| panic!("no {name} in the control archive:\n{listing}"));
        assert!(entry.starts_with("-rwxr-xr-x "), "{entry}");
        let text = std::fs::read_to_string(control.join(name)).unwrap();
        assert_eq!(
            text,
            std::fs::read_to_string(source.join(name)).unwrap(),
            "{name} is not debian/{name} as written"
        );
        assert!(text.starts_with("#!/bin/sh\n") && text.contains("\nset -e\n"));
        for shell in ["sh", "dash"] {
            let st = Command::new(shell)
                .arg("-n")
                .arg(control.join(name))
                .status()
                .unwrap();
            assert!(st.success(), "{shell} -n {name}");
        }
    }

    // The fake systemctl, and the scripts with their paths in `fake`.
    let fake = tmp.join("fake");
    let bin = fake.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = fake.join("calls");
    std::fs::write(
        bin.join("systemctl"),
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("systemctl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let moved = |name: &str| {
        let text = std::fs::read_to_string(control.join(name)).unwrap();
        let mut text = text.replace("set -e\n", "set -eu\n");
        for p in ["/run/systemd/", "/etc/systemd/", "/var/lib/"] {
            text = text.replace(p, &format!("{}{p}", fake.display()));
        }
        let out = fake.join(name);
        std::fs::write(&out, text).unwrap();
        out
    };
    let run = |name: &str, args: &[&str]| -> (i32, Vec<String>, String) {
        let _ = std::fs::remove_file(&calls);
        let out = Command::new("sh")
            .arg(moved(name))
            .args(args)
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
            )
            .output()
            .unwrap();
        let called = std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        (
            out.status.code().unwrap_or(-1),
            called,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases: [(&str, &[&str]); 6] = [
        ("postinst", &["configure", ""]),
        ("postinst", &["configure", "0.0.9"]),
        ("prerm", &["remove"]),
        ("prerm", &["upgrade", "0.2.0"]),
        ("postrm", &["remove"]),
        ("postrm", &["purge"]),
    ];
    // No running systemd (a chroot, an image build): nothing is called.
    for (name, args) in cases {
        let (code, called, err) = run(name, args);
        assert_eq!(code, 0, "{name} {args:?}: {err}");
        assert!(
            called.is_empty(),
            "{name} {args:?} without systemd: {called:?}"
        );
    }
    for name in ["postinst", "prerm", "postrm"] {
        let (code, _, err) = run(name, &["bogus"]);
        assert_eq!(code, 1, "{name} bogus: {err}");
    }
    // A running systemd.
    std::fs::create_dir_all(fake.join("run/systemd/system")).unwrap();
    let link = fake.join("etc/systemd/system/multi-user.target.wants/ubuntu-metrics.service");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/usr/lib/systemd/system/ubuntu-metrics.service", &link).unwrap();
    std::fs::create_dir_all(fake.join("var/lib/private/ubuntu-metrics/spool")).unwrap();
    let expect = |name: &str, args: &[&str], want: &[&str]| {
        let (code, called, err) = run(name, args);
        assert_eq!(code, 0, "{name} {args:?}: {err}");
        assert_eq!(called, want, "{name} {args:?}");
        err
    };
    expect("postinst", &["configure", ""], &["--system daemon-reload"]);
    expect(
        "postinst",
        &["configure", "0.0.9"],
        &[
            "--system daemon-reload",
            "try-restart ubuntu-metrics.service",
        ],
    );
    // Timers made by the generator: timers.target starts the new ones.
    std::fs::create_dir_all(fake.join("run/systemd/generator")).unwrap();
    std::fs::write(
        fake.join("run/systemd/generator/ubuntu-metrics-sponsoring.timer"),
        "",
    )
    .unwrap();
    expect(
        "postinst",
        &["configure", "0.0.9"],
        &[
            "--system daemon-reload",
            "try-restart ubuntu-metrics.service",
            "start timers.target",
        ],
    );
    expect(
        "prerm",
        &["remove"],
        &["stop ubuntu-metrics.service ubuntu-metrics-*.timer ubuntu-metrics@*.service"],
    );
    expect("prerm", &["upgrade", "0.2.0"], &[]);
    expect("postrm", &["remove"], &["--system daemon-reload"]);
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "remove keeps the enabled daemon's link"
    );
    let err = expect(
        "postrm",
        &["purge"],
        &[
            "--system daemon-reload",
            "reset-failed ubuntu-metrics.service ubuntu-metrics@*.service ubuntu-metrics-*.timer",
        ],
    );
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "purge removes the link"
    );
    assert!(
        fake.join("var/lib/private/ubuntu-metrics/spool").is_dir(),
        "purge keeps the state directory"
    );
    assert!(
        err.contains("kept") && err.contains("var/lib/private/ubuntu-metrics"),
        "{err}"
    );
}
