//! Serves the bundled fixtures (`tests/fixtures/`) as stand-ins for every
//! upstream source, and writes a configuration that points ubuntu-metrics
//! at them: the offline try-out and the benchmark use it.
//!
//!     fixture-server --write-config /tmp/um.toml [--latency 20ms] [--port 0]

use clap::Parser;
use fixture_server::FixtureServer;
use std::path::PathBuf;
use ubuntu_metrics::timespan::TimeSpan;

#[derive(Parser)]
#[command(about = "Serve ubuntu-metrics' test fixtures as local upstream sources")]
struct Args {
    /// The fixtures directory
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))]
    root: PathBuf,
    /// Loopback port to listen on (0: any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,
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
    let server = match server.with_rsync() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fixture-server: cannot start the rsync daemon for the images fixtures: {e}");
            std::process::exit(1);
        }
    };
    server.set_latency(args.latency.as_duration());
    if let Some(path) = &args.write_config {
        let config = ubuntu_metrics::config::Config {
            sources: server.sources(),
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
    println!("{}", server.base());
    // Serve until SIGTERM or SIGINT, then drop the server: that stops the
    // rsync daemon and removes its temporary directory, so nothing outlives
    // this process (a bare `kill` used to leave both behind).
    wait_for_stop_signal();
    drop(server);
    eprintln!("fixture-server: stopped");
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
