//! `dashboards list` and `dashboards export`.

use super::{DashboardsCommand, EXIT_FAILED, EXIT_OK};
use crate::collector::Collector;
use crate::config::Config;
use crate::ops::dashboards::alerts::AlertOptions;
use crate::ops::dashboards::{ExportOptions, dashboards_of, export_of};

/// Runs a `dashboards` command.
pub(super) fn main(
    cmd: DashboardsCommand,
    registry: &[Box<dyn Collector>],
    config: &Config,
) -> i32 {
    match cmd {
        DashboardsCommand::List => {
            for d in dashboards_of(registry) {
                println!("{} ({})", d.title, d.uid);
                for s in &d.sections {
                    println!("  {}", s.title);
                    for p in &s.panels {
                        println!("    {} [{}]: {}", p.title, p.measurement, p.query());
                    }
                }
            }
            EXIT_OK
        }
        DashboardsCommand::Export(a) => {
            // --tls-skip-verify: no CA (not even influxdb.ca_file's).
            let ca_file = match a.tls_skip_verify {
                true => None,
                false => a.ca_file.as_ref().or(config.influxdb.ca_file.as_ref()),
            };
            let ca_pem = match ca_file {
                Some(f) => match std::fs::read_to_string(f) {
                    Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Some(pem),
                    Ok(_) => {
                        eprintln!(
                            "ubuntu-metrics: dashboards export: CA file {}: not a PEM certificate",
                            f.display()
                        );
                        return EXIT_FAILED;
                    }
                    Err(e) => {
                        eprintln!(
                            "ubuntu-metrics: dashboards export: CA file {}: {e}",
                            f.display()
                        );
                        return EXIT_FAILED;
                    }
                },
                None => None,
            };
            let o = ExportOptions {
                influxdb_url: a
                    .influxdb_url
                    .unwrap_or_else(|| config.influxdb.url.text().to_owned()),
                database: a
                    .database
                    .unwrap_or_else(|| config.influxdb.database.clone()),
                user: a.user,
                dashboards_path: a.dashboards_path,
                alerts: AlertOptions::from_config_of(config, registry),
                ca_pem,
                tls_skip_verify: a.tls_skip_verify,
            };
            match export_of(&a.dir, &o, registry) {
                Ok(files) => {
                    for f in files {
                        println!("{}", f.display());
                    }
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("ubuntu-metrics: dashboards export: {e}");
                    EXIT_FAILED
                }
            }
        }
    }
}
