//! The README's collectors table is generated from the registry; this test
//! fails when it is stale and prints the table to paste.

#[test]
fn readme_collectors_table_matches_the_registry() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- collectors-table").expect("start marker");
    let start = start + readme[start..].find('\n').unwrap() + 1;
    let end = readme
        .find("<!-- end collectors-table -->")
        .expect("end marker");
    let table = ubuntu_metrics::collectors::markdown_table();
    assert_eq!(
        &readme[start..end],
        table,
        "README collectors table is stale; replace it with:\n{table}"
    );
}
