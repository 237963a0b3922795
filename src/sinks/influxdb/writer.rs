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
//! [`InfluxWriter::send`] is what the output uses: it retries what may
//! succeed later (network errors, timeouts, 5xx, 429) with exponential
//! backoff and jitter, narrows a refused batch (400) down to the lines the
//! server refuses by splitting it, and hands back what was written, what
//! was refused for good (for the dead-letter file) and what should be kept
//! for later (for the spool). Its messages name the output's own keys
//! (`influxdb.url`, `outputs.NAME.url`).

use super::auth::{Auth, AuthError};
pub use super::self_metrics::WriteStat;
use crate::model::timespan::TimeSpan;
use crate::support::text::{REDACTED, redact_url};
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
        "InfluxDB refused the credentials (HTTP {status}: {message}); {}",
        auth_advice(key)
    )]
    Auth {
        status: u16,
        message: String,
        /// The output's configuration key: `influxdb` or `outputs.NAME`.
        key: String,
    },
    #[error(
        "InfluxDB has no database {database:?} (HTTP 404: {message}); create it with: influx -execute 'CREATE DATABASE \"{database}\"'"
    )]
    DatabaseNotFound { database: String, message: String },
    #[error(
        "InfluxDB refused the request body as too large (HTTP 413: {message}); lower {key}.batch_size (default 5000 lines) or raise InfluxDB's max-body-size"
    )]
    TooLarge { message: String, key: String },
    #[error("InfluxDB answered HTTP {status}: {message}")]
    Server { status: u16, message: String },
    /// A redirect: writes never follow one (a proxy's login page would
    /// swallow the points).
    #[error(
        "{url} answered HTTP {status} redirecting to {location:?} instead of writing: a proxy or a wrong address; writes do not follow redirects: set {key}.url to InfluxDB's own address (or fix the proxy); the points are kept in the spool"
    )]
    Redirect {
        url: String,
        status: u16,
        location: String,
        key: String,
    },
    /// An answer that is not InfluxDB's (a proxy's page): not a verdict on
    /// the points.
    #[error(
        "{url} answered HTTP {status} but not as InfluxDB does ({what}: {message}); a proxy in the way? check {key}.url; the points are kept in the spool"
    )]
    NotInfluxdb {
        url: String,
        status: u16,
        what: String,
        message: String,
        key: String,
    },
    #[error("cannot reach {url}: {message}")]
    Connect { url: String, message: String },
    #[error(
        "cannot verify the TLS certificate of {url}: {message}; {}",
        tls_advice_for(key, message, url)
    )]
    Tls {
        url: String,
        message: String,
        key: String,
    },
    #[error("{url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The request could not be made here (its body not compressed): a
    /// fault of this machine, not a verdict on the points.
    #[error("cannot make the write request: {0}")]
    Local(String),
}

/// What to check when InfluxDB refuses the credentials of the output
/// `key` (`influxdb`: the environment may give them too).
fn auth_advice(key: &str) -> String {
    if key == DEFAULT_KEY {
        "check influxdb.username and the password (INFLUXDB_USERNAME / INFLUXDB_PASSWORD) and the user's WRITE permission on the database".to_owned()
    } else {
        format!(
            "check {key}.username and {key}.password (or {key}.token for api = \"v2\") and the user's WRITE permission"
        )
    }
}

/// The configuration key of the first output, `[influxdb]`.
pub const DEFAULT_KEY: &str = "influxdb";

/// The configuration key of the output `name`: `influxdb`, or
/// `outputs.NAME`.
pub fn output_key(name: &str) -> String {
    if name == DEFAULT_KEY {
        DEFAULT_KEY.to_owned()
    } else {
        format!("outputs.{name}")
    }
}

/// What to do about a TLS verification failure (`message`: the error
/// chain) with the InfluxDB at `url`. A certificate given in `ca_file` is
/// pinned (trusted as that exact certificate, see [`crate::support::tls`]): a
/// self-signed one (what `openssl req -x509` makes) works once it is there;
/// a CA certificate used as the server's own that is not there gets both
/// ways out (pin it, or the commands making a CA and a server certificate).
pub fn tls_advice(message: &str, url: &str) -> String {
    tls_advice_for(DEFAULT_KEY, message, url)
}

/// [`tls_advice`] for the output whose configuration key is `key`.
pub fn tls_advice_for(key: &str, message: &str, url: &str) -> String {
    let ca_file = format!("{key}.ca_file");
    let pin = format!(
        "a certificate given in {ca_file} is pinned: trusted as that exact certificate, its host names not checked"
    );
    if message.contains("pinned by") {
        format!(
            "{pin}, but only within its validity period: give InfluxDB a new certificate (https-certificate in influxdb.conf) and put a copy of it in {ca_file}, or correct the clock if it is wrong"
        )
    } else if message.contains("CaUsedAsEndEntity") {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .unwrap_or_else(|| "HOST".to_owned());
        format!(
            "the server's certificate is a CA certificate (basicConstraints CA:TRUE, as `openssl req -x509` makes), which TLS refuses as a server's own certificate unless {ca_file} holds that very certificate ({pin}): set {ca_file} to a copy of InfluxDB's certificate (the https-certificate of influxdb.conf, e.g. /etc/ssl/influxdb-selfsigned.crt). Or give InfluxDB a server certificate (basicConstraints=CA:FALSE) signed by a CA, and set {ca_file} to that CA's PEM file. For example: {}; then set https-certificate = \"influxdb.pem\" and https-private-key = \"influxdb.key\" in influxdb.conf, restart InfluxDB, and set {ca_file} = \"ca.pem\"",
            openssl_recipe(&host)
        )
    } else {
        format!(
            "if the server's certificate is signed by a private CA, set {ca_file} to that CA's PEM file; if it is self-signed, set {ca_file} to a copy of that certificate ({pin}); insecure_skip_verify = true turns the check off: not recommended"
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
    /// [`WRITE_MEASUREMENT`](super::self_metrics::WRITE_MEASUREMENT)).
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
            WriteError::Local(_) => "local",
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
            | WriteError::DatabaseNotFound { .. }
            | WriteError::Local(_) => Disposition::Keep,
            WriteError::BadRequest { .. } | WriteError::TooLarge { .. } => Disposition::Refuse,
        }
    }
}

pub use crate::support::retry::RetryPolicy;

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

/// At most this many writes wait in memory for their self-metrics to be
/// written (InfluxDB down for long: the oldest are let go, counted).
const MAX_WRITE_LOG: usize = 1_000;

/// The writes not yet reported in the self-metrics.
#[derive(Debug, Default)]
struct WriteLog {
    stats: std::collections::VecDeque<WriteStat>,
    /// Writes let go at [`MAX_WRITE_LOG`] since the last report.
    dropped: u64,
}

/// Where a writer's points go: a v1 database, or a v2 organisation's
/// bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Database(String),
    Bucket { org: String, bucket: String },
}

/// Why a writer cannot be built from its configuration (a configuration
/// error, reported when the command starts).
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("{key}.url {url:?}: {message}")]
    Url {
        key: String,
        url: String,
        message: String,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Tls(String),
    #[error("cannot build the InfluxDB client of {key}: {message}")]
    Client { key: String, message: String },
}

pub struct InfluxWriter {
    client: reqwest::Client,
    retry: RetryPolicy,
    write_url: url::Url,
    /// The configured URL without credentials, for messages.
    display_url: String,
    target: Target,
    auth: Auth,
    /// The output's name (the `output` tag of the writes' self-metrics)
    /// and its configuration key (`influxdb`, `outputs.NAME`: messages).
    name: String,
    key: String,
    timeout: Duration,
    batch_size: usize,
    log: std::sync::Mutex<WriteLog>,
}

/// The write endpoint under `base` (its path kept: InfluxDB behind a
/// proxy) for `target`.
fn write_url(base: &url::Url, target: &Target) -> url::Url {
    let mut write_url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    match target {
        Target::Database(db) => {
            write_url.set_path(&format!("{prefix}/write"));
            write_url
                .query_pairs_mut()
                .clear()
                .append_pair("db", db)
                .append_pair("precision", "ns");
        }
        Target::Bucket { org, bucket } => {
            write_url.set_path(&format!("{prefix}/api/v2/write"));
            write_url
                .query_pairs_mut()
                .clear()
                .append_pair("org", org)
                .append_pair("bucket", bucket)
                .append_pair("precision", "ns");
        }
    }
    write_url
}

/// The HTTP client of a writer: its timeout, its TLS trust, no redirects.
fn client(cfg: &InfluxConfig, key: &str) -> Result<reqwest::Client, WriterError> {
    if cfg.insecure_skip_verify {
        tracing::warn!(
            "{key}.insecure_skip_verify = true: the InfluxDB server's TLS certificate is NOT checked; anyone on the path can read the credentials. Use ca_file instead."
        );
    }
    let (name, setting) = (
        format!("the InfluxDB client of {key}"),
        format!("{key}.ca_file"),
    );
    // A write that follows a redirect becomes a GET of whatever is there
    // (a login page answering 200): never follow one.
    crate::support::tls::ClientSpec::new(&name, cfg.timeout.as_duration())
        .ca_file(cfg.ca_file.as_deref(), &setting)
        .skip_verify(cfg.insecure_skip_verify)
        .no_redirects()
        .build()
        .map_err(|e| match e {
            crate::support::tls::ClientError::Build { source, .. } => WriterError::Client {
                key: key.to_owned(),
                message: source.to_string(),
            },
            other => WriterError::Tls(other.to_string()),
        })
}

impl InfluxWriter {
    /// The writer of the first output, `[influxdb]` (see
    /// [`InfluxWriter::for_output`]).
    pub fn new(cfg: &InfluxConfig, secret: Option<String>) -> Result<InfluxWriter, String> {
        InfluxWriter::for_output(DEFAULT_KEY, cfg, secret).map_err(|e| e.to_string())
    }

    /// The writer of the output `name` (`influxdb`, or the NAME of
    /// `[outputs.NAME]`) with its `secret` (v1: the password; v2: the
    /// token). Everything that can be checked before a write is checked
    /// here: the URL, the CA file, the token as a header value.
    pub fn for_output(
        name: &str,
        cfg: &InfluxConfig,
        secret: Option<String>,
    ) -> Result<InfluxWriter, WriterError> {
        let key = output_key(name);
        let mut base = cfg.url.value().cloned().map_err(|e| WriterError::Url {
            key: key.clone(),
            url: redact_url(&cfg.url),
            message: e.to_string(),
        })?;
        // Credentials in the URL are moved to the Authorization header.
        let url_user = (!base.username().is_empty()).then(|| base.username().to_owned());
        let url_pass = base.password().map(str::to_owned);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let (target, auth) = match cfg.api {
            WriteApi::V1 => (
                Target::Database(cfg.database.clone()),
                Auth::basic(cfg.username.clone().or(url_user), secret.or(url_pass)),
            ),
            WriteApi::V2 => (
                Target::Bucket {
                    org: cfg.org.clone(),
                    bucket: cfg.bucket.clone(),
                },
                Auth::token(secret.as_deref(), &key)?,
            ),
        };
        Ok(InfluxWriter {
            client: client(cfg, &key)?,
            retry: RetryPolicy::default(),
            write_url: write_url(&base, &target),
            // Shown in logs and errors: a token in the query string too goes.
            display_url: redact_url(base.as_str()),
            target,
            auth,
            timeout: cfg.timeout.as_duration(),
            batch_size: cfg.batch_size.clamp(1, MAX_BATCH_SIZE),
            name: name.to_owned(),
            key,
            log: Default::default(),
        })
    }

    /// Where the points go.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The output's configuration key: `influxdb` or `outputs.NAME`.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn url(&self) -> &str {
        &self.display_url
    }

    /// The same writer, named after its output (`[outputs.NAME]`).
    pub fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self.key = output_key(name);
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

    /// One batch, retried per the policy while the failure is retryable,
    /// never split: the output's combined write of several records.
    pub(super) async fn write_retrying(&self, lines: &[String]) -> Result<(), WriteError> {
        let body = join_batch(lines);
        let mut attempt = 0;
        loop {
            match self.write_logged(&body, lines.len()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && self.retry.allows(attempt) => {
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
        let req = self
            .client
            .post(self.write_url.clone())
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(gzip(batch)?);
        let resp = self
            .auth
            .apply(req)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
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
                key: self.key.clone(),
            });
        }
        let text = resp.text().await.unwrap_or_default();
        Err(self.answer_error(status, from_influxdb, &text))
    }

    /// The error of an answer `status` that is neither a success nor a
    /// redirect, with its body `text`.
    fn answer_error(&self, status: u16, from_influxdb: bool, text: &str) -> WriteError {
        let influx_json = influxdb_error(text);
        let message = server_message(text);
        let not_influxdb = |what: &str| WriteError::NotInfluxdb {
            url: self.display_url.clone(),
            status,
            what: what.to_owned(),
            message: message.clone(),
            key: self.key.clone(),
        };
        if status == 200 {
            return not_influxdb("success without InfluxDB's X-Influxdb-Version header");
        }
        if matches!(status, 400 | 413) && influx_json.is_none() && !from_influxdb {
            // A 400/413 decides the points' fate only when InfluxDB says so.
            return not_influxdb("its body is not InfluxDB's JSON error");
        }
        match (status, &self.target) {
            (400, _) => WriteError::BadRequest { message },
            (401 | 403, _) => WriteError::Auth {
                status,
                message,
                key: self.key.clone(),
            },
            // (v2: the bucket or organisation; the server's message names it.)
            (404, Target::Database(database)) => WriteError::DatabaseNotFound {
                database: database.clone(),
                message,
            },
            (413, _) => WriteError::TooLarge {
                message,
                key: self.key.clone(),
            },
            _ => WriteError::Server { status, message },
        }
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
        if names_a_certificate_problem(&message) {
            return WriteError::Tls {
                url: self.display_url.clone(),
                message,
                key: self.key.clone(),
            };
        }
        WriteError::Connect {
            url: self.display_url.clone(),
            message,
        }
    }
}

/// Whether a connection's error message (its chain of causes) says the
/// server's certificate was refused: rustls says "invalid peer certificate:
/// UnknownIssuer" (or NotValidForName, Expired, ...), and a cause may
/// name only webpki's error (UnknownIssuer, CertNotValidYet,
/// CertNotValidForName).
fn names_a_certificate_problem(message: &str) -> bool {
    message.contains("certificate")
        || message.contains("UnknownIssuer")
        || message.contains("CertNotValid")
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

/// `body` gzip-compressed. (Into memory: only a fault of this machine can
/// fail it, never the points.)
fn gzip(body: &str) -> Result<Vec<u8>, WriteError> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    gz.write_all(body.as_bytes())
        .and_then(|()| gz.finish())
        .map_err(|e| WriteError::Local(format!("cannot compress the batch: {e}")))
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
    fn a_refused_certificate_is_told_from_other_connection_errors() {
        for tls in [
            "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer",
            "tls handshake: UnknownIssuer",
            "webpki: CertNotValidForName",
            "webpki: CertNotValidYet",
        ] {
            assert!(names_a_certificate_problem(tls), "{tls}");
        }
        for other in [
            "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
            "dns error: failed to lookup address information",
            "",
        ] {
            assert!(!names_a_certificate_problem(other), "{other}");
        }
    }

    /// Messages name the output's own section and keys.
    #[test]
    fn labels_keys_and_advice_name_the_output() {
        assert_eq!(output_label("influxdb"), "[influxdb]");
        assert_eq!(output_label("vm"), "[outputs.vm]");
        assert_eq!(output_key("influxdb"), "influxdb");
        assert_eq!(output_key("vm"), "outputs.vm");
        assert_eq!(
            auth_advice("influxdb"),
            "check influxdb.username and the password (INFLUXDB_USERNAME / INFLUXDB_PASSWORD) and the user's WRITE permission on the database"
        );
        assert_eq!(
            auth_advice("outputs.vm"),
            "check outputs.vm.username and outputs.vm.password (or outputs.vm.token for api = \"v2\") and the user's WRITE permission"
        );
        // The default advice: a private CA or a self-signed certificate.
        let plain = tls_advice("invalid peer certificate: UnknownIssuer", "https://db:8086");
        assert!(
            plain.starts_with(
                "if the server's certificate is signed by a private CA, set influxdb.ca_file"
            ),
            "{plain}"
        );
        assert_eq!(
            plain,
            tls_advice_for("influxdb", "UnknownIssuer", "https://db:8086")
        );
        // An expired pinned certificate.
        let expired = tls_advice_for(
            "outputs.vm",
            "certificate pinned by outputs.vm.ca_file expired",
            "https://db",
        );
        assert!(
            expired.contains("but only within its validity period"),
            "{expired}"
        );
        assert!(
            expired.contains("put a copy of it in outputs.vm.ca_file"),
            "{expired}"
        );
        // A CA certificate used as the server's own: the recipe for its host.
        let ca = tls_advice(
            "invalid peer certificate: CaUsedAsEndEntity",
            "https://[::1]:8086/x",
        );
        assert!(ca.contains("basicConstraints CA:TRUE"), "{ca}");
        assert!(ca.contains(&openssl_recipe("::1")), "{ca}");
        assert!(openssl_recipe("::1").contains("subjectAltName=IP:::1"));
        assert!(openssl_recipe("db.example").contains("subjectAltName=DNS:db.example"));
        let unknown_host = tls_advice("CaUsedAsEndEntity", "not a url");
        assert!(
            unknown_host.contains(&openssl_recipe("HOST")),
            "{unknown_host}"
        );
    }

    /// A configuration shown for debugging never shows a password or a
    /// token (nor one inside the URL).
    #[test]
    fn debug_output_redacts_the_secrets() {
        let cfg = InfluxConfig {
            url: "https://user:s3cret-url@db:8086".into(),
            password: Some("s3cret-password".into()),
            token: Some("s3cret-token".into()),
            database: "kpi".into(),
            ..Default::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.starts_with("InfluxConfig { url: "), "{shown}");
        assert!(shown.contains("database: \"kpi\""), "{shown}");
        assert!(
            shown.contains(&format!("password: Some({REDACTED:?})")),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("token: Some({REDACTED:?})")),
            "{shown}"
        );
    }

    /// The refused lines of a send, as one dead-letter entry: every line in
    /// the order sent, each different message once.
    #[test]
    fn refused_lines_make_one_batch_with_each_message_once() {
        assert_eq!(SendReport::default().refused_batch(), None);
        let bad = |m: &str| WriteError::BadRequest { message: m.into() };
        let report = SendReport {
            written: 5,
            refused: vec![
                (vec!["a 1".into(), "b 2".into()], bad("field type conflict")),
                (vec!["c 3".into()], bad("field type conflict")),
                (vec!["d 4".into()], bad("unable to parse")),
            ],
            kept: None,
        };
        let (lines, message) = report.refused_batch().unwrap();
        assert_eq!(lines, ["a 1", "b 2", "c 3", "d 4"]);
        assert_eq!(
            message,
            format!(
                "{} | {}",
                bad("field type conflict"),
                bad("unable to parse")
            )
        );
    }

    /// A writer shows its URL without credentials (they go to the
    /// Authorization header), and is named after its output.
    #[test]
    fn a_writer_shows_its_url_without_credentials_and_its_output_name() {
        let cfg = InfluxConfig {
            url: "https://collector:s3cret@db.example:8086/prefix".into(),
            batch_size: 250,
            ..Default::default()
        };
        let w = InfluxWriter::new(&cfg, None).unwrap();
        assert_eq!(w.url(), "https://db.example:8086/prefix");
        assert_eq!(
            (w.name(), w.key(), w.label()),
            ("influxdb", "influxdb", "[influxdb]".to_owned())
        );
        assert_eq!(w.batch_size(), 250);
        let w = w.named("vm");
        assert_eq!(
            (w.name(), w.key(), w.label()),
            ("vm", "outputs.vm", "[outputs.vm]".to_owned())
        );
        let w = InfluxWriter::for_output("backup", &cfg, Some("pw".into())).unwrap();
        assert_eq!((w.name(), w.key()), ("backup", "outputs.backup"));
    }

    /// The writes kept for the self-metrics: at most `MAX_WRITE_LOG`, the
    /// oldest let go and counted; given back at the front, in order.
    #[tokio::test]
    async fn the_write_log_keeps_the_newest_and_counts_what_it_lets_go() {
        let cfg = InfluxConfig {
            url: "http://127.0.0.1:1".into(),
            ..Default::default()
        };
        let w = InfluxWriter::new(&cfg, None).unwrap();
        let stat = |points: usize| super::super::self_metrics::WriteStat {
            time: chrono::Utc::now(),
            latency: std::time::Duration::ZERO,
            points,
            bytes: 0,
            outcome: "ok",
            output: "influxdb".into(),
        };
        assert_eq!(w.take_write_log().1, 0);
        // Given back with 2 already let go: kept whole.
        w.return_write_log((0..MAX_WRITE_LOG).map(stat).collect(), 2);
        // One write more (refused: no server) lets the oldest go.
        assert!(w.write_logged("m v=1i 1\n", 7).await.is_err());
        let (log, dropped) = w.take_write_log();
        assert_eq!((log.len(), dropped), (MAX_WRITE_LOG, 3));
        assert_eq!(log[0].points, 1);
        assert_eq!(log[MAX_WRITE_LOG - 1].points, 7);
        assert_eq!(log[MAX_WRITE_LOG - 1].outcome, "connect");
        assert_eq!(w.take_write_log(), (vec![], 0));
        // Given back in front of newer writes, keeping the newest.
        w.return_write_log(vec![stat(100)], 0);
        w.return_write_log((0..MAX_WRITE_LOG).map(stat).collect(), 5);
        let (log, dropped) = w.take_write_log();
        assert_eq!((log.len(), dropped), (MAX_WRITE_LOG, 6));
        assert_eq!((log[0].points, log[MAX_WRITE_LOG - 1].points), (1, 100));
    }

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
        assert!(
            matches!(&w.auth, Auth::Basic { username, password } if username == "user" && password.as_deref() == Some("pw"))
        );
        assert!(!w.url().contains("pw"));
    }

    #[test]
    fn errors_name_the_outputs_own_keys_and_a_v2_writer_its_bucket() {
        let cfg = InfluxConfig {
            url: "http://h:8086".into(),
            api: WriteApi::V2,
            org: "o".into(),
            bucket: "b".into(),
            ..InfluxConfig::default()
        };
        let w = InfluxWriter::for_output("vm", &cfg, Some("t".into())).unwrap();
        assert_eq!(
            w.target(),
            &Target::Bucket {
                org: "o".into(),
                bucket: "b".into()
            }
        );
        assert_eq!(w.key(), "outputs.vm");
        let e = w.answer_error(413, true, r#"{"error":"too big"}"#);
        assert!(e.to_string().contains("lower outputs.vm.batch_size"), "{e}");
        let e = w.answer_error(502, false, "<html>proxy</html>");
        assert_eq!(e.kind(), "server_error");
        let e = w.answer_error(400, false, "<html>proxy</html>");
        assert!(e.to_string().contains("check outputs.vm.url"), "{e}");
        let bad = InfluxConfig {
            url: "not a url".into(),
            ..InfluxConfig::default()
        };
        let e = InfluxWriter::for_output("vm", &bad, None).err().unwrap();
        assert!(e.to_string().starts_with("outputs.vm.url "), "{e}");
        // A token that cannot be sent is a configuration error, at build.
        let e = InfluxWriter::for_output("vm", &cfg, Some("a\nb".into()))
            .err()
            .unwrap();
        assert!(matches!(e, WriterError::Auth(_)), "{e}");
        assert_eq!(
            WriteError::Local(String::new()).disposition(),
            Disposition::Keep
        );
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
                message: String::new(),
                key: String::new(),
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
                message: String::new(),
                key: String::new(),
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
                message: String::new(),
                key: String::new(),
            }
            .is_retryable()
        );
    }
}
