//! Catch-up after downtime: which rows of a time-series source (a CSV whose
//! rows carry their own time) a run reads.
//!
//! A station remembers, per collector and source URL, the time of the
//! newest row it wrote (its *mark*, in `catch-up.json` under the state
//! directory, see `state`). A run then reads:
//!
//! - no mark (a fresh station): the rows of the last [`WINDOW_HOURS`] hours,
//!   as the first generation did;
//! - a mark: every row newer than the mark *or* within the window, whichever
//!   reaches further back, but never rows older than `max_catch_up` (the
//!   collector's `[collectors.NAME] max_catch_up`, default
//!   [`DEFAULT_MAX_CATCH_UP`]).
//!
//! The collector notes the newest row it read of each source
//! ([`Seen::note`]); the run hands that to whoever moves the marks once
//! the points are safe (durably spooled or written), never on a dry run.
//! This module holds only the decisions and the in-memory marks; the file
//! is read and written by `state`.

use crate::timespan::TimeSpan;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Rows older than this many hours are not read by a station that has no
/// mark yet (or whose mark is newer).
pub const WINDOW_HOURS: i64 = 12;

/// How far back a run catches up unless the collector's `max_catch_up`
/// says otherwise.
pub const DEFAULT_MAX_CATCH_UP: &str = "90d";

/// The marks of a station: collector name -> source URL (credentials
/// redacted) -> time of the newest row written.
pub type Marks = BTreeMap<String, BTreeMap<String, DateTime<Utc>>>;

/// What a run reads of one source: rows strictly newer than `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoff {
    /// Rows at or before this time are not read.
    pub after: DateTime<Utc>,
    /// The station's mark for this source, if it has one.
    pub mark: Option<DateTime<Utc>>,
}

impl Cutoff {
    /// The cutoff at `now` for a source whose mark is `mark`, catching up
    /// at most `max_catch_up`.
    pub fn new(now: DateTime<Utc>, mark: Option<DateTime<Utc>>, max_catch_up: Duration) -> Cutoff {
        let window = now - Duration::hours(WINDOW_HOURS);
        let after = match mark {
            None => window,
            Some(m) => m.min(window).max(now - max_catch_up),
        };
        Cutoff { after, mark }
    }

    /// Whether a row of time `t` is read.
    pub fn takes(&self, t: DateTime<Utc>) -> bool {
        t > self.after
    }

    /// After reading a whole source whose newest row is `newest` (None: no
    /// row at all): a warning when the mark is newer than every row (the
    /// source shrank or was rotated; the run read the window instead).
    pub fn shrunk(&self, url: &str, newest: Option<DateTime<Utc>>) -> Option<String> {
        let mark = self.mark?;
        match newest {
            Some(n) if n >= mark => None,
            _ => Some(format!(
                "{url}: the newest row written before ({mark}) is newer than every row of the source \
                 ({}): it shrank or was rotated; reading the last {WINDOW_HOURS} h",
                newest.map_or_else(|| "none".to_owned(), |n| n.to_string())
            )),
        }
    }
}

/// `[collectors.NAME]` options of a collector reading time-series sources.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// How far back a run catches up after downtime (a time span).
    pub max_catch_up: TimeSpan,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_catch_up: TimeSpan::parse(DEFAULT_MAX_CATCH_UP).expect("a valid span"),
        }
    }
}

/// The option's line in `list` and the README.
pub const OPTION: (&str, &str) = (
    "max_catch_up",
    "how far back a run reads a time-series report's rows after downtime (catch-up), a time span of at least 12h; default 90d",
);

impl Options {
    /// Checks the values: `Err((key, why))` for the first bad one.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_catch_up.as_duration()
            < std::time::Duration::from_secs(WINDOW_HOURS as u64 * 3600)
        {
            return Err((
                "max_catch_up",
                format!(
                    "{} is shorter than the {WINDOW_HOURS} h every run reads; give at least 12h",
                    self.max_catch_up
                ),
            ));
        }
        Ok(())
    }

    /// `max_catch_up` as a chrono duration.
    pub fn max(&self) -> Duration {
        Duration::from_std(self.max_catch_up.as_duration()).unwrap_or(Duration::MAX)
    }
}

/// The newest row read of each source by one collector run.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<BTreeMap<String, DateTime<Utc>>>>);

impl Seen {
    /// Notes that the run read a row of `url` at `time`.
    pub fn note(&self, url: &str, time: DateTime<Utc>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(url.to_owned()).or_insert(time);
        if time > *e {
            *e = time;
        }
    }

    /// The newest row of each source read so far.
    pub fn take(&self) -> BTreeMap<String, DateTime<Utc>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn cutoffs() {
        let now = t("2026-11-24T12:00:00Z");
        let max = Duration::days(90);
        // no mark: the window
        assert_eq!(Cutoff::new(now, None, max).after, t("2026-11-24T00:00:00Z"));
        // a recent mark: still the window
        let c = Cutoff::new(now, Some(t("2026-11-24T11:00:00Z")), max);
        assert_eq!(c.after, t("2026-11-24T00:00:00Z"));
        // an old mark: from the mark
        let c = Cutoff::new(now, Some(t("2026-11-20T10:00:00Z")), max);
        assert_eq!(c.after, t("2026-11-20T10:00:00Z"));
        assert!(!c.takes(t("2026-11-20T10:00:00Z")));
        assert!(c.takes(t("2026-11-20T10:00:00.001Z")));
        // bounded by max_catch_up
        let c = Cutoff::new(now, Some(t("2020-01-01T00:00:00Z")), Duration::days(2));
        assert_eq!(c.after, t("2026-11-22T12:00:00Z"));
    }

    #[test]
    fn a_shrunk_source_is_named() {
        let now = t("2026-11-24T12:00:00Z");
        let c = Cutoff::new(now, Some(t("2026-11-24T11:00:00Z")), Duration::days(90));
        assert!(c.shrunk("u", Some(t("2026-11-24T11:00:00Z"))).is_none());
        assert!(
            c.shrunk("u", Some(t("2026-11-24T10:00:00Z")))
                .unwrap()
                .contains("u: ")
        );
        assert!(c.shrunk("u", None).is_some());
        assert!(
            Cutoff::new(now, None, Duration::days(1))
                .shrunk("u", None)
                .is_none()
        );
    }

    #[test]
    fn seen_keeps_the_newest() {
        let s = Seen::default();
        s.note("a", t("2026-11-24T10:00:00Z"));
        s.note("a", t("2026-11-24T09:00:00Z"));
        s.note("b", t("2026-11-24T08:00:00Z"));
        let m = s.take();
        assert_eq!(m["a"], t("2026-11-24T10:00:00Z"));
        assert_eq!(m.len(), 2);
    }
}
