//! Helpers shared by the collectors' unit tests (test builds only).

use crate::point::Point;
use chrono::{DateTime, TimeZone, Utc};

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
