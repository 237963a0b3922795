//! The `Collector` trait, the run context collectors get, and their errors.
//!
//! A collector reads its sources through the [`Context`] and returns points.
//! It never writes to InfluxDB, prints or exits: the runner does that.
//! Partial failures that the spec says must not stop the collector (one
//! autopkgtest instance down, one series missing) are logged with
//! `tracing::warn!` and the collector returns the points it has.

use crate::config::Sources;
use crate::point::Point;
use crate::sources::distro_info::DistroInfo;
use crate::sources::http::Http;
use chrono::{DateTime, NaiveDate, Utc};
use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

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
    /// The source answered, but not with what we can read.
    #[error("{}: {message}", crate::config::redact_url(url))]
    Parse { url: String, message: String },
    /// The distro-info data is missing, unreadable or out of date.
    #[error("{0}")]
    DistroInfo(String),
    /// Anything else (a configuration option, an external program).
    #[error("{}", crate::config::redact_url(.0))]
    Other(String),
}

impl CollectorError {
    pub fn parse(url: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::Parse {
            url: url.into(),
            message: message.into(),
        }
    }

    /// True for an HTTP 404 (a missing file or resource).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CollectorError::HttpStatus { status: 404, .. })
    }
}

/// The longest error message logged, printed or stored (in characters).
pub const MAX_MESSAGE_CHARS: usize = 300;

/// `msg` cut to [`MAX_MESSAGE_CHARS`] characters (on a character boundary),
/// saying how long it was: an upstream's whole answer (a 30 MB JSON
/// string quoted by a parse error) must not flood the log or InfluxDB.
pub fn short_message(msg: &str) -> String {
    match msg.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => msg.to_owned(),
        Some((end, _)) => format!("{}… (message cut: {} bytes in all)", &msg[..end], msg.len()),
    }
}

/// Merges the results of a collector's independent parts (the spec's "each
/// part fails alone"): a failed part is logged as a warning and the others'
/// points are kept; the collector fails only when every part failed, with
/// every part's error in its message.
pub fn merge_parts(
    collector: &str,
    parts: Vec<(&str, Result<Vec<Point>, CollectorError>)>,
) -> Result<Vec<Point>, CollectorError> {
    let total = parts.len();
    let mut points = Vec::new();
    let mut errors = Vec::new();
    for (part, result) in parts {
        match result {
            Ok(ps) => points.extend(ps),
            Err(e) => {
                let e = short_message(&e.to_string());
                tracing::warn!("{collector}: {part}: {e}; the other parts are still reported");
                errors.push(format!("{part}: {e}"));
            }
        }
    }
    if total > 0 && errors.len() == total {
        return Err(CollectorError::Other(format!(
            "every part of {collector} failed: {}",
            errors.join("; ")
        )));
    }
    Ok(points)
}

/// A collector: one Ubuntu report, turned into points.
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

    /// The measurements this collector writes.
    fn measurements(&self) -> &'static [&'static str];

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

/// A collector's typed options: deserialised from its `[collectors.NAME]`
/// table (declare it `#[serde(deny_unknown_fields, default)]`, every field
/// with its default), then checked for what serde cannot say (ranges).
pub trait CollectorOptions: serde::de::DeserializeOwned + Default {
    /// Checks the values: `Err((key, why))` for the first bad one.
    fn check(&self) -> Result<(), (&'static str, String)> {
        Ok(())
    }
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
    /// The configured upstream base URLs.
    pub sources: Arc<Sources>,
    /// The collector's own options from `[collectors.NAME]`.
    pub options: toml::Table,
    /// The time of this collection: "now" for ages, windows and timestamps.
    pub now: DateTime<Utc>,
    distro_info: Arc<OnceLock<Result<Arc<DistroInfo>, String>>>,
    cache: Arc<RunCache>,
}

/// Documents read at most once per run, shared by every collector of the
/// run (`run --all`, or one daemon cycle): e.g. Launchpad's `ubuntu`
/// distribution and its series, which several collectors need. Each value
/// is computed by the first caller; callers asking for it meanwhile wait
/// for that answer (concurrent identical requests coalesce). Failures are
/// kept too: the run sees one answer per document.
#[derive(Default)]
pub struct RunCache {
    cells: Mutex<HashMap<String, Arc<Cell>>>,
}

type Cell = tokio::sync::OnceCell<Arc<dyn Any + Send + Sync>>;

impl RunCache {
    /// The value under `key` (typically a URL), computing it with `fetch`
    /// if no one has yet. The key space is per value type.
    pub async fn get_or_fetch<T, F, Fut>(
        &self,
        key: &str,
        fetch: F,
    ) -> Result<Arc<T>, CollectorError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, CollectorError>>,
    {
        let cell = {
            let full = format!("{}\u{0}{key}", std::any::type_name::<T>());
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            cells.entry(full).or_default().clone()
        };
        let value = cell
            .get_or_init(|| async {
                let result: Result<Arc<T>, CollectorError> = fetch().await.map(Arc::new);
                Arc::new(result) as Arc<dyn Any + Send + Sync>
            })
            .await;
        value
            .downcast_ref::<Result<Arc<T>, CollectorError>>()
            .expect("the key includes the type")
            .clone()
    }

    /// Entries held (for tests and logs).
    pub fn len(&self) -> usize {
        self.cells.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
        }
    }

    /// A context for one collector: its own options and request counter,
    /// sharing the distro-info data and the run's [`RunCache`].
    pub fn for_collector(&self, options: toml::Table) -> Context {
        Context {
            http: self.http.for_run(),
            options,
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
            .get_or_fetch::<String, _, _>("devel series from Launchpad", || async move {
                match lp.devel_series_name().await {
                    Ok(name) => {
                        tracing::warn!(
                            "{why}; using Launchpad's current series {name:?} as the devel series"
                        );
                        Ok(name)
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
        crate::sources::launchpad::Launchpad::new(self.http.clone(), self.sources.launchpad.clone())
            .with_cache(self.cache.clone())
    }

    /// The documents shared by the collectors of this run.
    pub fn cache(&self) -> &Arc<RunCache> {
        &self.cache
    }

    /// This collector's typed options (the ones checked at load).
    pub fn options_as<T: CollectorOptions>(&self) -> Result<T, CollectorError> {
        parse_options(&self.options).map_err(|e| CollectorError::Other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(short_message("short"), "short");
        let long = "é".repeat(1000);
        let cut = short_message(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_MESSAGE_CHARS)));
        assert!(cut.ends_with("… (message cut: 2000 bytes in all)"), "{cut}");
        assert!(cut.chars().count() < MAX_MESSAGE_CHARS + 40);
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_fetch() {
        let cache = RunCache::default();
        let calls = AtomicUsize::new(0);
        let ask = || {
            cache.get_or_fetch("http://x/ubuntu", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok::<String, CollectorError>("ubuntu".into())
            })
        };
        let (a, b, c) = tokio::join!(ask(), ask(), ask());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        for v in [a, b, c] {
            assert_eq!(v.unwrap().as_str(), "ubuntu");
        }
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn failures_are_kept_and_types_do_not_mix() {
        let cache = RunCache::default();
        let e = cache
            .get_or_fetch::<String, _, _>("k", || async {
                Err(CollectorError::Other("down".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "down");
        let again = cache
            .get_or_fetch::<String, _, _>("k", || async { Ok("up".to_owned()) })
            .await;
        assert!(again.is_err());
        // The same key for another type is another entry.
        let n = cache
            .get_or_fetch("k", || async { Ok(3u64) })
            .await
            .unwrap();
        assert_eq!(*n, 3);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn an_abandoned_fetch_is_taken_over() {
        let cache = RunCache::default();
        let slow = cache.get_or_fetch("k", || async {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Ok(1u8)
        });
        // The first asker gives up (a collector's run timeout).
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), slow)
                .await
                .is_err()
        );
        let v = cache.get_or_fetch("k", || async { Ok(2u8) }).await.unwrap();
        assert_eq!(*v, 2);
    }
}
