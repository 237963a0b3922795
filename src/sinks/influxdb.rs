//! The InfluxDB 1.x writer: `POST /write` with line protocol.
//!
//! Database and precision explicit in the query string, basic auth in a
//! header (never in the URL), gzip-compressed bodies, a timeout, TLS
//! verified by default (optionally against a given CA file; skipping
//! verification only when explicitly asked, with a warning), any path prefix
//! of the configured URL kept (InfluxDB behind a proxy), and batches of at
//! most [`MAX_BATCH_LINES`] lines. The server's answers become
//! [`WriteError`]s that quote its message and say what to do.

use crate::config::InfluxConfig;
use std::io::Write as _;
use std::time::Duration;

/// The most lines sent in one request (InfluxDB's own recommendation).
pub const MAX_BATCH_LINES: usize = 5_000;

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
        "InfluxDB refused the request body as too large (HTTP 413: {message}); lower the batch size"
    )]
    TooLarge { message: String },
    #[error("InfluxDB answered HTTP {status}: {message}")]
    Server { status: u16, message: String },
    #[error("cannot reach InfluxDB at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("InfluxDB at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{0}")]
    Other(String),
}

impl WriteError {
    /// Whether resending the same batch later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            WriteError::Server { status, .. } => *status >= 500 || *status == 429,
            WriteError::Connect { .. } | WriteError::Timeout { .. } => true,
            _ => false,
        }
    }
}

pub struct InfluxWriter {
    client: reqwest::Client,
    write_url: url::Url,
    /// The configured URL without credentials, for messages.
    display_url: String,
    database: String,
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
}

impl InfluxWriter {
    pub fn new(cfg: &InfluxConfig, password: Option<String>) -> Result<InfluxWriter, String> {
        let mut base =
            url::Url::parse(&cfg.url).map_err(|e| format!("influxdb.url {:?}: {e}", cfg.url))?;
        // Credentials in the URL are moved to the Authorization header.
        let url_user = (!base.username().is_empty()).then(|| base.username().to_owned());
        let url_pass = base.password().map(str::to_owned);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let display_url = base.to_string();
        let mut write_url = base.clone();
        let prefix = base.path().trim_end_matches('/');
        write_url.set_path(&format!("{prefix}/write"));
        write_url
            .query_pairs_mut()
            .clear()
            .append_pair("db", &cfg.database)
            .append_pair("precision", "ns");

        let timeout = cfg.timeout.as_duration();
        let mut builder = reqwest::Client::builder()
            .user_agent(crate::sources::http::USER_AGENT)
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(ca) = &cfg.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("influxdb.ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "influxdb.ca_file {}: not a PEM certificate: {e}",
                    ca.display()
                )
            })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if cfg.insecure_skip_verify {
            tracing::warn!(
                "influxdb.insecure_skip_verify = true: the InfluxDB server's TLS certificate is NOT checked; anyone on the path can read the credentials. Use ca_file instead."
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the InfluxDB client: {e}"))?;
        Ok(InfluxWriter {
            client,
            write_url,
            display_url,
            database: cfg.database.clone(),
            username: cfg.username.clone().or(url_user),
            password: password.or(url_pass),
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.display_url
    }

    /// Writes encoded points (one line each), in batches of at most
    /// [`MAX_BATCH_LINES`]. Stops at the first failing batch and returns how
    /// many lines were accepted before it.
    pub async fn write_lines(&self, lines: &[String]) -> Result<usize, (usize, WriteError)> {
        let mut written = 0;
        for chunk in lines.chunks(MAX_BATCH_LINES) {
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
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status().as_u16();
        if status == 204 || status == 200 {
            tracing::debug!(bytes = batch.len(), url = %self.display_url, "wrote batch to InfluxDB");
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let message = server_message(&text);
        Err(match status {
            400 => WriteError::BadRequest { message },
            401 | 403 => WriteError::Auth { status, message },
            404 => WriteError::DatabaseNotFound {
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
        let tls = message.contains("certificate")
            || message.contains("UnknownIssuer")
            || message.contains("tls");
        if tls {
            message.push_str(
                " (the server's TLS certificate could not be verified: set influxdb.ca_file to the CA that signed it)",
            );
        }
        // Never let a URL with credentials into a message.
        let message = message.replace(self.write_url.as_str(), &self.display_url);
        WriteError::Connect {
            url: self.display_url.clone(),
            message,
        }
    }
}

/// InfluxDB's error bodies are `{"error":"..."}`; quote the message.
fn server_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
    }
    match serde_json::from_str::<E>(body) {
        Ok(e) => e.error,
        Err(_) => crate::sources::http::summarize_body(body),
    }
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
