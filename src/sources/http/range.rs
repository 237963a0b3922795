//! `Content-Range: bytes FIRST-LAST/TOTAL`, read once for the tail and the
//! stream readers.

use crate::sources::SourceError;

/// Where a `206` answer's body lies in its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// The offset of the body's first byte.
    pub first: u64,
    /// The document's whole length, when the server said (not `*`).
    pub total: Option<u64>,
}

impl ContentRange {
    /// The `Content-Range` of a `206` answer to `url`; an error naming
    /// the URL and the header when it is missing or unreadable.
    pub fn of(headers: &reqwest::header::HeaderMap, url: &str) -> Result<Self, SourceError> {
        let range = headers
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Self::parse(range).ok_or_else(|| {
            SourceError::parse(
                url,
                format!("206 answer with an unreadable Content-Range {range:?}"),
            )
        })
    }

    /// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`).
    pub fn parse(range: &str) -> Option<Self> {
        let first = range
            .strip_prefix("bytes ")
            .and_then(|r| r.split('-').next())
            .and_then(|f| f.trim().parse::<u64>().ok())?;
        let total = range.rsplit('/').next().and_then(|t| t.parse::<u64>().ok());
        Some(ContentRange { first, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_range_gives_its_first_byte_and_total() {
        let r = |s| ContentRange::parse(s);
        assert_eq!(
            r("bytes 10-19/100"),
            Some(ContentRange {
                first: 10,
                total: Some(100)
            })
        );
        assert_eq!(
            r("bytes 0-9/*"),
            Some(ContentRange {
                first: 0,
                total: None
            })
        );
        for bad in ["", "bytes */100", "items 0-9/10", "bytes x-9/10"] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }
}
