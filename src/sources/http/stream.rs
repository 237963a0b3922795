//! A document read as a stream (for documents too large to hold), within
//! the per-host limit like any request: the permit is held until the
//! stream is dropped.

use super::Http;
use super::errors::request_error;
use super::range::ContentRange;
use crate::sources::SourceError;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

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
    /// The host's permit, held while the body is read.
    _permit: OwnedSemaphorePermit,
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
        let req = req.build().map_err(|e| request_error(url, &e))?;
        let host = self.hosts.for_url(req.url());
        let permit = host.permit().await;
        self.count_request(req.url());
        let resp = self.send(&host, req).await?;
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
            let range = ContentRange::of(resp.headers(), url)?;
            (range.first, range.total)
        } else {
            (0, resp.content_length())
        };
        Ok(Stream {
            response: resp,
            url: url.to_owned(),
            start,
            total,
            idle: self.timeout,
            _permit: permit,
        })
    }
}
