//! systemd units: one service template that runs a collector through this
//! binary, and one timer per enabled collector with the first generation's
//! semantics (`OnBootSec`, `OnUnitInactiveSec=<interval>`,
//! `RandomizedDelaySec`, `FixedRandomDelay=yes`; `RuntimeMaxSec` on the
//! service).
//!
//! Every secret file the configuration names (`influxdb.password_file`,
//! `outputs.NAME.token_file`, ...) is handed to the services as the
//! systemd credential named after its key (`LoadCredential=KEY:PATH`):
//! the services run as a dynamic user that cannot read a root-only file.
//!
//! `generate` follows the generator protocol (`systemd.generator(7)`): it
//! writes into the "normal" directory the service template, a drop-in of
//! the packaged daemon unit with those credentials, and (when timers are
//! on) the timers, linked into `timers.target.wants/`. `install` writes the
//! same units to `/etc/systemd/system` (or under `--root`), the
//! configuration and a mode-0600 credentials file, then reloads systemd
//! and enables the timers. `apply` makes systemd follow the configuration
//! now: reload (the generator runs), start or stop the timers, restart the
//! daemon.

pub use crate::ops::systemd_view::*;

use crate::collector::Collector;
use crate::config::Config;
use crate::support::setting::UrlSetting;
use std::path::{Path, PathBuf};

pub const SERVICE_TEMPLATE: &str = "ubuntu-metrics@.service";
/// The generator's drop-in of [`DAEMON_UNIT`] with the credentials of the
/// configuration's secret files (in `ubuntu-metrics.service.d/`).
pub const CREDENTIALS_DROP_IN: &str = "50-credentials.conf";
/// The old environment file (`INFLUXDB_USERNAME`, and before
/// `LoadCredential=` also the password): still read when present.
pub const DEFAULT_CREDENTIALS: &str = "/etc/ubuntu-metrics/credentials.env";
/// The InfluxDB password, handed to the service with `LoadCredential=` as
/// the credential [`crate::config::PASSWORD_CREDENTIAL`] (mode 0600, root).
pub const DEFAULT_PASSWORD_CREDENTIAL: &str = "/etc/ubuntu-metrics/influxdb-password";

/// Where the units point.
#[derive(Debug, Clone)]
pub struct UnitPaths {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub credentials: PathBuf,
    pub password: PathBuf,
}

impl UnitPaths {
    /// A relative `--config` or `--binary` is made absolute: systemd starts
    /// the service in `/`, where a relative path means something else.
    pub fn new(binary: Option<PathBuf>, config: Option<PathBuf>) -> UnitPaths {
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        UnitPaths {
            binary: absolute(
                binary
                    .or_else(|| std::env::current_exe().ok())
                    .unwrap_or_else(|| PathBuf::from("/usr/bin/ubuntu-metrics")),
            ),
            config: absolute(
                config.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_PATH)),
            ),
            credentials: PathBuf::from(DEFAULT_CREDENTIALS),
            password: PathBuf::from(DEFAULT_PASSWORD_CREDENTIAL),
        }
    }
}

/// The descriptor limit of every service we run (the generated template
/// and the packaged daemon unit carry the same line). systemd's default
/// soft limit is 1024; the daemon's health endpoint keeps a part of it for
/// the spool and the state files, never given to sockets (see
/// `health::reserved_descriptors`), and answers at most
/// `health::MAX_CONNECTIONS` connections at once.
pub const LIMIT_NOFILE: &str = "LimitNOFILE=8192";

/// The sandbox of every service we run (the generated template and the
/// packaged daemon unit, which a test keeps in step): `systemd-analyze
/// security --offline=true` scores it 1.1 ("OK"); what is left open is
/// the network (the collectors' job) and the host's root directory. The
/// system call filter is systemd's `@system-service` set less the
/// `@privileged` and `@resources` groups; a call outside it fails with
/// EPERM instead of killing the process, so that a collector fails with an
/// error rather than vanishing. `rsync` (the images collector) runs under
/// the same filter (tests/systemd_units.rs runs it so).
pub const HARDENING: &str = "DynamicUser=yes
StateDirectory=ubuntu-metrics
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
PrivateMounts=yes
PrivateIPC=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
KeyringMode=private
DevicePolicy=closed
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
";

/// A secret file handed to the services: `LoadCredential=ID:PATH`, read
/// by the program from `$CREDENTIALS_DIRECTORY/ID` (see
/// `config::read_secret_in`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The configuration key naming the file, e.g. `influxdb.password_file`.
    pub id: String,
    /// The file, absolute.
    pub path: PathBuf,
}

/// The credentials of the configuration's secret files, and what could
/// not be made one (a file missing now: systemd would refuse to start the
/// service, so it is left out and the program's own error names it; a
/// path a unit file cannot carry). `root`: where the files are looked for
/// (`/`, or `install --root`'s directory).
pub fn credentials(config: &Config, root: &Path) -> (Vec<Credential>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (id, file) in config.secret_files() {
        if !crate::config::credential_id_valid(&id) {
            skipped.push(format!(
                "{id}: not a valid systemd credential name (a file name of at most 255 bytes, without / or :)"
            ));
            continue;
        }
        // systemd starts the services in /: a relative path is read from there.
        let path = std::path::absolute(&file).unwrap_or(file);
        let Some(text) = path.to_str() else {
            skipped.push(format!(
                "{id} {}: not UTF-8, a unit file cannot name it",
                path.display()
            ));
            continue;
        };
        if text.chars().any(char::is_control) || text.trim() != text || text.ends_with('\\') {
            skipped.push(format!(
                "{id} {text:?}: a unit file cannot name this path (control characters, white space at an end, or a final backslash)"
            ));
            continue;
        }
        let on_disk = root.join(path.strip_prefix("/").unwrap_or(&path));
        if !on_disk.exists() {
            skipped.push(format!(
                "{id} {}: no such file now; not handed to the services (systemd would refuse to start them)",
                path.display()
            ));
            continue;
        }
        out.push(Credential { id, path });
    }
    (out, skipped)
}

/// The `LoadCredential=` lines of `creds` (`%` is a specifier in a unit
/// file: doubled).
pub fn load_credential_lines(creds: &[Credential]) -> String {
    creds
        .iter()
        .map(|c| {
            format!(
                "LoadCredential={}:{}\n",
                c.id.replace('%', "%%"),
                c.path.display().to_string().replace('%', "%%")
            )
        })
        .collect()
}

/// The generator's drop-in of the packaged daemon unit: the credentials of
/// the configuration's secret files. `None` when there are none.
pub fn daemon_drop_in(creds: &[Credential]) -> Option<String> {
    if creds.is_empty() {
        return None;
    }
    Some(format!(
        "# Generated by ubuntu-metrics systemd generate from the configuration; do not edit.
# The configuration's secret files, read by the daemon from $CREDENTIALS_DIRECTORY/<key>.
[Service]
{}",
        load_credential_lines(creds)
    ))
}

/// The service template; `%i` is the collector's name. `load_password`:
/// hand the password file to the service as the systemd credential
/// `influxdb-password` (only when the file exists: systemd refuses to
/// start a service whose `LoadCredential=` file is missing). `creds`: the
/// configuration's secret files ([`credentials`]).
pub fn service_unit(
    config: &Config,
    paths: &UnitPaths,
    load_password: bool,
    creds: &[Credential],
) -> String {
    let mut credential = if load_password {
        format!(
            "# The InfluxDB password (mode 0600, root), read from $CREDENTIALS_DIRECTORY.\nLoadCredential={}:{}\n",
            crate::config::PASSWORD_CREDENTIAL,
            paths.password.display()
        )
    } else {
        String::new()
    };
    if !creds.is_empty() {
        credential.push_str(
            "# The configuration's secret files, read from $CREDENTIALS_DIRECTORY/<key>.\n",
        );
        credential.push_str(&load_credential_lines(creds));
    }
    format!(
        "# Generated by ubuntu-metrics; do not edit (re-run `ubuntu-metrics systemd install`).
[Unit]
Description=ubuntu-metrics collector %i
Documentation=man:ubuntu-metrics(1)
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
ExecStart={binary} --config {config} run %i
{credential}# INFLUXDB_USERNAME (and, from older installs, INFLUXDB_PASSWORD): read by
# systemd (mode 0600, root), never on a command line.
EnvironmentFile=-{credentials}
Environment=UBUNTU_METRICS_STATE_DIR=%S/ubuntu-metrics
RuntimeMaxSec={timeout}
{LIMIT_NOFILE}
{HARDENING}",
        binary = paths.binary.display(),
        config = paths.config.display(),
        credentials = paths.credentials.display(),
        timeout = config.daemon.run_timeout,
    )
}

/// The timer of one collector.
pub fn timer_unit(c: &dyn Collector, config: &Config) -> String {
    let interval = config.interval(c);
    format!(
        "# Generated by ubuntu-metrics; do not edit (re-run `ubuntu-metrics systemd install`).
[Unit]
Description=Run the ubuntu-metrics collector {name} every {interval}
Documentation=man:ubuntu-metrics(1)

[Timer]
OnBootSec={boot}
OnUnitInactiveSec={interval}
RandomizedDelaySec={random}
FixedRandomDelay=yes
# systemd's default accuracy (1min) would let all timers fire together,
# cancelling the per-collector random delay.
AccuracySec=1s
Unit=ubuntu-metrics@{name}.service

[Install]
WantedBy=timers.target
",
        name = c.name(),
        boot = config.daemon.startup_delay,
        random = config.daemon.random_delay,
    )
}

fn write_file(path: &Path, content: &str, mode: u32) -> std::io::Result<()> {
    crate::support::fsutil::replace_file(
        path,
        &path.with_extension("tmp~"),
        content.as_bytes(),
        mode,
    )
}

fn symlink_force(target: &Path, link: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::symlink(target, link)
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What goes into a unit directory.
pub struct UnitSet<'a> {
    pub config: &'a Config,
    pub paths: &'a UnitPaths,
    /// Whether the service loads the password file (`paths.password`).
    pub load_password: bool,
    /// The configuration's secret files.
    pub credentials: &'a [Credential],
    /// Whether the enabled collectors get timers (else every timer of
    /// the registry and its link are removed from the directory).
    pub timers: bool,
}

/// Writes the service template and, when `units.timers`, the timers of the
/// enabled collectors into `dir`, and links the timers from
/// `dir/timers.target.wants/` to `link_base/<timer>`. Returns the timer
/// names.
pub fn write_units(
    dir: &Path,
    link_base: &Path,
    registry: &[Box<dyn Collector>],
    units: &UnitSet<'_>,
) -> std::io::Result<Vec<String>> {
    let ctx = |e: std::io::Error, p: &Path| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| ctx(e, dir))?;
    let wants = dir.join("timers.target.wants");
    if units.timers {
        std::fs::create_dir_all(&wants).map_err(|e| ctx(e, &wants))?;
    }
    let service = dir.join(SERVICE_TEMPLATE);
    let text = service_unit(
        units.config,
        units.paths,
        units.load_password,
        units.credentials,
    );
    write_file(&service, &text, 0o644).map_err(|e| ctx(e, &service))?;
    let mut timers = Vec::new();
    for c in registry {
        let name = timer_name(c.name());
        let path = dir.join(&name);
        let link = wants.join(&name);
        if !units.timers || !units.config.enabled(c.name()) {
            // A collector switched off loses its timer and its link.
            remove_if_there(&link).map_err(|e| ctx(e, &link))?;
            remove_if_there(&path).map_err(|e| ctx(e, &path))?;
            continue;
        }
        write_file(&path, &timer_unit(c.as_ref(), units.config), 0o644)
            .map_err(|e| ctx(e, &path))?;
        symlink_force(&link_base.join(&name), &link).map_err(|e| ctx(e, &link))?;
        timers.push(name);
    }
    Ok(timers)
}

/// What `generate` wrote.
#[derive(Debug)]
pub struct Generated {
    pub timers: Vec<String>,
    /// The daemon's drop-in, when there are credentials.
    pub drop_in: Option<PathBuf>,
    /// Secret files not handed over, and why (logged by the generator).
    pub skipped: Vec<String>,
}

/// The generator protocol: `generate NORMAL [EARLY LATE]`. Into NORMAL:
/// the service template, the daemon's credentials drop-in
/// (`ubuntu-metrics.service.d/50-credentials.conf`, removed when there are
/// no credentials) and, when `timers`, the timers linked from
/// `timers.target.wants/` to the generated files.
pub fn generate(
    dirs: &[PathBuf],
    registry: &[Box<dyn Collector>],
    config: &Config,
    paths: &UnitPaths,
    timers: bool,
) -> std::io::Result<Generated> {
    let normal = dirs
        .first()
        .ok_or_else(|| std::io::Error::other("no output directory given"))?;
    let (creds, skipped) = credentials(config, Path::new("/"));
    let units = UnitSet {
        config,
        paths,
        load_password: paths.password.exists(),
        credentials: &creds,
        timers,
    };
    let timers = write_units(normal, normal, registry, &units)?;
    let drop_in_dir = normal.join(format!("{DAEMON_UNIT}.d"));
    let drop_in = drop_in_dir.join(CREDENTIALS_DROP_IN);
    let ctx = |e: std::io::Error, p: &Path| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    let wrote = match daemon_drop_in(&creds) {
        Some(text) => {
            std::fs::create_dir_all(&drop_in_dir).map_err(|e| ctx(e, &drop_in_dir))?;
            write_file(&drop_in, &text, 0o644).map_err(|e| ctx(e, &drop_in))?;
            Some(drop_in)
        }
        None => {
            remove_if_there(&drop_in).map_err(|e| ctx(e, &drop_in))?;
            None
        }
    };
    Ok(Generated {
        timers,
        drop_in: wrote,
        skipped,
    })
}

/// The URL without its user and password (they go to the credentials).
fn without_userinfo(url: &UrlSetting) -> String {
    match url.value() {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            let mut u = u.clone();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.text().to_owned(),
    }
}

/// The credentials file: `INFLUXDB_USERNAME` (the user of the
/// configuration, or of the URL), which the service reads.
pub fn credentials_env(config: &Config) -> Option<String> {
    let url_user = config
        .influxdb
        .url
        .value()
        .ok()
        .map(|u| u.username().to_owned())
        .filter(|u| !u.is_empty());
    let user = config.influxdb.username.clone().or(url_user)?;
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    Some(format!(
        "# ubuntu-metrics: InfluxDB user (mode 0600, read by systemd); the password is\n# the credential file influxdb-password (LoadCredential=).\nINFLUXDB_USERNAME={}\n",
        quote(&user)
    ))
}

/// The password to copy into the credential file `influxdb-password`: the
/// configuration's plain `password` (v1) or `token` (v2), else the URL's.
/// A `password_file` / `token_file` is not copied: the units hand that
/// file over as a credential of its own ([`credentials`]).
fn password_to_install(config: &Config) -> Option<String> {
    let i = &config.influxdb;
    let plain = match i.api {
        crate::config::WriteApi::V1 => &i.password,
        crate::config::WriteApi::V2 => &i.token,
    };
    if let Some(p) = plain {
        return Some(p.clone());
    }
    if i.password_file.is_some() || i.token_file.is_some() {
        return None;
    }
    i.url
        .value()
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .map(|p| {
            percent_encoding::percent_decode_str(&p)
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// What `install` did.
#[derive(Debug)]
pub struct Installed {
    pub unit_dir: PathBuf,
    pub timers: Vec<String>,
    pub config: Option<PathBuf>,
    pub credentials: Option<PathBuf>,
    pub password: Option<PathBuf>,
    /// The secret files handed to the services as credentials.
    pub handed: Vec<Credential>,
    /// Secret files not handed over, and why.
    pub skipped: Vec<String>,
}

/// Installs the units, the configuration (when none is there yet, without
/// any credential: it is world-readable, the services run as a dynamic
/// user), the user name in the 0600 credentials file and the password in
/// the 0600 credential file under `root` (`/` for the real system).
/// Credentials in a `sources.*` URL cannot be moved anywhere: refused.
pub fn install(
    root: &Path,
    registry: &[Box<dyn Collector>],
    config: &Config,
    paths: &UnitPaths,
) -> Result<Installed, String> {
    let under = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    services_can_read(&paths.config, &under(&paths.config), root)?;
    let shown = Config {
        sources: config.sources.clone(),
        ..Config::default()
    }
    .to_redacted_toml();
    if let Some(line) = shown.lines().find(|l| l.contains("@") && l.contains("://")) {
        return Err(format!(
            "the configuration has credentials in a source URL ({}): the installed configuration is readable by every user, so they would leak; remove them from the URL (the upstreams are public)",
            line.trim()
        ));
    }
    let password = password_to_install(config);
    let mut wrote_password = None;
    if let Some(p) = &password {
        let path = under(&paths.password);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        write_file(&path, &format!("{p}\n"), 0o600)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        wrote_password = Some(path);
    }
    let unit_dir = under(Path::new("/etc/systemd/system"));
    let (handed, skipped) = credentials(config, root);
    let units = UnitSet {
        config,
        paths,
        load_password: under(&paths.password).exists(),
        credentials: &handed,
        timers: true,
    };
    let timers = write_units(
        &unit_dir,
        Path::new("/etc/systemd/system"),
        registry,
        &units,
    )
    .map_err(|e| format!("cannot write the units: {e}"))?;

    let config_file = under(&paths.config);
    let mut wrote_config = None;
    if !config_file.exists() {
        let mut c = config.clone();
        // The secret files stay named (a path is no secret): the units
        // hand them over as credentials under their keys.
        c.influxdb.password = None;
        c.influxdb.token = None;
        c.influxdb.username = None;
        c.influxdb.url = without_userinfo(&c.influxdb.url).into();
        let text = format!(
            "# ubuntu-metrics configuration (see `ubuntu-metrics config show`).\n# Credentials live in {} and {} (mode 0600).\n{}",
            paths.credentials.display(),
            paths.password.display(),
            toml::to_string_pretty(&c).map_err(|e| e.to_string())?
        );
        if let Some(d) = config_file.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        write_file(&config_file, &text, 0o644)
            .map_err(|e| format!("{}: {e}", config_file.display()))?;
        wrote_config = Some(config_file);
    }

    let mut wrote_credentials = None;
    if let Some(env) = credentials_env(config) {
        let path = under(&paths.credentials);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        write_file(&path, &env, 0o600).map_err(|e| format!("{}: {e}", path.display()))?;
        wrote_credentials = Some(path);
    }
    Ok(Installed {
        unit_dir,
        timers,
        config: wrote_config,
        credentials: wrote_credentials,
        password: wrote_password,
        handed,
        skipped,
    })
}

/// The services run as a dynamic user with `ProtectHome=yes`: a
/// configuration in a home directory, or one that not every user may read,
/// is invisible to them and every run would fail ("cannot read
/// configuration file /root/um.toml: Permission denied", seen under a real
/// systemd). `path` is the configuration as the units name it, `on_disk`
/// where it is under `root` (`--root`; the folders above it are not the
/// target system's and are not looked at).
fn services_can_read(path: &Path, on_disk: &Path, root: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fix = "keep it where the services can read it, e.g. /etc/ubuntu-metrics/config.toml (mode 0644; credentials in password_file, or let install move them to 0600 files), and name that with --config";
    if ["/home", "/root", "/run/user"]
        .iter()
        .any(|h| path.starts_with(h))
    {
        return Err(format!(
            "the configuration {} is in a home directory, which the services cannot see (ProtectHome=yes); {fix}",
            path.display()
        ));
    }
    let mut dir = on_disk.parent();
    while let Some(d) =
        dir.filter(|d| d.starts_with(root) && (*d != root || root == Path::new("/")))
    {
        if let Ok(m) = std::fs::metadata(d)
            && m.permissions().mode() & 0o001 == 0
        {
            return Err(format!(
                "the configuration {} is in {}, which other users cannot enter (mode {:04o}): the services run as a dynamic user; {fix}",
                path.display(),
                d.display(),
                m.permissions().mode() & 0o7777
            ));
        }
        dir = d.parent();
    }
    if let Ok(m) = std::fs::metadata(on_disk)
        && m.permissions().mode() & 0o004 == 0
    {
        return Err(format!(
            "the configuration {} is not readable by other users (mode {:04o}): the services run as a dynamic user; {fix}",
            path.display(),
            m.permissions().mode() & 0o7777
        ));
    }
    Ok(())
}

/// After installing on the real system: reload systemd, enable the timers.
pub fn activate(timers: &[String]) -> Result<(), String> {
    let mut sc = RealSystemctl;
    sc.run(&["daemon-reload"])?;
    let mut args = vec!["enable", "--now"];
    args.extend(timers.iter().map(String::as_str));
    sc.run(&args).map(|_| ())
}

/// What `apply` did and found.
#[derive(Debug, Default)]
pub struct Applied {
    /// The timers started (those of the enabled collectors, timers on).
    pub started: Vec<String>,
    /// Timers stopped: all of ours with timers off, else those of
    /// collectors no longer enabled.
    pub stopped: Vec<String>,
    /// Whether the daemon was restarted (it was active, starting, or
    /// enabled: it reads the credentials only when it starts).
    pub daemon_restarted: bool,
    /// What systemd says afterwards.
    pub view: SystemdView,
    /// What failed along the way (the rest was still done).
    pub errors: Vec<String>,
}

/// The loaded units in `systemctl list-units --plain --no-legend`'s
/// output (first word ending in `suffix`: a `●` may come first).
fn listed_units(text: &str, suffix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.ends_with(suffix)))
        .map(str::to_owned)
        .collect()
}

/// `systemd apply`: makes systemd follow the configuration now.
/// `systemctl daemon-reload` (the generator rewrites the units and the
/// credentials); with timers on (`timers_on`), `systemctl start` of every
/// enabled collector's timer and `stop` of our other loaded timers; with
/// timers off, `stop` of every loaded `ubuntu-metrics-*.timer` and
/// `reset-failed` of ours (no `not-found failed` units left behind); then
/// `systemctl restart` of the daemon when it is active, starting or
/// enabled (credentials are read when a service starts). A failing
/// reload is an error; any other failure is recorded and the rest done.
pub fn apply(
    sc: &mut dyn Systemctl,
    registry: &[Box<dyn Collector>],
    config: &Config,
    timers_on: bool,
) -> Result<Applied, String> {
    sc.run(&["daemon-reload"])?;
    let mut done = Applied::default();
    let enabled: Vec<&str> = registry
        .iter()
        .map(|c| c.name())
        .filter(|n| config.enabled(n))
        .collect();
    let wanted: Vec<String> = if timers_on {
        enabled.iter().map(|n| timer_name(n)).collect()
    } else {
        Vec::new()
    };
    let loaded = match sc.run(&[
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "--no-pager",
        "--type=timer",
        "ubuntu-metrics-*.timer",
    ]) {
        Ok(text) => listed_units(&text, ".timer"),
        Err(e) => {
            done.errors.push(e);
            Vec::new()
        }
    };
    let extra: Vec<String> = loaded.into_iter().filter(|t| !wanted.contains(t)).collect();
    if !extra.is_empty() {
        let mut args = vec!["stop"];
        args.extend(extra.iter().map(String::as_str));
        match sc.run(&args) {
            Ok(_) => done.stopped = extra.clone(),
            Err(e) => done.errors.push(e),
        }
    }
    if !wanted.is_empty() {
        let mut args = vec!["start"];
        args.extend(wanted.iter().map(String::as_str));
        match sc.run(&args) {
            Ok(_) => done.started = wanted.clone(),
            Err(e) => done.errors.push(format!(
                "{e} (the timers come from the generator /usr/lib/systemd/system-generators/ubuntu-metrics-generator, or from `sudo ubuntu-metrics systemd install`)"
            )),
        }
    }
    if !timers_on {
        if let Err(e) = sc.run(&["reset-failed", "ubuntu-metrics-*", "ubuntu-metrics@*"]) {
            done.errors.push(e);
        }
    } else if !extra.is_empty() {
        // The timers of collectors switched off, and their services.
        let services: Vec<String> = extra
            .iter()
            .filter_map(|t| {
                t.strip_prefix("ubuntu-metrics-")
                    .and_then(|n| n.strip_suffix(".timer"))
            })
            .map(|n| format!("ubuntu-metrics@{n}.service"))
            .collect();
        let mut args = vec!["reset-failed"];
        args.extend(extra.iter().map(String::as_str));
        args.extend(services.iter().map(String::as_str));
        if let Err(e) = sc.run(&args) {
            done.errors.push(e);
        }
    }
    let before = query(sc, &[]).unwrap_or_else(|e| {
        done.errors.push(e.to_string());
        SystemdView::default()
    });
    if let Some(d) = before.daemon.filter(|d| d.loaded()) {
        let wanted = matches!(
            d.active_state.as_str(),
            "active" | "reloading" | "activating"
        ) || d.unit_file_state.starts_with("enabled");
        if wanted {
            match sc.run(&["restart", DAEMON_UNIT]) {
                Ok(_) => done.daemon_restarted = true,
                Err(e) => done
                    .errors
                    .push(format!("{e}: see journalctl -u {DAEMON_UNIT} -p err")),
            }
        }
    }
    match query(sc, &enabled) {
        Ok(view) => done.view = view,
        Err(e) => done.errors.push(e.to_string()),
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn show_output_of_systemd_252_gives_each_timer_its_next_run() {
        // As systemd 252 (Debian bookworm) prints `systemctl show
        // --timestamp=unix --property=...` for the daemon and three of our
        // timers: an active monotonic timer (no realtime elapse), a
        // stopped one, one not found.
        let text = "Id=ubuntu-metrics.service\nLoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=exit-code\nNRestarts=4\nUnitFileState=enabled\n\n\
            Id=ubuntu-metrics-britney.timer\nLoadState=loaded\nActiveState=active\nSubState=waiting\nResult=success\nUnitFileState=generated\nNextElapseUSecRealtime=\nNextElapseUSecMonotonic=1h 4min 12.003112s\n\n\
            Id=ubuntu-metrics-cnf.timer\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\nUnitFileState=generated\nNextElapseUSecRealtime=\nNextElapseUSecMonotonic=infinity\n\n\
            Id=ubuntu-metrics-images.timer\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\nUnitFileState=\nNextElapseUSecRealtime=\nNextElapseUSecMonotonic=0\n";
        let now = at("2026-03-01T12:00:00Z");
        // Booted 1 h ago: the timer elapses 4 min 12 s from now.
        let view = SystemdView::from_units(parse_show(text, now, Duration::from_secs(3600)));
        let britney = &view.timers["britney"];
        assert_eq!(britney.active_state, "active");
        assert_eq!(
            britney.next.unwrap(),
            now + chrono::Duration::microseconds(252_003_112)
        );
        assert_eq!(view.timers["cnf"].active_state, "inactive");
        assert_eq!(view.timers["cnf"].next, None);
        assert_eq!(view.timers["images"].load_state, "not-found");
        assert_eq!(view.timers["images"].next, None);
        let d = view.daemon.as_ref().unwrap();
        assert_eq!(
            (
                d.active_state.as_str(),
                d.sub_state.as_str(),
                d.result.as_str()
            ),
            ("activating", "auto-restart", "exit-code")
        );
        assert_eq!(d.n_restarts, Some(4));
        assert_eq!(d.unit_file_state, "enabled");
        assert_eq!(view.next_elapses().len(), 1);
    }

    #[test]
    fn realtime_elapses_and_odd_spans_are_read() {
        let now = at("2025-12-01T05:00:00Z");
        let text = "NextElapseUSecRealtime=@1764567000\nId=ubuntu-metrics-britney.timer\n\nId=ubuntu-metrics-cnf.timer\nNextElapseUSecMonotonic=2d 3h 2min 3.456789s\n\nId=ubuntu-metrics-sponsoring.timer\nNextElapseUSecMonotonic=30min\n";
        let got = SystemdView::from_units(parse_show(
            text,
            now,
            Duration::from_secs(2 * 86400 + 3 * 3600),
        ))
        .next_elapses();
        assert_eq!(got["britney"], at("2025-12-01T05:30:00Z"));
        assert_eq!(
            got["cnf"],
            now + chrono::Duration::microseconds(123_456_789)
        );
        // Elapsed before now (systemd has not fired it yet): in the past.
        assert!(got["sponsoring"] < now);
        assert!(parse_show("", now, Duration::ZERO).is_empty());
    }

    fn daemon(active: &str, sub: &str, result: &str, restarts: u64, file: &str) -> SystemdView {
        SystemdView {
            timers: BTreeMap::new(),
            daemon: Some(UnitState {
                id: DAEMON_UNIT.into(),
                load_state: "loaded".into(),
                active_state: active.into(),
                sub_state: sub.into(),
                result: result.into(),
                unit_file_state: file.into(),
                n_restarts: Some(restarts),
                next: None,
            }),
        }
    }

    #[test]
    fn a_daemon_that_cannot_start_is_critical() {
        let f = judge(
            &daemon("activating", "auto-restart", "exit-code", 4, "enabled"),
            false,
            &["britney"],
        );
        assert_eq!(
            f,
            [Finding {
                critical: true,
                message: "the daemon ubuntu-metrics.service cannot start (auto-restart, result exit-code, 4 restarts): see journalctl -u ubuntu-metrics.service -p err".into()
            }]
        );
        let f = judge(
            &daemon("failed", "failed", "exit-code", 1, "enabled"),
            false,
            &[],
        );
        assert!(
            f[0].critical
                && f[0]
                    .message
                    .contains("(failed, result exit-code, 1 restart)")
        );
        let f = judge(
            &daemon("inactive", "dead", "success", 0, "enabled"),
            false,
            &[],
        );
        assert!(f[0].critical && f[0].message.contains("enabled but not running"));
        // Running, starting for the first time, or not wanted: fine.
        for v in [
            daemon("active", "running", "success", 0, "enabled"),
            daemon("reloading", "reload", "success", 0, "enabled"),
            daemon("activating", "start", "success", 0, "enabled"),
            daemon("inactive", "dead", "success", 0, "disabled"),
            daemon("failed", "failed", "exit-code", 0, "disabled"),
        ] {
            assert!(judge(&v, false, &["britney"]).is_empty(), "{v:?}");
        }
        // Not installed.
        let mut v = daemon("inactive", "dead", "success", 0, "");
        v.daemon.as_mut().unwrap().load_state = "not-found".into();
        assert!(judge(&v, true, &[]).is_empty());
    }

    fn timer(active: &str, load: &str) -> UnitState {
        UnitState {
            load_state: load.into(),
            active_state: active.into(),
            ..UnitState::default()
        }
    }

    #[test]
    fn stopped_timers_are_problems_and_none_active_is_critical() {
        let mut v = SystemdView::default();
        v.timers.insert("britney".into(), timer("active", "loaded"));
        v.timers.insert("cnf".into(), timer("inactive", "loaded"));
        v.timers
            .insert("images".into(), timer("inactive", "not-found"));
        let f = judge(&v, true, &["britney", "cnf", "images", "versions"]);
        let messages: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "timer ubuntu-metrics-cnf.timer is stopped (inactive): run `sudo ubuntu-metrics systemd apply`",
                "timer ubuntu-metrics-images.timer is not loaded (not-found): run `sudo ubuntu-metrics systemd apply`",
                "timer ubuntu-metrics-versions.timer is not loaded (unknown): run `sudo ubuntu-metrics systemd apply`",
            ]
        );
        assert!(f.iter().all(|f| !f.critical));
        // Timers off: timers not found are expected.
        assert!(judge(&v, false, &["britney", "cnf", "images"]).is_empty());
        // None active: critical.
        v.timers
            .insert("britney".into(), timer("inactive", "loaded"));
        let f = judge(&v, true, &["britney", "cnf"]);
        assert!(f[0].critical, "{f:?}");
        assert_eq!(
            f[0].message,
            "[systemd] timers = true but no timer is active: nothing is collected; run `sudo ubuntu-metrics systemd apply`"
        );
        assert_eq!(f.len(), 3);
    }

    /// A systemctl that records the calls and answers `show` and
    /// `list-units` from what it is given.
    struct Fake {
        calls: Vec<String>,
        show: String,
        list: String,
        fail: Option<&'static str>,
    }

    impl Systemctl for Fake {
        fn run(&mut self, args: &[&str]) -> Result<String, String> {
            let call = args.join(" ");
            self.calls.push(call.clone());
            if self.fail.is_some_and(|f| call.starts_with(f)) {
                return Err(format!(
                    "`systemctl {call}` failed (exit status: 5): Unit not found."
                ));
            }
            Ok(match args[0] {
                "show" => self.show.clone(),
                "list-units" => self.list.clone(),
                _ => String::new(),
            })
        }
    }

    fn registry() -> Vec<Box<dyn Collector>> {
        crate::collectors::registry()
    }

    #[test]
    fn apply_with_timers_on_reloads_starts_the_timers_and_restarts_the_daemon() {
        let config = Config::from_toml("[collectors.versions]\nenabled = false\n").unwrap();
        let mut fake = Fake {
            calls: Vec::new(),
            show: "Id=ubuntu-metrics.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nUnitFileState=enabled\n".into(),
            list: "ubuntu-metrics-britney.timer loaded active waiting Run britney\n● ubuntu-metrics-versions.timer not-found active waiting ubuntu-metrics-versions.timer\n".into(),
            fail: None,
        };
        let reg = registry();
        let done = apply(&mut fake, &reg, &config, true).unwrap();
        let enabled: Vec<String> = reg
            .iter()
            .filter(|c| c.name() != "versions")
            .map(|c| timer_name(c.name()))
            .collect();
        assert_eq!(fake.calls[0], "daemon-reload");
        assert!(fake.calls[1].starts_with("list-units --all"));
        assert_eq!(fake.calls[2], "stop ubuntu-metrics-versions.timer");
        assert_eq!(fake.calls[3], format!("start {}", enabled.join(" ")));
        assert_eq!(
            fake.calls[4],
            "reset-failed ubuntu-metrics-versions.timer ubuntu-metrics@versions.service"
        );
        assert!(fake.calls[5].starts_with("show --timestamp=unix --property=Id,"));
        assert!(
            fake.calls[5].ends_with(" ubuntu-metrics.service"),
            "{}",
            fake.calls[5]
        );
        assert_eq!(fake.calls[6], "restart ubuntu-metrics.service");
        assert!(fake.calls[7].ends_with(&enabled.join(" ")));
        assert_eq!(fake.calls.len(), 8);
        assert_eq!(done.started, enabled);
        assert_eq!(done.stopped, ["ubuntu-metrics-versions.timer"]);
        assert!(done.daemon_restarted && done.errors.is_empty());
    }

    #[test]
    fn apply_with_timers_off_stops_them_and_clears_failed_units() {
        let config = Config::default();
        let mut fake = Fake {
            calls: Vec::new(),
            show: "Id=ubuntu-metrics.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\nUnitFileState=disabled\n".into(),
            list: "ubuntu-metrics-britney.timer not-found active waiting x\nubuntu-metrics-cnf.timer not-found inactive dead x\n".into(),
            fail: None,
        };
        let done = apply(&mut fake, &registry(), &config, false).unwrap();
        assert_eq!(
            &fake.calls[..4],
            [
                "daemon-reload".to_owned(),
                "list-units --all --plain --no-legend --no-pager --type=timer ubuntu-metrics-*.timer".into(),
                "stop ubuntu-metrics-britney.timer ubuntu-metrics-cnf.timer".into(),
                "reset-failed ubuntu-metrics-* ubuntu-metrics@*".into(),
            ]
        );
        assert!(
            !fake
                .calls
                .iter()
                .any(|c| c.starts_with("start") || c.starts_with("restart"))
        );
        assert!(done.started.is_empty() && !done.daemon_restarted);
        assert_eq!(done.stopped.len(), 2);

        // A failed reload stops everything; a failed start is reported.
        fake.calls.clear();
        fake.fail = Some("daemon-reload");
        assert!(apply(&mut fake, &registry(), &config, true).is_err());
        assert_eq!(fake.calls, ["daemon-reload"]);
        fake.fail = Some("start");
        let done = apply(&mut fake, &registry(), &config, true).unwrap();
        assert!(done.errors[0].contains("generator"), "{:?}", done.errors);
    }

    #[test]
    fn without_systemd_nothing_is_known() {
        // This machine (and CI's container) is not booted with systemd.
        if Path::new("/run/systemd/system").exists() {
            return;
        }
        assert!(systemd_view(&["britney"]).is_none());
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn install_refuses_a_configuration_the_services_cannot_read() {
        use std::os::unix::fs::PermissionsExt;
        let home = services_can_read(
            Path::new("/root/um.toml"),
            Path::new("/root/um.toml"),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(
            home.contains("home directory") && home.contains("/etc/ubuntu-metrics/config.toml"),
            "{home}"
        );
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc/ubuntu-metrics");
        std::fs::create_dir_all(&etc).unwrap();
        let file = etc.join("config.toml");
        std::fs::write(&file, "").unwrap();
        let unit_path = Path::new("/etc/ubuntu-metrics/config.toml");
        let check = || services_can_read(unit_path, &file, root.path());
        // The tempdir itself is 0700: above the target root, not looked at.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check(), Ok(()));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = check().unwrap_err();
        assert!(e.contains("not readable by other users (mode 0600)"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = check().unwrap_err();
        assert!(e.contains("cannot enter (mode 0700)"), "{e}");
    }

    fn cred(id: &str, path: &str) -> Credential {
        Credential {
            id: id.into(),
            path: path.into(),
        }
    }

    #[test]
    fn the_service_and_the_daemon_drop_in_load_each_secret_file() {
        let config = Config::default();
        let paths = UnitPaths::new(
            Some("/usr/bin/ubuntu-metrics".into()),
            Some("/etc/ubuntu-metrics/config.toml".into()),
        );
        let creds = [
            cred(
                "influxdb.password_file",
                "/etc/ubuntu-metrics/secrets/collector-password",
            ),
            cred(
                "outputs.vm.token_file",
                "/etc/ubuntu-metrics/secrets/100%-token",
            ),
        ];
        let lines = "LoadCredential=influxdb.password_file:/etc/ubuntu-metrics/secrets/collector-password\nLoadCredential=outputs.vm.token_file:/etc/ubuntu-metrics/secrets/100%%-token\n";
        let service = service_unit(&config, &paths, true, &creds);
        assert!(service.contains(lines), "{service}");
        assert!(service.contains(
            "\nLoadCredential=influxdb-password:/etc/ubuntu-metrics/influxdb-password\n"
        ));
        let drop_in = daemon_drop_in(&creds).unwrap();
        assert!(
            drop_in.contains(&format!("\n[Service]\n{lines}")),
            "{drop_in}"
        );
        assert!(daemon_drop_in(&[]).is_none());
        let plain = service_unit(&config, &paths, false, &[]);
        assert!(!plain.contains("LoadCredential"), "{plain}");
    }

    #[test]
    fn only_existing_secret_files_become_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let there = dir.path().join("collector-password");
        std::fs::write(&there, "pw\n").unwrap();
        let config = Config::from_toml(&format!(
            "[influxdb]\npassword_file = {:?}\n[outputs.vm]\nurl = \"http://vm:8428\"\npassword_file = \"/nonexistent/vm-password\"\n",
            there.display().to_string()
        ))
        .unwrap();
        let (creds, skipped) = credentials(&config, Path::new("/"));
        assert_eq!(
            creds,
            [cred("influxdb.password_file", there.to_str().unwrap())]
        );
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0]
                .starts_with("outputs.vm.password_file /nonexistent/vm-password: no such file"),
            "{skipped:?}"
        );
        // Under install's root: the file is looked for there.
        let (creds, _) = credentials(&config, dir.path());
        assert!(creds.is_empty());
    }

    #[test]
    fn timers_keep_their_random_delay() {
        let config = Config::default();
        let reg = crate::collectors::registry();
        let text = timer_unit(reg[0].as_ref(), &config);
        assert!(text.contains("\nAccuracySec=1s\n"), "{text}");
        assert!(text.contains("\nFixedRandomDelay=yes\n"), "{text}");
    }
}
