//! The partial-failure rule, written once ([`Parts`]).

use super::error::{CollectorError, part_message};
use crate::model::point::Point;
use crate::sources::SourceError;

/// The spec's partial-failure rule, written once: a collector (or a part of
/// one) made of independent parts fails only when every part failed, and
/// then with every part's (short) error in its own; when some part worked,
/// its points are kept and each failed part is logged once, as a warning.
/// So a failure is reported once: by a warning, or in the error (which the
/// caller reports), never both.
///
/// Parts nest: a part may itself be the [`Parts::finish`] of sub-parts (the
/// series of one report); its error then lists the sub-parts.
///
/// ```
/// # use ubuntu_metrics::collector::Parts;
/// # use ubuntu_metrics::{CollectorError, Point};
/// let mut parts = Parts::new("autopkgtest");
/// parts.add("production", Ok(vec![Point::new("m").field("count", 1i64)]));
/// parts.add("staging", Err(CollectorError::Other("down".into())));
/// assert_eq!(parts.finish().unwrap().len(), 1); // and staging is logged
/// ```
#[must_use = "finish() applies the rule"]
pub struct Parts {
    of: String,
    total: usize,
    points: Vec<Point>,
    failed: Vec<(String, CollectorError)>,
}

impl Parts {
    /// The parts of `of` (a collector's name, or what a nested set of
    /// parts is: "last run age").
    pub fn new(of: impl Into<String>) -> Parts {
        Parts {
            of: of.into(),
            total: 0,
            points: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// One part's outcome. `part` names it in a warning or in the error
    /// (e.g. a series, an instance); it may be empty when the error names
    /// the part already (its URL).
    pub fn add(&mut self, part: impl Into<String>, result: Result<Vec<Point>, CollectorError>) {
        match result {
            Ok(points) => self.ok(points),
            Err(e) => self.fail(part, e),
        }
    }

    /// A part that worked (with no points, maybe).
    pub fn ok(&mut self, points: impl IntoIterator<Item = Point>) {
        self.total += 1;
        self.points.extend(points);
    }

    /// A part that failed.
    pub fn fail(&mut self, part: impl Into<String>, error: CollectorError) {
        self.total += 1;
        self.failed.push((part.into(), error));
    }

    /// The rule: the points of the parts that worked, each failed part
    /// logged once as a warning; or, when every part failed (and there was
    /// at least one), an error holding every part's error and nothing
    /// logged. A lone part's error is returned as it is. No part at all is
    /// no points and no error.
    ///
    /// Parts that failed because their host could not be reached
    /// ([`SourceError::Unreachable`](crate::sources::SourceError::Unreachable)) are said once per host: when every
    /// part failed so, the error is just `cannot resolve HOST` (each host
    /// once), not one line per URL; a warning names the parts of one
    /// unreachable host together.
    pub fn finish(mut self) -> Result<Vec<Point>, CollectorError> {
        if self.total > 0 && self.failed.len() == self.total {
            if self.total == 1 {
                return Err(self.failed.remove(0).1);
            }
            if let Some(e) = all_unreachable(self.failed.iter().map(|(_, e)| e)) {
                return Err(e);
            }
            return Err(CollectorError::Parts {
                of: self.of,
                failed: self.failed,
            });
        }
        // Unreachable hosts first, each with the parts it failed.
        let mut hosts: Vec<(String, Vec<&str>)> = Vec::new();
        for (part, e) in &self.failed {
            match unreachable_causes(e) {
                Some(causes) => {
                    let cause = causes.join("; ");
                    match hosts.iter_mut().find(|(c, _)| *c == cause) {
                        Some((_, parts)) if parts.contains(&part.as_str()) => {}
                        Some((_, parts)) => parts.push(part),
                        None => hosts.push((cause, vec![part])),
                    }
                }
                None => tracing::warn!(
                    "{}: {}; the other parts are still reported",
                    self.of,
                    part_message(part, e)
                ),
            }
        }
        for (cause, parts) in hosts {
            let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
            tracing::warn!(
                "{}: {cause}{}; the other parts are still reported",
                self.of,
                if parts.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", parts.join(", "))
                }
            );
        }
        Ok(self.points)
    }
}

/// The distinct causes of `e` when it is only hosts that could not be
/// reached (an [`SourceError::Unreachable`](crate::sources::SourceError::Unreachable), or parts that all are),
/// in the order met; `None` when anything else failed.
fn unreachable_causes(e: &CollectorError) -> Option<Vec<String>> {
    let mut causes: Vec<String> = Vec::new();
    let mut add = |m: &str| {
        for c in m.split("; ") {
            if !causes.iter().any(|k| k == c) {
                causes.push(c.to_owned());
            }
        }
    };
    if let Some(message) = e.unreachable_message() {
        add(message);
        return Some(causes);
    }
    match e {
        CollectorError::Parts { failed, .. } => {
            for (_, e) in failed {
                for c in unreachable_causes(e)? {
                    add(&c);
                }
            }
        }
        _ => return None,
    }
    Some(causes)
}

/// One [`SourceError::Unreachable`](crate::sources::SourceError::Unreachable) for errors that all are (or are
/// made only of) unreachable hosts: each cause once.
fn all_unreachable<'a>(
    errors: impl IntoIterator<Item = &'a CollectorError>,
) -> Option<CollectorError> {
    let mut causes: Vec<String> = Vec::new();
    let mut url = None;
    for e in errors {
        for c in unreachable_causes(e)? {
            if !causes.contains(&c) {
                causes.push(c);
            }
        }
        if url.is_none()
            && let CollectorError::Source(SourceError::Unreachable { url: u, .. }) = e
        {
            url = Some(u.clone());
        }
    }
    if causes.is_empty() {
        return None;
    }
    Some(CollectorError::unreachable(
        url.unwrap_or_default(),
        causes.join("; "),
    ))
}

/// [`Parts`] of `of`, all at once: `(part, outcome)` pairs.
pub fn merge_parts<S: Into<String>>(
    of: &str,
    parts: impl IntoIterator<Item = (S, Result<Vec<Point>, CollectorError>)>,
) -> Result<Vec<Point>, CollectorError> {
    let mut all = Parts::new(of);
    for (part, result) in parts {
        all.add(part, result);
    }
    all.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{MAX_MESSAGE_CHARS, MAX_PARTS_LISTED, short_message};
    use crate::support::test_support::logged;

    /// Parts that all failed on unreachable hosts make one short error
    /// naming each host once (issue 24 item 1), however many URLs and
    /// nested parts; anything else failing keeps the list of parts.
    #[test]
    fn unreachable_parts_are_said_once_per_host() {
        let down = |url: &str, host: &str| {
            CollectorError::unreachable(url, format!("cannot resolve {host}"))
        };
        let mut inner = Parts::new("last run age");
        inner.add("focal", Err(down("https://a.invalid/f", "a.invalid")));
        inner.add("jammy", Err(down("https://a.invalid/j", "a.invalid")));
        let mut parts = Parts::new("britney");
        parts.add("ages", inner.finish());
        parts.add("csv", Err(down("https://b.invalid/x", "b.invalid")));
        parts.add("yaml", Err(down("https://a.invalid/y", "a.invalid")));
        let e = parts.finish().unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert_eq!(
            e.short(),
            "cannot resolve a.invalid; cannot resolve b.invalid"
        );

        let mut mixed = Parts::new("versions");
        mixed.add("a", Err(down("https://a.invalid/", "a.invalid")));
        mixed.add("b", Err(CollectorError::Other("HTTP 500".into())));
        let e = mixed.finish().unwrap_err();
        assert!(!e.is_unreachable());
        assert!(
            e.short().starts_with("every part of versions failed (2)"),
            "{e}"
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(short_message("short"), "short");
        let long = "é".repeat(1000);
        let cut = short_message(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_MESSAGE_CHARS)));
        assert!(cut.ends_with("… (message cut: 2000 bytes in all)"), "{cut}");
        assert!(cut.chars().count() < MAX_MESSAGE_CHARS + 40);
    }

    fn one() -> Result<Vec<Point>, CollectorError> {
        Ok(vec![Point::new("m").field("count", 1i64)])
    }

    fn bad(url: &str) -> Result<Vec<Point>, CollectorError> {
        Err(CollectorError::parse(url, format!("bad {url}")))
    }

    #[test]
    fn some_parts_failing_keeps_the_rest_and_warns_once_per_failed_part() {
        let (got, log) = logged(|| {
            let mut parts = Parts::new("c");
            parts.add("a", one());
            parts.add("b", bad("http://b"));
            parts.add("z", Ok(Vec::new()));
            parts.add("d", bad("http://d"));
            parts.finish()
        });
        assert_eq!(got.unwrap().len(), 1);
        assert_eq!(log.lines().count(), 2, "{log}");
        assert_eq!(log.matches("bad http://b").count(), 1, "{log}");
        assert_eq!(log.matches("bad http://d").count(), 1, "{log}");
        assert!(
            log.contains("c: b: http://b: bad http://b; the other parts are still reported"),
            "{log}"
        );
    }

    #[test]
    fn every_part_failing_is_one_error_with_each_part_and_no_warning() {
        let (got, log) =
            logged(|| merge_parts("c", [("a", bad("http://a")), ("b", bad("http://b"))]));
        let err = got.unwrap_err();
        assert!(matches!(err, CollectorError::Parts { .. }));
        assert_eq!(
            err.to_string(),
            "every part of c failed (2): a: http://a: bad http://a; b: http://b: bad http://b"
        );
        assert_eq!(log, "", "nothing is logged: the caller reports the error");
    }

    #[test]
    fn a_lone_part_fails_with_its_own_error_and_no_parts_is_no_points() {
        let (got, log) = logged(|| merge_parts("c", [("a", bad("http://a"))]));
        assert!(matches!(
            got.unwrap_err(),
            CollectorError::Source(SourceError::Parse { .. })
        ));
        assert_eq!(log, "");
        let none: [(&str, Result<Vec<Point>, CollectorError>); 0] = [];
        assert!(merge_parts("c", none).unwrap().is_empty());
    }

    #[test]
    fn nested_parts_report_once_at_the_level_that_decides() {
        // Every sub-part of one part failed, another part worked: one
        // warning, for that part, listing its sub-parts.
        let (got, log) = logged(|| {
            let inner = merge_parts("inner", [("x", bad("http://x")), ("y", bad("http://y"))]);
            merge_parts("outer", [("p", inner), ("q", one())])
        });
        assert_eq!(got.unwrap().len(), 1);
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains("outer: p: (every part of inner failed (2): x: http://x: bad http://x; y: http://y: bad http://y)"),
            "{log}"
        );
        // Everything failed: one error, nothing logged.
        let (got, log) = logged(|| {
            let inner = merge_parts("inner", [("x", bad("http://x")), ("y", bad("http://y"))]);
            merge_parts("outer", [("p", inner), ("q", bad("http://q"))])
        });
        let err = got.unwrap_err().to_string();
        assert_eq!(log, "");
        assert_eq!(err.matches("bad http://x").count(), 1, "{err}");
        assert_eq!(err.matches("bad http://q").count(), 1, "{err}");
    }

    #[test]
    fn each_part_message_is_cut_but_every_part_is_kept() {
        let long = |u: &str| Err(CollectorError::parse(u, "x".repeat(5000)));
        let err = merge_parts("c", [("a", long("http://a")), ("b", long("http://b"))]).unwrap_err();
        let short = err.short();
        assert!(
            short.contains("a: http://a: xxx") && short.contains("; b: http://b: xxx"),
            "{short}"
        );
        assert_eq!(short.matches("(message cut").count(), 2, "{short}");
        assert!(
            short.len() < 2 * (MAX_MESSAGE_CHARS + 60) + 40,
            "{}",
            short.len()
        );
        // Another error is cut as a whole.
        assert!(long("http://a").unwrap_err().short().len() < MAX_MESSAGE_CHARS + 60);
    }

    #[test]
    fn an_error_lists_at_most_max_parts_listed_parts() {
        let parts = (0..MAX_PARTS_LISTED + 5).map(|i| (format!("p{i}"), bad("http://u")));
        let err = merge_parts("c", parts).unwrap_err().to_string();
        assert_eq!(err.matches("bad http://u").count(), MAX_PARTS_LISTED);
        assert!(err.ends_with("; and 5 more parts"), "{err}");
        assert!(err.starts_with(&format!(
            "every part of c failed ({}): ",
            MAX_PARTS_LISTED + 5
        )));
    }
}
