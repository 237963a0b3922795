//! Inputs for the property tests of the parsers (test builds only):
//! arbitrary text, recorded documents mutated at random, arbitrary JSON.
//! Each parser's test asserts that no input makes it panic, and that the
//! points it returns encode (or are refused with an error).

use proptest::prelude::*;

/// Cases per property of a parser (proptest's default is 256).
pub const CASES: u32 = 512;

/// `base` with a few random edits: a character replaced, inserted or
/// removed, a range deleted or duplicated, the text cut short.
pub fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let edit = (
        0u8..6,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<char>(),
    );
    proptest::collection::vec(edit, 0..8).prop_map(move |edits| {
        let mut chars: Vec<char> = base.chars().collect();
        for (op, a, b, c) in edits {
            if chars.is_empty() {
                chars.push(c);
                continue;
            }
            let i = a.index(chars.len());
            let j = b.index(chars.len());
            let (lo, hi) = (i.min(j), i.max(j));
            match op {
                0 => chars[i] = c,
                1 => chars.insert(i, c),
                2 => {
                    chars.remove(i);
                }
                3 => {
                    chars.drain(lo..hi.min(lo + 64));
                }
                4 => {
                    let dup: Vec<char> = chars[lo..hi.min(lo + 256)].to_vec();
                    chars.splice(i..i, dup);
                }
                _ => chars.truncate(i),
            }
        }
        chars.into_iter().collect()
    })
}

/// Arbitrary text, or `base` mutated, or `base`'s lines shuffled and
/// repeated: what a misbehaving source could send instead of `base`.
pub fn text_like(base: &'static str) -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = base.lines().collect();
    let n = lines.len().max(1);
    prop_oneof![
        2 => ".{0,300}",
        1 => proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        4 => mutated(base),
        1 => proptest::collection::vec(0..n, 0..40).prop_map(move |idx| {
            idx.iter()
                .filter_map(|i| lines.get(*i))
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        }),
    ]
}

/// Arbitrary JSON values, nested a few levels.
pub fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "[a-z0-9_-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{0,10}|.{0,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON documents like `base`: `base` mutated (kept when it still parses),
/// or arbitrary JSON.
pub fn json_like(base: &'static str) -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        mutated(base).prop_map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::Null)),
        arb_json(),
    ]
}

/// Every point encodes or is refused with an error, never a panic.
pub fn encode_all(points: &[crate::Point]) {
    for p in points {
        let _ = p.to_line();
    }
}
