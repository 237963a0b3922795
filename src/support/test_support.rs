//! Helpers shared by the collectors' unit tests (test builds only).

use crate::model::point::Point;
use chrono::{DateTime, TimeZone, Utc};
/// A writer whose bytes the test keeps, and what code logs: from the
/// log-capture crate, which the integration tests use too.
pub use log_capture::{Captured, logged_at};

/// The fixed "now" of the fixtures: 2026-11-24T12:00:00Z.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

/// Points as sorted lines of line protocol.
pub fn lines(ps: Vec<Point>) -> Vec<String> {
    let mut v: Vec<String> = ps.iter().map(|p| p.to_line().unwrap()).collect();
    v.sort();
    v
}

/// What `f` logs at warning level and above (without colours), with its
/// result: for a test that a warning is given, or not.
pub fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    logged_at(tracing::Level::WARN, f)
}
