//! A failed request as a [`SourceError`]: a host that could not be
//! reached at all named in a few words, anything else with its chain of
//! causes.

use super::resolve::Unresolved;
use crate::sources::SourceError;

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

pub(super) fn request_error(url: &str, e: &reqwest::Error) -> SourceError {
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
