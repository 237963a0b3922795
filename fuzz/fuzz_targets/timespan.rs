//! systemd-style time spans (`interval = "1h 30min"`): any string either
//! parses or is refused with a message; parse and parse_usec agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ubuntu_metrics::model::timespan::{TimeSpan, parse_usec};

fuzz_target!(|s: &str| {
    let usec = parse_usec(s);
    match TimeSpan::parse(s) {
        Ok(t) => {
            let _ = t.as_duration();
            assert_eq!(usec.as_ref().ok(), Some(&t.as_usec()), "{s:?}");
        }
        Err(_) => {}
    }
});
