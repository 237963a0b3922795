//! The README's generated blocks: the collectors table and the reference
//! of what each collector writes, both from the registry (each collector's
//! name, interval, description, sources, options and schema). This test
//! fails when one is stale and shows it; `UPDATE_README=1 cargo test --test
//! readme` writes the current blocks into the README instead.

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The text between `<!-- NAME: ... -->` and `<!-- end NAME -->`.
fn block(readme: &str, name: &str) -> std::ops::Range<usize> {
    let start = readme
        .find(&format!("<!-- {name}:"))
        .unwrap_or_else(|| panic!("README: no start marker <!-- {name}: ... -->"));
    let start = start + readme[start..].find('\n').unwrap() + 1;
    let end = readme
        .find(&format!("<!-- end {name} -->"))
        .unwrap_or_else(|| panic!("README: no end marker <!-- end {name} -->"));
    start..end
}

#[test]
fn readme_generated_blocks_match_the_registry() {
    let mut readme = std::fs::read_to_string(README).unwrap();
    let update = std::env::var_os("UPDATE_README").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, text) in [
        (
            "collectors-table",
            ubuntu_metrics::collectors::markdown_table(),
        ),
        (
            "collectors-reference",
            ubuntu_metrics::collectors::markdown_reference(),
        ),
    ] {
        let range = block(&readme, name);
        if readme[range.clone()] != text {
            stale.push(format!("{name}:\n{text}"));
            readme.replace_range(range, &text);
        }
    }
    if stale.is_empty() {
        return;
    }
    if update {
        std::fs::write(README, readme).unwrap();
        return;
    }
    panic!(
        "the README's generated blocks are stale: regenerate them with `UPDATE_README=1 cargo test --test readme`; they are:\n{}",
        stale.join("\n")
    );
}
