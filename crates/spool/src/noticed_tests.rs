//! Tests that pin what mutation testing (`scripts/mutants`) found no test
//! noticing: each names the behaviour it holds in place.

use crate::codec::{Record, parse_segment};

fn read_back(r: &Record) -> Record {
    let p = parse_segment(&r.encode().unwrap());
    assert!(p.damage.is_empty(), "{:?}", p.damage);
    assert_eq!(p.records.len(), 1);
    p.records[0].1.clone()
}

/// A label longer than its 16-bit length field is cut to 65,535 bytes, on
/// a character boundary; a shorter one is kept whole.
#[test]
fn a_label_over_64_kib_is_cut_on_a_character_boundary() {
    let fits = Record {
        label: "x".repeat(65_535),
        ..Record::default()
    };
    assert_eq!(read_back(&fits).label, fits.label);
    // 65,534 bytes of ASCII, then 'é' (2 bytes) crossing the limit.
    let over = Record {
        label: format!("{}é{}", "x".repeat(65_534), "y".repeat(10)),
        ..Record::default()
    };
    assert_eq!(read_back(&over).label, "x".repeat(65_534));
    let short = Record {
        label: "ünï".into(),
        ..Record::default()
    };
    assert_eq!(read_back(&short).label, "ünï");
}
