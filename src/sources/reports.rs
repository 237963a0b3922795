//! What the Ubuntu reports have in common, read once for every collector:
//! the `Generated:` line of a report, RFC 2822 times, the shapes of a
//! PyYAML document ([`Value`]), and the tail of an append-only CSV read
//! with `Range` ([`TailReader`], [`read_tail`]).
//!
//! Reading a tail: a time-series CSV (britney's `update_excuses.csv`, the
//! archive team's `nbs.csv`) only grows, by a row at the end, so a run
//! asks for its last bytes (`Range: bytes=-N`) rather than the whole
//! document, eight times more each time the tail does not yet reach back
//! to the oldest row the run needs. A server ignoring the `Range` answers
//! 200 with the whole document, and one that cannot satisfy it (416: an
//! empty document) is asked for the whole document: either way the tail
//! is the whole document ([`Tail::from_start`]) and the rows read are the
//! same.

use crate::sources::SourceError;
use crate::sources::http::{Http, Tail};
use chrono::{DateTime, Utc};

// ---- `Generated:` and RFC 2822

/// The marker of a report's generation time.
const GENERATED: &str = "Generated:";

/// The first line of `text` holding `Generated:`, and what follows the
/// marker on that line; `None` when no line holds it.
pub fn generated_line(text: &str) -> Option<(&str, &str)> {
    text.lines().find_map(|line| {
        let at = line.find(GENERATED)?;
        Some((line, &line[at + GENERATED.len()..]))
    })
}

/// An RFC 2822 time, with runs of white space (a space-padded day) allowed.
/// The day of the week is optional in RFC 2822 and ignored here (as
/// Python's `strptime` did), so a wrong one does not lose the time.
pub fn parse_rfc2822(s: &str) -> Option<DateTime<Utc>> {
    let mut words: Vec<&str> = s.split_whitespace().collect();
    if words.first().is_some_and(|w| w.ends_with(',')) {
        words.remove(0);
    }
    DateTime::parse_from_rfc2822(&words.join(" "))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

// ---- PyYAML documents

/// A YAML node as a report written by PyYAML needs it. The parser
/// (`serde-saphyr`, safe Rust) drops tags, `!!python/...` and local ones
/// alike, and expands aliases (within its budget against alias bombs).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    String(String),
    Sequence(Vec<Value>),
    /// Key order kept; keys may be any node.
    Mapping(Vec<(Value, Value)>),
}

impl Value {
    /// The value of the string key `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Mapping(m) => m
                .iter()
                .find(|(k, _)| matches!(k, Value::String(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// What the node is, for messages (`a list`, `a mapping`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Builds a [`Value`] from any node the parser gives.
struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Int(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Int(n.into()))
    }
    fn visit_i128<E>(self, n: i128) -> Result<Value, E> {
        Ok(Value::Int(n))
    }
    fn visit_u128<E>(self, n: u128) -> Result<Value, E> {
        Ok(i128::try_from(n).map_or(Value::Float(n as f64), Value::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::String(String::from_utf8_lossy(b).into_owned()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1024));
        while let Some(x) = a.next_element()? {
            v.push(x);
        }
        Ok(Value::Sequence(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut m = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1024));
        while let Some(kv) = a.next_entry()? {
            m.push(kv);
        }
        Ok(Value::Mapping(m))
    }
}

/// Parses a PyYAML document. Its size is bounded by the HTTP body limit,
/// so the parser's node and event budgets are raised from their defaults
/// (sized for configuration files) to fit britney's real output; the alias
/// and depth limits stay. An empty document is [`Value::Null`].
pub fn parse_yaml(text: &str) -> Result<Value, serde_saphyr::Error> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 100_000_000;
    budget.max_nodes = 50_000_000;
    budget.max_anchors = 1_000_000;
    budget.max_aliases = 1_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // `.inf` and `.nan` are numbers to YAML: read them (callers skip
    // non-finite numbers, see `numeric`) rather than fail the document.
    options.non_finite_float_policy = serde_saphyr::options::NonFiniteFloatPolicy::PassThrough;
    serde_saphyr::from_str_with_options(text, options)
}

/// The keys PyYAML writes for a `!!python/object/apply:` (and
/// `!!python/object/new:`) object.
const PY_APPLY_KEYS: [&str; 5] = ["args", "kwds", "state", "listitems", "dictitems"];

/// The plain value behind PyYAML's Python objects: local tags are dropped,
/// and a `defaultdict` (a mapping of only [`PY_APPLY_KEYS`] holding
/// `dictitems`) stands for its `dictitems`; an object holding only `state`
/// stands for that state. (The parser already drops tags.)
pub fn plain(mut v: &Value) -> &Value {
    loop {
        match v {
            Value::Mapping(m)
                if !m.is_empty()
                    && m.iter().all(
                        |(k, _)| matches!(k, Value::String(k) if PY_APPLY_KEYS.contains(&k.as_str())),
                    ) =>
            {
                match (v.get("dictitems"), v.get("state")) {
                    (Some(d), _) => v = d,
                    (None, Some(s)) if matches!(plain(s), Value::Mapping(_)) => v = s,
                    _ => return v,
                }
            }
            _ => return v,
        }
    }
}

/// A number, or a string holding one (`'5.5'`); finite values only.
pub fn numeric(v: &Value) -> Option<f64> {
    let f = match plain(v) {
        Value::Int(n) => *n as f64,
        Value::Float(f) => *f,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

// ---- the tail of an append-only CSV

/// Asks for ever longer tails of one document: `bytes` first, eight times
/// more at each [`TailReader::next`].
pub struct TailReader<'a> {
    http: &'a Http,
    url: &'a str,
    bytes: u64,
}

impl<'a> TailReader<'a> {
    pub fn new(http: &'a Http, url: &'a str, bytes: u64) -> TailReader<'a> {
        TailReader { http, url, bytes }
    }

    /// The next tail (`Range: bytes=-N`). A 416 (an empty document cannot
    /// satisfy a range) is followed by a plain request: the whole document.
    pub async fn next(&mut self) -> Result<Tail, SourceError> {
        let asked = self.bytes;
        self.bytes = self.bytes.saturating_mul(8);
        match self.http.get_tail(self.url, asked).await {
            Err(SourceError::HttpStatus { status: 416, .. }) => {
                tracing::debug!(
                    "{}: the last {asked} bytes cannot be given (416); reading the whole document",
                    self.url
                );
                Ok(Tail {
                    body: self.http.get_text(self.url).await?,
                    from_start: true,
                })
            }
            other => other,
        }
    }
}

/// The shortest tail of `url` (from `bytes` on, ×8 each time) that
/// `reaches` (its oldest row is old enough), or the whole document.
pub async fn read_tail(
    http: &Http,
    url: &str,
    bytes: u64,
    mut reaches: impl FnMut(&Tail) -> bool,
) -> Result<Tail, SourceError> {
    let mut reader = TailReader::new(http, url, bytes);
    loop {
        let tail = reader.next().await?;
        if tail.from_start || reaches(&tail) {
            return Ok(tail);
        }
    }
}

/// The complete lines of a tail: without its first line when the tail
/// does not start the document (that line is then a fragment).
pub fn tail_lines(tail: &Tail) -> impl Iterator<Item = &str> {
    tail.body.lines().skip(usize::from(!tail.from_start))
}

/// Bytes asked for first by [`first_line`]; a CSV header is far shorter.
const HEAD_BYTES: u64 = 256;

/// The first line of `url` (a CSV's header), asked for with
/// `Range: bytes=0-N` (eight times more while the line is not complete);
/// a server ignoring the `Range` sends the whole document, whose first line
/// is taken.
pub async fn first_line(http: &Http, url: &str) -> Result<String, SourceError> {
    let mut bytes = HEAD_BYTES;
    loop {
        let answer = http
            .fetch(
                http.client()
                    .get(url)
                    .header(reqwest::header::RANGE, format!("bytes=0-{}", bytes - 1)),
            )
            .await?;
        let whole = answer.status != reqwest::StatusCode::PARTIAL_CONTENT
            || (answer.body.len() as u64) < bytes;
        if let Some(end) = answer.body.iter().position(|&b| b == b'\n') {
            return Ok(String::from_utf8_lossy(&answer.body[..end]).into_owned());
        }
        if whole {
            return Ok(String::from_utf8_lossy(&answer.body).into_owned());
        }
        bytes = bytes.saturating_mul(8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn generated_is_found_on_the_first_line_holding_it() {
        let text = "a\n<p>Generated: 2026.11.24 09:35:12</p>\nGenerated: later\n";
        let (line, rest) = generated_line(text).unwrap();
        assert_eq!(line, "<p>Generated: 2026.11.24 09:35:12</p>");
        assert_eq!(rest, " 2026.11.24 09:35:12</p>");
        assert!(generated_line("no marker\n").is_none());
        assert!(generated_line("").is_none());
    }

    #[test]
    fn rfc2822_with_padding_and_any_weekday() {
        let want = Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap();
        assert_eq!(parse_rfc2822("Mon,  2 Nov 2026 01:00:00 +0000"), Some(want));
        assert_eq!(parse_rfc2822("Fri, 2 Nov 2026 01:00:00 +0000"), Some(want));
        assert_eq!(parse_rfc2822(" 2 Nov 2026 01:00:00 +0000 "), Some(want));
        assert_eq!(parse_rfc2822("soon"), None);
        assert_eq!(parse_rfc2822(""), None);
    }

    #[test]
    fn pyyaml_objects_stand_for_their_items() {
        let doc = parse_yaml(
            "!!python/object/apply:collections.defaultdict\nargs:\n- !!python/name:builtins.list ''\ndictitems:\n  t: [{age: '4.5'}, {age: .inf}]\n",
        )
        .unwrap();
        let items = plain(&doc).get("t").unwrap();
        let Value::Sequence(items) = plain(items) else {
            panic!("{items:?}")
        };
        assert_eq!(items[0].get("age").and_then(numeric), Some(4.5));
        assert_eq!(items[1].get("age").and_then(numeric), None);
        assert_eq!(parse_yaml(" \n").unwrap(), Value::Null);
        assert_eq!(Value::Sequence(vec![]).kind(), "a list");
    }

    #[test]
    fn a_partial_tail_drops_its_fragment() {
        let t = |body: &str, from_start| Tail {
            body: body.to_owned(),
            from_start,
        };
        let partial = t("ment\na\nb\n", false);
        assert_eq!(tail_lines(&partial).collect::<Vec<_>>(), ["a", "b"]);
        let whole = t("h\na\n", true);
        assert_eq!(tail_lines(&whole).collect::<Vec<_>>(), ["h", "a"]);
    }
}
