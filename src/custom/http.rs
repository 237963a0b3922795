//! `type = "http"`: URLs read through the shared HTTP client (timeouts,
//! body cap, User-Agent, per-host limit, the run's cache), each document
//! parsed (`json`, `yaml`, `csv`, `text`) and turned into points by a jq
//! filter ([`super::jq`]).
//!
//! Each URL is a source ([`SourceUrl`]): `url` is the source `NAME`, each
//! key of `urls` the source `NAME_KEY`, so `[sources]` overrides them like
//! every other source (the fixture server in tests, a mirror). The filter
//! gets the document as its input and `$source` (the URL's key; `NAME` for
//! `url`), `$url` (credentials redacted) and `$now` (the collection time,
//! RFC 3339). It outputs points in the JSON shape of [`super::points`], or
//! arrays of them. Documents are independent parts ([`Parts`]): one that
//! fails is logged and the others are still reported.

use super::jq::Jq;
use super::{Section, option_error, points};
use crate::collector::{CollectorError, Context, OptionError, Parts};
use crate::config::{SourceUrl, redact_url};
use crate::model::point::Point;
use serde_json::Value;

/// How a document is read before the filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The JSON document.
    Json,
    /// The YAML document, as JSON.
    Yaml,
    /// An array of objects, one per row, keyed by the header row (values
    /// are strings: `tonumber` in the filter).
    Csv,
    /// The document as one string (`split("\n")` in the filter).
    Text,
}

/// A checked `http` declaration.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    format: Format,
    filter: Jq,
    /// `(key, source)` per URL.
    urls: Vec<(String, SourceUrl)>,
}

impl HttpSpec {
    pub(super) fn new(name: &str, s: &Section) -> Result<(HttpSpec, Vec<SourceUrl>), OptionError> {
        let mut urls: Vec<(String, String, String)> = Vec::new();
        match (&s.url, &s.urls) {
            (Some(_), Some(_)) => {
                return Err(option_error("urls", "give url or urls, not both"));
            }
            (Some(u), None) => urls.push((name.to_owned(), name.to_owned(), u.clone())),
            (None, Some(map)) if !map.is_empty() => {
                for (k, u) in map {
                    if k.is_empty()
                        || !k
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(option_error(
                            format!("urls.{k}"),
                            "a URL's key is letters, digits, `_` and `-`",
                        ));
                    }
                    urls.push((k.clone(), format!("{name}_{k}"), u.clone()));
                }
            }
            _ => {
                return Err(option_error(
                    "url",
                    "an http collector needs url = \"URL\" or urls = { KEY = \"URL\", ... }",
                ));
            }
        }
        for (key, _, u) in &urls {
            let parsed = url::Url::parse(u).map_err(|e| {
                option_error(
                    if s.url.is_some() {
                        "url".to_owned()
                    } else {
                        format!("urls.{key}")
                    },
                    format!("{:?}: {e}", redact_url(u)),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(option_error(
                    if s.url.is_some() {
                        "url".to_owned()
                    } else {
                        format!("urls.{key}")
                    },
                    format!("{:?}: the scheme must be http or https", redact_url(u)),
                ));
            }
        }
        let format = match s.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("yaml") => Format::Yaml,
            Some("csv") => Format::Csv,
            Some("text") => Format::Text,
            Some(other) => {
                return Err(option_error(
                    "format",
                    format!("{other:?}: the formats are json, yaml, csv and text"),
                ));
            }
        };
        let Some(code) = &s.filter else {
            return Err(option_error(
                "filter",
                "an http collector needs a jq filter turning each document into points",
            ));
        };
        let filter = Jq::new(code).map_err(|e| option_error("filter", e))?;
        let sources: Vec<(String, SourceUrl)> = urls
            .into_iter()
            .map(|(key, source, u)| {
                let about = format!("read by the declared collector {name} (`$source` = {key:?})");
                (
                    key,
                    SourceUrl {
                        key: source.into(),
                        default: u.into(),
                        about: about.into(),
                        fixture: "".into(),
                    },
                )
            })
            .collect();
        let list = sources.iter().map(|(_, s)| s.clone()).collect();
        Ok((
            HttpSpec {
                format,
                filter,
                urls: sources,
            },
            list,
        ))
    }

    /// Reads every URL and runs the filter on each document.
    pub async fn collect(&self, name: &str, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let fetches = self.urls.iter().map(|(key, source)| {
            let url = ctx.source(source).to_owned();
            async move {
                let http = ctx.http.clone();
                let u = url.clone();
                let text = ctx
                    .cache()
                    .get_or_fetch::<String, CollectorError, _, _>(
                        &format!("text {url}"),
                        || async move { http.get_text(&u).await.map_err(CollectorError::from) },
                    )
                    .await;
                (key.as_str(), url, text)
            }
        });
        let results = futures::future::join_all(fetches).await;
        let now = ctx.now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        // Each document's filter is a process of its own: they run side by
        // side.
        let filtered = results.into_iter().map(|(key, url, text)| {
            let now = &now;
            async move {
                let result = match text.and_then(|text| parse(self.format, &url, &text)) {
                    Ok(doc) => self.points(name, key, &url, now, &doc).await,
                    Err(e) => Err(e),
                };
                (key, result)
            }
        });
        let mut parts = Parts::new(name);
        for (key, result) in futures::future::join_all(filtered).await {
            parts.add(key, result);
        }
        parts.finish()
    }

    async fn points(
        &self,
        name: &str,
        key: &str,
        url: &str,
        now: &str,
        doc: &Value,
    ) -> Result<Vec<Point>, CollectorError> {
        let shown = redact_url(url);
        let outputs = self
            .filter
            .run(doc, [key, &shown, now])
            .await
            .map_err(|e| CollectorError::Other(format!("{name}: the filter on {shown}: {e}")))?;
        let mut out = Vec::new();
        let mut n = 0;
        for v in outputs {
            let items = match v {
                Value::Array(items) => items,
                other => vec![other],
            };
            for item in items {
                n += 1;
                out.push(points::from_json(&item).map_err(|e| {
                    CollectorError::Other(format!(
                        "{name}: the filter's output {n} on {shown}: {e}"
                    ))
                })?);
            }
        }
        Ok(out)
    }
}

/// The document as the filter's input.
pub fn parse(format: Format, url: &str, text: &str) -> Result<Value, CollectorError> {
    match format {
        Format::Json => serde_json::from_str(text)
            .map_err(|e| CollectorError::parse(url, format!("invalid JSON: {e}"))),
        Format::Yaml => serde_saphyr::from_str::<Value>(text)
            .map_err(|e| CollectorError::parse(url, format!("invalid YAML: {e}"))),
        Format::Text => Ok(Value::String(text.to_owned())),
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| CollectorError::parse(url, format!("invalid CSV: {e}")))?
                .clone();
            let mut rows = Vec::new();
            for record in reader.records() {
                let record =
                    record.map_err(|e| CollectorError::parse(url, format!("invalid CSV: {e}")))?;
                let row: serde_json::Map<String, Value> = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.to_owned(), Value::String(v.to_owned())))
                    .collect();
                rows.push(Value::Object(row));
            }
            Ok(Value::Array(rows))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_in_every_format() {
        let v = parse(Format::Yaml, "u", "a: 1\nb: [x, 2.5]\n").unwrap();
        assert_eq!(v, serde_json::json!({"a": 1, "b": ["x", 2.5]}));
        let v = parse(Format::Csv, "u", "series,count\nnoble,3\nplucky,4\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"series": "noble", "count": "3"}, {"series": "plucky", "count": "4"}])
        );
        assert_eq!(parse(Format::Text, "u", "a\nb").unwrap(), "a\nb");
        assert!(parse(Format::Json, "u", "{").is_err());
    }
}
