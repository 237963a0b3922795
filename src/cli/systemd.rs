//! `systemd generate`, `systemd install` and `systemd apply`.

use super::{EXIT_FAILED, EXIT_OK, SystemdCommand};
use crate::collector::Collector;
use crate::config::Config;
use crate::ops::health::{rfc3339, span};
use crate::schedule::systemd as sd;
use std::path::{Path, PathBuf};

pub(super) fn main(
    cmd: SystemdCommand,
    registry: &[Box<dyn Collector>],
    config: &Config,
    config_path: Option<PathBuf>,
) -> i32 {
    match cmd {
        SystemdCommand::Generate {
            dirs,
            binary,
            if_enabled,
        } => {
            let paths = sd::UnitPaths::new(binary, config_path);
            let timers = !if_enabled || config.systemd.timers;
            match sd::generate(&dirs, registry, config, &paths, timers) {
                Ok(done) => {
                    // A generator's stderr goes to the journal.
                    for s in &done.skipped {
                        eprintln!("ubuntu-metrics: systemd generate: {s}");
                    }
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("ubuntu-metrics: systemd generate: {e}");
                    EXIT_FAILED
                }
            }
        }
        SystemdCommand::Install { root, binary } => {
            install(registry, config, config_path, root, binary)
        }
        SystemdCommand::Apply => apply(registry, config),
    }
}

fn install(
    registry: &[Box<dyn Collector>],
    config: &Config,
    config_path: Option<PathBuf>,
    root: Option<PathBuf>,
    binary: Option<PathBuf>,
) -> i32 {
    let paths = sd::UnitPaths::new(binary, config_path);
    let target = root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let done = match sd::install(&target, registry, config, &paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ubuntu-metrics: systemd install: {e}");
            return EXIT_FAILED;
        }
    };
    println!(
        "units in {}: {} and {}",
        done.unit_dir.display(),
        sd::SERVICE_TEMPLATE,
        done.timers.join(", ")
    );
    match &done.config {
        Some(p) => println!("configuration written to {}", p.display()),
        None => println!("configuration {} kept as it is", paths.config.display()),
    }
    if let Some(p) = &done.credentials {
        println!("InfluxDB user written to {} (mode 0600)", p.display());
    }
    if let Some(p) = &done.password {
        println!(
            "InfluxDB password written to {} (mode 0600), handed to the service with LoadCredential=",
            p.display()
        );
    }
    for c in &done.handed {
        println!(
            "{} handed to the service as the credential {} (LoadCredential=)",
            c.path.display(),
            c.id
        );
    }
    for s in &done.skipped {
        eprintln!("ubuntu-metrics: systemd install: {s}");
    }
    if root.is_none() {
        if let Err(e) = sd::activate(&done.timers) {
            eprintln!("ubuntu-metrics: systemd install: {e}");
            return EXIT_FAILED;
        }
        println!("systemd reloaded; timers enabled and started");
    }
    EXIT_OK
}

/// Whether the process runs as root.
fn root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn apply(registry: &[Box<dyn Collector>], config: &Config) -> i32 {
    if !root() {
        eprintln!(
            "ubuntu-metrics: systemd apply: reloading systemd and starting units needs root: run `sudo ubuntu-metrics systemd apply`"
        );
        return EXIT_FAILED;
    }
    let etc = Path::new("/etc/systemd/system");
    let installed = sd::installed_timers(etc);
    let timers_on = config.systemd.timers || installed;
    let (creds, skipped) = sd::credentials(config, Path::new("/"));
    let done = match sd::apply(&mut sd::RealSystemctl, registry, config, timers_on) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ubuntu-metrics: systemd apply: {e}");
            return EXIT_FAILED;
        }
    };
    println!("systemd reloaded: units and credentials rewritten from the configuration");
    for c in &creds {
        println!(
            "  {} handed to the services as the credential {}",
            c.path.display(),
            c.id
        );
    }
    for s in &skipped {
        println!("  {s}");
    }
    warn_if_stale_template(etc, &creds);
    if !done.stopped.is_empty() {
        println!("stopped: {}", done.stopped.join(", "));
    }
    print_timers(&done, config, timers_on, installed);
    print_daemon(&done);
    for e in &done.errors {
        eprintln!("ubuntu-metrics: systemd apply: {e}");
    }
    let findings = sd::judge(
        &done.view,
        timers_on,
        &registry
            .iter()
            .map(|c| c.name())
            .filter(|n| config.enabled(n))
            .collect::<Vec<_>>(),
    );
    for f in &findings {
        eprintln!("ubuntu-metrics: systemd apply: {}", f.message);
    }
    if done.errors.is_empty() && findings.iter().all(|f| !f.critical) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// `systemd install`'s template in /etc shadows the generator's: its
/// credentials are those of the configuration when it was installed.
fn warn_if_stale_template(etc: &Path, creds: &[sd::Credential]) {
    let template = etc.join(sd::SERVICE_TEMPLATE);
    if let Ok(text) = std::fs::read_to_string(&template) {
        let lines = sd::load_credential_lines(creds);
        let stale: Vec<&str> = lines
            .lines()
            .filter(|l| !text.lines().any(|t| t == *l))
            .map(|l| l.trim_start_matches("LoadCredential="))
            .collect();
        if !stale.is_empty() {
            eprintln!(
                "ubuntu-metrics: systemd apply: {} (written by `systemd install`) does not load {}: run `sudo ubuntu-metrics systemd install` again",
                template.display(),
                stale.join(", ")
            );
        }
    }
}

/// Each started timer and its next run, or that timers are off.
fn print_timers(done: &sd::Applied, config: &Config, timers_on: bool, installed: bool) {
    if timers_on {
        let now = chrono::Utc::now();
        println!(
            "timers{}:",
            if installed && !config.systemd.timers {
                " (installed in /etc/systemd/system)"
            } else {
                ""
            }
        );
        for t in &done.started {
            let name = t
                .strip_prefix("ubuntu-metrics-")
                .and_then(|n| n.strip_suffix(".timer"))
                .unwrap_or(t);
            match done.view.timers.get(name) {
                Some(u) => println!(
                    "  {t}: {}{}",
                    u.active_state,
                    u.next.map_or_else(String::new, |n| format!(
                        ", next run {} (in {})",
                        rfc3339(n),
                        span(n - now)
                    ))
                ),
                None => println!("  {t}: started"),
            }
        }
    } else {
        println!("timers: off ([systemd] timers = false)");
    }
}

/// The daemon's unit state, when it is installed.
fn print_daemon(done: &sd::Applied) {
    match &done.view.daemon {
        Some(d) if d.load_state == "loaded" => println!(
            "daemon {}: {} ({}), {}{}",
            sd::DAEMON_UNIT,
            d.active_state,
            d.sub_state,
            d.unit_file_state,
            if done.daemon_restarted {
                ", restarted"
            } else {
                ""
            }
        ),
        Some(d) => println!("daemon {}: {}", sd::DAEMON_UNIT, d.load_state),
        None => {}
    }
}
