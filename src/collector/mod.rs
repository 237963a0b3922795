//! The `Collector` trait, the run context collectors get, and their errors.
//!
//! A collector reads its sources through the [`Context`] and returns points.
//! It never writes to InfluxDB, prints or exits: the runner does that.
//! Partial failures that the spec says must not stop the collector (one
//! autopkgtest instance down, one series missing) follow one rule,
//! [`Parts`]: logged once with `tracing::warn!` while the collector returns
//! the points it has; when every part failed, the collector's error lists
//! them all instead.

mod context;
mod error;
mod parts;
mod spec;

/// The run cache lives with the sources (Launchpad reads through it).
pub use crate::sources::RunCache;
pub use context::Context;
pub use error::{
    CollectorError, MAX_MESSAGE_CHARS, MAX_PARTS_LISTED, MAX_PARTS_MESSAGE_CHARS, short_message,
};
pub use parts::{Parts, merge_parts};
pub use spec::{
    CollectorOptions, Configured, LAUNCHPAD, OptionError, Rows, Series, Spec, parse_options,
};

use crate::config::{CollectorSettings, SourceUrl};
use crate::model::panel::Panels;
use crate::model::point::Point;
use crate::model::schema::Measurement;
use crate::model::timespan::TimeSpan;

/// A collector: one Ubuntu report, turned into points. A value: its
/// [`Spec`] (data) and one method, `collect`. Everything about it is
/// declared in its own file: the registry (`collectors::registry`) is the
/// only other place that names it.
#[async_trait::async_trait]
pub trait Collector: Send + Sync {
    /// What it is: name, description, interval, schema, sources, panels,
    /// options.
    fn spec(&self) -> &Spec;

    /// This collector with its own options (`[collectors.NAME]` less
    /// `interval` and `enabled`), read into its typed options
    /// ([`Configured`]) once, when the configuration loads, so that a bad
    /// value is refused by every command instead of failing a run later;
    /// `None` when the value is the same (no options to read). The default:
    /// no options at all.
    fn configure(&self, options: &toml::Table) -> Result<Option<Box<dyn Collector>>, OptionError> {
        no_options(options).map(|()| None)
    }

    /// Collects once.
    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError>;

    /// The time-series sources `backfill` can read from their first row.
    fn time_series(&self) -> Vec<Series> {
        Vec::new()
    }
}

/// The check of a collector without options: any key is refused.
pub fn no_options(options: &toml::Table) -> Result<(), OptionError> {
    match options.keys().next() {
        None => Ok(()),
        Some(key) => Err(OptionError {
            key: key.clone(),
            message: "this collector has no such option".into(),
        }),
    }
}

/// Its spec, read: what every command asks of a collector.
impl dyn Collector + '_ {
    pub fn name(&self) -> &str {
        &self.spec().name
    }

    pub fn description(&self) -> &str {
        &self.spec().description
    }

    pub fn default_interval(&self) -> &TimeSpan {
        &self.spec().interval
    }

    pub fn schema(&self) -> &[Measurement] {
        &self.spec().schema
    }

    pub fn measurements(&self) -> Vec<&str> {
        self.spec().measurements()
    }

    pub fn sources(&self) -> &[SourceUrl] {
        &self.spec().sources
    }

    pub fn panels(&self) -> Panels {
        self.spec().panels.clone()
    }

    pub fn options(&self) -> &[(&'static str, &'static str)] {
        self.spec().options
    }
}

/// What the configuration checks of a collector, from its spec.
impl CollectorSettings for dyn Collector + '_ {
    fn name(&self) -> &str {
        &self.spec().name
    }
    fn default_interval(&self) -> &TimeSpan {
        &self.spec().interval
    }
    fn options(&self) -> &[(&'static str, &'static str)] {
        self.spec().options
    }
    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        self.configure(options).map(|_| ())
    }
    fn sources(&self) -> Vec<SourceUrl> {
        self.spec().sources.clone()
    }
}
