//! Serves the bundled fixtures (`tests/fixtures/`) as stand-ins for every
//! upstream source, and writes a configuration that points ubuntu-metrics
//! at them: the offline try-out and the benchmark use it.
//!
//!     fixture-server --write-config /tmp/um.toml [--latency 20ms] [--port 0]
//!         [--rsync-port N] [--state-dir DIR]
//!
//! The written configuration keeps its state (spool, answer cache) in a
//! directory of its own beside it (`/tmp/um-state/`), never in
//! `/var/lib/ubuntu-metrics`. With `--port`, the rsync daemon listens on the
//! next port (or `--rsync-port`): a restart with the same ports writes the
//! same configuration.

use clap::Parser;
use fixture_server::FixtureServer;
use std::path::{Path, PathBuf};
use ubuntu_metrics::model::timespan::TimeSpan;

#[derive(Parser)]
#[command(about = "Serve ubuntu-metrics' test fixtures as local upstream sources")]
struct Args {
    /// The fixtures directory
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))]
    root: PathBuf,
    /// Loopback port to listen on (0: any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Loopback port of the rsync daemon serving the images fixtures
    /// [default: the port after --port, any free port without --port]
    #[arg(long)]
    rsync_port: Option<u16>,
    /// The state directory the written configuration names (its spool and
    /// answer cache) [default: NAME-state beside the --write-config file]
    #[arg(long, requires = "write_config")]
    state_dir: Option<PathBuf>,
    /// Delay added to every answer (systemd time span, e.g. 20ms)
    #[arg(long, default_value = "0")]
    latency: TimeSpan,
    /// Write a ubuntu-metrics configuration pointing at this server here
    #[arg(long)]
    write_config: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let server = match FixtureServer::start_on(&args.root, ([127, 0, 0, 1], args.port).into()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fixture-server: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    let rsync_port = match (args.rsync_port, args.port) {
        (Some(p), _) => p,
        (None, 0) => 0,
        (None, p) => p.checked_add(1).unwrap_or_else(|| {
            eprintln!(
                "fixture-server: --port {p} leaves no next port for rsync: give --rsync-port"
            );
            std::process::exit(2);
        }),
    };
    let server = match server.with_rsync_on(rsync_port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fixture-server: cannot start the rsync daemon for the images fixtures: {e}");
            if args.rsync_port.is_none() && rsync_port != 0 {
                eprintln!(
                    "fixture-server: (the port after --port; choose another with --rsync-port)"
                );
            }
            std::process::exit(1);
        }
    };
    server.set_latency(args.latency.as_duration());
    if let Some(path) = &args.write_config {
        let state = match state_dir(path, args.state_dir.as_deref()) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("fixture-server: {e}");
                std::process::exit(1);
            }
        };
        let config = ubuntu_metrics::config::Config {
            sources: server.sources(),
            // Not the station's /var/lib/ubuntu-metrics: a try-out run as
            // root wrote its answer cache there.
            spool: ubuntu_metrics::config::SpoolConfig {
                dir: state.join("spool"),
                ..Default::default()
            },
            ..Default::default()
        };
        let text = toml::to_string_pretty(&config).expect("configuration serialises");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("fixture-server: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    eprintln!(
        "fixture-server: serving {} at {}",
        args.root.display(),
        server.base()
    );
    if let Some(rsync) = server.rsync_url() {
        eprintln!("fixture-server: the images fixtures at {rsync}");
    }
    println!("{}", server.base());
    // Serve until SIGTERM or SIGINT, then drop the server: that stops the
    // rsync daemon and removes its temporary directory, so nothing outlives
    // this process (a bare `kill` used to leave both behind).
    wait_for_stop_signal();
    drop(server);
    eprintln!("fixture-server: stopped");
}

/// The state directory of the configuration written at `config`: `given`,
/// else `NAME-state` beside it (`/tmp/um.toml`: `/tmp/um-state`), absolute
/// (the program may run from elsewhere).
fn state_dir(config: &Path, given: Option<&Path>) -> Result<PathBuf, String> {
    let dir = match given {
        Some(d) => d.to_owned(),
        None => {
            let stem = config
                .file_stem()
                .ok_or_else(|| format!("--write-config {}: not a file name", config.display()))?;
            let mut name = stem.to_owned();
            name.push("-state");
            config.with_file_name(name)
        }
    };
    std::path::absolute(&dir).map_err(|e| format!("state directory {}: {e}", dir.display()))
}

fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("fixture-server: cannot install signal handlers");
            std::process::exit(1);
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
}
