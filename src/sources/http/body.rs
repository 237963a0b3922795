//! The body cap: a body is read chunk by chunk up to `[http] max_body`
//! (after decompression), a recorded one held to the same cap; and an
//! answer judged: an error status quoting (the start of) its body, a body
//! over the cap a failed request.

use super::Http;
use super::errors::request_error;
use crate::sources::SourceError;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How much of an error answer's body is read to quote it.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// An answer as the layers pass it on: its status, its headers and its
/// body, read whole or not.
pub(super) struct Reply {
    pub(super) status: reqwest::StatusCode,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) body: Result<Vec<u8>, BodyError>,
}

impl Reply {
    /// The body read, whole or up to the cap (not one that failed).
    pub(super) fn read(&self) -> Option<&[u8]> {
        match &self.body {
            Ok(b) | Err(BodyError::TooLarge(b)) => Some(b),
            Err(BodyError::Failed(_)) => None,
        }
    }
}

impl Http {
    /// Reads the answer's body: at most `max_body` bytes for a success,
    /// [`MAX_ERROR_BODY`] for an error (enough to quote it), counted in
    /// the bytes received.
    pub(super) async fn receive(&self, resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let max = if status.is_success() {
            self.max_body
        } else {
            MAX_ERROR_BODY.min(self.max_body)
        };
        let reply = Reply {
            status,
            headers,
            body: read_body(resp, max).await,
        };
        if let Some(b) = reply.read() {
            self.received.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        reply
    }

    /// A recorded body held to the cap as a live one is.
    pub(super) fn capped(&self, mut body: Vec<u8>) -> Result<Vec<u8>, BodyError> {
        if body.len() as u64 > self.max_body {
            body.truncate(usize::try_from(self.max_body).unwrap_or(usize::MAX));
            Err(BodyError::TooLarge(body))
        } else {
            Ok(body)
        }
    }

    /// The answer to `url`, or the error its status or body makes of it,
    /// with the `Retry-After` wait of a 429 or 503 that has one.
    pub(super) fn judge(
        &self,
        url: String,
        reply: Reply,
    ) -> (Result<super::Answer, SourceError>, Option<Duration>) {
        let Reply {
            status,
            headers,
            body,
        } = reply;
        if !status.is_success() {
            let retry_after = if matches!(status.as_u16(), 429 | 503) {
                headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| super::retry::parse_retry_after(v, chrono::Utc::now()))
            } else {
                None
            };
            let body = match body {
                Ok(b) | Err(BodyError::TooLarge(b)) => b,
                Err(BodyError::Failed(_)) => Vec::new(),
            };
            let message = if status == reqwest::StatusCode::NOT_MODIFIED {
                "Not Modified, but this request asked for the whole document and no copy of it is kept to reuse (a 304 answers only a conditional request)".into()
            } else {
                super::summarize_body(&String::from_utf8_lossy(&body))
            };
            let status = status.as_u16();
            let e = SourceError::HttpStatus {
                url,
                status,
                message,
            };
            return (Err(e), retry_after);
        }
        let body = match body {
            Ok(b) => b,
            Err(BodyError::TooLarge(_)) => {
                let message = too_large(self.max_body);
                return (Err(SourceError::Request { url, message }), None);
            }
            Err(BodyError::Failed(e)) => return (Err(request_error(&url, &e)), None),
        };
        let answer = super::Answer {
            status,
            headers,
            body,
        };
        (Ok(answer), None)
    }
}

/// Why a body was not read whole.
pub(super) enum BodyError {
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
