//! `systemd generate` and `systemd install`.

use super::{EXIT_FAILED, EXIT_OK, SystemdCommand};
use crate::collector::Collector;
use crate::config::Config;
use std::path::PathBuf;

pub(super) fn main(
    cmd: SystemdCommand,
    registry: &[Box<dyn Collector>],
    config: &Config,
    config_path: Option<PathBuf>,
) -> i32 {
    use crate::schedule::systemd as sd;
    match cmd {
        SystemdCommand::Generate {
            dirs,
            binary,
            if_enabled,
        } => {
            if if_enabled && !config.systemd.timers {
                return EXIT_OK;
            }
            let paths = sd::UnitPaths::new(binary, config_path);
            match sd::generate(&dirs, registry, config, &paths) {
                Ok(_) => EXIT_OK,
                Err(e) => {
                    eprintln!("ubuntu-metrics: systemd generate: {e}");
                    EXIT_FAILED
                }
            }
        }
        SystemdCommand::Install { root, binary } => {
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
            if root.is_none() {
                if let Err(e) = sd::activate(&done.timers) {
                    eprintln!("ubuntu-metrics: systemd install: {e}");
                    return EXIT_FAILED;
                }
                println!("systemd reloaded; timers enabled and started");
            }
            EXIT_OK
        }
    }
}
