//! Points from what a script prints or a jq filter returns.
//!
//! Accepted, line by line (blank lines and lines starting with `#` are
//! skipped):
//! - InfluxDB line protocol;
//! - one JSON point per line, or the whole output one JSON array of points.
//!
//! A JSON point is an object with `measurement`, `tags` (strings; numbers
//! and booleans are turned into their text; `null` leaves the tag out),
//! `fields` (`5` is an integer, `5.0` a float, `true` a boolean, a string
//! a string; `null` leaves the field out), and optionally `time`: RFC 3339,
//! a Python `datetime` printed with `str()` (`2026-11-24 12:00:00+00:00`,
//! `2026-11-24 12:00:00.123456`, taken as UTC without an offset), or
//! epoch nanoseconds; or `timestamp` (epoch nanoseconds). That covers what
//! `run --dry-run --format json` prints and what the first generation's
//! `collect()` returned for influxdb-python's `write_points`.

use crate::point::{FieldValue, Point};
use crate::sources::http::json_kind as kind;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

/// Parses a whole output: every point, or the first malformed line's
/// error ("line N: what").
pub fn parse_output(text: &str) -> Result<Vec<Point>, String> {
    parse_output_capped(text, usize::MAX).map_err(|e| match e {
        OutputError::TooMany(max) => format!("more than {max} points"),
        OutputError::Bad(e) => e,
    })
}

/// Why an output gives no points.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputError {
    /// More points than the cap (the cap): parsing stopped there.
    TooMany(usize),
    /// A malformed line or point ("line N: what").
    Bad(String),
}

/// [`parse_output`], stopping with [`OutputError::TooMany`] past `max`
/// points: what is held is at most `max` points, whatever the output.
pub fn parse_output_capped(text: &str, max: usize) -> Result<Vec<Point>, OutputError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let bad = |e: serde_json::Error| {
            OutputError::Bad(format!(
                "line {}: not a JSON array of points: {e}",
                e.line()
            ))
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let points =
            serde::Deserializer::deserialize_seq(&mut de, ArrayOfPoints { max }).map_err(bad)?;
        de.end().map_err(bad)?;
        return points;
    }
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if points.len() == max {
            return Err(OutputError::TooMany(max));
        }
        let point = if l.starts_with('{') {
            serde_json::from_str::<Value>(l)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| from_json(&v))
        } else {
            from_line_protocol(l)
        };
        points.push(point.map_err(|e| OutputError::Bad(format!("line {}: {e}", i + 1)))?);
    }
    Ok(points)
}

/// A JSON array of points, read one element at a time (never the whole
/// array as a JSON value), stopping past `max` points.
struct ArrayOfPoints {
    max: usize,
}

impl<'de> serde::de::Visitor<'de> for ArrayOfPoints {
    type Value = Result<Vec<Point>, OutputError>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of points")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut points = Vec::new();
        let mut failed = None;
        while let Some(v) = seq.next_element::<Value>()? {
            if points.len() == self.max {
                failed = Some(OutputError::TooMany(self.max));
                break;
            }
            match from_json(&v) {
                Ok(p) => points.push(p),
                Err(e) => {
                    failed = Some(OutputError::Bad(format!(
                        "point {} of the array: {e}",
                        points.len() + 1
                    )));
                    break;
                }
            }
        }
        let Some(e) = failed else {
            return Ok(Ok(points));
        };
        // The rest is skipped (still checked as JSON), without keeping it.
        drop(points);
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Err(e))
    }
}

/// One line of line protocol.
pub fn from_line_protocol(line: &str) -> Result<Point, String> {
    use influxdb_line_protocol::FieldValue as V;
    let mut parsed = influxdb_line_protocol::parse_lines(line);
    let p = match parsed.next() {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(format!("not line protocol: {e}")),
        None => return Err("not line protocol: nothing to read".into()),
    };
    let mut point = Point::new(p.series.measurement.to_string());
    if let Some(tags) = &p.series.tag_set {
        for (k, v) in tags {
            point = point.tag(k.to_string(), v.to_string());
        }
    }
    for (k, v) in &p.field_set {
        let v = match v {
            V::I64(i) => FieldValue::Integer(*i),
            V::U64(u) => FieldValue::Integer(
                i64::try_from(*u).map_err(|_| format!("field {k}: {u}u is too large"))?,
            ),
            V::F64(f) => FieldValue::Float(*f),
            V::String(s) => FieldValue::String(s.to_string()),
            V::Boolean(b) => FieldValue::Boolean(*b),
        };
        point = point.field(k.to_string(), v);
    }
    if let Some(ns) = p.timestamp {
        point.timestamp = Some(Utc.timestamp_nanos(ns));
    }
    Ok(point)
}

/// One JSON point (see the module's documentation).
pub fn from_json(v: &Value) -> Result<Point, String> {
    let Value::Object(o) = v else {
        return Err(format!("a point is a JSON object, found {}", kind(v)));
    };
    for key in o.keys() {
        if !matches!(
            key.as_str(),
            "measurement" | "tags" | "fields" | "time" | "timestamp"
        ) {
            return Err(format!(
                "unknown key {key:?} (a point has measurement, tags, fields, time or timestamp)"
            ));
        }
    }
    let measurement = match o.get("measurement") {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(other) => {
            return Err(format!(
                "measurement: expected a non-empty string, found {}",
                kind(other)
            ));
        }
        None => return Err("no measurement".into()),
    };
    let mut point = Point::new(measurement.as_str());
    match o.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(tags)) => {
            for (k, v) in tags {
                let text = match v {
                    Value::Null => continue,
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(format!(
                            "{measurement}: tag {k}: expected a string, found {}",
                            kind(other)
                        ));
                    }
                };
                point = point.tag(k.as_str(), text);
            }
        }
        Some(other) => {
            return Err(format!(
                "{measurement}: tags: expected an object, found {}",
                kind(other)
            ));
        }
    }
    match o.get("fields") {
        Some(Value::Object(fields)) => {
            for (k, v) in fields {
                let value = match v {
                    Value::Null => continue,
                    Value::Bool(b) => FieldValue::Boolean(*b),
                    Value::String(s) => FieldValue::String(s.clone()),
                    Value::Number(n) => {
                        if let Some(i) = n.as_i64() {
                            FieldValue::Integer(i)
                        } else if n.is_u64() {
                            return Err(format!(
                                "{measurement}: field {k}: {n} is beyond InfluxDB's 64-bit integers"
                            ));
                        } else {
                            FieldValue::Float(n.as_f64().unwrap_or(f64::NAN))
                        }
                    }
                    other => {
                        return Err(format!(
                            "{measurement}: field {k}: expected a number, a boolean or a string, found {}",
                            kind(other)
                        ));
                    }
                };
                point = point.field(k.as_str(), value);
            }
        }
        Some(other) => {
            return Err(format!(
                "{measurement}: fields: expected an object, found {}",
                kind(other)
            ));
        }
        None => return Err(format!("{measurement}: no fields")),
    }
    if point.fields.is_empty() {
        return Err(format!("{measurement}: no fields"));
    }
    point.timestamp = match (o.get("timestamp"), o.get("time")) {
        (Some(Value::Number(n)), _) => {
            Some(nanos(n).map_err(|e| format!("{measurement}: timestamp: {e}"))?)
        }
        (Some(Value::Null) | None, Some(Value::Number(n))) => {
            Some(nanos(n).map_err(|e| format!("{measurement}: time: {e}"))?)
        }
        (Some(Value::Null) | None, Some(Value::String(s))) => {
            Some(parse_time(s).map_err(|e| format!("{measurement}: time: {e}"))?)
        }
        (Some(Value::Null) | None, Some(Value::Null) | None) => None,
        (Some(other), _) => {
            return Err(format!(
                "{measurement}: timestamp: expected epoch nanoseconds, found {}",
                kind(other)
            ));
        }
        (_, Some(other)) => {
            return Err(format!(
                "{measurement}: time: expected a string or epoch nanoseconds, found {}",
                kind(other)
            ));
        }
    };
    Ok(point)
}

fn nanos(n: &serde_json::Number) -> Result<DateTime<Utc>, String> {
    n.as_i64()
        .map(|ns| Utc.timestamp_nanos(ns))
        .ok_or_else(|| format!("{n} is not an integer number of nanoseconds since the epoch"))
}

/// RFC 3339, or a Python `datetime`'s `str()`: `2026-11-24 12:00:00+00:00`,
/// `2026-11-24 12:00:00.123456` (no offset: UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let t = s.trim().replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&t) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|n| n.and_utc())
        .map_err(|_| {
            format!(
                "{s:?} is neither RFC 3339 (2026-11-24T12:00:00Z) nor a Python datetime (2026-11-24 12:00:00+00:00)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn line_protocol_and_json_lines_mix() {
        let out = "# a comment\n\
            m,a=x count=5i,ratio=0.5,ok=true,s=\"hi\" 1764000000000000000\n\
            \n\
            {\"measurement\": \"m\", \"tags\": {\"a\": \"y\", \"n\": 3}, \"fields\": {\"count\": 5, \"ratio\": 5.0, \"ok\": false}}\n";
        let p = parse_output(out).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].fields["count"], FieldValue::Integer(5));
        assert_eq!(p[0].fields["ratio"], FieldValue::Float(0.5));
        assert_eq!(p[0].fields["ok"], FieldValue::Boolean(true));
        assert_eq!(p[0].fields["s"], FieldValue::String("hi".into()));
        assert_eq!(
            p[0].timestamp,
            Some(Utc.timestamp_nanos(1_764_000_000_000_000_000))
        );
        assert_eq!(p[1].tags["n"], "3");
        assert_eq!(p[1].fields["count"], FieldValue::Integer(5));
        assert_eq!(p[1].fields["ratio"], FieldValue::Float(5.0));
        assert_eq!(p[1].timestamp, None);
    }

    #[test]
    fn times_in_every_accepted_shape() {
        let want = t("2026-11-24T12:00:00Z");
        for s in [
            "2026-11-24T12:00:00Z",
            "2026-11-24T13:00:00+01:00",
            "2026-11-24 12:00:00+00:00",
            "2026-11-24 12:00:00",
        ] {
            assert_eq!(parse_time(s).unwrap(), want, "{s}");
        }
        assert_eq!(
            parse_time("2026-11-24 12:00:00.123456").unwrap(),
            t("2026-11-24T12:00:00.123456Z")
        );
        assert!(parse_time("yesterday").is_err());
        let p = from_json(&serde_json::json!({"measurement": "m", "fields": {"x": 1}, "time": 1_764_000_000_000_000_000i64})).unwrap();
        assert_eq!(
            p.timestamp,
            Some(Utc.timestamp_nanos(1_764_000_000_000_000_000))
        );
        // The dry run's JSON: both, agreeing.
        let p = from_json(&serde_json::json!({"measurement": "m", "tags": {}, "fields": {"x": 1}, "time": "2026-11-24T12:00:00Z", "timestamp": want.timestamp_nanos_opt()})).unwrap();
        assert_eq!(p.timestamp, Some(want));
    }

    #[test]
    fn a_json_array_is_the_whole_output() {
        let p = parse_output("[{\"measurement\": \"m\", \"fields\": {\"x\": 1}},\n {\"measurement\": \"m\", \"fields\": {\"x\": 2.5}}]\n").unwrap();
        assert_eq!(p.len(), 2);
        let e = parse_output("[{\"measurement\": \"m\", \"fields\": {}}]").unwrap_err();
        assert!(
            e.contains("point 1 of the array") && e.contains("no fields"),
            "{e}"
        );
    }

    #[test]
    fn malformed_lines_are_named_by_number() {
        let e = parse_output("m x=1i\nm x=2i\nthis is not a point\n").unwrap_err();
        assert!(e.starts_with("line 3: not line protocol"), "{e}");
        let e = parse_output("m x=1i\n{\"measurement\": \"m\"\n").unwrap_err();
        assert!(e.starts_with("line 2: not JSON"), "{e}");
        let e = parse_output("{\"measurement\": \"m\", \"fields\": {\"x\": [1]}}").unwrap_err();
        assert!(e.contains("line 1: m: field x"), "{e}");
        let e = parse_output("{\"measurement\": \"m\", \"fields\": {\"x\": 1}, \"extra\": 1}")
            .unwrap_err();
        assert!(e.contains("unknown key \"extra\""), "{e}");
    }
}
