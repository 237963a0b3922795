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

/// Only damage at the very end, right after the last whole record, is an
/// interrupted append; no damage, or damage elsewhere, is not.
#[test]
fn a_torn_tail_is_damage_only_at_the_end() {
    let a = Record {
        label: "a".into(),
        lines: vec!["m v=1i 1".into()],
        ..Record::default()
    };
    let whole: Vec<u8> = [a.encode().unwrap(), a.encode().unwrap()].concat();
    let clean = parse_segment(&whole);
    assert!(!clean.torn_tail_only(whole.len()));

    let torn = &whole[..whole.len() - 3];
    assert!(parse_segment(torn).torn_tail_only(torn.len()));

    let mut middle = whole.clone();
    let first_len = a.encode().unwrap().len();
    middle[first_len - 1] ^= 0xff;
    let p = parse_segment(&middle);
    assert_eq!(p.damage.len(), 1);
    assert!(!p.torn_tail_only(middle.len()), "{p:?}");

    // Damage in the middle and a torn tail: two ranges, not only a tail.
    let mut both = [middle, a.encode().unwrap()].concat();
    both.truncate(both.len() - 3);
    let p = parse_segment(&both);
    assert_eq!(p.damage.len(), 2, "{p:?}");
    assert!(!p.torn_tail_only(both.len()), "{p:?}");
}
