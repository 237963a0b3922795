//! The spool's segment reader is documented "never panics" on any bytes (a
//! segment may be torn or damaged on disk). Also checks what replay relies
//! on: ranges lie inside the data and do not overlap, and each record found
//! encodes back to a record the reader reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spool::{line_timestamp, parse_segment};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_segment(data);
    let mut ranges: Vec<_> = parsed
        .records
        .iter()
        .map(|(r, _)| r.clone())
        .chain(parsed.damage.iter().cloned())
        .collect();
    ranges.sort_by_key(|r| r.start);
    for w in ranges.windows(2) {
        assert!(w[0].end <= w[1].start, "overlapping ranges {ranges:?}");
    }
    for r in &ranges {
        assert!(
            r.start <= r.end && r.end <= data.len(),
            "{r:?} outside {}",
            data.len()
        );
    }
    let _ = parsed.valid_end();
    let _ = parsed.torn_tail_only(data.len());
    let _ = parsed.damaged_bytes();
    for (_, rec) in &parsed.records {
        let _ = rec.spooled_at_time();
        for l in &rec.lines {
            let _ = line_timestamp(l);
        }
        let bytes = rec.encode().expect("a record read from a segment encodes");
        let again = parse_segment(&bytes);
        assert!(again.damage.is_empty(), "re-encoded record is damaged");
        assert_eq!(again.records.len(), 1);
        assert_eq!(&again.records[0].1, rec);
    }
});
