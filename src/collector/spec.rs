//! What a collector declares besides its code, as data ([`Spec`]): its
//! name, description, interval, schema, sources, panels and options; its
//! typed options ([`Configured`]), read once from its `[collectors.NAME]`
//! table; and the time series `backfill` can read ([`Series`]).

use super::error::CollectorError;
pub use crate::config::OptionError;
use crate::config::SourceUrl;
use crate::model::panel::{Board, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, Text};
use crate::model::timespan::TimeSpan;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Everything a collector declares besides `collect`: owned data, built
/// once with the collector value (a built-in's from constants, a declared
/// one's from the configuration).
#[derive(Debug, Clone)]
pub struct Spec {
    /// The collector's name, as used on the command line and in the
    /// configuration (`[collectors.NAME]`).
    pub name: Text,
    /// One line saying what it measures (shown by `list`).
    pub description: Text,
    /// The default run interval.
    pub interval: TimeSpan,
    /// What it writes: every measurement with its tag keys and its field
    /// keys and types. Every point it returns must fit (a test checks every
    /// collector on its fixtures); the README and `list --schema` show it.
    pub schema: Vec<Measurement>,
    /// The upstream sources it reads: their `[sources]` keys, production
    /// URLs and fixtures. A source shared with other collectors is one
    /// constant (e.g. [`LAUNCHPAD`]) that each of them lists.
    pub sources: Vec<SourceUrl>,
    /// Its row of Grafana panels and the dashboard it goes on.
    pub panels: Panels,
    /// Its own configuration options (keys of `[collectors.NAME]` besides
    /// `interval` and `enabled`), with a short description each. Unknown
    /// keys are configuration errors.
    pub options: &'static [(&'static str, &'static str)],
}

impl Spec {
    /// A collector's spec: every 5 minutes, no schema, sources, panels or
    /// options until the builder methods below give them.
    pub fn new(name: impl Into<Text>, description: impl Into<Text>) -> Spec {
        let name = name.into();
        Spec {
            panels: Panels {
                board: Board::Queues,
                title: name.clone(),
                panels: Vec::new(),
            },
            name,
            description: description.into(),
            interval: TimeSpan::minutes(5),
            schema: Vec::new(),
            sources: Vec::new(),
            options: &[],
        }
    }

    pub fn interval(mut self, interval: TimeSpan) -> Spec {
        self.interval = interval;
        self
    }

    pub fn schema(mut self, schema: Vec<Measurement>) -> Spec {
        self.schema = schema;
        self
    }

    pub fn sources(mut self, sources: Vec<SourceUrl>) -> Spec {
        self.sources = sources;
        self
    }

    pub fn panels(mut self, panels: Panels) -> Spec {
        self.panels = panels;
        self
    }

    pub fn options(mut self, options: &'static [(&'static str, &'static str)]) -> Spec {
        self.options = options;
        self
    }

    /// The names of the measurements it writes (from its schema).
    pub fn measurements(&self) -> Vec<&str> {
        self.schema.iter().map(|m| m.name.as_ref()).collect()
    }
}

/// A time-series source of a collector that `backfill` can read from its
/// first row: a document of lines, each a row carrying its own time.
/// Declared in the collector's own file ([`Collector::time_series`](super::Collector::time_series)),
/// so that `backfill` knows no collector by name.
#[derive(Clone)]
pub struct Series {
    /// Its name on the command line (`backfill NAME`).
    pub name: &'static str,
    /// The directory it is in (one of the collector's sources) and its file
    /// there.
    pub base: SourceUrl,
    pub file: &'static str,
    /// A fresh reader of its rows (a header's columns are per read).
    pub rows: fn() -> Box<dyn Rows>,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("name", &self.name)
            .field("base", &self.base.key)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// How the lines of a [`Series`] become points.
pub trait Rows: Send + Sync {
    /// Whether the document's first line is a header, read (with
    /// [`Rows::header`]) before any row and kept to resume.
    fn has_header(&self) -> bool {
        false
    }

    /// Reads the header line of the document at `url`.
    fn header(&mut self, _url: &str, _line: &str) -> Result<(), String> {
        Ok(())
    }

    /// The time and the points of one row, `devel` being the devel series'
    /// name; or why the row is malformed.
    fn row(&self, line: &str, devel: &str) -> Result<(DateTime<Utc>, Vec<Point>), String>;
}

/// A collector's typed options, read from its `[collectors.NAME]` table
/// once, when the collector value is built (the configuration loads).
/// A run reads them through [`Configured::current`], which reads the
/// table again only when it is not the one they were read from (a daemon
/// reloaded with other options; a test giving its own).
#[derive(Debug, Clone, Default)]
pub struct Configured<T> {
    table: toml::Table,
    options: Arc<T>,
}

impl<T: CollectorOptions + Send + Sync + 'static> Configured<T> {
    /// The options of `table` (without `interval` and `enabled`), checked;
    /// an error names the key.
    pub fn new(table: &toml::Table) -> Result<Configured<T>, OptionError> {
        Ok(Configured {
            table: table.clone(),
            options: Arc::new(parse_options(table)?),
        })
    }

    /// The options of this run's table (`ctx.options`).
    pub fn current(&self, table: &toml::Table) -> Result<Arc<T>, CollectorError> {
        if *table == self.table {
            return Ok(self.options.clone());
        }
        parse_options(table)
            .map(Arc::new)
            .map_err(|e| CollectorError::Other(e.to_string()))
    }
}

/// Launchpad's web service, read through
/// [`Context::launchpad`](super::Context::launchpad) by several
/// collectors: each lists it in its [`Spec::sources`].
pub static LAUNCHPAD: SourceUrl = SourceUrl::new(
    "launchpad",
    "https://api.launchpad.net/devel/",
    "Launchpad's web service (API version devel)",
    "launchpad/devel/",
);

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
