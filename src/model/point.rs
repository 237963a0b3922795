//! Points and their InfluxDB 1.x line-protocol encoding.
//!
//! A [`Point`] is what a collector returns: a measurement, tags, typed fields
//! and an optional timestamp. [`Point::to_line`] turns it into one line of
//! line protocol, or refuses it with a [`PointError`] naming the point when
//! InfluxDB 1.x could not store it as given.
//!
//! Rules (the same as the server's parser, `models/points.go`):
//! - measurement: `,` and space are escaped with `\`;
//! - tag keys, tag values and field keys: `,`, `=` and space are escaped;
//! - string field values are quoted; `"` and `\` inside are escaped;
//! - integers carry an `i` suffix; floats are written in their shortest
//!   round-trip form; booleans as `true` / `false`;
//! - the timestamp is in nanoseconds since the Unix epoch.
//!
//! What is refused rather than sent broken: a point without fields, a NaN or
//! infinite float, an empty measurement, tag key or field key, a newline or
//! carriage return anywhere outside a string field value, and a backslash
//! that the server would read as the start of an escape (one at the end of a
//! name, or directly before a character that we escape). The 1.x parser has
//! no way to write those characters, so the only honest answer is an error.
//! Tags whose value is empty are left out of the point (the spec's rule for
//! unknown tag values), never written empty.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt;

/// A typed field value. The type is part of the contract with existing
/// InfluxDB data: an integer field must stay an integer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    String(String),
}

impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Integer(v)
    }
}
impl From<i32> for FieldValue {
    fn from(v: i32) -> Self {
        FieldValue::Integer(v.into())
    }
}
impl From<u32> for FieldValue {
    fn from(v: u32) -> Self {
        FieldValue::Integer(v.into())
    }
}
impl From<usize> for FieldValue {
    /// Counts are `usize` in Rust; InfluxDB integers are signed 64-bit.
    /// A count above `i64::MAX` cannot occur in practice; it saturates.
    fn from(v: usize) -> Self {
        FieldValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Boolean(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::String(v.to_owned())
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::String(v)
    }
}

/// One InfluxDB point. Tags and fields are kept sorted by key, which is the
/// order InfluxDB recommends and makes output deterministic.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, FieldValue>,
    pub timestamp: Option<DateTime<Utc>>,
}

/// Why a point cannot be encoded. The message names the point.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("point {point}: {reason}")]
pub struct PointError {
    /// A short description of the point: its measurement and tags.
    pub point: String,
    pub reason: String,
}

impl Point {
    pub fn new(measurement: impl Into<String>) -> Self {
        Point {
            measurement: measurement.into(),
            tags: BTreeMap::new(),
            fields: BTreeMap::new(),
            timestamp: None,
        }
    }

    /// Adds a tag. An empty value leaves the tag out (spec: unknown tags are
    /// not written empty).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.tags.insert(key.into(), value);
        }
        self
    }

    /// Adds a tag when the value is known.
    pub fn tag_opt(self, key: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.tag(key, v),
            None => self,
        }
    }

    /// Adds a boolean tag, spelled `True` / `False` as the existing data does.
    pub fn tag_bool(self, key: impl Into<String>, value: bool) -> Self {
        self.tag(key, if value { "True" } else { "False" })
    }

    pub fn field(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// Sets the point's own time (from the source).
    pub fn at(mut self, time: DateTime<Utc>) -> Self {
        self.timestamp = Some(time);
        self
    }

    /// A short human description, used in error messages.
    pub fn describe(&self) -> String {
        let mut s = self.measurement.clone();
        for (k, v) in &self.tags {
            s.push(',');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s.escape_debug().to_string()
    }

    fn error(&self, reason: impl Into<String>) -> PointError {
        PointError {
            point: self.describe(),
            reason: reason.into(),
        }
    }

    /// Encodes the point as one line of line protocol (without newline).
    pub fn to_line(&self) -> Result<String, PointError> {
        let mut out = String::with_capacity(128);
        self.write_line(&mut out)?;
        Ok(out)
    }

    /// Appends the encoded point to `out`. On error `out` is left unchanged.
    pub fn write_line(&self, out: &mut String) -> Result<(), PointError> {
        let start = out.len();
        let result = self.write_line_inner(out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write_line_inner(&self, out: &mut String) -> Result<(), PointError> {
        if self.fields.is_empty() {
            return Err(self.error("has no field; InfluxDB rejects a point without fields"));
        }
        // Names with nothing to check or escape (nearly all) are copied as
        // they are, after one scan; the others take the slow path.
        let plain_measurement = is_plain(&self.measurement, &MEASUREMENT_PLAIN);
        if !plain_measurement {
            check_name(&self.measurement, "measurement", MEASUREMENT_SPECIALS)
                .map_err(|r| self.error(r))?;
        }
        if self.measurement.starts_with('#') {
            return Err(
                self.error("measurement starts with '#', which line protocol reads as a comment")
            );
        }
        if plain_measurement {
            out.push_str(&self.measurement);
        } else {
            escape_into(out, &self.measurement, MEASUREMENT_SPECIALS);
        }
        for (k, v) in &self.tags {
            let plain_key = is_plain(k, &KEY_PLAIN);
            if !plain_key {
                check_name(k, "tag key", KEY_SPECIALS).map_err(|r| self.error(r))?;
            }
            // The message is formatted only for a value that needs the check.
            let plain_value = is_plain(v, &KEY_PLAIN);
            if !plain_value {
                check_name(v, &format!("value of tag {k:?}"), KEY_SPECIALS)
                    .map_err(|r| self.error(r))?;
            }
            out.push(',');
            push_name(out, k, plain_key);
            out.push('=');
            push_name(out, v, plain_value);
        }
        let mut sep = ' ';
        for (k, v) in &self.fields {
            let plain_key = is_plain(k, &KEY_PLAIN);
            if !plain_key {
                check_name(k, "field key", KEY_SPECIALS).map_err(|r| self.error(r))?;
            }
            out.push(sep);
            sep = ',';
            push_name(out, k, plain_key);
            out.push('=');
            match v {
                FieldValue::Integer(i) => {
                    push_i64(out, *i);
                    out.push('i');
                }
                FieldValue::Float(f) => {
                    if !f.is_finite() {
                        return Err(self.error(format!(
                            "field {k:?} is {f}; InfluxDB cannot store NaN or infinite floats"
                        )));
                    }
                    // Rust's Display for f64 is the shortest string that
                    // reads back to the same value, and never uses an
                    // exponent, so the server parses it as exactly this float.
                    use std::fmt::Write;
                    let _ = write!(out, "{f}");
                }
                FieldValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
                FieldValue::String(s) => {
                    out.push('"');
                    for c in s.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
            }
        }
        if let Some(ts) = self.timestamp {
            let nanos = ts
                .timestamp_nanos_opt()
                .filter(|n| (MIN_NANO..=MAX_NANO).contains(n))
                .ok_or_else(|| {
                    self.error(format!(
                        "timestamp {ts} is outside the times InfluxDB 1.x stores ({MIN_NANO} to {MAX_NANO} ns since the epoch: 1677-09-21 to 2262-04-11)"
                    ))
                })?;
            out.push(' ');
            push_i64(out, nanos);
        }
        Ok(())
    }
}

/// The earliest time InfluxDB 1.x stores, in nanoseconds since the epoch
/// (`models.MinNanoTime`: the two lowest are its sentinels).
pub const MIN_NANO: i64 = i64::MIN + 2;
/// The latest time InfluxDB 1.x stores (`models.MaxNanoTime`: `i64::MAX`
/// bounds its shard groups).
pub const MAX_NANO: i64 = i64::MAX - 1;

/// Appends the decimal form of `i`, as `i.to_string()` writes it, without
/// allocating.
fn push_i64(out: &mut String, i: i64) {
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    let mut n = i.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&buf[pos..]).expect("ASCII digits"));
}

/// For each byte: whether a name holding it needs [`check_name`] or
/// [`escape_into`] (its specials, a backslash, a newline).
const fn plain_table(specials: &[char]) -> [bool; 256] {
    let mut t = [true; 256];
    t[b'\\' as usize] = false;
    t[b'\n' as usize] = false;
    t[b'\r' as usize] = false;
    let mut i = 0;
    while i < specials.len() {
        t[specials[i] as usize] = false;
        i += 1;
    }
    t
}

const MEASUREMENT_PLAIN: [bool; 256] = plain_table(MEASUREMENT_SPECIALS);
const KEY_PLAIN: [bool; 256] = plain_table(KEY_SPECIALS);

/// A name that `check_name` accepts and `escape_into` leaves as it is: not
/// empty, and none of its bytes marked in `table` (a fast path; the rules
/// are in those two functions).
fn is_plain(s: &str, table: &[bool; 256]) -> bool {
    !s.is_empty() && s.bytes().all(|b| table[b as usize])
}

fn push_name(out: &mut String, s: &str, plain: bool) {
    if plain {
        out.push_str(s);
    } else {
        escape_into(out, s, KEY_SPECIALS);
    }
}

const MEASUREMENT_SPECIALS: &[char] = &[',', ' '];
const KEY_SPECIALS: &[char] = &[',', '=', ' '];

/// Checks that a name (measurement, key or tag value) can be represented.
fn check_name(s: &str, what: &str, specials: &[char]) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.contains(['\n', '\r']) {
        return Err(format!(
            "{what} {s:?} holds a newline, which InfluxDB 1.x line protocol cannot carry"
        ));
    }
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                None => {
                    return Err(format!(
                        "{what} {s:?} ends with a backslash, which InfluxDB 1.x would read as an escape"
                    ));
                }
                Some(n) if specials.contains(n) => {
                    return Err(format!(
                        "{what} {s:?} has a backslash before {n:?}, which InfluxDB 1.x would read as an escape"
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn escape_into(out: &mut String, s: &str, specials: &[char]) {
    for c in s.chars() {
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_line() {
            Ok(l) => f.write_str(&l),
            Err(e) => write!(f, "<unencodable: {e}>"),
        }
    }
}

/// Encodes points as lines of line protocol, one per point (a line may hold
/// a newline inside a quoted string field, so lines are kept apart rather
/// than joined and split again). Points that cannot be encoded are returned
/// as errors alongside; the others are kept.
pub fn encode_lines<'a>(
    points: impl IntoIterator<Item = &'a Point>,
) -> (Vec<String>, Vec<PointError>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for p in points {
        match p.to_line() {
            Ok(l) => lines.push(l),
            Err(e) => errors.push(e),
        }
    }
    (lines, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    /// The encoding without the fast path: every name checked and escaped.
    fn slow_line(p: &Point) -> Option<String> {
        let mut out = String::new();
        check_name(&p.measurement, "measurement", MEASUREMENT_SPECIALS).ok()?;
        if p.measurement.starts_with('#') || p.fields.is_empty() {
            return None;
        }
        escape_into(&mut out, &p.measurement, MEASUREMENT_SPECIALS);
        for (k, v) in &p.tags {
            check_name(k, "", KEY_SPECIALS).ok()?;
            check_name(v, "", KEY_SPECIALS).ok()?;
            out.push(',');
            escape_into(&mut out, k, KEY_SPECIALS);
            out.push('=');
            escape_into(&mut out, v, KEY_SPECIALS);
        }
        let mut sep = ' ';
        for (k, v) in &p.fields {
            check_name(k, "", KEY_SPECIALS).ok()?;
            out.push(sep);
            sep = ',';
            escape_into(&mut out, k, KEY_SPECIALS);
            let FieldValue::Integer(i) = v else {
                unreachable!("integers only")
            };
            out.push_str(&format!("={i}i"));
        }
        Some(out)
    }

    proptest::proptest! {
        #[test]
        fn the_fast_path_encodes_as_the_slow_path(
            m in "[a-z#, =\\\\\n\r\"é]{0,6}",
            tk in "[a-z, =\\\\\n\ré]{0,4}",
            tv in "[a-z, =\\\\\n\ré]{1,4}",
            fk in "[a-z, =\\\\\n\ré]{0,4}",
            n in proptest::num::i64::ANY,
        ) {
            let p = Point::new(m).tag(tk, tv).field(fk, n);
            proptest::prop_assert_eq!(p.to_line().ok(), slow_line(&p));
        }
    }

    #[test]
    fn integers_are_written_as_to_string_does() {
        for i in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            1795521600000000000,
            i64::MAX,
            i64::MIN,
        ] {
            let mut s = String::from("x=");
            push_i64(&mut s, i);
            assert_eq!(s, format!("x={i}"));
        }
    }

    #[test]
    fn integer_float_bool_string_fields() {
        let p = Point::new("m")
            .tag("a", "x")
            .field("i", 3i64)
            .field("f", 1.25)
            .field("g", 1.0)
            .field("b", true)
            .field("s", "hi")
            .at(t());
        assert_eq!(
            p.to_line().unwrap(),
            "m,a=x b=true,f=1.25,g=1,i=3i,s=\"hi\" 1795521600000000000"
        );
    }

    #[test]
    fn measurement_escapes_comma_and_space_only() {
        let p = Point::new("my m,x=y").field("v", 1i64);
        assert_eq!(p.to_line().unwrap(), "my\\ m\\,x=y v=1i");
    }

    #[test]
    fn tags_and_field_keys_escape_comma_equals_space() {
        let p = Point::new("m")
            .tag("k y,=", "v a,l=ue")
            .field("f k=,", 1i64);
        assert_eq!(
            p.to_line().unwrap(),
            "m,k\\ y\\,\\==v\\ a\\,l\\=ue f\\ k\\=\\,=1i"
        );
    }

    #[test]
    fn string_field_escapes_quote_and_backslash() {
        let p = Point::new("m").field("s", r#"a "b" \c"#);
        assert_eq!(p.to_line().unwrap(), r#"m s="a \"b\" \\c""#);
    }

    #[test]
    fn string_field_keeps_non_ascii_and_newlines() {
        let p = Point::new("m").field("s", "é\nü");
        assert_eq!(p.to_line().unwrap(), "m s=\"é\nü\"");
    }

    #[test]
    fn tags_sorted_and_empty_tags_left_out() {
        let p = Point::new("m")
            .tag("z", "1")
            .tag("a", "2")
            .tag("e", "")
            .tag_opt("n", None::<String>)
            .tag_bool("devel", true)
            .field("v", 1i64);
        assert_eq!(p.to_line().unwrap(), "m,a=2,devel=True,z=1 v=1i");
    }

    #[test]
    fn no_field_is_refused_naming_the_point() {
        let e = Point::new("m").tag("a", "b").to_line().unwrap_err();
        assert_eq!(e.point, "m,a=b");
        assert!(e.to_string().contains("no field"), "{e}");
    }

    #[test]
    fn nan_and_infinity_are_refused() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = Point::new("m").field("v", f).to_line().unwrap_err();
            assert!(e.reason.contains("NaN or infinite"), "{e}");
        }
    }

    #[test]
    fn unrepresentable_names_are_refused() {
        let cases = [
            Point::new("m").tag("a", "ends\\").field("v", 1i64),
            Point::new("m").tag("a", "x\\,y").field("v", 1i64),
            Point::new("m").tag("a", "line\nbreak").field("v", 1i64),
            Point::new("m").tag("a\r", "x").field("v", 1i64),
            Point::new("m\\").field("v", 1i64),
            Point::new("").field("v", 1i64),
            Point::new("#m").field("v", 1i64),
            Point::new("m").field("", 1i64),
            Point::new("m").field("k\\", 1i64),
        ];
        for p in cases {
            assert!(p.to_line().is_err(), "{p:?} should be refused");
        }
    }

    #[test]
    fn backslash_in_the_middle_is_fine() {
        let p = Point::new("m").tag("a", "x\\y").field("v", 1i64);
        assert_eq!(p.to_line().unwrap(), "m,a=x\\y v=1i");
    }

    #[test]
    fn encode_lines_keeps_good_points_and_reports_bad() {
        let pts = vec![
            Point::new("a").field("v", 1i64),
            Point::new("b"),
            Point::new("c").field("v", 2i64),
        ];
        let (lines, errs) = encode_lines(&pts);
        assert_eq!(lines, ["a v=1i", "c v=2i"]);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].point, "b");
    }

    /// Issue 22, item 13: i64::MAX nanoseconds was sent, and influxd
    /// refused the batch ("time outside range").
    #[test]
    fn times_influxdb_cannot_store_are_refused_naming_the_range() {
        for ns in [i64::MAX, i64::MIN, i64::MIN + 1] {
            let e = Point::new("m")
                .field("v", 1i64)
                .at(Utc.timestamp_nanos(ns))
                .to_line()
                .unwrap_err();
            assert!(
                e.reason.contains(
                    "outside the times InfluxDB 1.x stores (-9223372036854775806 to 9223372036854775806 ns"
                ),
                "{e}"
            );
        }
        for ns in [MAX_NANO, MIN_NANO] {
            let p = Point::new("m").field("v", 1i64).at(Utc.timestamp_nanos(ns));
            assert_eq!(p.to_line().unwrap(), format!("m v=1i {ns}"));
        }
    }

    /// A point shows as its line, or as why it has none.
    #[test]
    fn a_point_displays_as_its_line_or_the_reason_it_has_none() {
        let p = Point::new("m").tag("t", "a b").field("v", 1i64);
        assert_eq!(p.to_string(), "m,t=a\\ b v=1i");
        let bad = Point::new("m");
        assert_eq!(
            bad.to_string(),
            "<unencodable: point m: has no field; InfluxDB rejects a point without fields>"
        );
    }

    #[test]
    fn usize_counts_are_integers() {
        let p = Point::new("m").field("count", 7usize);
        assert_eq!(p.to_line().unwrap(), "m count=7i");
    }
}
