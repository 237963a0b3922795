//! `provision`'s parsers: the configured retention and the Go durations
//! InfluxDB reports for existing policies (`SHOW RETENTION POLICIES`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ubuntu_metrics::ops::provision::{Retention, parse_go_duration};

fuzz_target!(|s: &str| {
    if let Ok(r) = Retention::parse(s) {
        let _ = r.to_influxql();
    }
    let _ = Retention::from_influx(s);
    let _ = parse_go_duration(s);
});
