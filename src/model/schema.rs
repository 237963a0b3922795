//! What a collector writes, declared next to its code: each measurement with
//! its tag keys and its field keys with their types. InfluxDB fixes a
//! field's type per shard (a float where an integer was stored is refused
//! with HTTP 400 and that batch is lost), and the dashboards and years of
//! history depend on the names, so the declaration is the contract:
//! `tests/collectors.rs` checks every point of every collector against it,
//! and the README table and `ubuntu-metrics list --schema` are generated
//! from it.
//!
//! ```
//! use ubuntu_metrics::model::schema::{Measurement, int, tag};
//! let schema: Vec<Measurement> = vec![Measurement::new(
//!     "sponsoring_queue_stats",
//!     &[tag("report", "`sponsoring`, or a package set")],
//!     &[int("count", "entries in the queue")],
//! )];
//! ```

use crate::model::point::{FieldValue, Point};
use std::borrow::Cow;

/// A name or a line of text: a constant for the built-in collectors, owned
/// for those declared in the configuration (nothing is leaked).
pub type Text = Cow<'static, str>;

/// The type of a field, as InfluxDB stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Integer,
    Float,
    Boolean,
    String,
}

impl FieldType {
    /// The type of a value.
    pub fn of(value: &FieldValue) -> FieldType {
        match value {
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Float(_) => FieldType::Float,
            FieldValue::Boolean(_) => FieldType::Boolean,
            FieldValue::String(_) => FieldType::String,
        }
    }

    /// The short name used in the documentation (`int`, `float`, `bool`,
    /// `string`).
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Integer => "int",
            FieldType::Float => "float",
            FieldType::Boolean => "bool",
            FieldType::String => "string",
        }
    }
}

/// A tag key, with what its values are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: Text,
    pub about: &'static str,
}

/// A field key, its type, and what it measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Text,
    pub kind: FieldType,
    pub about: &'static str,
}

/// A tag key (`about` may be empty when the name says it all).
pub const fn tag(name: &'static str, about: &'static str) -> Tag {
    Tag {
        name: Cow::Borrowed(name),
        about,
    }
}

/// An integer field.
pub const fn int(name: &'static str, about: &'static str) -> Field {
    Field {
        name: Cow::Borrowed(name),
        kind: FieldType::Integer,
        about,
    }
}

/// A float field.
pub const fn float(name: &'static str, about: &'static str) -> Field {
    Field {
        name: Cow::Borrowed(name),
        kind: FieldType::Float,
        about,
    }
}

/// A boolean field.
pub const fn boolean(name: &'static str, about: &'static str) -> Field {
    Field {
        name: Cow::Borrowed(name),
        kind: FieldType::Boolean,
        about,
    }
}

/// A string field.
pub const fn string(name: &'static str, about: &'static str) -> Field {
    Field {
        name: Cow::Borrowed(name),
        kind: FieldType::String,
        about,
    }
}

/// One measurement: its tag keys (a point may leave a tag out, never add
/// one) and its fields (a point may leave a field out, never add one or
/// change its type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    pub name: Text,
    pub tags: Vec<Tag>,
    pub fields: Vec<Field>,
    /// The time of its points, when it is not the collection time (e.g.
    /// "the CSV row's time").
    pub time: Option<&'static str>,
}

impl Measurement {
    /// A measurement of a built-in collector (its names are constants).
    pub fn new(name: &'static str, tags: &[Tag], fields: &[Field]) -> Measurement {
        Measurement {
            name: Cow::Borrowed(name),
            tags: tags.to_vec(),
            fields: fields.to_vec(),
            time: None,
        }
    }

    /// A measurement declared at run time (in the configuration).
    pub fn owned(name: String, tags: Vec<Tag>, fields: Vec<Field>) -> Measurement {
        Measurement {
            name: Cow::Owned(name),
            tags,
            fields,
            time: None,
        }
    }

    /// Its points carry this time instead of the collection time.
    pub fn timed(mut self, time: &'static str) -> Measurement {
        self.time = Some(time);
        self
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Checks a point against a schema: its measurement is declared, every tag
/// key and field key is declared, every field has its declared type. The
/// error names the point and what is wrong.
pub fn check(schema: &[Measurement], point: &Point) -> Result<(), String> {
    let Some(m) = schema.iter().find(|m| m.name == point.measurement) else {
        let known: Vec<&str> = schema.iter().map(|m| m.name.as_ref()).collect();
        return Err(format!(
            "{}: measurement {:?} is not declared (declared: {})",
            point.describe(),
            point.measurement,
            known.join(", ")
        ));
    };
    for key in point.tags.keys() {
        if !m.tags.iter().any(|t| t.name == key.as_str()) {
            return Err(format!(
                "{}: tag {key:?} is not declared for {}",
                point.describe(),
                m.name
            ));
        }
    }
    for (key, value) in &point.fields {
        let Some(f) = m.field(key) else {
            return Err(format!(
                "{}: field {key:?} is not declared for {}",
                point.describe(),
                m.name
            ));
        };
        let kind = FieldType::of(value);
        if kind != f.kind {
            return Err(format!(
                "{}: field {key:?} is {} but {} declares it {} (InfluxDB refuses a type change)",
                point.describe(),
                kind.name(),
                m.name,
                f.kind.name()
            ));
        }
    }
    Ok(())
}

/// The schema as a Markdown table (measurement, tags, fields with types),
/// for `list --schema` and the documentation.
pub fn markdown(schema: &[Measurement]) -> String {
    let mut s = String::from("| measurement | tags | fields |\n| --- | --- | --- |\n");
    for m in schema {
        let tags: Vec<String> = m
            .tags
            .iter()
            .map(|t| {
                if t.about.is_empty() {
                    format!("`{}`", t.name)
                } else {
                    format!("`{}` ({})", t.name, t.about)
                }
            })
            .collect();
        let mut fields: Vec<String> = m
            .fields
            .iter()
            .map(|f| {
                if f.about.is_empty() {
                    format!("`{}` {}", f.name, f.kind.name())
                } else {
                    format!("`{}` {} ({})", f.name, f.kind.name(), f.about)
                }
            })
            .collect();
        if let Some(t) = m.time {
            fields.push(format!("time = {t}"));
        }
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            m.name,
            if tags.is_empty() {
                "(none)".to_owned()
            } else {
                tags.join(", ")
            },
            fields.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Vec<Measurement> {
        vec![Measurement::new(
            "m",
            &[tag("release", "")],
            &[int("count", ""), float("age", "days")],
        )]
    }

    #[test]
    fn declared_points_pass() {
        let p = Point::new("m")
            .tag("release", "resolute")
            .field("count", 3i64)
            .field("age", 1.5);
        assert_eq!(check(&declared(), &p), Ok(()));
        // Tags and fields may be left out.
        assert_eq!(
            check(&declared(), &Point::new("m").field("age", 0.0)),
            Ok(())
        );
    }

    #[test]
    fn undeclared_names_and_changed_types_are_named() {
        let e = check(&declared(), &Point::new("n").field("count", 1i64)).unwrap_err();
        assert!(
            e.contains("measurement \"n\" is not declared (declared: m)"),
            "{e}"
        );
        let e = check(
            &declared(),
            &Point::new("m").tag("arch", "x").field("count", 1i64),
        )
        .unwrap_err();
        assert!(e.contains("tag \"arch\" is not declared for m"), "{e}");
        let e = check(&declared(), &Point::new("m").field("total", 1i64)).unwrap_err();
        assert!(e.contains("field \"total\" is not declared for m"), "{e}");
        let e = check(&declared(), &Point::new("m").field("count", 1.0)).unwrap_err();
        assert!(
            e.contains("field \"count\" is float but m declares it int"),
            "{e}"
        );
    }

    #[test]
    fn markdown_lists_types_and_descriptions() {
        assert_eq!(
            markdown(&declared()),
            "| measurement | tags | fields |\n| --- | --- | --- |\n| `m` | `release` | `count` int, `age` float (days) |\n"
        );
    }
}
