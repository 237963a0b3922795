//! rsync's listing output (cdimage) and the images collector's rules on top
//! of it: any text parses to some entries without panicking, and every entry
//! turns into points that encode or are refused.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use ubuntu_metrics::collectors::images;
use ubuntu_metrics::sources::rsync::{parse_line, parse_listing};

fuzz_target!(|s: &str| {
    let entries = parse_listing(s);
    for line in s.lines() {
        let _ = parse_line(line);
    }
    let active = vec!["noble".to_string(), "resolute".to_string()];
    for e in &entries {
        let _ = images::image(&e.path, &active);
    }
    let now = DateTime::from_timestamp(1_776_000_000, 0).unwrap();
    for p in images::points(&entries, &active, now) {
        let _ = p.to_line();
    }
});
