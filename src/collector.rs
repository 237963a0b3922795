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
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// What went wrong in a collection. Every variant names where (a URL, a
/// file) and what.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CollectorError {
    /// The source answered with an HTTP error status.
    #[error("{url}: HTTP {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    HttpStatus {
        url: String,
        status: u16,
        message: String,
    },
    /// The request did not complete (connection refused, timeout, a body cut
    /// short).
    #[error("{url}: {message}")]
    Request { url: String, message: String },
    /// The source answered, but not with what we can read.
    #[error("{url}: {message}")]
    Parse { url: String, message: String },
    /// The distro-info data is missing, unreadable or out of date.
    #[error("{0}")]
    DistroInfo(String),
    /// Anything else (a configuration option, an external program).
    #[error("{0}")]
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

    /// Collects once.
    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError>;
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
}

impl Context {
    pub fn new(http: Http, sources: Arc<Sources>, now: DateTime<Utc>) -> Context {
        Context {
            http,
            sources,
            options: toml::Table::new(),
            now,
            distro_info: Arc::new(OnceLock::new()),
        }
    }

    /// A context for one collector: its own options and request counter,
    /// sharing the distro-info data.
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

    /// The devel series' name, or an error saying the data is out of date.
    pub fn devel_series(&self) -> Result<String, CollectorError> {
        let di = self.distro_info()?;
        di.devel(self.today()).map(|r| r.series.clone()).ok_or_else(|| {
            CollectorError::DistroInfo(format!(
                "the distro-info data {} knows no devel series on {}: it is out of date (update the distro-info-data package)",
                self.sources.distro_info.display(),
                self.today()
            ))
        })
    }

    /// The Launchpad client, at `sources.launchpad`, sharing this run's
    /// HTTP client and request counter.
    pub fn launchpad(&self) -> crate::sources::launchpad::Launchpad {
        crate::sources::launchpad::Launchpad::new(self.http.clone(), self.sources.launchpad.clone())
    }

    /// Reads an option of this collector, or its default.
    pub fn option<T: serde::de::DeserializeOwned>(&self, key: &str, default: T) -> Result<T, CollectorError> {
        match self.options.get(key) {
            None => Ok(default),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e| CollectorError::Other(format!("option {key}: {e}"))),
        }
    }
}
