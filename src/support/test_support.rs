//! Helpers shared by the collectors' unit tests (test builds only).

use crate::model::point::Point;
use chrono::{DateTime, TimeZone, Utc};
use std::sync::{Arc, Mutex};

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

/// A writer whose bytes the test keeps: clones share them (a log
/// subscriber's writer, a printer's output, a filter process's stdout).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// What `f` logs at warning level and above (without colours), with its
/// result: for a test that a warning is given, or not.
pub fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    logged_at(tracing::Level::WARN, f)
}

/// What `f` logs at `level` and above (without colours), with its result.
pub fn logged_at<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, String) {
    // A second dispatcher, alive for the whole run: while a test's scoped
    // dispatcher is the only one, tracing-core computes the interest of a
    // callsite first seen on another test's thread from that thread's
    // default (none), and the test's own events are then filtered out.
    static OTHER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    OTHER.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let buf = Captured::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, buf.text())
}

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
