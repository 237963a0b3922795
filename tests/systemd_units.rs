//! Generated systemd units: checked by `systemd-analyze verify`, timers
//! against the configured intervals, install under a root, the generator
//! protocol through a link, and no password anywhere but the 0600 file.

mod common;

use common::bin;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use ubuntu_metrics::collectors::registry;

fn verify(dir: &Path) {
    let mut units: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    units.sort();
    common::verify_units(&units);
}

fn timer_setting(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

const CONFIG: &str = r#"
[influxdb]
url = "https://influx.example:8086"
username = "collector"
password = "pw-must-not-leak-4242"

[daemon]
startup_delay = "45s"

[collectors.sponsoring]
interval = "1h 30min"

[collectors.versions]
enabled = false
"#;

#[test]
fn generated_units_verify_and_follow_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let normal = dir.path().join("normal");
    let st = bin()
        .args(["--config", config.to_str().unwrap(), "systemd", "generate"])
        .arg(&normal)
        .arg(dir.path().join("early"))
        .arg(dir.path().join("late"))
        .status()
        .unwrap();
    assert!(st.success());
    verify(&normal);

    for c in registry() {
        let timer = normal.join(format!("ubuntu-metrics-{}.timer", c.name()));
        let link = normal
            .join("timers.target.wants")
            .join(format!("ubuntu-metrics-{}.timer", c.name()));
        if c.name() == "versions" {
            assert!(
                !timer.exists() && !link.exists(),
                "a disabled collector gets no timer"
            );
            continue;
        }
        let text = std::fs::read_to_string(&timer).unwrap();
        let want = if c.name() == "sponsoring" {
            "1h 30min"
        } else {
            c.default_interval().text()
        };
        assert_eq!(
            timer_setting(&text, "OnUnitInactiveSec").as_deref(),
            Some(want),
            "{}",
            c.name()
        );
        assert_eq!(timer_setting(&text, "OnBootSec").as_deref(), Some("45s"));
        assert_eq!(
            timer_setting(&text, "RandomizedDelaySec").as_deref(),
            Some("1m")
        );
        assert_eq!(
            timer_setting(&text, "FixedRandomDelay").as_deref(),
            Some("yes")
        );
        // systemd's default AccuracySec=1min would undo the random delay.
        assert_eq!(timer_setting(&text, "AccuracySec").as_deref(), Some("1s"));
        assert_eq!(
            timer_setting(&text, "Unit"),
            Some(format!("ubuntu-metrics@{}.service", c.name()))
        );
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            timer,
            "wants link points at the generated timer"
        );
    }
    let service = std::fs::read_to_string(normal.join("ubuntu-metrics@.service")).unwrap();
    for needle in [
        "RuntimeMaxSec=10m",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "DynamicUser=yes",
        "StateDirectory=ubuntu-metrics",
        "run %i",
    ] {
        assert!(
            service.contains(needle),
            "service lacks {needle}:\n{service}"
        );
    }
    assert!(!service.contains("pw-must-not-leak-4242"));
}

#[test]
fn install_under_a_root_writes_units_config_and_a_private_credentials_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("source.toml");
    std::fs::write(&config, CONFIG).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = dir.path().join("root");
    let out = bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "systemd",
            "install",
            "--root",
        ])
        .arg(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("pw-must-not-leak-4242"));
    let units = root.join("etc/systemd/system");
    verify(&units);
    let link = units.join("timers.target.wants/ubuntu-metrics-sponsoring.timer");
    assert_eq!(
        std::fs::read_link(link).unwrap(),
        Path::new("/etc/systemd/system/ubuntu-metrics-sponsoring.timer")
    );
    let env_file = root.join("etc/ubuntu-metrics/credentials.env");
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains("INFLUXDB_USERNAME=\"collector\""), "{env}");
    // The password: a credential file of mode 0600, handed over with
    // LoadCredential= (not copied into an environment file).
    let creds = root.join("etc/ubuntu-metrics/influxdb-password");
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_to_string(&creds).unwrap(),
        "pw-must-not-leak-4242\n"
    );
    let service = std::fs::read_to_string(units.join("ubuntu-metrics@.service")).unwrap();
    assert!(
        service
            .contains("\nLoadCredential=influxdb-password:/etc/ubuntu-metrics/influxdb-password\n"),
        "{service}"
    );
    // The password lives only in the credentials file.
    for entry in walk(&root) {
        if entry != creds && entry.is_file() {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            assert!(
                !text.contains("pw-must-not-leak-4242"),
                "password in {}",
                entry.display()
            );
        }
    }
    // The installed configuration (without the password) is valid.
    let installed = root.join(config.strip_prefix("/").unwrap());
    let out = bin()
        .args(["--config", installed.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn as_a_systemd_generator_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let gen_link = dir.path().join("ubuntu-metrics-generator");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ubuntu-metrics"), &gen_link).unwrap();
    let run = |config: &Path, normal: &Path| {
        Command::new(&gen_link)
            .arg(normal)
            .arg(dir.path().join("e"))
            .arg(dir.path().join("l"))
            .env("UBUNTU_METRICS_CONFIG", config)
            .output()
            .unwrap()
    };
    // A missing explicit configuration is an error, as for every command:
    // nothing written, the reason on stderr (the journal).
    let normal = dir.path().join("n");
    let out = run(Path::new("/nonexistent-config.toml"), &normal);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent-config.toml"),
        "{out:?}"
    );
    assert!(!normal.exists(), "nothing is generated");
    // One that does not parse: the same.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[systemd]\ntimers = tru\n").unwrap();
    let out = run(&bad, &normal);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
    assert!(!normal.exists(), "nothing is generated");

    // Timers off: the service template only (`systemctl start
    // ubuntu-metrics@NAME.service` runs one collector as the station does).
    let off = dir.path().join("off.toml");
    std::fs::write(&off, "").unwrap();
    let out = run(&off, &normal);
    assert!(out.status.success(), "{out:?}");
    verify(&normal);
    assert!(normal.join("ubuntu-metrics@.service").exists());
    assert!(!normal.join("timers.target.wants").exists());
    assert!(
        !normal.join("ubuntu-metrics.service.d").exists(),
        "no secret file: no daemon drop-in"
    );

    // Timers on: every timer, linked.
    let on = dir.path().join("on.toml");
    std::fs::write(&on, "[systemd]\ntimers = true\n").unwrap();
    let normal = dir.path().join("n2");
    let out = run(&on, &normal);
    assert!(out.status.success(), "{out:?}");
    verify(&normal);
    assert_eq!(
        std::fs::read_dir(normal.join("timers.target.wants"))
            .unwrap()
            .count(),
        registry().len()
    );
}

/// Every secret file of the configuration that exists is handed to the
/// services as the credential named after its key: in the template, and
/// in the generator's drop-in of the packaged daemon unit.
#[test]
fn secret_files_become_credentials_of_the_template_and_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let password = secrets.join("collector-password");
    std::fs::write(&password, "pw-must-not-leak-7731\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[influxdb]\nusername = \"collector\"\npassword_file = {:?}\n\
             [outputs.vm]\nurl = \"http://vm.example:8428\"\npassword_file = \"/nonexistent/vm-password\"\n",
            password.to_str().unwrap()
        ),
    )
    .unwrap();
    let normal = dir.path().join("n");
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["systemd", "generate", "--if-enabled"])
        .arg(&normal)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The missing file is left out (systemd would refuse to start the
    // service), and said.
    assert!(
        stderr.contains("outputs.vm.password_file /nonexistent/vm-password: no such file"),
        "{stderr}"
    );
    let line = format!(
        "LoadCredential=influxdb.password_file:{}",
        password.display()
    );
    let service = std::fs::read_to_string(normal.join("ubuntu-metrics@.service")).unwrap();
    assert!(service.lines().any(|l| l == line), "{service}");
    assert!(!service.contains("outputs.vm"), "{service}");
    let drop_in = normal.join("ubuntu-metrics.service.d/50-credentials.conf");
    let text = std::fs::read_to_string(&drop_in).unwrap();
    assert!(text.contains("\n[Service]\n"), "{text}");
    assert!(text.lines().any(|l| l == line), "{text}");
    assert!(!text.contains("pw-must-not-leak-7731") && !service.contains("pw-must-not-leak-7731"));
    // The packaged daemon unit (its binary: this one) with the drop-in
    // beside it verifies.
    let daemon = normal.join("ubuntu-metrics.service");
    let packaged = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/ubuntu-metrics.service"),
    )
    .unwrap();
    std::fs::write(
        &daemon,
        packaged.replace(
            "/usr/bin/ubuntu-metrics",
            env!("CARGO_BIN_EXE_ubuntu-metrics"),
        ),
    )
    .unwrap();
    let instance = normal.join("ubuntu-metrics@images.service");
    std::fs::copy(normal.join("ubuntu-metrics@.service"), &instance).unwrap();
    common::verify_units(&[daemon.as_path(), instance.as_path()]);
    // The sandbox keeps its score with the credentials.
    assert!(exposure(&instance) <= 2.0);

    // The file gone: the drop-in goes at the next generation.
    std::fs::remove_file(&password).unwrap();
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["systemd", "generate", "--if-enabled"])
        .arg(&normal)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!drop_in.exists());
    let service = std::fs::read_to_string(normal.join("ubuntu-metrics@.service")).unwrap();
    assert!(
        !service.contains("LoadCredential=influxdb.password_file"),
        "{service}"
    );
}

/// `systemd install` with a `password_file`: the units hand that file over
/// as a credential; it is not copied into influxdb-password, and the
/// installed configuration still names it.
#[test]
fn install_hands_a_password_file_over_without_copying_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let secret = Path::new("/etc/ubuntu-metrics/secrets/collector-password");
    let under = root.join(secret.strip_prefix("/").unwrap());
    std::fs::create_dir_all(under.parent().unwrap()).unwrap();
    std::fs::write(&under, "pw-must-not-leak-5150\n").unwrap();
    let config = dir.path().join("source.toml");
    std::fs::write(
        &config,
        format!(
            "[influxdb]\nusername = \"collector\"\npassword_file = {:?}\n",
            secret.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["systemd", "install", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("handed to the service as the credential influxdb.password_file"),
        "{stdout}"
    );
    assert!(!root.join("etc/ubuntu-metrics/influxdb-password").exists());
    let service =
        std::fs::read_to_string(root.join("etc/systemd/system/ubuntu-metrics@.service")).unwrap();
    assert!(
        service.lines().any(|l| l
            == "LoadCredential=influxdb.password_file:/etc/ubuntu-metrics/secrets/collector-password"),
        "{service}"
    );
    let installed = std::fs::read_to_string(root.join(config.strip_prefix("/").unwrap())).unwrap();
    assert!(
        installed.contains("password_file = \"/etc/ubuntu-metrics/secrets/collector-password\""),
        "{installed}"
    );
    for entry in walk(&root) {
        if entry != under && entry.is_file() {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            assert!(
                !text.contains("pw-must-not-leak-5150"),
                "{}",
                entry.display()
            );
        }
    }
}

/// A relative `--config` is written into the units as an absolute path:
/// systemd starts services in `/`.
#[test]
fn a_relative_config_path_is_stored_absolute() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rel.toml"), "").unwrap();
    for args in [
        vec!["systemd", "generate", "out"],
        vec!["systemd", "install", "--root", "root"],
    ] {
        let out = bin()
            .current_dir(dir.path())
            .args(["--config", "rel.toml"])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let units = if args[1] == "generate" {
            dir.path().join("out")
        } else {
            dir.path().join("root/etc/systemd/system")
        };
        let service = std::fs::read_to_string(units.join("ubuntu-metrics@.service")).unwrap();
        let exec = timer_setting(&service, "ExecStart").unwrap();
        let want = format!(
            "--config {} run %i",
            std::fs::canonicalize(dir.path())
                .unwrap()
                .join("rel.toml")
                .display()
        );
        assert!(exec.ends_with(&want), "{args:?}: {exec}");
    }
}

/// `systemd install` never writes a secret into a world-readable file:
/// credentials in `influxdb.url` move to the 0600 files; credentials in a
/// source URL (nowhere to move them) are refused with a message.
#[test]
fn install_moves_url_credentials_out_of_the_world_readable_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("source.toml");
    std::fs::write(
        &config,
        "[influxdb]\nurl = \"https://writer:url-pw-9931@influx.example:8086/\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = dir.path().join("root");
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["systemd", "install", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("url-pw-9931"), "{all}");
    let installed = root.join(config.strip_prefix("/").unwrap());
    let text = std::fs::read_to_string(&installed).unwrap();
    assert!(
        !text.contains("url-pw-9931") && !text.contains("writer@"),
        "{text}"
    );
    assert!(text.contains("https://influx.example:8086/"), "{text}");
    for entry in walk(&root) {
        if !entry.is_file() || entry.is_symlink() {
            continue;
        }
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        if text.contains("url-pw-9931") || text.contains("writer") {
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", entry.display());
        }
    }
    assert_eq!(
        std::fs::read_to_string(root.join("etc/ubuntu-metrics/influxdb-password")).unwrap(),
        "url-pw-9931\n"
    );
    assert!(
        std::fs::read_to_string(root.join("etc/ubuntu-metrics/credentials.env"))
            .unwrap()
            .contains("INFLUXDB_USERNAME=\"writer\"")
    );

    // Credentials in a source URL: refused, nothing written.
    std::fs::write(
        &config,
        "[sources]\nsponsoring = \"https://me:src-pw-5512@reports.example/general.json\"\n",
    )
    .unwrap();
    let root2 = dir.path().join("root2");
    let out = bin()
        .arg("--config")
        .arg(&config)
        .args(["systemd", "install", "--root"])
        .arg(&root2)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("credentials in a source URL") && err.contains("sponsoring"),
        "{err}"
    );
    assert!(!err.contains("src-pw-5512"), "{err}");
    assert!(!root2.exists(), "nothing is installed");
}

/// The exposure score of `systemd-analyze security --offline=true`.
fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .expect("systemd-analyze runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure level for {}:\n{text}{}",
                unit.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    eprintln!("{}: {line}", unit.display());
    score
}

/// The generated service and the packaged daemon unit score 2.0 or less
/// ("OK"), and the daemon unit carries the same sandbox as the generated
/// one.
#[test]
fn units_are_hardened_to_an_exposure_of_2_or_less() {
    let dir = tempfile::tempdir().unwrap();
    let normal = dir.path().join("n");
    let st = bin()
        .args(["systemd", "generate"])
        .arg(&normal)
        .status()
        .unwrap();
    assert!(st.success());
    let generated = normal.join("ubuntu-metrics@.service");
    // systemd-analyze security wants an instance of a template.
    let instance = dir.path().join("ubuntu-metrics@images.service");
    std::fs::copy(&generated, &instance).unwrap();
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/ubuntu-metrics.service");
    for unit in [instance.as_path(), packaged.as_path()] {
        let score = exposure(unit);
        assert!(score <= 2.0, "{}: exposure {score}", unit.display());
    }
    let daemon = std::fs::read_to_string(&packaged).unwrap();
    for line in ubuntu_metrics::schedule::systemd::HARDENING.lines() {
        assert!(
            daemon.lines().any(|l| l == line),
            "debian/ubuntu-metrics.service lacks {line}"
        );
    }
    assert!(
        daemon
            .contains("\nLoadCredential=influxdb-password:/etc/ubuntu-metrics/influxdb-password\n")
    );
}
