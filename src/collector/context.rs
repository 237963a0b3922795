//! Everything a collector may use from the outside world: the [`Context`].

use super::error::CollectorError;
use super::spec::{CollectorOptions, LAUNCHPAD, parse_options};
use crate::config::{SourceUrl, Sources, redact_url};
use crate::model::catch_up::{Cutoff, Marks, Seen};
use crate::sources::RunCache;
use crate::sources::distro_info::DistroInfo;
use crate::sources::http::Http;
use chrono::{DateTime, NaiveDate, Utc};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Everything a collector may use from the outside world.
#[derive(Clone)]
pub struct Context {
    /// The HTTP client (timeouts, User-Agent, gzip; counts requests).
    pub http: Http,
    /// The configured upstream URLs: read one with [`Context::source`].
    pub sources: Arc<Sources>,
    /// The collector's own options from `[collectors.NAME]`.
    pub options: toml::Table,
    /// The collector's typed options, when it gave them
    /// ([`Context::with_options`]).
    typed: Option<Arc<dyn std::any::Any + Send + Sync>>,
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
            typed: None,
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
            typed: None,
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
    pub fn source<'a>(&'a self, source: &'a SourceUrl) -> &'a str {
        self.sources.url(source)
    }

    /// The documents shared by the collectors of this run.
    pub fn cache(&self) -> &Arc<RunCache> {
        &self.cache
    }

    /// The same context carrying the collector's typed options (read when
    /// the collector value was built: see [`Configured`](super::Configured)),
    /// for the functions of its run to read with [`Context::options_as`].
    pub fn with_options<T: Send + Sync + 'static>(&self, options: Arc<T>) -> Context {
        Context {
            typed: Some(options),
            ..self.clone()
        }
    }

    /// This collector's typed options: those the collector gave
    /// ([`Context::with_options`]), else read from [`Context::options`] (a
    /// context made by hand, in a test).
    pub fn options_as<T: CollectorOptions + Clone + Send + Sync + 'static>(
        &self,
    ) -> Result<T, CollectorError> {
        if let Some(t) = self.typed.as_ref().and_then(|t| t.downcast_ref::<T>()) {
            return Ok(t.clone());
        }
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
