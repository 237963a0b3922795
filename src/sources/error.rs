//! The error of an upstream source (HTTP, Launchpad): what went wrong and
//! where (a URL). Sources know nothing of collectors; the collector error
//! takes a `SourceError` in at the boundary (`From<SourceError>` for
//! `CollectorError`, so collectors' `?` keeps working) with the same
//! variant and the same message. rsync listings have their own error,
//! [`RsyncError`](crate::sources::rsync::RsyncError).

use crate::support::text::redact_url;

/// What went wrong reading an upstream source. Every variant names the URL
/// (credentials redacted in the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The source answered with an HTTP error status; `message` quotes (the
    /// start of) its body.
    #[error("{}: HTTP {status}{}", redact_url(url), if message.is_empty() { String::new() } else { format!(": {message}") })]
    HttpStatus {
        url: String,
        status: u16,
        message: String,
    },
    /// The source answered 429 or 503 asking (`Retry-After`) to come back
    /// later than this run can wait: not retried.
    #[error("{url}: {message}")]
    RetryLater { url: String, message: String },
    /// The request did not complete (connection refused, timeout, a body cut
    /// short, a body larger than `[http] max_body`).
    #[error("{}: {}", redact_url(url), redact_url(message))]
    Request { url: String, message: String },
    /// The host could not be reached at all: its name does not resolve,
    /// or nothing answers at its address (connection refused, no route).
    /// The message names the host and the cause in a few words (`cannot
    /// resolve autopkgtest.ubuntu.com`), not the URL: every request to that
    /// host fails alike, and one line per host is what a reader needs.
    #[error("{message}")]
    Unreachable { url: String, message: String },
    /// The source answered, but not with what we can read.
    #[error("{}: {message}", redact_url(url))]
    Parse { url: String, message: String },
    /// A request that could not be made (an invalid URL, a request that
    /// cannot be repeated).
    #[error("{}", redact_url(.0))]
    Invalid(String),
}

impl SourceError {
    pub fn parse(url: impl Into<String>, message: impl Into<String>) -> Self {
        SourceError::Parse {
            url: url.into(),
            message: message.into(),
        }
    }

    /// True when the host could not be reached at all
    /// ([`SourceError::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SourceError::Unreachable { .. })
    }

    /// True for an HTTP 404 (a missing file or resource).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SourceError::HttpStatus { status: 404, .. })
    }
}
