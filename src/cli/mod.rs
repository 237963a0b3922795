//! The command line: the clap definition of every subcommand, the
//! multi-call behaviour (a link named after a collector runs it), and the
//! exit statuses. Each command's body is in a file of its own; the library
//! modules return typed errors, and only this layer prints them (once) and
//! turns them into exit statuses.

mod backfill;
pub mod clidoc;
mod config;
mod daemon;
mod dashboards;
mod influxdb;
mod jq_filter;
mod list;
mod new;
mod owner;
pub mod progress;
mod run;
mod spool;
mod status;
mod systemd;

use crate::collectors::registry;
use crate::config::Config;
use crate::model::timespan::TimeSpan;
use crate::ops::dashboards::DEFAULT_DASHBOARDS_PATH;
use crate::ops::provision::{ADMIN_USER_ENV, DEFAULT_SECRETS_DIR, Retention};
use crate::sinks::print::Format;
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
/// `backfill`: the document was read to its end and every good row
/// written, but some rows were malformed and are not (`EX_DATAERR`).
pub const EXIT_DATAERR: i32 = 65;
/// A command that writes into the state directory was refused before it
/// wrote anything: root in a directory of another user (what it wrote
/// could not be read by the services), or a user who cannot write there
/// (`EX_NOPERM`).
pub const EXIT_NOPERM: i32 = 77;

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
    /// List every collector: name, effective interval, enabled, measurements, and its description under it
    List,
    /// Collect once and write to InfluxDB (or print, with --dry-run)
    Run(RunArgs),
    /// Run every enabled collector on its interval until SIGTERM (SIGHUP reloads the configuration)
    Daemon,
    /// Write or install systemd units (a timer per enabled collector)
    #[command(subcommand)]
    Systemd(SystemdCommand),
    /// Show the effective configuration (`config show`)
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Set up InfluxDB for the station: database, retention, users (admin, collector, grafana)
    #[command(subcommand)]
    Influxdb(InfluxdbCommand),
    /// Grafana dashboards and provisioning files, generated from the collectors
    #[command(subcommand)]
    Dashboards(DashboardsCommand),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write every page into a directory
    Man(ManArgs),
    /// Points waiting on disk for InfluxDB: show them, or write them now
    #[command(subcommand)]
    Spool(SpoolCommand),
    /// How each enabled collector and the spool are (exit 0 OK; 1 WARNING: failing, late or spool too old; 2 CRITICAL or configuration error; 3 UNKNOWN: nothing has run yet)
    Status(StatusArgs),
    /// Print the configuration block of a new collector declared in the configuration (a script, URLs and a jq filter, or a first-generation Python collector run once to declare its measurements), and a Python skeleton for a script
    New(NewArgs),
    /// Write a time-series source's whole history (or since DATE) to every output (or those named), in batches; resumable per output
    Backfill(BackfillArgs),
}

impl Command {
    /// Whether the command does nothing but print (a listing, a
    /// configuration, a status, a man page): read through `| head`, it may
    /// end when its reader does.
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::List
                | Command::Config(ConfigCommand::Show)
                | Command::Status(_)
                | Command::Dashboards(DashboardsCommand::List)
                | Command::Completions(_)
                | Command::Man(ManArgs { dir: None })
        )
    }
}

/// A command that only prints ends quietly when its reader has gone
/// (`ubuntu-metrics dashboards list | head`), as `cat` does: SIGPIPE is
/// given back its default action. Rust ignores it, so that each write to a
/// closed pipe fails instead, and `println!` panics on that failure. Not
/// for the commands that write anything else (a run, the daemon, files):
/// they must not die halfway for a closed standard output.
fn end_with_the_reader() {
    // SAFETY: signal() only sets the process's disposition of SIGPIPE back
    // to the default; no handler of ours is installed, so none of our code
    // runs in a signal's context.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `new NAME --exec|--http|--first-generation CHECKOUT`: exactly one of
/// the three (a group, so that clap's error names all three).
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("kind")
        .args(["exec", "http", "first_generation"])
        .required(true)
        .multiple(false)
))]
pub struct NewArgs {
    /// The new collector's name (lower-case letters, digits, `_`); with --first-generation, the old collector (metrics.collectors.NAME)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A script collector: prints its block and a commented Python skeleton
    #[arg(long)]
    pub exec: bool,
    /// A declarative collector: URLs and a jq filter
    #[arg(long)]
    pub http: bool,
    /// A first-generation Python collector of this checkout of the old repository: runs it once through the adapter and prints its block, with the measurements and field types of the points it returned
    #[arg(long, value_name = "CHECKOUT")]
    pub first_generation: Option<PathBuf>,
    /// With --first-generation: the adapter the block's command runs (default: the Debian package's /usr/share/ubuntu-metrics/first-generation/run-collector.py)
    #[arg(long, value_name = "PATH", requires = "first_generation")]
    pub adapter: Option<PathBuf>,
    /// With --exec: write the Python skeleton to this file (not overwritten) and print only the block
    #[arg(long, value_name = "PATH", requires = "exec")]
    pub script: Option<PathBuf>,
}

/// `backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The source (update_excuses, nbs, component_mismatches, component_mismatches_proposed) or a collector (all its sources)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Only rows from this time on (RFC 3339, or a date YYYY-MM-DD meaning its midnight UTC)
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Rows per write to an output
    #[arg(long, value_name = "ROWS", default_value_t = crate::runner::backfill::DEFAULT_BATCH_ROWS)]
    pub batch: usize,
    /// Only this output (`influxdb` for [influxdb], NAME for [outputs.NAME]); repeatable [default: every output]
    #[arg(long, value_name = "NAME")]
    pub output: Vec<String>,
}

/// `--since`: RFC 3339, or a date (midnight UTC).
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = s.parse::<DateTime<Utc>>() {
        return Ok(t);
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output: a table for people, or JSON for scripts
    #[arg(long, value_enum, default_value = "text")]
    pub format: StatusFormat,
    /// Judge as if it were this time (RFC 3339): for tests and post-mortems
    #[arg(long, value_name = "TIME")]
    pub now: Option<DateTime<Utc>>,
    /// Points waiting in the spool longer than this are a problem (systemd time span)
    #[arg(long, value_name = "THRESHOLD", default_value = "30m", value_parser = TimeSpan::parse)]
    pub spool_age: TimeSpan,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
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
    /// Write the units into NORMAL_DIR (the systemd generator protocol: NORMAL_DIR [EARLY_DIR LATE_DIR]): the service template, the daemon's credentials drop-in, and the timers
    Generate {
        #[arg(required = true, num_args = 1..=3, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The binary the service runs [default: this one]
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Write the timers only when the configuration says `[systemd] timers = true` (the packaged generator); the service template and the daemon's credentials always
        #[arg(long)]
        if_enabled: bool,
    },
    /// Make systemd follow the configuration now (root): reload (the generator rewrites units and credentials), start the timers (or stop them when off), restart the daemon, and show what is active
    Apply,
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
    /// Save every upstream answer of this run (HTTP, rsync listings) and its time in DIR
    #[arg(long, value_name = "DIR", conflicts_with = "replay")]
    pub record: Option<PathBuf>,
    /// Answer every upstream request from the recording in DIR, at its time, with no network
    #[arg(long, value_name = "DIR")]
    pub replay: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file + environment + defaults), secrets redacted
    Show,
}

/// `influxdb ...`.
#[derive(Debug, Subcommand)]
pub enum InfluxdbCommand {
    /// Create the database, its retention, and the users admin, collector (WRITE) and grafana
    /// (READ) with generated passwords in mode-0600 files under --secrets-dir
    /// (/etc/ubuntu-metrics/secrets unless given); a second run changes nothing
    Provision(ProvisionArgs),
}

/// `influxdb provision`. The admin password is never an argument: it comes
/// from $INFLUXDB_ADMIN_PASSWORD, --admin-password-file, or the admin's
/// password file in the secrets directory.
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    /// The InfluxDB URL [default: influxdb.url of the configuration]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The database [default: influxdb.database of the configuration]
    #[arg(long)]
    pub database: Option<String>,
    /// Retention of the database's default policy (e.g. 52w, 365d, inf); left as it is when not given
    #[arg(long, value_name = "SPAN", value_parser = Retention::parse)]
    pub retention: Option<Retention>,
    /// The admin user
    #[arg(long, env = ADMIN_USER_ENV, default_value = "admin")]
    pub admin_user: String,
    /// A file holding the admin password [default: $INFLUXDB_ADMIN_PASSWORD, else SECRETS_DIR/ADMIN-password]
    #[arg(long, value_name = "PATH")]
    pub admin_password_file: Option<PathBuf>,
    /// The user the collectors write as (WRITE on the database)
    #[arg(long, default_value = "collector")]
    pub collector_user: String,
    /// The user Grafana reads as (READ on the database)
    #[arg(long, default_value = "grafana")]
    pub grafana_user: String,
    /// Where the generated passwords are written (mode 0600 files, USER-password)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_SECRETS_DIR)]
    pub secrets_dir: PathBuf,
}

/// `dashboards ...`.
#[derive(Debug, Subcommand)]
pub enum DashboardsCommand {
    /// Write the dashboards, the data source, the dashboard provider and the alert rules in the
    /// layout of Grafana's provisioning directory (e.g. `dashboards export /etc/grafana/provisioning`)
    Export(ExportArgs),
    /// List the dashboards and their panels (title, measurement, query)
    List,
}

/// `dashboards export DIR`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The directory (created when missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The InfluxDB URL Grafana connects to [default: influxdb.url of the configuration]
    #[arg(long, value_name = "URL")]
    pub influxdb_url: Option<String>,
    /// The database [default: influxdb.database of the configuration]
    #[arg(long)]
    pub database: Option<String>,
    /// The InfluxDB user Grafana reads as
    #[arg(long, default_value = "grafana")]
    pub user: String,
    /// Where Grafana will find the dashboard JSON files (the provider's path)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DASHBOARDS_PATH)]
    pub dashboards_path: PathBuf,
    /// The CA (PEM) the data source trusts for an https InfluxDB [default: influxdb.ca_file of the configuration]
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Grafana does not verify InfluxDB's certificate (tlsSkipVerify; no CA then): for a server whose certificate Grafana cannot verify, e.g. the first generation's self-signed certificate without subjectAltName, on loopback
    #[arg(long, conflicts_with = "ca_file")]
    pub tls_skip_verify: bool,
}

/// `completions SHELL`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `man [--dir DIR]`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write ubuntu-metrics.1 and a page per subcommand into DIR instead of printing the main page
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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
        // Installed in a systemd generator directory: argv is NORMAL EARLY
        // LATE; the timers follow `[systemd] timers`, as the packaged
        // generator script's.
        let mut v = vec![
            OsString::from("ubuntu-metrics"),
            OsString::from("systemd"),
            OsString::from("generate"),
            OsString::from("--if-enabled"),
        ];
        v.extend(args.into_iter().skip(1));
        return v;
    }
    let name = normalise_name(&stem);
    if registry().iter().any(|c| c.name() == name) || declared_in_config(&name, &args) {
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

/// Whether the configuration the arguments point at (`--config PATH`,
/// else the usual places) declares a collector `name` (a link named after
/// a declared collector runs it too). A configuration that cannot be read
/// declares nothing here: the command then reports it.
fn declared_in_config(name: &str, args: &[OsString]) -> bool {
    if name == "ubuntu_metrics" || !crate::custom::valid_name(name) {
        return false;
    }
    let mut path = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            path = it.next().map(PathBuf::from);
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(PathBuf::from(p));
        }
    }
    let Some(path) = Config::locate(path.as_deref()) else {
        return false;
    };
    Config::read(Some(&path)).is_ok_and(|c| {
        c.collectors
            .get(name)
            .is_some_and(|cc| cc.options.contains_key("type"))
    })
}

/// The program's `main`: runs with the process's arguments and exits with
/// the status.
pub fn main() -> ! {
    std::process::exit(main_with_args(std::env::args_os().collect()))
}

/// The program: parse the command line, run, return the exit status.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    // A jq filter's process (see `custom::jq`): before anything else.
    if args
        .get(1)
        .is_some_and(|a| a == crate::custom::jq::CHILD_ARG)
    {
        return jq_filter::main(&args[2..]);
    }
    let args = multicall_args(args);
    let argv = args.clone();
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    init_logging(cli.verbose);
    if cli.command.only_prints() {
        end_with_the_reader();
    }
    if let Some(status) = clidoc::run_early(&cli.command) {
        return status;
    }
    // Needs no configuration (one may not exist yet).
    if let Command::New(args) = &cli.command {
        return new::main(args);
    }
    let config_path = Config::locate(cli.config.as_deref());
    // The built-in collectors and those the configuration declares.
    let (config, registry) = match crate::custom::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // Printed once, here (stderr is the journal under systemd).
            eprintln!("ubuntu-metrics: configuration error: {e}");
            return EXIT_USAGE;
        }
    };
    // Who may write the state directory: before anything is written.
    let read_only = match owner::check(&cli.command, &registry, &config, &argv) {
        owner::Check::Go => false,
        owner::Check::ReadOnly(note) => {
            tracing::info!("{note}");
            true
        }
        owner::Check::Refused(status) => return status,
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
    let status = match cli.command {
        Command::List => list::main(&registry, &config),
        Command::Config(cmd) => config::main(cmd, &config),
        Command::Run(args) => rt.block_on(run::main(&registry, &config, &args, read_only)),
        Command::Spool(cmd) => rt.block_on(spool::main(cmd, &config)),
        Command::Status(args) => status::main(&registry, &config, &args),
        Command::Backfill(args) => rt.block_on(backfill::main(&config, &args)),
        Command::Systemd(cmd) => systemd::main(cmd, &registry, &config, config_path),
        Command::Daemon => rt.block_on(daemon::main(config_path, config, registry)),
        Command::Influxdb(cmd) => rt.block_on(influxdb::main(cmd, &config)),
        Command::Dashboards(cmd) => dashboards::main(cmd, &registry, &config),
        Command::Completions(_) | Command::Man(_) => EXIT_OK, // handled by run_early
        Command::New(_) => EXIT_OK,                           // handled above
    };
    // What a task still holds (a blocking call: a DNS lookup, a stuck
    // file system) does not hold the exit longer than this: the daemon's
    // SIGTERM bound is its `shutdown_grace` plus this.
    rt.shutdown_timeout(EXIT_LEFTOVERS);
    status
}

/// The longest the program waits, once a command is done, for what its
/// tasks still hold (see [`main_with_args`]).
pub const EXIT_LEFTOVERS: std::time::Duration = std::time::Duration::from_secs(1);

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
            .with_writer(crate::support::logging::Redacting(std::io::stderr))
            // The fields' names too: without this they were written in
            // italics (ESC[3m) into every journal entry.
            .with_ansi(false)
            .event_format(crate::support::logging::Journald)
            .try_init();
        return;
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::support::logging::Redacting(progress::LogWriter))
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
