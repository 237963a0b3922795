//! The InfluxDB 1.x writer: `POST /write` with line protocol.
//!
//! Database and precision explicit in the query string, basic auth in a
//! header (never in the URL), gzip-compressed bodies, a timeout, TLS
//! verified by default (optionally against a given CA file; skipping
//! verification only when explicitly asked, with a warning), any path prefix
//! of the configured URL kept (InfluxDB behind a proxy), and batches of at
//! most [`MAX_BATCH_LINES`] lines. The server's answers become
//! [`WriteError`]s that quote its message and say what to do.
//!
//! [`InfluxWriter::send`] is what the runner uses: it retries what may
//! succeed later (network errors, timeouts, 5xx, 429) with exponential
//! backoff and jitter, narrows a refused batch (400) down to the lines the
//! server refuses by splitting it, and hands back what was written, what
//! was refused for good (for the dead-letter file) and what should be kept
//! for later (for the spool).

use crate::model::timespan::TimeSpan;
use crate::sources::http::{REDACTED, redact_url};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The most lines sent in one request (InfluxDB's own recommendation).
pub const MAX_BATCH_LINES: usize = 5_000;
/// The largest `influxdb.batch_size` accepted (a spool record holds at
/// most [`MAX_BATCH_LINES`] lines; a larger batch joins records).
pub const MAX_BATCH_SIZE: usize = 100_000;

/// `[influxdb]`: where and how points are written.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    pub url: crate::support::setting::UrlSetting,
    pub database: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub timeout: TimeSpan,
    /// Lines per write request (InfluxDB's 413 asks for fewer).
    pub batch_size: usize,
    /// The write API: `v1` (`/write?db=`, basic authentication) or `v2`
    /// (`/api/v2/write?org=&bucket=`, `Authorization: Token`), which
    /// InfluxDB 2 and 3 and VictoriaMetrics take.
    pub api: WriteApi,
    /// v2: the organisation and the bucket written to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub org: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// v2: the API token, or a file holding it (or `INFLUXDB_TOKEN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// How long the output keeps points, when it drops older ones
    /// (VictoriaMetrics' `-retentionPeriod`, 1 month by default, answers
    /// 204 and drops older rows without a word): a collector's
    /// `max_catch_up` reaching further back is warned about at load.
    /// Never sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<TimeSpan>,
}

/// Which write API an output speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteApi {
    #[default]
    V1,
    V2,
}

/// Debug output never shows the password (nor one inside the URL).
impl std::fmt::Debug for InfluxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxConfig")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("timeout", &self.timeout)
            .field("batch_size", &self.batch_size)
            .field("api", &self.api)
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("token_file", &self.token_file)
            .field("retention", &self.retention)
            .finish()
    }
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig {
            url: "http://localhost:8086".into(),
            database: "metrics".into(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            insecure_skip_verify: false,
            timeout: TimeSpan::from_secs(10),
            batch_size: MAX_BATCH_LINES,
            api: WriteApi::V1,
            org: String::new(),
            bucket: String::new(),
            token: None,
            token_file: None,
            retention: None,
        }
    }
}

/// The output named `name` as its configuration section names it, for
/// messages: `[influxdb]` (the first output), or `[outputs.NAME]`.
pub fn output_label(name: &str) -> String {
    if name == "influxdb" {
        "[influxdb]".to_owned()
    } else {
        format!("[outputs.{name}]")
    }
}

/// Why a write failed. `is_retryable` tells whether the same batch may
/// succeed later (server or network trouble) or never will (4xx).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error(
        "InfluxDB refused the batch (HTTP 400: {message}); lines before the bad one may have been written"
    )]
    BadRequest { message: String },
    #[error(
        "InfluxDB refused the credentials (HTTP {status}: {message}); check influxdb.username and the password (INFLUXDB_USERNAME / INFLUXDB_PASSWORD) and the user's WRITE permission on the database"
    )]
    Auth { status: u16, message: String },
    #[error(
        "InfluxDB has no database {database:?} (HTTP 404: {message}); create it with: influx -execute 'CREATE DATABASE \"{database}\"'"
    )]
    DatabaseNotFound { database: String, message: String },
    #[error(
        "InfluxDB refused the request body as too large (HTTP 413: {message}); lower influxdb.batch_size (default 5000 lines) or raise InfluxDB's max-body-size"
    )]
    TooLarge { message: String },
    #[error("InfluxDB answered HTTP {status}: {message}")]
    Server { status: u16, message: String },
    /// A redirect: writes never follow one (a proxy's login page would
    /// swallow the points).
    #[error(
        "{url} answered HTTP {status} redirecting to {location:?} instead of writing: a proxy or a wrong address; writes do not follow redirects: set influxdb.url to InfluxDB's own address (or fix the proxy); the points are kept in the spool"
    )]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
    /// An answer that is not InfluxDB's (a proxy's page): not a verdict on
    /// the points.
    #[error(
        "{url} answered HTTP {status} but not as InfluxDB does ({what}: {message}); a proxy in the way? check influxdb.url; the points are kept in the spool"
    )]
    NotInfluxdb {
        url: String,
        status: u16,
        what: String,
        message: String,
    },
    #[error("cannot reach {url}: {message}")]
    Connect { url: String, message: String },
    #[error(
        "cannot verify the TLS certificate of {url}: {message}; {}",
        tls_advice(message, url)
    )]
    Tls { url: String, message: String },
    #[error("{url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{0}")]
    Other(String),
}

/// What to do about a TLS verification failure (`message`: the error
/// chain) with the InfluxDB at `url`. A certificate given in `ca_file` is
/// pinned (trusted as that exact certificate, see [`crate::support::tls`]): a
/// self-signed one (what `openssl req -x509` makes) works once it is there;
/// a CA certificate used as the server's own that is not there gets both
/// ways out (pin it, or the commands making a CA and a server certificate).
pub fn tls_advice(message: &str, url: &str) -> String {
    const PIN: &str = "a certificate given in influxdb.ca_file is pinned: trusted as that exact certificate, its host names not checked";
    if message.contains("pinned by") {
        format!(
            "{PIN}, but only within its validity period: give InfluxDB a new certificate (https-certificate in influxdb.conf) and put a copy of it in influxdb.ca_file, or correct the clock if it is wrong"
        )
    } else if message.contains("CaUsedAsEndEntity") {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .unwrap_or_else(|| "HOST".to_owned());
        format!(
            "the server's certificate is a CA certificate (basicConstraints CA:TRUE, as `openssl req -x509` makes), which TLS refuses as a server's own certificate unless influxdb.ca_file holds that very certificate ({PIN}): set influxdb.ca_file to a copy of InfluxDB's certificate (the https-certificate of influxdb.conf, e.g. /etc/ssl/influxdb-selfsigned.crt). Or give InfluxDB a server certificate (basicConstraints=CA:FALSE) signed by a CA, and set influxdb.ca_file to that CA's PEM file. For example: {}; then set https-certificate = \"influxdb.pem\" and https-private-key = \"influxdb.key\" in influxdb.conf, restart InfluxDB, and set influxdb.ca_file = \"ca.pem\"",
            openssl_recipe(&host)
        )
    } else {
        format!(
            "if the server's certificate is signed by a private CA, set influxdb.ca_file to that CA's PEM file; if it is self-signed, set influxdb.ca_file to a copy of that certificate ({PIN}); insecure_skip_verify = true turns the check off: not recommended"
        )
    }
}

/// Shell commands making a CA (`ca.pem`, `ca.key`) and a server
/// certificate it signs for `host` (`influxdb.pem`, `influxdb.key`).
pub fn openssl_recipe(host: &str) -> String {
    let san = if host.parse::<std::net::IpAddr>().is_ok() {
        format!("IP:{host}")
    } else {
        format!("DNS:{host}")
    };
    format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=InfluxDB CA' -keyout ca.key -out ca.pem && openssl req -newkey rsa:2048 -nodes -subj '/CN={host}' -keyout influxdb.key -out influxdb.csr && printf 'basicConstraints=CA:FALSE\\nsubjectAltName={san}\\n' > influxdb.ext && openssl x509 -req -in influxdb.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -extfile influxdb.ext -out influxdb.pem"
    )
}

/// What to do with a batch after a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Server or network trouble: retry soon, then keep it for later.
    Retry,
    /// A problem on our side that an operator must fix (credentials,
    /// permissions, missing database, TLS trust): keep it for later, do not
    /// hammer the server.
    Keep,
    /// The server will never take these lines as they are: dead-letter them.
    Refuse,
}

impl WriteError {
    /// A short name of the kind of failure (the `outcome` tag of
    /// [`WRITE_MEASUREMENT`]).
    pub fn kind(&self) -> &'static str {
        match self {
            WriteError::BadRequest { .. } => "bad_request",
            WriteError::Auth { .. } => "auth",
            WriteError::DatabaseNotFound { .. } => "database_not_found",
            WriteError::TooLarge { .. } => "too_large",
            WriteError::Server { .. } => "server_error",
            WriteError::Redirect { .. } => "redirect",
            WriteError::NotInfluxdb { .. } => "not_influxdb",
            WriteError::Connect { .. } => "connect",
            WriteError::Tls { .. } => "tls",
            WriteError::Timeout { .. } => "timeout",
            WriteError::Other(_) => "other",
        }
    }

    /// Whether resending the same batch soon may succeed.
    pub fn is_retryable(&self) -> bool {
        self.disposition() == Disposition::Retry
    }

    pub fn disposition(&self) -> Disposition {
        match self {
            WriteError::Server { status, .. } if *status >= 500 || matches!(status, 408 | 429) => {
                Disposition::Retry
            }
            // An unexpected answer (a proxy's 3xx, 405, 407...): a setup
            // problem, not a verdict on the data.
            WriteError::Server { .. } => Disposition::Keep,
            WriteError::Connect { .. } | WriteError::Timeout { .. } => Disposition::Retry,
            WriteError::Tls { .. }
            | WriteError::Redirect { .. }
            | WriteError::NotInfluxdb { .. }
            | WriteError::Auth { .. }
            | WriteError::DatabaseNotFound { .. } => Disposition::Keep,
            WriteError::BadRequest { .. } | WriteError::TooLarge { .. } | WriteError::Other(_) => {
                Disposition::Refuse
            }
        }
    }
}

/// Retries of a batch: `retries` more attempts after the first, waiting
/// `base`, `2 base`, `4 base`... (at most `max`) before each, every wait
/// jittered down by up to half so that many writers do not retry in step.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub retries: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 3,
            base: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based), jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
            .min(self.max);
        // Full jitter over the upper half: [full/2, full].
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let r = if nanos == 0 {
            0
        } else {
            random_u64() % (nanos + 1)
        };
        half + Duration::from_nanos(r)
    }
}

/// A random number from the operating system's generator. Should it fail
/// (no `getrandom(2)` nor `/dev/urandom`), only the jitter is lost.
fn random_u64() -> u64 {
    getrandom::u64().unwrap_or(0)
}

/// What [`InfluxWriter::send`] did with a batch.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Lines InfluxDB accepted.
    pub written: usize,
    /// Lines InfluxDB refused for good, with its answer.
    pub refused: Vec<(Vec<String>, WriteError)>,
    /// Lines not written because InfluxDB cannot take them now (retries
    /// exhausted, or a problem to fix first), with the reason: to be kept.
    pub kept: Option<(Vec<String>, WriteError)>,
}

impl SendReport {
    /// The refused lines as one batch, with the server's messages (each
    /// different one once): one dead-letter entry per batch sent.
    pub fn refused_batch(&self) -> Option<(Vec<String>, String)> {
        if self.refused.is_empty() {
            return None;
        }
        let mut lines = Vec::new();
        let mut messages: Vec<String> = Vec::new();
        for (l, e) in &self.refused {
            lines.extend_from_slice(l);
            let m = e.to_string();
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
        Some((lines, messages.join(" | ")))
    }
}

/// At most this many extra requests to narrow down the refused lines of a
/// batch; past it, what is still refused goes to the dead-letter file whole.
const MAX_SPLIT_REQUESTS: usize = 64;

/// The self-metrics of writes: one point per request to InfluxDB's write
/// endpoint (tag `outcome`; fields `latency_seconds`, `points`, `bytes`).
pub const WRITE_MEASUREMENT: &str = "ubuntu_metrics_write";

/// At most this many writes wait in memory for their self-metrics to be
/// written (InfluxDB down for long: the oldest are let go, counted).
const MAX_WRITE_LOG: usize = 1_000;

/// One request to InfluxDB's write endpoint, for the self-metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteStat {
    /// When the request was sent.
    pub time: chrono::DateTime<chrono::Utc>,
    pub latency: Duration,
    /// Lines (points) in the request, and its size before compression.
    pub points: usize,
    pub bytes: usize,
    /// `ok`, or the kind of failure ([`WriteError::kind`]).
    pub outcome: &'static str,
    /// The output written to.
    pub output: String,
}

impl WriteStat {
    /// Its [`WRITE_MEASUREMENT`] point.
    pub fn point(&self) -> crate::model::point::Point {
        crate::model::point::Point::new(WRITE_MEASUREMENT)
            .tag("output", self.output.as_str())
            .tag("outcome", self.outcome)
            .field("latency_seconds", self.latency.as_secs_f64())
            .field("points", self.points)
            .field("bytes", self.bytes)
            .at(self.time)
    }
}

/// The writes not yet reported in the self-metrics.
#[derive(Debug, Default)]
struct WriteLog {
    stats: std::collections::VecDeque<WriteStat>,
    /// Writes let go at [`MAX_WRITE_LOG`] since the last report.
    dropped: u64,
}

pub struct InfluxWriter {
    client: reqwest::Client,
    retry: RetryPolicy,
    write_url: url::Url,
    /// The configured URL without credentials, for messages.
    display_url: String,
    database: String,
    username: Option<String>,
    password: Option<String>,
    /// v2: the token (`Authorization: Token`).
    token: Option<String>,
    /// The output's name (the `output` tag of the writes' self-metrics).
    name: String,
    timeout: Duration,
    batch_size: usize,
    log: std::sync::Mutex<WriteLog>,
}

impl InfluxWriter {
    pub fn new(cfg: &InfluxConfig, password: Option<String>) -> Result<InfluxWriter, String> {
        let mut base = cfg
            .url
            .value()
            .cloned()
            .map_err(|e| format!("influxdb.url {:?}: {e}", redact_url(&cfg.url)))?;
        // Credentials in the URL are moved to the Authorization header.
        let url_user = (!base.username().is_empty()).then(|| base.username().to_owned());
        let url_pass = base.password().map(str::to_owned);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        // Shown in logs and errors: a token in the query string too goes.
        let display_url = redact_url(base.as_str());
        let mut write_url = base.clone();
        let prefix = base.path().trim_end_matches('/');
        match cfg.api {
            WriteApi::V1 => {
                write_url.set_path(&format!("{prefix}/write"));
                write_url
                    .query_pairs_mut()
                    .clear()
                    .append_pair("db", &cfg.database)
                    .append_pair("precision", "ns");
            }
            WriteApi::V2 => {
                write_url.set_path(&format!("{prefix}/api/v2/write"));
                write_url
                    .query_pairs_mut()
                    .clear()
                    .append_pair("org", &cfg.org)
                    .append_pair("bucket", &cfg.bucket)
                    .append_pair("precision", "ns");
            }
        }

        let timeout = cfg.timeout.as_duration();
        let mut builder = crate::support::tls::client_builder()
            .user_agent(crate::support::tls::USER_AGENT)
            .timeout(timeout)
            .connect_timeout(timeout)
            // A write that follows a redirect becomes a GET of whatever is
            // there (a login page answering 200): never follow one.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &cfg.ca_file {
            builder = crate::support::tls::with_ca_file(builder, ca, "influxdb.ca_file")?;
        }
        if cfg.insecure_skip_verify {
            tracing::warn!(
                "influxdb.insecure_skip_verify = true: the InfluxDB server's TLS certificate is NOT checked; anyone on the path can read the credentials. Use ca_file instead."
            );
            // After with_ca_file, whose own TLS configuration this drops.
            builder = crate::support::tls::skip_verify(builder);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the InfluxDB client: {e}"))?;
        Ok(InfluxWriter {
            client,
            retry: RetryPolicy::default(),
            write_url,
            display_url,
            database: match cfg.api {
                WriteApi::V1 => cfg.database.clone(),
                WriteApi::V2 => cfg.bucket.clone(),
            },
            username: match cfg.api {
                WriteApi::V1 => cfg.username.clone().or(url_user),
                WriteApi::V2 => None,
            },
            token: match cfg.api {
                WriteApi::V1 => None,
                WriteApi::V2 => password.clone(),
            },
            password: match cfg.api {
                WriteApi::V1 => password.or(url_pass),
                WriteApi::V2 => None,
            },
            timeout,
            batch_size: cfg.batch_size.clamp(1, MAX_BATCH_SIZE),
            name: "influxdb".to_owned(),
            log: Default::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.display_url
    }

    /// The same writer, named after its output (`[outputs.NAME]`).
    pub fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// The output's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The output as its configuration section names it, for messages:
    /// `[influxdb]`, or `[outputs.NAME]` (a VictoriaMetrics output is not
    /// "InfluxDB").
    pub fn label(&self) -> String {
        output_label(&self.name)
    }

    /// Lines per write request (`batch_size`).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Writes `lines` as batches of at most `influxdb.batch_size` lines, each with
    /// retries. A batch refused with 400 (a bad line, a field type
    /// conflict) or 413 is split in halves, so that only the refused lines
    /// end up in `refused` (lines resent after a partial write are
    /// harmless: each carries its timestamp). The first failure that is not
    /// the data's fault stops the sending: that batch and all after it are
    /// returned in `kept`.
    pub async fn send(&self, lines: &[String]) -> SendReport {
        let mut report = SendReport::default();
        let mut queue: std::collections::VecDeque<std::ops::Range<usize>> = (0..lines.len())
            .step_by(self.batch_size)
            .map(|s| s..(s + self.batch_size).min(lines.len()))
            .collect();
        let mut splits = 0;
        while let Some(r) = queue.pop_front() {
            let chunk = &lines[r.clone()];
            match self.write_retrying(chunk).await {
                Ok(()) => report.written += chunk.len(),
                Err(e) => match e.disposition() {
                    Disposition::Refuse
                        if chunk.len() > 1
                            && splits < MAX_SPLIT_REQUESTS
                            && matches!(
                                e,
                                WriteError::BadRequest { .. } | WriteError::TooLarge { .. }
                            ) =>
                    {
                        let mid = r.start + chunk.len() / 2;
                        queue.push_front(mid..r.end);
                        queue.push_front(r.start..mid);
                        splits += 2;
                    }
                    Disposition::Refuse => {
                        tracing::error!(
                            lines = chunk.len(),
                            "{}: lines refused: {e}",
                            self.label()
                        );
                        report.refused.push((chunk.to_vec(), e));
                    }
                    Disposition::Retry | Disposition::Keep => {
                        let mut rest = chunk.to_vec();
                        for r in queue.drain(..) {
                            rest.extend_from_slice(&lines[r]);
                        }
                        report.kept = Some((rest, e));
                        break;
                    }
                },
            }
        }
        report
    }

    /// The writes [`InfluxWriter::send`] made since the last call (each
    /// request, retries included), and how many were let go because too
    /// many waited.
    pub fn take_write_log(&self) -> (Vec<WriteStat>, u64) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let log = std::mem::take(&mut *log);
        (log.stats.into(), log.dropped)
    }

    /// Puts writes back at the front of the log (their self-metrics could
    /// not be written either).
    pub fn return_write_log(&self, stats: Vec<WriteStat>, dropped: u64) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        for s in stats.into_iter().rev() {
            log.stats.push_front(s);
        }
        log.dropped += dropped;
        while log.stats.len() > MAX_WRITE_LOG {
            log.stats.pop_front();
            log.dropped += 1;
        }
    }

    /// Sends one batch, recording the write for the self-metrics.
    async fn write_logged(&self, body: &str, points: usize) -> Result<(), WriteError> {
        let time = chrono::Utc::now();
        let started = std::time::Instant::now();
        let result = self.write_batch(body).await;
        let stat = WriteStat {
            time,
            latency: started.elapsed(),
            points,
            bytes: body.len(),
            outcome: result.as_ref().map_or_else(WriteError::kind, |()| "ok"),
            output: self.name.clone(),
        };
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.stats.len() >= MAX_WRITE_LOG {
            log.stats.pop_front();
            log.dropped += 1;
        }
        log.stats.push_back(stat);
        result
    }

    /// One batch, retried per the policy while the failure is retryable.
    async fn write_retrying(&self, lines: &[String]) -> Result<(), WriteError> {
        let body = join_batch(lines);
        let mut attempt = 0;
        loop {
            match self.write_logged(&body, lines.len()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && attempt < self.retry.retries => {
                    let wait = self.retry.delay(attempt);
                    tracing::warn!(
                        lines = lines.len(),
                        "{}: write failed ({e}); retry {} of {} in {:.1} s",
                        self.label(),
                        attempt + 1,
                        self.retry.retries,
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes encoded points (one line each), in batches of at most
    /// `influxdb.batch_size`. Stops at the first failing batch and returns how
    /// many lines were accepted before it.
    pub async fn write_lines(&self, lines: &[String]) -> Result<usize, (usize, WriteError)> {
        let mut written = 0;
        for chunk in lines.chunks(self.batch_size) {
            self.write_batch(&join_batch(chunk))
                .await
                .map_err(|e| (written, e))?;
            written += chunk.len();
        }
        Ok(written)
    }

    /// Sends one batch.
    pub async fn write_batch(&self, batch: &str) -> Result<(), WriteError> {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(batch.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(batch.as_bytes())
            .map_err(|e| WriteError::Other(format!("cannot compress the batch: {e}")))?;
        let body = gz
            .finish()
            .map_err(|e| WriteError::Other(format!("cannot compress the batch: {e}")))?;
        let mut req = self
            .client
            .post(self.write_url.clone())
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if let Some(user) = &self.username {
            req = req.basic_auth(user, self.password.as_deref());
        }
        if let Some(token) = &self.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Token {token}"))
                .map_err(|_| WriteError::Other("the token is not a valid header value".into()))?;
            v.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status().as_u16();
        // InfluxDB answers every request with its version in a header; a
        // proxy's own answer does not have it.
        let from_influxdb = resp.headers().contains_key("x-influxdb-version");
        if status == 204 || (status == 200 && from_influxdb) {
            tracing::debug!(bytes = batch.len(), url = %self.display_url, "wrote batch to InfluxDB");
            return Ok(());
        }
        if (300..400).contains(&status) {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_else(|| "(no Location header)".into());
            return Err(WriteError::Redirect {
                url: self.display_url.clone(),
                status,
                location: redact_url(&location),
            });
        }
        let text = resp.text().await.unwrap_or_default();
        let influx_json = influxdb_error(&text);
        let message = server_message(&text);
        if status == 200 {
            return Err(WriteError::NotInfluxdb {
                url: self.display_url.clone(),
                status,
                what: "success without InfluxDB's X-Influxdb-Version header".into(),
                message,
            });
        }
        if matches!(status, 400 | 413) && influx_json.is_none() && !from_influxdb {
            // A 400/413 decides the points' fate only when InfluxDB says so.
            return Err(WriteError::NotInfluxdb {
                url: self.display_url.clone(),
                status,
                what: "its body is not InfluxDB's JSON error".into(),
                message,
            });
        }
        Err(match status {
            400 => WriteError::BadRequest { message },
            401 | 403 => WriteError::Auth { status, message },
            // (v2: the bucket or organisation; the server's message names it.)
            404 if self.token.is_none() => WriteError::DatabaseNotFound {
                database: self.database.clone(),
                message,
            },
            413 => WriteError::TooLarge { message },
            _ => WriteError::Server { status, message },
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> WriteError {
        if e.is_timeout() {
            return WriteError::Timeout {
                url: self.display_url.clone(),
                timeout: self.timeout,
            };
        }
        let mut message = String::new();
        let mut src: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = src {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&s.to_string());
            src = s.source();
        }
        // Never let a URL with credentials into a message.
        let message = message.replace(self.write_url.as_str(), &self.display_url);
        let tls = message.contains("certificate")
            || message.contains("UnknownIssuer")
            || message.contains("CertNotValid");
        if tls {
            return WriteError::Tls {
                url: self.display_url.clone(),
                message,
            };
        }
        WriteError::Connect {
            url: self.display_url.clone(),
            message,
        }
    }
}

/// The message of InfluxDB's JSON error body `{"error":"..."}`.
fn influxdb_error(body: &str) -> Option<String> {
    /// 1.x: `{"error":"..."}`; 2.x and 3.x: `{"code":"invalid","message":"..."}`.
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum E {
        V1 { error: String },
        V2 { code: String, message: String },
    }
    serde_json::from_str::<E>(body).ok().map(|e| match e {
        E::V1 { error } => error,
        E::V2 { code, message } => format!("{code}: {message}"),
    })
}

/// InfluxDB's error bodies are `{"error":"..."}` (v2: `{"code", "message"}`);
/// quote the message (or a summary of another body).
fn server_message(body: &str) -> String {
    influxdb_error(body).unwrap_or_else(|| crate::sources::http::summarize_body(body))
}

/// One request body: the lines, each ended by a newline.
pub fn join_batch(lines: &[String]) -> String {
    let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_body_ends_every_line() {
        assert_eq!(
            join_batch(&["a".into(), "b s=\"x\ny\"".into()]),
            "a\nb s=\"x\ny\"\n"
        );
        assert_eq!(join_batch(&[]), "");
    }

    #[test]
    fn server_message_quotes_influx_error() {
        assert_eq!(
            server_message(r#"{"error":"database not found: \"x\""}"#),
            "database not found: \"x\""
        );
        assert_eq!(server_message("<html>\nbad gateway</html>"), "<html>");
    }

    #[test]
    fn path_prefix_and_query() {
        let cfg = InfluxConfig {
            url: "https://user:pw@proxy.example/influx/".into(),
            ..InfluxConfig::default()
        };
        let w = InfluxWriter::new(&cfg, None).unwrap();
        assert_eq!(
            w.write_url.as_str(),
            "https://proxy.example/influx/write?db=metrics&precision=ns"
        );
        assert_eq!(w.username.as_deref(), Some("user"));
        assert_eq!(w.password.as_deref(), Some("pw"));
        assert!(!w.url().contains("pw"));
    }

    #[test]
    fn retry_delays_grow_jittered_and_capped() {
        let p = RetryPolicy::default();
        for attempt in 0..10 {
            let full = (p.base * 2u32.pow(attempt.min(6))).min(p.max);
            for _ in 0..20 {
                let d = p.delay(attempt);
                assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
            }
        }
        let d = p.delay(100);
        assert!(d >= p.max / 2 && d <= p.max, "{d:?}");
        let zero = RetryPolicy {
            retries: 1,
            base: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(zero.delay(3), Duration::ZERO);
    }

    #[test]
    fn dispositions() {
        let server = |status| WriteError::Server {
            status,
            message: String::new(),
        };
        assert_eq!(server(500).disposition(), Disposition::Retry);
        assert_eq!(server(429).disposition(), Disposition::Retry);
        assert_eq!(server(405).disposition(), Disposition::Keep);
        assert_eq!(
            WriteError::Tls {
                url: String::new(),
                message: String::new()
            }
            .disposition(),
            Disposition::Keep
        );
        assert_eq!(
            WriteError::DatabaseNotFound {
                database: String::new(),
                message: String::new()
            }
            .disposition(),
            Disposition::Keep
        );
        assert_eq!(
            WriteError::TooLarge {
                message: String::new()
            }
            .disposition(),
            Disposition::Refuse
        );
    }

    #[test]
    fn retryable_classes() {
        assert!(
            WriteError::Server {
                status: 503,
                message: String::new()
            }
            .is_retryable()
        );
        assert!(
            WriteError::Server {
                status: 429,
                message: String::new()
            }
            .is_retryable()
        );
        assert!(
            !WriteError::BadRequest {
                message: String::new()
            }
            .is_retryable()
        );
        assert!(
            !WriteError::Auth {
                status: 401,
                message: String::new()
            }
            .is_retryable()
        );
    }
}
