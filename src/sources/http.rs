//! The HTTP client collectors use: one `reqwest::Client` per process
//! (connections kept alive, gzip accepted, a User-Agent naming us, a connect
//! and a total timeout), with a request counter per collector run, a debug
//! log line per request, and a per-host limit on requests in flight.
//!
//! The limit ([`DEFAULT_MAX_PER_HOST`], `[http] max_per_host`) is one
//! semaphore per origin (scheme, host, port), shared by every handle of the
//! process ([`Http::for_run`] keeps it): collectors fire independent
//! requests together and the limit keeps the upstream hosts from seeing
//! more than that many at once. A permit is held from sending the request
//! until its body has been read.

use crate::model::timespan::TimeSpan;
use crate::sources::SourceError;
use crate::sources::conditional::{AnswerCache, Validators};
use crate::sources::tape::Tape;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The User-Agent of every request the program makes.
pub use crate::support::tls::USER_AGENT;

/// Requests in flight at once to one host unless configured otherwise.
pub const DEFAULT_MAX_PER_HOST: usize = 8;

/// The largest body read unless configured otherwise (`[http] max_body`),
/// counted after decompression. The biggest documents we read (britney's
/// `update_excuses_by_team.yaml`, a 300-entry Launchpad page, Launchpad's
/// 2 MB WADL) are a few MB to a few tens of MB; a body over this is a
/// misbehaving server (a gzip bomb, an endless answer), not a report.
pub const DEFAULT_MAX_BODY: &str = "64MB";
const DEFAULT_MAX_BODY_BYTES: u64 = 64_000_000;

/// `Retry-After` waits honoured per request before giving up.
const MAX_RETRY_AFTER_WAITS: u32 = 3;

/// How much of an error answer's body is read to quote it.
const MAX_ERROR_BODY: u64 = 64 * 1024;

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
    /// `max_body` in bytes.
    pub fn max_body_bytes(&self) -> Result<u64, String> {
        self.max_body.bytes()
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

/// One [`Host`] per origin, created on first use.
struct HostLimits {
    max: usize,
    semaphores: Mutex<HashMap<String, Arc<Host>>>,
}

/// How long after its last answer a host's connection is taken to be
/// still open (Apache closes an idle keep-alive connection after 5 s).
const WARM: Duration = Duration::from_secs(4);

/// The longest a request waits at a cold host's gate (or the connect
/// timeout, if shorter): enough for a TCP and TLS handshake; a first
/// request slower than that (a large or slow document) no longer holds the
/// others back, which then open connections of their own as before.
const GATE_WAIT: Duration = Duration::from_secs(1);

/// One origin: the per-host limit, and the gate that lets a burst of
/// requests to a host that may speak HTTP/2 share one connection.
///
/// Requests that go out together to a host with no open connection each
/// open one: ALPN says whether the host speaks HTTP/2 only once a TLS
/// handshake is done. So while an `https` host is cold (not answered yet,
/// or its last answer was HTTP/2 and more than [`WARM`] ago) the first
/// request goes alone through the gate and the others wait for its answer
/// (or its failure), at most [`GATE_WAIT`]; then they go out together,
/// over that one HTTP/2 connection, or over up to `max_per_host` HTTP/1.1
/// connections. A host that answered HTTP/1.1 is never gated again, and a
/// plain `http` one never is (HTTP/2 is only offered by TLS).
struct Host {
    semaphore: Arc<Semaphore>,
    gate: tokio::sync::Mutex<()>,
    /// The last attempt's end and whether it was answered over HTTP/2.
    last: Mutex<Option<(Instant, bool)>>,
}

impl Host {
    fn cold(&self) -> bool {
        match *self.last.lock().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some((_, false)) => false,
            Some((at, true)) => at.elapsed() > WARM,
        }
    }

    /// Waits at the gate if the host is cold, at most `at_most`: the
    /// guard (held until the attempt ends, see [`Host::attempted`]) when
    /// this request opens the connection, None when it may go without (the
    /// host answered meanwhile, or the first request is slow: a host that
    /// hangs costs a burst `at_most` more, not a second timeout).
    async fn open(&self, at_most: Duration) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if !self.cold() {
            return None;
        }
        let guard = tokio::time::timeout(at_most, self.gate.lock()).await.ok()?;
        // Another request opened it while this one waited.
        self.cold().then_some(guard)
    }

    /// An attempt ended: answered over HTTP/2 or not (an HTTP/1.x answer,
    /// or a failure, which opens the gate as well: a host that cannot be
    /// reached must not make the others fail one after another).
    fn attempted(&self, http2: bool) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), http2));
    }
}

impl HostLimits {
    fn new(max: usize) -> HostLimits {
        HostLimits {
            max: max.max(1),
            semaphores: Mutex::new(HashMap::new()),
        }
    }

    fn for_url(&self, url: &reqwest::Url) -> Arc<Host> {
        let key = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut map = self.semaphores.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(Host {
                    semaphore: Arc::new(Semaphore::new(self.max)),
                    gate: tokio::sync::Mutex::new(()),
                    last: Mutex::new(None),
                })
            })
            .clone()
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
    pub fn new(connect_timeout: Duration, timeout: Duration) -> Result<Http, String> {
        let client = crate::support::tls::client_builder()
            .dns_resolver(Resolver)
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .gzip(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
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

    /// The client the `[http]` section describes.
    pub fn from_config(config: &HttpConfig) -> Result<Http, String> {
        Ok(Http::new(
            config.connect_timeout.as_duration(),
            config.timeout.as_duration(),
        )?
        .with_max_per_host(config.max_per_host)
        .with_max_body(
            config
                .max_body_bytes()
                .map_err(|e| format!("http.max_body: {e}"))?,
        ))
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

    /// Sends a request within the per-host limit, counts and logs it, reads
    /// the whole body (at most `max_body` bytes), and turns an HTTP error
    /// status into [`SourceError::HttpStatus`] quoting (the start of)
    /// the body.
    ///
    /// A 429 or 503 with `Retry-After` (seconds or an HTTP date) is waited
    /// for and tried again (up to 3 times) when the wait ends within the
    /// run's budget (the request timeout, counted from the run's start);
    /// otherwise it is [`SourceError::RetryLater`], saying when the
    /// server asked to come back, which callers do not retry.
    pub async fn fetch(&self, req: reqwest::RequestBuilder) -> Result<Answer, SourceError> {
        let req = req
            .build()
            .map_err(|e| SourceError::Invalid(format!("bad request: {e}")))?;
        let mut waits = 0;
        loop {
            let again = req.try_clone();
            let (result, retry_after) = self.fetch_once(req_or(again, &req)?).await;
            let Err(SourceError::HttpStatus {
                url,
                status,
                message,
            }) = result
            else {
                return result;
            };
            let Some(wait) = retry_after else {
                return Err(SourceError::HttpStatus {
                    url,
                    status,
                    message,
                });
            };
            let back_at = chrono::Utc::now()
                + chrono::Duration::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
            let back_at = back_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let left = self.wait_until.saturating_duration_since(Instant::now());
            if waits >= MAX_RETRY_AFTER_WAITS || wait > left {
                let why = if waits >= MAX_RETRY_AFTER_WAITS {
                    format!("still answering so after {waits} waits as asked")
                } else {
                    format!(
                        "beyond this run's budget ({} s left of [http] timeout = {} s)",
                        left.as_secs(),
                        self.timeout.as_secs()
                    )
                };
                return Err(SourceError::RetryLater {
                    url,
                    message: format!(
                        "HTTP {status}: the server asked to come back in {} s (Retry-After), at {back_at}: {why}; not retried before the next run{}",
                        wait.as_secs(),
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(" ({message})")
                        }
                    ),
                });
            }
            tracing::info!(
                "{url}: HTTP {status}: waiting {} ms as asked (Retry-After) before trying again",
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
            waits += 1;
        }
    }

    /// One attempt of [`Http::fetch`]: its result, and the `Retry-After`
    /// wait of a 429 or 503 answer that has one.
    async fn fetch_once(
        &self,
        req: reqwest::Request,
    ) -> (Result<Answer, SourceError>, Option<Duration>) {
        let host = host_key(req.url());
        let answer = self.fetch_counted(req).await;
        if answer.0.is_err() {
            let mut map = self.per_host.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(host).or_default().errors += 1;
        }
        answer
    }

    async fn fetch_counted(
        &self,
        mut req: reqwest::Request,
    ) -> (Result<Answer, SourceError>, Option<Duration>) {
        let url = req.url().to_string();
        let host = self.hosts.for_url(req.url());
        let queued = Instant::now();
        let _permit = host
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the per-host semaphores are never closed");
        let waited = queued.elapsed();
        self.count_request(req.url());
        let started = Instant::now();
        let tape_key = self.tape.as_ref().map(|_| {
            crate::sources::tape::key(
                req.method().as_str(),
                &url,
                req.headers()
                    .get(reqwest::header::RANGE)
                    .and_then(|v| v.to_str().ok()),
            )
        });
        let (status, headers, body) = match self
            .tape
            .as_ref()
            .zip(tape_key.as_ref())
            .and_then(|(t, k)| t.get_http(k, self.max_body))
        {
            Some(Ok((status, headers, mut body))) => (
                reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
                headers,
                // A recorded body is held to the cap as a live one is.
                if body.len() as u64 > self.max_body {
                    body.truncate(usize::try_from(self.max_body).unwrap_or(usize::MAX));
                    Err(BodyError::TooLarge(body))
                } else {
                    Ok(body)
                },
            ),
            Some(Err(message)) => return (Err(SourceError::Request { url, message }), None),
            None => {
                // A whole document asked before with validators: ask
                // whether it changed.
                let cache = self.conditional.as_ref().filter(|_| {
                    req.method() == reqwest::Method::GET
                        && !req.headers().contains_key(reqwest::header::RANGE)
                });
                let known = cache.and_then(|c| c.validators(&url));
                if let Some(v) = &known {
                    let h = req.headers_mut();
                    if let Some(e) = v.etag.as_deref().and_then(|e| e.parse().ok()) {
                        h.insert(reqwest::header::IF_NONE_MATCH, e);
                    }
                    if let Some(m) = v.last_modified.as_deref().and_then(|m| m.parse().ok()) {
                        h.insert(reqwest::header::IF_MODIFIED_SINCE, m);
                    }
                }
                let retry = known.as_ref().and_then(|_| req.try_clone());
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
                let mut resp = match answer {
                    Ok(r) => r,
                    Err(e) => return (Err(request_error(&url, &e)), None),
                };
                // A conditional request refused (431 for its validators, 400,
                // or the document gone): the entry goes, the next request is
                // a plain one. A 408 or 429 says nothing of the request.
                if known.is_some()
                    && resp.status().is_client_error()
                    && !matches!(resp.status().as_u16(), 408 | 429)
                    && let Some(c) = cache
                {
                    c.forget(&url);
                }
                let mut kept = None;
                if resp.status() == reqwest::StatusCode::NOT_MODIFIED
                    && let Some(v) = &known
                {
                    match cache.and_then(|c| c.body(&url)) {
                        Some(b) => kept = Some((v, b)),
                        // The kept body is gone: ask for the whole document.
                        None => {
                            let mut again = match retry {
                                Some(r) => r,
                                None => return (Err(SourceError::Request { url, message: "a 304 for a document no longer kept, and the request cannot be repeated".into() }), None),
                            };
                            again.headers_mut().remove(reqwest::header::IF_NONE_MATCH);
                            again
                                .headers_mut()
                                .remove(reqwest::header::IF_MODIFIED_SINCE);
                            self.count_request(again.url());
                            resp = match self.client.execute(again).await {
                                Ok(r) => r,
                                Err(e) => return (Err(request_error(&url, &e)), None),
                            };
                        }
                    }
                }
                let (status, headers, body) = match kept {
                    Some((v, b)) => {
                        // Not modified: the kept document, as a 200 answer.
                        let mut headers = reqwest::header::HeaderMap::new();
                        if let Some(ct) = v.content_type.as_deref().and_then(|c| c.parse().ok()) {
                            headers.insert(reqwest::header::CONTENT_TYPE, ct);
                        }
                        (reqwest::StatusCode::OK, headers, Ok(b))
                    }
                    None => {
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        let max = if status.is_success() {
                            self.max_body
                        } else {
                            MAX_ERROR_BODY.min(self.max_body)
                        };
                        let body = read_body(resp, max).await;
                        if let Ok(b) | Err(BodyError::TooLarge(b)) = &body {
                            self.received.fetch_add(b.len() as u64, Ordering::Relaxed);
                        }
                        let header = |n: reqwest::header::HeaderName| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        if let (Some(c), reqwest::StatusCode::OK, Ok(b)) = (cache, status, &body) {
                            let v = Validators {
                                url: url.clone(),
                                etag: header(reqwest::header::ETAG),
                                last_modified: header(reqwest::header::LAST_MODIFIED),
                                content_type: header(reqwest::header::CONTENT_TYPE),
                            };
                            if v.etag.is_some() || v.last_modified.is_some() {
                                c.store(&v, b);
                            }
                        }
                        (status, headers, body)
                    }
                };
                if let (Some(t), Some(k)) = (&self.tape, tape_key) {
                    match &body {
                        Ok(b) | Err(BodyError::TooLarge(b)) => {
                            t.put_http(k, status.as_u16(), &headers, b);
                        }
                        Err(BodyError::Failed(_)) => {}
                    }
                }
                (status, headers, body)
            }
        };
        self.answers.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            url = %redact_url(&url),
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            waited_ms = waited.as_millis() as u64,
            "GET"
        );
        if !status.is_success() {
            let retry_after = if matches!(status.as_u16(), 429 | 503) {
                headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
            } else {
                None
            };
            let body = match body {
                Ok(b) | Err(BodyError::TooLarge(b)) => b,
                Err(BodyError::Failed(_)) => Vec::new(),
            };
            return (
                Err(SourceError::HttpStatus {
                    url,
                    status: status.as_u16(),
                    message: if status == reqwest::StatusCode::NOT_MODIFIED {
                        "Not Modified, but this request asked for the whole document and no copy of it is kept to reuse (a 304 answers only a conditional request)".into()
                    } else {
                        summarize_body(&String::from_utf8_lossy(&body))
                    },
                }),
                retry_after,
            );
        }
        let body = match body {
            Ok(b) => b,
            Err(BodyError::TooLarge(_)) => {
                return (
                    Err(SourceError::Request {
                        url,
                        message: too_large(self.max_body),
                    }),
                    None,
                );
            }
            Err(BodyError::Failed(e)) => return (Err(request_error(&url, &e)), None),
        };
        (
            Ok(Answer {
                status,
                headers,
                body,
            }),
            None,
        )
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
        let from_start = if answer.status == reqwest::StatusCode::PARTIAL_CONTENT {
            // Content-Range: bytes FIRST-LAST/TOTAL
            let range = answer
                .headers
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let first = range
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|f| f.trim().parse::<u64>().ok());
            match first {
                Some(f) => f == 0,
                None => {
                    return Err(SourceError::parse(
                        url,
                        format!("206 answer with an unreadable Content-Range {range:?}"),
                    ));
                }
            }
        } else {
            true
        };
        Ok(Tail {
            body: String::from_utf8_lossy(&answer.body).into_owned(),
            from_start,
        })
    }
}

/// A document read as a stream (for documents too large to hold).
pub struct Stream {
    response: reqwest::Response,
    url: String,
    /// The offset in the document of the body's first byte: the `from`
    /// asked for, or 0 when the server ignored the `Range`.
    pub start: u64,
    /// The document's whole length, when the server said.
    pub total: Option<u64>,
    /// Longest wait for the next chunk.
    idle: Duration,
}

impl Stream {
    /// The next chunk of the body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        match tokio::time::timeout(self.idle, self.response.chunk()).await {
            Ok(r) => r
                .map(|c| c.map(|b| b.to_vec()))
                .map_err(|e| request_error(&self.url, &e)),
            Err(_) => Err(SourceError::Request {
                url: self.url.clone(),
                message: format!(
                    "no data for {} s (the [http] timeout between two chunks)",
                    self.idle.as_secs()
                ),
            }),
        }
    }
}

impl Http {
    /// GETs a document from byte `from` on (`Range: bytes=FROM-` when
    /// `from` > 0), uncompressed, as a stream: no total timeout and no body
    /// cap, but at most `[http] timeout` between two chunks.
    pub async fn get_stream(&self, url: &str, from: u64) -> Result<Stream, SourceError> {
        let mut req = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
            .timeout(Duration::from_secs(365 * 24 * 3600));
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        // (An invalid URL fails in send, before any request.)
        if let Ok(u) = reqwest::Url::parse(url) {
            self.count_request(&u);
        }
        let resp = req.send().await.map_err(|e| request_error(url, &e))?;
        self.answers.fetch_add(1, Ordering::Relaxed);
        let status = resp.status();
        if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(SourceError::HttpStatus {
                url: url.to_owned(),
                status: status.as_u16(),
                message: format!("the document is shorter than {from} bytes now"),
            });
        }
        if !status.is_success() {
            return Err(SourceError::HttpStatus {
                url: url.to_owned(),
                status: status.as_u16(),
                message: String::new(),
            });
        }
        let (start, total) = if status == reqwest::StatusCode::PARTIAL_CONTENT {
            // Content-Range: bytes FIRST-LAST/TOTAL
            let range = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let first = range
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|f| f.trim().parse::<u64>().ok());
            let total = range.rsplit('/').next().and_then(|t| t.parse::<u64>().ok());
            match first {
                Some(f) => (f, total),
                None => {
                    return Err(SourceError::parse(
                        url,
                        format!("206 answer with an unreadable Content-Range {range:?}"),
                    ));
                }
            }
        } else {
            (0, resp.content_length())
        };
        Ok(Stream {
            response: resp,
            url: url.to_owned(),
            start,
            total,
            idle: self.timeout,
        })
    }
}

/// The request to send: a clone made before, or (for a request that
/// cannot be cloned, i.e. one with a streamed body) an error.
fn req_or(
    clone: Option<reqwest::Request>,
    original: &reqwest::Request,
) -> Result<reqwest::Request, SourceError> {
    clone.ok_or_else(|| {
        SourceError::Invalid(format!(
            "{}: the request cannot be repeated (streamed body)",
            original.url()
        ))
    })
}

/// The wait a `Retry-After` value asks for at `now`: a number of seconds,
/// or an HTTP date (a date in the past is no wait). None when unreadable.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// Why a body was not read whole.
enum BodyError {
    /// Over the cap: what was read up to it (at most the cap).
    TooLarge(Vec<u8>),
    Failed(reqwest::Error),
}

/// The message of a body over the cap of `max` bytes.
pub fn too_large(max: u64) -> String {
    format!(
        "body larger than {max} bytes (the limit is [http] max_body; raise it if this document is genuine)"
    )
}

/// Reads the (decompressed) body chunk by chunk, stopping as soon as it
/// would exceed `max` bytes: never more than `max` + one chunk in memory,
/// however long the answer or however well it compresses.
async fn read_body(mut resp: reqwest::Response, max: u64) -> Result<Vec<u8>, BodyError> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    // Content-Length is the decoded length unless reqwest decompresses
    // (then it is absent): an announced length over the cap fails at once.
    if let Some(len) = resp.content_length() {
        match usize::try_from(len) {
            Ok(len) if len <= max => body.reserve_exact(len),
            _ => return Err(BodyError::TooLarge(body)),
        }
    }
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Failed)? {
        if chunk.len() > max - body.len() {
            let room = max - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Err(BodyError::TooLarge(body));
        }
        if body.capacity() - body.len() < chunk.len() {
            // Grow by doubling, but never past the cap.
            let want = (body.capacity() * 2).max(body.len() + chunk.len()).min(max);
            body.reserve_exact(want - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// How long a name that did not resolve is taken not to resolve: the
/// requests of a run (of every collector of `run --all`) to that host fail
/// at once with the first one's error instead of asking the resolver again
/// (offline, each lookup can take seconds), while the daemon still tries
/// again at its next runs.
pub const UNRESOLVED_FOR: Duration = Duration::from_secs(60);

/// A name that did not resolve: `cannot resolve HOST (why)`.
#[derive(Debug)]
struct Unresolved {
    host: String,
    why: String,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot resolve {}", self.host)?;
        if !self.why.is_empty() {
            write!(f, " ({})", self.why)?;
        }
        Ok(())
    }
}

impl std::error::Error for Unresolved {}

/// The names that did not resolve, when, and why: shared by every client
/// of the process and by rsync's calls ([`resolves`]).
static UNRESOLVED: Mutex<BTreeMap<String, (Instant, String)>> = Mutex::new(BTreeMap::new());

/// The addresses of `host` from the system's resolver (`getaddrinfo`, off
/// the runtime), or why it does not resolve: a name that failed less than
/// [`UNRESOLVED_FOR`] ago is not asked again.
async fn lookup(host: &str) -> Result<Vec<std::net::SocketAddr>, Unresolved> {
    let known = UNRESOLVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(host)
        .filter(|(at, _)| at.elapsed() < UNRESOLVED_FOR)
        .map(|(_, why)| why.clone());
    if let Some(why) = known {
        return Err(Unresolved {
            host: host.to_owned(),
            why,
        });
    }
    match tokio::net::lookup_host((host, 0)).await {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => {
            let why = e.to_string();
            let why = why
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&why)
                .to_owned();
            UNRESOLVED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(host.to_owned(), (Instant::now(), why.clone()));
            Err(Unresolved {
                host: host.to_owned(),
                why,
            })
        }
    }
}

/// `Err("cannot resolve HOST (why)")` when the host of `url` is a name
/// that does not resolve (asked once per [`UNRESOLVED_FOR`], as for HTTP):
/// for the callers of other programs (rsync), which would each ask the
/// resolver again. An address, or no host, is `Ok`.
pub async fn resolves(url: &str) -> Result<(), String> {
    let Some(host) = url::Url::parse(url).ok().and_then(|u| match u.host() {
        Some(url::Host::Domain(d)) => Some(d.to_owned()),
        _ => None,
    }) else {
        return Ok(());
    };
    lookup(&host).await.map(drop).map_err(|e| e.to_string())
}

/// The client's resolver: [`lookup`].
struct Resolver;

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match lookup(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(e) => Err(Box::new(e) as _),
            }
        })
    }
}

/// `cannot resolve HOST (why)` or `cannot connect to HOST:PORT (why)`
/// when `e` says the host of `url` could not be reached at all (not a TLS
/// failure, not a server that answered badly).
fn unreachable(url: &str, e: &reqwest::Error) -> Option<String> {
    if !e.is_connect() {
        return None;
    }
    let mut io = None;
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(u) = s.downcast_ref::<Unresolved>() {
            return Some(u.to_string());
        }
        if let Some(i) = s.downcast_ref::<std::io::Error>() {
            io = Some(i);
        }
        src = s.source();
    }
    use std::io::ErrorKind as K;
    let why = match io.map(std::io::Error::kind) {
        Some(K::ConnectionRefused) => "connection refused",
        Some(K::NetworkUnreachable) => "network unreachable",
        Some(K::HostUnreachable) => "host unreachable",
        Some(K::AddrNotAvailable) => "address not available",
        Some(K::TimedOut) => "timed out",
        _ if e.is_timeout() => "timed out ([http] connect_timeout)",
        _ => return None,
    };
    let u = reqwest::Url::parse(url).ok()?;
    Some(format!(
        "cannot connect to {}:{} ({why})",
        u.host_str()?,
        u.port_or_known_default()?
    ))
}

fn request_error(url: &str, e: &reqwest::Error) -> SourceError {
    if let Some(message) = unreachable(url, e) {
        return SourceError::Unreachable {
            url: url.to_owned(),
            message,
        };
    }
    let what = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the answer's body was cut short or could not be read".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut msg = what;
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    SourceError::Request {
        url: url.to_owned(),
        message: msg,
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

/// Sizes are read where the program's text is ([`crate::support::text`]).
pub use crate::support::text::parse_size;

/// The program's one redaction ([`crate::support::text`]), where its callers
/// have always found it.
pub use crate::support::text::{REDACTED, redact_url};
