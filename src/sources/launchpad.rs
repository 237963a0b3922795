//! A thin, anonymous client of the Launchpad web service (lazr.restful
//! JSON over HTTP), reached by collectors through their run context
//! (`Context::launchpad`).
//!
//! Launchpad's shape, in short (see `devel.wadl` for the full description):
//! entries are JSON objects carrying `self_link` and `*_link` /
//! `*_collection_link` URLs; collections are paged
//! (`{"total_size", "start", "entries", "next_collection_link"}`, 75 entries
//! per page unless `ws.size` asks for up to 300); named operations are GETs
//! with `ws.op=NAME` and their arguments in the query, a person or team
//! argument being its full resource URL ([`Launchpad::resource_url`]). On
//! the `devel` API a named operation whose result spans more than one page
//! answers `total_size_link` (the same request plus `ws.show=total_size`,
//! answering a bare integer) instead of `total_size`.
//!
//! The client reads only what callers ask for: callers deserialize entries
//! into their own structs whose fields are all `Option` (Launchpad omits
//! fields and writes `null` in others); unknown fields are ignored.
//!
//! The documents every collector needing the `ubuntu` distribution shares
//! (the distribution, its series collection, the current series'
//! architectures) are read through the run's [`RunCache`] when the client
//! has one (`Context::launchpad` gives it): once per run, however many
//! collectors ask, concurrent askers waiting for the one request.
//!
//! Every request goes through [`Http::fetch`] (counted, logged, within the
//! per-host limit, honouring `Retry-After` within the run's budget). Server
//! errors (5xx), 429 without `Retry-After` and dropped connections are
//! retried up to 3 times with exponential backoff and jitter; 4xx answers,
//! timeouts, a host out of reach (a name that does not resolve, a
//! connection refused) and a `Retry-After` beyond the budget are not.

use crate::sources::http::{Http, join};
use crate::sources::{RunCache, SourceError};
use crate::support::retry::RetryPolicy;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Entries per page asked for when reading a whole collection (Launchpad's
/// maximum).
pub const PAGE_SIZE: u32 = 300;
/// Pages followed at most for one collection (300 × 1000 entries): a guard
/// against a server that keeps answering `next_collection_link`.
const MAX_PAGES: usize = 1000;
/// Pages followed one by one before a collection without `total_size`
/// asks for its size (`total_size_link`, one more request) to bound the
/// rest: results of up to 10 pages cost nothing more, longer ones at most
/// a tenth more, and a collection that never ends stops after
/// max(10, ceil(total_size / page size) + [`PAGE_MARGIN`]) pages.
const CHECK_TOTAL_AFTER: u64 = 10;
/// Pages allowed beyond `ceil(total_size / page size)` (entries added
/// while paging).
const PAGE_MARGIN: u64 = 2;

/// The Launchpad client: the shared HTTP client and the service's base URL
/// (`https://api.launchpad.net/devel/` in production).
#[derive(Clone)]
pub struct Launchpad {
    http: Http,
    base: String,
    /// Transient failures: tried again under the program's one retry
    /// policy ([`RetryPolicy::LAUNCHPAD`]).
    retry: RetryPolicy,
    cache: Option<Arc<RunCache>>,
}

/// A series of the `ubuntu` distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    /// Launchpad's `active` flag (series still taking uploads or supported).
    pub active: bool,
    /// True for the distribution's `current_series` (the series in
    /// development).
    pub current: bool,
    pub self_link: String,
}

/// One page of a collection (only the paging keys; entries are kept raw so
/// that a bad entry is reported with its index).
#[derive(Debug, Deserialize)]
struct Page {
    entries: Option<Vec<serde_json::Value>>,
    total_size: Option<u64>,
    total_size_link: Option<String>,
    next_collection_link: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct DistributionEntry {
    current_series_link: Option<String>,
    series_collection_link: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct SeriesEntry {
    name: Option<String>,
    active: Option<bool>,
    self_link: Option<String>,
    architectures_collection_link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ArchEntry {
    architecture_tag: Option<String>,
}

impl Launchpad {
    /// A client of the service at `base` (any URL; treated as a directory).
    pub fn new(http: Http, base: impl Into<String>) -> Launchpad {
        Launchpad {
            http,
            base: base.into(),
            retry: RetryPolicy::LAUNCHPAD,
            cache: None,
        }
    }

    /// The same client reading the shared documents (distribution, series,
    /// architectures) through `cache`.
    pub fn with_cache(mut self, cache: Arc<RunCache>) -> Launchpad {
        self.cache = Some(cache);
        self
    }

    /// The same client with another retry policy: `retries` more attempts
    /// after the first, waiting about `base`, `2 × base`, `4 × base`, ...
    pub fn with_retries(mut self, retries: u32, base: Duration) -> Launchpad {
        self.retry = RetryPolicy {
            retries,
            base,
            ..RetryPolicy::LAUNCHPAD
        };
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of a resource given by its path relative to the service root
    /// (`"ubuntu"`, `"~ubuntu-archive"`); a full URL is returned unchanged.
    pub fn resource_url(&self, path: &str) -> String {
        if is_absolute(path) {
            path.to_owned()
        } else {
            join(&self.base, path.trim_start_matches('/'))
        }
    }

    /// The URL of `url_or_path` with `params` appended to its query.
    pub fn url_with(
        &self,
        url_or_path: &str,
        params: &[(&str, &str)],
    ) -> Result<String, SourceError> {
        let full = self.resource_url(url_or_path);
        let mut url = url::Url::parse(&full)
            .map_err(|e| SourceError::Invalid(format!("invalid Launchpad URL {full:?}: {e}")))?;
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        Ok(url.to_string())
    }

    /// GETs one resource (an entry, or one page of a collection) as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        url_or_path: &str,
        params: &[(&str, &str)],
    ) -> Result<T, SourceError> {
        let url = self.url_with(url_or_path, params)?;
        let body = self.fetch(&url).await?;
        parse_json(&url, &body)
    }

    /// Every entry of a collection (or of a named operation's result),
    /// asking for pages of [`PAGE_SIZE`] unless `params` says otherwise.
    /// When the first page tells the `total_size`, the other pages are
    /// asked for together (`ws.start` offsets); otherwise (a named
    /// operation's `total_size_link`) `next_collection_link` is followed,
    /// since learning the size would cost a request of its own.
    pub async fn collection<T: DeserializeOwned>(
        &self,
        url_or_path: &str,
        params: &[(&str, &str)],
    ) -> Result<Vec<T>, SourceError> {
        let size = PAGE_SIZE.to_string();
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if !params.iter().any(|(k, _)| *k == "ws.size") {
            all.push(("ws.size", &size));
        }
        let mut url = self.url_with(url_or_path, &all)?;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        // Without total_size on the first page (a named operation's
        // total_size_link), pages are followed one by one; past
        // CHECK_TOTAL_AFTER pages the size is asked for once, and the pages
        // are bounded by it rather than by MAX_PAGES.
        let mut total: Option<u64> = None;
        let mut total_link: Option<String> = None;
        let mut page_size: u64 = 1;
        for pages in 0..MAX_PAGES {
            let body = self.fetch(&url).await?;
            let page: Page = parse_json(&url, &body)?;
            let entries = page
                .entries
                .ok_or_else(|| SourceError::parse(&url, "not a collection: no \"entries\""))?;
            let got = entries.len();
            deserialize_entries(&url, entries, &mut out)?;
            seen.insert(url.clone());
            let next = match page.next_collection_link {
                Some(next) if !next.is_empty() => next,
                _ => return Ok(out),
            };
            if seen.contains(&next) {
                return Err(SourceError::parse(
                    &url,
                    format!("next_collection_link loops back to {next}"),
                ));
            }
            if pages == 0 {
                if let Some(total) = page.total_size {
                    let starts = page_starts(&url, &next, got, total)?;
                    self.read_pages(&next, &starts, &mut out).await?;
                    return Ok(out);
                }
                total_link = page.total_size_link.filter(|l| !l.is_empty());
                page_size = (got as u64).max(1);
            }
            total = total.or(page.total_size);
            let read = pages as u64 + 1;
            if total.is_none()
                && read >= CHECK_TOTAL_AFTER
                && let Some(link) = total_link.take()
            {
                let body = self.fetch(&link).await?;
                total = Some(parse_count(&link, &body)?);
            }
            if let Some(total) = total {
                let limit = total.div_ceil(page_size) + PAGE_MARGIN;
                if read >= limit {
                    return Err(SourceError::parse(
                        &url,
                        format!(
                            "the collection does not end: {read} pages of {page_size} read for a total_size of {total} ({} entries), and it still links to a next page; stopped",
                            out.len()
                        ),
                    ));
                }
            }
            url = next;
        }
        Err(SourceError::parse(
            url,
            format!("more than {MAX_PAGES} pages"),
        ))
    }

    /// The pages of the collection `next` (the first page's
    /// `next_collection_link`) starting at `starts`, read together; their
    /// entries are appended in order.
    async fn read_pages<T: DeserializeOwned>(
        &self,
        next: &str,
        starts: &[u64],
        out: &mut Vec<T>,
    ) -> Result<(), SourceError> {
        let urls = starts
            .iter()
            .map(|start| with_start(next, *start))
            .collect::<Result<Vec<String>, SourceError>>()?;
        let bodies =
            futures::future::try_join_all(urls.iter().map(|u| self.fetch(u.as_str()))).await?;
        for (url, body) in urls.iter().zip(bodies) {
            let page: Page = parse_json(url, &body)?;
            let entries = page
                .entries
                .ok_or_else(|| SourceError::parse(url, "not a collection: no \"entries\""))?;
            deserialize_entries(url, entries, out)?;
        }
        Ok(())
    }

    /// The number of entries of a collection or named operation's result,
    /// in one request (`total_size`) or two (`total_size_link`), never by
    /// reading every page.
    pub async fn count(
        &self,
        url_or_path: &str,
        params: &[(&str, &str)],
    ) -> Result<u64, SourceError> {
        let mut all: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| *k != "ws.size")
            .copied()
            .collect();
        all.push(("ws.size", "1"));
        let url = self.url_with(url_or_path, &all)?;
        let body = self.fetch(&url).await?;
        let page: Page = parse_json(&url, &body)?;
        if let Some(n) = page.total_size {
            return Ok(n);
        }
        if let Some(link) = page.total_size_link.filter(|l| !l.is_empty()) {
            let body = self.fetch(&link).await?;
            return parse_count(&link, &body);
        }
        match (page.entries, page.next_collection_link) {
            // A single page without a size: its entries are all there is.
            (Some(entries), None) => Ok(entries.len() as u64),
            _ => Err(SourceError::parse(
                url,
                "neither total_size nor total_size_link in the answer",
            )),
        }
    }

    /// The series of the `ubuntu` distribution, as Launchpad lists them
    /// (newest first). Two requests (the distribution and its series
    /// collection), shared by the run through the cache.
    pub async fn ubuntu_series(&self) -> Result<Vec<Series>, SourceError> {
        let ubuntu = self.distribution().await?;
        let current = ubuntu.current_series_link.clone().unwrap_or_default();
        let (series_link, entries) = self.series_entries(&ubuntu).await?;
        let mut out = Vec::new();
        for (i, s) in entries.iter().enumerate() {
            let (Some(name), Some(self_link)) = (&s.name, &s.self_link) else {
                tracing::warn!("{series_link}: series entry {i} has no name or self_link; skipped");
                continue;
            };
            out.push(Series {
                current: !current.is_empty() && same_link(self_link, &current),
                active: s.active.unwrap_or(false),
                name: name.clone(),
                self_link: self_link.clone(),
            });
        }
        Ok(out)
    }

    /// The current (devel) series' name and the `architecture_tag` of each
    /// of its architectures. Three requests (the distribution, its series
    /// collection, the current series' architectures), the first two shared
    /// with [`Launchpad::ubuntu_series`] through the cache; a current
    /// series missing from the collection is read on its own.
    pub async fn devel_architectures(&self) -> Result<(String, Vec<String>), SourceError> {
        let (current, series) = self.current_series().await?;
        let name = series
            .name
            .ok_or_else(|| SourceError::parse(&current, "the current series has no name"))?;
        let archs_link = series.architectures_collection_link.ok_or_else(|| {
            SourceError::parse(&current, "no architectures_collection_link in the series")
        })?;
        let lp = self.clone();
        let link = archs_link.clone();
        let tags = self
            .cached(&archs_link, || async move {
                let archs: Vec<ArchEntry> = lp.collection(&link, &[]).await?;
                Ok(archs
                    .into_iter()
                    .filter_map(|a| a.architecture_tag)
                    .collect::<Vec<String>>())
            })
            .await?;
        Ok((name, (*tags).clone()))
    }

    /// The current (devel) series' name: the first two requests of
    /// [`Launchpad::devel_architectures`], for callers that can start
    /// work before the architectures are known.
    pub async fn devel_series_name(&self) -> Result<String, SourceError> {
        let (current, series) = self.current_series().await?;
        series
            .name
            .ok_or_else(|| SourceError::parse(&current, "the current series has no name"))
    }

    /// The current series' link and entry: from the series collection, or
    /// read on its own when the collection does not list it.
    async fn current_series(&self) -> Result<(String, SeriesEntry), SourceError> {
        let url = self.resource_url("ubuntu");
        let ubuntu = self.distribution().await?;
        let current = ubuntu.current_series_link.clone().ok_or_else(|| {
            SourceError::parse(&url, "no current_series_link in the distribution")
        })?;
        let (_, entries) = self.series_entries(&ubuntu).await?;
        let listed = entries.iter().find(|s| {
            s.self_link
                .as_deref()
                .is_some_and(|l| same_link(l, &current))
        });
        let series: SeriesEntry = match listed {
            Some(s) => s.clone(),
            None => {
                let lp = self.clone();
                let link = current.clone();
                (*self
                    .cached(&current, || async move {
                        lp.get::<SeriesEntry>(&link, &[]).await
                    })
                    .await?)
                    .clone()
            }
        };
        Ok((current, series))
    }

    /// The `ubuntu` distribution entry (through the cache).
    async fn distribution(&self) -> Result<Arc<DistributionEntry>, SourceError> {
        let url = self.resource_url("ubuntu");
        let lp = self.clone();
        let u = url.clone();
        self.cached(&url, || async move {
            lp.get::<DistributionEntry>(&u, &[]).await
        })
        .await
    }

    /// The distribution's series collection link and entries (through the
    /// cache).
    async fn series_entries(
        &self,
        ubuntu: &DistributionEntry,
    ) -> Result<(String, Arc<Vec<SeriesEntry>>), SourceError> {
        let url = self.resource_url("ubuntu");
        let link = ubuntu.series_collection_link.clone().ok_or_else(|| {
            SourceError::parse(&url, "no series_collection_link in the distribution")
        })?;
        let lp = self.clone();
        let l = link.clone();
        let entries = self
            .cached(&link, || async move {
                lp.collection::<SeriesEntry>(&l, &[]).await
            })
            .await?;
        Ok((link, entries))
    }

    /// `fetch()` once per run for `key` when the client has a cache, else
    /// every time.
    async fn cached<T, F, Fut>(&self, key: &str, fetch: F) -> Result<Arc<T>, SourceError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, SourceError>>,
    {
        match &self.cache {
            Some(cache) => cache.get_or_fetch(key, fetch).await,
            None => fetch().await.map(Arc::new),
        }
    }

    /// GETs `url` and returns its body, retrying transient failures.
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, SourceError> {
        let mut attempt = 0u32;
        loop {
            let result = self
                .http
                .fetch(
                    self.http
                        .client()
                        .get(url)
                        .header(reqwest::header::ACCEPT, "application/json"),
                )
                .await;
            match result {
                Ok(answer) => return Ok(answer.body),
                Err(e) if self.retry.allows(attempt) && is_transient(&e) => {
                    let delay = self.retry.delay(attempt);
                    tracing::debug!("{e}; retrying in {} ms", delay.as_millis());
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Deserializes a page's entries into `out`; a bad entry is an error
/// naming the page and the entry's index.
fn deserialize_entries<T: DeserializeOwned>(
    url: &str,
    entries: Vec<serde_json::Value>,
    out: &mut Vec<T>,
) -> Result<(), SourceError> {
    out.reserve(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let entry = T::deserialize(e).map_err(|err| {
            SourceError::parse(url, format!("entry {i} is not as expected: {err}"))
        })?;
        out.push(entry);
    }
    Ok(())
}

/// The `ws.start` of every page after the first of a collection of `total`
/// entries whose first page (`first`) held `got` entries and links to
/// `next`: the page size is `next`'s `ws.size` (else `got`).
fn page_starts(first: &str, next: &str, got: usize, total: u64) -> Result<Vec<u64>, SourceError> {
    let parsed = url::Url::parse(next).map_err(|e| {
        SourceError::parse(first, format!("invalid next_collection_link {next:?}: {e}"))
    })?;
    let param = |k: &str| {
        parsed
            .query_pairs()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let size = param("ws.size").unwrap_or(got as u64);
    let start = param("ws.start").unwrap_or(got as u64);
    if size == 0 || start == 0 {
        return Err(SourceError::parse(
            first,
            format!(
                "next_collection_link {next:?} does not move on (ws.size {size}, ws.start {start})"
            ),
        ));
    }
    if total.saturating_sub(start) / size >= MAX_PAGES as u64 {
        return Err(SourceError::parse(
            first,
            format!("total_size {total} is more than {MAX_PAGES} pages"),
        ));
    }
    // At least the page `next` names, even if total_size says otherwise.
    let end = total.max(start + 1);
    Ok((start..end).step_by(size as usize).collect())
}

/// `url` with its `ws.start` set to `start`.
fn with_start(url: &str, start: u64) -> Result<String, SourceError> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| SourceError::parse(url, format!("invalid collection link: {e}")))?;
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "ws.start")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = parsed.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        q.append_pair("ws.start", &start.to_string());
    }
    Ok(parsed.to_string())
}

fn is_absolute(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Two links to the same resource (ignoring a trailing `/`).
fn same_link(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Worth trying again: a server error, rate limiting, or a connection that
/// dropped. Not a 4xx (it would fail again), nor a host out of reach
/// ([`SourceError::Unreachable`]: no answer to wait for), nor a timeout
/// (the request already took the whole timeout; a retry would multiply it).
pub fn is_transient(e: &SourceError) -> bool {
    match e {
        SourceError::HttpStatus { status, .. } => *status >= 500 || *status == 429,
        // Not a body over [http] max_body either: it would be as large again.
        SourceError::Request { message, .. } => {
            !message.starts_with("timed out") && !message.starts_with("body larger than")
        }
        _ => false,
    }
}

fn parse_json<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, SourceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SourceError::parse(
            url,
            "empty body where JSON was expected",
        ));
    }
    serde_json::from_slice(body).map_err(|e| SourceError::parse(url, format!("invalid JSON: {e}")))
}

/// The answer of a `total_size_link`: a bare integer.
fn parse_count(url: &str, body: &[u8]) -> Result<u64, SourceError> {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    t.parse::<u64>().map_err(|_| {
        SourceError::parse(
            url,
            format!(
                "expected a bare integer, got {:?}",
                t.chars().take(80).collect::<String>()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(base: &str) -> Launchpad {
        let http = Http::new(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        Launchpad::new(http, base)
    }

    #[test]
    fn resource_urls_are_relative_to_any_base() {
        assert_eq!(
            lp("https://api.launchpad.net/devel/").resource_url("ubuntu"),
            "https://api.launchpad.net/devel/ubuntu"
        );
        assert_eq!(
            lp("https://api.launchpad.net/devel").resource_url("~motu"),
            "https://api.launchpad.net/devel/~motu"
        );
        assert_eq!(
            lp("http://h:1/lp/devel/").resource_url("/ubuntu/tumbling"),
            "http://h:1/lp/devel/ubuntu/tumbling"
        );
        assert_eq!(lp("http://h/").resource_url("https://x/y"), "https://x/y");
    }

    #[test]
    fn params_are_encoded_and_appended() {
        let l = lp("https://api.launchpad.net/devel/");
        let u = l
            .url_with(
                "~ubuntu-archive",
                &[
                    ("ws.op", "searchTasks"),
                    (
                        "assignee",
                        "https://api.launchpad.net/devel/~ubuntu-archive",
                    ),
                ],
            )
            .unwrap();
        assert_eq!(
            u,
            "https://api.launchpad.net/devel/~ubuntu-archive?ws.op=searchTasks&assignee=https%3A%2F%2Fapi.launchpad.net%2Fdevel%2F%7Eubuntu-archive"
        );
        let u = l
            .url_with("https://x/c?ws.start=2", &[("ws.size", "1")])
            .unwrap();
        assert_eq!(u, "https://x/c?ws.start=2&ws.size=1");
        assert!(l.url_with("http://[bad", &[]).is_err());
    }

    #[test]
    fn transient_errors() {
        let status = |s| SourceError::HttpStatus {
            url: "u".into(),
            status: s,
            message: String::new(),
        };
        assert!(is_transient(&status(500)));
        assert!(is_transient(&status(503)));
        assert!(is_transient(&status(429)));
        assert!(!is_transient(&status(404)));
        assert!(!is_transient(&status(400)));
        let req = |m: &str| SourceError::Request {
            url: "u".into(),
            message: m.into(),
        };
        assert!(is_transient(&req("could not connect: refused")));
        assert!(!is_transient(&req("timed out")));
        assert!(!is_transient(&req(&crate::sources::http::too_large(10))));
        assert!(!is_transient(&SourceError::RetryLater {
            url: "u".into(),
            message: "HTTP 429: come back in 3600 s".into()
        }));
        assert!(!is_transient(&SourceError::parse("u", "bad json")));
        // A host out of reach (a name that does not resolve, a connection
        // refused) would be out of reach again: offline, retries with
        // backoff only made the first command slow.
        assert!(!is_transient(&SourceError::Unreachable {
            url: "u".into(),
            message: "cannot resolve api.launchpad.net".into()
        }));
    }

    #[test]
    fn counts_are_bare_integers() {
        assert_eq!(parse_count("u", b"412\n").unwrap(), 412);
        assert!(parse_count("u", b"<html>").is_err());
        assert!(parse_count("u", b"-1").is_err());
    }
}

/// Property tests: Launchpad's JSON bodies and collection sizes read from
/// any bytes, mutated recordings included.
#[cfg(test)]
mod props {
    use super::*;
    use crate::support::proptest_support::{CASES, mutated};
    use proptest::prelude::*;

    fn any_body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            mutated(include_str!(
                "../../tests/fixtures/launchpad/devel/~ubuntu-dev.json"
            ))
            .prop_map(String::into_bytes),
            mutated(include_str!(
                "../../tests/fixtures/launchpad/devel/ubuntu.json"
            ))
            .prop_map(String::into_bytes),
            "[0-9]{0,25}|-?[0-9.e+]{0,12}|\"[0-9]{0,5}\"".prop_map(String::into_bytes),
        ]
    }

    /// JSON without floats (whose text need not read back to the same
    /// bits), nested a few levels.
    fn exact_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]
        /// Any body: read as JSON exactly when serde reads it and it is not
        /// blank; read as a count exactly when it is a bare decimal
        /// integer, blanks around it allowed. Errors name the URL.
        #[test]
        fn bodies_read_as_json_or_counts_exactly_when_they_are(body in any_body()) {
            let json = parse_json::<serde_json::Value>("http://lp/x", &body);
            let serde = serde_json::from_slice::<serde_json::Value>(&body).ok();
            let blank = body.iter().all(u8::is_ascii_whitespace);
            match &json {
                Ok(v) => prop_assert_eq!(Some(v), serde.as_ref()),
                Err(e) => {
                    prop_assert!(blank || serde.is_none());
                    prop_assert!(e.to_string().contains("http://lp/x"), "{}", e);
                }
            }
            // The count, by hand: an optional `+`, then decimal digits that
            // fit in 64 bits.
            let text = String::from_utf8_lossy(&body);
            let t = text.trim();
            let digits = t.strip_prefix('+').unwrap_or(t);
            let model = if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                digits.bytes().try_fold(0u64, |n, b| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            };
            match parse_count("http://lp/x", &body) {
                Ok(n) => prop_assert_eq!(Some(n), model, "{:?}", t),
                Err(e) => {
                    prop_assert_eq!(model, None, "{:?}: {}", t, e);
                    prop_assert!(e.to_string().contains("http://lp/x"), "{}", e);
                }
            }
        }

        /// JSON written out (compact or pretty, blanks around) reads back
        /// to the same value; a count written out reads back to itself.
        #[test]
        fn written_bodies_read_back(v in exact_json(), n in any::<u64>(), pretty in any::<bool>(), pad in "[ \t\r\n]{0,3}") {
            let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.expect("serialises");
            let body = format!("{pad}{text}{pad}");
            prop_assert_eq!(parse_json::<serde_json::Value>("u", body.as_bytes()).ok(), Some(v));
            prop_assert_eq!(parse_count("u", format!("{pad}{n}{pad}").as_bytes()).ok(), Some(n));
        }
    }
}
