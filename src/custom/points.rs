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
//!
//! What cannot be what was meant is refused, naming the line, the value
//! and the rule, rather than stored wrong: a time before 2000-01-01 or
//! after 2100-12-31 (a number of seconds, milliseconds or microseconds
//! where nanoseconds are read would land in 1970: the likely unit is
//! named), an integer outside 64 bits (it would become a float), a NaN or
//! infinite float, a timestamp outside 64 bits.

use crate::model::point::{FieldValue, Point};
use crate::sources::http::json_kind as kind;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The earliest time a point may carry: 2000-01-01T00:00:00Z.
const EARLIEST_NS: i128 = 946_684_800_000_000_000;
/// The first time a point may not carry: 2101-01-01T00:00:00Z.
const AFTER_LATEST_NS: i128 = 4_133_980_800_000_000_000;
/// The accepted times, as messages say it.
const TIME_RULE: &str = "a point's time is from 2000-01-01 to 2100-12-31";
/// InfluxDB's integers, as messages say it.
const INTEGER_RULE: &str =
    "outside InfluxDB's integers (64-bit: -9223372036854775808 to 9223372036854775807)";
/// InfluxDB's floats, as messages say it.
const FLOAT_RULE: &str =
    "is not a finite number; InfluxDB stores only finite floats (no NaN, no infinity)";

/// A time given as `ns` nanoseconds since the epoch, if it is within the
/// accepted years; else what is wrong with it, and its likely unit when
/// it reads as a time of those years in seconds, milliseconds or
/// microseconds.
fn check_nanos(ns: i128) -> Result<DateTime<Utc>, String> {
    let shown = || match i64::try_from(ns) {
        Ok(n) => Utc
            .timestamp_nanos(n)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        Err(_) => "beyond the year 2262".into(),
    };
    if ns < EARLIEST_NS {
        let unit = [
            ("seconds", 1e9, 1_000_000_000),
            ("milliseconds", 1e6, 1_000_000),
            ("microseconds", 1e3, 1_000),
        ]
        .into_iter()
        .find(|(_, _, mult)| (EARLIEST_NS..AFTER_LATEST_NS).contains(&ns.saturating_mul(*mult)));
        return Err(match unit {
            Some((unit, factor, _)) => format!(
                "{ns} is {}, before 2000-01-01: {ns} looks like {unit}: multiply by {factor:e} or give RFC 3339",
                shown()
            ),
            None => format!(
                "{ns} is {}, before 2000-01-01 ({TIME_RULE}, in nanoseconds since the epoch or RFC 3339)",
                shown()
            ),
        });
    }
    if ns >= AFTER_LATEST_NS {
        return Err(format!(
            "{ns} is {}, after 2100-12-31 ({TIME_RULE})",
            shown()
        ));
    }
    let ns = i64::try_from(ns).expect("within the accepted years");
    Ok(Utc.timestamp_nanos(ns))
}

/// A time read from text, if it is within the accepted years.
fn check_time(t: DateTime<Utc>, s: &str) -> Result<DateTime<Utc>, String> {
    let ns = i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos());
    if ns < EARLIEST_NS {
        Err(format!("{s:?} is before 2000-01-01 ({TIME_RULE})"))
    } else if ns >= AFTER_LATEST_NS {
        Err(format!("{s:?} is after 2100-12-31 ({TIME_RULE})"))
    } else {
        Ok(t)
    }
}

/// Whether `s` is written as an integer (`-12`, `12`).
fn is_integer_literal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A JSON point as written (`text`, read as `v`): a field written as an
/// integer that 64 bits cannot hold (JSON readers turn it into a float,
/// which would change the field's type) is refused, naming it.
fn check_integer_literals(text: &str, v: &Value) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct AsWritten {
        fields: Option<BTreeMap<String, Box<RawValue>>>,
    }
    let Ok(AsWritten {
        fields: Some(fields),
    }) = serde_json::from_str::<AsWritten>(text)
    else {
        return Ok(());
    };
    for (k, raw) in fields {
        let lit = raw.get().trim();
        if is_integer_literal(lit) && lit.parse::<i64>().is_err() {
            let m = v.get("measurement").and_then(Value::as_str).unwrap_or("?");
            return Err(format!("{m}: field {k}: {lit} is {INTEGER_RULE}"));
        }
    }
    Ok(())
}

/// One JSON point as written: [`from_json`], after [`check_integer_literals`].
fn from_json_text(text: &str) -> Result<Point, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    // Only a field read as a whole float beyond 64 bits can have been
    // such an integer: the others are not read twice.
    let suspect = v
        .get("fields")
        .and_then(Value::as_object)
        .is_some_and(|fields| {
            fields.values().any(|f| {
                f.as_number().is_some_and(|n| {
                    !n.is_i64()
                        && !n.is_u64()
                        && n.as_f64()
                            .is_some_and(|f| f.fract() == 0.0 && f.abs() >= 9.2e18)
                })
            })
        });
    if suspect {
        check_integer_literals(text, &v)?;
    }
    from_json(&v)
}

/// Splits `s` at each `sep` that is not escaped (`\`) nor inside a quoted
/// string.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Why a line of line protocol the parser refused cannot be stored, when
/// it is a value (the parser's own words are vague: `m x=NaN` is "No
/// fields were provided").
fn diagnose_line(line: &str) -> Option<String> {
    let parts: Vec<&str> = split_unescaped(line, ' ')
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    for field in split_unescaped(parts.get(1)?, ',') {
        let k = split_unescaped(field, '=')[0];
        let Some(v) = field.get(k.len() + 1..) else {
            continue;
        };
        let bare = v.trim_start_matches(['+', '-']).to_ascii_lowercase();
        if matches!(bare.as_str(), "nan" | "inf" | "infinity") {
            return Some(format!("field {k}: {v} {FLOAT_RULE}"));
        }
        if let Some(n) = v.strip_suffix(['i', 'u'])
            && is_integer_literal(n)
            && n.parse::<i64>().is_err()
        {
            return Some(format!("field {k}: {v} is {INTEGER_RULE}"));
        }
    }
    let ts = parts.get(2)?;
    (is_integer_literal(ts) && ts.parse::<i64>().is_err()).then(|| {
        format!(
            "timestamp {ts} is not a number of nanoseconds InfluxDB can store (64-bit; {TIME_RULE})"
        )
    })
}

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
            from_json_text(l)
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
        // Each point as written, for its integers.
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            if points.len() == self.max {
                failed = Some(OutputError::TooMany(self.max));
                break;
            }
            match from_json_text(raw.get()) {
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
        Some(Err(e)) => {
            return Err(diagnose_line(line).unwrap_or_else(|| format!("not line protocol: {e}")));
        }
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
                i64::try_from(*u).map_err(|_| format!("field {k}: {u}u is {INTEGER_RULE}"))?,
            ),
            V::F64(f) if !f.is_finite() => return Err(format!("field {k}: {f} {FLOAT_RULE}")),
            V::F64(f) => FieldValue::Float(*f),
            V::String(s) => FieldValue::String(s.to_string()),
            V::Boolean(b) => FieldValue::Boolean(*b),
        };
        point = point.field(k.to_string(), v);
    }
    if let Some(ns) = p.timestamp {
        point.timestamp = Some(check_nanos(ns.into()).map_err(|e| format!("timestamp {e}"))?);
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
                match other {
                    Value::String(_) => "an empty string",
                    other => kind(other),
                }
            ));
        }
        None => return Err("no measurement".into()),
    };
    let mut point = Point::new(measurement.as_str());
    point = json_tags(point, measurement, o.get("tags"))?;
    point = json_fields(point, measurement, o.get("fields"))?;
    if point.fields.is_empty() {
        return Err(format!("{measurement}: no fields"));
    }
    point.timestamp = json_time(measurement, o.get("timestamp"), o.get("time"))?;
    Ok(point)
}

/// The point with the tags of `tags` (a JSON object; null values left out).
fn json_tags(mut point: Point, measurement: &str, tags: Option<&Value>) -> Result<Point, String> {
    match tags {
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
    Ok(point)
}

/// The point with the fields of `fields` (a JSON object; null values left
/// out).
fn json_fields(
    mut point: Point,
    measurement: &str,
    fields: Option<&Value>,
) -> Result<Point, String> {
    match fields {
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
                            return Err(format!("{measurement}: field {k}: {n} is {INTEGER_RULE}"));
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
    Ok(point)
}

/// The time of a JSON point: `timestamp` (epoch nanoseconds) or `time` (a
/// string or epoch nanoseconds); none when neither is given.
fn json_time(
    measurement: &str,
    timestamp: Option<&Value>,
    time: Option<&Value>,
) -> Result<Option<DateTime<Utc>>, String> {
    Ok(match (timestamp, time) {
        (Some(Value::Number(n)), _) => {
            Some(nanos(n).map_err(|e| format!("{measurement}: timestamp: {e}"))?)
        }
        (Some(Value::Null) | None, Some(Value::Number(n))) => {
            Some(nanos(n).map_err(|e| format!("{measurement}: time: {e}"))?)
        }
        (Some(Value::Null) | None, Some(Value::String(s))) => Some(
            parse_time(s)
                .and_then(|t| check_time(t, s))
                .map_err(|e| format!("{measurement}: time: {e}"))?,
        ),
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
    })
}

/// A JSON time in nanoseconds since the epoch, within the accepted years.
fn nanos(n: &serde_json::Number) -> Result<DateTime<Utc>, String> {
    match n.as_i64() {
        Some(ns) => check_nanos(ns.into()),
        None if n.is_u64() => Err(format!(
            "{n} is not a number of nanoseconds InfluxDB can store (64-bit; {TIME_RULE})"
        )),
        None => Err(format!(
            "{n} is not an integer number of nanoseconds since the epoch ({TIME_RULE})"
        )),
    }
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

    /// Issue 22, item 8: seconds, milliseconds or microseconds where
    /// nanoseconds are read would be 1970: refused, naming the unit.
    #[test]
    fn times_outside_2000_to_2100_are_refused_naming_the_likely_unit() {
        for (out, want) in [
            (
                "{\"measurement\": \"m\", \"fields\": {\"x\": 1}, \"time\": 1764000000}",
                "line 1: m: time: 1764000000 is 1970-01-01T00:00:01.764Z, before 2000-01-01: 1764000000 looks like seconds: multiply by 1e9 or give RFC 3339",
            ),
            (
                "m x=1i\nm x=1i 1764000000123",
                "line 2: timestamp 1764000000123 is 1970-01-01T00:29:24.000000123Z, before 2000-01-01: 1764000000123 looks like milliseconds: multiply by 1e6 or give RFC 3339",
            ),
            (
                "{\"measurement\": \"m\", \"fields\": {\"x\": 1}, \"timestamp\": 1764000000000000}",
                "looks like microseconds: multiply by 1e3",
            ),
            (
                "m x=1i 5",
                "line 1: timestamp 5 is 1970-01-01T00:00:00.000000005Z, before 2000-01-01 (a point's time is from 2000-01-01 to 2100-12-31, in nanoseconds since the epoch or RFC 3339)",
            ),
            ("m x=1i -1764000000", "before 2000-01-01 (a point's time"),
            (
                "{\"measurement\": \"m\", \"fields\": {\"x\": 1}, \"time\": \"1999-12-31T23:59:59Z\"}",
                "line 1: m: time: \"1999-12-31T23:59:59Z\" is before 2000-01-01 (a point's time is from 2000-01-01 to 2100-12-31)",
            ),
            (
                "{\"measurement\": \"m\", \"fields\": {\"x\": 1}, \"time\": \"2101-01-01 00:00:00\"}",
                "is after 2100-12-31",
            ),
            (
                "m x=1i 9223372036854775807",
                "line 1: timestamp 9223372036854775807 is 2262-04-11T23:47:16.854775807Z, after 2100-12-31",
            ),
            (
                "{\"measurement\": \"m\", \"fields\": {\"x\": 1}, \"time\": 18446744073709551615}",
                "18446744073709551615 is not a number of nanoseconds InfluxDB can store",
            ),
            (
                "{\"measurement\": \"m\", \"fields\": {\"x\": 1}, \"time\": 1.764e18}",
                "line 1: m: time: 1.764e+18 is not an integer number of nanoseconds since the epoch",
            ),
        ] {
            let e = parse_output(out).unwrap_err();
            assert!(e.contains(want), "{out}: {e}");
        }
        // The edges: 2000-01-01T00:00:00Z and the last nanosecond of 2100.
        let p = parse_output("m x=1i 946684800000000000\nm x=1i 4133980799999999999\n").unwrap();
        assert_eq!(p[0].timestamp, Some(t("2000-01-01T00:00:00Z")));
        assert_eq!(p[1].timestamp, Some(t("2100-12-31T23:59:59.999999999Z")));
        assert!(parse_output("m x=1i 946684799999999999").is_err());
        assert!(parse_output("m x=1i 4133980800000000000").is_err());
        // The same edges as RFC 3339 text, with fractions of a second.
        let json = |time: &str| {
            parse_output(&format!(
                "{{\"measurement\": \"m\", \"fields\": {{\"x\": 1}}, \"time\": \"{time}\"}}"
            ))
        };
        for ok in [
            "2000-01-01T00:00:00Z",
            "2000-01-01T00:00:00.5Z",
            "2100-12-31T23:59:59.999999999Z",
        ] {
            assert_eq!(json(ok).unwrap()[0].timestamp, Some(t(ok)), "{ok}");
        }
        for refused in ["1999-12-31T23:59:59.999999999Z", "2101-01-01T00:00:00Z"] {
            assert!(json(refused).is_err(), "{refused}");
        }
    }

    /// Issue 22, item 13: the value and the rule, not the parser's guess.
    #[test]
    fn refused_values_are_named_with_the_rule() {
        for (out, want) in [
            ("m x=NaN", "line 1: field x: NaN is not a finite number"),
            (
                "m,a=b y=1,x=-Infinity",
                "line 1: field x: -Infinity is not a finite number",
            ),
            (
                "m x=inf 1764000000000000000",
                "field x: inf is not a finite",
            ),
            (
                "m x=9223372036854775808i",
                "line 1: field x: 9223372036854775808i is outside InfluxDB's integers (64-bit",
            ),
            (
                "m x=18446744073709551615u",
                "field x: 18446744073709551615u is outside InfluxDB's integers",
            ),
            (
                "{\"measurement\": \"m\", \"fields\": {\"i\": -9223372036854775809}}",
                "line 1: m: field i: -9223372036854775809 is outside InfluxDB's integers",
            ),
            (
                "{\"measurement\": \"m\", \"fields\": {\"i\": 9223372036854775808}}",
                "line 1: m: field i: 9223372036854775808 is outside InfluxDB's integers",
            ),
            (
                "[{\"measurement\": \"m\", \"fields\": {\"i\": 1}}, {\"measurement\": \"m\", \"fields\": {\"i\": -99999999999999999999}}]",
                "point 2 of the array: m: field i: -99999999999999999999 is outside",
            ),
            (
                "m x=1i 99999999999999999999",
                "line 1: timestamp 99999999999999999999 is not a number of nanoseconds InfluxDB can store",
            ),
        ] {
            let e = parse_output(out).unwrap_err();
            assert!(e.contains(want), "{out}: {e}");
        }
        // A quoted string holding the separators is one value; a float the
        // parser reads as infinite is refused like `inf`; an empty
        // measurement is refused.
        for (out, want) in [
            (
                "m s=\"a,b=NaN c\",x=NaN",
                "line 1: field x: NaN is not a finite number",
            ),
            ("m x=1e400", "line 1: field x: inf is not a finite number"),
            (
                "{\"measurement\": \"\", \"fields\": {\"x\": 1}}",
                "line 1: measurement: expected a non-empty string, found an empty string",
            ),
        ] {
            let e = parse_output(out).unwrap_err();
            assert!(e.starts_with(want), "{out}: {e}");
        }
        // Several faults in one point: the first field by name is named,
        // whatever else the point holds (a whole float, an unsigned beyond
        // InfluxDB's integers).
        let e = parse_output(
            "{\"measurement\": \"m\", \"fields\": {\"a\": [1], \"b\": 18446744073709551615, \"c\": 2.0}}",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "line 1: m: field a: expected a number, a boolean or a string, found an array"
        );
        // Floats written as floats stay floats, however large.
        let p =
            parse_output("{\"measurement\": \"m\", \"fields\": {\"f\": -9.3e18, \"g\": 1e300}}")
                .unwrap();
        assert_eq!(p[0].fields["f"], FieldValue::Float(-9.3e18));
        // An escaped `=` or a quoted string is not a value to judge.
        let p = parse_output("m,k\\=NaN=1 s=\"x=NaN\",v=1i").unwrap();
        assert_eq!(p[0].fields["s"], FieldValue::String("x=NaN".into()));
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
