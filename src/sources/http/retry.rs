//! The outermost layer: a 429 or 503 with `Retry-After` (seconds or an
//! HTTP date) waited for and tried again (up to [`MAX_RETRY_AFTER_WAITS`]
//! times) when the wait ends within the run's budget (the request
//! timeout, counted from the run's start); otherwise
//! [`SourceError::RetryLater`], saying when the server asked to come back,
//! which callers do not retry.

use super::{Answer, Http};
use crate::sources::SourceError;
use std::time::{Duration, Instant};

/// `Retry-After` waits honoured per request before giving up.
const MAX_RETRY_AFTER_WAITS: u32 = crate::support::retry::RetryPolicy::RETRY_AFTER.retries;

impl Http {
    /// Sends a request within the per-host limit, counts and logs it, reads
    /// the whole body (at most `max_body` bytes), and turns an HTTP error
    /// status into [`SourceError::HttpStatus`] quoting (the start of)
    /// the body; a `Retry-After` is honoured as the module says.
    pub async fn fetch(&self, req: reqwest::RequestBuilder) -> Result<Answer, SourceError> {
        let req = req
            .build()
            .map_err(|e| SourceError::Invalid(format!("bad request: {e}")))?;
        let mut waits = 0;
        loop {
            let again = req.try_clone();
            let (result, retry_after) = self.attempt(req_or(again, &req)?).await;
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
                return Err(retry_later(url, status, &message, wait, &why));
            }
            tracing::info!(
                "{url}: HTTP {status}: waiting {} ms as asked (Retry-After) before trying again",
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
            waits += 1;
        }
    }
}

/// The error of a server asking to come back in `wait`, later than this
/// run waits (`why`).
fn retry_later(url: String, status: u16, message: &str, wait: Duration, why: &str) -> SourceError {
    let back_at =
        chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
    let back_at = back_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    SourceError::RetryLater {
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
