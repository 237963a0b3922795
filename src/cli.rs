//! The command line: `list`, `run`, `spool`, `config show`, and the multi-call
//! behaviour (a link named after a collector runs it).

use crate::collector::Collector;
use crate::collectors::registry;
use crate::config::Config;
use crate::runner::{self, Outcome};
use crate::sinks::influxdb::InfluxWriter;
use crate::sinks::print::{Format, Printer};
use crate::sinks::spool::Spool;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Exit statuses (documented in the README).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// The points were collected but kept on disk (the spool) for a later
/// write, because InfluxDB could not take them now (`EX_TEMPFAIL`).
pub const EXIT_TEMPFAIL: i32 = 75;

#[derive(Debug, Parser)]
#[command(
    name = "ubuntu-metrics",
    version,
    about = "Collect Ubuntu release-team KPIs and write them to InfluxDB 1.x",
    long_about = "Collect Ubuntu release-team KPIs and write them to InfluxDB 1.x.\n\n\
        Each collector reads one Ubuntu report (Launchpad, autopkgtest, britney, the archive \
        team's reports, cdimage, QA and sponsoring reports) and returns points. Invoked through \
        a link named after a collector (e.g. `upload-queues`), it runs that collector."
)]
pub struct Cli {
    /// Configuration file [default: $UBUNTU_METRICS_CONFIG, else /etc/ubuntu-metrics/config.toml if it exists]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Show debug logs (each upstream request, each write)
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every collector: name, effective interval, measurements
    List,
    /// Collect once and write to InfluxDB (or print, with --dry-run)
    Run(RunArgs),
    /// Run every enabled collector on its interval until SIGTERM (SIGHUP reloads the configuration)
    Daemon,
    /// Write or install systemd units (a timer per enabled collector)
    #[command(subcommand)]
    Systemd(SystemdCommand),
    /// Show or check the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Set up InfluxDB for the station: database, retention, users (admin, collector, grafana)
    #[command(subcommand)]
    Influxdb(crate::provision::InfluxdbCommand),
    /// Grafana dashboards and provisioning files, generated from the collectors
    #[command(subcommand)]
    Dashboards(crate::dashboards::DashboardsCommand),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell)
    Completions(crate::clidoc::CompletionsArgs),
    /// Print the man page (roff), or write every page into a directory
    Man(crate::clidoc::ManArgs),
    /// Points waiting on disk for InfluxDB: show them, or write them now
    #[command(subcommand)]
    Spool(SpoolCommand),
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// What waits for InfluxDB (records, points, bytes, since when) and the dead-letter file
    Status,
    /// Write what waits now: exit 0 when the spool is empty, 75 when InfluxDB still cannot take it
    Flush,
}

#[derive(Debug, Subcommand)]
pub enum SystemdCommand {
    /// Write the units into NORMAL_DIR (the systemd generator protocol: NORMAL_DIR [EARLY_DIR LATE_DIR])
    Generate {
        #[arg(required = true, num_args = 1..=3, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The binary the service runs [default: this one]
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Write nothing unless the configuration says `[systemd] timers = true` (for the packaged generator)
        #[arg(long)]
        if_enabled: bool,
    },
    /// Install the units, the configuration and a mode-0600 credentials file; without --root, also reload systemd and enable the timers
    Install {
        /// Install under this directory instead of / (nothing is enabled or reloaded)
        #[arg(long)]
        root: Option<PathBuf>,
        /// The binary the service runs [default: this one]
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Collectors to run
    #[arg(
        value_name = "NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub names: Vec<String>,
    /// Run every enabled collector
    #[arg(long)]
    pub all: bool,
    /// Print the points instead of writing them
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Output format of --dry-run
    #[arg(long, value_enum, default_value = "lp", requires = "dry_run")]
    pub format: Format,
    /// Collect as if it were this time (RFC 3339, e.g. 2026-11-24T12:00:00Z): for replaying fixtures and tests
    #[arg(long, value_name = "TIME")]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file + environment + defaults), secrets redacted
    Show,
}

/// Normalises a collector name given with `-` (as in the first
/// generation's script names) to the registry's `_`.
pub fn normalise_name(name: &str) -> String {
    name.replace('-', "_")
}

/// If the program was invoked through a link named after a collector,
/// rewrite the arguments to `run <collector> ...`.
pub fn multicall_args(args: Vec<OsString>) -> Vec<OsString> {
    let Some(argv0) = args.first() else {
        return args;
    };
    let stem = Path::new(argv0)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem == "ubuntu-metrics-generator" {
        // Installed in a systemd generator directory: argv is NORMAL EARLY LATE.
        let mut v = vec![
            OsString::from("ubuntu-metrics"),
            OsString::from("systemd"),
            OsString::from("generate"),
        ];
        v.extend(args.into_iter().skip(1));
        return v;
    }
    let name = normalise_name(&stem);
    if registry().iter().any(|c| c.name() == name) {
        let mut v = vec![
            OsString::from("ubuntu-metrics"),
            OsString::from("run"),
            OsString::from(name),
        ];
        v.extend(args.into_iter().skip(1));
        v
    } else {
        args
    }
}

/// The program: parse the command line, run, return the exit status.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let args = multicall_args(args);
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    init_logging(cli.verbose);
    if let Some(status) = crate::clidoc::run_early(&cli.command) {
        return status;
    }
    let registry = registry();
    let config_path = Config::locate(cli.config.as_deref());
    let config = match Config::load(config_path.as_deref(), &registry) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ubuntu-metrics: configuration error: {e}");
            return EXIT_USAGE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ubuntu-metrics: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    match cli.command {
        Command::List => list(&registry, &config),
        Command::Config(ConfigCommand::Show) => {
            print!("{}", config.to_redacted_toml());
            EXIT_OK
        }
        Command::Run(args) => rt.block_on(run(&registry, &config, &args, args.now)),
        Command::Spool(cmd) => rt.block_on(spool_command(cmd, &config)),
        Command::Systemd(cmd) => systemd(cmd, &registry, &config, config_path),
        Command::Daemon => rt.block_on(crate::schedule::daemon::run(
            config_path,
            config,
            std::sync::Arc::new(registry),
        )),
        Command::Influxdb(cmd) => rt.block_on(crate::provision::main(cmd, &config)),
        Command::Dashboards(cmd) => crate::dashboards::main(cmd, &config),
        Command::Completions(_) | Command::Man(_) => EXIT_OK, // handled by run_early
    }
}

fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose {
        "ubuntu_metrics=debug,info"
    } else {
        "info"
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|_| !verbose)
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // Under systemd, stderr goes to the journal: no colours, no time stamps
    // (the journal has its own), and a syslog priority prefix per line.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .event_format(crate::logging::Journald)
            .try_init();
        return;
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriter)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

fn systemd(
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

fn list(registry: &[Box<dyn Collector>], config: &Config) -> i32 {
    println!(
        "{:<16} {:<9} {:<8} MEASUREMENTS",
        "COLLECTOR", "INTERVAL", "ENABLED"
    );
    for c in registry {
        println!(
            "{:<16} {:<9} {:<8} {}",
            c.name(),
            config.interval(c.as_ref()).to_string(),
            if config.enabled(c.name()) {
                "yes"
            } else {
                "no"
            },
            c.measurements().join(", ")
        );
    }
    EXIT_OK
}

/// Which collectors a `run` asks for, or a usage error.
fn select<'a>(
    registry: &'a [Box<dyn Collector>],
    config: &Config,
    args: &RunArgs,
) -> Result<Vec<&'a dyn Collector>, String> {
    if args.all {
        return Ok(registry
            .iter()
            .filter(|c| config.enabled(c.name()))
            .map(|c| c.as_ref())
            .collect());
    }
    let mut out: Vec<&dyn Collector> = Vec::new();
    for n in &args.names {
        let n = normalise_name(n);
        match registry.iter().find(|c| c.name() == n) {
            Some(c) if !out.iter().any(|o| o.name() == c.name()) => out.push(c.as_ref()),
            Some(_) => {}
            None => {
                let known: Vec<_> = registry.iter().map(|c| c.name()).collect();
                return Err(format!(
                    "unknown collector {n:?}; known: {}",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

async fn run(
    registry: &[Box<dyn Collector>],
    config: &Config,
    args: &RunArgs,
    now: Option<DateTime<Utc>>,
) -> i32 {
    let selected = match select(registry, config, args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_USAGE;
        }
    };
    let writer = if args.dry_run {
        None
    } else {
        let password = match config.password() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("ubuntu-metrics: configuration error: {e}");
                return EXIT_USAGE;
            }
        };
        match InfluxWriter::new(&config.influxdb, password) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("ubuntu-metrics: configuration error: {e}");
                return EXIT_USAGE;
            }
        }
    };
    let base = match runner::context(config, now.unwrap_or_else(Utc::now)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_FAILED;
        }
    };
    let timeout = Some(config.daemon.run_timeout.as_duration());
    let outcomes = crate::progress::collect_many(&selected, &base, config, timeout).await;
    let summary = crate::progress::Summary::of(&outcomes);
    let mut status = EXIT_OK;
    if let Some(line) = failure_summary(&outcomes, base.http.answers()) {
        eprintln!("ubuntu-metrics: {line}");
        status = EXIT_FAILED;
    }
    match writer {
        None => {
            let d = runner::deliver_to(&outcomes, &Printer::stdout(args.format), false).await;
            for e in d.unencodable {
                eprintln!("ubuntu-metrics: {e}");
                status = EXIT_FAILED;
            }
            if let Some(e) = d.output_error {
                eprintln!("ubuntu-metrics: cannot write to standard output: {e}");
                status = EXIT_FAILED;
            }
        }
        Some(w) => {
            let spool = open_spool(config);
            let d =
                runner::deliver(&outcomes, &w, spool.as_ref(), config.self_metrics.enabled).await;
            status = report_delivery(&d, config, status);
        }
    }
    summary.print_if_interactive();
    status
}

/// The closing line of a run with failed collectors (their errors were
/// logged once as they happened), or `None` when every collector succeeded.
/// When every collector failed and no upstream server answered at all, it
/// says so: the machine is most likely offline.
fn failure_summary(outcomes: &[Outcome], answers: u64) -> Option<String> {
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.name)
        .collect();
    if failed.is_empty() {
        return None;
    }
    if failed.len() == outcomes.len() && answers == 0 && outcomes.len() > 1 {
        return Some(format!(
            "no upstream source could be reached: all {} collectors failed and no server answered. \
             Is this machine offline or behind a proxy (HTTPS_PROXY)? To try ubuntu-metrics \
             without the network, run ./scripts/try-offline in its source tree",
            outcomes.len()
        ));
    }
    Some(format!(
        "{} of {} collectors failed ({}); each error is logged above",
        failed.len(),
        outcomes.len(),
        failed.join(", ")
    ))
}

/// The spool of the configuration, or `None` (with a warning) when it is
/// not usable: a run still writes, but cannot keep what InfluxDB refuses.
fn open_spool(config: &Config) -> Option<Spool> {
    let max = config.spool.max_bytes().ok()?;
    match Spool::open(&config.spool.dir, max) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "{e}: points that InfluxDB cannot take now would be lost; set [spool] dir to a writable directory"
            );
            None
        }
    }
}

/// Says what happened to the points and returns the exit status: 1 for
/// points lost or refused (dead-letter file), else 75 when points wait in
/// the spool, else `status`.
fn report_delivery(d: &runner::Delivery, config: &Config, mut status: i32) -> i32 {
    let mut failed = status == EXIT_FAILED;
    for e in &d.unencodable {
        eprintln!("ubuntu-metrics: not written: {e}");
        failed = true;
    }
    for e in &d.spool_errors {
        eprintln!("ubuntu-metrics: {e}");
        failed = true;
    }
    if d.dead_lettered > 0 {
        eprintln!(
            "ubuntu-metrics: InfluxDB refused {} points for good; they are in the dead-letter file {} with its answer",
            d.dead_lettered,
            config
                .spool
                .dir
                .join(crate::sinks::spool::DEAD_LETTER_FILE)
                .display()
        );
        failed = true;
    }
    if d.lost > 0 {
        eprintln!(
            "ubuntu-metrics: {} points are LOST: InfluxDB could not take them{} and the spool {} could not keep them",
            d.lost,
            d.error
                .as_ref()
                .map_or_else(String::new, |e| format!(" ({e})")),
            config.spool.dir.display()
        );
        failed = true;
    }
    if d.replayed > 0 {
        eprintln!(
            "ubuntu-metrics: wrote {} points kept in the spool by earlier runs",
            d.replayed
        );
    }
    let mut kept = false;
    if d.busy && d.error.is_none() && d.spooled > 0 {
        eprintln!(
            "ubuntu-metrics: another process is writing the spool; {} points of this run wait there for it (or the next run, or `ubuntu-metrics spool flush`)",
            d.spooled
        );
        kept = true;
    } else if let Some(e) = d.error.as_ref().filter(|_| d.lost == 0) {
        eprintln!("ubuntu-metrics: InfluxDB could not take the points now: {e}");
        eprintln!(
            "ubuntu-metrics: {} points of this run are kept on disk in {} for a later write (the next run, or `ubuntu-metrics spool flush`)",
            d.spooled,
            config.spool.dir.display()
        );
        kept = true;
    }
    if failed {
        status = EXIT_FAILED;
    } else if kept {
        status = EXIT_TEMPFAIL;
    }
    status
}

/// `spool status` / `spool flush`.
async fn spool_command(cmd: SpoolCommand, config: &Config) -> i32 {
    let max = match config.spool.max_bytes() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ubuntu-metrics: configuration error: spool.max_size: {e}");
            return EXIT_USAGE;
        }
    };
    let dir = &config.spool.dir;
    if matches!(cmd, SpoolCommand::Status) && !dir.exists() {
        print_spool_status(config, &crate::sinks::spool::Status::default());
        return EXIT_OK;
    }
    let spool = match Spool::open(dir, max) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ubuntu-metrics: {e}");
            return EXIT_FAILED;
        }
    };
    match cmd {
        SpoolCommand::Status => match spool.status() {
            Ok(st) => {
                print_spool_status(config, &st);
                EXIT_OK
            }
            Err(e) => {
                eprintln!("ubuntu-metrics: {e}");
                EXIT_FAILED
            }
        },
        SpoolCommand::Flush => {
            let password = match config.password() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("ubuntu-metrics: configuration error: {e}");
                    return EXIT_USAGE;
                }
            };
            let writer = match InfluxWriter::new(&config.influxdb, password) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("ubuntu-metrics: configuration error: {e}");
                    return EXIT_USAGE;
                }
            };
            let r = runner::replay(&spool, &writer, std::time::Duration::from_secs(300)).await;
            let left = spool.status();
            if r.busy {
                eprintln!(
                    "ubuntu-metrics: another process has been writing the spool for 5 minutes; try again later"
                );
                return EXIT_TEMPFAIL;
            }
            println!("wrote {} points from the spool", r.written);
            let mut status = EXIT_OK;
            if let Some(e) = &r.error {
                eprintln!("ubuntu-metrics: {e}");
                status = EXIT_FAILED;
            }
            if r.dead_lettered > 0 {
                eprintln!(
                    "ubuntu-metrics: InfluxDB refused {} points for good; they are in the dead-letter file {} with its answer",
                    r.dead_lettered,
                    spool.dead_letter_path().display()
                );
                status = EXIT_FAILED;
            }
            match left {
                Ok(st) if st.records == 0 => {
                    println!("the spool is empty");
                }
                Ok(st) => {
                    if let Some(e) = &r.stopped {
                        eprintln!("ubuntu-metrics: InfluxDB could not take the points now: {e}");
                    }
                    eprintln!(
                        "ubuntu-metrics: {} points in {} records still wait in {}",
                        st.points,
                        st.records,
                        dir.display()
                    );
                    if status == EXIT_OK {
                        status = EXIT_TEMPFAIL;
                    }
                }
                Err(e) => {
                    eprintln!("ubuntu-metrics: {e}");
                    status = EXIT_FAILED;
                }
            }
            status
        }
    }
}

fn print_spool_status(config: &Config, st: &crate::sinks::spool::Status) {
    let time = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    };
    println!("dir: {}", config.spool.dir.display());
    println!("max_size: {}", config.spool.max_size);
    println!("records: {}", st.records);
    println!("points: {}", st.points);
    println!("bytes: {}", st.bytes);
    println!("oldest_record: {}", time(st.oldest));
    println!(
        "oldest_point: {}",
        time(st.oldest_point.map(DateTime::from_timestamp_nanos))
    );
    println!(
        "dead_letter: {}",
        config
            .spool
            .dir
            .join(crate::sinks::spool::DEAD_LETTER_FILE)
            .display()
    );
    println!("dead_letter_batches: {}", st.dead_letter_entries);
    println!("dead_letter_bytes: {}", st.dead_letter_bytes);
    println!("dropped_unreported: {}", st.dropped_unreported);
}
