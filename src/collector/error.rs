//! What went wrong in a collection ([`CollectorError`]), and how long a
//! message may be when it is logged, printed or stored.

use crate::sources::SourceError;

/// What went wrong in a collection. Every variant names where (a URL, a
/// file) and what.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CollectorError {
    /// A source failed (an HTTP status, a request, a host out of reach, an
    /// answer that cannot be read): its error, with its message, as it is
    /// (so `?` on a source call works in `collect`).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The distro-info data is missing, unreadable or out of date.
    #[error("{0}")]
    DistroInfo(String),
    /// Anything else (a configuration option, an external program).
    #[error("{}", crate::config::redact_url(.0))]
    Other(String),
    /// Every part of a collector failed ([`Parts`](super::Parts)): each
    /// part's error, already cut to [`MAX_MESSAGE_CHARS`] each.
    #[error("{}", parts_message(of, failed))]
    Parts {
        of: String,
        failed: Vec<(String, CollectorError)>,
    },
}

impl CollectorError {
    /// The source at `url` answered, but not with what we can read.
    pub fn parse(url: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::Source(SourceError::parse(url, message))
    }

    /// The host of `url` could not be reached at all; `message` names the
    /// host and the cause (see [`SourceError::Unreachable`]).
    pub fn unreachable(url: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::Source(SourceError::Unreachable {
            url: url.into(),
            message: message.into(),
        })
    }

    /// The message to log, print or store: cut to [`MAX_MESSAGE_CHARS`];
    /// a [`Parts`](CollectorError::Parts) error lists its parts' (cut)
    /// messages, the whole cut to [`MAX_PARTS_MESSAGE_CHARS`].
    pub fn short(&self) -> String {
        match self {
            // Each part was cut already; the whole is bounded too, so that
            // fifteen failed listings stay one readable line.
            CollectorError::Parts { .. } => cut(&self.to_string(), MAX_PARTS_MESSAGE_CHARS),
            _ => short_message(&self.to_string()),
        }
    }

    /// True when the host could not be reached at all
    /// ([`SourceError::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, CollectorError::Source(e) if e.is_unreachable())
    }

    /// True for an HTTP 404 (a missing file or resource).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CollectorError::Source(e) if e.is_not_found())
    }

    /// The cause of an unreachable host ([`SourceError::Unreachable`]'s
    /// message), or `None`.
    pub fn unreachable_message(&self) -> Option<&str> {
        match self {
            CollectorError::Source(SourceError::Unreachable { message, .. }) => Some(message),
            _ => None,
        }
    }
}

/// The longest error message logged, printed or stored (in characters).
pub const MAX_MESSAGE_CHARS: usize = 300;

/// `msg` cut to [`MAX_MESSAGE_CHARS`] characters (on a character boundary),
/// saying how long it was: an upstream's whole answer (a 30 MB JSON
/// string quoted by a parse error) must not flood the log or InfluxDB.
pub fn short_message(msg: &str) -> String {
    cut(msg, MAX_MESSAGE_CHARS)
}

/// The longest message of a collector made of parts (each part's own
/// message is cut at [`MAX_MESSAGE_CHARS`]).
pub const MAX_PARTS_MESSAGE_CHARS: usize = 1000;

fn cut(msg: &str, max: usize) -> String {
    match msg.char_indices().nth(max) {
        None => msg.to_owned(),
        Some((end, _)) => format!("{}… (message cut: {} bytes in all)", &msg[..end], msg.len()),
    }
}

/// The most failed parts an error lists with their messages; the others
/// are counted (a part list can come from upstream, e.g. versions' reports).
pub const MAX_PARTS_LISTED: usize = 30;

/// `part: error` (just the error when the part has no name), the error cut
/// to [`MAX_MESSAGE_CHARS`]; nested parts in parentheses.
pub(super) fn part_message(part: &str, e: &CollectorError) -> String {
    let e = match e {
        CollectorError::Parts { .. } => format!("({e})"),
        _ => short_message(&e.to_string()),
    };
    if part.is_empty() {
        e
    } else {
        format!("{part}: {e}")
    }
}

fn parts_message(of: &str, failed: &[(String, CollectorError)]) -> String {
    let mut listed: Vec<String> = Vec::new();
    for (part, e) in failed.iter().take(MAX_PARTS_LISTED) {
        // A part failing alike on several documents (one host out of
        // reach) is said once.
        let m = part_message(part, e);
        if !listed.contains(&m) {
            listed.push(m);
        }
    }
    if failed.len() > MAX_PARTS_LISTED {
        listed.push(format!(
            "and {} more parts",
            failed.len() - MAX_PARTS_LISTED
        ));
    }
    format!(
        "every part of {of} failed ({}): {}",
        failed.len(),
        listed.join("; ")
    )
}
