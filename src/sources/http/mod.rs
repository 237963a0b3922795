//! The HTTP client collectors use: one `reqwest::Client` per process
//! (connections kept alive, gzip accepted, a User-Agent naming us, a connect
//! and a total timeout), with a request counter per collector run, a debug
//! log line per request, and a per-host limit on requests in flight.
//!
//! A request goes through layers around one `Http::send`, outermost
//! first:
//! - `retry.rs`: a 429 or 503 with `Retry-After` waited for and tried again;
//! - `limit.rs`: the per-host limit ([`DEFAULT_MAX_PER_HOST`], `[http]
//!   max_per_host`), one semaphore per origin (scheme, host, port), shared
//!   by every handle of the process ([`Http::for_run`] keeps it):
//!   collectors fire independent requests together and the limit keeps the
//!   upstream hosts from seeing more than that many at once. A permit is
//!   held from sending the request until its body has been read, a
//!   streamed one (`stream.rs`) included;
//! - `record.rs`: record/replay (`run --record/--replay`);
//! - `conditional.rs`: `If-None-Match` / `If-Modified-Since` for the
//!   documents kept (`kept.rs`);
//! - the HTTP/2 gate (`limit.rs`): a cold `https` host's first request
//!   alone, so a burst shares its connection;
//! - `body.rs`: the answer read up to the body cap (`[http] max_body`),
//!   and its status judged.

mod body;
mod conditional;
mod errors;
pub mod kept;
mod limit;
pub mod range;
mod record;
mod resolve;
mod retry;
mod stream;

pub use body::too_large;
use errors::request_error;
use kept::AnswerCache;
use limit::{GATE_WAIT, Host, HostLimits};
pub use range::ContentRange;
pub use resolve::{UNRESOLVED_FOR, Unresolved, resolves};
pub use retry::parse_retry_after;
pub use stream::Stream;

use crate::model::timespan::TimeSpan;
use crate::sources::SourceError;
use crate::sources::tape::Tape;
use crate::support::text::redact_url;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests in flight at once to one host unless configured otherwise.
pub const DEFAULT_MAX_PER_HOST: usize = 8;

/// The largest body read unless configured otherwise (`[http] max_body`),
/// counted after decompression. The biggest documents we read (britney's
/// `update_excuses_by_team.yaml`, a 300-entry Launchpad page, Launchpad's
/// 2 MB WADL) are a few MB to a few tens of MB; a body over this is a
/// misbehaving server (a gzip bomb, an endless answer), not a report.
pub const DEFAULT_MAX_BODY: &str = "64MB";
const DEFAULT_MAX_BODY_BYTES: u64 = 64_000_000;

/// `[http]`: how collectors talk to upstream sources.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Time allowed to establish a connection.
    pub connect_timeout: TimeSpan,
    /// Time allowed for a whole request, body included.
    pub timeout: TimeSpan,
    /// Requests in flight at once to one host (scheme, host and port), over
    /// all collectors of the process: independent requests go out together
    /// up to this many, the rest wait their turn. Keeps us polite to
    /// Launchpad and the report hosts; at least 1.
    pub max_per_host: usize,
    /// The largest upstream body (after decompression) or rsync listing
    /// read, as a size (`64MB`, `512MiB`): over it that collector fails.
    pub max_body: crate::support::setting::Size,
}

impl HttpConfig {
    /// `max_body` in bytes (read when the configuration was).
    pub fn max_body_bytes(&self) -> Result<u64, String> {
        self.max_body.bytes()
    }
}

/// `[http]` typed, what a client is built from ([`Http::from_settings`]):
/// spans as durations, the body cap in bytes. Built once from the
/// section ([`TryFrom<&HttpConfig>`]), which it validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_per_host: usize,
    pub max_body: u64,
}

/// What is wrong with an `[http]` section, or why its client cannot be
/// built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http.max_body: {0}")]
    MaxBody(String),
    #[error("http.max_per_host = 0: at least 1 request per host must be allowed")]
    MaxPerHost,
    #[error(transparent)]
    Client(#[from] crate::support::tls::ClientError),
}

/// For the callers that still report errors as text.
impl From<HttpError> for String {
    fn from(e: HttpError) -> String {
        e.to_string()
    }
}

impl TryFrom<&HttpConfig> for HttpSettings {
    type Error = HttpError;

    /// The errors name the key as the configuration's check does
    /// (`http.max_body: invalid size ...`), `max_body` first.
    fn try_from(c: &HttpConfig) -> Result<Self, HttpError> {
        let max_body = c.max_body_bytes().map_err(HttpError::MaxBody)?;
        if c.max_per_host == 0 {
            return Err(HttpError::MaxPerHost);
        }
        Ok(HttpSettings {
            connect_timeout: c.connect_timeout.as_duration(),
            timeout: c.timeout.as_duration(),
            max_per_host: c.max_per_host,
            max_body,
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: TimeSpan::from_secs(10),
            timeout: TimeSpan::from_secs(60),
            max_per_host: DEFAULT_MAX_PER_HOST,
            max_body: DEFAULT_MAX_BODY.into(),
        }
    }
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    requests: Arc<AtomicU64>,
    /// Answers (of any status) received through this client and every
    /// handle made from it: zero after a run means no upstream was reached.
    answers: Arc<AtomicU64>,
    hosts: Arc<HostLimits>,
    /// Requests and failed requests per host through this handle (one
    /// collector run): the `ubuntu_metrics_http` self-metrics.
    per_host: Arc<Mutex<BTreeMap<String, HostCount>>>,
    /// Bytes of the bodies received (for all runs: not reset by
    /// [`Http::for_run`]); a `304` adds none.
    received: Arc<AtomicU64>,
    /// Answers kept for conditional requests, when there is a state
    /// directory to keep them in.
    conditional: Option<Arc<AnswerCache>>,
    max_body: u64,
    /// Until when this handle (one collector run) may wait for a server
    /// that asks to come back later (`Retry-After`): its creation plus the
    /// request timeout.
    wait_until: Instant,
    timeout: Duration,
    /// Time allowed to connect: also the longest a request waits at a cold
    /// host's gate, if shorter than [`GATE_WAIT`].
    connect_timeout: Duration,
    /// A recording being made or replayed (`run --record/--replay`).
    tape: Option<Arc<Tape>>,
}

/// What one run asked of one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCount {
    /// Requests sent (each retry is one).
    pub requests: u64,
    /// Requests that failed: no answer, an error status, a body that could
    /// not be read.
    pub errors: u64,
}

/// The host of `url` as the self-metrics name it: `launchpad.net`, or
/// `127.0.0.1:8080` when the port is not the scheme's default.
pub fn host_key(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// A complete answer with a success status: its status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// The tail of a document fetched with a `Range: bytes=-N` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    pub body: String,
    /// True when the body starts at byte 0 of the document (a 200 answer, or
    /// a 206 whose range starts at 0): its first line is complete.
    pub from_start: bool,
}

impl Http {
    /// A client with [`DEFAULT_MAX_PER_HOST`] requests per host.
    pub fn new(connect_timeout: Duration, timeout: Duration) -> Result<Http, HttpError> {
        let client = crate::support::tls::ClientSpec::new("the HTTP client", timeout)
            .connect_timeout(connect_timeout)
            .build_with(|b| b.dns_resolver(resolve::Resolver).gzip(true))?;
        Ok(Http {
            client,
            requests: Arc::new(AtomicU64::new(0)),
            answers: Arc::new(AtomicU64::new(0)),
            hosts: Arc::new(HostLimits::new(DEFAULT_MAX_PER_HOST)),
            per_host: Arc::default(),
            received: Arc::default(),
            conditional: None,
            max_body: DEFAULT_MAX_BODY_BYTES,
            wait_until: Instant::now() + timeout,
            timeout,
            connect_timeout,
            tape: None,
        })
    }

    /// The client `[http]` describes, typed.
    pub fn from_settings(s: &HttpSettings) -> Result<Http, HttpError> {
        Ok(Http::new(s.connect_timeout, s.timeout)?
            .with_max_per_host(s.max_per_host)
            .with_max_body(s.max_body))
    }

    /// The client the `[http]` section describes.
    pub fn from_config(config: &HttpConfig) -> Result<Http, HttpError> {
        Http::from_settings(&HttpSettings::try_from(config)?)
    }

    /// The same client reading bodies (and rsync listings) of at most
    /// `max` bytes after decompression: a longer one fails the request with
    /// "body larger than N", having buffered at most `max` + one chunk.
    pub fn with_max_body(mut self, max: u64) -> Http {
        self.max_body = max;
        self
    }

    /// The largest body read, in bytes.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// The same client with at most `max` (at least 1) requests in flight
    /// per host, counted apart from the handles made before.
    pub fn with_max_per_host(mut self, max: usize) -> Http {
        self.hosts = Arc::new(HostLimits::new(max));
        self
    }

    /// The per-host limit.
    pub fn max_per_host(&self) -> usize {
        self.hosts.max
    }

    /// The same client and per-host limits with a fresh request counter.
    pub fn for_run(&self) -> Http {
        Http {
            client: self.client.clone(),
            requests: Arc::new(AtomicU64::new(0)),
            answers: self.answers.clone(),
            hosts: self.hosts.clone(),
            per_host: Arc::default(),
            received: self.received.clone(),
            conditional: self.conditional.clone(),
            max_body: self.max_body,
            wait_until: Instant::now() + self.timeout,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            tape: self.tape.clone(),
        }
    }

    /// The same client recording every answer to `tape`, or (a replay)
    /// answering from it with no network.
    pub fn with_tape(mut self, tape: Arc<Tape>) -> Http {
        self.tape = Some(tape);
        self
    }

    /// The recording this client makes or replays, if any.
    pub fn tape(&self) -> Option<Arc<Tape>> {
        self.tape.clone()
    }

    /// Upstream requests made through this handle so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests and failures per host through this handle, by host.
    pub fn per_host(&self) -> BTreeMap<String, HostCount> {
        self.per_host
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The same client asking conditionally for the documents whose last
    /// answer (kept in `dir`) had an `ETag` or a `Last-Modified`.
    pub fn with_conditional_requests(mut self, dir: &std::path::Path) -> Http {
        self.conditional = Some(Arc::new(AnswerCache::open(dir)));
        self
    }

    /// Bytes of the bodies received through this client and every handle
    /// made from it (a `304` adds none).
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Answers of any status received through this client and every handle
    /// made from it (for all runs: not reset by [`Http::for_run`]).
    pub fn answers(&self) -> u64 {
        self.answers.load(Ordering::Relaxed)
    }

    /// The underlying client, to build requests for [`Http::fetch`].
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Counts a request to `url`: in the run's total and in its host's.
    fn count_request(&self, url: &reqwest::Url) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut map = self.per_host.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(host_key(url)).or_default().requests += 1;
    }

    /// One attempt of [`Http::fetch`], within the host's limit, counted
    /// and logged: its result, and the `Retry-After` wait of a 429 or 503
    /// answer that has one.
    async fn attempt(
        &self,
        req: reqwest::Request,
    ) -> (Result<Answer, SourceError>, Option<Duration>) {
        let url = req.url().to_string();
        let key = host_key(req.url());
        let host = self.hosts.for_url(req.url());
        let queued = Instant::now();
        let permit = host.permit().await;
        let waited = queued.elapsed();
        self.count_request(req.url());
        let started = Instant::now();
        let answer = match self.replayed_or_sent(&host, req).await {
            Err(e) => (Err(e), None),
            Ok(reply) => {
                self.answers.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    url = %redact_url(&url),
                    status = reply.status.as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    waited_ms = waited.as_millis() as u64,
                    "GET"
                );
                self.judge(url, reply)
            }
        };
        drop(permit);
        if answer.0.is_err() {
            let mut map = self.per_host.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key).or_default().errors += 1;
        }
        answer
    }

    /// The one send: `req` over the network, through the host's HTTP/2
    /// gate (a cold `https` host's first request goes alone, so that a
    /// burst shares its connection).
    async fn send(
        &self,
        host: &Host,
        req: reqwest::Request,
    ) -> Result<reqwest::Response, SourceError> {
        let url = req.url().to_string();
        let opening = if req.url().scheme() == "https" {
            host.open(self.connect_timeout.min(GATE_WAIT)).await
        } else {
            None
        };
        let answer = self.client.execute(req).await;
        host.attempted(
            answer
                .as_ref()
                .is_ok_and(|r| r.version() == reqwest::Version::HTTP_2),
        );
        drop(opening);
        answer.map_err(|e| request_error(&url, &e))
    }

    /// GETs a document as bytes.
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, SourceError> {
        Ok(self.fetch(self.client.get(url)).await?.body)
    }

    /// GETs a text document (UTF-8; invalid sequences are replaced).
    pub async fn get_text(&self, url: &str) -> Result<String, SourceError> {
        let bytes = self.get_bytes(url).await?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// GETs and parses a JSON document.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, SourceError> {
        let bytes = self.get_bytes(url).await?;
        if bytes.is_empty() {
            return Err(SourceError::parse(
                url,
                "empty body where JSON was expected",
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| SourceError::parse(url, format!("invalid JSON: {e}")))
    }

    /// GETs the last `bytes` bytes of a document (`Range: bytes=-N`).
    pub async fn get_tail(&self, url: &str, bytes: u64) -> Result<Tail, SourceError> {
        let answer = self
            .fetch(
                self.client
                    .get(url)
                    .header(reqwest::header::RANGE, format!("bytes=-{bytes}")),
            )
            .await?;
        let from_start = answer.status != reqwest::StatusCode::PARTIAL_CONTENT
            || ContentRange::of(&answer.headers, url)?.first == 0;
        Ok(Tail {
            body: String::from_utf8_lossy(&answer.body).into_owned(),
            from_start,
        })
    }
}

/// What a JSON value is, for messages ("expected an object, found a
/// string").
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first line of an error body, shortened: enough to quote a server's
/// message without dumping an HTML page into the log.
pub fn summarize_body(body: &str) -> String {
    let line = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut s: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// Joins a relative path to a base URL given in the configuration. The base
/// is treated as a directory whether or not it ends in `/`.
pub fn join(base: &str, rel: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// Percent-encodes one path segment (e.g. a report name holding `,` or `=`).
pub fn encode_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_typed_once_and_checked() {
        let c = HttpConfig::default();
        let s = HttpSettings::try_from(&c).unwrap();
        assert_eq!(s.max_body, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(
            crate::support::text::parse_size(DEFAULT_MAX_BODY),
            Ok(DEFAULT_MAX_BODY_BYTES)
        );
        assert_eq!(s.max_per_host, DEFAULT_MAX_PER_HOST);
        assert_eq!(s.timeout, Duration::from_secs(60));
        let e = HttpSettings::try_from(&HttpConfig {
            max_body: "lots".into(),
            ..HttpConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("http.max_body: invalid size \"lots\""), "{e}");
        let e = HttpSettings::try_from(&HttpConfig {
            max_per_host: 0,
            ..HttpConfig::default()
        })
        .unwrap_err();
        assert!(matches!(e, HttpError::MaxPerHost), "{e}");
    }
}
