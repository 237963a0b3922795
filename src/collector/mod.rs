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
pub use spec::{CollectorOptions, LAUNCHPAD, OptionError, parse_options};

use crate::config::{CollectorSettings, SourceUrl};
use crate::model::panel::Panels;
use crate::model::point::Point;
use crate::model::schema::Measurement;

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
