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

/// Records hold at most `MAX_RECORD_LINES` lines and `MAX_RECORD_BYTES`
/// bytes (4 per line for its length): exactly at a limit is one record,
/// one more line or byte starts the next; a single line larger than the
/// byte limit is a record of its own.
#[test]
fn records_are_split_exactly_at_the_line_and_byte_limits() {
    use crate::store::chunk_lines;
    use crate::{MAX_RECORD_BYTES, MAX_RECORD_LINES};
    let sizes =
        |lines: &[String]| -> Vec<usize> { chunk_lines(lines).iter().map(|c| c.len()).collect() };
    let short = |n: usize| -> Vec<String> { (0..n).map(|i| format!("m v={i}i")).collect() };
    assert_eq!(sizes(&[]), Vec::<usize>::new());
    assert_eq!(sizes(&short(1)), [1]);
    assert_eq!(sizes(&short(MAX_RECORD_LINES)), [MAX_RECORD_LINES]);
    assert_eq!(sizes(&short(MAX_RECORD_LINES + 1)), [MAX_RECORD_LINES, 1]);
    assert_eq!(
        sizes(&short(2 * MAX_RECORD_LINES + 3)),
        [MAX_RECORD_LINES, MAX_RECORD_LINES, 3]
    );
    // Four lines that fill the byte limit exactly, then one of 1 byte.
    let quarter = MAX_RECORD_BYTES / 4 - 4;
    let mut big: Vec<String> = (0..4).map(|_| "x".repeat(quarter)).collect();
    assert_eq!(sizes(&big), [4]);
    big.push("y".into());
    assert_eq!(sizes(&big), [4, 1]);
    // One byte more in the fourth line: it starts the second record.
    big[3].push('z');
    assert_eq!(sizes(&big), [3, 2]);
    // A line over the limit alone, between two short ones.
    let huge = vec!["a".into(), "h".repeat(MAX_RECORD_BYTES + 1), "b".into()];
    assert_eq!(sizes(&huge), [1, 1, 1]);
    // The pieces are the lines, in order.
    let lines = short(MAX_RECORD_LINES + 2);
    assert_eq!(chunk_lines(&lines).concat(), lines);
}
