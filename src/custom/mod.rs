//! Collectors declared in the configuration: `[collectors.NAME]` with a
//! `type` key. `type = "exec"` runs a script ([`exec`]), `type = "http"`
//! reads URLs and turns each document into points with a jq filter
//! ([`http`]). Either declares its `measurements` (the schema every point
//! is checked against), and then gets what a built-in collector gets: its
//! interval, `list`, `run NAME`, the dry run, the daemon, the systemd units,
//! the spool, the self-metrics.
//!
//! A declared collector is a value like a built-in one: its [`Spec`] (name,
//! schema, sources, panels: owned data) is made once, when the
//! configuration loads (a daemon's SIGHUP does not re-declare collectors:
//! it refuses a changed declaration, see [`Declared`]'s `configure`).

pub mod exec;
pub mod http;
pub mod jq;
pub mod points;
pub mod template;

use crate::collector::{Collector, CollectorError, Context, OptionError, Spec};
use crate::config::{Config, ConfigError};
use crate::model::panel::{Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Field, FieldType, Measurement, Tag, Text};
use crate::model::timespan::TimeSpan;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The keys of a declared collector's section (besides `interval` and
/// `enabled`), with what each is.
pub const OPTIONS: &[(&str, &str)] = &[
    ("type", "`exec` (a script) or `http` (URLs and a jq filter)"),
    (
        "description",
        "one line: what it measures (shown by `list`)",
    ),
    (
        "measurements",
        "its schema: `[collectors.NAME.measurements.MEASUREMENT]` with `tags = [\"KEY\", ...]` and `fields = { KEY = \"int\" | \"float\" | \"bool\" | \"string\" }`",
    ),
    (
        "command",
        "exec: the program and its arguments, a list (no shell); the program is an absolute path or a name looked up in PATH",
    ),
    (
        "dir",
        "exec: the working directory, an absolute path checked when the configuration loads (default: the daemon's)",
    ),
    (
        "env",
        "exec: variables set for the script, `{ NAME = \"value\" }`",
    ),
    (
        "pass_env",
        "exec: names of variables passed on from the daemon's environment (never INFLUXDB_*)",
    ),
    (
        "timeout",
        "exec: the longest run (systemd time span, default 1m); then it and every process it started are killed",
    ),
    (
        "max_output",
        "exec: the most standard output read (default 16MB); more fails the run",
    ),
    (
        "max_points",
        "exec: the most points one run may print (default 100000); more fails the run",
    ),
    (
        "url",
        "http: the URL read; a source, overridden by `[sources] NAME`",
    ),
    (
        "urls",
        "http: several URLs by key, `{ KEY = \"URL\" }`; each a source, overridden by `[sources] NAME_KEY`",
    ),
    ("format", "http: `json` (default), `yaml`, `csv` or `text`"),
    (
        "filter",
        "http: the jq filter turning each document into points (`$source`, `$url`, `$now` are set)",
    ),
];

/// The interval of a declared collector without `interval`, in minutes.
pub const DEFAULT_INTERVAL_MINUTES: u64 = 5;

/// Every collector: the built-in ones, then those `config` declares.
pub fn registry(config: &Config) -> Result<Vec<Box<dyn Collector>>, ConfigError> {
    let mut all = crate::collectors::registry();
    let declared = declared(config, &all)?;
    all.extend(declared);
    Ok(all)
}

/// Reads the configuration (file, environment, defaults) with its declared
/// collectors, checks it against every collector, and builds each
/// collector with its options: the configuration and the whole registry.
pub fn load(path: Option<&Path>) -> Result<(Config, Vec<Box<dyn Collector>>), ConfigError> {
    let mut config = Config::read(path)?;
    let registry = registry(&config)?;
    config.finish(&registry)?;
    let registry = configure(&config, registry)?;
    Ok((config, registry))
}

/// Each collector of `registry` built with its own `[collectors.NAME]`
/// options (typed once, here: a run reads them as they are).
pub fn configure(
    config: &Config,
    registry: Vec<Box<dyn Collector>>,
) -> Result<Vec<Box<dyn Collector>>, ConfigError> {
    registry
        .into_iter()
        .map(|c| {
            let options = config.collector(c.name()).options;
            match c.configure(&options) {
                Ok(Some(configured)) => Ok(configured),
                Ok(None) => Ok(c),
                Err(e) => Err(ConfigError(format!(
                    "collectors.{}.{}: {}",
                    c.name(),
                    e.key,
                    e.message
                ))),
            }
        })
        .collect()
}

/// The collectors `config` declares (sections with a `type`), checked.
pub fn declared(
    config: &Config,
    builtin: &[Box<dyn Collector>],
) -> Result<Vec<Box<dyn Collector>>, ConfigError> {
    let origin = match &config.path {
        Some(p) => p.display().to_string(),
        None => "the built-in defaults".into(),
    };
    let mut out: Vec<Box<dyn Collector>> = Vec::new();
    for (name, cc) in &config.collectors {
        if !cc.options.contains_key("type") {
            continue;
        }
        let err = |key: &str, message: String| {
            ConfigError(format!("{origin}: collectors.{name}{key}: {message}"))
        };
        if builtin.iter().any(|c| c.name() == name) {
            return Err(err(
                ".type",
                "a built-in collector has this name: choose another for a declared collector"
                    .into(),
            ));
        }
        if !valid_name(name) {
            return Err(err(
                "",
                "a declared collector's name is lower-case letters, digits and `_`, starting with a letter (it names a systemd unit and a command)".into(),
            ));
        }
        let d = Declared::new(name, &cc.options).map_err(|e| {
            let key = if e.key.is_empty() {
                String::new()
            } else {
                format!(".{}", e.key)
            };
            err(&key, e.message)
        })?;
        out.push(Box::new(d));
    }
    Ok(out)
}

/// Whether `name` can name a declared collector: lower-case letters,
/// digits and `_`, starting with a letter (it names a systemd unit, a
/// command-line argument and a link).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

/// The section as written (every key optional: which are needed depends
/// on the type, checked in [`Declared::new`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Section {
    #[serde(rename = "type")]
    kind: Option<String>,
    description: Option<String>,
    measurements: BTreeMap<String, MeasurementSection>,
    command: Option<Vec<String>>,
    dir: Option<std::path::PathBuf>,
    env: BTreeMap<String, String>,
    pass_env: Vec<String>,
    timeout: Option<crate::model::timespan::TimeSpan>,
    max_output: Option<String>,
    max_points: Option<u64>,
    url: Option<String>,
    urls: Option<BTreeMap<String, String>>,
    format: Option<String>,
    filter: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MeasurementSection {
    tags: Vec<String>,
    fields: BTreeMap<String, String>,
}

fn field_type(name: &str) -> Option<FieldType> {
    Some(match name {
        "int" | "integer" => FieldType::Integer,
        "float" => FieldType::Float,
        "bool" | "boolean" => FieldType::Boolean,
        "string" => FieldType::String,
        _ => return None,
    })
}

fn option_error(key: impl Into<String>, message: impl Into<String>) -> OptionError {
    OptionError {
        key: key.into(),
        message: message.into(),
    }
}

/// The section's keys, parsed one by one so that an error names its key.
fn parse_section(options: &toml::Table) -> Result<Section, OptionError> {
    let parse = |t: &toml::Table| -> Result<Section, String> {
        toml::Value::Table(t.clone())
            .try_into::<Section>()
            .map_err(|e| {
                e.to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
    };
    match parse(options) {
        Ok(s) => Ok(s),
        Err(whole) => {
            for (key, value) in options {
                let mut one = toml::Table::new();
                one.insert(key.clone(), value.clone());
                if let Err(message) = parse(&one) {
                    let allowed: Vec<&str> = OPTIONS.iter().map(|(k, _)| *k).collect();
                    let message = if OPTIONS.iter().any(|(k, _)| k == key) {
                        message
                    } else {
                        format!(
                            "unknown key; a declared collector has interval, enabled, {}",
                            allowed.join(", ")
                        )
                    };
                    return Err(option_error(key.clone(), message));
                }
            }
            Err(option_error("", whole))
        }
    }
}

/// How a declared collector collects.
#[derive(Debug)]
enum How {
    Exec(exec::Exec),
    Http(http::HttpSpec),
}

/// A collector declared in the configuration.
#[derive(Debug)]
pub struct Declared {
    spec: Spec,
    /// The section as loaded: a reload must not change it.
    section: toml::Table,
    how: How,
}

impl Declared {
    /// Checks a `[collectors.NAME]` section with a `type` and makes the
    /// collector; an error names the key (relative to the section).
    pub fn new(name: &str, options: &toml::Table) -> Result<Declared, OptionError> {
        let s = parse_section(options)?;
        let kind = s.kind.clone().unwrap_or_default();
        if kind != "exec" && kind != "http" {
            return Err(option_error(
                "type",
                format!("{kind:?}: a declared collector's type is \"exec\" or \"http\""),
            ));
        }
        let schema = schema_of(&s)?;
        let only = |keys: &[(&str, bool)], t: &str| -> Result<(), OptionError> {
            for (key, set) in keys {
                if *set {
                    return Err(option_error(*key, format!("not a key of a {t} collector")));
                }
            }
            Ok(())
        };
        let (how, sources) = match kind.as_str() {
            "exec" => {
                only(
                    &[
                        ("url", s.url.is_some()),
                        ("urls", s.urls.is_some()),
                        ("format", s.format.is_some()),
                        ("filter", s.filter.is_some()),
                    ],
                    "exec",
                )?;
                (How::Exec(exec::Exec::new(&s)?), Vec::new())
            }
            "http" => {
                only(
                    &[
                        ("command", s.command.is_some()),
                        ("dir", s.dir.is_some()),
                        ("env", !s.env.is_empty()),
                        ("pass_env", !s.pass_env.is_empty()),
                        ("timeout", s.timeout.is_some()),
                        ("max_output", s.max_output.is_some()),
                        ("max_points", s.max_points.is_some()),
                    ],
                    "http",
                )?;
                let (spec, sources) = http::HttpSpec::new(name, &s)?;
                (How::Http(spec), sources)
            }
            other => {
                return Err(option_error(
                    "type",
                    format!("{other:?}: a declared collector's type is \"exec\" or \"http\""),
                ));
            }
        };
        let description = s.description.clone().unwrap_or_else(|| match &how {
            How::Exec(e) => format!("declared in the configuration: runs {}", e.program()),
            How::Http(_) => "declared in the configuration: URLs and a jq filter".into(),
        });
        let panels = panels(name, &schema);
        Ok(Declared {
            spec: Spec::new(name.to_owned(), description)
                .interval(TimeSpan::minutes(DEFAULT_INTERVAL_MINUTES))
                .schema(schema)
                .sources(sources)
                .panels(panels)
                .options(OPTIONS),
            section: options.clone(),
            how,
        })
    }
}

/// The declared measurements as a schema.
fn schema_of(s: &Section) -> Result<Vec<Measurement>, OptionError> {
    if s.measurements.is_empty() {
        return Err(option_error(
            "measurements",
            "declare at least one measurement: [collectors.NAME.measurements.MEASUREMENT] with tags = [...] and fields = { KEY = \"int\" }",
        ));
    }
    let mut schema = Vec::new();
    for (m, decl) in &s.measurements {
        if decl.fields.is_empty() {
            return Err(option_error(
                format!("measurements.{m}.fields"),
                "declare at least one field (KEY = \"int\", \"float\", \"bool\" or \"string\")",
            ));
        }
        let mut fields = Vec::new();
        for (key, t) in &decl.fields {
            let Some(kind) = field_type(t) else {
                return Err(option_error(
                    format!("measurements.{m}.fields.{key}"),
                    format!(
                        "unknown type {t:?}: a field is \"int\", \"float\", \"bool\" or \"string\""
                    ),
                ));
            };
            fields.push(Field {
                name: key.clone().into(),
                kind,
                about: "",
            });
        }
        let tags: Vec<Tag> = decl
            .tags
            .iter()
            .map(|t| Tag {
                name: t.clone().into(),
                about: "",
            })
            .collect();
        schema.push(Measurement::owned(m.clone(), tags, fields));
    }
    Ok(schema)
}

/// A row titled after the collector, with a time series per measurement
/// (its numeric fields, by every tag).
fn panels(name: &str, schema: &[Measurement]) -> Panels {
    let mut panels = Vec::new();
    for m in schema {
        let fields: Vec<Text> = m
            .fields
            .iter()
            .filter(|f| matches!(f.kind, FieldType::Integer | FieldType::Float))
            .map(|f| f.name.clone())
            .collect();
        if fields.is_empty() {
            continue;
        }
        let tags: Vec<Text> = m.tags.iter().map(|t| t.name.clone()).collect();
        panels.push(Panel::owned(
            Kind::Timeseries,
            m.name.clone(),
            m.name.clone(),
            fields,
            tags,
        ));
    }
    Panels {
        board: Board::Queues,
        title: name.to_owned().into(),
        panels,
    }
}

/// Checks every point against the schema and that it can be written: the
/// first that cannot fails the whole output (nothing is written).
fn check_points(schema: &[Measurement], points: &[Point]) -> Result<(), String> {
    for p in points {
        crate::model::schema::check(schema, p)
            .map_err(|e| format!("outside its declared schema: {e}"))?;
        p.to_line().map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Collector for Declared {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The declaration is read once, when the program starts: a reloaded
    /// configuration (the daemon's SIGHUP) must declare it the same way.
    fn configure(&self, options: &toml::Table) -> Result<Option<Box<dyn Collector>>, OptionError> {
        if options != &self.section {
            return Err(option_error(
                "type",
                "the declaration of this collector changed: restart the daemon to apply it",
            ));
        }
        Ok(None)
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let name = &self.spec.name;
        let points = match &self.how {
            How::Exec(e) => e.collect(name, ctx).await?,
            How::Http(h) => h.collect(name, ctx).await?,
        };
        check_points(&self.spec.schema, &points)
            .map_err(|e| CollectorError::Other(format!("{name}: {e}")))?;
        Ok(points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn a_bad_field_type_names_its_key() {
        let e = Declared::new(
            "q",
            &table("type = \"exec\"\ncommand = [\"true\"]\n[measurements.q_size]\nfields = { count = \"integr\" }\n"),
        )
        .unwrap_err();
        assert_eq!(e.key, "measurements.q_size.fields.count");
        assert!(e.message.contains("integr"), "{e}");
    }

    #[test]
    fn keys_of_the_other_type_and_unknown_keys_are_refused() {
        let e = Declared::new(
            "q",
            &table("type = \"exec\"\ncommand = [\"true\"]\nfilter = \".\"\n[measurements.m]\nfields = { x = \"int\" }\n"),
        )
        .unwrap_err();
        assert_eq!(e.key, "filter");
        let e = Declared::new(
            "q",
            &table("type = \"exec\"\ncommand = [\"true\"]\ncommandd = 1\n[measurements.m]\nfields = { x = \"int\" }\n"),
        )
        .unwrap_err();
        assert_eq!(e.key, "commandd");
        let e = Declared::new("q", &table("type = \"ftp\"\n")).unwrap_err();
        assert_eq!(e.key, "type");
    }

    #[test]
    fn the_schema_and_panels_come_from_the_declaration() {
        let d = Declared::new(
            "q",
            &table("type = \"exec\"\ncommand = [\"true\"]\n[measurements.q_size]\ntags = [\"queue\"]\nfields = { count = \"int\", ratio = \"float\", note = \"string\" }\n"),
        )
        .unwrap();
        let spec = d.spec();
        assert_eq!(spec.schema.len(), 1);
        assert_eq!(spec.schema[0].tags[0].name, "queue");
        assert_eq!(
            spec.schema[0].field("count").unwrap().kind,
            FieldType::Integer
        );
        assert_eq!(spec.panels.panels[0].fields, &["count", "ratio"]);
        assert_eq!(spec.name, "q");
    }
}
