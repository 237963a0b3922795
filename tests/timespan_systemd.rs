//! Our time-span parser against systemd's own, as `systemd-analyze
//! timespan` prints it on this machine.

use std::process::Command;
use ubuntu_metrics::model::timespan::parse_usec;

/// What systemd makes of `span`: Some(microseconds) or None (refused).
fn systemd(span: &str) -> Option<u64> {
    let out = Command::new("systemd-analyze")
        .args(["timespan", span])
        .output()
        .expect("systemd-analyze runs (install the systemd package: sudo apt-get install systemd)");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.trim_start().starts_with("μs:"))?;
    line.trim_start()
        .trim_start_matches("μs:")
        .trim()
        .parse()
        .ok()
}

const SPANS: &[&str] = &[
    "5m",
    "1h",
    "10m",
    "2s",
    "30s",
    "0",
    "90",
    "1.5h",
    "1h 30min",
    "1h30min",
    "2 hours",
    "1hr",
    "3 days",
    "1d 2h",
    "1w",
    "2weeks",
    "1M",
    "1month",
    "2 months",
    "1y",
    "1year",
    "500ms",
    "500msec",
    "7us",
    "7usec",
    "1min",
    "3 minutes",
    "1minute",
    "10sec",
    "1second",
    "5 seconds",
    "0.5s",
    ".5s",
    "1.25h",
    "1h 1m 1s 1ms 1us",
    "  5m  ",
    "1d1h1m1s",
    "1H",
    "1h,30m",
    "3mins",
    "",
    "abc",
    "5 parsecs",
    "-5s",
    "1.2.3s",
    "1h 30",
    "m",
    "h1",
    "1S",
    "1Min",
    "1.h",
    "1 h",
    "10 s 5",
    "1e3s",
    "0x10s",
    "1hh",
];

#[test]
fn our_parser_agrees_with_systemd_analyze() {
    let mut disagreements = Vec::new();
    for span in SPANS {
        let ours = parse_usec(span).ok();
        let theirs = systemd(span);
        if ours != theirs {
            disagreements.push(format!("{span:?}: ours {ours:?}, systemd {theirs:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "disagreements:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn refusals_name_the_value() {
    for span in ["1H", "1h,30m", "3mins"] {
        let e = parse_usec(span).unwrap_err();
        assert!(e.contains(span), "{e}");
    }
}
