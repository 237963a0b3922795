//! The configuration: defaults, then the TOML file, then the `INFLUXDB_*`
//! environment variables of the existing deployment. Unknown keys and bad
//! values are errors naming the key and the file.

use crate::model::schema::Text;
use crate::model::timespan::TimeSpan;
pub use crate::sinks::influxdb::{InfluxConfig, WriteApi};
pub use crate::sources::http::HttpConfig;
use crate::support::setting::Size;
use crate::support::text::{REDACTED, redact_secrets};
pub use crate::support::text::{parse_size, redact_url};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ubuntu-metrics/config.toml";
pub const CONFIG_ENV: &str = "UBUNTU_METRICS_CONFIG";
/// The spool directory when none is configured.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/ubuntu-metrics/spool";
/// Set by the generated systemd service (`StateDirectory=`): the default
/// spool is `$UBUNTU_METRICS_STATE_DIR/spool` then.
pub const STATE_DIR_ENV: &str = "UBUNTU_METRICS_STATE_DIR";
/// Set by systemd for a service with `LoadCredential=`.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// The name of the systemd credential holding the InfluxDB password (v1)
/// or API token (v2).
pub const PASSWORD_CREDENTIAL: &str = "influxdb-password";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub influxdb: InfluxConfig,
    /// More outputs beside `[influxdb]`: `[outputs.NAME]`, the same keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, InfluxConfig>,
    pub sources: Sources,
    pub daemon: DaemonConfig,
    pub spool: SpoolConfig,
    pub self_metrics: SelfMetricsConfig,
    pub http: HttpConfig,
    pub systemd: SystemdConfig,
    pub collectors: BTreeMap<String, CollectorConfig>,
    /// Where the configuration was read from (not a key).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// Keys set by an `INFLUXDB_*` environment variable, with its name (not
    /// a key): a bad value is reported as that variable, not as the file.
    #[serde(skip)]
    pub from_env: BTreeMap<&'static str, &'static str>,
}

/// The shortest collector interval accepted. Runs follow each other one
/// interval after the previous one ended, so a zero interval is a busy loop
/// (3567 runs in 10 s) hammering the upstreams; below a second the
/// scheduling cost and the log volume dwarf the work, and no upstream
/// report changes that fast. 1 s (not more) keeps the daemon testable
/// with short intervals.
pub const MIN_INTERVAL_SECS: u64 = 1;

/// The largest `[http] max_per_host`: far more parallel requests to one
/// host than any upstream tolerates, and well below what the per-host
/// semaphore can hold (it panics above `usize::MAX >> 3`).
pub const MAX_PER_HOST_LIMIT: usize = 1024;

/// An upstream source a collector reads, declared by the collector (or by
/// the client it shares, like Launchpad's): its key under `[sources]`, its
/// production URL (overridable in the configuration), what it is, and the
/// recorded-shape stand-in the fixture server serves for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl {
    /// The key under `[sources]`.
    pub key: Text,
    /// The production URL.
    pub default: Text,
    /// One line: what is read there.
    pub about: Text,
    /// The path under `tests/fixtures/` that stands in for it (a folder
    /// ends with `/`, as the URL does). An `rsync://` source is stood in
    /// for by the fixture server's rsync daemon instead.
    pub fixture: Text,
}

impl SourceUrl {
    /// A built-in collector's source (constants).
    pub const fn new(
        key: &'static str,
        default: &'static str,
        about: &'static str,
        fixture: &'static str,
    ) -> SourceUrl {
        SourceUrl {
            key: Text::Borrowed(key),
            default: Text::Borrowed(default),
            about: Text::Borrowed(about),
            fixture: Text::Borrowed(fixture),
        }
    }
}

/// The distro-info data file when none is configured.
pub const DEFAULT_DISTRO_INFO: &str = "/usr/share/distro-info/ubuntu.csv";

/// `[sources]`: the URL of every upstream source the collectors declare
/// ([`SourceUrl`]), and the distro-info data file. Once the configuration
/// is loaded it holds every declared source (the file's value, or the
/// production default); a key no collector declares is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Sources {
    urls: BTreeMap<String, String>,
    /// The distro-info data (`ubuntu.csv`).
    pub distro_info: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            urls: BTreeMap::new(),
            distro_info: DEFAULT_DISTRO_INFO.into(),
        }
    }
}

impl Sources {
    /// The URL of a source: the configured one, else its default.
    pub fn url<'a>(&'a self, source: &'a SourceUrl) -> &'a str {
        self.urls
            .get(source.key.as_ref())
            .map(String::as_str)
            .unwrap_or(&source.default)
    }

    /// The URL configured under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.urls.get(key).map(String::as_str)
    }

    /// Points the source `key` at `url`.
    pub fn set(&mut self, key: &str, url: impl Into<String>) {
        self.urls.insert(key.to_owned(), url.into());
    }

    /// Every configured source: `(key, url)`, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.urls.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets every source of `declared` that has no URL yet to its default.
    pub fn fill_defaults<'a>(&mut self, declared: impl IntoIterator<Item = &'a SourceUrl>) {
        for s in declared {
            self.urls
                .entry(s.key.to_string())
                .or_insert_with(|| s.default.to_string());
        }
    }
}

impl Serialize for Sources {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(Some(self.urls.len() + 1))?;
        for (k, v) in &self.urls {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry("distro_info", &self.distro_info)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for Sources {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let table = BTreeMap::<String, toml::Value>::deserialize(de)?;
        let mut s = Sources::default();
        for (key, value) in table {
            let toml::Value::String(text) = value else {
                return Err(D::Error::custom(format!(
                    "sources.{key}: expected a string (a URL, or for distro_info a file)"
                )));
            };
            if key == "distro_info" {
                s.distro_info = text.into();
            } else {
                s.urls.insert(key, text);
            }
        }
        Ok(s)
    }
}

/// What the configuration knows of a collector: enough to check its
/// `[collectors.NAME]` section and its `[sources]` when the configuration
/// loads. Every collector (the `Collector` trait) is one.
pub trait CollectorSettings {
    fn name(&self) -> &str;
    /// The default interval.
    fn default_interval(&self) -> &TimeSpan;
    /// Its own options, `(key, description)`.
    fn options(&self) -> &[(&'static str, &'static str)];
    /// Checks its own options (the section less `interval` and `enabled`).
    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError>;
    /// The upstream sources it reads.
    fn sources(&self) -> Vec<SourceUrl>;
}

/// A bad collector option: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "option {}: {}", self.key, self.message)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    pub startup_delay: TimeSpan,
    pub random_delay: TimeSpan,
    pub run_timeout: TimeSpan,
    /// On SIGTERM, how long running collectors get to finish and write.
    pub shutdown_grace: TimeSpan,
    /// `host:port` of the daemon's HTTP health endpoint (`/health`,
    /// `/status`, `/metrics`); none when unset. Read at start only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            startup_delay: TimeSpan::from_secs(30),
            random_delay: TimeSpan::parse("1m").expect("valid"),
            run_timeout: TimeSpan::parse("10m").expect("valid"),
            shutdown_grace: TimeSpan::from_secs(30),
            listen: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_size: Size,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: DEFAULT_SPOOL_DIR.into(),
            max_size: "100MB".into(),
        }
    }
}

impl SpoolConfig {
    /// `max_size` in bytes.
    pub fn max_bytes(&self) -> Result<u64, String> {
        self.max_size.bytes()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfMetricsConfig {
    pub enabled: bool,
}

impl Default for SelfMetricsConfig {
    fn default() -> Self {
        SelfMetricsConfig { enabled: true }
    }
}

/// `[systemd]`: whether the packaged systemd generator creates timers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemdConfig {
    /// true: `systemd generate --if-enabled` (the packaged generator) writes
    /// the timers; false: it writes nothing (e.g. when the daemon runs).
    pub timers: bool,
}

/// `[collectors.NAME]`: the schedule keys, plus the collector's own options.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CollectorConfig {
    pub interval: Option<TimeSpan>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(flatten)]
    pub options: toml::Table,
}

fn yes() -> bool {
    true
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            interval: None,
            enabled: true,
            options: toml::Table::new(),
        }
    }
}

/// A configuration error: what, and in which file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Where to read the configuration from: the `--config` argument, else
    /// `$UBUNTU_METRICS_CONFIG`, else the default path when it exists.
    pub fn locate(arg: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = arg {
            return Some(p.to_owned());
        }
        if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let default = Path::new(DEFAULT_CONFIG_PATH);
        default.exists().then(|| default.to_owned())
    }

    /// Loads the file (if any), applies the environment, validates against
    /// the collector registry.
    pub fn load<C: CollectorSettings + ?Sized>(
        path: Option<&Path>,
        registry: &[Box<C>],
    ) -> Result<Config, ConfigError> {
        let mut config = Config::read(path)?;
        config.finish(registry)?;
        Ok(config)
    }

    /// The first half of [`Config::load`]: the file (if any) and the
    /// environment, not yet checked against the collectors (the collectors
    /// the configuration declares come from it).
    pub fn read(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError(format!(
                        "cannot read configuration file {}: {e}",
                        p.display()
                    ))
                })?;
                // A parse error quotes the file: never a password in it.
                let mut c = Config::from_toml(&text).map_err(|e| {
                    ConfigError(format!("{}: {}", p.display(), redact_secrets(&e, &text)))
                })?;
                c.path = Some(p.to_owned());
                warn_if_readable_secret(p, &c);
                c
            }
            None => Config::default(),
        };
        config.apply_env(&|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// The second half of [`Config::load`]: validates against every
    /// collector and fills in the sources' defaults.
    pub fn finish<C: CollectorSettings + ?Sized>(
        &mut self,
        registry: &[Box<C>],
    ) -> Result<(), ConfigError> {
        self.validate(registry)?;
        self.sources.fill_defaults(&declared_sources(registry));
        for w in self.retention_warnings(registry) {
            tracing::warn!("{}: {w}", self.origin());
        }
        Ok(())
    }

    /// What loads but would lose points without a word: an enabled
    /// collector's `max_catch_up` reaching further back than an output's
    /// `retention` (VictoriaMetrics answers 204 to rows older than its
    /// `-retentionPeriod` and drops them).
    pub fn retention_warnings<C: CollectorSettings + ?Sized>(
        &self,
        registry: &[Box<C>],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for c in registry {
            if !self.enabled(c.name()) || !c.options().iter().any(|(k, _)| *k == "max_catch_up") {
                continue;
            }
            let set = self
                .collectors
                .get(c.name())
                .and_then(|cc| cc.options.get("max_catch_up"))
                .and_then(|v| v.as_str());
            let Ok(catch_up) =
                TimeSpan::parse(set.unwrap_or(crate::model::catch_up::DEFAULT_MAX_CATCH_UP))
            else {
                continue;
            };
            for o in self.outputs() {
                let Some(retention) = &o.influx.retention else {
                    continue;
                };
                if catch_up.as_duration() > retention.as_duration() {
                    let key = if o.name == DEFAULT_OUTPUT {
                        "influxdb".to_owned()
                    } else {
                        format!("outputs.{}", o.name)
                    };
                    out.push(format!(
                        "collectors.{}.max_catch_up = {}{} reaches further back than {key}.retention = {}: the rows older than {} that a catch-up reads would be accepted by that output and dropped (VictoriaMetrics answers 204 to rows older than its -retentionPeriod); set max_catch_up to at most {}",
                        c.name(),
                        catch_up.text(),
                        if set.is_none() { " (the default)" } else { "" },
                        retention.text(),
                        retention.text(),
                        retention.text(),
                    ));
                }
            }
        }
        out
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    fn origin(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "the built-in defaults".into(),
        }
    }

    /// The existing deployment's `INFLUXDB_*` variables override the file.
    pub fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        if let Some(host) = get("INFLUXDB_HOSTNAME") {
            let ssl = match get("INFLUXDB_SSL").as_deref() {
                None => true,
                Some(v)
                    if v.eq_ignore_ascii_case("true")
                        || v == "1"
                        || v.eq_ignore_ascii_case("yes") =>
                {
                    true
                }
                Some(v)
                    if v.eq_ignore_ascii_case("false")
                        || v == "0"
                        || v.eq_ignore_ascii_case("no") =>
                {
                    false
                }
                Some(v) => {
                    return Err(ConfigError(format!(
                        "environment variable INFLUXDB_SSL: {v:?} is neither true nor false"
                    )));
                }
            };
            let port = match get("INFLUXDB_PORT") {
                Some(p) => p.parse::<u16>().map_err(|_| {
                    ConfigError(format!(
                        "environment variable INFLUXDB_PORT: {p:?} is not a port number"
                    ))
                })?,
                None => 8086,
            };
            let scheme = if ssl { "https" } else { "http" };
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host
            };
            self.influxdb.url = format!("{scheme}://{host}:{port}").into();
            self.from_env.insert("influxdb.url", "INFLUXDB_HOSTNAME");
        } else if get("INFLUXDB_PORT").is_some() || get("INFLUXDB_SSL").is_some() {
            tracing::warn!("INFLUXDB_PORT / INFLUXDB_SSL are ignored without INFLUXDB_HOSTNAME");
        }
        if let Some(u) = get("INFLUXDB_USERNAME") {
            self.influxdb.username = Some(u);
            self.from_env
                .insert("influxdb.username", "INFLUXDB_USERNAME");
        }
        if let Some(p) = get("INFLUXDB_PASSWORD") {
            self.influxdb.password = Some(p);
            self.influxdb.password_file = None;
        }
        if let Some(t) = get("INFLUXDB_TOKEN") {
            self.influxdb.token = Some(t);
            self.influxdb.token_file = None;
        }
        if let Some(d) = get("INFLUXDB_DATABASE") {
            self.influxdb.database = d;
            self.from_env
                .insert("influxdb.database", "INFLUXDB_DATABASE");
        }
        if let Some(state) = get(STATE_DIR_ENV)
            && self.spool.dir == Path::new(DEFAULT_SPOOL_DIR)
        {
            self.spool.dir = Path::new(&state).join("spool");
        }
        Ok(())
    }

    /// Where the value of `key` came from: its environment variable, or
    /// the file.
    fn origin_of(&self, key: &str) -> String {
        match self.from_env.get(key) {
            Some(var) => format!("environment variable {var}"),
            None => self.origin(),
        }
    }

    /// The checks of one output's settings (`[influxdb]`, or
    /// `[outputs.NAME]` with `key` = `outputs.NAME`).
    fn check_output(&self, key: &str, o: &InfluxConfig) -> Result<(), ConfigError> {
        let origin = self.origin();
        if o.api == WriteApi::V1 && o.database.trim().is_empty() {
            return Err(ConfigError(format!(
                "{}: {key}.database is empty: name the InfluxDB database to write to",
                self.origin_of(&format!("{key}.database"))
            )));
        }
        if let Some(u) = o.username.as_deref()
            && u.trim().is_empty()
        {
            return Err(ConfigError(format!(
                "{}: {key}.username is empty: name the user, or remove the key",
                self.origin_of(&format!("{key}.username"))
            )));
        }
        if o.retention.as_ref().is_some_and(|r| r.as_usec() == 0) {
            return Err(ConfigError(format!(
                "{}: {key}.retention = \"0\": must be more than zero (leave it out when the output keeps points for ever)",
                self.origin_of(&format!("{key}.retention"))
            )));
        }
        if o.timeout.as_usec() == 0 {
            return Err(ConfigError(format!(
                "{}: {key}.timeout = {:?}: must be more than zero",
                self.origin_of(&format!("{key}.timeout")),
                o.timeout.text()
            )));
        }
        let batch = o.batch_size;
        if !(1..=crate::sinks::influxdb::MAX_BATCH_SIZE).contains(&batch) {
            return Err(ConfigError(format!(
                "{}: {key}.batch_size = {batch}: write 1 to {} lines per request",
                self.origin_of(&format!("{key}.batch_size")),
                crate::sinks::influxdb::MAX_BATCH_SIZE
            )));
        }
        let url_origin = self.origin_of(&format!("{key}.url"));
        let url = o.url.value().map_err(|e| {
            ConfigError(format!(
                "{url_origin}: {key}.url {:?}: {e}",
                redact_url(&o.url)
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError(format!(
                "{url_origin}: {key}.url {:?}: the scheme must be http or https",
                redact_url(&o.url)
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError(format!(
                "{url_origin}: {key}.url {:?}: no host",
                redact_url(&o.url)
            )));
        }
        if o.password.is_some() && o.password_file.is_some() {
            return Err(ConfigError(format!(
                "{origin}: {key}.password and {key}.password_file are both set; keep one"
            )));
        }
        if o.token.is_some() && o.token_file.is_some() {
            return Err(ConfigError(format!(
                "{origin}: {key}.token and {key}.token_file are both set; keep one"
            )));
        }
        match o.api {
            WriteApi::V2 => {
                for (what, value) in [("org", &o.org), ("bucket", &o.bucket)] {
                    if value.is_empty() {
                        return Err(ConfigError(format!(
                            "{}: {key}.{what} is empty: api = \"v2\" writes to a bucket of an organisation",
                            self.origin_of(&format!("{key}.{what}"))
                        )));
                    }
                }
                if o.username.is_some() || o.password.is_some() {
                    return Err(ConfigError(format!(
                        "{origin}: {key}.username / {key}.password are not used with api = \"v2\": the token authenticates ({key}.token_file)"
                    )));
                }
            }
            WriteApi::V1 => {
                if o.token.is_some() || o.token_file.is_some() {
                    return Err(ConfigError(format!(
                        "{origin}: {key}.token is for api = \"v2\"; with v1 give username and password"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: collector names, intervals and options,
    /// URLs, and every value that would fail (or spin) only at run time.
    pub fn validate<C: CollectorSettings + ?Sized>(
        &self,
        registry: &[Box<C>],
    ) -> Result<(), ConfigError> {
        self.check_daemon_and_http()?;
        self.check_collectors(registry)?;
        self.check_outputs()?;
        self.check_spool_and_limits()?;
        self.check_sources(registry)
    }

    /// `[daemon]` and `[http]`: spans that must not be zero, the listen
    /// address, the per-host limit's ceiling.
    fn check_daemon_and_http(&self) -> Result<(), ConfigError> {
        let zero = |key: &str, span: &TimeSpan| -> Result<(), ConfigError> {
            if span.as_usec() == 0 {
                return Err(ConfigError(format!(
                    "{}: {key} = {span:?}: must be more than zero",
                    self.origin_of(key),
                    span = span.text()
                )));
            }
            Ok(())
        };
        zero("http.timeout", &self.http.timeout)?;
        zero("http.connect_timeout", &self.http.connect_timeout)?;
        zero("daemon.run_timeout", &self.daemon.run_timeout)?;
        if let Some(listen) = &self.daemon.listen {
            listen.parse::<std::net::SocketAddr>().map_err(|e| {
                ConfigError(format!(
                    "{}: daemon.listen = {listen:?}: {e}: write an IP address and a port, e.g. \"127.0.0.1:9273\"",
                    self.origin_of("daemon.listen")
                ))
            })?;
        }
        if self.http.max_per_host > MAX_PER_HOST_LIMIT {
            return Err(ConfigError(format!(
                "{}: http.max_per_host = {}: at most {MAX_PER_HOST_LIMIT} requests in flight per host",
                self.origin(),
                self.http.max_per_host
            )));
        }
        Ok(())
    }

    /// Every `[collectors.NAME]`: a known collector, its keys, its
    /// interval and its own options.
    fn check_collectors<C: CollectorSettings + ?Sized>(
        &self,
        registry: &[Box<C>],
    ) -> Result<(), ConfigError> {
        let origin = self.origin();
        for (name, cc) in &self.collectors {
            let Some(c) = registry.iter().find(|c| c.name() == name) else {
                if cc.options.contains_key("type") {
                    return Err(ConfigError(format!(
                        "{origin}: [collectors.{name}] declares a collector the running program does not know: collectors declared in the configuration are read when the program starts (restart the daemon)"
                    )));
                }
                let known: Vec<_> = registry.iter().map(|c| c.name()).collect();
                return Err(ConfigError(format!(
                    "{origin}: unknown collector [collectors.{name}]; known collectors: {}",
                    known.join(", ")
                )));
            };
            for key in cc.options.keys() {
                if !c.options().iter().any(|(k, _)| k == key) {
                    let mut allowed = vec!["interval", "enabled"];
                    allowed.extend(c.options().iter().map(|(k, _)| *k));
                    return Err(ConfigError(format!(
                        "{origin}: unknown key collectors.{name}.{key}; allowed: {}",
                        allowed.join(", ")
                    )));
                }
            }
            if let Some(interval) = &cc.interval
                && interval.as_usec() < MIN_INTERVAL_SECS * 1_000_000
            {
                return Err(ConfigError(format!(
                    "{origin}: collectors.{name}.interval = {:?}: at least {MIN_INTERVAL_SECS}s (the next run starts one interval after the previous one ended)",
                    interval.text()
                )));
            }
            c.check_options(&cc.options).map_err(|e| {
                ConfigError(format!(
                    "{origin}: collectors.{name}.{}: {}",
                    e.key, e.message
                ))
            })?;
        }
        Ok(())
    }

    /// `[influxdb]` and every `[outputs.NAME]`: the name, then the settings.
    fn check_outputs(&self) -> Result<(), ConfigError> {
        self.check_output("influxdb", &self.influxdb)?;
        for (name, o) in &self.outputs {
            if name == "influxdb"
                || name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err(ConfigError(format!(
                    "{}: outputs.{name}: an output's name is lower-case letters, digits, _ and - (and not `influxdb`, the first output)",
                    self.origin()
                )));
            }
            self.check_output(&format!("outputs.{name}"), o)?;
        }
        Ok(())
    }

    /// `[spool]`, `http.max_body` and `http.max_per_host`.
    fn check_spool_and_limits(&self) -> Result<(), ConfigError> {
        let origin = self.origin();
        self.spool
            .max_bytes()
            .map_err(|e| ConfigError(format!("{origin}: spool.max_size: {e}")))?;
        if self.spool.dir.as_os_str().is_empty() {
            return Err(ConfigError(format!("{origin}: spool.dir is empty")));
        }
        self.http
            .max_body_bytes()
            .map_err(|e| ConfigError(format!("{origin}: http.max_body: {e}")))?;
        if self.http.max_per_host == 0 {
            return Err(ConfigError(format!(
                "{origin}: http.max_per_host = 0: at least 1 request per host must be allowed"
            )));
        }
        Ok(())
    }

    /// `[sources]`: every key a declared source, every value a URL.
    fn check_sources<C: CollectorSettings + ?Sized>(
        &self,
        registry: &[Box<C>],
    ) -> Result<(), ConfigError> {
        let origin = self.origin();
        let declared = declared_sources(registry);
        for (key, value) in self.sources.iter() {
            if !declared.iter().any(|d| d.key == key) {
                let known: Vec<&str> = declared.iter().map(|d| d.key.as_ref()).collect();
                return Err(ConfigError(format!(
                    "{origin}: unknown key sources.{key}: no collector reads it; the sources are: {}, distro_info",
                    known.join(", ")
                )));
            }
            url::Url::parse(value).map_err(|e| {
                ConfigError(format!(
                    "{origin}: sources.{key} {:?}: {e}",
                    redact_url(value)
                ))
            })?;
        }
        Ok(())
    }

    /// The password, from `password` or `password_file`; else, unless the
    /// URL holds one, from the systemd credential [`PASSWORD_CREDENTIAL`]
    /// (`LoadCredential=` in the units) in `$CREDENTIALS_DIRECTORY`.
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        if let Some(p) = &self.influxdb.password {
            return Ok(Some(p.clone()));
        }
        if let Some(f) = &self.influxdb.password_file {
            return read_secret(f, "influxdb.password_file").map(Some);
        }
        if self
            .influxdb
            .url
            .value()
            .is_ok_and(|u| u.password().is_some())
        {
            return Ok(None);
        }
        systemd_credential()
    }

    /// The v2 API token, from `token`, `token_file` or `INFLUXDB_TOKEN`.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(t) = &self.influxdb.token {
            return Ok(Some(t.clone()));
        }
        match &self.influxdb.token_file {
            Some(f) => read_secret(f, "influxdb.token_file").map(Some),
            None => systemd_credential(),
        }
    }

    /// The secret the writer sends: the v2 token or the v1 password.
    pub fn write_secret(&self) -> Result<Option<String>, ConfigError> {
        match self.influxdb.api {
            WriteApi::V1 => self.password(),
            WriteApi::V2 => self.token(),
        }
    }

    /// Every output: `[influxdb]` (named `influxdb`, spooling in
    /// `spool.dir`), then each `[outputs.NAME]` (spooling in `spool-NAME`
    /// beside it: each output keeps its own backlog and dead letters).
    pub fn outputs(&self) -> Vec<OutputSpec> {
        let mut all = vec![OutputSpec {
            name: DEFAULT_OUTPUT.to_owned(),
            influx: self.influxdb.clone(),
            spool_dir: self.spool.dir.clone(),
        }];
        for (name, o) in &self.outputs {
            let base = self
                .spool
                .dir
                .file_name()
                .map_or_else(|| "spool".into(), |f| f.to_string_lossy().into_owned());
            all.push(OutputSpec {
                name: name.clone(),
                influx: o.clone(),
                spool_dir: self.spool.dir.with_file_name(format!("{base}-{name}")),
            });
        }
        all
    }

    /// Every secret file the configuration names, with its key
    /// (`influxdb.password_file`, `influxdb.token_file`,
    /// `outputs.NAME.password_file`, `outputs.NAME.token_file`): the units
    /// hand each to the services as the systemd credential of that name.
    pub fn secret_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let outputs = self
            .outputs
            .iter()
            .map(|(name, o)| (format!("outputs.{name}"), o));
        for (key, o) in std::iter::once((DEFAULT_OUTPUT.to_owned(), &self.influxdb)).chain(outputs)
        {
            for (what, file) in [
                ("password_file", &o.password_file),
                ("token_file", &o.token_file),
            ] {
                if let Some(f) = file {
                    out.push((format!("{key}.{what}"), f.clone()));
                }
            }
        }
        out
    }

    /// The secret an output's writer sends: `[influxdb]`'s from any of its
    /// sources ([`Config::write_secret`]); another output's from its own
    /// `password`/`password_file` (v1) or `token`/`token_file` (v2).
    pub fn output_secret(&self, o: &OutputSpec) -> Result<Option<String>, ConfigError> {
        if o.name == DEFAULT_OUTPUT {
            return self.write_secret();
        }
        let key = format!("outputs.{}", o.name);
        let (plain, file, what) = match o.influx.api {
            WriteApi::V1 => (&o.influx.password, &o.influx.password_file, "password_file"),
            WriteApi::V2 => (&o.influx.token, &o.influx.token_file, "token_file"),
        };
        if let Some(p) = plain {
            return Ok(Some(p.clone()));
        }
        match file {
            Some(f) => read_secret(f, &format!("{key}.{what}")).map(Some),
            None => Ok(None),
        }
    }

    /// The state directory: `$UBUNTU_METRICS_STATE_DIR`, else the spool
    /// directory's parent.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(d) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        self.spool
            .dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned)
    }

    /// The collector's settings (defaults when it has no section).
    pub fn collector(&self, name: &str) -> CollectorConfig {
        self.collectors.get(name).cloned().unwrap_or_default()
    }

    /// Whether a collector is enabled.
    pub fn enabled(&self, name: &str) -> bool {
        self.collectors.get(name).is_none_or(|c| c.enabled)
    }

    /// The effective interval of a collector.
    pub fn interval<C: CollectorSettings + ?Sized>(&self, c: &C) -> TimeSpan {
        self.collectors
            .get(c.name())
            .and_then(|cc| cc.interval.clone())
            .unwrap_or_else(|| c.default_interval().clone())
    }

    /// The configuration as TOML, with secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        if c.influxdb.password.is_some() {
            c.influxdb.password = Some(REDACTED.into());
        }
        for o in std::iter::once(&mut c.influxdb).chain(c.outputs.values_mut()) {
            if o.password.is_some() {
                o.password = Some(REDACTED.into());
            }
            if o.token.is_some() {
                o.token = Some(REDACTED.into());
            }
            o.url = redact_url(&o.url).into();
        }
        c.influxdb.url = redact_url(&c.influxdb.url).into();
        for url in c.sources.urls.values_mut() {
            *url = redact_url(url);
        }
        // A declared collector's URLs (and any other value) may carry
        // credentials.
        for cc in c.collectors.values_mut() {
            for (_, v) in cc.options.iter_mut() {
                redact_value(v);
            }
        }
        toml::to_string_pretty(&c)
            .unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }
}

/// The name of the first output, `[influxdb]`.
pub const DEFAULT_OUTPUT: &str = "influxdb";

/// One output, resolved: its name, its settings and its spool.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub name: String,
    pub influx: InfluxConfig,
    pub spool_dir: PathBuf,
}

/// Set by systemd for every unit it starts (with `CREDENTIALS_DIRECTORY`,
/// the sign that the program runs as a service).
pub const INVOCATION_ID_ENV: &str = "INVOCATION_ID";

/// Whether `id` can name a systemd credential (`LoadCredential=ID:PATH`,
/// the file `$CREDENTIALS_DIRECTORY/ID`): a valid file name (not empty,
/// not `.` or `..`, no `/`, at most 255 bytes), and none of what a unit
/// file line cannot carry (`:` ends the ID, control characters).
pub fn credential_id_valid(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 255
        && !id.contains(['/', ':'])
        && !id.chars().any(char::is_control)
}

/// A password or token file's content, without its final newline. Under
/// systemd the file is first looked for as the credential named after its
/// configuration key (`what`, e.g. `influxdb.password_file`), which the
/// units load with `LoadCredential=` (the service's dynamic user cannot
/// read a root-only file itself).
fn read_secret(f: &Path, what: &str) -> Result<String, ConfigError> {
    let credentials = std::env::var_os(CREDENTIALS_DIRECTORY_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let under_systemd =
        credentials.is_some() || std::env::var_os(INVOCATION_ID_ENV).is_some_and(|v| !v.is_empty());
    read_secret_in(f, what, credentials.as_deref(), under_systemd)
}

/// [`read_secret`] with the credentials directory (`None`: not under
/// systemd, or no credentials) and whether the process runs under
/// systemd given.
pub fn read_secret_in(
    f: &Path,
    what: &str,
    credentials: Option<&Path>,
    under_systemd: bool,
) -> Result<String, ConfigError> {
    let content = |s: String| s.trim_end_matches(['\n', '\r']).to_owned();
    if let Some(dir) = credentials.filter(|_| credential_id_valid(what)) {
        let c = dir.join(what);
        match std::fs::read_to_string(&c) {
            Ok(s) => return Ok(content(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ConfigError(format!(
                    "{what} {}: the systemd credential {}: {e}",
                    f.display(),
                    c.display()
                )));
            }
        }
    }
    std::fs::read_to_string(f)
        .map(content)
        .map_err(|e| secret_error(f, what, &e, under_systemd))
}

/// A secret file that cannot be read: which key, which file, why; under
/// systemd, a permission denied says how to hand the file over.
fn secret_error(f: &Path, what: &str, e: &std::io::Error, under_systemd: bool) -> ConfigError {
    let mut message = format!("{what} {}: {e}", f.display());
    if under_systemd && e.kind() == std::io::ErrorKind::PermissionDenied {
        message.push_str(&format!(
            "; run `sudo ubuntu-metrics systemd apply` after editing the configuration, so that systemd hands the file to the service as the credential {what}"
        ));
    }
    ConfigError(message)
}

/// The InfluxDB secret (v1 password or v2 token) systemd hands the service
/// (`LoadCredential=`), when it runs under systemd with one.
fn systemd_credential() -> Result<Option<String>, ConfigError> {
    let Some(dir) = std::env::var_os(CREDENTIALS_DIRECTORY_ENV).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let f = Path::new(&dir).join(PASSWORD_CREDENTIAL);
    if !f.exists() {
        return Ok(None);
    }
    // The packaged, empty credential file means "no password".
    read_secret(&f, "the systemd credential").map(|p| Some(p).filter(|p| !p.is_empty()))
}

/// Every string in `v` with the credentials of URLs redacted.
fn redact_value(v: &mut toml::Value) {
    match v {
        toml::Value::String(s) => *s = redact_url(s),
        toml::Value::Array(a) => a.iter_mut().for_each(redact_value),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| redact_value(v)),
        _ => {}
    }
}

/// Every source the collectors declare, each key once (the first
/// declaration wins: shared sources like Launchpad's are one constant).
pub fn declared_sources<C: CollectorSettings + ?Sized>(registry: &[Box<C>]) -> Vec<SourceUrl> {
    let mut all: Vec<SourceUrl> = Vec::new();
    for c in registry {
        for s in c.sources() {
            if !all.iter().any(|d| d.key == s.key) {
                all.push(s);
            }
        }
    }
    all
}

/// A file holding a password (the configuration with `password` or a URL
/// with credentials, or the `password_file`) should not be readable by
/// every user. Warned through the log (the command line initialises it
/// before it reads the configuration).
fn warn_if_readable_secret(path: &Path, c: &Config) {
    use std::os::unix::fs::PermissionsExt;
    let others_read =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
    let in_url = c.influxdb.url.value().is_ok_and(|u| u.password().is_some());
    let mut warnings = Vec::new();
    if (c.influxdb.password.is_some() || c.influxdb.token.is_some() || in_url) && others_read(path)
    {
        warnings.push(format!(
            "configuration file {} holds a password or token and is readable by every user: chmod o-r it, or move it to a password_file / token_file of mode 0600",
            path.display()
        ));
    }
    for (key, file) in [
        ("password_file", &c.influxdb.password_file),
        ("token_file", &c.influxdb.token_file),
    ] {
        if let Some(f) = file
            && others_read(f)
        {
            warnings.push(format!(
                "influxdb.{key} {} is readable by every user: chmod 0600 it",
                f.display()
            ));
        }
    }
    for w in warnings {
        tracing::warn!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No collector at all: the checks that do not depend on the registry.
    enum NoCollector {}

    impl CollectorSettings for NoCollector {
        fn name(&self) -> &'static str {
            match *self {}
        }
        fn default_interval(&self) -> &TimeSpan {
            match *self {}
        }
        fn options(&self) -> &'static [(&'static str, &'static str)] {
            match *self {}
        }
        fn check_options(&self, _: &toml::Table) -> Result<(), OptionError> {
            match *self {}
        }
        fn sources(&self) -> Vec<SourceUrl> {
            match *self {}
        }
    }

    const NONE: &[Box<NoCollector>] = &[];

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn max_catch_up_beyond_an_outputs_retention_is_warned() {
        let reg = crate::collectors::registry();
        let catching_up: Vec<&str> = reg
            .iter()
            .filter(|c| c.options().iter().any(|(k, _)| *k == "max_catch_up"))
            .map(|c| c.name())
            .collect();
        assert!(!catching_up.is_empty());
        // No retention known: nothing to say.
        let c = Config::from_toml("[outputs.vm]\nurl = \"http://vm:8428\"\n").unwrap();
        assert!(c.retention_warnings(&reg).is_empty());
        // VictoriaMetrics' default month against the default 90 days.
        let c = Config::from_toml("[outputs.vm]\nurl = \"http://vm:8428\"\nretention = \"31d\"\n")
            .unwrap();
        c.validate(&reg).unwrap();
        let w = c.retention_warnings(&reg);
        assert_eq!(w.len(), catching_up.len(), "{w:?}");
        for name in &catching_up {
            assert!(
                w.iter().any(|w| w.contains(&format!(
                    "collectors.{name}.max_catch_up = 90d (the default) reaches further back than outputs.vm.retention = 31d"
                ))),
                "{w:?}"
            );
        }
        // Within it: nothing.
        let mut text = String::from("[influxdb]\nretention = \"31d\"\n");
        for name in &catching_up {
            text.push_str(&format!("[collectors.{name}]\nmax_catch_up = \"30d\"\n"));
        }
        let c = Config::from_toml(&text).unwrap();
        c.validate(&reg).unwrap();
        assert!(c.retention_warnings(&reg).is_empty());
        let c = Config::from_toml("[influxdb]\nretention = \"0\"\n").unwrap();
        let e = c.validate(&reg).unwrap_err().0;
        assert!(e.contains("influxdb.retention"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[influxdb]\nurll = \"x\"\n").unwrap_err();
        assert!(e.contains("urll"), "{e}");
        let e = Config::from_toml("[nope]\n").unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn http_max_per_host() {
        assert_eq!(Config::default().http.max_per_host, 8);
        let c = Config::from_toml("[http]\nmax_per_host = 3\n").unwrap();
        assert_eq!(c.http.max_per_host, 3);
        let c = Config::from_toml("[http]\nmax_per_host = 0\n").unwrap();
        let e = c.validate(NONE).unwrap_err().0;
        assert!(e.contains("http.max_per_host"), "{e}");
    }

    #[test]
    fn http_max_body() {
        assert_eq!(Config::default().http.max_body_bytes(), Ok(64_000_000));
        let c = Config::from_toml("[http]\nmax_body = \"8MiB\"\n").unwrap();
        assert_eq!(c.http.max_body_bytes(), Ok(8 << 20));
        let c = Config::from_toml("[http]\nmax_body = \"lots\"\n").unwrap();
        let e = c.validate(NONE).unwrap_err().0;
        assert!(e.contains("http.max_body") && e.contains("lots"), "{e}");
    }

    #[test]
    fn bad_interval_is_named() {
        let e = Config::from_toml("[collectors.sponsoring]\ninterval = \"3mins\"\n").unwrap_err();
        assert!(e.contains("3mins") && e.contains("interval"), "{e}");
    }

    #[test]
    fn env_overrides_file() {
        let mut c =
            Config::from_toml("[influxdb]\nurl = \"http://file:1\"\ndatabase = \"filedb\"\n")
                .unwrap();
        c.apply_env(&env(&[
            ("INFLUXDB_HOSTNAME", "influx.internal"),
            ("INFLUXDB_PORT", "8087"),
            ("INFLUXDB_USERNAME", "collector"),
            ("INFLUXDB_PASSWORD", "s3cret"),
            ("INFLUXDB_DATABASE", "metrics2"),
        ]))
        .unwrap();
        assert_eq!(c.influxdb.url, "https://influx.internal:8087");
        assert_eq!(c.influxdb.database, "metrics2");
        assert_eq!(c.influxdb.username.as_deref(), Some("collector"));
        assert_eq!(c.password().unwrap().as_deref(), Some("s3cret"));
        let mut c = Config::default();
        c.apply_env(&env(&[
            ("INFLUXDB_HOSTNAME", "h"),
            ("INFLUXDB_SSL", "false"),
        ]))
        .unwrap();
        assert_eq!(c.influxdb.url, "http://h:8086");
        let mut c = Config::default();
        assert!(
            c.apply_env(&env(&[("INFLUXDB_HOSTNAME", "h"), ("INFLUXDB_PORT", "x")]))
                .is_err()
        );
    }

    /// A size that does not read names its key (the sizes themselves are
    /// tested where they are read, in support::text).
    #[test]
    fn a_bad_size_names_its_key() {
        let c = Config::from_toml("[spool]\nmax_size = \"lots\"\n").unwrap();
        let e = c.validate(NONE).unwrap_err().to_string();
        assert!(e.contains("spool.max_size") && e.contains("lots"), "{e}");
    }

    #[test]
    fn state_directory_moves_the_default_spool_only() {
        let mut c = Config::default();
        c.apply_env(&env(&[("UBUNTU_METRICS_STATE_DIR", "/var/lib/private/um")]))
            .unwrap();
        assert_eq!(c.spool.dir, Path::new("/var/lib/private/um/spool"));
        let mut c = Config::from_toml("[spool]\ndir = \"/srv/spool\"\n").unwrap();
        c.apply_env(&env(&[("UBUNTU_METRICS_STATE_DIR", "/var/lib/private/um")]))
            .unwrap();
        assert_eq!(c.spool.dir, Path::new("/srv/spool"));
    }

    #[test]
    fn secrets_are_redacted_from_messages() {
        assert_eq!(
            redact_url("http://admin:Sekr1t@h:99999/x"),
            "http://admin:<redacted>@h:99999/x"
        );
        assert_eq!(redact_url("http://h:1/"), "http://h:1/");
        assert_eq!(
            redact_url("see https://tok3n@h/x and rsync://u:p@h/m/"),
            "see https://<redacted>@h/x and rsync://u:<redacted>@h/m/"
        );
        assert_eq!(redact_url("http://h/a@b?c=d@e"), "http://h/a@b?c=d@e");
        let once = redact_url("http://u:p@h/");
        assert_eq!(redact_url(&once), once);
        for text in [
            "[influxdb]\npassword = Sekr1t\n",
            "[influxdb]\npassword = \"Sekr1t\" x\n",
            "[influxdb]\npassword = 'Sekr1t' x\n",
            "[influxdb]\npassword = \"Sekr1t\n",
            "influxdb = { password = \"Sekr1t\", x = 1 }\n",
            "influxdb.password = \"Sekr1t\"\nnope = 1\n",
            "[influxdb]\nurl = \"http://u:Sekr1t@h:x/\" x\n",
        ] {
            let e = Config::from_toml(text).unwrap_err();
            let r = redact_secrets(&e, text);
            assert!(!r.contains("Sekr1t"), "{text}: {r}");
        }
        let text = "[influxdb]\npassword = 12345678\n";
        let e = Config::from_toml(text).unwrap_err();
        assert!(e.contains("12345678"));
        assert!(!redact_secrets(&e, text).contains("12345678"));
        let c = Config::from_toml("[influxdb]\npassword = \"Sekr1t\"\nurl = \"http://u:pw2@h/\"\n")
            .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("Sekr1t") && !dbg.contains("pw2"), "{dbg}");
    }

    #[test]
    fn redacted_show_hides_password() {
        let mut c =
            Config::from_toml("[influxdb]\npassword = \"hunter2\"\nurl = \"http://u:pw9@h:1/\"\n")
                .unwrap();
        c.influxdb.username = Some("u".into());
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw9"),
            "{shown}"
        );
        assert!(shown.contains(REDACTED));
    }

    #[test]
    fn secret_files_are_named_by_their_key() {
        let c = Config::from_toml(
            "[influxdb]\npassword_file = \"/s/collector-password\"\n\
             [outputs.vm]\nurl = \"http://vm:8428\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken_file = \"/s/vm-token\"\n",
        )
        .unwrap();
        let got: Vec<(String, String)> = c
            .secret_files()
            .into_iter()
            .map(|(k, p)| (k, p.display().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "influxdb.password_file".into(),
                    "/s/collector-password".into()
                ),
                ("outputs.vm.token_file".into(), "/s/vm-token".into()),
            ]
        );
        assert!(Config::default().secret_files().is_empty());
    }

    #[test]
    fn credential_ids() {
        for ok in ["influxdb.password_file", "outputs.vm-2.token_file", "a"] {
            assert!(credential_id_valid(ok), "{ok}");
        }
        let long = "x".repeat(256);
        for bad in ["", ".", "..", "a/b", "a:b", "a\nb", long.as_str()] {
            assert!(!credential_id_valid(bad), "{bad:?}");
        }
        assert!(credential_id_valid(&"x".repeat(255)));
    }

    #[test]
    fn a_secret_file_is_read_from_its_systemd_credential_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("collector-password");
        std::fs::write(&file, "from-the-file\n").unwrap();
        let creds = dir.path().join("credentials");
        std::fs::create_dir(&creds).unwrap();
        let key = "influxdb.password_file";
        // No credential of that name: the file.
        assert_eq!(
            read_secret_in(&file, key, Some(&creds), true).unwrap(),
            "from-the-file"
        );
        std::fs::write(creds.join(key), "from-the-credential\r\n").unwrap();
        assert_eq!(
            read_secret_in(&file, key, Some(&creds), true).unwrap(),
            "from-the-credential"
        );
        // Another key's credential is not this one.
        assert_eq!(
            read_secret_in(&file, "influxdb.token_file", Some(&creds), true).unwrap(),
            "from-the-file"
        );
        // Not under systemd: the file.
        assert_eq!(
            read_secret_in(&file, key, None, false).unwrap(),
            "from-the-file"
        );
        // The credential is there but the file is not: the credential.
        let gone = dir.path().join("gone");
        assert_eq!(
            read_secret_in(&gone, key, Some(&creds), true).unwrap(),
            "from-the-credential"
        );
        // Neither: the error names the key and the file.
        let e = read_secret_in(&gone, "influxdb.token_file", Some(&creds), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("influxdb.token_file ") && e.contains(gone.to_str().unwrap()),
            "{e}"
        );
        assert!(!e.contains("systemd apply"), "{e}");
    }

    #[test]
    fn an_unreadable_secret_file_under_systemd_names_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("collector-password");
        std::fs::write(&file, "pw\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        let key = "influxdb.password_file";
        let hint = "; run `sudo ubuntu-metrics systemd apply` after editing the configuration, so that systemd hands the file to the service as the credential influxdb.password_file";
        // As root (the test may run so) every file is readable: the
        // error is made from the error the service gets.
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = secret_error(&file, key, &denied, true).to_string();
        assert!(e.starts_with(&format!("{key} {}: ", file.display())), "{e}");
        assert!(e.ends_with(hint), "{e}");
        assert!(
            !secret_error(&file, key, &denied, false)
                .0
                .contains("systemd apply")
        );
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(
            !secret_error(&file, key, &missing, true)
                .0
                .contains("systemd apply")
        );
        if std::fs::read(&file).is_err() {
            let e = read_secret_in(&file, key, None, true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("Permission denied") && e.ends_with(hint), "{e}");
        }
    }
}
