//! The `Collector` trait, the run context collectors get, and their errors.
//!
//! A collector reads its sources through the [`Context`] and returns points.
//! It never writes to InfluxDB, prints or exits: the runner does that.
//! Partial failures that the spec says must not stop the collector (one
//! autopkgtest instance down, one series missing) follow one rule,
//! [`Parts`]: logged once with `tracing::warn!` while the collector returns
//! the points it has; when every part failed, the collector's error lists
//! them all instead.

pub use crate::config::OptionError;
use crate::config::{CollectorSettings, SourceUrl, Sources, redact_url};
use crate::model::catch_up::{Cutoff, Marks, Seen};
use crate::model::panel::Panels;
use crate::model::point::Point;
use crate::model::schema::Measurement;
/// The run cache lives with the sources (Launchpad reads through it).
pub use crate::sources::RunCache;
use crate::sources::SourceError;
use crate::sources::distro_info::DistroInfo;
use crate::sources::http::Http;
use chrono::{DateTime, NaiveDate, Utc};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// What went wrong in a collection. Every variant names where (a URL, a
/// file) and what.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CollectorError {
    /// The source answered with an HTTP error status.
    #[error("{}: HTTP {status}{}", crate::config::redact_url(url), if message.is_empty() { String::new() } else { format!(": {message}") })]
    HttpStatus {
        url: String,
        status: u16,
        message: String,
    },
    /// The source answered 429 or 503 asking (`Retry-After`) to come back
    /// later than this run can wait: not retried.
    #[error("{url}: {message}")]
    RetryLater { url: String, message: String },
    /// The request did not complete (connection refused, timeout, a body cut
    /// short).
    #[error(
        "{}: {}",
        crate::config::redact_url(url),
        crate::config::redact_url(message)
    )]
    Request { url: String, message: String },
    /// The host could not be reached at all (a name that does not
    /// resolve, a connection refused): the message names the host and the
    /// cause, not the URL (see [`SourceError::Unreachable`]).
    #[error("{message}")]
    Unreachable { url: String, message: String },
    /// The source answered, but not with what we can read.
    #[error("{}: {message}", crate::config::redact_url(url))]
    Parse { url: String, message: String },
    /// The distro-info data is missing, unreadable or out of date.
    #[error("{0}")]
    DistroInfo(String),
    /// Anything else (a configuration option, an external program).
    #[error("{}", crate::config::redact_url(.0))]
    Other(String),
    /// Every part of a collector failed ([`Parts`]): each part's error,
    /// already cut to [`MAX_MESSAGE_CHARS`] each.
    #[error("{}", parts_message(of, failed))]
    Parts {
        of: String,
        failed: Vec<(String, CollectorError)>,
    },
}

impl CollectorError {
    pub fn parse(url: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::Parse {
            url: url.into(),
            message: message.into(),
        }
    }

    /// The message to log, print or store: cut to [`MAX_MESSAGE_CHARS`];
    /// a [`Parts`] error lists its parts' (cut) messages, the whole cut to
    /// [`MAX_PARTS_MESSAGE_CHARS`].
    pub fn short(&self) -> String {
        match self {
            // Each part was cut already; the whole is bounded too, so that
            // fifteen failed listings stay one readable line.
            CollectorError::Parts { .. } => cut(&self.to_string(), MAX_PARTS_MESSAGE_CHARS),
            _ => short_message(&self.to_string()),
        }
    }

    /// True when the host could not be reached at all
    /// ([`CollectorError::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, CollectorError::Unreachable { .. })
    }

    /// True for an HTTP 404 (a missing file or resource).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CollectorError::HttpStatus { status: 404, .. })
    }
}

/// A source's error becomes the collector's at the boundary: the same
/// variant, the same message (so `?` on a source call works in `collect`).
impl From<SourceError> for CollectorError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::HttpStatus {
                url,
                status,
                message,
            } => CollectorError::HttpStatus {
                url,
                status,
                message,
            },
            SourceError::RetryLater { url, message } => CollectorError::RetryLater { url, message },
            SourceError::Request { url, message } => CollectorError::Request { url, message },
            SourceError::Unreachable { url, message } => {
                CollectorError::Unreachable { url, message }
            }
            SourceError::Parse { url, message } => CollectorError::Parse { url, message },
            SourceError::Invalid(message) => CollectorError::Other(message),
        }
    }
}

/// The longest error message logged, printed or stored (in characters).
pub const MAX_MESSAGE_CHARS: usize = 300;

/// `msg` cut to [`MAX_MESSAGE_CHARS`] characters (on a character boundary),
/// saying how long it was: an upstream's whole answer (a 30 MB JSON
/// string quoted by a parse error) must not flood the log or InfluxDB.
pub fn short_message(msg: &str) -> String {
    cut(msg, MAX_MESSAGE_CHARS)
}

/// The longest message of a collector made of parts (each part's own
/// message is cut at [`MAX_MESSAGE_CHARS`]).
pub const MAX_PARTS_MESSAGE_CHARS: usize = 1000;

fn cut(msg: &str, max: usize) -> String {
    match msg.char_indices().nth(max) {
        None => msg.to_owned(),
        Some((end, _)) => format!("{}… (message cut: {} bytes in all)", &msg[..end], msg.len()),
    }
}

/// The most failed parts an error lists with their messages; the others
/// are counted (a part list can come from upstream, e.g. versions' reports).
pub const MAX_PARTS_LISTED: usize = 30;

/// The spec's partial-failure rule, written once: a collector (or a part of
/// one) made of independent parts fails only when every part failed, and
/// then with every part's (short) error in its own; when some part worked,
/// its points are kept and each failed part is logged once, as a warning.
/// So a failure is reported once: by a warning, or in the error (which the
/// caller reports), never both.
///
/// Parts nest: a part may itself be the [`Parts::finish`] of sub-parts (the
/// series of one report); its error then lists the sub-parts.
///
/// ```
/// # use ubuntu_metrics::collector::Parts;
/// # use ubuntu_metrics::{CollectorError, Point};
/// let mut parts = Parts::new("autopkgtest");
/// parts.add("production", Ok(vec![Point::new("m").field("count", 1i64)]));
/// parts.add("staging", Err(CollectorError::Other("down".into())));
/// assert_eq!(parts.finish().unwrap().len(), 1); // and staging is logged
/// ```
#[must_use = "finish() applies the rule"]
pub struct Parts {
    of: String,
    total: usize,
    points: Vec<Point>,
    failed: Vec<(String, CollectorError)>,
}

impl Parts {
    /// The parts of `of` (a collector's name, or what a nested set of
    /// parts is: "last run age").
    pub fn new(of: impl Into<String>) -> Parts {
        Parts {
            of: of.into(),
            total: 0,
            points: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// One part's outcome. `part` names it in a warning or in the error
    /// (e.g. a series, an instance); it may be empty when the error names
    /// the part already (its URL).
    pub fn add(&mut self, part: impl Into<String>, result: Result<Vec<Point>, CollectorError>) {
        match result {
            Ok(points) => self.ok(points),
            Err(e) => self.fail(part, e),
        }
    }

    /// A part that worked (with no points, maybe).
    pub fn ok(&mut self, points: impl IntoIterator<Item = Point>) {
        self.total += 1;
        self.points.extend(points);
    }

    /// A part that failed.
    pub fn fail(&mut self, part: impl Into<String>, error: CollectorError) {
        self.total += 1;
        self.failed.push((part.into(), error));
    }

    /// The rule: the points of the parts that worked, each failed part
    /// logged once as a warning; or, when every part failed (and there was
    /// at least one), an error holding every part's error and nothing
    /// logged. A lone part's error is returned as it is. No part at all is
    /// no points and no error.
    ///
    /// Parts that failed because their host could not be reached
    /// ([`CollectorError::Unreachable`]) are said once per host: when every
    /// part failed so, the error is just `cannot resolve HOST` (each host
    /// once), not one line per URL; a warning names the parts of one
    /// unreachable host together.
    pub fn finish(mut self) -> Result<Vec<Point>, CollectorError> {
        if self.total > 0 && self.failed.len() == self.total {
            if self.total == 1 {
                return Err(self.failed.remove(0).1);
            }
            if let Some(e) = all_unreachable(self.failed.iter().map(|(_, e)| e)) {
                return Err(e);
            }
            return Err(CollectorError::Parts {
                of: self.of,
                failed: self.failed,
            });
        }
        // Unreachable hosts first, each with the parts it failed.
        let mut hosts: Vec<(String, Vec<&str>)> = Vec::new();
        for (part, e) in &self.failed {
            match unreachable_causes(e) {
                Some(causes) => {
                    let cause = causes.join("; ");
                    match hosts.iter_mut().find(|(c, _)| *c == cause) {
                        Some((_, parts)) if parts.contains(&part.as_str()) => {}
                        Some((_, parts)) => parts.push(part),
                        None => hosts.push((cause, vec![part])),
                    }
                }
                None => tracing::warn!(
                    "{}: {}; the other parts are still reported",
                    self.of,
                    part_message(part, e)
                ),
            }
        }
        for (cause, parts) in hosts {
            let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
            tracing::warn!(
                "{}: {cause}{}; the other parts are still reported",
                self.of,
                if parts.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", parts.join(", "))
                }
            );
        }
        Ok(self.points)
    }
}

/// The distinct causes of `e` when it is only hosts that could not be
/// reached (an [`CollectorError::Unreachable`], or parts that all are),
/// in the order met; `None` when anything else failed.
fn unreachable_causes(e: &CollectorError) -> Option<Vec<String>> {
    let mut causes: Vec<String> = Vec::new();
    let mut add = |m: &str| {
        for c in m.split("; ") {
            if !causes.iter().any(|k| k == c) {
                causes.push(c.to_owned());
            }
        }
    };
    match e {
        CollectorError::Unreachable { message, .. } => add(message),
        CollectorError::Parts { failed, .. } => {
            for (_, e) in failed {
                for c in unreachable_causes(e)? {
                    add(&c);
                }
            }
        }
        _ => return None,
    }
    Some(causes)
}

/// One [`CollectorError::Unreachable`] for errors that all are (or are
/// made only of) unreachable hosts: each cause once.
fn all_unreachable<'a>(
    errors: impl IntoIterator<Item = &'a CollectorError>,
) -> Option<CollectorError> {
    let mut causes: Vec<String> = Vec::new();
    let mut url = None;
    for e in errors {
        for c in unreachable_causes(e)? {
            if !causes.contains(&c) {
                causes.push(c);
            }
        }
        if url.is_none()
            && let CollectorError::Unreachable { url: u, .. } = e
        {
            url = Some(u.clone());
        }
    }
    if causes.is_empty() {
        return None;
    }
    Some(CollectorError::Unreachable {
        url: url.unwrap_or_default(),
        message: causes.join("; "),
    })
}

/// `part: error` (just the error when the part has no name), the error cut
/// to [`MAX_MESSAGE_CHARS`]; nested parts in parentheses.
fn part_message(part: &str, e: &CollectorError) -> String {
    let e = match e {
        CollectorError::Parts { .. } => format!("({e})"),
        _ => short_message(&e.to_string()),
    };
    if part.is_empty() {
        e
    } else {
        format!("{part}: {e}")
    }
}

fn parts_message(of: &str, failed: &[(String, CollectorError)]) -> String {
    let mut listed: Vec<String> = Vec::new();
    for (part, e) in failed.iter().take(MAX_PARTS_LISTED) {
        // A part failing alike on several documents (one host out of
        // reach) is said once.
        let m = part_message(part, e);
        if !listed.contains(&m) {
            listed.push(m);
        }
    }
    if failed.len() > MAX_PARTS_LISTED {
        listed.push(format!(
            "and {} more parts",
            failed.len() - MAX_PARTS_LISTED
        ));
    }
    format!(
        "every part of {of} failed ({}): {}",
        failed.len(),
        listed.join("; ")
    )
}

/// [`Parts`] of `of`, all at once: `(part, outcome)` pairs.
pub fn merge_parts<S: Into<String>>(
    of: &str,
    parts: impl IntoIterator<Item = (S, Result<Vec<Point>, CollectorError>)>,
) -> Result<Vec<Point>, CollectorError> {
    let mut all = Parts::new(of);
    for (part, result) in parts {
        all.add(part, result);
    }
    all.finish()
}

/// Launchpad's web service, read through [`Context::launchpad`] by several
/// collectors: each lists it in its [`Collector::sources`].
pub const LAUNCHPAD: SourceUrl = SourceUrl {
    key: "launchpad",
    default: "https://api.launchpad.net/devel/",
    about: "Launchpad's web service (API version devel)",
    fixture: "launchpad/devel/",
};

/// A collector: one Ubuntu report, turned into points. Everything about it
/// is declared here, in its own file: the registry (`collectors::registry`)
/// is the only other place that names it.
#[async_trait::async_trait]
pub trait Collector: Send + Sync {
    /// The collector's name, as used on the command line and in the
    /// configuration (`[collectors.NAME]`).
    fn name(&self) -> &'static str;

    /// One line saying what it measures (shown by `list`).
    fn description(&self) -> &'static str;

    /// The default run interval, in systemd time-span syntax.
    fn default_interval(&self) -> &'static str {
        "5m"
    }

    /// What it writes: every measurement with its tag keys and its field
    /// keys and types. Every point it returns must fit (a test checks every
    /// collector on its fixtures); the README and `list --schema` show it.
    fn schema(&self) -> &'static [Measurement];

    /// The names of the measurements it writes (from [`Collector::schema`]).
    fn measurements(&self) -> Vec<&'static str> {
        self.schema().iter().map(|m| m.name).collect()
    }

    /// The upstream sources it reads: their `[sources]` keys, production
    /// URLs and fixtures. A source shared with other collectors is one
    /// constant (e.g. [`LAUNCHPAD`]) that each of them lists.
    fn sources(&self) -> &'static [SourceUrl] {
        &[]
    }

    /// Its row of Grafana panels and the dashboard it goes on.
    fn panels(&self) -> Panels;

    /// The collector's own configuration options (keys of
    /// `[collectors.NAME]` besides `interval` and `enabled`), with a short
    /// description each. Unknown keys are configuration errors.
    fn options(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Checks the collector's own options (`[collectors.NAME]` less
    /// `interval` and `enabled`) when the configuration loads, so that a bad
    /// value is refused by every command instead of failing a run later.
    /// A collector with options declares a typed options struct
    /// ([`CollectorOptions`]) and checks with [`parse_options`]; `collect`
    /// reads the same struct through [`Context::options_as`]. The default:
    /// no options at all.
    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        match options.keys().next() {
            None => Ok(()),
            Some(key) => Err(OptionError {
                key: key.clone(),
                message: "this collector has no such option".into(),
            }),
        }
    }

    /// Collects once.
    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError>;
}

/// What the configuration checks of a collector, from its declaration.
impl<T: Collector + ?Sized> CollectorSettings for T {
    fn name(&self) -> &'static str {
        Collector::name(self)
    }
    fn default_interval(&self) -> &'static str {
        Collector::default_interval(self)
    }
    fn options(&self) -> &'static [(&'static str, &'static str)] {
        Collector::options(self)
    }
    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        Collector::check_options(self, options)
    }
    fn sources(&self) -> Vec<SourceUrl> {
        Collector::sources(self).to_vec()
    }
}

/// A collector's typed options: deserialised from its `[collectors.NAME]`
/// table (declare it `#[serde(deny_unknown_fields, default)]`, every field
/// with its default), then checked for what serde cannot say (ranges).
pub trait CollectorOptions: serde::de::DeserializeOwned + Default {
    /// Checks the values: `Err((key, why))` for the first bad one.
    fn check(&self) -> Result<(), (&'static str, String)> {
        Ok(())
    }
}

/// The options of the collectors reading time-series sources.
impl CollectorOptions for crate::model::catch_up::Options {
    fn check(&self) -> Result<(), (&'static str, String)> {
        crate::model::catch_up::Options::check(self)
    }
}

/// The typed options `T` from a `[collectors.NAME]` table (without
/// `interval` and `enabled`), checked; an error names the key.
pub fn parse_options<T: CollectorOptions>(options: &toml::Table) -> Result<T, OptionError> {
    let parse = |t: &toml::Table| -> Result<T, String> {
        toml::Value::Table(t.clone()).try_into::<T>().map_err(|e| {
            // toml adds "in `key`" on a line of its own: the key is
            // named by the caller already.
            let m = e.to_string();
            m.lines().next().unwrap_or_default().trim().to_owned()
        })
    };
    let opts = match parse(options) {
        Ok(o) => o,
        Err(whole) => {
            // Every field has a default: the key alone in a table fails
            // the same way, which names the key.
            for (key, value) in options {
                let mut one = toml::Table::new();
                one.insert(key.clone(), value.clone());
                if let Err(message) = parse(&one) {
                    return Err(OptionError {
                        key: key.clone(),
                        message: format!("{value}: {message}"),
                    });
                }
            }
            return Err(OptionError {
                key: options.keys().cloned().collect::<Vec<_>>().join(", "),
                message: whole,
            });
        }
    };
    opts.check().map_err(|(key, message)| OptionError {
        key: key.to_owned(),
        message,
    })?;
    Ok(opts)
}

/// Everything a collector may use from the outside world.
#[derive(Clone)]
pub struct Context {
    /// The HTTP client (timeouts, User-Agent, gzip; counts requests).
    pub http: Http,
    /// The configured upstream URLs: read one with [`Context::source`].
    pub sources: Arc<Sources>,
    /// The collector's own options from `[collectors.NAME]`.
    pub options: toml::Table,
    /// The time of this collection: "now" for ages, windows and timestamps.
    pub now: DateTime<Utc>,
    distro_info: Arc<OnceLock<Result<Arc<DistroInfo>, String>>>,
    cache: Arc<RunCache>,
    /// The station's catch-up marks (empty: a fresh station, or a test).
    marks: Arc<Marks>,
    /// The newest row this collector run read of each time-series source.
    seen: Seen,
    /// The station's state directory, when the run may write there (the
    /// scripts' homes are in it); `None` in tests and read-only dry runs.
    state_dir: Option<Arc<PathBuf>>,
}

impl Context {
    pub fn new(http: Http, sources: Arc<Sources>, now: DateTime<Utc>) -> Context {
        Context {
            http,
            sources,
            options: toml::Table::new(),
            now,
            distro_info: Arc::new(OnceLock::new()),
            cache: Arc::new(RunCache::default()),
            marks: Arc::new(Marks::new()),
            seen: Seen::default(),
            state_dir: None,
        }
    }

    /// The same context with the station's state directory, where a run
    /// may write (its scripts' homes: see `custom::exec`).
    pub fn with_state_dir(mut self, dir: PathBuf) -> Context {
        self.state_dir = Some(Arc::new(dir));
        self
    }

    /// The state directory the run may write in, if any.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref().map(PathBuf::as_path)
    }

    /// The same context with the station's catch-up marks (read from the
    /// state directory by the runner).
    pub fn with_marks(mut self, marks: Marks) -> Context {
        self.marks = Arc::new(marks);
        self
    }

    /// Which rows of the time-series source `url` collector `collector`,
    /// whose options are `options`, reads now (see [`crate::model::catch_up`]).
    pub fn cutoff(
        &self,
        collector: &str,
        url: &str,
        options: &crate::model::catch_up::Options,
    ) -> Cutoff {
        let mark = self
            .marks
            .get(collector)
            .and_then(|m| m.get(&redact_url(url)))
            .copied();
        Cutoff::new(self.now, mark, options.catch_up_from, options.max())
    }

    /// Notes that this run read a row of the time-series source `url`
    /// written at `time` (the newest moves the mark once the points are
    /// safe).
    pub fn note_row(&self, url: &str, time: DateTime<Utc>) {
        self.seen.note(&redact_url(url), time);
    }

    /// The newest row read of each time-series source by this run.
    pub fn newest_rows(&self) -> std::collections::BTreeMap<String, DateTime<Utc>> {
        self.seen.take()
    }

    /// The same context reading through `cache`: the daemon gives one to
    /// the collectors of one wake-up.
    pub fn with_cache(mut self, cache: Arc<RunCache>) -> Context {
        self.cache = cache;
        self
    }

    /// A context for one collector: its own options and request counter,
    /// sharing the distro-info data and the run's [`RunCache`].
    pub fn for_collector(&self, options: toml::Table) -> Context {
        Context {
            http: self.http.for_run(),
            options,
            seen: Seen::default(),
            ..self.clone()
        }
    }

    pub fn today(&self) -> NaiveDate {
        self.now.date_naive()
    }

    /// The distro-info data (read once per process, on first use).
    pub fn distro_info(&self) -> Result<Arc<DistroInfo>, CollectorError> {
        let path: PathBuf = self.sources.distro_info.clone();
        self.distro_info
            .get_or_init(|| DistroInfo::load(&path).map(Arc::new))
            .clone()
            .map_err(CollectorError::DistroInfo)
    }

    /// The devel series' name: distro-info's; when the data knows none
    /// (it is out of date), Launchpad's current series, with a warning
    /// (once per run); an error only when neither knows it.
    pub async fn devel_series(&self) -> Result<String, CollectorError> {
        let di = self.distro_info()?;
        if let Some(r) = di.devel(self.today()) {
            return Ok(r.series.clone());
        }
        let stale = format!(
            "the distro-info data {} knows no devel series on {}: it is out of date (update the distro-info-data package)",
            self.sources.distro_info.display(),
            self.today()
        );
        let lp = self.launchpad();
        let why = stale.clone();
        let name = self
            .cache
            .get_or_fetch::<String, CollectorError, _, _>("devel series from Launchpad", || async move {
                match lp.devel_series_name().await {
                    Ok(name) => {
                        tracing::warn!(
                            "{why}; using Launchpad's current series {name:?} as the devel series"
                        );
                        Ok(name)
                    }
                    // Offline, that is the one thing to say (the stale
                    // data is said once Launchpad answers).
                    Err(e) if e.is_unreachable() => {
                        tracing::debug!("{why}");
                        Err(e.into())
                    }
                    Err(e) => Err(CollectorError::DistroInfo(format!(
                        "{why}, and Launchpad's current series is unknown too: {e}"
                    ))),
                }
            })
            .await?;
        Ok((*name).clone())
    }

    /// The Launchpad client, at `sources.launchpad`, sharing this run's
    /// HTTP client, request counter and [`RunCache`].
    pub fn launchpad(&self) -> crate::sources::launchpad::Launchpad {
        crate::sources::launchpad::Launchpad::new(
            self.http.clone(),
            self.sources.url(&LAUNCHPAD).to_owned(),
        )
        .with_cache(self.cache.clone())
    }

    /// The URL of one of the collector's sources (as configured, else its
    /// production default).
    pub fn source(&self, source: &SourceUrl) -> &str {
        self.sources.url(source)
    }

    /// The documents shared by the collectors of this run.
    pub fn cache(&self) -> &Arc<RunCache> {
        &self.cache
    }

    /// This collector's typed options (the ones checked at load).
    pub fn options_as<T: CollectorOptions>(&self) -> Result<T, CollectorError> {
        parse_options(&self.options).map_err(|e| CollectorError::Other(e.to_string()))
    }

    /// An rsync client for listings, each call killed after `timeout`,
    /// held to the HTTP body limit (`[http] max_body`) and recording or
    /// replaying with this run's HTTP client. An error when its scratch
    /// directory cannot be created.
    pub fn rsync(
        &self,
        timeout: std::time::Duration,
    ) -> std::io::Result<crate::sources::rsync::Rsync> {
        Ok(crate::sources::rsync::Rsync::new(timeout)?
            .with_max_output(self.http.max_body())
            .with_tape(self.http.tape()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts that all failed on unreachable hosts make one short error
    /// naming each host once (issue 24 item 1), however many URLs and
    /// nested parts; anything else failing keeps the list of parts.
    #[test]
    fn unreachable_parts_are_said_once_per_host() {
        let down = |url: &str, host: &str| CollectorError::Unreachable {
            url: url.into(),
            message: format!("cannot resolve {host}"),
        };
        let mut inner = Parts::new("last run age");
        inner.add("focal", Err(down("https://a.invalid/f", "a.invalid")));
        inner.add("jammy", Err(down("https://a.invalid/j", "a.invalid")));
        let mut parts = Parts::new("britney");
        parts.add("ages", inner.finish());
        parts.add("csv", Err(down("https://b.invalid/x", "b.invalid")));
        parts.add("yaml", Err(down("https://a.invalid/y", "a.invalid")));
        let e = parts.finish().unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert_eq!(
            e.short(),
            "cannot resolve a.invalid; cannot resolve b.invalid"
        );

        let mut mixed = Parts::new("versions");
        mixed.add("a", Err(down("https://a.invalid/", "a.invalid")));
        mixed.add("b", Err(CollectorError::Other("HTTP 500".into())));
        let e = mixed.finish().unwrap_err();
        assert!(!e.is_unreachable());
        assert!(
            e.short().starts_with("every part of versions failed (2)"),
            "{e}"
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(short_message("short"), "short");
        let long = "é".repeat(1000);
        let cut = short_message(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_MESSAGE_CHARS)));
        assert!(cut.ends_with("… (message cut: 2000 bytes in all)"), "{cut}");
        assert!(cut.chars().count() < MAX_MESSAGE_CHARS + 40);
    }

    /// What `f` logs (at warning level and above), with its result.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        let buf = crate::support::test_support::Captured::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = buf.text();
        (out, text)
    }

    fn one() -> Result<Vec<Point>, CollectorError> {
        Ok(vec![Point::new("m").field("count", 1i64)])
    }

    fn bad(url: &str) -> Result<Vec<Point>, CollectorError> {
        Err(CollectorError::parse(url, format!("bad {url}")))
    }

    #[test]
    fn some_parts_failing_keeps_the_rest_and_warns_once_per_failed_part() {
        let (got, log) = logged(|| {
            let mut parts = Parts::new("c");
            parts.add("a", one());
            parts.add("b", bad("http://b"));
            parts.add("z", Ok(Vec::new()));
            parts.add("d", bad("http://d"));
            parts.finish()
        });
        assert_eq!(got.unwrap().len(), 1);
        assert_eq!(log.lines().count(), 2, "{log}");
        assert_eq!(log.matches("bad http://b").count(), 1, "{log}");
        assert_eq!(log.matches("bad http://d").count(), 1, "{log}");
        assert!(
            log.contains("c: b: http://b: bad http://b; the other parts are still reported"),
            "{log}"
        );
    }

    #[test]
    fn every_part_failing_is_one_error_with_each_part_and_no_warning() {
        let (got, log) =
            logged(|| merge_parts("c", [("a", bad("http://a")), ("b", bad("http://b"))]));
        let err = got.unwrap_err();
        assert!(matches!(err, CollectorError::Parts { .. }));
        assert_eq!(
            err.to_string(),
            "every part of c failed (2): a: http://a: bad http://a; b: http://b: bad http://b"
        );
        assert_eq!(log, "", "nothing is logged: the caller reports the error");
    }

    #[test]
    fn a_lone_part_fails_with_its_own_error_and_no_parts_is_no_points() {
        let (got, log) = logged(|| merge_parts("c", [("a", bad("http://a"))]));
        assert!(matches!(got.unwrap_err(), CollectorError::Parse { .. }));
        assert_eq!(log, "");
        let none: [(&str, Result<Vec<Point>, CollectorError>); 0] = [];
        assert!(merge_parts("c", none).unwrap().is_empty());
    }

    #[test]
    fn nested_parts_report_once_at_the_level_that_decides() {
        // Every sub-part of one part failed, another part worked: one
        // warning, for that part, listing its sub-parts.
        let (got, log) = logged(|| {
            let inner = merge_parts("inner", [("x", bad("http://x")), ("y", bad("http://y"))]);
            merge_parts("outer", [("p", inner), ("q", one())])
        });
        assert_eq!(got.unwrap().len(), 1);
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains("outer: p: (every part of inner failed (2): x: http://x: bad http://x; y: http://y: bad http://y)"),
            "{log}"
        );
        // Everything failed: one error, nothing logged.
        let (got, log) = logged(|| {
            let inner = merge_parts("inner", [("x", bad("http://x")), ("y", bad("http://y"))]);
            merge_parts("outer", [("p", inner), ("q", bad("http://q"))])
        });
        let err = got.unwrap_err().to_string();
        assert_eq!(log, "");
        assert_eq!(err.matches("bad http://x").count(), 1, "{err}");
        assert_eq!(err.matches("bad http://q").count(), 1, "{err}");
    }

    #[test]
    fn each_part_message_is_cut_but_every_part_is_kept() {
        let long = |u: &str| Err(CollectorError::parse(u, "x".repeat(5000)));
        let err = merge_parts("c", [("a", long("http://a")), ("b", long("http://b"))]).unwrap_err();
        let short = err.short();
        assert!(
            short.contains("a: http://a: xxx") && short.contains("; b: http://b: xxx"),
            "{short}"
        );
        assert_eq!(short.matches("(message cut").count(), 2, "{short}");
        assert!(
            short.len() < 2 * (MAX_MESSAGE_CHARS + 60) + 40,
            "{}",
            short.len()
        );
        // Another error is cut as a whole.
        assert!(long("http://a").unwrap_err().short().len() < MAX_MESSAGE_CHARS + 60);
    }

    #[test]
    fn an_error_lists_at_most_max_parts_listed_parts() {
        let parts = (0..MAX_PARTS_LISTED + 5).map(|i| (format!("p{i}"), bad("http://u")));
        let err = merge_parts("c", parts).unwrap_err().to_string();
        assert_eq!(err.matches("bad http://u").count(), MAX_PARTS_LISTED);
        assert!(err.ends_with("; and 5 more parts"), "{err}");
        assert!(err.starts_with(&format!(
            "every part of c failed ({}): ",
            MAX_PARTS_LISTED + 5
        )));
    }
}
