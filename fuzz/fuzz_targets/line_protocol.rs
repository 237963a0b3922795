//! The line-protocol encoder on arbitrary points: it either encodes or
//! refuses with an error naming the point, never panics; an encoded line
//! ends with the point's timestamp; an encoded line goes through the spool's
//! record framing and comes back unchanged.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use spool::{Record, line_timestamp, parse_segment};
use ubuntu_metrics::{FieldValue, Point};

#[derive(Debug, Arbitrary)]
enum Value {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    String(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    timestamp: Option<i64>,
}

fuzz_target!(|input: Input| {
    let mut p = Point::new(input.measurement);
    for (k, v) in input.tags {
        p = p.tag(k, v);
    }
    for (k, v) in input.fields {
        p = p.field(
            k,
            match v {
                Value::Integer(i) => FieldValue::Integer(i),
                Value::Float(f) => FieldValue::Float(f),
                Value::Boolean(b) => FieldValue::Boolean(b),
                Value::String(s) => FieldValue::String(s),
            },
        );
    }
    if let Some(ns) = input.timestamp {
        p = p.at(DateTime::from_timestamp_nanos(ns));
    }
    let _ = p.describe();
    match p.to_line() {
        Ok(line) => {
            assert!(!line.is_empty());
            if let Some(t) = p.timestamp {
                assert_eq!(line_timestamp(&line), t.timestamp_nanos_opt(), "{line:?}");
            }
            let mut out = String::from("x\n");
            p.write_line(&mut out).unwrap();
            assert_eq!(&out[2..], line);
            let rec = Record {
                id: 1,
                spooled_at: 0,
                dropped: 0,
                label: "fuzz".into(),
                lines: vec![line],
            };
            let parsed = parse_segment(&rec.encode().unwrap());
            assert_eq!(parsed.records.len(), 1);
            assert_eq!(parsed.records[0].1, rec);
        }
        Err(e) => {
            assert!(e.to_string().starts_with("point "), "{e}");
            let mut out = String::from("x");
            assert!(p.write_line(&mut out).is_err());
            assert_eq!(out, "x", "a refused point left text behind");
        }
    }
});
