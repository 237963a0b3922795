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
//!   [`DEFAULT_MAX_CATCH_UP`]);
//! - no mark but the collector's `catch_up_from` (a station taking over
//!   another's database: the time of the newest row already there): as if
//!   that time were the mark. A source that has a mark ignores it (the
//!   mark is newer knowledge).
//!
//! The collector notes the newest row it read of each source
//! ([`Seen::note`]); the run hands that to whoever moves the marks once
//! the points are safe (durably spooled or written), never on a dry run.
//! This module holds only the decisions and the in-memory marks; the file
//! is read and written by `state`.

use crate::model::timespan::TimeSpan;
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
    /// at most `max_catch_up`; `catch_up_from` (the collector's option)
    /// stands for the mark of a source that has none.
    pub fn new(
        now: DateTime<Utc>,
        mark: Option<DateTime<Utc>>,
        catch_up_from: Option<DateTime<Utc>>,
        max_catch_up: Duration,
    ) -> Cutoff {
        let window = now - Duration::hours(WINDOW_HOURS);
        let after = match mark.or(catch_up_from) {
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

/// How far in the future `catch_up_from` may be: the time of a row comes
/// from the clock of the server that wrote the report, which may be a
/// little ahead of the station's.
pub const FUTURE_SLACK_MINUTES: i64 = 5;

/// `[collectors.NAME]` options of a collector reading time-series sources.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// How far back a run catches up after downtime (a time span).
    pub max_catch_up: TimeSpan,
    /// For a source that has no mark yet: read the rows newer than this
    /// (an RFC 3339 time), as if it were the mark.
    #[serde(deserialize_with = "rfc3339")]
    pub catch_up_from: Option<DateTime<Utc>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_catch_up: TimeSpan::parse(DEFAULT_MAX_CATCH_UP).expect("a valid span"),
            catch_up_from: None,
        }
    }
}

/// The options' lines in the README's collector reference.
pub const OPTIONS: &[(&str, &str)] = &[
    (
        "max_catch_up",
        "how far back a run reads a time-series report's rows after downtime (catch-up), a time span of at least 12h; default 90d",
    ),
    (
        "catch_up_from",
        "an RFC 3339 time such as \"2026-12-04T10:00:00Z\" (not in the future): a source with no catch-up mark yet reads the rows newer than it (bounded by max_catch_up) instead of only the last 12h; for a station taking over another's database, the time of the newest row already there; ignored once the source has a mark",
    ),
];

/// `catch_up_from`: an RFC 3339 time, as a TOML string or a TOML
/// offset date-time.
fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    let text = match toml::Value::deserialize(d)? {
        toml::Value::String(s) => s,
        toml::Value::Datetime(t) => t.to_string(),
        other => {
            return Err(D::Error::custom(format!(
                "expected an RFC 3339 time such as \"2026-12-04T10:00:00Z\", found {}",
                other.type_str()
            )));
        }
    };
    parse_time(&text).map(Some).map_err(D::Error::custom)
}

/// An RFC 3339 time with its UTC offset.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("not an RFC 3339 time with a UTC offset such as \"2026-12-04T10:00:00Z\" ({e})")
        })
}

impl Options {
    /// Checks the values: `Err((key, why))` for the first bad one.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.check_at(Utc::now())
    }

    /// [`Options::check`] with the clock at `now`.
    pub fn check_at(&self, now: DateTime<Utc>) -> Result<(), (&'static str, String)> {
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
        if let Some(from) = self.catch_up_from
            && from > now + Duration::minutes(FUTURE_SLACK_MINUTES)
        {
            return Err((
                "catch_up_from",
                format!(
                    "{} is in the future (the clock says {}): give the time of the newest row already written",
                    from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
        assert_eq!(
            Cutoff::new(now, None, None, max).after,
            t("2026-11-24T00:00:00Z")
        );
        // a recent mark: still the window
        let c = Cutoff::new(now, Some(t("2026-11-24T11:00:00Z")), None, max);
        assert_eq!(c.after, t("2026-11-24T00:00:00Z"));
        // an old mark: from the mark
        let c = Cutoff::new(now, Some(t("2026-11-20T10:00:00Z")), None, max);
        assert_eq!(c.after, t("2026-11-20T10:00:00Z"));
        assert!(!c.takes(t("2026-11-20T10:00:00Z")));
        assert!(c.takes(t("2026-11-20T10:00:00.001Z")));
        // bounded by max_catch_up
        let c = Cutoff::new(
            now,
            Some(t("2020-01-01T00:00:00Z")),
            None,
            Duration::days(2),
        );
        assert_eq!(c.after, t("2026-11-22T12:00:00Z"));
    }

    #[test]
    fn catch_up_from_stands_for_a_missing_mark() {
        let now = t("2026-12-06T12:00:00Z");
        let max = Duration::days(90);
        let from = Some(t("2026-12-04T10:00:00Z"));
        // no mark, the option older than the window: from the option
        let c = Cutoff::new(now, None, from, max);
        assert_eq!(c.after, t("2026-12-04T10:00:00Z"));
        assert!(!c.takes(t("2026-12-04T10:00:00Z")));
        assert!(c.takes(t("2026-12-04T10:15:00Z")));
        // ...and it is not a mark: nothing to warn about if the source
        // has no row newer than it
        assert_eq!(c.mark, None);
        assert!(c.shrunk("u", Some(t("2026-12-01T00:00:00Z"))).is_none());
        // no mark, the option newer than the window: the window still
        // applies
        let c = Cutoff::new(now, None, Some(t("2026-12-06T11:00:00Z")), max);
        assert_eq!(c.after, t("2026-12-06T00:00:00Z"));
        // a mark: the option is ignored, whether older...
        let c = Cutoff::new(now, Some(t("2026-12-06T11:30:00Z")), from, max);
        assert_eq!(c.after, t("2026-12-06T00:00:00Z"));
        let c = Cutoff::new(now, Some(t("2026-12-05T08:00:00Z")), from, max);
        assert_eq!(c.after, t("2026-12-05T08:00:00Z"));
        // ...or newer than the mark
        let c = Cutoff::new(
            now,
            Some(t("2026-12-01T00:00:00Z")),
            Some(t("2026-12-05T08:00:00Z")),
            max,
        );
        assert_eq!(c.after, t("2026-12-01T00:00:00Z"));
        // bounded by max_catch_up
        let c = Cutoff::new(
            now,
            None,
            Some(t("2026-01-01T00:00:00Z")),
            Duration::days(2),
        );
        assert_eq!(c.after, t("2026-12-04T12:00:00Z"));
    }

    /// The options as `parse_options` reads them, but checked at `now`
    /// below instead of the machine's clock.
    fn options(toml: &str) -> Result<Options, String> {
        toml::from_str(toml).map_err(|e: toml::de::Error| e.message().to_owned())
    }

    /// What `parse_options` says of a value refused when it is read.
    fn refused(toml: &str) -> String {
        let table: toml::Table = toml.parse().unwrap();
        let e = crate::collector::parse_options::<Options>(&table).unwrap_err();
        format!("{}: {}", e.key, e.message)
    }

    #[test]
    fn catch_up_from_is_an_rfc_3339_time_not_in_the_future() {
        let now = t("2026-12-06T12:00:00Z");
        let o = options("catch_up_from = \"2026-12-04T10:00:00Z\"").unwrap();
        assert_eq!(o.catch_up_from, Some(t("2026-12-04T10:00:00Z")));
        assert!(o.check_at(now).is_ok());
        // an offset, and TOML's own offset date-time
        let o = options("catch_up_from = \"2026-12-04T12:00:00+02:00\"").unwrap();
        assert_eq!(o.catch_up_from, Some(t("2026-12-04T10:00:00Z")));
        let o = options("catch_up_from = 2026-12-04T10:00:00Z").unwrap();
        assert_eq!(o.catch_up_from, Some(t("2026-12-04T10:00:00Z")));
        assert_eq!(Options::default().catch_up_from, None);

        for bad in [
            "\"yesterday\"",
            "\"2026-12-04\"",
            "\"2026-12-04T10:00:00\"",
            "2026-12-04T10:00:00",
            "1733306400",
        ] {
            let e = refused(&format!("catch_up_from = {bad}"));
            assert!(e.starts_with(&format!("catch_up_from: {bad}: ")), "{e}");
            assert!(e.contains("RFC 3339"), "{e}");
        }

        // a little ahead (another server's clock) is fine, not more
        let o = options("catch_up_from = \"2026-12-06T12:04:00Z\"").unwrap();
        assert!(o.check_at(now).is_ok());
        let o = options("catch_up_from = \"2027-12-04T10:00:00Z\"").unwrap();
        let (key, why) = o.check_at(now).unwrap_err();
        assert_eq!(key, "catch_up_from");
        assert!(
            why.starts_with("2027-12-04T10:00:00Z is in the future"),
            "{why}"
        );
    }

    #[test]
    fn a_shrunk_source_is_named() {
        let now = t("2026-11-24T12:00:00Z");
        let c = Cutoff::new(
            now,
            Some(t("2026-11-24T11:00:00Z")),
            None,
            Duration::days(90),
        );
        assert!(c.shrunk("u", Some(t("2026-11-24T11:00:00Z"))).is_none());
        assert!(
            c.shrunk("u", Some(t("2026-11-24T10:00:00Z")))
                .unwrap()
                .contains("u: ")
        );
        assert!(c.shrunk("u", None).is_some());
        assert!(
            Cutoff::new(now, None, None, Duration::days(1))
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
        s.note("b", t("2026-11-24T08:30:00Z"));
        let m = s.take();
        assert_eq!(m["a"], t("2026-11-24T10:00:00Z"));
        assert_eq!(m["b"], t("2026-11-24T08:30:00Z"), "a newer row moves it on");
        assert_eq!(m.len(), 2);
        assert!(s.take().is_empty(), "taken");
    }

    /// `max_catch_up` is at least the 12 h every run reads (exactly 12 h
    /// is fine); `catch_up_from` at most 5 minutes ahead of the clock
    /// (exactly 5 is fine).
    #[test]
    fn the_options_bounds_hold_exactly_at_their_limits() {
        let now = t("2026-12-06T12:00:00Z");
        for (span, ok) in [
            ("12h", true),
            ("11h 59min 59s", false),
            ("2h", false),
            ("720h", true),
        ] {
            let o = options(&format!("max_catch_up = \"{span}\"")).unwrap();
            match o.check_at(now) {
                Ok(()) => assert!(ok, "{span} accepted"),
                Err((key, why)) => {
                    assert!(!ok, "{span} refused: {why}");
                    assert_eq!(key, "max_catch_up");
                    assert_eq!(
                        why,
                        format!(
                            "{span} is shorter than the 12 h every run reads; give at least 12h"
                        )
                    );
                }
            }
        }
        let o = options("catch_up_from = \"2026-12-06T12:05:00Z\"").unwrap();
        assert!(o.check_at(now).is_ok());
        let o = options("catch_up_from = \"2026-12-06T12:05:01Z\"").unwrap();
        assert_eq!(o.check_at(now).unwrap_err().0, "catch_up_from");
    }
}
