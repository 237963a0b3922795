//! `influxdb provision`: the options from the command line and the
//! configuration, the report on standard output, and what to do next.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, InfluxdbCommand};
use crate::config::Config;
use crate::ops::provision::{ADMIN_PASSWORD_ENV, Options, provision, read_secret, secret_path};

/// Runs an `influxdb` command.
pub(super) async fn main(cmd: InfluxdbCommand, config: &Config) -> i32 {
    let InfluxdbCommand::Provision(a) = cmd;
    let admin_password = match &a.admin_password_file {
        Some(f) => match read_secret(f) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                eprintln!(
                    "ubuntu-metrics: --admin-password-file {}: no such file",
                    f.display()
                );
                return EXIT_USAGE;
            }
            Err(e) => {
                eprintln!("ubuntu-metrics: --admin-password-file {e}");
                return EXIT_USAGE;
            }
        },
        None => std::env::var(ADMIN_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty()),
    };
    // A --url is read here, once; without one, the configured URL as the
    // configuration read it.
    let url = match &a.url {
        Some(text) => url::Url::parse(text).map_err(|e| format!("InfluxDB URL {text:?}: {e}")),
        None => (config.influxdb.url.value().cloned()).map_err(|e| {
            format!(
                "InfluxDB URL {:?}: {e}",
                crate::support::text::redact_url(&config.influxdb.url)
            )
        }),
    };
    let url = match url {
        Ok(u) => u,
        Err(e) => {
            eprintln!("ubuntu-metrics: influxdb provision: {e}");
            return EXIT_FAILED;
        }
    };
    let opts = Options {
        url,
        database: a
            .database
            .unwrap_or_else(|| config.influxdb.database.clone()),
        retention: a.retention,
        admin_user: a.admin_user,
        admin_password,
        collector_user: a.collector_user,
        grafana_user: a.grafana_user,
        secrets_dir: a.secrets_dir,
        ca_file: config.influxdb.ca_file.clone(),
        insecure_skip_verify: config.influxdb.insecure_skip_verify,
        timeout: config.influxdb.timeout.as_duration(),
    };
    match provision(&opts).await {
        Ok(report) => {
            print!("{report}");
            let collector = secret_path(&opts.secrets_dir, &opts.collector_user);
            let grafana = secret_path(&opts.secrets_dir, &opts.grafana_user);
            println!("\nNext:");
            println!(
                "  collectors: in the configuration, [influxdb] username = {:?} and password_file = {:?};\n              then `sudo ubuntu-metrics systemd apply` (systemd hands the file to the services as a credential)",
                opts.collector_user,
                collector.display().to_string(),
            );
            println!(
                "  Grafana:    `ubuntu-metrics dashboards export /etc/grafana/provisioning`, and give grafana-server\n              {}=<the password in {}>",
                crate::ops::dashboards::PASSWORD_ENV,
                grafana.display(),
            );
            EXIT_OK
        }
        Err(e) => {
            // What was done before the failure, then the failure.
            if !e.report.steps.is_empty() {
                print!("{}", e.report);
            }
            eprintln!("ubuntu-metrics: influxdb provision: {e}");
            EXIT_FAILED
        }
    }
}
